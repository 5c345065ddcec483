//! Deadlines by key: set, moved and removed in `O(log n)`, the earliest found in
//! `O(log n)`, so that nothing that waits on time is found by scanning every agent or
//! framework on each timeout.

use std::collections::{BTreeMap, BTreeSet};

use crate::time::Millis;

/// Deadlines by key; a key has at most one.
#[derive(Clone, Debug)]
pub struct Deadlines<K: Ord + Clone> {
    at: BTreeMap<K, Millis>,
    order: BTreeSet<(Millis, K)>,
}

impl<K: Ord + Clone> Default for Deadlines<K> {
    fn default() -> Self {
        Deadlines {
            at: BTreeMap::new(),
            order: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone> Deadlines<K> {
    pub fn set(&mut self, key: K, at: Millis) {
        self.remove(&key);
        self.order.insert((at, key.clone()));
        self.at.insert(key, at);
    }

    pub fn set_if_absent(&mut self, key: K, at: Millis) {
        if !self.at.contains_key(&key) {
            self.set(key, at);
        }
    }

    pub fn remove(&mut self, key: &K) {
        if let Some(at) = self.at.remove(key) {
            self.order.remove(&(at, key.clone()));
        }
    }

    pub fn contains(&self, key: &K) -> bool {
        self.at.contains_key(key)
    }

    pub fn next(&self) -> Option<Millis> {
        self.order.first().map(|(at, _)| *at)
    }

    /// Takes out every key whose deadline is not after `now`, earliest first.
    pub fn take_due(&mut self, now: Millis) -> Vec<K> {
        let mut due = Vec::new();
        while let Some((at, key)) = self.order.first().cloned() {
            if at > now {
                break;
            }
            self.remove(&key);
            due.push(key);
        }
        due
    }
}
