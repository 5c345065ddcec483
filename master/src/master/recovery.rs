//! Rebuilding the master's state after a restart, from agents' adverts and frameworks
//! re-subscribing, and the rule for tasks of an agent that returns after it was lost.
//!
//! The master keeps no database. A new master learns every task from the advert of the
//! agent running it ([`proto::AdvertTask`]: latest status, name, resources) and adopts it:
//! the task's resources become used on its agent and count in its framework's allocation,
//! so DRF shares are whole again once every agent has re-registered. A framework named by
//! such a task but not yet subscribed is *recovered*: known by id only, with no allocator
//! slot, torn down (its tasks killed) unless it subscribes within
//! [`crate::MasterConfig::recovered_framework_timeout_ms`] after the re-registration
//! window. Until that window ends (or sooner, once every agent the previous master counted
//! is back: `census.rs`) the master makes no offers and defers reconciliation answers, so
//! that neither is based on a half-rebuilt view.
//!
//! Only a restart's tasks are adopted: from an agent's first advert to this master, or
//! while offers are held. A later advert's unknown task is a stale listing of one whose
//! end was forgotten, and is killed, never counted.
//!
//! Lost-agent rule: an agent declared lost has had its tasks reported `lost` to their
//! frameworks, a terminal state those frameworks may have acted on (launched a
//! replacement). If the agent comes back still running such a task, the task is killed,
//! never adopted: its framework keeps the `lost` it was told, and the task's resources
//! stay used until the agent reports it ended.

use std::collections::BTreeSet;

use proto::{
    AdvertTask, AgentId, FrameworkId, FrameworkInfo, Resources, StatusBody, TaskId, TaskState,
    TaskStatus,
};

use super::{Action, FrameworkRecord, Master};
use crate::tasks::TaskRecord;
use crate::time::Millis;

impl Master {
    /// The master has seen that it replaces an earlier one. Within the re-registration
    /// window, offers are held until the window ends.
    pub(super) fn note_recovery_evidence(&mut self) {
        let window_end = Millis(self.config.reregistration_window_ms);
        if self.offers_held_until.is_none() && !self.hold_ended && self.now < window_end {
            tracing::info!(
                until_ms = window_end.0,
                "replacing an earlier master: offers held until agents and frameworks re-register"
            );
            self.offers_held_until = Some(window_end);
        }
    }

    /// True while offers are held for re-registration.
    pub fn offers_held(&self) -> bool {
        self.offers_held_until.is_some_and(|t| self.now < t)
    }

    /// Ends the hold when its time has come: allocation runs over every agent, and
    /// deferred reconciliations are answered.
    pub(super) fn end_hold_if_due(&mut self, now: Millis) {
        if let Some(until) = self.offers_held_until.filter(|t| *t <= now) {
            self.offers_held_until = None;
            self.hold_ended = true;
            self.forget_predecessor();
            if until < Millis(self.config.reregistration_window_ms) {
                tracing::info!("every agent of the previous master is back: offers resume");
            } else {
                tracing::info!("re-registration window over: offers resume");
            }
            self.want_allocation_all();
            for (framework_id, task_ids) in std::mem::take(&mut self.deferred_reconciles) {
                self.reconcile(&framework_id, task_ids);
            }
        }
    }

    /// Accounts for the tasks an agent lists. Tasks the master knows as live are left to
    /// status updates; a task it declared lost is killed (the lost-agent rule); a task
    /// whose end its agent reported is left alone (the advert was made before that end).
    /// A task it has never heard of is adopted when `adopting` (the agent's first advert
    /// to this master, or any while offers are held for re-registration: it ran for an
    /// earlier master), and killed otherwise ([`Master::stray`]).
    pub(super) fn take_advert_tasks(
        &mut self,
        agent_id: &AgentId,
        tasks: &[AdvertTask],
        adopting: bool,
    ) {
        for task in tasks {
            let task_id = &task.status.task_id;
            if self.tasks.get(task_id).is_some() {
                continue;
            }
            if self.disconnected.is_unreachable(task_id) {
                self.reconnect(agent_id, task);
                continue;
            }
            let told = self.tasks.ended(task_id).map(|e| e.latest.clone());
            match told {
                Some(_) if task.status.state.is_terminal() => {
                    self.tasks
                        .describe_ended(task_id, &task.name, &task.resources);
                }
                // Ends only the master declares: the agent may not know of them.
                Some(told) if matches!(told.state, TaskState::Lost | TaskState::Unreachable) => {
                    self.doom(agent_id, task, told)
                }
                Some(_) => {}
                None if adopting => self.adopt(agent_id, task),
                None => self.stray(agent_id, task),
            }
        }
    }

    /// A task this master never launched: the agent ran it for an earlier master.
    fn adopt(&mut self, agent_id: &AgentId, task: &AdvertTask) {
        self.note_recovery_evidence();
        let framework_id = task.status.framework_id.clone();
        self.recover_framework(&framework_id);
        let status = TaskStatus {
            agent_id: agent_id.clone(),
            ..task.status.clone()
        };
        if status.state.is_terminal() {
            // Ended, its update not yet acknowledged: remembered so the ack routes.
            let (name, resources) = (task.name.clone(), task.resources.clone());
            let kept_max = self.config.ended_tasks_kept_max;
            self.tasks.remember_ended(status, name, resources, kept_max);
            return;
        }
        let gone = self
            .frameworks
            .get(&framework_id)
            .is_none_or(|f| f.torn_down);
        if !self.occupy(agent_id, &status, &task.resources) {
            return;
        }
        let record = self.record_of(agent_id, task, status, gone);
        self.register_live(record, gone);
    }

