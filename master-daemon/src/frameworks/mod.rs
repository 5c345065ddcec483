//! Frameworks that run inside the master process, behind one host: the built-in jobs
//! framework ([`jobs`], the scheduler behind `wasmos run` and `POST /api/v1/jobs`) and
//! scheduler modules added with `wasmos framework add` ([`hosted`]). Each is a client of
//! the master over its own endpoints, exactly as an outside framework is: the master core
//! cannot tell them apart.

mod etcd_store;
pub mod hosted;
mod jobs;

use std::sync::Arc;

use ::jobs::JobsHandle;
use ::jobs::store::{FileStore, StateStore};
use net::NetConfig;

use crate::error::DaemonError;
use crate::frameworks::hosted::HostedFrameworks;

/// Where the in-process frameworks keep what they keep: etcd with `--etcd` (so that a
/// standby taking over goes on with it), else `<state>/frameworks/`, created if need be.
pub(crate) fn state_store(
    config: &crate::MasterDaemonConfig,
) -> Result<Arc<dyn StateStore>, DaemonError> {
    if !config.etcd.is_empty() {
        let store = etcd_store::EtcdStore::new(config.etcd.clone(), &config.net.cluster)
            .map_err(DaemonError::StateStore)?;
        return Ok(Arc::new(store));
    }
    let dir = config.state_dir.join("frameworks");
    std::fs::create_dir_all(&dir).map_err(|source| DaemonError::StateDir {
        path: dir.clone(),
        source,
    })?;
    Ok(Arc::new(FileStore::new(dir)))
}

/// The in-process frameworks of one master.
pub(crate) struct InProcessFrameworks {
    pub(crate) hosted: HostedFrameworks,
    pub(crate) jobs: Option<JobsHandle>,
}

impl InProcessFrameworks {
    /// Starts the jobs framework when `config.jobs` is set, its id kept under
    /// `config.state_dir`.
    pub(crate) async fn start_jobs(
        member: &NetConfig,
        config: &crate::MasterDaemonConfig,
    ) -> Result<Option<JobsHandle>, DaemonError> {
        if !config.jobs {
            return Ok(None);
        }
        jobs::start(member, state_store(config)?).await.map(Some)
    }

    /// The jobs framework as the operator's door for jobs, if it runs.
    pub(crate) fn jobs_submitter(&self) -> Option<Arc<dyn crate::JobSubmitter>> {
        self.jobs
            .as_ref()
            .map(|jobs| Arc::new(jobs.client()) as Arc<dyn crate::JobSubmitter>)
    }

    pub(crate) async fn shutdown(self) {
        if let Some(jobs) = self.jobs {
            jobs.shutdown().await;
        }
        self.hosted.shutdown().await;
    }
}
