//! The agent's driver: a pump around [`AgentNode`]. It feeds the node commands, runner
//! updates, the master's appearance, advert changes and its one timer, with the time, and
//! carries out what the node asks: zenoh puts, journal writes, runners started and
//! cancelled, leftovers removed. Every rule is the node's; the driver only keeps the
//! runners' cancel handles, where running tasks' output is read, and the output of ended
//! tasks (for `agents/<id>/logs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use agent::oci::OciContainer;
use agent::wasm::CapturedOutput;
use agent_core::{AgentAction, AgentNode, AgentNodeConfig, TaskEnd};
use net::Responder;
use net::clock::{Clock, unix_ms};
use proto::admin::{LOG_STREAM_BYTES_MAX, LogOffsets, LogsReply, LogsRequest, TaskOutput};
use proto::{AgentAdvert, AgentReply, TaskId, TaskState, TaskStatus};
use tokio::sync::{mpsc, oneshot, watch};

use crate::ended_outputs::EndedOutputs;
use crate::journal::StatusJournal;
use crate::runner::{self, Cancel, Executors, LiveOutput, RunnerUpdate};
use crate::{AgentDaemonConfig, INPUTS_BATCH_MAX, Input, TASKS_MAX};

pub(crate) struct Driver {
    executors: Executors,
    node: AgentNode,
    clock: Clock,
    /// How to stop each task's runner, while the node holds the task.
    cancels: BTreeMap<TaskId, Cancel>,
    /// Containers found at start that no runner watches yet: the node says which to kill
    /// during recovery; the driver watches the rest.
    recovered: BTreeMap<TaskId, OciContainer>,
    /// Where running tasks' output is read.
    live: BTreeMap<TaskId, LiveOutput>,
    /// Output of ended tasks (the last [`LOG_STREAM_BYTES_MAX`] of each stream).
    outputs: EndedOutputs,
    inputs: mpsc::Sender<Input>,
    journal: StatusJournal,
    /// Answered once the agent has left.
    shutdown_done: Option<oneshot::Sender<()>>,
    /// Told once the agent stopped because another process has its id.
    taken_over: watch::Sender<bool>,
    left: bool,
}

impl Driver {
    pub(crate) fn new(
        config: &AgentDaemonConfig,
        executors: Executors,
        inputs: mpsc::Sender<Input>,
        taken_over: watch::Sender<bool>,
    ) -> Driver {
        let clock = Clock::start();
        let node = AgentNode::new(AgentNodeConfig {
            advert: config.advert.clone(),
            advert_period_ms: config.advert_period_ms,
            status_retry_ms: config.status_retry_ms,
            status_retry_max_ms: config.status_retry_max_ms,
            tasks_max: TASKS_MAX,
            wall_origin_ms: unix_ms(),
        });
        Driver {
            executors,
            node,
            clock,
            cancels: BTreeMap::new(),
            recovered: BTreeMap::new(),
            live: BTreeMap::new(),
            outputs: EndedOutputs::default(),
            inputs,
            journal: StatusJournal::new(&config.work_dir),
            shutdown_done: None,
            taken_over,
            left: false,
        }
    }

