//! The virtual-time loop of `wasmos sim`: the real master core and a real agent core per
//! scenario agent, messages between them delivered at once (or not at all, across a cut
//! link), time moved to the next thing that is due.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use master::allocator::{Allocator, DrfAllocator, GpuAgents};
use master::{Master, MasterConfig};
use proto::{
    AgentAdvert, AgentId, Call, CallReply, Event, FrameworkCall, FrameworkId, FrameworkInfo,
    Millis, Offer, Resources, TaskId, TaskStatus,
};

use crate::fleet::Fleet;
use crate::frameworks::{ModuleFramework, SimScheduler, SynthFramework, TaskEnds};
use crate::report::{Outcomes, SimReport};
use crate::scenario::{Fault, Scenario, ScenarioError, ScenarioFramework, resources_of};

/// The seed of a simulation whose scenario gives none: runs are reproducible.
pub const SIM_SEED: u64 = 0x5eed;
/// Each step moves virtual time once; a run needing more is stopped with an error.
pub const SIM_STEPS_MAX: u64 = 10_000_000;
/// Tasks launched in one run; a run launching more is stopped with an error.
pub const SIM_TASKS_MAX: u64 = 1_000_000;
/// Timers this far out mean "never" (agents' periodic adverts, see `fleet`).
const SIM_TIME_NEVER: Millis = Millis(1 << 39);

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// A step is a moment something is due: a task's end, a fault, or one of the master's
    /// and agents' periodic timers (about every second of virtual time).
    #[error(
        "the run did not settle within {steps} steps ({at_ms} ms of virtual time): a run whose tasks keep ending, with frameworks of unlimited tasks, reaching far in virtual time (long task durations, late faults), or whose allocator offers nothing while frameworks still want offers goes on: give `until_ms`"
    )]
    StepLimit { steps: u64, at_ms: u64 },
    #[error(
        "the run launched more than {max} tasks: give `until_ms`, or frameworks fewer tasks (`max_tasks`)"
    )]
    TaskLimit { max: u64 },
    #[error(
        "the master stopped making progress while framework {framework} could still launch (a master bug)"
    )]
    Stalled { framework: String },
    #[error("the master refused a call of framework {framework}: {message} (a master bug)")]
    Refused { framework: String, message: String },
    #[error("framework {framework}: its scheduler cannot be used: {message}")]
    Scheduler { framework: String, message: String },
}

/// Makes the scheduler of a scenario framework that names one; the error says why not.
pub type SchedulerLoader<'l> =
    dyn FnMut(&ScenarioFramework) -> Result<Box<dyn SimScheduler>, String> + 'l;

/// Makes the allocation policy of each master of a run (one at start, one per restart),
/// given the run's seed.
pub type AllocatorFactory<'l> = dyn FnMut(u64) -> Box<dyn Allocator + Send> + 'l;

/// Parses `json` and runs it with the built-in DRF allocator.
pub fn run_scenario(json: &str) -> Result<SimReport, SimError> {
    run_scenario_with(json, &mut |seed| Box::new(DrfAllocator::new(seed)))
}

/// Parses `json` and runs it with `allocators`' policy; a framework with a `scheduler` is
/// an error (see [`run_scenario_with_schedulers`]).
pub fn run_scenario_with(
    json: &str,
    allocators: &mut AllocatorFactory<'_>,
) -> Result<SimReport, SimError> {
    run_scenario_with_schedulers(json, allocators, &mut |f| {
        Err(format!(
            "scheduler {:?}: this runner loads no scheduler modules",
            f.scheduler.as_deref().unwrap_or_default()
        ))
    })
}

/// Parses `json` and runs it with `allocators`' policy, the frameworks that name a
/// `scheduler` answered by what `load` makes of them.
pub fn run_scenario_with_schedulers(
    json: &str,
    allocators: &mut AllocatorFactory<'_>,
    load: &mut SchedulerLoader<'_>,
) -> Result<SimReport, SimError> {
    run_scenario_weighed(json, allocators, load, &mut || None).map(|(report, _)| report)
}

/// What the simulated cluster's cores held at the end of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreWeight {
    /// Heap bytes the master and the simulated agents held (their state machines, and per
    /// agent the few vectors the simulation keeps beside its node): what the heap in use
    /// fell by when they were dropped. Ids the report still names are not in it.
    pub bytes: u64,
    pub agents: u64,
}

