//! `drf.wasm`: hierarchical weighted Dominant Resource Fairness written against the
//! executor-sdk, giving exactly the decisions of the master's built-in `DrfAllocator`
//! (see README.md for the policy and why the results match bit for bit).

#![no_std]

use executor_sdk::allocator::GPUS;
use executor_sdk::types::{
    CONSTRAINTS_MAX, QUANTITY_KINDS_MAX, Quantities, attributes_satisfy, pass_attributes,
    visit_quantities_bytes,
};
use executor_sdk::wire::{Decode, take_str, take_str_bytes, take_varint};
use executor_sdk::{
    AgentEntry, AgentFilters, AllocationInput, Allocator, Constraint, Decisions, FrameworkEntry,
    GpuAgents, Indexed,
};
use heapless::Vec;

/// Frameworks this module handles; more fails the pass (the host then runs its built-in DRF).
const FRAMEWORKS_MAX: usize = 1024;
/// Roles with frameworks: as many as frameworks (each may have a role of its own, as
/// `wasmos sim` gives a framework without one).
const ROLES_MAX: usize = FRAMEWORKS_MAX;
/// Agents in the snapshot.
const AGENTS_MAX: usize = 16_384;
/// Shares are compared in units of `1 / SHARE_SCALE` (the built-in's `SHARE_SCALE`).
const SHARE_SCALE: f64 = 1e12;
/// Constraints of all frameworks kept for the fast check; beyond it frameworks take the
/// slow path (same answer, slower).
const CONSTRAINTS_TABLE_MAX: usize = 2048;

type Dense = [u64; QUANTITY_KINDS_MAX];

#[derive(Clone)]
struct Client {
    role: u16,
    weight: f64,
    seq: u64,
    alloc: Dense,
    active: bool,
    takes_anything: bool,
    /// [`FrameworkHead::min_offer`].
    min_offer: Option<Dense>,
    gpu_agents: GpuAgents,
    key: u64,
}

impl Client {
    /// Whether `free` holds its minimum offer's quantities: necessary for it to take an
    /// agent, and a few comparisons where the full check decodes the agent (the built-in
    /// sorter's `may_fit`).
    fn may_fit(&self, free: &Dense) -> bool {
        self.min_offer
            .as_ref()
            .is_some_and(|min| min.iter().zip(free).all(|(m, f)| m <= f))
    }
}

/// Frameworks whose only preference is attribute constraints, checked against an agent's
/// encoded attributes without decoding either: `(framework, first, count)` into a table
/// of constraints. Others (minimum offers, filters) are checked by decoding both.
struct ConstraintTable<'a> {
    constraints: Vec<Constraint<'a>, CONSTRAINTS_TABLE_MAX>,
    /// Per framework: `Some((first, count))` when constraints are all it asks.
    spans: Vec<Option<(u16, u16)>, FRAMEWORKS_MAX>,
}

impl<'a> ConstraintTable<'a> {
    fn new() -> ConstraintTable<'a> {
        ConstraintTable {
            constraints: Vec::new(),
            spans: Vec::new(),
        }
    }

    /// Records the next framework's constraints (frameworks in snapshot order).
    fn add(&mut self, fw: &FrameworkHead<'a>) -> Option<()> {
        let only_constraints = fw.min_offer_empty && fw.filters_empty;
        let first = self.constraints.len();
        let fits = only_constraints && self.constraints.extend_from_slice(&fw.constraints).is_ok();
        self.spans
            .push(fits.then(|| (first as u16, fw.constraints.len() as u16)))
            .ok()
    }

    /// Whether the framework's only preference is constraints ([`ConstraintTable::check`]
    /// answers for it).
    fn answers(&self, framework: usize) -> bool {
        self.spans.get(framework).is_some_and(Option::is_some)
    }

    /// `Some(satisfied)` when the framework's only preference is constraints.
    fn check(&self, framework: usize, attributes: &[u8]) -> Option<bool> {
        let (first, count) = (*self.spans.get(framework)?)?;
        let constraints = self
            .constraints
            .get(first as usize..(first + count) as usize)?;
        Some(
            constraints
                .iter()
                .all(|c| attributes_satisfy(attributes, c).unwrap_or(false)),
        )
    }
}

