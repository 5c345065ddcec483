//! The agent's driver: the one task that owns the agent's tasks and their status
//! updates, and answers the master's commands.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use agent::wasm::CapturedOutput;
use proto::admin::{LOG_STREAM_BYTES_MAX, LogsReply};
use proto::{
    AgentAdvert, AgentCommand, AgentReply, FrameworkId, StatusUuid, TaskId, TaskSpec, TaskState,
    TaskStatus,
};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::runner::{self, Cancel, Executors, RunnerUpdate};
use super::{AgentDaemonConfig, Input, OUTPUTS_KEPT_MAX, TASKS_MAX};
use crate::clock::unix_ms;

/// One task the agent holds.
struct Task {
    latest: TaskStatus,
    /// `latest` has not been acknowledged yet and is sent again on every retry tick.
    unacknowledged: bool,
    cancel: Cancel,
}

pub(crate) struct Driver {
    executors: Executors,
    advert: AgentAdvert,
    advert_period_ms: u64,
    status_retry_ms: u64,
    tasks: BTreeMap<TaskId, Task>,
    /// Output of ended tasks, oldest first in `outputs_order`.
    outputs: BTreeMap<TaskId, LogsReply>,
    outputs_order: VecDeque<TaskId>,
    inputs: mpsc::Sender<Input>,
}

impl Driver {
    pub(crate) fn new(
        config: &AgentDaemonConfig,
        executors: Executors,
        inputs: mpsc::Sender<Input>,
    ) -> Driver {
        let mut advert = config.advert.clone();
        advert.seq = 0;
        env!("CARGO_PKG_VERSION").clone_into(&mut advert.version);
        Driver {
            executors,
            advert,
            advert_period_ms: config.advert_period_ms.max(1),
            status_retry_ms: config.status_retry_ms.max(1),
            tasks: BTreeMap::new(),
            outputs: BTreeMap::new(),
            outputs_order: VecDeque::new(),
            inputs,
        }
    }

