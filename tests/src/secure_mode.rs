//! `WASMOS_E2E_SECURE=1`: the cluster tests (`e2e/cluster.rs`, `failover.rs`,
//! `plugins.rs`, `fleet.rs`) run against a secure cluster, as `cargo xtask test` runs them a second
//! time: every master with `--identity DIR/master` on a `tls/` endpoint, every agent as an
//! agent identity of the one cluster directory this test process makes (the same one for
//! the same work directory, so a restarted agent is the same agent), every tool as its
//! admin, every native framework as framework principal `frameworks`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use net::{NetConfig, TlsFiles};

use crate::wasmos;

/// Set to run the cluster tests secure.
pub const SECURE_ENV: &str = "WASMOS_E2E_SECURE";
/// Agent identities issued before any master starts (its access control is made then).
const AGENT_POOL: usize = 24;
/// Agent ids the tests configure, issued too.
const CONFIGURED_AGENT_IDS: [&str; 4] = ["board1", "oci-agent", "drf-agent", "doomed"];
/// The cluster's policy: native frameworks may launch OCI containers (the fleet tests do).
const POLICY: &str = "[framework.frameworks]\nroles = [\"*\"]\noci = true\n";

/// The framework principal native frameworks connect as.
const FRAMEWORK_NAME: &str = "frameworks";

/// The cluster directory of this test process, and which pool identity each agent work
/// directory was given.
pub struct SecureCluster {
    dir: PathBuf,
    agents: Mutex<HashMap<PathBuf, String>>,
}

/// The secure cluster when `WASMOS_E2E_SECURE` is set, made on first use.
pub fn secure_cluster() -> Option<&'static SecureCluster> {
    static CLUSTER: OnceLock<Option<SecureCluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| std::env::var_os(SECURE_ENV).map(|_| SecureCluster::make()))
        .as_ref()
}

impl SecureCluster {
    fn make() -> SecureCluster {
        // Kept for the whole test process: every master of every test uses it.
        let dir = tempfile::tempdir()
            .expect("a temporary directory")
            .keep()
            .join("cluster");
        secure(&[&"init".into(), &dir.clone().into_os_string()]);
        let pool = (0..AGENT_POOL).map(|i| format!("agent-{i}"));
        for name in pool.chain(CONFIGURED_AGENT_IDS.map(String::from)) {
            let dir: OsString = dir.clone().into();
            secure(&[&"issue".into(), &dir, &"--agent".into(), &name.into()]);
        }
        let cluster: OsString = dir.clone().into();
        let framework = FRAMEWORK_NAME.into();
        secure(&[&"issue".into(), &cluster, &"--framework".into(), &framework]);
        std::fs::write(dir.join("policy.toml"), POLICY).expect("writing the cluster's policy");
        SecureCluster {
            dir,
            agents: Mutex::new(HashMap::new()),
        }
    }

    /// `--identity DIR/NAME`.
    pub fn identity(&self, name: &str) -> [OsString; 2] {
        ["--identity".into(), self.dir.join(name).into_os_string()]
    }

    /// The identity of the agent working in `work_dir` whose configuration names
    /// `configured` (an id the cluster holds), else the pool identity this work directory
    /// was given first.
    pub fn agent(&self, configured: Option<&str>, work_dir: &Path) -> [OsString; 2] {
        if let Some(id) = configured {
            return self.identity(id);
        }
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        let given = agents.len();
        let name = agents
            .entry(work_dir.to_owned())
            .or_insert_with(|| format!("agent-{given}"))
            .clone();
        assert!(
            agents.len() <= AGENT_POOL,
            "more than {AGENT_POOL} agents: grow the pool"
        );
        self.identity(&name)
    }
}

fn secure(args: &[&OsString]) {
    let out = wasmos()
        .arg("secure")
        .args(args)
        .output()
        .expect("wasmos secure");
    assert!(
        out.status.success(),
        "wasmos secure {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A free endpoint of this process's mode: `tls/…` when secure.
pub fn cluster_endpoint() -> String {
    let endpoint = crate::free_endpoint();
    match secure_cluster() {
        Some(_) => endpoint.replacen("tcp/", "tls/", 1),
        None => endpoint,
    }
}

/// The header a raw HTTP request needs in this process's mode: the admin token that
/// `wasmos secure init` wrote when secure, nothing otherwise.
pub fn http_auth_header() -> String {
    match secure_cluster() {
        Some(cluster) => {
            let token = std::fs::read_to_string(cluster.dir.join("admin.token"))
                .expect("the admin token of the secure cluster");
            format!("Authorization: Bearer {}\r\n", token.trim())
        }
        None => String::new(),
    }
}

/// `wasmos master`, as the cluster's master when secure.
pub fn master_command() -> Command {
    let mut cmd = wasmos();
    cmd.arg("master");
    if let Some(cluster) = secure_cluster() {
        cmd.args(cluster.identity("master"));
    }
    cmd
}

/// `wasmos`, as the cluster's admin when secure: for tools.
pub fn tool() -> Command {
    let mut cmd = wasmos();
    if let Some(cluster) = secure_cluster() {
        let [_, admin] = cluster.identity("admin");
        cmd.env("WASMOS_IDENTITY", admin);
    }
    cmd
}

/// `wasmos agent` working in `work_dir`, with its identity when secure (`configured`: the
/// agent id its configuration names, if any).
pub fn agent_command(configured: Option<&str>, work_dir: &Path) -> Command {
    let mut cmd = wasmos();
    cmd.arg("agent");
    if let Some(cluster) = secure_cluster() {
        cmd.args(cluster.agent(configured, work_dir));
    }
    cmd
}

/// The secure cluster when `endpoint` is one of its (`tls/`): a test that keeps to plain
/// TCP (`crate::free_endpoint`) stays plain in either mode.
pub fn secure_for(endpoint: &str) -> Option<&'static SecureCluster> {
    secure_cluster().filter(|_| endpoint.starts_with("tls/"))
}

/// A native framework's zenoh configuration for `endpoint`: framework principal
/// `frameworks` on a secure cluster's endpoint.
pub fn framework_net(endpoint: &str) -> NetConfig {
    let config = NetConfig::member(vec![endpoint.to_owned()]);
    match secure_for(endpoint) {
        Some(cluster) => config.with_tls(
            FRAMEWORK_NAME,
            TlsFiles {
                ca: cluster.dir.join("ca.pem"),
                cert: cluster.dir.join(format!("{FRAMEWORK_NAME}.pem")),
                key: cluster.dir.join(format!("{FRAMEWORK_NAME}.key")),
            },
        ),
        None => config,
    }
}
