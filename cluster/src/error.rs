//! Errors of starting a daemon. Once started, a daemon reports problems in its log and
//! keeps serving: a bad message or an unreachable peer never stops it.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error(transparent)]
    Store(#[from] net::modules::StoreError),
    #[error(transparent)]
    ModuleCache(#[from] net::modules::FetchError),
    #[error("the WASM executor cannot start: {0}")]
    WasmExecutor(#[from] agent::wasm::ExecutorError),
    #[error("work directory {path}: {source}")]
    WorkDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("scheduler and allocator modules cannot run: {0}")]
    Modules(plugins::GuestError),
    #[error(transparent)]
    Allocator(#[from] plugins::allocator::AllocatorSpecError),
    #[error("cannot serve HTTP on {addr}")]
    HttpBind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("agent id {0:?} cannot be used in a key: {1}")]
    AgentId(String, proto::keys::KeyError),
}
