//! The allocation policy, behind one trait so that it is a plug-in.
//!
//! The master keeps a [`Snapshot`] of everything a policy may look at (agents' free
//! resources, frameworks' allocations, weights, filters, whether they want offers) and
//! updates it in place as events arrive. When an allocation is due it hands the snapshot
//! and the agents worth looking at to [`Allocator::allocate`], and gets back
//! [`OfferDecision`]s: "offer all free resources of this agent to that framework".
//!
//! Every type here is `serde` (de)serializable so that a policy written as a WASM module
//! can receive the snapshot postcard-encoded and answer with encoded decisions.
//!
//! Architecture invariant: a policy decides, the master enforces. The master checks every
//! decision with [`may_offer`] and drops the ones that break a framework's standing
//! preferences or filters, so a faulty policy can starve frameworks but never corrupt the
//! books or offer what a framework said it will not take.

mod drf;
mod heap;
mod sorter;

use std::collections::{BTreeMap, BTreeSet};

use proto::{AgentId, Attributes, Constraint, FrameworkId, Resources};
use serde::{Deserialize, Serialize};

use crate::time::Millis;

pub use drf::DrfAllocator;
pub use sorter::{DrfSorter, SHARE_SCALE, weighted_share_key};

/// The allocation policy.
pub trait Allocator {
    /// A short name for logs and the operator API (`drf`).
    fn name(&self) -> &str;

    /// Decides which framework is offered the free resources of each agent in
    /// `candidates` (each at most once, all of its free resources at a time; agents whose
    /// free resources are empty or unknown are skipped).
    ///
    /// `snapshot.changes` lists what changed since the previous call so that a policy may
    /// keep incremental state; a policy that keeps none may ignore it. Decisions are
    /// applied in order; the master drops any that [`may_offer`] refuses.
    fn allocate(&mut self, snapshot: &Snapshot, candidates: &[AgentId]) -> Vec<OfferDecision>;
}

/// Offer all free resources of `agent_id` to `framework_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferDecision {
    pub agent_id: AgentId,
    pub framework_id: FrameworkId,
}

/// What an allocation policy sees of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The time of the allocation; filters whose `until` is not after it have expired.
    pub now: Millis,
    /// The cluster's total of each resource kind ([`Resources::quantities`] summed over
    /// agents): what dominant shares are computed against.
    pub total: BTreeMap<String, u64>,
    pub agents: BTreeMap<AgentId, AgentSlot>,
    /// Weight of each role that has frameworks. Roles weigh 1 unless set.
    pub role_weights: BTreeMap<String, f64>,
    pub frameworks: BTreeMap<FrameworkId, FrameworkSlot>,
    /// What changed since the previous `allocate` call.
    pub changes: Changes,
}

/// One agent as a policy sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentSlot {
    pub attributes: Attributes,
    /// Resources neither offered nor used.
    pub free: Resources,
}

/// The resource kind that only frameworks with the GPU capability are offered.
pub const GPUS: &str = "gpus";

impl AgentSlot {
    /// True when some of its GPUs are free (a scalar or a set of devices): it goes to GPU
    /// frameworks first.
    pub fn has_free_gpus(&self) -> bool {
        self.free.quantities_iter().any(|(kind, _)| kind == GPUS)
    }
}

/// One framework as a policy sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameworkSlot {
    pub role: String,
    /// Weight inside its role (frameworks of one role split the role's share by it).
    pub weight: f64,
    /// Order of subscription, unique and increasing: DRF's tie-breaker.
    pub subscribed_seq: u64,
    /// Quantities used by its tasks plus offered to it and still outstanding.
    pub allocation: BTreeMap<String, u64>,
    /// Connected and not suppressed: it wants offers.
    pub wants_offers: bool,
    /// Standing preference: only agents whose attributes satisfy all these.
    pub constraints: Vec<Constraint>,
    /// Standing preference: no offer that does not contain this.
    pub min_offer: Resources,
    /// Decline filters by agent.
    pub filters: BTreeMap<AgentId, Vec<FilterSlot>>,
    /// Whether it is offered agents with free GPUs.
    pub gpu_agents: GpuAgents,
}

