//! The master's operator surface: the [`ClusterState`] snapshots that the HTTP API, the
//! dashboard and the CLI listings all read (one code path), and the answers to the API's
//! [`Command`]s.
//!
//! The driver owns a [`Snapshots`]: it hands its [`Recorder`] every input and action and
//! publishes a snapshot on a `watch` channel when something changed, at most every
//! [`SNAPSHOT_INTERVAL_MS_MIN`], and every [`SNAPSHOT_IDLE_INTERVAL_MS`] regardless (so
//! the share chart and the decode-error counters move on an idle cluster). Commands are
//! answered by [`answer_commands`] outside the driver: kills go into the driver as an
//! input (the core is only touched there), log tails are asked of the task's agent, jobs
//! go to the attached [`JobSubmitter`].

use std::net::SocketAddr;
use std::sync::Arc;

use http_api::jobs::{JobSubmitter, jobs_not_running};
use http_api::state::LogTail;
use http_api::{ClusterState, Command, CommandError, Handles, Recorder, SNAPSHOT_INTERVAL_MS_MIN};
use master::{Master, Millis};
use net::Net;
use proto::TaskId;
use proto::admin::{LogsReply, LogsRequest};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::Input;
use crate::error::DaemonError;
use net::clock::unix_ms;

/// Between two snapshots of a cluster where nothing happened.
pub const SNAPSHOT_IDLE_INTERVAL_MS: u64 = 5_000;
/// Commands queued from the HTTP API; its handlers wait for room beyond it.
pub const COMMANDS_QUEUED_MAX: usize = 64;
/// Commands answered at once (log queries wait on agents); the rest wait in the queue.
pub const COMMANDS_IN_FLIGHT_MAX: usize = 16;
/// How long the master waits for an agent's log tail; shorter than the API's own
/// [`http_api::COMMAND_TIMEOUT_MS`] so that the client hears the agent's failure.
pub const LOGS_QUERY_TIMEOUT_MS: u64 = 3_000;
/// Most bytes of each stream in a task's log tail; older bytes are counted as dropped.
pub const LOG_TAIL_BYTES_MAX: usize = 64 * 1024;

/// The jobs framework attached to a running master, if any.
pub(crate) type JobsSlot = watch::Receiver<Option<Arc<dyn JobSubmitter>>>;

/// The recorder and the channel its snapshots are published on.
pub(crate) struct Snapshots {
    recorder: Recorder,
    publisher: watch::Sender<Arc<ClusterState>>,
    changed: bool,
    published_at: Option<Millis>,
}

