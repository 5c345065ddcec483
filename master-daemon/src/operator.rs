//! The master's operator surface, answered in one place: the operator protocol
//! (`proto::operator`) on the `master/admin/<principal>` queryable and the HTTP API's
//! commands all go to [`answer`], with the caller the key or the token proves, and are
//! held to the policy (`master::Policy::check_operator`) there.
//!
//! - Listings are the core's own rows (`master::view`) as the latest snapshot holds them
//!   (published anew first if anything changed): the very rows the HTTP API serves.
//! - A kill is the core's operator input (`Master::handle_operator_kill`); a task the
//!   core does not know may be one the jobs framework holds but has not launched, which is
//!   then cancelled there.
//! - A task's output is asked of the agent in its row.
//! - Jobs are validated here (one validation, one size limit:
//!   [`JOB_REQUEST_BYTES_MAX`]) and handed to the attached jobs framework.
//! - Hosted frameworks are managed by the master's [`HostedDoor`].
//!
//! The driver owns a [`Snapshots`]: it hands its [`Recorder`] every input and action and
//! publishes a snapshot (the core's rows with the recorder's log and counters) on a
//! `watch` channel when something changed, at most every [`SNAPSHOT_INTERVAL_MS_MIN`],
//! and every [`SNAPSHOT_IDLE_INTERVAL_MS`] regardless (so the share chart and the
//! decode-error counters move on an idle cluster). The HTTP API serves that snapshot.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use http_api::{ClusterState, Command, Handles, Recorder, SNAPSHOT_INTERVAL_MS_MIN};
use jobs::request::{ValidJob, ValidateJob};
use jobs::waiting::Waiting;
use jobs::{ServiceRequest, ValidDecl};
use master::view::WallClock;
use master::{Master, Millis, OperatorAct, OperatorKillError, Policy, Refusal};
use net::clock::unix_ms;
use net::modules::ModuleStore;
use net::{Net, Responder};
use proto::admin::{LogOffsets, LogsReply, LogsRequest, TaskOutput};
use proto::declared::{JobsReply, JobsRequest};
use proto::operator::{
    HostedReply, HostedRequest, JOB_REQUEST_BYTES_MAX, JobAccepted, JobRequest, OperatorError,
    OperatorReply, OperatorRequest, TASK_ROWS_ASKED_MAX, TaskRow,
};
use proto::{Principal, TaskId, TaskState};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::Input;
use crate::error::DaemonError;
use crate::frameworks::hosted::HostedDoor;
use crate::principals::Principals;

/// Between two snapshots of a cluster where nothing happened.
pub const SNAPSHOT_IDLE_INTERVAL_MS: u64 = 5_000;
/// Commands queued from the HTTP API; its handlers wait for room beyond it.
pub const COMMANDS_QUEUED_MAX: usize = 64;
/// Operator requests answered at once (log queries wait on agents); the rest wait.
pub const COMMANDS_IN_FLIGHT_MAX: usize = 16;
/// How long the master waits for an agent's log tail; shorter than the API's own
/// [`http_api::COMMAND_TIMEOUT_MS`] so that the client hears the agent's failure.
pub const LOGS_QUERY_TIMEOUT_MS: u64 = 3_000;

/// What an async [`JobSubmitter`] method returns (boxed, so the trait is object safe).
pub type SubmitterFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, OperatorError>> + Send + 'a>>;

/// The jobs framework as the master sees it: where operators' jobs go. The master holds
/// at most one (attached after start, since the framework connects to the running
/// master); with none, submissions are refused "jobs framework not running".
pub trait JobSubmitter: Send + Sync + 'static {
    /// Queues `job`; answers the ids its tasks will have.
    fn submit(&self, job: ValidJob) -> SubmitterFuture<'_, JobAccepted>;
    /// Cancels one of its tasks that it has not launched, and keeps it from starting.
    fn cancel<'a>(&'a self, task_id: &'a TaskId) -> SubmitterFuture<'a, ()>;
    /// The tasks it holds, not launched yet, as `pending` rows; a new `Arc` when they
    /// change.
    fn pending(&self) -> Arc<Vec<TaskRow>>;
    /// Its tasks cancelled before they were launched (the latest), as `killed` rows.
    fn cancelled(&self) -> Arc<Vec<TaskRow>>;
    /// A request about declared jobs, validated.
    fn service(&self, request: ServiceRequest) -> SubmitterFuture<'_, JobsReply>;
    /// The copies it holds that wait for `subject` (a job or a task).
    fn waiting<'a>(&'a self, subject: &'a str) -> SubmitterFuture<'a, Option<Waiting>>;
}

