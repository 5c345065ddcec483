//! What the master core does not keep but operators want to see: counters, a bounded log
//! of offers and decisions, the history of dominant shares and each agent's usage over
//! time. The rows of agents, frameworks, tasks and offers are the core's own
//! (`master::view`); the recorder only adds to them. The master daemon feeds a
//! [`Recorder`] what it feeds and drains from [`master::Master`], and asks it for a
//! [`ClusterState`] to publish.
//!
//! Sans-IO: no clock is read here; wall-clock times come in as `now_ms` arguments.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use master::view::WallClock;
use master::{Action, CallError, Master, Millis};
use proto::resources::dominant_share_of;
use proto::{
    Call, CallReply, Event, FrameworkCall, FrameworkId, Offer, OfferId, StatusUuid, TaskState,
    TaskStatus,
};

use crate::state::{
    AgentRow, AgentState, ClusterState, Counters, FrameworkRow, LogEntry, LogKind, ShareSample,
    TaskRow, UsageHistory,
};

/// Entries kept in the decision log; the oldest are dropped first.
pub const LOG_ENTRIES_MAX: usize = 200;
/// Wall-clock period of the share and usage histories: they keep one sample per period
/// (periods are aligned on the Unix epoch). A snapshot taken in the period of the last
/// sample replaces it, so the last sample is always the latest snapshot, and how often
/// snapshots are taken changes neither how far back the histories reach nor how many
/// samples they hold. A wall clock set back starts a new sample.
pub const HISTORY_PERIOD_MS: u64 = 30_000;
/// Samples kept in each history, the oldest dropped first: an hour of periods, and the
/// current one.
pub const HISTORY_SAMPLES_MAX: usize = 121;
/// Agents whose usage history is kept: the first ones listed (registered agents by id,
/// then the recently lost). An agent no longer listed (lost and forgotten) loses its
/// history; a lost one keeps it, no longer sampled, while it is listed.
pub const AGENT_HISTORIES_MAX: usize = 64;
/// Status uuids remembered to tell a resent update from a new one; an update resent after
/// this many newer ones is not counted as a retry.
pub const STATUS_UUIDS_KEPT_MAX: usize = 4096;

#[derive(Debug, Default)]
pub struct Recorder {
    counters: Counters,
    log: VecDeque<LogEntry>,
    shares: VecDeque<ShareSample>,
    agent_usage: BTreeMap<String, UsageHistory>,
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
            Action::SendEvent { .. }
            | Action::AckStatus { .. }
            | Action::AnnounceCensus(_)
            | Action::StopAgent { .. } => {}
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

