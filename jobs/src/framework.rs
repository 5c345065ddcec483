//! The adapter: runs a [`JobBook`] over `framework::FrameworkClient` in a tokio task. It
//! moves messages and holds the timer; the book decides.
//!
//! Jobs reach it through a [`JobsClient`]: the master's operator protocol
//! (`master_daemon::operator`) is the one door for `wasmos run` and `POST /api/v1/jobs`,
//! and hands it jobs it validated with [`crate::request::ValidateJob`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use framework::{FrameworkClient, FrameworkConfig, FrameworkError};
use net::Net;
use proto::operator::TaskRow;
use proto::{Call, Filters, TaskId};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::book::{JobBook, JobBookConfig, KillError, SubmitError};
use crate::request::{JobAccepted, ValidJob};
use crate::service::{ServiceError, ServiceRequest};
use crate::store::StateStore;
use crate::waiting::Waiting;
use proto::declared::JobsReply;

/// The framework name the jobs framework subscribes with.
pub const JOBS_FRAMEWORK_NAME: &str = "jobs";
/// How long the master keeps the jobs framework's tasks while it is away: a week, since
/// the framework comes back with the master that hosts it.
pub const JOBS_FAILOVER_TIMEOUT_MS: u64 = 7 * 24 * 3600 * 1000;
/// Requests from [`JobsHandle`]s waiting for the framework's task; callers wait beyond it.
pub const COMMANDS_QUEUED_MAX: usize = 64;

/// How the jobs framework subscribes and schedules.
#[derive(Clone, Debug)]
pub struct JobsConfig {
    pub name: String,
    pub role: String,
    pub weight: f64,
    pub book: JobBookConfig,
    /// Where the framework id ([`FRAMEWORK_ID_BLOB`]) and the jobs ([`STATE_BLOB`],
    /// [`crate::persist`]) are kept, so that a restarted framework (with a restarted
    /// master, or a standby that took over) subscribes with the same id, keeps its
    /// running tasks and goes on with its jobs. `None`: a new framework at every start.
    pub store: Option<Arc<dyn StateStore>>,
}

/// The jobs framework's id, in its [`StateStore`].
pub const FRAMEWORK_ID_BLOB: &str = "jobs.id";
/// The jobs framework's jobs, in its [`StateStore`].
pub const STATE_BLOB: &str = "jobs.state.json";

