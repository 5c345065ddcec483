//! What the master core does not keep but operators want to see: counters, a bounded log
//! of offers and decisions, recently ended tasks, agents that were lost, and the history of
//! dominant shares. The master daemon feeds a [`Recorder`] what it feeds and drains from
//! [`master::Master`], and asks it for a [`ClusterState`] to publish.
//!
//! Sans-IO: no clock is read here; wall-clock times come in as `now_ms` arguments.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use master::{Action, CallError, Master, Millis};
use proto::{
    AgentId, Call, CallReply, Event, FrameworkCall, Resources, StatusUuid, TaskId, TaskStatus,
    TaskUsageReport,
};

use crate::state::{
    AgentInfo, AgentState, ClusterState, Counters, FrameworkInfo, LogEntry, LogKind, OfferInfo,
    ShareSample, TaskInfo,
};

/// Entries kept in the decision log; the oldest are dropped first.
pub const LOG_ENTRIES_MAX: usize = 200;
/// A row for a task whose launch this recorder did not see; its name, resources and
/// launch time are not in a status update.
fn ended_from_status(status: &TaskStatus) -> TaskInfo {
    TaskInfo {
        task_id: status.task_id.clone(),
        framework_id: status.framework_id.clone(),
        agent_id: status.agent_id.clone(),
        name: String::new(),
        resources: Resources::new(),
        state: status.state,
        exit_code: status.exit_code,
        reason: status.reason.clone(),
        launched_at_ms: 0,
        reclaim_at_ms: None,
        cpu_seconds: None,
        memory_bytes: None,
    }
}

/// Ended tasks kept for display; the ones that ended first are dropped first.
pub const ENDED_TASKS_KEPT_MAX: usize = 200;
/// Lost agents kept for display; the ones lost first are dropped first.
pub const LOST_AGENTS_KEPT_MAX: usize = 64;
/// Dominant-share samples kept (one per snapshot); the oldest are dropped first.
pub const SHARE_SAMPLES_MAX: usize = 120;
/// Tasks whose latest usage report is kept; reports for more are dropped until the next
/// snapshot forgets the tasks it no longer shows.
pub const TASK_USAGE_KEPT_MAX: usize = 4096;
/// Status uuids remembered to tell a resent update from a new one; an update resent after
/// this many newer ones is not counted as a retry.
pub const STATUS_UUIDS_KEPT_MAX: usize = 4096;

