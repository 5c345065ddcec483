//! The agent's status journal on disk: the tasks it holds, with their latest status
//! ([`agent_core::JournalEntry`]), so that status updates survive an agent restart. What
//! is journaled when, and what recovery makes of it, is `agent_core`'s (see
//! [`agent_core::journal`]); this module only keeps the entries and writes and reads the
//! files.
//!
//! Group commit: the node's changes are applied in memory (`StatusJournal::apply`) and
//! the list is written once per batch (`StatusJournal::commit`), whole, as one record
//! into one of two slot files kept open, the two taken in turn, then synced. A record is
//! `WJ01`, its sequence number, its length and a CRC-32 of all three and the list; on
//! load the valid record with the highest sequence number wins. A crash during a write
//! leaves that slot's record invalid and the other slot's, the batch before, intact:
//! never a torn list. A commit overwrites blocks the file already has, so it creates no
//! file and no inode (the earlier write-a-temporary-file-and-rename cost about three
//! times as much per sync, and a new inode per batch), and a batch of statuses costs one
//! sync, not one each. The driver commits before it publishes anything the batch
//! journaled; the write and sync run on tokio's blocking pool, so that a sync never holds
//! up the async workers the other tasks (and, in a process of virtual agents, the other
//! agents) run on, and the inputs that arrive meanwhile make the next batch. The list
//! holds exactly the tasks the agent holds, so it is bounded by [`crate::TASKS_MAX`]
//! (launches beyond it are refused; nothing is ever dropped from the journal to make
//! room). A list that would encode to more than `proto::codec::FRAME_BYTES_MAX` is not
//! written: the error is logged and the previous record stays.
//!
//! An agent upgraded from the one-file journal (`status-journal`, replaced by renaming)
//! reads that file once; the first commit removes it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use agent_core::AGENT_RESTARTED;
use agent_core::{JOURNAL_V4, JOURNAL_V5, JournalChange, JournalEntry, JournalEntryV4};
use proto::codec::FRAME_BYTES_MAX;
use proto::{EncodeError, TaskId};
use thiserror::Error;

/// The one-file journal of earlier agents, read once after an upgrade.
pub const JOURNAL_FILE: &str = "status-journal";
/// The two slot files, in the agent's work directory.
pub const SLOT_FILES: [&str; 2] = ["status-journal.0", "status-journal.1"];

const MAGIC: [u8; 4] = *b"WJ01";
/// Magic, sequence number (u64), list length (u32) and CRC-32 (u32), little-endian.
const HEADER_BYTES: usize = 20;

#[derive(Debug, Error)]
enum JournalError {
    #[error(transparent)]
    Encode(#[from] proto::EncodeError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub(crate) struct StatusJournal {
    dir: PathBuf,
    entries: EncodedEntries,
    /// Changed since the last commit.
    dirty: bool,
    /// The two slot files, open from the first load or commit that could open them.
    slots: Option<Arc<[File; 2]>>,
    /// The slot the next commit writes: never the one holding the latest valid record.
    next_slot: usize,
    /// The next record's sequence number.
    next_seq: u64,
    /// The one-file journal was read: the first commit removes it.
    legacy: bool,
}

/// What a slot file holds.
enum Slot {
    /// No file, or an empty one (created, never written).
    Empty,
    Valid {
        seq: u64,
        entries: Vec<JournalEntry>,
    },
    Invalid(String),
}

impl StatusJournal {
    pub(crate) fn new(work_dir: &Path) -> StatusJournal {
        StatusJournal {
            dir: work_dir.to_owned(),
            entries: EncodedEntries::default(),
            dirty: false,
            slots: None,
            next_slot: 0,
            next_seq: 1,
            legacy: false,
        }
    }

