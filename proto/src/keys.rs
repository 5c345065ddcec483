//! Builders for the zenoh key layout of `shared/BRIEF.md`. Only this module spells keys.
//!
//! | key | kind |
//! |---|---|
//! | `wasmos/<cluster>/agents/<agent_id>/advert` | put, agent → master |
//! | `wasmos/<cluster>/agents/<agent_id>/alive` | liveliness token of an agent |
//! | `wasmos/<cluster>/agents/<agent_id>/cmd` | queryable, master → agent |
//! | `wasmos/<cluster>/agents/<agent_id>/status` | put, agent → master |
//! | `wasmos/<cluster>/agents/<agent_id>/leave` | put, agent → master: it shuts down (payload: its id) |
//! | `wasmos/<cluster>/agents/<agent_id>/metrics` | put, agent → master: usage of running tasks |
//! | `wasmos/<cluster>/agents/<agent_id>/logs` | queryable, master → agent: output of tasks |
//! | `wasmos/<cluster>/master/alive` | liveliness token of the leading master |
//! | `wasmos/<cluster>/master/census` | put, master → agents: [`crate::MasterCensus`] |
//! | `wasmos/<cluster>/master/calls/<principal>` | queryable, framework → master |
//! | `wasmos/<cluster>/master/upload/<principal>` | queryable, client → master module store (see [`crate::admin`]) |
//! | `wasmos/<cluster>/master/admin/<principal>` | queryable, tool → master: the operator protocol (see [`crate::operator`]) |
//! | `wasmos/<cluster>/frameworks/<owner>/<framework_id>/events` | put, master → framework |
//! | `wasmos/<cluster>/frameworks/<owner>/<framework_id>/alive` | liveliness token of a native framework |
//! | `wasmos/<cluster>/modules/<sha256>` | queryable, module store |
//!
//! `<principal>` is the caller's name: on a secure cluster zenoh's access control lets a
//! principal use only the keys with its own certificate's name there (and an agent only
//! `agents/<its name>/…`), so the master learns who calls from the key, never from a
//! field the caller fills in. On an insecure cluster it is [`crate::principal::ANONYMOUS`].

use thiserror::Error;

use crate::FrameworkId;

pub const DEFAULT_CLUSTER: &str = "default";
/// Longest id that may stand in one key chunk.
pub const KEY_CHUNK_BYTES_MAX: usize = 128;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("{what} {value:?} cannot be used in a key: {why}")]
pub struct KeyError {
    pub what: &'static str,
    pub value: String,
    pub why: &'static str,
}

/// Checks that `s` is one non-wildcard chunk of a key expression.
pub fn valid_chunk(what: &'static str, s: &str) -> Result<(), KeyError> {
    let err = |why| {
        Err(KeyError {
            what,
            value: s.to_owned(),
            why,
        })
    };
    if s.is_empty() {
        return err("it is empty");
    }
    if s.len() > KEY_CHUNK_BYTES_MAX {
        return err("it is longer than 128 bytes");
    }
    if s.bytes()
        .any(|b| matches!(b, b'/' | b'*' | b'$' | b'?' | b'#') || b.is_ascii_whitespace())
    {
        return err("it holds one of / * $ ? # or white space");
    }
    Ok(())
}