impl Default for JobsConfig {
    /// Framework `jobs` in role `default` with weight 1.
    fn default() -> JobsConfig {
        JobsConfig {
            name: JOBS_FRAMEWORK_NAME.to_owned(),
            role: "default".to_owned(),
            weight: 1.0,
            book: JobBookConfig::default(),
            store: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum JobsError {
    #[error("the jobs framework could not subscribe to the master: {0}")]
    Subscribe(#[source] FrameworkError),
    #[error("{0}")]
    Submit(#[from] SubmitError),
    #[error("{0}")]
    Kill(#[from] KillError),
    #[error("{0}")]
    Service(#[from] ServiceError),
    #[error("the jobs framework has stopped")]
    Stopped,
    #[error(
        "the jobs state cannot be written ({0}; see the master's log): no job is accepted \
         until it can be, as a master restarted meanwhile would not know it"
    )]
    StateUnwritable(String),
}

/// Subscribes with the id kept in `store` when there is one (a new subscription when
/// the master refuses it), and keeps the id it gets there.
async fn subscribe(
    net: &Net,
    mut config: FrameworkConfig,
    store: Option<&dyn StateStore>,
) -> Result<(FrameworkClient, framework::Events), JobsError> {
    let kept = match store {
        Some(store) => read_framework_id(store).await,
        None => None,
    };
    if let Some(id) = kept {
        config.info.framework_id = Some(id.clone());
        match FrameworkClient::subscribe(net.clone(), config.clone()).await {
            Ok(subscribed) => return Ok(subscribed),
            Err(e) => {
                tracing::warn!(%id, %e, "the master refused the kept framework id; subscribing anew");
                config.info.framework_id = None;
            }
        }
    }
    let (client, events) = FrameworkClient::subscribe(net.clone(), config)
        .await
        .map_err(JobsError::Subscribe)?;
    if let Some(store) = store
        && let Err(e) = (store.save(FRAMEWORK_ID_BLOB, client.framework_id().as_str().into())).await
    {
        let place = store.place(FRAMEWORK_ID_BLOB);
        tracing::warn!(%place, %e, "cannot keep the jobs framework id; a restart will start a new framework");
    }
    Ok((client, events))
}

async fn read_framework_id(store: &dyn StateStore) -> Option<proto::FrameworkId> {
    let bytes = match store.load(FRAMEWORK_ID_BLOB).await {
        Ok(bytes) => bytes?,
        Err(e) => {
            let place = store.place(FRAMEWORK_ID_BLOB);
            tracing::warn!(%place, %e, "cannot read the kept jobs framework id");
            return None;
        }
    };
    let text = String::from_utf8(bytes).ok()?;
    let id = text.trim();
    proto::keys::valid_chunk("framework id", id).ok()?;
    Some(proto::FrameworkId::new(id))
}

/// Starts the jobs framework.
pub struct JobsFramework;

impl JobsFramework {
    /// Subscribes as a framework (retrying while no master answers, see
    /// `framework::FrameworkConfig::subscribe_timeout_ms`) and runs until [`JobsHandle::shutdown`] or until `net` closes.
    pub async fn start(net: Net, config: JobsConfig) -> Result<JobsHandle, JobsError> {
        let mut framework_config =
            FrameworkConfig::new(&config.name).with_role(&config.role, config.weight);
        framework_config.info.failover_timeout_ms = JOBS_FAILOVER_TIMEOUT_MS;
        let (client, events) = subscribe(&net, framework_config, config.store.as_deref()).await?;
        let (commands_tx, commands_rx) = mpsc::channel(COMMANDS_QUEUED_MAX);
        let (stop_tx, stop_rx) = oneshot::channel();
        let framework_id = client.framework_id().clone();
        tracing::info!(%framework_id, "jobs framework subscribed");
        let (pending_tx, pending_rx) = watch::channel(Arc::new(Vec::new()));
        let (cancelled_tx, cancelled_rx) = watch::channel(Arc::new(Vec::new()));
        let book = match &config.store {
            Some(store) => load_book(config.book, store.as_ref()).await,
            None => JobBook::new(config.book, incarnation()),
        };
        let driver = Driver {
            book,
            store: config.store,
            saved_at: None,
            dirty: false,
            save_failing: false,
            revive_held: false,
            pending_say_unwritable: false,
            client,
            events,
            commands: commands_rx,
            stop: stop_rx,
            started: Instant::now(),
            pending: pending_tx,
            cancelled: cancelled_tx,
        };
        Ok(JobsHandle {
            client: JobsClient {
                commands: commands_tx,
                pending: pending_rx,
                cancelled: cancelled_rx,
            },
            framework_id,
            stop: stop_tx,
            task: tokio::spawn(driver.run()),
        })
    }
}

/// The running jobs framework. [`JobsHandle::shutdown`] stops it and waits; dropping the
/// handle stops it too, without waiting.
pub struct JobsHandle {
    client: JobsClient,
    framework_id: proto::FrameworkId,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl JobsHandle {
    pub fn framework_id(&self) -> &proto::FrameworkId {
        &self.framework_id
    }

    /// Takes `job`; its task ids are chosen at once and its copies launch as offers come.
    pub async fn submit(&self, job: ValidJob) -> Result<JobAccepted, JobsError> {
        self.client.submit(job).await
    }

    /// Kills a task of a job and does not restart it; an error when the task is not one
    /// of the jobs framework's ([`KillError::Unknown`]) or has ended already
    /// ([`KillError::Ended`]).
    pub async fn kill(&self, task_id: &proto::TaskId) -> Result<(), JobsError> {
        self.client.kill(task_id).await
    }

    /// A cheap handle for submissions and kills to give to others (the HTTP API); its
    /// calls fail with [`JobsError::Stopped`] once the framework is shut down.
    pub fn client(&self) -> JobsClient {
        self.client.clone()
    }

    /// Stops the framework: no more offers are taken and its clients' calls fail. Its
    /// running tasks stay (the master keeps them for the framework's failover timeout).
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            tracing::error!(%e, "the jobs framework's task panicked");
        }
    }
}

/// Submissions and kills for a running jobs framework; cheap to clone.
#[derive(Clone, Debug)]
pub struct JobsClient {
    commands: mpsc::Sender<Command>,
    pending: watch::Receiver<Arc<Vec<TaskRow>>>,
    cancelled: watch::Receiver<Arc<Vec<TaskRow>>>,
}

impl JobsClient {
    /// The copies waiting for an offer ([`JobBook::pending_rows`]) as of the framework's
    /// latest step; a new `Arc` whenever they change.
    pub fn pending(&self) -> Arc<Vec<TaskRow>> {
        self.pending.borrow().clone()
    }

    /// The copies cancelled before they started ([`JobBook::cancelled_rows`]).
    pub fn cancelled(&self) -> Arc<Vec<TaskRow>> {
        self.cancelled.borrow().clone()
    }

    /// See [`JobsHandle::submit`].
    pub async fn submit(&self, job: ValidJob) -> Result<JobAccepted, JobsError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Submit { job, reply }).await?;
        answer.await.map_err(|_| JobsError::Stopped)?
    }

    /// See [`JobsHandle::kill`].
    pub async fn kill(&self, task_id: &TaskId) -> Result<(), JobsError> {
        let (reply, answer) = oneshot::channel();
        let task_id = task_id.clone();
        self.send(Command::Kill { task_id, reply }).await?;
        answer.await.map_err(|_| JobsError::Stopped)?
    }

    /// The copies that wait for `subject` (a job name or id, or a task id), for
    /// `wasmos explain`; `None` when the framework holds none of them.
    pub async fn waiting(&self, subject: &str) -> Result<Option<Waiting>, JobsError> {
        let (reply, answer) = oneshot::channel();
        let subject = subject.to_owned();
        self.send(Command::Waiting { subject, reply }).await?;
        answer.await.map_err(|_| JobsError::Stopped)
    }

    /// A request about declared jobs (`wasmos deploy`, `wasmos job …`).
    pub async fn service(&self, request: ServiceRequest) -> Result<JobsReply, JobsError> {
        let (reply, answer) = oneshot::channel();
        let request = Box::new(request);
        self.send(Command::Service { request, reply }).await?;
        answer.await.map_err(|_| JobsError::Stopped)?
    }

    async fn send(&self, command: Command) -> Result<(), JobsError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| JobsError::Stopped)
    }
}

