//! [`AgentNode`]: the agent's state machine.

use std::collections::{BTreeSet, VecDeque};

use litemap::LiteMap;

use proto::{
    ACKS_PER_CALL_MAX, Ack, AdvertTask, AgentAdvert, AgentCommand, AgentId, AgentReply,
    FrameworkId, MasterCensus, Millis, Resources, StatusBody, StatusUuid, TaskId, TaskKind,
    TaskSpec, TaskState, TaskStatus,
};

use crate::error::CommandRefused;
use crate::journal::{AGENT_RESTARTED, JournalChange, JournalEntry};
use crate::{
    ADVERT_PERIOD_MS_DEFAULT, STATUS_RETRY_MAX_MS_DEFAULT, STATUS_RETRY_MS_DEFAULT,
    TASKS_MAX_DEFAULT,
};

/// How to run an [`AgentNode`].
#[derive(Clone, Debug)]
pub struct AgentNodeConfig {
    /// Identity, attributes, resources and incarnation; `seq`, `tasks` and `version` are
    /// kept by the node.
    pub advert: AgentAdvert,
    /// The wait between two adverts when nothing changes.
    pub advert_period_ms: u64,
    /// The wait before the first resend of an unacknowledged status.
    pub status_retry_ms: u64,
    /// The wait doubles after every resend up to this.
    pub status_retry_max_ms: u64,
    /// Launches beyond this many held tasks are refused.
    pub tasks_max: usize,
    /// Unix milliseconds at `Millis(0)`: status timestamps are `wall_origin_ms + now`.
    pub wall_origin_ms: u64,
}

impl AgentNodeConfig {
    /// The defaults for everything but the advert and the wall-clock origin.
    pub fn new(advert: AgentAdvert, wall_origin_ms: u64) -> AgentNodeConfig {
        AgentNodeConfig {
            advert,
            advert_period_ms: ADVERT_PERIOD_MS_DEFAULT,
            status_retry_ms: STATUS_RETRY_MS_DEFAULT,
            status_retry_max_ms: STATUS_RETRY_MAX_MS_DEFAULT,
            tasks_max: TASKS_MAX_DEFAULT,
            wall_origin_ms,
        }
    }
}

/// How a task's executor says it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskEnd {
    /// A terminal state.
    pub state: TaskState,
    pub exit_code: Option<i32>,
    pub reason: String,
}

/// What the node wants done; see [`AgentNode::poll_action`].
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub enum AgentAction {
    PublishAdvert(AgentAdvert),
    PublishStatus(TaskStatus),
    /// A change to the journal, to be on disk before anything after it is published.
    Journal(JournalChange),
    StartTask {
        framework_id: FrameworkId,
        task: TaskSpec,
    },
    /// Stop the task's executor. After [`AgentNode::recover`] also for a surviving
    /// executor no held task owns: stop and remove it.
    KillTask {
        task_id: TaskId,
        grace_ms: u64,
    },
    /// The task's terminal status was acknowledged, or the task died with the previous
    /// agent process: what is left of it (its sandbox) may go.
    ForgetTask {
        task_id: TaskId,
    },
    /// Shut down: tell the master the agent leaves (it then counts it gone at once, not
    /// after its lost timeout), and stop.
    Leave,
    /// Stop without telling the master anything: another process has this agent's id
    /// (`AgentCommand::Stop`), so a leave would end that one's registration.
    TakenOver,
}

/// How long a shutting-down agent waits for its killed tasks' statuses to be
/// acknowledged before it leaves anyway.
pub const SHUTDOWN_DRAIN_MS: u64 = 5_000;

