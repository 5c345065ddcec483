//! Moving resources between free, offered and used, and checking that nothing is lost
//! or counted twice.

use std::collections::BTreeMap;

use proto::resources::{add_quantities, subtract_quantities};
use proto::{AgentId, Event, FrameworkId, Offer, OfferId, Resources};

use super::Master;
use crate::offer_book::Outstanding;

impl Master {
    /// Offers all free resources of `agent_id` to `framework_id`; `None` when there is
    /// nothing free or either is unknown.
    pub(crate) fn make_offer(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
    ) -> Option<Offer> {
        let record = self.agents.get_mut(agent_id)?;
        let slot = self.snapshot.agents.get_mut(agent_id)?;
        if slot.free.is_empty() || !self.snapshot.frameworks.contains_key(framework_id) {
            return None;
        }
        let resources = std::mem::take(&mut slot.free);
        record.offered.add(&resources);
        self.offers_made += 1;
        let offer = Offer {
            offer_id: OfferId(format!(
                "o{:x}-{}",
                self.config.incarnation, self.offers_made
            )),
            framework_id: framework_id.clone(),
            agent_id: agent_id.clone(),
            hostname: record.hostname.clone(),
            attributes: slot.attributes.clone(),
            resources,
        };
        self.allocation_add(framework_id, &offer.resources);
        let expires_at = self.config.offer_timeout_ms.map(|ms| self.now.plus_ms(ms));
        self.offers.insert(Outstanding {
            offer: offer.clone(),
            made_at: self.now,
            expires_at,
        });
        Some(offer)
    }

    /// Takes an offer out of the book and returns all its resources to the pool.
    /// With `rescind`, tells its framework.
    pub(crate) fn withdraw_offer(&mut self, offer_id: &OfferId, rescind: bool) {
        let Some(outstanding) = self.offers.remove(offer_id) else {
            return;
        };
        let offer = outstanding.offer;
        self.offered_to_free(&offer.agent_id, &offer.resources);
        self.allocation_sub(&offer.framework_id, &offer.resources);
        if rescind
            && self
                .frameworks
                .get(&offer.framework_id)
                .is_some_and(|f| f.connected && !f.torn_down)
        {
            self.send(
                &offer.framework_id,
                Event::Rescind {
                    offer_id: offer.offer_id.clone(),
                },
            );
        }
    }

    pub(crate) fn offered_to_free(&mut self, agent_id: &AgentId, resources: &Resources) {
        if let (Some(record), Some(slot)) = (
            self.agents.get_mut(agent_id),
            self.snapshot.agents.get_mut(agent_id),
        ) {
            debug_assert!(
                record.offered.contains(resources),
                "returning more than was offered on {agent_id}"
            );
            record.offered.subtract_saturating(resources);
            slot.free.add(resources);
            self.want_allocation_of(agent_id);
        }
    }

    pub(crate) fn offered_to_used(&mut self, agent_id: &AgentId, resources: &Resources) {
        if let Some(record) = self.agents.get_mut(agent_id) {
            debug_assert!(
                record.offered.contains(resources),
                "launching more than was offered on {agent_id}"
            );
            record.offered.subtract_saturating(resources);
            record.used.add(resources);
        }
    }

    pub(crate) fn used_to_free(&mut self, agent_id: &AgentId, resources: &Resources) {
        if let (Some(record), Some(slot)) = (
            self.agents.get_mut(agent_id),
            self.snapshot.agents.get_mut(agent_id),
        ) {
            debug_assert!(
                record.used.contains(resources),
                "freeing more than was used on {agent_id}"
            );
            record.used.subtract_saturating(resources);
            slot.free.add(resources);
            self.want_allocation_of(agent_id);
        }
    }

    pub(crate) fn allocation_add(&mut self, framework_id: &FrameworkId, resources: &Resources) {
        if let Some(fw) = self.snapshot.frameworks.get_mut(framework_id) {
            add_quantities(&mut fw.allocation, &resources.quantities());
            self.snapshot
                .changes
                .frameworks
                .insert(framework_id.clone());
        }
    }

