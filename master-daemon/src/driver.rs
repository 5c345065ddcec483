//! The driver: the one task that owns the master core, a pump in quinn's sense. Inputs go
//! in with the time, the core's actions come out and are carried out, and one timer (the
//! core's `poll_timeout`, or the next operator snapshot) wakes it. Every decision, every
//! deadline and every status update the master makes up is the core's; the driver only
//! does I/O (launches and other agent commands are queried in the background and their
//! outcome fed back in as an input).

use std::collections::VecDeque;
use std::sync::Arc;

use master::{Action, LaunchOutcome, Master, Millis};
use net::{Net, Responder};
use proto::{
    AgentAdvert, AgentCommand, AgentId, AgentReply, CallReply, Event, FrameworkCall, FrameworkId,
    TaskId, TaskSpec,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use http_api::ClusterState;

use crate::operator::{JobSubmitter, Snapshots};
use crate::{AGENT_COMMANDS_IN_FLIGHT_MAX, Input, MasterDaemonConfig};
use net::clock::{Clock, unix_ms};

pub(crate) struct Driver {
    core: Master,
    net: Net,
    clock: Clock,
    agent_command_timeout_ms: u64,
    /// The driver's own input channel, for the outcomes of launches carried out in the
    /// background.
    inputs: mpsc::Sender<Input>,
    commands_in_flight: Arc<Semaphore>,
    /// Commands waiting for a slot in flight, oldest first. The driver never waits for a
    /// slot itself: the answers that free slots come on the agents' link, behind the
    /// statuses the driver would stop taking, so waiting stalled both for the commands'
    /// whole timeout. Bounded by what the core commands: one launch per task it holds,
    /// one kill, one acknowledgement per status.
    commands_queued: VecDeque<QueuedCommand>,
    advert_news: AdvertNews,
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
        jobs: watch::Receiver<Option<Arc<dyn JobSubmitter>>>,
    ) -> Driver {
        Driver {
            core,
            net,
            clock,
            agent_command_timeout_ms: config.agent_command_timeout_ms,
            inputs,
            commands_in_flight: Arc::new(Semaphore::new(AGENT_COMMANDS_IN_FLIGHT_MAX)),
            commands_queued: VecDeque::new(),
            advert_news: AdvertNews::default(),
            snapshots: Snapshots::new(jobs),
        }
    }

    /// The snapshots this driver will publish (the latest first).
    pub(crate) fn cluster_state(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.snapshots.subscribe()
    }

    /// Takes `inputs` and `calls` (framework calls only) in turn, whichever has one when
    /// both do (`select!` picks at random), until `inputs` closes.
    pub(crate) async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Input>,
        mut calls: mpsc::Receiver<Input>,
    ) {
        loop {
            let snapshot_due = self.snapshots.due();
            let deadline = self
                .core
                .poll_timeout()
                .map_or(snapshot_due, |at| at.min(snapshot_due));
            let sleep = tokio::time::sleep_until(self.clock.instant_of(deadline));
            let slots = self.commands_in_flight.clone();
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => self.handle(input).await,
                    None => return,
                },
                Some(call) = calls.recv() => self.handle(call).await,
                () = sleep => self.handle_timeout(),
                Ok(slot) = slots.acquire_owned(), if !self.commands_queued.is_empty() => {
                    self.send_queued_commands(Some(slot));
                }
            }
            self.carry_out_actions().await;
            self.snapshots
                .publish_if_due(self.clock.now(), &self.core, &self.net);
        }
    }

    /// Whether the input may change what the operator snapshot shows.
    fn changes_state(&mut self, input: &Input) -> bool {
        match input {
            Input::Inspect(_) | Input::Snapshot(_) => false,
            Input::LaunchOutcome {
                outcome: LaunchOutcome::Taken,
                ..
            } => false,
            // A returning agent's advert is news even when it repeats its last one.
            Input::Advert(advert) => {
                self.advert_news.is_news(advert) || !self.core.knows_agent(&advert.agent_id)
            }
            _ => true,
        }
    }

    async fn handle(&mut self, input: Input) {
        let now = self.clock.now();
        if self.changes_state(&input) {
            self.snapshots.mark_changed();
        }
        match input {
            Input::Advert(advert) => self.core.handle_agent_advert(now, advert),
            Input::Status(status) => {
                self.snapshots.recorder().observe_status(unix_ms(), &status);
                self.core.handle_status(now, status);
            }
            Input::AgentAlive(agent_id) => self.core.handle_agent_token(now, &agent_id, true),
            Input::AgentGone(agent_id) => self.core.handle_agent_token(now, &agent_id, false),
            Input::AgentLeft(agent_id) => self.core.handle_agent_left(now, &agent_id),
            Input::LaunchOutcome {
                agent_id,
                task_id,
                outcome,
            } => {
                self.core
                    .handle_launch_outcome(now, &agent_id, &task_id, outcome);
                if let Some(status) = self.core.launch_failure(&task_id) {
                    self.snapshots.recorder().observe_status(unix_ms(), &status);
                }
            }
            Input::HostedFault {
                framework_id,
                message,
            } => {
                let recorder = self.snapshots.recorder();
                recorder.observe_scheduler_fault(unix_ms(), framework_id.as_str(), &message);
                self.publish_event(&framework_id, Event::Error { message })
                    .await;
            }
            Input::FrameworkAlive(framework_id) => {
                self.core.handle_framework_token(now, &framework_id, true);
            }
            Input::FrameworkGone(framework_id) => {
                self.core.handle_framework_token(now, &framework_id, false);
            }
            Input::Call(caller, call, responder) => {
                self.handle_call(now, &caller, call, responder).await;
            }
            Input::Snapshot(reply) => {
                let _ = reply.send(self.snapshots.fresh(now, &self.core, &self.net));
            }
            Input::Inspect(read) => read(&self.core, now),
            Input::TaskUsage(report) => self.core.handle_task_usage(now, &report),
            Input::Refused(message) => {
                let recorder = self.snapshots.recorder();
                recorder.observe_operator_refusal(unix_ms(), &message);
            }
            Input::KillTask { task_id, reply } => {
                let _ = reply.send(self.core.handle_operator_kill(now, &task_id));
            }
        }
    }

    async fn handle_call(
        &mut self,
        now: Millis,
        caller: &proto::Principal,
        call: FrameworkCall,
        responder: Responder,
    ) {
        let result = self.core.handle_call(now, caller, call.clone());
        self.snapshots
            .recorder()
            .observe_call(unix_ms(), &call, &result);
        let reply = match result {
            Ok(reply) => reply,
            Err(refusal) => CallReply::Error {
                message: refusal.to_string(),
            },
        };
        if let Err(e) = responder.reply(&reply).await {
            tracing::debug!(%e, "could not answer a framework call");
        }
    }

    /// The core's timers: allocation, expiries, agents lost, frameworks' token waits.
    fn handle_timeout(&mut self) {
        let now = self.clock.now();
        if self.core.poll_timeout().is_none_or(|at| at > now) {
            return;
        }
        let agents_lost = self.core.agents_lost();
        let started = std::time::Instant::now();
        self.core.handle_timeout(now);
        self.snapshots
            .recorder()
            .observe_allocation_pass(started.elapsed());
        if self.core.agents_lost() != agents_lost {
            self.snapshots.mark_changed();
            let core = &self.core;
            self.advert_news.last.retain(|id, _| core.knows_agent(id));
        }
    }

    async fn carry_out_actions(&mut self) {
        while let Some(action) = self.core.poll_action() {
            self.snapshots.recorder().observe_action(unix_ms(), &action);
            match action {
                Action::SendEvent {
                    framework_id,
                    event,
                } => self.publish_event(&framework_id, event).await,
                Action::LaunchTask {
                    agent_id,
                    framework_id,
                    task,
                } => self.launch(agent_id, framework_id, task),
                Action::KillTask {
                    agent_id,
                    task_id,
                    grace_ms,
                } => {
                    self.command(agent_id, AgentCommand::Kill { task_id, grace_ms });
                }
                Action::AckStatus { agent_id, acks } => {
                    self.command(agent_id, AgentCommand::Acknowledge { acks });
                }
                Action::StopAgent {
                    agent_id,
                    incarnation,
                } => self.command(agent_id, AgentCommand::Stop { incarnation }),
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
                    self.publish_event(&framework_id, Event::Error { message })
                        .await;
                }
                Action::AnnounceCensus(census) => {
                    let key = self.net.keys().master_census();
                    if let Err(e) = self.net.put(&key, &census).await {
                        tracing::warn!(%e, "could not announce the census");
                    }
                }
            }
        }
    }

    // `&mut self`: the driver is `Send` but not `Sync` (its core holds the allocator).
    async fn publish_event(&mut self, framework_id: &FrameworkId, event: Event) {
        let key = self.net.keys().framework_events(framework_id);
        if let Err(e) = self.net.put(&key, &event).await {
            tracing::warn!(%framework_id, %e, "could not send an event");
        }
    }

    /// Sends the launch in the background and feeds its outcome back in, for the core to
    /// make of a refusal or silence what it decides.
    fn launch(&mut self, agent_id: AgentId, framework_id: FrameworkId, task: TaskSpec) {
        let then = Then::Launch {
            agent_id: agent_id.clone(),
            task_id: task.task_id.clone(),
        };
        let command = AgentCommand::Launch { framework_id, task };
        self.command_then(agent_id, command, then);
    }

    fn command(&mut self, agent_id: AgentId, command: AgentCommand) {
        self.command_then(agent_id, command, Then::Log);
    }

    fn command_then(&mut self, agent_id: AgentId, command: AgentCommand, then: Then) {
        self.commands_queued.push_back(QueuedCommand {
            agent_id,
            command,
            then,
        });
        self.send_queued_commands(None);
    }

    /// Sends queued commands, oldest first, while slots are free (`slot`: one already
    /// taken).
    fn send_queued_commands(&mut self, mut slot: Option<OwnedSemaphorePermit>) {
        while !self.commands_queued.is_empty() {
            let Some(permit) = slot
                .take()
                .or_else(|| self.commands_in_flight.clone().try_acquire_owned().ok())
            else {
                return;
            };
            if let Some(queued) = self.commands_queued.pop_front() {
                self.spawn_command(queued, permit);
            }
        }
    }

    /// Queries `agents/<id>/cmd` in a background task holding one of the
    /// [`AGENT_COMMANDS_IN_FLIGHT_MAX`] slots, and does what `then` says with the outcome.
    fn spawn_command(&self, queued: QueuedCommand, permit: OwnedSemaphorePermit) {
        let net = self.net.clone();
        let inputs = self.inputs.clone();
        let timeout_ms = self.agent_command_timeout_ms;
        tokio::spawn(async move {
            let QueuedCommand {
                agent_id,
                command,
                then,
            } = queued;
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
            then.carry_out(outcome, &inputs, &agent_id, &command).await;
        });
    }
}