/// What the sorter needs of a framework, read in place: a whole `FrameworkEntry` is a few
/// KB of heapless collections, built and moved for nothing on every pass.
struct FrameworkHead<'a> {
    role: &'a str,
    weight: f64,
    subscribed_seq: u64,
    alloc: Dense,
    wants_offers: bool,
    constraints: Vec<Constraint<'a>, CONSTRAINTS_MAX>,
    min_offer_empty: bool,
    /// The minimum offer over the cluster's kinds; `None` when it asks for some of a kind
    /// the cluster lacks (no agent can hold it).
    min_offer: Option<Dense>,
    filters_empty: bool,
    gpu_agents: GpuAgents,
}

impl<'a> FrameworkHead<'a> {
    /// The framework at the front of `bytes` (checked when its sequence was taken), its
    /// allocation over the kinds of `total`.
    fn read(bytes: &'a [u8], total: &Quantities<'_>) -> Option<FrameworkHead<'a>> {
        let rest = take_str_bytes(bytes).ok()?.1;
        let (role, rest) = take_str(rest).ok()?;
        let (weight, rest) = rest.split_first_chunk::<8>()?;
        let weight = f64::from_le_bytes(*weight);
        let (subscribed_seq, rest) = take_varint(rest).ok()?;
        let (kinds, mut rest) = take_varint(rest).ok()?;
        let mut alloc = [0; QUANTITY_KINDS_MAX];
        for _ in 0..kinds {
            let (name, after) = take_str_bytes(rest).ok()?;
            let (millis, after) = take_varint(after).ok()?;
            // A kind named twice keeps its last amount, as in the built-in.
            if let Some(k) = kind_of_bytes(total, name) {
                alloc[k] = millis;
            }
            rest = after;
        }
        let (&wants_offers, rest) = rest.split_first()?;
        let (count, mut rest) = take_varint(rest).ok()?;
        let mut constraints = Vec::new();
        for _ in 0..count {
            let (constraint, after) = Constraint::take(rest).ok()?;
            constraints.push(constraint).ok()?;
            rest = after;
        }
        // Empty as `Resources::is_empty`: every quantity zero.
        let mut min_offer_empty = true;
        let mut min_offer = Some([0; QUANTITY_KINDS_MAX]);
        let rest = visit_quantities_bytes(rest, |name, millis| {
            min_offer_empty &= millis == 0;
            match (kind_of_bytes(total, name), min_offer.as_mut()) {
                (Some(k), Some(dense)) => dense[k] = millis,
                (None, _) if millis > 0 => min_offer = None,
                _ => {}
            }
        })
        .ok()?;
        let (filters, mut rest) = take_varint(rest).ok()?;
        for _ in 0..filters {
            rest = AgentFilters::skip(rest).ok()?;
        }
        let (gpu_agents, _) = GpuAgents::take(rest).ok()?;
        Some(FrameworkHead {
            role,
            weight,
            subscribed_seq,
            alloc,
            wants_offers: wants_offers == 1,
            constraints,
            min_offer_empty,
            min_offer,
            filters_empty: filters == 0,
            gpu_agents,
        })
    }

    /// [`FrameworkEntry::takes_anything`].
    fn takes_anything(&self) -> bool {
        self.constraints.is_empty() && self.min_offer_empty && self.filters_empty
    }
}

#[derive(Clone)]
struct Role {
    weight: f64,
    alloc: Dense,
    /// Active frameworks, ordered by (key, seq).
    members: Vec<u16, FRAMEWORKS_MAX>,
    key: u64,
}

/// The sorter's tables live in the module's static memory (the allocator instance), not
/// on the stack; they are rebuilt from the snapshot on every pass.
#[derive(Default)]
pub struct Drf {
    clients: Vec<Client, FRAMEWORKS_MAX>,
    roles: Vec<Role, ROLES_MAX>,
    /// Roles with frameworks wanting offers, ordered by (key, first framework's place).
    role_order: Vec<u16, ROLES_MAX>,
    agent_ids: AgentIds,
    verdicts: Verdicts,
}

/// Distinct agent attribute sets a pass remembers verdicts for.
const ATTRIBUTE_SETS_MAX: usize = 64;
/// Words of one bit per framework.
const FRAMEWORK_WORDS: usize = FRAMEWORKS_MAX / 64;

/// Each framework's constraint verdict on each distinct attribute set of this pass. A
/// fleet repeats a few attribute sets over many agents, and a framework that refuses one
/// agent for its attributes refuses every agent with the same ones: without this, every
/// agent paid a check for each framework ahead of the one that takes it.
#[derive(Default)]
struct Verdicts {
    sets: Vec<VerdictSet, ATTRIBUTE_SETS_MAX>,
}

