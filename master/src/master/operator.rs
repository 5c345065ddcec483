//! The operator's inputs: a kill in the operator's own name, and what agents report of
//! their tasks' usage (kept for the read model, `crate::view`).

use proto::{AgentId, TaskId, TaskState, TaskUsageReport};

use super::{Action, Master};
use crate::tasks::TaskUsage;
use crate::time::Millis;

/// Why an operator's kill was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OperatorKillError {
    /// Neither live nor remembered as ended: it may be a task a framework has not
    /// launched yet (the jobs framework's, which the caller then cancels there).
    #[error("no task {0}")]
    Unknown(TaskId),
    #[error("task {task_id} already ended ({})", state.as_str())]
    Ended { task_id: TaskId, state: TaskState },
}

impl Master {
    /// Kills a live task as the operator, whichever framework runs it: its agent is told
    /// to kill it (with the configured grace), and its framework then sees the `killed`
    /// update as for any kill. Looks the task up directly in the registry.
    pub fn handle_operator_kill(
        &mut self,
        now: Millis,
        task_id: &TaskId,
    ) -> Result<(), OperatorKillError> {
        self.advance(now);
        let Some(task) = self.tasks.get_mut(task_id) else {
            return Err(match self.tasks.ended(task_id) {
                Some(ended) => OperatorKillError::Ended {
                    task_id: task_id.clone(),
                    state: ended.latest.state,
                },
                None => OperatorKillError::Unknown(task_id.clone()),
            });
        };
        task.kill_requested = true;
        self.actions.push_back(Action::KillTask {
            agent_id: task.agent_id.clone(),
            task_id: task_id.clone(),
            grace_ms: self.config.kill_grace_ms,
        });
        Ok(())
    }

    /// What a task uses, as its agent reported it; shown in the task's row. Reports of
    /// tasks that are not live are dropped.
    pub fn handle_task_usage(&mut self, now: Millis, report: &TaskUsageReport) {
        self.advance(now);
        let usage = TaskUsage {
            cpu_seconds: report.cpu_seconds,
            memory_bytes: report.memory_bytes,
        };
        self.tasks.set_usage(&report.task_id, usage);
    }

    /// Called as an agent is lost, before its books go: the listing keeps its last row.
    pub(crate) fn remember_lost_agent(&mut self, agent_id: &AgentId) {
        if let Some(row) = self.agent_row(agent_id) {
            self.lost_agents.remember(row);
        }
    }
}

#[cfg(test)]
mod tests {
    use proto::{FrameworkId, StatusUuid, TaskStatus};

    use super::*;
    use crate::MasterConfig;

    #[test]
    fn an_operator_kill_tells_unknown_from_ended() {
        let mut master = Master::new(MasterConfig::default(), 0);
        let unknown = master.handle_operator_kill(Millis(1), &TaskId::new("none"));
        assert_eq!(
            unknown,
            Err(OperatorKillError::Unknown(TaskId::new("none")))
        );
        let status = TaskStatus {
            task_id: TaskId::new("done"),
            framework_id: FrameworkId::new("f"),
            agent_id: AgentId::new("a"),
            state: TaskState::Finished,
            exit_code: Some(0),
            reason: String::new(),
            uuid: StatusUuid(1),
            timestamp_ms: 0,
        };
        // An agent lists the ended task it has not had acknowledged (as after a restart).
        let advert = proto::AgentAdvert {
            agent_id: AgentId::new("a"),
            hostname: "a".to_owned(),
            attributes: proto::Attributes::default(),
            total: proto::Resources::new().with_scalar("cpus", 1.0),
            reserved: proto::Resources::new(),
            seq: 1,
            incarnation: 1,
            tasks: vec![proto::AdvertTask {
                status,
                name: "done".to_owned(),
                resources: proto::Resources::new(),
            }],
            version: String::new(),
            last_census: None,
        };
        master.handle_agent_advert(Millis(2), advert);
        let ended = master.handle_operator_kill(Millis(3), &TaskId::new("done"));
        assert_eq!(
            ended.map_err(|e| e.to_string()),
            Err("task done already ended (finished)".to_owned())
        );
    }
}
