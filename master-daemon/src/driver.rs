//! The driver: the one task that owns the master core. It feeds inputs in with the time,
//! carries the actions out, and keeps the daemon's own deadlines.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use master::{Action, Master, Millis};
use net::{Net, Responder};
use proto::{
    AgentAdvert, AgentCommand, AgentId, AgentReply, Call, CallReply, Event, FrameworkCall,
    FrameworkId, StatusUuid, TaskSpec, TaskState, TaskStatus,
};
use tokio::sync::{Semaphore, mpsc, watch};

use http_api::ClusterState;

use crate::operator::Snapshots;
use crate::{
    AGENT_COMMANDS_IN_FLIGHT_MAX, EVENTS_HELD_PER_FRAMEWORK_MAX, Input, MasterDaemonConfig,
};
use net::clock::{Clock, unix_ms};

pub(crate) struct Driver {
    core: Master,
    net: Net,
    clock: Clock,
    agent_lost_timeout_ms: u64,
    agent_command_timeout_ms: u64,
    framework_token_wait_ms: u64,
    /// The driver's own input channel, for outcomes of commands carried out in the
    /// background (a launch the agent refused becomes a status update).
    inputs: mpsc::Sender<Input>,
    commands_in_flight: Arc<Semaphore>,
    /// Agents whose liveliness token is present.
    agents_alive: BTreeSet<AgentId>,
    advert_news: AdvertNews,
    /// Agents without a token, and when they are declared lost.
    agents_lost_at: BTreeMap<AgentId, Millis>,
    /// Frameworks whose liveliness token is present: their events go out at once.
    frameworks_alive: BTreeSet<FrameworkId>,
    /// Frameworks subscribed but whose token has not come yet, with the deadline.
    frameworks_awaited: BTreeMap<FrameworkId, Millis>,
    /// Events held for frameworks whose token has not come yet.
    held_events: BTreeMap<FrameworkId, VecDeque<Event>>,
    /// For the uuids of status updates the master makes itself.
    statuses_made: u64,
    /// What the HTTP API and the `master/admin` queryable serve.
    snapshots: Snapshots,
}

impl Driver {
    pub(crate) fn new(
        core: Master,
        net: Net,
        clock: Clock,
        config: &MasterDaemonConfig,
        inputs: mpsc::Sender<Input>,
    ) -> Driver {
        Driver {
            core,
            net,
            clock,
            agent_lost_timeout_ms: config.agent_lost_timeout_ms,
            agent_command_timeout_ms: config.agent_command_timeout_ms,
            framework_token_wait_ms: config.framework_token_wait_ms,
            inputs,
            commands_in_flight: Arc::new(Semaphore::new(AGENT_COMMANDS_IN_FLIGHT_MAX)),
            agents_alive: BTreeSet::new(),
            advert_news: AdvertNews::default(),
            agents_lost_at: BTreeMap::new(),
            frameworks_alive: BTreeSet::new(),
            frameworks_awaited: BTreeMap::new(),
            held_events: BTreeMap::new(),
            statuses_made: 0,
            snapshots: Snapshots::new(),
        }
    }

    /// The snapshots this driver will publish (the latest first).
    pub(crate) fn cluster_state(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.snapshots.subscribe()
    }

