//! The agent side of the module store: fetch a module chunk by chunk, verify its sha256,
//! and keep it on disk by hash so each module crosses the network once per agent.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use proto::{ModuleChunk, ModuleHash, ModuleRef};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::io::AsyncWriteExt;

use crate::error::QueryError;
use crate::modules::serve::CHUNK_PARAMETER;
use crate::modules::store::{MODULE_BYTES_MAX, chunk_count, chunk_len};
use crate::session::Net;

/// How long one chunk query waits for the master.
pub const CHUNK_QUERY_TIMEOUT_MS: u64 = 10_000;
/// Tries per chunk before the fetch fails.
pub const CHUNK_FETCH_ATTEMPTS_MAX: u32 = 3;

const PARTIAL_PREFIX: &str = ".fetch-";

#[derive(Debug, Error)]
pub enum FetchError {
    #[error("module cache file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("module {name:?} names {sha256:?}, which is not a sha256 (64 lower-case hex digits)")]
    BadHash { name: String, sha256: String },
    #[error("cannot fetch chunk {index} of module {name:?} ({sha256}) from the master: {source}")]
    Query {
        name: String,
        sha256: ModuleHash,
        index: u32,
        source: QueryError,
    },
    #[error("the master sent a malformed chunk {index} of module {name:?} ({sha256}): {why}")]
    BadChunk {
        name: String,
        sha256: ModuleHash,
        index: u32,
        why: String,
    },
    #[error("module {name:?} ({sha256}) is {size_bytes} bytes, over the limit of {max} bytes")]
    TooLarge {
        name: String,
        sha256: ModuleHash,
        size_bytes: u64,
        max: u64,
    },
    #[error(
        "module {name:?} fetched from the master hashes to {actual}, not to the {expected} the task names; \
         the master's copy is damaged or was replaced: upload the module again (`wasmos run FILE`)"
    )]
    HashMismatch {
        name: String,
        expected: ModuleHash,
        actual: ModuleHash,
    },
}

/// A module in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedModule {
    pub path: PathBuf,
    pub size_bytes: u64,
    /// True when the module was already cached and nothing was fetched.
    pub from_cache: bool,
}

/// Modules on an agent's disk, named by their sha256.
pub struct ModuleCache {
    dir: PathBuf,
}

/// Tells apart the partial files of fetches running at once in one process.
static FETCH_SERIAL: AtomicU64 = AtomicU64::new(0);

