//! The resource book: the one place an agent's resources move between free, offered and
//! used, and a framework's allocation with them.
//!
//! Each agent's `total`, `offered` and `used` are kept here; its `free` is the allocator's
//! [`Snapshot`], which the book owns, so that what a policy sees is the book itself and
//! not a copy kept in step by hand. Every move asserts, in every build, that the agent it
//! touched still balances (`free + offered + used == total`): a check of that agent only,
//! so its cost does not grow with the cluster.
//!
//! A framework's allocation (its outstanding offers plus its live tasks, in the snapshot's
//! [`crate::allocator::FrameworkSlot::allocation`]) moves in the same calls: an offer adds
//! to it, a rescind or a task's end takes from it, a launch moves within it. A framework
//! without a slot (gone, or known only from adverts after a restart) has nothing counted.

use std::collections::BTreeMap;

use proto::resources::{add_quantities, subtract_quantities};
use proto::{AgentId, Attributes, FrameworkId, Resources};

use crate::allocator::{AgentSlot, Changes, FrameworkSlot, Snapshot};
use crate::time::Millis;

/// An agent's resources that are not free (free is in the snapshot).
#[derive(Clone, Debug, Default, PartialEq)]
struct Balance {
    total: Resources,
    offered: Resources,
    used: Resources,
}

impl Balance {
    /// Panics unless `free + offered + used == total` on the agent: resources were lost or
    /// counted twice, and every later decision would build on it.
    fn assert_balanced(&self, id: &AgentId, free: &Resources) {
        assert!(
            balanced(free, &self.offered, &self.used, &self.total),
            "agent {id}: free {free} + offered {} + used {} != total {}",
            self.offered,
            self.used,
            self.total
        );
    }
}

/// Which of an agent's resources that are not free a move takes from.
#[derive(Clone, Copy, Debug)]
enum Held {
    Offered,
    Used,
}

/// One agent's resources, as the book holds them.
#[derive(Clone, Copy, Debug)]
pub struct AgentResources<'a> {
    pub total: &'a Resources,
    pub free: &'a Resources,
    pub offered: &'a Resources,
    pub used: &'a Resources,
    pub attributes: &'a Attributes,
}

/// See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct ResourceBook {
    /// What the allocator sees: agents' free resources and attributes, the cluster total,
    /// frameworks' slots.
    snapshot: Snapshot,
    /// Boxed: three resource vectors inline made each B-tree node of agents kilobytes,
    /// hundreds of bytes per agent at fleet scale.
    balances: BTreeMap<AgentId, Box<Balance>>,
}

impl ResourceBook {
    /// An empty book whose first allocation looks at everything.
    pub fn new(role_weights: BTreeMap<String, f64>) -> ResourceBook {
        let mut snapshot = Snapshot {
            role_weights,
            ..Snapshot::default()
        };
        snapshot.changes.all = true;
        ResourceBook {
            snapshot,
            balances: BTreeMap::new(),
        }
    }

