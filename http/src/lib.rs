//! The master's operator surface over HTTP: a JSON API (with its OpenAPI document),
//! Prometheus metrics and a live web dashboard, all served by the master itself.
//!
//! Wiring, in the master daemon (`master_daemon::operator` does this):
//! 1. Keep a [`Recorder`] next to the [`master::Master`]; hand it every action drained,
//!    every call and status fed, and the duration of every `handle_timeout`.
//! 2. Publish `Arc::new(recorder.snapshot(&master, wall_ms, master_now))` (the core's rows
//!    with the recorder's log and counters) on a `tokio::sync::watch` channel, at most
//!    every [`SNAPSHOT_INTERVAL_MS_MIN`].
//! 3. Answer the [`Command`]s that arrive on an mpsc channel: operator requests (log
//!    tails, kills, jobs), answered as on the `master/admin` queryable.
//! 4. `tokio::spawn(http_api::serve(addr, Handles::new(state, commands)))`; with
//!    `.with_tokens(book)`, every request but `/health` and the dashboard's files needs a
//!    bearer token of the book ([`auth`]), and each [`Command`] carries its caller.
//!
//! Architecture invariant: this crate never mutates the master; everything it shows comes
//! from the published [`ClusterState`], everything it asks goes through [`Command`].

mod api;
pub mod auth;
pub mod command;
mod dashboard;
pub mod error;
mod jobs_api;
pub mod metrics;
pub mod recorder;
mod server;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

pub use api::{ApiDoc, BODY_BYTES_MAX, COMMAND_TIMEOUT_MS, TaskFilter};
pub use command::Command;
pub use error::{ApiError, ErrorBody};
pub use recorder::Recorder;
pub use server::{HEADER_READ_TIMEOUT_MS, HTTP_CONNECTIONS_MAX};
pub use state::ClusterState;

/// The least time between two published snapshots the dashboard needs to look live;
/// publishing more often only costs serialization for every open dashboard.
pub const SNAPSHOT_INTERVAL_MS_MIN: u64 = 250;

/// What the server needs from the daemon.
#[derive(Clone, Debug)]
pub struct Handles {
    /// The latest snapshot, replaced by the daemon.
    pub state: watch::Receiver<Arc<ClusterState>>,
    /// Requests to the daemon, each answered on its oneshot.
    pub commands: mpsc::Sender<Command>,
    /// A permit per followed task log (`?follow=true`): at most [`LOG_FOLLOWS_MAX`].
    pub(crate) follows: Arc<tokio::sync::Semaphore>,
    /// The cluster's HTTP tokens; `None`: the API is open and every caller is
    /// [`proto::Principal::anonymous`].
    pub(crate) tokens: Option<Arc<secure::LiveTokenBook>>,
}

/// Most task logs followed over HTTP at once; one more is answered 503. Each follower
/// asks the daemon twice a second, through the same queue as every other request.
pub const LOG_FOLLOWS_MAX: usize = 8;

impl Handles {
    pub fn new(
        state: watch::Receiver<Arc<ClusterState>>,
        commands: mpsc::Sender<Command>,
    ) -> Handles {
        Handles {
            state,
            commands,
            follows: Arc::new(tokio::sync::Semaphore::new(LOG_FOLLOWS_MAX)),
            tokens: None,
        }
    }

    /// Requires a bearer token of `tokens` on every request but `/health` and the
    /// dashboard's own files.
    pub fn with_tokens(mut self, tokens: Arc<secure::LiveTokenBook>) -> Handles {
        self.tokens = Some(tokens);
        self
    }
}

/// Every route: the API under `/api/v1`, `/health`, `/metrics` and the dashboard at `/`;
/// all but `/health` and the dashboard's files behind [`auth`] when there are tokens.
pub fn router(handles: Handles) -> axum::Router {
    api::router(handles)
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Listens on `addr` and serves [`router`] until the task is dropped: at most
/// [`HTTP_CONNECTIONS_MAX`] connections at once, each closed when its client takes longer
/// than [`HEADER_READ_TIMEOUT_MS`] to send a request's headers (or to ask again on a
/// kept-alive connection).
pub async fn serve(addr: SocketAddr, handles: Handles) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    serve_on(listener, handles).await;
    Ok(())
}

/// Serves on a listener already bound (port 0 in tests), as [`serve`] does, until the
/// task is dropped: accepting never ends on an error (it pauses and goes on).
pub async fn serve_on(listener: tokio::net::TcpListener, handles: Handles) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP API and dashboard listening");
    }
    server::serve(listener, router(handles), server::Limits::default()).await;
}
