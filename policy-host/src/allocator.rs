//! [`WasmAllocator`]: the master's allocation policy backed by an allocator module.
//!
//! Each pass encodes the master's `Snapshot` and the candidate agents (shuffled with the
//! same seeded SplitMix64 sequence the built-in DRF uses, so that a module implementing
//! DRF gives exactly its results), calls the module under its budgets, and checks the
//! answer. When the module fails — trap, budget, malformed or invalid answer — the pass is
//! done by the built-in [`DrfAllocator`] instead, with a `tracing::error!` line; the module
//! then sits out 1, 2, 4, ... (at most [`PASSES_SKIPPED_MAX`]) passes, also done by the
//! built-in, and is instantiated afresh when tried again: a failing policy never stalls the
//! cluster, nor burns its whole budget on every pass.
//!
//! Cost per pass: encoding the snapshot (`O(agents + frameworks + filters)` bytes, into a
//! buffer kept between passes), one call into the instance kept between passes, decoding
//! and checking the decisions (`O(decisions × log agents)`). The fallback's sorter is not
//! kept in step on passes the module does: it is rebuilt from the snapshot when it takes
//! over (`O(frameworks × log F)`, once).

use master::allocator::{Allocator, DrfAllocator, OfferDecision, Snapshot, visiting_order};
use proto::AgentId;
use serde::Serialize;

use crate::abi;
use crate::sandbox::{GuestError, GuestInstance, Kind, Limits, ModuleCode};

pub use master::BUILTIN_DRF_SEED_MIX;
use master::rng::SplitMix64;

/// What one pass sends: the snapshot, then the candidates in visiting order.
#[derive(Serialize)]
struct AllocatorInput<'s> {
    snapshot: &'s Snapshot,
    candidates: &'s [&'s AgentId],
}

/// An allocation policy running as a module; see the module documentation.
pub struct WasmAllocator {
    name: String,
    code: ModuleCode,
    instance: Option<GuestInstance>,
    rng: SplitMix64,
    fallback: DrfAllocator,
    failures_total: u64,
    /// Failed passes in a row; after each, the module sits out `2^(n-1)` passes (at most
    /// [`PASSES_SKIPPED_MAX`]) so that a module that always fails does not spend its whole
    /// budget on every pass.
    consecutive_failures: u32,
    passes_to_skip: u64,
    fuel_used_last: u64,
    /// Whether the fallback's sorter followed every pass; it is rebuilt when it did not.
    fallback_in_step: bool,
    /// The last pass's input buffer, kept for its capacity.
    input: Vec<u8>,
}

/// Most passes a failing module sits out before it is tried again.
pub const PASSES_SKIPPED_MAX: u64 = 64;

impl WasmAllocator {
    /// `name` is shown by the master (`wasm:drf.wasm`); `drf_seed` seeds both the visiting
    /// order and the fallback (see [`BUILTIN_DRF_SEED_MIX`]).
    pub fn new(name: &str, code: ModuleCode, drf_seed: u64) -> WasmAllocator {
        WasmAllocator {
            name: name.to_owned(),
            code,
            instance: None,
            rng: SplitMix64::new(drf_seed),
            fallback: DrfAllocator::new(drf_seed),
            failures_total: 0,
            consecutive_failures: 0,
            passes_to_skip: 0,
            fuel_used_last: 0,
            fallback_in_step: true,
            input: Vec::new(),
        }
    }

    /// Passes the module failed (and the built-in DRF did instead).
    pub fn failures_total(&self) -> u64 {
        self.failures_total
    }

    /// Fuel the module used in its last successful pass (0 under
    /// [`crate::Metering::Deadline`]).
    pub fn fuel_used_last(&self) -> u64 {
        self.fuel_used_last
    }

    /// One pass through the module, without fallback: the module's decisions, checked.
    pub fn try_allocate(
        &mut self,
        snapshot: &Snapshot,
        order: &[&AgentId],
    ) -> Result<Vec<OfferDecision>, GuestError> {
        let mut sorted = order.to_vec();
        sorted.sort_unstable();
        self.try_allocate_sorted(snapshot, order, &sorted)
    }

    /// [`WasmAllocator::try_allocate`] with the candidates also in sorted order (as the
    /// master gives them), for checking the answer.
    fn try_allocate_sorted<A: std::borrow::Borrow<AgentId> + Ord>(
        &mut self,
        snapshot: &Snapshot,
        order: &[&AgentId],
        sorted: &[A],
    ) -> Result<Vec<OfferDecision>, GuestError> {
        let input = AllocatorInput {
            snapshot,
            candidates: order,
        };
        let mut buffer = std::mem::take(&mut self.input);
        buffer.clear();
        let bytes =
            postcard::to_extend(&input, buffer).map_err(|e| GuestError::Encode(e.to_string()))?;
        let instance = match self.instance.as_mut() {
            Some(instance) => instance,
            None => self.instance.insert(self.code.instantiate()?),
        };
        let output = instance.call(&bytes);
        self.input = bytes;
        self.fuel_used_last = instance.fuel_used_last();
        let decisions = abi::decode_decisions(&output?)?;
        check_decisions(snapshot, sorted, &decisions)?;
        Ok(decisions)
    }

    /// A pass by the built-in DRF, its sorter rebuilt first if it missed passes.
    fn fall_back(&mut self, snapshot: &Snapshot, candidates: &[AgentId]) -> Vec<OfferDecision> {
        if !std::mem::replace(&mut self.fallback_in_step, true) {
            self.fallback.invalidate();
        }
        self.fallback.allocate(snapshot, candidates)
    }
}

