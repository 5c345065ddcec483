//! Exchanges between operator tools and the master beyond the offer protocol.
//!
//! Module upload: a client (`wasmos run`) sends a module to the master's store on the
//! `master/upload` queryable as a sequence of [`crate::ModuleChunk`] queries, index 0
//! first and in order, each answered with an [`UploadReply`]. Chunk 0 of a module the
//! store already holds is answered with `Stored` at once, so nothing more is sent.

use serde::{Deserialize, Serialize};

use crate::ids::ModuleHash;

/// The master's answer to one uploaded chunk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum UploadReply {
    /// Chunk taken; send chunk `next_index` next.
    Continue { next_index: u32 },
    /// The whole module is in the store and its bytes hash to `sha256`.
    Stored { sha256: ModuleHash, size_bytes: u64 },
    /// The upload failed; start again from chunk 0 after fixing what `message` says.
    Error { message: String },
}

/// A question from an operator tool on the `master/admin` queryable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    Agents,
    Frameworks,
    Tasks,
    Offers,
    /// Payloads the master dropped because they did not decode, per key.
    DecodeErrors,
}

/// The master's answer: a JSON array (one object per row) or object: the rows of the
/// snapshot its HTTP API serves (`GET /api/v1/agents`, `/frameworks`, `/tasks`). JSON because these rows are for people and tools that print them,
/// and their fields grow with the master; the protocol stays put.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AdminReply {
    Json { json: String },
    Error { message: String },
}

/// A request on an agent's `agents/<id>/logs` queryable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogsRequest {
    pub task_id: crate::ids::TaskId,
}

/// Most bytes of each stream in one [`LogsReply::Output`]; the tail is kept.
pub const LOG_STREAM_BYTES_MAX: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LogsReply {
    /// What an ended task wrote. `dropped_bytes` counts what was not kept (by the
    /// executor's output limit or [`LOG_STREAM_BYTES_MAX`]), both streams together.
    Output {
        state: crate::task::TaskState,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
        dropped_bytes: u64,
    },
    /// No output to give, and why ("still running", "not on this agent").
    Error { message: String },
}

/// Most bytes of a hosted scheduler's `--config` file.
pub const HOSTED_CONFIG_BYTES_MAX: usize = 64 << 10;

/// A request on the `master/frameworks/hosted` queryable: frameworks whose scheduler is a
/// module (executor-sdk/README.md) that runs inside the master process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HostedRequest {
    /// Run the scheduler `module` (already in the master's module store) as a new
    /// framework; answered with [`HostedReply::Added`] once it has subscribed.
    Add(HostedFramework),
    /// The hosted schedulers and their health, as a JSON array.
    List,
}

/// A framework whose scheduler the master hosts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostedFramework {
    pub name: String,
    pub role: String,
    pub weight: f64,
    /// The scheduler module, in the master's module store.
    pub module: crate::task::ModuleRef,
    /// The module's configuration (the `--config` file), at most
    /// [`HOSTED_CONFIG_BYTES_MAX`] bytes.
    pub config: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HostedReply {
    Added {
        framework_id: crate::ids::FrameworkId,
    },
    Json {
        json: String,
    },
    Error {
        message: String,
    },
}

/// A request on the jobs framework's `jobs/submit` queryable (`wasmos run`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobsRequest {
    /// Submit a job: `json` is the job exactly as `POST /api/v1/jobs` takes it (the
    /// `JobRequest` of the `wasmos-jobs` crate), so both ways in share one shape and one
    /// validation.
    Submit { json: String },
}

/// The jobs framework's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobsReply {
    /// Taken: `json` is the `JobAccepted` object (`job_id`, `task_ids`).
    Accepted { json: String },
    /// Refused, with what to fix.
    Error { message: String },
}
