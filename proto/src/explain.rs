//! Why a task or a job's copy is not running (`wasmos explain TASK|JOB [--json]`,
//! `GET /api/v1/explain/{subject}`): the facts the master core gives about placing it,
//! per agent and for its framework, with a line in words. The JSON of these types is
//! the operator's contract.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{AgentId, FrameworkId, TaskId};
use crate::operator::AgentState;
use crate::task::TaskState;

/// What `explain` answers: about a task, or about a job (its copies that wait).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Explanation {
    /// The task id or job name asked about.
    pub subject: String,
    /// In one line: "3 of 6 running; 3 wait: no agent with arch=aarch64 has 0.5 cpus free
    /// (closest: pi-2, 0.25 free)".
    pub summary: String,
    /// The copies asked about: the task, or every copy of the job not running.
    pub copies: Vec<CopyExplanation>,
}

/// One task: its state and, while it waits for an offer, why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CopyExplanation {
    #[schema(value_type = String)]
    pub task_id: TaskId,
    pub state: TaskState,
    /// In words.
    pub reason: String,
    #[schema(value_type = Option<String>)]
    pub agent_id: Option<AgentId>,
    /// Its framework's place in the allocation, while it waits.
    pub framework: Option<FrameworkFacts>,
    /// Each agent's fit for it, while it waits: those it fits first, then the closest.
    pub agents: Vec<AgentFit>,
}

/// One agent against one waiting task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentFit {
    #[schema(value_type = String)]
    pub agent_id: AgentId,
    pub hostname: String,
    pub fit: Fit,
    /// In words.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// It fits: the next offer of this agent to the framework can take it.
    Fits,
    /// The master cannot reach the agent (its token is gone), or lost it.
    Unreachable { state: AgentState },
    /// A constraint of the task (or the framework's standing one) does not hold there.
    Constraint { constraint: String },
    /// Not enough of `resource` free: `need` and `free` in its units (cores, MiB); what
    /// is offered to frameworks and not yet answered is `offered`.
    Short {
        resource: String,
        need: f64,
        free: f64,
        offered: f64,
        /// Other resources short there too, most short first.
        also: Vec<Shortfall>,
    },
    /// The framework declined this agent's offers with a filter until then.
    Filtered { until_at_ms: u64 },
    /// The job's tasks kept failing there: no copies until then.
    Quarantined { until_at_ms: u64 },
}

/// One more resource an agent lacks for a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Shortfall {
    pub resource: String,
    pub need: f64,
    pub free: f64,
}

/// A framework's place in Dominant Resource Fairness.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FrameworkFacts {
    #[schema(value_type = String)]
    pub framework_id: FrameworkId,
    pub name: String,
    pub connected: bool,
    /// It asked for no offers.
    pub suppressed: bool,
    pub dominant_share: f64,
    /// Its dominant share over its weights: DRF offers to the lowest first.
    pub weighted_share: f64,
    /// Frameworks wanting offers that DRF serves before it, lowest weighted share first
    /// (at most [`AHEAD_LISTED_MAX`]).
    pub ahead: Vec<FrameworkShare>,
}

/// Frameworks listed in [`FrameworkFacts::ahead`].
pub const AHEAD_LISTED_MAX: usize = 5;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FrameworkShare {
    #[schema(value_type = String)]
    pub framework_id: FrameworkId,
    pub name: String,
    pub weighted_share: f64,
}
