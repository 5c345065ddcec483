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
