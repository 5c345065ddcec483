//! A master core driven in virtual time, with hosted scheduler modules and simulated
//! agents, the way the master's adapter drives it.

use std::collections::BTreeMap;

use master::{Action, Master, MasterConfig, Millis};
use policy_host::HostedScheduler;
use proto::{
    AgentAdvert, AgentId, Attributes, Call, CallReply, FrameworkCall, FrameworkId, FrameworkInfo,
    Resources, StatusUuid, TaskSpec, TaskState, TaskStatus,
};

/// Virtual time per step.
pub const STEP_MS: u64 = 100;

/// How a simulated agent ends a task: by its id.
pub type Outcome = fn(&str) -> TaskState;

pub fn finish_all(_: &str) -> TaskState {
    TaskState::Finished
}

pub struct Cluster {
    pub master: Master,
    pub now: u64,
    pub hosted: BTreeMap<FrameworkId, HostedScheduler>,
    /// Every launch, in order: (agent, framework, task).
    pub launched: Vec<(AgentId, FrameworkId, TaskSpec)>,
    /// Every event sent to a framework that is not hosted (native frameworks in tests).
    pub native_events: Vec<(FrameworkId, proto::Event)>,
    pub faults: Vec<String>,
    pub refused_calls: Vec<String>,
    outcome: Outcome,
    /// Tasks running on simulated agents, ended on the next step.
    running: Vec<(AgentId, FrameworkId, TaskSpec)>,
    status_seq: u128,
}

pub fn advert(id: &str, cpus: f64, mem: f64, attributes: &[(&str, &str)]) -> AgentAdvert {
    let mut attrs = Attributes::new();
    for (k, v) in attributes {
        attrs.insert(k, v);
    }
    AgentAdvert {
        agent_id: AgentId::new(id),
        hostname: format!("{id}.local"),
        attributes: attrs,
        total: Resources::new()
            .with_scalar("cpus", cpus)
            .with_scalar("mem", mem),
        reserved: Resources::new(),
        seq: 1,
        incarnation: 1,
        tasks: Vec::new(),
        version: "test".into(),
        last_census: None,
    }
}

pub fn info(name: &str, role: &str, weight: f64) -> FrameworkInfo {
    FrameworkInfo {
        name: name.into(),
        role: role.into(),
        weight,
        framework_id: None,
        failover_timeout_ms: 60_000,
        constraints: Vec::new(),
        min_offer: Resources::new(),
        capabilities: Vec::new(),
    }
}

impl Cluster {
    pub fn new(master: Master, outcome: Outcome) -> Cluster {
        Cluster {
            master,
            now: 0,
            hosted: BTreeMap::new(),
            launched: Vec::new(),
            native_events: Vec::new(),
            faults: Vec::new(),
            refused_calls: Vec::new(),
            outcome,
            running: Vec::new(),
            status_seq: 0,
        }
    }

    pub fn with_builtin(outcome: Outcome) -> Cluster {
        Cluster::new(Master::new(MasterConfig::default(), 7), outcome)
    }

    pub fn add_agent(&mut self, advert: AgentAdvert) {
        let now = Millis(self.now);
        self.master.handle_agent_token(now, &advert.agent_id, true);
        self.master.handle_agent_advert(now, advert);
        self.drain();
    }

    /// Subscribes a framework; when `scheduler` is given its scheduler is that module.
    pub fn subscribe(
        &mut self,
        info: FrameworkInfo,
        scheduler: Option<HostedScheduler>,
    ) -> FrameworkId {
        let call = FrameworkCall {
            framework_id: None,
            call: Call::Subscribe { info },
        };
        let reply = self
            .master
            .handle_call(Millis(self.now), &proto::Principal::anonymous(), call)
            .unwrap();
        let CallReply::Subscribed { framework_id, .. } = reply else {
            panic!("not subscribed: {reply:?}")
        };
        self.master
            .handle_framework_token(Millis(self.now), &framework_id, true);
        if let Some(s) = scheduler {
            self.hosted.insert(framework_id.clone(), s);
        }
        self.drain();
        framework_id
    }

    /// Runs `steps` steps of virtual time.
    pub fn run(&mut self, steps: u32) {
        for _ in 0..steps {
            self.now += STEP_MS;
            if self.master.poll_timeout().is_some_and(|t| t.0 <= self.now) {
                self.master.handle_timeout(Millis(self.now));
            }
            self.drain();
            self.end_running_tasks();
            let ids: Vec<FrameworkId> = self.hosted.keys().cloned().collect();
            for id in ids {
                let result = self.hosted.get_mut(&id).map(|s| s.tick(self.now));
                if let Some(Ok(calls)) = result {
                    self.apply_calls(&id, calls);
                }
            }
            self.drain();
        }
    }

    fn end_running_tasks(&mut self) {
        for (agent_id, framework_id, task) in std::mem::take(&mut self.running) {
            for state in [TaskState::Running, (self.outcome)(task.task_id.as_str())] {
                self.status_seq += 1;
                let status = TaskStatus {
                    task_id: task.task_id.clone(),
                    framework_id: framework_id.clone(),
                    agent_id: agent_id.clone(),
                    state,
                    exit_code: state
                        .is_terminal()
                        .then_some(if state == TaskState::Finished { 0 } else { 1 }),
                    reason: String::new(),
                    uuid: StatusUuid(self.status_seq),
                    timestamp_ms: self.now,
                };
                self.master.handle_status(Millis(self.now), status);
                self.drain();
            }
        }
    }

    /// Carries out the master's actions until there are none.
    pub fn drain(&mut self) {
        while let Some(action) = self.master.poll_action() {
            match action {
                Action::SendEvent {
                    framework_id,
                    event,
                } => self.deliver(framework_id, event),
                Action::LaunchTask {
                    agent_id,
                    framework_id,
                    task,
                } => {
                    self.launched
                        .push((agent_id.clone(), framework_id.clone(), task.clone()));
                    self.running.push((agent_id, framework_id, task));
                }
                _ => {}
            }
        }
    }

    fn deliver(&mut self, framework_id: FrameworkId, event: proto::Event) {
        let Some(scheduler) = self.hosted.get_mut(&framework_id) else {
            self.native_events.push((framework_id, event));
            return;
        };
        let (calls, fault) = scheduler.deliver_event(self.now, &event);
        if let Some(fault) = fault {
            self.faults.push(fault.to_string());
        }
        self.apply_calls(&framework_id, calls);
    }

    fn apply_calls(&mut self, framework_id: &FrameworkId, calls: Vec<Call>) {
        for call in calls {
            let call = FrameworkCall {
                framework_id: Some(framework_id.clone()),
                call,
            };
            if let Err(e) =
                self.master
                    .handle_call(Millis(self.now), &proto::Principal::anonymous(), call)
            {
                self.refused_calls.push(e.to_string());
            }
        }
    }

    /// Tasks of `framework_id` launched so far.
    pub fn launches_of(
        &self,
        framework_id: &FrameworkId,
    ) -> Vec<&(AgentId, FrameworkId, TaskSpec)> {
        self.launched
            .iter()
            .filter(|(_, f, _)| f == framework_id)
            .collect()
    }
}
