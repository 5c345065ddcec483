//! The host side of wasmos modules: framework schedulers and allocation policies written
//! against `executor-sdk` (or its README's ABI) run here, in wasmtime, with a budget on
//! every call and no access to the host.
//!
//! Code map:
//! - [`abi`]: the messages crossing the module boundary (host twins of the SDK's types).
//! - [`sandbox`]: compiling, instantiating and calling one module under [`sandbox::Limits`].
//! - [`scheduler`]: a hosted framework scheduler with report / retry with backoff /
//!   deactivate on repeated failures.
//! - [`allocator`]: [`allocator::WasmAllocator`], the master's `Allocator` backed by a
//!   module, falling back to the built-in DRF when the module fails.
//!
//! Architecture invariant: the master core knows nothing of wasmtime; this crate adapts
//! modules to the core's traits and types.

pub mod abi;
pub mod allocator;
pub mod sandbox;
pub mod scheduler;

pub use allocator::{WasmAllocator, allocator_from_spec};
pub use sandbox::{GuestError, Kind, Limits, Metering, ModuleCode};
pub use scheduler::{FailurePolicy, Health, HostedScheduler, SchedulerFault};