    pub(crate) async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        loop {
            let deadline = self.next_deadline();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(self.clock.instant_of(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => self.handle(input).await,
                    None => return,
                },
                () = sleep => self.handle_deadlines(),
            }
            self.carry_out_actions().await;
            self.snapshots
                .publish_if_due(self.clock.now(), &self.core, &self.net);
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        let own = self
            .agents_lost_at
            .values()
            .chain(self.frameworks_awaited.values())
            .chain([&self.snapshots.due()])
            .min()
            .copied();
        match (self.core.poll_timeout(), own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn handle(&mut self, input: Input) {
        let now = self.clock.now();
        let changes_state = match &input {
            Input::Inspect(_) | Input::Snapshot(_) => false,
            Input::Advert(advert) => self.advert_news.is_news(advert),
            _ => true,
        };
        if changes_state {
            self.snapshots.mark_changed();
        }
        match input {
            Input::Advert(advert) => {
                // An advert from an agent without a token starts its lost clock; the token
                // normally comes first, and coming later it stops the clock.
                if !self.agents_alive.contains(&advert.agent_id) {
                    self.agents_lost_at
                        .entry(advert.agent_id.clone())
                        .or_insert(now.plus_ms(self.agent_lost_timeout_ms));
                }
                self.core.handle_agent_advert(now, advert);
            }
            Input::Status(status) => {
                self.snapshots.recorder().observe_status(unix_ms(), &status);
                self.core.handle_status(now, status);
            }
            Input::AgentAlive(agent_id) => {
                self.agents_lost_at.remove(&agent_id);
                self.agents_alive.insert(agent_id);
            }
            Input::HostedFault {
                framework_id,
                message,
            } => {
                let recorder = self.snapshots.recorder();
                recorder.observe_scheduler_fault(unix_ms(), framework_id.as_str(), &message);
                self.send_event(&framework_id, Event::Error { message })
                    .await;
            }
            Input::AgentUnreachable(agent_id) => {
                self.core.handle_agent_unreachable(now, &agent_id);
            }
            Input::AgentGone(agent_id) => {
                self.agents_alive.remove(&agent_id);
                tracing::info!(%agent_id, timeout_ms = self.agent_lost_timeout_ms, "agent token gone");
                self.agents_lost_at
                    .insert(agent_id, now.plus_ms(self.agent_lost_timeout_ms));
            }
            Input::FrameworkAlive(framework_id) => {
                self.frameworks_awaited.remove(&framework_id);
                self.frameworks_alive.insert(framework_id.clone());
                self.release_held_events(&framework_id).await;
            }
            Input::FrameworkGone(framework_id) => {
                self.frameworks_alive.remove(&framework_id);
                tracing::info!(%framework_id, "framework token gone");
                self.core.handle_framework_disconnected(now, &framework_id);
            }
            Input::Call(call, responder) => self.handle_call(now, call, responder).await,
            Input::Snapshot(reply) => {
                let _ = reply.send(self.snapshots.fresh(now, &self.core, &self.net));
            }
            Input::Inspect(read) => read(&self.core),
            Input::TaskUsage(report) => self.core.handle_task_usage(now, &report),
            Input::KillTask { task_id, reply } => {
                let _ = reply.send(self.core.handle_operator_kill(now, &task_id));
            }
        }
    }

    async fn handle_call(&mut self, now: Millis, call: FrameworkCall, responder: Responder) {
        let resubscribing = matches!(call.call, Call::Subscribe { .. });
        let result = self.core.handle_call(now, call.clone());
        self.snapshots
            .recorder()
            .observe_call(unix_ms(), &call, &result);
        let reply = match result {
            Ok(reply) => reply,
            Err(refusal) => CallReply::Error {
                message: refusal.to_string(),
            },
        };
        if let (true, CallReply::Subscribed { framework_id, .. }) = (resubscribing, &reply)
            && !self.frameworks_alive.contains(framework_id)
        {
            self.frameworks_awaited.insert(
                framework_id.clone(),
                now.plus_ms(self.framework_token_wait_ms),
            );
        }
        if let Err(e) = responder.reply(&reply).await {
            tracing::debug!(%e, "could not answer a framework call");
        }
    }

    /// Agents lost, frameworks that never showed their token, and the core's own timers.
    fn handle_deadlines(&mut self) {
        let now = self.clock.now();
        let lost: Vec<AgentId> = self
            .agents_lost_at
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for agent_id in lost {
            self.agents_lost_at.remove(&agent_id);
            tracing::warn!(%agent_id, "agent lost");
            self.advert_news.last.remove(&agent_id);
            self.core.handle_agent_lost(now, &agent_id);
        }
        let tokenless: Vec<FrameworkId> = self
            .frameworks_awaited
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for framework_id in tokenless {
            self.frameworks_awaited.remove(&framework_id);
            tracing::warn!(%framework_id, "framework subscribed but shows no liveliness token; treating it as disconnected");
            // Its held events go out now: it may still listen without a token.
            self.frameworks_alive.insert(framework_id.clone());
            self.core.handle_framework_disconnected(now, &framework_id);
        }
        if self.core.poll_timeout().is_some_and(|at| at <= now) {
            let started = std::time::Instant::now();
            self.core.handle_timeout(now);
            self.snapshots
                .recorder()
                .observe_allocation_pass(started.elapsed());
        }
    }

    async fn carry_out_actions(&mut self) {
        while let Some(action) = self.core.poll_action() {
            self.snapshots.recorder().observe_action(unix_ms(), &action);
            match action {
                Action::SendEvent {
                    framework_id,
                    event,
                } => self.send_event(&framework_id, event).await,
                Action::LaunchTask {
                    agent_id,
                    framework_id,
                    task,
                } => {
                    self.launch(agent_id, framework_id, task).await;
                }
                Action::KillTask {
                    agent_id,
                    task_id,
                    grace_ms,
                } => {
                    self.command(agent_id, AgentCommand::Kill { task_id, grace_ms })
                        .await;
                }
                Action::AckStatus {
                    agent_id,
                    task_id,
                    status_uuid,
                } => {
                    self.command(
                        agent_id,
                        AgentCommand::Acknowledge {
                            task_id,
                            status_uuid,
                        },
                    )
                    .await;
                }
                Action::ReclaimNotice {
                    framework_id,
                    task_id,
                    agent_id,
                    kill_at,
                } => {
                    let in_ms = kill_at.ms_since(self.clock.now());
                    let message = format!(
                        "task {task_id} on agent {agent_id} will be killed in {in_ms} ms to give resources back \
                         to a framework below its fair share"
                    );
                    self.send_event(&framework_id, Event::Error { message })
                        .await;
                }
            }
        }
        let frameworks_held: Vec<FrameworkId> = self
            .held_events
            .keys()
            .filter(|id| self.frameworks_alive.contains(*id))
            .cloned()
            .collect();
        for framework_id in frameworks_held {
            self.release_held_events(&framework_id).await;
        }
    }

    async fn send_event(&mut self, framework_id: &FrameworkId, event: Event) {
        if !self.frameworks_alive.contains(framework_id) {
            let held = self.held_events.entry(framework_id.clone()).or_default();
            if held.len() >= EVENTS_HELD_PER_FRAMEWORK_MAX {
                tracing::warn!(%framework_id, "too many events held for a framework without a token; dropping the oldest");
                held.pop_front();
            }
            held.push_back(event);
            return;
        }
        let key = self.net.keys().framework_events(framework_id.as_str());
        if let Err(e) = self.net.put(&key, &event).await {
            tracing::warn!(%framework_id, %e, "could not send an event");
        }
    }

    async fn release_held_events(&mut self, framework_id: &FrameworkId) {
        for event in self.held_events.remove(framework_id).unwrap_or_default() {
            self.send_event(framework_id, event).await;
        }
    }

    /// Sends the launch in the background; an agent that refuses it or does not answer
    /// turns into a status update, so the framework learns why.
    async fn launch(&mut self, agent_id: AgentId, framework_id: FrameworkId, task: TaskSpec) {
        let task_id = task.task_id.clone();
        let command = AgentCommand::Launch {
            framework_id: framework_id.clone(),
            task,
        };
        self.statuses_made += 1;
        let uuid = StatusUuid(
            (u128::from(self.core.config().incarnation) << 64) | u128::from(self.statuses_made),
        );
        let inputs = self.inputs.clone();
        let failed = move |state: TaskState, reason: String| TaskStatus {
            task_id,
            framework_id,
            agent_id: AgentId::new(""),
            state,
            exit_code: None,
            reason,
            uuid,
            timestamp_ms: unix_ms(),
        };
        let agent = agent_id.clone();
        self.spawn_command(agent_id, command, move |outcome| async move {
            let status = match outcome {
                CommandOutcome::Done => return,
                CommandOutcome::Refused(message) => failed(
                    TaskState::Failed,
                    format!("agent refused the launch: {message}"),
                ),
                CommandOutcome::Unreachable(message) => failed(
                    TaskState::Lost,
                    format!("agent did not take the launch: {message}"),
                ),
            };
            let unreachable = status.state == TaskState::Lost;
            let _ = inputs
                .send(Input::Status(TaskStatus {
                    agent_id: agent.clone(),
                    ..status
                }))
                .await;
            // After the status: a status from the agent counts as hearing from it.
            if unreachable {
                let _ = inputs.send(Input::AgentUnreachable(agent)).await;
            }
        })
        .await;
    }

    async fn command(&mut self, agent_id: AgentId, command: AgentCommand) {
        let what = format!("{command:?}");
        let agent = agent_id.clone();
        self.spawn_command(agent_id, command, move |outcome| async move {
            match outcome {
                CommandOutcome::Done => {}
                CommandOutcome::Refused(message) | CommandOutcome::Unreachable(message) => {
                    tracing::info!(agent_id = %agent, command = %what, %message, "agent command not carried out");
                }
            }
        })
        .await;
    }

    /// Queries `agents/<id>/cmd` in a background task, at most
    /// [`AGENT_COMMANDS_IN_FLIGHT_MAX`] at once, and hands the outcome to `then`.
    async fn spawn_command<F, Fut>(&mut self, agent_id: AgentId, command: AgentCommand, then: F)
    where
        F: FnOnce(CommandOutcome) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let Ok(permit) = self.commands_in_flight.clone().acquire_owned().await else {
            return;
        };
        let net = self.net.clone();
        let timeout_ms = self.agent_command_timeout_ms;
        tokio::spawn(async move {
            let key = net.keys().agent_cmd(agent_id.as_str());
            let outcome = match net
                .query::<AgentCommand, AgentReply>(&key, &command, timeout_ms)
                .await
            {
                Ok(AgentReply::Ok) => CommandOutcome::Done,
                Ok(AgentReply::Error { message }) => CommandOutcome::Refused(message),
                Err(e) => CommandOutcome::Unreachable(e.to_string()),
            };
            drop(permit);
            then(outcome).await;
        });
    }
}

enum CommandOutcome {
    Done,
    Refused(String),
    Unreachable(String),
}

/// Tells a periodic re-advert that changes nothing (only its sequence number) from one
/// that does, so that a large fleet's heartbeats do not rebuild the operator snapshot
/// every time. Keeps each agent's last advert encoded without its `seq`.
#[derive(Default)]
struct AdvertNews {
    last: std::collections::HashMap<AgentId, Vec<u8>>,
}

impl AdvertNews {
    fn is_news(&mut self, advert: &AgentAdvert) -> bool {
        let unsequenced = AgentAdvert {
            seq: 0,
            ..advert.clone()
        };
        let Ok(bytes) = proto::encode(&unsequenced) else {
            return true;
        };
        match self.last.get(&advert.agent_id) {
            Some(last) if *last == bytes => false,
            _ => {
                self.last.insert(advert.agent_id.clone(), bytes);
                true
            }
        }
    }
}