/// Whether a framework is offered agents that have free GPUs (Mesos' `GPU_RESOURCES`
/// capability and its master's `--filter_gpu_resources`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum GpuAgents {
    /// It declared the GPU capability: offered them like any agent.
    Offered,
    /// It did not, and the operator lets such frameworks have a GPU agent that no
    /// GPU framework takes, once every agent without GPUs was looked at.
    LastResort,
    /// It did not: never offered them.
    #[default]
    NotOffered,
}

impl FrameworkSlot {
    /// True when nothing but `wants_offers` limits what this framework may be offered:
    /// policies use it to skip the per-agent checks of [`may_offer`].
    pub fn takes_anything(&self) -> bool {
        self.constraints.is_empty() && self.min_offer.is_empty() && self.filters.is_empty()
    }
}

/// "Do not offer me a subset of `resources` of this agent before `until`."
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilterSlot {
    pub resources: Resources,
    pub until: Millis,
}

/// What changed in a [`Snapshot`] since the previous allocation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Changes {
    /// Anything may have changed (first call, total or role weights changed).
    pub all: bool,
    /// Frameworks added, removed, or whose allocation, weight, wants or filters changed.
    pub frameworks: BTreeSet<FrameworkId>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        !self.all && self.frameworks.is_empty()
    }
}

/// Whether `framework` may be offered the free resources of `agent` at `now`: it wants
/// offers, takes agents with free GPUs if this is one, the agent has every attribute it
/// requires, the free resources are at least its minimum offer, and no unexpired decline
/// filter of it covers them.
pub fn may_offer(
    framework: &FrameworkSlot,
    agent_id: &AgentId,
    agent: &AgentSlot,
    now: Millis,
) -> bool {
    framework.wants_offers
        && !agent.free.is_empty()
        && (framework.gpu_agents != GpuAgents::NotOffered || !agent.has_free_gpus())
        && agent.attributes.satisfies(&framework.constraints)
        && agent.free.contains(&framework.min_offer)
        && !is_filtered(framework, agent_id, &agent.free, now)
}

/// The order a pass visits `candidates` in: shuffled by `rng` (as Mesos does, so that no
/// agent is always served first), then every agent without free GPUs before those with:
/// a framework without the GPU capability gets a GPU agent as a last resort only.
pub fn visiting_order<'a>(
    snapshot: &Snapshot,
    candidates: &'a [AgentId],
    rng: &mut crate::rng::SplitMix64,
) -> Vec<&'a AgentId> {
    let mut order: Vec<&AgentId> = candidates.iter().collect();
    rng.shuffle(&mut order);
    let has_gpus = |id: &&AgentId| {
        snapshot
            .agents
            .get(*id)
            .is_some_and(AgentSlot::has_free_gpus)
    };
    let (mut order, with_gpus): (Vec<&AgentId>, Vec<&AgentId>) =
        order.into_iter().partition(|id| !has_gpus(id));
    order.extend(with_gpus);
    order
}

/// Whether `framework` may have `agent` in this turn: an agent with free GPUs goes to a
/// framework with the GPU capability if one takes it, and only then (`last_resort`) to
/// one the operator lets have GPU agents as a last resort. Agents without free GPUs are
/// for anyone in either turn.
pub fn in_gpu_turn(framework: &FrameworkSlot, agent: &AgentSlot, last_resort: bool) -> bool {
    !agent.has_free_gpus()
        || match framework.gpu_agents {
            GpuAgents::Offered => !last_resort,
            GpuAgents::LastResort => last_resort,
            GpuAgents::NotOffered => false,
        }
}

/// True when an unexpired filter of `framework` on `agent_id` covers all of `free`.
pub fn is_filtered(
    framework: &FrameworkSlot,
    agent_id: &AgentId,
    free: &Resources,
    now: Millis,
) -> bool {
    framework.filters.get(agent_id).is_some_and(|fs| {
        fs.iter()
            .any(|f| f.until > now && f.resources.contains(free))
    })
}
