//! Resource vectors and their arithmetic.
//!
//! A [`Resources`] value holds three kinds of resource, as Mesos does:
//! - **scalars** (`cpus`, `mem` in MiB, `disk` in MiB, `gpus`, ...) kept as whole
//!   thousandths ([`Scalar`]) so that arithmetic is exact: `a + b - b == a` always holds;
//! - **ranges** (`ports`) kept as sorted, merged, inclusive intervals;
//! - **sets** (device ids such as `gpu:0`, `camera:/dev/video0`).
//!
//! Ranges and sets are *named* resources: two adverts never hold the same port or
//! device of one agent, so adding overlapping ranges or sets is a programmer error
//! (asserted in debug builds). Cluster-wide totals use [`Resources::quantities`], which
//! counts ranges and sets instead of merging them.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, LazyLock};

use litemap::LiteMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::thin_store::ThinStore;

/// Resource kinds to a value, sorted by kind in one vector: a resource vector holds a few
/// kinds, and a `BTreeMap`'s first node (eleven slots) cost hundreds of bytes for each of
/// the millions of vectors a large fleet holds (one per task, several per agent).
pub type KindMap<V> = LiteMap<Kind, V, ThinStore<Kind, V>>;

/// The name of a resource kind (`cpus`, `ports`). Shared, not copied: every task's and
/// agent's vector names the same few kinds, and a string each was two allocations per
/// vector. The kinds every agent advertises are made once, so that even vectors decoded
/// apart share them.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "Arc<str>")]
pub struct Kind(Arc<str>);

/// Made once and shared by every vector naming them.
static WELL_KNOWN_KINDS: LazyLock<[Kind; 5]> =
    LazyLock::new(|| ["cpus", "mem", "disk", "gpus", "ports"].map(|k| Kind(Arc::from(k))));

impl Kind {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both name the kind through the same shared string: a pointer comparison,
    /// true for every two copies of a well-known kind. `false` says nothing (two equal
    /// names may be held apart); compare the names then.
    pub fn is_same(&self, other: &Kind) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl From<&str> for Kind {
    fn from(name: &str) -> Kind {
        WELL_KNOWN_KINDS
            .iter()
            .find(|k| k.as_str() == name)
            .cloned()
            .unwrap_or_else(|| Kind(Arc::from(name)))
    }
}

impl From<String> for Kind {
    fn from(name: String) -> Kind {
        Kind::from(name.as_str())
    }
}

impl From<Kind> for Arc<str> {
    fn from(kind: Kind) -> Arc<str> {
        kind.0
    }
}

impl Deref for Kind {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Kind {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Serializes a [`KindMap`] as a map in every format (`LiteMap` writes an empty one as a
/// JSON array).
fn kinds_as_map<V: Serialize, S: Serializer>(
    map: &KindMap<V>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(map.iter())
}

/// Thousandths in one whole unit of a scalar.
pub const SCALAR_MILLIS_PER_UNIT: u64 = 1000;

/// A non-negative scalar amount in thousandths of a unit (`0.5` cpus is `Scalar(500)`).
///
/// Serialized as a number of whole units (`0.5`) in human-readable formats (JSON), and as
/// the integer count of thousandths on the wire (postcard).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scalar(pub u64);

impl Scalar {
    pub const ZERO: Scalar = Scalar(0);

    /// Whole units, rounded to the nearest thousandth; `None` for negative, NaN or
    /// too-large values.
    pub fn from_units(units: f64) -> Option<Scalar> {
        if !units.is_finite() || units < 0.0 {
            return None;
        }
        let millis = (units * SCALAR_MILLIS_PER_UNIT as f64).round();
        if millis > (u64::MAX / 4) as f64 {
            return None;
        }
        Some(Scalar(millis as u64))
    }

    pub fn from_whole(units: u64) -> Scalar {
        Scalar(units.saturating_mul(SCALAR_MILLIS_PER_UNIT))
    }

    pub fn units(self) -> f64 {
        self.0 as f64 / SCALAR_MILLIS_PER_UNIT as f64
    }

    pub fn millis(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.units())
    }
}

impl Serialize for Scalar {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_f64(self.units())
        } else {
            serializer.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Scalar, D::Error> {
        if deserializer.is_human_readable() {
            let units = f64::deserialize(deserializer)?;
            Scalar::from_units(units).ok_or_else(|| {
                serde::de::Error::custom(format!("{units} is not a non-negative amount"))
            })
        } else {
            u64::deserialize(deserializer).map(Scalar)
        }
    }
}

/// Sorted, merged, inclusive `[start, end]` intervals: a set of integers such as ports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct RangeSet(Vec<(u64, u64)>);

impl<'de> Deserialize<'de> for RangeSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RangeSet, D::Error> {
        let raw = Vec::<(u64, u64)>::deserialize(deserializer)?;
        RangeSet::from_intervals(raw).map_err(serde::de::Error::custom)
    }
}

/// An interval that ends before it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("range [{start}, {end}] ends before it starts")]
pub struct RangeError {
    pub start: u64,
    pub end: u64,
}

impl RangeSet {
    /// Normalizes arbitrary intervals (any order, overlapping); rejects `start > end`.
    pub fn from_intervals(
        intervals: impl IntoIterator<Item = (u64, u64)>,
    ) -> Result<RangeSet, RangeError> {
        let mut raw: Vec<(u64, u64)> = intervals.into_iter().collect();
        if let Some((start, end)) = raw.iter().find(|(s, e)| s > e) {
            return Err(RangeError {
                start: *start,
                end: *end,
            });
        }
        raw.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(raw.len());
        for (start, end) in raw {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Ok(RangeSet(merged))
    }

    pub fn intervals(&self) -> &[(u64, u64)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many integers the set holds (saturating).
    pub fn count(&self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |n, (s, e)| n.saturating_add(e - s).saturating_add(1))
    }

    pub fn contains(&self, other: &RangeSet) -> bool {
        other
            .0
            .iter()
            .all(|&(s, e)| self.0.iter().any(|&(a, b)| a <= s && e <= b))
    }

    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.0
            .iter()
            .any(|&(a, b)| other.0.iter().any(|&(s, e)| s <= b && a <= e))
    }

