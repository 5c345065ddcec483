//! A two-level weighted DRF sorter: roles, then frameworks inside each role.
//!
//! Like Mesos' sorter it is pure and in memory, caches every node's share and keeps the
//! nodes ordered, so that recording an allocation moves one framework and one role into
//! place in `O(log frameworks + log roles)` instead of sorting again. Both orders are
//! indexed heaps (`heap.rs`): the first framework is a read, and the rest are walked in
//! order only when the first ones are refused.
//!
//! Order: each framework that wants offers is ranked by the triple
//! `(role share / role weight, own share / own weight, subscription order)`, lowest
//! first, where a role's share is the dominant share of the sum of its frameworks'
//! allocations. So roles are served by weighted share, frameworks inside a role by
//! weighted share, and every tie goes to the framework that subscribed first.
//! [`DrfSorter::first_match`] returns the lowest-ranked framework a predicate accepts.
//!
//! Roles are kept ordered by `(role key, key of their first framework)`, so the first
//! role holds the overall first framework; only when that framework is refused (filters,
//! constraints) are the other roles of equal share looked at, and the scan stops at the
//! first role whose best framework cannot beat the best found.
//!
//! Shares are compared after rounding to `1 / SHARE_SCALE`, so that shares that are equal
//! as fractions but differ in the last bit of a float (`0.3 / 3` against `0.1`) tie as
//! they should.

use std::collections::{BTreeMap, HashMap};

use proto::resources::Kind;
use proto::resources::SCALAR_MILLIS_PER_UNIT;
use proto::{FrameworkId, Resources};

use super::FrameworkSlot;
use super::heap::{HeapKey, IndexedHeap};

/// Shares are compared in units of `1 / SHARE_SCALE`.
pub const SHARE_SCALE: f64 = 1e12;

/// `share / weight` as a sortable integer in units of `1 / SHARE_SCALE` (saturating;
/// a weight that is not positive sorts last).
pub fn weighted_share_key(share: f64, weight: f64) -> u64 {
    if weight.is_nan() || weight <= 0.0 || weight.is_infinite() {
        return u64::MAX;
    }
    let scaled = share / weight * SHARE_SCALE;
    // Not `f64::round`: a libm call, a few percent of a full pass.
    match scaled {
        s if s.is_nan() || s <= 0.0 => 0,
        s if s >= u64::MAX as f64 => u64::MAX,
        s => round_positive(s),
    }
}

/// `x.round() as u64` for `0 < x < 2^64`: round half away from zero. `x - trunc(x)` is
/// exact for every such float (above 2^52 they are all whole).
fn round_positive(x: f64) -> u64 {
    let whole = x as u64;
    if x - whole as f64 >= 0.5 {
        whole + 1
    } else {
        whole
    }
}

/// Index of a framework's slot in the sorter, valid until it is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientIdx(u32);

/// A framework's place inside its role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct OrderKey {
    share: u64,
    seq: u64,
    idx: u32,
}

/// A role's place: its weighted share, then its first framework's place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RoleKey {
    share: u64,
    first: OrderKey,
    idx: u32,
}

impl HeapKey for OrderKey {
    fn slot(&self) -> usize {
        self.idx as usize
    }
}

impl HeapKey for RoleKey {
    fn slot(&self) -> usize {
        self.idx as usize
    }
}

#[derive(Clone, Debug)]
struct RoleNode {
    name: String,
    weight: f64,
    alloc: Vec<u64>,
    /// Frameworks that want offers, in order.
    members: IndexedHeap<OrderKey>,
    client_count: usize,
}

#[derive(Clone, Debug)]
struct ClientNode {
    id: FrameworkId,
    role: u32,
    weight: f64,
    seq: u64,
    alloc: Vec<u64>,
    active: bool,
    /// Its minimum offer as quantities; `None` when it asks for a kind the cluster lacks.
    min_offer: Option<Vec<u64>>,
    /// Nothing but wanting offers limits which agents it takes (GPUs aside).
    takes_anything: bool,
}

impl ClientNode {
    /// Whether `free` (quantities) holds its minimum offer's quantities: necessary for
    /// [`super::may_offer`], not sufficient (a scalar named like a range, which port).
    fn may_fit(&self, free: &[u64]) -> bool {
        self.min_offer
            .as_ref()
            .is_some_and(|min| min.iter().zip(free).all(|(m, f)| m <= f))
    }
}

