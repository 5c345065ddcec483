//! The guest SDK of wasmos: write a framework scheduler or an allocation policy as a
//! struct and a trait impl, export it with one macro, build it for
//! `wasm32-unknown-unknown`.
//!
//! ```ignore
//! #![no_std]
//! use executor_sdk::{Allocator, AllocationInput, Decisions, export_allocator};
//! #[derive(Default)]
//! struct FirstFit;
//! impl Allocator for FirstFit {
//!     fn allocate(&mut self, input: &AllocationInput<'_>, decisions: &mut Decisions<'_>) { /* ... */ }
//! }
//! export_allocator!(FirstFit);
//! ```
//!
//! No heap: messages are read in place from the input buffer (strings borrow it, long
//! sequences decode one element at a time, see [`Seq`]) and calls are encoded straight
//! into the output buffer. The ABI beneath (exports, memory ownership, encodings, error
//! codes) is in this crate's README, for modules written in C or Zig.
//!
//! Architecture invariant: the message types here are the guest's view of `proto` types
//! and encode to the same bytes; the host's test suite checks this against `proto`.

#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod allocator;
pub mod config;
pub mod scheduler;
pub mod task;
pub mod template;
pub mod types;
pub mod wire;

pub use allocator::{
    AgentEntry, AgentFilters, AllocationInput, Allocator, Changes, Decisions, FilterSlot,
    FrameworkEntry, GpuAgents, OfferDecision, RoleWeight,
};
pub use config::Config;
pub use scheduler::{
    Call, Calls, DirGrant, Event, ModuleRef, OciTask, Operation, Scheduler, SchedulerInput,
    TaskKind, TaskLimits, TaskSpec, WasmTask,
};
pub use template::WasmTaskTemplate;
pub use types::{
    Attributes, Constraint, ConstraintOp, Filters, Offer, Quantities, Resources, TaskState,
    TaskStatus,
};
pub use wire::{Decode, Error, Indexed, Output, Seq};

/// Version of the module ABI described in the README. A host refuses a module whose
/// `wasmos_abi_version` export returns another value. Version 2 carries the messages of
/// `proto::PROTOCOL_VERSION` 2 (version 1's constraints had no operator).
pub const ABI_VERSION: u32 = 2;
/// Size of the SDK's input buffer: the largest message a module built with this SDK takes.
pub const INPUT_BYTES_MAX: usize = 4 << 20;
/// Size of the SDK's output buffer: the most call or decision bytes one call returns.
pub const OUTPUT_BYTES_MAX: usize = 1 << 20;

/// The SDK's side of the ABI, used by the export macros. Not for module authors.
#[doc(hidden)]
pub mod __rt {
    use core::cell::UnsafeCell;

    use crate::wire::{Error, Output};
    use crate::{INPUT_BYTES_MAX, OUTPUT_BYTES_MAX};

    /// A static a module mutates. Sound because a WASM instance runs one call at a time
    /// (no threads, and the ABI imports nothing the guest could re-enter through).
    pub struct GuestCell<T>(UnsafeCell<T>);

    // SAFETY: see the type's comment; wasm32 modules built with this SDK are single-threaded.
    unsafe impl<T> Sync for GuestCell<T> {}

    impl<T> GuestCell<T> {
        pub const fn new(value: T) -> GuestCell<T> {
            GuestCell(UnsafeCell::new(value))
        }

        /// # Safety
        /// No other reference to the value may be live: call once per export call.
        #[allow(clippy::mut_from_ref)]
        pub unsafe fn get_mut(&self) -> &mut T {
            // SAFETY: guaranteed by the caller.
            unsafe { &mut *self.0.get() }
        }
    }

    static INPUT: GuestCell<[u8; INPUT_BYTES_MAX]> = GuestCell::new([0; INPUT_BYTES_MAX]);
    static OUTPUT: GuestCell<[u8; OUTPUT_BYTES_MAX]> = GuestCell::new([0; OUTPUT_BYTES_MAX]);

    /// `wasmos_input(len)`: where the host writes an input of `len` bytes; 0 when too large.
    pub fn input(len: u32) -> usize {
        if len as usize > INPUT_BYTES_MAX {
            0
        } else {
            INPUT.0.get() as usize
        }
    }

    /// Runs `handler` on the first `len` input bytes and packs the ABI result:
    /// `(output address << 32) | output length`, or a negative [`Error::code`].
    pub fn run(len: u32, handler: impl FnOnce(&[u8], Output<'_>) -> Result<usize, Error>) -> i64 {
        let len = len as usize;
        if len > INPUT_BYTES_MAX {
            return Error::Malformed.code();
        }
        // SAFETY: one export call at a time; the host wrote the input before this call.
        let input = unsafe { &INPUT.get_mut()[..len] };
        // SAFETY: as above; the output is only read by the host after this call returns.
        let output = unsafe { OUTPUT.get_mut() };
        let address = output.as_ptr() as usize as i64;
        match handler(input, Output::new(output)) {
            Ok(written) => (address << 32) | written as i64,
            Err(e) => e.code(),
        }
    }
}

/// The exports every module has: the ABI version and the input buffer.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_common {
    () => {
        #[unsafe(no_mangle)]
        pub extern "C" fn wasmos_abi_version() -> u32 {
            $crate::ABI_VERSION
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn wasmos_input(len: u32) -> u32 {
            $crate::__rt::input(len) as u32
        }
    };
}

/// Exports a [`Scheduler`] type as a scheduler module: `wasmos_abi_version`,
/// `wasmos_input` and `wasmos_scheduler_handle` (see the README).
#[macro_export]
macro_rules! export_scheduler {
    ($scheduler:ty) => {
        $crate::__export_common!();

        #[unsafe(no_mangle)]
        pub extern "C" fn wasmos_scheduler_handle(input_len: u32) -> i64 {
            static STATE: $crate::__rt::GuestCell<Option<$scheduler>> =
                $crate::__rt::GuestCell::new(None);
            $crate::__rt::run(input_len, |input, output| {
                // SAFETY: the only reference to STATE during this export call.
                let state = unsafe { STATE.get_mut() };
                $crate::scheduler::handle::<$scheduler>(state, input, output)
            })
        }
    };
}

/// Exports an [`Allocator`] type as an allocator module: `wasmos_abi_version`,
/// `wasmos_input` and `wasmos_allocator_allocate` (see the README).
#[macro_export]
macro_rules! export_allocator {
    ($allocator:ty) => {
        $crate::__export_common!();

        #[unsafe(no_mangle)]
        pub extern "C" fn wasmos_allocator_allocate(input_len: u32) -> i64 {
            static STATE: $crate::__rt::GuestCell<Option<$allocator>> =
                $crate::__rt::GuestCell::new(None);
            $crate::__rt::run(input_len, |input, output| {
                // SAFETY: the only reference to STATE during this export call.
                let state = unsafe { STATE.get_mut() };
                $crate::allocator::handle::<$allocator>(state, input, output)
            })
        }
    };
}
