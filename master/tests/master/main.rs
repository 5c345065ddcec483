//! Tests of the master core. One binary (link time); each area is a module.

#![allow(clippy::too_many_lines)]

mod calls;
mod census;
mod common;
mod disconnect;
mod explain;
mod gpus;
mod liveness;
mod policy;
mod props;
mod reclaim;
mod recovery;
