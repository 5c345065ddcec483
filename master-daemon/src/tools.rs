//! What operator tools (`wasmos ps`, `agents`, `frameworks`, `logs`, `kill`, `run`,
//! `framework`) ask a running cluster, over a session opened with `net::NetConfig::tool`:
//! the operator protocol (`proto::operator`) on the master's `master/admin` queryable.

use net::{Net, QueryError};
use proto::TaskId;
use proto::admin::{LogsRequest, TaskOutput};
use proto::operator::{OperatorError, OperatorReply, OperatorRequest};
use thiserror::Error;

/// How long a tool waits for the master or an agent to answer.
pub const TOOL_QUERY_TIMEOUT_MS: u64 = 5_000;

#[derive(Debug, Error)]
pub enum ToolError {
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The master did not do it, and why.
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// An agent did not give what was asked, and why.
    #[error("{0}")]
    Refused(String),
    #[error("the master answered another question: {0}")]
    Unexpected(String),
    /// The master could not decode the request: it predates this kind of request.
    #[error(
        "the master does not understand this request ({0}): it is older than this wasmos ({version}); upgrade the master",
        version = env!("CARGO_PKG_VERSION")
    )]
    MasterTooOld(String),
}

impl ToolError {
    /// No master answered (yet): one may be restarting, and asking again may help.
    pub fn no_master_answer(&self) -> bool {
        matches!(self, ToolError::Query(e) if e.no_answer())
    }
}

/// Asks the master; its refusals are [`ToolError::Operator`].
pub async fn ask(
    net: &Net,
    request: &OperatorRequest,
    timeout_ms: u64,
) -> Result<OperatorReply, ToolError> {
    let key = net.keys().master_admin(net.principal());
    let answer = match net.query(&key, request, timeout_ms).await {
        Ok(answer) => answer,
        Err(e) if e.request_not_understood() => return Err(ToolError::MasterTooOld(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    match answer {
        OperatorReply::Error(e) => Err(ToolError::Operator(e)),
        reply => Ok(reply),
    }
}

/// An answer that does not fit the question.
pub fn unexpected(reply: &OperatorReply) -> ToolError {
    let mut what = format!("{reply:?}");
    what.truncate(200);
    ToolError::Unexpected(what)
}

/// The last bytes a task wrote, running or ended, through the master (which asks the
/// agent in its row): what `wasmos logs` shows.
pub async fn task_logs(net: &Net, task_id: &TaskId) -> Result<TaskOutput, ToolError> {
    let request = OperatorRequest::Logs(LogsRequest {
        task_id: task_id.clone(),
        from: None,
    });
    match ask(net, &request, TOOL_QUERY_TIMEOUT_MS).await? {
        OperatorReply::Logs(output) => Ok(output),
        other => Err(unexpected(&other)),
    }
}

/// Kills `task_id` as the operator, as `wasmos kill` does: its framework sees the
/// `killed` update (a task of the jobs framework not launched yet is cancelled).
pub async fn kill_task(net: &Net, task_id: &TaskId) -> Result<(), ToolError> {
    let request = OperatorRequest::Kill {
        task_id: task_id.clone(),
    };
    match ask(net, &request, TOOL_QUERY_TIMEOUT_MS).await? {
        OperatorReply::Killed => Ok(()),
        other => Err(unexpected(&other)),
    }
}

/// One of the master's listings (agents, frameworks, tasks, offers, decode errors) as
/// JSON, for tools that print it: the rows' JSON is the HTTP API's.
pub async fn listing_json(
    net: &Net,
    request: &OperatorRequest,
) -> Result<serde_json::Value, ToolError> {
    let reply = ask(net, request, TOOL_QUERY_TIMEOUT_MS).await?;
    let json = match &reply {
        OperatorReply::Agents(rows) => serde_json::to_value(rows),
        OperatorReply::Frameworks(rows) => serde_json::to_value(rows),
        OperatorReply::Tasks(rows) => serde_json::to_value(rows),
        OperatorReply::Offers(rows) => serde_json::to_value(rows),
        OperatorReply::DecodeErrors(counts) => serde_json::to_value(counts),
        other => return Err(unexpected(other)),
    };
    json.map_err(|e| ToolError::Unexpected(format!("rows that are not JSON: {e}")))
}