    /// Reads the journal on disk (none: empty) and returns its entries, which it now
    /// keeps. When no slot holds a valid record, the slots that hold something else are
    /// set aside as `status-journal.<n>.corrupt` with a warning, then the one-file journal
    /// of an earlier agent is read if there is one (set aside as `status-journal.corrupt`
    /// if unreadable), and otherwise the agent starts empty.
    pub(crate) fn load(&mut self) -> Vec<JournalEntry> {
        let _ = std::fs::remove_file(self.dir.join(format!("{JOURNAL_FILE}.tmp")));
        let entries = self.read();
        if let Err(e) = self.open_slots() {
            tracing::warn!(dir = %self.dir.display(), %e, "cannot open the status journal; each commit will try again");
        }
        self.entries = EncodedEntries::default();
        for entry in &entries {
            self.entries.put(entry);
        }
        entries
    }

    fn read(&mut self) -> Vec<JournalEntry> {
        let mut slots = SLOT_FILES.map(|name| read_slot(&self.dir.join(name)));
        let newest = (0..2)
            .filter_map(|i| slots[i].seq().map(|seq| (seq, i)))
            .max();
        let legacy = self.dir.join(JOURNAL_FILE);
        if let Some((seq, i)) = newest {
            if let Slot::Invalid(reason) = &slots[1 - i] {
                tracing::info!(slot = SLOT_FILES[1 - i], %reason, "a status journal slot holds no valid record (a write cut short, or damage); the other slot's is used");
            }
            let _ = std::fs::remove_file(&legacy);
            self.next_slot = 1 - i;
            self.next_seq = seq + 1;
            return std::mem::replace(&mut slots[i], Slot::Empty).into_entries();
        }
        for (name, slot) in SLOT_FILES.iter().zip(&slots) {
            if let Slot::Invalid(reason) = slot {
                let path = self.dir.join(name);
                let aside = self.dir.join(format!("{name}.corrupt"));
                tracing::warn!(path = %path.display(), %reason, aside = %aside.display(), "the status journal is corrupt; set aside, starting without it");
                let _ = std::fs::rename(&path, aside);
            }
        }
        self.legacy = legacy.exists();
        read_legacy(&legacy)
    }

    /// Opens (creating) both slot files, and makes their names durable if it created them.
    fn open_slots(&mut self) -> std::io::Result<Arc<[File; 2]>> {
        if let Some(slots) = &self.slots {
            return Ok(slots.clone());
        }
        let paths = SLOT_FILES.map(|name| self.dir.join(name));
        let created = paths.iter().any(|p| !p.exists());
        let open = |path: &PathBuf| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
        };
        let slots = Arc::new([open(&paths[0])?, open(&paths[1])?]);
        if created {
            File::open(&self.dir)?.sync_all()?;
        }
        self.slots = Some(slots.clone());
        Ok(slots)
    }

    /// Applies one change in memory; [`StatusJournal::commit`] writes it.
    pub(crate) fn apply(&mut self, change: JournalChange) {
        match change {
            JournalChange::Put(entry) => self.entries.put(&entry),
            JournalChange::Remove(task_id) => self.entries.remove(&task_id),
        }
        self.dirty = true;
    }

    /// Writes the journal if anything changed since the last commit; see the module's
    /// documentation for what a failure leaves behind.
    pub(crate) async fn commit(&mut self) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        if let Err(e) = self.write().await {
            tracing::error!(dir = %self.dir.display(), %e, "cannot write the status journal; status updates may not survive a restart");
        }
    }

    async fn write(&mut self) -> Result<(), JournalError> {
        let record = record(self.next_seq, &self.entries.list()?);
        let slots = self.open_slots()?;
        let slot = self.next_slot;
        let legacy = self.legacy.then(|| self.dir.join(JOURNAL_FILE));
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let file = &slots[slot];
            file.write_all_at(&record, 0)?;
            // Survives power loss, not only a killed process: edge devices lose power.
            file.sync_data()?;
            match legacy.map(std::fs::remove_file) {
                Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        });
        written.await.map_err(std::io::Error::other)??;
        // Only now: after a failed write this slot is torn, and the next commit must
        // write it again rather than overwrite the other, last valid, record.
        self.next_slot = 1 - slot;
        self.next_seq += 1;
        self.legacy = false;
        Ok(())
    }
}