/// One task the node holds.
#[derive(Clone, Debug)]
pub(crate) struct HeldTask {
    pub(crate) framework_id: FrameworkId,
    /// Without the ids: the task's is its key in the node's map, the agent's the node's own.
    pub(crate) latest: StatusBody,
    /// Listed in the advert, so that a restarted master can account for the task.
    name: Box<str>,
    resources: Resources,
    /// An OCI task, whose container may outlive the agent process.
    oci: bool,
    /// `Some` while `latest` is not acknowledged.
    resend: Option<Box<Resend>>,
    /// The task as launched, for one whose policy restarts it in place while offline.
    pub(crate) spec: Option<Box<TaskSpec>>,
    /// Tasks started for it here, the first included.
    pub(crate) starts: u32,
    /// Ended and waiting to start again in place (`offline.rs`). Boxed, as `spec` is:
    /// only a task restarted while its agent is offline has one.
    pub(crate) restart: Option<Box<PendingRestart>>,
    /// Somebody asked for its kill: its end is theirs, even if it comes during a shutdown.
    kill_requested: bool,
}

impl HeldTask {
    /// Its latest status, whole.
    pub(crate) fn status(&self, task_id: &TaskId, agent_id: &AgentId) -> TaskStatus {
        self.latest.with_ids(task_id, &self.framework_id, agent_id)
    }
}

/// A task that ended while no master was reachable, waiting out its backoff.
#[derive(Clone, Debug)]
pub(crate) struct PendingRestart {
    pub(crate) at: Millis,
    /// How it ended: reported after all if a master appears first.
    pub(crate) end: TaskEnd,
}

/// When an unacknowledged status is sent again, and the wait after that send.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Resend {
    pub(crate) at: Millis,
    pub(crate) wait_ms: u64,
}

/// The agent's state machine: the tasks it holds, their status updates until
/// acknowledged, its journal and its adverts.
///
/// Call order: [`AgentNode::new`], then [`AgentNode::recover`] with the journal of the
/// previous process (if any), then any `handle_*` in any order, draining
/// [`AgentNode::poll_action`] after each and arming one timer at
/// [`AgentNode::poll_timeout`]. The first advert is due at once (`Millis(0)`), so it
/// lists the recovered tasks. Time is monotonic: `now` never goes back between calls.
#[derive(Debug)]
pub struct AgentNode {
    pub(crate) advert: AgentAdvert,
    advert_period_ms: u64,
    pub(crate) status_retry_ms: u64,
    status_retry_max_ms: u64,
    tasks_max: usize,
    wall_origin_ms: u64,
    /// By task id, in one sorted vector: an agent holds a few tasks (at most `tasks_max`),
    /// and a B-tree's first node alone was hundreds of bytes per agent at fleet scale.
    /// Boxed, as a held task is a few hundred bytes and the vector moves them on insert.
    pub(crate) tasks: LiteMap<TaskId, Box<HeldTask>>,
    /// Every `HeldTask::resend`, by time: the next resends are the first entries.
    resends: BTreeSet<(Millis, TaskId)>,
    /// Every `HeldTask::restart`, by time.
    pub(crate) restarts: BTreeSet<(Millis, TaskId)>,
    /// A master's liveliness token is seen. Tasks are restarted in place only while not.
    pub(crate) master_present: bool,
    advert_at: Millis,
    /// The last status uuid's counter (the low 64 bits; the incarnation is above them).
    statuses_minted: u64,
    pub(crate) actions: VecDeque<AgentAction>,
    /// Shutting down: the agent leaves once it holds no task, or at this time.
    pub(crate) leave_by: Option<Millis>,
    /// The master registered a later process of this id: stopping, with
    /// [`AgentAction::TakenOver`] instead of a leave.
    taken_over: bool,
}