/// As [`run_scenario_with_schedulers`], and the heap the cores held at the end, weighed
/// with `heap_in_use` (bytes allocated and not yet freed, `None` where unknown).
pub fn run_scenario_weighed(
    json: &str,
    allocators: &mut AllocatorFactory<'_>,
    load: &mut SchedulerLoader<'_>,
    heap_in_use: &mut dyn FnMut() -> Option<u64>,
) -> Result<(SimReport, Option<CoreWeight>), SimError> {
    let mut scenario = Scenario::parse(json)?;
    let mut sim = Sim::new(&mut scenario, allocators)?;
    sim.subscribe_all(&scenario, load)?;
    sim.run(allocators)?;
    let report = sim.report(&scenario);
    let agents = sim.fleet.agents.len() as u64;
    let (master, fleet) = (sim.master, sim.fleet);
    let before = heap_in_use();
    drop((master, fleet));
    let weight = before.zip(heap_in_use()).map(|(before, after)| CoreWeight {
        bytes: before.saturating_sub(after),
        agents,
    });
    Ok((report, weight))
}

/// A run in progress.
pub(crate) struct Sim {
    pub(crate) master: Master,
    config: MasterConfig,
    seed: u64,
    /// Virtual time of the current master's time zero: each master counts from its start.
    origin: Millis,
    pub(crate) now: Millis,
    until: Option<Millis>,
    pub(crate) fleet: Fleet,
    pub(crate) frameworks: BTreeMap<FrameworkId, SynthFramework>,
    pub(crate) modules: BTreeMap<FrameworkId, ModuleFramework>,
    /// Every framework's subscription, in subscription order, to subscribe again after a
    /// master restart.
    subscriptions: Vec<(String, FrameworkInfo)>,
    pub(crate) durations: BTreeMap<FrameworkId, u64>,
    /// Events for module frameworks, not yet delivered.
    pub(crate) module_inbox: VecDeque<(FrameworkId, Event)>,
    /// Offers for synthetic frameworks, not yet answered.
    pub(crate) inbox: VecDeque<Offer>,
    /// Status updates for synthetic frameworks, not yet acknowledged.
    pub(crate) updates: VecDeque<(FrameworkId, TaskStatus)>,
    /// Tasks launched by `(framework, agent)`, each as its index in the scenario, so that
    /// the report lists them in scenario order without looking at every pair.
    pub(crate) placements: BTreeMap<(usize, usize), u64>,
    /// Each framework's index in the scenario.
    pub(crate) scenario_index: BTreeMap<FrameworkId, usize>,
    pub(crate) launched: u64,
    /// Tasks whose duration runs out, `(when, task) -> agent`.
    pub(crate) ends: BTreeMap<(Millis, TaskId), usize>,
    pub(crate) end_at: BTreeMap<TaskId, Millis>,
    /// Every task ever started on an agent (a second start is a broken invariant).
    pub(crate) started: BTreeSet<TaskId>,
    faults: VecDeque<Fault>,
    /// Agents cut off from the current master, and when it will have declared them lost.
    pub(crate) lost_at: BTreeMap<usize, Millis>,
    pub(crate) told: TaskEnds,
    pub(crate) violations: Vec<String>,
}

