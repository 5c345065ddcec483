//! Who may call the master, as the transport proves it.
//!
//! On a secure cluster zenoh's access control (generated from the same list,
//! `net::access_control`) lets each principal use only the keys that carry its own name,
//! so the `<principal>` chunk of `master/calls/<principal>` or `master/admin/<principal>`
//! is proven; its role comes from its certificate, read once at start. On an insecure
//! cluster nothing is proven and every caller is [`Principal::anonymous`].

use std::collections::BTreeMap;

use proto::{Keys, Principal, Role};

/// Callers the master knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principals {
    /// An insecure cluster: every caller is anonymous.
    Anyone,
    /// A secure cluster: the identities the cluster CA signed, by name.
    Known(BTreeMap<String, Role>),
}

impl Principals {
    /// The caller of a request that came on `key`; `None` for a name the master does not
    /// know (an identity issued after it started: restart it to admit new identities).
    pub fn caller(&self, keys: &Keys, key: &str) -> Option<Principal> {
        match self {
            Principals::Anyone => Some(Principal::anonymous()),
            Principals::Known(known) => {
                let name = keys.principal_in(key)?;
                let role = known.get(name)?;
                Some(Principal::new(name, *role))
            }
        }
    }

    /// What a refused unknown caller is told.
    pub fn unknown(key: &str) -> String {
        format!(
            "the master does not know the principal of {key}; identities issued after it \
             started are admitted when it restarts"
        )
    }
}