/// Hierarchical weighted DRF order over frameworks; see the module documentation.
#[derive(Clone, Debug, Default)]
pub struct DrfSorter {
    /// Resource kinds of the cluster, sorted; allocations are dense vectors over them.
    kinds: Vec<Kind>,
    /// Where `gpus` is among `kinds`.
    gpus_kind: Option<usize>,
    total: Vec<u64>,
    roles: Vec<Option<RoleNode>>,
    role_index: HashMap<String, u32>,
    vacant_roles: Vec<u32>,
    clients: Vec<Option<ClientNode>>,
    client_index: HashMap<FrameworkId, u32>,
    vacant_clients: Vec<u32>,
    /// Roles with frameworks that want offers, in order.
    role_order: IndexedHeap<RoleKey>,
    /// Each framework's place in its role's `members` (one table for every role: a
    /// framework is in one role).
    member_places: Vec<u32>,
    /// Each role's place in `role_order`.
    role_places: Vec<u32>,
}

impl DrfSorter {
    /// An empty sorter computing shares against `total` (quantities, as in
    /// [`Resources::quantities`]). A new total needs a new sorter.
    pub fn new(total: &BTreeMap<String, u64>) -> DrfSorter {
        let kinds: Vec<Kind> = total.keys().map(|k| Kind::from(k.as_str())).collect();
        DrfSorter {
            gpus_kind: kinds.iter().position(|k| k.as_str() == super::GPUS),
            kinds,
            total: total.values().copied().collect(),
            ..DrfSorter::default()
        }
    }

    pub fn len(&self) -> usize {
        self.client_index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.client_index.is_empty()
    }

    /// Adds the framework or brings it up to date with `slot` (allocation, weight,
    /// whether it wants offers); `role_weight` is the weight of `slot.role`.
    pub fn upsert(&mut self, id: &FrameworkId, slot: &FrameworkSlot, role_weight: f64) {
        let role = self.role_slot(&slot.role, role_weight);
        let alloc = self.dense_of_quantities(&slot.allocation);
        let idx = match self.client_index.get(id).copied() {
            Some(idx) if self.client(idx).role == role => idx,
            Some(_) => {
                self.remove(id);
                self.insert_client(id, role)
            }
            None => self.insert_client(id, role),
        };
        let old_alloc = {
            let node = self.client_mut(idx);
            node.weight = slot.weight;
            node.seq = slot.subscribed_seq;
            node.active = slot.wants_offers;
            node.takes_anything = slot.takes_anything();
            std::mem::replace(&mut node.alloc, alloc.clone())
        };
        let min_offer = self.dense_of_minimum(&slot.min_offer);
        self.client_mut(idx).min_offer = min_offer;
        let role_node = self.role_mut(role);
        role_node.weight = role_weight;
        for (k, (old, new)) in old_alloc.iter().zip(&alloc).enumerate() {
            role_node.alloc[k] = role_node.alloc[k].saturating_sub(*old).saturating_add(*new);
        }
        self.reposition(idx);
    }

    /// Forgets the framework; its allocation leaves its role's.
    pub fn remove(&mut self, id: &FrameworkId) {
        let Some(idx) = self.client_index.remove(id) else {
            return;
        };
        let Some(node) = self.clients[idx as usize].take() else {
            return;
        };
        self.vacant_clients.push(idx);
        let role_idx = node.role;
        let (role, member_places) = self.role_and_member_places(role_idx);
        role.members.remove(idx as usize, member_places);
        for (k, a) in node.alloc.iter().enumerate() {
            role.alloc[k] = role.alloc[k].saturating_sub(*a);
        }
        role.client_count -= 1;
        if role.client_count == 0 {
            let name = std::mem::take(&mut role.name);
            (self.role_order).remove(role_idx as usize, &mut self.role_places);
            self.role_index.remove(&name);
            self.roles[role_idx as usize] = None;
            self.vacant_roles.push(role_idx);
        } else {
            self.reposition_role(role_idx);
        }
    }

    /// Records that `delta` (quantities, as [`DrfSorter::quantities_of`] gives them) was
    /// allocated (offered) to the framework in `idx`.
    pub fn allocate(&mut self, idx: ClientIdx, delta: &[u64]) {
        let node = self.client_mut(idx.0);
        for (a, d) in node.alloc.iter_mut().zip(delta) {
            *a = a.saturating_add(*d);
        }
        let role = self.role_mut(self.client(idx.0).role);
        for (a, d) in role.alloc.iter_mut().zip(delta) {
            *a = a.saturating_add(*d);
        }
        self.reposition(idx.0);
    }

