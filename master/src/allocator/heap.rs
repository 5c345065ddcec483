//! A binary min-heap whose entries know their place, for the sorter's two orders (roles,
//! and frameworks inside a role).
//!
//! Why not an ordered set: each offer raises one framework's key and its role's, and an
//! ordered set pays a removal and an insertion for each (node searches, element shifts,
//! sometimes a rebalance), which was about 40% of a full allocation pass. Here a raised
//! key sifts down in place, `O(log n)` moves in one array, and the first entry is a read.
//! Walking the entries in order (needed only when the first ones are refused) is lazy:
//! [`IndexedHeap::in_order`] yields the first `k` in `O(k log k)`.
//!
//! Each key names its entry ([`HeapKey::slot`]); the heap's positions are kept in a
//! table the caller owns, indexed by that slot, so that several heaps (one per role) can
//! share one table when a slot is in at most one of them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A key that names its entry: `slot` indexes the position table.
pub(super) trait HeapKey: Ord + Copy {
    fn slot(&self) -> usize;
}

/// Position table value for a slot in no heap.
pub(super) const ABSENT: u32 = u32::MAX;

/// Children per entry. Four (half the depth, more comparisons per level) measured 5%
/// slower on the 10,000 × 1,000 full pass, whose heaps hold 100 roles and 10 frameworks.
const ARITY: usize = 2;

#[derive(Clone, Debug)]
pub(super) struct IndexedHeap<K> {
    items: Vec<K>,
}

impl<K> Default for IndexedHeap<K> {
    fn default() -> Self {
        IndexedHeap { items: Vec::new() }
    }
}

impl<K: HeapKey> IndexedHeap<K> {
    pub fn first(&self) -> Option<&K> {
        self.items.first()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Puts `key` in, or moves it to its place if its slot is in already.
    pub fn set(&mut self, key: K, positions: &mut Vec<u32>) {
        let slot = key.slot();
        if positions.len() <= slot {
            positions.resize(slot + 1, ABSENT);
        }
        match positions[slot] {
            ABSENT => {
                self.items.push(key);
                let at = self.items.len() - 1;
                positions[slot] = at as u32;
                self.sift_up(at, positions);
            }
            at => {
                let at = at as usize;
                let old = std::mem::replace(&mut self.items[at], key);
                if key < old {
                    self.sift_up(at, positions);
                } else {
                    self.sift_down(at, positions);
                }
            }
        }
    }

    /// Takes the entry of `slot` out; its key, if it was in.
    pub fn remove(&mut self, slot: usize, positions: &mut [u32]) -> Option<K> {
        let at = *positions.get(slot).filter(|p| **p != ABSENT)? as usize;
        positions[slot] = ABSENT;
        let last = self.items.len() - 1;
        self.items.swap(at, last);
        let removed = self.items.pop();
        if at < last {
            positions[self.items[at].slot()] = at as u32;
            // The entry moved here came from a leaf: it may belong above or below.
            self.sift_up(at, positions);
            let at = positions[self.items[at].slot()] as usize;
            self.sift_down(at, positions);
        }
        removed
    }

    /// The entries in ascending order, computed as they are taken.
    pub fn in_order(&self) -> InOrder<'_, K> {
        InOrder {
            items: &self.items,
            state: Walk::Fresh,
        }
    }

    /// Moves the entry at `at` up to its place: the entries it passes move down one level
    /// each, and it is written once, where it stops.
    fn sift_up(&mut self, mut at: usize, positions: &mut [u32]) {
        let key = self.items[at];
        while at > 0 {
            let parent = (at - 1) / ARITY;
            if self.items[parent] <= key {
                break;
            }
            self.place(self.items[parent], at, positions);
            at = parent;
        }
        self.place(key, at, positions);
    }

