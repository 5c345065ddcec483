//! `WASMOS_E2E_SECURE=1`: the cluster tests (`e2e/cluster.rs`) run against a secure
//! cluster, as `cargo xtask test` runs them a second time: every master with
//! `--identity DIR/master` on a `tls/` endpoint, every agent as an agent identity of the
//! one cluster directory this test process makes, every tool as its admin.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::wasmos;

/// Set to run the cluster tests secure.
pub const SECURE_ENV: &str = "WASMOS_E2E_SECURE";
/// Agent identities issued before any master starts (its access control is made then).
const AGENT_POOL: usize = 24;
/// Agent ids the tests configure, issued too.
const CONFIGURED_AGENT_IDS: [&str; 1] = ["board1"];

/// The cluster directory of this test process, and the next pool identity to hand out.
pub struct SecureCluster {
    dir: PathBuf,
    next_agent: AtomicUsize,
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
        SecureCluster {
            dir,
            next_agent: AtomicUsize::new(0),
        }
    }

    /// `--identity DIR/NAME`.
    pub fn identity(&self, name: &str) -> [OsString; 2] {
        ["--identity".into(), self.dir.join(name).into_os_string()]
    }

    /// The identity of an agent whose configuration names `configured` (an id the cluster
    /// holds), or the next one of the pool.
    pub fn agent(&self, configured: Option<&str>) -> [OsString; 2] {
        match configured {
            Some(id) => self.identity(id),
            None => {
                let n = self.next_agent.fetch_add(1, Ordering::Relaxed);
                assert!(
                    n < AGENT_POOL,
                    "more than {AGENT_POOL} agents: grow the pool"
                );
                self.identity(&format!("agent-{n}"))
            }
        }
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