    /// The first framework in DRF order that wants offers, whose minimum offer's
    /// quantities `free` (as [`DrfSorter::quantities_of`] gives them) holds, and that
    /// `accept` takes; `accept` is told the framework's slot, id, and whether it takes
    /// anything.
    ///
    /// The quantities are checked here, on the sorter's own vectors, so that frameworks
    /// that cannot fit an agent cost a few comparisons each, not a lookup.
    pub fn first_match(
        &self,
        free: &[u64],
        mut accept: impl FnMut(ClientIdx, &FrameworkId, bool) -> bool,
    ) -> Option<ClientIdx> {
        self.first_in_order(|idx, node| {
            node.may_fit(free) && accept(idx, &node.id, node.takes_anything)
        })
    }

    /// The first framework in DRF order that wants offers and that `accept` takes.
    fn first_in_order(
        &self,
        mut accept: impl FnMut(ClientIdx, &ClientNode) -> bool,
    ) -> Option<ClientIdx> {
        let mut best: Option<(u64, OrderKey)> = None;
        for role_key in self.role_order.in_order() {
            if let Some((share, key)) = best {
                // Roles are sorted by share, then by their first framework: none further on
                // can hold a framework ranked before `key`.
                if role_key.share != share || role_key.first >= key {
                    break;
                }
            }
            let role = self.role(role_key.idx);
            for key in role.members.in_order() {
                if best.is_some_and(|(_, b)| key >= b) {
                    break;
                }
                if accept(ClientIdx(key.idx), self.client(key.idx)) {
                    best = Some((role_key.share, key));
                    break;
                }
            }
            if best.is_some_and(|(_, b)| b == role_key.first) {
                break;
            }
        }
        best.map(|(_, key)| ClientIdx(key.idx))
    }

    /// Frameworks that want offers, in the order they would be offered.
    pub fn order(&self) -> Vec<FrameworkId> {
        let mut out = Vec::with_capacity(self.len());
        self.first_in_order(|_, node| {
            out.push(node.id.clone());
            false
        });
        out
    }

    /// The framework's dominant share (unweighted), if known.
    pub fn share(&self, id: &FrameworkId) -> Option<f64> {
        let idx = *self.client_index.get(id)?;
        Some(self.dominant_share(&self.client(idx).alloc))
    }

    pub fn id(&self, idx: ClientIdx) -> &FrameworkId {
        &self.client(idx.0).id
    }

    fn insert_client(&mut self, id: &FrameworkId, role: u32) -> u32 {
        let node = ClientNode {
            id: id.clone(),
            role,
            weight: 1.0,
            seq: 0,
            alloc: vec![0; self.kinds.len()],
            active: false,
            min_offer: Some(Vec::new()),
            takes_anything: true,
        };
        let idx = match self.vacant_clients.pop() {
            Some(idx) => {
                self.clients[idx as usize] = Some(node);
                idx
            }
            None => {
                self.clients.push(Some(node));
                (self.clients.len() - 1) as u32
            }
        };
        self.client_index.insert(id.clone(), idx);
        self.role_mut(role).client_count += 1;
        idx
    }

    fn role_slot(&mut self, name: &str, weight: f64) -> u32 {
        if let Some(idx) = self.role_index.get(name) {
            return *idx;
        }
        let node = RoleNode {
            name: name.to_owned(),
            weight,
            alloc: vec![0; self.kinds.len()],
            members: IndexedHeap::default(),
            client_count: 0,
        };
        let idx = match self.vacant_roles.pop() {
            Some(idx) => {
                self.roles[idx as usize] = Some(node);
                idx
            }
            None => {
                self.roles.push(Some(node));
                (self.roles.len() - 1) as u32
            }
        };
        self.role_index.insert(name.to_owned(), idx);
        idx
    }

    /// Moves a framework (and then its role) to where its current share puts it.
    fn reposition(&mut self, idx: u32) {
        let node = self.client(idx);
        let key = node.active.then(|| OrderKey {
            share: weighted_share_key(self.dominant_share(&node.alloc), node.weight),
            seq: node.seq,
            idx,
        });
        let role_idx = node.role;
        let (role, member_places) = self.role_and_member_places(role_idx);
        match key {
            Some(key) => role.members.set(key, member_places),
            None => drop(role.members.remove(idx as usize, member_places)),
        }
        self.reposition_role(role_idx);
    }

    fn reposition_role(&mut self, idx: u32) {
        let role = self.role(idx);
        let key = role.members.first().map(|first| RoleKey {
            share: weighted_share_key(self.dominant_share(&role.alloc), role.weight),
            first: *first,
            idx,
        });
        match key {
            Some(key) => self.role_order.set(key, &mut self.role_places),
            None => drop(self.role_order.remove(idx as usize, &mut self.role_places)),
        }
    }

