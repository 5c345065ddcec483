//! What the master core does not keep but operators want to see: counters, a bounded log
//! of offers and decisions, and the history of dominant shares. The rows of agents,
//! frameworks, tasks and offers are the core's own (`master::view`); the recorder only
//! adds to them. The master daemon feeds a [`Recorder`] what it feeds and drains from
//! [`master::Master`], and asks it for a [`ClusterState`] to publish.
//!
//! Sans-IO: no clock is read here; wall-clock times come in as `now_ms` arguments.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use master::view::WallClock;
use master::{Action, CallError, Master, Millis};
use proto::{
    Call, CallReply, Event, FrameworkCall, FrameworkId, Offer, OfferId, StatusUuid, TaskStatus,
};

use crate::state::{ClusterState, Counters, LogEntry, LogKind, ShareSample};

/// Entries kept in the decision log; the oldest are dropped first.
pub const LOG_ENTRIES_MAX: usize = 200;
/// Dominant-share samples kept (one per snapshot); the oldest are dropped first.
pub const SHARE_SAMPLES_MAX: usize = 120;
/// Status uuids remembered to tell a resent update from a new one; an update resent after
/// this many newer ones is not counted as a retry.
pub const STATUS_UUIDS_KEPT_MAX: usize = 4096;

#[derive(Debug, Default)]
pub struct Recorder {
    counters: Counters,
    log: VecDeque<LogEntry>,
    shares: VecDeque<ShareSample>,
    /// Uuids of recent status updates, oldest first, and the same as a set: what tells
    /// an agent's retry (counted) from a new update (logged).
    status_uuids: VecDeque<StatusUuid>,
    status_uuids_seen: HashSet<StatusUuid>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// Every action drained from [`Master::poll_action`], in order.
    pub fn observe_action(&mut self, now_ms: u64, action: &Action) {
        match action {
            Action::SendEvent {
                framework_id,
                event: Event::Offers { offers },
            } => self.offered(now_ms, framework_id, offers),
            Action::SendEvent {
                framework_id,
                event: Event::Rescind { offer_id },
            } => self.rescinded(now_ms, framework_id, offer_id),
            Action::SendEvent { .. } | Action::AckStatus { .. } => {}
            Action::LaunchTask {
                agent_id,
                framework_id,
                task,
            } => self.push_log(
                entry(
                    now_ms,
                    LogKind::Launch,
                    format!("launch {} ({}) on {agent_id}", task.task_id, task.resources),
                )
                .framework(framework_id.as_str())
                .agent(agent_id.as_str())
                .task(task.task_id.as_str()),
            ),
            Action::KillTask {
                agent_id, task_id, ..
            } => self.push_log(
                entry(
                    now_ms,
                    LogKind::Kill,
                    format!("kill {task_id} on {agent_id}"),
                )
                .agent(agent_id.as_str())
                .task(task_id.as_str()),
            ),
            Action::ReclaimNotice {
                framework_id,
                task_id,
                agent_id,
                kill_at,
            } => self.push_log(
                entry(
                    now_ms,
                    LogKind::Reclaim,
                    format!("reclaim {task_id}: kill at master time {} ms", kill_at.0),
                )
                .framework(framework_id.as_str())
                .agent(agent_id.as_str())
                .task(task_id.as_str()),
            ),
        }
    }

    fn offered(&mut self, now_ms: u64, framework_id: &FrameworkId, offers: &[Offer]) {
        self.counters.offers_sent += offers.len() as u64;
        for offer in offers {
            let message = format!(
                "offered {} of {} to {framework_id}",
                offer.resources, offer.hostname
            );
            self.push_log(
                entry(now_ms, LogKind::Offer, message)
                    .framework(framework_id.as_str())
                    .agent(offer.agent_id.as_str()),
            );
        }
    }

    fn rescinded(&mut self, now_ms: u64, framework_id: &FrameworkId, offer_id: &OfferId) {
        self.counters.offers_rescinded += 1;
        self.push_log(
            entry(now_ms, LogKind::Rescind, format!("rescinded {offer_id}"))
                .framework(framework_id.as_str()),
        );
    }

    /// Every framework call handed to [`Master::handle_call`], with its result.
    pub fn observe_call(
        &mut self,
        now_ms: u64,
        call: &FrameworkCall,
        result: &Result<CallReply, CallError>,
    ) {
        let framework = call.framework_id.as_ref().map(|f| f.to_string());
        if let Err(e) = result {
            let mut e = entry(now_ms, LogKind::CallRefused, format!("call refused: {e}"));
            e.framework_id = framework;
            self.push_log(e);
            return;
        }
        let (kind, offers, what) = match &call.call {
            Call::Accept {
                offer_ids,
                operations,
                ..
            } => {
                let tasks: usize = operations
                    .iter()
                    .map(|proto::Operation::Launch { tasks }| tasks.len())
                    .sum();
                (LogKind::Accept, offer_ids, format!("with {tasks} task(s)"))
            }
            Call::Decline { offer_ids, filters } => (
                LogKind::Decline,
                offer_ids,
                format!("for {} s", filters.refuse_seconds),
            ),
            _ => return,
        };
        match kind {
            LogKind::Accept => self.counters.offers_accepted += offers.len() as u64,
            _ => self.counters.offers_declined += offers.len() as u64,
        }
        let ids: Vec<&str> = offers.iter().map(|o| o.as_str()).collect();
        let verb = if kind == LogKind::Accept {
            "accepted"
        } else {
            "declined"
        };
        let mut e = entry(now_ms, kind, format!("{verb} {} {what}", ids.join(", ")));
        e.framework_id = framework;
        self.push_log(e);
    }

