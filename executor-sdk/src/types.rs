//! The guest's view of `proto` types. Field order and types mirror `proto` exactly, so the
//! postcard bytes are the same: a `heapless::Vec<T, N>` or a `&[T]` encodes like `Vec<T>`,
//! a `Vec<(K, V), N>` like a `BTreeMap<K, V>`, a `&str` like a `String`, and a scalar is
//! its `u64` count of thousandths (`proto::Scalar` on the wire).
//!
//! Strings borrow from the input buffer. Collections have fixed capacities (the `*_MAX`
//! constants below): an input that holds more is rejected as malformed, never truncated.

use heapless::Vec;
use serde::{Deserialize, Serialize};

use crate::wire::{Decode, skip_seq, skip_str, skip_varint, take_str, take_str_bytes, take_varint};

/// Scalar kinds (`cpus`, `mem`, ...) in one [`Resources`].
pub const SCALARS_MAX: usize = 16;
/// Range kinds (`ports`) in one [`Resources`].
pub const RANGE_KINDS_MAX: usize = 4;
/// Intervals in one range kind.
pub const INTERVALS_MAX: usize = 16;
/// Set kinds (`gpus`, `cameras`) in one [`Resources`].
pub const SET_KINDS_MAX: usize = 4;
/// Items in one set kind.
pub const SET_ITEMS_MAX: usize = 32;
/// Attribute keys of one agent.
pub const ATTRIBUTE_KEYS_MAX: usize = 16;
/// Values of one attribute key.
pub const ATTRIBUTE_VALUES_MAX: usize = 8;
/// Constraints of one framework.
pub const CONSTRAINTS_MAX: usize = 8;
/// Resource kinds in one [`Quantities`] (a resource vector's or the cluster's total).
pub const QUANTITY_KINDS_MAX: usize = 32;

/// Thousandths in one whole unit of a scalar (as `proto::resources::SCALAR_MILLIS_PER_UNIT`).
pub const SCALAR_MILLIS_PER_UNIT: u64 = 1000;

/// Amounts of each resource kind, in thousandths, sorted by kind name (as
/// `proto::Resources::quantities`).
pub type Quantities<'a> = Vec<(&'a str, u64), QUANTITY_KINDS_MAX>;