    pub fn union(&self, other: &RangeSet) -> RangeSet {
        let all = self.0.iter().chain(other.0.iter()).copied();
        RangeSet::from_intervals(all).unwrap_or_default()
    }

    /// `self` without the integers of `other`.
    pub fn difference(&self, other: &RangeSet) -> RangeSet {
        let mut out = Vec::new();
        for &(mut start, end) in &self.0 {
            let mut open = true;
            for &(s, e) in &other.0 {
                if e < start || s > end {
                    continue;
                }
                if s > start {
                    out.push((start, s - 1));
                }
                if e >= end {
                    open = false;
                    break;
                }
                start = e + 1;
            }
            if open {
                out.push((start, end));
            }
        }
        RangeSet(out)
    }
}

/// A vector of resources of one agent (or of an offer, a task, a framework's allocation).
///
/// Every field is always serialized: postcard is not self-describing, so skipped fields
/// would break decoding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default, serialize_with = "kinds_as_map")]
    pub scalars: KindMap<Scalar>,
    #[serde(default, serialize_with = "kinds_as_map")]
    pub ranges: KindMap<RangeSet>,
    #[serde(default, serialize_with = "kinds_as_map")]
    pub sets: KindMap<BTreeSet<String>>,
}

impl Resources {
    pub fn new() -> Resources {
        Resources::default()
    }

    /// Builder: sets scalar `name` to `units` (values that are not a non-negative amount
    /// become zero).
    pub fn with_scalar(mut self, name: &str, units: f64) -> Resources {
        self.set_scalar(name, Scalar::from_units(units).unwrap_or(Scalar::ZERO));
        self
    }

    pub fn with_range(mut self, name: &str, start: u64, end: u64) -> Resources {
        let add = RangeSet::from_intervals([(start.min(end), start.max(end))]).unwrap_or_default();
        let merged = self.ranges.get(name).map_or(add.clone(), |r| r.union(&add));
        self.ranges.insert(Kind::from(name), merged);
        self
    }

