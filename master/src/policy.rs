//! Authorization, Mesos-style: which principals may register frameworks under which
//! roles, run OCI containers (as root on the device: denied unless granted), submit work
//! and kill tasks. One file (`DIR/policy.toml`, format in `master/README.md`), read by the
//! daemon and asked here, so every refusal is decided in the core.
//!
//! Who the principal is comes from the transport ([`Principal`]); a framework's owner is
//! part of its id ([`proto::FrameworkId::owner`]), so ownership survives master restarts.

use std::collections::BTreeMap;

use proto::{Principal, Role};
use serde::Deserialize;

/// Principals listed in one policy file.
pub const POLICY_PRINCIPALS_MAX: usize = 10_000;

/// What a framework principal may do. Unlisted framework principals get the default.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameworkGrant {
    /// Roles it may subscribe under; `"*"` is any role.
    #[serde(default = "any_role")]
    pub roles: Vec<String>,
    /// May launch OCI containers.
    #[serde(default)]
    pub oci: bool,
}

impl Default for FrameworkGrant {
    fn default() -> FrameworkGrant {
        FrameworkGrant {
            roles: any_role(),
            oci: false,
        }
    }
}

fn any_role() -> Vec<String> {
    vec!["*".to_owned()]
}

/// What an operator principal (role `operator`) may do. Unlisted operators get the
/// default; `admin` principals may do everything, `viewer`s only read.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorGrant {
    /// May run jobs, add hosted frameworks and upload modules.
    #[serde(default = "yes")]
    pub submit: bool,
    /// May kill tasks and stop jobs.
    #[serde(default = "yes")]
    pub kill: bool,
    /// May submit OCI jobs.
    #[serde(default)]
    pub oci: bool,
}

impl Default for OperatorGrant {
    fn default() -> OperatorGrant {
        OperatorGrant {
            submit: true,
            kill: true,
            oci: false,
        }
    }
}

fn yes() -> bool {
    true
}

/// What an operator asks to do, for [`Policy::check_operator`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorAct {
    Read,
    Submit { oci: bool },
    Kill,
}

/// The authorization policy of a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Off on an insecure cluster: every caller is anonymous and allowed everything.
    #[serde(skip, default = "yes")]
    pub enforced: bool,
    /// Grants of framework principals not listed in `framework`.
    #[serde(default)]
    pub framework_default: FrameworkGrant,
    #[serde(default)]
    pub framework: BTreeMap<String, FrameworkGrant>,
    /// Grants of operator principals not listed in `operator`.
    #[serde(default)]
    pub operator_default: OperatorGrant,
    #[serde(default)]
    pub operator: BTreeMap<String, OperatorGrant>,
}

/// Why the policy refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{principal} may not register frameworks (only framework principals may)")]
    NotAFramework { principal: Principal },
    #[error("{principal} may not register under role {role:?} (policy: roles {allowed:?})")]
    Role {
        principal: Principal,
        role: String,
        allowed: Vec<String>,
    },
    #[error(
        "{principal} may not run OCI containers (they run as root; grant `oci = true` in the policy)"
    )]
    Oci { principal: Principal },
    #[error("framework {framework} belongs to {owner}, not to {principal}")]
    NotOwner {
        principal: Principal,
        framework: String,
        owner: String,
    },
    #[error("{principal} may not {act} (policy)")]
    Operator {
        principal: Principal,
        act: &'static str,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy: {0}")]
    Parse(String),
    #[error("policy lists {0} principals, more than {POLICY_PRINCIPALS_MAX}")]
    TooLarge(usize),
}

impl Policy {
    /// An insecure cluster: nothing is checked.
    pub fn open() -> Policy {
        Policy {
            enforced: false,
            ..Policy::secure_default()
        }
    }

    /// A secure cluster without a policy file: the defaults of the grants.
    pub fn secure_default() -> Policy {
        Policy {
            enforced: true,
            framework_default: FrameworkGrant::default(),
            framework: BTreeMap::new(),
            operator_default: OperatorGrant::default(),
            operator: BTreeMap::new(),
        }
    }