/// `proto::Resources`: scalars in thousandths, ranges as sorted merged inclusive intervals,
/// sets of item names. Maps are sorted by name, as `BTreeMap` sends them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources<'a> {
    #[serde(borrow)]
    pub scalars: Vec<(&'a str, u64), SCALARS_MAX>,
    #[serde(borrow)]
    pub ranges: Vec<(&'a str, Vec<(u64, u64), INTERVALS_MAX>), RANGE_KINDS_MAX>,
    #[serde(borrow)]
    pub sets: Vec<(&'a str, Vec<&'a str, SET_ITEMS_MAX>), SET_KINDS_MAX>,
}

impl<'a> Resources<'a> {
    /// Scalar `name` in thousandths (0 when absent).
    pub fn scalar(&self, name: &str) -> u64 {
        self.scalars
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(0, |(_, v)| *v)
    }

    /// Builder for guests: scalar `name` set to `millis` thousandths (kept sorted by name,
    /// zero removes it). Fails when [`SCALARS_MAX`] kinds are held already.
    pub fn with_scalar(
        mut self,
        name: &'a str,
        millis: u64,
    ) -> Result<Resources<'a>, crate::Error> {
        self.set_scalar(name, millis)?;
        Ok(self)
    }

    /// Sets scalar `name` to `millis` thousandths, kept sorted; zero removes it.
    pub fn set_scalar(&mut self, name: &'a str, millis: u64) -> Result<(), crate::Error> {
        match self.scalars.binary_search_by(|(k, _)| (*k).cmp(name)) {
            Ok(i) if millis == 0 => {
                self.scalars.remove(i);
            }
            Ok(i) => self.scalars[i].1 = millis,
            Err(_) if millis == 0 => {}
            Err(i) => self
                .scalars
                .insert(i, (name, millis))
                .map_err(|_| crate::Error::OutputFull)?,
        }
        Ok(())
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.scalars.iter().all(|(_, v)| *v == 0)
            && self.ranges.iter().all(|(_, r)| r.is_empty())
            && self.sets.iter().all(|(_, s)| s.is_empty())
    }

    /// `self` holds at least everything in `other` (as `proto::Resources::contains`).
    pub fn contains(&self, other: &Resources<'_>) -> bool {
        let scalars = other.scalars.iter().all(|(k, v)| self.scalar(k) >= *v);
        let ranges = other.ranges.iter().all(|(k, wanted)| {
            let mine = self
                .ranges
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, r)| r.as_slice())
                .unwrap_or(&[]);
            wanted
                .iter()
                .all(|&(s, e)| mine.iter().any(|&(a, b)| a <= s && e <= b))
        });
        let sets = other.sets.iter().all(|(k, wanted)| {
            let mine = self
                .sets
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, s)| s.as_slice())
                .unwrap_or(&[]);
            wanted.iter().all(|item| mine.contains(item))
        });
        scalars && ranges && sets
    }

    /// True when every scalar of `other` fits in ours (ranges and sets ignored): what a
    /// scheduler packing tasks into an offer checks.
    pub fn fits_scalars(&self, other: &Resources<'_>) -> bool {
        other.scalars.iter().all(|(k, v)| self.scalar(k) >= *v)
    }

    /// Subtracts the scalars of `other`, never below zero.
    pub fn subtract_scalars(&mut self, other: &Resources<'_>) {
        for (k, v) in other.scalars.iter() {
            if let Some(slot) = self.scalars.iter_mut().find(|(n, _)| n == k) {
                slot.1 = slot.1.saturating_sub(*v);
            }
        }
        self.scalars.retain(|(_, v)| *v > 0);
    }

    /// Amount of each kind in thousandths: scalars as they are, ranges and sets by how many
    /// items they hold; zero kinds dropped (as `proto::Resources::quantities`).
    pub fn quantities(&self) -> Quantities<'a> {
        let mut q = Quantities::new();
        let count = |r: &[(u64, u64)]| {
            r.iter()
                .fold(0u64, |n, (s, e)| n.saturating_add(e - s).saturating_add(1))
        };
        let kinds = self.scalars.iter().map(|(k, v)| (*k, *v));
        let kinds = kinds.chain(
            self.ranges
                .iter()
                .map(|(k, r)| (*k, count(r).saturating_mul(SCALAR_MILLIS_PER_UNIT))),
        );
        let kinds = kinds.chain(
            self.sets
                .iter()
                .map(|(k, s)| (*k, (s.len() as u64).saturating_mul(SCALAR_MILLIS_PER_UNIT))),
        );
        for (k, v) in kinds {
            // A kind named in two maps keeps the later value, as proto's BTreeMap insert does.
            match q.binary_search_by(|(n, _)| (*n).cmp(k)) {
                Ok(i) => q[i].1 = v,
                Err(i) => {
                    // Cannot overflow: at most SCALARS_MAX + RANGE_KINDS_MAX + SET_KINDS_MAX kinds.
                    let _ = q.insert(i, (k, v));
                }
            }
        }
        q.retain(|(_, v)| *v > 0);
        q
    }
}

/// Adds `more` into the running quantities `into` (saturating). Fails when the result would
/// hold more than [`QUANTITY_KINDS_MAX`] kinds.
pub fn add_quantities<'a>(
    into: &mut Quantities<'a>,
    more: &Quantities<'a>,
) -> Result<(), crate::Error> {
    for (k, v) in more.iter() {
        match into.binary_search_by(|(n, _)| (*n).cmp(k)) {
            Ok(i) => into[i].1 = into[i].1.saturating_add(*v),
            Err(i) => into
                .insert(i, (k, *v))
                .map_err(|_| crate::Error::Malformed)?,
        }
    }
    Ok(())
}

/// Subtracts `less` from `from`, never below zero, dropping kinds that reach zero.
pub fn subtract_quantities(from: &mut Quantities<'_>, less: &Quantities<'_>) {
    for (k, v) in less.iter() {
        if let Some(slot) = from.iter_mut().find(|(n, _)| n == k) {
            slot.1 = slot.1.saturating_sub(*v);
        }
    }
    from.retain(|(_, v)| *v > 0);
}

