//! Messages of a run, delivered at once: the master's actions to agents and frameworks,
//! agents' adverts and status updates to the master, frameworks' answers.

use agent_core::AgentAction;
use master::{Action, LaunchOutcome};
use proto::{
    ACKS_PER_CALL_MAX, Ack, AgentCommand, AgentId, AgentReply, Call, Event, FrameworkCall,
    FrameworkId, Offer, TaskId, TaskSpec, TaskState,
};

use crate::driver::{SIM_TASKS_MAX, Sim, SimError};

impl Sim {
    /// Carries out the master's actions and the frameworks' answers until none is left.
    pub(crate) fn drain(&mut self) -> Result<(), SimError> {
        loop {
            if let Some(action) = self.master.poll_action() {
                self.act(action)?;
            } else if let Some((id, acks)) = self.next_acks() {
                if !acks.is_empty() {
                    self.call_as(&id, Call::AcknowledgeMany { acks })?;
                }
            } else if let Some((id, event)) = self.module_inbox.pop_front() {
                self.deliver(&id, &event);
            } else if let Some(offer) = self.inbox.pop_front() {
                self.answer(&offer)?;
            } else {
                return Ok(());
            }
        }
    }

    /// The acknowledgements of the updates queued for the framework first in the queue,
    /// in one call, as a busy framework client sends them: those at the front for that
    /// framework, up to the bound of a call.
    fn next_acks(&mut self) -> Option<(FrameworkId, Vec<Ack>)> {
        let id = self.updates.front()?.0.clone();
        let mut acks = Vec::new();
        while acks.len() < ACKS_PER_CALL_MAX
            && let Some((_, status)) = self.updates.pop_front_if(|(of, _)| *of == id)
        {
            // As the framework client: the master's `lost` for a task it does not know
            // comes from no agent, and no agent waits for its acknowledgement.
            if status.agent_id.is_no_agent() {
                continue;
            }
            acks.push(Ack {
                task_id: status.task_id,
                status_uuid: status.uuid,
            });
        }
        Some((id, acks))
    }

    fn act(&mut self, action: Action) -> Result<(), SimError> {
        match action {
            Action::SendEvent {
                framework_id,
                event,
            } => self.send_event(framework_id, event),
            Action::LaunchTask {
                agent_id,
                framework_id,
                task,
            } => self.launch(&agent_id, framework_id, task)?,
            Action::KillTask {
                agent_id,
                task_id,
                grace_ms,
            } => self.command(&agent_id, AgentCommand::Kill { task_id, grace_ms }),
            Action::AckStatus { agent_id, acks } => {
                self.command(&agent_id, AgentCommand::Acknowledge { acks });
            }
            Action::StopAgent {
                agent_id,
                incarnation,
            } => self.command(&agent_id, AgentCommand::Stop { incarnation }),
            // Reclaim is off in a simulation.
            Action::ReclaimNotice { .. } => {}
            Action::AnnounceCensus(census) => {
                for agent in self.fleet.agents.iter_mut().filter(|a| a.connected) {
                    agent.node.handle_master_census(census);
                }
            }
        }
        Ok(())
    }

    fn send_event(&mut self, framework_id: FrameworkId, event: Event) {
        if let Event::Update { status } = &event
            && let Err(violation) = self.told.record(status, self.incarnation())
        {
            self.violations.push(violation);
        }
        if self.modules.contains_key(&framework_id) {
            self.module_inbox.push_back((framework_id, event));
            return;
        }
        match event {
            Event::Offers { offers } => self.inbox.extend(offers),
            Event::Rescind { offer_id } => self.inbox.retain(|o| o.offer_id != offer_id),
            Event::Update { status } => self.updates.push_back((framework_id, status)),
            _ => {}
        }
    }

    /// A launch to its agent; the agent's answer (or its silence, across a cut link) goes
    /// back to the master.
    fn launch(
        &mut self,
        agent_id: &AgentId,
        framework_id: FrameworkId,
        task: TaskSpec,
    ) -> Result<(), SimError> {
        if let Some(module) = self.modules.get_mut(&framework_id) {
            module.launched += 1;
        }
        self.launched += 1;
        if self.launched > SIM_TASKS_MAX {
            return Err(SimError::TaskLimit { max: SIM_TASKS_MAX });
        }
        let task_id = task.task_id.clone();
        let i = self.fleet.find(agent_id);
        if let (Some(f), Some(a)) = (self.scenario_index.get(&framework_id), i) {
            *self.placements.entry((*f, a)).or_default() += 1;
        }
        let reply = i.and_then(|i| {
            let command = AgentCommand::Launch { framework_id, task };
            self.fleet.command(i, self.now, command)
        });
        let outcome = match reply {
            Some(AgentReply::Ok) => LaunchOutcome::Taken,
            Some(AgentReply::Error { message }) => LaunchOutcome::Refused { message },
            None => LaunchOutcome::Unanswered {
                message: "no answer: the agent is cut off".to_owned(),
            },
        };
        let now = self.master_now();
        self.master
            .handle_launch_outcome(now, agent_id, &task_id, outcome);
        if let Some(i) = i {
            self.drain_agent(i);
        }
        Ok(())
    }

