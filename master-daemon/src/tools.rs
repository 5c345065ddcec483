//! What operator tools (`wasmos ps`, `agents`, `frameworks`, `logs`) ask a running
//! cluster, over a session opened with `net::NetConfig::tool`.

use net::{Net, QueryError};
use proto::admin::{AdminReply, AdminRequest, LogsReply, LogsRequest};
use proto::{AgentId, Call, CallReply, FrameworkCall, FrameworkId, TaskId};
use thiserror::Error;

/// How long a tool waits for the master or an agent to answer.
pub const TOOL_QUERY_TIMEOUT_MS: u64 = 5_000;

#[derive(Debug, Error)]
pub enum ToolError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("{0}")]
    Refused(String),
}

/// One of the master's views as JSON: an array with one object per row (agents,
/// frameworks with their DRF shares, tasks, offers) or, for decode errors, an object
/// from key to count.
pub async fn admin_json(net: &Net, request: AdminRequest) -> Result<String, ToolError> {
    match net
        .query(&net.keys().master_admin(), &request, TOOL_QUERY_TIMEOUT_MS)
        .await?
    {
        AdminReply::Json { json } => Ok(json),
        AdminReply::Error { message } => Err(ToolError::Refused(message)),
    }
}

/// What an ended task wrote, from the agent that ran it (the agent is in the task's row
/// of the master's `Tasks` view).
pub async fn task_logs(
    net: &Net,
    agent_id: &AgentId,
    task_id: &TaskId,
) -> Result<LogsReply, ToolError> {
    let request = LogsRequest {
        task_id: task_id.clone(),
    };
    match net
        .query(
            &net.keys().agent_logs(agent_id.as_str()),
            &request,
            TOOL_QUERY_TIMEOUT_MS,
        )
        .await?
    {
        LogsReply::Error { message } => Err(ToolError::Refused(message)),
        output => Ok(output),
    }
}

/// Kills `task_id` on behalf of its framework (`framework_id` is in the task's row of the
/// master's `Tasks` view), as `wasmos kill` does; the framework sees the `killed` update.
pub async fn kill_task(
    net: &Net,
    framework_id: &FrameworkId,
    task_id: &TaskId,
) -> Result<(), ToolError> {
    let call = FrameworkCall {
        framework_id: Some(framework_id.clone()),
        call: Call::Kill {
            task_id: task_id.clone(),
        },
    };
    match net
        .query(&net.keys().master_calls(), &call, TOOL_QUERY_TIMEOUT_MS)
        .await?
    {
        CallReply::Error { message } => Err(ToolError::Refused(message)),
        _ => Ok(()),
    }
}
