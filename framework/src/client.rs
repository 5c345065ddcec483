//! The client: subscription, the event loop, and calls.

use std::sync::Arc;
use std::time::Duration;

use net::{AliveToken, AliveWatch, Liveness, Net, NetError, QueryError, Subscription};
use proto::{
    Ack, Call, CallReply, Event, FrameworkCall, FrameworkId, FrameworkInfo, OfferId, Operation,
    Resources, StatusUuid, TaskId, TaskSpec,
};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long a call waits for the master's reply.
pub const CALL_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// How long `subscribe` keeps trying to reach a master that does not answer yet.
pub const SUBSCRIBE_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Pause between two subscribe attempts while the master does not answer.
const SUBSCRIBE_RETRY_MS: u64 = 500;
/// Events held for the program before the client stops reading from the network (and
/// zenoh then holds or drops further events); a program that falls this far behind slows
/// its own event stream, never the master.
pub const EVENTS_QUEUED_MAX_DEFAULT: usize = 1024;
/// Calls of implicit acknowledgements in flight at once. Each carries every
/// acknowledgement queued when it is sent (up to [`proto::ACKS_PER_CALL_MAX`]), so a few
/// keep up with thousands of updates a second: one update per call drained about 1,000
/// a second with 32 in flight, and the updates dropped from the full queue were sent
/// again by their agents.
const ACK_CALLS_IN_FLIGHT_MAX: usize = 4;
/// Implicit acknowledgements waiting to be sent: as many as the calls in flight carry,
/// so that a burst arriving while they are out waits for the next calls. Beyond this they
/// are dropped, which is safe: the agent resends an unacknowledged update and it is
/// acknowledged then. (At 1,024 the throughput benchmark dropped bursts of 60–140 while
/// its four calls were out.)
const ACKS_QUEUED_MAX: usize = ACK_CALLS_IN_FLIGHT_MAX * proto::ACKS_PER_CALL_MAX;
/// The role a framework allocates under unless it says otherwise.
const ROLE_DEFAULT: &str = "default";
/// How long the master keeps a disconnected framework's tasks unless told otherwise.
const FAILOVER_TIMEOUT_MS_DEFAULT: u64 = 60_000;

#[derive(Clone, Debug)]
pub struct FrameworkConfig {
    /// Sent with every `Subscribe`; `info.framework_id` is filled in by the client.
    pub info: FrameworkInfo,
    pub call_timeout_ms: u64,
    pub subscribe_timeout_ms: u64,
    /// Acknowledge every `Update` as soon as it is handed over (Mesos' default); when
    /// false the program calls [`FrameworkClient::acknowledge`] itself.
    pub implicit_acknowledgements: bool,
    pub events_queued_max: usize,
}

impl FrameworkConfig {
    /// A framework named `name` in the default role with weight 1.
    pub fn new(name: &str) -> FrameworkConfig {
        FrameworkConfig {
            info: FrameworkInfo {
                name: name.to_owned(),
                role: ROLE_DEFAULT.to_owned(),
                weight: 1.0,
                framework_id: None,
                failover_timeout_ms: FAILOVER_TIMEOUT_MS_DEFAULT,
                constraints: Vec::new(),
                min_offer: Resources::new(),
                capabilities: Vec::new(),
            },
            call_timeout_ms: CALL_TIMEOUT_MS_DEFAULT,
            subscribe_timeout_ms: SUBSCRIBE_TIMEOUT_MS_DEFAULT,
            implicit_acknowledgements: true,
            events_queued_max: EVENTS_QUEUED_MAX_DEFAULT,
        }
    }

    pub fn with_role(mut self, role: &str, weight: f64) -> FrameworkConfig {
        role.clone_into(&mut self.info.role);
        self.info.weight = weight;
        self
    }
}

