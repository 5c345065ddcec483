//! End-to-end tests: real processes, real wasmtime, real runc, real zenoh on loopback.
//! One binary for all of them (link time); each area is a module.

mod chaos;
mod cluster;
mod demo;
mod failover;
mod fleet;
mod oci;
mod plugins;
mod sim;
mod standby;
mod task_run;