#[derive(Debug)]
enum Command {
    Submit {
        job: ValidJob,
        reply: oneshot::Sender<Result<JobAccepted, JobsError>>,
    },
    Kill {
        task_id: TaskId,
        reply: oneshot::Sender<Result<(), JobsError>>,
    },
    Waiting {
        subject: String,
        reply: oneshot::Sender<Option<Waiting>>,
    },
    Service {
        request: Box<ServiceRequest>,
        reply: oneshot::Sender<Result<JobsReply, JobsError>>,
    },
}

/// Different in every run of the framework, so task ids never repeat across runs: the
/// wall clock in milliseconds (a clock before 1970 falls back to the process id, which is
/// still unlikely to repeat soon).
fn incarnation() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_else(|_| u64::from(std::process::id()))
}

/// The book kept in `store`, or a new one when there is none. A state that cannot be
/// read is kept aside (as [`UNREADABLE_BLOB`]) and said loudly, never silently
/// overwritten.
async fn load_book(config: JobBookConfig, store: &dyn StateStore) -> JobBook {
    let place = store.place(STATE_BLOB);
    let bytes = match store.load(STATE_BLOB).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return JobBook::new(config, incarnation()),
        Err(e) => {
            tracing::error!(%place, %e, "cannot read the jobs state; starting without it");
            return JobBook::new(config, incarnation());
        }
    };
    match JobBook::restore(config.clone(), incarnation(), &bytes) {
        Ok(book) => book,
        Err(e) => {
            let aside = store.place(UNREADABLE_BLOB);
            tracing::error!(%place, %aside, %e, "the jobs state is unreadable; kept aside, starting without it");
            if let Err(e) = store.save(UNREADABLE_BLOB, bytes).await {
                tracing::error!(%e, "could not keep the unreadable jobs state aside");
            }
            JobBook::new(config, incarnation())
        }
    }
}

