//! Allocation policies: the cluster snapshot an allocator module sees (the master's
//! `master::allocator::Snapshot`), the offer decisions it returns, and the [`Allocator`]
//! trait.

use heapless::Vec;
use serde::{Deserialize, Serialize};

use crate::types::{
    Attributes, CONSTRAINTS_MAX, Constraint, QUANTITY_KINDS_MAX, Quantities, Resources,
    decode_with_skip, pass_attributes, pass_resources, skip_attributes, skip_constraint,
    skip_resources,
};
use crate::wire::{
    Decode, Error, Output, Seq, finish, skip_bytes, skip_seq, skip_str, skip_varint, take,
    take_str_bytes, take_varint,
};

/// Filters one framework keeps on one agent.
pub const FILTERS_PER_AGENT_MAX: usize = 8;

/// One pass: the master's `Snapshot` followed by the candidate agents. Field order:
/// `now_ms`, `total`, `agents`, `role_weights`, `frameworks`, `changes`, `candidates`.
#[derive(Debug)]
pub struct AllocationInput<'a> {
    /// The time of the pass; filters whose `until_ms` is not after it have expired.
    pub now_ms: u64,
    /// The cluster's total of each resource kind: what dominant shares are computed against.
    pub total: Quantities<'a>,
    /// Every agent, sorted by id (a `BTreeMap` on the host): use
    /// [`Seq::indexed`] and `find_by_key` to look one up.
    pub agents: Seq<'a, AgentEntry<'a>>,
    /// Weight of each role that has frameworks, sorted by role; roles absent weigh 1.
    pub role_weights: Seq<'a, RoleWeight<'a>>,
    /// Every framework, sorted by id.
    pub frameworks: Seq<'a, FrameworkEntry<'a>>,
    pub changes: Changes<'a>,
    /// The agents to decide on, in the order to visit them (the host shuffles them with
    /// the same seeded generator as its built-in DRF). Each may be offered at most once,
    /// all of its free resources to one framework.
    pub candidates: Seq<'a, &'a str>,
}

impl<'a> AllocationInput<'a> {
    /// Decodes a whole input buffer.
    pub fn decode(input: &'a [u8]) -> Result<AllocationInput<'a>, Error> {
        let (now_ms, rest) = take::<u64>(input)?;
        let (total, rest) = take::<Quantities<'a>>(rest)?;
        let (agents, rest) = Seq::take(rest)?;
        let (role_weights, rest) = Seq::take(rest)?;
        let (frameworks, rest) = Seq::take(rest)?;
        let (all, rest) = take::<bool>(rest)?;
        let (changed, rest) = Seq::take(rest)?;
        let (candidates, rest) = Seq::take(rest)?;
        finish(rest)?;
        let changes = Changes {
            all,
            frameworks: changed,
        };
        Ok(AllocationInput {
            now_ms,
            total,
            agents,
            role_weights,
            frameworks,
            changes,
            candidates,
        })
    }

    /// The weight of `role` (1 unless set).
    pub fn role_weight(&self, role: &str) -> f64 {
        self.role_weights
            .iter()
            .find(|r| r.role == role)
            .map_or(1.0, |r| r.weight)
    }
}

/// One agent (`master::allocator::AgentSlot` with its id).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentEntry<'a> {
    pub agent_id: &'a str,
    #[serde(borrow)]
    pub attributes: Attributes<'a>,
    /// Resources neither offered nor used.
    #[serde(borrow)]
    pub free: Resources<'a>,
}

/// The resource kind only frameworks with the GPU capability are offered.
pub const GPUS: &str = "gpus";

impl AgentEntry<'_> {
    /// True when some of its GPUs are free (a scalar or a set of devices).
    pub fn has_free_gpus(&self) -> bool {
        self.free.quantities().iter().any(|(kind, _)| *kind == GPUS)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleWeight<'a> {
    pub role: &'a str,
    pub weight: f64,
}

/// One framework (`master::allocator::FrameworkSlot` with its id).
#[derive(Clone, Debug)]
pub struct FrameworkEntry<'a> {
    pub framework_id: &'a str,
    pub role: &'a str,
    /// Weight inside its role.
    pub weight: f64,
    /// Order of subscription, unique and increasing: DRF's tie-breaker.
    pub subscribed_seq: u64,
    /// Quantities used by its tasks plus offered to it and outstanding.
    pub allocation: Quantities<'a>,
    /// Connected and not suppressed.
    pub wants_offers: bool,
    /// Standing preference: only agents whose attributes satisfy all these.
    pub constraints: Vec<Constraint<'a>, CONSTRAINTS_MAX>,
    /// Standing preference: no offer that does not contain this.
    pub min_offer: Resources<'a>,
    /// Decline filters by agent, sorted by agent id.
    pub filters: Seq<'a, AgentFilters<'a>>,
    /// Whether it is offered agents with free GPUs.
    pub gpu_agents: GpuAgents,
}

