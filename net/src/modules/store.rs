//! The master's module store: modules on disk, named by the sha256 of their bytes, read
//! in chunks for agents and written in chunks by uploads.
//!
//! The store is a directory so that modules outlive a master restart (the master keeps
//! no database, but agents must still find the modules of running tasks). Files are
//! written under a temporary name and renamed into place, so a module file is whole or
//! absent. The store does not re-verify what it serves: agents verify every module
//! against its hash, end to end.
//!
//! A store that trusts keys ([`ModuleStore::trusting`]) takes only modules signed by one
//! of them: an upload that does not verify is refused with the reason (unsigned, tampered,
//! untrusted key), and so is one of a module stored before the keys were trusted. Agents
//! check signatures again on their own; the store's check tells the uploader early.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use proto::admin::UploadReply;
use proto::{MODULE_CHUNK_BYTES_MAX, ModuleChunk, ModuleHash};
use sha2::{Digest, Sha256};
use signing::{TrustedKeys, VerifyError};
use thiserror::Error;

/// Largest module the store takes or an agent fetches.
pub const MODULE_BYTES_MAX: u64 = 256 << 20;
/// Most uploads received at once; a further upload is refused with a "try again" reply
/// unless an idle one can be dropped.
pub const UPLOADS_IN_FLIGHT_MAX: usize = 16;
/// An upload with no chunk for this long is dropped when room is needed for another.
pub const UPLOAD_IDLE_TIMEOUT_MS: u64 = 60_000;

const STAGING_PREFIX: &str = ".upload-";

/// Number of chunks a module of `size_bytes` travels in (an empty module is one empty
/// chunk).
pub fn chunk_count(size_bytes: u64) -> u32 {
    let count = size_bytes.div_ceil(MODULE_CHUNK_BYTES_MAX as u64).max(1);
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// Length of chunk `index` of a module of `size_bytes`; `None` past the last chunk.
pub fn chunk_len(size_bytes: u64, index: u32) -> Option<usize> {
    if index >= chunk_count(size_bytes) {
        return None;
    }
    let start = u64::from(index) * MODULE_CHUNK_BYTES_MAX as u64;
    let len = (size_bytes - start).min(MODULE_CHUNK_BYTES_MAX as u64);
    usize::try_from(len).ok()
}

/// The content address of `bytes`.
pub fn module_hash(bytes: &[u8]) -> ModuleHash {
    ModuleHash(hex::encode(Sha256::digest(bytes)))
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("module store file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("module {0} is not in the store; upload it first (`wasmos run FILE` does)")]
    Unknown(ModuleHash),
    #[error("{0:?} is not a sha256 (64 lower-case hex digits)")]
    BadHash(String),
    #[error("module {sha256} travels in {count} chunks; there is no chunk {index}")]
    NoSuchChunk {
        sha256: ModuleHash,
        index: u32,
        count: u32,
    },
    #[error("a module of {size_bytes} bytes is over the store's limit of {max} bytes")]
    TooLarge { size_bytes: u64, max: u64 },
    #[error(transparent)]
    NotWasm(#[from] WasmHeaderError),
    #[error("{0}; this master takes only modules signed by a key it trusts (`wasmos module sign`)")]
    Untrusted(#[from] VerifyError),
}

/// Why bytes are neither a WebAssembly binary (read from its first 8 bytes) nor WAT text:
/// what the store refuses at once rather than keep a module no agent can load.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum WasmHeaderError {
    #[error("the module is empty: a WebAssembly module or component is a .wasm binary")]
    Empty,
    #[error(
        "the module is {size_bytes} bytes, shorter than the 8-byte header every WebAssembly \
         binary starts with"
    )]
    Truncated { size_bytes: u64 },
    #[error(
        "the module is not a WebAssembly binary (it does not start with \"\\0asm\") nor \
         WAT text (it does not start with \"(\"); compile it to .wasm first"
    )]
    NoMagic,
    #[error(
        "the module's header gives version/layer {0:02x?}: neither a core module \
         (01 00 00 00) nor a component (0d 00 01 00)"
    )]
    UnknownVersion([u8; 4]),
    #[error("the module is not a well-formed WebAssembly binary: {0}")]
    Malformed(String),
}

