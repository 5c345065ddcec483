//! The agent daemon: one device in the cluster, a pump around [`agent_core::AgentNode`].
//!
//! It declares `agents/<id>/alive`, serves `agents/<id>/cmd` (launch, kill, acknowledge)
//! and runs tasks on the WASM executor (and the OCI executor when configured), fetching
//! modules through the module store into a cache on disk. Every rule lives in
//! `agent_core`: which launches are refused, when the [`AgentAdvert`] is published (on
//! start, when the master (re)appears, when told of a change with
//! [`AgentHandle::set_advert`], and every `advert_period_ms`), how status updates are
//! delivered at least once (published on `agents/<id>/status` when they happen and again,
//! backing off from `status_retry_ms` to `status_retry_max_ms`, until the master relays
//! the acknowledgement of that uuid; a newer status supersedes an unacknowledged older
//! one, a terminal one is never superseded, a task is forgotten once its terminal status
//! is acknowledged) and what a restart recovers from the journal. The daemon feeds the
//! node its inputs with the time and carries out its actions: zenoh puts, journal writes
//! ([`journal`]), runners started and cancelled.
//!
//! Running tasks' output, and that of the last [`OUTPUTS_KEPT_MAX`] ended tasks (at most
//! [`OUTPUTS_KEPT_BYTES_MAX`] together), is served on `agents/<id>/logs` (see
//! `proto::admin::LogsRequest`).

mod driver;
mod ended_outputs;
pub mod error;
pub mod journal;
mod link;
mod runner;
mod sandboxes;
mod work_lock;

pub use error::DaemonError;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent::oci::{OciConfig, OciExecutor};
use agent::wasm::{EngineKind, ExecutorConfig, WasmExecutor};
use net::modules::ModuleCache;
use net::{AliveToken, Liveness, Net, NetConfig, Responder};
use proto::admin::LogsRequest;
use proto::{AgentAdvert, AgentCommand, AgentId, MasterCensus, TaskId, TaskStatus};
use signing::TrustedKeys;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use link::{NetLink, NetLinkSetter};
use runner::{Executors, RunnerUpdate};
use sandboxes::Sandboxes;

pub use agent_core::{
    ADVERT_PERIOD_MS_DEFAULT, STATUS_RETRY_MAX_MS_DEFAULT, STATUS_RETRY_MS_DEFAULT,
};
/// Tasks an agent holds at once (running, or ended with the end not yet acknowledged);
/// launches beyond it are refused.
pub const TASKS_MAX: usize = agent_core::TASKS_MAX_DEFAULT;
/// Inputs queued for the driver; the queryable and runners wait when it is full.
pub const INPUTS_QUEUED_MAX: usize = 1024;
/// Inputs the driver takes at once when they are waiting: their journal changes are one
/// commit, one sync.
pub const INPUTS_BATCH_MAX: usize = 64;
/// Ended tasks whose output is kept for `agents/<id>/logs`; the oldest go first.
pub const OUTPUTS_KEPT_MAX: usize = 256;
/// Bytes the kept output of ended tasks may hold together (each stream of each task
/// holds at most `LOG_STREAM_BYTES_MAX`, 1 MiB, so 256 of them could take 512 MiB of a
/// small device); the oldest go first.
pub const OUTPUTS_KEPT_BYTES_MAX: usize = 32 << 20;

/// How to run an agent.
#[derive(Clone, Debug)]
pub struct AgentDaemonConfig {
    pub net: NetConfig,
    /// Identity, attributes and resources (from `agent::detect::advert`); `seq`, `tasks`
    /// and `version` are kept by the node, and `incarnation` (the clock in ms) is raised
    /// past the last one taken on the work directory if the clock went back.
    pub advert: AgentAdvert,
    /// Holds `modules/` (the module cache), `code-cache/`, `sandboxes/`, and the OCI
    /// executor's directories.
    pub work_dir: PathBuf,
    pub advert_period_ms: u64,
    /// The wait before an unacknowledged status update is first sent again; it doubles
    /// after every resend up to `status_retry_max_ms`.
    pub status_retry_ms: u64,
    pub status_retry_max_ms: u64,
    /// `None`: OCI tasks fail with a reason saying this agent runs none.
    pub oci: Option<OciConfig>,
    /// Keys whose signed modules run here; with any, every other module fails before it
    /// is compiled, with a reason saying why (unsigned, tampered, untrusted key). None:
    /// every module runs. With `shared`, the shared executor's own keys apply instead.
    pub trusted: TrustedKeys,
    /// What runs WASM tasks' code (with `shared`, the shared executor's engine instead).
    pub engine: EngineKind,
    /// `Some`: run on these parts instead of opening a session and an engine of its own.
    pub shared: Option<SharedParts>,
}

