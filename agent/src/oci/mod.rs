//! The OCI container executor on runc.
//!
//! A task's image is an OCI image layout (directory or `.tar`). [`OciExecutor::launch`]
//! verifies and unpacks it into a rootfs cache ([`image`], [`unpack`]), writes a runtime
//! spec ([`bundle`]), and starts the container through a supervisor process that outlives
//! the agent ([`shim`]). The returned [`OciContainer`] waits for the end, enforces the
//! timeout, kills with a grace period, and reports a [`TaskOutcome`] read from the exit
//! status and the container's cgroup ([`cgroup`], v1 or v2).
//!
//! Everything lives under the agent's work directory:
//! - `runc/`: the runc state root (`runc --root`); only this agent's containers are in it;
//! - `oci/images/`: unpacked rootfs by manifest digest;
//! - `oci/containers/<id>/`: one bundle per task (see [`container`]).
//!
//! After an agent restart, [`OciExecutor::recover`] finds every bundle and returns a
//! handle on each, whether its container still runs or ended while the agent was down.
//!
//! Architecture invariant: no tokio and no zenoh here. Every call is blocking (runc is a
//! process); an async daemon drives them from `spawn_blocking`.

pub mod bundle;
pub mod cgroup;
pub mod container;
pub mod image;
pub mod runc;
pub mod shim;
pub mod unpack;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proto::{OciTask, TaskKind, TaskSpec, TaskState};
use sha2::{Digest as _, Sha256};

pub use bundle::SANDBOX_GUEST;
pub use cgroup::{CgroupPaths, CgroupVersion};
pub use container::OciContainer;
pub use image::{ImageCache, ImageError, PreparedImage, image_arch};

use crate::outcome::TaskOutcome;
use container::{RuntimeRecord, TaskRecord};

/// SIGTERM-to-SIGKILL grace period used by [`OciExecutor::run`] on a timeout.
pub const KILL_GRACE_DEFAULT: Duration = Duration::from_secs(5);
/// Longest `runc run --detach` may take before the launch is failed.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest container id kept from a task id (runc accepts more; paths stay short).
const CONTAINER_ID_CHARS_MAX: usize = 48;

/// How the executor is set up on one agent.
#[derive(Clone, Debug)]
pub struct OciConfig {
    /// The agent's work directory.
    pub work_dir: PathBuf,
    /// The runc binary; a bare name is looked up in `PATH`.
    pub runc: PathBuf,
    /// cgroup parent of every container, absolute so that it does not depend on the
    /// agent's own cgroup (on v2 the agent's cgroup cannot have children with
    /// controllers while it holds processes).
    pub cgroup_parent: String,
}

impl OciConfig {
    pub fn new(work_dir: impl Into<PathBuf>) -> OciConfig {
        OciConfig {
            work_dir: work_dir.into(),
            runc: PathBuf::from("runc"),
            cgroup_parent: "/wasmos".into(),
        }
    }
}