    /// The allocator's view: this book's free resources and framework slots.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn agent(&self, id: &AgentId) -> Option<AgentResources<'_>> {
        let (balance, slot) = (self.balances.get(id)?, self.snapshot.agents.get(id)?);
        Some(AgentResources {
            total: &balance.total,
            free: &slot.free,
            offered: &balance.offered,
            used: &balance.used,
            attributes: &slot.attributes,
        })
    }

    pub fn agents(&self) -> impl Iterator<Item = (&AgentId, AgentResources<'_>)> {
        self.balances
            .keys()
            .filter_map(|id| Some((id, self.agent(id)?)))
    }

    pub fn agent_count(&self) -> usize {
        self.balances.len()
    }

    /// A new agent, everything free. False (and nothing changes) when it is known already.
    pub fn add_agent(&mut self, id: &AgentId, total: Resources, attributes: Attributes) -> bool {
        if self.balances.contains_key(id) {
            return false;
        }
        add_quantities(&mut self.snapshot.total, &total.quantities());
        self.snapshot.changes.all = true;
        let slot = AgentSlot {
            attributes,
            free: total.clone(),
        };
        self.snapshot.agents.insert(id.clone(), slot);
        let balance = Balance {
            total,
            ..Balance::default()
        };
        self.balances.insert(id.clone(), Box::new(balance));
        true
    }

    /// The agent leaves the cluster with all its resources (the caller withdrew its offers
    /// and ended its tasks first).
    pub fn remove_agent(&mut self, id: &AgentId) {
        if let Some(balance) = self.balances.remove(id) {
            subtract_quantities(&mut self.snapshot.total, &balance.total.quantities());
            self.snapshot.changes.all = true;
        }
        self.snapshot.agents.remove(id);
    }

    /// The total an advert of `advertised` gives the agent: per resource, the larger of
    /// the advertised amount and what its tasks use, so the books always balance.
    fn readvertised_total(balance: &Balance, advertised: &Resources) -> Resources {
        let mut beyond_used = advertised.clone();
        beyond_used.subtract_saturating(&balance.used);
        balance.used.plus(&beyond_used)
    }

    /// True when an advert of `advertised` with `attributes` changes what the agent has
    /// to offer: its offers must then be withdrawn before [`ResourceBook::readvertise`].
    pub fn advert_changes(
        &self,
        id: &AgentId,
        advertised: &Resources,
        attributes: &Attributes,
    ) -> bool {
        let (Some(balance), Some(slot)) = (self.balances.get(id), self.snapshot.agents.get(id))
        else {
            return false;
        };
        slot.attributes != *attributes
            || Self::readvertised_total(balance, advertised) != balance.total
    }

    /// Takes a changed advert: new attributes, and a new total (see
    /// [`ResourceBook::advert_changes`]) of which all that is not used is free. The agent
    /// must have nothing offered.
    pub fn readvertise(&mut self, id: &AgentId, advertised: &Resources, attributes: Attributes) {
        let (Some(balance), Some(slot)) =
            (self.balances.get_mut(id), self.snapshot.agents.get_mut(id))
        else {
            return;
        };
        assert!(
            balance.offered.is_empty(),
            "agent {id} re-advertised with offers outstanding"
        );
        let total = Self::readvertised_total(balance, advertised);
        if total != balance.total {
            subtract_quantities(&mut self.snapshot.total, &balance.total.quantities());
            add_quantities(&mut self.snapshot.total, &total.quantities());
            self.snapshot.changes.all = true;
            balance.total = total;
        }
        slot.free = balance.total.checked_sub(&balance.used).unwrap_or_default();
        slot.attributes = attributes;
        balance.assert_balanced(id, &slot.free);
    }

    /// Offers all free resources of the agent to the framework: free → offered, counted
    /// in its allocation; the resources offered and the agent's attributes. `None` when
    /// nothing is free or either is unknown.
    pub fn offer(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
    ) -> Option<(Resources, Attributes)> {
        let balance = self.balances.get_mut(agent_id)?;
        let slot = self.snapshot.agents.get_mut(agent_id)?;
        if slot.free.is_empty() || !self.snapshot.frameworks.contains_key(framework_id) {
            return None;
        }
        let resources = std::mem::take(&mut slot.free);
        balance.offered.add(&resources);
        balance.assert_balanced(agent_id, &slot.free);
        let attributes = slot.attributes.clone();
        self.allocation_add(framework_id, &resources);
        Some((resources, attributes))
    }

    /// Offered resources the framework did not take (rescinded, declined, expired, or
    /// left over after a launch): offered → free, out of its allocation.
    pub fn rescind(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        resources: &Resources,
    ) {
        self.back_to_free(agent_id, framework_id, resources, Held::Offered);
    }

    /// A task launched on offered resources: offered → used; the framework's allocation
    /// does not change (its offer became its task).
    pub fn launch_from_offer(&mut self, agent_id: &AgentId, resources: &Resources) {
        let (Some(balance), Some(slot)) = (
            self.balances.get_mut(agent_id),
            self.snapshot.agents.get(agent_id),
        ) else {
            return;
        };
        balance.offered.subtract_saturating(resources);
        balance.used.add(resources);
        balance.assert_balanced(agent_id, &slot.free);
    }

    /// A task ended: used → free, out of its framework's allocation.
    pub fn release_used(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        resources: &Resources,
    ) {
        self.back_to_free(agent_id, framework_id, resources, Held::Used);
    }

    /// Offered or used → free, out of the framework's allocation.
    fn back_to_free(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        resources: &Resources,
        from: Held,
    ) {
        let (Some(balance), Some(slot)) = (
            self.balances.get_mut(agent_id),
            self.snapshot.agents.get_mut(agent_id),
        ) else {
            return;
        };
        match from {
            Held::Offered => balance.offered.subtract_saturating(resources),
            Held::Used => balance.used.subtract_saturating(resources),
        }
        slot.free.add(resources);
        balance.assert_balanced(agent_id, &slot.free);
        self.allocation_sub(framework_id, resources);
    }

    /// A task this master did not launch (listed in an advert): free → used, counted in
    /// its framework's allocation. False, and nothing moves, when it does not fit in the
    /// agent's free resources.
    pub fn occupy(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        resources: &Resources,
    ) -> bool {
        let (Some(balance), Some(slot)) = (
            self.balances.get_mut(agent_id),
            self.snapshot.agents.get_mut(agent_id),
        ) else {
            return false;
        };
        let Some(left) = slot.free.checked_sub(resources) else {
            return false;
        };
        slot.free = left;
        balance.used.add(resources);
        balance.assert_balanced(agent_id, &slot.free);
        self.allocation_add(framework_id, resources);
        true
    }

    fn allocation_add(&mut self, framework_id: &FrameworkId, resources: &Resources) {
        if let Some(fw) = self.snapshot.frameworks.get_mut(framework_id) {
            resources.add_quantities_to(&mut fw.allocation);
            self.snapshot
                .changes
                .frameworks
                .insert(framework_id.clone());
        }
    }

    fn allocation_sub(&mut self, framework_id: &FrameworkId, resources: &Resources) {
        if let Some(fw) = self.snapshot.frameworks.get_mut(framework_id) {
            resources.subtract_quantities_from(&mut fw.allocation);
            self.snapshot
                .changes
                .frameworks
                .insert(framework_id.clone());
        }
    }

    /// A framework's slot, new or replaced; its `allocation` is what it holds now.
    pub fn put_framework(&mut self, id: &FrameworkId, slot: FrameworkSlot) {
        self.snapshot.frameworks.insert(id.clone(), slot);
        self.snapshot.changes.frameworks.insert(id.clone());
    }

    pub fn remove_framework(&mut self, id: &FrameworkId) {
        self.snapshot.frameworks.remove(id);
        self.snapshot.changes.frameworks.insert(id.clone());
    }

    /// A framework's slot to change its wants, filters or preferences (not its allocation,
    /// which moves only with resources); the change is noted for the allocator.
    pub fn framework_mut(&mut self, id: &FrameworkId) -> Option<&mut FrameworkSlot> {
        let slot = self.snapshot.frameworks.get_mut(id)?;
        self.snapshot.changes.frameworks.insert(id.clone());
        Some(slot)
    }

    pub fn set_role_weight(&mut self, role: &str, weight: f64) {
        self.snapshot.role_weights.insert(role.to_owned(), weight);
        self.snapshot.changes.all = true;
    }

    /// Notes that the allocator counted something against the framework, so that it is
    /// resynchronized at the next pass.
    pub fn note_framework_changed(&mut self, id: &FrameworkId) {
        self.snapshot.changes.frameworks.insert(id.clone());
    }

    /// Starts an allocation pass at `now`: the snapshot to hand the allocator.
    pub fn pass_at(&mut self, now: Millis) -> &Snapshot {
        self.snapshot.now = now;
        &self.snapshot
    }

    /// The allocator has seen every change so far.
    pub fn changes_seen(&mut self) {
        self.snapshot.changes = Changes::default();
    }
}