/// Whether a framework is offered agents with free GPUs (`master::allocator::GpuAgents`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuAgents {
    /// It declared the GPU capability: offered them like any agent.
    Offered,
    /// It did not; it may have a GPU agent no GPU framework takes, after every agent
    /// without GPUs was looked at (the host visits those first).
    LastResort,
    /// It did not: never offered them.
    NotOffered,
}

impl<'a> Decode<'a> for GpuAgents {
    fn take(input: &'a [u8]) -> Result<(GpuAgents, &'a [u8]), Error> {
        let (variant, rest) = take_varint(input)?;
        let gpu_agents = match variant {
            0 => GpuAgents::Offered,
            1 => GpuAgents::LastResort,
            2 => GpuAgents::NotOffered,
            _ => return Err(Error::UnknownVariant),
        };
        Ok((gpu_agents, rest))
    }

    fn skip(input: &'a [u8]) -> Result<&'a [u8], Error> {
        Ok(GpuAgents::take(input)?.1)
    }
}

impl GpuAgents {
    /// Whether a framework of this kind may have an agent in this turn: one with free
    /// GPUs goes to a GPU framework if one takes it, and only then (`last_resort`) to one
    /// allowed GPU agents as a last resort; agents without free GPUs are for anyone.
    pub fn in_turn(self, agent_has_free_gpus: bool, last_resort: bool) -> bool {
        !agent_has_free_gpus
            || match self {
                GpuAgents::Offered => !last_resort,
                GpuAgents::LastResort => last_resort,
                GpuAgents::NotOffered => false,
            }
    }
}

impl<'a> Decode<'a> for FrameworkEntry<'a> {
    fn take(input: &'a [u8]) -> Result<(FrameworkEntry<'a>, &'a [u8]), Error> {
        let (framework_id, rest) = take::<&str>(input)?;
        let (role, rest) = take::<&str>(rest)?;
        let (weight, rest) = take::<f64>(rest)?;
        let (subscribed_seq, rest) = take::<u64>(rest)?;
        let (allocation, rest) = take::<Quantities<'a>>(rest)?;
        let (wants_offers, rest) = take::<bool>(rest)?;
        let (constraints, rest) = take::<Vec<Constraint<'a>, CONSTRAINTS_MAX>>(rest)?;
        let (min_offer, rest) = take::<Resources<'a>>(rest)?;
        let (filters, rest) = Seq::take(rest)?;
        let (gpu_agents, rest) = GpuAgents::take(rest)?;
        let entry = FrameworkEntry {
            framework_id,
            role,
            weight,
            subscribed_seq,
            allocation,
            wants_offers,
            constraints,
            min_offer,
            filters,
            gpu_agents,
        };
        Ok((entry, rest))
    }

    fn skip(input: &'a [u8]) -> Result<&'a [u8], Error> {
        let rest = skip_bytes(skip_str(skip_str(input)?)?, 8)?;
        let rest = skip_seq(skip_varint(rest)?, QUANTITY_KINDS_MAX, |b| {
            skip_varint(skip_str(b)?)
        })?;
        let rest = skip_bool(rest)?;
        let rest = skip_seq(rest, CONSTRAINTS_MAX, skip_constraint)?;
        let rest = skip_resources(rest)?;
        let (filters, rest) = take_varint(rest)?;
        let mut rest = rest;
        for _ in 0..filters {
            rest = AgentFilters::skip(rest)?;
        }
        GpuAgents::skip(rest)
    }
}

impl FrameworkEntry<'_> {
    /// True when nothing but `wants_offers` limits what it may be offered.
    pub fn takes_anything(&self) -> bool {
        self.constraints.is_empty() && self.min_offer.is_empty() && self.filters.is_empty()
    }

    /// Whether it may be offered the free resources of `agent` at `now_ms` (the master's
    /// `may_offer`; the master drops decisions for which this is false).
    pub fn may_offer(&self, agent: &AgentEntry<'_>, now_ms: u64) -> bool {
        self.wants_offers
            && !agent.free.is_empty()
            && (self.gpu_agents != GpuAgents::NotOffered || !agent.has_free_gpus())
            && agent.attributes.satisfies(&self.constraints)
            && agent.free.contains(&self.min_offer)
            && !self.is_filtered(agent.agent_id, &agent.free, now_ms)
    }