#[derive(Debug, Default)]
pub struct Recorder {
    counters: Counters,
    log: VecDeque<LogEntry>,
    /// Tasks launched or reported and not yet seen ended, as last known.
    tasks: BTreeMap<TaskId, TaskInfo>,
    /// Ended tasks, the most recently ended last.
    ended: VecDeque<TaskInfo>,
    /// Agents seen at the last snapshot, to tell which were lost since.
    agents_seen: BTreeMap<AgentId, AgentInfo>,
    lost: VecDeque<AgentInfo>,
    shares: VecDeque<ShareSample>,
    /// Uuids of recent status updates, oldest first, and the same as a set.
    status_uuids: VecDeque<StatusUuid>,
    status_uuids_seen: HashSet<StatusUuid>,
    /// The latest usage report of each task: cpu seconds and memory bytes.
    usage: BTreeMap<TaskId, (f64, u64)>,
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
                event,
            } => match event {
                Event::Offers { offers } => {
                    self.counters.offers_sent += offers.len() as u64;
                    for offer in offers {
                        self.push_log(LogEntry {
                            at_ms: now_ms,
                            kind: LogKind::Offer,
                            framework_id: Some(framework_id.to_string()),
                            agent_id: Some(offer.agent_id.to_string()),
                            task_id: None,
                            message: format!(
                                "offered {} of {} to {framework_id}",
                                offer.resources, offer.hostname
                            ),
                        });
                    }
                }
                Event::Rescind { offer_id } => {
                    self.counters.offers_rescinded += 1;
                    self.push_log(
                        entry(now_ms, LogKind::Rescind, format!("rescinded {offer_id}"))
                            .framework(framework_id.as_str()),
                    );
                }
                _ => {}
            },
            Action::LaunchTask {
                agent_id,
                framework_id,
                task,
            } => {
                let info = TaskInfo {
                    task_id: task.task_id.clone(),
                    framework_id: framework_id.clone(),
                    agent_id: agent_id.clone(),
                    name: task.name.clone(),
                    resources: task.resources.clone(),
                    state: proto::TaskState::Staging,
                    exit_code: None,
                    reason: String::new(),
                    launched_at_ms: now_ms,
                    reclaim_at_ms: None,
                    cpu_seconds: None,
                    memory_bytes: None,
                };
                self.tasks.insert(task.task_id.clone(), info);
                self.push_log(
                    entry(
                        now_ms,
                        LogKind::Launch,
                        format!("launch {} ({}) on {agent_id}", task.task_id, task.resources),
                    )
                    .framework(framework_id.as_str())
                    .agent(agent_id.as_str())
                    .task(task.task_id.as_str()),
                );
            }
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
            Action::AckStatus { .. } => {}
        }
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

    /// Every status update handed to [`Master::handle_status`]. One whose uuid came
    /// before is an agent's retry (its acknowledgement did not come in time): counted, and
    /// otherwise ignored.
    /// A hosted scheduler module failed a call (trap, budget, memory, garbage).
    pub fn observe_scheduler_fault(&mut self, now_ms: u64, framework_id: &str, message: &str) {
        self.push_log(
            entry(now_ms, LogKind::SchedulerFault, message.to_owned()).framework(framework_id),
        );
    }

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
        let Some(task) = self.tasks.get_mut(&status.task_id) else {
            // A task launched before this master started (rebuilt from an advert) that
            // ends now: listed from its status, since its launch was never seen here.
            if status.state.is_terminal() {
                self.ended.push_back(ended_from_status(status));
                truncate_front(&mut self.ended, ENDED_TASKS_KEPT_MAX);
            }
            return;
        };
        if task.state == status.state {
            return; // a resent update: logged once
        }
        task.state = status.state;
        task.exit_code = status.exit_code;
        task.reason = status.reason.clone();
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
        if status.state.is_terminal()
            && let Some(ended) = self.tasks.remove(&status.task_id)
        {
            self.ended.push_back(ended);
            truncate_front(&mut self.ended, ENDED_TASKS_KEPT_MAX);
        }
    }

    /// A task's usage as its agent reported it (`agents/<id>/metrics`).
    pub fn observe_task_usage(&mut self, report: &TaskUsageReport) {
        if self.usage.len() >= TASK_USAGE_KEPT_MAX && !self.usage.contains_key(&report.task_id) {
            return;
        }
        let measured = (report.cpu_seconds, report.memory_bytes);
        self.usage.insert(report.task_id.clone(), measured);
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

    /// The cluster as of now: `now_ms` on the wall clock, `master_now` on the master's
    /// (to turn the master's times into wall-clock ones). Also samples dominant shares for
    /// the history and notes agents that disappeared since the last snapshot as lost.
    pub fn snapshot(&mut self, master: &Master, now_ms: u64, master_now: Millis) -> ClusterState {
        let agents = self.agents(master);
        let frameworks: Vec<FrameworkInfo> = master
            .frameworks_view()
            .into_iter()
            .map(framework_info)
            .collect();
        self.shares.push_back(ShareSample {
            at_ms: now_ms,
            shares: frameworks
                .iter()
                .map(|f| (f.framework_id.to_string(), f.dominant_share))
                .collect(),
        });
        truncate_front(&mut self.shares, SHARE_SAMPLES_MAX);
        ClusterState {
            generated_at_ms: now_ms,
            agents,
            frameworks,
            tasks: {
                let tasks = self.tasks(master, now_ms, master_now);
                let shown: HashSet<&TaskId> = tasks.iter().map(|t| &t.task_id).collect();
                self.usage.retain(|id, _| shown.contains(id));
                tasks
            },
            offers: master.offers_view().into_iter().map(offer_info).collect(),
            log: self.log.iter().cloned().collect(),
            share_history: self.shares.iter().cloned().collect(),
            counters: self.counters.clone(),
        }
    }

    fn agents(&mut self, master: &Master) -> Vec<AgentInfo> {
        let active: BTreeMap<AgentId, AgentInfo> = master
            .agents_view()
            .into_iter()
            .map(|a| {
                let info = AgentInfo {
                    agent_id: a.agent_id.clone(),
                    hostname: a.hostname,
                    state: AgentState::Active,
                    attributes: a.attributes,
                    total: a.total,
                    free: a.free,
                    offered: a.offered,
                    used: a.used,
                    tasks: a.tasks,
                };
                (a.agent_id, info)
            })
            .collect();
        let seen = std::mem::replace(&mut self.agents_seen, active.clone());
        for (id, mut gone) in seen {
            if !active.contains_key(&id) {
                gone.state = AgentState::Lost;
                self.lost.retain(|l| l.agent_id != id);
                self.lost.push_back(gone);
            }
        }
        self.lost.retain(|l| !active.contains_key(&l.agent_id));
        truncate_front(&mut self.lost, LOST_AGENTS_KEPT_MAX);
        active
            .into_values()
            .chain(self.lost.iter().cloned())
            .collect()
    }

    /// Live tasks as the master knows them (authoritative), completed with what the
    /// status updates said, then ended ones, most recently ended first.
    fn tasks(&self, master: &Master, now_ms: u64, master_now: Millis) -> Vec<TaskInfo> {
        let wall = |at: Millis| match at.0.checked_sub(master_now.0) {
            Some(ahead) => now_ms.saturating_add(ahead),
            None => now_ms.saturating_sub(master_now.0 - at.0),
        };
        let live = master.tasks_view().into_iter().map(|t| {
            let known = self.tasks.get(&t.task_id);
            TaskInfo {
                exit_code: known.and_then(|k| k.exit_code),
                reason: known.map(|k| k.reason.clone()).unwrap_or_default(),
                task_id: t.task_id,
                framework_id: t.framework_id,
                agent_id: t.agent_id,
                name: t.name,
                resources: t.resources,
                state: t.state,
                // Seen launched: that wall time; else (learned from an advert) converted.
                launched_at_ms: known.map_or_else(|| wall(t.launched_at), |k| k.launched_at_ms),
                reclaim_at_ms: t.reclaim_at.map(wall),
                cpu_seconds: None,
                memory_bytes: None,
            }
        });
        let mut tasks: Vec<TaskInfo> = live.chain(self.ended.iter().rev().cloned()).collect();
        for task in &mut tasks {
            if let Some((cpu, memory)) = self.usage.get(&task.task_id) {
                task.cpu_seconds = Some(*cpu);
                task.memory_bytes = Some(*memory);
            }
        }
        tasks
    }

    fn push_log(&mut self, e: LogEntry) {
        self.log.push_back(e);
        truncate_front(&mut self.log, LOG_ENTRIES_MAX);
    }
}

