//! The master daemon: `master::Master` driven over zenoh, the operator API, and the
//! frameworks that run inside the master process ([`frameworks`]).
//!
//! Architecture invariant: the daemon decides nothing; `master::Master` decides
//! everything (agent loss, framework token waits and the events held meanwhile, what a
//! refused or unanswered launch becomes, status uuids). The daemon moves messages and
//! reads the clock. Keys come from `proto::Keys`, bytes from `proto`'s codec, transport
//! from the `net` crate.
//!
//! One driver task owns the core and is the only one to touch it; input pumps turn zenoh
//! traffic into [`Input`]s on one bounded channel, and the driver carries out the core's
//! actions. One timer, armed at the earlier of the core's `poll_timeout` and the next
//! operator snapshot, drives time.
//!
//! | key | what the daemon does | where the decision lives |
//! |---|---|---|
//! | `agents/*/advert` | `handle_agent_advert` | core (an advert without a token starts the agent's lost clock) |
//! | `agents/*/status` | `handle_status` | core |
//! | `agents/*/alive` | `handle_agent_token(present)` | core: lost after `MasterConfig::agent_lost_timeout_ms` unless it returns |
//! | `agents/*/leave` | `handle_agent_left` | core: gone at once; a task it still held is lost |
//! | `agents/<id>/cmd` | queried for launches, kills and acknowledgements; a launch's outcome goes back in as `handle_launch_outcome` | core: refused → `failed`, unanswered → `lost` and the agent unreachable |
//! | `master/calls/*` | `handle_call` with the caller the key proves ([`principals`]); the reply carries the core's answer or its refusal | core (ownership, roles, OCI: `master::Policy`) |
//! | `master/alive` | declared once everything above is in place | daemon (start-up order) |
//! | `master/census` | the core's `AnnounceCensus`, kept by agents and listed in their adverts | core (`census.rs`: when; a successor ends its re-registration window with it) |
//! | `frameworks/*/*/alive` | `handle_framework_token(present)` | core: events held until the token, for at most `MasterConfig::framework_token_wait_ms` after subscribing; token gone → disconnected |
//! | `frameworks/<owner>/<id>/events` | the core's `SendEvent`s; reclaim notices and hosted schedulers' faults as `Error` events | core |
//! | `modules/*`, `master/upload/*` | the module store |
//! | `master/admin/*` | the operator protocol (`proto::operator`), answered by [`operator`] as the HTTP API is (see [`crate::tools`]), for the caller the key proves | core (`master::Policy::check_operator`) |

mod driver;
pub mod error;
mod explain;
pub mod frameworks;
pub mod operator;
pub mod principals;
mod pumps;
pub mod security;
mod state_lock;
pub mod tools;

pub use error::DaemonError;
pub use operator::JobSubmitter;
pub use principals::Principals;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use http_api::ClusterState;

use master::{Master, MasterConfig, Millis, OperatorKillError};
use net::modules::{ModuleServer, ModuleStore};
use net::{AliveToken, Net, NetConfig, Responder};
use proto::{AgentAdvert, AgentId, FrameworkCall, FrameworkId, TaskId, TaskStatus};
use signing::TrustedKeys;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::frameworks::InProcessFrameworks;
use crate::frameworks::hosted::HostedFrameworks;
use net::clock::{Clock, unix_ms};

/// An agent whose liveliness token went is declared lost this long after, unless the
/// token comes back first (the core's `MasterConfig::agent_lost_timeout_ms`).
pub use master::config::AGENT_LOST_TIMEOUT_MS_DEFAULT;
/// How long events for a newly subscribed framework wait for its liveliness token; after
/// that they are sent anyway and the framework counts as disconnected (the core's
/// `MasterConfig::framework_token_wait_ms`).
pub use master::config::FRAMEWORK_TOKEN_WAIT_MS_DEFAULT;
/// How long the master waits for an agent to answer a command.
pub const AGENT_COMMAND_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// Events held per framework while waiting for its token; beyond it the oldest go (the
/// default of the core's `MasterConfig::events_held_per_framework_max`).
pub const EVENTS_HELD_PER_FRAMEWORK_MAX: usize =
    master::config::EVENTS_HELD_PER_FRAMEWORK_MAX_DEFAULT;
/// Inputs queued for the driver; pumps wait (and zenoh holds traffic) when it is full.
pub const INPUTS_QUEUED_MAX: usize = 4096;
/// Framework calls queued for the driver, apart from the other inputs: the driver takes
/// from both queues in turn, so that a backlog of agents' messages does not keep calls
/// waiting past their callers' timeouts (a full queue of statuses held an `Accept` for
/// more than 5 s under load).
pub const CALLS_QUEUED_MAX: usize = 1024;
/// Agent commands in flight at once; the driver waits for a slot beyond it.
pub const AGENT_COMMANDS_IN_FLIGHT_MAX: usize = 256;

