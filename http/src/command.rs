//! What the API asks the master daemon beyond the published snapshot: a task's output, a
//! kill, a job. The questions are the operator protocol's ([`OperatorRequest`]), so the
//! daemon answers them in the one place it answers operator tools on zenoh.

use proto::Principal;
use proto::operator::{OperatorReply, OperatorRequest};
use tokio::sync::oneshot;

/// A request to the master daemon, answered on `reply`. The daemon must answer every
/// command (dropping `reply` is answered 503 to the client).
#[derive(Debug)]
pub struct Command {
    pub request: OperatorRequest,
    /// Who asked: the principal of the request's bearer token, or
    /// [`Principal::anonymous`] when the API has no tokens. The daemon's policy decides
    /// with it.
    pub caller: Principal,
    pub reply: oneshot::Sender<OperatorReply>,
}