impl JobSubmitter for jobs::JobsClient {
    fn submit(&self, job: ValidJob) -> SubmitterFuture<'_, JobAccepted> {
        Box::pin(async move {
            jobs::JobsClient::submit(self, job)
                .await
                .map_err(jobs_error)
        })
    }

    fn cancel<'a>(&'a self, task_id: &'a TaskId) -> SubmitterFuture<'a, ()> {
        Box::pin(async move {
            jobs::JobsClient::kill(self, task_id)
                .await
                .map_err(jobs_error)
        })
    }

    fn pending(&self) -> Arc<Vec<TaskRow>> {
        jobs::JobsClient::pending(self)
    }

    fn cancelled(&self) -> Arc<Vec<TaskRow>> {
        jobs::JobsClient::cancelled(self)
    }

    fn waiting<'a>(&'a self, subject: &'a str) -> SubmitterFuture<'a, Option<Waiting>> {
        Box::pin(async move {
            jobs::JobsClient::waiting(self, subject)
                .await
                .map_err(jobs_error)
        })
    }

    fn service(&self, request: ServiceRequest) -> SubmitterFuture<'_, JobsReply> {
        Box::pin(async move {
            jobs::JobsClient::service(self, request)
                .await
                .map_err(jobs_error)
        })
    }
}

fn jobs_error(e: jobs::JobsError) -> OperatorError {
    use jobs::{JobsError, KillError};
    match e {
        JobsError::Kill(KillError::Unknown(task_id)) => no_task(&task_id),
        JobsError::Service(
            e @ (jobs::ServiceError::NotFound(_) | jobs::ServiceError::NoVersion { .. }),
        ) => OperatorError::NotFound(e.to_string()),
        JobsError::Stopped => {
            OperatorError::JobsNotRunning(format!("jobs framework not running: {e}"))
        }
        other => OperatorError::Conflict(other.to_string()),
    }
}

fn no_task(task_id: &TaskId) -> OperatorError {
    OperatorError::NotFound(format!("no task {task_id}"))
}

pub(crate) fn jobs_not_running() -> OperatorError {
    OperatorError::JobsNotRunning(
        "jobs framework not running: the master serves the API, but no jobs framework \
         is attached to it (`wasmos master` and `wasmos up` start one unless --no-jobs)"
            .to_owned(),
    )
}

/// The recorder and the channel its snapshots are published on.
pub(crate) struct Snapshots {
    recorder: Recorder,
    publisher: watch::Sender<Arc<ClusterState>>,
    changed: bool,
    published_at: Option<Millis>,
    /// The jobs framework, whose pending tasks the task listing shows after the core's.
    jobs: watch::Receiver<Option<Arc<dyn JobSubmitter>>>,
    pending_published: Option<Arc<Vec<TaskRow>>>,
}