/// Every decision names a candidate (at most once) and a known framework. `sorted`: the
/// candidates in order, so that membership is a binary search and "twice" a flag.
fn check_decisions<A: std::borrow::Borrow<AgentId> + Ord>(
    snapshot: &Snapshot,
    sorted: &[A],
    decisions: &[OfferDecision],
) -> Result<(), GuestError> {
    let mut offered = vec![false; sorted.len()];
    let mut framework_known: Option<&proto::FrameworkId> = None;
    for d in decisions {
        let Ok(at) = sorted.binary_search_by(|c| c.borrow().cmp(&d.agent_id)) else {
            return Err(GuestError::Invalid(format!(
                "agent {} is not a candidate of this pass",
                d.agent_id
            )));
        };
        if std::mem::replace(&mut offered[at], true) {
            return Err(GuestError::Invalid(format!(
                "agent {} is offered twice",
                d.agent_id
            )));
        }
        // Decisions for one framework tend to come in runs.
        if framework_known == Some(&d.framework_id) {
            continue;
        }
        framework_known = Some(&d.framework_id);
        if !snapshot.frameworks.contains_key(&d.framework_id) {
            return Err(GuestError::Invalid(format!(
                "framework {} is unknown",
                d.framework_id
            )));
        }
    }
    Ok(())
}

impl Allocator for WasmAllocator {
    fn name(&self) -> &str {
        &self.name
    }

    fn allocate(&mut self, snapshot: &Snapshot, candidates: &[AgentId]) -> Vec<OfferDecision> {
        let order = visiting_order(snapshot, candidates, &mut self.rng);
        if self.passes_to_skip > 0 {
            self.passes_to_skip -= 1;
            return self.fall_back(snapshot, candidates);
        }
        let sorted_copy;
        let sorted = if candidates.is_sorted() {
            candidates
        } else {
            sorted_copy = {
                let mut copy = candidates.to_vec();
                copy.sort_unstable();
                copy
            };
            &sorted_copy
        };
        match self.try_allocate_sorted(snapshot, &order, sorted) {
            Ok(decisions) => {
                self.consecutive_failures = 0;
                // The fallback's sorter is rebuilt if it ever takes over.
                self.fallback_in_step = false;
                decisions
            }
            Err(error) => {
                self.instance = None;
                self.failures_total += 1;
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.passes_to_skip =
                    (1u64 << (self.consecutive_failures - 1).min(6)).min(PASSES_SKIPPED_MAX);
                tracing::error!(
                    allocator = %self.name,
                    failures_total = self.failures_total,
                    passes_skipped_next = self.passes_to_skip,
                    %error,
                    "allocator module failed; the built-in DRF does this pass and the next ones skipped"
                );
                self.fall_back(snapshot, candidates)
            }
        }
    }
}

/// Why `--allocator` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AllocatorSpecError {
    #[error(
        "allocator {spec:?} is neither `drf` nor a path to a module (`.wasm`, or WAT text in `.wat`)"
    )]
    Unknown { spec: String },
    #[error("cannot read allocator module {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("allocator module {path}: {error}")]
    Module { path: String, error: GuestError },
    #[error(
        "allocator module {path} refused: {error} (only modules signed by a trusted key run here)"
    )]
    Refused {
        path: String,
        error: signing::VerifyError,
    },
}

/// The policy named by a `--allocator` argument: `drf` (the built-in), or the path of an
/// allocator module (`*.wasm`), compiled and instantiated once here so that a module that
/// cannot run is refused at startup rather than falling back on every pass. `drf_seed` is
/// the seed the built-in DRF would get (see [`BUILTIN_DRF_SEED_MIX`]). The module runs
/// under `limits.metering`: `wasmos sim` keeps fuel (deterministic: a run gives the same
/// answer on any machine), the master daemon uses [`crate::Metering::Deadline`] (about 8%
/// faster on a 1,000 × 100 pass; policy-host/README.md). With `trusted` keys, the module
/// must be signed by one of them; it is checked before it is compiled.
pub fn allocator_from_spec(
    spec: &str,
    drf_seed: u64,
    limits: Limits,
    trusted: &signing::TrustedKeys,
) -> Result<Box<dyn Allocator + Send>, AllocatorSpecError> {
    if spec == "drf" {
        return Ok(Box::new(DrfAllocator::new(drf_seed)));
    }
    if !(spec.ends_with(".wasm") || spec.ends_with(".wat")) {
        return Err(AllocatorSpecError::Unknown {
            spec: spec.to_owned(),
        });
    }
    let module_error = |error| AllocatorSpecError::Module {
        path: spec.to_owned(),
        error,
    };
    let bytes =
        read_capped(spec, limits.module_bytes_max).map_err(|error| AllocatorSpecError::Read {
            path: spec.to_owned(),
            error,
        })?;
    trusted
        .check(&bytes)
        .map_err(|error| AllocatorSpecError::Refused {
            path: spec.to_owned(),
            error,
        })?;
    let engine = crate::sandbox::engine_for(limits.metering).map_err(module_error)?;
    let code =
        ModuleCode::compile(&engine, &bytes, Kind::Allocator, limits).map_err(module_error)?;
    code.instantiate().map_err(module_error)?;
    let name = std::path::Path::new(spec)
        .file_name()
        .map_or(spec.into(), |n| n.to_string_lossy().into_owned());
    Ok(Box::new(WasmAllocator::new(
        &format!("wasm:{name}"),
        code,
        drf_seed,
    )))
}

/// Reads at most `max + 1` bytes, so that an oversized file is refused by the compile step
/// without being read whole.
fn read_capped(path: &str, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}