/// Why a task could not be started. Each is the task's failure, never the agent's.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("not an OCI task")]
    NotOci,
    #[error("bad image: {0}")]
    Image(#[from] ImageError),
    #[error("bad container spec: {0}")]
    Bundle(#[from] bundle::BundleError),
    #[error("container setup: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Start(String),
}

impl LaunchError {
    /// The task's outcome when its launch failed.
    pub fn outcome(&self) -> TaskOutcome {
        TaskOutcome {
            state: TaskState::Failed,
            exit_code: None,
            reason: self.to_string(),
            stdout_tail: String::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("runc not found ({0}): install it (apt-get install runc)")]
    NoRunc(String),
    #[error("work directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The executor of one agent.
#[derive(Clone, Debug)]
pub struct OciExecutor {
    config: OciConfig,
    runc: runc::Runc,
    cache: ImageCache,
    cgroups: CgroupVersion,
}

/// Where an agent with work directory `work_dir` keeps its containers' bundles.
fn containers_dir(work_dir: &Path) -> PathBuf {
    work_dir.join("oci/containers")
}

/// The bundles of containers an agent left in `work_dir`: only an agent that runs OCI
/// tasks recovers them ([`OciExecutor::recover`]); any other would leave them running
/// unseen, their resources counted as free.
pub fn containers_left(work_dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(containers_dir(work_dir))
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

impl OciExecutor {
    /// Creates the work directories, finds runc and detects the cgroup version.
    pub fn new(config: OciConfig) -> Result<OciExecutor, SetupError> {
        let runc_bin = find_in_path(&config.runc)
            .ok_or_else(|| SetupError::NoRunc(config.runc.display().to_string()))?;
        let root = config.work_dir.join("runc");
        for dir in [
            root.clone(),
            config.work_dir.join("oci/images"),
            containers_dir(&config.work_dir),
        ] {
            fs::create_dir_all(&dir).map_err(|source| SetupError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let cache = ImageCache::new(config.work_dir.join("oci/images"));
        cache.remove_abandoned();
        let cgroups = CgroupVersion::detect();
        tracing::info!(?cgroups, runc = %runc_bin.display(), "oci: executor ready");
        Ok(OciExecutor {
            cache,
            runc: runc::Runc::new(runc_bin, root),
            config,
            cgroups,
        })
    }

    pub fn cgroup_version(&self) -> CgroupVersion {
        self.cgroups
    }

    pub fn image_cache(&self) -> &ImageCache {
        &self.cache
    }

    fn containers_dir(&self) -> PathBuf {
        containers_dir(&self.config.work_dir)
    }

    /// Starts `spec` (an OCI task) with `sandbox` as its writable directory, and returns
    /// once its process runs. A bad image or a container runc refuses is an `Err` whose
    /// [`LaunchError::outcome`] is the task's `failed` outcome.
    pub fn launch(&self, spec: &TaskSpec, sandbox: &Path) -> Result<OciContainer, LaunchError> {
        let TaskKind::Oci(task) = &spec.kind else {
            return Err(LaunchError::NotOci);
        };
        let image = self.cache.prepare(Path::new(&task.image))?;
        let id = container_id(spec.task_id.as_str());
        let bundle = self.containers_dir().join(&id);
        if bundle.exists() {
            return Err(LaunchError::Start(format!(
                "task {} already has a container",
                spec.task_id
            )));
        }
        fs::create_dir_all(&bundle)?;
        let result = self.start_in(spec, task, &image, sandbox, &id, &bundle);
        if result.is_err() {
            let _ = self.runc.delete(&id);
            let _ = fs::remove_dir_all(&bundle);
        }
        result
    }

    fn start_in(
        &self,
        spec: &TaskSpec,
        task: &OciTask,
        image: &PreparedImage,
        sandbox: &Path,
        id: &str,
        bundle: &Path,
    ) -> Result<OciContainer, LaunchError> {
        let (record, cgroups_path) = self.write_bundle(spec, task, image, sandbox, id, bundle)?;
        let shim_spec = shim::ShimSpec {
            runc: &self.runc.binary,
            runc_root: &self.runc.root,
            bundle,
            container_id: id,
            output_bytes_max: spec.limits.output_bytes_max,
        };
        let started = shim::spawn(&shim_spec, START_TIMEOUT)?;
        let shim_start_ticks = container::proc_start_ticks(started.shim_pid).unwrap_or(0);
        if started.runc_status != 0 {
            return Err(self.runc_refused(bundle, record, &started, shim_start_ticks));
        }
        let init_pid = fs::read_to_string(bundle.join(shim::PID_FILE))?
            .trim()
            .parse::<i32>()
            .map_err(|e| LaunchError::Start(format!("runc pid file: {e}")))?;
        let cgroup = Some(CgroupPaths::for_spec_path(
            &cgroups_path,
            self.cgroups,
            Path::new(cgroup::CGROUP_MOUNT),
        ));
        let runtime = RuntimeRecord {
            shim_pid: started.shim_pid,
            shim_start_ticks,
            init_pid,
            cgroup,
        };
        container::write_json_atomic(&bundle.join(container::RUNTIME_FILE), &runtime)?;
        tracing::debug!(
            container = id,
            init_pid,
            cached = image.from_cache,
            "oci: container running"
        );
        Ok(OciContainer::attach(
            bundle.to_path_buf(),
            self.runc.clone(),
            record,
            Some(runtime),
        ))
    }

    /// Writes the bundle's runtime spec and task record; returns the record and the
    /// container's cgroups path.
    fn write_bundle(
        &self,
        spec: &TaskSpec,
        task: &OciTask,
        image: &PreparedImage,
        sandbox: &Path,
        id: &str,
        bundle: &Path,
    ) -> Result<(TaskRecord, String), LaunchError> {
        let limits = bundle::ContainerLimits {
            cpus_millis: spec.resources.scalar("cpus").millis(),
            // Rounded up: a fraction of a MiB is still a limit, never "no limit".
            mem_mib: spec.resources.scalar("mem").millis().div_ceil(1000),
            limit_swap: self.cgroups.has_swap_accounting(),
        };
        let sandbox = fs::canonicalize(sandbox)?;
        let cgroups_path = format!("/{}/{id}", self.config.cgroup_parent.trim_matches('/'));
        let runtime_spec = bundle::runtime_spec(
            &image.config,
            task,
            &limits,
            &image.rootfs,
            &sandbox,
            &cgroups_path,
        )?;
        runtime_spec
            .save(bundle.join("config.json"))
            .map_err(|e| LaunchError::Start(e.to_string()))?;
        // The sandbox is the container's one writable directory: its user's, root or not.
        if let Some(user) = runtime_spec.process().as_ref().map(|p| p.user())
            && user.uid() != 0
        {
            std::os::unix::fs::chown(&sandbox, Some(user.uid()), Some(user.gid()))?;
        }
        let record = TaskRecord {
            task_id: spec.task_id.to_string(),
            container_id: id.to_owned(),
            mem_mib: limits.mem_mib,
            timeout_ms: spec.limits.timeout_ms,
            started_at_ms: container::now_ms(),
        };
        container::write_json_atomic(&bundle.join(container::TASK_FILE), &record)?;
        Ok((record, cgroups_path))
    }

    /// runc did not start the container: waits for the supervisor's last file (before the
    /// bundle is removed) and names runc's reason.
    fn runc_refused(
        &self,
        bundle: &Path,
        record: TaskRecord,
        started: &shim::Started,
        shim_start_ticks: u64,
    ) -> LaunchError {
        let runtime = RuntimeRecord {
            shim_pid: started.shim_pid,
            shim_start_ticks,
            init_pid: -1,
            cgroup: None,
        };
        OciContainer::attach(
            bundle.to_path_buf(),
            self.runc.clone(),
            record,
            Some(runtime),
        )
        .wait_exit(Some(Duration::from_secs(5)));
        let why = runc::last_logged_error(&bundle.join(shim::RUNC_LOG_FILE))
            .unwrap_or_else(|| format!("runc exited with status {}", started.runc_status >> 8));
        LaunchError::Start(format!("runc could not start the container: {why}"))
    }

    /// Launches and waits: the whole task, as `wasmos task run --oci` runs it.
    pub fn run(&self, spec: &TaskSpec, sandbox: &Path) -> TaskOutcome {
        match self.launch(spec, sandbox) {
            Ok(container) => {
                let outcome = container.wait(KILL_GRACE_DEFAULT);
                if let Err(e) = container.remove() {
                    tracing::warn!(error = %e, "oci: bundle not removed");
                }
                outcome
            }
            Err(e) => e.outcome(),
        }
    }

    /// Every container this agent left behind (running, or ended while it was down), from
    /// the bundles under its work directory. Bundles whose records are unreadable are
    /// deleted with their container, with a warning.
    pub fn recover(&self) -> Vec<OciContainer> {
        let Ok(entries) = fs::read_dir(self.containers_dir()) else {
            return Vec::new();
        };
        let mut found: Vec<OciContainer> = Vec::new();
        for bundle in entries.filter_map(Result::ok).map(|e| e.path()) {
            let task: Option<TaskRecord> = fs::read(bundle.join(container::TASK_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let Some(task) = task else {
                tracing::warn!(bundle = %bundle.display(), "oci: bundle without a task record removed");
                if let Some(id) = bundle.file_name().and_then(|n| n.to_str()) {
                    let _ = self.runc.delete(id);
                }
                let _ = fs::remove_dir_all(&bundle);
                continue;
            };
            let runtime: Option<RuntimeRecord> = fs::read(bundle.join(container::RUNTIME_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            tracing::info!(task = %task.task_id, running = runtime.is_some(), "oci: container recovered");
            found.push(OciContainer::attach(
                bundle,
                self.runc.clone(),
                task,
                runtime,
            ));
        }
        // Containers in our runc root without a bundle cannot be reported on: remove them.
        for id in self.runc.list() {
            if !found.iter().any(|c| c.container_id() == id) {
                tracing::warn!(container = %id, "oci: container without a bundle deleted");
                let _ = self.runc.delete(&id);
            }
        }
        found
    }
}

/// A runc container id for a task id: the task id's safe characters, and a hash so that
/// two task ids that differ only in unsafe characters still get different containers.
pub fn container_id(task_id: &str) -> String {
    let safe: String = task_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(CONTAINER_ID_CHARS_MAX)
        .collect();
    let hash = hex::encode(&Sha256::digest(task_id.as_bytes())[..4]);
    format!("{safe}-{hash}")
}

/// A name unique within this process and across processes: `<prefix>-<pid>-<nanos>-<n>`.
pub(crate) fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{nanos}-{n}", std::process::id())
}

/// The pid in a [`unique_name`] made with `prefix`.
pub(crate) fn unique_name_pid(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?
        .strip_prefix('-')?
        .split('-')
        .next()?
        .parse()
        .ok()
}

fn find_in_path(binary: &Path) -> Option<PathBuf> {
    if binary.components().count() > 1 {
        return binary.is_file().then(|| binary.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let fallback = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(fallback)
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_are_safe_and_distinct() {
        let a = container_id("job/1");
        let b = container_id("job:1");
        assert!(a.starts_with("job_1-") && b.starts_with("job_1-"));
        assert_ne!(a, b);
        assert!(container_id(&"x".repeat(500)).len() < 60);
    }

    #[test]
    fn unique_names_carry_their_pid() {
        let name = unique_name(".unpack");
        assert_eq!(unique_name_pid(&name, ".unpack"), Some(std::process::id()));
        assert_eq!(unique_name_pid(&name, ".layout"), None);
        assert_eq!(unique_name_pid("sha256-ab", ".unpack"), None);
    }
}
