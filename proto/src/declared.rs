//! Declared jobs (`wasmos deploy FILE`, `wasmos job …`, `/api/v1/jobs…`): a service of N
//! copies (or one per matching agent) that the jobs framework keeps running, versioned,
//! and updates by health-gated rollouts. These shapes are the operator's contract: the
//! deploy file ([`JobDecl`], TOML or JSON), and the JSON of `wasmos job … --json` and of
//! the HTTP API ([`JobSummary`], [`JobStatus`], [`HistoryEntry`]).
//!
//! Times named `*_at_ms` are wall clock, ms since the Unix epoch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{AgentId, TaskId};
use crate::task::{RestartPolicy, TaskState};

/// Default cpus of one copy.
pub const DECL_CPUS_DEFAULT: f64 = 0.1;
/// Default memory of one copy, MiB.
pub const DECL_MEM_MIB_DEFAULT: f64 = 64.0;
/// Default of [`UpdatePolicy::min_healthy_ms`].
pub const MIN_HEALTHY_MS_DEFAULT: u64 = 10_000;
/// Default of [`UpdatePolicy::healthy_deadline_ms`].
pub const HEALTHY_DEADLINE_MS_DEFAULT: u64 = 300_000;

/// A declared job, as the deploy file gives it. Exactly one of `module` and `oci`;
/// exactly one of `count` and `per_agent`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobDecl {
    /// 1 to 64 of `a-z 0-9 - _ .`, starting with a letter or digit; names the job.
    pub name: String,
    /// In the file: the path of a `.wasm` file (absolute, or relative to the file, then to
    /// the current directory). To the master: its sha256, once uploaded.
    #[serde(default)]
    pub module: Option<String>,
    /// Path of an OCI image layout on the agents.
    #[serde(default)]
    pub oci: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Copies to run, 0 to 256 (0: none, the job is kept).
    #[serde(default)]
    pub count: Option<u32>,
    /// Copies on every agent that matches the constraints (Nomad's system jobs).
    #[serde(default)]
    pub per_agent: Option<u32>,
    #[serde(default = "cpus_default")]
    pub cpus: f64,
    /// MiB.
    #[serde(default = "mem_default")]
    pub mem: f64,
    /// As `wasmos run --constraint`: `key=value`, `key!=value`, comma lists.
    #[serde(default)]
    pub constraints: Vec<String>,
    /// Spread the copies evenly across the values of this agent attribute (`zone`).
    #[serde(default)]
    pub spread: Option<String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Wall-clock limit of each task, ms.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub update: UpdatePolicy,
    #[serde(default)]
    pub quarantine: QuarantinePolicy,
}

fn cpus_default() -> f64 {
    DECL_CPUS_DEFAULT
}

fn mem_default() -> f64 {
    DECL_MEM_MIB_DEFAULT
}

/// How a new version replaces the running one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct UpdatePolicy {
    /// Copies replaced at a time (at least 1): healthy copies never drop below
    /// `count - max_parallel` during a rollout.
    pub max_parallel: u32,
    /// Copies of the new version started first, beside the old ones; the rollout waits
    /// until they are healthy (and promoted).
    pub canary: u32,
    /// A copy is healthy once it has been up this long without failing.
    pub min_healthy_ms: u64,
    /// A new copy not healthy this long after it was added (placed or not) fails the
    /// rollout.
    pub healthy_deadline_ms: u64,
    /// A failed rollout goes back to the last healthy version.
    pub auto_revert: bool,
    /// Healthy canaries are promoted by themselves; `false`: they wait for
    /// `wasmos job promote`.
    pub auto_promote: bool,
}

impl Default for UpdatePolicy {
    fn default() -> UpdatePolicy {
        UpdatePolicy {
            max_parallel: 1,
            canary: 0,
            min_healthy_ms: MIN_HEALTHY_MS_DEFAULT,
            healthy_deadline_ms: HEALTHY_DEADLINE_MS_DEFAULT,
            auto_revert: false,
            auto_promote: true,
        }
    }
}

/// Default of [`QuarantinePolicy::failures`].
pub const QUARANTINE_FAILURES_DEFAULT: u32 = 3;
/// Default of [`QuarantinePolicy::window_ms`].
pub const QUARANTINE_WINDOW_MS_DEFAULT: u64 = 60_000;
/// Default of [`QuarantinePolicy::backoff_ms`].
pub const QUARANTINE_BACKOFF_MS_DEFAULT: u64 = 300_000;