    fn dominant_share(&self, alloc: &[u64]) -> f64 {
        alloc
            .iter()
            .zip(&self.total)
            .filter(|(_, t)| **t > 0)
            .map(|(a, t)| *a as f64 / *t as f64)
            .fold(0.0, f64::max)
    }

    fn kind_named(&self, name: &str) -> Option<usize> {
        self.kinds.binary_search_by(|k| k.as_str().cmp(name)).ok()
    }

    /// [`DrfSorter::kind_named`], first by pointer: the kinds agents advertise are shared
    /// with the sorter's, so the names are seldom compared (they were a tenth of a pass).
    fn kind(&self, kind: &Kind) -> Option<usize> {
        (self.kinds.iter().position(|k| k.is_same(kind))).or_else(|| self.kind_named(kind))
    }

    /// Where `gpus` is among the cluster's kinds, in [`DrfSorter::quantities_of`]'s.
    pub fn gpus_kind(&self) -> Option<usize> {
        self.gpus_kind
    }

    fn dense_of_quantities(&self, q: &BTreeMap<String, u64>) -> Vec<u64> {
        let mut dense = vec![0; self.kinds.len()];
        for (name, v) in q {
            if let Some(k) = self.kind_named(name) {
                dense[k] = *v;
            }
        }
        dense
    }

    /// A minimum offer's quantities; `None` when it asks for some of a kind the cluster
    /// lacks, which no agent can then hold.
    fn dense_of_minimum(&self, r: &Resources) -> Option<Vec<u64>> {
        let lacking = r
            .quantities_iter()
            .any(|(name, v)| v > 0 && self.kind_named(name).is_none());
        (!lacking).then(|| self.quantities_of(r))
    }

    /// Quantities of `r` over the cluster's kinds (kinds it lacks are left out), as
    /// [`DrfSorter::first_match`] takes them, without building the map
    /// [`Resources::quantities`] would.
    pub fn quantities_of(&self, r: &Resources) -> Vec<u64> {
        let mut dense = Vec::new();
        self.quantities_into(r, &mut dense);
        dense
    }

    /// [`DrfSorter::quantities_of`] into `dense`, whose allocation a pass reuses.
    pub fn quantities_into(&self, r: &Resources, dense: &mut Vec<u64>) {
        dense.clear();
        dense.resize(self.kinds.len(), 0);
        for (name, v) in &r.scalars {
            if let Some(k) = self.kind(name) {
                dense[k] = v.millis();
            }
        }
        for (name, ranges) in &r.ranges {
            if let Some(k) = self.kind(name) {
                dense[k] = ranges.count().saturating_mul(SCALAR_MILLIS_PER_UNIT);
            }
        }
        for (name, items) in &r.sets {
            if let Some(k) = self.kind(name) {
                dense[k] = (items.len() as u64).saturating_mul(SCALAR_MILLIS_PER_UNIT);
            }
        }
    }

    fn client(&self, idx: u32) -> &ClientNode {
        self.clients[idx as usize]
            .as_ref()
            .expect("sorter: client slot in use")
    }

    fn client_mut(&mut self, idx: u32) -> &mut ClientNode {
        self.clients[idx as usize]
            .as_mut()
            .expect("sorter: client slot in use")
    }

    fn role(&self, idx: u32) -> &RoleNode {
        self.roles[idx as usize]
            .as_ref()
            .expect("sorter: role slot in use")
    }

    fn role_mut(&mut self, idx: u32) -> &mut RoleNode {
        self.roles[idx as usize]
            .as_mut()
            .expect("sorter: role slot in use")
    }

    /// [`DrfSorter::role_mut`] beside the position table its `members` heap updates.
    fn role_and_member_places(&mut self, idx: u32) -> (&mut RoleNode, &mut Vec<u32>) {
        let role = self.roles[idx as usize]
            .as_mut()
            .expect("sorter: role slot in use");
        (role, &mut self.member_places)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EDGES: [f64; 8] = [
        0.5,
        1.5,
        2.5,
        0.499_999_999_999_999_94,
        4_503_599_627_370_495.5,
        9_007_199_254_740_993.0,
        1e-300,
        18_446_744_073_709_549_568.0,
    ];

    proptest! {
        #[test]
        fn round_positive_is_round(x in 1e-9f64..1.8e19) {
            prop_assert_eq!(round_positive(x), x.round() as u64);
        }
    }

    #[test]
    fn round_positive_is_round_at_the_edges() {
        for x in EDGES {
            assert_eq!(round_positive(x), x.round() as u64, "{x}");
        }
    }
}
