//! Tasks: what to run (a WASM module or an OCI image), with what resources and limits,
//! and the status updates that report on it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, FrameworkId, ModuleHash, StatusUuid, TaskId};
use crate::resources::Resources;

/// A task as a framework launches it and an agent runs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub task_id: TaskId,
    pub name: String,
    /// Resources the task consumes; the executor derives its cpu and memory limits from them.
    pub resources: Resources,
    pub kind: TaskKind,
    pub limits: TaskLimits,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Wasm(WasmTask),
    Oci(OciTask),
}

/// A WASI p1 command module or a WASI p2 component, told apart by the agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WasmTask {
    pub module: ModuleRef,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Host directories granted to the task besides its own sandbox directory.
    pub dirs: Vec<DirGrant>,
    /// Network access (WASI sockets); denied unless granted.
    pub net: bool,
}

/// A content-addressed module, fetched by hash from the master's module store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModuleRef {
    pub sha256: ModuleHash,
    pub size_bytes: u64,
    /// A name for people (the file it came from); never used to find the module.
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirGrant {
    pub host: String,
    pub guest: String,
    pub read_only: bool,
}

/// A directory grant that is not `HOST::GUEST[:ro|:rw]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DirGrantError {
    #[error("directory grant {0:?} is not HOST::GUEST[:ro|:rw]")]
    Form(String),
    #[error("directory grant {0:?} has an empty side")]
    EmptySide(String),
}

impl DirGrant {
    /// Parses the command-line form `HOST::GUEST[:ro|:rw]` (read-only unless `:rw`).
    pub fn parse(s: &str) -> Result<DirGrant, DirGrantError> {
        let (host, rest) = s
            .split_once("::")
            .ok_or_else(|| DirGrantError::Form(s.to_owned()))?;
        let (guest, read_only) = match rest.rsplit_once(':') {
            Some((g, "ro")) => (g, true),
            Some((g, "rw")) => (g, false),
            _ => (rest, true),
        };
        if host.is_empty() || guest.is_empty() {
            return Err(DirGrantError::EmptySide(s.to_owned()));
        }
        Ok(DirGrant {
            host: host.to_owned(),
            guest: guest.to_owned(),
            read_only,
        })
    }
}

/// An OCI image from an image layout (a directory or a `.tar` of one).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OciTask {
    /// Path of the image layout on the agent.
    pub image: String,
    /// Overrides the image's entrypoint and cmd when not empty.
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub host_network: bool,
    /// Linux capabilities granted (`CAP_NET_BIND_SERVICE`); all others are dropped.
    pub capabilities: Vec<String>,
}

/// Limits beyond the task's resources.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLimits {
    /// Wall-clock limit; `None` runs until the task ends or is killed.
    pub timeout_ms: Option<u64>,
    /// Most bytes of stdout and of stderr kept; the rest is counted and dropped.
    pub output_bytes_max: u64,
}

impl Default for TaskLimits {
    fn default() -> TaskLimits {
        TaskLimits {
            timeout_ms: None,
            output_bytes_max: OUTPUT_BYTES_MAX_DEFAULT,
        }
    }
}

pub const OUTPUT_BYTES_MAX_DEFAULT: u64 = 1 << 20;

/// `Staging → Starting → Running → {Finished, Failed, Killed, Lost, Error}`.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Staging,
    Starting,
    Running,
    Finished,
    Failed,
    Killed,
    Lost,
    Error,
    /// Not launched yet: its framework holds it until an offer fits (the operator's
    /// listings show the jobs framework's copies so; no agent ever reports it). Last, so
    /// that the others keep their wire numbers.
    Pending,
}

impl TaskState {
    /// Every state, in the order of the life of a task: the one list of them.
    pub const ALL: [TaskState; 9] = [
        TaskState::Pending,
        TaskState::Staging,
        TaskState::Starting,
        TaskState::Running,
        TaskState::Finished,
        TaskState::Failed,
        TaskState::Killed,
        TaskState::Lost,
        TaskState::Error,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Finished
                | TaskState::Failed
                | TaskState::Killed
                | TaskState::Lost
                | TaskState::Error
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Staging => "staging",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Finished => "finished",
            TaskState::Failed => "failed",
            TaskState::Killed => "killed",
            TaskState::Lost => "lost",
            TaskState::Error => "error",
            TaskState::Pending => "pending",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// One report on a task. Delivered at least once: the agent resends it until the
/// framework acknowledges `uuid` through the master.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub task_id: TaskId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub state: TaskState,
    pub exit_code: Option<i32>,
    /// Why the task is in this state, for people ("memory limit of 64 MiB reached").
    pub reason: String,
    pub uuid: StatusUuid,
    /// Agent's wall clock, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}