impl Sim {
    /// The run's master and fleet. Each agent's resources and attributes move from the
    /// scenario into its advert (the report needs only ids): a large fleet is not held
    /// twice.
    fn new(
        scenario: &mut Scenario,
        allocators: &mut AllocatorFactory<'_>,
    ) -> Result<Sim, SimError> {
        let seed = scenario.seed.unwrap_or(SIM_SEED);
        let config = MasterConfig {
            incarnation: 1,
            offer_timeout_ms: None,
            allocation_batch_ms: 0,
            reclaim: None,
            role_weights: scenario.role_weights()?,
            filters_per_framework_max: scenario.agents.len().max(1),
            ..MasterConfig::default()
        };
        let mut faults: Vec<Fault> = scenario.faults.clone();
        faults.sort_by_key(|f| f.at_ms);
        let mut sim = Sim {
            master: Master::with_allocator(config.clone(), seed, allocators(seed)),
            config,
            seed,
            origin: Millis::ZERO,
            now: Millis::ZERO,
            until: scenario.until_ms.map(Millis),
            fleet: Fleet::with_capacity(scenario.agents.len()),
            frameworks: BTreeMap::new(),
            modules: BTreeMap::new(),
            subscriptions: Vec::new(),
            durations: BTreeMap::new(),
            module_inbox: VecDeque::new(),
            inbox: VecDeque::new(),
            updates: VecDeque::new(),
            placements: BTreeMap::new(),
            scenario_index: BTreeMap::new(),
            launched: 0,
            ends: BTreeMap::new(),
            end_at: BTreeMap::new(),
            started: BTreeSet::new(),
            faults: faults.into(),
            lost_at: BTreeMap::new(),
            told: TaskEnds::default(),
            violations: Vec::new(),
        };
        for a in &mut scenario.agents {
            let total = resources_of(&format!("agent {}", a.id), &a.resources)?;
            a.resources = BTreeMap::new();
            let attributes = std::mem::take(&mut a.attributes);
            let i = sim.fleet.add(advert(&a.id, attributes, total));
            sim.join(i);
        }
        Ok(sim)
    }

    pub(crate) fn incarnation(&self) -> u64 {
        self.config.incarnation
    }

    /// The current master's clock.
    pub(crate) fn master_now(&self) -> Millis {
        Millis(self.now.ms_since(self.origin))
    }

    /// Agent `i` shows its token to the master and registers with it.
    fn join(&mut self, i: usize) {
        let now = self.master_now();
        let id = self.fleet.agents[i].id.clone();
        self.master.handle_agent_token(now, &id, true);
        self.fleet.agents[i].node.handle_master_appeared(self.now);
        self.drain_agent(i);
    }

    /// Subscribes every scenario framework. A task of nothing changes no share and no free
    /// resources, so when such tasks are launched does not change anyone else's count;
    /// subscribing their frameworks first launches them while agents still have something
    /// to offer.
    fn subscribe_all(
        &mut self,
        scenario: &Scenario,
        load: &mut SchedulerLoader<'_>,
    ) -> Result<(), SimError> {
        for (index, f) in scenario.frameworks.iter().enumerate() {
            self.subscribe_new(index, f, load)?;
        }
        Ok(())
    }

    fn subscribe_new(
        &mut self,
        index: usize,
        f: &ScenarioFramework,
        load: &mut SchedulerLoader<'_>,
    ) -> Result<(), SimError> {
        // A synthetic framework is offered only agents its task fits on (Mesos'
        // `min_allocatable_resources`): without it, every framework is offered every full
        // agent once, to decline it, and a large fleet spends its run on declines.
        let task = match f.scheduler {
            None => resources_of(&format!("framework {}", f.id), f.task_amounts())?,
            Some(_) => Resources::new(),
        };
        let info = FrameworkInfo {
            name: f.id.clone(),
            role: f.role().to_owned(),
            // A scenario's weight is its role's, which the master's config holds; a
            // framework in an operator-weighted role gives its own weight inside the
            // role, and scenario frameworks weigh alike there.
            weight: 1.0,
            framework_id: None,
            failover_timeout_ms: 0,
            constraints: f.constraints(),
            min_offer: task.clone(),
            capabilities: f.capabilities.clone(),
        };
        let framework_id = self.subscribe(&f.id, info.clone())?;
        self.scenario_index.insert(framework_id.clone(), index);
        self.subscriptions.push((
            f.id.clone(),
            FrameworkInfo {
                framework_id: Some(framework_id.clone()),
                ..info
            },
        ));
        if let Some(ms) = f.duration_ms {
            self.durations.insert(framework_id.clone(), ms);
        }
        if f.scheduler.is_some() {
            let scheduler = load(f).map_err(|message| SimError::Scheduler {
                framework: f.id.clone(),
                message,
            })?;
            let module = ModuleFramework {
                name: f.id.clone(),
                scheduler,
                launched: 0,
                quiet: true,
            };
            self.modules.insert(framework_id, module);
            return Ok(());
        }
        let synth = SynthFramework {
            name: f.id.clone(),
            task,
            constraints: f.constraints(),
            left: f.max_tasks,
            fill: f.fill,
            launched: 0,
            suppressed: false,
        };
        self.frameworks.insert(framework_id, synth);
        Ok(())
    }