/// The journal's entries by task, each encoded once, when it changes: a commit then
/// copies the list rather than encoding every entry again (that encoding was 6% of all
/// CPU in the throughput benchmark, agents holding tens of tasks each).
#[derive(Default)]
struct EncodedEntries {
    /// Each entry's frame (`proto::encode`: the protocol version, then the entry).
    frames: BTreeMap<TaskId, Vec<u8>>,
}

impl EncodedEntries {
    /// Adds or replaces the task's entry. One that cannot be encoded (over the frame
    /// limit alone) is logged and left out: the rest of the journal is still written.
    fn put(&mut self, entry: &JournalEntry) {
        let task_id = &entry.status().task_id;
        match proto::encode(entry) {
            Ok(frame) => {
                self.frames.insert(task_id.clone(), frame);
            }
            Err(e) => {
                self.frames.remove(task_id);
                tracing::error!(%task_id, %e, "cannot journal this task; its status may not survive a restart");
            }
        }
    }

    fn remove(&mut self, task_id: &TaskId) {
        self.frames.remove(task_id);
    }

    /// The frame `proto::encode` makes of the entries as a `Vec` in task order: postcard
    /// writes a sequence as its length, encoded as a `usize` is, then the items.
    fn list(&self) -> Result<Vec<u8>, EncodeError> {
        let mut list = proto::encode(&self.frames.len())?;
        list.reserve(self.frames.values().map(|f| f.len() - 1).sum());
        for frame in self.frames.values() {
            list.extend_from_slice(&frame[1..]);
        }
        if list.len() > FRAME_BYTES_MAX {
            return Err(EncodeError::TooLarge {
                len: list.len(),
                max: FRAME_BYTES_MAX,
            });
        }
        Ok(list)
    }
}

/// One slot's record: header, then the encoded list.
fn record(seq: u64, list: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(HEADER_BYTES + list.len());
    record.extend_from_slice(&MAGIC);
    record.extend_from_slice(&seq.to_le_bytes());
    // `proto::encode` refuses frames over FRAME_BYTES_MAX (4 MiB), far below u32::MAX.
    record.extend_from_slice(&u32::try_from(list.len()).unwrap_or(u32::MAX).to_le_bytes());
    let crc = checksum(&record[4..16], list);
    record.extend_from_slice(&crc.to_le_bytes());
    record.extend_from_slice(list);
    record
}

fn checksum(seq_and_len: &[u8], list: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(seq_and_len);
    hasher.update(list);
    hasher.finalize()
}

impl Slot {
    fn seq(&self) -> Option<u64> {
        match self {
            Slot::Valid { seq, .. } => Some(*seq),
            Slot::Empty | Slot::Invalid(_) => None,
        }
    }

    fn into_entries(self) -> Vec<JournalEntry> {
        match self {
            Slot::Valid { entries, .. } => entries,
            Slot::Empty | Slot::Invalid(_) => Vec::new(),
        }
    }
}

fn read_slot(path: &Path) -> Slot {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Slot::Empty,
        Err(e) => return Slot::Invalid(format!("cannot be read: {e}")),
    };
    if bytes.is_empty() {
        return Slot::Empty;
    }
    match parse_record(&bytes) {
        Ok((seq, list)) => match decode_list(list) {
            Ok(entries) => Slot::Valid { seq, entries },
            Err(e) => Slot::Invalid(e.to_string()),
        },
        Err(reason) => Slot::Invalid(reason.to_owned()),
    }
}

