//! The built-in jobs framework inside `wasmos master` and `wasmos up`: a client of the
//! master over the master's own endpoints (as any framework is), attached to the master's
//! HTTP API so that `POST /api/v1/jobs` and `wasmos run` reach the same scheduler.

use std::sync::Arc;

use anyhow::Context;
use cluster::master::MasterHandle;
use jobs::{JobsConfig, JobsFramework, JobsHandle};
use net::{Net, NetConfig};

/// The jobs framework's id, in the master's store directory (no module is named so).
const JOBS_FRAMEWORK_ID_FILE: &str = "jobs-framework.id";

/// Starts the jobs framework on `master` unless `no_jobs`.
pub async fn start(master: &MasterHandle, no_jobs: bool) -> anyhow::Result<Option<JobsHandle>> {
    if no_jobs {
        return Ok(None);
    }
    let net = Net::open(&NetConfig::member(master.endpoints().to_vec()))
        .await
        .context("opening the jobs framework's session to the master")?;
    // Kept beside the master's modules, so that a restarted master's jobs framework comes
    // back as the same framework and keeps its running tasks.
    let config = JobsConfig {
        framework_id_file: Some(master.store().dir().join(JOBS_FRAMEWORK_ID_FILE)),
        ..JobsConfig::default()
    };
    let jobs = JobsFramework::start(net, config)
        .await
        .context("starting the jobs framework")?;
    master.attach_jobs(Arc::new(jobs.client()));
    tracing::info!(framework_id = %jobs.framework_id(), "jobs framework started");
    Ok(Some(jobs))
}

pub async fn stop(jobs: Option<JobsHandle>) {
    if let Some(jobs) = jobs {
        jobs.shutdown().await;
    }
}
