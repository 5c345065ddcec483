//! The one codec: a protocol-version byte, then the postcard encoding of a `proto` type.
//!
//! `decode` never panics on any input: it rejects empty, oversized, wrong-version,
//! malformed and trailing-garbage frames with a typed [`DecodeError`].

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// Version of the wire format; bumped on any incompatible change to a `proto` type.
pub const PROTOCOL_VERSION: u8 = 6;
/// Largest frame `decode` accepts (and `encode` produces): a module chunk plus headroom.
pub const FRAME_BYTES_MAX: usize = 4 << 20;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty frame")]
    Empty,
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("protocol version {found} is not the supported version {expected}")]
    Version { found: u8, expected: u8 },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("frame has {0} trailing bytes after the message")]
    TrailingBytes(usize),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("message encodes to {len} bytes, over the frame limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("message cannot be encoded: {0}")]
    Serialize(String),
}

pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, EncodeError> {
    let frame = postcard::to_extend(message, vec![PROTOCOL_VERSION])
        .map_err(|e| EncodeError::Serialize(e.to_string()))?;
    if frame.len() > FRAME_BYTES_MAX {
        return Err(EncodeError::TooLarge {
            len: frame.len(),
            max: FRAME_BYTES_MAX,
        });
    }
    Ok(frame)
}

pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, DecodeError> {
    decode_as_version(frame, PROTOCOL_VERSION)
}

/// Decodes a frame written under protocol `version` as `T`, a type the caller keeps with
/// that version's layout: for files written by an earlier release (an agent's status
/// journal), never for the wire.
pub fn decode_as_version<T: DeserializeOwned>(
    frame: &[u8],
    expected: u8,
) -> Result<T, DecodeError> {
    if frame.len() > FRAME_BYTES_MAX {
        return Err(DecodeError::TooLarge {
            len: frame.len(),
            max: FRAME_BYTES_MAX,
        });
    }
    let (&version, body) = frame.split_first().ok_or(DecodeError::Empty)?;
    if version != expected {
        return Err(DecodeError::Version {
            found: version,
            expected,
        });
    }
    let (message, rest) =
        postcard::take_from_bytes(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(message)
}
