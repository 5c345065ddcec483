//! The agent's status journal on disk: the tasks it holds, with their latest status
//! ([`agent_core::JournalEntry`]), so that status updates survive an agent restart. What
//! is journaled when, and what recovery makes of it, is `agent_core`'s (see
//! [`agent_core::journal`]); this module only keeps the entries and writes and reads the
//! file.
//!
//! Group commit: the node's changes are applied in memory ([`StatusJournal::apply`]) and
//! the list is written once per batch ([`StatusJournal::commit`]), whole, to a temporary
//! file, synced, then renamed over the old one: a crash at any point leaves either the
//! old or the new list, never a torn one, and a batch of statuses costs one sync, not one
//! each. The driver commits before it publishes anything the batch journaled; the file is
//! written and synced on tokio's blocking pool, so that a sync never holds up the async
//! workers the other tasks (and, in a process of virtual agents, the other agents) run
//! on, and the inputs that arrive meanwhile make the next batch. The list
//! holds exactly the tasks the agent holds, so it is bounded by [`crate::TASKS_MAX`]
//! (launches beyond it are refused; nothing is ever dropped from the journal to make
//! room). A list that would encode to more than `proto::codec::FRAME_BYTES_MAX` is not
//! written: the error is logged and the previous file stays.

use std::io::Write;
use std::path::{Path, PathBuf};

pub use agent_core::AGENT_RESTARTED;
use agent_core::{JOURNAL_V4, Journal, JournalChange, JournalEntry, JournalEntryV4};
use thiserror::Error;

/// The journal's file name in the agent's work directory.
pub const JOURNAL_FILE: &str = "status-journal";

#[derive(Debug, Error)]
enum JournalError {
    #[error(transparent)]
    Encode(#[from] proto::EncodeError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub(crate) struct StatusJournal {
    path: PathBuf,
    tmp: PathBuf,
    journal: Journal,
    /// Changed since the last commit.
    dirty: bool,
}

impl StatusJournal {
    pub(crate) fn new(work_dir: &Path) -> StatusJournal {
        StatusJournal {
            path: work_dir.join(JOURNAL_FILE),
            tmp: work_dir.join(format!("{JOURNAL_FILE}.tmp")),
            journal: Journal::default(),
            dirty: false,
        }
    }

    /// Reads the journal on disk (none: empty) and returns its entries, which it now
    /// keeps. A journal that cannot be read is set aside as `status-journal.corrupt` with a
    /// warning, and the agent starts empty.
    pub(crate) fn load(&mut self) -> Vec<JournalEntry> {
        let entries = self.read();
        self.journal = Journal::of_entries(entries.clone());
        entries
    }

    fn read(&self) -> Vec<JournalEntry> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), %e, "cannot read the status journal; starting without it");
                return Vec::new();
            }
        };
        let current = proto::decode::<Vec<JournalEntry>>(&bytes);
        let read = current.or_else(|e| {
            // Written before an upgrade: the older layout, read once and rewritten.
            proto::codec::decode_as_version::<Vec<JournalEntryV4>>(&bytes, JOURNAL_V4)
                .map(|old| old.into_iter().map(JournalEntry::from).collect())
                .map_err(|_| e)
        });
        match read {
            Ok(entries) => entries,
            Err(e) => {
                let aside = self.path.with_extension("corrupt");
                tracing::warn!(path = %self.path.display(), %e, aside = %aside.display(), "the status journal is corrupt; set aside, starting without it");
                let _ = std::fs::rename(&self.path, aside);
                Vec::new()
            }
        }
    }

    /// Applies one change in memory; [`StatusJournal::commit`] writes it.
    pub(crate) fn apply(&mut self, change: JournalChange) {
        self.journal.apply(change);
        self.dirty = true;
    }

    /// Writes the journal if anything changed since the last commit; see the module's
    /// documentation for what a failure leaves behind.
    pub(crate) async fn commit(&mut self) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        if let Err(e) = self.write().await {
            tracing::error!(path = %self.path.display(), %e, "cannot write the status journal; status updates may not survive a restart");
        }
    }

    async fn write(&self) -> Result<(), JournalError> {
        let entries: Vec<&JournalEntry> = self.journal.entries().collect();
        let bytes = proto::encode(&entries)?;
        let (tmp, path) = (self.tmp.clone(), self.path.clone());
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            // Survives power loss, not only a killed process: edge devices lose power.
            file.sync_data()?;
            std::fs::rename(&tmp, &path)
        });
        written.await.map_err(std::io::Error::other)??;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use proto::{AdvertTask, Resources, StatusUuid, TaskState, TaskStatus};

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
            spec: None,
            starts: 1,
        }
    }

    #[tokio::test]
    async fn the_journal_reads_back_what_was_committed_last() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = StatusJournal::new(dir.path());
        assert!(journal.load().is_empty());
        journal.apply(JournalChange::Put(Box::new(entry(
            "t1",
            TaskState::Running,
        ))));
        journal.commit().await;
        journal.apply(JournalChange::Put(Box::new(entry(
            "t3",
            TaskState::Running,
        ))));
        journal.apply(JournalChange::Put(Box::new(entry(
            "t1",
            TaskState::Finished,
        ))));
        journal.apply(JournalChange::Put(Box::new(entry(
            "t2",
            TaskState::Running,
        ))));
        journal.apply(JournalChange::Remove("t3".into()));
        // Not on disk until committed.
        assert_eq!(
            StatusJournal::new(dir.path()).load(),
            vec![entry("t1", TaskState::Running)]
        );
        journal.commit().await;
        let last = vec![
            entry("t1", TaskState::Finished),
            entry("t2", TaskState::Running),
        ];
        let mut reread = StatusJournal::new(dir.path());
        assert_eq!(reread.load(), last);
        // What was read back is kept: a change to it commits the rest too.
        reread.apply(JournalChange::Remove("t1".into()));
        reread.commit().await;
        assert_eq!(
            StatusJournal::new(dir.path()).load(),
            vec![entry("t2", TaskState::Running)]
        );
    }

    #[test]
    fn a_journal_of_protocol_version_4_is_read_after_an_upgrade() {
        let now = entry("t1", TaskState::Running);
        // Version 4's entry was `{task, oci}`: postcard writes a struct as the tuple of
        // its fields.
        let old = vec![(now.task.clone(), true)];
        let mut frame = proto::encode(&old).unwrap();
        frame[0] = JOURNAL_V4;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(JOURNAL_FILE), frame).unwrap();
        let read = StatusJournal::new(dir.path()).load();
        assert_eq!(read, vec![JournalEntry { oci: true, ..now }]);
        assert!(!dir.path().join("status-journal.corrupt").exists());
    }

    #[test]
    fn a_corrupt_journal_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(JOURNAL_FILE), b"\x01garbage").unwrap();
        let mut journal = StatusJournal::new(dir.path());
        assert!(journal.load().is_empty());
        assert!(dir.path().join("status-journal.corrupt").exists());
        assert!(!dir.path().join(JOURNAL_FILE).exists());
    }
}
