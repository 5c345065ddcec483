//! `--identity DIR/NAME`: mutual TLS as a principal of a secure cluster (`wasmos secure`),
//! and for the master, the access control and the policy generated from that directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use master::Policy;
use master_daemon::{MasterDaemonConfig, Principals};
use net::{AclPrincipal, NetConfig, TlsFiles};
use proto::Keys;
use secure::IdentityPath;

/// The `--identity` flag every command that talks to a cluster takes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct IdentityArgs {
    /// Talk to a secure cluster as this identity: `DIR/NAME` reads `DIR/ca.pem`,
    /// `DIR/NAME.pem` and `DIR/NAME.key` (see `wasmos secure --help`); mutual TLS, so
    /// the endpoints are `tls/HOST:PORT` (the default becomes tls/127.0.0.1:7447).
    #[arg(long, value_name = "DIR/NAME", env = "WASMOS_IDENTITY")]
    pub identity: Option<PathBuf>,
}

/// The policy file of a cluster directory; absent, the defaults of `master::Policy`.
pub const POLICY_FILE: &str = "policy.toml";

impl IdentityArgs {
    /// The identity's name, when one is given.
    pub fn name(&self) -> anyhow::Result<Option<String>> {
        let Some(path) = &self.identity else {
            return Ok(None);
        };
        let identity =
            IdentityPath::parse(path).with_context(|| format!("--identity {}", path.display()))?;
        Ok(Some(identity.name))
    }

    /// `config` as this identity, when one is given.
    pub fn apply(&self, config: NetConfig) -> anyhow::Result<NetConfig> {
        match &self.identity {
            None => Ok(config),
            Some(path) => {
                let (name, tls) = tls_files(path)?;
                Ok(config.with_tls(&name, tls))
            }
        }
    }

    /// [`IdentityArgs::apply`] for a tool (`ps`, `run`, …): without `--identity`, a tool
    /// told no endpoint (`told_where` false) takes the local cluster's admin identity
    /// when `wasmos up` made one ([`local_admin`]), so that commands on the cluster's own
    /// machine need no flags.
    pub fn apply_tool(&self, config: NetConfig, told_where: bool) -> anyhow::Result<NetConfig> {
        match (&self.identity, local_admin()) {
            (None, Some(admin)) if !told_where => {
                tracing::debug!(identity = %admin.display(), "using the local cluster's admin identity");
                IdentityArgs {
                    identity: Some(admin),
                }
                .apply(config)
            }
            _ => self.apply(config),
        }
    }
}

/// Where `wasmos up` keeps its cluster: `/var/lib/wasmos/cluster` when it can be created,
/// else `~/.local/share/wasmos/cluster`.
pub fn local_cluster_dir() -> PathBuf {
    crate::master_cmd::default_dir("cluster")
}

/// The local cluster's admin identity (`DIR/admin`), when there is one; looked for where
/// [`local_cluster_dir`] puts it, without creating anything.
pub fn local_admin() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    [
        PathBuf::from("/var/lib/wasmos/cluster"),
        home.join(".local/share/wasmos/cluster"),
    ]
    .into_iter()
    .map(|dir| dir.join("admin"))
    .find(|admin| admin.with_extension("pem").is_file() && admin.with_extension("key").is_file())
}

/// The TLS files of `DIR/NAME`, unchecked: for identities this process just made.
pub fn tls_of(dir: &Path, name: &str) -> TlsFiles {
    let identity = IdentityPath::new(dir, name);
    TlsFiles {
        ca: identity.ca_cert(),
        cert: identity.cert(),
        key: identity.key(),
    }
}

/// What [`init_cluster`] made.
pub struct NewCluster {
    pub made: secure::InitOutcome,
    /// The admin's HTTP token, shown once; only its hash is kept.
    pub token: String,
    pub token_file: PathBuf,
}