struct VerdictSet {
    hash: usize,
    /// An agent with these attributes, through which they are compared.
    agent: usize,
    known: [u64; FRAMEWORK_WORDS],
    satisfied: [u64; FRAMEWORK_WORDS],
}

impl Verdicts {
    /// The set of agent `index`'s attributes, added if new while there is room.
    fn set_of(
        &mut self,
        agents: &Indexed<'_, AgentEntry<'_>, AGENTS_MAX>,
        index: usize,
    ) -> Option<usize> {
        let attributes = attributes_of(agents, index)?;
        let h = hash(attributes);
        let same =
            |s: &VerdictSet| s.hash == h && attributes_of(agents, s.agent) == Some(attributes);
        if let Some(found) = self.sets.iter().position(same) {
            return Some(found);
        }
        let set = VerdictSet {
            hash: h,
            agent: index,
            known: [0; FRAMEWORK_WORDS],
            satisfied: [0; FRAMEWORK_WORDS],
        };
        self.sets.push(set).ok()?;
        Some(self.sets.len() - 1)
    }

    /// Framework `framework`'s verdict on set `set`, from `check` the first time.
    fn verdict(
        &mut self,
        set: Option<usize>,
        framework: usize,
        check: impl FnOnce() -> Option<bool>,
    ) -> Option<bool> {
        let Some(s) = set.and_then(|i| self.sets.get_mut(i)) else {
            return check();
        };
        let (word, bit) = (framework / 64, 1u64 << (framework % 64));
        if s.known.get(word)? & bit != 0 {
            return Some(s.satisfied[word] & bit != 0);
        }
        let satisfied = check()?;
        s.known[word] |= bit;
        if satisfied {
            s.satisfied[word] |= bit;
        }
        Some(satisfied)
    }
}

/// Agent `index`'s encoded attributes, exactly.
fn attributes_of<'a>(
    agents: &Indexed<'a, AgentEntry<'a>, AGENTS_MAX>,
    index: usize,
) -> Option<&'a [u8]> {
    attributes_and_rest(agents, index).map(|(attributes, _)| attributes)
}

/// Agent `index`'s encoded attributes, and what follows them (its free resources first).
/// The input was checked when its sequence was taken: id and attributes are passed over
/// without checking them again.
fn attributes_and_rest<'a>(
    agents: &Indexed<'a, AgentEntry<'a>, AGENTS_MAX>,
    index: usize,
) -> Option<(&'a [u8], &'a [u8])> {
    let after_id = take_str_bytes(agents.element_bytes(index)?).ok()?.1;
    let rest = pass_attributes(after_id).ok()?;
    Some((after_id.get(..after_id.len() - rest.len())?, rest))
}

/// Slots of the agent-id table: a power of two, at least twice the agents.
const AGENT_SLOTS_MAX: usize = 2 * AGENTS_MAX;

/// Agents by id, hashed: a candidate is found with one hash and (nearly always) one
/// comparison, where a binary search over the sorted ids takes a dozen.
#[derive(Default)]
struct AgentIds {
    /// Agent index + 1; 0 is an empty slot. Linear probing.
    slots: Vec<u32, AGENT_SLOTS_MAX>,
}

impl AgentIds {
    fn build(&mut self, agents: &Indexed<'_, AgentEntry<'_>, AGENTS_MAX>) -> Option<()> {
        let size = (2 * agents.len()).next_power_of_two().max(16);
        self.slots.clear();
        self.slots.resize(size, 0).ok()?;
        let mask = size - 1;
        for index in 0..agents.len() {
            let id = take_str_bytes(agents.element_bytes(index)?).ok()?.0;
            let mut slot = hash(id) & mask;
            while self.slots[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            self.slots[slot] = index as u32 + 1;
        }
        Some(())
    }

    fn find(&self, agents: &Indexed<'_, AgentEntry<'_>, AGENTS_MAX>, id: &str) -> Option<usize> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut slot = hash(id.as_bytes()) & mask;
        loop {
            let index = (*self.slots.get(slot)? as usize).checked_sub(1)?;
            let key = take_str_bytes(agents.element_bytes(index)?).ok()?.0;
            if key == id.as_bytes() {
                return Some(index);
            }
            slot = (slot + 1) & mask;
        }
    }
}

