//! One agent per work directory: a second agent on one `--work-dir` read the first one's
//! status journal as its own, restarted its tasks in place while the first still ran
//! them, and both wrote one journal and one sandbox per task. The lock is the kernel's
//! (`flock` through `File::try_lock`): an agent killed with `-9` leaves nothing to clean
//! up. (The master daemon's `state_lock.rs` does the same for its state directory.)

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::DaemonError;

/// The lock's file in the work directory; it holds the pid of the agent holding it.
const LOCK_FILE: &str = "agent.lock";

/// Held for the agent's lifetime; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub(crate) struct WorkDirLock {
    _file: File,
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
        Ok(WorkDirLock { _file: file })
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
}
