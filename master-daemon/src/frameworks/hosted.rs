//! Framework schedulers hosted by the master (`wasmos framework add`): each is a scheduler
//! module (executor-sdk/README.md) run in wasmtime by `policy_host::HostedScheduler`, and a
//! framework like any other over the offer protocol.
//!
//! The master answers [`HostedRequest`]s through its [`HostedDoor`] (on `master/admin`
//! and `master/frameworks/hosted`, see `crate::operator`). An `Add` names a
//! module already in the master's module store; it is compiled (a module that does not
//! compile, imports anything or lacks an export is refused in the reply), subscribed as a
//! framework through `framework::FrameworkClient` on a client session of the master's own
//! endpoints (so the core sees exactly what a remote framework would send), and then one
//! adapter task per framework feeds its events and a tick every [`HOSTED_TICK_MS`] to the
//! module and sends the calls it answers with.
//!
//! Faults, as a contract: a call into the module that traps, runs out of fuel, hits its
//! memory cap or answers garbage is logged (`tracing::error!`, by `HostedScheduler`),
//! reported as an `Event::Error` to the framework and a `scheduler_fault` entry in the
//! operator log (HTTP API and dashboard), counted and shown by `List` (`health`,
//! `failures_total`, `last_error`, in a [`HostedRow`]); the module is
//! retried with backoff and deactivated after repeated failures (`policy_host::FailurePolicy`),
//! while its offers are declined and its status updates acknowledged on its behalf.
//! Module calls run on tokio's blocking pool, so a module using its whole budget delays
//! only its own framework; the master and every other framework keep running.
//!
//! `List` also shows, per framework, how many of its tasks the scheduler was last told
//! are in each state (`task_states`, from the `Update`s it got).
//!
//! Hosted frameworks are kept in the in-process frameworks' state store
//! (`frameworks/hosted.json` in the master's state directory, or etcd with `--etcd`:
//! what was added, and the framework id it got), written on every `Add` and `Remove`; a
//! restarted master (or a standby taking over) hosts them again under the same ids, so
//! they keep their tasks. The modules start afresh: what a scheduler module held in its
//! memory is gone, and it learns its tasks again from their updates.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use framework::{Events, FrameworkClient, FrameworkConfig};
use net::modules::ModuleStore;
use net::{Net, NetConfig};
use policy_host::{
    FailurePolicy, Health, HostedScheduler, Kind, Limits, ModuleCode, SchedulerFault,
};
use proto::operator::{
    HOSTED_CONFIG_BYTES_MAX, HostedFramework, HostedHealth, HostedReply, HostedRequest, HostedRow,
};
use proto::{Call, Event, FrameworkId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use master::view::WallClock;
use net::clock::{Clock, unix_ms};
use proto::Millis;

use crate::Input;
use crate::error::DaemonError;
use jobs::store::StateStore;

/// How often every hosted scheduler gets a `Tick`.
pub const HOSTED_TICK_MS: u64 = 1_000;
/// Hosted frameworks one master runs; further `Add`s are refused.
pub const HOSTED_FRAMEWORKS_MAX: usize = 64;
/// How long a hosted framework's subscription may take before the `Add` is refused.
pub const HOSTED_SUBSCRIBE_TIMEOUT_MS: u64 = 10_000;
/// Tasks whose latest state `List` shows per hosted framework; updates of further tasks
/// are not counted.
pub const HOSTED_TASKS_TRACKED_MAX: usize = 10_000;

/// What the host keeps of one hosted framework, shown by `List` as a [`HostedRow`].
#[derive(Clone, Debug)]
struct Hosted {
    name: String,
    module: String,
    sha256: String,
    health: Health,
    failures_total: u64,
    last_error: Option<String>,
    /// The latest state of each task the scheduler was told of (by an `Update`).
    task_states: BTreeMap<proto::TaskId, proto::TaskState>,
}

#[derive(Default)]
struct Registry {
    rows: BTreeMap<FrameworkId, Hosted>,
    adapters: Vec<JoinHandle<()>>,
    /// What stops each framework's adapter (it tears the framework down first).
    stops: BTreeMap<FrameworkId, oneshot::Sender<()>>,
    /// Names of the `Add`s under way, counted against [`HOSTED_FRAMEWORKS_MAX`].
    adding: BTreeSet<String>,
}

impl Registry {
    /// The framework of that name, hosted or being added.
    fn name_taken(&self, name: &str) -> Option<String> {
        let hosted = self.rows.iter().find(|(_, h)| h.name == name);
        match hosted {
            Some((id, _)) => Some(format!("framework {id}")),
            None => self
                .adding
                .contains(name)
                .then(|| "one being added".to_owned()),
        }
    }
}

type SharedRegistry = Arc<Mutex<Registry>>;

fn lock(registry: &SharedRegistry) -> std::sync::MutexGuard<'_, Registry> {
    // A panic elsewhere leaves rows that are still worth showing.
    registry.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The kept hosted frameworks, in the in-process frameworks' [`StateStore`].
pub const HOSTED_BLOB: &str = "hosted.json";
/// How long the master keeps a hosted framework's tasks while it is away: a week, since
/// it comes back with the master that hosts it.
pub const HOSTED_FAILOVER_TIMEOUT_MS: u64 = 7 * 24 * 3600 * 1000;

/// One kept hosted framework.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Kept {
    framework_id: FrameworkId,
    framework: HostedFramework,
}

