//! The built-in jobs framework inside the master process: a client of the master over the
//! master's own endpoints (as any framework is), attached to the master's HTTP API so that
//! `POST /api/v1/jobs` and `wasmos run` reach the same scheduler.

use std::path::Path;

use jobs::{JobsConfig, JobsFramework, JobsHandle};
use net::{Net, NetConfig};

use crate::error::DaemonError;

/// The jobs framework's id, in the master's state directory (`<state>/frameworks/`).
const JOBS_FRAMEWORK_ID_FILE: &str = "jobs.id";
/// The jobs framework's jobs, beside its id ([`jobs::persist`]).
const JOBS_STATE_FILE: &str = "jobs.state.json";

/// Starts the jobs framework as a member of the master at `member`. Its id and its jobs
/// are kept in `frameworks_dir`, so that a restarted master's jobs framework comes back
/// as the same framework, keeps its running tasks and goes on with its jobs.
pub(crate) async fn start(
    member: &NetConfig,
    frameworks_dir: &Path,
) -> Result<JobsHandle, DaemonError> {
    let net = Net::open(member).await?;
    let config = JobsConfig {
        framework_id_file: Some(frameworks_dir.join(JOBS_FRAMEWORK_ID_FILE)),
        state_file: Some(frameworks_dir.join(JOBS_STATE_FILE)),
        ..JobsConfig::default()
    };
    let jobs = JobsFramework::start(net, config).await?;
    tracing::info!(framework_id = %jobs.framework_id(), "jobs framework started");
    Ok(jobs)
}
