//! A secure master from a cluster directory (`wasmos secure init DIR`): mutual TLS as
//! `DIR/master`, zenoh's access control generated from every identity the CA signed in
//! `DIR`, the policy of `DIR/policy.toml` and the HTTP tokens of `DIR/tokens.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use master::Policy;
use net::{AclPrincipal, TlsFiles};
use proto::{Keys, Role};
use secure::IdentityPath;

use crate::{MasterDaemonConfig, Principals};

/// The policy file of a cluster directory; absent, the defaults of [`Policy`].
pub const POLICY_FILE: &str = "policy.toml";

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(
        "{path}: {error} (an identity is DIR/NAME with DIR/ca.pem, DIR/NAME.pem and \
         DIR/NAME.key; `wasmos secure issue DIR --agent NAME` makes one)"
    )]
    Identity { path: PathBuf, error: String },
    #[error("{path}: identity {name} has the role {has}; this needs the role {needs}")]
    WrongRole {
        path: PathBuf,
        name: String,
        has: Role,
        needs: Role,
    },
    #[error("reading the identities of {dir}: {error}")]
    Identities { dir: PathBuf, error: String },
    #[error("{path}: {name}.pem is not an identity of this cluster's CA")]
    NotInCluster { path: PathBuf, name: String },
    #[error("{path}: {error}")]
    Policy { path: PathBuf, error: String },
    #[error("reading the HTTP tokens of {dir}: {error}")]
    Tokens { dir: PathBuf, error: String },
    #[error(transparent)]
    Cluster(#[from] proto::keys::KeyError),
}

/// The TLS files of `DIR/NAME`, checked ([`secure::check_identity`]), the name and the
/// role the certificate gives.
pub fn identity_files(path: &Path) -> Result<(String, Role, TlsFiles), SecurityError> {
    let fail = |error: String| SecurityError::Identity {
        path: path.to_owned(),
        error,
    };
    let identity = IdentityPath::parse(path).map_err(|e| fail(e.to_string()))?;
    let [ca, cert, key] = identity.tls_files().map_err(|e| fail(e.to_string()))?;
    let role = secure::check_identity(&identity).map_err(fail)?;
    Ok((identity.name, role, TlsFiles { ca, cert, key }))
}

/// [`identity_files`] of an identity that must have `role`.
pub fn identity_files_as(path: &Path, role: Role) -> Result<(String, TlsFiles), SecurityError> {
    let (name, has, tls) = identity_files(path)?;
    if has != role {
        return Err(SecurityError::WrongRole {
            path: path.to_owned(),
            name,
            has,
            needs: role,
        });
    }
    Ok((name, tls))
}

/// Makes `config` a secure master as `identity` (`DIR/master`); says in the log which
/// certificates of `DIR` it left out and why.
pub fn secure_master(
    config: &mut MasterDaemonConfig,
    identity: &Path,
) -> Result<(), SecurityError> {
    let (name, tls) = identity_files_as(identity, Role::Master)?;
    let dir = identity
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let (identities, skipped) =
        secure::cluster_identities(dir).map_err(|e| SecurityError::Identities {
            dir: dir.to_owned(),
            error: e.to_string(),
        })?;
    for reason in &skipped {
        tracing::warn!(%reason, "certificate left out of the access control");
    }
    if !identities.iter().any(|i| i.name == name) {
        return Err(SecurityError::NotInCluster {
            path: identity.to_owned(),
            name,
        });
    }
    let principals: Vec<AclPrincipal> = identities
        .iter()
        .map(|i| AclPrincipal {
            name: i.name.clone(),
            role: i.role,
        })
        .collect();
    let acl = net::access_control(&Keys::new(&config.net.cluster)?, &principals);
    config.net = config
        .net
        .clone()
        .with_tls(&name, tls)
        .with_access_control(acl);
    let known: BTreeMap<String, Role> = identities.into_iter().map(|i| (i.name, i.role)).collect();
    tracing::info!(
        principals = known.len(),
        "secure: mutual TLS, access control on"
    );
    let policy = read_policy(&dir.join(POLICY_FILE))?;
    warn_of_strangers(&policy, &known);
    config.principals = Principals::Known(known);
    config.core.policy = policy;
    let tokens = secure::LiveTokenBook::open(dir).map_err(|e| SecurityError::Tokens {
        dir: dir.to_owned(),
        error: e.to_string(),
    })?;
    config.http_tokens = Some(Arc::new(tokens));
    Ok(())
}

/// A principal the policy names but the cluster does not know is most likely a typo,
/// which would leave the real principal with the defaults.
fn warn_of_strangers(policy: &Policy, known: &BTreeMap<String, Role>) {
    let named = policy.framework.keys().chain(policy.operator.keys());
    for name in named.filter(|name| !known.contains_key(*name)) {
        tracing::warn!(principal = %name, "the policy names a principal that is not an identity of this cluster (a typo?)");
    }
}

fn read_policy(path: &Path) -> Result<Policy, SecurityError> {
    let fail = |error: String| SecurityError::Policy {
        path: path.to_owned(),
        error,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Policy::parse(&text).map_err(|e| fail(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy::secure_default()),
        Err(e) => Err(fail(e.to_string())),
    }
}
