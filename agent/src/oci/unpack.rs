//! Applying one layer tar to a rootfs without letting anything land outside it.
//!
//! Rules, checked for every entry:
//! - an entry path must be relative and free of `..` (otherwise the layer is refused);
//! - every parent directory is resolved *inside* the rootfs: symlinks met on the way are
//!   followed as if the rootfs were `/` (absolute targets restart at the rootfs, `..`
//!   stops at it), so a symlink planted by an earlier entry cannot redirect a write;
//! - the last component is never followed: whatever is there is replaced;
//! - hard links must name a path inside the rootfs (same rules) that already exists;
//! - `.wh.NAME` deletes `NAME` from lower layers, `.wh..wh..opq` empties its directory of
//!   everything lower layers put there;
//! - device nodes and fifos are skipped; setuid/setgid bits are cleared.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Most symlinks followed while resolving one path (the kernel's own limit).
pub const SYMLINK_FOLLOWS_MAX: u32 = 40;
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("entry {path} escapes the rootfs ({why})")]
    Escape { path: String, why: &'static str },
    #[error("entry {path}: {why}")]
    Bad { path: String, why: String },
    #[error("not a readable tar archive: {0}")]
    Archive(String),
    #[error("layer is larger than allowed ({0})")]
    TooLarge(&'static str),
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

/// What one image may unpack to, across all its layers; each layer spends from it.
#[derive(Clone, Copy, Debug)]
pub struct UnpackLimits {
    pub bytes_max: u64,
    pub entries_max: u64,
}

impl Default for UnpackLimits {
    fn default() -> UnpackLimits {
        UnpackLimits {
            bytes_max: 16 << 30,
            entries_max: 1_000_000,
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Applies the layer tar read from `layer` on top of `rootfs`, spending `budget`.
pub fn apply_layer(
    layer: impl Read,
    rootfs: &Path,
    budget: &mut UnpackLimits,
) -> Result<(), UnpackError> {
    let mut archive = tar::Archive::new(layer);
    // Paths this layer wrote: an opaque whiteout must not delete them.
    let mut written: HashSet<PathBuf> = HashSet::new();
    let entries = archive.entries().map_err(archive_error)?;
    for entry in entries {
        let mut entry = entry.map_err(archive_error)?;
        budget.entries_max = budget
            .entries_max
            .checked_sub(1)
            .ok_or(UnpackError::TooLarge("entries"))?;
        budget.bytes_max = budget
            .bytes_max
            .checked_sub(entry.size())
            .ok_or(UnpackError::TooLarge("bytes"))?;
        let raw = entry.path().map_err(archive_error)?.into_owned();
        let rel = relative_path(&raw)?;
        let Some(name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue; // the root itself ("./")
        };
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        let parent = resolve_in_root(rootfs, parent_rel, true)?;
        if name == OPAQUE_WHITEOUT {
            clear_lower(&parent, &written)?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            // `.wh..` and `.wh...` would name the directory itself or its parent (above
            // the rootfs, at the top).
            if matches!(hidden, "" | "." | "..") {
                return Err(UnpackError::Escape {
                    path: raw.display().to_string(),
                    why: "whiteout of . or ..",
                });
            }
            remove_any(&parent.join(hidden))?;
            continue;
        }
        let dest = parent.join(&name);
        write_entry(&mut entry, rootfs, &dest, &raw)?;
        written.insert(dest);
    }
    Ok(())
}

/// Creates `rel` (and its parents) as directories inside `rootfs`.
pub fn ensure_dir(rootfs: &Path, rel: &Path) -> Result<PathBuf, UnpackError> {
    resolve_in_root(rootfs, rel, true)
}

fn write_entry(
    entry: &mut tar::Entry<impl Read>,
    rootfs: &Path,
    dest: &Path,
    raw: &Path,
) -> Result<(), UnpackError> {
    let header = entry.header();
    let mode = header.mode().unwrap_or(0o644) & 0o1777;
    let (uid, gid) = (header.uid().ok(), header.gid().ok());
    let kind = header.entry_type();
    match kind {
        tar::EntryType::Directory => write_dir(dest, mode)?,
        tar::EntryType::Regular | tar::EntryType::Continuous => write_file(entry, dest, mode)?,
        tar::EntryType::Symlink => {
            let target = entry
                .link_name()
                .map_err(io_at(dest))?
                .ok_or_else(|| bad(raw, "symlink without a target"))?;
            remove_any(dest)?;
            // The target is stored as data; it is never followed while unpacking.
            std::os::unix::fs::symlink(&target, dest).map_err(io_at(dest))?;
        }
        // A hard link shares the target's owner and mode: nothing more to set.
        tar::EntryType::Link => return write_hard_link(entry, rootfs, dest, raw),
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            tracing::debug!(path = %raw.display(), "oci: device or fifo in layer skipped");
            return Ok(());
        }
        tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => return Ok(()),
        other => return Err(bad(raw, format!("unsupported entry type {other:?}"))),
    }
    if let (Some(uid), Some(gid)) = (uid, gid) {
        let (uid, gid) = (u32::try_from(uid).ok(), u32::try_from(gid).ok());
        std::os::unix::fs::lchown(dest, uid, gid).map_err(io_at(dest))?;
        if kind != tar::EntryType::Symlink {
            // chown clears setuid bits and nothing else we keep; restore the mode.
            fs::set_permissions(dest, fs::Permissions::from_mode(mode)).map_err(io_at(dest))?;
        }
    }
    Ok(())
}

fn write_dir(dest: &Path, mode: u32) -> Result<(), UnpackError> {
    match fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            remove_any(dest)?;
            fs::create_dir(dest).map_err(io_at(dest))?;
        }
        Err(_) => fs::create_dir(dest).map_err(io_at(dest))?,
    }
    fs::set_permissions(dest, fs::Permissions::from_mode(mode)).map_err(io_at(dest))
}

fn write_file(
    entry: &mut tar::Entry<impl Read>,
    dest: &Path,
    mode: u32,
) -> Result<(), UnpackError> {
    remove_any(dest)?;
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dest)
        .map_err(io_at(dest))?;
    io::copy(entry, &mut out).map_err(io_at(dest))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(mode)).map_err(io_at(dest))
}

