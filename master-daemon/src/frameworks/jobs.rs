//! The built-in jobs framework inside the master process: a client of the master over the
//! master's own endpoints (as any framework is), attached to the master's HTTP API so that
//! `POST /api/v1/jobs` and `wasmos run` reach the same scheduler.

use std::sync::Arc;

use jobs::{JobsConfig, JobsFramework, JobsHandle};
use net::{Net, NetConfig};

use crate::error::DaemonError;

/// Starts the jobs framework as a member of the master at `member`. Its id and its jobs
/// are kept in `store`, so that a restarted master's jobs framework (or a standby's)
/// comes back as the same framework, keeps its running tasks and goes on with its jobs.
pub(crate) async fn start(
    member: &NetConfig,
    store: Arc<dyn jobs::store::StateStore>,
) -> Result<JobsHandle, DaemonError> {
    let net = Net::open(member).await?;
    let config = JobsConfig {
        store: Some(store),
        ..JobsConfig::default()
    };
    let jobs = JobsFramework::start(net, config).await?;
    tracing::info!(framework_id = %jobs.framework_id(), "jobs framework started");
    Ok(jobs)
}
