//! `wasmos run --lost-after … --on-reconnect …` on real processes: an agent in its own
//! network namespace is cut off longer than the master's agent-lost timeout, its task is
//! `unreachable` and replaced on another agent, and when the link comes back the
//! original is running again and the replacement is killed (keep-original). Plain TCP
//! only (the namespace reaches the master by address, which a secure cluster's
//! certificates do not name), as the chaos test.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmos_tests::netns::Netns;

use crate::cluster::json_rows;
use wasmos_tests::{Killed, free_port, module, spawn_master, wasmos, wasmos_bin};

/// Longer than zenoh's link lease (10 s) plus the agent-lost timeout (1 s) plus the
/// replacement's start, on a loaded machine.
const WAIT: Duration = Duration::from_secs(60);

fn agent(command: Command, endpoint: &str, dir: &Path, site: &str) -> Killed {
    let mut command = command;
    let config = dir.join(format!("{site}.toml"));
    std::fs::write(&config, format!("[attributes]\nsite = \"{site}\"\n")).unwrap();
    let child = command
        .args(["agent", "--connect", endpoint, "--config"])
        .arg(&config)
        .arg("--work-dir")
        .arg(dir.join(site))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Killed(child)
}

/// Polls `wasmos ps` until `done` holds for its rows; returns them.
fn wait_until(local: &str, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let rows = json_rows(&["ps", "--json"], local);
        if done(&rows) {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "not {what} within {WAIT:?}: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn state_of<'a>(rows: &'a [Value], id: &str) -> Option<&'a str> {
    rows.iter()
        .find(|r| r["id"] == id)
        .and_then(|r| r["state"].as_str())
}

#[test]
fn a_cut_off_agent_s_task_is_replaced_and_kept_when_it_comes_back_in_time() {
    let Some(ns) = Netns::create_or_skip("disc", 2) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let local = format!("tcp/127.0.0.1:{port}");
    let mut master = wasmos();
    master
        .args(["master", "--listen", &format!("tcp/0.0.0.0:{port}")])
        .args(["--agent-lost-timeout", "1", "--http", "127.0.0.1:0"])
        .arg("--store-dir")
        .arg(dir.path().join("store"))
        .stderr(Stdio::inherit());
    let _master = spawn_master(master, &format!("tcp/0.0.0.0:{port}"));
    let remote = format!("tcp/{}:{port}", ns.host_addr);
    let _far = agent(ns.command(&wasmos_bin()), &remote, dir.path(), "far");
    wait_until(&local, "the far agent listed", |_| {
        let out = wasmos()
            .args(["agents", "--json", "--connect", &local])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("far")
    });

    let ticks = module("p1_ticks");
    let out = wasmos()
        .args(["run", "--connect", &local])
        .arg(&ticks)
        .args([
            "--restart",
            "always",
            "--lost-after",
            "5m",
            "--",
            "100000",
            "100",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let original = stdout.lines().last().unwrap().to_owned();
    wait_until(&local, "running", |rows| {
        state_of(rows, &original) == Some("running")
    });

    // A second agent, at home, then the far one cut off.
    let _home = agent(wasmos(), &local, dir.path(), "home");
    ns.set_link(false).unwrap();
    let rows = wait_until(&local, "unreachable and replaced", |rows| {
        state_of(rows, &original) == Some("unreachable")
            && rows
                .iter()
                .any(|r| r["id"] != original.as_str() && r["state"] == "running")
    });
    let replacement = rows
        .iter()
        .find(|r| r["id"] != original.as_str() && r["state"] == "running")
        .and_then(|r| r["id"].as_str())
        .unwrap()
        .to_owned();

    // The link is back within the 5 minutes: the original stays, the replacement goes.
    ns.set_link(true).unwrap();
    let rows = wait_until(&local, "reconciled", |rows| {
        state_of(rows, &original) == Some("running")
            && state_of(rows, &replacement) == Some("killed")
    });
    let running: Vec<&Value> = rows.iter().filter(|r| r["state"] == "running").collect();
    assert_eq!(running.len(), 1, "one copy runs: {rows:?}");
}
