//! Typed put, subscribe, query and queryable over the `proto` codec.
//!
//! Every payload goes through `proto::encode`/`proto::decode`. Whatever arrives that does
//! not decode is counted in [`crate::DecodeErrors`] under its key, logged and dropped; a
//! query that does not decode is answered with an error reply so that its sender learns
//! why at once instead of waiting for its timeout.

use std::marker::PhantomData;
use std::sync::Weak;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use zenoh::handlers::FifoChannelHandler;
use zenoh::pubsub::Subscriber;
use zenoh::query::{Query, Queryable};
use zenoh::sample::{Sample, SampleKind};

use crate::declared::DeclaredKeys;
use crate::decode_errors::DecodeErrors;
use crate::error::{NetError, QueryError};
use crate::session::Net;

/// A message that decoded, with the concrete key it came on.
#[derive(Clone, Debug, PartialEq)]
pub struct Received<T> {
    pub key: String,
    pub message: T,
}

impl Net {
    /// Publishes `message` on `key`.
    pub async fn put<T: Serialize>(&self, key: &str, message: &T) -> Result<(), NetError> {
        let frame = proto::encode(message).map_err(|source| NetError::Encode {
            key: key.to_owned(),
            source,
        })?;
        self.put_raw(key, frame).await
    }

    /// Publishes raw bytes on `key`, bypassing the codec: for tests and tools that probe
    /// how the cluster treats garbage.
    pub async fn put_raw(&self, key: &str, bytes: Vec<u8>) -> Result<(), NetError> {
        let put = match self.declared_key(key).await {
            Some(declared) => self.session().put(declared, bytes).await,
            None => self.session().put(key, bytes).await,
        };
        put.map_err(|e| NetError::Put {
            key: key.to_owned(),
            message: e.to_string(),
        })
    }

    /// Subscribes to `key_expr` (wildcards allowed) for messages of type `T`.
    pub async fn subscribe<T: DeserializeOwned>(
        &self,
        key_expr: &str,
    ) -> Result<Subscription<T>, NetError> {
        let subscriber = self
            .session()
            .declare_subscriber(key_expr)
            .await
            .map_err(|e| NetError::Declare {
                what: "a subscriber",
                key: key_expr.to_owned(),
                message: e.to_string(),
            })?;
        let (session, declared) = self.declarer();
        Ok(Subscription {
            subscriber,
            decode_errors: self.decode_errors().clone(),
            session,
            declared,
            declaring: false,
            _message: PhantomData,
        })
    }

    /// Sends `request` to the queryable on `key` and decodes the first answer as `R`.
    pub async fn query<Q: Serialize, R: DeserializeOwned>(
        &self,
        key: &str,
        request: &Q,
        timeout_ms: u64,
    ) -> Result<R, QueryError> {
        let frame = proto::encode(request).map_err(|source| QueryError::Encode {
            key: key.to_owned(),
            source,
        })?;
        let bytes = self.query_raw(key, Some(frame), timeout_ms).await?;
        self.decode_reply(key, &bytes)
    }

    /// Sends a query without payload on `selector` (`key?name=value`) and decodes the
    /// first answer as `R`.
    pub async fn query_selector<R: DeserializeOwned>(
        &self,
        selector: &str,
        timeout_ms: u64,
    ) -> Result<R, QueryError> {
        let bytes = self.query_raw(selector, None, timeout_ms).await?;
        self.decode_reply(selector, &bytes)
    }

