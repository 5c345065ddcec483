//! The agent's status journal: the tasks it holds, with their latest status, kept on disk
//! so that status updates survive an agent restart.
//!
//! The journal is the whole list, rewritten (to a temporary file, synced, then renamed
//! over the old one) whenever a task's status changes or an update is acknowledged: a
//! crash at any point leaves either the old or the new list, never a torn one. It holds
//! exactly the tasks the agent holds, so it is bounded by [`crate::TASKS_MAX`] (launches
//! beyond it are refused; nothing is ever dropped from the journal to make room). A list
//! that would encode to more than `proto::codec::FRAME_BYTES_MAX` is not written: the
//! error is logged and the previous journal stays.
//!
//! On start the agent reads the journal back. A terminal status not yet acknowledged is
//! sent again, unchanged. A task that was running in the dead agent process cannot have
//! survived if it was a WASM task (it ran inside that process): it is reported `failed`
//! with the reason [`AGENT_RESTARTED`]. An OCI task whose container outlived the agent
//! (runc runs it under a supervisor) is watched again; one whose container is gone is
//! reported `failed` too.

use std::io::Write;
use std::path::{Path, PathBuf};

use proto::{AdvertTask, TaskStatus};
use serde::{Deserialize, Serialize};

/// The journal's file name in the agent's work directory.
pub const JOURNAL_FILE: &str = "status-journal";
/// The reason given for tasks that died with the agent process.
pub const AGENT_RESTARTED: &str = "agent restarted";

/// One task as journaled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct JournalEntry {
    pub task: AdvertTask,
    /// An OCI task, whose container may have outlived the agent.
    pub oci: bool,
}

impl JournalEntry {
    pub(crate) fn status(&self) -> &TaskStatus {
        &self.task.status
    }
}

pub(crate) struct StatusJournal {
    path: PathBuf,
    tmp: PathBuf,
}

impl StatusJournal {
    pub(crate) fn new(work_dir: &Path) -> StatusJournal {
        StatusJournal {
            path: work_dir.join(JOURNAL_FILE),
            tmp: work_dir.join(format!("{JOURNAL_FILE}.tmp")),
        }
    }

    /// The journaled tasks; none when there is no journal. A journal that cannot be read
    /// is set aside as `status-journal.corrupt` with a warning, and the agent starts empty.
    pub(crate) fn load(&self) -> Vec<JournalEntry> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), %e, "cannot read the status journal; starting without it");
                return Vec::new();
            }
        };
        match proto::decode::<Vec<JournalEntry>>(&bytes) {
            Ok(entries) => entries,
            Err(e) => {
                let aside = self.path.with_extension("corrupt");
                tracing::warn!(path = %self.path.display(), %e, aside = %aside.display(), "the status journal is corrupt; set aside, starting without it");
                let _ = std::fs::rename(&self.path, aside);
                Vec::new()
            }
        }
    }

    /// Replaces the journal with `entries`; see the module's documentation for what a
    /// failure leaves behind.
    pub(crate) fn save(&self, entries: &[JournalEntry]) {
        if let Err(e) = self.write(entries) {
            tracing::error!(path = %self.path.display(), %e, "cannot write the status journal; status updates may not survive a restart");
        }
    }

    fn write(&self, entries: &[JournalEntry]) -> Result<(), String> {
        let bytes = proto::encode(&entries).map_err(|e| e.to_string())?;
        let mut file = std::fs::File::create(&self.tmp).map_err(|e| e.to_string())?;
        file.write_all(&bytes).map_err(|e| e.to_string())?;
        // Survives power loss, not only a killed process: edge devices lose power.
        file.sync_data().map_err(|e| e.to_string())?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use proto::{Resources, StatusUuid, TaskState};

    use super::*;

    fn entry(id: &str, state: TaskState) -> JournalEntry {
        JournalEntry {
            task: AdvertTask {
                status: TaskStatus {
                    task_id: id.into(),
                    framework_id: "fw".into(),
                    agent_id: "a".into(),
                    state,
                    exit_code: None,
                    reason: String::new(),
                    uuid: StatusUuid(1),
                    timestamp_ms: 0,
                },
                name: id.to_owned(),
                resources: Resources::new().with_scalar("cpus", 1.0),
            },
            oci: false,
        }
    }

    #[test]
    fn the_journal_reads_back_what_was_written_last() {
        let dir = tempfile::tempdir().unwrap();
        let journal = StatusJournal::new(dir.path());
        assert!(journal.load().is_empty());
        journal.save(&[entry("t1", TaskState::Running)]);
        let last = vec![
            entry("t1", TaskState::Finished),
            entry("t2", TaskState::Running),
        ];
        journal.save(&last);
        assert_eq!(StatusJournal::new(dir.path()).load(), last);
    }

    #[test]
    fn a_corrupt_journal_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(JOURNAL_FILE), b"\x01garbage").unwrap();
        let journal = StatusJournal::new(dir.path());
        assert!(journal.load().is_empty());
        assert!(dir.path().join("status-journal.corrupt").exists());
        assert!(!dir.path().join(JOURNAL_FILE).exists());
    }
}
