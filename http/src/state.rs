//! The snapshot of the cluster that the API, `/metrics` and the dashboard serve: one
//! serializable value, built by [`crate::Recorder`] and published by the master daemon.
//!
//! Identifiers, resources and attributes are the `proto` types, serialized as JSON the
//! same way the CLI prints them; the `*Doc` types only describe those shapes in OpenAPI.

use std::collections::BTreeMap;

use proto::{AgentId, Attributes, FrameworkId, OfferId, Resources, TaskId, TaskState};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Everything the operator API serves, as of `generated_at_ms`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterState {
    /// Wall clock of the master when the snapshot was taken, ms since the Unix epoch.
    pub generated_at_ms: u64,
    pub agents: Vec<AgentInfo>,
    pub frameworks: Vec<FrameworkInfo>,
    /// Live tasks, then recently ended ones (newest first, at most
    /// [`crate::recorder::ENDED_TASKS_KEPT_MAX`]).
    pub tasks: Vec<TaskInfo>,
    /// Outstanding offers.
    pub offers: Vec<OfferInfo>,
    /// Recent offers and decisions, oldest first (at most [`crate::recorder::LOG_ENTRIES_MAX`]).
    pub log: Vec<LogEntry>,
    /// Each framework's dominant share at recent snapshots, oldest first (at most
    /// [`crate::recorder::SHARE_SAMPLES_MAX`]).
    pub share_history: Vec<ShareSample>,
    pub counters: Counters,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Registered and advertising.
    Active,
    /// Was registered and is gone (its liveliness token vanished).
    Lost,
}