impl Snapshots {
    pub(crate) fn new(jobs: watch::Receiver<Option<Arc<dyn JobSubmitter>>>) -> Snapshots {
        Snapshots {
            recorder: Recorder::new(),
            publisher: watch::Sender::new(Arc::new(ClusterState::default())),
            changed: true,
            published_at: None,
            jobs,
            pending_published: None,
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.publisher.subscribe()
    }

    /// The recorder, to feed; what it is fed counts as a change.
    pub(crate) fn recorder(&mut self) -> &mut Recorder {
        self.changed = true;
        &mut self.recorder
    }

    /// Something changed that the recorder does not see (an advert, a token).
    pub(crate) fn mark_changed(&mut self) {
        self.changed = true;
    }

    /// The jobs framework's pending rows; `None` without a jobs framework.
    fn pending(&self) -> Option<Arc<Vec<TaskRow>>> {
        let jobs = self.jobs.borrow().clone();
        jobs.map(|jobs| jobs.pending())
    }

    fn changed(&self) -> bool {
        let pending_changed = match (self.pending(), &self.pending_published) {
            (Some(now), Some(published)) => !Arc::ptr_eq(&now, published),
            (now, published) => now.is_some() != published.is_some(),
        };
        self.changed || pending_changed
    }

    /// When the next snapshot is due (master clock).
    pub(crate) fn due(&self) -> Millis {
        match self.published_at {
            None => Millis(0),
            Some(at) if self.changed() => at.plus_ms(SNAPSHOT_INTERVAL_MS_MIN),
            Some(at) => at.plus_ms(SNAPSHOT_IDLE_INTERVAL_MS),
        }
    }

    pub(crate) fn publish_if_due(&mut self, now: Millis, core: &Master, net: &Net) {
        if self.due() <= now {
            self.publish(now, core, net);
        }
    }

    /// The latest snapshot, first published anew if anything changed since: what the
    /// operator's listings answer, so a tool sees what it just did.
    pub(crate) fn fresh(&mut self, now: Millis, core: &Master, net: &Net) -> Arc<ClusterState> {
        if self.changed() {
            self.publish(now, core, net);
        }
        self.publisher.borrow().clone()
    }

    fn publish(&mut self, now: Millis, core: &Master, net: &Net) {
        self.recorder
            .set_decode_errors(net.decode_errors().snapshot());
        let mut state = self.recorder.snapshot(core, unix_ms(), now);
        let pending = self.pending();
        // Pending first, then live, then ended (newest first): the order `ps` promises.
        let rows = pending.iter().flat_map(|rows| rows.iter().cloned());
        state.tasks.splice(0..0, rows);
        self.pending_published = pending;
        // No receiver (HTTP off and no tool asking) is fine: the value is kept.
        self.publisher.send_replace(Arc::new(state));
        self.changed = false;
        self.published_at = Some(now);
    }
}

/// Binds the HTTP listener (before anything else starts, so a port in use fails the
/// start).
pub(crate) async fn bind_http(addr: SocketAddr) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::HttpBind { addr, source })
}

/// What answering operator requests needs; cheap to clone.
#[derive(Clone)]
pub(crate) struct OperatorContext {
    pub(crate) net: Net,
    pub(crate) inputs: mpsc::Sender<Input>,
    pub(crate) jobs: watch::Receiver<Option<Arc<dyn JobSubmitter>>>,
    pub(crate) hosted: watch::Receiver<Option<HostedDoor>>,
    /// The module store: a job naming a module it does not hold is refused.
    pub(crate) store: Arc<ModuleStore>,
    /// Who calls on `master/admin/<principal>`.
    principals: Principals,
    /// What each caller may do.
    policy: Arc<Policy>,
    in_flight: Arc<Semaphore>,
}

impl OperatorContext {
    pub(crate) fn new(
        net: Net,
        inputs: mpsc::Sender<Input>,
        jobs: watch::Receiver<Option<Arc<dyn JobSubmitter>>>,
        hosted: watch::Receiver<Option<HostedDoor>>,
        store: Arc<ModuleStore>,
        principals: Principals,
        policy: Arc<Policy>,
    ) -> OperatorContext {
        OperatorContext {
            net,
            inputs,
            jobs,
            hosted,
            store,
            principals,
            policy,
            in_flight: Arc::new(Semaphore::new(COMMANDS_IN_FLIGHT_MAX)),
        }
    }
}