/// The keys of one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(cluster: &str) -> Result<Keys, KeyError> {
        valid_chunk("cluster name", cluster)?;
        Ok(Keys {
            prefix: format!("wasmos/{cluster}"),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn agent_advert(&self, agent_id: &str) -> String {
        format!("{}/agents/{agent_id}/advert", self.prefix)
    }
    pub fn agent_alive(&self, agent_id: &str) -> String {
        format!("{}/agents/{agent_id}/alive", self.prefix)
    }
    pub fn agent_cmd(&self, agent_id: &str) -> String {
        format!("{}/agents/{agent_id}/cmd", self.prefix)
    }
    pub fn agent_status(&self, agent_id: &str) -> String {
        format!("{}/agents/{agent_id}/status", self.prefix)
    }
    /// Put by an agent that shuts down, after its tasks' ends were acknowledged: the
    /// master counts it gone at once.
    pub fn agent_leave(&self, agent_id: &str) -> String {
        format!("{}/agents/{agent_id}/leave", self.prefix)
    }
    pub fn all_agent_leave(&self) -> String {
        self.agent_leave("*")
    }
    /// Queryable of an agent: the output of its ended tasks (see [`crate::admin`]).
    pub fn agent_logs(&self, agent_id: &str) -> String {
        format!("{}/agents/{agent_id}/logs", self.prefix)
    }
    pub fn all_agent_adverts(&self) -> String {
        self.agent_advert("*")
    }
    pub fn all_agent_alive(&self) -> String {
        self.agent_alive("*")
    }
    pub fn all_agent_status(&self) -> String {
        self.agent_status("*")
    }
    /// Put by an agent: what its tasks use ([`crate::TaskUsageReport`]).
    pub fn agent_metrics(&self, agent_id: &str) -> String {
        format!("{}/agents/{agent_id}/metrics", self.prefix)
    }
    pub fn all_agent_metrics(&self) -> String {
        self.agent_metrics("*")
    }
    pub fn master_alive(&self) -> String {
        format!("{}/master/alive", self.prefix)
    }
    /// Put by the master, subscribed by agents: [`crate::MasterCensus`].
    pub fn master_census(&self) -> String {
        format!("{}/master/census", self.prefix)
    }
    /// Framework calls of `principal`.
    pub fn master_calls(&self, principal: &str) -> String {
        format!("{}/master/calls/{principal}", self.prefix)
    }
    pub fn all_master_calls(&self) -> String {
        self.master_calls("*")
    }
    /// Uploads into the master's module store; apart from `modules/*` so that a query
    /// for a module never reaches the upload queryable.
    pub fn master_upload(&self, principal: &str) -> String {
        format!("{}/master/upload/{principal}", self.prefix)
    }
    pub fn all_master_upload(&self) -> String {
        self.master_upload("*")
    }
    /// Queryable of the master for operator tools: [`crate::operator::OperatorRequest`].
    pub fn master_admin(&self, principal: &str) -> String {
        format!("{}/master/admin/{principal}", self.prefix)
    }
    pub fn all_master_admin(&self) -> String {
        self.master_admin("*")
    }
    /// Everything of the frameworks of `principal`.
    pub fn principal_frameworks(&self, principal: &str) -> String {
        format!("{}/frameworks/{principal}/**", self.prefix)
    }
    /// Events of a framework, under its owner's name ([`crate::FrameworkId::owner`]).
    pub fn framework_events(&self, framework_id: &FrameworkId) -> String {
        let owner = framework_id.owner();
        format!("{}/frameworks/{owner}/{framework_id}/events", self.prefix)
    }
    pub fn framework_alive(&self, framework_id: &FrameworkId) -> String {
        let owner = framework_id.owner();
        format!("{}/frameworks/{owner}/{framework_id}/alive", self.prefix)
    }
    pub fn all_framework_alive(&self) -> String {
        format!("{}/frameworks/*/*/alive", self.prefix)
    }
    pub fn module(&self, sha256: &str) -> String {
        format!("{}/modules/{sha256}", self.prefix)
    }
    pub fn all_modules(&self) -> String {
        self.module("*")
    }

    /// The `<id>` of a concrete key `…/agents/<id>/…`, `…/modules/<id>` or
    /// `…/frameworks/<principal>/<id>/…`.
    pub fn id_in<'k>(&self, key: &'k str) -> Option<&'k str> {
        let mut parts = self.chunks(key)?;
        match parts.next()? {
            "agents" | "modules" => parts.next(),
            "frameworks" => parts.nth(1),
            _ => None,
        }
    }

    /// The `<principal>` of a concrete key `…/master/<door>/<principal>` or
    /// `…/frameworks/<principal>/…`.
    pub fn principal_in<'k>(&self, key: &'k str) -> Option<&'k str> {
        let mut parts = self.chunks(key)?;
        match parts.next()? {
            "master" => parts.nth(1),
            "frameworks" => parts.next(),
            _ => None,
        }
    }

    fn chunks<'k>(&self, key: &'k str) -> Option<std::str::Split<'k, char>> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        Some(rest.split('/'))
    }
}

impl Default for Keys {
    fn default() -> Keys {
        Keys {
            prefix: format!("wasmos/{DEFAULT_CLUSTER}"),
        }
    }
}
