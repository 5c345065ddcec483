//! The wasmos agent: what one device has ([`detect`]) and how it runs tasks
//! ([`wasm`] on wasmtime, [`oci`] on runc). Both executors report through one
//! [`outcome::TaskOutcome`].
//!
//! Architecture invariant: this crate knows nothing of zenoh; the transport adapter
//! drives it.

pub mod detect;
pub mod oci;
pub mod outcome;
pub mod usage;
pub mod wasm;
