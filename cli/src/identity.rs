//! `--identity DIR/NAME`: mutual TLS as a principal of a secure cluster (`wasmos secure`),
//! and for the master, the access control and the policy generated from that directory.

use std::path::{Path, PathBuf};

use anyhow::Context;
use master_daemon::MasterDaemonConfig;
use net::{NetConfig, TlsFiles};
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
                let (name, _, tls) = master_daemon::security::identity_files(path)?;
                Ok(config.with_tls(&name, tls))
            }
        }
    }

    /// `config` as this identity, which must be an agent's, when one is given.
    pub fn apply_agent(&self, config: NetConfig) -> anyhow::Result<NetConfig> {
        match &self.identity {
            None => Ok(config),
            Some(path) => {
                let (name, tls) =
                    master_daemon::security::identity_files_as(path, proto::Role::Agent)?;
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

/// Where a tool looks for its master, for messages: the first endpoint of `config`, and
/// the identity it goes as (`tls/10.0.0.5:7447 as /etc/wasmos/alice`).
pub fn master_at(config: &NetConfig) -> String {
    let endpoint = config
        .connect
        .first()
        .cloned()
        .unwrap_or_else(|| net::DEFAULT_ENDPOINT.to_owned());
    match &config.tls {
        Some(tls) => format!("{endpoint} as {}", tls.cert.with_extension("").display()),
        None => endpoint,
    }
}

/// What a tool says when its session did not open: what was wrong with what it was
/// given (a zenoh configuration file, an endpoint), or else that no master answered.
pub fn open_failed(error: net::NetError, master_at: &str) -> anyhow::Error {
    use net::NetError;
    match error {
        e @ (NetError::ConfigFile { .. }
        | NetError::Config { .. }
        | NetError::Endpoint(_)
        | NetError::Cluster(_)) => anyhow::anyhow!(e),
        e => {
            tracing::debug!(%e, "opening the tool session");
            no_master(master_at)
        }
    }
}

/// What a tool says when no master answered at `master_at` ([`master_at`]).
pub fn no_master(master_at: &str) -> anyhow::Error {
    let hint = if master_at.contains(" as ") {
        "none runs there, or it does not admit this identity (a certificate of another \
         cluster's CA, or one issued after the master started: restart the master to admit \
         it)"
    } else if master_at.starts_with("tls/") {
        "a tls/ endpoint is a secure master's, which admits only identities of its cluster: \
         pass --identity DIR/NAME"
    } else {
        "start one with `wasmos up` or `wasmos master`, or pass --connect (and --identity \
         DIR/NAME for a secure master)"
    };
    anyhow::anyhow!("no master answered at {master_at}: {hint}")
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

/// Makes `config` a secure master as `identity` (`DIR/master`): see
/// [`master_daemon::security`].
pub fn secure_master(config: &mut MasterDaemonConfig, identity: &Path) -> anyhow::Result<()> {
    Ok(master_daemon::security::secure_master(config, identity)?)
}