    /// Subscribes one framework and shows its token.
    fn subscribe(&mut self, name: &str, info: FrameworkInfo) -> Result<FrameworkId, SimError> {
        let reply = self.call(name, None, Call::Subscribe { info })?;
        let CallReply::Subscribed { framework_id, .. } = reply else {
            return Err(SimError::Refused {
                framework: name.to_owned(),
                message: format!("{reply:?}"),
            });
        };
        let now = self.master_now();
        self.master.handle_framework_token(now, &framework_id, true);
        Ok(framework_id)
    }

    /// A master restart: the core is dropped with everything in flight to or from it, and a
    /// new one (a new incarnation, counting time from now) learns the cluster from agents
    /// re-registering and frameworks subscribing again with their ids.
    fn restart_master(&mut self, allocators: &mut AllocatorFactory<'_>) -> Result<(), SimError> {
        self.config.incarnation += 1;
        self.master = Master::with_allocator(self.config.clone(), self.seed, allocators(self.seed));
        self.origin = self.now;
        self.inbox.clear();
        self.module_inbox.clear();
        self.updates.clear();
        // The new master never saw the cut-off agents: no lost clock runs for them.
        self.lost_at.clear();
        for i in 0..self.fleet.agents.len() {
            if self.fleet.agents[i].connected {
                self.join(i);
            }
        }
        for (name, info) in self.subscriptions.clone() {
            self.subscribe(&name, info)?;
        }
        // As a real framework does once its master changed: it asks about every task it
        // launched and has not seen end; one the new master does not know (its agent was
        // lost before the restart, or the launch was in flight) comes back `lost`.
        let asks: Vec<(String, FrameworkId, Vec<TaskId>)> = (self.frameworks.iter())
            .map(|(id, f)| (f.name.clone(), id.clone(), f.not_ended(&self.told)))
            .filter(|(_, _, tasks)| !tasks.is_empty())
            .collect();
        for (name, id, tasks) in asks {
            self.call(&name, Some(id), Call::Reconcile { tasks })?;
        }
        for f in self.frameworks.values_mut() {
            f.suppressed = false;
        }
        for m in self.modules.values_mut() {
            m.quiet = true;
        }
        Ok(())
    }

    /// Applies the faults due now.
    fn apply_faults(&mut self, allocators: &mut AllocatorFactory<'_>) -> Result<(), SimError> {
        while self
            .faults
            .front()
            .is_some_and(|f| Millis(f.at_ms) <= self.now)
        {
            let Some(fault) = self.faults.pop_front() else {
                break;
            };
            self.apply_fault(&fault, allocators)?;
            self.check_master();
        }
        Ok(())
    }

    fn apply_fault(
        &mut self,
        fault: &Fault,
        allocators: &mut AllocatorFactory<'_>,
    ) -> Result<(), SimError> {
        use crate::scenario::FaultKind;
        match &fault.kind {
            FaultKind::MasterRestart => self.restart_master(allocators)?,
            FaultKind::AgentLost(id) => self.cut(&AgentId::new(id.as_str())),
            FaultKind::AgentBack(id) => self.reconnect(&AgentId::new(id.as_str())),
        }
        Ok(())
    }

    fn cut(&mut self, id: &AgentId) {
        let Some(i) = self.fleet.find(id) else { return };
        if !self.fleet.agents[i].connected {
            return;
        }
        self.fleet.agents[i].connected = false;
        self.fleet.rearm(i);
        let now = self.master_now();
        self.master.handle_agent_token(now, id, false);
        let lost_at = self.now.plus_ms(self.config.agent_lost_timeout_ms);
        self.lost_at.insert(i, lost_at);
    }

    fn reconnect(&mut self, id: &AgentId) {
        let Some(i) = self.fleet.find(id) else { return };
        if self.fleet.agents[i].connected {
            return;
        }
        self.fleet.agents[i].connected = true;
        self.lost_at.remove(&i);
        self.join(i);
    }

    /// The master's own invariants, recorded when broken.
    pub(crate) fn check_master(&mut self) {
        if let Err(e) = self.master.check_invariants() {
            self.violations
                .push(format!("master at {} ms: {e}", self.now.0));
        }
    }

