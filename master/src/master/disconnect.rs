//! Tasks of a lost agent that may come back (Nomad's `disconnect` block): a task whose
//! `DisconnectPolicy` gives a `lost_after_ms` is reported `unreachable`, not `lost`, when
//! its agent is lost; its resources leave with the agent, and its framework may replace
//! it (`TaskSpec::replaces`). If the agent re-registers within `lost_after_ms` still
//! running it, the task is taken back (`running` again to its framework); if a
//! replacement runs too, the task's `on_reconnect` picks the one that stays and the other
//! is killed, so no duplicate outlives the reconciliation. Otherwise it is `lost` at that
//! time, and the lost-agent rule (`recovery.rs`: kill, never adopt) applies if it shows up
//! later. Rules: `master/README.md`.

use std::collections::BTreeMap;

use proto::{
    AdvertTask, AgentId, DisconnectPolicy, Event, FrameworkId, OnReconnect, StatusUuid, TaskId,
    TaskSpec, TaskState, TaskStatus,
};

use super::Master;
use super::calls::synthetic_status;
use crate::deadlines::Deadlines;
use crate::error::CallError;
use crate::time::Millis;

/// Why a task is `unreachable`.
const UNREACHABLE: &str = "its agent was lost; it may still run there";
/// Why an unreachable task is `lost` in the end.
const NOT_BACK: &str = "its agent was lost and did not come back within the task's lost_after";

/// Unreachable tasks and the replacements of them.
#[derive(Debug, Default)]
pub(super) struct Disconnected {
    /// When each unreachable task is declared lost.
    lost_at: Deadlines<TaskId>,
    tasks: BTreeMap<TaskId, Unreachable>,
    /// Unreachable task → the live task of the same framework that replaces it.
    replacements: BTreeMap<TaskId, TaskId>,
}

/// One unreachable task: what the master needs of it whether or not the ended memory
/// (bounded) still holds it.
#[derive(Clone, Debug)]
struct Unreachable {
    policy: Box<DisconnectPolicy>,
    framework_id: FrameworkId,
    agent_id: AgentId,
    /// Its framework killed it while unreachable: killed if it comes back.
    killed: bool,
}

impl Disconnected {
    pub(super) fn is_unreachable(&self, task_id: &TaskId) -> bool {
        self.tasks.contains_key(task_id)
    }

    pub(super) fn next_lost(&self) -> Option<Millis> {
        self.lost_at.next()
    }

    /// No longer unreachable: what was kept of it, and the replacement named for it.
    fn forget(&mut self, task_id: &TaskId) -> Option<(Unreachable, Option<TaskId>)> {
        self.lost_at.remove(task_id);
        let task = self.tasks.remove(task_id)?;
        Some((task, self.replacements.remove(task_id)))
    }
}

impl Master {
    /// The task's agent is lost: `unreachable` if its policy says so (true), else false
    /// and the caller declares it lost.
    pub(super) fn make_unreachable(&mut self, task_id: &TaskId) -> bool {
        let Some(task) = self.tasks.get(task_id).filter(|t| !t.doomed) else {
            return false;
        };
        let Some(policy) = task.disconnect.clone() else {
            return false;
        };
        let Some(lost_after_ms) = policy.lost_after_ms else {
            return false;
        };
        let uuid = StatusUuid(self.rng.next_u128());
        let status = synthetic_status(task, TaskState::Unreachable, UNREACHABLE, uuid);
        let unreachable = Unreachable {
            policy,
            framework_id: task.framework_id.clone(),
            agent_id: task.agent_id.clone(),
            killed: false,
        };
        let framework_id = task.framework_id.clone();
        tracing::info!(%task_id, lost_after_ms, "task unreachable: its agent was lost");
        // Its resources leave with the agent; the ended memory keeps what its framework
        // was told, so acknowledgements and reconciliation find it.
        self.end_task(task_id, status.clone());
        let d = &mut self.disconnected;
        d.lost_at
            .set(task_id.clone(), self.now.plus_ms(lost_after_ms));
        d.tasks.insert(task_id.clone(), unreachable);
        self.tell(&framework_id, status);
        true
    }

    /// A framework's `Kill` of one of its unreachable tasks: remembered, so that the task
    /// is killed if its agent comes back. `Ok(false)` when the task is not unreachable.
    pub(super) fn kill_unreachable(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
    ) -> Result<bool, CallError> {
        match self.disconnected.tasks.get_mut(task_id) {
            None => Ok(false),
            Some(t) if &t.framework_id != framework_id => {
                Err(CallError::NotYourTask(task_id.clone()))
            }
            Some(t) => {
                t.killed = true;
                Ok(true)
            }
        }
    }

    /// At `Accept`: a task's policy within bounds, and no replacement of a task that is
    /// running again and kept (launching it only to kill it could race the kill past the
    /// launch on the way to the agent).
    pub(super) fn check_disconnect(
        &self,
        framework_id: &FrameworkId,
        task: &TaskSpec,
    ) -> Result<(), CallError> {
        if let Some(policy) = &task.disconnect {
            policy
                .check()
                .map_err(|error| CallError::BadDisconnectPolicy {
                    task: task.task_id.clone(),
                    error,
                })?;
        }
        let Some(original) = &task.replaces else {
            return Ok(());
        };
        let kept = self.tasks.get(original).is_some_and(|t| {
            &t.framework_id == framework_id
                && !t.doomed
                && t.disconnect
                    .as_ref()
                    .is_some_and(|d| d.on_reconnect == OnReconnect::KeepOriginal)
        });
        if kept {
            return Err(CallError::OriginalKept {
                task: task.task_id.clone(),
                original: original.clone(),
            });
        }
        Ok(())
    }