/// Where an unreadable state is kept for people to look at.
pub const UNREADABLE_BLOB: &str = "jobs.state.unreadable";

/// Between two writes of the jobs state when no call waits on it.
const STATE_SAVE_INTERVAL_MS: u64 = 1_000;
/// What a pending row's reason starts with while the state cannot be written.
const UNWRITABLE_WAIT: &str = "the jobs state cannot be written (see the master's log)";

struct Driver {
    book: JobBook,
    store: Option<Arc<dyn StateStore>>,
    saved_at: Option<Instant>,
    /// Inputs went in since the state was last written.
    dirty: bool,
    /// The last write of the state failed: launches wait, and the write is tried again
    /// only every [`STATE_SAVE_INTERVAL_MS`], however many offers come meanwhile.
    save_failing: bool,
    /// A `Revive` the book sent while the state could not be written, held until it is:
    /// sent, it would bring the offers just declined straight back, in a loop.
    revive_held: bool,
    /// The published pending rows say the state cannot be written.
    pending_say_unwritable: bool,
    client: FrameworkClient,
    events: framework::Events,
    commands: mpsc::Receiver<Command>,
    stop: oneshot::Receiver<()>,
    started: Instant,
    /// What [`JobsClient::pending`] reads, published after every step.
    pending: watch::Sender<Arc<Vec<TaskRow>>>,
    /// What [`JobsClient::cancelled`] reads, published when a copy was cancelled.
    cancelled: watch::Sender<Arc<Vec<TaskRow>>>,
}

