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
    /// What the agent and the master do with the task while they cannot reach each
    /// other; `None`: nothing (the task is lost with its agent, never restarted by it).
    pub disconnect: Option<Box<DisconnectPolicy>>,
    /// A task of the same framework this one replaces while that one is `unreachable`:
    /// if it comes back, its [`DisconnectPolicy::on_reconnect`] says which one stays.
    pub replaces: Option<TaskId>,
}

/// What happens to a task while its agent and the master cannot reach each other: the
/// agent restarts it in place (same task id) when it ends, or when it died with the agent
/// process, while no master is reachable; the master reports it `unreachable` rather than
/// `lost` for `lost_after_ms` once it loses the agent. Rules: `master/README.md`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisconnectPolicy {
    /// Which ends the agent restarts while offline (`Never`: none).
    pub restart: RestartPolicy,
    pub backoff: Backoff,
    /// How long after the master lost the agent the task stays `unreachable` (it may be
    /// replaced meanwhile) before it is `lost`; `None`: lost with the agent.
    pub lost_after_ms: Option<u64>,
    pub on_reconnect: OnReconnect,
}

/// Longest `DisconnectPolicy::lost_after_ms`: a week.
pub const LOST_AFTER_MS_MAX: u64 = 7 * 24 * 3_600_000;

/// The `reason` of a `failed` update an agent sends for a task that died with the agent's
/// process: not the task's fault, nor a sign the agent cannot run it, so a scheduler need
/// not hold it against either (the jobs framework does not count it toward quarantine).
pub const AGENT_RESTARTED: &str = "agent restarted";
/// The `reason` of a `killed` update for a task its agent killed because the agent
/// stopped (SIGTERM: an upgrade, a reboot): neither the task's end nor anyone's request,
/// so a scheduler may start it again (the jobs framework does, by the job's policy, as
/// for a `lost` task).
pub const AGENT_STOPPED: &str = "agent stopped";
/// How an agent's refusal of a launch ends when it refuses because it is shutting down:
/// the master then offers it nothing more, and tells the task `lost` with
/// [`AGENT_STOPPED`], not `failed`, so that its framework neither counts a failure nor
/// launches there again.
pub const AGENT_SHUTTING_DOWN: &str = "is shutting down";
/// Shortest first wait of a restart in place, and most starts: an agent restarting a
/// crashing task in place journals every start.
pub const RESTART_BACKOFF_MIN_MS: u64 = 100;
pub const RESTART_STARTS_MAX: u32 = 1_000;

/// Why a [`DisconnectPolicy`] is refused (by the master at `Accept`, and by agents).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DisconnectPolicyError {
    #[error("lost_after_ms must be at most {LOST_AFTER_MS_MAX} (a week), got {0}")]
    LostAfter(u64),
    #[error(
        "restart backoff must start at {RESTART_BACKOFF_MIN_MS} ms or more, at most its max_ms, \
         with at most {RESTART_STARTS_MAX} starts"
    )]
    Backoff,
}

impl DisconnectPolicy {
    /// Refuses waits and counts that would keep a task unreachable for ever or restart it
    /// in a tight loop.
    pub fn check(&self) -> Result<(), DisconnectPolicyError> {
        if let Some(ms) = self.lost_after_ms.filter(|ms| *ms > LOST_AFTER_MS_MAX) {
            return Err(DisconnectPolicyError::LostAfter(ms));
        }
        let b = &self.backoff;
        if b.initial_ms < RESTART_BACKOFF_MIN_MS
            || b.max_ms < b.initial_ms
            || b.starts_max > RESTART_STARTS_MAX
        {
            return Err(DisconnectPolicyError::Backoff);
        }
        Ok(())
    }
}

/// What ends of a task start it again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    #[default]
    Never,
    /// Every end but `finished` and `killed`. `on_failure` in JSON; the CLI's spelling
    /// (`on-failure`, as in deploy files) is taken too.
    #[serde(alias = "on-failure")]
    OnFailure,
    /// Every end but `killed`.
    Always,
}

impl RestartPolicy {
    /// Whether a task that ended in `state` is started again. A killed task never is:
    /// someone (an operator, `wasmos kill`, reclaim) wanted it stopped.
    pub fn restarts(self, state: TaskState) -> bool {
        match (self, state) {
            (_, TaskState::Killed) | (RestartPolicy::Never, _) => false,
            (RestartPolicy::OnFailure, TaskState::Finished) => false,
            (RestartPolicy::OnFailure | RestartPolicy::Always, _) => true,
        }
    }
}

/// Which copy stays when an `unreachable` task comes back (its agent re-registers within
/// its `lost_after_ms`) and a replacement of it runs: the other is killed, so no duplicate
/// outlives the reconciliation (Nomad's `disconnect.reconcile`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnReconnect {
    /// `keep_original` in JSON, as `restart`'s `on_failure`; the CLI's spelling is taken
    /// too.
    #[default]
    #[serde(alias = "keep-original")]
    KeepOriginal,
    #[serde(alias = "keep-replacement")]
    KeepReplacement,
}

impl OnReconnect {
    pub fn as_str(self) -> &'static str {
        match self {
            OnReconnect::KeepOriginal => "keep-original",
            OnReconnect::KeepReplacement => "keep-replacement",
        }
    }
}

/// Default of [`Backoff::initial_ms`].
pub const RESTART_BACKOFF_INITIAL_MS_DEFAULT: u64 = 1_000;
/// Default of [`Backoff::max_ms`].
pub const RESTART_BACKOFF_MAX_MS_DEFAULT: u64 = 60_000;
/// Default of [`Backoff::starts_max`].
pub const RESTART_STARTS_MAX_DEFAULT: u32 = 10;

