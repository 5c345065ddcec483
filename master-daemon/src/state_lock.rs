//! One master per state directory: two masters on one `state_dir` (one `--store-dir`
//! given twice, without `--state-dir`) each wrote the jobs framework's state there and
//! each went on with copies the other launched, so a job ran twice its count. The lock is
//! the kernel's (`flock` through `File::try_lock`): a master killed with `-9` leaves
//! nothing to clean up. With etcd, leadership keeps masters apart instead.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::DaemonError;

/// The lock's file in the state directory; it holds the pid of the master holding it.
const LOCK_FILE: &str = "master.lock";

/// Held for the master's lifetime; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub(crate) struct StateLock {
    _file: File,
}

impl StateLock {
    pub(crate) fn acquire(state_dir: &Path) -> Result<StateLock, DaemonError> {
        let path = state_dir.join(LOCK_FILE);
        let io = |source| DaemonError::StateDir {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let mut file = (OpenOptions::new().read(true).write(true).create(true))
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DaemonError::StateDirInUse {
                    dir: state_dir.to_path_buf(),
                    holder: holder(&mut file),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io)?;
        Ok(StateLock { _file: file })
    }
}

/// The pid the holder wrote, as text, for the message.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    match text.trim() {
        "" => "another process".to_owned(),
        pid => format!("pid {pid}"),
    }
}