impl AgentNode {
    pub fn new(config: AgentNodeConfig) -> AgentNode {
        let mut advert = config.advert;
        advert.seq = 0;
        advert.tasks.clear();
        env!("CARGO_PKG_VERSION").clone_into(&mut advert.version);
        let status_retry_ms = config.status_retry_ms.max(1);
        AgentNode {
            advert,
            advert_period_ms: config.advert_period_ms.max(1),
            status_retry_ms,
            status_retry_max_ms: config.status_retry_max_ms.max(status_retry_ms),
            tasks_max: config.tasks_max,
            wall_origin_ms: config.wall_origin_ms,
            tasks: LiteMap::new(),
            resends: BTreeSet::new(),
            restarts: BTreeSet::new(),
            master_present: false,
            advert_at: Millis::ZERO,
            statuses_minted: 0,
            actions: VecDeque::new(),
            leave_by: None,
            taken_over: false,
        }
    }

    /// Takes back the tasks of the previous agent process: `journal` as it last saved
    /// it, `survivors` the tasks whose executors outlived it (OCI containers still
    /// there). A task neither terminal nor surviving is reported `failed`
    /// ([`AGENT_RESTARTED`]) and its leftovers forgotten, unless its policy restarts it in
    /// place (then it waits out its backoff, and is reported `failed` after all if a master
    /// appears first: `offline.rs`); a survivor that no journaled live OCI task owns is
    /// killed. Every recovered status is sent at once (it may never have reached the
    /// master) and then until acknowledged.
    pub fn recover(
        &mut self,
        now: Millis,
        journal: Vec<JournalEntry>,
        survivors: &BTreeSet<TaskId>,
    ) {
        for entry in &journal {
            self.count_past(entry.status().uuid);
        }
        let mut kept = BTreeSet::new();
        for entry in journal {
            let task_id = entry.status().task_id.clone();
            let terminal = entry.status().state.is_terminal();
            let survived = entry.oci && !terminal && survivors.contains(&task_id);
            if survived {
                kept.insert(task_id.clone());
            }
            tracing::info!(%task_id, state = entry.status().state.as_str(), "task recovered from the status journal");
            let task = HeldTask {
                framework_id: entry.task.status.framework_id.clone(),
                latest: StatusBody::of(entry.task.status),
                name: entry.task.name.into_boxed_str(),
                resources: entry.task.resources,
                oci: entry.oci,
                resend: None,
                spec: entry.spec.map(Box::new),
                starts: entry.starts,
                restart: None,
                kill_requested: false,
            };
            if !terminal && !survived {
                let end = TaskEnd {
                    state: TaskState::Failed,
                    exit_code: None,
                    reason: AGENT_RESTARTED.to_owned(),
                };
                self.recover_died(now, task_id, task, end);
                continue;
            }
            self.tasks.insert(task_id.clone(), Box::new(task));
            let wait_ms = self.status_retry_ms;
            self.schedule(&task_id, Some(Resend { at: now, wait_ms }));
        }
        for task_id in survivors.difference(&kept) {
            tracing::warn!(%task_id, "an executor no journaled task owns; killing it");
            self.actions.push_back(AgentAction::KillTask {
                task_id: task_id.clone(),
                grace_ms: 0,
            });
        }
    }

    /// Launch, kill or acknowledge; the reply is the master's answer.
    pub fn handle_command(&mut self, now: Millis, command: AgentCommand) -> AgentReply {
        let done = match command {
            AgentCommand::Launch { framework_id, task } => self.launch(now, framework_id, task),
            AgentCommand::Kill { task_id, grace_ms } => self.kill(now, task_id, grace_ms),
            AgentCommand::Acknowledge { acks } => self.acknowledge_all(&acks),
            AgentCommand::Stop { incarnation } => {
                self.stop_taken_over(now, incarnation);
                Ok(())
            }
        };
        match done {
            Ok(()) => AgentReply::Ok,
            Err(refused) => AgentReply::Error {
                message: refused.to_string(),
            },
        }
    }

    /// The task's executor started it.
    pub fn handle_task_running(&mut self, now: Millis, task_id: &TaskId) {
        let Some(task) = self.tasks.get(task_id) else {
            return;
        };
        let state = task.latest.state;
        if state.is_terminal() || state == TaskState::Running {
            return;
        }
        let framework_id = task.framework_id.clone();
        // A restart's `starting` says why it started again; `running` keeps saying it.
        let reason = task.latest.reason.clone();
        let status = TaskStatus {
            reason,
            ..self.status(now, task_id, &framework_id, TaskState::Running)
        };
        self.supersede(now, status);
    }

