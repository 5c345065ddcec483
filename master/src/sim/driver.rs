//! The virtual-time driver of `wasmos sim`.

use std::collections::{BTreeMap, VecDeque};

use proto::{
    AgentAdvert, AgentId, Call, Event, Filters, FrameworkCall, FrameworkId, FrameworkInfo, Offer,
    Operation, Resources, Scalar, TaskId, TaskKind, TaskLimits, TaskSpec, WasmTask,
};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use super::scenario::{Scenario, ScenarioError, ScenarioFramework, resources_of};
use crate::allocator::{Allocator, DrfAllocator};
use crate::config::MasterConfig;
use crate::master::{Action, Master};
use crate::time::Millis;

/// The seed of every simulation: runs are reproducible.
pub const SIM_SEED: u64 = 0x5eed;
/// Each step is one `handle_timeout`; a run needing more is stopped with an error.
pub const SIM_STEPS_MAX: u64 = 500_000;
/// Tasks launched in one run; a run launching more is stopped with an error.
pub const SIM_TASKS_MAX: u64 = 1_000_000;
/// Declining an offer whose resources cannot hold one task refuses that agent this long.
const SIM_NO_FIT_REFUSE_SECONDS: f64 = 3600.0;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("the run did not settle within {steps} steps")]
    StepLimit { steps: u64 },
    #[error("the run launched more than {max} tasks")]
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

/// A framework's scheduler in a simulation instead of the synthetic behaviour (a scenario
/// entry with `"scheduler"`): it gets every event the master sends its framework, in
/// virtual time, and answers with calls that the master handles as any framework's
/// (`Subscribe` excepted: the simulation subscribes it). Calls the master refuses are the
/// scheduler's mistakes, logged and skipped. Its tasks never end, as every task in a
/// simulation; it gets no ticks.
pub trait SimScheduler: Send {
    fn handle_event(&mut self, now_ms: u64, event: &Event) -> Vec<Call>;
}

/// Makes the scheduler of a scenario framework that names one; the error says why not.
pub type SchedulerLoader<'l> =
    dyn FnMut(&ScenarioFramework) -> Result<Box<dyn SimScheduler>, String> + 'l;

/// What `wasmos sim` prints: tasks launched per framework, and where.
#[derive(Clone, Debug, PartialEq)]
pub struct SimReport {
    /// Per scenario framework, in scenario order.
    pub launched: Vec<(String, u64)>,
    /// `(framework, agent, tasks)` with `tasks > 0`, in scenario order of framework, then agent.
    pub placements: Vec<(String, String, u64)>,
}

impl Serialize for SimReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Placement<'a> {
            framework: &'a str,
            agent: &'a str,
            tasks: u64,
        }
        struct Launched<'a>(&'a [(String, u64)]);
        impl Serialize for Launched<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(self.0.len()))?;
                for (fw, n) in self.0 {
                    map.serialize_entry(fw, n)?;
                }
                map.end()
            }
        }
        let placements: Vec<Placement<'_>> = self
            .placements
            .iter()
            .map(|(f, a, n)| Placement {
                framework: f,
                agent: a,
                tasks: *n,
            })
            .collect();
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("launched", &Launched(&self.launched))?;
        map.serialize_entry("placements", &placements)?;
        map.end()
    }
}

/// Parses `json` and runs it with the built-in DRF allocator.
pub fn run_scenario(json: &str) -> Result<SimReport, SimError> {
    run_scenario_with(json, Box::new(DrfAllocator::new(SIM_SEED)))
}

/// Parses `json` and runs it with `allocator`; a framework with a `scheduler` is an error
/// (see [`run_scenario_with_schedulers`]).
pub fn run_scenario_with(
    json: &str,
    allocator: Box<dyn Allocator + Send>,
) -> Result<SimReport, SimError> {
    run_scenario_with_schedulers(json, allocator, &mut |f| {
        Err(format!(
            "scheduler {:?}: this runner loads no scheduler modules",
            f.scheduler.as_deref().unwrap_or_default()
        ))
    })
}

