//! Exchanges beyond the offer protocol that are not the operator's (for those, see
//! [`crate::operator`]): module upload into the master's store, and a task's output from
//! its agent.
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
