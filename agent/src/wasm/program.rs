//! Turning module bytes into a linked program: WAT to binary, core module or component,
//! compiled or taken from the code cache, then linked against WASI.

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, InstancePre, Module};
use wasmtime_wasi::p2::bindings::CommandPre;

use super::cache::{CacheMiss, CodeCache, CodeKind};
use super::run::{P1Ctx, P2Ctx};

/// Largest module (or WAT text) accepted, in bytes.
pub const MODULE_BYTES_MAX: usize = 64 << 20;

const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Bytes 6..8 of the header: the layer, 0 for a core module, 1 for a component.
const COMPONENT_LAYER: [u8; 2] = [1, 0];

/// Why a module cannot run. The `Display` text is the task's failure reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    #[error("module of {0} bytes is larger than the {MODULE_BYTES_MAX} byte limit")]
    TooLarge(usize),
    #[error("module does not validate: {0}")]
    Invalid(String),
    #[error("unknown import `{0}`")]
    UnknownImport(String),
    #[error("{0}")]
    NotACommand(&'static str),
    #[error("cannot link module: {0}")]
    Link(String),
    /// Keys are trusted and the module is not signed by one of them (or was changed since).
    #[error("refused: {0} (only modules signed by a trusted key run here)")]
    Refused(#[from] signing::VerifyError),
}

/// Where a loaded module's machine code came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeOrigin {
    /// Compiled now (and written to the cache, if there is one).
    Compiled,
    /// Read from the on-disk code cache.
    DiskCache,
    /// Already loaded by this executor.
    Memory,
}

/// A module ready to start: compiled, linked against WASI, exports checked.
/// Cheap to clone; one `LoadedModule` starts any number of tasks.
#[derive(Clone)]
pub struct LoadedModule {
    pub(crate) sha256: String,
    pub(crate) program: Program,
    pub(crate) origin: CodeOrigin,
}

#[derive(Clone)]
pub(crate) enum Program {
    /// A WASI p1 command module (`_start`).
    P1(InstancePre<P1Ctx>),
    /// A WASI p2 component (`wasi:cli/run`).
    P2(CommandPre<P2Ctx>),
}

impl LoadedModule {
    /// Lower-case hex sha256 of the bytes it was loaded from.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn origin(&self) -> CodeOrigin {
        self.origin
    }

    pub fn is_component(&self) -> bool {
        matches!(self.program, Program::P2(_))
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Binary WebAssembly from `bytes`: as given when it has the `\0asm` header, else parsed as
/// WAT text.
pub fn to_binary(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, LoadError> {
    if bytes.len() > MODULE_BYTES_MAX {
        return Err(LoadError::TooLarge(bytes.len()));
    }
    if bytes.starts_with(WASM_MAGIC) {
        return Ok(bytes.into());
    }
    let looks_like_text = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'(' || *b == b';');
    if !looks_like_text {
        return Err(LoadError::Invalid(
            "not a WebAssembly binary (no `\\0asm` header) nor WAT text".into(),
        ));
    }
    wat::parse_bytes(bytes).map_err(|e| LoadError::Invalid(format!("WAT text: {e}")))
}

pub fn code_kind(binary: &[u8]) -> CodeKind {
    if binary.get(6..8) == Some(&COMPONENT_LAYER[..]) {
        CodeKind::Component
    } else {
        CodeKind::CoreModule
    }
}

/// Compiled code of `binary`, from `cache` when it holds a sound entry.
pub enum Compiled {
    Module(Module),
    Component(Component),
}

pub fn compile(
    engine: &Engine,
    cache: Option<&CodeCache>,
    sha256: &str,
    binary: &[u8],
) -> Result<(Compiled, CodeOrigin), LoadError> {
    let kind = code_kind(binary);
    if let Some(cache) = cache {
        match cache.get(sha256, kind) {
            Ok(code) => {
                // SAFETY: `code` is exactly the payload this process family wrote with
                // `serialize` for this engine configuration; its sha256 was checked just now.
                let loaded = match kind {
                    CodeKind::CoreModule => {
                        unsafe { Module::deserialize(engine, &code) }.map(Compiled::Module)
                    }
                    CodeKind::Component => {
                        unsafe { Component::deserialize(engine, &code) }.map(Compiled::Component)
                    }
                };
                match loaded {
                    Ok(compiled) => return Ok((compiled, CodeOrigin::DiskCache)),
                    Err(e) => {
                        tracing::warn!(sha256, error = %e, "cached code rejected by wasmtime; recompiling")
                    }
                }
            }
            Err(CacheMiss::Absent) => {}
            Err(CacheMiss::Corrupt(why)) => {
                tracing::warn!(sha256, why, "corrupt code cache entry; recompiling")
            }
        }
    }
    let (compiled, serialized) = match kind {
        CodeKind::CoreModule => {
            let module = Module::from_binary(engine, binary).map_err(invalid)?;
            let bytes = cache.and_then(|_| module.serialize().ok());
            (Compiled::Module(module), bytes)
        }
        CodeKind::Component => {
            let component = Component::from_binary(engine, binary).map_err(invalid)?;
            let bytes = cache.and_then(|_| component.serialize().ok());
            (Compiled::Component(component), bytes)
        }
    };
    if let (Some(cache), Some(bytes)) = (cache, serialized)
        && let Err(e) = cache.put(sha256, kind, &bytes)
    {
        tracing::warn!(sha256, error = %e, "cannot write the code cache");
    }
    Ok((compiled, CodeOrigin::Compiled))
}

fn invalid(e: wasmtime::Error) -> LoadError {
    LoadError::Invalid(format!("{e:#}"))
}

/// The import a link error names, from wasmtime's "unknown import: `m::n` has not been
/// defined".
pub fn link_error(e: wasmtime::Error) -> LoadError {
    let text = format!("{e:#}");
    let named = text
        .split_once("unknown import: `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(name, _)| name.to_owned());
    match named {
        Some(name) => LoadError::UnknownImport(name),
        None => LoadError::Link(text),
    }
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use super::*;

    #[test]
    fn tells_core_modules_from_components_by_the_layer() {
        let core = wat::parse_str("(module)").unwrap();
        let component = wat::parse_str("(component)").unwrap();
        assert_eq!(code_kind(&core), CodeKind::CoreModule);
        assert_eq!(code_kind(&component), CodeKind::Component);
    }

    #[test]
    fn rejects_bytes_that_are_neither_binary_nor_text() {
        assert!(matches!(
            to_binary(b"\x7fELF\x02\x01"),
            Err(LoadError::Invalid(_))
        ));
        assert!(matches!(
            to_binary(b"(module (func"),
            Err(LoadError::Invalid(_))
        ));
        assert!(to_binary(b"  (module)").is_ok());
    }
}