/// DRF's dominant share: the largest `allocated / total` over kinds present in `total`
/// with a non-zero amount; kinds absent from `total` are ignored (as
/// `proto::resources::dominant_share_of`, with the same floating-point operations).
pub fn dominant_share(allocated: &Quantities<'_>, total: &Quantities<'_>) -> f64 {
    allocated
        .iter()
        .filter_map(|(k, a)| {
            let (_, t) = total.iter().find(|(n, _)| n == k)?;
            (*t > 0).then(|| *a as f64 / *t as f64)
        })
        .fold(0.0, f64::max)
}

/// `proto::Attributes`: key → sorted values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes<'a>(
    #[serde(borrow)] pub Vec<(&'a str, Vec<&'a str, ATTRIBUTE_VALUES_MAX>), ATTRIBUTE_KEYS_MAX>,
);

impl Attributes<'_> {
    pub fn has(&self, key: &str, value: &str) -> bool {
        self.0
            .iter()
            .any(|(k, vs)| *k == key && vs.contains(&value))
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, vs)| vs.first().copied())
    }

    /// True when every constraint holds for our attributes.
    pub fn satisfies(&self, constraints: &[Constraint<'_>]) -> bool {
        constraints.iter().all(|c| c.holds_for(self))
    }
}

/// `proto::ConstraintOp`, in the same order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConstraintOp {
    /// The attribute holds the value.
    #[default]
    Eq,
    /// The attribute does not hold the value (an agent without the key satisfies it).
    Ne,
}

/// Variants of [`ConstraintOp`] on the wire.
const CONSTRAINT_OPS: u64 = 2;

/// `proto::Constraint`: a rule on one agent attribute, `key=value` or `key!=value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint<'a> {
    pub key: &'a str,
    pub op: ConstraintOp,
    pub value: &'a str,
}

impl<'a> Constraint<'a> {
    /// Whether an agent with `attributes` satisfies this constraint (as
    /// `proto::Constraint::holds_for`).
    pub fn holds_for(&self, attributes: &Attributes<'_>) -> bool {
        let has = attributes.has(self.key, self.value);
        match self.op {
            ConstraintOp::Eq => has,
            ConstraintOp::Ne => !has,
        }
    }

    /// Parses one constraint as `proto::Constraint::parse` does: `key=value`,
    /// `key==value` or `key!=value`, key and value non-empty of `[A-Za-z0-9_.:/-]`.
    /// Anything else is [`crate::Error::Malformed`].
    pub fn parse(s: &'a str) -> Result<Constraint<'a>, crate::Error> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_.:/-".contains(&b);
        let key_end = s
            .bytes()
            .position(|b| !allowed(b))
            .ok_or(crate::Error::Malformed)?;
        let op_end = s.as_bytes()[key_end..]
            .iter()
            .position(|b| allowed(*b))
            .map_or(s.len(), |n| key_end + n);
        let op = match &s.as_bytes()[key_end..op_end] {
            b"=" | b"==" => ConstraintOp::Eq,
            b"!=" => ConstraintOp::Ne,
            _ => return Err(crate::Error::Malformed),
        };
        // The key and the operator are ASCII, so both ends are on character boundaries.
        let (key, value) = (&s[..key_end], &s[op_end..]);
        if key.is_empty() || value.is_empty() || !value.bytes().all(allowed) {
            return Err(crate::Error::Malformed);
        }
        Ok(Constraint { key, op, value })
    }
}

/// Whether encoded `Attributes` satisfy `constraint`, read in place (as
/// [`Constraint::holds_for`]).
pub fn attributes_satisfy(input: &[u8], constraint: &Constraint<'_>) -> Result<bool, crate::Error> {
    let has = attributes_have(input, constraint.key, constraint.value)?;
    Ok(match constraint.op {
        ConstraintOp::Eq => has,
        ConstraintOp::Ne => !has,
    })
}

/// Skips a `Constraint` exactly as decoding it checks it.
pub fn skip_constraint(input: &[u8]) -> Result<&[u8], crate::Error> {
    let (op, rest) = take_varint(skip_str(input)?)?;
    if op >= CONSTRAINT_OPS {
        return Err(crate::Error::Malformed);
    }
    skip_str(rest)
}

/// `proto::Offer`: resources of one agent for one framework.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offer<'a> {
    pub offer_id: &'a str,
    pub framework_id: &'a str,
    pub agent_id: &'a str,
    pub hostname: &'a str,
    #[serde(borrow)]
    pub attributes: Attributes<'a>,
    #[serde(borrow)]
    pub resources: Resources<'a>,
}