    /// The task's executor says how it ended. A task already ended (killed before it
    /// started, or reported failed at recovery) keeps its first end.
    pub fn handle_task_ended(&mut self, now: Millis, task_id: &TaskId, end: TaskEnd) {
        debug_assert!(end.state.is_terminal(), "{end:?} does not end a task");
        let Some(task) = self.tasks.get(task_id) else {
            return;
        };
        if task.latest.state.is_terminal() || !end.state.is_terminal() {
            return;
        }
        let kill_requested = task.kill_requested;
        if self.restart_offline(now, task_id, &end) {
            return;
        }
        let mut end = end;
        if self.leave_by.is_some() && end.state == TaskState::Killed && !kill_requested {
            // Killed because this agent stops, not at anyone's request.
            end.reason = proto::AGENT_STOPPED.to_owned();
        }
        self.report_end(now, task_id, end);
    }

    /// Makes the task's end its latest status.
    pub(crate) fn report_end(&mut self, now: Millis, task_id: &TaskId, end: TaskEnd) {
        let Some(task) = self.tasks.get(task_id) else {
            return;
        };
        let framework_id = task.framework_id.clone();
        let status = TaskStatus {
            exit_code: end.exit_code,
            reason: end.reason,
            ..self.status(now, task_id, &framework_id, end.state)
        };
        self.supersede(now, status);
    }

    /// The master (re)appeared: it may have missed anything, so advertise and send every
    /// unacknowledged status at once, and start their backoff over.
    pub fn handle_master_appeared(&mut self, now: Millis) {
        self.master_present = true;
        // Ends standing for restarts not yet started go first, so that the advert lists
        // them ended (not as the `running` they had), each published once.
        let reported = self.report_pending_restarts(now);
        self.publish_advert(now);
        let unacknowledged: Vec<TaskId> = self
            .resends
            .iter()
            .map(|(_, id)| id.clone())
            .filter(|id| !reported.contains(id))
            .collect();
        for task_id in unacknowledged {
            self.send(now, &task_id, self.status_retry_ms);
        }
    }

    /// The master's census: kept if newer than the one held, and listed in later adverts
    /// (not published at once: it matters only to a master that replaces this one, and
    /// every agent advertises when a master appears).
    pub fn handle_master_census(&mut self, census: MasterCensus) {
        if self
            .advert
            .last_census
            .is_none_or(|held| census.is_newer_than(&held))
        {
            self.advert.last_census = Some(census);
        }
    }

    /// Identity, attributes or resources changed: advertise the new ones at once.
    pub fn handle_advert_changed(&mut self, now: Millis, advert: AgentAdvert) {
        self.advert = AgentAdvert {
            seq: self.advert.seq,
            version: self.advert.version.clone(),
            tasks: Vec::new(),
            last_census: self.advert.last_census,
            ..advert
        };
        self.publish_advert(now);
    }

    /// The agent is stopping: kill every task that has not ended, at once, and refuse
    /// launches. It leaves ([`AgentAction::Leave`]) once every end is acknowledged, or
    /// [`SHUTDOWN_DRAIN_MS`] from now.
    pub fn handle_shutdown(&mut self, now: Millis) {
        let _ = self.report_pending_restarts(now);
        for (task_id, task) in &self.tasks {
            if !task.latest.state.is_terminal() {
                self.actions.push_back(AgentAction::KillTask {
                    task_id: task_id.clone(),
                    grace_ms: 0,
                });
            }
        }
        self.leave_by = Some(now.plus_ms(SHUTDOWN_DRAIN_MS));
        self.leave_if_settled();
    }

