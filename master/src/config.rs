//! The master core's configuration: every period and limit, with units in the names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::policy::Policy;

/// Default of [`MasterConfig::reregistration_window_ms`]: a few advert periods.
pub const REREGISTRATION_WINDOW_MS_DEFAULT: u64 = 5_000;
/// The same for a standby master taking over from a leader that may have gone silent
/// rather than died (hung, partitioned): its agents notice only when their session's
/// lease runs out (about 8 s), then switch endpoints (about 10 s more, measured), and
/// tasks not back by the window's end are told `lost` and replaced. The census ends
/// the hold as soon as every agent of the previous leader is back, so a leader that
/// died outright costs no more than before.
pub const REREGISTRATION_WINDOW_MS_STANDBY_DEFAULT: u64 = 30_000;
/// Default of [`MasterConfig::recovered_framework_timeout_ms`].
pub const RECOVERED_FRAMEWORK_TIMEOUT_MS_DEFAULT: u64 = 60_000;
/// Default of [`MasterConfig::agent_lost_timeout_ms`].
pub const AGENT_LOST_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Default of [`MasterConfig::framework_token_wait_ms`].
pub const FRAMEWORK_TOKEN_WAIT_MS_DEFAULT: u64 = 10_000;
/// Default of [`MasterConfig::events_held_per_framework_max`].
pub const EVENTS_HELD_PER_FRAMEWORK_MAX_DEFAULT: usize = 1024;

/// Configuration of a [`crate::Master`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MasterConfig {
    /// Distinguishes this master process from earlier ones (a counter kept by the
    /// adapter, or a random number); framework and offer ids embed it, so ids are never
    /// reused across restarts.
    pub incarnation: u64,
    /// Offers still outstanding this long after they were made are rescinded;
    /// `None` keeps them until answered.
    pub offer_timeout_ms: Option<u64>,
    /// An allocation is run at most this long after the change that called for it; several
    /// changes in that window share one allocation. 0 allocates on the next
    /// `handle_timeout`, which `poll_timeout` asks for at once.
    pub allocation_batch_ms: u64,
    /// Sent to frameworks with `Subscribed`.
    pub heartbeat_interval_ms: u64,
    /// Decline filters longer than this are cut to it.
    pub filter_refuse_ms_max: u64,
    /// Decline filters kept per framework; when a new one would exceed it, the one that
    /// expires first is dropped.
    pub filters_per_framework_max: usize,
    /// Offers per `Offers` event; more are split over several events.
    pub offers_per_event_max: usize,
    /// Tasks per `Accept`; an `Accept` with more is refused.
    pub tasks_per_accept_max: usize,
    /// Ended tasks remembered (to recognize repeated status updates and route late
    /// acknowledgements); the oldest are forgotten first.
    pub ended_tasks_kept_max: usize,
    /// Grace period given to the agent with every kill, from SIGTERM to SIGKILL.
    pub kill_grace_ms: u64,
    /// Role weights set by the operator. A role not listed takes the weight its first
    /// framework subscribed with, and its frameworks weigh alike inside it; in a listed
    /// role, the weight a framework subscribes with is its weight inside the role.
    pub role_weights: BTreeMap<String, f64>,
    /// `None` disables reclaim.
    pub reclaim: Option<ReclaimConfig>,
    /// How long, from the master's start (time zero), agents and frameworks have to
    /// re-register after a master restart. Once the master sees it replaces an earlier
    /// one (an advert listing tasks, or a framework re-subscribing with an id it does not
    /// know) within this window, it makes no offers until the window ends, so that
    /// allocations and DRF shares are whole before anything is handed out. A master that
    /// sees neither (a new cluster) offers at once. 0 turns the hold off.
    pub reregistration_window_ms: u64,
    /// A framework this master knows only from agents' adverts (its tasks survived a
    /// master restart) is torn down, and its tasks killed, unless it subscribes within
    /// this long after the end of the re-registration window. Agents do not know a
    /// framework's own `failover_timeout_ms`, so this stands in for it until the
    /// framework re-subscribes.
    pub recovered_framework_timeout_ms: u64,
    /// An agent whose liveliness token is gone (or that adverts without one) is declared
    /// lost this long after, unless the token comes (back) first.
    #[serde(default = "agent_lost_timeout_ms_default")]
    pub agent_lost_timeout_ms: u64,
    /// Events for a framework wait this long after its subscription for its liveliness
    /// token; then they are sent anyway and the framework counts as disconnected.
    #[serde(default = "framework_token_wait_ms_default")]
    pub framework_token_wait_ms: u64,
    /// Events held per framework while its token is not present; beyond it the oldest
    /// are dropped (and counted, [`crate::Master::events_dropped`]).
    #[serde(default = "events_held_per_framework_max_default")]
    pub events_held_per_framework_max: usize,
    /// Frameworks without the GPU capability may have an agent with free GPUs that no
    /// GPU framework takes, once every agent without GPUs was looked at (Mesos'
    /// `--filter_gpu_resources=false`, less blunt). Off: they are never offered one.
    #[serde(default)]
    pub gpu_agents_last_resort: bool,
    /// Who may do what; [`Policy::open`] (nothing checked) on an insecure cluster.
    #[serde(skip, default = "Policy::open")]
    pub policy: Policy,
}

fn agent_lost_timeout_ms_default() -> u64 {
    AGENT_LOST_TIMEOUT_MS_DEFAULT
}

fn framework_token_wait_ms_default() -> u64 {
    FRAMEWORK_TOKEN_WAIT_MS_DEFAULT
}

fn events_held_per_framework_max_default() -> usize {
    EVENTS_HELD_PER_FRAMEWORK_MAX_DEFAULT
}

/// When and how the master takes resources back; see [`crate::reclaim`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReclaimConfig {
    /// How long a framework that wants offers must stay below its fair share before
    /// tasks are reclaimed for it; also the least time between two reclaims for it.
    pub starvation_ms: u64,
    /// Between telling a victim's framework and killing the task.
    pub grace_ms: u64,
    /// How often starvation is looked for while some framework is below its fair share.
    pub check_interval_ms: u64,
}

impl Default for ReclaimConfig {
    fn default() -> ReclaimConfig {
        ReclaimConfig {
            starvation_ms: 60_000,
            grace_ms: 10_000,
            check_interval_ms: 5_000,
        }
    }
}

impl Default for MasterConfig {
    fn default() -> MasterConfig {
        MasterConfig {
            incarnation: 0,
            offer_timeout_ms: Some(30_000),
            allocation_batch_ms: 0,
            heartbeat_interval_ms: 15_000,
            filter_refuse_ms_max: 24 * 3600 * 1000,
            filters_per_framework_max: 4096,
            offers_per_event_max: 256,
            tasks_per_accept_max: 1024,
            ended_tasks_kept_max: 10_000,
            kill_grace_ms: 5_000,
            role_weights: BTreeMap::new(),
            reclaim: Some(ReclaimConfig::default()),
            reregistration_window_ms: REREGISTRATION_WINDOW_MS_DEFAULT,
            recovered_framework_timeout_ms: RECOVERED_FRAMEWORK_TIMEOUT_MS_DEFAULT,
            agent_lost_timeout_ms: AGENT_LOST_TIMEOUT_MS_DEFAULT,
            framework_token_wait_ms: FRAMEWORK_TOKEN_WAIT_MS_DEFAULT,
            events_held_per_framework_max: EVENTS_HELD_PER_FRAMEWORK_MAX_DEFAULT,
            gpu_agents_last_resort: false,
            policy: Policy::open(),
        }
    }
}
