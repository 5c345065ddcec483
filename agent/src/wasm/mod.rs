//! The WASM executor on wasmtime.
