//! Agent attributes: facts used for placement (`arch=aarch64`, `has=camera`), and the
//! constraints on them that frameworks and jobs place by (`arch=aarch64`, `arch!=x86_64`).
//!
//! A key may hold several values (`has=camera` and `has=gpu` on one agent). In JSON a
//! key with one value is a string and a key with several is an array.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use litemap::LiteMap;

use serde::de::Deserializer;
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

/// Shared, not copied: an agent's attributes are held by its advert and by the master's
/// books. Changed in place through `Arc::make_mut` (as `insert` and `set` do), which
/// copies a map still shared first.
///
/// Sorted vectors, not B-trees: an agent has a few keys of one value each, and B-tree
/// nodes for those (about a kilobyte per agent) were a large part of the core's memory
/// per agent at fleet scale. The values of a key are sorted and distinct. Serialized as
/// a map of sets: the form, and the postcard bytes, of the B-tree maps they replaced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attributes(Arc<LiteMap<String, Vec<String>>>);

impl Attributes {
    pub fn new() -> Attributes {
        Attributes::default()
    }

    pub fn with(mut self, key: &str, value: &str) -> Attributes {
        self.insert(key, value);
        self
    }

    /// Adds `value` to the values of `key`.
    pub fn insert(&mut self, key: &str, value: &str) {
        let values = Arc::make_mut(&mut self.0)
            .entry(key.to_owned())
            .or_default();
        if let Err(at) = values.binary_search_by(|v| v.as_str().cmp(value)) {
            values.insert(at, value.to_owned());
        }
    }

    /// Replaces every value of `key` with `value`.
    pub fn set(&mut self, key: &str, value: &str) {
        Arc::make_mut(&mut self.0).insert(key.to_owned(), vec![value.to_owned()]);
    }

    /// Replaces every value of `key` with `values`.
    pub fn set_all(&mut self, key: &str, values: &[String]) {
        let mut values = values.to_vec();
        values.sort_unstable();
        values.dedup();
        Arc::make_mut(&mut self.0).insert(key.to_owned(), values);
    }

    pub fn has(&self, key: &str, value: &str) -> bool {
        self.values(key)
            .binary_search_by(|v| v.as_str().cmp(value))
            .is_ok()
    }

    /// The single (first) value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values(key).first().map(String::as_str)
    }

    /// The values of `key`, sorted; empty when it has none.
    pub fn values(&self, key: &str) -> &[String] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Every key with its values, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.0.iter().map(|(k, vs)| (k.as_str(), vs.as_slice()))
    }

    /// True when every constraint holds for our attributes.
    pub fn satisfies(&self, constraints: &[Constraint]) -> bool {
        constraints.iter().all(|c| c.holds_for(self))
    }
}

/// How a [`Constraint`] compares an agent's attribute with its value. In JSON `"="` or
/// `"!="`; absent means `"="` (constraints written before operators existed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConstraintOp {
    /// The attribute holds the value (`key=value` or `key==value`).
    #[default]
    #[serde(rename = "=")]
    Eq,
    /// The attribute does not hold the value (`key!=value`); an agent without the key
    /// satisfies it.
    #[serde(rename = "!=")]
    Ne,
}

/// A placement rule on one agent attribute, written `key=value`, `key==value` or
/// `key!=value` (see [`Constraint::parse`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Constraint {
    pub key: String,
    #[serde(default)]
    pub op: ConstraintOp,
    pub value: String,
}

/// What a constraint's key and value may hold besides ASCII letters and digits.
const CONSTRAINT_PUNCTUATION: &[u8] = b"_.:/-";

/// How constraints are written, for messages.
pub const CONSTRAINT_FORMS: &str = "write key=value (or key==value: the attribute holds the value), \
     key!=value (it does not), several joined by commas (arch=aarch64,has=camera); keys and \
     values of A-Z a-z 0-9 _ . : / -";

fn is_constraint_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || CONSTRAINT_PUNCTUATION.contains(&b)
}

impl Constraint {
    pub fn new(key: impl Into<String>, op: ConstraintOp, value: impl Into<String>) -> Constraint {
        Constraint {
            key: key.into(),
            op,
            value: value.into(),
        }
    }

    /// Parses one constraint: `key=value`, `key==value` or `key!=value`, key and value
    /// non-empty of `[A-Za-z0-9_.:/-]`, nothing else (no spaces).
    pub fn parse(s: &str) -> Result<Constraint, ConstraintError> {
        parse_one(s).map_err(|fault| ConstraintError {
            given: s.to_owned(),
            fault,
        })
    }

