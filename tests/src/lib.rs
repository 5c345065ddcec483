//! Helpers for end-to-end tests: where the `wasmos` binary and the built modules are.
//!
//! `cargo xtask test` builds both before the tests run.

pub mod etcd;
pub mod netns;
pub mod oci_image;
pub mod relay;
pub mod secure_mode;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The `wasmos` binary: `$WASMOS_BIN`, else `target/debug/wasmos`.
pub fn wasmos_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("WASMOS_BIN") {
        return PathBuf::from(bin);
    }
    let bin = target_dir().join("debug").join("wasmos");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bin wasmos` (cargo xtask test does)",
        bin.display()
    );
    bin
}

pub fn wasmos() -> Command {
    Command::new(wasmos_bin())
}

/// The aarch64 `wasmos` (`$WASMOS_AARCH64_BIN`, else the build of `cargo xtask cross`),
/// under `qemu-aarch64` with Debian's aarch64 C library unless this host is aarch64.
pub fn wasmos_aarch64() -> Command {
    let bin = std::env::var_os("WASMOS_AARCH64_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("aarch64-unknown-linux-gnu/cross/wasmos"));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo xtask cross` (cargo xtask test does)",
        bin.display()
    );
    if cfg!(target_arch = "aarch64") {
        return Command::new(bin);
    }
    let mut qemu = Command::new("qemu-aarch64");
    qemu.args(["-L", "/usr/aarch64-linux-gnu"]).arg(bin);
    qemu
}

/// `$CARGO_TARGET_DIR`, else the workspace's `target/`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// A module built by `cargo xtask modules`, by crate name (`p1_hello`).
pub fn module(name: &str) -> PathBuf {
    let path = workspace_root()
        .join("target/modules")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask modules`",
        path.display()
    );
    path
}

/// A child process killed with SIGKILL (and reaped) when dropped, however the test ends.
pub struct Killed(pub Child);

impl Killed {
    /// Kills the process now, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nothing listens on (free when asked; tests rarely race for it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    listener
        .local_addr()
        .expect("the bound port's address")
        .port()
}

/// `tcp/127.0.0.1:PORT` on a [`free_port`].
pub fn free_endpoint() -> String {
    format!("tcp/127.0.0.1:{}", free_port())
}

/// Spawns `master` (a `wasmos master ...` command) and returns once it printed
/// `listening on ENDPOINT` as its first line; the rest of its stdout is drained, so that it
/// never writes into a closed pipe.
pub fn spawn_master(mut master: Command, endpoint: &str) -> Killed {
    use std::io::{BufRead, BufReader};
    let mut child = master
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawning wasmos master");
    let stdout = child.stdout.take().expect("the master's stdout");
    let child = Killed(child);
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    let first = lines.next().unwrap_or_default();
    match endpoint.rsplit_once(':') {
        // A wildcard address is printed as the interfaces' addresses, with the port.
        Some((host, port)) if host.ends_with("/0.0.0.0") => {
            assert!(
                first.starts_with("listening on ") && first.trim().ends_with(&format!(":{port}")),
                "master printed {first:?}"
            );
        }
        _ => assert_eq!(first.trim(), format!("listening on {endpoint}")),
    }
    std::thread::spawn(move || lines.for_each(drop));
    child
}