/// Serves the operator's queryables and, on `listener` if any, the HTTP API over the
/// snapshots of `state` (behind `http_tokens` if any); returns the tasks (to abort when
/// the master stops) and the HTTP address served.
pub(crate) async fn serve(
    listener: Option<TcpListener>,
    http_tokens: Option<Arc<secure::LiveTokenBook>>,
    ctx: OperatorContext,
    state: watch::Receiver<Arc<ClusterState>>,
) -> Result<(Vec<JoinHandle<()>>, Option<SocketAddr>), DaemonError> {
    let keys = ctx.net.keys().clone();
    let mut admin = ctx
        .net
        .serve::<OperatorRequest>(&keys.all_master_admin())
        .await?;
    let admin_ctx = ctx.clone();
    let admin_door = tokio::spawn(async move {
        while let Some(request) = admin.recv().await {
            let caller = admin_ctx.principals.caller(&keys, &request.key);
            let key = request.key.clone();
            let (request, responder) = request.into_parts();
            let Some(caller) = caller else {
                let refusal =
                    OperatorReply::Error(OperatorError::Forbidden(Principals::unknown(&key)));
                let _ = responder.reply(&refusal).await;
                continue;
            };
            spawn_answer(&admin_ctx, caller, request, Reply::Zenoh(responder)).await;
        }
    });
    let mut tasks = vec![admin_door];
    let Some(listener) = listener else {
        return Ok((tasks, None));
    };
    let addr = listener.local_addr().ok();
    let (commands_tx, mut commands_rx) = mpsc::channel::<Command>(COMMANDS_QUEUED_MAX);
    let mut handles = Handles::new(state, commands_tx);
    if let Some(tokens) = http_tokens {
        handles = handles.with_tokens(tokens);
    }
    tasks.push(tokio::spawn(http_api::serve_on(listener, handles)));
    tasks.push(tokio::spawn(async move {
        while let Some(Command {
            request,
            caller,
            reply,
        }) = commands_rx.recv().await
        {
            spawn_answer(&ctx, caller, request, Reply::Http(reply)).await;
        }
    }));
    Ok((tasks, addr))
}

/// Where an answer goes. A client that went away before it is not an error.
enum Reply {
    Zenoh(Responder),
    Http(oneshot::Sender<OperatorReply>),
}

/// Answers in a task of its own, at most [`COMMANDS_IN_FLIGHT_MAX`] at once.
async fn spawn_answer(
    ctx: &OperatorContext,
    caller: Principal,
    request: OperatorRequest,
    reply: Reply,
) {
    let Ok(permit) = ctx.in_flight.clone().acquire_owned().await else {
        return;
    };
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let answer = answer(&ctx, &caller, request).await;
        drop(permit);
        let sent = match (reply, answer) {
            (Reply::Http(tx), answer) => {
                let _ = tx.send(answer);
                Ok(())
            }
            (Reply::Zenoh(responder), answer) => responder.reply(&answer).await,
        };
        if let Err(e) = sent {
            tracing::debug!(%e, "could not answer an operator request");
        }
    });
}

/// The one answer to every operator request, from zenoh or HTTP, for `caller`; what the
/// policy does not allow is refused (and logged) before anything is done.
pub(crate) async fn answer(
    ctx: &OperatorContext,
    caller: &Principal,
    request: OperatorRequest,
) -> OperatorReply {
    // A task's output is checked against the task's framework, once it is found.
    let checked = match &request {
        OperatorRequest::Logs(_) => Ok(()),
        other => ctx.policy.check_operator(caller, operator_act(other)),
    };
    if let Err(refusal) = checked {
        return OperatorReply::Error(refused(ctx, caller, refusal).await);
    }
    let listed = match request {
        OperatorRequest::Agents => fresh(ctx)
            .await
            .map(|s| OperatorReply::Agents(s.agents.clone())),
        OperatorRequest::Frameworks => fresh(ctx)
            .await
            .map(|s| OperatorReply::Frameworks(s.frameworks.clone())),
        OperatorRequest::Tasks => fresh(ctx)
            .await
            .map(|s| OperatorReply::Tasks(s.tasks.clone())),
        OperatorRequest::Offers => fresh(ctx)
            .await
            .map(|s| OperatorReply::Offers(s.offers.clone())),
        OperatorRequest::DecodeErrors => Ok(OperatorReply::DecodeErrors(
            ctx.net.decode_errors().snapshot(),
        )),
        OperatorRequest::Logs(request) => logs(ctx, caller, request).await,
        OperatorRequest::Kill { task_id } => kill(ctx, task_id).await,
        OperatorRequest::SubmitJob(job) => submit(ctx, job).await,
        OperatorRequest::Hosted(request) => Ok(OperatorReply::Hosted(hosted(ctx, request).await)),
        OperatorRequest::Jobs(request) => declared(ctx, request).await.map(OperatorReply::Jobs),
        OperatorRequest::Explain { subject } => crate::explain::explain(ctx, subject)
            .await
            .map(|e| OperatorReply::Explain(Box::new(e))),
        OperatorRequest::TaskRows { task_ids } => task_rows(ctx, task_ids).await,
    };
    listed.unwrap_or_else(OperatorReply::Error)
}