/// What every `Add` needs: where modules are, how to run them, how to reach the master.
struct Host {
    member: Net,
    store: Arc<ModuleStore>,
    engine: wasmtime::Engine,
    limits: Limits,
    policy: FailurePolicy,
    clock: Clock,
    registry: SharedRegistry,
    faults: mpsc::Sender<Input>,
    /// Where they are kept; `None`: not kept.
    state: Option<Arc<dyn StateStore>>,
    kept: Mutex<BTreeMap<FrameworkId, HostedFramework>>,
}

/// The hosted frameworks of one master; they stop when this is dropped.
pub struct HostedFrameworks {
    host: Arc<Host>,
    registry: SharedRegistry,
    member: Net,
}

/// Where the operator's [`HostedRequest`]s are answered; cheap to clone.
#[derive(Clone)]
pub struct HostedDoor(Arc<Host>);

impl HostedDoor {
    pub(crate) async fn answer(&self, request: HostedRequest) -> HostedReply {
        self.0.clone().answer(request).await
    }
}

impl HostedFrameworks {
    /// Hosted frameworks reach the master through a client session of `member_config`
    /// (the master's own endpoints).
    /// Those kept in `state` are added again in the background, under their ids.
    pub(crate) async fn start(
        member_config: &NetConfig,
        store: Arc<ModuleStore>,
        limits: Limits,
        faults: mpsc::Sender<Input>,
        state: Option<Arc<dyn StateStore>>,
    ) -> Result<HostedFrameworks, DaemonError> {
        let member = Net::open(member_config).await?;
        let engine = policy_host::sandbox::engine().map_err(DaemonError::Modules)?;
        let registry = SharedRegistry::default();
        let host = Arc::new(Host {
            member: member.clone(),
            store,
            engine,
            limits,
            policy: FailurePolicy::default(),
            clock: Clock::start(),
            registry: registry.clone(),
            faults,
            kept: Mutex::new(BTreeMap::new()),
            state,
        });
        let kept = host.read_kept().await;
        if !kept.is_empty() {
            let host = host.clone();
            lock(&registry).adapters.push(tokio::spawn(async move {
                for Kept {
                    framework_id,
                    framework,
                } in kept
                {
                    host.add_again(framework_id, framework).await;
                }
            }));
        }
        Ok(HostedFrameworks {
            host,
            registry,
            member,
        })
    }

    /// Where operators manage them.
    pub(crate) fn door(&self) -> HostedDoor {
        HostedDoor(self.host.clone())
    }

    /// Stops every hosted framework and closes its session (the master then sees their
    /// tokens go).
    pub async fn shutdown(self) {
        self.stop();
        if let Err(e) = self.member.close().await {
            tracing::warn!(%e, "closing the hosted frameworks' session");
        }
    }

    fn stop(&self) {
        for adapter in &lock(&self.registry).adapters {
            adapter.abort();
        }
    }
}

