//! Tests of the master core. One binary (link time); each area is a module.

mod calls;
mod common;
mod liveness;
mod props;
mod reclaim;
mod recovery;