/// What the policy is asked about a request. A hosted scheduler runs as the master and
/// may launch anything, so adding one needs the grant OCI jobs need.
fn operator_act(request: &OperatorRequest) -> OperatorAct {
    match request {
        OperatorRequest::Agents
        | OperatorRequest::Frameworks
        | OperatorRequest::Tasks
        | OperatorRequest::Offers
        | OperatorRequest::DecodeErrors
        | OperatorRequest::Logs(_)
        | OperatorRequest::Hosted(HostedRequest::List) => OperatorAct::Read,
        OperatorRequest::Kill { .. } | OperatorRequest::Hosted(HostedRequest::Remove { .. }) => {
            OperatorAct::Kill
        }
        OperatorRequest::SubmitJob(job) => OperatorAct::Submit {
            oci: job.image.is_some(),
        },
        OperatorRequest::Hosted(HostedRequest::Add(_)) => OperatorAct::Submit { oci: true },
        OperatorRequest::Explain { .. } | OperatorRequest::TaskRows { .. } => OperatorAct::Read,
        OperatorRequest::Jobs(request) => match request {
            JobsRequest::List | JobsRequest::Status { .. } | JobsRequest::History { .. } => {
                OperatorAct::Read
            }
            JobsRequest::Deploy(decl) => OperatorAct::Submit {
                oci: decl.oci.is_some(),
            },
            // Back to any earlier version, an OCI one among them.
            JobsRequest::Revert { .. } => OperatorAct::Submit { oci: true },
            JobsRequest::Promote { .. } => OperatorAct::Submit { oci: false },
            JobsRequest::Stop { .. } => OperatorAct::Kill,
        },
    }
}

/// The rows of the tasks asked about, in the order asked: from the core's books (the
/// snapshot lists only the most recently ended), else the jobs framework's pending ones.
async fn task_rows(
    ctx: &OperatorContext,
    task_ids: Vec<TaskId>,
) -> Result<OperatorReply, OperatorError> {
    if task_ids.len() > TASK_ROWS_ASKED_MAX {
        return Err(OperatorError::BadRequest(format!(
            "{} task ids asked about; at most {TASK_ROWS_ASKED_MAX} at once",
            task_ids.len()
        )));
    }
    let asked = task_ids.clone();
    let known = read(ctx, move |core, now| {
        let clock = WallClock {
            wall_ms: unix_ms(),
            master_now: now,
        };
        core.task_rows_of(&asked, clock)
    })
    .await?;
    let mut rows: HashMap<TaskId, TaskRow> = (known.into_iter())
        .map(|r| (r.task_id.clone(), r))
        .collect();
    if let Some(jobs) = ctx.jobs.borrow().clone() {
        let wanted: HashSet<&TaskId> = task_ids.iter().collect();
        let (pending, cancelled) = (jobs.pending(), jobs.cancelled());
        for row in (pending.iter().chain(cancelled.iter())).filter(|r| wanted.contains(&r.task_id))
        {
            rows.entry(row.task_id.clone())
                .or_insert_with(|| row.clone());
        }
    }
    let in_order = task_ids.iter().filter_map(|id| rows.remove(id));
    Ok(OperatorReply::Tasks(in_order.collect()))
}

/// Logs a refusal (and enters it in the operator log); the error for the caller.
async fn refused(ctx: &OperatorContext, caller: &Principal, refusal: Refusal) -> OperatorError {
    tracing::warn!(%caller, %refusal, "operator request refused");
    let _ = ctx.inputs.send(Input::Refused(refusal.to_string())).await;
    OperatorError::Forbidden(refusal.to_string())
}

