//! `wasmos master`, `wasmos agent --connect` and the client commands (`agents`, `ps`,
//! `frameworks` with `--json`) as separate processes over real zenoh on loopback.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmos_tests::wasmos;

/// How long the agent may take to show up in the master's listing.
const AGENT_LISTED_WAIT: Duration = Duration::from_secs(20);

/// A child process killed (and reaped) when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on (free when asked; tests rarely race for it).
fn free_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("tcp/127.0.0.1:{}", listener.local_addr().unwrap().port())
}

fn start_master(endpoint: &str, store: &Path) -> Killed {
    let mut child = wasmos()
        .args([
            "master",
            "--listen",
            endpoint,
            "--agent-lost-timeout",
            "1",
            "--store-dir",
        ])
        .arg(store)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Killed(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), format!("listening on {endpoint}"));
    child
}

fn client(args: &[&str], endpoint: &str) -> Output {
    wasmos()
        .args(args)
        .args(["--connect", endpoint])
        .output()
        .unwrap()
}

/// `wasmos <args> --json`: exit 0 and a JSON array.
fn json_rows(args: &[&str], endpoint: &str) -> Vec<Value> {
    let out = client(args, endpoint);
    assert!(
        out.status.success(),
        "{args:?}: {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).unwrap() {
        Value::Array(rows) => rows,
        other => panic!("{args:?} printed {other}, not an array"),
    }
}

#[test]
fn agent_process_joins_master_process_and_client_commands_list_it() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = free_endpoint();
    let work_dir = dir.path().join("agent");
    let work_dir = work_dir.to_str().unwrap();
    let advert = wasmos()
        .args(["agent", "--print-advert", "--work-dir", work_dir])
        .output()
        .unwrap();
    let advert: Value = serde_json::from_slice(&advert.stdout).unwrap();
    let agent_id = advert["agent_id"].as_str().unwrap().to_owned();

    let _master = start_master(&endpoint, &dir.path().join("store"));
    let mut agent = Killed(
        wasmos()
            .args(["agent", "--connect", &endpoint, "--work-dir", work_dir])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let deadline = Instant::now() + AGENT_LISTED_WAIT;
    let row = loop {
        let rows = json_rows(&["agents", "--json"], &endpoint);
        if let Some(row) = rows.into_iter().find(|r| r["id"] == agent_id.as_str()) {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "agent {agent_id} not listed within {AGENT_LISTED_WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(row["agent_id"], agent_id.as_str());
    assert_eq!(
        row["total"], advert["total"],
        "the listed resources are the advertised ones"
    );
    assert!(
        row["total"]["scalars"]["cpus"].is_number(),
        "no cpus in {row}"
    );

    assert_eq!(json_rows(&["ps", "--json"], &endpoint), Vec::<Value>::new());
    assert_eq!(
        json_rows(&["frameworks", "--json"], &endpoint),
        Vec::<Value>::new()
    );
    let table = client(&["agents"], &endpoint);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.contains(&agent_id), "{table}");

    // The agent dies; the master goes on serving.
    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    json_rows(&["agents", "--json"], &endpoint);
    assert_eq!(json_rows(&["ps", "--json"], &endpoint), Vec::<Value>::new());
}

#[test]
fn client_commands_without_a_master_say_what_to_do_and_exit_1() {
    let endpoint = free_endpoint();
    let out = client(&["agents"], &endpoint);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "no master answered at {endpoint}: start one with `wasmos up` or `wasmos master`, or pass --connect"
        )),
        "{stderr}"
    );
}