/// What many agents of one process may share: one zenoh session (instead of `net`) and
/// one WASM engine with its epoch thread. For virtual agents in scale tests and benches,
/// where a thousand agents each with a session and an engine would starve the machine;
/// each agent still has its own key space, token, work dir and driver.
#[derive(Clone)]
pub struct SharedParts {
    pub net: Net,
    pub wasm: WasmExecutor,
}

impl std::fmt::Debug for SharedParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedParts").finish_non_exhaustive()
    }
}

impl AgentDaemonConfig {
    pub fn new(
        net: NetConfig,
        advert: AgentAdvert,
        work_dir: impl Into<PathBuf>,
    ) -> AgentDaemonConfig {
        AgentDaemonConfig {
            net,
            advert,
            work_dir: work_dir.into(),
            advert_period_ms: ADVERT_PERIOD_MS_DEFAULT,
            status_retry_ms: STATUS_RETRY_MS_DEFAULT,
            status_retry_max_ms: STATUS_RETRY_MAX_MS_DEFAULT,
            oci: None,
            trusted: TrustedKeys::default(),
            engine: EngineKind::Native,
            shared: None,
        }
    }
}

/// What the driver is told.
pub(crate) enum Input {
    Command(Box<AgentCommand>, Responder),
    Logs(LogsRequest, Responder),
    Runner {
        task_id: TaskId,
        update: RunnerUpdate,
    },
    MasterAppeared,
    MasterGone,
    MasterCensus(MasterCensus),
    SetAdvert(Box<AgentAdvert>),
    Tasks(oneshot::Sender<Vec<TaskStatus>>),
    Shutdown(oneshot::Sender<()>),
}

/// How long one look for a live token of this agent's id waits for answers.
const AGENT_ID_CHECK_TIMEOUT_MS: u64 = 1_000;
/// How long a starting agent waits for a live token of its id to go before it refuses to
/// start: longer than zenoh's session lease (10 s), so that the token of this agent's own
/// previous process (killed, its session not yet timed out) is gone by then, while
/// another live agent's stays.
const AGENT_ID_CLAIM_WAIT_MS: u64 = 12_000;

pub struct AgentDaemon;

impl AgentDaemon {
    /// Sets up the executors and caches, opens the session, declares the token and the
    /// command queryable, and starts advertising. Returns once the session is open; if no
    /// master answers within [`OFFLINE_START_AFTER_MS`], the agent's driver starts before
    /// that (it recovers the journal and restarts in place the tasks whose policy says so,
    /// as with no master at all) and the session is taken up when it opens.
    pub async fn start(mut config: AgentDaemonConfig) -> Result<AgentHandle, DaemonError> {
        let agent_id = config.advert.agent_id.clone();
        proto::keys::valid_chunk("agent id", agent_id.as_str())
            .map_err(|e| DaemonError::AgentId(agent_id.to_string(), e))?;
        // Before anything reads or writes the work directory.
        let work_lock = work_lock::WorkDirLock::acquire(&config.work_dir)?;
        config.advert.incarnation = work_lock.next_incarnation(config.advert.incarnation)?;
        let (link_setter, executors) = executors(&config)?;
        let owns_net = config.shared.is_none();
        let (inputs_tx, inputs_rx) = mpsc::channel(INPUTS_QUEUED_MAX);
        let (taken_over_tx, taken_over) = watch::channel(false);
        let driver = driver::Driver::new(&config, executors, inputs_tx.clone(), taken_over_tx);
        let (net, driver) = match open_quickly(&config).await {
            Ok(net) => (net, DriverStart::Later(Box::new(driver), inputs_rx)),
            Err(e) => {
                tracing::warn!(%e, wait_ms = OFFLINE_START_AFTER_MS, "no master answers; the agent starts on its own (tasks with a restart policy are restarted here) and keeps waiting for one");
                // Aborted if starting fails below (the `?`s drop it).
                let running = AbortOnDrop(tokio::spawn(driver.run(inputs_rx)));
                (Net::open(&config.net).await?, DriverStart::Running(running))
            }
        };
        let keys = net.keys().clone();
        let alive_key = keys.agent_alive(agent_id.as_str());
        // First come, first served: an id whose holder is alive is not taken over.
        claim_id(&net, &alive_key, &agent_id).await?;
        let token = net.declare_alive(&alive_key).await?;
        let commands = net
            .serve::<AgentCommand>(&keys.agent_cmd(agent_id.as_str()))
            .await?;
        let logs = net
            .serve::<LogsRequest>(&keys.agent_logs(agent_id.as_str()))
            .await?;
        let master = net.watch_alive(&keys.master_alive()).await?;
        let census = net.subscribe::<MasterCensus>(&keys.master_census()).await?;
        let pumps = vec![
            commands.pump_into(&inputs_tx, |command, responder| {
                Input::Command(Box::new(command), responder)
            }),
            logs.pump_into(&inputs_tx, Input::Logs),
            pump_master(master, &inputs_tx),
            pump_census(census, &inputs_tx),
        ];
        link_setter.set(net.clone());
        let driver = match driver {
            DriverStart::Later(driver, inputs_rx) => {
                AbortOnDrop(tokio::spawn(driver.run(inputs_rx)))
            }
            DriverStart::Running(running) => running,
        };
        tracing::info!(%agent_id, "agent started");
        Ok(AgentHandle {
            agent_id,
            owns_net,
            net,
            inputs: inputs_tx,
            driver,
            pumps,
            _token: token,
            taken_over,
            _work_lock: work_lock,
        })
    }
}