impl Snapshots {
    pub(crate) fn new() -> Snapshots {
        Snapshots {
            recorder: Recorder::new(),
            publisher: watch::Sender::new(Arc::new(ClusterState::default())),
            changed: true,
            published_at: None,
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

    /// When the next snapshot is due (master clock).
    pub(crate) fn due(&self) -> Millis {
        match self.published_at {
            None => Millis(0),
            Some(at) if self.changed => at.plus_ms(SNAPSHOT_INTERVAL_MS_MIN),
            Some(at) => at.plus_ms(SNAPSHOT_IDLE_INTERVAL_MS),
        }
    }

    pub(crate) fn publish_if_due(&mut self, now: Millis, core: &Master, net: &Net) {
        if self.due() <= now {
            self.publish(now, core, net);
        }
    }

    /// The latest snapshot, first published anew if anything changed since: what the
    /// `master/admin` queryable answers, so a tool sees what it just did.
    pub(crate) fn fresh(&mut self, now: Millis, core: &Master, net: &Net) -> Arc<ClusterState> {
        if self.changed {
            self.publish(now, core, net);
        }
        self.publisher.borrow().clone()
    }

    pub(crate) fn latest(&self) -> Arc<ClusterState> {
        self.publisher.borrow().clone()
    }

    fn publish(&mut self, now: Millis, core: &Master, net: &Net) {
        self.recorder
            .set_decode_errors(net.decode_errors().snapshot());
        let state = self.recorder.snapshot(core, unix_ms(), now);
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

/// Serves the HTTP API on `listener`, if any, and answers its commands; returns the tasks
/// (to abort when the master stops) and the address served.
pub(crate) fn serve(
    listener: Option<TcpListener>,
    ctx: CommandContext,
) -> (Vec<JoinHandle<()>>, Option<SocketAddr>) {
    let Some(listener) = listener else {
        return (Vec::new(), None);
    };
    let addr = listener.local_addr().ok();
    let (commands_tx, commands_rx) = mpsc::channel(COMMANDS_QUEUED_MAX);
    let handles = Handles {
        state: ctx.state.clone(),
        commands: commands_tx,
    };
    let server = tokio::spawn(async move {
        if let Err(e) = http_api::serve_on(listener, handles).await {
            tracing::error!(%e, "the HTTP API stopped");
        }
    });
    let answers = tokio::spawn(answer_commands(commands_rx, ctx));
    (vec![server, answers], addr)
}

/// What answering commands needs; cheap to clone.
#[derive(Clone)]
pub(crate) struct CommandContext {
    pub(crate) net: Net,
    pub(crate) state: watch::Receiver<Arc<ClusterState>>,
    pub(crate) inputs: mpsc::Sender<Input>,
    pub(crate) jobs: JobsSlot,
}

/// Answers the HTTP API's commands until the API's side of the channel is gone, at most
/// [`COMMANDS_IN_FLIGHT_MAX`] at once.
pub(crate) async fn answer_commands(mut commands: mpsc::Receiver<Command>, ctx: CommandContext) {
    let in_flight = Arc::new(Semaphore::new(COMMANDS_IN_FLIGHT_MAX));
    while let Some(command) = commands.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            answer(&ctx, command).await;
            drop(permit);
        });
    }
}

/// A client that went away before the answer is not an error: its `reply` is dropped.
async fn answer(ctx: &CommandContext, command: Command) {
    match command {
        Command::SubmitJob { job, reply } => {
            let jobs = ctx.jobs.borrow().clone();
            let answer = match jobs {
                Some(jobs) => jobs.submit(job).await,
                None => Err(jobs_not_running()),
            };
            let _ = reply.send(answer);
        }
        Command::KillTask { task_id, reply } => {
            let _ = reply.send(kill(ctx, task_id).await);
        }
        Command::TaskLogs { task_id, reply } => {
            let _ = reply.send(logs(ctx, &task_id).await);
        }
    }
}

/// Through the jobs framework when the task is one of its own (so that it is not
/// restarted), else through the master on behalf of the task's framework.
async fn kill(ctx: &CommandContext, task_id: TaskId) -> Result<(), CommandError> {
    let jobs = ctx.jobs.borrow().clone();
    if let Some(jobs) = jobs {
        match jobs.kill(&task_id).await {
            Err(CommandError::NotFound(_)) => {}
            done => return done,
        }
    }
    let (reply, answer) = oneshot::channel();
    let stopped = || CommandError::Conflict("the master is stopping".to_owned());
    ctx.inputs
        .send(Input::KillTask { task_id, reply })
        .await
        .map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

/// The tail of what the task wrote, from the agent in the task's row.
async fn logs(ctx: &CommandContext, task_id: &TaskId) -> Result<LogTail, CommandError> {
    let agent_id = ctx
        .state
        .borrow()
        .tasks
        .iter()
        .find(|t| &t.task_id == task_id)
        .map(|t| t.agent_id.clone())
        .ok_or_else(|| CommandError::NotFound(format!("no task {task_id}")))?;
    let request = LogsRequest {
        task_id: task_id.clone(),
    };
    let key = ctx.net.keys().agent_logs(agent_id.as_str());
    match ctx
        .net
        .query::<LogsRequest, LogsReply>(&key, &request, LOGS_QUERY_TIMEOUT_MS)
        .await
    {
        Ok(LogsReply::Output {
            stdout,
            stderr,
            dropped_bytes,
            ..
        }) => Ok(log_tail(stdout, stderr, dropped_bytes)),
        Ok(LogsReply::Error { message }) => Err(CommandError::Conflict(message)),
        Err(e) => Err(CommandError::Conflict(format!(
            "agent {agent_id} did not give the output of {task_id}: {e}"
        ))),
    }
}

/// The last [`LOG_TAIL_BYTES_MAX`] of each stream, decoded lossily.
fn log_tail(stdout: Vec<u8>, stderr: Vec<u8>, dropped_bytes: u64) -> LogTail {
    let mut dropped = dropped_bytes;
    let mut tail = |bytes: Vec<u8>| {
        let cut = bytes.len().saturating_sub(LOG_TAIL_BYTES_MAX);
        dropped += cut as u64;
        String::from_utf8_lossy(&bytes[cut..]).into_owned()
    };
    let (stdout, stderr) = (tail(stdout), tail(stderr));
    LogTail {
        stdout,
        stderr,
        dropped_bytes: dropped,
    }
}

/// Kills a live task through the core, on behalf of its framework (the driver's side of
/// [`Input::KillTask`]). An ended task is a conflict, an unknown one not found.
pub(crate) fn kill_in_core(
    core: &mut Master,
    snapshots: &mut Snapshots,
    now: Millis,
    task_id: TaskId,
) -> Result<(), CommandError> {
    let live = core.tasks_view().into_iter().find(|t| t.task_id == task_id);
    let Some(task) = live else {
        let latest = snapshots.latest();
        return Err(match latest.tasks.iter().find(|t| t.task_id == task_id) {
            Some(t) => CommandError::Conflict(format!(
                "task {task_id} already ended ({})",
                t.state.as_str()
            )),
            None => CommandError::NotFound(format!("no task {task_id}")),
        });
    };
    let call = proto::FrameworkCall {
        framework_id: Some(task.framework_id),
        call: proto::Call::Kill { task_id },
    };
    let result = core.handle_call(now, call.clone());
    snapshots.recorder().observe_call(unix_ms(), &call, &result);
    result
        .map(|_| ())
        .map_err(|e| CommandError::Conflict(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_the_end_of_each_stream_and_counts_the_rest() {
        let long = vec![b'a'; LOG_TAIL_BYTES_MAX + 10];
        let tail = log_tail(long, b"err\xff".to_vec(), 5);
        assert_eq!(tail.stdout.len(), LOG_TAIL_BYTES_MAX);
        assert_eq!(tail.stderr, "err\u{fffd}");
        assert_eq!(tail.dropped_bytes, 15);
    }
}