/// A hard link to an entry already unpacked, resolved inside `rootfs`.
fn write_hard_link(
    entry: &tar::Entry<impl Read>,
    rootfs: &Path,
    dest: &Path,
    raw: &Path,
) -> Result<(), UnpackError> {
    let target = entry
        .link_name()
        .map_err(io_at(dest))?
        .ok_or_else(|| bad(raw, "hard link without a target"))?
        .into_owned();
    let target_rel = relative_path(&target)?;
    let target_parent =
        resolve_in_root(rootfs, target_rel.parent().unwrap_or(Path::new("")), false)?;
    let Some(target_name) = target_rel.file_name() else {
        return Err(bad(raw, "hard link to the rootfs itself"));
    };
    let source = target_parent.join(target_name);
    if fs::symlink_metadata(&source).is_err() {
        return Err(bad(
            raw,
            format!("hard link target {} does not exist", target.display()),
        ));
    }
    remove_any(dest)?;
    // linkat without AT_SYMLINK_FOLLOW: a symlink target is linked, not followed.
    fs::hard_link(&source, dest).map_err(io_at(dest))
}

/// Longest part of a tar reader's message kept in a reason.
const ARCHIVE_MESSAGE_CHARS_MAX: usize = 120;

/// A tar (or gzip) reading error as a reason. The tar reader quotes raw header bytes
/// after a colon or in backquotes ("numeric field was not a number: <bytes> when getting
/// cksum for <bytes>", "failed to unpack `<path>`"), and those bytes are the start of
/// whatever file was given, which reasons would then show to anyone who may list tasks:
/// only the text before the first colon or backquote is kept, printable ASCII, cut to
/// [`ARCHIVE_MESSAGE_CHARS_MAX`] characters.
fn archive_error(e: io::Error) -> UnpackError {
    UnpackError::Archive(archive_message(&e))
}

