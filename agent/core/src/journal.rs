//! What the agent journals: the tasks it holds, with their latest status, so that status
//! updates survive an agent restart. The daemon writes the list to disk whole
//! ([`crate::AgentAction::SaveJournal`]) and hands it back to [`crate::AgentNode::recover`].
//!
//! On recovery a terminal status not yet acknowledged is sent again, unchanged. A task
//! that was running in the dead agent process cannot have survived if it was a WASM task
//! (it ran inside that process): it is reported `failed` with the reason
//! [`AGENT_RESTARTED`]. An OCI task whose container outlived the agent (runc runs it under
//! a supervisor) is kept; one whose container is gone is reported `failed` too.

use proto::{AdvertTask, TaskStatus};
use serde::{Deserialize, Serialize};

/// The reason given for tasks that died with the agent process.
pub const AGENT_RESTARTED: &str = "agent restarted";

/// One task as journaled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub task: AdvertTask,
    /// An OCI task, whose container may have outlived the agent.
    pub oci: bool,
}

impl JournalEntry {
    pub fn status(&self) -> &TaskStatus {
        &self.task.status
    }
}