    /// Calls the master in framework `name`'s name.
    pub(crate) fn call(
        &mut self,
        name: &str,
        id: Option<FrameworkId>,
        call: Call,
    ) -> Result<CallReply, SimError> {
        let now = self.master_now();
        self.master
            .handle_call(
                now,
                &proto::Principal::anonymous(),
                FrameworkCall {
                    framework_id: id,
                    call,
                },
            )
            .map_err(|e| SimError::Refused {
                framework: name.to_owned(),
                message: e.to_string(),
            })
    }

    /// The run: everything due now is done, then time moves to what is due next, until
    /// the run settles or `until_ms` comes.
    fn run(&mut self, allocators: &mut AllocatorFactory<'_>) -> Result<(), SimError> {
        for _ in 0..SIM_STEPS_MAX {
            self.drain()?;
            match self.next_time() {
                Some(at) if at <= self.now => {}
                next => {
                    if self.settled() {
                        self.finish(true);
                        return Ok(());
                    }
                    let Some(at) = next else {
                        // Nothing more will happen. Only a synthetic framework that could
                        // still launch makes that a master bug; a module framework may
                        // hold its offers or wait for tasks that never end.
                        if let Some(framework) = self.could_launch() {
                            return Err(SimError::Stalled { framework });
                        }
                        self.finish(true);
                        return Ok(());
                    };
                    if let Some(until) = self.until
                        && at > until
                    {
                        self.now = self.now.max(until);
                        self.finish(false);
                        return Ok(());
                    }
                    self.now = at;
                }
            }
            self.fire_due(allocators)?;
        }
        Err(SimError::StepLimit {
            steps: SIM_STEPS_MAX,
            at_ms: self.now.0,
        })
    }

    /// What is due next, if anything is ever due.
    fn next_time(&self) -> Option<Millis> {
        let master = self
            .master
            .poll_timeout()
            .map(|at| Millis(self.origin.0.saturating_add(at.0)));
        [
            master,
            self.ends.keys().next().map(|(at, _)| *at),
            self.faults.front().map(|f| Millis(f.at_ms)),
            self.fleet.next_timer(),
        ]
        .into_iter()
        .flatten()
        .filter(|at| *at < SIM_TIME_NEVER)
        .min()
    }

    /// Task ends, faults, agent timers and the master's timer, in that order.
    fn fire_due(&mut self, allocators: &mut AllocatorFactory<'_>) -> Result<(), SimError> {
        self.end_due_tasks();
        self.apply_faults(allocators)?;
        for i in self.fleet.due(self.now) {
            self.fleet.agents[i].node.handle_timeout(self.now);
            self.drain_agent(i);
        }
        let now = self.master_now();
        if self.master.poll_timeout().is_some_and(|at| at <= now) {
            self.master.handle_timeout(now);
        }
        Ok(())
    }

    /// The end checks: the master's books, and (once settled) that no agent still holds
    /// an end its framework was not told of.
    fn finish(&mut self, settled: bool) {
        self.check_master();
        if !settled {
            return;
        }
        for agent in self.fleet.agents.iter().filter(|a| a.connected) {
            for status in agent.node.tasks().filter(|s| s.state.is_terminal()) {
                self.violations.push(format!(
                    "agent {} still holds the unacknowledged end ({}) of task {}",
                    agent.id,
                    status.state.as_str(),
                    status.task_id
                ));
            }
        }
    }

    /// Nothing in flight, nothing scheduled, every cut-off agent already declared lost,
    /// every module framework quiet, and no synthetic framework with tasks left fits on
    /// any agent.
    fn settled(&self) -> bool {
        self.inbox.is_empty()
            && self.module_inbox.is_empty()
            && self.updates.is_empty()
            && self.ends.is_empty()
            && self.faults.is_empty()
            && self.lost_at.values().all(|at| *at < self.now)
            && !self.master.offers_held()
            && self.modules.values().all(|m| m.quiet)
            && self.offers_settled()
            && self.could_launch().is_none()
    }

    fn offers_settled(&self) -> bool {
        self.master.outstanding_offers() == 0
            || (!self.modules.is_empty()
                && self
                    .master
                    .offers_view()
                    .iter()
                    .all(|o| self.modules.contains_key(&o.framework_id)))
    }

