//! Writing secrets: new files only, private from the first byte.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Mode of a private key or token file: its owner reads and writes it, nobody else.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of a certificate: public.
pub(crate) const PUBLIC_FILE_MODE: u32 = 0o644;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("{path} exists already; wasmos never overwrites a key or a certificate")]
    Exists { path: PathBuf },
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
    move |error| FileError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Creates `path` (which must not exist) with `mode` and writes `bytes`.
pub(crate) fn write_new(path: &Path, mode: u32, bytes: &[u8]) -> Result<(), FileError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|error| match error.kind() {
            io::ErrorKind::AlreadyExists => FileError::Exists {
                path: path.to_owned(),
            },
            _ => FileError::Io {
                path: path.to_owned(),
                error,
            },
        })?;
    file.write_all(bytes).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

pub(crate) fn refuse_existing(path: &Path) -> Result<(), FileError> {
    match path.symlink_metadata() {
        Ok(_) => Err(FileError::Exists {
            path: path.to_owned(),
        }),
        Err(_) => Ok(()),
    }
}
