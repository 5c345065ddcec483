//! Job submissions and task kills: what `POST /api/v1/jobs` and `DELETE /api/v1/tasks/{id}`
//! send to the master daemon, which carries them out through its jobs framework.

use std::future::Future;
use std::pin::Pin;

use proto::TaskId;
use tokio::sync::oneshot;

pub use ::jobs::request::{
    Artifact, JOB_COUNT_MAX, JOB_ITEM_BYTES_MAX, JOB_LIST_ITEMS_MAX, JOB_NAME_BYTES_MAX,
    JobAccepted, JobError, JobRequest, RestartPolicy, TASK_CPUS_MAX, TASK_MEM_MIB_MAX, ValidJob,
};

use crate::state::LogTail;

/// Why the daemon refused a command.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// No such task (answered 404).
    #[error("{0}")]
    NotFound(String),
    /// Valid, but not possible now: a task already ended, a module not in the store
    /// (answered 409).
    #[error("{0}")]
    Conflict(String),
}

/// A request to the master daemon, answered on `reply`. The daemon must answer every
/// command (dropping `reply` is answered 503 to the client).
#[derive(Debug)]
pub enum Command {
    SubmitJob {
        job: ValidJob,
        reply: oneshot::Sender<Result<JobAccepted, CommandError>>,
    },
    KillTask {
        task_id: TaskId,
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    /// The tail of a task's output (from its agent's `logs` queryable).
    TaskLogs {
        task_id: TaskId,
        reply: oneshot::Sender<Result<LogTail, CommandError>>,
    },
}

/// What an async [`JobSubmitter`] method returns (boxed, so the trait is object safe).
pub type SubmitterFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, CommandError>> + Send + 'a>>;

/// The jobs framework as the master daemon sees it: the seam through which
/// `POST /api/v1/jobs` and `DELETE /api/v1/tasks/{id}` reach it. The daemon holds at most
/// one (attached after start, since the framework connects to the running master); with
/// none, submissions are answered 409 "jobs framework not running".
pub trait JobSubmitter: Send + Sync + 'static {
    /// Queues `job`; answers the ids its tasks will have.
    fn submit(&self, job: ValidJob) -> SubmitterFuture<'_, JobAccepted>;
    /// Kills one of the framework's tasks and keeps it from being restarted.
    /// [`CommandError::NotFound`] means "not one of mine": the daemon then kills the task
    /// through the master on behalf of the framework that owns it.
    fn kill<'a>(&'a self, task_id: &'a TaskId) -> SubmitterFuture<'a, ()>;
}

/// The answer to a submission while no jobs framework is attached.
pub fn jobs_not_running() -> CommandError {
    CommandError::Conflict(
        "jobs framework not running: the master serves the API, but no jobs framework \
         is attached to it (`wasmos master` and `wasmos up` start one unless --no-jobs)"
            .to_owned(),
    )
}

/// The jobs framework's client, as the daemon hands it to the API
/// (`master.attach_jobs(Arc::new(jobs_handle.client()))`).
impl JobSubmitter for ::jobs::JobsClient {
    fn submit(&self, job: ValidJob) -> SubmitterFuture<'_, JobAccepted> {
        Box::pin(async move {
            ::jobs::JobsClient::submit(self, job)
                .await
                .map_err(command_error)
        })
    }

    fn kill<'a>(&'a self, task_id: &'a TaskId) -> SubmitterFuture<'a, ()> {
        Box::pin(async move {
            ::jobs::JobsClient::kill(self, task_id)
                .await
                .map_err(command_error)
        })
    }
}

/// "Not one of mine" is `NotFound` (the daemon then kills the task through the master on
/// behalf of its framework); everything else conflicts with the framework's state.
fn command_error(e: ::jobs::JobsError) -> CommandError {
    use ::jobs::{JobsError, KillError};
    match e {
        JobsError::Kill(KillError::Unknown(_)) => CommandError::NotFound(e.to_string()),
        JobsError::Stopped => CommandError::Conflict(format!("jobs framework not running: {e}")),
        other => CommandError::Conflict(other.to_string()),
    }
}