/// `wasmos secure init`: a new cluster in `dir` (the CA, `master` with `master_names`,
/// `admin`) and the admin's HTTP token, also written to `DIR/admin.token`.
pub fn init_cluster(dir: &Path, master_names: &[String]) -> anyhow::Result<NewCluster> {
    let made = secure::init_cluster(dir, master_names)?;
    let token = secure::create_token(dir, secure::ADMIN_NAME, proto::Role::Admin)?;
    let token_file = secure::save_token(dir, secure::ADMIN_NAME, &token)?;
    Ok(NewCluster {
        made,
        token,
        token_file,
    })
}

/// Makes `dir` a cluster unless it is one (the CA, `master`, `admin` and its HTTP token
/// in `DIR/admin.token`), then issues each of `identities` it does not hold yet. Returns
/// whether the cluster was made now.
pub fn ensure_cluster(dir: &Path, identities: &[(&str, proto::Role)]) -> anyhow::Result<bool> {
    let made = !dir.join("ca.pem").is_file();
    if made {
        init_cluster(dir, &[])?;
    }
    for (name, role) in identities {
        if !IdentityPath::new(dir, name).cert().is_file() {
            secure::issue_identity(dir, name, *role, &[])?;
        }
    }
    Ok(made)
}

fn tls_files(path: &Path) -> anyhow::Result<(String, TlsFiles)> {
    let identity =
        IdentityPath::parse(path).with_context(|| format!("--identity {}", path.display()))?;
    let [ca, cert, key] = identity.tls_files().with_context(|| {
        format!(
            "--identity {}: an identity is DIR/NAME with DIR/ca.pem, DIR/NAME.pem and \
             DIR/NAME.key (`wasmos secure issue DIR --agent NAME` makes one)",
            path.display()
        )
    })?;
    Ok((identity.name, TlsFiles { ca, cert, key }))
}

/// Makes `config` a secure master: mutual TLS as `identity` (`DIR/master`), zenoh's
/// access control generated from every identity in `DIR`, the policy of
/// `DIR/policy.toml`, and HTTP bearer tokens from `DIR/tokens.toml`. Says on stderr which certificates it left out and why.
pub fn secure_master(config: &mut MasterDaemonConfig, identity: &Path) -> anyhow::Result<()> {
    let (name, tls) = tls_files(identity)?;
    let dir = identity
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let (identities, skipped) = secure::cluster_identities(dir)
        .with_context(|| format!("reading the identities of {}", dir.display()))?;
    for reason in &skipped {
        tracing::warn!(%reason, "certificate left out of the access control");
    }
    if !identities.iter().any(|i| i.name == name) {
        return Err(anyhow!(
            "--identity {}: {name}.pem is not an identity of this cluster's CA",
            identity.display()
        ));
    }
    let keys = Keys::new(&config.net.cluster)?;
    let principals: Vec<AclPrincipal> = identities
        .iter()
        .map(|i| AclPrincipal {
            name: i.name.clone(),
            role: i.role,
        })
        .collect();
    let acl = net::access_control(&keys, &principals);
    config.net = config
        .net
        .clone()
        .with_tls(&name, tls)
        .with_access_control(acl);
    let known: BTreeMap<String, proto::Role> =
        identities.into_iter().map(|i| (i.name, i.role)).collect();
    tracing::info!(
        principals = known.len(),
        "secure: mutual TLS, access control on"
    );
    config.principals = Principals::Known(known);
    config.core.policy = read_policy(&dir.join(POLICY_FILE))?;
    // The HTTP API takes the bearer tokens of `wasmos secure token DIR` only.
    let tokens = secure::TokenBook::load(dir)
        .with_context(|| format!("reading the HTTP tokens of {}", dir.display()))?;
    config.http_tokens = Some(std::sync::Arc::new(tokens));
    Ok(())
}

fn read_policy(path: &Path) -> anyhow::Result<Policy> {
    match std::fs::read_to_string(path) {
        Ok(text) => Policy::parse(&text).with_context(|| format!("{}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy::secure_default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
