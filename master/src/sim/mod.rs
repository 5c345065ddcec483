//! `wasmos sim`: the real master core run in virtual time on a JSON scenario, with one
//! synthetic framework per scenario entry.
//!
//! The driver plays the part of the zenoh adapter, the agents and the frameworks: it feeds
//! adverts and calls into [`Master`](crate::Master), carries out the actions it polls, and
//! moves virtual time to [`Master::poll_timeout`](crate::Master::poll_timeout) when nothing
//! is due now. Each synthetic framework, for each offer, launches exactly one task of its
//! shape when the task fits and it has tasks left, declining the rest with a 0-second
//! filter; when the task does not fit it declines the whole offer with a one-hour filter;
//! with no tasks left it declines and suppresses. A framework's `attributes` are agent
//! attributes it requires (standing constraints). The run ends when no outstanding offer
//! remains and no framework with tasks left could fit one on the free resources of an
//! agent it accepts.
//!
//! A framework entry with `"scheduler": "PATH.wasm"` is answered by a [`SimScheduler`]
//! instead (the CLI runs the module in wasmtime; this crate knows nothing of it): it gets
//! every event of its framework and its calls go to the master. It counts as done once it
//! suppressed or declined all of its latest offers; the run also ends when nothing more can
//! happen.

mod driver;
mod scenario;

pub use driver::{
    SIM_SEED, SIM_STEPS_MAX, SIM_TASKS_MAX, SchedulerLoader, SimError, SimReport, SimScheduler,
    run_scenario, run_scenario_with, run_scenario_with_schedulers,
};
pub use scenario::{
    SCENARIO_AGENTS_MAX, SCENARIO_FRAMEWORKS_MAX, Scenario, ScenarioAgent, ScenarioError,
    ScenarioFramework,
};
