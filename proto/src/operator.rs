//! The operator's contract: the rows the master serves about its cluster (agents,
//! frameworks, tasks, offers, the decision log), a job as operators submit it, hosted
//! schedulers, and the typed requests and replies that carry them.
//!
//! One set of rows for every reader: the master core builds them
//! (`master::view`), the HTTP API serves them as JSON (these serde shapes are its
//! documented contract, see the OpenAPI document), `/metrics` counts them, and operator
//! tools get them in an [`OperatorReply`] on the `master/admin` queryable.
//!
//! Times named `*_at_ms` are wall clock, ms since the Unix epoch, unless a field says
//! otherwise. Quantities of resources are whole units (see [`crate::Resources`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::attributes::Attributes;
use crate::ids::{AgentId, FrameworkId, OfferId, TaskId};
use crate::resources::Resources;
use crate::task::{ModuleRef, TaskState};
pub use crate::task::{OnReconnect, RestartPolicy};

/// Largest job an operator may submit, bytes: the body of `POST /api/v1/jobs` and the
/// encoded [`JobRequest`] of an [`OperatorRequest::SubmitJob`] alike.
pub const JOB_REQUEST_BYTES_MAX: usize = 64 << 10;
/// Most bytes of a hosted scheduler's `--config` file.
pub const HOSTED_CONFIG_BYTES_MAX: usize = 64 << 10;
/// Task ids one [`OperatorRequest::TaskRows`] may ask about (four times the tasks of a
/// job request).
pub const TASK_ROWS_ASKED_MAX: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Registered and advertising.
    Active,
    /// Registered, but its liveliness token is gone (killed, cut off): it is lost, and
    /// its tasks with it, when the grace period ends unless it comes back first.
    Disconnected,
    /// Was registered and is gone (its liveliness token vanished).
    Lost,
}