/// FNV-1a: short keys, no allocation, no seed needed (the input is the master's).
fn hash(bytes: &[u8]) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize
}

impl Allocator for Drf {
    fn allocate(&mut self, input: &AllocationInput<'_>, decisions: &mut Decisions<'_>) {
        // A snapshot over this module's capacities fails the pass (rather than answer
        // wrongly): the host then runs its built-in DRF.
        let Ok(agents) = input.agents.indexed::<AGENTS_MAX>() else {
            return decisions.fail();
        };
        let Ok(frameworks) = input.frameworks.indexed::<FRAMEWORKS_MAX>() else {
            return decisions.fail();
        };
        let mut table = ConstraintTable::new();
        if self.build(input, &frameworks, &mut table).is_none() {
            return decisions.fail();
        }
        if self.agent_ids.build(&agents).is_none() {
            return decisions.fail();
        }
        let gpus = kind_of_bytes(&input.total, GPUS.as_bytes());
        // Out of `self` for the pass, so that `first_match` may borrow the rest.
        let mut verdicts = core::mem::take(&mut self.verdicts);
        verdicts.sets.clear();
        for agent_id in input.candidates.iter() {
            let Some(index) = self.agent_ids.find(&agents, agent_id) else {
                continue;
            };
            let Some(attributes) = agents
                .element_bytes(index)
                .and_then(|b| take_str_bytes(b).ok())
                .map(|(_, rest)| rest)
            else {
                return decisions.fail();
            };
            // The free resources' amounts are read in place; the whole agent is decoded
            // only when a framework's preferences must be checked against it.
            let Some((free, empty)) = free_of(&agents, index, &input.total) else {
                return decisions.fail();
            };
            if empty {
                continue;
            }
            let agent = || agents.get(index);
            let has_gpus = gpus.is_some_and(|k| free[k] > 0);
            let checks = Checks {
                frameworks: &frameworks,
                table: &table,
                attributes,
                agents: &agents,
                index,
                free: &free,
                agent,
                has_gpus,
            };
            // An agent with free GPUs goes to a GPU framework if one takes it, and only
            // then to one allowed it as a last resort (the host visits such agents last).
            let chosen = match self.first_match(&mut verdicts, &checks, input.now_ms, false) {
                None if has_gpus => self.first_match(&mut verdicts, &checks, input.now_ms, true),
                chosen => chosen,
            };
            let Some(chosen) = chosen else {
                continue;
            };
            self.allocate_to(chosen, &free, &input.total);
            if let Some(framework_id) = frameworks.key(chosen as usize) {
                decisions.offer(agent_id, framework_id);
            }
        }
        self.verdicts = verdicts;
    }
}

/// What `first_match` needs to check a framework against one agent.
struct Checks<'c, 'a, F> {
    frameworks: &'c Indexed<'a, FrameworkEntry<'a>, FRAMEWORKS_MAX>,
    table: &'c ConstraintTable<'a>,
    /// The agent's encoded attributes (and what follows them).
    attributes: &'a [u8],
    /// The snapshot's agents and this one's place in it: its attribute set in
    /// [`Verdicts`] is looked up only once a framework's constraints are checked.
    agents: &'c Indexed<'a, AgentEntry<'a>, AGENTS_MAX>,
    index: usize,
    /// Its free resources over the cluster's kinds.
    free: &'c Dense,
    /// Decodes the whole agent, for the slow path.
    agent: F,
    /// Some of its GPUs are free.
    has_gpus: bool,
}