    /// A hosted scheduler module failed a call (trap, budget, memory, garbage).
    pub fn observe_scheduler_fault(&mut self, now_ms: u64, framework_id: &str, message: &str) {
        self.push_log(
            entry(now_ms, LogKind::SchedulerFault, message.to_owned()).framework(framework_id),
        );
    }

    /// Every status update handed to [`Master::handle_status`]. One whose uuid came
    /// before is an agent's retry (its acknowledgement did not come in time): counted, and
    /// otherwise ignored; a new one is logged.
    pub fn observe_status(&mut self, now_ms: u64, status: &TaskStatus) {
        if !self.status_uuids_seen.insert(status.uuid) {
            self.counters.status_update_retries += 1;
            return;
        }
        self.status_uuids.push_back(status.uuid);
        while self.status_uuids.len() > STATUS_UUIDS_KEPT_MAX {
            if let Some(old) = self.status_uuids.pop_front() {
                self.status_uuids_seen.remove(&old);
            }
        }
        let mut message = format!("{} is {}", status.task_id, status.state.as_str());
        if let Some(code) = status.exit_code {
            message.push_str(&format!(" (exit {code})"));
        }
        if !status.reason.is_empty() {
            message.push_str(&format!(": {}", status.reason));
        }
        self.push_log(
            entry(now_ms, LogKind::Status, message)
                .agent(status.agent_id.as_str())
                .task(status.task_id.as_str()),
        );
    }

    /// How long one allocation pass took (the daemon times `Master::handle_timeout`).
    pub fn observe_allocation_pass(&mut self, took: Duration) {
        self.counters
            .allocation_pass_seconds
            .observe(took.as_secs_f64());
    }

    /// The transport's decode-error counters, by key; replaces what was set before.
    pub fn set_decode_errors(&mut self, by_key: BTreeMap<String, u64>) {
        self.counters.decode_errors = by_key;
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The cluster as of now: the core's rows, with `now_ms` on the wall clock being
    /// `master_now` on the master's, and this recorder's log and counters. Also samples
    /// dominant shares for the history.
    pub fn snapshot(&mut self, master: &Master, now_ms: u64, master_now: Millis) -> ClusterState {
        let frameworks = master.frameworks_view();
        self.shares.push_back(ShareSample {
            at_ms: now_ms,
            shares: frameworks
                .iter()
                .map(|f| (f.framework_id.to_string(), f.dominant_share))
                .collect(),
        });
        truncate_front(&mut self.shares, SHARE_SAMPLES_MAX);
        let clock = WallClock {
            wall_ms: now_ms,
            master_now,
        };
        ClusterState {
            generated_at_ms: now_ms,
            agents: master.agent_rows(),
            frameworks,
            tasks: master.task_rows(clock),
            offers: master.offers_view(),
            log: self.log.iter().cloned().collect(),
            share_history: self.shares.iter().cloned().collect(),
            counters: self.counters.clone(),
        }
    }

    fn push_log(&mut self, e: LogEntry) {
        self.log.push_back(e);
        truncate_front(&mut self.log, LOG_ENTRIES_MAX);
    }
}

fn truncate_front<T>(queue: &mut VecDeque<T>, max: usize) {
    while queue.len() > max {
        queue.pop_front();
    }
}

fn entry(at_ms: u64, kind: LogKind, message: String) -> LogEntry {
    LogEntry {
        at_ms,
        kind,
        framework_id: None,
        agent_id: None,
        task_id: None,
        message,
    }
}

/// Fills in what a log entry is about.
trait About {
    fn framework(self, id: &str) -> Self;
    fn agent(self, id: &str) -> Self;
    fn task(self, id: &str) -> Self;
}

impl About for LogEntry {
    fn framework(mut self, id: &str) -> LogEntry {
        self.framework_id = Some(id.to_owned());
        self
    }

    fn agent(mut self, id: &str) -> LogEntry {
        self.agent_id = Some(id.to_owned());
        self
    }

    fn task(mut self, id: &str) -> LogEntry {
        self.task_id = Some(id.to_owned());
        self
    }
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use proto::{AgentId, TaskId, TaskState};

    use super::*;

    #[test]
    fn an_update_seen_again_counts_as_one_retry_per_resend() {
        let mut recorder = Recorder::new();
        let status = TaskStatus {
            task_id: TaskId::new("t"),
            framework_id: FrameworkId::new("f"),
            agent_id: AgentId::new("a"),
            state: TaskState::Finished,
            exit_code: Some(0),
            reason: String::new(),
            uuid: StatusUuid(1),
            timestamp_ms: 0,
        };
        for now_ms in 0..3 {
            recorder.observe_status(now_ms, &status);
        }
        assert_eq!(recorder.counters().status_update_retries, 2);
        let next = TaskStatus {
            uuid: StatusUuid(2),
            ..status
        };
        recorder.observe_status(3, &next);
        assert_eq!(recorder.counters().status_update_retries, 2);
    }
}