/// How to run a master.
#[derive(Clone, Debug)]
pub struct MasterDaemonConfig {
    pub net: NetConfig,
    /// The core's configuration, with every period and limit the master decides by
    /// (`agent_lost_timeout_ms`, `framework_token_wait_ms`, ...); an `incarnation` of 0 is
    /// replaced by the wall clock in milliseconds at start, so that ids never repeat
    /// across restarts.
    pub core: MasterConfig,
    /// Seed of the core's generator.
    pub seed: u64,
    /// Directory of the module store.
    pub store_dir: PathBuf,
    /// The master's own state apart from modules: `frameworks/` keeps the frameworks run
    /// in this process (the jobs framework's id and jobs, hosted schedulers), so that
    /// they survive a restart.
    pub state_dir: PathBuf,
    /// etcd endpoints (`--etcd`): the in-process frameworks keep their state there
    /// instead of `state_dir`, so that a standby master taking over goes on with it.
    pub etcd: Vec<String>,
    /// Start the built-in jobs framework (`wasmos run`, `POST /api/v1/jobs`).
    pub jobs: bool,
    /// How long a command to an agent may go unanswered; an unanswered launch is
    /// reported to the core as [`master::LaunchOutcome::Unanswered`].
    pub agent_command_timeout_ms: u64,
    /// Where to serve the operator HTTP API, `/metrics` and the dashboard; `None`: not
    /// served. Port 0 picks a free port ([`MasterHandle::http_addr`] tells which).
    pub http: Option<SocketAddr>,
    /// The cluster's HTTP bearer tokens (`secure::LiveTokenBook::open`: a token made later works at once): with them, every HTTP
    /// request but `/health` and the dashboard's files needs one, and each command from
    /// HTTP carries its caller. `None`: the HTTP API is open, every caller anonymous.
    pub http_tokens: Option<Arc<secure::LiveTokenBook>>,
    /// The allocation policy: `drf` (the built-in) or the path of an allocator module
    /// (`policy_host::allocator_from_spec`; a module that fails a pass is replaced by the
    /// built-in DRF for that pass, with an error logged).
    pub allocator: String,
    /// Budgets of every module the master runs: hosted schedulers as given, the allocator
    /// with `metering` set to a wall-clock deadline (`policy_host::Metering::Deadline`).
    pub module_limits: policy_host::Limits,
    /// Keys whose signed modules the master takes: with any, the module store refuses
    /// every other upload (the uploader is told why), and so are hosted scheduler and
    /// allocator modules not signed by one. None: every module is taken.
    pub trusted: TrustedKeys,
    /// Who may call (with `net.tls` and `net.access_control` on a secure cluster); the
    /// policy they are held to is `core.policy`.
    pub principals: Principals,
}

impl MasterDaemonConfig {
    /// A master keeping modules in `store_dir` and its other state beside it, in
    /// `<store_dir>.state`; no jobs framework.
    pub fn new(net: NetConfig, store_dir: impl Into<PathBuf>) -> MasterDaemonConfig {
        let store_dir: PathBuf = store_dir.into();
        let mut state_dir = store_dir.clone().into_os_string();
        state_dir.push(".state");
        MasterDaemonConfig {
            net,
            core: MasterConfig::default(),
            seed: 0,
            store_dir,
            state_dir: state_dir.into(),
            etcd: Vec::new(),
            jobs: false,
            agent_command_timeout_ms: AGENT_COMMAND_TIMEOUT_MS_DEFAULT,
            http: None,
            http_tokens: None,
            allocator: "drf".to_owned(),
            module_limits: policy_host::Limits::default(),
            trusted: TrustedKeys::default(),
            principals: Principals::Anyone,
        }
    }
}

/// A read of the core between two inputs, with the core's time.
pub(crate) type CoreRead = Box<dyn FnOnce(&Master, Millis) + Send>;

/// What the driver is told, by the pumps and by the handle.
pub(crate) enum Input {
    Advert(AgentAdvert),
    Status(TaskStatus),
    AgentAlive(AgentId),
    AgentGone(AgentId),
    AgentLeft(AgentId),
    /// What became of a launch sent to an agent.
    LaunchOutcome {
        agent_id: AgentId,
        task_id: TaskId,
        outcome: master::LaunchOutcome,
    },
    /// A scheduler module hosted here failed a call.
    HostedFault {
        framework_id: FrameworkId,
        message: String,
    },
    FrameworkAlive(FrameworkId),
    FrameworkGone(FrameworkId),
    /// A framework call and its caller, as the key it came on proves it (on the calls'
    /// own queue, [`CALLS_QUEUED_MAX`]).
    Call(proto::Principal, FrameworkCall, Responder),
    /// From the operator ([`operator`]): the latest snapshot, published anew first if
    /// anything changed, so that a tool sees what it just did.
    Snapshot(oneshot::Sender<Arc<ClusterState>>),
    Inspect(CoreRead),
    /// What an agent's task uses, for the operator's rows.
    TaskUsage(proto::TaskUsageReport),
    /// From the operator ([`operator`]): a request the policy refused, for the log.
    Refused(String),
    /// From the operator ([`operator`]): kill a task in the operator's name.
    KillTask {
        task_id: TaskId,
        reply: oneshot::Sender<Result<(), OperatorKillError>>,
    },
}