/// The parts' scalars add up to the total's, kind by kind, and no part has a kind the
/// total lacks: one walk over the sorted maps side by side, no lookups (this runs on
/// every move).
fn scalars_balanced(parts: [&Resources; 3], total: &Resources) -> bool {
    let mut walks = parts.map(|p| p.scalars.iter().peekable());
    for (kind, amount) in &total.scalars {
        let mut sum = 0u64;
        for walk in &mut walks {
            if let Some((_, part)) = walk.next_if(|(k, _)| *k == kind) {
                sum = sum.saturating_add(part.0);
            }
        }
        if sum != amount.0 {
            return false;
        }
    }
    walks.iter_mut().all(|walk| walk.peek().is_none())
}

/// `free + offered + used == total`, without allocating for scalar resources (the common
/// case); ranges and sets, which must also be disjoint, are summed exactly.
fn balanced(free: &Resources, offered: &Resources, used: &Resources, total: &Resources) -> bool {
    let parts = [free, offered, used];
    if !scalars_balanced(parts, total) {
        return false;
    }
    let discrete = |r: &Resources| !r.ranges.is_empty() || !r.sets.is_empty();
    if !discrete(total) && !parts.iter().any(|p| discrete(p)) {
        return true;
    }
    let mut sum = Resources {
        ranges: free.ranges.clone(),
        sets: free.sets.clone(),
        ..Resources::default()
    };
    for part in [offered, used] {
        let overlaps = part
            .ranges
            .iter()
            .any(|(k, r)| sum.ranges.get(k).is_some_and(|mine| mine.overlaps(r)))
            || part
                .sets
                .iter()
                .any(|(k, s)| sum.sets.get(k).is_some_and(|mine| !mine.is_disjoint(s)));
        if overlaps {
            return false;
        }
        let discrete_part = Resources {
            ranges: part.ranges.clone(),
            sets: part.sets.clone(),
            ..Resources::default()
        };
        sum.add(&discrete_part);
    }
    sum.ranges == total.ranges && sum.sets == total.sets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(cpus: f64) -> Resources {
        Resources::new().with_scalar("cpus", cpus)
    }

    fn slot() -> FrameworkSlot {
        FrameworkSlot {
            role: "r".to_owned(),
            weight: 1.0,
            subscribed_seq: 1,
            allocation: BTreeMap::new(),
            wants_offers: true,
            constraints: Vec::new(),
            min_offer: Resources::new(),
            filters: BTreeMap::new(),
            gpu_agents: crate::allocator::GpuAgents::NotOffered,
        }
    }

    fn book() -> (ResourceBook, AgentId, FrameworkId) {
        let mut book = ResourceBook::new(BTreeMap::new());
        let (a, f) = (AgentId::new("a1"), FrameworkId::from("f1"));
        let ports = res(4.0).with_range("ports", 1000, 1999);
        assert!(book.add_agent(&a, ports, Attributes::new()));
        book.put_framework(&f, slot());
        (book, a, f)
    }

    #[test]
    fn resources_go_round_and_the_snapshot_is_the_book() {
        let (mut book, a, f) = book();
        let (offered, _) = book.offer(&a, &f).expect("all of it is free");
        assert!(book.agent(&a).is_some_and(|r| r.free.is_empty()));
        assert_eq!(book.snapshot().frameworks[&f].allocation["cpus"], 4_000);
        let task = res(1.0).with_range("ports", 1000, 1009);
        let left = offered.checked_sub(&task).expect("the task fits");
        book.launch_from_offer(&a, &task);
        book.rescind(&a, &f, &left);
        assert_eq!(book.snapshot().agents[&a].free, left);
        assert_eq!(book.snapshot().frameworks[&f].allocation["cpus"], 1_000);
        book.release_used(&a, &f, &task);
        let r = book.agent(&a).expect("known");
        assert_eq!(r.free, r.total);
        assert!(r.offered.is_empty() && r.used.is_empty());
        assert!(book.snapshot().frameworks[&f].allocation.is_empty());
    }

    #[test]
    #[should_panic(expected = "!= total")]
    fn freeing_what_was_never_used_is_caught_in_every_build() {
        let (mut book, a, f) = book();
        book.release_used(&a, &f, &res(1.0));
    }

    #[test]
    #[should_panic(expected = "!= total")]
    fn a_port_counted_twice_is_caught() {
        let (mut book, a, f) = book();
        let _ = book.offer(&a, &f);
        let port = Resources::new().with_range("ports", 1000, 1000);
        book.launch_from_offer(&a, &port);
        // The port in use handed back as if still offered: free and used both hold it.
        book.rescind(&a, &f, &port);
    }

    #[test]
    fn a_readvertised_total_never_drops_below_what_is_used() {
        let (mut book, a, f) = book();
        let _ = book.offer(&a, &f);
        book.launch_from_offer(&a, &res(3.0));
        let rest = book.agent(&a).expect("known").offered.clone();
        book.rescind(&a, &f, &rest);
        assert!(book.advert_changes(&a, &res(2.0), &Attributes::new()));
        book.readvertise(&a, &res(2.0), Attributes::new());
        let r = book.agent(&a).expect("known");
        assert_eq!(*r.total, res(3.0));
        assert!(r.free.is_empty());
    }

    #[test]
    fn a_task_that_does_not_fit_is_not_occupied() {
        let (mut book, a, f) = book();
        assert!(!book.occupy(&a, &f, &res(5.0)));
        assert!(book.occupy(&a, &f, &res(4.0)));
        assert_eq!(*book.agent(&a).expect("known").used, res(4.0));
    }
}