fn stopping() -> OperatorError {
    OperatorError::Conflict("the master is stopping".to_owned())
}

/// The latest snapshot, published anew first if anything changed.
pub(crate) async fn fresh(ctx: &OperatorContext) -> Result<Arc<ClusterState>, OperatorError> {
    let (tx, rx) = oneshot::channel();
    ctx.inputs
        .send(Input::Snapshot(tx))
        .await
        .map_err(|_| stopping())?;
    rx.await.map_err(|_| stopping())
}

/// Runs `read` on the core between two inputs, with the core's time.
pub(crate) async fn read<T: Send + 'static>(
    ctx: &OperatorContext,
    read: impl FnOnce(&Master, Millis) -> T + Send + 'static,
) -> Result<T, OperatorError> {
    let (tx, rx) = oneshot::channel();
    let job: crate::CoreRead = Box::new(move |core, now| {
        let _ = tx.send(read(core, now));
    });
    ctx.inputs
        .send(Input::Inspect(job))
        .await
        .map_err(|_| stopping())?;
    rx.await.map_err(|_| stopping())
}

/// A launched task through the core; one the core does not know, or whose task ended but
/// whose copy waits to restart, cancelled in the jobs framework if it holds it.
async fn kill(ctx: &OperatorContext, task_id: TaskId) -> Result<OperatorReply, OperatorError> {
    let (reply, answer) = oneshot::channel();
    let input = Input::KillTask {
        task_id: task_id.clone(),
        reply,
    };
    ctx.inputs.send(input).await.map_err(|_| stopping())?;
    match answer.await.map_err(|_| stopping())? {
        Ok(()) => Ok(OperatorReply::Killed),
        Err(OperatorKillError::Unknown(_)) => {
            let jobs = ctx.jobs.borrow().clone();
            match jobs {
                Some(jobs) => jobs.cancel(&task_id).await.map(|()| OperatorReply::Killed),
                None => Err(no_task(&task_id)),
            }
        }
        Err(ended @ OperatorKillError::Ended { .. }) => {
            // A copy of the jobs framework waiting out its restart backoff: its task ended,
            // its copy has not; cancelled there.
            let jobs = ctx.jobs.borrow().clone();
            match jobs {
                Some(jobs) if jobs.cancel(&task_id).await.is_ok() => Ok(OperatorReply::Killed),
                _ => Err(OperatorError::Conflict(ended.to_string())),
            }
        }
    }
}

/// What the task wrote, from the agent in its row.
async fn logs(
    ctx: &OperatorContext,
    caller: &Principal,
    request: LogsRequest,
) -> Result<OperatorReply, OperatorError> {
    let task_id = request.task_id.clone();
    let id = task_id.clone();
    let place = read(ctx, move |core, _| core.task_place(&id)).await?;
    if let Some((framework_id, _)) = &place
        && let Err(refusal) = ctx.policy.check_read_output(caller, framework_id)
    {
        return Err(refused(ctx, caller, refusal).await);
    }
    if place.is_none()
        && let Err(refusal) = ctx.policy.check_operator(caller, OperatorAct::Read)
    {
        return Err(refused(ctx, caller, refusal).await);
    }
    let Some((_, agent_id)) = place else {
        // A task the jobs framework holds has written nothing yet; a follower waits on.
        let jobs = ctx.jobs.borrow().clone();
        let pending = jobs.is_some_and(|j| j.pending().iter().any(|t| t.task_id == task_id));
        return match pending {
            true => Ok(OperatorReply::Logs(TaskOutput::empty(
                TaskState::Pending,
                LogOffsets::default(),
            ))),
            false => Err(no_task(&task_id)),
        };
    };
    let key = ctx.net.keys().agent_logs(agent_id.as_str());
    match ctx
        .net
        .query::<LogsRequest, LogsReply>(&key, &request, LOGS_QUERY_TIMEOUT_MS)
        .await
    {
        Ok(LogsReply::Output(output)) => Ok(OperatorReply::Logs(output)),
        Ok(LogsReply::Error { message }) => ended_without_output(ctx, &request, message).await,
        Err(e) => {
            let message = format!("agent {agent_id} did not give the output of {task_id}: {e}");
            ended_without_output(ctx, &request, message).await
        }
    }
}