pub struct MasterDaemon;

impl MasterDaemon {
    /// The core, with the allocation policy `config` asks for.
    fn core(config: &MasterDaemonConfig) -> Result<Master, DaemonError> {
        // A live master is not reproducible anyway: its allocator module gets a wall-clock
        // deadline, cheaper than fuel on the hot path (policy-host/README.md).
        let allocator_limits = policy_host::Limits {
            metering: policy_host::Metering::Deadline,
            ..config.module_limits
        };
        let allocator = policy_host::allocator_from_spec(
            &config.allocator,
            config.seed ^ master::BUILTIN_DRF_SEED_MIX,
            allocator_limits,
            &config.trusted,
        )?;
        tracing::info!(allocator = allocator.name(), "allocation policy");
        Ok(Master::with_allocator(
            config.core.clone(),
            config.seed,
            allocator,
        ))
    }

    /// What only one master may have, taken first so that a port or a state directory in
    /// use fails the start before anything else is up: the HTTP port, and (without etcd)
    /// the state directory.
    async fn claim(
        config: &MasterDaemonConfig,
    ) -> Result<
        (
            Option<tokio::net::TcpListener>,
            Option<state_lock::StateLock>,
        ),
        DaemonError,
    > {
        let http_listener = match config.http {
            Some(addr) => Some(operator::bind_http(addr).await?),
            None => None,
        };
        let state_lock = (config.etcd.is_empty())
            .then(|| state_lock::StateLock::acquire(&config.state_dir))
            .transpose()?;
        Ok((http_listener, state_lock))
    }

    /// Opens the session, serves the module store, starts the driver, declares every
    /// subscriber and queryable, and only then declares `master/alive`, so that agents
    /// and frameworks that react to the token find everything in place.
    pub async fn start(mut config: MasterDaemonConfig) -> Result<MasterHandle, DaemonError> {
        if config.core.incarnation == 0 {
            config.core.incarnation = unix_ms();
        }
        let (http_listener, state_lock) = MasterDaemon::claim(&config).await?;
        let net = Net::open(&config.net).await?;
        // Start-up only: a directory listing, not worth a blocking-pool round trip.
        let store =
            Arc::new(ModuleStore::open(&config.store_dir)?.trusting(config.trusted.clone()));
        let modules = ModuleServer::start(&net, store.clone(), upload_gate(&config)).await?;
        let (inputs_tx, inputs_rx) = mpsc::channel(INPUTS_QUEUED_MAX);
        let (calls_tx, calls_rx) = mpsc::channel(CALLS_QUEUED_MAX);
        // The core first (a WASM allocator is compiled here), then the pumps: an input
        // nobody reads fills zenoh's queue and stalls the link it came in on.
        let core = MasterDaemon::core(&config)?;
        let (jobs, jobs_slot) = watch::channel(None);
        let driver = driver::Driver::new(
            core,
            net.clone(),
            Clock::start(),
            &config,
            inputs_tx.clone(),
            jobs_slot.clone(),
        );
        let state = driver.cluster_state();
        let driver = tokio::spawn(driver.run(inputs_rx, calls_rx));
        let pumps = pumps::start(&net, &inputs_tx, calls_tx, &config.principals).await?;
        let (hosted_door, hosted_slot) = watch::channel(None);
        let ctx = operator::OperatorContext::new(
            net.clone(),
            inputs_tx.clone(),
            jobs_slot,
            hosted_slot,
            store.clone(),
            config.principals.clone(),
            Arc::new(config.core.policy.clone()),
        );
        let (operator_tasks, http_addr) = operator::serve(
            http_listener,
            config.http_tokens.clone(),
            ctx,
            state.clone(),
        )
        .await?;
        let token = net.declare_alive(&net.keys().master_alive()).await?;
        let endpoints = net.endpoints().await;
        let frameworks = MasterDaemon::frameworks(&endpoints, &config, &store, &inputs_tx).await?;
        hosted_door.send_replace(Some(frameworks.hosted.door()));
        jobs.send_replace(frameworks.jobs_submitter());
        tracing::info!(
            ?endpoints,
            incarnation = config.core.incarnation,
            "master started"
        );
        Ok(MasterHandle {
            _state_lock: state_lock,
            net,
            endpoints,
            store,
            inputs: inputs_tx,
            driver,
            pumps,
            _modules: modules,
            _token: token,
            frameworks: Some(frameworks),
            state,
            http_addr,
            jobs,
            operator: operator_tasks,
        })
    }
}

