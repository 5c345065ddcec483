//! A throwaway single-member etcd on loopback (Debian's `etcd-server`, which
//! `cargo xtask setup` installs), for the standby-master tests.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Killed (and its data removed) when dropped.
pub struct EtcdServer {
    child: Child,
    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl EtcdServer {
    /// `None`, with the reason printed, where etcd is not installed, outside CI; in CI
    /// (`CI` set) a missing etcd fails the test.
    pub fn start() -> Option<EtcdServer> {
        let Some(etcd) = find_etcd() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "etcd is not installed; `cargo xtask setup` installs etcd-server"
            );
            eprintln!("skipped: etcd is not installed (apt-get install etcd-server)");
            return None;
        };
        let dir = tempfile::tempdir().ok()?;
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new(etcd)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--name", "t"])
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("t={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(EtcdServer {
            child,
            url,
            _dir: dir,
        })
    }

    /// Kills etcd now, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn find_etcd() -> Option<PathBuf> {
    ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}