#[derive(Debug, Error)]
pub enum FrameworkError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("the {call} call got no answer: {source}")]
    Call {
        call: &'static str,
        source: QueryError,
    },
    #[error("the master refused the {call} call: {message}")]
    Refused { call: &'static str, message: String },
    #[error("the master answered the {call} call with {reply:?}, which does not fit it")]
    Unexpected {
        call: &'static str,
        reply: CallReply,
    },
    #[error("the master named the framework {0:?}, which cannot be used in a key")]
    BadFrameworkId(String),
}

/// Events from the master, in the order it sent them. Ends when the client is dropped,
/// torn down, or its session closes.
///
/// Keep taking events while calls are in flight: events and the answers to calls come on
/// one link, so once [`FrameworkConfig::events_queued_max`] events (and zenoh's own queue
/// behind them) wait here, answers wait too, and calls time out. A framework that
/// launches at a high rate makes its calls from other tasks (the client is cheap to
/// clone) and keeps reading.
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

/// A subscribed framework. Cheap to clone; the subscription (event stream and liveliness
/// token) ends when the last clone is dropped.
#[derive(Clone)]
pub struct FrameworkClient {
    shared: Arc<Shared>,
}

struct Shared {
    net: Net,
    framework_id: FrameworkId,
    heartbeat_interval_ms: u64,
    call_timeout_ms: u64,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl FrameworkClient {
    /// Subscribes to the master (see the crate documentation for the order of steps) and
    /// returns the client with its event stream. Set `config.info.framework_id` to fail
    /// over an earlier incarnation of the framework.
    pub async fn subscribe(
        net: Net,
        config: FrameworkConfig,
    ) -> Result<(FrameworkClient, Events), FrameworkError> {
        let keys = net.keys().clone();
        // Watched first, so that a master restart during start-up is not missed.
        let master = net.watch_alive(&keys.master_alive()).await?;
        let deadline = Instant::now() + Duration::from_millis(config.subscribe_timeout_ms);
        let (framework_id, heartbeat_interval_ms) =
            subscribe_until(&net, &config.info, config.call_timeout_ms, deadline).await?;
        proto::keys::valid_chunk("framework id", framework_id.as_str())
            .map_err(|_| FrameworkError::BadFrameworkId(framework_id.to_string()))?;
        let events = net
            .subscribe::<Event>(&keys.framework_events(&framework_id))
            .await?;
        let token = net
            .declare_alive(&keys.framework_alive(&framework_id))
            .await?;

        let (events_tx, events_rx) = mpsc::channel(config.events_queued_max.max(1));
        let (acks_tx, acks_rx) = mpsc::channel(ACKS_QUEUED_MAX);
        let mut info = config.info.clone();
        info.framework_id = Some(framework_id.clone());
        let event_loop = EventLoop {
            net: net.clone(),
            info,
            call_timeout_ms: config.call_timeout_ms,
            events,
            master,
            _token: token,
            events_tx,
            acks_tx: config.implicit_acknowledgements.then_some(acks_tx),
            acks_dropped: 0,
        };
        let mut tasks = vec![tokio::spawn(event_loop.run())];
        if config.implicit_acknowledgements {
            let acker = Acker {
                net: net.clone(),
                framework_id: framework_id.clone(),
                call_timeout_ms: config.call_timeout_ms,
            };
            tasks.push(tokio::spawn(acker.run(acks_rx)));
        }
        let shared = Shared {
            net,
            framework_id,
            heartbeat_interval_ms,
            call_timeout_ms: config.call_timeout_ms,
            tasks,
        };
        Ok((
            FrameworkClient {
                shared: Arc::new(shared),
            },
            Events { rx: events_rx },
        ))
    }

    pub fn framework_id(&self) -> &FrameworkId {
        &self.shared.framework_id
    }

    /// The interval at which the master promised heartbeats.
    pub fn heartbeat_interval_ms(&self) -> u64 {
        self.shared.heartbeat_interval_ms
    }

    pub fn net(&self) -> &Net {
        &self.shared.net
    }

    /// Sends `call` and returns the master's reply; a `CallReply::Error` comes back as
    /// [`FrameworkError::Refused`].
    pub async fn call(&self, call: Call) -> Result<CallReply, FrameworkError> {
        send_call(
            &self.shared.net,
            Some(&self.shared.framework_id),
            call,
            self.shared.call_timeout_ms,
        )
        .await
    }

    /// Launches `operations` on (part of) the offers; what is not used returns to the pool
    /// and is not offered again for `filters.refuse_seconds`.
    pub async fn accept(
        &self,
        offer_ids: Vec<OfferId>,
        operations: Vec<Operation>,
        filters: proto::Filters,
    ) -> Result<(), FrameworkError> {
        self.call_ok(Call::Accept {
            offer_ids,
            operations,
            filters,
        })
        .await
    }

    /// Launches `tasks` on one offer, with the default filters.
    pub async fn launch(
        &self,
        offer_id: OfferId,
        tasks: Vec<TaskSpec>,
    ) -> Result<(), FrameworkError> {
        self.accept(
            vec![offer_id],
            vec![Operation::Launch { tasks }],
            proto::Filters::default(),
        )
        .await
    }

    pub async fn decline(
        &self,
        offer_ids: Vec<OfferId>,
        filters: proto::Filters,
    ) -> Result<(), FrameworkError> {
        self.call_ok(Call::Decline { offer_ids, filters }).await
    }

    /// Clears all filters and asks for offers again.
    pub async fn revive(&self) -> Result<(), FrameworkError> {
        self.call_ok(Call::Revive).await
    }

    /// Asks for no more offers until [`FrameworkClient::revive`].
    pub async fn suppress(&self) -> Result<(), FrameworkError> {
        self.call_ok(Call::Suppress).await
    }

    pub async fn kill(&self, task_id: TaskId) -> Result<(), FrameworkError> {
        self.call_ok(Call::Kill { task_id }).await
    }

    /// Acknowledges one status update; needed only without implicit acknowledgements.
    pub async fn acknowledge(
        &self,
        task_id: TaskId,
        status_uuid: StatusUuid,
    ) -> Result<(), FrameworkError> {
        self.call_ok(Call::Acknowledge {
            task_id,
            status_uuid,
        })
        .await
    }

    /// Asks for the latest state of `tasks` (of every task of the framework when empty);
    /// the answers come as `Update` events.
    pub async fn reconcile(&self, tasks: Vec<TaskId>) -> Result<(), FrameworkError> {
        self.call_ok(Call::Reconcile { tasks }).await
    }

    /// Ends the framework: the master kills its tasks and forgets it. The event stream
    /// ends and the liveliness token is withdrawn.
    pub async fn teardown(self) -> Result<(), FrameworkError> {
        let result = self.call_ok(Call::Teardown).await;
        for task in &self.shared.tasks {
            task.abort();
        }
        result
    }

    async fn call_ok(&self, call: Call) -> Result<(), FrameworkError> {
        let name = call_name(&call);
        match self.call(call).await? {
            CallReply::Ok => Ok(()),
            reply => Err(FrameworkError::Unexpected { call: name, reply }),
        }
    }
}

fn call_name(call: &Call) -> &'static str {
    match call {
        Call::Subscribe { .. } => "Subscribe",
        Call::Accept { .. } => "Accept",
        Call::Decline { .. } => "Decline",
        Call::Revive => "Revive",
        Call::Suppress => "Suppress",
        Call::Kill { .. } => "Kill",
        Call::Acknowledge { .. } => "Acknowledge",
        Call::AcknowledgeMany { .. } => "AcknowledgeMany",
        Call::Reconcile { .. } => "Reconcile",
        Call::Teardown => "Teardown",
    }
}