impl Drf {
    /// Rebuilds the tables from the snapshot; `None` when over a capacity.
    fn build<'a>(
        &mut self,
        input: &AllocationInput<'a>,
        frameworks: &Indexed<'a, FrameworkEntry<'a>, FRAMEWORKS_MAX>,
        table: &mut ConstraintTable<'a>,
    ) -> Option<()> {
        self.clients.clear();
        self.roles.clear();
        self.role_order.clear();
        let mut role_names: Vec<&str, ROLES_MAX> = Vec::new();
        for index in 0..frameworks.len() {
            let fw = FrameworkHead::read(frameworks.element_bytes(index)?, &input.total)?;
            table.add(&fw)?;
            let role = match role_names.iter().position(|r| *r == fw.role) {
                Some(i) => i,
                None => {
                    role_names.push(fw.role).ok()?;
                    let weight = input.role_weight(fw.role);
                    let role = Role {
                        weight,
                        alloc: [0; QUANTITY_KINDS_MAX],
                        members: Vec::new(),
                        key: 0,
                    };
                    self.roles.push(role).ok()?;
                    role_names.len() - 1
                }
            };
            let alloc = fw.alloc;
            let role_alloc = &mut self.roles[role].alloc;
            for (r, a) in role_alloc.iter_mut().zip(alloc.iter()) {
                *r = r.saturating_add(*a);
            }
            let client = Client {
                role: role as u16,
                weight: fw.weight,
                seq: fw.subscribed_seq,
                alloc,
                active: fw.wants_offers,
                takes_anything: fw.takes_anything(),
                min_offer: fw.min_offer,
                gpu_agents: fw.gpu_agents,
                key: 0,
            };
            self.clients.push(client).ok()?;
        }
        for idx in 0..self.clients.len() {
            let client = &mut self.clients[idx];
            client.key =
                weighted_share_key(dominant_share(&client.alloc, &input.total), client.weight);
            if client.active {
                let role = &mut self.roles[client.role as usize];
                role.members.push(idx as u16).ok()?;
            }
        }
        let clients = &self.clients;
        for role in self.roles.iter_mut() {
            role.key = weighted_share_key(dominant_share(&role.alloc, &input.total), role.weight);
            role.members
                .sort_unstable_by_key(|&m| client_order(clients, m));
        }
        for idx in 0..self.roles.len() {
            if !self.roles[idx].members.is_empty() {
                self.role_order.push(idx as u16).ok()?;
            }
        }
        let (roles, clients) = (&self.roles, &self.clients);
        self.role_order
            .sort_unstable_by_key(|&r| role_order_key(roles, clients, r));
        Some(())
    }

    /// The framework ranked first by `(role key, framework key, subscription)` among those
    /// that take the agent's free resources, scanning as the built-in sorter does: roles
    /// in order, and past the first match only roles of the same key whose first
    /// framework could still rank before it.
    fn first_match<'a>(
        &self,
        verdicts: &mut Verdicts,
        checks: &Checks<'_, 'a, impl Fn() -> Option<AgentEntry<'a>>>,
        now_ms: u64,
        last_resort: bool,
    ) -> Option<u16> {
        let mut decoded: Option<AgentEntry<'a>> = None;
        let mut set: Option<Option<usize>> = None;
        let mut best: Option<(u64, (u64, u64, u16))> = None;
        for &role_idx in &self.role_order {
            let role = &self.roles[role_idx as usize];
            let Some(&first) = role.members.first() else {
                continue;
            };
            let first = client_order(&self.clients, first);
            if let Some((share, key)) = best
                && (role.key != share || first >= key)
            {
                break;
            }
            for &member in &role.members {
                let key = client_order(&self.clients, member);
                if best.is_some_and(|(_, b)| key >= b) {
                    break;
                }
                let client = &self.clients[member as usize];
                if !client.gpu_agents.in_turn(checks.has_gpus, last_resort)
                    || !client.may_fit(checks.free)
                {
                    continue;
                }
                let takes = client.takes_anything || {
                    let member = member as usize;
                    let verdict = match checks.table.answers(member) {
                        true => {
                            let set = *set.get_or_insert_with(|| {
                                verdicts.set_of(checks.agents, checks.index)
                            });
                            let check = || checks.table.check(member, checks.attributes);
                            verdicts.verdict(set, member, check)
                        }
                        false => None,
                    };
                    verdict.unwrap_or_else(|| {
                        if decoded.is_none() {
                            decoded = (checks.agent)();
                        }
                        let fw = checks.frameworks.get(member);
                        matches!((&decoded, fw), (Some(a), Some(fw)) if fw.may_offer(a, now_ms))
                    })
                };
                if takes {
                    best = Some((role.key, key));
                    break;
                }
            }
            if best.is_some_and(|(_, b)| b == first) {
                break;
            }
        }
        best.map(|(_, (_, _, idx))| idx)
    }

    /// Counts `delta` against the framework and its role, and moves both into place.
    fn allocate_to(&mut self, idx: u16, delta: &Dense, total: &Quantities<'_>) {
        let client = &mut self.clients[idx as usize];
        add_dense(&mut client.alloc, delta);
        client.key = weighted_share_key(dominant_share(&client.alloc, total), client.weight);
        let role_idx = client.role as usize;
        let role = &mut self.roles[role_idx];
        add_dense(&mut role.alloc, delta);
        role.key = weighted_share_key(dominant_share(&role.alloc, total), role.weight);
        let clients = &self.clients;
        let members = &mut self.roles[role_idx].members;
        reposition(members, idx, |m| client_order(clients, m));
        let (roles, clients) = (&self.roles, &self.clients);
        reposition(&mut self.role_order, role_idx as u16, |r| {
            role_order_key(roles, clients, r)
        });
    }
}

