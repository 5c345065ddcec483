//! Helpers for end-to-end tests: where the `wasmos` binary and the built modules are.
//!
//! `cargo xtask test` builds both before the tests run.

pub mod oci_image;

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The `wasmos` binary: `$WASMOS_BIN`, else `target/debug/wasmos`.
pub fn wasmos_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("WASMOS_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let bin = target.join("debug").join("wasmos");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bin wasmos` (cargo xtask test does)",
        bin.display()
    );
    bin
}

pub fn wasmos() -> Command {
    Command::new(wasmos_bin())
}

/// A module built by `cargo xtask modules`, by crate name (`p1_hello`).
pub fn module(name: &str) -> PathBuf {
    let path = workspace_root()
        .join("target/modules")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask modules`",
        path.display()
    );
    path
}