    /// Parses constraints joined by commas (`arch=aarch64,has=camera`), all of which must
    /// hold; refuses the whole list if one item is not a constraint or is empty.
    pub fn parse_list(s: &str) -> Result<Vec<Constraint>, ConstraintError> {
        if s.is_empty() {
            return Err(ConstraintError {
                given: s.to_owned(),
                fault: ConstraintFault::Empty,
            });
        }
        s.split(',')
            .map(|item| match item {
                "" => Err(ConstraintFault::EmptyItem),
                _ => parse_one(item),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|fault| ConstraintError {
                given: s.to_owned(),
                fault,
            })
    }

    /// Whether an agent with `attributes` satisfies this constraint.
    pub fn holds_for(&self, attributes: &Attributes) -> bool {
        let has = attributes.has(&self.key, &self.value);
        match self.op {
            ConstraintOp::Eq => has,
            ConstraintOp::Ne => !has,
        }
    }
}

/// One constraint: the key is the leading run of allowed bytes, the operator the run of
/// other bytes after it, the value the rest.
fn parse_one(s: &str) -> Result<Constraint, ConstraintFault> {
    if s.is_empty() {
        return Err(ConstraintFault::Empty);
    }
    let key_end = s.bytes().position(|b| !is_constraint_byte(b));
    let Some(key_end) = key_end else {
        return Err(ConstraintFault::NoOperator);
    };
    let op_end = s[key_end..]
        .bytes()
        .position(is_constraint_byte)
        .map_or(s.len(), |n| key_end + n);
    let (key, operator, value) = (&s[..key_end], &s[key_end..op_end], &s[op_end..]);
    let op = match operator {
        "=" | "==" => ConstraintOp::Eq,
        "!=" => ConstraintOp::Ne,
        _ => return Err(ConstraintFault::Operator(operator.to_owned())),
    };
    if key.is_empty() {
        return Err(ConstraintFault::EmptyKey);
    }
    if value.is_empty() {
        return Err(ConstraintFault::EmptyValue);
    }
    if let Some(c) = value
        .chars()
        .find(|c| !c.is_ascii() || !is_constraint_byte(*c as u8))
    {
        return Err(ConstraintFault::ValueChar(c));
    }
    Ok(Constraint::new(key, op, value))
}

impl std::fmt::Display for Constraint {
    /// The canonical form, which [`Constraint::parse`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            ConstraintOp::Eq => "=",
            ConstraintOp::Ne => "!=",
        };
        write!(f, "{}{op}{}", self.key, self.value)
    }
}

/// A constraint (or comma-separated list) that does not parse: what was given and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("constraint {given:?} is refused: {fault}; {CONSTRAINT_FORMS}")]
pub struct ConstraintError {
    pub given: String,
    pub fault: ConstraintFault,
}

/// Why a constraint does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintFault {
    #[error("it is empty")]
    Empty,
    #[error("it has an empty item (a comma at an end, or two in a row)")]
    EmptyItem,
    #[error("it has no operator")]
    NoOperator,
    #[error("{0:?} is not an operator")]
    Operator(String),
    #[error("the key is empty")]
    EmptyKey,
    #[error("the value is empty")]
    EmptyValue,
    #[error("{0:?} may not be in a value")]
    ValueChar(char),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(BTreeSet<String>),
}

impl From<BTreeMap<String, BTreeSet<String>>> for Attributes {
    fn from(map: BTreeMap<String, BTreeSet<String>>) -> Attributes {
        // Sorted and distinct already.
        let map = map
            .into_iter()
            .map(|(k, vs)| (k, vs.into_iter().collect()))
            .collect();
        Attributes(Arc::new(map))
    }
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !serializer.is_human_readable() {
            return serializer.collect_map(self.0.iter());
        }
        serializer.collect_map(self.0.iter().map(|(k, vs)| match vs.as_slice() {
            [one] => (k, OneOrMany::One(one.clone())),
            _ => (k, OneOrMany::Many(vs.iter().cloned().collect())),
        }))
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Attributes, D::Error> {
        if !deserializer.is_human_readable() {
            return BTreeMap::deserialize(deserializer).map(Attributes::from);
        }
        let view = BTreeMap::<String, OneOrMany>::deserialize(deserializer)?;
        let map = view
            .into_iter()
            .map(|(k, v)| match v {
                OneOrMany::One(s) => (k, BTreeSet::from([s])),
                OneOrMany::Many(set) => (k, set),
            })
            .collect::<BTreeMap<_, _>>();
        Ok(Attributes::from(map))
    }
}