/// Moves `item` (whose key only grew) rightwards to its place in the sorted `list`.
fn reposition<const N: usize, K: Ord>(list: &mut Vec<u16, N>, item: u16, key: impl Fn(u16) -> K) {
    let Some(mut at) = list.iter().position(|&x| x == item) else {
        return;
    };
    while at + 1 < list.len() && key(list[at + 1]) < key(list[at]) {
        list.swap(at, at + 1);
        at += 1;
    }
}

fn client_order(clients: &[Client], idx: u16) -> (u64, u64, u16) {
    let c = &clients[idx as usize];
    (c.key, c.seq, idx)
}

/// A role's place: its key, then its first framework's place.
fn role_order_key(roles: &[Role], clients: &[Client], idx: u16) -> (u64, (u64, u64, u16), u16) {
    let r = &roles[idx as usize];
    let first = r
        .members
        .first()
        .map_or((u64::MAX, u64::MAX, u16::MAX), |&m| {
            client_order(clients, m)
        });
    (r.key, first, idx)
}

fn add_dense(into: &mut Dense, delta: &Dense) {
    for (a, d) in into.iter_mut().zip(delta.iter()) {
        *a = a.saturating_add(*d);
    }
}

fn kind_of_bytes(total: &Quantities<'_>, name: &[u8]) -> Option<usize> {
    total.binary_search_by(|(k, _)| k.as_bytes().cmp(name)).ok()
}

/// The free resources of agent `index` over the cluster's kinds, as the built-in's
/// `dense_of_resources` (a kind named twice keeps its last amount), read in place, and
/// whether they are empty.
fn free_of(
    agents: &Indexed<'_, AgentEntry<'_>, AGENTS_MAX>,
    index: usize,
    total: &Quantities<'_>,
) -> Option<(Dense, bool)> {
    let (_, free) = attributes_and_rest(agents, index)?;
    let mut dense = [0; QUANTITY_KINDS_MAX];
    // Any kind counts for emptiness, as `Resources::is_empty`, even one the total lacks.
    let mut empty = true;
    visit_quantities_bytes(free, |name, millis| {
        empty &= millis == 0;
        if let Some(k) = kind_of_bytes(total, name) {
            dense[k] = millis;
        }
    })
    .ok()?;
    Some((dense, empty))
}

/// Largest `alloc / total` over kinds with a non-zero total (same float operations, in
/// the same order, as the built-in).
fn dominant_share(alloc: &Dense, total: &Quantities<'_>) -> f64 {
    alloc
        .iter()
        .zip(total.iter())
        .filter(|(_, (_, t))| *t > 0)
        .map(|(a, (_, t))| *a as f64 / *t as f64)
        .fold(0.0, f64::max)
}

/// `share / weight` in units of `1 / SHARE_SCALE`, saturating; a weight that is not
/// positive sorts last (the built-in's `weighted_share_key`).
// The built-in's test, NaN included: a NaN weight is not positive.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn weighted_share_key(share: f64, weight: f64) -> u64 {
    if !(weight > 0.0) || !weight.is_finite() {
        return u64::MAX;
    }
    let scaled = share / weight * SHARE_SCALE;
    if scaled.is_nan() || scaled <= 0.0 {
        return 0;
    }
    if scaled >= u64::MAX as f64 {
        return u64::MAX;
    }
    round_positive(scaled)
}

/// `x.round() as u64` for `0 < x < 2^64` (`f64::round` is not in `core`): round half away
/// from zero. `x - trunc(x)` is exact for every such float.
fn round_positive(x: f64) -> u64 {
    let whole = x as u64;
    let frac = x - whole as f64;
    if frac >= 0.5 { whole + 1 } else { whole }
}

// Exported only in the module, so that benchmarks can run the same logic natively.
#[cfg(target_arch = "wasm32")]
executor_sdk::export_allocator!(Drf);

#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}
