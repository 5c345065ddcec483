//! Errors of starting an agent daemon. Once started, it reports problems in its log and
//! keeps serving: a bad message or an unreachable master never stops it.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error(transparent)]
    ModuleCache(#[from] net::modules::FetchError),
    #[error("the WASM executor cannot start: {0}")]
    WasmExecutor(#[from] agent::wasm::ExecutorError),
    #[error("work directory {path}: {source}")]
    WorkDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "work directory {} is in use by another agent ({holder}); give each agent its own --work-dir",
        dir.display()
    )]
    WorkDirInUse { dir: PathBuf, holder: String },
    #[error("agent id {0:?} cannot be used in a key: {1}")]
    AgentId(String, proto::keys::KeyError),
    #[error(
        "agent id {0:?} is held by another agent that is alive (its liveliness token stayed \
         present while this one waited); give this agent its own id (agent_id in its configuration, or its own \
         --work-dir), or stop the other one first"
    )]
    AgentIdInUse(String),
}