    /// Parses a policy file (TOML).
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let policy: Policy = toml::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        let count = policy.framework.len() + policy.operator.len();
        if count > POLICY_PRINCIPALS_MAX {
            return Err(PolicyError::TooLarge(count));
        }
        Ok(policy)
    }

    /// May `principal` own a framework subscribed under `role`?
    pub fn check_register(&self, principal: &Principal, role: &str) -> Result<(), Refusal> {
        if !self.enforced || principal.role == Role::Master {
            return Ok(());
        }
        if principal.role != Role::Framework {
            return Err(Refusal::NotAFramework {
                principal: principal.clone(),
            });
        }
        let grant = self.framework_grant(&principal.name);
        if grant.roles.iter().any(|r| r == "*" || r == role) {
            Ok(())
        } else {
            Err(Refusal::Role {
                principal: principal.clone(),
                role: role.to_owned(),
                allowed: grant.roles.clone(),
            })
        }
    }

    /// May `principal` (a framework's owner) launch OCI containers?
    pub fn check_framework_oci(&self, principal: &Principal) -> Result<(), Refusal> {
        if !self.enforced
            || principal.role == Role::Master
            || self.framework_grant(&principal.name).oci
        {
            Ok(())
        } else {
            Err(Refusal::Oci {
                principal: principal.clone(),
            })
        }
    }

    /// May `principal` act on framework `framework` (an id whose owner is `owner`)?
    pub fn check_owner(
        &self,
        principal: &Principal,
        framework: &proto::FrameworkId,
    ) -> Result<(), Refusal> {
        let owner = framework.owner();
        if !self.enforced || owner == principal.name {
            Ok(())
        } else {
            Err(Refusal::NotOwner {
                principal: principal.clone(),
                framework: framework.to_string(),
                owner: owner.to_owned(),
            })
        }
    }

    /// May `principal` do `act` as an operator?
    pub fn check_operator(&self, principal: &Principal, act: OperatorAct) -> Result<(), Refusal> {
        if !self.enforced || matches!(principal.role, Role::Master | Role::Admin) {
            return Ok(());
        }
        let refuse = |act| {
            Err(Refusal::Operator {
                principal: principal.clone(),
                act,
            })
        };
        let grant = match principal.role {
            Role::Operator => self.operator_grant(&principal.name),
            Role::Viewer if act == OperatorAct::Read => return Ok(()),
            Role::Viewer => return refuse("change the cluster (a viewer only reads)"),
            Role::Agent | Role::Framework => return refuse("use the operator API"),
            Role::Master | Role::Admin => return Ok(()),
        };
        match act {
            OperatorAct::Read => Ok(()),
            OperatorAct::Submit { .. } if !grant.submit => refuse("submit work"),
            OperatorAct::Submit { oci: true } if !grant.oci => Err(Refusal::Oci {
                principal: principal.clone(),
            }),
            OperatorAct::Submit { .. } => Ok(()),
            OperatorAct::Kill if !grant.kill => refuse("kill tasks"),
            OperatorAct::Kill => Ok(()),
        }
    }

    /// May `principal` read the output of a task of `framework`? A framework principal
    /// that of its own frameworks' tasks; others as operators may read.
    pub fn check_read_output(
        &self,
        principal: &Principal,
        framework: &proto::FrameworkId,
    ) -> Result<(), Refusal> {
        match principal.role {
            Role::Framework => self.check_owner(principal, framework),
            _ => self.check_operator(principal, OperatorAct::Read),
        }
    }

    /// May `principal` upload modules into the master's store? Frameworks may (their
    /// tasks' modules), operators as they may submit.
    pub fn check_upload(&self, principal: &Principal) -> Result<(), Refusal> {
        match principal.role {
            Role::Framework => Ok(()),
            _ => self.check_operator(principal, OperatorAct::Submit { oci: false }),
        }
    }

    fn framework_grant(&self, name: &str) -> &FrameworkGrant {
        self.framework.get(name).unwrap_or(&self.framework_default)
    }

    fn operator_grant(&self, name: &str) -> &OperatorGrant {
        self.operator.get(name).unwrap_or(&self.operator_default)
    }
}
