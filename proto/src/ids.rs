//! Identifiers. Each is a short string that is also a valid single chunk of a zenoh key
//! expression (see [`crate::keys::valid_chunk`]).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Ids are shared, not copied: one task's id sits in a dozen places (the master's task
/// registry, its agent's and framework's lists, the agent's held tasks, statuses), and at
/// fleet scale a `String` per place was a large part of the core's memory.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Arc<str>);

        impl $name {
            pub fn new(id: impl Into<Arc<str>>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.into())
            }
        }
    };
}

string_id!(
    /// An agent, stable across agent restarts (kept in the agent's work directory).
    AgentId
);
string_id!(
    /// A framework, assigned by the master at first subscription and never reused.
    ///
    /// Its owner is part of it: `<principal>.<rest>` belongs to `principal`; an id without
    /// a dot belongs to [`crate::principal::ANONYMOUS`]. Ownership so needs no record that
    /// a master restart could lose, and the framework's keys sit under its owner's name
    /// (`frameworks/<owner>/<id>/…`), where the owner's access control lets it listen.
    FrameworkId
);

impl AgentId {
    /// Stands for "no agent" in an update the master makes about a task it does not know
    /// (reconciliation's `lost`): empty, which no agent's id can be (not a key chunk). Such
    /// an update needs no acknowledgement: no agent waits for one.
    pub fn no_agent() -> AgentId {
        AgentId::new("")
    }

    pub fn is_no_agent(&self) -> bool {
        self.0.is_empty()
    }
}

/// Separates a framework id's owner from the rest; principal names never hold it.
pub const FRAMEWORK_OWNER_SEPARATOR: char = '.';

impl FrameworkId {
    /// A new id owned by `principal`.
    pub fn owned_by(principal: &str, rest: &str) -> FrameworkId {
        if principal == crate::principal::ANONYMOUS {
            FrameworkId::new(rest)
        } else {
            FrameworkId::new(format!("{principal}{FRAMEWORK_OWNER_SEPARATOR}{rest}"))
        }
    }

    /// The principal this framework belongs to.
    pub fn owner(&self) -> &str {
        match self.0.split_once(FRAMEWORK_OWNER_SEPARATOR) {
            Some((owner, _)) => owner,
            None => crate::principal::ANONYMOUS,
        }
    }
}
string_id!(
    /// A task, chosen by its framework; unique within the cluster and never reused.
    TaskId
);
string_id!(
    /// An offer, assigned by the master; never reused within one master's lifetime and
    /// prefixed with the master's incarnation so that restarts do not reuse them either.
    OfferId
);

/// Uuid of one status update; the framework acknowledges updates by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StatusUuid(pub u128);

impl fmt::Display for StatusUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Lower-case hex sha256 of a WASM module; modules are content-addressed by it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ModuleHash(pub String);

impl ModuleHash {
    /// Accepts exactly 64 lower-case hex digits.
    pub fn parse(s: &str) -> Option<ModuleHash> {
        let ok = s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| ModuleHash(s.to_owned()))
    }
}

impl fmt::Display for ModuleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
