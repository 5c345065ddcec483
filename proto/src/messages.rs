//! Messages between agents, the master and frameworks.

use serde::{Deserialize, Serialize};

use crate::attributes::{Attributes, Constraint};
use crate::ids::{AgentId, FrameworkId, ModuleHash, OfferId, StatusUuid, TaskId};
use crate::resources::Resources;
use crate::task::{TaskSpec, TaskStatus};

/// An agent's identity, attributes and resources, published on `agents/<id>/advert`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentAdvert {
    pub agent_id: AgentId,
    pub hostname: String,
    pub attributes: Attributes,
    /// Everything the agent offers to the cluster (detected or configured, less reserved).
    pub total: Resources,
    /// Resources set aside for the device itself, never offered.
    pub reserved: Resources,
    /// Increases with every advert of this agent process; a restarted agent starts over
    /// with a new `incarnation`.
    pub seq: u64,
    pub incarnation: u64,
    /// Every task the agent runs or has not yet had acknowledged, with its resources and
    /// latest status: what a restarted master rebuilds its state from.
    pub tasks: Vec<AdvertTask>,
    pub version: String,
    /// The newest census of the master the agent was last registered with: how a
    /// restarted master knows when every agent of its predecessor is back.
    pub last_census: Option<MasterCensus>,
}

/// What a master tells its agents, on `master/census`, when the agents it counts change
/// (at most once per [`MASTER_CENSUS_PERIOD_MS`]). An agent keeps the newest and lists it
/// in its adverts; a master that replaces this one ends its re-registration window as
/// soon as `agents` agents list this census's `incarnation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterCensus {
    pub incarnation: u64,
    /// Increases with every census of this incarnation: the newest count wins.
    pub seq: u64,
    /// Agents registered with the master and not lost when the census was taken.
    pub agents: u64,
}

impl MasterCensus {
    /// Whether this census was taken after `other` (a later master, or a later census of
    /// the same master).
    pub fn is_newer_than(&self, other: &MasterCensus) -> bool {
        (self.incarnation, self.seq) > (other.incarnation, other.seq)
    }
}

/// Least time between two [`MasterCensus`]es of one master: while agents come and go in
/// numbers, one census a period is enough.
pub const MASTER_CENSUS_PERIOD_MS: u64 = 1_000;

/// One task an agent holds, as listed in its advert: enough for a master that never
/// launched it (a restarted one) to account for its resources and route its updates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdvertTask {
    /// The task's latest status (which names its framework); terminal when the agent still
    /// waits for that status to be acknowledged.
    pub status: TaskStatus,
    pub name: String,
    /// What the task was launched with, and uses until it ends.
    pub resources: Resources,
}

/// A framework's description of itself, sent with `Subscribe`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameworkInfo {
    pub name: String,
    pub role: String,
    /// The role's DRF weight, or, in a role whose weight the master's operator set, this
    /// framework's weight inside the role.
    pub weight: f64,
    /// Present when re-subscribing (failover, master restart).
    pub framework_id: Option<FrameworkId>,
    /// How long the master keeps the framework's tasks after it disconnects.
    pub failover_timeout_ms: u64,
    /// Standing preference: only agents whose attributes satisfy all these are offered.
    pub constraints: Vec<Constraint>,
    /// Standing preference: offers smaller than this (in any scalar) are not made.
    pub min_offer: Resources,
    /// What it declares it can use (Mesos' framework capabilities).
    pub capabilities: Vec<Capability>,
}

impl FrameworkInfo {
    pub fn has(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    /// Its name and role are ones the master takes: see [`check_label`].
    pub fn check_labels(&self) -> Result<(), String> {
        check_label("name", &self.name)?;
        check_label("role", &self.role)
    }
}

/// Longest framework name or role, bytes.
pub const FRAMEWORK_LABEL_BYTES_MAX: usize = 256;

/// A framework's name or role (`what`): 1 to [`FRAMEWORK_LABEL_BYTES_MAX`] bytes without
/// control characters, since listings and logs print them as they are (a newline breaks
/// a table, an escape sequence reaches the operator's terminal).
pub fn check_label(what: &str, label: &str) -> Result<(), String> {
    if label.is_empty() || label.len() > FRAMEWORK_LABEL_BYTES_MAX {
        return Err(format!(
            "a framework's {what} must be 1 to {FRAMEWORK_LABEL_BYTES_MAX} bytes, got {}",
            label.len()
        ));
    }
    // Bidirectional overrides reorder what a terminal shows after them.
    let bidi = |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if label.chars().any(|c| c.is_control() || bidi(c)) {
        return Err(format!(
            "a framework's {what} must not hold control characters: {label:?}"
        ));
    }
    if label.trim().is_empty() {
        return Err(format!("a framework's {what} must not be blank"));
    }
    Ok(())
}

/// A capability a framework declares in [`FrameworkInfo::capabilities`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// It runs tasks that use GPUs. Only frameworks that declare it are offered agents
    /// with free GPUs (Mesos' `GPU_RESOURCES`): a framework that took a GPU box for CPU
    /// work would keep the GPUs from GPU work, and a GPU's share of 1.0 would make its
    /// dominant share the highest in the cluster.
    GpuResources,
}

