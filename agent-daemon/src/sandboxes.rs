//! Each task's sandbox directory, `sandboxes/<task id>`, and a pool of emptied ones.
//!
//! A directory per task cost an inode allocated and freed per task: at a few thousand
//! tasks a second that was a quarter of the agent's CPU in the throughput profile (ext4
//! scans its bitmaps for a free inode, and without a journal it skips recently deleted
//! ones). A WASM task's sandbox that is empty when the task ends is instead renamed to
//! `.free-<n>` and renamed to the next task's name: a rename allocates nothing.
//!
//! Invariant: a recycled sandbox is an empty directory that only WASI code had access to,
//! and that code exited on its own. WASI cannot change a directory's mode, owner or
//! extended attributes, so the next task gets what a new directory would be. Not pooled:
//! OCI tasks' sandboxes (a container's root may change them) and those of WASM tasks
//! killed or stopped by a limit (a file operation of theirs may still be running on a
//! blocking thread and land later). A pooled directory is checked again when taken (still
//! a directory, still empty), against anything else with access to the sandboxes
//! directory. Task ids never start with a dot, so pooled names cannot be a task's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use proto::TaskId;

/// Emptied sandboxes kept for reuse; beyond this they are removed.
pub const SANDBOXES_POOLED_MAX: usize = 256;
/// The prefix of a pooled sandbox's name.
const POOLED_PREFIX: &str = ".free-";

/// The sandboxes directory and its pool; clones share the pool.
#[derive(Clone, Debug)]
pub(crate) struct Sandboxes {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    pooled: Mutex<Vec<PathBuf>>,
    next_name: AtomicU64,
}

impl Sandboxes {
    /// The sandboxes under `dir`, which must exist. Sandboxes pooled by an earlier agent
    /// process are removed, since nothing says they were emptied.
    pub fn open(dir: PathBuf) -> Sandboxes {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(POOLED_PREFIX)
                {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Sandboxes {
            inner: Arc::new(Inner {
                dir,
                pooled: Mutex::new(Vec::new()),
                next_name: AtomicU64::new(0),
            }),
        }
    }

    /// Removes every task's sandbox but those of `held` (the tasks the node holds after
    /// recovery), in the blocking pool: a sandbox of a task the journal does not name (a
    /// journal lost or set aside, a commit that failed on a full disk before a crash)
    /// would otherwise stay for good, its files taking the disk.
    pub async fn remove_unheld(&self, held: BTreeSet<TaskId>) {
        let dir = self.inner.dir.clone();
        blocking(move || {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return Ok(());
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || held.contains(&TaskId::new(name.as_str())) {
                    continue;
                }
                tracing::info!(sandbox = %entry.path().display(), "removing the sandbox of a task no longer held");
                if let Err(e) = remove_any(&entry.path()) {
                    tracing::warn!(sandbox = %entry.path().display(), %e, "could not remove a sandbox");
                }
            }
            Ok(())
        })
        .await
        .unwrap_or_default();
    }

    /// Where `task_id`'s sandbox is.
    pub fn path(&self, task_id: &TaskId) -> PathBuf {
        self.inner.dir.join(task_id.as_str())
    }

    /// Makes `task_id`'s sandbox, from the pool if it holds one that is still an empty
    /// directory. One trip to the blocking pool: each is a thread wake-up, and those
    /// were the largest cost left per task.
    pub async fn create(&self, task_id: &TaskId) -> std::io::Result<PathBuf> {
        let (this, path) = (self.clone(), self.path(task_id));
        blocking(move || this.create_at(path)).await
    }

    /// Done with `task_id`'s sandbox: pooled if `recyclable` and empty, else removed with
    /// whatever it holds. One trip to the blocking pool.
    pub async fn release(&self, task_id: &TaskId, recyclable: bool) -> std::io::Result<()> {
        let (this, path) = (self.clone(), self.path(task_id));
        blocking(move || this.release_at(&path, recyclable)).await
    }

    fn create_at(&self, path: PathBuf) -> std::io::Result<PathBuf> {
        if let Some(pooled) = self.take_pooled() {
            match std::fs::rename(&pooled, &path) {
                Ok(()) if is_empty_dir(&path) => return Ok(path),
                Ok(()) => {
                    tracing::warn!(sandbox = %path.display(), "a pooled sandbox was changed while pooled; made anew");
                    remove_any(&path)?;
                }
                Err(e) => {
                    tracing::debug!(pooled = %pooled.display(), %e, "a pooled sandbox could not be reused");
                    let _ = remove_any(&pooled);
                }
            }
        }
        std::fs::create_dir_all(&path)?;
        Ok(path)
    }

    fn release_at(&self, path: &Path, recyclable: bool) -> std::io::Result<()> {
        if recyclable && self.has_room() && is_empty_dir(path) {
            let name = self.inner.next_name.fetch_add(1, Ordering::Relaxed);
            let pooled = self.inner.dir.join(format!("{POOLED_PREFIX}{name}"));
            if std::fs::rename(path, &pooled).is_ok() {
                self.put_pooled(pooled);
                return Ok(());
            }
        }
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn take_pooled(&self) -> Option<PathBuf> {
        self.inner.pooled.lock().ok()?.pop()
    }

    fn has_room(&self) -> bool {
        (self.inner.pooled.lock()).is_ok_and(|p| p.len() < SANDBOXES_POOLED_MAX)
    }

    fn put_pooled(&self, path: PathBuf) {
        match self.inner.pooled.lock() {
            Ok(mut pooled) if pooled.len() < SANDBOXES_POOLED_MAX => pooled.push(path),
            _ => {
                let _ = std::fs::remove_dir(&path);
            }
        }
    }

    #[cfg(test)]
    fn pooled(&self) -> usize {
        self.inner.pooled.lock().map_or(0, |p| p.len())
    }
}

/// Runs file-system work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)?
}

