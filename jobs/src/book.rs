//! The jobs scheduler as a sans-IO state machine: jobs in, framework calls out.
//!
//! Call order (the adapter in [`crate::framework`] does this; tests do it against a real
//! `master::Master`):
//! 1. `JobBook::new(config, incarnation)`.
//! 2. Feed inputs with the current time: [`JobBook::submit`], [`JobBook::kill`],
//!    [`JobBook::handle_event`] for every event of the master, and
//!    [`JobBook::handle_call_refused`] when the master refuses a call the book made.
//! 3. After every input drain [`JobBook::poll_call`] and send the calls in order.
//! 4. When [`JobBook::poll_timeout`] comes, call [`JobBook::handle_timeout`] (restarts
//!    after their backoff) and drain again.
//!
//! Every input takes the time (`now_ms`, milliseconds on the caller's monotonic clock,
//! never decreasing); inputs that do not need it yet take it all the same, so that callers
//! need not change when they do.
//!
//! Every copy of a job is one *slot*; a slot runs one task at a time. A restart gives the
//! slot a new task id (the master never reuses task ids), so `wasmos ps` shows a restarted
//! copy under a new id.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proto::operator::TaskRow;
use proto::{
    AgentId, Call, Constraint, Event, Filters, FrameworkId, Offer, OfferId, Operation, Resources,
    TaskId, TaskSpec, TaskState, TaskStatus,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::placement::{self, Spread, Want};
use crate::quarantine::Quarantine;
use crate::request::{JobAccepted, OnReconnect, ValidJob};
use crate::restart;
use crate::service::{Service, ServiceCopy};
use proto::declared::QuarantinePolicy;

/// Jobs with a task not yet ended, by default; a submission beyond it is refused.
pub const JOBS_MAX_DEFAULT: usize = 1024;
/// Copies (slots) of all jobs with a task not yet ended, by default; a submission that
/// would exceed it is refused.
pub const TASKS_MAX_DEFAULT: usize = 8192;
/// Ids of ended tasks remembered so that a kill of one is answered "already ended" rather
/// than "unknown"; the oldest are forgotten first.
pub const ENDED_TASKS_KEPT_MAX: usize = 4096;
/// Calls waiting to be sent. The book makes at most a few calls per input, so reaching
/// this means the adapter stopped sending; the oldest decline is dropped first (the offer
/// then times out or is rescinded, which is harmless).
pub const CALLS_QUEUED_MAX: usize = 4096;
/// Filter on offers the book cannot use for any waiting copy.
pub const DECLINE_REFUSE_SECONDS_DEFAULT: f64 = 5.0;
/// Rows of copies cancelled before they started that the book keeps.
pub const CANCELLED_ROWS_KEPT_MAX: usize = 1024;

/// Limits and timing of a [`JobBook`].
#[derive(Clone, Debug, PartialEq)]
pub struct JobBookConfig {
    pub jobs_max: usize,
    pub tasks_max: usize,
    pub decline_refuse_seconds: f64,
    pub restart: restart::Backoff,
}

impl Default for JobBookConfig {
    fn default() -> JobBookConfig {
        JobBookConfig {
            jobs_max: JOBS_MAX_DEFAULT,
            tasks_max: TASKS_MAX_DEFAULT,
            decline_refuse_seconds: DECLINE_REFUSE_SECONDS_DEFAULT,
            restart: restart::Backoff::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Error)]
pub enum SubmitError {
    #[error("the jobs framework holds {max} jobs already; wait for some to end")]
    TooManyJobs { max: usize },
    #[error(
        "the job's {count} tasks would exceed the jobs framework's limit of {max} tasks \
         ({running} not yet ended); wait for some to end"
    )]
    TooManyTasks {
        count: usize,
        running: usize,
        max: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Error)]
pub enum KillError {
    #[error("task {0} is not a task of the jobs framework: see `wasmos ps` for the task ids")]
    Unknown(TaskId),
    #[error("task {0} has already ended")]
    Ended(TaskId),
}