/// Restart timing of one copy of a task: exponential backoff, bounded starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Wait before the first restart; each further restart waits twice as long.
    pub initial_ms: u64,
    /// The longest wait.
    pub max_ms: u64,
    /// Tasks one copy may start, the first included; once they are used up the copy ends
    /// in the state of its last task.
    pub starts_max: u32,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            initial_ms: RESTART_BACKOFF_INITIAL_MS_DEFAULT,
            max_ms: RESTART_BACKOFF_MAX_MS_DEFAULT,
            starts_max: RESTART_STARTS_MAX_DEFAULT,
        }
    }
}

impl Backoff {
    /// The wait before the next start of a copy that has started `starts` tasks, or `None`
    /// when it may start no more.
    pub fn delay_ms(&self, starts: u32) -> Option<u64> {
        if starts >= self.starts_max {
            return None;
        }
        let doublings = starts.saturating_sub(1).min(63);
        let delay = self.initial_ms.saturating_mul(1u64 << doublings);
        Some(delay.min(self.max_ms))
    }
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
    /// A guest path may not hold `:`: what follows the last one is the access mode.
    #[error("directory grant {given:?}: access mode {mode:?} is neither ro nor rw")]
    Mode { given: String, mode: String },
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
            Some((_, mode)) => {
                return Err(DirGrantError::Mode {
                    given: s.to_owned(),
                    mode: mode.to_owned(),
                });
            }
            None => (rest, true),
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

/// `Staging → Starting → Running → {Finished, Failed, Killed, Lost, Error}`; `Running ⇄
/// Unreachable` while its agent is lost (`DisconnectPolicy::lost_after_ms`).
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
    /// Its agent was lost while the task had a `lost_after_ms`: it may still run there
    /// and may come back (then `running` again) until that time is up (then `lost`).
    Unreachable,
}

impl TaskState {
    /// Every state, in the order of the life of a task: the one list of them.
    pub const ALL: [TaskState; 10] = [
        TaskState::Pending,
        TaskState::Staging,
        TaskState::Starting,
        TaskState::Running,
        TaskState::Unreachable,
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
            TaskState::Unreachable => "unreachable",
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

/// A [`TaskStatus`] without its ids, for a holder that keeps them already (the master's
/// task record, the agent's held task): a fleet holds one per task, and the ids again were
/// a sixth of each. Not on the wire: [`StatusBody::with_ids`] makes the status again.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusBody {
    pub state: TaskState,
    pub exit_code: Option<i32>,
    pub reason: String,
    pub uuid: StatusUuid,
    pub timestamp_ms: u64,
}

impl StatusBody {
    pub fn of(status: TaskStatus) -> StatusBody {
        StatusBody {
            state: status.state,
            exit_code: status.exit_code,
            reason: status.reason,
            uuid: status.uuid,
            timestamp_ms: status.timestamp_ms,
        }
    }

    pub fn with_ids(
        &self,
        task_id: &TaskId,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
    ) -> TaskStatus {
        TaskStatus {
            task_id: task_id.clone(),
            framework_id: framework_id.clone(),
            agent_id: agent_id.clone(),
            state: self.state,
            exit_code: self.exit_code,
            reason: self.reason.clone(),
            uuid: self.uuid,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_grants_take_ro_or_rw_and_nothing_else_after_the_guest_path() {
        let grant = |s| DirGrant::parse(s).map(|g| (g.host, g.guest, g.read_only));
        assert_eq!(grant("/h::/g"), Ok(("/h".into(), "/g".into(), true)));
        assert_eq!(grant("/h::/g:ro"), Ok(("/h".into(), "/g".into(), true)));
        assert_eq!(grant("/h::/g:rw"), Ok(("/h".into(), "/g".into(), false)));
        for bad in ["/h::/g:bogus", "/h::/g:RW", "/h::/g:"] {
            assert!(
                matches!(DirGrant::parse(bad), Err(DirGrantError::Mode { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            DirGrant::parse("/h:/g"),
            Err(DirGrantError::Form(_))
        ));
        assert!(matches!(
            DirGrant::parse("::/g"),
            Err(DirGrantError::EmptySide(_))
        ));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_stops_after_the_last_start() {
        let b = Backoff {
            initial_ms: 100,
            max_ms: 500,
            starts_max: 5,
        };
        let delays: Vec<_> = (1..=5).map(|s| b.delay_ms(s)).collect();
        assert_eq!(delays, [Some(100), Some(200), Some(400), Some(500), None]);
    }

    #[test]
    fn huge_start_counts_do_not_overflow() {
        let b = Backoff {
            starts_max: u32::MAX,
            ..Backoff::default()
        };
        assert_eq!(b.delay_ms(u32::MAX - 1), Some(b.max_ms));
    }

    #[test]
    fn killed_is_never_restarted_and_on_failure_spares_finished() {
        for policy in [
            RestartPolicy::Never,
            RestartPolicy::OnFailure,
            RestartPolicy::Always,
        ] {
            assert!(!policy.restarts(TaskState::Killed));
        }
        assert!(!RestartPolicy::OnFailure.restarts(TaskState::Finished));
        assert!(RestartPolicy::OnFailure.restarts(TaskState::Failed));
        assert!(RestartPolicy::Always.restarts(TaskState::Finished));
        assert!(!RestartPolicy::Never.restarts(TaskState::Failed));
    }
}
