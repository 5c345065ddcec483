//! The client side of uploads: send a module to the master's store, chunk by chunk, on
//! the `master/upload` queryable (protocol in [`proto::admin`]).

use proto::admin::UploadReply;
use proto::{MODULE_CHUNK_BYTES_MAX, ModuleChunk, ModuleHash, ModuleRef};
use thiserror::Error;

use crate::error::QueryError;
use crate::modules::store::{
    MODULE_BYTES_MAX, WasmHeaderError, check_wasm, chunk_count, module_hash,
};
use crate::session::Net;

/// How long the master may take to store one uploaded chunk.
pub const UPLOAD_CHUNK_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug, Error)]
pub enum UploadError {
    #[error("module {name:?} is {size_bytes} bytes, over the store's limit of {max} bytes")]
    TooLarge {
        name: String,
        size_bytes: u64,
        max: u64,
    },
    #[error("module {name:?} is not sent: {source}")]
    NotWasm {
        name: String,
        source: WasmHeaderError,
    },
    #[error("cannot upload module {name:?}: {source}")]
    Query { name: String, source: QueryError },
    #[error("the master refused module {name:?}: {message}")]
    Refused { name: String, message: String },
    #[error(
        "the master answered chunk {index} of module {name:?} with {reply:?}, which does not follow"
    )]
    Protocol {
        name: String,
        index: u32,
        reply: UploadReply,
    },
}

/// How far an upload is, for progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadProgress {
    pub sent_bytes: u64,
    pub total_bytes: u64,
}

/// Puts `bytes` into the master's module store and returns the reference tasks use.
/// Nothing but chunk 0 is sent when the store holds the module already. `progress` is
/// called after every chunk the master took.
pub async fn upload_module(
    net: &Net,
    name: &str,
    bytes: &[u8],
    mut progress: impl FnMut(UploadProgress),
) -> Result<ModuleRef, UploadError> {
    let total_bytes = bytes.len() as u64;
    if total_bytes > MODULE_BYTES_MAX {
        return Err(UploadError::TooLarge {
            name: name.to_owned(),
            size_bytes: total_bytes,
            max: MODULE_BYTES_MAX,
        });
    }
    // The store would refuse it once it holds it all: say so before sending any.
    check_wasm(bytes).map_err(|source| UploadError::NotWasm {
        name: name.to_owned(),
        source,
    })?;
    let sha256 = module_hash(bytes);
    let count = chunk_count(total_bytes);
    let key = net.keys().master_upload(net.principal());
    // `chunks` of an empty slice yields nothing, but an empty module is one empty chunk.
    let pieces: Vec<&[u8]> = if bytes.is_empty() {
        vec![bytes]
    } else {
        bytes.chunks(MODULE_CHUNK_BYTES_MAX).collect()
    };
    let mut sent_bytes = 0;
    for (index, piece) in (0..count).zip(pieces) {
        let chunk = ModuleChunk {
            sha256: sha256.clone(),
            size_bytes: total_bytes,
            index,
            count,
            bytes: piece.to_vec(),
        };
        let reply: UploadReply = net
            .query(&key, &chunk, UPLOAD_CHUNK_TIMEOUT_MS)
            .await
            .map_err(|source| UploadError::Query {
                name: name.to_owned(),
                source,
            })?;
        sent_bytes += piece.len() as u64;
        match chunk_taken(name, index, &sha256, total_bytes, reply)? {
            ChunkTaken::Continue => progress(UploadProgress {
                sent_bytes,
                total_bytes,
            }),
            ChunkTaken::Stored => {
                progress(UploadProgress {
                    sent_bytes: total_bytes,
                    total_bytes,
                });
                return Ok(ModuleRef {
                    sha256,
                    size_bytes: total_bytes,
                    name: name.to_owned(),
                });
            }
        }
    }
    Err(UploadError::Protocol {
        name: name.to_owned(),
        index: count.saturating_sub(1),
        reply: UploadReply::Continue { next_index: count },
    })
}

/// What the master's reply to one chunk says.
enum ChunkTaken {
    /// Send the next chunk.
    Continue,
    /// The whole module is in the store.
    Stored,
}

fn chunk_taken(
    name: &str,
    index: u32,
    sha256: &ModuleHash,
    total_bytes: u64,
    reply: UploadReply,
) -> Result<ChunkTaken, UploadError> {
    match reply {
        UploadReply::Continue { next_index } if next_index == index + 1 => Ok(ChunkTaken::Continue),
        UploadReply::Stored {
            sha256: stored,
            size_bytes,
        } if stored == *sha256 && size_bytes == total_bytes => Ok(ChunkTaken::Stored),
        UploadReply::Error { message } => Err(UploadError::Refused {
            name: name.to_owned(),
            message,
        }),
        reply => Err(UploadError::Protocol {
            name: name.to_owned(),
            index,
            reply,
        }),
    }
}
