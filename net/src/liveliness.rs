//! Liveliness tokens: a node declares one while it runs (`agents/<id>/alive`,
//! `master/alive`, `frameworks/<id>/alive`); others watch them come and go. zenoh drops a
//! token when its session closes or its link breaks, so a crashed node is seen gone too.

use tokio::sync::mpsc;
use zenoh::liveliness::LivelinessToken;
use zenoh::pubsub::Subscriber;
use zenoh::sample::SampleKind;

use crate::error::NetError;
use crate::session::Net;

/// A declared token; it is withdrawn when this is dropped.
pub struct AliveToken {
    _token: LivelinessToken,
}

/// A change in the set of tokens matching a watched key expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    Alive { key: String },
    Gone { key: String },
}

impl Liveness {
    pub fn key(&self) -> &str {
        match self {
            Liveness::Alive { key } | Liveness::Gone { key } => key,
        }
    }
}

/// Tokens appearing and disappearing on a key expression.
///
/// The changes wait in an unbounded queue. zenoh pushes the tokens alive now into the
/// handler while the watch is being declared, before the caller holds it: a bounded queue
/// (zenoh's default holds 256) blocked that declaration for good once more tokens than
/// it holds were alive, and so a master restarted in a fleet of 300 agents hung. What
/// waits is bounded by the tokens there are and how often they change.
pub struct AliveWatch {
    changes: mpsc::UnboundedReceiver<Liveness>,
    _subscriber: Subscriber<()>,
}

impl AliveWatch {
    /// The next change; `None` once the session is closed.
    pub async fn recv(&mut self) -> Option<Liveness> {
        self.changes.recv().await
    }
}

impl Net {
    /// Declares the token `key` for as long as the returned value lives.
    pub async fn declare_alive(&self, key: &str) -> Result<AliveToken, NetError> {
        let token = self
            .session()
            .liveliness()
            .declare_token(key)
            .await
            .map_err(|e| NetError::Declare {
                what: "a liveliness token",
                key: key.to_owned(),
                message: e.to_string(),
            })?;
        Ok(AliveToken { _token: token })
    }

    /// True when a token `key` is alive now (held by another session): asks the tokens
    /// the network knows, waiting at most `timeout_ms` for answers.
    pub async fn alive_now(&self, key: &str, timeout_ms: u64) -> Result<bool, NetError> {
        let replies = self
            .session()
            .liveliness()
            .get(key)
            .timeout(std::time::Duration::from_millis(timeout_ms))
            .await
            .map_err(|e| NetError::Declare {
                what: "a liveliness query",
                key: key.to_owned(),
                message: e.to_string(),
            })?;
        while let Ok(reply) = replies.recv_async().await {
            if reply.result().is_ok() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Watches tokens matching `key_expr`; the tokens alive now are reported first, as
    /// `Alive`.
    pub async fn watch_alive(&self, key_expr: &str) -> Result<AliveWatch, NetError> {
        let (changes_tx, changes) = mpsc::unbounded_channel();
        let subscriber = self
            .session()
            .liveliness()
            .declare_subscriber(key_expr)
            .history(true)
            .callback(move |sample| {
                let key = sample.key_expr().as_str().to_owned();
                let change = match sample.kind() {
                    SampleKind::Put => Liveness::Alive { key },
                    SampleKind::Delete => Liveness::Gone { key },
                };
                // A watch dropped by its owner has no one left to tell.
                let _ = changes_tx.send(change);
            })
            .await
            .map_err(|e| NetError::Declare {
                what: "a liveliness subscriber",
                key: key_expr.to_owned(),
                message: e.to_string(),
            })?;
        Ok(AliveWatch {
            changes,
            _subscriber: subscriber,
        })
    }
}
