//! Errors of starting the master daemon. Once started, a daemon reports problems in its log and
//! keeps serving: a bad message or an unreachable peer never stops it.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error(transparent)]
    Store(#[from] net::modules::StoreError),
    #[error("scheduler and allocator modules cannot run: {0}")]
    Modules(policy_host::GuestError),
    #[error(transparent)]
    Allocator(#[from] policy_host::allocator::AllocatorSpecError),
    #[error("the jobs framework cannot start: {0}")]
    Jobs(#[from] jobs::JobsError),
    #[error("state directory {path}: {source}")]
    StateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "state directory {dir} is in use by another master ({holder}): give each master its own --state-dir (or --store-dir)"
    )]
    StateDirInUse {
        dir: std::path::PathBuf,
        holder: String,
    },
    #[error("cannot keep the in-process frameworks' state in etcd: {0}")]
    StateStore(String),
    #[error("cannot serve HTTP on {addr}")]
    HttpBind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}