/// The readable part of a tar reader's error (see [`archive_error`]).
pub(crate) fn archive_message(e: &io::Error) -> String {
    let text = e.to_string();
    let printable = |c: char| c.is_ascii_graphic() || c == ' ';
    let text = text.split([':', '`']).next().unwrap_or_default();
    let kept: String = text
        .chars()
        .filter(|c| printable(*c))
        .take(ARCHIVE_MESSAGE_CHARS_MAX)
        .collect();
    kept.trim().to_owned()
}

fn bad(raw: &Path, why: impl Into<String>) -> UnpackError {
    UnpackError::Bad {
        path: raw.display().to_string(),
        why: why.into(),
    }
}

/// `raw` as plain relative components; absolute paths and `..` are refused.
fn relative_path(raw: &Path) -> Result<PathBuf, UnpackError> {
    let mut rel = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(UnpackError::Escape {
                    path: raw.display().to_string(),
                    why: "contains ..",
                });
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(UnpackError::Escape {
                    path: raw.display().to_string(),
                    why: "absolute path",
                });
            }
        }
    }
    Ok(rel)
}

/// The host path of directory `rel` inside `rootfs`, resolving symlinks as if `rootfs`
/// were `/`. Missing directories are created when `create` is true.
fn resolve_in_root(rootfs: &Path, rel: &Path, create: bool) -> Result<PathBuf, UnpackError> {
    let mut todo: Vec<OsString> = rel
        .components()
        .rev()
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let mut stack: Vec<OsString> = Vec::new();
    let mut follows = 0u32;
    while let Some(part) = todo.pop() {
        if part == "." || part.is_empty() {
            continue;
        }
        if part == ".." {
            stack.pop();
            continue;
        }
        let mut here: PathBuf = rootfs.to_path_buf();
        here.extend(&stack);
        here.push(&part);
        match fs::symlink_metadata(&here) {
            Ok(m) if m.is_dir() => stack.push(part),
            Ok(m) if m.file_type().is_symlink() => {
                follows += 1;
                if follows > SYMLINK_FOLLOWS_MAX {
                    return Err(bad(rel, "too many symlinks"));
                }
                let target = fs::read_link(&here).map_err(io_at(&here))?;
                if target.is_absolute() {
                    stack.clear();
                }
                todo.extend(target.components().rev().filter_map(|c| match c {
                    Component::Normal(p) => Some(p.to_owned()),
                    Component::ParentDir => Some(OsString::from("..")),
                    _ => None,
                }));
            }
            Ok(_) => {
                return Err(bad(
                    rel,
                    format!("{} is not a directory", part.to_string_lossy()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::create_dir(&here).map_err(io_at(&here))?;
                stack.push(part);
            }
            Err(e) => return Err(io_at(&here)(e)),
        }
    }
    let mut out = rootfs.to_path_buf();
    out.extend(&stack);
    Ok(out)
}

/// Removes whatever is at `path` (never following a symlink there); absent is fine.
fn remove_any(path: &Path) -> Result<(), UnpackError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(io_at(path)),
        Ok(_) => fs::remove_file(path).map_err(io_at(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at(path)(e)),
    }
}

/// Opaque directory: removes the children of `dir` that this layer did not write.
fn clear_lower(dir: &Path, written: &HashSet<PathBuf>) -> Result<(), UnpackError> {
    for child in fs::read_dir(dir).map_err(io_at(dir))? {
        let child = child.map_err(io_at(dir))?.path();
        if !written.contains(&child) {
            remove_any(&child)?;
        }
    }
    Ok(())
}