/// Removes a directory with what it holds, or a file or link in its place.
fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// True for a directory (not a link to one) with no entries.
fn is_empty_dir(path: &Path) -> bool {
    let is_dir = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    is_dir && std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: sandboxes of tasks a lost journal no longer named stayed for good.
    #[tokio::test]
    async fn sandboxes_of_tasks_not_held_are_removed_at_recovery() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["held", "orphan", ".free-9"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        std::fs::write(dir.path().join("orphan/big.bin"), [0u8; 4096]).unwrap();
        std::fs::write(dir.path().join("stray-file"), b"x").unwrap();
        let sandboxes = Sandboxes::open(dir.path().to_path_buf());
        std::fs::create_dir(dir.path().join(".free-9")).unwrap();
        sandboxes
            .remove_unheld(BTreeSet::from([TaskId::new("held")]))
            .await;
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".free-9", "held"]);
    }

    #[tokio::test]
    async fn an_emptied_wasm_sandbox_is_the_next_tasks_and_others_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let sandboxes = Sandboxes::open(dir.path().to_owned());
        let t1 = TaskId::new("t1");
        let made = sandboxes.create(&t1).await.unwrap();
        assert!(made.is_dir());
        sandboxes.release(&t1, true).await.unwrap();
        assert_eq!(sandboxes.pooled(), 1);
        assert!(!made.exists());

        // The pooled directory becomes t2's, the very inode.
        let t2 = TaskId::new("t2");
        let pooled_inode = inode(&only_entry(dir.path()));
        let t2_dir = sandboxes.create(&t2).await.unwrap();
        assert_eq!(inode(&t2_dir), pooled_inode);
        assert_eq!(sandboxes.pooled(), 0);

        // What a task left behind goes with its sandbox, which is not pooled.
        std::fs::write(t2_dir.join("out.txt"), b"x").unwrap();
        sandboxes.release(&t2, true).await.unwrap();
        assert_eq!((sandboxes.pooled(), t2_dir.exists()), (0, false));

        // An OCI task's sandbox is never pooled, even empty.
        let t3 = TaskId::new("t3");
        sandboxes.create(&t3).await.unwrap();
        sandboxes.release(&t3, false).await.unwrap();
        assert_eq!(sandboxes.pooled(), 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        // Releasing a sandbox that is gone is fine.
        sandboxes.release(&t3, true).await.unwrap();

        // A pooled directory something wrote into, or swapped for a link, is not handed
        // on: the task gets a new empty directory.
        let t4 = TaskId::new("t4");
        sandboxes.create(&t4).await.unwrap();
        sandboxes.release(&t4, true).await.unwrap();
        std::fs::write(pooled_entry(dir.path()).join("planted"), b"x").unwrap();
        let t5_dir = sandboxes.create(&TaskId::new("t5")).await.unwrap();
        assert_eq!(std::fs::read_dir(&t5_dir).unwrap().count(), 0);
        let t6 = TaskId::new("t6");
        sandboxes.create(&t6).await.unwrap();
        sandboxes.release(&t6, true).await.unwrap();
        let pooled = pooled_entry(dir.path());
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        std::fs::remove_dir(&pooled).unwrap();
        std::os::unix::fs::symlink(outside.path(), &pooled).unwrap();
        let t7_dir = sandboxes.create(&TaskId::new("t7")).await.unwrap();
        let meta = std::fs::symlink_metadata(&t7_dir).unwrap();
        assert!(meta.is_dir() && !meta.file_type().is_symlink());
        assert_eq!(std::fs::read_dir(&t7_dir).unwrap().count(), 0);
        assert!(outside.path().join("secret").exists());
    }

    #[tokio::test]
    async fn the_pool_is_bounded_and_an_earlier_process_pool_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let sandboxes = Sandboxes::open(dir.path().to_owned());
        let count = SANDBOXES_POOLED_MAX + 3;
        for i in 0..count {
            sandboxes
                .create(&TaskId::new(format!("t{i}")))
                .await
                .unwrap();
        }
        for i in 0..count {
            let id = TaskId::new(format!("t{i}"));
            sandboxes.release(&id, true).await.unwrap();
        }
        assert_eq!(sandboxes.pooled(), SANDBOXES_POOLED_MAX);
        let on_disk = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(on_disk, SANDBOXES_POOLED_MAX);

        std::fs::create_dir(dir.path().join("kept-task")).unwrap();
        let reopened = Sandboxes::open(dir.path().to_owned());
        assert_eq!(reopened.pooled(), 0);
        let names: Vec<String> = (std::fs::read_dir(dir.path()).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["kept-task".to_owned()]);
    }

    fn only_entry(dir: &Path) -> PathBuf {
        let mut entries: Vec<PathBuf> = (std::fs::read_dir(dir).unwrap())
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(entries.len(), 1);
        entries.remove(0)
    }

    fn pooled_entry(dir: &Path) -> PathBuf {
        let mut pooled: Vec<PathBuf> = (std::fs::read_dir(dir).unwrap())
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(POOLED_PREFIX)
            })
            .collect();
        assert_eq!(pooled.len(), 1);
        pooled.remove(0)
    }

    fn inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    }
}