/// Parses `json` and runs it with `allocator`, the frameworks that name a `scheduler`
/// answered by what `load` makes of them.
pub fn run_scenario_with_schedulers(
    json: &str,
    allocator: Box<dyn Allocator + Send>,
    load: &mut SchedulerLoader<'_>,
) -> Result<SimReport, SimError> {
    let scenario = Scenario::parse(json)?;
    let mut sim = Sim::new(&scenario, allocator, load)?;
    sim.run()?;
    Ok(sim.report(&scenario))
}

/// One synthetic framework.
struct SynthFramework {
    name: String,
    task: Resources,
    /// Agent attributes it requires.
    constraints: Vec<proto::Constraint>,
    /// `None`: unlimited.
    left: Option<u64>,
    launched: u64,
    suppressed: bool,
}

impl SynthFramework {
    fn has_tasks_left(&self) -> bool {
        self.left.is_none_or(|n| n > 0)
    }
}

/// A framework answered by a [`SimScheduler`].
struct ModuleFramework {
    name: String,
    scheduler: Box<dyn SimScheduler>,
    launched: u64,
    /// Suppressed, or answered its latest offers without launching: it asks for nothing
    /// more, so the run may end.
    quiet: bool,
}

struct Sim {
    master: Master,
    now: Millis,
    frameworks: BTreeMap<FrameworkId, SynthFramework>,
    modules: BTreeMap<FrameworkId, ModuleFramework>,
    /// Events for module frameworks, not yet delivered.
    module_inbox: VecDeque<(FrameworkId, Event)>,
    placements: BTreeMap<(FrameworkId, AgentId), u64>,
    /// Offers received and not yet answered.
    inbox: VecDeque<Offer>,
    launched: u64,
}

