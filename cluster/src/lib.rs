//! The wasmos daemons: thin zenoh adapters around the sans-IO parts.
//!
//! - [`master::MasterDaemon`] drives `master::Master` from zenoh inputs (adverts, agent
//!   and framework liveliness, framework calls, task status updates) and carries out its
//!   actions (events to frameworks, commands to agents); it also serves the module store.
//! - [`agent::AgentDaemon`] advertises one device, runs the tasks the master sends it on
//!   the agent crate's executors, and delivers their status updates at least once.
//!
//! Architecture invariant: the daemons decide nothing the core or the executors decide;
//! they move messages, keep time and hold timers. Keys come from `proto::Keys`, bytes from
//! `proto`'s codec, transport from the `net` crate.

pub mod agent;
mod clock;
pub mod error;
pub mod hosted;
pub mod master;
pub mod tools;

pub use error::ClusterError;
