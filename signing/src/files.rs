//! The only I/O of the crate: key files on disk (formats in the crate's docs).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::keys::{KeyFormatError, PublicKey, SecretKey};
use crate::{TooManyKeys, TrustedKeys};

/// Largest key file read: a key line is under 100 bytes; the rest is room for a comment.
pub const KEY_FILE_BYTES_MAX: u64 = 4096;
/// Mode of a secret key file: its owner reads and writes it, nobody else.
pub const SECRET_KEY_FILE_MODE: u32 = 0o600;
/// Mode of a public key file.
pub const PUBLIC_KEY_FILE_MODE: u32 = 0o644;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    // `error`, not `source`: the text holds it, and `{:#}` would print a source twice.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("{path} exists already; a key file is never overwritten")]
    Exists { path: PathBuf },
    #[error("{path} is over {KEY_FILE_BYTES_MAX} bytes: not a wasmos key file")]
    TooLarge { path: PathBuf },
    #[error("{path}: {error}")]
    Format {
        path: PathBuf,
        error: KeyFormatError,
    },
    #[error(
        "{path} may be read by others (mode {mode:03o}); a secret key must be private: \
         chmod 600 {path}"
    )]
    NotPrivate { path: PathBuf, mode: u32 },
    #[error(transparent)]
    TooManyKeys(#[from] TooManyKeys),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KeyFileError + '_ {
    move |error| KeyFileError::Io {
        path: path.to_owned(),
        error,
    }
}

/// `BASE.key` and `BASE.pub` for `BASE` (`DIR/NAME`).
pub fn key_pair_paths(base: &Path) -> (PathBuf, PathBuf) {
    let with = |extension: &str| {
        let mut path = OsString::from(base.as_os_str());
        path.push(extension);
        PathBuf::from(path)
    };
    (with(".key"), with(".pub"))
}

/// Writes `key` to `BASE.key` (mode 0600) and its public key to `BASE.pub`, whose comment
/// is the file name of `BASE`. Neither file may exist already; when the second cannot be
/// written, the first is removed again. Returns both paths.
pub fn write_key_pair(base: &Path, key: &SecretKey) -> Result<(PathBuf, PathBuf), KeyFileError> {
    let (secret_path, public_path) = key_pair_paths(base);
    for path in [&secret_path, &public_path] {
        if path.symlink_metadata().is_ok() {
            return Err(KeyFileError::Exists { path: path.clone() });
        }
    }
    let name = base
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    write_new(&secret_path, SECRET_KEY_FILE_MODE, &key.to_key_file())?;
    let public = key.public_key().to_key_file(&name);
    if let Err(e) = write_new(&public_path, PUBLIC_KEY_FILE_MODE, &public) {
        let _ = std::fs::remove_file(&secret_path);
        return Err(e);
    }
    Ok((secret_path, public_path))
}

/// Creates `path` with `mode` (never opening an existing file, nor following a symlink
/// planted there) and writes `text`.
fn write_new(path: &Path, mode: u32, text: &str) -> Result<(), KeyFileError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|error| match error.kind() {
            io::ErrorKind::AlreadyExists => KeyFileError::Exists {
                path: path.to_owned(),
            },
            _ => io_error(path)(error),
        })?;
    // The umask may have taken bits away from `mode`, never added any; set it exactly.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(io_error(path))
}

/// Reads a secret key file, refused when group or others may read it (as ssh does).
pub fn read_secret_key(path: &Path) -> Result<SecretKey, KeyFileError> {
    let (file, text) = read_key_file(path)?;
    // What the file is first: advice to chmod a public key would be wrong.
    let key = SecretKey::from_key_file(&text).map_err(|error| KeyFileError::Format {
        path: path.to_owned(),
        error,
    })?;
    let mode = file.metadata().map_err(io_error(path))?.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::NotPrivate {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(key)
}

/// Reads a public key file.
pub fn read_public_key(path: &Path) -> Result<PublicKey, KeyFileError> {
    let (_, text) = read_key_file(path)?;
    PublicKey::from_key_file(&text).map_err(|error| KeyFileError::Format {
        path: path.to_owned(),
        error,
    })
}

/// The open file and its text, at most [`KEY_FILE_BYTES_MAX`] bytes of UTF-8.
fn read_key_file(path: &Path) -> Result<(File, String), KeyFileError> {
    let file = File::open(path).map_err(io_error(path))?;
    let mut bytes = Vec::new();
    (&file)
        .take(KEY_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    if bytes.len() as u64 > KEY_FILE_BYTES_MAX {
        return Err(KeyFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| KeyFileError::Format {
        path: path.to_owned(),
        error: KeyFormatError::NotText,
    })?;
    Ok((file, text))
}

impl TrustedKeys {
    /// The public keys in `paths` (`--trust KEY.pub`, repeatable). No paths: no key is
    /// trusted and nothing is checked.
    pub fn read(paths: &[PathBuf]) -> Result<TrustedKeys, KeyFileError> {
        if paths.len() > crate::TRUSTED_KEYS_MAX {
            return Err(TooManyKeys(paths.len()).into());
        }
        let keys = paths
            .iter()
            .map(|path| read_public_key(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedKeys::new(keys)?)
    }
}