/// An offer: resources of one agent for one framework.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub offer_id: OfferId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub hostname: String,
    pub attributes: Attributes,
    pub resources: Resources,
}

/// Decline or accept filters: do not offer these resources of this agent again for
/// `refuse_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    pub refuse_seconds: f64,
}

impl Default for Filters {
    /// Mesos' default: five seconds.
    fn default() -> Filters {
        Filters {
            refuse_seconds: 5.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Operation {
    Launch { tasks: Vec<TaskSpec> },
}

/// A framework-to-master call, on the `master/calls` queryable. `framework_id` is `None`
/// only for a first `Subscribe`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameworkCall {
    pub framework_id: Option<FrameworkId>,
    pub call: Call,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Call {
    Subscribe {
        info: FrameworkInfo,
    },
    Accept {
        offer_ids: Vec<OfferId>,
        operations: Vec<Operation>,
        filters: Filters,
    },
    Decline {
        offer_ids: Vec<OfferId>,
        filters: Filters,
    },
    Revive,
    Suppress,
    Kill {
        task_id: TaskId,
    },
    Acknowledge {
        task_id: TaskId,
        status_uuid: StatusUuid,
    },
    Reconcile {
        tasks: Vec<TaskId>,
    },
    Teardown,
    /// Several `Acknowledge`s in one call (at most [`ACKS_PER_CALL_MAX`]): a busy
    /// framework acknowledges the updates that came in while its previous
    /// acknowledgements were on their way. The one-update form stays beside it because
    /// scheduler modules write calls in this enum's encoding (the executor SDK's ABI).
    AcknowledgeMany {
        acks: Vec<Ack>,
    },
}

/// The master's reply to a call: taken, or an error a person can act on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CallReply {
    Ok,
    Subscribed {
        framework_id: FrameworkId,
        heartbeat_interval_ms: u64,
    },
    Error {
        message: String,
    },
}

/// A master-to-framework event, on `frameworks/<id>/events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Subscribed {
        framework_id: FrameworkId,
        heartbeat_interval_ms: u64,
    },
    Offers {
        offers: Vec<Offer>,
    },
    Rescind {
        offer_id: OfferId,
    },
    Update {
        status: TaskStatus,
    },
    Error {
        message: String,
    },
    Heartbeat,
}

/// A master-to-agent command, on the `agents/<id>/cmd` queryable.
// A command is decoded once and moved into its handler; boxing the launch's task would
// add an allocation to every launch to save stack on the rare kill and ack.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AgentCommand {
    Launch {
        framework_id: FrameworkId,
        task: TaskSpec,
    },
    Kill {
        task_id: TaskId,
        grace_ms: u64,
    },
    /// At most [`ACKS_PER_CALL_MAX`]: the acknowledgements of one call for this agent.
    Acknowledge {
        acks: Vec<Ack>,
    },
    /// Another process has this agent's id: the master took a later incarnation's
    /// advert (the process of `incarnation` was away long enough to be counted gone, and
    /// its tasks lost). That process kills its tasks and stops, without telling the
    /// master it leaves (the id is no longer its own); any other ignores it.
    Stop {
        incarnation: u64,
    },
}

/// One status update acknowledged: its agent stops resending it (and forgets its task
/// when the update was the task's end).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub task_id: TaskId,
    pub status_uuid: StatusUuid,
}

/// Most acknowledgements one `Acknowledge` call or command carries: one call is one
/// decode and one pass in the master, so this bounds the work a call costs.
pub const ACKS_PER_CALL_MAX: usize = 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AgentReply {
    Ok,
    Error { message: String },
}

/// One chunk of a module, the reply on `modules/<sha256>` to a query with `chunk=N`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModuleChunk {
    pub sha256: ModuleHash,
    pub size_bytes: u64,
    pub index: u32,
    pub count: u32,
    /// As bytes, not a sequence: the same on the wire, decoded in one copy.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// Modules travel in chunks of at most this many bytes.
pub const MODULE_CHUNK_BYTES_MAX: usize = 1 << 20;

/// What an agent measured of one task, put on `agents/<agent_id>/metrics` every
/// [`TASK_USAGE_PERIOD_MS`] while the task runs and once more when it ended. Best effort
/// (a lost put is replaced by the next); the master shows the latest in `/metrics`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskUsageReport {
    pub agent_id: AgentId,
    pub task_id: TaskId,
    /// Cpu time used so far, seconds (wasm: time its code ran on the agent's threads;
    /// OCI: the container cgroup's).
    pub cpu_seconds: f64,
    /// Memory in use at the measurement (wasm: linear memories; OCI: the cgroup's), bytes.
    pub memory_bytes: u64,
    /// The last report of an ended task.
    pub ended: bool,
}

/// Between two [`TaskUsageReport`]s of a running task.
pub const TASK_USAGE_PERIOD_MS: u64 = 2_000;
