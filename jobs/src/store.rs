//! Where the master's in-process frameworks keep their state (the jobs framework's id and
//! jobs, the hosted schedulers): files in the master's state directory, or etcd when
//! masters stand by for each other, so that the one taking over goes on with the same
//! jobs. A [`StateStore`] holds named blobs; writing one replaces it whole.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

/// What a [`StateStore`] call returns; its error says what failed, for the log.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

pub trait StateStore: std::fmt::Debug + Send + Sync + 'static {
    /// The blob `name`; `None` when there is none.
    fn load<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;
    /// Replaces the blob `name`: afterwards it is the old one or the new one, whole.
    fn save<'a>(&'a self, name: &'a str, bytes: Vec<u8>) -> StoreFuture<'a, ()>;
    /// Where `name` is, for people (a path, an etcd key).
    fn place(&self, name: &str) -> String;
}

/// Blobs as files of one directory, each written to a temporary file, synced and
/// renamed.
#[derive(Clone, Debug)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn new(dir: impl Into<PathBuf>) -> FileStore {
        FileStore { dir: dir.into() }
    }
}

impl StateStore for FileStore {
    fn load<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        let file = self.dir.join(name);
        Box::pin(async move {
            match tokio::fs::read(&file).await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("{}: {e}", file.display())),
            }
        })
    }

    fn save<'a>(&'a self, name: &'a str, bytes: Vec<u8>) -> StoreFuture<'a, ()> {
        let file = self.dir.join(name);
        Box::pin(async move {
            let written = tokio::task::spawn_blocking(move || write_synced(&file, &bytes))
                .await
                .map_err(|e| e.to_string())?;
            written.map_err(|e| e.to_string())
        })
    }

    fn place(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

fn write_synced(file: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let staging = file.with_extension("tmp");
    let mut out = std::fs::File::create(&staging)?;
    out.write_all(bytes)?;
    out.sync_data()?;
    std::fs::rename(&staging, file)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", file.display())))
}