    pub(crate) async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        let mut advert_timer = tokio::time::interval(Duration::from_millis(self.advert_period_ms));
        let mut retry_timer = tokio::time::interval(Duration::from_millis(self.status_retry_ms));
        advert_timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        retry_timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(Input::Shutdown(done)) => {
                        self.kill_all();
                        let _ = done.send(());
                        return;
                    }
                    Some(input) => self.handle(input).await,
                    None => return,
                },
                _ = advert_timer.tick() => self.publish_advert().await,
                _ = retry_timer.tick() => self.resend_unacknowledged().await,
            }
        }
    }

    async fn handle(&mut self, input: Input) {
        match input {
            Input::Command(command, responder) => {
                let reply = self.handle_command(*command).await;
                if let Err(e) = responder.reply(&reply).await {
                    tracing::debug!(%e, "could not answer a master command");
                }
            }
            Input::Logs(request, responder) => {
                let reply = self.logs(&request.task_id);
                if let Err(e) = responder.reply(&reply).await {
                    tracing::debug!(%e, "could not answer a logs request");
                }
            }
            Input::Runner { task_id, update } => self.handle_runner(task_id, update).await,
            Input::MasterAppeared => {
                self.publish_advert().await;
                self.resend_unacknowledged().await;
            }
            Input::SetAdvert(advert) => {
                self.advert = AgentAdvert {
                    seq: self.advert.seq,
                    version: self.advert.version.clone(),
                    ..*advert
                };
                self.publish_advert().await;
            }
            Input::Tasks(reply) => {
                let _ = reply.send(self.tasks.values().map(|t| t.latest.clone()).collect());
            }
            Input::Shutdown(done) => {
                self.kill_all();
                let _ = done.send(());
            }
        }
    }

    async fn handle_command(&mut self, command: AgentCommand) -> AgentReply {
        let refused = |message: String| AgentReply::Error { message };
        match command {
            AgentCommand::Launch { framework_id, task } => {
                match self.launch(framework_id, task).await {
                    Ok(()) => AgentReply::Ok,
                    Err(message) => refused(message),
                }
            }
            AgentCommand::Kill { task_id, grace_ms } => match self.tasks.get(&task_id) {
                Some(task) if !task.latest.state.is_terminal() => {
                    task.cancel.kill(grace_ms);
                    AgentReply::Ok
                }
                Some(_) => AgentReply::Ok,
                None => refused(format!(
                    "agent {} holds no task {task_id}",
                    self.advert.agent_id
                )),
            },
            AgentCommand::Acknowledge {
                task_id,
                status_uuid,
            } => {
                self.acknowledge(&task_id, status_uuid);
                AgentReply::Ok
            }
        }
    }

    async fn launch(&mut self, framework_id: FrameworkId, spec: TaskSpec) -> Result<(), String> {
        let task_id = spec.task_id.clone();
        // The task id names the sandbox directory: it must be one plain path component.
        proto::keys::valid_chunk("task id", task_id.as_str()).map_err(|e| e.to_string())?;
        if task_id.as_str().starts_with('.') {
            return Err(format!("task id {task_id:?} must not start with a dot"));
        }
        if self.tasks.contains_key(&task_id) {
            return Err(format!(
                "agent {} already holds a task {task_id}",
                self.advert.agent_id
            ));
        }
        if self.tasks.len() >= TASKS_MAX {
            return Err(format!(
                "agent {} holds {TASKS_MAX} tasks already",
                self.advert.agent_id
            ));
        }
        let cancel = Cancel::default();
        let latest = self.status(
            &task_id,
            &framework_id,
            TaskState::Starting,
            None,
            String::new(),
        );
        self.tasks.insert(
            task_id.clone(),
            Task {
                latest: latest.clone(),
                unacknowledged: true,
                cancel: cancel.clone(),
            },
        );
        self.publish_status(&latest).await;
        tokio::spawn(runner::run(
            self.executors.clone(),
            spec,
            cancel,
            self.inputs.clone(),
        ));
        Ok(())
    }

    async fn handle_runner(&mut self, task_id: TaskId, update: RunnerUpdate) {
        let Some(task) = self.tasks.get(&task_id) else {
            return;
        };
        let framework_id = task.latest.framework_id.clone();
        let status = match update {
            RunnerUpdate::Running => self.status(
                &task_id,
                &framework_id,
                TaskState::Running,
                None,
                String::new(),
            ),
            RunnerUpdate::Ended {
                outcome,
                stdout,
                stderr,
            } => {
                self.keep_output(&task_id, outcome.state, &stdout, &stderr);
                self.status(
                    &task_id,
                    &framework_id,
                    outcome.state,
                    outcome.exit_code,
                    outcome.reason,
                )
            }
        };
        if let Some(task) = self.tasks.get_mut(&task_id) {
            if task.latest.state.is_terminal() {
                return;
            }
            task.latest = status.clone();
            task.unacknowledged = true;
        }
        self.publish_status(&status).await;
    }

    fn keep_output(
        &mut self,
        task_id: &TaskId,
        state: TaskState,
        stdout: &CapturedOutput,
        stderr: &CapturedOutput,
    ) {
        if self.outputs_order.len() >= OUTPUTS_KEPT_MAX
            && let Some(oldest) = self.outputs_order.pop_front()
        {
            self.outputs.remove(&oldest);
        }
        let (stdout, stdout_dropped) = stream_tail(stdout);
        let (stderr, stderr_dropped) = stream_tail(stderr);
        let dropped_bytes = stdout_dropped + stderr_dropped;
        self.outputs.insert(
            task_id.clone(),
            LogsReply::Output {
                state,
                stdout,
                stderr,
                dropped_bytes,
            },
        );
        self.outputs_order.push_back(task_id.clone());
    }

    fn logs(&self, task_id: &TaskId) -> LogsReply {
        if let Some(output) = self.outputs.get(task_id) {
            return output.clone();
        }
        let message = match self.tasks.get(task_id) {
            Some(task) => format!(
                "task {task_id} is {}; its output is kept once it ends",
                task.latest.state.as_str()
            ),
            None => format!(
                "agent {} has no output of task {task_id} (it never ran here, or its output was dropped to make room)",
                self.advert.agent_id
            ),
        };
        LogsReply::Error { message }
    }

    fn acknowledge(&mut self, task_id: &TaskId, status_uuid: StatusUuid) {
        let Some(task) = self.tasks.get_mut(task_id) else {
            return;
        };
        if task.latest.uuid != status_uuid {
            return; // An older, superseded status.
        }
        task.unacknowledged = false;
        if task.latest.state.is_terminal() {
            self.tasks.remove(task_id);
        }
    }

    fn status(
        &self,
        task_id: &TaskId,
        framework_id: &FrameworkId,
        state: TaskState,
        exit_code: Option<i32>,
        reason: String,
    ) -> TaskStatus {
        TaskStatus {
            task_id: task_id.clone(),
            framework_id: framework_id.clone(),
            agent_id: self.advert.agent_id.clone(),
            state,
            exit_code,
            reason,
            uuid: StatusUuid(uuid::Uuid::new_v4().as_u128()),
            timestamp_ms: unix_ms(),
        }
    }

    async fn publish_status(&self, status: &TaskStatus) {
        let key = self
            .executors
            .net
            .keys()
            .agent_status(self.advert.agent_id.as_str());
        if let Err(e) = self.executors.net.put(&key, status).await {
            tracing::warn!(task_id = %status.task_id, %e, "could not publish a status update; it will be retried");
        }
    }

    async fn resend_unacknowledged(&self) {
        for task in self.tasks.values().filter(|t| t.unacknowledged) {
            self.publish_status(&task.latest).await;
        }
    }

    async fn publish_advert(&mut self) {
        self.advert.seq += 1;
        self.advert.tasks = self.tasks.values().map(|t| t.latest.clone()).collect();
        let key = self
            .executors
            .net
            .keys()
            .agent_advert(self.advert.agent_id.as_str());
        if let Err(e) = self.executors.net.put(&key, &self.advert).await {
            tracing::warn!(%e, "could not publish the advert");
        }
    }

    fn kill_all(&self) {
        for task in self
            .tasks
            .values()
            .filter(|t| !t.latest.state.is_terminal())
        {
            task.cancel.kill(0);
        }
    }
}

/// The kept bytes of one stream, at most [`LOG_STREAM_BYTES_MAX`] of its end, and how many
/// were dropped on the way (by the executor or here).
fn stream_tail(output: &CapturedOutput) -> (Vec<u8>, u64) {
    let mut bytes = output.head.clone();
    if output.dropped_bytes > 0 {
        bytes.extend_from_slice(
            format!("\n[... {} bytes not kept ...]\n", output.dropped_bytes).as_bytes(),
        );
    }
    bytes.extend_from_slice(&output.tail);
    let cut = bytes.len().saturating_sub(LOG_STREAM_BYTES_MAX);
    (bytes.split_off(cut), output.dropped_bytes + cut as u64)
}