impl AgentState {
    pub const ALL: [AgentState; 3] = [
        AgentState::Active,
        AgentState::Disconnected,
        AgentState::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Active => "active",
            AgentState::Disconnected => "disconnected",
            AgentState::Lost => "lost",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentRow {
    /// The same as `agent_id`: every listing's rows name their id `id` (the CLI's
    /// `--json` and the HTTP API serve the same rows).
    pub id: String,
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

/// A framework as the master's books show it (not its subscription, which is
/// [`crate::FrameworkInfo`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FrameworkRow {
    /// The same as `framework_id`: every listing's rows name their id `id` (the CLI's
    /// `--json` and the HTTP API serve the same rows).
    pub id: String,
    #[schema(value_type = String)]
    pub framework_id: FrameworkId,
    pub name: String,
    pub role: String,
    pub role_weight: f64,
    pub weight: f64,
    pub connected: bool,
    pub suppressed: bool,
    /// What its tasks use plus what is offered to it, in the units resources are given
    /// in everywhere else (`cpus` in cores, `mem` in MiB, ranges and sets in items).
    pub allocation: BTreeMap<String, f64>,
    /// Its dominant share of the cluster (0 to 1), unweighted.
    pub dominant_share: f64,
    pub tasks: usize,
    pub offers: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskRow {
    /// The same as `task_id`: every listing's rows name their id `id` (the CLI's
    /// `--json` and the HTTP API serve the same rows).
    pub id: String,
    #[schema(value_type = String)]
    pub task_id: TaskId,
    #[schema(value_type = String)]
    pub framework_id: FrameworkId,
    #[schema(value_type = String)]
    pub agent_id: AgentId,
    pub name: String,
    #[schema(value_type = ResourcesDoc)]
    pub resources: Resources,
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OfferRow {
    #[schema(value_type = String)]
    pub offer_id: OfferId,
    #[schema(value_type = String)]
    pub framework_id: FrameworkId,
    #[schema(value_type = String)]
    pub agent_id: AgentId,
    #[schema(value_type = ResourcesDoc)]
    pub resources: Resources,
    /// When it was made, on the master's clock (ms since the master started).
    pub made_at_ms: u64,
    /// When it expires, on the master's clock.
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

/// The JSON shape of [`Resources`] (documentation only).
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

/// A job as operators submit it (`wasmos run`, `POST /api/v1/jobs`): `count` copies of
/// one task, placed by the jobs framework on agents that satisfy `constraints`. Exactly
/// one of `module` and `image`. Validated by the jobs framework (`jobs::request`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// Names the job's tasks (`<name>-<n>.<tag>`): 1 to 64 of `a-z 0-9 - _ .`, starting
    /// with a letter or digit.
    pub name: String,
    /// sha256 (64 lower-case hex digits) of a WASM module already in the master's store.
    #[serde(default)]
    pub module: Option<String>,
    /// Path of an OCI image layout on the agent.
    #[serde(default)]
    pub image: Option<String>,
    /// Cpus per task, at least 0.001 (amounts count in thousandths).
    pub cpus: f64,
    /// Memory per task, MiB, at least 0.001.
    pub mem: f64,
    /// Tasks to run, 1 to 256.
    #[serde(default = "one")]
    pub count: u32,
    /// Placement constraints, all of which must hold: `key=value` or `key==value` (the
    /// agent's attribute holds the value, `arch=aarch64`), `key!=value` (it does not, or
    /// the agent lacks the key); one item may join several with commas
    /// (`arch=aarch64,has=camera`).
    #[serde(default)]
    pub constraints: Vec<String>,
    /// Arguments (for an image: the command, overriding its entrypoint).
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// With a restart policy: when the master loses the agent of a task, the task is
    /// `unreachable` (and its copy replaced elsewhere) for this long before it is `lost`;
    /// an agent back within it has its tasks taken back, and `on_reconnect` says which
    /// copy stays. `None`: lost with its agent.
    #[serde(default)]
    pub lost_after_ms: Option<u64>,
    /// Which copy stays when an unreachable task comes back after it was replaced.
    #[serde(default)]
    pub on_reconnect: OnReconnect,
    /// Wall-clock limit of each task, ms.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

/// What a job submission answers (`POST /api/v1/jobs`: 201).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobAccepted {
    pub job_id: String,
    /// The tasks the job will run, in the state `staging` until launched.
    #[schema(value_type = Vec<String>)]
    pub task_ids: Vec<TaskId>,
}

/// A framework whose scheduler is a module (executor-sdk/README.md) run inside the master
/// process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostedFramework {
    pub name: String,
    pub role: String,
    pub weight: f64,
    /// The scheduler module, in the master's module store.
    pub module: ModuleRef,
    /// The module's configuration (the `--config` file), at most
    /// [`HOSTED_CONFIG_BYTES_MAX`] bytes.
    pub config: Vec<u8>,
}

/// Managing hosted frameworks: also served on the `master/frameworks/hosted` queryable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HostedRequest {
    /// Run the scheduler `module` (already in the master's module store) as a new
    /// framework; answered with [`HostedReply::Added`] once it has subscribed.
    Add(HostedFramework),
    /// The hosted schedulers and their health.
    List,
    /// Stop the hosted framework named so: it tears down (the master kills its tasks)
    /// and leaves the list; answered with [`HostedReply::Removed`].
    Remove { name: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HostedReply {
    Added { framework_id: FrameworkId },
    List { rows: Vec<HostedRow> },
    Removed { framework_id: FrameworkId },
    Error { message: String },
}

/// What `wasmos framework list` shows of one hosted framework.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostedRow {
    pub framework_id: FrameworkId,
    pub name: String,
    /// The module's name, for people.
    pub module: String,
    pub sha256: String,
    pub health: HostedHealth,
    /// While backing off: when the module is called again (wall clock, ms since the Unix
    /// epoch).
    pub retry_at_ms: Option<u64>,
    pub failures_total: u64,
    pub last_error: Option<String>,
    /// How many of its tasks the scheduler was last told are in each state.
    pub task_states: BTreeMap<TaskState, u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostedHealth {
    Healthy,
    BackingOff,
    Deactivated,
}

/// A request from an operator tool on the `master/admin` queryable; the HTTP API asks
/// the same questions of the same code.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OperatorRequest {
    /// Active agents, then the recently lost ones.
    Agents,
    Frameworks,
    /// Live tasks, then recently ended ones, newest first.
    Tasks,
    /// Outstanding offers.
    Offers,
    /// Payloads the master dropped because they did not decode, per key.
    DecodeErrors,
    /// What a task wrote, running or ended, asked of the agent in its row.
    Logs(crate::admin::LogsRequest),
    /// Kill a task as the operator: a launched task through the master (its framework
    /// sees `killed`), one the jobs framework holds but has not launched is cancelled.
    Kill {
        task_id: TaskId,
    },
    /// A job for the jobs framework, at most [`JOB_REQUEST_BYTES_MAX`] bytes encoded.
    SubmitJob(JobRequest),
    Hosted(HostedRequest),
    /// Declared jobs (`wasmos deploy`, `wasmos job …`).
    Jobs(crate::declared::JobsRequest),
    /// Why a task or a job's copies are not running: a task id or a job name.
    Explain {
        subject: String,
    },
    /// The rows of these tasks, live or ended while the master remembers them (the last
    /// 10,000 ended), in the order asked; ids it does not know are left out. At most
    /// [`TASK_ROWS_ASKED_MAX`]. Answered with [`OperatorReply::Tasks`]. `Tasks` lists only
    /// the 200 most recently ended, so a task of a large batch can leave it between two
    /// looks: whoever waits for given tasks asks this.
    TaskRows {
        task_ids: Vec<TaskId>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OperatorReply {
    Agents(Vec<AgentRow>),
    Frameworks(Vec<FrameworkRow>),
    Tasks(Vec<TaskRow>),
    Offers(Vec<OfferRow>),
    DecodeErrors(BTreeMap<String, u64>),
    /// The agent's answer, as it gave it.
    Logs(crate::admin::TaskOutput),
    /// The kill was sent (or the job's task cancelled); the task's state tells when it
    /// ended.
    Killed,
    JobAccepted(JobAccepted),
    Hosted(HostedReply),
    Jobs(crate::declared::JobsReply),
    Explain(Box<crate::explain::Explanation>),
    Error(OperatorError),
}

/// Why the master did not do what an operator asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum OperatorError {
    /// No such task (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// Valid, but not possible now: a task already ended, no jobs framework (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// A job that is not valid, saying which field is at fault (HTTP 422).
    #[error("{0}")]
    InvalidJob(String),
    /// No jobs framework is attached to the master (yet: one may be starting) (HTTP 409).
    #[error("{0}")]
    JobsNotRunning(String),
    /// The caller may not do this (the policy, or a principal the master does not know)
    /// (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// A request over one of its bounds, saying which (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_request_round_trips_through_the_codec_and_json() {
        let job: JobRequest =
            serde_json::from_str(r#"{"name":"x","image":"/i","cpus":1,"mem":2}"#).unwrap();
        assert_eq!(job.count, 1);
        let request = OperatorRequest::SubmitJob(job);
        let bytes = crate::encode(&request).unwrap();
        assert_eq!(crate::decode::<OperatorRequest>(&bytes).unwrap(), request);
    }

    #[test]
    fn hosted_task_states_are_keyed_by_state_name_in_json() {
        let row = HostedRow {
            framework_id: FrameworkId::new("f"),
            name: "n".into(),
            module: "m".into(),
            sha256: "s".into(),
            health: HostedHealth::BackingOff,
            retry_at_ms: Some(5),
            failures_total: 1,
            last_error: None,
            task_states: [(TaskState::Finished, 2)].into(),
        };
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["task_states"]["finished"], 2);
        assert_eq!(json["health"], "backing_off");
        assert_eq!(json["framework_id"], "f");
    }
}