/// Waits (at most [`AGENT_ID_CLAIM_WAIT_MS`]) until no live token holds the agent's id:
/// first come, first served, so a live agent's id is never taken over.
async fn claim_id(net: &Net, alive_key: &str, agent_id: &AgentId) -> Result<(), DaemonError> {
    let started = std::time::Instant::now();
    let mut said = false;
    while net.alive_now(alive_key, AGENT_ID_CHECK_TIMEOUT_MS).await? {
        if started.elapsed() >= Duration::from_millis(AGENT_ID_CLAIM_WAIT_MS) {
            return Err(DaemonError::AgentIdInUse(agent_id.to_string()));
        }
        if !said {
            said = true;
            tracing::warn!(%agent_id, wait_ms = AGENT_ID_CLAIM_WAIT_MS, "another agent with this id is alive; waiting for it to go (a previous process of this agent goes within the session lease)");
        }
        tokio::time::sleep(Duration::from_millis(AGENT_ID_CHECK_TIMEOUT_MS / 2)).await;
    }
    Ok(())
}

/// Tells the driver each time the master appears; says when it goes.
fn pump_master(mut master: net::AliveWatch, inputs: &mpsc::Sender<Input>) -> JoinHandle<()> {
    let inputs = inputs.clone();
    tokio::spawn(async move {
        while let Some(change) = master.recv().await {
            let input = if matches!(change, Liveness::Gone { .. }) {
                tracing::warn!(
                    "the master is gone; waiting for it (tasks keep running, and those with a restart policy are restarted here when they end)"
                );
                Input::MasterGone
            } else {
                tracing::info!("master reachable");
                Input::MasterAppeared
            };
            if inputs.send(input).await.is_err() {
                return;
            }
        }
    })
}

fn pump_census(
    mut census: net::Subscription<MasterCensus>,
    inputs: &mpsc::Sender<Input>,
) -> JoinHandle<()> {
    let inputs = inputs.clone();
    tokio::spawn(async move {
        while let Some(received) = census.recv().await {
            if inputs
                .send(Input::MasterCensus(received.message))
                .await
                .is_err()
            {
                return;
            }
        }
    })
}

/// How long a starting agent waits for a master before it starts on its own.
pub const OFFLINE_START_AFTER_MS: u64 = 2_000;

/// The driver, started before the session opened (no master answered at first) or not.
enum DriverStart {
    Later(Box<driver::Driver>, mpsc::Receiver<Input>),
    Running(AbortOnDrop),
}

/// The driver's task, aborted when dropped: with the handle, or, for a driver started
/// before the session opened, when the agent then fails to start.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The shared session, or a session of its own if a master answers within
/// [`OFFLINE_START_AFTER_MS`] (a zenoh configuration file's own timeouts apply instead).
async fn open_quickly(config: &AgentDaemonConfig) -> Result<Net, DaemonError> {
    if let Some(shared) = &config.shared {
        return Ok(shared.net.clone());
    }
    let mut quick = config.net.clone();
    quick.connect_timeout_ms = Some(OFFLINE_START_AFTER_MS);
    Ok(Net::open(&quick).await?)
}