fn framework_info(f: master::view::FrameworkView) -> FrameworkInfo {
    FrameworkInfo {
        framework_id: f.framework_id,
        name: f.name,
        role: f.role,
        role_weight: f.role_weight,
        weight: f.weight,
        connected: f.connected,
        suppressed: f.suppressed,
        allocation: f.allocation,
        dominant_share: f.dominant_share,
        tasks: f.tasks,
        offers: f.offers,
    }
}

fn offer_info(o: master::view::OfferView) -> OfferInfo {
    OfferInfo {
        offer_id: o.offer_id,
        framework_id: o.framework_id,
        agent_id: o.agent_id,
        resources: o.resources,
        made_at_ms: o.made_at.0,
        expires_at_ms: o.expires_at.map(|m| m.0),
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

impl LogEntry {
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
    use proto::{FrameworkId, TaskState};

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

    #[test]
    fn a_task_launched_before_a_restart_is_listed_when_it_ends() {
        let mut recorder = Recorder::new();
        let status = TaskStatus {
            task_id: TaskId::new("from-before"),
            framework_id: FrameworkId::new("f"),
            agent_id: AgentId::new("a"),
            state: TaskState::Failed,
            exit_code: None,
            reason: "agent restarted".to_owned(),
            uuid: StatusUuid(7),
            timestamp_ms: 0,
        };
        recorder.observe_status(10, &status);
        let master = Master::new(master::MasterConfig::default(), 0);
        let tasks = recorder.snapshot(&master, 10, Millis(0)).tasks;
        assert_eq!(tasks.len(), 1, "{tasks:?}");
        assert_eq!(tasks[0].task_id, status.task_id);
        assert_eq!(tasks[0].state, TaskState::Failed);
        assert_eq!(tasks[0].reason, "agent restarted");
    }
}
