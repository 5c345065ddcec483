//! End-to-end tests: real processes, real wasmtime, real runc, real zenoh on loopback.
//! One binary for all of them (link time); each area is a module.

mod cluster;
mod oci;
mod sim;
mod task_run;