/// The sequence number and list of a record, checked; whatever follows it in the file
/// (a longer record written there before) is not part of it.
fn parse_record(bytes: &[u8]) -> Result<(u64, &[u8]), &'static str> {
    let header = bytes.get(..HEADER_BYTES).ok_or("shorter than a header")?;
    if header[..4] != MAGIC {
        return Err("not a journal record");
    }
    let word = |at: usize, len: usize| {
        let mut buf = [0u8; 8];
        buf[..len].copy_from_slice(&header[at..at + len]);
        u64::from_le_bytes(buf)
    };
    let (seq, len, crc) = (word(4, 8), word(12, 4), word(16, 4));
    let list = usize::try_from(len)
        .ok()
        .and_then(|len| bytes.get(HEADER_BYTES..HEADER_BYTES.checked_add(len)?))
        .ok_or("cut short")?;
    if u64::from(checksum(&header[4..16], list)) != crc {
        return Err("checksum mismatch");
    }
    Ok((seq, list))
}

/// The list in the current layout (under this protocol version or version 5), or else
/// in protocol version 4's.
fn decode_list(bytes: &[u8]) -> Result<Vec<JournalEntry>, proto::DecodeError> {
    proto::decode::<Vec<JournalEntry>>(bytes).or_else(|e| {
        proto::codec::decode_as_version::<Vec<JournalEntry>>(bytes, JOURNAL_V5)
            .or_else(|_| {
                proto::codec::decode_as_version::<Vec<JournalEntryV4>>(bytes, JOURNAL_V4)
                    .map(|old| old.into_iter().map(JournalEntry::from).collect())
            })
            .map_err(|_| e)
    })
}

