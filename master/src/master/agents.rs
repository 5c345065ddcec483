//! Agent adverts, agent loss and task status updates.

use std::collections::BTreeSet;

use proto::{
    Ack, AdvertTask, AgentAdvert, AgentId, Event, StatusBody, StatusUuid, TaskId, TaskState,
    TaskStatus,
};

use super::calls::synthetic_status;
use super::{Action, AgentRecord, Master};
use crate::allocator::GPUS;
use crate::tasks::TaskIdSet;
use crate::time::Millis;

/// Why the tasks of an agent whose token stayed away are lost.
pub(super) const AGENT_LOST: &str = "the agent was lost";
/// Why the tasks of an agent that left still holding them are lost.
pub(super) const AGENT_LEFT: &str = "the agent shut down";

impl Master {
    /// An agent's advert (on start, on change, and periodically). Adverts older than the
    /// last one seen (by incarnation, then sequence number) are ignored. A new incarnation
    /// means the agent restarted: tasks it no longer lists are lost. A change of total or
    /// attributes rescinds the agent's outstanding offers.
    ///
    /// An advert whose total is less than what its tasks use keeps, per resource, the
    /// larger of the two until the tasks end, so the books always balance.
    ///
    /// An advert from an agent whose liveliness token is not present starts its lost
    /// clock ([`Master::handle_agent_token`]).
    pub fn handle_agent_advert(&mut self, now: Millis, advert: AgentAdvert) {
        self.advance(now);
        let id = advert.agent_id.clone();
        if self.is_another_process(&advert) {
            tracing::warn!(
                agent_id = %id,
                incarnation = advert.incarnation,
                "advert ignored: another process holds this agent id (its liveliness token never went)"
            );
            return;
        }
        self.advert_liveness(&id);
        self.heard_from(&id);
        let tasks = advert.tasks.clone();
        let census = advert.last_census;
        match self.agents.get(&id) {
            None => {
                self.add_agent(advert);
                self.take_advert_tasks(&id, &tasks, true);
                self.witness_census(&id, census);
            }
            Some(r) if advert.incarnation < r.incarnation => {
                // Alive after all, but its id went to a later process and its tasks
                // were told lost: what it runs is seen by no one. It must stop.
                tracing::warn!(
                    agent_id = %id,
                    stale = advert.incarnation,
                    registered = r.incarnation,
                    "an earlier process of this agent id still advertises; telling it to stop"
                );
                self.actions.push_back(Action::StopAgent {
                    agent_id: id.clone(),
                    incarnation: advert.incarnation,
                });
            }
            Some(r) if (advert.incarnation, advert.seq) <= (r.incarnation, r.seq) => {}
            Some(r) => {
                let restarted = advert.incarnation != r.incarnation;
                if restarted {
                    let listed: BTreeSet<&TaskId> =
                        advert.tasks.iter().map(|t| &t.status.task_id).collect();
                    let gone: Vec<TaskId> = r
                        .tasks
                        .iter()
                        .filter(|t| !listed.contains(t))
                        .cloned()
                        .collect();
                    for task_id in gone {
                        self.lose_task(&task_id, "the agent restarted without it");
                    }
                    self.stopping.remove(&id);
                    self.want_census();
                }
                self.update_agent(advert);
                let adopting = self.offers_held();
                self.take_advert_tasks(&id, &tasks, adopting);
                if restarted {
                    self.kill_again(&id, &tasks);
                }
                self.witness_census(&id, census);
            }
        }
        self.debug_check();
    }

    /// A command to the agent (a launch) went unanswered: the agent may be cut off while
    /// its liveliness token has not yet timed out. Its offers are rescinded and it is
    /// offered nothing until it is heard from again (an advert or a status update), so that
    /// frameworks do not launch task after task into a silent agent. The daemon reports
    /// this as [`super::LaunchOutcome::Unanswered`]; this entry point is for tests.
    pub fn handle_agent_unreachable(&mut self, now: Millis, agent_id: &AgentId) {
        self.advance(now);
        self.mark_unreachable(agent_id);
        self.debug_check();
    }