impl AgentState {
    pub const ALL: [AgentState; 2] = [AgentState::Active, AgentState::Lost];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Active => "active",
            AgentState::Lost => "lost",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentInfo {
    #[schema(value_type = String)]
    pub agent_id: AgentId,
    pub hostname: String,
    pub state: AgentState,
    /// `arch=aarch64`, `has=camera`; a key with several values is an array.
    #[schema(value_type = BTreeMap<String, Object>)]
    pub attributes: Attributes,
    #[schema(value_type = ResourcesDoc)]
    pub total: Resources,
    #[schema(value_type = ResourcesDoc)]
    pub free: Resources,
    #[schema(value_type = ResourcesDoc)]
    pub offered: Resources,
    #[schema(value_type = ResourcesDoc)]
    pub used: Resources,
    pub tasks: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FrameworkInfo {
    #[schema(value_type = String)]
    pub framework_id: FrameworkId,
    pub name: String,
    pub role: String,
    pub role_weight: f64,
    pub weight: f64,
    pub connected: bool,
    pub suppressed: bool,
    /// Quantities used by its tasks plus offered to it, in thousandths of a unit.
    pub allocation: BTreeMap<String, u64>,
    /// Its dominant share of the cluster (0 to 1), unweighted.
    pub dominant_share: f64,
    pub tasks: usize,
    pub offers: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskInfo {
    #[schema(value_type = String)]
    pub task_id: TaskId,
    #[schema(value_type = String)]
    pub framework_id: FrameworkId,
    #[schema(value_type = String)]
    pub agent_id: AgentId,
    pub name: String,
    #[schema(value_type = ResourcesDoc)]
    pub resources: Resources,
    #[schema(value_type = TaskStateDoc)]
    pub state: TaskState,
    pub exit_code: Option<i32>,
    /// Why the task is in its state, from its latest status update.
    pub reason: String,
    /// When the task was launched, wall clock, ms since the Unix epoch; 0 for a task that
    /// ended before this master learned of its launch (after a restart).
    pub launched_at_ms: u64,
    /// Set when the task was chosen for reclaim: when it will be killed, wall clock, ms
    /// since the Unix epoch.
    pub reclaim_at_ms: Option<u64>,
    /// Cpu time used, seconds, as its agent last reported (`None` before any report).
    #[serde(default)]
    pub cpu_seconds: Option<f64>,
    /// Memory in use, bytes, as its agent last reported.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
}

/// One task with what it wrote, for `GET /api/v1/tasks/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub task: TaskInfo,
    /// The end of its output, as the agent keeps it; `None` when it could not be had
    /// (see `log_error`).
    pub log_tail: Option<LogTail>,
    pub log_error: Option<String>,
}

/// The tail of a task's output, lossily decoded as UTF-8.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogTail {
    pub stdout: String,
    pub stderr: String,
    /// Bytes not kept, both streams together.
    pub dropped_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OfferInfo {
    #[schema(value_type = String)]
    pub offer_id: OfferId,
    #[schema(value_type = String)]
    pub framework_id: FrameworkId,
    #[schema(value_type = String)]
    pub agent_id: AgentId,
    #[schema(value_type = ResourcesDoc)]
    pub resources: Resources,
    pub made_at_ms: u64,
    pub expires_at_ms: Option<u64>,
}

/// Something the master decided or was told, for the dashboard's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogEntry {
    /// Wall clock, ms since the Unix epoch.
    pub at_ms: u64,
    pub kind: LogKind,
    pub framework_id: Option<String>,
    pub agent_id: Option<String>,
    pub task_id: Option<String>,
    /// For people: "offered cpus:2 mem:512 of edge-1".
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    Offer,
    Accept,
    Decline,
    Rescind,
    Launch,
    Kill,
    Status,
    Reclaim,
    CallRefused,
    /// A scheduler module hosted by the master failed a call.
    SchedulerFault,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShareSample {
    /// Wall clock, ms since the Unix epoch.
    pub at_ms: u64,
    /// Framework id to dominant share (0 to 1).
    pub shares: BTreeMap<String, f64>,
}

/// Monotonic counters since the master started, as `/metrics` exports them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Counters {
    pub offers_sent: u64,
    pub offers_accepted: u64,
    pub offers_declined: u64,
    pub offers_rescinded: u64,
    /// Status updates the agents sent again because no acknowledgement came in time.
    pub status_update_retries: u64,
    /// Payloads dropped because they did not decode, by zenoh key (expression).
    pub decode_errors: BTreeMap<String, u64>,
    pub allocation_pass_seconds: Histogram,
}

/// A cumulative histogram in Prometheus' sense.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Histogram {
    /// Upper bounds, increasing; the implicit last bucket is `+Inf`.
    pub bounds: Vec<f64>,
    /// Observations at or below each bound (cumulative), one per bound.
    pub cumulative_counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

/// Bucket bounds of the allocation pass histogram, seconds: 100 µs to 2.5 s.
pub const ALLOCATION_PASS_BOUNDS_SECONDS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 2.5,
];

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::with_bounds(&ALLOCATION_PASS_BOUNDS_SECONDS)
    }
}

impl Histogram {
    pub fn with_bounds(bounds: &[f64]) -> Histogram {
        Histogram {
            bounds: bounds.to_vec(),
            cumulative_counts: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        for (bound, n) in self.bounds.iter().zip(self.cumulative_counts.iter_mut()) {
            if value <= *bound {
                *n += 1;
            }
        }
        self.count += 1;
        self.sum += value;
    }
}

/// The JSON shape of `proto::Resources` (documentation only).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ResourcesDoc {
    /// `cpus`, `mem` (MiB), `disk` (MiB), `gpus`: whole units, fractions allowed.
    scalars: BTreeMap<String, f64>,
    /// `ports`: sorted inclusive `[start, end]` intervals.
    ranges: BTreeMap<String, Vec<[u64; 2]>>,
    /// Device ids such as `gpu:0`.
    sets: BTreeMap<String, Vec<String>>,
}

/// The JSON shape of `proto::TaskState` (documentation only).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum TaskStateDoc {
    Staging,
    Starting,
    Running,
    Finished,
    Failed,
    Killed,
    Lost,
    Error,
}