    /// A framework with tasks left whose task fits in the free resources of some agent it
    /// accepts and may be offered (it has something free, and no free GPUs unless the
    /// framework may have them).
    ///
    /// Agents whose free resources lack the least every such framework's task needs of
    /// some scalar are passed over without looking at each framework: in a settled large
    /// fleet that is nearly every agent.
    fn could_launch(&self) -> Option<String> {
        let snapshot = self.master.snapshot();
        let wanting: Vec<(&FrameworkId, &SynthFramework)> = self
            .frameworks
            .iter()
            .filter(|(_, f)| f.has_tasks_left())
            .collect();
        let floor = least_of_every(wanting.iter().map(|(_, f)| &f.task));
        let fits = |id: &FrameworkId, f: &SynthFramework, a: &master::allocator::AgentSlot| {
            let gpu_agents = snapshot.frameworks.get(id).map(|slot| slot.gpu_agents);
            (!a.has_free_gpus() || gpu_agents.is_some_and(|g| g != GpuAgents::NotOffered))
                && a.attributes.satisfies(&f.constraints)
                && a.free.contains(&f.task)
        };
        snapshot
            .agents
            .values()
            // An agent with nothing free is never offered, even to a task of nothing.
            .filter(|a| !a.free.is_empty() && a.free.contains(&floor))
            .find_map(|a| wanting.iter().find(|(id, f)| fits(id, f, a)))
            .map(|(_, f)| f.name.clone())
    }

    fn report(&self, scenario: &Scenario) -> SimReport {
        let by_name: BTreeMap<&str, &FrameworkId> = self
            .frameworks
            .iter()
            .map(|(id, f)| (f.name.as_str(), id))
            .chain(self.modules.iter().map(|(id, m)| (m.name.as_str(), id)))
            .collect();
        let mut report = SimReport {
            launched: Vec::new(),
            placements: Vec::new(),
            outcomes: scenario.is_dynamic().then(|| Outcomes {
                violations: self.violations.clone(),
                ..Outcomes::default()
            }),
        };
        for f in &scenario.frameworks {
            let Some(id) = by_name.get(f.id.as_str()) else {
                continue;
            };
            self.report_framework(&f.id, id, &mut report);
        }
        // Shared names, not a copy per row: a large fleet has hundreds of thousands.
        let framework_names: Vec<Arc<str>> = (scenario.frameworks.iter())
            .map(|f| Arc::from(f.id.as_str()))
            .collect();
        report.placements.reserve_exact(self.placements.len());
        for (&(f, a), &n) in &self.placements {
            if let (Some(f), Some(a)) = (framework_names.get(f), self.fleet.agents.get(a)) {
                report.placements.push((f.clone(), a.id.0.clone(), n));
            }
        }
        report
    }

    fn report_framework(&self, name: &str, id: &FrameworkId, report: &mut SimReport) {
        let count = match (self.frameworks.get(id), self.modules.get(id)) {
            (Some(synth), _) => synth.launched,
            (None, Some(module)) => module.launched,
            (None, None) => 0,
        };
        report.launched.push((name.to_owned(), count));
        if let Some(outcomes) = &mut report.outcomes {
            use proto::TaskState;
            for (list, state) in [
                (&mut outcomes.finished, TaskState::Finished),
                (&mut outcomes.lost, TaskState::Lost),
                (&mut outcomes.killed, TaskState::Killed),
            ] {
                list.push((name.to_owned(), self.told.count(id, state)));
            }
        }
    }
}

/// For each scalar that every one of `tasks` asks for, the least any asks: what an agent
/// must have free for any of them to fit.
fn least_of_every<'r>(mut tasks: impl Iterator<Item = &'r Resources>) -> Resources {
    let Some(first) = tasks.next() else {
        return Resources::new();
    };
    let mut floor = first.scalars.clone();
    for task in tasks {
        floor = (floor.iter())
            .filter_map(|(kind, least)| {
                let v = task.scalars.get(kind)?;
                Some((kind.clone(), (*least).min(*v)))
            })
            .collect();
        if floor.is_empty() {
            break;
        }
    }
    Resources {
        scalars: floor,
        ..Resources::new()
    }
}

fn advert(id: &str, attributes: proto::Attributes, total: Resources) -> AgentAdvert {
    AgentAdvert {
        agent_id: AgentId::new(id.to_owned()),
        hostname: id.to_owned(),
        attributes,
        total,
        reserved: Resources::new(),
        seq: 0,
        incarnation: 1,
        tasks: Vec::new(),
        version: "sim".to_owned(),
        last_census: None,
    }
}