/// The magic number every WebAssembly binary starts with.
const WASM_MAGIC: [u8; 4] = *b"\0asm";
/// Version and layer of a core module and of a component (the component model's
/// pre-1.0 encoding that wasmtime 48 reads).
const WASM_VERSIONS: [[u8; 4]; 2] = [[1, 0, 0, 0], [0x0d, 0, 1, 0]];

/// Checks the header of a module of `size_bytes` whose first bytes are `head`. WAT text
/// (a first `(` or `;;` comment after white space) passes: agents compile it as wasmtime
/// does, and a malformed text fails there with the parser's message.
pub fn check_wasm_header(head: &[u8], size_bytes: u64) -> Result<(), WasmHeaderError> {
    if size_bytes == 0 {
        return Err(WasmHeaderError::Empty);
    }
    let text_start = head.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(text_start, Some(b'(' | b';')) {
        return Ok(());
    }
    let (Some(magic), Some(version)) = (head.get(..4), head.get(4..8)) else {
        return Err(WasmHeaderError::Truncated { size_bytes });
    };
    if magic != WASM_MAGIC {
        return Err(WasmHeaderError::NoMagic);
    }
    match <[u8; 4]>::try_from(version) {
        Ok(v) if WASM_VERSIONS.contains(&v) => Ok(()),
        Ok(v) => Err(WasmHeaderError::UnknownVersion(v)),
        Err(_) => Err(WasmHeaderError::Truncated { size_bytes }),
    }
}

/// [`check_wasm_header`], then, for a binary, its framing: every section's id and size,
/// and every function body's size, down to the last byte. A truncated binary (the
/// damage a transfer does) is refused where it is given, not when an agent first runs
/// it. The sections' contents are not validated here: agents validate when they compile.
pub fn check_wasm(bytes: &[u8]) -> Result<(), WasmHeaderError> {
    check_wasm_header(bytes, bytes.len() as u64)?;
    if bytes.first() != Some(&0) {
        return Ok(()); // WAT text
    }
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        payload.map_err(|e| WasmHeaderError::Malformed(e.to_string()))?;
    }
    Ok(())
}

/// [`check_wasm`] of an uploaded module's staged file (at most [`MODULE_BYTES_MAX`]),
/// read on the blocking pool as the signature check is.
fn check_file(path: &Path) -> Result<(), String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read the upload back: {e}"))?;
    check_wasm(&bytes).map_err(|e| e.to_string())
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An upload being received: bytes so far in a staging file, hashed as they come.
struct PartialUpload {
    file: File,
    staging: PathBuf,
    hasher: Sha256,
    size_bytes: u64,
    next_index: u32,
    last_chunk_at: Instant,
}

/// Content-addressed modules in a directory.
pub struct ModuleStore {
    dir: PathBuf,
    uploads: Mutex<BTreeMap<ModuleHash, PartialUpload>>,
    trusted: TrustedKeys,
}