impl Driver {
    async fn run(mut self) {
        loop {
            let saved = self.save_state(false).await;
            self.send_calls(saved).await;
            self.publish_pending();
            let wake = self
                .book
                .poll_timeout()
                .map(|ms| self.started + Duration::from_millis(ms));
            let save = self.save_due();
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(event) => {
                        let now = self.now_ms();
                        self.book.handle_event(now, event);
                    }
                    None => {
                        tracing::info!("the jobs framework's event stream ended");
                        return;
                    }
                },
                Some(command) = self.commands.recv() => self.handle_command(command),
                _ = &mut self.stop => {
                    self.save_state(true).await;
                    return;
                }
                () = sleep_until(wake) => {
                    let now = self.now_ms();
                    self.book.handle_timeout(now);
                }
                // Only to write the state: the loop's head does.
                () = sleep_until(save) => continue,
            }
            self.dirty = true;
        }
    }

    /// When the state is next written without a call waiting on it.
    fn save_due(&self) -> Option<Instant> {
        let interval = Duration::from_millis(STATE_SAVE_INTERVAL_MS);
        (self.dirty && self.store.is_some())
            .then(|| self.saved_at.map_or_else(Instant::now, |at| at + interval))
    }

    /// Writes the state before calls go out (write-ahead: no task is launched that a
    /// restarted framework would not know), and otherwise at most every
    /// [`STATE_SAVE_INTERVAL_MS`]; `now`: at once (the framework stops). False when the
    /// state could not be written: launches wait until it is, and it is tried again
    /// [`STATE_SAVE_INTERVAL_MS`] later. A failing streak is logged once, and its end.
    async fn save_state(&mut self, now: bool) -> bool {
        let Some(store) = &self.store else {
            return true;
        };
        let due = self.save_due().is_some_and(|at| at <= Instant::now());
        if self.save_failing && !(now || due) {
            return false;
        }
        if !self.dirty || !(now || self.book.has_calls() || due) {
            return true;
        }
        let written = match self.book.save() {
            Ok(bytes) => store.save(STATE_BLOB, bytes).await,
            Err(e) => Err(format!("cannot encode it: {e}")),
        };
        let place = store.place(STATE_BLOB);
        match &written {
            Err(e) if !self.save_failing => {
                tracing::error!(%place, %e, "cannot write the jobs state; no task is launched until it is written (tried again every second)")
            }
            Err(e) => tracing::debug!(%place, %e, "the jobs state still cannot be written"),
            Ok(()) if self.save_failing => {
                tracing::info!(%place, "the jobs state is written again; launches go on")
            }
            Ok(()) => {}
        }
        let saved = written.is_ok();
        self.saved_at = Some(Instant::now());
        self.dirty = !saved;
        self.save_failing = !saved;
        saved
    }

    /// While the state cannot be written, the refusal of a new job.
    fn unwritable(&self) -> Option<JobsError> {
        let store = self.store.as_ref().filter(|_| self.save_failing)?;
        Some(JobsError::StateUnwritable(store.place(STATE_BLOB)))
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Rebuilds the pending rows only when the waiting copies (or the framework's id, or
    /// whether the state can be written) changed, since a row depends on nothing else
    /// that changes: this runs after every event.
    fn publish_pending(&mut self) {
        let same = {
            let published = self.pending.borrow();
            let same_framework = (published.first())
                .is_none_or(|row| Some(&row.framework_id) == self.book.framework_id());
            let ids = published.iter().map(|row| &row.task_id);
            same_framework
                && self.book.pending_task_ids().eq(ids)
                && self.pending_say_unwritable == self.save_failing
        };
        if !same {
            let mut rows = self.book.pending_rows();
            if self.save_failing {
                for row in &mut rows {
                    row.reason = format!("{UNWRITABLE_WAIT}; {}", row.reason);
                }
            }
            self.pending_say_unwritable = self.save_failing;
            self.pending.send_replace(Arc::new(rows));
        }
        // Rows are only ever added, the oldest dropped: the newest tells a change.
        let cancelled = self.book.cancelled_rows();
        let changed = {
            let published = self.cancelled.borrow();
            published.last().map(|r| &r.task_id) != cancelled.back().map(|r| &r.task_id)
        };
        if changed {
            (self.cancelled).send_replace(Arc::new(cancelled.iter().cloned().collect()));
        }
    }

    /// Sends the book's calls; unless `may_launch` (the state that names the tasks is not
    /// written), each `Accept` is declined instead and its tasks wait again, and a
    /// `Revive` is held until the state is written.
    async fn send_calls(&mut self, may_launch: bool) {
        if may_launch && std::mem::take(&mut self.revive_held) {
            self.send(Call::Revive).await;
        }
        while let Some(mut call) = self.book.poll_call() {
            match call {
                Call::Revive if !may_launch => {
                    self.revive_held = true;
                    continue;
                }
                // The master never heard the held `Revive`: it is still suppressed.
                Call::Suppress if std::mem::take(&mut self.revive_held) => continue,
                _ => {}
            }
            if let Call::Accept { offer_ids, .. } = &call
                && !may_launch
            {
                let offer_ids = offer_ids.clone();
                let now = self.now_ms();
                self.book.handle_call_refused(now, &call);
                call = Call::Decline {
                    offer_ids,
                    filters: Filters::default(),
                };
            }
            self.send(call).await;
        }
    }

    async fn send(&mut self, call: Call) {
        if let Err(e) = self.client.call(call.clone()).await {
            tracing::warn!(%e, "a call of the jobs framework failed");
            let now = self.now_ms();
            self.book.handle_call_refused(now, &call);
        }
    }

    fn handle_command(&mut self, command: Command) {
        let now = self.now_ms();
        match command {
            Command::Submit { job, reply } => {
                let answer = match self.unwritable() {
                    Some(e) => Err(e),
                    None => self.book.submit(now, job).map_err(JobsError::from),
                };
                let _ = reply.send(answer);
            }
            Command::Kill { task_id, reply } => {
                let _ = reply.send(self.book.kill(now, &task_id).map_err(JobsError::from));
            }
            Command::Waiting { subject, reply } => {
                let _ = reply.send(self.book.waiting_for(now, &subject));
            }
            Command::Service { request, reply } => {
                let answer = match (self.unwritable(), &*request) {
                    (Some(e), ServiceRequest::Deploy(_)) => Err(e),
                    _ => (self.book.handle_service_request(now, *request)).map_err(JobsError::from),
                };
                let _ = reply.send(answer);
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
