//! Running one task: fetch what it needs, start it on its executor, wait for its end or a
//! kill, and report each step to the driver.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agent::oci::{OciContainer, OciExecutor};
use agent::outcome::TaskOutcome;
use agent::usage::TaskUsage;
use agent::wasm::{CapturedOutput, LoadedModule, OutputStreams, TaskRun, WasmExecutor};
use net::modules::{CachedModule, FetchError, ModuleCache};
use proto::admin::{LogOffsets, OutputPart};
use proto::{
    AgentId, Keys, ModuleRef, TASK_USAGE_PERIOD_MS, TaskKind, TaskSpec, TaskState, TaskUsageReport,
    WasmTask,
};
use tokio::sync::{Notify, mpsc};

use crate::Input;
use crate::link::NetLink;
use crate::sandboxes::Sandboxes;

/// What a runner tells the driver.
pub(crate) enum RunnerUpdate {
    /// The task started; its output can be read from `output` while it runs.
    Running(LiveOutput),
    Ended {
        outcome: TaskOutcome,
        stdout: CapturedOutput,
        stderr: CapturedOutput,
    },
}

/// Where a running task's output is read.
#[derive(Clone)]
pub(crate) enum LiveOutput {
    Wasm(OutputStreams),
    Oci(Arc<OciContainer>),
}

impl LiveOutput {
    /// What the task has written so far, as asked (see [`OutputPart::select`]).
    pub(crate) fn parts(&self, from: Option<LogOffsets>, max: usize) -> (OutputPart, OutputPart) {
        match self {
            LiveOutput::Wasm(streams) => (
                streams.stdout.select(from.map(|f| f.stdout), max),
                streams.stderr.select(from.map(|f| f.stderr), max),
            ),
            LiveOutput::Oci(container) => container.output_parts(from, max),
        }
    }
}

/// The executors and caches runners share.
#[derive(Clone)]
pub(crate) struct Executors {
    /// The session, once open: none yet while the agent started without a master.
    pub link: NetLink,
    /// The cluster's keys (the session's, known before it opens).
    pub keys: Keys,
    pub modules: Arc<ModuleCache>,
    pub wasm: WasmExecutor,
    pub oci: Option<OciExecutor>,
    pub sandboxes: Sandboxes,
    /// Whose usage reports (`agents/<id>/metrics`) the runners put.
    pub agent_id: AgentId,
}

/// How the driver stops a runner: `notify_one` keeps a permit, so a kill that comes
/// before the runner waits is not lost.
#[derive(Clone, Default)]
pub(crate) struct Cancel {
    notify: Arc<Notify>,
    grace_ms: Arc<AtomicU64>,
}

impl Cancel {
    pub(crate) fn kill(&self, grace_ms: u64) {
        self.grace_ms.store(grace_ms, Ordering::Relaxed);
        self.notify.notify_one();
    }

    async fn killed(&self) {
        self.notify.notified().await;
    }

    fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms.load(Ordering::Relaxed))
    }
}

pub(crate) async fn run(
    executors: Executors,
    spec: TaskSpec,
    cancel: Cancel,
    driver: mpsc::Sender<Input>,
) {
    let task_id = spec.task_id.clone();
    let (ended, recyclable) = match &spec.kind {
        TaskKind::Wasm(wasm) => {
            let ended = run_wasm(&executors, &spec, wasm, &cancel, &driver).await;
            // Only a guest that exited on its own has no file operation still running
            // on a blocking thread (a kill or a timeout drops the guest mid-call).
            let exited = matches!(&ended, RunnerUpdate::Ended { outcome, .. } if outcome.exit_code.is_some());
            (ended, exited)
        }
        TaskKind::Oci(_) => (run_oci(&executors, &spec, &cancel, &driver).await, false),
    };
    if let Err(e) = executors.sandboxes.release(&task_id, recyclable).await {
        let sandbox = executors.sandboxes.path(&task_id);
        tracing::warn!(%task_id, sandbox = %sandbox.display(), %e, "could not remove a task's sandbox");
    }
    let _ = driver
        .send(Input::Runner {
            task_id,
            update: ended,
        })
        .await;
}

/// The task's sandbox, or the update that fails the task for want of one.
async fn create_sandbox(executors: &Executors, spec: &TaskSpec) -> Result<PathBuf, RunnerUpdate> {
    (executors.sandboxes.create(&spec.task_id).await).map_err(|e| {
        let sandbox = executors.sandboxes.path(&spec.task_id);
        failed(format!(
            "cannot create the sandbox {}: {e}",
            sandbox.display()
        ))
    })
}

