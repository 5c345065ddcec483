//! Autonomy while no master is reachable: a task whose `TaskSpec::disconnect` policy
//! restarts it is started again in place (same task id, same spec) by its agent when it
//! ends, or when it died with the previous agent process, but only while no master's
//! token is seen. A master that is reachable decides instead: an end is reported as usual
//! and the framework replaces the task where it likes (a restart not yet started when a
//! master appears is reported then, as the end it stands for). Restarts wait out the
//! policy's backoff and stop when its starts are used up (the end is reported then).
//! Rules for what the master makes of it: `master/README.md`.

use std::collections::BTreeSet;

use proto::{Millis, StatusBody, TaskId, TaskSpec, TaskState, TaskStatus};

use crate::journal::JournalChange;
use crate::node::{
    AgentAction, AgentNode, HeldTask, PendingRestart, Resend, TaskEnd, journal_entry,
};

/// Whether the agent keeps `spec` to restart it in place.
pub(crate) fn restarts_in_place(spec: &TaskSpec) -> bool {
    spec.disconnect
        .as_ref()
        .is_some_and(|d| d.restart != proto::RestartPolicy::Never)
}

impl AgentNode {
    /// The master's token went: until one appears again, tasks whose policy says so are
    /// restarted in place when they end.
    pub fn handle_master_gone(&mut self, _now: Millis) {
        self.master_present = false;
    }

    /// Takes `end` as a restart in place, after the backoff, if no master is reachable and
    /// the task's policy restarts it; false when the end is to be reported.
    pub(crate) fn restart_offline(&mut self, now: Millis, task_id: &TaskId, end: &TaskEnd) -> bool {
        if self.master_present || self.leave_by.is_some() {
            return false;
        }
        let Some(task) = self.tasks.get(task_id) else {
            return false;
        };
        let Some(policy) = task.spec.as_ref().and_then(|s| s.disconnect.as_ref()) else {
            return false;
        };
        if !policy.restart.restarts(end.state) {
            return false;
        }
        let Some(delay_ms) = policy.backoff.delay_ms(task.starts) else {
            tracing::warn!(%task_id, starts = task.starts, "task ended offline; its restarts are used up");
            return false;
        };
        tracing::info!(%task_id, state = end.state.as_str(), reason = %end.reason, delay_ms, "task ended while no master is reachable; restarting it in place after a backoff");
        let pending = PendingRestart {
            at: now.plus_ms(delay_ms),
            end: end.clone(),
        };
        self.set_restart(task_id, Some(pending));
        true
    }

    /// A task that died with the previous agent process: held, and either waiting to
    /// restart (its policy says so and no master is seen) or ended as `end`, its leftovers
    /// forgotten. Either way its latest status goes with the first timeout, after the
    /// advert, as every recovered status does.
    pub(crate) fn recover_died(
        &mut self,
        now: Millis,
        task_id: TaskId,
        task: HeldTask,
        end: TaskEnd,
    ) {
        let framework_id = task.framework_id.clone();
        self.tasks.insert(task_id.clone(), Box::new(task));
        if !self.restart_offline(now, &task_id, &end) {
            let latest = TaskStatus {
                exit_code: end.exit_code,
                reason: end.reason,
                ..self.status(now, &task_id, &framework_id, end.state)
            };
            self.actions.push_back(AgentAction::ForgetTask {
                task_id: task_id.clone(),
            });
            if let Some(task) = self.tasks.get_mut(&task_id) {
                task.latest = StatusBody::of(latest);
                let entry = Box::new(journal_entry(&task_id, &self.advert.agent_id, task));
                self.actions
                    .push_back(AgentAction::Journal(JournalChange::Put(entry)));
            }
        }
        let wait_ms = self.status_retry_ms;
        self.schedule(&task_id, Some(Resend { at: now, wait_ms }));
    }

    /// A master appeared (or the agent shuts down): restarts not yet started are reported
    /// as the ends they stand for.
    pub(crate) fn report_pending_restarts(&mut self, now: Millis) -> BTreeSet<TaskId> {
        let mut reported = BTreeSet::new();
        for (_, task_id) in std::mem::take(&mut self.restarts) {
            let end = self.tasks.get_mut(&task_id).and_then(|t| t.restart.take());
            if let Some(pending) = end {
                self.report_end(now, &task_id, pending.end);
                reported.insert(task_id);
            }
        }
        reported
    }

    /// A kill of a task waiting to restart ends it at once; false if it was not waiting.
    pub(crate) fn end_pending_restart(&mut self, now: Millis, task_id: &TaskId) -> bool {
        if self.tasks.get(task_id).is_none_or(|t| t.restart.is_none()) {
            return false;
        }
        self.set_restart(task_id, None);
        let end = TaskEnd {
            state: TaskState::Killed,
            exit_code: None,
            reason: "killed while waiting to restart".to_owned(),
        };
        self.report_end(now, task_id, end);
        true
    }

    /// Starts the restarts whose backoff is over: a `starting` status saying why, and the
    /// task's spec to its executor again.
    pub(crate) fn start_due_restarts(&mut self, now: Millis) {
        while let Some((at, task_id)) = self.restarts.first().cloned() {
            if at > now {
                break;
            }
            self.restarts.remove(&(at, task_id.clone()));
            let Some(task) = self.tasks.get_mut(&task_id) else {
                continue;
            };
            let (Some(pending), Some(spec)) = (task.restart.take(), task.spec.clone()) else {
                continue;
            };
            task.starts = task.starts.saturating_add(1);
            let starts = task.starts;
            let framework_id = task.framework_id.clone();
            let starts_max = spec.disconnect.as_ref().map_or(0, |d| d.backoff.starts_max);
            let before = if pending.end.reason.is_empty() {
                pending.end.state.as_str().to_owned()
            } else {
                format!("{}: {}", pending.end.state.as_str(), pending.end.reason)
            };
            let status = TaskStatus {
                reason: format!(
                    "restarted in place by its agent while no master was reachable (start {starts} of at most {starts_max}) after it ended {before}"
                ),
                ..self.status(now, &task_id, &framework_id, TaskState::Starting)
            };
            tracing::info!(%task_id, starts, "restarting a task in place");
            self.supersede(now, status);
            self.actions.push_back(AgentAction::StartTask {
                framework_id,
                task: *spec,
            });
        }
    }

    /// Sets (or clears) the task's pending restart, keeping `restarts` in step.
    fn set_restart(&mut self, task_id: &TaskId, restart: Option<PendingRestart>) {
        let Some(task) = self.tasks.get_mut(task_id) else {
            return;
        };
        if let Some(old) = task.restart.take() {
            self.restarts.remove(&(old.at, task_id.clone()));
        }
        if let Some(new) = &restart {
            self.restarts.insert((new.at, task_id.clone()));
        }
        task.restart = restart.map(Box::new);
    }
}
