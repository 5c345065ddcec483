//! Builders for the zenoh key layout of `shared/BRIEF.md`. Only this module spells keys.
//!
//! | key | kind |
//! |---|---|
//! | `wasmos/<cluster>/agents/<agent_id>/advert` | put, agent → master |
//! | `wasmos/<cluster>/agents/<agent_id>/alive` | liveliness token of an agent |
//! | `wasmos/<cluster>/agents/<agent_id>/cmd` | queryable, master → agent |
//! | `wasmos/<cluster>/agents/<agent_id>/status` | put, agent → master |
//! | `wasmos/<cluster>/agents/<agent_id>/leave` | put, agent → master: it shuts down (payload: its id) |
//! | `wasmos/<cluster>/master/alive` | liveliness token of the leading master |
//! | `wasmos/<cluster>/master/calls` | queryable, framework → master |
//! | `wasmos/<cluster>/master/upload` | queryable, client → master module store (see [`crate::admin`]) |
//! | `wasmos/<cluster>/master/admin` | queryable, tool → master: the operator protocol (see [`crate::operator`]) |
//! | `wasmos/<cluster>/master/frameworks/hosted` | queryable, tool → master: hosted schedulers |
//! | `wasmos/<cluster>/agents/<agent_id>/logs` | queryable, tool → agent: output of ended tasks |
//! | `wasmos/<cluster>/frameworks/<framework_id>/events` | put, master → framework |
//! | `wasmos/<cluster>/frameworks/<framework_id>/alive` | liveliness token of a native framework |
//! | `wasmos/<cluster>/modules/<sha256>` | queryable, module store |

use thiserror::Error;

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
    pub fn master_calls(&self) -> String {
        format!("{}/master/calls", self.prefix)
    }
    /// Uploads into the master's module store; apart from `modules/*` so that a query
    /// for a module never reaches the upload queryable.
    pub fn master_upload(&self) -> String {
        format!("{}/master/upload", self.prefix)
    }
    /// Queryable of the master for operator tools: [`crate::operator::OperatorRequest`].
    pub fn master_admin(&self) -> String {
        format!("{}/master/admin", self.prefix)
    }
    /// Queryable of the master for frameworks whose scheduler is a module the master runs
    /// (see [`crate::operator::HostedRequest`], also asked on [`Keys::master_admin`]).
    pub fn master_hosted(&self) -> String {
        format!("{}/master/frameworks/hosted", self.prefix)
    }
    pub fn framework_events(&self, framework_id: &str) -> String {
        format!("{}/frameworks/{framework_id}/events", self.prefix)
    }
    pub fn framework_alive(&self, framework_id: &str) -> String {
        format!("{}/frameworks/{framework_id}/alive", self.prefix)
    }
    pub fn all_framework_alive(&self) -> String {
        self.framework_alive("*")
    }
    pub fn module(&self, sha256: &str) -> String {
        format!("{}/modules/{sha256}", self.prefix)
    }
    pub fn all_modules(&self) -> String {
        self.module("*")
    }

    /// The `<id>` of a concrete key `…/agents/<id>/…` or `…/frameworks/<id>/…`.
    pub fn id_in<'k>(&self, key: &'k str) -> Option<&'k str> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let mut parts = rest.split('/');
        match parts.next()? {
            "agents" | "frameworks" | "modules" => parts.next(),
            _ => None,
        }
    }
}

impl Default for Keys {
    fn default() -> Keys {
        Keys {
            prefix: format!("wasmos/{DEFAULT_CLUSTER}"),
        }
    }
}