    /// A task this master does not know, listed by an agent it knew already and so saw
    /// every task of when it first took it. It is most likely one whose end the master
    /// has forgotten ([`crate::MasterConfig::ended_tasks_kept_max`]), listed by an advert
    /// made before that end; adopting it would count a finished task's resources as used
    /// for good. Killed if the listing says it runs (a no-op if it ended), never counted.
    fn stray(&mut self, agent_id: &AgentId, task: &AdvertTask) {
        if task.status.state.is_terminal() {
            return;
        }
        let task_id = &task.status.task_id;
        tracing::info!(%task_id, %agent_id, "an advert lists a task this master does not know as live or recently ended; killing it");
        self.push_kill(agent_id, task_id);
    }

    /// A task declared lost, still running on its returning agent: killed.
    fn doom(&mut self, agent_id: &AgentId, task: &AdvertTask, told: TaskStatus) {
        tracing::info!(task_id = %told.task_id, %agent_id, "a task declared lost is still running on its returning agent; killing it");
        if !self.occupy(agent_id, &told, &task.resources) {
            return;
        }
        let record = self.record_of(agent_id, task, told, true);
        self.register_live(record, true);
    }

    pub(super) fn record_of(
        &mut self,
        agent_id: &AgentId,
        task: &AdvertTask,
        latest: TaskStatus,
        doomed: bool,
    ) -> TaskRecord {
        self.launches += 1;
        TaskRecord {
            task_id: latest.task_id.clone(),
            framework_id: latest.framework_id.clone(),
            agent_id: agent_id.clone(),
            name: task.name.as_str().into(),
            resources: task.resources.clone(),
            state: latest.state,
            latest: Some(StatusBody::of(latest)),
            launch_seq: self.launches,
            launched_at: self.now,
            reclaim_at: None,
            doomed,
            kill_requested: false,
            disconnect: None,
        }
    }

    /// Moves `resources` from free to used on the agent. A task that does not fit in the
    /// agent's free resources (an agent that lists more than it advertises, or one port
    /// twice) is killed rather than counted twice; false then.
    pub(super) fn occupy(
        &mut self,
        agent_id: &AgentId,
        status: &TaskStatus,
        resources: &Resources,
    ) -> bool {
        let (task_id, framework_id) = (&status.task_id, &status.framework_id);
        if !self.book.occupy(agent_id, framework_id, resources) {
            tracing::warn!(%task_id, %agent_id, "a listed task does not fit in its agent's free resources; killing it");
            self.push_kill(agent_id, task_id);
            return false;
        }
        true
    }

    /// Counts a task whose resources [`Master::occupy`] took.
    fn register_live(&mut self, record: TaskRecord, doomed: bool) {
        let (task_id, agent_id) = (record.task_id.clone(), record.agent_id.clone());
        let framework_id = record.framework_id.clone();
        if let Some(agent) = self.agents.get_mut(&agent_id) {
            agent.tasks.insert(task_id.clone());
        }
        if let Some(fw) = self.frameworks.get_mut(&framework_id) {
            fw.tasks.insert(task_id.clone());
        }
        if doomed {
            self.tasks.revive_doomed(record);
            self.push_kill(&agent_id, &task_id);
        } else {
            self.tasks.insert(record);
        }
    }

    pub(super) fn push_kill(&mut self, agent_id: &AgentId, task_id: &TaskId) {
        self.actions.push_back(Action::KillTask {
            agent_id: agent_id.clone(),
            task_id: task_id.clone(),
            grace_ms: self.config.kill_grace_ms,
        });
    }

    /// A framework known only by id, from its tasks; it must subscribe in time.
    pub(super) fn recover_framework(&mut self, id: &FrameworkId) {
        if self.frameworks.contains_key(id) || self.removed_frameworks.contains(id) {
            return;
        }
        let timeout_ms = self.config.recovered_framework_timeout_ms;
        let from = self.now.max(Millis(self.config.reregistration_window_ms));
        let info = FrameworkInfo {
            name: String::new(),
            role: String::new(),
            weight: 1.0,
            framework_id: Some(id.clone()),
            failover_timeout_ms: timeout_ms,
            constraints: Vec::new(),
            min_offer: Resources::new(),
            capabilities: Vec::new(),
        };
        let record = FrameworkRecord {
            info,
            connected: false,
            suppressed: false,
            torn_down: false,
            tasks: BTreeSet::new(),
            below_fair_since: None,
            recovered: true,
        };
        tracing::info!(framework_id = %id, timeout_ms, "framework recovered from adverts; waiting for it to subscribe");
        self.frameworks.insert(id.clone(), record);
        self.failovers.set(id.clone(), from.plus_ms(timeout_ms));
    }

    /// The quantities of the named live tasks: a recovered framework's allocation.
    pub(super) fn tasks_quantities(
        &self,
        task_ids: &BTreeSet<TaskId>,
    ) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for task in task_ids.iter().filter_map(|id| self.tasks.get(id)) {
            proto::resources::add_quantities(&mut out, &task.resources.quantities());
        }
        out
    }
}
