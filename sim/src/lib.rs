//! `wasmos sim`: the real master core and a real agent core ([`agent_core::AgentNode`]) per
//! scenario agent, run in virtual time on a JSON scenario, with one simulated framework per
//! scenario entry and faults at given times.
//!
//! The driver plays the part of the zenoh adapters: it feeds adverts, liveliness, calls,
//! launch outcomes and status updates into [`master::Master`], commands and task outcomes
//! into the agents, delivers every message at once (nothing passes a cut link), and moves
//! virtual time to the next thing due (a master or agent timer, a task's end, a fault).
//!
//! - Frameworks ([`frameworks`]): each synthetic framework launches one task of its shape
//!   per offer while it has tasks left (see the module docs for declines and filters),
//!   acknowledges every update and re-launches nothing on its own; a framework entry with
//!   `"scheduler": "PATH.wasm"` is answered by a [`SimScheduler`] instead (the CLI runs the
//!   module in wasmtime; this crate knows nothing of it).
//! - Tasks of a framework with `"duration_ms": N` finish N ms after they start; without it
//!   they never end.
//! - Agents with free GPUs are offered only to frameworks with `"capabilities":
//!   ["gpu_resources"]`, as the master does (see `master::allocator::GpuAgents`).
//! - Faults: `{"at_ms": T, "agent_lost": ID}` cuts the agent off (its token goes, nothing
//!   passes; it keeps running its tasks), and the master declares it lost after its
//!   agent-lost timeout; `{"at_ms": T, "agent_back": ID}` restores it with whatever it
//!   still runs; `{"at_ms": T, "master_restart": true}` drops the master core with
//!   everything in flight and builds a new one from re-registration alone.
//! - The run ends at `until_ms`, or when nothing more can happen: nothing in flight or
//!   scheduled, every cut-off agent declared lost, and no framework with tasks left fits
//!   anywhere.
//!
//! Invariants checked throughout: the master's own books after every fault and at the
//! end, no agent running more than it has, no task started twice, no master telling two
//! different ends of one task, and (once settled) no agent still holding an end its
//! framework was not told of.

mod driver;
mod fleet;
pub mod frameworks;
mod report;
mod routing;
mod scenario;

pub use driver::{
    AllocatorFactory, CoreWeight, SIM_SEED, SIM_STEPS_MAX, SIM_TASKS_MAX, SchedulerLoader,
    SimError, run_scenario, run_scenario_weighed, run_scenario_with, run_scenario_with_schedulers,
};
pub use frameworks::SimScheduler;
pub use report::{Counts, Outcomes, SimReport};
pub use scenario::{
    Fault, FaultKind, SCENARIO_AGENTS_MAX, SCENARIO_FAULTS_MAX, SCENARIO_FRAMEWORKS_MAX, Scenario,
    ScenarioAgent, ScenarioError, ScenarioFramework,
};
