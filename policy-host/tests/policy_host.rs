//! The one test binary of wasmos-policy-host: the SDK's codec against `proto` and the master's
//! snapshot, the example modules through the master core, hostile modules, `drf.wasm`
//! against the built-in DRF, and signed allocator modules. Needs the modules built:
//! `cargo xtask modules`.

#![allow(clippy::too_many_lines)]

#[path = "policy_host/cluster.rs"]
mod cluster;
#[path = "policy_host/codec.rs"]
mod codec;
#[path = "policy_host/drf_agreement.rs"]
mod drf_agreement;
#[path = "policy_host/examples.rs"]
mod examples;
#[path = "policy_host/hostile.rs"]
mod hostile;
#[path = "policy_host/signed.rs"]
mod signed;

use std::path::PathBuf;
use std::sync::OnceLock;

use policy_host::{Kind, Limits, ModuleCode};

/// A module built by `cargo xtask modules`.
fn module_bytes(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/modules")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the modules first: cargo xtask modules",
            path.display()
        )
    })
}

fn engine() -> &'static wasmtime::Engine {
    static ENGINE: OnceLock<wasmtime::Engine> = OnceLock::new();
    ENGINE.get_or_init(|| policy_host::sandbox::engine().unwrap())
}

fn compile(name: &str, kind: Kind) -> ModuleCode {
    ModuleCode::compile(engine(), &module_bytes(name), kind, Limits::default()).unwrap()
}

fn drf_code() -> &'static ModuleCode {
    static DRF: OnceLock<ModuleCode> = OnceLock::new();
    DRF.get_or_init(|| compile("drf", Kind::Allocator))
}
