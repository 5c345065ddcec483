//! [`ThinStore`]: the backing store of a [`crate::KindMap`], a sorted vector one pointer
//! wide.
//!
//! A resource vector is three such maps, most of them empty (ranges and sets) or of one or
//! two kinds, and a fleet holds millions of vectors (two per task, several per agent):
//! `Vec`'s three words each made a vector 72 bytes before any kind. A `ThinVec` keeps its
//! length and capacity in its allocation, and an empty one allocates nothing.
//!
//! Written here because litemap ships stores for `Vec` and slices only: this is its store
//! contract over thin-vec's vector, mostly a call each.

use std::cmp::Ordering;

use litemap::store::{
    Store, StoreBulkMut, StoreConstEmpty, StoreFromIterable, StoreFromIterator, StoreIntoIterator,
    StoreIterable, StoreIterableMut, StoreMut,
};
use thin_vec::ThinVec;

/// Entries made room for ahead of their arrival, at most: a decoder is told a map's length
/// by its input, and a hostile length must not become one huge allocation.
const RESERVE_MAX: usize = 16;

/// Key-value pairs sorted by key, as litemap keeps them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ThinStore<K, V>(ThinVec<(K, V)>);

impl<K, V> Default for ThinStore<K, V> {
    fn default() -> Self {
        ThinStore(ThinVec::new())
    }
}

fn pair<K, V>(entry: &(K, V)) -> (&K, &V) {
    (&entry.0, &entry.1)
}

fn pair_mut<K, V>(entry: &mut (K, V)) -> (&K, &mut V) {
    (&entry.0, &mut entry.1)
}

impl<K, V> StoreConstEmpty<K, V> for ThinStore<K, V> {
    const EMPTY: Self = ThinStore(ThinVec::new());
}

impl<K, V> Store<K, V> for ThinStore<K, V> {
    fn lm_len(&self) -> usize {
        self.0.len()
    }

    fn lm_get(&self, index: usize) -> Option<(&K, &V)> {
        self.0.get(index).map(pair)
    }

    fn lm_binary_search_by<F>(&self, mut cmp: F) -> Result<usize, usize>
    where
        F: FnMut(&K) -> Ordering,
    {
        self.0.binary_search_by(|(k, _)| cmp(k))
    }
}

impl<K, V> StoreMut<K, V> for ThinStore<K, V> {
    fn lm_with_capacity(capacity: usize) -> Self {
        ThinStore(ThinVec::with_capacity(capacity.min(RESERVE_MAX)))
    }

    fn lm_reserve(&mut self, additional: usize) {
        self.0.reserve(additional.min(RESERVE_MAX));
    }

    fn lm_get_mut(&mut self, index: usize) -> Option<(&K, &mut V)> {
        self.0.get_mut(index).map(pair_mut)
    }

    fn lm_push(&mut self, key: K, value: V) {
        self.0.push((key, value));
    }

    fn lm_insert(&mut self, index: usize, key: K, value: V) {
        self.0.insert(index, (key, value));
    }

    fn lm_remove(&mut self, index: usize) -> (K, V) {
        self.0.remove(index)
    }

    fn lm_clear(&mut self) {
        self.0.clear();
    }
}

impl<K: Ord, V> StoreBulkMut<K, V> for ThinStore<K, V> {
    fn lm_retain<F>(&mut self, mut predicate: F)
    where
        F: FnMut(&K, &V) -> bool,
    {
        self.0.retain(|(k, v)| predicate(k, v));
    }

    /// One at a time, a later value of a key replacing an earlier one: a map holds a few
    /// kinds, so sorting in bulk would gain nothing.
    fn lm_extend<I>(&mut self, other: I)
    where
        I: IntoIterator<Item = (K, V)>,
    {
        for (key, value) in other {
            match self.0.binary_search_by(|(k, _)| k.cmp(&key)) {
                Ok(at) => {
                    if let Some(entry) = self.0.get_mut(at) {
                        entry.1 = value;
                    }
                }
                Err(at) => self.0.insert(at, (key, value)),
            }
        }
    }
}

impl<K: Ord, V> StoreFromIterable<K, V> for ThinStore<K, V> {
    fn lm_sort_from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut store = ThinStore(ThinVec::new());
        store.lm_extend(iter);
        store
    }
}

impl<'a, K: 'a, V: 'a> StoreIterable<'a, K, V> for ThinStore<K, V> {
    type KeyValueIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&(K, V)) -> (&K, &V)>;

    fn lm_iter(&'a self) -> Self::KeyValueIter {
        self.0.iter().map(pair)
    }
}

impl<'a, K: 'a, V: 'a> StoreIterableMut<'a, K, V> for ThinStore<K, V> {
    type KeyValueIterMut =
        std::iter::Map<std::slice::IterMut<'a, (K, V)>, fn(&mut (K, V)) -> (&K, &mut V)>;

    fn lm_iter_mut(&'a mut self) -> Self::KeyValueIterMut {
        self.0.iter_mut().map(pair_mut)
    }
}

impl<K, V> StoreIntoIterator<K, V> for ThinStore<K, V> {
    type KeyValueIntoIter = thin_vec::IntoIter<(K, V)>;

    fn lm_into_iter(self) -> Self::KeyValueIntoIter {
        self.0.into_iter()
    }
}

impl<K, V> FromIterator<(K, V)> for ThinStore<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        ThinStore(iter.into_iter().collect())
    }
}

impl<K, V> StoreFromIterator<K, V> for ThinStore<K, V> {}

#[cfg(test)]
mod tests {
    use litemap::LiteMap;

    use super::ThinStore;

    type Map = LiteMap<u32, u64, ThinStore<u32, u64>>;

    #[test]
    fn keeps_keys_sorted_and_distinct_the_last_value_winning() {
        let mut m: Map = [(3, 30), (1, 10), (3, 31), (2, 20)].into_iter().collect();
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            [(&1, &10), (&2, &20), (&3, &31)]
        );
        assert_eq!(m.insert(0, 0), None);
        assert_eq!(m.remove(&2), Some(20));
        m.retain(|k, _| *k != 1);
        assert_eq!(m.iter().collect::<Vec<_>>(), [(&0, &0), (&3, &31)]);
        assert_eq!(std::mem::size_of::<Map>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn a_huge_declared_length_is_no_huge_allocation() {
        // postcard: a map declaring u32::MAX entries, then too few bytes for one.
        let frame = [0xff, 0xff, 0xff, 0xff, 0x0f, 1];
        assert!(postcard::from_bytes::<Map>(&frame).is_err());
    }
}
