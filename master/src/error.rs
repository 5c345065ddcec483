//! Why a framework's call was refused. A refused call changes nothing.

use proto::{FrameworkId, OfferId, Resources, TaskId};

/// A refused framework call; its `Display` is the message the framework receives.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("this call needs a framework_id: subscribe first")]
    MissingFrameworkId,
    #[error("framework {0} is not subscribed")]
    NotSubscribed(FrameworkId),
    #[error("framework {0} was torn down; its id is never reused, subscribe without one")]
    TornDown(FrameworkId),
    #[error("subscribe names framework {named} but the call comes from {from}")]
    IdMismatch {
        named: FrameworkId,
        from: FrameworkId,
    },
    #[error("weight {0} is not a positive number")]
    InvalidWeight(f64),
    #[error("{0}")]
    InvalidLabel(String),
    #[error("role must not be empty")]
    EmptyRole,
    #[error("framework {framework} has role {has}; a failover cannot change it to {asked}")]
    RoleChange {
        framework: FrameworkId,
        has: String,
        asked: String,
    },
    #[error(
        "role {role} has weight {has}; subscribe with that weight, or have the operator give the role a weight (`wasmos master --role-weight {role}=W`), within which each framework's own weight counts"
    )]
    RoleWeightMismatch { role: String, has: f64 },
    #[error("accept names no offer")]
    NoOffers,
    #[error("offer {0} is named twice")]
    DuplicateOffer(OfferId),
    #[error("offer {0} is unknown, or was already accepted, declined, rescinded or expired")]
    UnknownOffer(OfferId),
    #[error("offer {0} was made to another framework")]
    NotYourOffer(OfferId),
    #[error("{count} tasks in one accept, more than the limit of {max}")]
    TooManyTasks { count: usize, max: usize },
    #[error("task id {0} is already in use (task ids are never reused)")]
    DuplicateTask(TaskId),
    #[error("task {task}: {error}")]
    BadDisconnectPolicy {
        task: TaskId,
        error: proto::DisconnectPolicyError,
    },
    #[error(
        "task {task} replaces {original}, which is running again and is kept \
         (on_reconnect keep-original)"
    )]
    OriginalKept { task: TaskId, original: TaskId },
    #[error("task {task} needs {needs}, which does not fit in what is left of the accepted offers")]
    DoesNotFit { task: TaskId, needs: Resources },
    /// A task must reserve something: one with no resources would run uncounted.
    #[error(
        "task {0} asks for no resources: every task must reserve some (amounts count in thousandths: at least 0.001)"
    )]
    NoResources(TaskId),
    #[error("task {0} is unknown or has ended")]
    UnknownTask(TaskId),
    #[error("task {0} belongs to another framework")]
    NotYourTask(TaskId),
    #[error("{0} acknowledgements in one call, over the limit of {max}", max = proto::ACKS_PER_CALL_MAX)]
    TooManyAcks(usize),
    /// Some of a call's acknowledgements were refused; those not refused were taken.
    #[error(
        "{refused} of {total} acknowledgements refused{taken}; the first: {first}",
        taken = if refused < total { " (the others were taken)" } else { "" }
    )]
    AcksRefused {
        refused: usize,
        total: usize,
        first: Box<CallError>,
    },
    #[error("refused: {0}")]
    Refused(#[from] crate::policy::Refusal),
}