impl Sim {
    fn new(
        scenario: &Scenario,
        allocator: Box<dyn Allocator + Send>,
        load: &mut SchedulerLoader<'_>,
    ) -> Result<Sim, SimError> {
        let config = MasterConfig {
            incarnation: 1,
            offer_timeout_ms: None,
            allocation_batch_ms: 0,
            reclaim: None,
            role_weights: scenario.role_weights()?,
            filters_per_framework_max: scenario.agents.len().max(1),
            ..MasterConfig::default()
        };
        let mut sim = Sim {
            master: Master::with_allocator(config, SIM_SEED, allocator),
            now: Millis::ZERO,
            frameworks: BTreeMap::new(),
            modules: BTreeMap::new(),
            module_inbox: VecDeque::new(),
            placements: BTreeMap::new(),
            inbox: VecDeque::new(),
            launched: 0,
        };
        for a in &scenario.agents {
            let total = resources_of(&format!("agent {}", a.id), &a.resources)?;
            sim.join(advert(&a.id, a.attributes.clone(), total));
        }
        // A task of nothing changes no share and no free resources, so when such tasks are
        // launched does not change anyone else's count; subscribing their frameworks first
        // launches them while agents still have something to offer.
        let (nothing, rest): (Vec<_>, Vec<_>) = scenario.frameworks.iter().partition(|f| {
            f.scheduler.is_none()
                && f.task_amounts()
                    .values()
                    .all(|v| Scalar::from_units(*v) == Some(Scalar::ZERO))
        });
        for f in nothing.into_iter().chain(rest) {
            let info = FrameworkInfo {
                name: f.id.clone(),
                role: f.role().to_owned(),
                weight: f.weight(),
                framework_id: None,
                failover_timeout_ms: 0,
                constraints: f.constraints(),
                min_offer: Resources::new(),
            };
            let framework_id = sim.subscribe(&f.id, info)?;
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
                sim.modules.insert(framework_id, module);
                continue;
            }
            let task = resources_of(&format!("framework {}", f.id), f.task_amounts())?;
            let synth = SynthFramework {
                name: f.id.clone(),
                task,
                constraints: f.constraints(),
                left: f.max_tasks,
                launched: 0,
                suppressed: false,
            };
            sim.frameworks.insert(framework_id, synth);
        }
        Ok(sim)
    }

    /// An agent joins: its liveliness token, then its advert.
    fn join(&mut self, advert: AgentAdvert) {
        self.master
            .handle_agent_token(self.now, &advert.agent_id, true);
        self.master.handle_agent_advert(self.now, advert);
    }

    fn run(&mut self) -> Result<(), SimError> {
        for _ in 0..SIM_STEPS_MAX {
            self.drain()?;
            match self.master.poll_timeout() {
                Some(at) if at <= self.now => {}
                next => {
                    if self.settled() {
                        return Ok(());
                    }
                    let Some(at) = next else {
                        // Nothing more will happen. Only a synthetic framework that could
                        // still launch makes that a master bug; a module framework may
                        // hold its offers or wait for tasks that never end.
                        return match self.could_launch() {
                            Some(framework) => Err(SimError::Stalled { framework }),
                            None => Ok(()),
                        };
                    };
                    self.now = at;
                }
            }
            self.master.handle_timeout(self.now);
        }
        Err(SimError::StepLimit {
            steps: SIM_STEPS_MAX,
        })
    }

    /// Carries out the master's actions and answers offers until both are exhausted.
    fn drain(&mut self) -> Result<(), SimError> {
        loop {
            if let Some(action) = self.master.poll_action() {
                self.act(action)?;
            } else if let Some((id, event)) = self.module_inbox.pop_front() {
                self.deliver(&id, &event);
            } else if let Some(offer) = self.inbox.pop_front() {
                self.answer(offer)?;
            } else {
                return Ok(());
            }
        }
    }

    fn act(&mut self, action: Action) -> Result<(), SimError> {
        match action {
            Action::SendEvent {
                framework_id,
                event,
            } if self.modules.contains_key(&framework_id) => {
                self.module_inbox.push_back((framework_id, event));
            }
            Action::SendEvent {
                event: Event::Offers { offers },
                ..
            } => self.inbox.extend(offers),
            Action::LaunchTask {
                agent_id,
                framework_id,
                ..
            } => {
                if let Some(module) = self.modules.get_mut(&framework_id) {
                    module.launched += 1;
                }
                self.launched += 1;
                if self.launched > SIM_TASKS_MAX {
                    return Err(SimError::TaskLimit { max: SIM_TASKS_MAX });
                }
                *self.placements.entry((framework_id, agent_id)).or_default() += 1;
            }
            // Tasks never end in a simulation, offers never expire and nothing is killed.
            _ => {}
        }
        Ok(())
    }

    /// One event to a module framework, and its calls to the master.
    fn deliver(&mut self, id: &FrameworkId, event: &Event) {
        let now_ms = self.now.0;
        let Some(module) = self.modules.get_mut(id) else {
            return;
        };
        let calls = module.scheduler.handle_event(now_ms, event);
        if matches!(event, Event::Offers { .. }) {
            module.quiet = !calls.iter().any(|c| matches!(c, Call::Accept { .. }));
        }
        for call in calls {
            match &call {
                Call::Subscribe { .. } => continue,
                Call::Suppress => module.quiet = true,
                Call::Revive => module.quiet = false,
                _ => {}
            }
            let result = self.master.handle_call(
                self.now,
                FrameworkCall {
                    framework_id: Some(id.clone()),
                    call,
                },
            );
            if let Err(e) = result {
                tracing::warn!(framework = %module.name, %e, "the master refused a scheduler module's call");
            }
        }
    }

    /// One synthetic framework's answer to one offer.
    fn answer(&mut self, offer: Offer) -> Result<(), SimError> {
        let id = offer.framework_id.clone();
        let Some(fw) = self.frameworks.get_mut(&id) else {
            return Ok(());
        };
        let decline = |refuse_seconds| Call::Decline {
            offer_ids: vec![offer.offer_id.clone()],
            filters: Filters { refuse_seconds },
        };
        if !fw.has_tasks_left() {
            let suppress = !std::mem::replace(&mut fw.suppressed, true);
            self.call_as(&id, decline(0.0))?;
            if suppress {
                self.call_as(&id, Call::Suppress)?;
            }
            return Ok(());
        }
        if !offer.resources.contains(&fw.task) {
            return self
                .call_as(&id, decline(SIM_NO_FIT_REFUSE_SECONDS))
                .map(|_| ());
        }
        fw.launched += 1;
        fw.left = fw.left.map(|n| n - 1);
        let task = TaskSpec {
            task_id: TaskId(format!("{}-{}", fw.name, fw.launched)),
            name: fw.name.clone(),
            resources: fw.task.clone(),
            kind: TaskKind::Wasm(WasmTask::default()),
            limits: TaskLimits::default(),
        };
        let out_of_tasks = !fw.has_tasks_left();
        let accept = Call::Accept {
            offer_ids: vec![offer.offer_id.clone()],
            operations: vec![Operation::Launch { tasks: vec![task] }],
            filters: Filters {
                refuse_seconds: 0.0,
            },
        };
        self.call_as(&id, accept)?;
        if out_of_tasks {
            if let Some(fw) = self.frameworks.get_mut(&id) {
                fw.suppressed = true;
            }
            self.call_as(&id, Call::Suppress)?;
        }
        Ok(())
    }

    fn call_as(&mut self, id: &FrameworkId, call: Call) -> Result<proto::CallReply, SimError> {
        let name = self
            .frameworks
            .get(id)
            .map(|f| f.name.clone())
            .unwrap_or_default();
        self.call(&name, Some(id.clone()), call)
    }

    /// Subscribes a framework, which then shows its liveliness token.
    fn subscribe(&mut self, name: &str, info: FrameworkInfo) -> Result<FrameworkId, SimError> {
        let reply = self.call(name, None, Call::Subscribe { info })?;
        let proto::CallReply::Subscribed { framework_id, .. } = reply else {
            return Err(SimError::Refused {
                framework: name.to_owned(),
                message: format!("{reply:?}"),
            });
        };
        self.master
            .handle_framework_token(self.now, &framework_id, true);
        Ok(framework_id)
    }

    fn call(
        &mut self,
        name: &str,
        id: Option<FrameworkId>,
        call: Call,
    ) -> Result<proto::CallReply, SimError> {
        self.master
            .handle_call(
                self.now,
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

    /// No offer outstanding (but those a quiet module framework holds), every module
    /// framework quiet, and no synthetic framework with tasks left fits on any agent.
    fn settled(&self) -> bool {
        self.inbox.is_empty()
            && self.module_inbox.is_empty()
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
    /// accepts (and that has something free, so that it can be offered).
    fn could_launch(&self) -> Option<String> {
        let agents = &self.master.snapshot().agents;
        self.frameworks
            .values()
            .find(|f| {
                f.has_tasks_left()
                    && agents.values().any(|a| {
                        // An agent with nothing free is never offered, even to a task of
                        // nothing.
                        !a.free.is_empty()
                            && a.attributes.satisfies(&f.constraints)
                            && a.free.contains(&f.task)
                    })
            })
            .map(|f| f.name.clone())
    }

    fn report(&self, scenario: &Scenario) -> SimReport {
        let by_name: BTreeMap<&str, &FrameworkId> = self
            .frameworks
            .iter()
            .map(|(id, f)| (f.name.as_str(), id))
            .chain(self.modules.iter().map(|(id, m)| (m.name.as_str(), id)))
            .collect();
        let mut launched = Vec::new();
        let mut placements = Vec::new();
        for f in &scenario.frameworks {
            let Some(id) = by_name.get(f.id.as_str()) else {
                continue;
            };
            let count = match (self.frameworks.get(*id), self.modules.get(*id)) {
                (Some(synth), _) => synth.launched,
                (None, Some(module)) => module.launched,
                (None, None) => 0,
            };
            launched.push((f.id.clone(), count));
            for a in &scenario.agents {
                let n = self
                    .placements
                    .get(&((*id).clone(), AgentId(a.id.clone())))
                    .copied()
                    .unwrap_or(0);
                if n > 0 {
                    placements.push((f.id.clone(), a.id.clone(), n));
                }
            }
        }
        SimReport {
            launched,
            placements,
        }
    }
}

fn advert(id: &str, attributes: proto::Attributes, total: Resources) -> AgentAdvert {
    AgentAdvert {
        agent_id: AgentId(id.to_owned()),
        hostname: id.to_owned(),
        attributes,
        total,
        reserved: Resources::new(),
        seq: 1,
        incarnation: 1,
        tasks: Vec::new(),
        version: "sim".to_owned(),
    }
}
