//! Offers made and withdrawn (the resources themselves move in the
//! [`crate::resource_book::ResourceBook`]), and the check of every bookkeeping invariant.

use std::collections::BTreeMap;

use proto::resources::add_quantities;
use proto::{AgentId, Event, FrameworkId, Offer, OfferId, Resources};

use super::Master;
use crate::offer_book::Outstanding;

impl Master {
    /// Offers all free resources of `agent_id` to `framework_id`; `None` when there is
    /// nothing free or either is unknown.
    pub(super) fn make_offer(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
    ) -> Option<Offer> {
        let hostname = self.agents.get(agent_id)?.hostname.clone();
        let (resources, attributes) = self.book.offer(agent_id, framework_id)?;
        self.offers_made += 1;
        let offer = Offer {
            offer_id: OfferId::new(format!(
                "o{:x}-{}",
                self.config.incarnation, self.offers_made
            )),
            framework_id: framework_id.clone(),
            agent_id: agent_id.clone(),
            hostname,
            attributes,
            resources,
        };
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
    pub(super) fn withdraw_offer(&mut self, offer_id: &OfferId, rescind: bool) {
        let Some(outstanding) = self.offers.remove(offer_id) else {
            return;
        };
        let offer = outstanding.offer;
        self.offered_to_free(&offer.agent_id, &offer.framework_id, &offer.resources);
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

    /// Offered resources back to the pool, and the agent up for allocation again.
    pub(super) fn offered_to_free(
        &mut self,
        agent_id: &AgentId,
        framework_id: &FrameworkId,
        resources: &Resources,
    ) {
        self.book.rescind(agent_id, framework_id, resources);
        if self.agents.contains_key(agent_id) {
            self.want_allocation_of(agent_id);
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
    pub fn check_invariants(&self) -> Result<(), BrokenInvariant> {
        self.check_books().map_err(BrokenInvariant)
    }

    fn check_books(&self) -> Result<(), String> {
        let mut total = BTreeMap::new();
        for (id, record) in &self.agents {
            let books = self
                .book
                .agent(id)
                .ok_or(format!("agent {id} has no books"))?;
            let sum = books.free.plus(books.offered).plus(books.used);
            if sum != *books.total {
                return Err(format!(
                    "agent {id}: free {} + offered {} + used {} != total {}",
                    books.free, books.offered, books.used, books.total
                ));
            }
            let offered = self
                .offers
                .of_agent(id)
                .iter()
                .filter_map(|o| self.offers.get(o))
                .fold(Resources::new(), |acc, o| acc.plus(&o.offer.resources));
            if offered != *books.offered {
                return Err(format!(
                    "agent {id}: offers sum to {offered}, books say {}",
                    books.offered
                ));
            }
            let used = record
                .tasks
                .iter()
                .filter_map(|t| self.tasks.get(t))
                .fold(Resources::new(), |acc, t| acc.plus(&t.resources));
            if used != *books.used {
                return Err(format!(
                    "agent {id}: tasks use {used}, books say {}",
                    books.used
                ));
            }
            add_quantities(&mut total, &books.total.quantities());
        }
        let snapshot = self.book.snapshot();
        if total != snapshot.total {
            return Err(format!(
                "cluster total {:?} != sum of agents {:?}",
                snapshot.total, total
            ));
        }
        if snapshot.agents.len() != self.agents.len()
            || self.book.agent_count() != self.agents.len()
        {
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
            let slotless = !self
                .book
                .snapshot()
                .frameworks
                .contains_key(&t.framework_id);
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
        for (id, fw) in &self.book.snapshot().frameworks {
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

/// A bookkeeping invariant of the master that does not hold: a master bug, never an
/// operating error. The text names the first one found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BrokenInvariant(pub String);