    /// The first answer's payload as it came: `Ok` bytes, or the error reply's text.
    pub async fn query_raw(
        &self,
        selector: &str,
        payload: Option<Vec<u8>>,
        timeout_ms: u64,
    ) -> Result<Vec<u8>, QueryError> {
        let send_error = |e: zenoh::Error| QueryError::Send {
            key: selector.to_owned(),
            message: e.to_string(),
        };
        let asked = std::time::Instant::now();
        let get = self
            .session()
            .get(selector)
            .timeout(Duration::from_millis(timeout_ms));
        let replies = match payload {
            Some(bytes) => get.payload(bytes).await.map_err(send_error)?,
            None => get.await.map_err(send_error)?,
        };
        // The first reply decides; the channel ends when every queryable answered or the
        // timeout passed.
        match replies.recv_async().await {
            Ok(reply) => match reply.result() {
                Ok(sample) => Ok(sample.payload().to_bytes().into_owned()),
                Err(error) => Err(QueryError::Remote {
                    key: selector.to_owned(),
                    message: String::from_utf8_lossy(&error.payload().to_bytes()).into_owned(),
                }),
            },
            Err(_) => Err(QueryError::NoReply {
                key: selector.to_owned(),
                timeout_ms,
                waited_ms: u64::try_from(asked.elapsed().as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    fn decode_reply<R: DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Result<R, QueryError> {
        proto::decode(bytes).map_err(|source| {
            self.decode_errors().record(key, &source);
            QueryError::Decode {
                key: key.to_owned(),
                source,
            }
        })
    }

    /// Declares a queryable on `key_expr` (wildcards allowed) taking requests of type `Q`.
    pub async fn serve<Q: DeserializeOwned>(
        &self,
        key_expr: &str,
    ) -> Result<Requests<Q>, NetError> {
        let queryable = self.declare_queryable(key_expr).await?;
        Ok(Requests {
            queryable,
            decode_errors: self.decode_errors().clone(),
            _request: PhantomData,
        })
    }

    pub(crate) async fn declare_queryable(
        &self,
        key_expr: &str,
    ) -> Result<Queryable<FifoChannelHandler<Query>>, NetError> {
        self.session()
            .declare_queryable(key_expr)
            .await
            .map_err(|e| NetError::Declare {
                what: "a queryable",
                key: key_expr.to_owned(),
                message: e.to_string(),
            })
    }
}

/// Messages of type `T` published on a key expression; undeclared when dropped.
pub struct Subscription<T> {
    subscriber: Subscriber<FifoChannelHandler<Sample>>,
    decode_errors: DecodeErrors,
    /// Where keys heard from are declared (see `declared.rs`); weakly, so that a
    /// subscription does not keep its session open.
    session: Weak<zenoh::Session>,
    declared: DeclaredKeys,
    /// Whether the keys heard are declared ([`Subscription::declaring_keys`]).
    declaring: bool,
    _message: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Subscription<T> {
    /// Declares the key of each message that decodes, while the session has room: this
    /// session's zenoh (a master's router above all) then routes the next messages on it
    /// from a cached route. For streams whose keys each carry many messages (an agent's
    /// statuses), not for ones that touch a wide key space once in a while (adverts): a
    /// declared key is a node more that every undeclared key under the same parent is
    /// matched against.
    #[must_use]
    pub fn declaring_keys(mut self) -> Self {
        self.declaring = true;
        self
    }

    /// The next message that decodes; `None` once the session is closed. Deletions are
    /// skipped; payloads that do not decode are counted, logged and skipped.
    pub async fn recv(&mut self) -> Option<Received<T>> {
        loop {
            let sample = self.subscriber.recv_async().await.ok()?;
            if sample.kind() == SampleKind::Delete {
                continue;
            }
            let key = sample.key_expr().as_str();
            match proto::decode(&sample.payload().to_bytes()) {
                Ok(message) => {
                    let key = key.to_owned();
                    if self.declaring
                        && let Some(session) = self.session.upgrade()
                    {
                        self.declared.get(&session, &key).await;
                    }
                    return Some(Received { key, message });
                }
                Err(error) => self.decode_errors.record(key, &error),
            }
        }
    }
}

/// Requests of type `Q` made to a queryable; undeclared when dropped.
pub struct Requests<Q> {
    queryable: Queryable<FifoChannelHandler<Query>>,
    decode_errors: DecodeErrors,
    _request: PhantomData<fn() -> Q>,
}

impl<Q: DeserializeOwned> Requests<Q> {
    /// The next request that decodes; `None` once the session is closed. A request that
    /// does not decode is counted, logged and answered with an error reply.
    pub async fn recv(&mut self) -> Option<Request<Q>> {
        loop {
            let query = self.queryable.recv_async().await.ok()?;
            let key = query.key_expr().as_str().to_owned();
            let frame = query
                .payload()
                .map(|p| p.to_bytes().into_owned())
                .unwrap_or_default();
            match proto::decode(&frame) {
                Ok(message) => {
                    return Some(Request {
                        key,
                        message,
                        responder: Responder { query },
                    });
                }
                Err(error) => {
                    self.decode_errors.record(&key, &error);
                    let text = format!("{}: {error}", crate::error::REQUEST_NOT_UNDERSTOOD);
                    if let Err(e) = query.reply_err(text).await {
                        tracing::debug!(%key, %e, "could not answer an undecodable request");
                    }
                }
            }
        }
    }
}

impl<Q: DeserializeOwned + Send + 'static> Requests<Q> {
    /// Hands each request, with the responder its answer goes to, to `inputs` as
    /// `input(request, responder)`: the pump of a daemon whose driver answers them. Ends
    /// when the session closes or the driver is gone.
    pub fn pump_into<I: Send + 'static>(
        mut self,
        inputs: &tokio::sync::mpsc::Sender<I>,
        input: fn(Q, Responder) -> I,
    ) -> tokio::task::JoinHandle<()> {
        let inputs = inputs.clone();
        tokio::spawn(async move {
            while let Some(request) = self.recv().await {
                let (message, responder) = request.into_parts();
                if inputs.send(input(message, responder)).await.is_err() {
                    return;
                }
            }
        })
    }
}

/// One decoded request; answer it with [`Request::reply`] or [`Request::reply_error`].
/// Dropping it unanswered ends the query with no reply (the sender sees a timeout).
pub struct Request<Q> {
    pub key: String,
    pub message: Q,
    responder: Responder,
}

impl<Q> Request<Q> {
    pub async fn reply<R: Serialize>(self, reply: &R) -> Result<(), NetError> {
        self.responder.reply(reply).await
    }

    /// Answers with an error reply carrying `message` for a person to read.
    pub async fn reply_error(self, message: &str) -> Result<(), NetError> {
        self.responder.reply_error(message).await
    }

    /// The message, and what answers it, apart: to move the message on without a copy.
    pub fn into_parts(self) -> (Q, Responder) {
        (self.message, self.responder)
    }
}

/// Answers one query.
pub struct Responder {
    query: Query,
}

impl Responder {
    pub fn key(&self) -> &str {
        self.query.key_expr().as_str()
    }

    pub async fn reply<R: Serialize>(self, reply: &R) -> Result<(), NetError> {
        let frame = proto::encode(reply).map_err(|source| NetError::Encode {
            key: self.key().to_owned(),
            source,
        })?;
        reply_bytes(&self.query, frame).await
    }

    /// Answers with an error reply carrying `message` for a person to read.
    pub async fn reply_error(self, message: &str) -> Result<(), NetError> {
        reply_error(&self.query, message).await
    }
}

pub(crate) async fn reply_bytes(query: &Query, bytes: Vec<u8>) -> Result<(), NetError> {
    let key = query.key_expr().clone();
    query
        .reply(key.clone(), bytes)
        .await
        .map_err(|e| NetError::Reply {
            key: key.as_str().to_owned(),
            message: e.to_string(),
        })
}

pub(crate) async fn reply_error(query: &Query, message: &str) -> Result<(), NetError> {
    query
        .reply_err(message.to_owned())
        .await
        .map_err(|e| NetError::Reply {
            key: query.key_expr().as_str().to_owned(),
            message: e.to_string(),
        })
}
