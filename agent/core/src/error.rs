//! Why the agent refuses a master command. The message is the `AgentReply::Error` the
//! master sees.

use proto::keys::KeyError;
use proto::{AgentId, TaskId};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CommandRefused {
    /// The task id names the sandbox directory: it must be one plain path component.
    #[error(transparent)]
    TaskIdInvalid(#[from] KeyError),
    #[error("task id {0:?} must not start with a dot")]
    TaskIdDot(TaskId),
    #[error("agent {agent_id} already holds a task {task_id}")]
    TaskHeld { agent_id: AgentId, task_id: TaskId },
    #[error("agent {agent_id} holds {tasks_max} tasks already")]
    TasksFull { agent_id: AgentId, tasks_max: usize },
    #[error("agent {agent_id} holds no task {task_id}")]
    TaskUnknown { agent_id: AgentId, task_id: TaskId },
    #[error("{0} acknowledgements in one command, over the limit of {max}", max = proto::ACKS_PER_CALL_MAX)]
    TooManyAcks(usize),
    #[error("agent {0} {how}", how = proto::AGENT_SHUTTING_DOWN)]
    ShuttingDown(AgentId),
    #[error("task {task_id}: {error}")]
    Policy {
        task_id: TaskId,
        error: proto::DisconnectPolicyError,
    },
}
