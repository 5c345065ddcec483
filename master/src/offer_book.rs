//! Outstanding offers: by id, by framework, by agent, and by expiry time.

use std::collections::{BTreeMap, BTreeSet};

use proto::{AgentId, FrameworkId, Offer, OfferId};

use crate::time::Millis;

/// An offer sent and not yet accepted, declined, rescinded or expired.
#[derive(Clone, Debug, PartialEq)]
pub struct Outstanding {
    pub offer: Offer,
    pub made_at: Millis,
    /// When it is rescinded if still outstanding; `None` never.
    pub expires_at: Option<Millis>,
}

#[derive(Clone, Debug, Default)]
pub struct OfferBook {
    offers: BTreeMap<OfferId, Outstanding>,
    by_framework: BTreeMap<FrameworkId, BTreeSet<OfferId>>,
    by_agent: BTreeMap<AgentId, BTreeSet<OfferId>>,
    expiry: BTreeSet<(Millis, OfferId)>,
}

impl OfferBook {
    pub fn len(&self) -> usize {
        self.offers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }

    pub fn get(&self, id: &OfferId) -> Option<&Outstanding> {
        self.offers.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Outstanding> {
        self.offers.values()
    }

    /// Records a new offer; offer ids are never reused, so the id must be new.
    pub fn insert(&mut self, outstanding: Outstanding) {
        let id = outstanding.offer.offer_id.clone();
        debug_assert!(!self.offers.contains_key(&id), "offer {id} made twice");
        self.by_framework
            .entry(outstanding.offer.framework_id.clone())
            .or_default()
            .insert(id.clone());
        self.by_agent
            .entry(outstanding.offer.agent_id.clone())
            .or_default()
            .insert(id.clone());
        if let Some(at) = outstanding.expires_at {
            self.expiry.insert((at, id.clone()));
        }
        self.offers.insert(id, outstanding);
    }

    /// Takes the offer out of the book.
    pub fn remove(&mut self, id: &OfferId) -> Option<Outstanding> {
        let outstanding = self.offers.remove(id)?;
        remove_from(&mut self.by_framework, &outstanding.offer.framework_id, id);
        remove_from(&mut self.by_agent, &outstanding.offer.agent_id, id);
        if let Some(at) = outstanding.expires_at {
            self.expiry.remove(&(at, id.clone()));
        }
        Some(outstanding)
    }

    pub fn of_framework(&self, id: &FrameworkId) -> Vec<OfferId> {
        self.by_framework
            .get(id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn of_agent(&self, id: &AgentId) -> Vec<OfferId> {
        self.by_agent
            .get(id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn next_expiry(&self) -> Option<Millis> {
        self.expiry.first().map(|(at, _)| *at)
    }

    /// Offers whose time is up at `now`.
    pub fn expired(&self, now: Millis) -> Vec<OfferId> {
        self.expiry
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| id.clone())
            .collect()
    }
}

fn remove_from<K: Ord>(index: &mut BTreeMap<K, BTreeSet<OfferId>>, key: &K, id: &OfferId) {
    if let Some(set) = index.get_mut(key) {
        set.remove(id);
        if set.is_empty() {
            index.remove(key);
        }
    }
}