    /// A kill or an acknowledgement to an agent; lost across a cut link.
    fn command(&mut self, agent_id: &AgentId, command: AgentCommand) {
        let Some(i) = self.fleet.find(agent_id) else {
            return;
        };
        if self.fleet.command(i, self.now, command).is_some() {
            self.drain_agent(i);
        }
    }

    /// Carries out agent `i`'s actions until it has none left.
    pub(crate) fn drain_agent(&mut self, i: usize) {
        while let Some(action) = self.fleet.poll_action(i) {
            let connected = self.fleet.agents[i].connected;
            let now = self.master_now();
            match action {
                AgentAction::PublishAdvert(advert) if connected => {
                    self.master.handle_agent_advert(now, advert);
                }
                AgentAction::PublishStatus(status) if connected => {
                    self.master.handle_status(now, status);
                }
                AgentAction::StartTask { framework_id, task } => {
                    self.start(i, &framework_id, &task);
                }
                AgentAction::KillTask { task_id, .. } => {
                    self.end_task(i, &task_id, TaskState::Killed);
                }
                // Published into a cut link, or nothing to do without disks.
                _ => {}
            }
        }
        self.fleet.rearm(i);
    }

    fn start(&mut self, i: usize, framework_id: &FrameworkId, task: &TaskSpec) {
        if !self.started.insert(task.task_id.clone()) {
            self.violations.push(format!(
                "task {} started a second time, on agent {}",
                task.task_id, self.fleet.agents[i].id
            ));
        }
        let now = self.now;
        if let Some(overcommit) = self.fleet.start(i, now, &task.task_id, &task.resources) {
            self.violations.push(overcommit);
        }
        if let Some(ms) = self.durations.get(framework_id) {
            let at = now.plus_ms(*ms);
            self.ends.insert((at, task.task_id.clone()), i);
            self.end_at.insert(task.task_id.clone(), at);
        }
    }

    /// A task ends on agent `i` (`state` says how); its scheduled end, if any, is dropped.
    fn end_task(&mut self, i: usize, task_id: &TaskId, state: TaskState) {
        if let Some(at) = self.end_at.remove(task_id) {
            self.ends.remove(&(at, task_id.clone()));
        }
        self.fleet.end(i, self.now, task_id, state);
    }

    /// Tasks whose duration ran out finish.
    pub(crate) fn end_due_tasks(&mut self) {
        while let Some(((at, task_id), i)) = self.ends.first_key_value() {
            if *at > self.now {
                break;
            }
            let (task_id, i) = (task_id.clone(), *i);
            self.end_task(i, &task_id, TaskState::Finished);
            self.drain_agent(i);
        }
    }

    /// One event to a module framework, and its calls to the master.
    fn deliver(&mut self, id: &FrameworkId, event: &Event) {
        let now_ms = self.now.0;
        let Some(module) = self.modules.get_mut(id) else {
            return;
        };
        let calls = module.deliver(now_ms, event);
        let name = module.name.clone();
        let now = self.master_now();
        for call in calls {
            if matches!(call, Call::Subscribe { .. }) {
                continue;
            }
            let call = FrameworkCall {
                framework_id: Some(id.clone()),
                call,
            };
            if let Err(e) = self
                .master
                .handle_call(now, &proto::Principal::anonymous(), call)
            {
                tracing::warn!(framework = %name, %e, "the master refused a scheduler module's call");
            }
        }
    }

    /// One synthetic framework's answer to one offer.
    fn answer(&mut self, offer: &Offer) -> Result<(), SimError> {
        let id = offer.framework_id.clone();
        let Some(fw) = self.frameworks.get_mut(&id) else {
            return Ok(());
        };
        for call in fw.answer(offer) {
            self.call_as(&id, call)?;
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
}
