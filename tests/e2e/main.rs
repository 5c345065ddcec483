//! End-to-end tests: real processes, real wasmtime, real runc, real zenoh on loopback.
//! One binary for all of them (link time); each area is a module.

#![allow(clippy::too_many_lines)]

mod aarch64;
mod chaos;
mod cluster;
mod demo;
mod deploy;
mod disconnect;
mod failover;
mod fleet;
mod oci;
mod plugins;
mod secure;
mod signed;
mod sim;
mod site;
mod standby;
mod task_run;