fn executors(config: &AgentDaemonConfig) -> Result<(NetLinkSetter, Executors), DaemonError> {
    let work_dir = &config.work_dir;
    let sandboxes_dir = work_dir.join("sandboxes");
    std::fs::create_dir_all(&sandboxes_dir).map_err(|source| DaemonError::WorkDir {
        path: sandboxes_dir.clone(),
        source,
    })?;
    let modules = Arc::new(ModuleCache::open(work_dir.join("modules"))?);
    let wasm_config = ExecutorConfig {
        cache_dir: Some(work_dir.join("code-cache")),
        trusted: config.trusted.clone(),
        engine: config.engine,
        ..ExecutorConfig::default()
    };
    let wasm = match &config.shared {
        Some(shared) => shared.wasm.clone(),
        None => WasmExecutor::new(wasm_config)?,
    };
    let oci = match &config.oci {
        Some(oci_config) => match OciExecutor::new(oci_config.clone()) {
            Ok(executor) => Some(executor),
            Err(e) => {
                tracing::warn!(%e, "the OCI executor cannot start; OCI tasks will fail on this agent");
                None
            }
        },
        None => None,
    };
    let (setter, link) = NetLink::pending();
    // The session's keys: a shared session's own, else those it will have once open.
    let keys = match &config.shared {
        Some(shared) => shared.net.keys().clone(),
        None => proto::Keys::new(&config.net.cluster).map_err(net::NetError::Cluster)?,
    };
    let executors = Executors {
        link,
        keys,
        modules,
        wasm,
        oci,
        sandboxes: Sandboxes::open(sandboxes_dir),
        agent_id: config.advert.agent_id.clone(),
    };
    Ok((setter, executors))
}

/// A running agent; it stops (killing its tasks) when dropped or on
/// [`AgentHandle::shutdown`].
pub struct AgentHandle {
    agent_id: AgentId,
    net: Net,
    /// False when the session is shared with other agents: it stays open at shutdown.
    owns_net: bool,
    inputs: mpsc::Sender<Input>,
    driver: AbortOnDrop,
    pumps: Vec<JoinHandle<()>>,
    _token: AliveToken,
    /// True once the agent stopped because another process has its id.
    taken_over: watch::Receiver<bool>,
    /// Released last: the driver (aborted with `driver`) may still write the journal.
    _work_lock: work_lock::WorkDirLock,
}

impl AgentHandle {
    pub fn agent_id(&self) -> &AgentId {
        &self.agent_id
    }

    pub fn net(&self) -> &Net {
        &self.net
    }

    /// Returns once the agent stopped on its own because the master registered another
    /// process with its id (this one was away long enough to be counted gone, and its
    /// tasks lost); its tasks are killed. Pending forever otherwise.
    pub async fn taken_over(&self) {
        let mut taken_over = self.taken_over.clone();
        if taken_over.wait_for(|t| *t).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The latest status of every task the agent holds; `None` once it stopped.
    pub async fn tasks(&self) -> Option<Vec<TaskStatus>> {
        let (tx, rx) = oneshot::channel();
        self.inputs.send(Input::Tasks(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Replaces identity, attributes and resources (a device changed) and advertises now.
    pub async fn set_advert(&self, advert: AgentAdvert) {
        let _ = self.inputs.send(Input::SetAdvert(Box::new(advert))).await;
    }

    /// Kills the agent's tasks, waits (at most `agent_core::SHUTDOWN_DRAIN_MS`) until the
    /// master acknowledged their ends, tells it the agent leaves (it counts the agent gone
    /// at once, without its lost timeout), withdraws the token and closes the session
    /// (unless shared).
    pub async fn shutdown(self) {
        let (tx, rx) = oneshot::channel();
        if self.inputs.send(Input::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
        self.stop();
        if !self.owns_net {
            return;
        }
        if let Err(e) = self.net.close().await {
            tracing::warn!(%e, "closing the agent's session");
        }
    }

    fn stop(&self) {
        self.driver.0.abort();
        for pump in &self.pumps {
            pump.abort();
        }
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
