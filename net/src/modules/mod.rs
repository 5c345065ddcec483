//! The module store: WASM modules addressed by the sha256 of their bytes.
//!
//! The master keeps them in a [`ModuleStore`] and serves them with a [`ModuleServer`]
//! (`modules/<sha256>?chunk=N` for agents, `master/upload/<principal>` for clients); agents fetch into
//! a [`ModuleCache`] that verifies every module against its hash; clients send modules
//! with [`upload_module`].

pub mod fetch;
pub mod serve;
pub mod store;
pub mod upload;

pub use fetch::{CachedModule, FetchError, ModuleCache};
pub use serve::{ModuleServer, UploadGate};
pub use store::{
    MODULE_BYTES_MAX, ModuleStore, StoreError, WasmHeaderError, check_wasm, check_wasm_header,
    module_hash,
};
pub use upload::{UploadError, UploadProgress, upload_module};
