//! The snapshot of the cluster that the API, `/metrics` and the dashboard serve: one
//! serializable value, published by the master daemon. Its rows are the master core's
//! (`proto::operator`, built by `master::view`); the decision log, the share and usage
//! histories and the counters are the [`crate::Recorder`]'s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use proto::operator::{
    AgentRow, AgentState, FrameworkRow, LogEntry, LogKind, OfferRow, TaskRow,
};

/// Everything the operator API serves, as of `generated_at_ms`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterState {
    /// Wall clock of the master when the snapshot was taken, ms since the Unix epoch.
    pub generated_at_ms: u64,
    /// The master's own clock at `generated_at_ms`, ms since the master started: the clock
    /// of the offers' `made_at_ms` and `expires_at_ms`.
    pub master_now_ms: u64,
    /// Active agents, then recently lost ones.
    pub agents: Vec<AgentRow>,
    pub frameworks: Vec<FrameworkRow>,
    /// Live tasks, then recently ended ones (newest first, at most
    /// `master::view::ENDED_TASKS_LISTED_MAX`).
    pub tasks: Vec<TaskRow>,
    /// Outstanding offers.
    pub offers: Vec<OfferRow>,
    /// Recent offers and decisions, oldest first (at most [`crate::recorder::LOG_ENTRIES_MAX`]).
    pub log: Vec<LogEntry>,
    /// Each framework's dominant share of what its tasks use (what is offered to it does
    /// not count), one sample per [`crate::recorder::HISTORY_PERIOD_MS`], oldest first,
    /// the last one as of this snapshot (at most [`crate::recorder::HISTORY_SAMPLES_MAX`]).
    pub share_history: Vec<ShareSample>,
    /// Each agent's resources in use over time, by agent id, sampled as `share_history`
    /// is (at most [`crate::recorder::AGENT_HISTORIES_MAX`] agents).
    pub agent_usage: BTreeMap<String, UsageHistory>,
    pub counters: Counters,
}

/// One task with what it wrote, for `GET /api/v1/tasks/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub task: TaskRow,
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

/// Most bytes of each stream in a task's log tail; older bytes are counted as dropped.
pub const LOG_TAIL_BYTES_MAX: usize = 64 * 1024;

impl LogTail {
    /// The last [`LOG_TAIL_BYTES_MAX`] of each stream of what the agent kept, decoded
    /// lossily; `dropped_bytes` is what the agent did not keep.
    pub fn of_output(stdout: &[u8], stderr: &[u8], dropped_bytes: u64) -> LogTail {
        let mut dropped = dropped_bytes;
        let mut tail = |bytes: &[u8]| {
            let cut = bytes.len().saturating_sub(LOG_TAIL_BYTES_MAX);
            dropped += cut as u64;
            String::from_utf8_lossy(&bytes[cut..]).into_owned()
        };
        let (stdout, stderr) = (tail(stdout), tail(stderr));
        LogTail {
            stdout,
            stderr,
            dropped_bytes: dropped,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShareSample {
    /// Wall clock, ms since the Unix epoch.
    pub at_ms: u64,
    /// Framework id to its dominant share (0 to 1) of what its tasks use.
    pub shares: BTreeMap<String, f64>,
}

/// One agent's resources in use over time, column by column.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageHistory {
    /// Wall clock of each sample, ms since the Unix epoch, oldest first.
    pub at_ms: Vec<u64>,
    /// Resource kind to the fraction (0 to 1, in thousandths) of the agent's total of it
    /// in use at each sample of `at_ms`, as many; a kind the agent lacked at a sample is 0
    /// there. Ranges and sets count their items.
    pub used: BTreeMap<String, Vec<f64>>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_the_end_of_each_stream_and_counts_the_rest() {
        let long = vec![b'a'; LOG_TAIL_BYTES_MAX + 10];
        let tail = LogTail::of_output(&long, b"err\xff", 5);
        assert_eq!(tail.stdout.len(), LOG_TAIL_BYTES_MAX);
        assert_eq!(tail.stderr, "err\u{fffd}");
        assert_eq!(tail.dropped_bytes, 15);
    }
}