fn failed(reason: String) -> RunnerUpdate {
    let outcome = TaskOutcome {
        state: TaskState::Failed,
        exit_code: None,
        reason,
        stdout_tail: String::new(),
    };
    RunnerUpdate::Ended {
        outcome,
        stdout: CapturedOutput::default(),
        stderr: CapturedOutput::default(),
    }
}

fn killed_before_start() -> RunnerUpdate {
    let reason = "killed before it started".to_owned();
    let outcome = TaskOutcome {
        state: TaskState::Killed,
        exit_code: None,
        reason,
        stdout_tail: String::new(),
    };
    RunnerUpdate::Ended {
        outcome,
        stdout: CapturedOutput::default(),
        stderr: CapturedOutput::default(),
    }
}

/// The module from the cache (with no network, as an agent without a master needs), or
/// else fetched once the session is open.
async fn fetch_module(
    executors: &Executors,
    module: &ModuleRef,
) -> Result<CachedModule, FetchError> {
    if let Some(cached) = executors.modules.cached(module).await? {
        return Ok(cached);
    }
    let net = executors.link.wait().await;
    executors.modules.get(&net, module).await
}

/// The task's module: from the executor's memory when it ran before, else from the
/// module cache (fetched if need be), checked and compiled or taken from the code cache.
async fn load_module(
    executors: &Executors,
    wasm: &WasmTask,
    cancel: &Cancel,
) -> Result<LoadedModule, RunnerUpdate> {
    if let Some(module) = executors.wasm.loaded_from_memory(&wasm.module.sha256.0) {
        return Ok(module);
    }
    let fetched = tokio::select! {
        fetched = fetch_module(executors, &wasm.module) => fetched,
        () = cancel.killed() => return Err(killed_before_start()),
    };
    let cached = match fetched {
        Ok(cached) => cached,
        Err(e) => return Err(failed(e.to_string())),
    };
    let bytes = match tokio::fs::read(&cached.path).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return Err(failed(format!(
                "cannot read the cached module {}: {e}",
                cached.path.display()
            )));
        }
    };
    let loader = executors.wasm.clone();
    // Compiling is CPU work: off the async workers.
    let loading = tokio::task::spawn_blocking(move || loader.load(&bytes));
    let loaded = tokio::select! {
        loaded = loading => loaded,
        () = cancel.killed() => return Err(killed_before_start()),
    };
    match loaded {
        Ok(Ok(module)) => Ok(module),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Err(e) => Err(failed(format!("loading the module ended abnormally: {e}"))),
    }
}

async fn run_wasm(
    executors: &Executors,
    spec: &TaskSpec,
    wasm: &WasmTask,
    cancel: &Cancel,
    driver: &mpsc::Sender<Input>,
) -> RunnerUpdate {
    let module = match load_module(executors, wasm, cancel).await {
        Ok(module) => module,
        Err(ended) => return ended,
    };
    let sandbox = match create_sandbox(executors, spec).await {
        Ok(sandbox) => sandbox,
        Err(ended) => return ended,
    };
    let run = match TaskRun::from_spec(spec, sandbox) {
        Ok(run) => run,
        Err(reason) => return failed(reason.to_string()),
    };
    let handle = executors.wasm.start(module, run);
    let reports = UsageReports::start(executors, spec, handle.usage(), None);
    let _ = driver
        .send(Input::Runner {
            task_id: spec.task_id.clone(),
            update: RunnerUpdate::Running(LiveOutput::Wasm(handle.output())),
        })
        .await;
    let kill = handle.kill_switch();
    let wait = handle.wait();
    tokio::pin!(wait);
    let report = tokio::select! {
        report = &mut wait => report,
        () = cancel.killed() => {
            kill.kill();
            wait.await
        }
    };
    reports.finish().await;
    RunnerUpdate::Ended {
        outcome: report.outcome,
        stdout: report.stdout,
        stderr: report.stderr,
    }
}

async fn run_oci(
    executors: &Executors,
    spec: &TaskSpec,
    cancel: &Cancel,
    driver: &mpsc::Sender<Input>,
) -> RunnerUpdate {
    let Some(oci) = executors.oci.clone() else {
        return failed("this agent runs no OCI tasks (runc is not set up on it)".to_owned());
    };
    let sandbox = match create_sandbox(executors, spec).await {
        Ok(sandbox) => sandbox,
        Err(ended) => return ended,
    };
    let launch_spec = spec.clone();
    let launching = tokio::task::spawn_blocking(move || oci.launch(&launch_spec, &sandbox));
    let container = match launching.await {
        Ok(Ok(container)) => Arc::new(container),
        Ok(Err(e)) => return failed(format!("cannot start the container: {e}")),
        Err(e) => return failed(format!("starting the container ended abnormally: {e}")),
    };
    let _ = driver
        .send(Input::Runner {
            task_id: spec.task_id.clone(),
            update: RunnerUpdate::Running(LiveOutput::Oci(container.clone())),
        })
        .await;
    let reports = UsageReports::start(executors, spec, TaskUsage::new(), Some(container.clone()));
    let ended = watch_container(container, &spec.task_id, cancel).await;
    reports.finish().await;
    ended
}