async fn send_call(
    net: &Net,
    framework_id: Option<&FrameworkId>,
    call: Call,
    timeout_ms: u64,
) -> Result<CallReply, FrameworkError> {
    let name = call_name(&call);
    let request = FrameworkCall {
        framework_id: framework_id.cloned(),
        call,
    };
    let reply = net
        .query(
            &net.keys().master_calls(net.principal()),
            &request,
            timeout_ms,
        )
        .await
        .map_err(|source| FrameworkError::Call { call: name, source })?;
    match reply {
        CallReply::Error { message } => Err(FrameworkError::Refused {
            call: name,
            message,
        }),
        reply => Ok(reply),
    }
}

/// Sends `Subscribe` until the master answers or `deadline` passes; refusals are final.
async fn subscribe_until(
    net: &Net,
    info: &FrameworkInfo,
    call_timeout_ms: u64,
    deadline: Instant,
) -> Result<(FrameworkId, u64), FrameworkError> {
    loop {
        let call = Call::Subscribe { info: info.clone() };
        match send_call(net, info.framework_id.as_ref(), call, call_timeout_ms).await {
            Ok(CallReply::Subscribed {
                framework_id,
                heartbeat_interval_ms,
            }) => {
                return Ok((framework_id, heartbeat_interval_ms));
            }
            Ok(reply) => {
                return Err(FrameworkError::Unexpected {
                    call: "Subscribe",
                    reply,
                });
            }
            Err(FrameworkError::Call { source, .. }) if Instant::now() < deadline => {
                tracing::debug!(%source, "no master answers yet; subscribing again");
                tokio::time::sleep(Duration::from_millis(SUBSCRIBE_RETRY_MS)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Moves events from zenoh to the program and subscribes again after a master restart.
struct EventLoop {
    net: Net,
    /// With the framework id filled in, for re-subscribing.
    info: FrameworkInfo,
    call_timeout_ms: u64,
    events: Subscription<Event>,
    master: AliveWatch,
    _token: AliveToken,
    events_tx: mpsc::Sender<Event>,
    acks_tx: Option<mpsc::Sender<Ack>>,
    /// Acknowledgements dropped since the queue last had room: logged once per burst.
    acks_dropped: u64,
}

/// A re-subscription under way: it runs beside the event loop, which keeps taking events
/// meanwhile.
type Resubscription = std::pin::Pin<Box<dyn Future<Output = Option<String>> + Send>>;

impl EventLoop {
    async fn run(mut self) {
        let mut master_gone = false;
        let mut resubscribing: Option<Resubscription> = None;
        loop {
            tokio::select! {
                received = self.events.recv() => {
                    let Some(received) = received else { return };
                    if !self.hand_over(received.message).await {
                        return;
                    }
                }
                change = self.master.recv() => match change {
                    None => return,
                    Some(Liveness::Gone { .. }) => {
                        tracing::info!("the master is gone; waiting for it to come back");
                        master_gone = true;
                    }
                    Some(Liveness::Alive { .. }) if master_gone => {
                        master_gone = false;
                        resubscribing = Some(self.resubscription());
                    }
                    Some(Liveness::Alive { .. }) => {}
                },
                problem = async { resubscribing.as_mut()?.await }, if resubscribing.is_some() => {
                    resubscribing = None;
                    if let Some(problem) = problem {
                        tracing::error!(%problem);
                        let error = Event::Error { message: problem };
                        if self.events_tx.send(error).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Gives `event` to the program and queues its acknowledgement; false once the program
    /// dropped its [`Events`].
    async fn hand_over(&mut self, event: Event) -> bool {
        let ack = match (&event, &self.acks_tx) {
            (Event::Update { status }, Some(_)) if !status.agent_id.is_no_agent() => Some(Ack {
                task_id: status.task_id.clone(),
                status_uuid: status.uuid,
            }),
            _ => None,
        };
        if self.events_tx.send(event).await.is_err() {
            return false;
        }
        if let (Some(ack), Some(acks)) = (ack, &self.acks_tx) {
            self.queue_ack(acks.try_send(ack).is_ok());
        }
        true
    }

    /// Counts an acknowledgement queued or dropped, and says so once per burst of drops.
    fn queue_ack(&mut self, queued: bool) {
        match (queued, self.acks_dropped) {
            (true, 0) => {}
            (true, dropped) => {
                tracing::warn!(
                    dropped,
                    "acknowledgement queue has room again; the updates whose acknowledgements \
                     were dropped will be resent and acknowledged then"
                );
                self.acks_dropped = 0;
            }
            (false, dropped) => {
                if dropped == 0 {
                    tracing::warn!("acknowledgement queue full; dropping acknowledgements");
                }
                self.acks_dropped += 1;
            }
        }
    }

    /// Subscribes again with our framework id, then reconciles; ends with the problem to
    /// report to the program (a refusal, a new id), if any.
    ///
    /// It runs beside the event loop, not in it: the new master's events (offers, the
    /// reconciliation's updates) arrive meanwhile, and events nobody takes fill zenoh's
    /// queue and stall the link that the call's answer comes in on.
    fn resubscription(&self) -> Resubscription {
        let (net, info, call_timeout_ms) =
            (self.net.clone(), self.info.clone(), self.call_timeout_ms);
        Box::pin(async move {
            let deadline = Instant::now() + Duration::from_millis(SUBSCRIBE_TIMEOUT_MS_DEFAULT);
            let ours = info.framework_id.clone();
            match subscribe_until(&net, &info, call_timeout_ms, deadline).await {
                Ok((framework_id, _)) if Some(&framework_id) == ours.as_ref() => {
                    tracing::info!(%framework_id, "subscribed again after a master restart");
                    // What changed while the master was away (tasks that ended, tasks the
                    // new master could not find) comes back as updates, as in Mesos'
                    // implicit reconciliation.
                    let reconcile = Call::Reconcile { tasks: Vec::new() };
                    let sent = send_call(&net, ours.as_ref(), reconcile, call_timeout_ms).await;
                    if let Err(e) = sent {
                        tracing::warn!(%e, "reconciling after a master restart; the program may call reconcile");
                    }
                    None
                }
                Ok((framework_id, _)) => Some(format!(
                    "the restarted master gave this framework the new id {framework_id}; its events go to that id, \
                     which this client does not follow: restart the framework"
                )),
                Err(e) => Some(format!(
                    "subscribing again after a master restart failed: {e}"
                )),
            }
        })
    }
}

/// Sends implicit acknowledgements off the event path: whatever is queued when a call
/// slot frees goes in one call, [`ACK_CALLS_IN_FLIGHT_MAX`] calls at once.
struct Acker {
    net: Net,
    framework_id: FrameworkId,
    call_timeout_ms: u64,
}

impl Acker {
    async fn run(self, mut queued: mpsc::Receiver<Ack>) {
        let in_flight = Arc::new(tokio::sync::Semaphore::new(ACK_CALLS_IN_FLIGHT_MAX));
        let mut sending = tokio::task::JoinSet::new();
        while let Some(first) = queued.recv().await {
            let Ok(slot) = in_flight.clone().acquire_owned().await else {
                return;
            };
            while sending.try_join_next().is_some() {}
            // Taken after the slot: what came in while every call was out goes in this one.
            let mut acks = vec![first];
            while acks.len() < proto::ACKS_PER_CALL_MAX {
                match queued.try_recv() {
                    Ok(ack) => acks.push(ack),
                    Err(_) => break,
                }
            }
            let (net, framework_id) = (self.net.clone(), self.framework_id.clone());
            let call_timeout_ms = self.call_timeout_ms;
            sending.spawn(async move {
                let count = acks.len();
                let call = Call::AcknowledgeMany { acks };
                if let Err(e) = send_call(&net, Some(&framework_id), call, call_timeout_ms).await {
                    tracing::debug!(count, %e, "acknowledgements not all taken; agents resend the updates not acknowledged");
                }
                drop(slot);
            });
        }
    }
}