    pub(crate) fn allocation_sub(&mut self, framework_id: &FrameworkId, resources: &Resources) {
        if let Some(fw) = self.snapshot.frameworks.get_mut(framework_id) {
            subtract_quantities(&mut fw.allocation, &resources.quantities());
            self.snapshot
                .changes
                .frameworks
                .insert(framework_id.clone());
        }
    }

    /// Checks every bookkeeping invariant; the error names the first one broken.
    ///
    /// - per agent, `free + offered + used == total`;
    /// - per agent, `offered` is the sum of its outstanding offers and `used` the sum of
    ///   its live tasks (so no resource is offered twice or used by two tasks: adding
    ///   overlapping ranges or sets is itself asserted);
    /// - per framework, its allocation is the quantities of its offers and live tasks;
    /// - the cluster total is the sum of agents' totals.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut total = BTreeMap::new();
        for (id, record) in &self.agents {
            let free = self
                .snapshot
                .agents
                .get(id)
                .map(|s| &s.free)
                .ok_or(format!("agent {id} has no slot"))?;
            let sum = free.plus(&record.offered).plus(&record.used);
            if sum != record.total {
                return Err(format!(
                    "agent {id}: free {free} + offered {} + used {} != total {}",
                    record.offered, record.used, record.total
                ));
            }
            let offered = self
                .offers
                .of_agent(id)
                .iter()
                .filter_map(|o| self.offers.get(o))
                .fold(Resources::new(), |acc, o| acc.plus(&o.offer.resources));
            if offered != record.offered {
                return Err(format!(
                    "agent {id}: offers sum to {offered}, books say {}",
                    record.offered
                ));
            }
            let used = record
                .tasks
                .iter()
                .filter_map(|t| self.tasks.get(t))
                .fold(Resources::new(), |acc, t| acc.plus(&t.resources));
            if used != record.used {
                return Err(format!(
                    "agent {id}: tasks use {used}, books say {}",
                    record.used
                ));
            }
            add_quantities(&mut total, &record.total.quantities());
        }
        if total != self.snapshot.total {
            return Err(format!(
                "cluster total {:?} != sum of agents {:?}",
                self.snapshot.total, total
            ));
        }
        if self.snapshot.agents.len() != self.agents.len() {
            return Err("agent slots and records differ".to_owned());
        }
        self.check_allocations()
    }

    fn check_allocations(&self) -> Result<(), String> {
        let mut expected: BTreeMap<&FrameworkId, BTreeMap<String, u64>> = BTreeMap::new();
        for o in self.offers.iter() {
            add_quantities(
                expected.entry(&o.offer.framework_id).or_default(),
                &o.offer.resources.quantities(),
            );
        }
        for t in self.tasks.live() {
            let slotless = !self.snapshot.frameworks.contains_key(&t.framework_id);
            let recovered = self
                .frameworks
                .get(&t.framework_id)
                .is_some_and(|f| f.recovered);
            if slotless && (t.doomed || recovered) {
                // Counted once its framework subscribes (recovered), or never (doomed
                // tasks of a framework that is gone).
                continue;
            }
            add_quantities(
                expected.entry(&t.framework_id).or_default(),
                &t.resources.quantities(),
            );
        }
        for (id, fw) in &self.snapshot.frameworks {
            let want = expected.remove(id).unwrap_or_default();
            if want != fw.allocation {
                return Err(format!(
                    "framework {id}: allocation {:?} != offers + tasks {want:?}",
                    fw.allocation
                ));
            }
        }
        match expected.into_iter().find(|(_, q)| !q.is_empty()) {
            Some((id, _)) => Err(format!("offers or tasks of unknown framework {id}")),
            None => Ok(()),
        }
    }
}