    /// Unreachable tasks whose `lost_after_ms` ran out are lost.
    pub(super) fn unreachable_lost_due(&mut self, now: Millis) {
        for task_id in self.disconnected.lost_at.take_due(now) {
            let Some((unreachable, _)) = self.disconnected.forget(&task_id) else {
                continue;
            };
            tracing::info!(%task_id, "unreachable task lost: its agent did not come back in time");
            let status = TaskStatus {
                task_id: task_id.clone(),
                framework_id: unreachable.framework_id,
                agent_id: unreachable.agent_id,
                state: TaskState::Lost,
                exit_code: None,
                reason: NOT_BACK.to_owned(),
                uuid: StatusUuid(self.rng.next_u128()),
                timestamp_ms: 0,
            };
            self.tasks.retell_ended(&task_id, status.clone());
            let framework_id = status.framework_id.clone();
            self.tell(&framework_id, status);
        }
    }

    /// An unreachable task's agent is back listing it. Still running: taken back, its
    /// framework told, and the rule applied to a replacement. Ended while away: that end
    /// is what its framework is told.
    pub(super) fn reconnect(&mut self, agent_id: &AgentId, task: &AdvertTask) {
        let task_id = &task.status.task_id;
        let same =
            self.disconnected.tasks.get(task_id).is_some_and(|t| {
                &t.agent_id == agent_id && t.framework_id == task.status.framework_id
            });
        if !same {
            tracing::warn!(%task_id, %agent_id, "an agent lists an unreachable task of another agent or framework; ignored");
            return;
        }
        let Some((unreachable, replacement)) = self.disconnected.forget(task_id) else {
            return;
        };
        let status = TaskStatus {
            agent_id: agent_id.clone(),
            ..task.status.clone()
        };
        let framework_id = status.framework_id.clone();
        if status.state.is_terminal() {
            self.tasks.retell_ended(task_id, status.clone());
            return self.tell(&framework_id, status);
        }
        if !self.occupy(agent_id, &status, &task.resources) {
            return;
        }
        // Its framework gone, or it killed the task meanwhile: killed, never taken back.
        let gone = self
            .frameworks
            .get(&framework_id)
            .is_none_or(|f| f.torn_down);
        let doomed = gone || unreachable.killed;
        let told = self.tasks.ended(task_id).map(|e| e.latest.clone());
        let latest = match (doomed, told) {
            (true, Some(told)) => told,
            _ => status.clone(),
        };
        let on_reconnect = unreachable.policy.on_reconnect;
        let mut record = self.record_of(agent_id, task, latest, doomed);
        record.disconnect = Some(unreachable.policy);
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.tasks.insert(task_id.clone());
        }
        if let Some(fw) = self.frameworks.get_mut(&framework_id) {
            fw.tasks.insert(task_id.clone());
        }
        if doomed {
            tracing::info!(%task_id, %agent_id, "an unreachable task is back, but its framework is gone or killed it; killing it");
            self.tasks.revive_doomed(record);
            return self.push_kill(agent_id, task_id);
        }
        tracing::info!(%task_id, %agent_id, "an unreachable task is back with its agent");
        self.tasks.revive(record);
        self.tell(&framework_id, status);
        if let Some(replacement) = replacement {
            self.keep_one(task_id, &replacement, on_reconnect);
        }
    }

    /// An unreachable task's end reached the master before its agent's advert did.
    pub(super) fn unreachable_ended(&mut self, status: &TaskStatus) {
        self.disconnected.forget(&status.task_id);
        self.tasks.retell_ended(&status.task_id, status.clone());
    }

    /// `replacement` was launched by `framework_id` naming `original`: remembered while
    /// the original is unreachable; if the original is back already, the rule applies now.
    pub(super) fn note_replacement(
        &mut self,
        framework_id: &FrameworkId,
        original: TaskId,
        replacement: &TaskId,
    ) {
        if let Some(unreachable) = self.disconnected.tasks.get(&original) {
            if &unreachable.framework_id == framework_id {
                let d = &mut self.disconnected.replacements;
                d.insert(original, replacement.clone());
            }
            return;
        }
        let same_framework = self
            .tasks
            .get(&original)
            .is_some_and(|t| &t.framework_id == framework_id);
        if !same_framework {
            return;
        }
        let back = self.tasks.get(&original).filter(|t| !t.doomed);
        if let Some(rule) = back
            .and_then(|t| t.disconnect.as_ref())
            .map(|d| d.on_reconnect)
        {
            self.keep_one(&original, replacement, rule);
        }
    }

    /// Both an original and its replacement run: the one `rule` does not keep is killed.
    fn keep_one(&mut self, original: &TaskId, replacement: &TaskId, rule: OnReconnect) {
        let loser = match rule {
            OnReconnect::KeepOriginal => replacement,
            OnReconnect::KeepReplacement => original,
        };
        let Some(agent_id) = self.tasks.get(loser).map(|t| t.agent_id.clone()) else {
            return;
        };
        if self.tasks.get(original).is_none() || self.tasks.get(replacement).is_none() {
            return;
        }
        tracing::info!(%original, %replacement, rule = rule.as_str(), killed = %loser, "an unreachable task and its replacement both run; killing one");
        self.push_kill(&agent_id, loser);
    }

    /// Sends `status` to its framework if it listens.
    fn tell(&mut self, framework_id: &FrameworkId, status: TaskStatus) {
        let listening = self
            .frameworks
            .get(framework_id)
            .is_some_and(|f| !f.torn_down);
        if listening {
            self.send(framework_id, Event::Update { status });
        }
    }
}