impl MasterDaemon {
    /// The frameworks run in this process, connected to the master as members.
    async fn frameworks(
        endpoints: &[String],
        config: &MasterDaemonConfig,
        store: &Arc<ModuleStore>,
        inputs: &mpsc::Sender<Input>,
    ) -> Result<InProcessFrameworks, DaemonError> {
        // As the master itself: over TLS with its identity on a secure cluster.
        let mut member = NetConfig::member(endpoints.to_vec()).with_cluster(&config.net.cluster);
        if let Some(tls) = &config.net.tls {
            member = member.with_tls(&config.net.principal, tls.clone());
        }
        let hosted = HostedFrameworks::start(
            &member,
            store.clone(),
            config.module_limits,
            inputs.clone(),
            Some(frameworks::state_store(config)?),
        )
        .await?;
        let jobs = InProcessFrameworks::start_jobs(&member, config).await?;
        Ok(InProcessFrameworks { hosted, jobs })
    }
}

/// Uploads as the policy allows the caller the key proves.
fn upload_gate(config: &MasterDaemonConfig) -> net::modules::UploadGate {
    let (principals, policy) = (config.principals.clone(), config.core.policy.clone());
    // Net::open refuses a bad cluster name before any upload can come.
    let keys = proto::Keys::new(&config.net.cluster).unwrap_or_default();
    Arc::new(move |key: &str| {
        let caller = principals
            .caller(&keys, key)
            .ok_or_else(|| Principals::unknown(key))?;
        policy
            .check_upload(&caller)
            .map_err(|refusal| format!("refused: {refusal}"))
    })
}

/// A running master; it stops when this is dropped or [`MasterHandle::shutdown`].
pub struct MasterHandle {
    net: Net,
    endpoints: Vec<String>,
    store: Arc<ModuleStore>,
    inputs: mpsc::Sender<Input>,
    driver: JoinHandle<()>,
    pumps: Vec<JoinHandle<()>>,
    _modules: ModuleServer,
    _token: AliveToken,
    /// The jobs framework and scheduler modules run in this process.
    frameworks: Option<InProcessFrameworks>,
    state: watch::Receiver<Arc<ClusterState>>,
    http_addr: Option<SocketAddr>,
    jobs: watch::Sender<Option<Arc<dyn JobSubmitter>>>,
    /// The operator's queryables, the HTTP server and the task answering its commands.
    operator: Vec<JoinHandle<()>>,
    /// This master's hold on its state directory (none with etcd).
    _state_lock: Option<state_lock::StateLock>,
}

impl MasterHandle {
    /// The zenoh endpoints the master listens on, e.g. `tcp/127.0.0.1:7447`.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    pub fn net(&self) -> &Net {
        &self.net
    }

    /// The module store, for modules added in process (`wasmos up`).
    pub fn store(&self) -> &Arc<ModuleStore> {
        &self.store
    }

    /// Where the HTTP API and the dashboard are served (the port picked when the
    /// configuration asked for port 0); `None` when not served.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The snapshots the HTTP API serves, the latest first; a new one at most every
    /// [`http_api::SNAPSHOT_INTERVAL_MS_MIN`].
    pub fn cluster_state(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.state.clone()
    }

    /// Hands operators' jobs (`wasmos run`, `POST /api/v1/jobs`, and cancelling its tasks
    /// not launched yet) to a jobs framework connected to this master; replaces the one
    /// attached before. Until then, submissions are refused "jobs framework not running".
    pub fn attach_jobs(&self, jobs: Arc<dyn JobSubmitter>) {
        self.jobs.send_replace(Some(jobs));
    }

    /// Runs `read` on the core between two inputs and returns its result: the way to read
    /// the views (`Master::tasks_view`, `agents_view`, ...). `None` once the driver ended.
    pub async fn inspect<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Master) -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let job: CoreRead = Box::new(move |core, _| {
            let _ = tx.send(read(core));
        });
        self.inputs.send(Input::Inspect(job)).await.ok()?;
        rx.await.ok()
    }

    /// Stops the master: its token goes, its queryables and subscribers end, the session
    /// closes.
    pub async fn shutdown(mut self) {
        if let Some(frameworks) = self.frameworks.take() {
            frameworks.shutdown().await;
        }
        self.stop();
        if let Err(e) = self.net.close().await {
            tracing::warn!(%e, "closing the master's session");
        }
    }

    fn stop(&self) {
        self.driver.abort();
        for task in self.pumps.iter().chain(&self.operator) {
            task.abort();
        }
    }
}

impl Drop for MasterHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
