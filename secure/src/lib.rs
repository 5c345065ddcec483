//! Cluster security: the CA and the identities it signs, read back by the master to
//! generate zenoh's access control; HTTP bearer tokens; the authorization policy file.
//!
//! An identity is a certificate signed by the cluster CA whose common name is the
//! principal's name and whose organizational unit is its role (`wasmos-agent`,
//! `wasmos-framework`, `wasmos-operator`, `wasmos-viewer`, `wasmos-master`). zenoh's TLS
//! checks the chain on every connection, and its access control matches the common name:
//! a principal's identity is what the transport proved, never a field it filled in.
//!
//! Files of a cluster directory `DIR` (all PEM; keys mode 0600, never overwritten):
//! `ca.pem`, `ca.key`, and per identity `NAME.pem`, `NAME.key`; `tokens.toml` (mode
//! 0600), the hashes of the HTTP tokens, and `admin.token`, the token `init` made.

mod files;
mod identity;
mod issue;
mod token;

pub use files::{FileError, PRIVATE_FILE_MODE};
pub use identity::{
    IDENTITY_NAME_BYTES_MAX, Identity, IdentityPath, NameError, Role, check_identity,
    cluster_identities, valid_identity_name,
};
pub use issue::{
    ADMIN_NAME, CA_VALIDITY_DAYS, IDENTITY_VALIDITY_DAYS, ISSUED_FILE, InitOutcome, IssueError,
    init_cluster, issue_identity,
};
pub use token::{
    LiveTokenBook, PRESENTED_TOKEN_BYTES_MAX, TOKEN_PREFIX, TOKEN_RANDOM_BYTES, TOKENS_FILE,
    TOKENS_MAX, TokenBook, TokenError, create_token, is_token_role, save_token,
};

#[cfg(test)]
mod tests;