impl ModuleStore {
    /// Opens (creating it if needed) the store in `dir` and removes uploads left half
    /// done by an earlier process.
    pub fn open(dir: impl Into<PathBuf>) -> Result<ModuleStore, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let path = entry.map_err(io_error(&dir))?.path();
            let staging = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(STAGING_PREFIX));
            if staging {
                fs::remove_file(&path).map_err(io_error(&path))?;
            }
        }
        Ok(ModuleStore {
            dir,
            uploads: Mutex::new(BTreeMap::new()),
            trusted: TrustedKeys::default(),
        })
    }

    /// This store, taking only modules signed by one of `trusted` (none: every module).
    pub fn trusting(self, trusted: TrustedKeys) -> ModuleStore {
        ModuleStore { trusted, ..self }
    }

    /// The keys whose modules the store takes; the master checks the modules it runs
    /// itself (hosted schedulers) against them too.
    pub fn trusted(&self) -> &TrustedKeys {
        &self.trusted
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where module `sha256` is (or would be) kept. A `ModuleHash` built without
    /// [`ModuleHash::parse`] may hold anything, so it is checked before it names a file.
    pub fn path_of(&self, sha256: &ModuleHash) -> Result<PathBuf, StoreError> {
        match ModuleHash::parse(&sha256.0) {
            Some(valid) => Ok(self.dir.join(valid.0)),
            None => Err(StoreError::BadHash(sha256.0.clone())),
        }
    }

    pub fn contains(&self, sha256: &ModuleHash) -> bool {
        self.path_of(sha256).is_ok_and(|path| path.is_file())
    }

    /// Adds `bytes` (a module in this process, as `wasmos up` has) and returns its hash.
    pub fn insert(&self, bytes: &[u8]) -> Result<ModuleHash, StoreError> {
        let size_bytes = bytes.len() as u64;
        if size_bytes > MODULE_BYTES_MAX {
            return Err(StoreError::TooLarge {
                size_bytes,
                max: MODULE_BYTES_MAX,
            });
        }
        check_wasm(bytes)?;
        self.trusted.check(bytes)?;
        let sha256 = module_hash(bytes);
        let path = self.path_of(&sha256)?;
        if !path.is_file() {
            let staging = self
                .dir
                .join(format!("{STAGING_PREFIX}insert-{}", sha256.0));
            fs::write(&staging, bytes).map_err(io_error(&staging))?;
            fs::rename(&staging, &path).map_err(io_error(&path))?;
        }
        Ok(sha256)
    }

    /// Chunk `index` of module `sha256`.
    pub fn chunk(&self, sha256: &ModuleHash, index: u32) -> Result<ModuleChunk, StoreError> {
        let path = self.path_of(sha256)?;
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Unknown(sha256.clone()));
            }
            Err(e) => return Err(StoreError::Io { path, source: e }),
        };
        let size_bytes = file.metadata().map_err(io_error(&path))?.len();
        let count = chunk_count(size_bytes);
        let len = chunk_len(size_bytes, index).ok_or_else(|| StoreError::NoSuchChunk {
            sha256: sha256.clone(),
            index,
            count,
        })?;
        let start = u64::from(index) * MODULE_CHUNK_BYTES_MAX as u64;
        file.seek(SeekFrom::Start(start)).map_err(io_error(&path))?;
        let mut bytes = vec![0; len];
        file.read_exact(&mut bytes).map_err(io_error(&path))?;
        Ok(ModuleChunk {
            sha256: sha256.clone(),
            size_bytes,
            index,
            count,
            bytes,
        })
    }

    /// Takes one uploaded chunk. Chunks come in order from 0; chunk 0 (re)starts the
    /// upload of its module, and the last one stores the module if its bytes hash to the
    /// announced sha256. Every failure is an `UploadReply::Error` saying what to do.
    pub fn receive(&self, chunk: ModuleChunk, now: Instant) -> UploadReply {
        match self.try_receive(chunk, now) {
            Ok(reply) => reply,
            Err(message) => UploadReply::Error { message },
        }
    }

    fn try_receive(&self, chunk: ModuleChunk, now: Instant) -> Result<UploadReply, String> {
        validate_chunk(&chunk)?;
        if chunk.index == 0 && self.contains(&chunk.sha256) {
            self.check_signature(&self.path_of(&chunk.sha256).map_err(|e| e.to_string())?)?;
            return Ok(UploadReply::Stored {
                sha256: chunk.sha256,
                size_bytes: chunk.size_bytes,
            });
        }
        let mut uploads = self.lock_uploads();
        if chunk.index == 0 {
            let upload = self.begin_upload(&mut uploads, &chunk, now)?;
            uploads.insert(chunk.sha256.clone(), upload);
        }
        let upload = uploads.get_mut(&chunk.sha256).ok_or_else(|| {
            format!(
                "no upload of module {} is in progress; start again from chunk 0",
                chunk.sha256
            )
        })?;
        if chunk.index != upload.next_index || chunk.size_bytes != upload.size_bytes {
            let expected = upload.next_index;
            remove_upload(&mut uploads, &chunk.sha256);
            return Err(format!(
                "chunk {} of module {} came out of order (expected chunk {expected} of the same size); start again from chunk 0",
                chunk.index, chunk.sha256
            ));
        }
        if let Err(e) = upload.file.write_all(&chunk.bytes) {
            remove_upload(&mut uploads, &chunk.sha256);
            return Err(format!(
                "the master cannot write the upload to {}: {e}",
                self.dir.display()
            ));
        }
        upload.hasher.update(&chunk.bytes);
        upload.next_index += 1;
        upload.last_chunk_at = now;
        if upload.next_index < chunk.count {
            return Ok(UploadReply::Continue {
                next_index: upload.next_index,
            });
        }
        match uploads.remove(&chunk.sha256) {
            Some(done) => self.finish_upload(done, &chunk.sha256),
            None => Err(format!(
                "the upload of module {} vanished; start again from chunk 0",
                chunk.sha256
            )),
        }
    }

    fn begin_upload(
        &self,
        uploads: &mut BTreeMap<ModuleHash, PartialUpload>,
        chunk: &ModuleChunk,
        now: Instant,
    ) -> Result<PartialUpload, String> {
        remove_upload(uploads, &chunk.sha256);
        let idle = Duration::from_millis(UPLOAD_IDLE_TIMEOUT_MS);
        let stale: Vec<ModuleHash> = uploads
            .iter()
            .filter(|(_, u)| now.saturating_duration_since(u.last_chunk_at) >= idle)
            .map(|(sha, _)| sha.clone())
            .collect();
        for sha256 in stale {
            remove_upload(uploads, &sha256);
        }
        if uploads.len() >= UPLOADS_IN_FLIGHT_MAX {
            return Err(format!(
                "the master is receiving {UPLOADS_IN_FLIGHT_MAX} uploads already; try again in a minute"
            ));
        }
        let staging = self.dir.join(format!("{STAGING_PREFIX}{}", chunk.sha256));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&staging)
            .map_err(|e| {
                format!(
                    "the master cannot stage the upload at {}: {e}",
                    staging.display()
                )
            })?;
        Ok(PartialUpload {
            file,
            staging,
            hasher: Sha256::new(),
            size_bytes: chunk.size_bytes,
            next_index: 0,
            last_chunk_at: now,
        })
    }

    fn finish_upload(
        &self,
        upload: PartialUpload,
        sha256: &ModuleHash,
    ) -> Result<UploadReply, String> {
        let actual = hex::encode(upload.hasher.finalize());
        let PartialUpload {
            file,
            staging,
            size_bytes,
            ..
        } = upload;
        drop(file);
        if actual != sha256.0 {
            let _ = fs::remove_file(&staging);
            return Err(format!(
                "the uploaded bytes hash to {actual}, not to the announced {sha256}; the upload was corrupted on the way, send it again"
            ));
        }
        if let Err(refused) = self
            .check_signature(&staging)
            .and_then(|()| check_file(&staging))
        {
            let _ = fs::remove_file(&staging);
            return Err(refused);
        }
        let path = self.path_of(sha256).map_err(|e| e.to_string())?;
        fs::rename(&staging, &path).map_err(|e| {
            format!(
                "the master cannot store the module at {}: {e}",
                path.display()
            )
        })?;
        Ok(UploadReply::Stored {
            sha256: sha256.clone(),
            size_bytes,
        })
    }

    /// With trusted keys, the module in `path` must be signed by one of them. Reads the
    /// whole file (at most [`MODULE_BYTES_MAX`]); called on the blocking pool.
    fn check_signature(&self, path: &Path) -> Result<(), String> {
        if self.trusted.is_empty() {
            return Ok(());
        }
        let bytes = fs::read(path).map_err(|e| {
            format!(
                "the master cannot read the module at {}: {e}",
                path.display()
            )
        })?;
        match self.trusted.check(&bytes) {
            Ok(_) => Ok(()),
            Err(refused) => Err(StoreError::Untrusted(refused).to_string()),
        }
    }

    /// The uploads stay usable after a panic elsewhere: each is removed on any failure.
    fn lock_uploads(&self) -> MutexGuard<'_, BTreeMap<ModuleHash, PartialUpload>> {
        self.uploads.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn remove_upload(uploads: &mut BTreeMap<ModuleHash, PartialUpload>, sha256: &ModuleHash) {
    if let Some(upload) = uploads.remove(sha256) {
        drop(upload.file);
        let _ = fs::remove_file(&upload.staging);
    }
}