struct QueuedCommand {
    agent_id: AgentId,
    command: AgentCommand,
    then: Then,
}

/// What is done with an agent command's outcome.
enum Then {
    /// Fed back to the core, which decides what a refusal or silence means.
    Launch { agent_id: AgentId, task_id: TaskId },
    /// Logged when not carried out (kills and acknowledgements are repeated by the core
    /// and the agent as needed).
    Log,
}

impl Then {
    async fn carry_out(
        self,
        outcome: CommandOutcome,
        inputs: &mpsc::Sender<Input>,
        agent: &AgentId,
        command: &AgentCommand,
    ) {
        match (self, outcome) {
            (Then::Launch { agent_id, task_id }, outcome) => {
                let outcome = match outcome {
                    CommandOutcome::Done => LaunchOutcome::Taken,
                    CommandOutcome::Refused(message) => LaunchOutcome::Refused { message },
                    CommandOutcome::Unreachable(message) => LaunchOutcome::Unanswered { message },
                };
                let input = Input::LaunchOutcome {
                    agent_id,
                    task_id,
                    outcome,
                };
                let _ = inputs.send(input).await;
            }
            (Then::Log, CommandOutcome::Done) => {}
            (
                Then::Log,
                CommandOutcome::Refused(message) | CommandOutcome::Unreachable(message),
            ) => {
                tracing::info!(agent_id = %agent, ?command, %message, "agent command not carried out");
            }
        }
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
