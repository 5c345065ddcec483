//! The wasmos master core: Dominant Resource Fairness over a fleet of agents, as a sans-IO
//! state machine.
//!
//! Events and the current time go in ([`Master::handle_agent_advert`],
//! [`Master::handle_call`], [`Master::handle_status`], [`Master::handle_agent_token`],
//! [`Master::handle_framework_token`], [`Master::handle_launch_outcome`],
//! [`Master::handle_timeout`], ...);
//! actions come out ([`Master::poll_action`]): offers and other events to frameworks,
//! launches, kills and acknowledgements to agents. The `wasmos-sim` crate drives the same
//! machine in virtual time for `wasmos sim`.
//!
//! Architecture invariant: this crate knows nothing of zenoh, tokio, wasmtime or clocks.
//! Time is a [`Millis`] handed in; the only randomness is a seeded generator.

pub mod allocator;
pub mod config;
mod deadlines;
pub mod error;
pub mod explain;
mod master;
pub mod offer_book;
pub mod policy;
pub mod reclaim;
pub mod resource_book;
pub mod rng;
pub mod tasks;
pub mod time;
pub mod view;

pub use allocator::{Allocator, DrfAllocator, OfferDecision, Snapshot};
pub use config::{MasterConfig, ReclaimConfig};
pub use error::CallError;
pub use master::{
    Action, BUILTIN_DRF_SEED_MIX, BrokenInvariant, CENSUS_QUIET_MS, LaunchOutcome,
    MASTER_CENSUS_REPEAT_MS, Master, OperatorKillError,
};
pub use policy::{OperatorAct, Policy, Refusal};
pub use resource_book::ResourceBook;
pub use time::Millis;
