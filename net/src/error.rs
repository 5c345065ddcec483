//! Errors of the transport helpers. Each says what failed, where, and what to try.

use std::path::PathBuf;

use proto::keys::KeyError;

use crate::endpoint::EndpointError;
use proto::{DecodeError, EncodeError};
use thiserror::Error;

/// Opening a session, declaring on it, or sending.
#[derive(Debug, Error)]
pub enum NetError {
    #[error("invalid cluster name: {0}")]
    Cluster(KeyError),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("zenoh configuration file {path}: {message}")]
    ConfigFile { path: PathBuf, message: String },
    #[error("zenoh configuration {key} = {value}: {message}")]
    Config {
        key: &'static str,
        value: String,
        message: String,
    },
    #[error(
        "cannot open the zenoh session (listen {listen:?}, connect {connect:?}): {message}; \
         check that the endpoints are free to listen on, or that a master listens where you connect"
    )]
    Open {
        listen: Vec<String>,
        connect: Vec<String>,
        message: String,
    },
    #[error("cannot declare {what} on {key}: {message}")]
    Declare {
        what: &'static str,
        key: String,
        message: String,
    },
    #[error("cannot encode the message for {key}: {source}")]
    Encode { key: String, source: EncodeError },
    #[error("cannot publish on {key}: {message}")]
    Put { key: String, message: String },
    #[error("cannot reply on {key}: {message}")]
    Reply { key: String, message: String },
    #[error("cannot close the zenoh session: {0}")]
    Close(String),
}

/// A query that got no usable answer.
#[derive(Debug, Error)]
pub enum QueryError {
    #[error("cannot encode the request for {key}: {source}")]
    Encode { key: String, source: EncodeError },
    #[error("cannot send the query on {key}: {message}")]
    Send { key: String, message: String },
    /// Nothing answered: after the whole timeout, or sooner when zenoh ended the query
    /// without an answer (no queryable took it).
    #[error("{}", no_reply(key, *timeout_ms, *waited_ms))]
    NoReply {
        key: String,
        timeout_ms: u64,
        waited_ms: u64,
    },
    #[error("{key} answered with an error: {message}")]
    Remote { key: String, message: String },
    #[error("the answer on {key} does not decode: {source}")]
    Decode { key: String, source: DecodeError },
}

fn no_reply(key: &str, timeout_ms: u64, waited_ms: u64) -> String {
    let what = match waited_ms < timeout_ms {
        // zenoh ended the query before its time: nothing serves the key now.
        true => format!("nothing serves {key} now"),
        false => format!("no answer on {key} within {timeout_ms} ms"),
    };
    format!("{what}; is the master running and reachable?")
}

/// How a served request that does not decode is answered (`Requests::recv`): the start
/// of the error reply's text, which [`QueryError::request_not_understood`] recognizes.
pub(crate) const REQUEST_NOT_UNDERSTOOD: &str = "the request does not decode";

impl QueryError {
    /// Nobody answered (yet): the server may be restarting or unreachable, and asking
    /// again may help. Any other error is an answer, and asking the same again will not.
    pub fn no_answer(&self) -> bool {
        matches!(self, QueryError::NoReply { .. } | QueryError::Send { .. })
    }

    /// The server answered that it could not decode the request: most likely it is older
    /// than the caller and does not know this kind of request.
    pub fn request_not_understood(&self) -> bool {
        matches!(self, QueryError::Remote { message, .. } if message.starts_with(REQUEST_NOT_UNDERSTOOD))
    }
}