    /// True when an unexpired filter on `agent_id` covers all of `free`.
    pub fn is_filtered(&self, agent_id: &str, free: &Resources<'_>, now_ms: u64) -> bool {
        self.filters
            .iter()
            .filter(|f| f.agent_id == agent_id)
            .any(|f| {
                f.filters
                    .iter()
                    .any(|slot| slot.until_ms > now_ms && slot.resources.contains(free))
            })
    }
}

/// A framework's decline filters on one agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentFilters<'a> {
    pub agent_id: &'a str,
    #[serde(borrow)]
    pub filters: Vec<FilterSlot<'a>, FILTERS_PER_AGENT_MAX>,
}

/// "Do not offer me a subset of `resources` before `until_ms`."
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilterSlot<'a> {
    #[serde(borrow)]
    pub resources: Resources<'a>,
    pub until_ms: u64,
}

/// What changed since the previous pass (a policy keeping no state may ignore it).
#[derive(Clone, Copy, Debug)]
pub struct Changes<'a> {
    /// Anything may have changed.
    pub all: bool,
    /// Frameworks added, removed, or changed.
    pub frameworks: Seq<'a, &'a str>,
}

crate::decode_via_serde!(RoleWeight<'a>, FilterSlot<'a>);
decode_with_skip!(AgentEntry<'a>, skip_agent, pass_agent);
decode_with_skip!(AgentFilters<'a>, skip_agent_filters);

fn skip_agent(input: &[u8]) -> Result<&[u8], Error> {
    skip_resources(skip_attributes(skip_str(input)?)?)
}

/// Passes over an agent already checked (see [`Decode::pass`]).
fn pass_agent(input: &[u8]) -> Result<&[u8], Error> {
    pass_resources(pass_attributes(take_str_bytes(input)?.1)?)
}

fn skip_agent_filters(input: &[u8]) -> Result<&[u8], Error> {
    skip_seq(skip_str(input)?, FILTERS_PER_AGENT_MAX, |b| {
        skip_varint(skip_resources(b)?)
    })
}

/// Skips a `bool` (one byte, 0 or 1).
fn skip_bool(input: &[u8]) -> Result<&[u8], Error> {
    match input.first() {
        Some(0 | 1) => Ok(&input[1..]),
        _ => Err(Error::Malformed),
    }
}

/// Offer all free resources of `agent_id` to `framework_id` (`master::allocator::OfferDecision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferDecision<'a> {
    pub agent_id: &'a str,
    pub framework_id: &'a str,
}

/// Where an allocator writes its decisions, encoded into the output buffer at once. When
/// it is full the pass is reported as [`Error::OutputFull`] and the host falls back to
/// its built-in allocator for that pass.
pub struct Decisions<'o> {
    out: Output<'o>,
    count: usize,
    failed: bool,
}

impl<'o> Decisions<'o> {
    pub fn new(out: Output<'o>) -> Decisions<'o> {
        Decisions {
            out,
            count: 0,
            failed: false,
        }
    }

    pub fn offer(&mut self, agent_id: &str, framework_id: &str) {
        if self
            .out
            .push(&OfferDecision {
                agent_id,
                framework_id,
            })
            .is_ok()
        {
            self.count += 1;
        }
    }

    /// Decisions written so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Gives up on this pass: the host reports [`Error::Failed`] and runs its built-in
    /// policy instead of taking the decisions written so far.
    pub fn fail(&mut self) {
        self.failed = true;
    }

    pub fn finish(self) -> Result<usize, Error> {
        if self.failed {
            Err(Error::Failed)
        } else if self.out.is_full() {
            Err(Error::OutputFull)
        } else {
            Ok(self.out.len())
        }
    }
}

/// An allocation policy. One instance lives in the module across passes (created with
/// `Default` before the first); the host re-creates the module after any failure, so a
/// policy must give the same answer from a fresh instance (state is a cache only).
///
/// The host drops the whole pass (and uses its built-in DRF) when a decision names an
/// agent that is not a candidate, an agent twice, or an unknown framework; the master then
/// drops single decisions that break a framework's preferences or filters.
pub trait Allocator: Default {
    fn allocate(&mut self, input: &AllocationInput<'_>, decisions: &mut Decisions<'_>);
}

/// Runs one allocation pass against `state`: what `export_allocator!` does per call.
pub fn handle<A: Allocator>(
    state: &mut Option<A>,
    input: &[u8],
    out: Output<'_>,
) -> Result<usize, Error> {
    let input = AllocationInput::decode(input)?;
    let allocator = state.get_or_insert_with(A::default);
    let mut decisions = Decisions::new(out);
    allocator.allocate(&input, &mut decisions);
    decisions.finish()
}