    /// An operator request the policy refused.
    pub fn observe_operator_refusal(&mut self, now_ms: u64, message: &str) {
        let message = format!("operator request refused: {message}");
        self.push_log(entry(now_ms, LogKind::CallRefused, message));
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
    /// `master_now` on the master's, and this recorder's log, counters and histories
    /// (sampled from these rows first).
    pub fn snapshot(&mut self, master: &Master, now_ms: u64, master_now: Millis) -> ClusterState {
        let clock = WallClock {
            wall_ms: now_ms,
            master_now,
        };
        let agents = master.agent_rows();
        let frameworks = master.frameworks_view();
        let tasks = master.task_rows(clock);
        self.sample(now_ms, &agents, &frameworks, &tasks);
        ClusterState {
            generated_at_ms: now_ms,
            master_now_ms: master_now.0,
            agents,
            frameworks,
            tasks,
            offers: master.offers_view(),
            log: self.log.iter().cloned().collect(),
            share_history: self.shares.iter().cloned().collect(),
            agent_usage: self.agent_usage.clone(),
            counters: self.counters.clone(),
        }
    }

    /// Records the rows' shares and usage in the histories (see [`HISTORY_PERIOD_MS`]).
    fn sample(
        &mut self,
        now_ms: u64,
        agents: &[AgentRow],
        frameworks: &[FrameworkRow],
        tasks: &[TaskRow],
    ) {
        let sample = ShareSample {
            at_ms: now_ms,
            shares: shares_in_use(agents, frameworks, tasks),
        };
        match self.shares.back_mut() {
            Some(last) if same_period(last.at_ms, now_ms) => *last = sample,
            _ => self.shares.push_back(sample),
        }
        truncate_front(&mut self.shares, HISTORY_SAMPLES_MAX);

        let kept = &agents[..agents.len().min(AGENT_HISTORIES_MAX)];
        let listed: HashSet<&str> = kept.iter().map(|a| a.id.as_str()).collect();
        self.agent_usage
            .retain(|id, _| listed.contains(id.as_str()));
        for agent in kept.iter().filter(|a| a.state != AgentState::Lost) {
            let history = self.agent_usage.entry(agent.id.clone()).or_default();
            record_usage(history, now_ms, &fractions_in_use(agent));
        }
    }

    fn push_log(&mut self, e: LogEntry) {
        self.log.push_back(e);
        truncate_front(&mut self.log, LOG_ENTRIES_MAX);
    }
}

fn same_period(a_ms: u64, b_ms: u64) -> bool {
    a_ms / HISTORY_PERIOD_MS == b_ms / HISTORY_PERIOD_MS
}

/// Each framework's dominant share of what its launched tasks hold (not what is offered
/// to it, which would show every offer as a spike), of the registered agents' total.
fn shares_in_use(
    agents: &[AgentRow],
    frameworks: &[FrameworkRow],
    tasks: &[TaskRow],
) -> BTreeMap<String, f64> {
    let mut total = BTreeMap::new();
    for agent in agents.iter().filter(|a| a.state != AgentState::Lost) {
        agent.total.add_quantities_to(&mut total);
    }
    let mut used: BTreeMap<&str, BTreeMap<String, u64>> = (frameworks.iter())
        .map(|f| (f.framework_id.as_str(), BTreeMap::new()))
        .collect();
    let holding = |t: &&TaskRow| !t.state.is_terminal() && t.state != TaskState::Pending;
    for task in tasks.iter().filter(holding) {
        if let Some(quantities) = used.get_mut(task.framework_id.as_str()) {
            task.resources.add_quantities_to(quantities);
        }
    }
    (used.into_iter())
        .map(|(id, quantities)| (id.to_owned(), dominant_share_of(&quantities, &total)))
        .collect()
}

/// The fraction of each kind of the agent's resources in use, in thousandths.
fn fractions_in_use(agent: &AgentRow) -> BTreeMap<String, f64> {
    let used = agent.used.quantities();
    (agent.total.quantities_iter())
        .map(|(kind, total)| {
            let fraction = used.get(kind).map_or(0.0, |u| *u as f64 / total as f64);
            (
                kind.to_owned(),
                (fraction.min(1.0) * 1000.0).round() / 1000.0,
            )
        })
        .collect()
}

/// Appends a sample to `history`, or replaces its last one when in the same period; every
/// column keeps as many values as `at_ms`.
fn record_usage(history: &mut UsageHistory, at_ms: u64, fractions: &BTreeMap<String, f64>) {
    if history
        .at_ms
        .last()
        .is_some_and(|last| same_period(*last, at_ms))
    {
        history.at_ms.pop();
        for column in history.used.values_mut() {
            column.pop();
        }
    }
    let earlier = history.at_ms.len();
    for kind in fractions.keys() {
        (history.used.entry(kind.clone())).or_insert_with(|| vec![0.0; earlier]);
    }
    history.at_ms.push(at_ms);
    for (kind, column) in &mut history.used {
        column.push(fractions.get(kind).copied().unwrap_or(0.0));
    }
    let dropped = history.at_ms.len().saturating_sub(HISTORY_SAMPLES_MAX);
    history.at_ms.drain(..dropped);
    history.used.retain(|kind, column| {
        column.drain(..dropped);
        fractions.contains_key(kind) || column.iter().any(|f| *f > 0.0)
    });
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
    use master::MasterConfig;
    use proto::{
        AgentAdvert, AgentId, Attributes, FrameworkInfo, ModuleHash, ModuleRef, Operation,
        Resources, TaskId, TaskKind, TaskLimits, TaskSpec, WasmTask,
    };

    use super::*;

    /// An hour on the wall clock, ms.
    const HOUR_MS: u64 = 3_600_000;

    fn agent_row(id: &str, state: AgentState, total: Resources, used: Resources) -> AgentRow {
        AgentRow {
            id: id.to_owned(),
            agent_id: AgentId::new(id),
            hostname: "vm".to_owned(),
            state,
            attributes: Attributes::new(),
            free: Resources::new(),
            offered: Resources::new(),
            total,
            used,
            tasks: 0,
        }
    }

    fn cpus_mem(cpus: f64, mem: f64) -> Resources {
        Resources::new()
            .with_scalar("cpus", cpus)
            .with_scalar("mem", mem)
    }

    #[test]
    fn the_histories_keep_one_sample_per_period_an_hour_of_them_the_last_one_current() {
        let mut recorder = Recorder::new();
        let start_ms = 1_700_000_000_000;
        let agents = [agent_row(
            "a",
            AgentState::Active,
            cpus_mem(4.0, 1024.0),
            cpus_mem(1.0, 0.0),
        )];
        // A snapshot a second for two hours.
        let mut now_ms = start_ms;
        while now_ms < start_ms + 2 * HOUR_MS {
            recorder.sample(now_ms, &agents, &[], &[]);
            now_ms += 1_000;
        }
        let last_ms = now_ms - 1_000;
        let shares = &recorder.shares;
        assert_eq!(shares.len(), HISTORY_SAMPLES_MAX);
        assert_eq!(shares.back().map(|s| s.at_ms), Some(last_ms));
        let periods: Vec<u64> = shares.iter().map(|s| s.at_ms / HISTORY_PERIOD_MS).collect();
        assert!(periods.windows(2).all(|w| w[1] == w[0] + 1), "{periods:?}");
        let reach_ms = (periods[periods.len() - 1] - periods[0]) * HISTORY_PERIOD_MS;
        assert!(
            reach_ms >= HOUR_MS,
            "the share history reaches back {reach_ms} ms"
        );

        let usage = &recorder.agent_usage["a"];
        assert_eq!(usage.at_ms.len(), HISTORY_SAMPLES_MAX);
        assert_eq!(usage.at_ms.last(), Some(&last_ms));
        assert_eq!(usage.used["cpus"], vec![0.25; HISTORY_SAMPLES_MAX]);
        assert_eq!(usage.used["mem"], vec![0.0; HISTORY_SAMPLES_MAX]);

        // Within the period of the last sample, a change replaces it.
        let busier = [agent_row(
            "a",
            AgentState::Active,
            cpus_mem(4.0, 1024.0),
            cpus_mem(2.0, 512.0),
        )];
        recorder.sample(last_ms + 1, &busier, &[], &[]);
        let usage = &recorder.agent_usage["a"];
        assert_eq!(usage.at_ms.len(), HISTORY_SAMPLES_MAX);
        assert_eq!(usage.at_ms.last(), Some(&(last_ms + 1)));
        assert_eq!(usage.used["cpus"].last(), Some(&0.5));
        assert_eq!(usage.used["mem"].last(), Some(&0.5));
    }

    #[test]
    fn agent_histories_are_bounded_follow_the_listing_and_keep_columns_aligned() {
        let mut recorder = Recorder::new();
        let total = cpus_mem(2.0, 1024.0);
        let many: Vec<AgentRow> = (0..AGENT_HISTORIES_MAX + 6)
            .map(|n| {
                let id = format!("agent-{n:03}");
                agent_row(&id, AgentState::Active, total.clone(), Resources::new())
            })
            .collect();
        recorder.sample(0, &many, &[], &[]);
        assert_eq!(recorder.agent_usage.len(), AGENT_HISTORIES_MAX);
        assert!(recorder.agent_usage.contains_key("agent-000"));
        assert!(!recorder.agent_usage.contains_key("agent-069"));

        // agent-000 lost (still listed, no longer sampled), agent-001 forgotten, and
        // agent-002 now with a GPU, half of it in use.
        let mut listed = many[..3].to_vec();
        listed[0].state = AgentState::Lost;
        listed.remove(1);
        listed[1].total = total.clone().with_scalar("gpus", 2.0);
        listed[1].used = Resources::new().with_scalar("gpus", 1.0);
        recorder.sample(HISTORY_PERIOD_MS, &listed, &[], &[]);
        let ids: Vec<&str> = recorder.agent_usage.keys().map(String::as_str).collect();
        assert_eq!(ids, ["agent-000", "agent-002"]);
        assert_eq!(recorder.agent_usage["agent-000"].at_ms, [0]);
        let gpu_box = &recorder.agent_usage["agent-002"];
        assert_eq!(gpu_box.at_ms, [0, HISTORY_PERIOD_MS]);
        assert_eq!(gpu_box.used["gpus"], [0.0, 0.5]);
        assert_eq!(gpu_box.used["cpus"], [0.0, 0.0]);
    }

    /// A master with one agent (2 cpus, 1024 MiB) and one framework, which holds an offer
    /// of all of it.
    fn master_offering_everything() -> (Master, FrameworkId, OfferId) {
        let mut master = Master::new(MasterConfig::default(), 7);
        let (now, agent) = (Millis(0), AgentId::new("edge-1"));
        master.handle_agent_token(now, &agent, true);
        master.handle_agent_advert(
            now,
            AgentAdvert {
                agent_id: agent,
                hostname: "vm".to_owned(),
                attributes: Attributes::new(),
                total: cpus_mem(2.0, 1024.0),
                reserved: Resources::new(),
                seq: 1,
                incarnation: 1,
                tasks: vec![],
                version: String::new(),
                last_census: None,
            },
        );
        let info = FrameworkInfo {
            name: "greedy".to_owned(),
            role: "greedy".to_owned(),
            weight: 1.0,
            framework_id: None,
            failover_timeout_ms: 60_000,
            constraints: vec![],
            min_offer: Resources::new(),
            capabilities: Vec::new(),
        };
        let call = FrameworkCall {
            framework_id: None,
            call: Call::Subscribe { info },
        };
        let Ok(CallReply::Subscribed { framework_id, .. }) =
            master.handle_call(now, &proto::Principal::anonymous(), call)
        else {
            panic!("the subscription was refused");
        };
        master.handle_framework_token(now, &framework_id, true);
        while let Some(at) = master.poll_timeout().filter(|at| at.0 < 10_000) {
            master.handle_timeout(at);
        }
        let offer_id = std::iter::from_fn(|| master.poll_action())
            .find_map(|action| match action {
                Action::SendEvent {
                    event: Event::Offers { offers },
                    ..
                } => offers.into_iter().next().map(|o| o.offer_id),
                _ => None,
            })
            .expect("no offer was made");
        (master, framework_id, offer_id)
    }

    #[test]
    fn what_is_offered_to_a_framework_is_not_its_share_in_the_history() {
        let (mut master, framework_id, offer_id) = master_offering_everything();
        let mut recorder = Recorder::new();
        let fw = framework_id.to_string();
        let state = recorder.snapshot(&master, 1_000, Millis(10_000));
        assert_eq!(
            state.frameworks[0].dominant_share, 1.0,
            "offered everything"
        );
        assert_eq!(state.share_history[0].shares[&fw], 0.0, "using nothing");

        let task = TaskSpec {
            task_id: TaskId::new("t"),
            name: "t".to_owned(),
            resources: cpus_mem(1.0, 256.0),
            kind: TaskKind::Wasm(WasmTask {
                module: ModuleRef {
                    sha256: ModuleHash("ab".repeat(32)),
                    size_bytes: 1,
                    name: "t.wasm".to_owned(),
                },
                ..WasmTask::default()
            }),
            limits: TaskLimits::default(),
            disconnect: None,
            replaces: None,
        };
        let accept = FrameworkCall {
            framework_id: Some(framework_id),
            call: Call::Accept {
                offer_ids: vec![offer_id],
                operations: vec![Operation::Launch { tasks: vec![task] }],
                filters: proto::Filters::default(),
            },
        };
        let accepted = master.handle_call(Millis(10_001), &proto::Principal::anonymous(), accept);
        assert!(accepted.is_ok(), "{accepted:?}");
        let state = recorder.snapshot(&master, 2_000, Millis(10_002));
        assert_eq!(state.share_history.len(), 1, "the same period");
        assert_eq!(
            state.share_history[0].shares[&fw], 0.5,
            "half the cpus in use"
        );
        assert_eq!(state.agent_usage["edge-1"].used["cpus"], [0.5]);
        assert_eq!(state.master_now_ms, 10_002);
    }

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
