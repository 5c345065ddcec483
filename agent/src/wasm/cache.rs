//! The compiled-code cache on disk.
//!
//! One file per (module, engine configuration): `<sha256 of the module>-<engine key>.cwasm`.
//! The engine key hashes [`wasmtime::Engine::precompile_compatibility_hash`], so code
//! compiled with other settings or another wasmtime is never looked up. A file is
//! `MAGIC | kind (1 byte) | sha256 of the payload (32 bytes) | payload`, the payload being
//! `Module::serialize` or `Component::serialize` output.
//!
//! Deserializing compiled code is `unsafe` in wasmtime because the bytes become machine
//! code. We only pass bytes whose checksum matches the one we wrote, and we deserialize the
//! very bytes we checked (read once into memory) rather than mapping the file again, so a
//! file changed after the check cannot slip through. A corrupt or truncated entry is a miss:
//! the caller recompiles and overwrites it.

use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;

const MAGIC: &[u8; 8] = b"WASMOSC1";
const CHECKSUM_BYTES: usize = 32;
const HEADER_BYTES: usize = MAGIC.len() + 1 + CHECKSUM_BYTES;
/// Compiled code larger than this is neither written nor read (a 10 MiB module compiles to
/// a few tens of MiB).
pub const CACHE_ENTRY_BYTES_MAX: u64 = 512 << 20;

/// Whether an entry holds a core module or a component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeKind {
    CoreModule = 1,
    Component = 2,
}

/// Why a cache lookup found nothing usable.
#[derive(Debug, PartialEq, Eq)]
pub enum CacheMiss {
    Absent,
    /// The entry exists but failed the magic, kind, size or checksum check.
    Corrupt(&'static str),
}

pub struct CodeCache {
    dir: PathBuf,
    engine_key: String,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl CodeCache {
    /// A cache in `dir` (created if missing) for code compiled by `engine`.
    pub fn open(dir: &Path, engine: &Engine) -> io::Result<CodeCache> {
        std::fs::create_dir_all(dir)?;
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(CodeCache {
            dir: dir.to_owned(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    /// The file of module `sha256` (64 hex digits).
    pub fn entry_path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// The verified payload of `sha256`'s entry.
    pub fn get(&self, sha256: &str, kind: CodeKind) -> Result<Vec<u8>, CacheMiss> {
        let path = self.entry_path(sha256);
        let size = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(_) => return Err(CacheMiss::Absent),
        };
        if size > CACHE_ENTRY_BYTES_MAX {
            return Err(CacheMiss::Corrupt(
                "entry larger than the cache entry limit",
            ));
        }
        let mut bytes = std::fs::read(&path).map_err(|_| CacheMiss::Absent)?;
        verify(&bytes, kind)?;
        Ok(bytes.split_off(HEADER_BYTES))
    }

    /// Writes an entry atomically (temporary file, then rename), so readers see either the
    /// old entry or the whole new one.
    pub fn put(&self, sha256: &str, kind: CodeKind, payload: &[u8]) -> io::Result<()> {
        if payload.len() as u64 > CACHE_ENTRY_BYTES_MAX {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(HEADER_BYTES + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.push(kind as u8);
        bytes.extend_from_slice(&Sha256::digest(payload));
        bytes.extend_from_slice(payload);
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!(".{sha256}.{}.{n}.tmp", std::process::id()));
        std::fs::write(&temp, &bytes)?;
        std::fs::rename(&temp, self.entry_path(sha256)).inspect_err(|_| {
            let _ = std::fs::remove_file(&temp);
        })
    }
}

fn verify(bytes: &[u8], kind: CodeKind) -> Result<(), CacheMiss> {
    if bytes.len() < HEADER_BYTES || &bytes[..MAGIC.len()] != MAGIC {
        return Err(CacheMiss::Corrupt("bad header"));
    }
    if bytes[MAGIC.len()] != kind as u8 {
        return Err(CacheMiss::Corrupt("entry holds the other kind of code"));
    }
    let stored = &bytes[MAGIC.len() + 1..HEADER_BYTES];
    if Sha256::digest(&bytes[HEADER_BYTES..]).as_slice() != stored {
        return Err(CacheMiss::Corrupt("checksum mismatch"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_every_kind_of_damage() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = CodeCache::open(dir.path(), &engine).unwrap();
        let sha = "ab".repeat(32);
        assert_eq!(
            cache.get(&sha, CodeKind::CoreModule),
            Err(CacheMiss::Absent)
        );
        cache
            .put(&sha, CodeKind::CoreModule, b"machine code")
            .unwrap();
        assert_eq!(
            cache.get(&sha, CodeKind::CoreModule).unwrap(),
            b"machine code"
        );
        assert!(matches!(
            cache.get(&sha, CodeKind::Component),
            Err(CacheMiss::Corrupt(_))
        ));

        let path = cache.entry_path(&sha);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            cache.get(&sha, CodeKind::CoreModule),
            Err(CacheMiss::Corrupt("checksum mismatch"))
        );
        std::fs::write(&path, &bytes[..10]).unwrap();
        assert_eq!(
            cache.get(&sha, CodeKind::CoreModule),
            Err(CacheMiss::Corrupt("bad header"))
        );
    }
}