/// An agent where a job's tasks keep failing gets no more copies of it for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantinePolicy {
    /// Tasks of the job ending `failed` or `error` on one agent within `window_ms` that
    /// quarantine it (0: never).
    pub failures: u32,
    pub window_ms: u64,
    /// How long the agent gets no copies of the job.
    pub backoff_ms: u64,
}

impl Default for QuarantinePolicy {
    fn default() -> QuarantinePolicy {
        QuarantinePolicy {
            failures: QUARANTINE_FAILURES_DEFAULT,
            window_ms: QUARANTINE_WINDOW_MS_DEFAULT,
            backoff_ms: QUARANTINE_BACKOFF_MS_DEFAULT,
        }
    }
}

/// An agent quarantined for a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuarantineRow {
    #[schema(value_type = String)]
    pub agent_id: AgentId,
    /// Its failures in the window that quarantined it.
    pub failures: u32,
    pub until_at_ms: u64,
}

/// Requests about declared jobs, on the operator protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobsRequest {
    /// Creates or updates the job; the module is a sha256 in the master's store.
    Deploy(Box<JobDecl>),
    List,
    Status {
        name: String,
    },
    History {
        name: String,
    },
    Promote {
        name: String,
    },
    /// Back to `to`, or to the last healthy version before the current one.
    Revert {
        name: String,
        to: Option<u32>,
    },
    /// Stops every copy; the job is kept (stopped) with its history.
    Stop {
        name: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobsReply {
    Deployed(Deployed),
    List(Vec<JobSummary>),
    Status(Box<JobStatus>),
    History(Vec<HistoryEntry>),
    /// Done; what was done, for people.
    Done(String),
}

/// What a deploy changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Deployed {
    pub name: String,
    /// The version the job now rolls toward (or runs).
    pub version: u32,
    pub change: DeployChange,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeployChange {
    /// A new job.
    Created,
    /// Identical to what runs: nothing changed.
    Unchanged,
    /// Only the count, restart or update policy, spread: applied in place, no rollout.
    Updated,
    /// The module, args, env, resources or constraints changed: a new version rolls out.
    Rollout,
}

/// One declared job, in a line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobSummary {
    pub name: String,
    /// The newest version (the one running, or rolled out to).
    pub version: u32,
    /// The last version that became healthy.
    pub stable_version: Option<u32>,
    /// Copies wanted now (`per_agent`: per matching agent seen).
    pub desired: u32,
    pub running: u32,
    /// Running long enough, or done.
    pub healthy: u32,
    /// Copies whose task finished and is not restarted (healthy too).
    pub done: u32,
    /// `running`, `rolling`, `awaiting_promotion`, `failed`, `stopped`.
    pub state: String,
    /// The rollout under way.
    pub rollout: Option<RolloutRow>,
    /// Agents that get no copies of the job for now.
    pub quarantined: Vec<QuarantineRow>,
}

/// One declared job, whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobStatus {
    pub summary: JobSummary,
    pub decl: JobDecl,
    /// Newest first.
    pub versions: Vec<VersionRow>,
    pub copies: Vec<CopyRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RolloutRow {
    pub from: Option<u32>,
    pub to: u32,
    /// `canary`, `awaiting_promotion`, `rolling`.
    pub phase: String,
    pub started_at_ms: u64,
    /// Copies of `to` placed and healthy, and copies of other versions left.
    pub new_placed: u32,
    pub new_healthy: u32,
    pub old_left: u32,
    pub canaries: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VersionRow {
    pub version: u32,
    /// `deploying`, `stable` (became healthy), `failed`, `superseded`.
    pub state: String,
    /// Why it failed.
    pub reason: String,
    /// `module <sha256>` or `oci <path>`, with the args.
    pub what: String,
    pub cpus: f64,
    pub mem: f64,
    /// The version it went back to (a revert), if it is one.
    pub reverts_to: Option<u32>,
    pub created_at_ms: u64,
    /// Copies running this version now.
    pub copies: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CopyRow {
    #[schema(value_type = String)]
    pub task_id: TaskId,
    pub version: u32,
    /// `pending` while waiting for an offer or a restart.
    pub state: TaskState,
    #[schema(value_type = String)]
    pub agent_id: Option<AgentId>,
    pub healthy: bool,
    /// A canary of the rollout.
    pub canary: bool,
    /// Being stopped by the rollout or a scale-down.
    pub stopping: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    pub at_ms: u64,
    pub version: u32,
    /// `deployed`, `scaled`, `updated`, `canaries_healthy`, `promoted`, `succeeded`,
    /// `failed`, `reverting`, `stopped`.
    pub event: String,
    pub message: String,
}