/// Checks an uploaded chunk against its own header, before anything touches the disk.
fn validate_chunk(chunk: &ModuleChunk) -> Result<(), String> {
    if ModuleHash::parse(&chunk.sha256.0).is_none() {
        return Err(StoreError::BadHash(chunk.sha256.0.clone()).to_string());
    }
    if chunk.size_bytes > MODULE_BYTES_MAX {
        return Err(StoreError::TooLarge {
            size_bytes: chunk.size_bytes,
            max: MODULE_BYTES_MAX,
        }
        .to_string());
    }
    if chunk.index == 0 {
        check_wasm_header(&chunk.bytes, chunk.size_bytes).map_err(|e| e.to_string())?;
    }
    let count = chunk_count(chunk.size_bytes);
    if chunk.count != count {
        return Err(format!(
            "a module of {} bytes travels in {count} chunks, not {}",
            chunk.size_bytes, chunk.count
        ));
    }
    match chunk_len(chunk.size_bytes, chunk.index) {
        Some(len) if len == chunk.bytes.len() => Ok(()),
        Some(len) => Err(format!(
            "chunk {} must hold {len} bytes, not {}",
            chunk.index,
            chunk.bytes.len()
        )),
        None => Err(format!(
            "a module of {count} chunks has no chunk {}",
            chunk.index
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_webassembly_binaries_and_wat_text_pass_the_header_check() {
        let ok: [&[u8]; 4] = [
            b"\0asm\x01\0\0\0",
            b"\0asm\x0d\0\x01\0rest",
            b"  (module)",
            b";; a comment\n(component)",
        ];
        for head in ok {
            assert_eq!(
                check_wasm_header(head, head.len() as u64),
                Ok(()),
                "{head:?}"
            );
        }
        let refused: [(&[u8], WasmHeaderError); 4] = [
            (b"", WasmHeaderError::Empty),
            (b"\0asm\x01", WasmHeaderError::Truncated { size_bytes: 5 }),
            (b"\x7fELF\x02\x01\x01\0", WasmHeaderError::NoMagic),
            (
                b"\0asm\x02\0\0\0",
                WasmHeaderError::UnknownVersion([2, 0, 0, 0]),
            ),
        ];
        for (head, error) in refused {
            assert_eq!(
                check_wasm_header(head, head.len() as u64),
                Err(error),
                "{head:?}"
            );
        }
    }

    /// The whole of `bytes` as one upload chunk.
    fn one_chunk(bytes: &[u8]) -> ModuleChunk {
        ModuleChunk {
            sha256: module_hash(bytes),
            size_bytes: bytes.len() as u64,
            index: 0,
            count: 1,
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn a_store_that_trusts_keys_takes_only_their_modules() {
        let dir = tempfile::tempdir().unwrap();
        let unsigned: &[u8] = b"\0asm\x01\0\0\0";
        let before = ModuleStore::open(dir.path()).unwrap();
        before.insert(unsigned).unwrap();
        drop(before);

        let alice = signing::SecretKey::from_seed(&[1; 32]);
        let mallory = signing::SecretKey::from_seed(&[2; 32]);
        let trusted = TrustedKeys::new([alice.public_key()]).unwrap();
        let store = ModuleStore::open(dir.path()).unwrap().trusting(trusted);
        let now = Instant::now();
        let refused = |bytes: &[u8]| match store.receive(one_chunk(bytes), now) {
            UploadReply::Error { message } => message,
            reply => panic!("{reply:?}"),
        };
        let only =
            "this master takes only modules signed by a key it trusts (`wasmos module sign`)";
        // Stored before the keys were trusted: still refused.
        assert_eq!(refused(unsigned), format!("the module is unsigned; {only}"));
        let by_mallory = signing::sign(unsigned, &mallory).unwrap();
        assert_eq!(
            refused(&by_mallory),
            format!(
                "the module is signed by an untrusted key {}; {only}",
                mallory.public_key().key_id()
            )
        );
        assert!(!store.contains(&module_hash(&by_mallory)));
        assert!(matches!(
            store.insert(&by_mallory),
            Err(StoreError::Untrusted(VerifyError::UntrustedKey { .. }))
        ));

        let by_alice = signing::sign(unsigned, &alice).unwrap();
        assert!(matches!(
            store.receive(one_chunk(&by_alice), now),
            UploadReply::Stored { .. }
        ));
        assert!(store.contains(&module_hash(&by_alice)));
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(STAGING_PREFIX))
            .collect();
        assert!(leftovers.is_empty(), "refused uploads leave nothing behind");
    }
}