/// Where one copy of a job is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum SlotState {
    /// Waiting for an offer that fits.
    Waiting,
    /// Launched on `agent_id`; `state` is the latest update (`Staging` before any).
    Launched { agent_id: AgentId, state: TaskState },
    /// Its task ended; a new task starts at `at_ms`.
    Backoff { at_ms: u64 },
    /// Done for good, in `state`.
    Ended { state: TaskState },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Slot {
    pub(crate) task_id: TaskId,
    pub(crate) state: SlotState,
    /// Tasks this slot started, the first included.
    starts: u32,
    /// Killed by request: never restarted.
    pub(crate) kill_requested: bool,
    /// The slot's earlier task, `unreachable` (its agent lost), which the current one
    /// replaces: if it comes back, the job's `on_reconnect` says which stays.
    original: Option<TaskId>,
    /// What a copy of a declared job is (see [`crate::service`]); the default for the
    /// copies of `wasmos run`'s jobs.
    pub(crate) copy: ServiceCopy,
}

impl Slot {
    /// A new state of a declared job's copy: its health, and a per-agent copy goes with
    /// its agent (it comes back with the agent).
    fn copy_state(&mut self, now_ms: u64, state: TaskState, finished_restarts: bool) {
        let killed = self.kill_requested;
        self.copy
            .handle_state(now_ms, state, killed, finished_restarts);
        if state == TaskState::Lost && self.copy.bound.is_some() {
            self.kill_requested = true;
        }
    }

    pub(crate) fn original(&self) -> Option<&TaskId> {
        self.original.as_ref()
    }

