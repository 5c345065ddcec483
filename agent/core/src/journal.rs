//! What the agent journals: the tasks it holds, with their latest status, so that status
//! updates survive an agent restart. The node says what changed, one task at a time
//! ([`crate::AgentAction::Journal`] with a [`JournalChange`]), so that a status costs the
//! same whatever else the agent holds; the daemon applies the changes to a [`Journal`],
//! writes it to disk and hands its entries back to [`crate::AgentNode::recover`].
//!
//! On recovery a terminal status not yet acknowledged is sent again, unchanged. A task
//! that was running in the dead agent process cannot have survived if it was a WASM task
//! (it ran inside that process): it is reported `failed` with the reason
//! [`AGENT_RESTARTED`]. An OCI task whose container outlived the agent (runc runs it under
//! a supervisor) is kept; one whose container is gone is reported `failed` too, unless
//! its `TaskSpec::disconnect` policy restarts it in place (then its spec and the starts it
//! has used are journaled with it; `offline.rs`).

use std::collections::BTreeMap;

use proto::{AdvertTask, TaskId, TaskSpec, TaskStatus};
use serde::{Deserialize, Serialize};

pub use proto::AGENT_RESTARTED;

/// One task as journaled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub task: AdvertTask,
    /// An OCI task, whose container may have outlived the agent.
    pub oci: bool,
    /// The task as launched, kept for a task its agent may restart in place.
    pub spec: Option<TaskSpec>,
    /// Tasks started for it on this agent, the first included.
    pub starts: u32,
}

impl JournalEntry {
    pub fn status(&self) -> &TaskStatus {
        &self.task.status
    }
}

/// A journal entry as protocol version 4 wrote it (before restarts in place): read back
/// after an upgrade, so that statuses not yet acknowledged and surviving containers are
/// not lost with it.
#[derive(Clone, Debug, Deserialize)]
pub struct JournalEntryV4 {
    pub task: AdvertTask,
    pub oci: bool,
}

/// The protocol version [`JournalEntryV4`] was written under.
pub const JOURNAL_V4: u8 = 4;
/// Protocol version 5 wrote [`JournalEntry`] as it is now (version 6 changed only the
/// acknowledgement messages): read after an upgrade as today's entries.
pub const JOURNAL_V5: u8 = 5;

impl From<JournalEntryV4> for JournalEntry {
    fn from(old: JournalEntryV4) -> JournalEntry {
        JournalEntry {
            task: old.task,
            oci: old.oci,
            spec: None,
            starts: 1,
        }
    }
}

/// One change to the journal.
#[derive(Clone, Debug, PartialEq)]
pub enum JournalChange {
    /// The task as it is now: its entry is added or replaced.
    Put(Box<JournalEntry>),
    /// The task is no longer held: its entry goes.
    Remove(TaskId),
}

/// The journal's entries by task, as the changes made them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Journal {
    entries: BTreeMap<TaskId, JournalEntry>,
}

impl Journal {
    /// A journal holding `entries` (as read back from disk).
    pub fn of_entries(entries: Vec<JournalEntry>) -> Journal {
        let entries = entries
            .into_iter()
            .map(|e| (e.status().task_id.clone(), e))
            .collect();
        Journal { entries }
    }

    pub fn apply(&mut self, change: JournalChange) {
        match change {
            JournalChange::Put(entry) => {
                self.entries.insert(entry.status().task_id.clone(), *entry);
            }
            JournalChange::Remove(task_id) => {
                self.entries.remove(&task_id);
            }
        }
    }

    /// The entries, by task id.
    pub fn entries(&self) -> impl Iterator<Item = &JournalEntry> {
        self.entries.values()
    }
}