    pub(crate) async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        self.recover().await;
        loop {
            let deadline = self.node.poll_timeout().map(|at| self.clock.instant_of(at));
            let timer = async move {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            let mut replies = Vec::new();
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => {
                        self.handle(input, &mut replies);
                        // Whatever else waits goes in the same batch: one journal commit.
                        for _ in 1..INPUTS_BATCH_MAX {
                            let Ok(input) = inputs.try_recv() else { break };
                            self.handle(input, &mut replies);
                        }
                    }
                    None => return,
                },
                () = timer => self.node.handle_timeout(self.clock.now()),
            }
            self.carry_out().await;
            // Launches are journaled, published and started before the master hears
            // that they were accepted.
            for (responder, reply) in replies {
                if let Err(e) = responder.reply(&reply).await {
                    tracing::debug!(%e, "could not answer a master command");
                }
            }
            if self.left {
                return;
            }
        }
    }

    /// Hands `input` to the node; a command's answer goes in `replies`, to be sent once
    /// the batch is carried out.
    fn handle(&mut self, input: Input, replies: &mut Vec<(Responder, AgentReply)>) {
        let now = self.clock.now();
        match input {
            Input::Command(command, responder) => {
                replies.push((responder, self.node.handle_command(now, *command)));
            }
            Input::Logs(request, responder) => {
                self.log_source(&request.task_id).answer(request, responder);
            }
            Input::Runner { task_id, update } => self.handle_runner(now, &task_id, update),
            Input::MasterAppeared => self.node.handle_master_appeared(now),
            Input::MasterGone => self.node.handle_master_gone(now),
            Input::MasterCensus(census) => self.node.handle_master_census(census),
            Input::SetAdvert(advert) => self.node.handle_advert_changed(now, *advert),
            Input::Tasks(reply) => {
                let _ = reply.send(self.node.tasks().collect());
            }
            Input::Shutdown(done) => {
                // The node kills the tasks and leaves once their ends are acknowledged.
                self.shutdown_done = Some(done);
                self.node.handle_shutdown(now);
            }
        }
    }

    fn handle_runner(&mut self, now: proto::Millis, task_id: &TaskId, update: RunnerUpdate) {
        match update {
            RunnerUpdate::Running(output) => {
                self.live.insert(task_id.clone(), output);
                self.node.handle_task_running(now, task_id);
            }
            RunnerUpdate::Ended {
                outcome,
                stdout,
                stderr,
            } => {
                self.live.remove(task_id);
                if self.node.task(task_id).is_some() {
                    self.keep_output(task_id, outcome.state, &stdout, &stderr);
                }
                let end = TaskEnd {
                    state: outcome.state,
                    exit_code: outcome.exit_code,
                    reason: outcome.reason,
                };
                self.node.handle_task_ended(now, task_id, end);
            }
        }
    }

    /// Carries out everything the node asked for, in order, but for the journal: its
    /// changes are committed together, once, before anything else is done (group commit;
    /// nothing is published before what it reports is on disk).
    async fn carry_out(&mut self) {
        loop {
            let mut batch = Vec::new();
            while let Some(action) = self.node.poll_action() {
                match action {
                    AgentAction::Journal(change) => self.journal.apply(change),
                    action => batch.push(action),
                }
            }
            self.journal.commit().await;
            if batch.is_empty() {
                return;
            }
            for action in batch {
                self.carry_out_one(action).await;
            }
        }
    }

    async fn carry_out_one(&mut self, action: AgentAction) {
        match action {
            AgentAction::PublishAdvert(advert) => self.publish_advert(&advert).await,
            AgentAction::PublishStatus(status) => self.publish_status(&status).await,
            // Never in a batch (`carry_out` takes journal changes out first).
            AgentAction::Journal(change) => {
                self.journal.apply(change);
                self.journal.commit().await;
            }
            AgentAction::StartTask { task, .. } => {
                // A restart in place: `logs` shows the new run, not the last one's output.
                self.outputs.remove(&task.task_id);
                let cancel = Cancel::default();
                self.cancels.insert(task.task_id.clone(), cancel.clone());
                let (executors, inputs) = (self.executors.clone(), self.inputs.clone());
                tokio::spawn(runner::run(executors, task, cancel, inputs));
            }
            AgentAction::KillTask { task_id, grace_ms } => self.kill(&task_id, grace_ms),
            AgentAction::ForgetTask { task_id } => self.forget(&task_id),
            AgentAction::Leave => self.leave().await,
            AgentAction::TakenOver => {
                self.taken_over.send_replace(true);
                self.left = true;
            }
        }
    }

    /// Tells the master the agent leaves, and answers the shutdown.
    async fn leave(&mut self) {
        let agent_id = self.node.advert().agent_id.clone();
        let key = self.executors.keys.agent_leave(agent_id.as_str());
        if let Some(net) = self.executors.link.now()
            && let Err(e) = net.put(&key, &agent_id).await
        {
            tracing::warn!(%e, "could not tell the master the agent leaves; it will count it lost");
        }
        if let Some(done) = self.shutdown_done.take() {
            let _ = done.send(());
        }
        self.left = true;
    }

    fn kill(&mut self, task_id: &TaskId, grace_ms: u64) {
        if let Some(cancel) = self.cancels.get(task_id) {
            cancel.kill(grace_ms);
        } else if let Some(container) = self.recovered.remove(task_id) {
            tokio::task::spawn_blocking(move || {
                container.kill(Duration::from_millis(grace_ms));
                let _ = container.remove();
            });
        }
    }

    /// Drops the task's cancel handle and its sandbox (gone already unless the task died
    /// with the previous agent process). Its output stays for `logs` until pushed out.
    fn forget(&mut self, task_id: &TaskId) {
        self.cancels.remove(task_id);
        self.live.remove(task_id);
        let sandbox = self.executors.sandboxes.path(task_id);
        if let Err(e) = std::fs::remove_dir_all(&sandbox)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%task_id, sandbox = %sandbox.display(), %e, "could not remove a task's sandbox");
        }
    }

    /// Hands the previous agent process's journal and surviving containers to the node;
    /// watches the containers it keeps.
    async fn recover(&mut self) {
        let containers = self
            .executors
            .oci
            .as_ref()
            .map(|oci| oci.recover())
            .unwrap_or_default();
        self.recovered = containers
            .into_iter()
            .map(|c| (TaskId::new(c.task_id()), c))
            .collect();
        let survivors: BTreeSet<TaskId> = self.recovered.keys().cloned().collect();
        let journal = self.journal.load();
        self.node.recover(self.clock.now(), journal, &survivors);
        let held = self.node.tasks().map(|status| status.task_id).collect();
        self.executors.sandboxes.remove_unheld(held).await;
        self.carry_out().await;
        for (task_id, container) in std::mem::take(&mut self.recovered) {
            self.watch_recovered(container, task_id);
        }
    }

    fn watch_recovered(&mut self, container: OciContainer, task_id: TaskId) {
        let cancel = Cancel::default();
        self.cancels.insert(task_id.clone(), cancel.clone());
        let container = Arc::new(container);
        self.live
            .insert(task_id.clone(), LiveOutput::Oci(container.clone()));
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            let update = runner::watch_container(container, &task_id, &cancel).await;
            let _ = inputs.send(Input::Runner { task_id, update }).await;
        });
    }

    /// Publishes a status if the session is open (the node sends it again until the
    /// master acknowledges it).
    async fn publish_status(&self, status: &TaskStatus) {
        let Some(net) = self.executors.link.now() else {
            return;
        };
        let key = net.keys().agent_status(status.agent_id.as_str());
        if let Err(e) = net.put(&key, status).await {
            tracing::warn!(task_id = %status.task_id, %e, "could not publish a status update; it will be retried");
        }
    }

    /// Publishes the advert if the session is open (the node advertises again when the
    /// master appears, and periodically).
    async fn publish_advert(&self, advert: &AgentAdvert) {
        let Some(net) = self.executors.link.now() else {
            return;
        };
        let key = net.keys().agent_advert(advert.agent_id.as_str());
        if let Err(e) = net.put(&key, advert).await {
            tracing::warn!(%e, "could not publish the advert");
        }
    }

    fn keep_output(
        &mut self,
        task_id: &TaskId,
        state: TaskState,
        stdout: &CapturedOutput,
        stderr: &CapturedOutput,
    ) {
        let output = TaskOutput {
            state,
            stdout: stdout.view().select(None, LOG_STREAM_BYTES_MAX),
            stderr: stderr.view().select(None, LOG_STREAM_BYTES_MAX),
        };
        self.outputs.insert(task_id.clone(), output);
    }

    /// Where a task's output is read from: a copy of what an ended task kept, or the
    /// running task's streams.
    fn log_source(&self, task_id: &TaskId) -> LogSource {
        if let Some(output) = self.outputs.get(task_id) {
            return LogSource::Ended(output.clone());
        }
        match (self.node.task(task_id), self.live.get(task_id)) {
            (Some(status), Some(live)) => LogSource::Live(status.state, live.clone()),
            (Some(status), None) => LogSource::Ended(Arc::new(TaskOutput::empty(
                status.state,
                LogOffsets::default(),
            ))),
            (None, _) => LogSource::Gone(format!(
                "agent {} has no output of task {task_id} (it never ran here, or its output was dropped to make room)",
                self.node.advert().agent_id
            )),
        }
    }
}

