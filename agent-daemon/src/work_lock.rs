//! One agent per work directory: a second agent on one `--work-dir` read the first one's
//! status journal as its own, restarted its tasks in place while the first still ran
//! them, and both wrote one journal and one sandbox per task. The lock is the kernel's
//! (`flock` through `File::try_lock`): an agent killed with `-9` leaves nothing to clean
//! up. (The master daemon's `state_lock.rs` does the same for its state directory.)

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::DaemonError;

/// The lock's file in the work directory; it holds the pid of the agent holding it.
const LOCK_FILE: &str = "agent.lock";

/// The last incarnation an agent on this work directory took.
const INCARNATION_FILE: &str = "incarnation";

/// Held for the agent's lifetime; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub(crate) struct WorkDirLock {
    _file: File,
    work_dir: PathBuf,
}

impl WorkDirLock {
    pub(crate) fn acquire(work_dir: &Path) -> Result<WorkDirLock, DaemonError> {
        let path = work_dir.join(LOCK_FILE);
        let io = |source| DaemonError::WorkDir {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(work_dir).map_err(io)?;
        let mut file = (OpenOptions::new().read(true).write(true).create(true))
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(DaemonError::WorkDirInUse {
                    dir: work_dir.to_path_buf(),
                    holder: match holder.trim() {
                        "" => "another process".to_owned(),
                        pid => format!("pid {pid}"),
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io)?;
        Ok(WorkDirLock {
            _file: file,
            work_dir: work_dir.to_path_buf(),
        })
    }

    /// This process' incarnation: `now_ms` (the clock), or one past the last one taken
    /// here if the clock went back (an NTP step, a board without a real-time clock).
    /// The master tells the lower of two incarnations of one agent id to stop, so a
    /// restarted agent must never come back lower than the process it replaces.
    pub(crate) fn next_incarnation(&self, now_ms: u64) -> Result<u64, DaemonError> {
        let path = self.work_dir.join(INCARNATION_FILE);
        let io = |source| DaemonError::WorkDir {
            path: path.clone(),
            source,
        };
        let last = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).trim().parse::<u64>().ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(e)),
        };
        let next = last.map_or(now_ms, |last| now_ms.max(last.saturating_add(1)));
        let staged = self.work_dir.join(format!("{INCARNATION_FILE}.new"));
        let mut file = File::create(&staged).map_err(io)?;
        writeln!(file, "{next}")
            .and_then(|()| file.sync_data())
            .and_then(|()| std::fs::rename(&staged, &path))
            .map_err(io)?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_agent_on_a_work_directory_is_refused_until_the_first_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let first = WorkDirLock::acquire(dir.path()).unwrap();
        match WorkDirLock::acquire(dir.path()) {
            Err(DaemonError::WorkDirInUse { holder, .. }) => {
                assert_eq!(holder, format!("pid {}", std::process::id()));
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        WorkDirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn an_incarnation_never_goes_back_when_the_clock_does() {
        let dir = tempfile::tempdir().unwrap();
        let lock = WorkDirLock::acquire(dir.path()).unwrap();
        assert_eq!(lock.next_incarnation(5_000).unwrap(), 5_000);
        assert_eq!(lock.next_incarnation(1_000).unwrap(), 5_001);
        drop(lock);
        let lock = WorkDirLock::acquire(dir.path()).unwrap();
        assert_eq!(lock.next_incarnation(900).unwrap(), 5_002);
        assert_eq!(lock.next_incarnation(9_000).unwrap(), 9_000);
        // A garbled file is no reason not to start.
        std::fs::write(dir.path().join(INCARNATION_FILE), "bogus").unwrap();
        assert_eq!(lock.next_incarnation(100).unwrap(), 100);
        std::fs::write(dir.path().join(INCARNATION_FILE), b"\xff").unwrap();
        assert_eq!(lock.next_incarnation(200).unwrap(), 200);
    }
}