/// `proto::Filters`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    pub refuse_seconds: f64,
}

impl Default for Filters {
    /// Mesos' default, as proto's: five seconds.
    fn default() -> Filters {
        Filters {
            refuse_seconds: 5.0,
        }
    }
}

/// `proto::TaskState`, in the same order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaskState {
    Staging,
    Starting,
    Running,
    Finished,
    Failed,
    Killed,
    Lost,
    Error,
    /// Never reported to a scheduler; here so the numbers after it match.
    Pending,
    /// Its agent was lost; it may come back `Running` (proto's `DisconnectPolicy`).
    Unreachable,
}

impl TaskState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Finished
                | TaskState::Failed
                | TaskState::Killed
                | TaskState::Lost
                | TaskState::Error
        )
    }
}

/// `proto::TaskStatus`: one report on a task (`uuid` is `proto::StatusUuid`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus<'a> {
    pub task_id: &'a str,
    pub framework_id: &'a str,
    pub agent_id: &'a str,
    pub state: TaskState,
    pub exit_code: Option<i32>,
    pub reason: &'a str,
    pub uuid: u128,
    pub timestamp_ms: u64,
}

crate::decode_via_serde!(Constraint<'a>, TaskStatus<'a>, Filters, TaskState);

/// `Decode` with a byte-walking `skip` for the types that make up large messages.
macro_rules! decode_with_skip {
    ($ty:ty, $skip:path) => {
        impl<'a> Decode<'a> for $ty {
            fn take(input: &'a [u8]) -> Result<(Self, &'a [u8]), crate::Error> {
                crate::wire::take::<$ty>(input)
            }

            fn skip(input: &'a [u8]) -> Result<&'a [u8], crate::Error> {
                $skip(input)
            }
        }
    };
    ($ty:ty, $skip:path, $pass:path) => {
        impl<'a> Decode<'a> for $ty {
            fn take(input: &'a [u8]) -> Result<(Self, &'a [u8]), crate::Error> {
                crate::wire::take::<$ty>(input)
            }

            fn skip(input: &'a [u8]) -> Result<&'a [u8], crate::Error> {
                $skip(input)
            }

            fn pass(input: &'a [u8]) -> Result<&'a [u8], crate::Error> {
                $pass(input)
            }
        }
    };
}
pub(crate) use decode_with_skip;

decode_with_skip!(Resources<'a>, skip_resources);
decode_with_skip!(Attributes<'a>, skip_attributes);
decode_with_skip!(Offer<'a>, skip_offer);

/// Passes over a `Resources` already checked (see [`Decode::pass`]).
pub fn pass_resources(input: &[u8]) -> Result<&[u8], crate::Error> {
    let (count, mut rest) = take_varint(input)?;
    for _ in 0..count {
        rest = skip_varint(take_str_bytes(rest)?.1)?;
    }
    let (count, mut after) = take_varint(rest)?;
    for _ in 0..count {
        let (intervals, mut next) = take_varint(take_str_bytes(after)?.1)?;
        for _ in 0..intervals {
            next = skip_varint(skip_varint(next)?)?;
        }
        after = next;
    }
    let (count, mut rest) = take_varint(after)?;
    for _ in 0..count {
        let (items, mut next) = take_varint(take_str_bytes(rest)?.1)?;
        for _ in 0..items {
            next = take_str_bytes(next)?.1;
        }
        rest = next;
    }
    Ok(rest)
}

/// Skips a `Resources` exactly as decoding it checks it.
pub fn skip_resources(input: &[u8]) -> Result<&[u8], crate::Error> {
    let rest = skip_seq(input, SCALARS_MAX, |b| skip_varint(skip_str(b)?))?;
    let interval = |b| skip_varint(skip_varint(b)?);
    let rest = skip_seq(rest, RANGE_KINDS_MAX, |b| {
        skip_seq(skip_str(b)?, INTERVALS_MAX, interval)
    })?;
    skip_seq(rest, SET_KINDS_MAX, |b| {
        skip_seq(skip_str(b)?, SET_ITEMS_MAX, skip_str)
    })
}

/// Walks an encoded `Resources` without building it, calling `visit(kind, millis)` for
/// each kind in encoding order (scalars, then ranges, then sets) with the amount
/// [`Resources::quantities`] gives it (zero included); returns the rest of the input.
/// The fast path of an allocator that only needs amounts.
pub fn visit_quantities<'a>(
    input: &'a [u8],
    visit: impl FnMut(&'a str, u64),
) -> Result<&'a [u8], crate::Error> {
    walk_quantities(input, take_str, visit)
}

/// [`visit_quantities`] over a `Resources` already checked (see [`Decode::pass`]): kind
/// names as bytes, not checked for UTF-8 again. The hottest path of an allocator's walk.
pub fn visit_quantities_bytes<'a>(
    input: &'a [u8],
    visit: impl FnMut(&'a [u8], u64),
) -> Result<&'a [u8], crate::Error> {
    walk_quantities(input, take_str_bytes, visit)
}

/// Reads one string off the input: as `&str` (checked) or as bytes.
type TakeString<'a, K> = fn(&'a [u8]) -> Result<(K, &'a [u8]), crate::Error>;

/// The walk behind both visitors; `take` reads one string (a kind name or a set item).
fn walk_quantities<'a, K>(
    input: &'a [u8],
    take: TakeString<'a, K>,
    mut visit: impl FnMut(K, u64),
) -> Result<&'a [u8], crate::Error> {
    let (count, mut rest) = take_varint(input)?;
    for _ in 0..count {
        let (kind, after) = take(rest)?;
        let (millis, after) = take_varint(after)?;
        visit(kind, millis);
        rest = after;
    }
    let (count, mut rest) = take_varint(rest)?;
    for _ in 0..count {
        let (kind, after) = take(rest)?;
        let (intervals, mut after) = take_varint(after)?;
        let mut items = 0u64;
        for _ in 0..intervals {
            let (start, next) = take_varint(after)?;
            let (end, next) = take_varint(next)?;
            items = items
                .saturating_add(end.saturating_sub(start))
                .saturating_add(1);
            after = next;
        }
        visit(kind, items.saturating_mul(SCALAR_MILLIS_PER_UNIT));
        rest = after;
    }
    let (count, mut rest) = take_varint(rest)?;
    for _ in 0..count {
        let (kind, after) = take(rest)?;
        let (items, mut after) = take_varint(after)?;
        for _ in 0..items {
            after = take(after)?.1;
        }
        visit(kind, items.saturating_mul(SCALAR_MILLIS_PER_UNIT));
        rest = after;
    }
    Ok(rest)
}

/// Whether encoded `Attributes` (as `proto` sends them) hold `key=value`, read in place.
pub fn attributes_have(input: &[u8], key: &str, value: &str) -> Result<bool, crate::Error> {
    let (keys, mut rest) = take_varint(input)?;
    let (key, value) = (key.as_bytes(), value.as_bytes());
    for _ in 0..keys {
        let (k, after) = take_str_bytes(rest)?;
        let (values, mut after) = take_varint(after)?;
        let mut found = false;
        for _ in 0..values {
            let (v, next) = take_str_bytes(after)?;
            found |= k == key && v == value;
            after = next;
        }
        if found {
            return Ok(true);
        }
        rest = after;
    }
    Ok(false)
}

/// Passes over `Attributes` of an input already checked (without checking UTF-8 again):
/// the hot path of a walk over agents.
pub fn pass_attributes(input: &[u8]) -> Result<&[u8], crate::Error> {
    let (keys, mut rest) = take_varint(input)?;
    for _ in 0..keys {
        let (values, mut after) = take_varint(take_str_bytes(rest)?.1)?;
        for _ in 0..values {
            after = take_str_bytes(after)?.1;
        }
        rest = after;
    }
    Ok(rest)
}

/// Skips `Attributes` exactly as decoding them checks them.
pub fn skip_attributes(input: &[u8]) -> Result<&[u8], crate::Error> {
    skip_seq(input, ATTRIBUTE_KEYS_MAX, |b| {
        skip_seq(skip_str(b)?, ATTRIBUTE_VALUES_MAX, skip_str)
    })
}

fn skip_offer(input: &[u8]) -> Result<&[u8], crate::Error> {
    let mut rest = input;
    for _ in 0..4 {
        rest = skip_str(rest)?;
    }
    skip_resources(skip_attributes(rest)?)
}