    pub(crate) fn new(task_id: TaskId, copy: ServiceCopy) -> Slot {
        Slot {
            task_id,
            state: SlotState::Waiting,
            starts: 1,
            kill_requested: false,
            original: None,
            copy,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Job {
    /// For a declared job: its newest version's task.
    pub(crate) job: ValidJob,
    /// By slot number, which never repeats within a job.
    pub(crate) slots: BTreeMap<usize, Slot>,
    pub(crate) next_slot: usize,
    /// Set for a declared job.
    pub(crate) service: Option<Box<Service>>,
    /// Agents where its tasks keep failing.
    #[serde(default)]
    pub(crate) quarantine: Quarantine,
}

impl Job {
    fn ended(&self) -> bool {
        self.service.is_none()
            && (self.slots.values()).all(|s| matches!(s.state, SlotState::Ended { .. }))
    }

    /// When an agent gets no more copies: a declared job's own policy, the default for
    /// `wasmos run`'s jobs.
    pub(crate) fn quarantine_policy(&self) -> QuarantinePolicy {
        (self.service.as_ref()).map_or_else(QuarantinePolicy::default, |s| s.decl.decl.quarantine)
    }

    /// The task `slot` runs: its version's, for a declared job.
    pub(crate) fn template(&self, slot: &Slot) -> &ValidJob {
        (self.service.as_ref())
            .and_then(|service| service.versions.get(&slot.copy.version))
            .map_or(&self.job, |version| &version.job)
    }

    /// Tasks of this job running (not ended) per agent and per value of the spread
    /// attribute: what spreading balances.
    fn spread(&self) -> Spread {
        let mut spread = Spread {
            key: self.service.as_ref().and_then(|s| s.decl.spread.clone()),
            ..Spread::default()
        };
        for slot in self.slots.values() {
            if let SlotState::Launched { agent_id, .. } = &slot.state {
                *spread.agents.entry(agent_id.clone()).or_default() += 1;
                let value = slot.copy.spread_value.clone().unwrap_or_default();
                *spread.values.entry(value).or_default() += 1;
            }
        }
        spread
    }
}

/// The jobs framework's scheduler. See the module documentation for the call order.
pub struct JobBook {
    pub(crate) config: JobBookConfig,
    /// Tells this book's task ids from those of earlier incarnations of the framework.
    tag: String,
    /// The wall clock when `now_ms` was 0, ms since the Unix epoch (the incarnation):
    /// what declared jobs' history shows.
    pub(crate) wall_base_ms: u64,
    framework_id: Option<FrameworkId>,
    pub(crate) jobs: BTreeMap<String, Job>,
    /// The current task of every slot: `(job id, slot number)`.
    pub(crate) tasks: BTreeMap<TaskId, (String, usize)>,
    ended: VecDeque<TaskId>,
    ended_set: BTreeSet<TaskId>,
    /// Copies cancelled before they started, oldest first, as `killed` task rows: the
    /// master never knew their tasks, so a lookup by id (`run --wait`, the HTTP API)
    /// finds their end here.
    cancelled: VecDeque<TaskRow>,
    calls: VecDeque<Call>,
    /// Whether the last of Suppress/Revive sent was Suppress. The book starts by
    /// suppressing (a new framework is not suppressed; with no job it wants no offers).
    suppressed: bool,
    jobs_submitted: u64,
    task_ids_issued: u64,
    tasks_launched: u64,
    /// The latest time an input brought (for what depends on time without an input).
    pub(crate) last_now_ms: u64,
}

impl JobBook {
    /// `incarnation` must differ between runs of the framework (the adapter uses the wall
    /// clock); it is written into every task id so ids are never reused across restarts.
    pub fn new(config: JobBookConfig, incarnation: u64) -> JobBook {
        JobBook {
            config,
            tag: base36(incarnation),
            wall_base_ms: incarnation,
            framework_id: None,
            jobs: BTreeMap::new(),
            tasks: BTreeMap::new(),
            ended: VecDeque::new(),
            ended_set: BTreeSet::new(),
            cancelled: VecDeque::new(),
            calls: VecDeque::from([Call::Suppress]),
            suppressed: true,
            jobs_submitted: 0,
            task_ids_issued: 0,
            tasks_launched: 0,
            last_now_ms: 0,
        }
    }

    pub fn framework_id(&self) -> Option<&FrameworkId> {
        self.framework_id.as_ref()
    }

    /// Jobs with a task not yet ended.
    pub fn active_jobs(&self) -> usize {
        self.jobs.len()
    }

    /// Tasks launched so far (restarts included).
    pub fn tasks_launched(&self) -> u64 {
        self.tasks_launched
    }

    /// Takes a job: its task ids are chosen now and its copies wait for offers.
    pub fn submit(&mut self, _now_ms: u64, job: ValidJob) -> Result<JobAccepted, SubmitError> {
        if self.jobs.len() >= self.config.jobs_max {
            return Err(SubmitError::TooManyJobs {
                max: self.config.jobs_max,
            });
        }
        let count = job.count as usize;
        if self.tasks.len() + count > self.config.tasks_max {
            return Err(SubmitError::TooManyTasks {
                count,
                running: self.tasks.len(),
                max: self.config.tasks_max,
            });
        }
        self.jobs_submitted += 1;
        let job_id = format!("{}.{}.{}", job.name, self.tag, self.jobs_submitted);
        let mut slots = BTreeMap::new();
        for index in 0..count {
            let task_id = self.next_task_id(&job.name);
            self.tasks.insert(task_id.clone(), (job_id.clone(), index));
            slots.insert(index, Slot::new(task_id, ServiceCopy::default()));
        }
        let task_ids = slots.values().map(|s| s.task_id.clone()).collect();
        let job = Job {
            job,
            slots,
            next_slot: count,
            service: None,
            quarantine: Quarantine::default(),
        };
        self.jobs.insert(job_id.clone(), job);
        self.want_offers();
        Ok(JobAccepted { job_id, task_ids })
    }

    /// Kills a task of a job and does not restart it. A copy still waiting for an offer
    /// or for its restart ends at once (as `killed`, without a task in the master).
    pub fn kill(&mut self, now_ms: u64, task_id: &TaskId) -> Result<(), KillError> {
        let Some((job_id, index)) = self.tasks.get(task_id).cloned() else {
            return Err(if self.ended_set.contains(task_id) {
                KillError::Ended(task_id.clone())
            } else {
                KillError::Unknown(task_id.clone())
            });
        };
        let Some(slot) = self.slot_mut(&job_id, index) else {
            return Err(KillError::Unknown(task_id.clone()));
        };
        if slot.original.as_ref() == Some(task_id) {
            // The unreachable original: given up; its replacement goes on.
            self.drop_original(&job_id, index);
            return Ok(());
        }
        slot.kill_requested = true;
        if slot.state == SlotState::Waiting {
            self.remember_cancelled(&job_id, index);
        }
        let Some(slot) = self.slot_mut(&job_id, index) else {
            return Err(KillError::Unknown(task_id.clone()));
        };
        match slot.state {
            SlotState::Launched { .. } => self.push_call(Call::Kill {
                task_id: task_id.clone(),
            }),
            SlotState::Waiting | SlotState::Backoff { .. } => {
                slot.state = SlotState::Ended {
                    state: TaskState::Killed,
                };
                self.slot_ended(&job_id, task_id);
            }
            SlotState::Ended { .. } => return Err(KillError::Ended(task_id.clone())),
        }
        self.reconcile_services(now_ms);
        self.settle_wants();
        Ok(())
    }

    /// The task ids of the copies waiting for an offer, in [`JobBook::pending_rows`]
    /// order: a cheap look at whether those rows changed.
    pub fn pending_task_ids(&self) -> impl Iterator<Item = &TaskId> {
        self.waiting().map(|(_, slot)| &slot.task_id)
    }

    fn waiting(&self) -> impl Iterator<Item = (&Job, &Slot)> {
        (self.jobs.values())
            .flat_map(|job| job.slots.values().map(move |slot| (job, slot)))
            .filter(|(_, slot)| slot.state == SlotState::Waiting)
    }

    /// The copies waiting for an offer, as the operator's task rows (`pending`, with
    /// what they wait for); their framework is this one, and no agent has them yet.
    pub fn pending_rows(&self) -> Vec<TaskRow> {
        self.waiting()
            .map(|(job, slot)| self.waiting_row(job, slot))
            .collect()
    }

    fn waiting_row(&self, job: &Job, slot: &Slot) -> TaskRow {
        let template = job.template(slot);
        let resources = task_resources(template);
        TaskRow {
            id: slot.task_id.to_string(),
            task_id: slot.task_id.clone(),
            framework_id: (self.framework_id.clone()).unwrap_or(FrameworkId::new("")),
            agent_id: AgentId::new(""),
            name: job.job.name.clone(),
            reason: waiting_reason(&resources, &template.constraints)
                + &quarantine_note(&job.quarantine.agents(self.last_now_ms)),
            resources,
            state: TaskState::Pending,
            exit_code: None,
            launched_at_ms: 0,
            reclaim_at_ms: None,
            cpu_seconds: None,
            memory_bytes: None,
        }
    }

    /// The copy in `(job_id, index)`, waiting, is cancelled: its row is kept, `killed`.
    fn remember_cancelled(&mut self, job_id: &str, index: usize) {
        let Some(job) = self.jobs.get(job_id) else {
            return;
        };
        let Some(slot) = job.slots.get(&index) else {
            return;
        };
        let mut row = self.waiting_row(job, slot);
        row.state = TaskState::Killed;
        row.reason = "cancelled before it started".to_owned();
        self.cancelled.push_back(row);
        while self.cancelled.len() > CANCELLED_ROWS_KEPT_MAX {
            self.cancelled.pop_front();
        }
    }

    /// Copies cancelled before they started (the last [`CANCELLED_ROWS_KEPT_MAX`]), as
    /// `killed` rows, oldest first.
    pub fn cancelled_rows(&self) -> &VecDeque<TaskRow> {
        &self.cancelled
    }

    /// An event of the master for this framework.
    pub fn handle_event(&mut self, now_ms: u64, event: Event) {
        match event {
            Event::Subscribed { framework_id, .. } => self.framework_id = Some(framework_id),
            Event::Offers { offers } => self.handle_offers(now_ms, offers),
            Event::Rescind { .. } | Event::Heartbeat => {}
            Event::Update { status } => self.handle_update(now_ms, status),
            Event::Error { message } => tracing::warn!(%message, "the master reports an error"),
        }
    }

    /// The master refused `call` (or it got no answer). Tasks of a refused `Accept` go back
    /// to waiting under the same ids: the master launched none of them (an Accept is all or
    /// nothing), and should it have taken a call whose answer was lost, the repeated launch
    /// is refused as a duplicate while the task's updates put the slot right.
    pub fn handle_call_refused(&mut self, now_ms: u64, call: &Call) {
        let Call::Accept { operations, .. } = call else {
            if matches!(call, Call::Revive | Call::Suppress) {
                // Unknown outcome: send it again on the next change.
                self.suppressed = !self.suppressed;
            }
            return;
        };
        for Operation::Launch { tasks } in operations {
            for task in tasks {
                if let Some(slot) = self.current_slot_mut(&task.task_id)
                    && matches!(
                        slot.state,
                        SlotState::Launched {
                            state: TaskState::Staging,
                            ..
                        }
                    )
                {
                    slot.state = SlotState::Waiting;
                }
            }
        }
        self.reconcile_services(now_ms);
        self.settle_wants();
    }

    /// Whether calls wait to be sent.
    pub fn has_calls(&self) -> bool {
        !self.calls.is_empty()
    }

    /// The next call to send to the master, oldest first.
    pub fn poll_call(&mut self) -> Option<Call> {
        self.calls.pop_front()
    }

    /// When the book next needs [`JobBook::handle_timeout`]: the earliest restart due,
    /// or the earliest time a declared job's copy becomes healthy or misses its deadline.
    pub fn poll_timeout(&self) -> Option<u64> {
        let restarts = (self.jobs.values())
            .flat_map(|job| job.slots.values())
            .filter_map(|slot| match slot.state {
                SlotState::Backoff { at_ms } => Some(at_ms),
                _ => None,
            })
            .min();
        let health = self
            .jobs
            .values()
            .filter_map(crate::service::next_health_check)
            .min();
        let quarantines = (self.jobs.values())
            .filter_map(|job| job.quarantine.next_end(self.last_now_ms))
            .min();
        restarts.into_iter().chain(health).chain(quarantines).min()
    }

    /// Starts the restarts that are due: each gets a new task id and waits for an offer.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let mut due = Vec::new();
        for (job_id, job) in &self.jobs {
            for (index, slot) in &job.slots {
                if matches!(slot.state, SlotState::Backoff { at_ms } if at_ms <= now_ms) {
                    due.push((job_id.clone(), *index, job.job.name.clone()));
                }
            }
        }
        for (job_id, index, name) in due {
            self.replace_slot_task(&job_id, index, &name);
        }
        self.last_now_ms = now_ms;
        for job in self.jobs.values_mut() {
            let policy = job.quarantine_policy();
            job.quarantine.expire(now_ms, policy);
        }
        self.reconcile_services(now_ms);
        self.settle_wants();
    }

    fn handle_offers(&mut self, now_ms: u64, offers: Vec<Offer>) {
        self.add_per_agent_copies(now_ms, &offers);
        let assigned = placement::assign(&offers, self.wants(now_ms), &self.spread_counts());
        let mut declined = Vec::new();
        let mut launches: Vec<(OfferId, Vec<TaskSpec>)> = Vec::new();
        for (offer, wants) in offers.iter().zip(assigned) {
            let specs: Vec<TaskSpec> = wants
                .iter()
                .filter_map(|want| self.launch_slot(now_ms, want, offer))
                .collect();
            if specs.is_empty() {
                declined.push(offer.offer_id.clone());
            } else {
                launches.push((offer.offer_id.clone(), specs));
            }
        }
        for (offer_id, tasks) in launches {
            // What is left of the offer goes back to the pool unfiltered: a copy that
            // waits for room may fit in it once other tasks end.
            self.push_call(Call::Accept {
                offer_ids: vec![offer_id],
                operations: vec![Operation::Launch { tasks }],
                filters: Filters {
                    refuse_seconds: 0.0,
                },
            });
        }
        if !declined.is_empty() {
            self.push_call(Call::Decline {
                offer_ids: declined,
                filters: Filters {
                    refuse_seconds: self.config.decline_refuse_seconds,
                },
            });
        }
        self.settle_wants();
    }

    /// Running tasks per job per agent (and spread value), for spreading.
    fn spread_counts(&self) -> BTreeMap<String, Spread> {
        self.jobs
            .iter()
            .map(|(id, job)| (id.clone(), job.spread()))
            .collect()
    }

    /// Marks the slot launched on the offer's agent and builds its task.
    fn launch_slot(&mut self, now_ms: u64, want: &Want, offer: &Offer) -> Option<TaskSpec> {
        let backoff = self.backoff(&want.job_id);
        let job = self.jobs.get_mut(&want.job_id)?;
        let slot = job.slots.get(&want.slot)?;
        let replaces = slot.original.clone();
        let spec = placement::task_spec(job.template(slot), &slot.task_id, backoff, replaces);
        let spread_key = job.service.as_ref().and_then(|s| s.decl.spread.clone());
        let slot = job.slots.get_mut(&want.slot)?;
        slot.state = SlotState::Launched {
            agent_id: offer.agent_id.clone(),
            state: TaskState::Staging,
        };
        slot.copy.launched(
            now_ms,
            &offer.agent_id,
            spread_key.and_then(|key| offer.attributes.get(&key).map(str::to_owned)),
        );
        self.tasks_launched += 1;
        Some(spec)
    }

    /// The restart timing of a job's copies: a declared job's copies (a service runs
    /// until it is stopped) may start as often as the protocol allows, at the same pace.
    fn backoff(&self, job_id: &str) -> restart::Backoff {
        let declared = self.jobs.get(job_id).is_some_and(|j| j.service.is_some());
        match declared {
            true => restart::Backoff {
                starts_max: proto::RESTART_STARTS_MAX,
                ..self.config.restart
            },
            false => self.config.restart,
        }
    }

    fn handle_update(&mut self, now_ms: u64, status: TaskStatus) {
        let task_id = status.task_id.clone();
        let Some((job_id, index)) = self.tasks.get(&task_id).cloned() else {
            tracing::debug!(%task_id, state = status.state.as_str(), "update of a task not ours now");
            return;
        };
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        let on_reconnect = job.job.on_reconnect;
        match job.slots.get(&index) {
            Some(slot) if slot.original.as_ref() == Some(&task_id) => {
                self.original_update(&job_id, index, on_reconnect, status);
                return self.settle_wants();
            }
            Some(slot) if slot.task_id != task_id => {
                // An id the slot no longer follows: forgotten.
                self.tasks.remove(&task_id);
                self.remember_ended(task_id);
                return;
            }
            _ => {}
        }
        let declared = job.service.is_some();
        let policy = job.job.restart;
        let Some(slot) = job.slots.get_mut(&index) else {
            return;
        };
        if matches!(slot.state, SlotState::Ended { .. }) {
            return;
        }
        if declared && status.state == TaskState::Killed {
            // Killed without this framework asking (`wasmos kill` through the master, the
            // agent shutting down, reclaim): the copy goes, and a new one keeps the count,
            // as for a copy this framework stopped (`slot_ended`).
            slot.kill_requested = true;
        }
        if declared {
            slot.copy_state(now_ms, status.state, policy.restarts(TaskState::Finished));
        }
        if status.state == TaskState::Unreachable
            && !slot.kill_requested
            && policy.restarts(TaskState::Lost)
        {
            let name = job.job.name.clone();
            return self.replace_unreachable(&job_id, index, task_id, &name);
        }
        if !status.state.is_terminal() {
            slot.state = SlotState::Launched {
                agent_id: status.agent_id,
                state: status.state,
            };
            return self.reconcile_services(now_ms);
        }
        let killed = slot.kill_requested;
        self.task_ended(now_ms, &job_id, index, &status, killed);
        self.reconcile_services(now_ms);
        self.settle_wants();
    }

    /// The slot's task ended: restarted after its backoff, or the slot ends.
    fn task_ended(
        &mut self,
        now_ms: u64,
        job_id: &str,
        index: usize,
        status: &TaskStatus,
        killed: bool,
    ) {
        let task_id = &status.task_id;
        // A task that died with its agent's process says nothing of the agent or the job.
        let its_own = status.reason != proto::AGENT_RESTARTED;
        if matches!(status.state, TaskState::Failed | TaskState::Error) && !killed && its_own {
            self.note_failure(now_ms, job_id, &status.agent_id);
        }
        let backoff = self.backoff(job_id);
        let Some(job) = self.jobs.get_mut(job_id) else {
            return;
        };
        let policy = job.job.restart;
        let Some(slot) = job.slots.get_mut(&index) else {
            return;
        };
        // A task its agent killed on stopping went with the agent, as a lost one does.
        let stopped = status.state == TaskState::Killed && status.reason == proto::AGENT_STOPPED;
        let state = if stopped {
            TaskState::Lost
        } else {
            status.state
        };
        let restart = !slot.kill_requested && policy.restarts(state);
        match (restart, backoff.delay_ms(slot.starts)) {
            (true, Some(delay_ms)) => {
                tracing::info!(%task_id, state = status.state.as_str(), delay_ms, "task ended; restarting after a backoff");
                slot.state = SlotState::Backoff {
                    at_ms: now_ms.saturating_add(delay_ms),
                };
            }
            (restart, _) => {
                if restart {
                    tracing::warn!(%task_id, starts = slot.starts, "task ended; restarts used up");
                }
                slot.state = SlotState::Ended {
                    state: status.state,
                };
                self.slot_ended(job_id, task_id);
            }
        }
    }

    /// A task of the job failed on `agent`: counted toward its quarantine there.
    fn note_failure(&mut self, now_ms: u64, job_id: &str, agent: &AgentId) {
        let at = self.wall_base_ms.saturating_add(now_ms);
        let Some(job) = self.jobs.get_mut(job_id) else {
            return;
        };
        let policy = job.quarantine_policy();
        if job.quarantine.failed(now_ms, agent, policy) {
            tracing::warn!(job = %job.job.name, %agent, failures = policy.failures, backoff_ms = policy.backoff_ms, "agent quarantined for the job: its tasks keep failing there");
            if let Some(service) = job.service.as_deref_mut() {
                service.quarantined(at, agent, policy);
            }
        }
    }

    /// Replaces an unreachable task at once under a new id; the master keeps one of the
    /// two should the original come back. A replacement unreachable in turn: the older
    /// original is given up (killed should it come back), the slot follows one original
    /// at a time.
    fn replace_unreachable(&mut self, job_id: &str, index: usize, task_id: TaskId, name: &str) {
        tracing::info!(%task_id, "task unreachable (its agent was lost); replacing it");
        self.drop_original(job_id, index);
        if let Some(slot) = self.slot_mut(job_id, index) {
            slot.original = Some(task_id);
        }
        self.replace_slot_task(job_id, index, name);
        self.settle_wants();
    }

    /// An update of a slot's unreachable original. Back (not ended) under
    /// `keep-original`, or under `keep-replacement` before the replacement was launched:
    /// the slot is the original's again and the replacement is dropped (the master kills
    /// it if it runs). Back under `keep-replacement`: the master kills the original, which
    /// the slot forgets. Ended: the slot forgets it.
    fn original_update(
        &mut self,
        job_id: &str,
        index: usize,
        on_reconnect: OnReconnect,
        status: TaskStatus,
    ) {
        let Some(slot) = self.slot_mut(job_id, index) else {
            return;
        };
        let task_id = status.task_id.clone();
        let replacement_runs = matches!(slot.state, SlotState::Launched { .. });
        let keep_original = !status.state.is_terminal()
            && status.state != TaskState::Unreachable
            && (on_reconnect == OnReconnect::KeepOriginal || !replacement_runs);
        if status.state == TaskState::Unreachable {
            return;
        }
        slot.original = None;
        // The copy not kept is killed here too (the master kills it as well; a kill of an
        // ended task changes nothing), so that none runs untracked.
        let back = !status.state.is_terminal();
        if keep_original {
            tracing::info!(%task_id, replacement = %slot.task_id, "an unreachable task is back; keeping it");
            let replacement = std::mem::replace(&mut slot.task_id, task_id);
            slot.state = SlotState::Launched {
                agent_id: status.agent_id,
                state: status.state,
            };
            self.tasks.remove(&replacement);
            self.remember_ended(replacement.clone());
            if replacement_runs {
                self.push_call(Call::Kill {
                    task_id: replacement,
                });
            }
        } else {
            self.tasks.remove(&task_id);
            self.remember_ended(task_id.clone());
            if back {
                self.push_call(Call::Kill { task_id });
            }
        }
    }

    /// Gives up the slot's unreachable original, if any: forgotten, and killed (the master
    /// remembers the kill and kills it should its agent come back).
    fn drop_original(&mut self, job_id: &str, index: usize) {
        let Some(original) = self.slot_mut(job_id, index).and_then(|s| s.original.take()) else {
            return;
        };
        self.tasks.remove(&original);
        self.remember_ended(original.clone());
        self.push_call(Call::Kill { task_id: original });
    }

    /// Gives the slot a new task id, waiting for an offer (a restart, or a replacement).
    fn replace_slot_task(&mut self, job_id: &str, index: usize, name: &str) {
        let task_id = self.next_task_id(name);
        let Some(slot) = self.slot_mut(job_id, index) else {
            return;
        };
        let old = std::mem::replace(&mut slot.task_id, task_id.clone());
        slot.starts += 1;
        slot.state = SlotState::Waiting;
        tracing::info!(%old, new = %task_id, "a new task for a copy");
        if slot.original.as_ref() != Some(&old) {
            self.tasks.remove(&old);
            self.remember_ended(old);
        }
        self.tasks.insert(task_id, (job_id.to_owned(), index));
    }

    /// Forgets a slot's task (and gives up its unreachable original); forgets the job once
    /// all its slots ended. A declared job's copy that was killed or stopped is removed:
    /// one that ended by itself stays, as a copy (its restart policy let it end).
    pub(crate) fn slot_ended(&mut self, job_id: &str, task_id: &TaskId) {
        let index = self.tasks.get(task_id).map(|(_, i)| *i);
        if let Some(index) = index {
            self.drop_original(job_id, index);
        }
        self.tasks.remove(task_id);
        self.remember_ended(task_id.clone());
        if let (Some(job), Some(index)) = (self.jobs.get_mut(job_id), index)
            && job.service.is_some()
            && job.slots.get(&index).is_some_and(|s| s.kill_requested)
        {
            job.slots.remove(&index);
        }
        if self.jobs.get(job_id).is_some_and(Job::ended) {
            self.jobs.remove(job_id);
        }
    }

    pub(crate) fn remember_ended(&mut self, task_id: TaskId) {
        if self.ended_set.insert(task_id.clone()) {
            self.ended.push_back(task_id);
        }
        while self.ended.len() > ENDED_TASKS_KEPT_MAX {
            if let Some(old) = self.ended.pop_front() {
                self.ended_set.remove(&old);
            }
        }
    }

    /// Every waiting copy, oldest job first.
    fn wants(&self, now_ms: u64) -> Vec<Want> {
        let mut wants = Vec::new();
        for (job_id, job) in &self.jobs {
            let avoid = job.quarantine.agents(now_ms);
            for (slot, s) in &job.slots {
                if s.state == SlotState::Waiting {
                    let template = job.template(s);
                    wants.push(Want {
                        job_id: job_id.clone(),
                        slot: *slot,
                        resources: task_resources(template),
                        constraints: template.constraints.clone(),
                        bound: s.copy.bound.clone(),
                        avoid: avoid.clone(),
                    });
                }
            }
        }
        wants
    }

    /// Revives when copies wait for offers (or a per-agent job looks for new agents),
    /// suppresses when none do.
    pub(crate) fn settle_wants(&mut self) {
        let waiting = (self.jobs.values())
            .flat_map(|job| job.slots.values())
            .any(|slot| slot.state == SlotState::Waiting);
        let watching = self.jobs.values().any(crate::service::wants_every_agent);
        if waiting || watching {
            self.want_offers();
        } else if !self.suppressed {
            self.suppressed = true;
            self.push_call(Call::Suppress);
        }
    }

    /// Revive clears the decline filters too, so offers the book refused while nothing
    /// fitted come back for the new copies.
    fn want_offers(&mut self) {
        if self.suppressed {
            self.suppressed = false;
            self.push_call(Call::Revive);
        }
    }

    pub(crate) fn push_call(&mut self, call: Call) {
        if self.calls.len() >= CALLS_QUEUED_MAX {
            let decline = self
                .calls
                .iter()
                .position(|c| matches!(c, Call::Decline { .. }));
            match decline {
                Some(i) => {
                    self.calls.remove(i);
                }
                None => tracing::warn!("the call queue is full; sending calls has stalled"),
            }
        }
        self.calls.push_back(call);
    }

    /// `<name>-<n>.<tag>`: `n` counts every task id this book issued, so restarts and
    /// later jobs of the same name get new ids; `tag` keeps restarts of the framework apart.
    pub(crate) fn next_task_id(&mut self, name: &str) -> TaskId {
        self.task_ids_issued += 1;
        TaskId::new(format!("{name}-{}.{}", self.task_ids_issued, self.tag))
    }

    /// `(jobs submitted, task ids issued)`: what [`crate::persist`] keeps.
    pub(crate) fn counters(&self) -> (u64, u64) {
        (self.jobs_submitted, self.task_ids_issued)
    }

    pub(crate) fn set_counters(&mut self, jobs_submitted: u64, task_ids_issued: u64) {
        self.jobs_submitted = jobs_submitted;
        self.task_ids_issued = task_ids_issued;
    }

    fn slot_mut(&mut self, job_id: &str, index: usize) -> Option<&mut Slot> {
        self.jobs.get_mut(job_id)?.slots.get_mut(&index)
    }

    fn current_slot_mut(&mut self, task_id: &TaskId) -> Option<&mut Slot> {
        let (job_id, index) = self.tasks.get(task_id).cloned()?;
        self.slot_mut(&job_id, index)
    }
}

/// What one copy of `job` consumes.
pub(crate) fn task_resources(job: &ValidJob) -> Resources {
    Resources::new()
        .with_scalar("cpus", job.cpus)
        .with_scalar("mem", job.mem_mib)
}

/// `n` in base 36, lower case: short, and a valid key chunk.
fn base36(mut n: u64) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit((n % 36) as u32, 36).unwrap_or('0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

/// The agents a pending copy's job avoids, in words (`wasmos explain` says more).
fn quarantine_note(agents: &[AgentId]) -> String {
    match agents.is_empty() {
        true => String::new(),
        false => {
            let agents: Vec<&str> = agents.iter().map(AgentId::as_str).collect();
            format!(" (quarantined on {})", agents.join(", "))
        }
    }
}

/// What a pending copy waits for, in the operator's words.
fn waiting_reason(resources: &Resources, constraints: &[Constraint]) -> String {
    let mut reason = format!("waiting for an offer with {resources} free");
    if !constraints.is_empty() {
        let wanted: Vec<String> = constraints.iter().map(ToString::to_string).collect();
        reason.push_str(&format!(" on an agent with {}", wanted.join(", ")));
    }
    reason
}
