//! Everything that happens with time: allocation, offer and filter expiry, failover,
//! reclaim.

use std::collections::BTreeMap;

use proto::{AgentId, Event, FrameworkId, Offer};

use super::Master;
use crate::allocator::may_offer;
use crate::time::Millis;

impl Master {
    /// When [`Master::handle_timeout`] should next be called; `None` when nothing is
    /// waiting on time. A time in the past means "now".
    pub fn poll_timeout(&self) -> Option<Millis> {
        // While offers are held, a pending allocation waits for the hold's end.
        let allocation_at = match self.offers_held_until {
            Some(until) if self.offers_held() => self.allocation_at.map(|at| at.max(until)),
            _ => self.allocation_at,
        };
        [
            allocation_at,
            self.liveness.next_deadline(),
            self.offers_held_until,
            self.offers.next_expiry(),
            self.filter_expiry.first().map(|(at, _, _)| *at),
            self.failovers.next(),
            self.reclaim_kills.first().map(|(at, _)| *at),
            self.reclaim_check_at,
            self.census_at(),
            self.disconnected.next_lost(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Does whatever is due at `now`: loses agents whose token stayed away, gives up
    /// waiting for frameworks' tokens, rescinds expired offers, drops expired filters,
    /// tears down frameworks whose failover time is over, kills reclaimed tasks, looks for
    /// starvation, and runs the allocation.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.advance(now);
        self.liveness_due(now);
        for offer_id in self.offers.expired(now) {
            self.withdraw_offer(&offer_id, true);
        }
        self.expire_filters(now);
        for id in self.failovers.take_due(now) {
            self.teardown(&id);
        }
        self.reclaim_kills_due(now);
        self.unreachable_lost_due(now);
        if self.reclaim_check_at.is_some_and(|t| t <= now) {
            self.reclaim_check(now);
        }
        self.end_hold_if_due(now);
        self.announce_census_if_due(now);
        if self.allocation_at.is_some_and(|t| t <= now) && !self.offers_held() {
            self.allocate(now);
        }
        self.debug_check();
    }

    fn expire_filters(&mut self, now: Millis) {
        while let Some((until, fw, agent)) = self.filter_expiry.first().cloned() {
            if until > now {
                break;
            }
            self.filter_expiry
                .remove(&(until, fw.clone(), agent.clone()));
            if let Some(slot) = self.book.framework_mut(&fw)
                && let Some(list) = slot.filters.get_mut(&agent)
            {
                list.retain(|f| f.until > now);
                if list.is_empty() {
                    slot.filters.remove(&agent);
                }
            }
            self.want_allocation_of(&agent);
        }
    }

    /// One allocation: asks the allocator about the agents that need it, checks its
    /// decisions, makes the offers and sends them, grouped per framework.
    fn allocate(&mut self, now: Millis) {
        self.allocation_at = None;
        // Whatever called for an allocation may also have left someone below its share.
        if let Some(reclaim) = &self.config.reclaim
            && self.reclaim_check_at.is_none()
        {
            self.reclaim_check_at = Some(now.plus_ms(reclaim.check_interval_ms.max(1)));
        }
        let candidates: Vec<AgentId> = if std::mem::take(&mut self.allocation_all) {
            self.allocation_agents.clear();
            self.book
                .snapshot()
                .agents
                .iter()
                .filter(|(id, s)| !s.free.is_empty() && self.offerable(id))
                .map(|(id, _)| id.clone())
                .collect()
        } else {
            let pending = std::mem::take(&mut self.allocation_agents);
            pending
                .into_iter()
                .filter(|id| {
                    self.offerable(id)
                        && self
                            .book
                            .snapshot()
                            .agents
                            .get(id)
                            .is_some_and(|s| !s.free.is_empty())
                })
                .collect()
        };
        if candidates.is_empty() || self.book.snapshot().frameworks.is_empty() {
            return;
        }
        let decisions = self.allocator.allocate(self.book.pass_at(now), &candidates);
        self.book.changes_seen();
        let mut made: BTreeMap<FrameworkId, Vec<Offer>> = BTreeMap::new();
        for d in decisions {
            // The allocator counted this offer against the framework: resync it next time.
            self.book.note_framework_changed(&d.framework_id);
            let snapshot = self.book.snapshot();
            let allowed = match (
                snapshot.frameworks.get(&d.framework_id),
                snapshot.agents.get(&d.agent_id),
            ) {
                (Some(fw), Some(agent)) => may_offer(fw, &d.agent_id, agent, now),
                _ => false,
            };
            if !allowed {
                self.decisions_refused += 1;
                tracing::warn!(allocator = self.allocator.name(), agent = %d.agent_id, framework = %d.framework_id, "allocator decision refused");
                continue;
            }
            if let Some(offer) = self.make_offer(&d.agent_id, &d.framework_id) {
                made.entry(d.framework_id).or_default().push(offer);
            }
        }
        let per_event = self.config.offers_per_event_max.max(1);
        for (framework_id, offers) in made {
            for chunk in offers.chunks(per_event) {
                self.send(
                    &framework_id,
                    Event::Offers {
                        offers: chunk.to_vec(),
                    },
                );
            }
        }
    }
}