    pub(super) fn mark_unreachable(&mut self, agent_id: &AgentId) {
        if !self.agents.contains_key(agent_id) || !self.unreachable.insert(agent_id.clone()) {
            return;
        }
        for offer_id in self.offers.of_agent(agent_id) {
            self.withdraw_offer(&offer_id, true);
        }
    }

    /// The agent refused a launch because it shuts down: its offers are rescinded and it
    /// is offered nothing more.
    pub(super) fn mark_stopping(&mut self, agent_id: &AgentId) {
        if !self.agents.contains_key(agent_id) || !self.stopping.insert(agent_id.clone()) {
            return;
        }
        tracing::info!(%agent_id, "agent shutting down: offered nothing more");
        for offer_id in self.offers.of_agent(agent_id) {
            self.withdraw_offer(&offer_id, true);
        }
    }

    /// Kills asked of tasks an agent still lists after it restarted: a kill in its grace
    /// period died with the agent's previous process, and its journal knows nothing of it.
    fn kill_again(&mut self, agent_id: &AgentId, listed: &[AdvertTask]) {
        for listed in listed.iter().filter(|t| !t.status.state.is_terminal()) {
            let task_id = &listed.status.task_id;
            let asked = (self.tasks.get(task_id))
                .is_some_and(|t| t.kill_requested && &t.agent_id == agent_id);
            if asked {
                tracing::info!(%task_id, %agent_id, "the agent restarted before a kill took effect; killing the task again");
                self.actions.push_back(Action::KillTask {
                    agent_id: agent_id.clone(),
                    task_id: task_id.clone(),
                    grace_ms: self.config.kill_grace_ms,
                });
            }
        }
    }

    /// Whether the agent's free resources may be offered.
    pub(super) fn offerable(&self, agent_id: &AgentId) -> bool {
        !self.unreachable.contains(agent_id) && !self.stopping.contains(agent_id)
    }

    fn heard_from(&mut self, agent_id: &AgentId) {
        if self.unreachable.remove(agent_id) {
            self.want_allocation_of(agent_id);
        }
    }

    /// Declares the agent lost at once. The daemon never calls this: an agent is lost
    /// when the clock [`Master::handle_agent_token`] started runs out. For tests.
    pub fn handle_agent_lost(&mut self, now: Millis, agent_id: &AgentId) {
        self.advance(now);
        self.lose_agent(agent_id, AGENT_LOST);
        self.debug_check();
    }

    /// The agent said it leaves: it shut down after the master acknowledged its tasks'
    /// ends. It is gone at once, without the lost timeout; a task it still held (its end
    /// not acknowledged in time) is lost.
    pub fn handle_agent_left(&mut self, now: Millis, agent_id: &AgentId) {
        self.advance(now);
        if self.agents.contains_key(agent_id) {
            tracing::info!(%agent_id, "agent left");
            self.lose_agent(agent_id, AGENT_LEFT);
        }
        self.debug_check();
    }

    /// The agent is gone: its offers are rescinded, its tasks reported lost (`why`) to
    /// their frameworks, and its resources leave the cluster.
    pub(super) fn lose_agent(&mut self, agent_id: &AgentId, why: &str) {
        self.remember_lost_agent(agent_id);
        let Some(record) = self.agents.get(agent_id) else {
            return;
        };
        let tasks: Vec<TaskId> = record.tasks.iter().cloned().collect();
        self.note_agent_lost(agent_id);
        for offer_id in self.offers.of_agent(agent_id) {
            self.withdraw_offer(&offer_id, true);
        }
        for task_id in tasks {
            if why == AGENT_LOST && self.make_unreachable(&task_id) {
                continue;
            }
            self.lose_task(&task_id, why);
        }
        self.agents.remove(agent_id);
        self.want_census();
        self.book.remove_agent(agent_id);
        self.allocation_agents.remove(agent_id);
        self.unreachable.remove(agent_id);
        self.stopping.remove(agent_id);
    }

