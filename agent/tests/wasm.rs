//! The agent's one integration-test binary: the WASM executor on real wasmtime against the
//! modules of `modules/tasks` (built by `cargo xtask modules`), and resource detection on
//! fake device trees; signed modules with trusted keys.

#![allow(clippy::too_many_lines)]

#[path = "wasm/detect.rs"]
mod detect;
#[path = "wasm/executor.rs"]
mod executor;
#[path = "wasm/signed.rs"]
mod signed;
#[path = "wasm/sockets.rs"]
mod sockets;
#[path = "wasm/support.rs"]
mod support;