/// The agent gave no output. For a task that has ended (lost with its agent, or
/// forgotten by it) that is the answer: its end, with nothing to read, so that a follower
/// stops. For a live task, `message` (its agent may be back soon).
async fn ended_without_output(
    ctx: &OperatorContext,
    request: &LogsRequest,
    message: String,
) -> Result<OperatorReply, OperatorError> {
    let (from, id) = (request.from.unwrap_or_default(), request.task_id.clone());
    match read(ctx, move |core, _| core.task_end(&id)).await? {
        Some(state) => Ok(OperatorReply::Logs(TaskOutput::empty(state, from))),
        None => Err(OperatorError::Conflict(message)),
    }
}

/// Validated here, for every door alike, then handed to the jobs framework.
async fn submit(ctx: &OperatorContext, job: JobRequest) -> Result<OperatorReply, OperatorError> {
    let size = proto::encode(&job).map_or(usize::MAX, |bytes| bytes.len());
    if size > JOB_REQUEST_BYTES_MAX {
        return Err(OperatorError::InvalidJob(format!(
            "the job is {size} bytes, over the limit of {JOB_REQUEST_BYTES_MAX}"
        )));
    }
    let job = job
        .validate()
        .map_err(|e| OperatorError::InvalidJob(e.to_string()))?;
    if let jobs::request::Artifact::Module(sha256) = &job.artifact
        && !ctx.store.contains(sha256)
    {
        let unknown = net::modules::StoreError::Unknown(sha256.clone());
        return Err(OperatorError::InvalidJob(format!("module: {unknown}")));
    }
    let jobs = ctx.jobs.borrow().clone();
    let jobs = jobs.ok_or_else(jobs_not_running)?;
    jobs.submit(job).await.map(OperatorReply::JobAccepted)
}

/// Declared jobs: a deploy is validated here (the size limit of jobs, the module in the
/// store) and, like every other request about them, answered by the jobs framework.
async fn declared(ctx: &OperatorContext, request: JobsRequest) -> Result<JobsReply, OperatorError> {
    let request = match request {
        JobsRequest::Deploy(decl) => {
            let size = proto::encode(&decl).map_or(usize::MAX, |bytes| bytes.len());
            if size > JOB_REQUEST_BYTES_MAX {
                return Err(OperatorError::InvalidJob(format!(
                    "the job is {size} bytes, over the limit of {JOB_REQUEST_BYTES_MAX}"
                )));
            }
            let decl =
                ValidDecl::validate(*decl).map_err(|e| OperatorError::InvalidJob(e.to_string()))?;
            if let jobs::request::Artifact::Module(sha256) = &decl.template.artifact
                && !ctx.store.contains(sha256)
            {
                let unknown = net::modules::StoreError::Unknown(sha256.clone());
                return Err(OperatorError::InvalidJob(format!("module: {unknown}")));
            }
            ServiceRequest::Deploy(Box::new(decl))
        }
        JobsRequest::List => ServiceRequest::List,
        JobsRequest::Status { name } => ServiceRequest::Status(name),
        JobsRequest::History { name } => ServiceRequest::History(name),
        JobsRequest::Promote { name } => ServiceRequest::Promote(name),
        JobsRequest::Revert { name, to } => ServiceRequest::Revert { name, to },
        JobsRequest::Stop { name } => ServiceRequest::Stop(name),
    };
    let jobs = ctx.jobs.borrow().clone();
    let jobs = jobs.ok_or_else(jobs_not_running)?;
    jobs.service(request).await
}

async fn hosted(ctx: &OperatorContext, request: HostedRequest) -> HostedReply {
    let door = ctx.hosted.borrow().clone();
    match door {
        Some(door) => door.answer(request).await,
        None => HostedReply::Error {
            message: "this master is still starting its hosted frameworks; ask again".to_owned(),
        },
    }
}