    /// A task status update from an agent. It is passed on to the task's framework (which
    /// acknowledges it through [`proto::Call::Acknowledge`]); for a framework that is gone
    /// the master acknowledges it itself. The first terminal update of a live task frees its
    /// resources; repeated or late updates free nothing.
    ///
    /// An agent speaks only for the tasks on it: an update about a task the master placed
    /// elsewhere, or of another framework than the task's, is dropped (and counted,
    /// [`Master::statuses_refused`]); one about a task the master does not know is taken
    /// only once the agent's advert lists the task (the agent resends until acknowledged),
    /// and from an agent whose advert did not, acknowledged and not passed on.
    pub fn handle_status(&mut self, now: Millis, status: TaskStatus) {
        self.advance(now);
        if self.status_is_the_agents(&status) {
            self.take_status(status);
        }
        self.debug_check();
    }

    /// Updates the master refused because their agent did not run the task.
    pub fn statuses_refused(&self) -> u64 {
        self.statuses_refused
    }

    fn status_is_the_agents(&mut self, status: &TaskStatus) -> bool {
        let refuse = |m: &mut Master, why: &str| {
            m.statuses_refused += 1;
            tracing::warn!(agent_id = %status.agent_id, task_id = %status.task_id, why, "status update refused");
            false
        };
        match self.tasks.owner(&status.task_id) {
            // A task told lost by reconciliation was on no agent the master knew of.
            Some((_, agent)) if *agent != status.agent_id && !agent.is_no_agent() => {
                refuse(self, "the task is not on this agent")
            }
            Some((framework, _)) if *framework != status.framework_id => {
                refuse(self, "the task is of another framework")
            }
            Some(_) => true,
            None if self.agents.contains_key(&status.agent_id) => {
                // Its advert did not list it: nothing to pass on, but the agent may stop
                // resending (a task whose end the master has forgotten).
                self.ack_to_agent(status);
                refuse(self, "the agent's advert does not list the task")
            }
            // Before the agent's advert (a restarted master): it resends after.
            None => false,
        }
    }

    /// [`Master::handle_status`] without the clock: also takes the master's own updates.
    pub(super) fn take_status(&mut self, status: TaskStatus) {
        if self.agents.contains_key(&status.agent_id) {
            self.heard_from(&status.agent_id);
        }
        match self.tasks.get(&status.task_id).map(|t| t.doomed) {
            Some(true) => return self.doomed_status(status),
            Some(false) => {}
            None => match self.tasks.ended(&status.task_id) {
                // Its framework keeps the end it was told (`lost`, for a task of an agent
                // declared lost that comes back with the task ended otherwise).
                // Unreachable: taken back from its agent's advert first; an end met
                // while away is passed on.
                Some(told) if told.latest.state == TaskState::Unreachable => {
                    if !status.state.is_terminal() {
                        return;
                    }
                    self.unreachable_ended(&status);
                }
                Some(told) if told.latest.state != status.state => {
                    return self.ack_to_agent(&status);
                }
                Some(_) => {}
                // The master's own updates are of tasks it knows.
                None => return,
            },
        }
        let framework_id = match self.tasks.owner(&status.task_id) {
            Some((framework_id, _)) => framework_id.clone(),
            None => status.framework_id.clone(),
        };
        if status.state.is_terminal() {
            // The ended task keeps it as the end its framework was told.
            self.end_task(&status.task_id, status.clone());
        } else if let Some(task) = self.tasks.get_mut(&status.task_id) {
            task.state = status.state;
            task.latest = Some(StatusBody::of(status.clone()));
        }
        let listening = self
            .frameworks
            .get(&framework_id)
            .is_some_and(|f| !f.torn_down);
        if listening {
            self.send(&framework_id, Event::Update { status });
        } else {
            self.ack_to_agent(&status);
        }
    }

    /// The master acknowledges an update itself: no framework will.
    fn ack_to_agent(&mut self, status: &TaskStatus) {
        if self.agents.contains_key(&status.agent_id) {
            self.actions.push_back(Action::AckStatus {
                agent_id: status.agent_id.clone(),
                acks: vec![Ack {
                    task_id: status.task_id.clone(),
                    status_uuid: status.uuid,
                }],
            });
        }
    }

