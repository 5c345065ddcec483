//! The agent's driver: the one task that owns the agent's tasks and their status
//! updates, and answers the master's commands.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use agent::oci::OciContainer;
use agent::wasm::CapturedOutput;
use proto::admin::{LOG_STREAM_BYTES_MAX, LogsReply};
use proto::{
    AdvertTask, AgentAdvert, AgentCommand, AgentReply, FrameworkId, Resources, StatusUuid, TaskId,
    TaskKind, TaskSpec, TaskState, TaskStatus,
};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use crate::journal::{AGENT_RESTARTED, JournalEntry, StatusJournal};
use crate::runner::{self, Cancel, Executors, RunnerUpdate};
use crate::{AgentDaemonConfig, Input, OUTPUTS_KEPT_MAX, TASKS_MAX};
use net::clock::unix_ms;

/// One task the agent holds.
struct Task {
    latest: TaskStatus,
    /// Listed in the advert, so that a restarted master can account for the task.
    name: String,
    resources: Resources,
    /// An OCI task, whose container may outlive the agent process.
    oci: bool,
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
    journal: StatusJournal,
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
            journal: StatusJournal::new(&config.work_dir),
        }
    }

    pub(crate) async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        self.recover_from_journal();
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
                name: spec.name.clone(),
                resources: spec.resources.clone(),
                oci: matches!(spec.kind, TaskKind::Oci(_)),
                unacknowledged: true,
                cancel: cancel.clone(),
            },
        );
        self.persist();
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
        self.persist();
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
            self.persist();
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

    fn advert_task(task: &Task) -> AdvertTask {
        AdvertTask {
            status: task.latest.clone(),
            name: task.name.clone(),
            resources: task.resources.clone(),
        }
    }

    /// Writes every task the agent holds to the status journal.
    fn persist(&self) {
        let entries: Vec<JournalEntry> = self
            .tasks
            .values()
            .map(|t| JournalEntry {
                task: Driver::advert_task(t),
                oci: t.oci,
            })
            .collect();
        self.journal.save(&entries);
    }

    /// Takes back the tasks of the previous agent process (see [`crate::journal`]): WASM
    /// tasks died with it and are reported failed; OCI containers still there are watched
    /// again.
    fn recover_from_journal(&mut self) {
        let recovered = self.executors.oci.as_ref().map(|oci| oci.recover());
        let mut containers: BTreeMap<String, OciContainer> = recovered
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.task_id().to_owned(), c))
            .collect();
        for entry in self.journal.load() {
            let task_id = entry.status().task_id.clone();
            let cancel = Cancel::default();
            let mut latest = entry.task.status.clone();
            let container = containers.remove(task_id.as_str()).filter(|_| entry.oci);
            match container {
                _ if latest.state.is_terminal() => {}
                Some(container) => self.watch_recovered(container, &task_id, &cancel),
                None => {
                    let framework_id = latest.framework_id.clone();
                    latest = self.status(
                        &task_id,
                        &framework_id,
                        TaskState::Failed,
                        None,
                        AGENT_RESTARTED.to_owned(),
                    );
                    let sandbox = self.executors.sandboxes_dir.join(task_id.as_str());
                    let _ = std::fs::remove_dir_all(sandbox);
                }
            }
            tracing::info!(%task_id, state = latest.state.as_str(), "task recovered from the status journal");
            let task = Task {
                latest,
                name: entry.task.name,
                resources: entry.task.resources,
                oci: entry.oci,
                unacknowledged: true,
                cancel,
            };
            self.tasks.insert(task_id, task);
        }
        for (task_id, container) in containers {
            tracing::warn!(%task_id, "a container no journaled task owns; removing it");
            tokio::task::spawn_blocking(move || {
                container.kill(std::time::Duration::ZERO);
                let _ = container.remove();
            });
        }
        self.persist();
    }

    fn watch_recovered(&self, container: OciContainer, task_id: &TaskId, cancel: &Cancel) {
        let (inputs, cancel, task_id) = (self.inputs.clone(), cancel.clone(), task_id.clone());
        tokio::spawn(async move {
            let update = runner::watch_container(Arc::new(container), &task_id, &cancel).await;
            let _ = inputs.send(Input::Runner { task_id, update }).await;
        });
    }

    async fn publish_advert(&mut self) {
        self.advert.seq += 1;
        self.advert.tasks = self.tasks.values().map(Driver::advert_task).collect();
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