/// A task's [`TaskUsageReport`]s: put every [`TASK_USAGE_PERIOD_MS`] by a background task
/// while it runs, and once more, marked ended, by [`UsageReports::finish`].
struct UsageReports {
    link: NetLink,
    key: String,
    last: TaskUsageReport,
    usage: Arc<TaskUsage>,
    periodic: tokio::task::JoinHandle<()>,
}

impl UsageReports {
    /// For a container, `usage` is sampled from its cgroup before each report.
    fn start(
        executors: &Executors,
        spec: &TaskSpec,
        usage: Arc<TaskUsage>,
        container: Option<Arc<OciContainer>>,
    ) -> UsageReports {
        let link = executors.link.clone();
        let key = executors.keys.agent_metrics(executors.agent_id.as_str());
        let last = TaskUsageReport {
            agent_id: executors.agent_id.clone(),
            task_id: spec.task_id.clone(),
            cpu_seconds: 0.0,
            memory_bytes: 0,
            ended: false,
        };
        let periodic = {
            let (link, key, template, usage) =
                (link.clone(), key.clone(), last.clone(), usage.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(TASK_USAGE_PERIOD_MS));
                loop {
                    tick.tick().await;
                    if let Some(container) = &container {
                        sample_cgroup(container, &usage);
                    }
                    let report = measured(&template, &usage, false);
                    put_report(&link, &key, &report).await;
                }
            })
        };
        UsageReports {
            link,
            key,
            last,
            usage,
            periodic,
        }
    }

    async fn finish(self) {
        self.periodic.abort();
        let report = measured(&self.last, &self.usage, true);
        put_report(&self.link, &self.key, &report).await;
    }
}

/// Puts a usage report if the session is open (it is not while the agent started
/// without a master; reports are for dashboards, nothing waits on them).
async fn put_report(link: &NetLink, key: &str, report: &TaskUsageReport) {
    let Some(net) = link.now() else {
        return;
    };
    if let Err(e) = net.put(key, report).await {
        tracing::debug!(%e, "could not put a task usage report");
    }
}

fn measured(template: &TaskUsageReport, usage: &TaskUsage, ended: bool) -> TaskUsageReport {
    TaskUsageReport {
        cpu_seconds: usage.cpu_seconds(),
        memory_bytes: usage.memory_bytes(),
        ended,
        ..template.clone()
    }
}

/// Two small reads of cgroupfs (kernel memory, not disk), so done in place.
fn sample_cgroup(container: &OciContainer, usage: &TaskUsage) {
    let Some(cgroup) = container.cgroup() else {
        return;
    };
    if let Some(ns) = cgroup.cpu_usage_ns() {
        usage.set_cpu_ns(ns);
    }
    if let Some(bytes) = cgroup.memory_bytes() {
        usage.set_memory_bytes(bytes);
    }
}

/// Waits for a running container to end (killing it when told), removes it, and says
/// how it ended. Also used for containers recovered after an agent restart.
pub(crate) async fn watch_container(
    container: Arc<OciContainer>,
    task_id: &proto::TaskId,
    cancel: &Cancel,
) -> RunnerUpdate {
    let waiter = {
        let container = container.clone();
        let grace = cancel.grace();
        tokio::task::spawn_blocking(move || container.wait(grace))
    };
    tokio::pin!(waiter);
    let waited = tokio::select! {
        outcome = &mut waiter => outcome,
        () = cancel.killed() => {
            let (container, grace) = (container.clone(), cancel.grace());
            let _ = tokio::task::spawn_blocking(move || container.kill(grace)).await;
            waiter.await
        }
    };
    let outcome = waited.unwrap_or_else(|e| TaskOutcome {
        state: TaskState::Failed,
        exit_code: None,
        reason: format!("waiting for the container ended abnormally: {e}"),
        stdout_tail: String::new(),
    });
    let removed = tokio::task::spawn_blocking(move || {
        let output = container.output(proto::admin::LOG_STREAM_BYTES_MAX);
        (output, container.remove())
    })
    .await;
    let (stdout, stderr) = match removed {
        Ok((output, removed)) => {
            if let Err(e) = removed {
                tracing::warn!(%task_id, %e, "could not remove a container");
            }
            output
        }
        Err(e) => {
            tracing::warn!(%task_id, %e, "could not read or remove a container");
            Default::default()
        }
    };
    RunnerUpdate::Ended {
        outcome,
        stdout,
        stderr,
    }
}