    /// A doomed task's framework was told `lost` already: its updates stop at the master,
    /// which acknowledges them, and its end frees its resources.
    fn doomed_status(&mut self, status: TaskStatus) {
        let task_id = &status.task_id;
        if status.state.is_terminal()
            && let Some(told) = self.tasks.get(task_id).and_then(|t| t.latest_status())
        {
            self.end_task(task_id, told);
        }
        self.ack_to_agent(&status);
    }

    fn add_agent(&mut self, advert: AgentAdvert) {
        let id = advert.agent_id.clone();
        tracing::info!(agent_id = %id, hostname = %advert.hostname, total = %advert.total, "agent joined");
        let has_gpus = advert.total.quantities_iter().any(|(kind, _)| kind == GPUS);
        if has_gpus && !self.config.gpu_agents_last_resort && !self.gpu_rule_logged {
            self.gpu_rule_logged = true;
            tracing::warn!(agent_id = %id, "agents with GPUs (this one first): while their GPUs are free they are offered only to frameworks that declare the GPU capability (not to `wasmos run`'s jobs framework); MasterConfig::gpu_agents_last_resort (`wasmos master --gpu-agents-last-resort`) lets the others have them when nothing else is free");
        }
        self.lost_agents.forget(&id);
        self.book.add_agent(&id, advert.total, advert.attributes);
        let record = AgentRecord {
            hostname: advert.hostname,
            incarnation: advert.incarnation,
            seq: advert.seq,
            tasks: TaskIdSet::default(),
            token_lapsed: false,
        };
        self.agents.insert(id.clone(), record);
        self.want_census();
        self.want_allocation_of(&id);
    }

    /// A newer advert of a known agent. A change of what it has to offer (its total,
    /// within what its tasks use, or its attributes) rescinds its offers first.
    fn update_agent(&mut self, advert: AgentAdvert) {
        let id = advert.agent_id.clone();
        if !self.agents.contains_key(&id) {
            return;
        }
        let changed = self
            .book
            .advert_changes(&id, &advert.total, &advert.attributes);
        if changed {
            for offer_id in self.offers.of_agent(&id) {
                self.withdraw_offer(&offer_id, true);
            }
            self.book.readvertise(&id, &advert.total, advert.attributes);
            self.want_allocation_of(&id);
        }
        if let Some(record) = self.agents.get_mut(&id) {
            record.token_lapsed &= record.incarnation == advert.incarnation;
            record.hostname = advert.hostname;
            record.incarnation = advert.incarnation;
            record.seq = advert.seq;
        }
    }

    /// Marks a live task lost, tells its framework, and frees its resources.
    fn lose_task(&mut self, task_id: &TaskId, reason: &str) {
        let Some(task) = self.tasks.get(task_id) else {
            return;
        };
        let uuid = StatusUuid(self.rng.next_u128());
        let status = synthetic_status(task, TaskState::Lost, reason, uuid);
        let framework_id = task.framework_id.clone();
        self.end_task(task_id, status.clone());
        if self
            .frameworks
            .get(&framework_id)
            .is_some_and(|f| !f.torn_down)
        {
            self.send(&framework_id, Event::Update { status });
        }
    }

    /// The only place a live task ends: its resources are freed here, exactly once.
    pub(super) fn end_task(&mut self, task_id: &TaskId, latest: TaskStatus) {
        let Some((ended, reclaim_at)) =
            self.tasks
                .end(task_id, latest, self.config.ended_tasks_kept_max)
        else {
            return;
        };
        let (agent_id, framework_id) = (ended.agent_id().clone(), ended.framework_id().clone());
        self.book
            .release_used(&agent_id, &framework_id, &ended.resources);
        if let Some(agent) = self.agents.get_mut(&agent_id) {
            agent.tasks.remove(task_id);
            self.want_allocation_of(&agent_id);
        }
        if let Some(fw) = self.frameworks.get_mut(&framework_id) {
            fw.tasks.remove(task_id);
        }
        if let Some(at) = reclaim_at {
            self.reclaim_kills.remove(&(at, task_id.clone()));
        }
        self.forget_if_drained(&framework_id);
    }
}