impl ModuleCache {
    /// Opens (creating it if needed) the cache in `dir` and removes fetches left half
    /// done by an earlier process.
    pub fn open(dir: impl Into<PathBuf>) -> Result<ModuleCache, FetchError> {
        let dir = dir.into();
        let io_error = |source| FetchError::Io {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io_error)?;
        for entry in std::fs::read_dir(&dir).map_err(io_error)? {
            let path = entry.map_err(io_error)?.path();
            let partial = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PARTIAL_PREFIX));
            if partial {
                std::fs::remove_file(&path).map_err(|source| FetchError::Io {
                    path: path.clone(),
                    source,
                })?;
            }
        }
        Ok(ModuleCache { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The module from the cache, or else fetched from the master's store through `net`.
    /// Either way its bytes hash to `module.sha256`: a cached file that no longer does is
    /// thrown away and fetched again, and a fetched one that does not is refused with
    /// [`FetchError::HashMismatch`].
    pub async fn get(&self, net: &Net, module: &ModuleRef) -> Result<CachedModule, FetchError> {
        if let Some(cached) = self.cached(module).await? {
            return Ok(cached);
        }
        let sha256 = module_hash(module)?;
        let path = self.dir.join(&sha256.0);
        let size_bytes = self.fetch(net, &module.name, &sha256, &path).await?;
        Ok(CachedModule {
            path,
            size_bytes,
            from_cache: false,
        })
    }

    /// The module if the cache holds it whole (its bytes hash to `module.sha256`), with no
    /// network: what an agent without a master runs. A damaged file is removed.
    pub async fn cached(&self, module: &ModuleRef) -> Result<Option<CachedModule>, FetchError> {
        let sha256 = module_hash(module)?;
        let path = self.dir.join(&sha256.0);
        match hash_file(&path).await {
            Ok((actual, size_bytes)) if actual == sha256 => Ok(Some(CachedModule {
                path,
                size_bytes,
                from_cache: true,
            })),
            Ok((actual, _)) => {
                tracing::warn!(path = %path.display(), %actual, "cached module is damaged; fetching it again");
                remove(&path).await?;
                Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(FetchError::Io { path, source }),
        }
    }

    /// Fetches every chunk into a partial file, verifies the hash, then renames the file
    /// to `path`; on any failure the partial file is removed.
    async fn fetch(
        &self,
        net: &Net,
        name: &str,
        sha256: &ModuleHash,
        path: &Path,
    ) -> Result<u64, FetchError> {
        let serial = FETCH_SERIAL.fetch_add(1, Ordering::Relaxed);
        let partial = self.dir.join(format!(
            "{PARTIAL_PREFIX}{sha256}-{}-{serial}",
            std::process::id()
        ));
        let fetched = fetch_into(net, name, sha256, &partial).await;
        match fetched {
            Ok(size_bytes) => {
                tokio::fs::rename(&partial, path)
                    .await
                    .map_err(|source| FetchError::Io {
                        path: path.to_owned(),
                        source,
                    })?;
                Ok(size_bytes)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                Err(e)
            }
        }
    }
}

async fn fetch_into(
    net: &Net,
    name: &str,
    sha256: &ModuleHash,
    partial: &Path,
) -> Result<u64, FetchError> {
    let io_error = |source| FetchError::Io {
        path: partial.to_owned(),
        source,
    };
    let mut file = tokio::fs::File::create(partial).await.map_err(io_error)?;
    let mut hasher = Sha256::new();
    let first = fetch_chunk(net, name, sha256, 0, None).await?;
    let (size_bytes, count) = (first.size_bytes, first.count);
    if size_bytes > MODULE_BYTES_MAX {
        return Err(FetchError::TooLarge {
            name: name.to_owned(),
            sha256: sha256.clone(),
            size_bytes,
            max: MODULE_BYTES_MAX,
        });
    }
    let mut chunk = first;
    for index in 0..count {
        if index > 0 {
            chunk = fetch_chunk(net, name, sha256, index, Some(size_bytes)).await?;
        }
        hasher.update(&chunk.bytes);
        file.write_all(&chunk.bytes).await.map_err(io_error)?;
    }
    // tokio's file writes in the background: a failed last write (a full disk) is told by
    // `flush`, which `sync_all` does not do. The size on disk is checked too, since the hash
    // is of the bytes received, not of the bytes written.
    file.flush().await.map_err(io_error)?;
    file.sync_all().await.map_err(io_error)?;
    let written = file.metadata().await.map_err(io_error)?.len();
    if written != size_bytes {
        return Err(io_error(std::io::Error::other(format!(
            "{written} bytes written of {size_bytes}"
        ))));
    }
    let actual = ModuleHash(hex::encode(hasher.finalize()));
    if actual != *sha256 {
        return Err(FetchError::HashMismatch {
            name: name.to_owned(),
            expected: sha256.clone(),
            actual,
        });
    }
    Ok(size_bytes)
}

/// Chunk `index`, retried up to [`CHUNK_FETCH_ATTEMPTS_MAX`] times, and checked against
/// its own header and the module size learnt from chunk 0.
async fn fetch_chunk(
    net: &Net,
    name: &str,
    sha256: &ModuleHash,
    index: u32,
    size_bytes: Option<u64>,
) -> Result<ModuleChunk, FetchError> {
    let selector = format!("{}?{CHUNK_PARAMETER}={index}", net.keys().module(&sha256.0));
    let mut attempt = 1;
    let chunk: ModuleChunk = loop {
        match net.query_selector(&selector, CHUNK_QUERY_TIMEOUT_MS).await {
            Ok(chunk) => break chunk,
            // The store's own refusals ("not in the store") will not change on retry.
            Err(source @ QueryError::Remote { .. }) => {
                return Err(FetchError::Query {
                    name: name.to_owned(),
                    sha256: sha256.clone(),
                    index,
                    source,
                });
            }
            Err(source) if attempt >= CHUNK_FETCH_ATTEMPTS_MAX => {
                return Err(FetchError::Query {
                    name: name.to_owned(),
                    sha256: sha256.clone(),
                    index,
                    source,
                });
            }
            Err(e) => {
                tracing::debug!(%selector, attempt, %e, "retrying a module chunk");
                attempt += 1;
            }
        }
    };
    let bad = |why: String| FetchError::BadChunk {
        name: name.to_owned(),
        sha256: sha256.clone(),
        index,
        why,
    };
    if chunk.sha256 != *sha256 || chunk.index != index {
        return Err(bad(format!(
            "it is chunk {} of module {}",
            chunk.index, chunk.sha256
        )));
    }
    if size_bytes.is_some_and(|size| size != chunk.size_bytes)
        || chunk.count != chunk_count(chunk.size_bytes)
    {
        return Err(bad(format!(
            "its size {} or chunk count {} disagrees",
            chunk.size_bytes, chunk.count
        )));
    }
    if chunk_len(chunk.size_bytes, index) != Some(chunk.bytes.len()) {
        return Err(bad(format!("it holds {} bytes", chunk.bytes.len())));
    }
    Ok(chunk)
}

/// The sha256 and size of the file at `path`.
async fn hash_file(path: &Path) -> io::Result<(ModuleHash, u64)> {
    let path = path.to_owned();
    let hashed = tokio::task::spawn_blocking(move || -> io::Result<(ModuleHash, u64)> {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        let size_bytes = io::copy(&mut file, &mut hasher)?;
        Ok((ModuleHash(hex::encode(hasher.finalize())), size_bytes))
    })
    .await;
    hashed.unwrap_or_else(|e| Err(io::Error::other(e)))
}

async fn remove(path: &Path) -> Result<(), FetchError> {
    tokio::fs::remove_file(path)
        .await
        .map_err(|source| FetchError::Io {
            path: path.to_owned(),
            source,
        })
}

fn module_hash(module: &ModuleRef) -> Result<ModuleHash, FetchError> {
    ModuleHash::parse(&module.sha256.0).ok_or_else(|| FetchError::BadHash {
        name: module.name.clone(),
        sha256: module.sha256.0.clone(),
    })
}