    pub fn with_set_item(mut self, name: &str, item: &str) -> Resources {
        self.sets
            .entry(Kind::from(name))
            .or_default()
            .insert(item.to_owned());
        self
    }

    pub fn set_scalar(&mut self, name: &str, value: Scalar) {
        if value == Scalar::ZERO {
            self.scalars.remove(name);
        } else {
            self.scalars.insert(Kind::from(name), value);
        }
    }

    pub fn scalar(&self, name: &str) -> Scalar {
        self.scalars.get(name).copied().unwrap_or_default()
    }

    /// True when nothing is held; zero scalars and empty ranges or sets count as nothing.
    pub fn is_empty(&self) -> bool {
        self.scalars.values().all(|v| *v == Scalar::ZERO)
            && self.ranges.values().all(RangeSet::is_empty)
            && self.sets.values().all(BTreeSet::is_empty)
    }

    /// `self` holds at least everything in `other`. A partial order: reflexive,
    /// antisymmetric (on normalized values) and transitive.
    pub fn contains(&self, other: &Resources) -> bool {
        other.scalars.iter().all(|(k, v)| self.scalar(k) >= *v)
            && other.ranges.iter().all(|(k, r)| {
                r.is_empty() || self.ranges.get(k).is_some_and(|mine| mine.contains(r))
            })
            && other.sets.iter().all(|(k, s)| {
                s.is_empty() || self.sets.get(k).is_some_and(|mine| mine.is_superset(s))
            })
    }

    /// Adds `other` in place. Ranges and sets must be disjoint from ours (asserted in debug).
    pub fn add(&mut self, other: &Resources) {
        for (k, v) in &other.scalars {
            let sum = Scalar(self.scalar(k).0.saturating_add(v.0));
            self.set_scalar(k, sum);
        }
        for (k, r) in &other.ranges {
            let mine = self.ranges.entry(k.clone()).or_default();
            debug_assert!(!mine.overlaps(r), "adding overlapping ranges of {k}");
            *mine = mine.union(r);
        }
        for (k, s) in &other.sets {
            let mine = self.sets.entry(k.clone()).or_default();
            debug_assert!(mine.is_disjoint(s), "adding overlapping sets of {k}");
            mine.extend(s.iter().cloned());
        }
        self.normalize();
    }

    /// Subtracts `other` in place, never below zero: what `other` has beyond `self` is ignored.
    pub fn subtract_saturating(&mut self, other: &Resources) {
        for (k, v) in &other.scalars {
            let left = Scalar(self.scalar(k).0.saturating_sub(v.0));
            self.set_scalar(k, left);
        }
        for (k, r) in &other.ranges {
            if let Some(mine) = self.ranges.get_mut(k) {
                *mine = mine.difference(r);
            }
        }
        for (k, s) in &other.sets {
            if let Some(mine) = self.sets.get_mut(k) {
                mine.retain(|item| !s.contains(item));
            }
        }
        self.normalize();
    }

    /// `self - other` when `self` contains `other`, else `None`.
    #[must_use]
    pub fn checked_sub(&self, other: &Resources) -> Option<Resources> {
        if !self.contains(other) {
            return None;
        }
        let mut left = self.clone();
        left.subtract_saturating(other);
        Some(left)
    }

    #[must_use]
    pub fn plus(&self, other: &Resources) -> Resources {
        let mut sum = self.clone();
        sum.add(other);
        sum
    }

    /// Amount of each resource kind as thousandths: scalars as they are, ranges and sets
    /// by how many items they hold. Quantities of different agents add up to cluster totals.
    pub fn quantities(&self) -> BTreeMap<String, u64> {
        let mut q = BTreeMap::new();
        self.add_quantities_to(&mut q);
        q
    }