    /// Moves the entry at `at` down to its place, as [`IndexedHeap::sift_up`] does up.
    fn sift_down(&mut self, mut at: usize, positions: &mut [u32]) {
        let key = self.items[at];
        let len = self.items.len();
        loop {
            let first = ARITY * at + 1;
            if first >= len {
                break;
            }
            let mut child = first;
            for c in first + 1..(first + ARITY).min(len) {
                if self.items[c] < self.items[child] {
                    child = c;
                }
            }
            if key <= self.items[child] {
                break;
            }
            self.place(self.items[child], at, positions);
            at = child;
        }
        self.place(key, at, positions);
    }

    fn place(&mut self, key: K, at: usize, positions: &mut [u32]) {
        self.items[at] = key;
        positions[key.slot()] = at as u32;
    }

    /// Checks the heap order and the position table against each other. For tests.
    #[cfg(test)]
    pub fn check(&self, positions: &[u32]) {
        for (at, key) in self.items.iter().enumerate() {
            assert_eq!(
                positions[key.slot()] as usize,
                at,
                "position of slot {}",
                key.slot()
            );
            if at > 0 {
                assert!(self.items[(at - 1) / ARITY] <= *key, "heap order at {at}");
            }
        }
    }
}

/// [`IndexedHeap::in_order`]: the first entry is a read; the frontier (entries whose
/// parents were taken) is built only if a second one is asked for, which a pass whose
/// first choice is taken never does.
pub(super) struct InOrder<'h, K> {
    items: &'h [K],
    state: Walk<K>,
}

enum Walk<K> {
    Fresh,
    FirstTaken,
    Frontier(BinaryHeap<Reverse<(K, usize)>>),
}

impl<K: HeapKey> Iterator for InOrder<'_, K> {
    type Item = K;

    fn next(&mut self) -> Option<K> {
        let items = self.items;
        match &mut self.state {
            Walk::Fresh => {
                self.state = Walk::FirstTaken;
                items.first().copied()
            }
            Walk::FirstTaken => {
                let mut frontier: BinaryHeap<_> = children(items, 0).collect();
                let next = frontier.pop().map(|Reverse((key, at))| {
                    frontier.extend(children(items, at));
                    key
                });
                self.state = Walk::Frontier(frontier);
                next
            }
            Walk::Frontier(frontier) => {
                let Reverse((key, at)) = frontier.pop()?;
                frontier.extend(children(items, at));
                Some(key)
            }
        }
    }
}

fn children<K: Copy>(items: &[K], at: usize) -> impl Iterator<Item = Reverse<(K, usize)>> + '_ {
    let first = ARITY * at + 1;
    (first..first + ARITY).filter_map(move |c| items.get(c).map(|k| Reverse((*k, c))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    struct Key(u64, usize);

    impl HeapKey for Key {
        fn slot(&self) -> usize {
            self.1
        }
    }

    proptest! {
        /// Whatever is set and removed, the heap holds what a sorted list would, in order,
        /// and knows where each entry is.
        #[test]
        fn the_heap_keeps_the_order_of_a_sorted_list(
            ops in proptest::collection::vec((0usize..24, 0u64..8, any::<bool>()), 0..200),
        ) {
            let mut heap = IndexedHeap::default();
            let mut positions = Vec::new();
            let mut model: Vec<Key> = Vec::new();
            for (slot, value, remove) in ops {
                model.retain(|k| k.1 != slot);
                if remove {
                    heap.remove(slot, &mut positions);
                } else {
                    heap.set(Key(value, slot), &mut positions);
                    model.push(Key(value, slot));
                }
                heap.check(&positions);
                model.sort();
                prop_assert_eq!(heap.first(), model.first());
                prop_assert_eq!(heap.len(), model.len());
            }
            prop_assert_eq!(heap.in_order().collect::<Vec<_>>(), model.clone());
            let some: Vec<Key> = heap.in_order().take(3).collect();
            prop_assert_eq!(&some[..], &model[..model.len().min(3)]);
        }
    }
}