/// Where a logs request is answered from, taken out of the driver so that reading (a
/// container's log files, a copy of a capture) happens off its loop.
enum LogSource {
    Ended(Arc<TaskOutput>),
    Live(TaskState, LiveOutput),
    Gone(String),
}

impl LogSource {
    fn read(self, from: Option<LogOffsets>) -> LogsReply {
        let max = LOG_STREAM_BYTES_MAX;
        match self {
            LogSource::Ended(output) => LogsReply::Output(output.select(from, max)),
            LogSource::Live(state, live) => {
                let (stdout, stderr) = live.parts(from, max);
                LogsReply::Output(TaskOutput {
                    state,
                    stdout,
                    stderr,
                })
            }
            LogSource::Gone(message) => LogsReply::Error { message },
        }
    }

    /// Answers `request` on a blocking thread, then replies.
    fn answer(self, request: LogsRequest, responder: Responder) {
        tokio::spawn(async move {
            let reading = tokio::task::spawn_blocking(move || self.read(request.from));
            let reply = reading.await.unwrap_or_else(|e| LogsReply::Error {
                message: format!("reading the task's output ended abnormally: {e}"),
            });
            if let Err(e) = responder.reply(&reply).await {
                tracing::debug!(%e, "could not answer a logs request");
            }
        });
    }
}