    /// [`Resources::quantities`] without building a map: kinds with a zero quantity are
    /// skipped. A name held as more than one kind counts once, as its set, else its range
    /// (as the guest SDK's quantities do).
    pub fn quantities_iter(&self) -> impl Iterator<Item = (&str, u64)> {
        let per_item = |n: u64| n.saturating_mul(SCALAR_MILLIS_PER_UNIT);
        let (ranges, sets) = (&self.ranges, &self.sets);
        let scalars = (self.scalars.iter())
            .filter(move |(k, _)| !ranges.contains_key(*k) && !sets.contains_key(*k))
            .map(|(k, v)| (k.as_str(), v.0));
        let ranges = (self.ranges.iter())
            .filter(move |(k, _)| !sets.contains_key(*k))
            .map(move |(k, r)| (k.as_str(), per_item(r.count())));
        let sets = (self.sets.iter()).map(move |(k, s)| (k.as_str(), per_item(s.len() as u64)));
        scalars.chain(ranges).chain(sets).filter(|(_, v)| *v > 0)
    }

    /// Adds this vector's quantities into a running total (as [`add_quantities`] does with
    /// [`Resources::quantities`], without the map in between).
    pub fn add_quantities_to(&self, into: &mut BTreeMap<String, u64>) {
        for (k, v) in self.quantities_iter() {
            match into.get_mut(k) {
                Some(slot) => *slot = slot.saturating_add(v),
                None => {
                    into.insert(k.to_owned(), v);
                }
            }
        }
    }

    /// Subtracts this vector's quantities from a running total, never below zero,
    /// dropping kinds that reach zero (as [`subtract_quantities`] does).
    pub fn subtract_quantities_from(&self, from: &mut BTreeMap<String, u64>) {
        let mut emptied = false;
        for (k, v) in self.quantities_iter() {
            if let Some(slot) = from.get_mut(k) {
                *slot = slot.saturating_sub(v);
                emptied |= *slot == 0;
            }
        }
        if emptied {
            from.retain(|_, v| *v > 0);
        }
    }

    /// The largest fraction of `total` this holds over all resource kinds (DRF's dominant
    /// share). Kinds absent from `total` are ignored; the result is in `[0, +inf)`.
    pub fn dominant_share(&self, total: &BTreeMap<String, u64>) -> f64 {
        dominant_share_of(&self.quantities(), total)
    }

    /// Drops zero scalars and empty ranges and sets, so equal resources compare equal.
    fn normalize(&mut self) {
        self.scalars.retain(|_, v| *v != Scalar::ZERO);
        self.ranges.retain(|_, r| !r.is_empty());
        self.sets.retain(|_, s| !s.is_empty());
    }
}

/// Dominant share of `allocated` quantities against cluster `total` quantities.
pub fn dominant_share_of(allocated: &BTreeMap<String, u64>, total: &BTreeMap<String, u64>) -> f64 {
    allocated
        .iter()
        .filter_map(|(k, a)| {
            let t = *total.get(k)?;
            (t > 0).then(|| *a as f64 / t as f64)
        })
        .fold(0.0, f64::max)
}

/// Adds quantities of one resource vector into a running total.
pub fn add_quantities(into: &mut BTreeMap<String, u64>, q: &BTreeMap<String, u64>) {
    for (k, v) in q {
        let slot = into.entry(k.clone()).or_default();
        *slot = slot.saturating_add(*v);
    }
}

/// Subtracts quantities, never below zero, dropping kinds that reach zero.
pub fn subtract_quantities(from: &mut BTreeMap<String, u64>, q: &BTreeMap<String, u64>) {
    for (k, v) in q {
        if let Some(slot) = from.get_mut(k) {
            *slot = slot.saturating_sub(*v);
        }
    }
    from.retain(|_, v| *v > 0);
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            let s = if first { "" } else { ", " };
            first = false;
            write!(f, "{s}")
        };
        for (k, v) in &self.scalars {
            sep(f)?;
            write!(f, "{k}:{v}")?;
        }
        for (k, r) in &self.ranges {
            sep(f)?;
            let parts: Vec<String> = r
                .intervals()
                .iter()
                .map(|(s, e)| format!("{s}-{e}"))
                .collect();
            write!(f, "{k}:[{}]", parts.join(","))?;
        }
        for (k, s) in &self.sets {
            sep(f)?;
            let items: Vec<&str> = s.iter().map(String::as_str).collect();
            write!(f, "{k}:{{{}}}", items.join(","))?;
        }
        if first {
            write!(f, "(none)")?;
        }
        Ok(())
    }
}