impl Drop for HostedFrameworks {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Host {
    async fn read_kept(&self) -> Vec<Kept> {
        let Some(store) = &self.state else {
            return Vec::new();
        };
        let place = store.place(HOSTED_BLOB);
        let bytes = match store.load(HOSTED_BLOB).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Vec::new(),
            Err(e) => {
                tracing::error!(%place, %e, "cannot read the kept hosted frameworks");
                return Vec::new();
            }
        };
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::error!(%place, %e, "the kept hosted frameworks do not parse; none is hosted again");
            Vec::new()
        })
    }

    /// Writes what is kept (whole: the old list or the new one).
    async fn write_kept(&self) {
        let Some(store) = &self.state else { return };
        let kept: Vec<Kept> = (self
            .kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter())
        .map(|(framework_id, framework)| Kept {
            framework_id: framework_id.clone(),
            framework: framework.clone(),
        })
        .collect();
        let written = match serde_json::to_vec(&kept) {
            Ok(bytes) => store.save(HOSTED_BLOB, bytes).await,
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = written {
            let place = store.place(HOSTED_BLOB);
            tracing::error!(%place, %e, "cannot keep the hosted frameworks; a restart would not host them again");
        }
    }

    async fn keep(&self, framework_id: &FrameworkId, framework: Option<&HostedFramework>) {
        {
            let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
            match framework {
                Some(f) => kept.insert(framework_id.clone(), f.clone()),
                None => kept.remove(framework_id),
            };
        }
        self.write_kept().await;
    }

    /// A kept framework, hosted again under its id (under a new one should the master
    /// refuse it); kept until it is removed, even when it cannot be hosted now.
    async fn add_again(self: &Arc<Host>, framework_id: FrameworkId, framework: HostedFramework) {
        let name = framework.name.clone();
        self.kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(framework_id.clone(), framework.clone());
        match self
            .add_as(framework.clone(), Some(framework_id.clone()))
            .await
        {
            Ok(id) if id != framework_id => {
                tracing::warn!(framework_id = %id, was = %framework_id, %name, "hosted framework hosted again under a new id");
                self.keep(&framework_id, None).await;
                self.keep(&id, Some(&framework)).await;
            }
            Ok(id) => {
                tracing::info!(framework_id = %id, %name, "hosted framework hosted again after a restart")
            }
            Err(message) => {
                tracing::error!(%framework_id, %name, %message, "a kept hosted framework could not be hosted again")
            }
        }
    }

    async fn answer(self: Arc<Host>, request: HostedRequest) -> HostedReply {
        match request {
            HostedRequest::List => self.list(),
            HostedRequest::Remove { name } => self.remove(&name).await,
            HostedRequest::Add(framework) => {
                let name = framework.name.clone();
                match self.add(framework).await {
                    Ok(framework_id) => {
                        tracing::info!(%framework_id, %name, "hosted framework added");
                        HostedReply::Added { framework_id }
                    }
                    Err(message) => {
                        tracing::warn!(%name, %message, "hosted framework refused");
                        HostedReply::Error { message }
                    }
                }
            }
        }
    }

    fn list(&self) -> HostedReply {
        let wall = WallClock {
            wall_ms: unix_ms(),
            master_now: self.clock.now(),
        };
        let rows = lock(&self.registry)
            .rows
            .iter()
            .map(|(id, hosted)| hosted_row(id, hosted, wall))
            .collect();
        HostedReply::List { rows }
    }

    /// Tears the named framework down and forgets it.
    async fn remove(&self, name: &str) -> HostedReply {
        let removed = {
            let mut registry = lock(&self.registry);
            let found = registry.rows.iter().find(|(_, h)| h.name == name);
            let Some(framework_id) = found.map(|(id, _)| id.clone()) else {
                return HostedReply::Error {
                    message: format!(
                        "no hosted framework is named {name:?}; see `wasmos framework list`"
                    ),
                };
            };
            registry.rows.remove(&framework_id);
            let stop = registry.stops.remove(&framework_id);
            (framework_id, stop)
        };
        let (framework_id, stop) = removed;
        self.keep(&framework_id, None).await;
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        tracing::info!(%framework_id, %name, "hosted framework removed");
        HostedReply::Removed { framework_id }
    }

    /// Adds and keeps a framework.
    async fn add(self: &Arc<Host>, framework: HostedFramework) -> Result<FrameworkId, String> {
        let kept = framework.clone();
        let framework_id = self.add_as(framework, None).await?;
        self.keep(&framework_id, Some(&kept)).await;
        Ok(framework_id)
    }

    /// Reserves a place, loads and subscribes the framework (as `framework_id` if given),
    /// starts its adapter.
    async fn add_as(
        self: &Arc<Host>,
        framework: HostedFramework,
        framework_id: Option<FrameworkId>,
    ) -> Result<FrameworkId, String> {
        {
            let mut registry = lock(&self.registry);
            if registry.rows.len() + registry.adding.len() >= HOSTED_FRAMEWORKS_MAX {
                return Err(format!(
                    "this master hosts {HOSTED_FRAMEWORKS_MAX} frameworks already"
                ));
            }
            if let Some(holder) = registry.name_taken(&framework.name) {
                return Err(format!(
                    "the name {:?} is taken by {holder}; choose another, or `wasmos framework remove {}` first",
                    framework.name, framework.name
                ));
            }
            registry.adding.insert(framework.name.clone());
        }
        let added = self.load_and_subscribe(&framework, framework_id).await;
        let mut registry = lock(&self.registry);
        registry.adding.remove(&framework.name);
        let (client, events, scheduler) = added?;
        let framework_id = client.framework_id().clone();
        registry.rows.insert(
            framework_id.clone(),
            Hosted {
                name: framework.name.clone(),
                module: framework.module.name.clone(),
                sha256: framework.module.sha256.0.clone(),
                health: Health::Healthy,
                failures_total: 0,
                last_error: None,
                task_states: BTreeMap::new(),
            },
        );
        let adapter = Adapter {
            client,
            scheduler: Some(scheduler),
            clock: self.clock,
            registry: self.registry.clone(),
            faults: self.faults.clone(),
        };
        let (stop, stopped) = oneshot::channel();
        registry.stops.insert(framework_id.clone(), stop);
        registry
            .adapters
            .push(tokio::spawn(adapter.run(events, stopped)));
        Ok(framework_id)
    }

    async fn load_and_subscribe(
        &self,
        framework: &HostedFramework,
        framework_id: Option<FrameworkId>,
    ) -> Result<(FrameworkClient, Events, HostedScheduler), String> {
        if framework.config.len() > HOSTED_CONFIG_BYTES_MAX {
            return Err(format!(
                "the config is {} bytes, over the limit of {HOSTED_CONFIG_BYTES_MAX}",
                framework.config.len()
            ));
        }
        if !(framework.weight.is_finite() && framework.weight > 0.0) {
            return Err(format!(
                "weight {} is not a positive number",
                framework.weight
            ));
        }
        let code = self.compile(framework).await?;
        let scheduler =
            HostedScheduler::new(&framework.name, code, framework.config.clone(), self.policy);
        let mut config =
            FrameworkConfig::new(&framework.name).with_role(&framework.role, framework.weight);
        // The module acknowledges updates itself (the SDK does after `update`); when it
        // cannot, `HostedScheduler::deliver_event` answers with the acknowledgement.
        config.implicit_acknowledgements = false;
        config.subscribe_timeout_ms = HOSTED_SUBSCRIBE_TIMEOUT_MS;
        config.info.failover_timeout_ms = HOSTED_FAILOVER_TIMEOUT_MS;
        if let Some(id) = framework_id {
            config.info.framework_id = Some(id.clone());
            match FrameworkClient::subscribe(self.member.clone(), config.clone()).await {
                Ok((client, events)) => return Ok((client, events, scheduler)),
                Err(e) => {
                    tracing::warn!(%id, %e, "the master refused the kept framework id; subscribing anew");
                    config.info.framework_id = None;
                }
            }
        }
        let (client, events) = FrameworkClient::subscribe(self.member.clone(), config)
            .await
            .map_err(|e| format!("cannot subscribe the framework: {e}"))?;
        Ok((client, events, scheduler))
    }

    /// The module from the store, compiled on the blocking pool.
    async fn compile(&self, framework: &HostedFramework) -> Result<ModuleCode, String> {
        let sha256 = &framework.module.sha256;
        let path = self
            .store
            .path_of(sha256)
            .map_err(|e| format!("module {}: {e}", framework.module.name))?;
        let bytes = tokio::fs::read(&path).await.map_err(|e| {
            format!(
                "module {} ({}) is not in the master's store; upload it first: {e}",
                framework.module.name, sha256.0
            )
        })?;
        let (engine, limits) = (self.engine.clone(), self.limits);
        let trusted = self.store.trusted().clone();
        tokio::task::spawn_blocking(move || {
            // The store checked it on upload, but it may have been stored before the master
            // trusted keys: checked again before it is compiled.
            trusted.check(&bytes).map_err(|refused| {
                format!("refused: {refused} (only modules signed by a trusted key run here)")
            })?;
            ModuleCode::compile(&engine, &bytes, Kind::Scheduler, limits).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("compiling the module stopped: {e}"))?
        .map_err(|e| format!("module {}: {e}", framework.module.name))
    }
}

fn hosted_row(framework_id: &FrameworkId, hosted: &Hosted, clock: WallClock) -> HostedRow {
    let (health, retry_at_ms) = match hosted.health {
        Health::Healthy => (HostedHealth::Healthy, None),
        Health::BackingOff { until_ms } => {
            (HostedHealth::BackingOff, Some(clock.wall(Millis(until_ms))))
        }
        Health::Deactivated => (HostedHealth::Deactivated, None),
    };
    let mut task_states = BTreeMap::new();
    for state in hosted.task_states.values() {
        *task_states.entry(*state).or_default() += 1;
    }
    HostedRow {
        framework_id: framework_id.clone(),
        name: hosted.name.clone(),
        module: hosted.module.clone(),
        sha256: hosted.sha256.clone(),
        health,
        retry_at_ms,
        failures_total: hosted.failures_total,
        last_error: hosted.last_error.clone(),
        task_states,
    }
}

/// What wakes an adapter.
enum Wake {
    Event(Event),
    Tick,
}

/// One hosted framework: events and ticks into the module, its calls out.
struct Adapter {
    client: FrameworkClient,
    /// Lent to the blocking pool during a call.
    scheduler: Option<HostedScheduler>,
    clock: Clock,
    registry: SharedRegistry,
    faults: mpsc::Sender<Input>,
}

impl Adapter {
    async fn run(mut self, mut events: Events, mut stop: oneshot::Receiver<()>) {
        let mut tick = tokio::time::interval(Duration::from_millis(HOSTED_TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = tokio::select! {
                event = events.recv() => match event {
                    Some(event) => Wake::Event(event),
                    None => return,
                },
                _ = tick.tick() => Wake::Tick,
                _ = &mut stop => return self.teardown().await,
            };
            let Some(calls) = self.deliver(wake).await else {
                return;
            };
            for call in calls {
                if let Err(e) = self.client.call(call).await {
                    tracing::warn!(framework_id = %self.client.framework_id(), %e, "a hosted scheduler's call failed");
                }
            }
        }
    }

    /// Removed by the operator: the master tears the framework down and kills its tasks.
    async fn teardown(&self) {
        if let Err(e) = self.client.call(Call::Teardown).await {
            tracing::warn!(framework_id = %self.client.framework_id(), %e, "tearing a removed hosted framework down failed");
        }
    }

    /// Runs the module on the blocking pool; `None` when the scheduler is gone (a panic).
    async fn deliver(&mut self, wake: Wake) -> Option<Vec<Call>> {
        let mut scheduler = self.scheduler.take()?;
        let now_ms = self.clock.now().0;
        if let Wake::Event(Event::Update { status }) = &wake {
            self.track(status);
        }
        let joined = tokio::task::spawn_blocking(move || {
            let (calls, fault) = match wake {
                Wake::Event(event) => scheduler.deliver_event(now_ms, &event),
                Wake::Tick => match scheduler.tick(now_ms) {
                    Ok(calls) => (calls, None),
                    Err(fault) => (Vec::new(), Some(fault)),
                },
            };
            (scheduler, calls, fault)
        })
        .await;
        let (scheduler, calls, fault) = match joined {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(framework_id = %self.client.framework_id(), %e, "hosted scheduler stopped");
                return None;
            }
        };
        self.record(&scheduler, fault);
        self.scheduler = Some(scheduler);
        Some(calls)
    }

    fn track(&self, status: &proto::TaskStatus) {
        let mut registry = lock(&self.registry);
        let Some(row) = registry.rows.get_mut(self.client.framework_id()) else {
            return;
        };
        let tracked = row.task_states.len() < HOSTED_TASKS_TRACKED_MAX;
        if tracked || row.task_states.contains_key(&status.task_id) {
            row.task_states.insert(status.task_id.clone(), status.state);
        }
    }

    fn record(&self, scheduler: &HostedScheduler, fault: Option<SchedulerFault>) {
        let mut registry = lock(&self.registry);
        let Some(row) = registry.rows.get_mut(self.client.framework_id()) else {
            return;
        };
        row.health = scheduler.health();
        row.failures_total = scheduler.failures_total();
        // Refusals while backing off or deactivated repeat the failure already recorded.
        if let Some(fault @ SchedulerFault::Failed { .. }) = fault {
            let message = format!("scheduler module {}: {fault}", row.name);
            row.last_error = Some(fault.to_string());
            // Dropped when the master is overwhelmed; the log line and `List` still tell.
            let _ = self.faults.try_send(Input::HostedFault {
                framework_id: self.client.framework_id().clone(),
                message,
            });
        }
    }
}
