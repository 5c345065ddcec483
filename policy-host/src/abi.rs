//! The host's side of the module ABI (executor-sdk/README.md): the messages written into a
//! module's input buffer and read back from its output buffer. Every type crossing is the
//! `std` twin of an `executor_sdk` guest type and encodes to the same postcard bytes
//! (checked by the test suite); ABI messages carry no protocol-version byte, the module's
//! `wasmos_abi_version` export stands for it.

use master::allocator::OfferDecision;
use proto::{Call, Event};
use serde::{Deserialize, Serialize};

/// The ABI version this host speaks (`executor_sdk::ABI_VERSION`).
pub const ABI_VERSION: u32 = 2;

/// Export giving the module's ABI version: `() -> i32`.
pub const EXPORT_ABI_VERSION: &str = "wasmos_abi_version";
/// Export giving the address of an input buffer of at least `len` bytes: `(i32) -> i32`.
pub const EXPORT_INPUT: &str = "wasmos_input";
/// Scheduler entry point: `(input_len: i32) -> i64`.
pub const EXPORT_SCHEDULER_HANDLE: &str = "wasmos_scheduler_handle";
/// Allocator entry point: `(input_len: i32) -> i64`.
pub const EXPORT_ALLOCATOR_ALLOCATE: &str = "wasmos_allocator_allocate";
/// The module's linear memory.
pub const EXPORT_MEMORY: &str = "memory";

/// One input of a scheduler module (`executor_sdk::SchedulerInput`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SchedulerInput {
    /// First call of an instance, with the framework's `--config` file bytes.
    Start {
        now_ms: u64,
        config: Vec<u8>,
    },
    Event {
        now_ms: u64,
        event: Event,
    },
    Tick {
        now_ms: u64,
    },
}

// An allocator's input is the master's `master::allocator::Snapshot` followed by the
// candidate agents (`allocator::WasmAllocator` encodes it); its answer is zero or more
// `master::allocator::OfferDecision`.

/// What decoding a module's output found wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OutputError {
    #[error("message {index} of the output does not decode: {reason}")]
    Malformed { index: usize, reason: String },
    #[error("output holds more than {max} messages")]
    TooMany { max: usize },
}

/// Most calls one scheduler answer may hold.
pub const CALLS_PER_ANSWER_MAX: usize = 4096;
/// Most offer decisions one allocation pass may hold.
pub const DECISIONS_PER_PASS_MAX: usize = 100_000;

/// Decodes an output buffer: zero or more postcard messages back to back.
pub fn decode_messages<T: serde::de::DeserializeOwned>(
    mut bytes: &[u8],
    max: usize,
) -> Result<Vec<T>, OutputError> {
    let mut messages = Vec::new();
    while !bytes.is_empty() {
        if messages.len() == max {
            return Err(OutputError::TooMany { max });
        }
        let (message, rest) =
            postcard::take_from_bytes(bytes).map_err(|e| OutputError::Malformed {
                index: messages.len(),
                reason: e.to_string(),
            })?;
        messages.push(message);
        bytes = rest;
    }
    Ok(messages)
}

/// A scheduler's answer decoded.
pub fn decode_calls(bytes: &[u8]) -> Result<Vec<Call>, OutputError> {
    decode_messages(bytes, CALLS_PER_ANSWER_MAX)
}

/// An allocator's answer decoded.
pub fn decode_decisions(bytes: &[u8]) -> Result<Vec<OfferDecision>, OutputError> {
    decode_messages(bytes, DECISIONS_PER_PASS_MAX)
}
