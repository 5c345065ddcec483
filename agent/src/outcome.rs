//! How a task ended, the same for every executor.

use proto::TaskState;
use serde::Serialize;

/// Bytes of stdout kept in [`TaskOutcome::stdout_tail`].
pub const STDOUT_TAIL_BYTES: usize = 4096;

/// The final status of one task run.
///
/// Serialized as the `wasmos task run` contract:
/// `{"state":"finished|failed|killed","exit_code":N_or_null,"reason":"...","stdout_tail":"..."}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskOutcome {
    pub state: TaskState,
    pub exit_code: Option<i32>,
    /// Why the task ended, for people: "exited with code 3", "memory limit of 64 MiB reached".
    pub reason: String,
    /// The last [`STDOUT_TAIL_BYTES`] of stdout (lossy UTF-8).
    pub stdout_tail: String,
}

impl TaskOutcome {
    /// The last `STDOUT_TAIL_BYTES` of `stdout`, cut on a character boundary.
    pub fn tail_of(stdout: &[u8]) -> String {
        let start = stdout.len().saturating_sub(STDOUT_TAIL_BYTES);
        let text = String::from_utf8_lossy(&stdout[start..]);
        text.trim_start_matches('\u{fffd}').to_owned()
    }
}