    /// `AgentCommand::Stop`: when it names this process, its id went to a later one
    /// while it was away and its tasks were told lost. It kills them and stops as on a
    /// shutdown, but without a leave, which would end the other process's registration.
    fn stop_taken_over(&mut self, now: Millis, incarnation: u64) {
        if incarnation != self.advert.incarnation || self.taken_over {
            return;
        }
        tracing::error!(
            agent_id = %self.advert.agent_id,
            incarnation,
            "another process has this agent's id now (this one was away too long); killing the tasks and stopping"
        );
        self.taken_over = true;
        self.handle_shutdown(now);
    }

    /// How a shutdown ends.
    fn leave_action(&self) -> AgentAction {
        match self.taken_over {
            true => AgentAction::TakenOver,
            false => AgentAction::Leave,
        }
    }

    /// Leaves when shutting down and every task's end was acknowledged.
    fn leave_if_settled(&mut self) {
        if self.leave_by.is_some() && self.tasks.is_empty() {
            self.leave_by = None;
            self.actions.push_back(self.leave_action());
        }
    }

    /// When [`AgentNode::handle_timeout`] is next due: the next advert, status resend or
    /// restart in place.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let resend = self.resends.first().map(|(at, _)| *at);
        let restart = self.restarts.first().map(|(at, _)| *at);
        let next = [resend, restart]
            .into_iter()
            .flatten()
            .fold(self.advert_at, Millis::min);
        Some(self.leave_by.map_or(next, |at| at.min(next)))
    }

    /// Advertises when the period is up and sends again every unacknowledged status
    /// that is due, waiting twice as long (up to `status_retry_max_ms`) for the next.
    pub fn handle_timeout(&mut self, now: Millis) {
        if self.leave_by.is_some_and(|at| at <= now) {
            tracing::warn!(
                tasks = self.tasks.len(),
                "leaving with statuses not acknowledged"
            );
            self.leave_by = None;
            self.actions.push_back(self.leave_action());
        }
        self.start_due_restarts(now);
        if now >= self.advert_at {
            self.publish_advert(now);
        }
        // Each send moves its task past `now` (waits are at least 1 ms): at most one
        // round per held task.
        while let Some((at, task_id)) = self.resends.first().cloned() {
            if at > now {
                break;
            }
            let wait_ms = self
                .tasks
                .get(&task_id)
                .and_then(|t| t.resend.as_deref().copied())
                .map_or(self.status_retry_ms, |r| r.wait_ms);
            self.send(now, &task_id, wait_ms);
        }
    }

    pub fn poll_action(&mut self) -> Option<AgentAction> {
        let action = self.actions.pop_front();
        if self.actions.is_empty() && self.actions.capacity() > 0 {
            // A drained queue gives its memory back: a fleet of idle nodes (`wasmos sim`)
            // would otherwise each keep room for their largest burst.
            self.actions = VecDeque::new();
        }
        action
    }

    /// The latest status of each held task, by task id.
    pub fn tasks(&self) -> impl Iterator<Item = TaskStatus> + '_ {
        let agent_id = &self.advert.agent_id;
        (self.tasks.iter()).map(move |(id, t)| t.status(id, agent_id))
    }

    /// The latest status of one held task.
    pub fn task(&self, task_id: &TaskId) -> Option<TaskStatus> {
        let task = self.tasks.get(task_id)?;
        Some(task.status(task_id, &self.advert.agent_id))
    }

    /// The resources a held task was launched with.
    pub fn task_resources(&self, task_id: &TaskId) -> Option<&Resources> {
        self.tasks.get(task_id).map(|t| &t.resources)
    }

    /// The advert as last published (before the first: as configured).
    pub fn advert(&self) -> &AgentAdvert {
        &self.advert
    }

    fn launch(
        &mut self,
        now: Millis,
        framework_id: FrameworkId,
        spec: TaskSpec,
    ) -> Result<(), CommandRefused> {
        if self.leave_by.is_some() {
            return Err(CommandRefused::ShuttingDown(self.advert.agent_id.clone()));
        }
        let task_id = spec.task_id.clone();
        proto::keys::valid_chunk("task id", task_id.as_str())?;
        if task_id.as_str().starts_with('.') {
            return Err(CommandRefused::TaskIdDot(task_id));
        }
        if let Some(policy) = &spec.disconnect {
            policy.check().map_err(|error| CommandRefused::Policy {
                task_id: task_id.clone(),
                error,
            })?;
        }
        let agent_id = self.advert.agent_id.clone();
        if self.tasks.contains_key(&task_id) {
            return Err(CommandRefused::TaskHeld { agent_id, task_id });
        }
        if self.tasks.len() >= self.tasks_max {
            let tasks_max = self.tasks_max;
            return Err(CommandRefused::TasksFull {
                agent_id,
                tasks_max,
            });
        }
        let latest = self.status(now, &task_id, &framework_id, TaskState::Starting);
        let task = HeldTask {
            framework_id: framework_id.clone(),
            latest: StatusBody::of(latest.clone()),
            name: spec.name.as_str().into(),
            resources: spec.resources.clone(),
            oci: matches!(spec.kind, TaskKind::Oci(_)),
            resend: None,
            spec: crate::offline::restarts_in_place(&spec).then(|| Box::new(spec.clone())),
            starts: 1,
            restart: None,
            kill_requested: false,
        };
        self.tasks.insert(task_id, Box::new(task));
        self.supersede(now, latest);
        self.actions.push_back(AgentAction::StartTask {
            framework_id,
            task: spec,
        });
        Ok(())
    }

    fn kill(&mut self, now: Millis, task_id: TaskId, grace_ms: u64) -> Result<(), CommandRefused> {
        if self.end_pending_restart(now, &task_id) {
            return Ok(());
        }
        match self.tasks.get_mut(&task_id) {
            Some(task) if !task.latest.state.is_terminal() => {
                task.kill_requested = true;
                self.actions
                    .push_back(AgentAction::KillTask { task_id, grace_ms });
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err(CommandRefused::TaskUnknown {
                agent_id: self.advert.agent_id.clone(),
                task_id,
            }),
        }
    }

    /// Each acknowledgement in turn; more than a call may carry are refused whole.
    fn acknowledge_all(&mut self, acks: &[Ack]) -> Result<(), CommandRefused> {
        if acks.len() > ACKS_PER_CALL_MAX {
            return Err(CommandRefused::TooManyAcks(acks.len()));
        }
        for ack in acks {
            self.acknowledge(&ack.task_id, ack.status_uuid);
        }
        Ok(())
    }

    fn acknowledge(&mut self, task_id: &TaskId, status_uuid: StatusUuid) {
        let Some(task) = self.tasks.get(task_id) else {
            return;
        };
        if task.latest.uuid != status_uuid {
            return; // An older, superseded status.
        }
        let terminal = task.latest.state.is_terminal();
        self.schedule(task_id, None);
        if terminal {
            self.tasks.remove(task_id);
            self.actions
                .push_back(AgentAction::Journal(JournalChange::Remove(task_id.clone())));
            self.actions.push_back(AgentAction::ForgetTask {
                task_id: task_id.clone(),
            });
            self.leave_if_settled();
        }
    }

    /// Makes `status` its task's latest (replacing an unacknowledged older one),
    /// journals it and publishes it.
    pub(crate) fn supersede(&mut self, now: Millis, status: TaskStatus) {
        let task_id = status.task_id.clone();
        let Some(task) = self.tasks.get_mut(&task_id) else {
            return;
        };
        task.latest = StatusBody::of(status.clone());
        let entry = Box::new(journal_entry(&task_id, &self.advert.agent_id, task));
        self.actions
            .push_back(AgentAction::Journal(JournalChange::Put(entry)));
        let at = now.plus_ms(self.status_retry_ms);
        let wait_ms = self.doubled(self.status_retry_ms);
        self.schedule(&task_id, Some(Resend { at, wait_ms }));
        self.actions.push_back(AgentAction::PublishStatus(status));
    }

    /// Publishes the task's latest status (again) and sends it next after `wait_ms`.
    fn send(&mut self, now: Millis, task_id: &TaskId, wait_ms: u64) {
        let Some(task) = self.tasks.get(task_id) else {
            self.schedule(task_id, None);
            return;
        };
        self.actions.push_back(AgentAction::PublishStatus(
            task.status(task_id, &self.advert.agent_id),
        ));
        let next = Resend {
            at: now.plus_ms(wait_ms),
            wait_ms: self.doubled(wait_ms),
        };
        self.schedule(task_id, Some(next));
    }

    fn doubled(&self, wait_ms: u64) -> u64 {
        wait_ms.saturating_mul(2).min(self.status_retry_max_ms)
    }

    /// Sets (or clears) the task's resend, keeping `resends` in step.
    pub(crate) fn schedule(&mut self, task_id: &TaskId, resend: Option<Resend>) {
        let Some(task) = self.tasks.get_mut(task_id) else {
            return;
        };
        if let Some(old) = task.resend.take() {
            self.resends.remove(&(old.at, task_id.clone()));
            if self.resends.is_empty() {
                // An emptied B-tree keeps its root node (hundreds of bytes): on an agent
                // whose statuses are all acknowledged, the usual state, none is held.
                self.resends = BTreeSet::new();
            }
        }
        if let Some(new) = resend {
            self.resends.insert((new.at, task_id.clone()));
        }
        task.resend = resend.map(Box::new);
    }

    /// A new status of the task (no exit code, no reason), its uuid after every other.
    pub(crate) fn status(
        &mut self,
        now: Millis,
        task_id: &TaskId,
        framework_id: &FrameworkId,
        state: TaskState,
    ) -> TaskStatus {
        self.statuses_minted += 1;
        let uuid = (u128::from(self.advert.incarnation) << 64) | u128::from(self.statuses_minted);
        TaskStatus {
            task_id: task_id.clone(),
            framework_id: framework_id.clone(),
            agent_id: self.advert.agent_id.clone(),
            state,
            exit_code: None,
            reason: String::new(),
            uuid: StatusUuid(uuid),
            timestamp_ms: self.wall_origin_ms.saturating_add(now.0),
        }
    }

    /// A restarted agent that kept its incarnation must not mint the uuids of its past
    /// statuses again.
    fn count_past(&mut self, uuid: StatusUuid) {
        if uuid.0 >> 64 == u128::from(self.advert.incarnation) {
            // The low 64 bits, by construction.
            let counter = u64::try_from(uuid.0 & u128::from(u64::MAX)).unwrap_or(u64::MAX);
            self.statuses_minted = self.statuses_minted.max(counter);
        }
    }

    fn publish_advert(&mut self, now: Millis) {
        self.advert.seq += 1;
        let agent_id = &self.advert.agent_id;
        let tasks = (self.tasks.iter()).map(|(id, t)| advert_task(id, agent_id, t));
        self.advert.tasks = tasks.collect();
        self.actions
            .push_back(AgentAction::PublishAdvert(self.advert.clone()));
        self.advert_at = now.plus_ms(self.advert_period_ms);
    }
}

pub(crate) fn journal_entry(task_id: &TaskId, agent_id: &AgentId, task: &HeldTask) -> JournalEntry {
    JournalEntry {
        task: advert_task(task_id, agent_id, task),
        oci: task.oci,
        spec: task.spec.as_deref().cloned(),
        starts: task.starts,
    }
}

fn advert_task(task_id: &TaskId, agent_id: &AgentId, task: &HeldTask) -> AdvertTask {
    AdvertTask {
        status: task.status(task_id, agent_id),
        name: task.name.to_string(),
        resources: task.resources.clone(),
    }
}
