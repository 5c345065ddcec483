//! Who is calling: a principal's name and role, as the transport proved them.
//!
//! Never a field a caller fills in: the master learns a principal from the zenoh key it was
//! allowed to use (`master/calls/<name>`, enforced by zenoh's access control from the
//! caller's certificate) or from the HTTP token it presented.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a principal may be. A certificate carries it as its organizational unit
/// (`wasmos-<role>`); an HTTP token is stored with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Master,
    Agent,
    Framework,
    /// Everything an operator may do, whatever the policy grants.
    Admin,
    /// Reads the cluster; submits and kills as the policy grants.
    Operator,
    /// Reads the cluster only.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Master,
        Role::Agent,
        Role::Framework,
        Role::Admin,
        Role::Operator,
        Role::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Agent => "agent",
            Role::Framework => "framework",
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this role may send operator requests at all (reads included).
    pub fn is_operator(self) -> bool {
        matches!(
            self,
            Role::Master | Role::Admin | Role::Operator | Role::Viewer
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A proven caller.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// The name every caller has on an insecure cluster, where nothing is proven.
pub const ANONYMOUS: &str = "anonymous";

impl Principal {
    pub fn new(name: &str, role: Role) -> Principal {
        Principal {
            name: name.to_owned(),
            role,
        }
    }

    /// The caller on a cluster without security: unproven, so allowed everything, as
    /// before security existed.
    pub fn anonymous() -> Principal {
        Principal::new(ANONYMOUS, Role::Admin)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.role)
    }
}