/// The one-file journal of an earlier agent (none: empty); unreadable, it is set aside
/// as `status-journal.corrupt` with a warning.
fn read_legacy(path: &Path) -> Vec<JournalEntry> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), %e, "cannot read the status journal; starting without it");
            return Vec::new();
        }
    };
    match decode_list(&bytes) {
        Ok(entries) => entries,
        Err(e) => {
            let aside = path.with_extension("corrupt");
            tracing::warn!(path = %path.display(), %e, aside = %aside.display(), "the status journal is corrupt; set aside, starting without it");
            let _ = std::fs::rename(path, aside);
            Vec::new()
        }
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

    #[tokio::test]
    async fn a_journal_of_protocol_version_4_is_read_after_an_upgrade() {
        let now = entry("t1", TaskState::Running);
        // Version 4's entry was `{task, oci}`: postcard writes a struct as the tuple of
        // its fields.
        let old = vec![(now.task.clone(), true)];
        let mut frame = proto::encode(&old).unwrap();
        frame[0] = JOURNAL_V4;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(JOURNAL_FILE), frame).unwrap();
        let mut journal = StatusJournal::new(dir.path());
        let read = journal.load();
        assert_eq!(
            read,
            vec![JournalEntry {
                oci: true,
                ..now.clone()
            }]
        );
        assert!(!dir.path().join("status-journal.corrupt").exists());
        // Read until the first commit, which replaces it.
        assert_eq!(StatusJournal::new(dir.path()).load(), read);
        journal.apply(JournalChange::Put(Box::new(entry(
            "t2",
            TaskState::Running,
        ))));
        journal.commit().await;
        assert!(!dir.path().join(JOURNAL_FILE).exists());
        let entries = StatusJournal::new(dir.path()).load();
        assert_eq!(
            entries,
            vec![
                JournalEntry { oci: true, ..now },
                entry("t2", TaskState::Running)
            ]
        );
    }

    /// Version 6 changed only the acknowledgement messages: a version-5 journal, in slots
    /// or in the one file before them, is read as it is.
    #[test]
    fn a_journal_of_protocol_version_5_is_read_after_an_upgrade() {
        let entries = vec![
            entry("t1", TaskState::Running),
            entry("t2", TaskState::Finished),
        ];
        let mut list = proto::encode(&entries).unwrap();
        list[0] = JOURNAL_V5;
        let legacy = tempfile::tempdir().unwrap();
        std::fs::write(legacy.path().join(JOURNAL_FILE), &list).unwrap();
        assert_eq!(StatusJournal::new(legacy.path()).load(), entries);
        let slots = tempfile::tempdir().unwrap();
        std::fs::write(slots.path().join(SLOT_FILES[0]), record(1, &list)).unwrap();
        assert_eq!(StatusJournal::new(slots.path()).load(), entries);
    }

    #[test]
    fn the_list_is_what_encoding_the_entries_makes() {
        let mut encoded = EncodedEntries::default();
        let mut entries = BTreeMap::new();
        // 200 entries: a count that takes two bytes.
        for i in 0..200 {
            let e = entry(&format!("t{i:03}"), TaskState::Running);
            encoded.put(&e);
            entries.insert(i, e);
            let all: Vec<&JournalEntry> = entries.values().collect();
            assert_eq!(encoded.list().unwrap(), proto::encode(&all).unwrap());
        }
        let replaced = entry("t007", TaskState::Finished);
        encoded.put(&replaced);
        entries.insert(7, replaced);
        encoded.remove(&"t100".into());
        entries.remove(&100);
        let all: Vec<&JournalEntry> = entries.values().collect();
        assert_eq!(encoded.list().unwrap(), proto::encode(&all).unwrap());
        assert_eq!(
            proto::encode(&Vec::<JournalEntry>::new()).unwrap(),
            EncodedEntries::default().list().unwrap()
        );
    }

    /// Two commits, `t1` then `t1` and `t2`: the first record in slot 0, the second in 1.
    async fn two_commits(dir: &Path) -> StatusJournal {
        let mut journal = StatusJournal::new(dir);
        journal.load();
        journal.apply(JournalChange::Put(Box::new(entry(
            "t1",
            TaskState::Running,
        ))));
        journal.commit().await;
        journal.apply(JournalChange::Put(Box::new(entry(
            "t2",
            TaskState::Running,
        ))));
        journal.commit().await;
        journal
    }

    fn flip_last_byte(path: &Path) {
        let mut bytes = std::fs::read(path).unwrap();
        *bytes.last_mut().unwrap() ^= 0xff;
        std::fs::write(path, bytes).unwrap();
    }

    #[tokio::test]
    async fn a_record_cut_short_leaves_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        two_commits(dir.path()).await;
        flip_last_byte(&dir.path().join(SLOT_FILES[1]));
        let mut journal = StatusJournal::new(dir.path());
        assert_eq!(journal.load(), vec![entry("t1", TaskState::Running)]);
        assert!(!dir.path().join("status-journal.1.corrupt").exists());
        // The next record goes where the torn one was, not over the last valid one.
        journal.apply(JournalChange::Put(Box::new(entry(
            "t3",
            TaskState::Running,
        ))));
        journal.commit().await;
        flip_last_byte(&dir.path().join(SLOT_FILES[1]));
        assert_eq!(
            StatusJournal::new(dir.path()).load(),
            vec![entry("t1", TaskState::Running)]
        );
    }

    #[tokio::test]
    async fn commits_write_the_same_two_files() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mut journal = two_commits(dir.path()).await;
        let inodes =
            || SLOT_FILES.map(|name| std::fs::metadata(dir.path().join(name)).unwrap().ino());
        let before = inodes();
        for i in 0..5 {
            journal.apply(JournalChange::Remove(format!("t{i}").as_str().into()));
            journal.commit().await;
        }
        assert_eq!(inodes(), before);
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, SLOT_FILES);
        assert!(StatusJournal::new(dir.path()).load().is_empty());
    }

    #[tokio::test]
    async fn slots_that_both_fail_their_check_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        two_commits(dir.path()).await;
        flip_last_byte(&dir.path().join(SLOT_FILES[0]));
        flip_last_byte(&dir.path().join(SLOT_FILES[1]));
        assert!(StatusJournal::new(dir.path()).load().is_empty());
        assert!(dir.path().join("status-journal.0.corrupt").exists());
        assert!(dir.path().join("status-journal.1.corrupt").exists());
        // A fresh start from there commits and reads back as usual.
        let mut journal = two_commits(dir.path()).await;
        journal.apply(JournalChange::Remove("t1".into()));
        journal.commit().await;
        assert_eq!(
            StatusJournal::new(dir.path()).load(),
            vec![entry("t2", TaskState::Running)]
        );
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
