//! Agent attributes: facts used for placement (`arch=aarch64`, `has=camera`).
//!
//! A key may hold several values (`has=camera` and `has=gpu` on one agent). In JSON a
//! key with one value is a string and a key with several is an array.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::Deserializer;
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attributes(pub BTreeMap<String, BTreeSet<String>>);

impl Attributes {
    pub fn new() -> Attributes {
        Attributes::default()
    }

    pub fn with(mut self, key: &str, value: &str) -> Attributes {
        self.insert(key, value);
        self
    }

    pub fn insert(&mut self, key: &str, value: &str) {
        self.0
            .entry(key.to_owned())
            .or_default()
            .insert(value.to_owned());
    }

    /// Replaces every value of `key` with `value`.
    pub fn set(&mut self, key: &str, value: &str) {
        self.0
            .insert(key.to_owned(), BTreeSet::from([value.to_owned()]));
    }

    pub fn has(&self, key: &str, value: &str) -> bool {
        self.0.get(key).is_some_and(|v| v.contains(value))
    }

    /// The single (first) value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .and_then(|v| v.iter().next())
            .map(String::as_str)
    }

    /// True when every `(key, value)` constraint is among our attributes.
    pub fn satisfies(&self, constraints: &[Constraint]) -> bool {
        constraints.iter().all(|c| self.has(&c.key, &c.value))
    }
}

/// A required attribute, written `key=value` on the command line.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Constraint {
    pub key: String,
    pub value: String,
}

impl Constraint {
    /// Parses `key=value`; both sides must be non-empty.
    pub fn parse(s: &str) -> Result<Constraint, ConstraintError> {
        match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => Ok(Constraint {
                key: k.trim().to_owned(),
                value: v.trim().to_owned(),
            }),
            _ => Err(ConstraintError(s.to_owned())),
        }
    }
}

/// A constraint that is not `key=value`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("constraint {0:?} is not of the form key=value")]
pub struct ConstraintError(pub String);

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(BTreeSet<String>),
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !serializer.is_human_readable() {
            return self.0.serialize(serializer);
        }
        let view: BTreeMap<&String, OneOrMany> = self
            .0
            .iter()
            .map(|(k, vs)| match vs.len() {
                1 => (
                    k,
                    OneOrMany::One(vs.iter().next().cloned().unwrap_or_default()),
                ),
                _ => (k, OneOrMany::Many(vs.clone())),
            })
            .collect();
        view.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Attributes, D::Error> {
        if !deserializer.is_human_readable() {
            return BTreeMap::deserialize(deserializer).map(Attributes);
        }
        let view = BTreeMap::<String, OneOrMany>::deserialize(deserializer)?;
        let map = view
            .into_iter()
            .map(|(k, v)| match v {
                OneOrMany::One(s) => (k, BTreeSet::from([s])),
                OneOrMany::Many(set) => (k, set),
            })
            .collect();
        Ok(Attributes(map))
    }
}
