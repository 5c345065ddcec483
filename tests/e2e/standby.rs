//! Standby masters: leader election through a real etcd, and `wasmos master --etcd`
//! processes taking over from a leader killed with SIGKILL.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use election::{Election, ElectionConfig};
use serde_json::Value;
use wasmos_tests::etcd::EtcdServer;
use wasmos_tests::{Killed, free_port, wasmos};

/// Generous bounds for a loaded 2-core CI machine; not speed assertions.
const ETCD_READY_WAIT: Duration = Duration::from_secs(20);
const TAKEOVER_WAIT: Duration = Duration::from_secs(60);

fn candidate(url: &str, key: &str, name: &str) -> Election {
    Election::new(ElectionConfig {
        endpoints: vec![url.to_owned()],
        key: key.to_owned(),
        candidate: name.to_owned(),
        lease_ttl_s: 2,
    })
    .unwrap()
}

/// etcd takes a moment to elect itself; until then its requests fail.
async fn wait_ready(election: &Election) {
    let deadline = Instant::now() + ETCD_READY_WAIT;
    while election.leader().await.is_err() {
        assert!(Instant::now() < deadline, "etcd did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_leads_and_a_standby_takes_over_when_it_resigns_or_dies() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let a = candidate(&etcd.url, "/wasmos/t/leader", "master-a");
    let b = candidate(&etcd.url, "/wasmos/t/leader", "master-b");
    wait_ready(&a).await;

    let a_leads = a.campaign(|_| {}).await.unwrap();
    assert_eq!(a.leader().await.unwrap().as_deref(), Some("master-a"));

    // b waits, and is told who leads.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let b_task = tokio::spawn(async move {
        let leadership = b
            .campaign(|leader| {
                let _ = seen_tx.send(leader.to_owned());
            })
            .await
            .unwrap();
        (b, leadership)
    });
    assert_eq!(seen_rx.recv().await.as_deref(), Some("master-a"));
    assert!(!b_task.is_finished());

    a_leads.resign().await;
    let (b, b_leads) = b_task.await.unwrap();
    assert_eq!(b.leader().await.unwrap().as_deref(), Some("master-b"));

    // A leader that dies without resigning: its lease runs out and a standby takes over.
    drop(b_leads);
    let c = candidate(&etcd.url, "/wasmos/t/leader", "master-c");
    let _c_leads = c.campaign(|_| {}).await.unwrap();
    assert_eq!(c.leader().await.unwrap().as_deref(), Some("master-c"));
}

#[tokio::test]
async fn a_leader_that_loses_etcd_steps_down() {
    let Some(mut etcd) = EtcdServer::start() else {
        return;
    };
    let a = candidate(&etcd.url, "/wasmos/t2/leader", "master-a");
    wait_ready(&a).await;
    let mut leadership = a.campaign(|_| {}).await.unwrap();
    etcd.kill();
    let reason = leadership.lost().await;
    assert!(reason.contains("could not be renewed"), "{reason}");
}

#[tokio::test]
async fn an_unreachable_etcd_is_an_error_that_says_where() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let a = candidate(&url, "/wasmos/t3/leader", "master-a");
    let err = a.campaign(|_| {}).await.err().unwrap().to_string();
    assert!(
        err.contains(&url) && err.contains("is etcd running"),
        "{err}"
    );
}

/// A `wasmos master --etcd` process whose output lines arrive on channels.
struct MasterProcess {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl MasterProcess {
    fn start(etcd: &str, endpoint: &str, store: &std::path::Path) -> MasterProcess {
        MasterProcess::start_with(etcd, endpoint, store, &store.with_extension("state"))
    }

    /// With a state directory of its own (what it keeps goes to etcd all the same).
    fn start_with(
        etcd: &str,
        endpoint: &str,
        store: &std::path::Path,
        state: &std::path::Path,
    ) -> MasterProcess {
        let mut child = wasmos()
            .args(["master", "--etcd", etcd, "--lease-ttl", "2"])
            .args(["--listen", endpoint, "--agent-lost-timeout", "30"])
            .args(["--http", "127.0.0.1:0"])
            .arg("--store-dir")
            .arg(store)
            .arg("--state-dir")
            .arg(state)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        MasterProcess {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits for a line of `stream` that contains `needle`; panics with what was seen.
    fn wait_line(stream: &mpsc::Receiver<String>, needle: &str, what: &str) -> String {
        let deadline = Instant::now() + TAKEOVER_WAIT;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match stream.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("{what}: no line with {needle:?}; saw {seen:#?}");
    }
}

impl Drop for MasterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines<R: Read + Send + 'static>(stream: R) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A throwaway etcd, ready: a master exits when etcd cannot be reached, as it should.
/// `None` where etcd is not installed (see `EtcdServer::start`).
fn etcd_for_masters() -> Option<EtcdServer> {
    let etcd = EtcdServer::start()?;
    let probe = candidate(&etcd.url, "/wasmos/probe", "probe");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(wait_ready(&probe));
    Some(etcd)
}

/// The agents `wasmos agents --json` lists at `endpoint`, once the call succeeds.
fn agents_at(endpoint: &str) -> Option<Vec<Value>> {
    serde_json::from_value(json_at(&["agents", "--json"], endpoint)?).ok()
}

fn wait_agent_active(endpoint: &str, agent_id: &str) {
    let deadline = Instant::now() + TAKEOVER_WAIT;
    loop {
        let rows = agents_at(endpoint).unwrap_or_default();
        let active = rows
            .iter()
            .any(|a| a["id"] == agent_id && a["state"] == "active");
        if active {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "agent {agent_id} not active at {endpoint}: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_standby_master_process_takes_over_and_the_agent_follows_it() {
    let Some(etcd) = etcd_for_masters() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a_end, b_end) = (
        format!("tcp/127.0.0.1:{}", free_port()),
        format!("tcp/127.0.0.1:{}", free_port()),
    );
    let mut a = MasterProcess::start(&etcd.url, &a_end, &dir.path().join("store-a"));
    MasterProcess::wait_line(&a.stdout, "listening on", "master a leading");
    let b = MasterProcess::start(&etcd.url, &b_end, &dir.path().join("store-b"));
    let standby = MasterProcess::wait_line(&b.stderr, "standing by", "master b standing by");
    assert!(standby.contains(&a_end), "{standby}");

    let mut agent = Killed(
        wasmos()
            .args(["agent", "--connect", &a_end, "--connect", &b_end])
            .arg("--work-dir")
            .arg(dir.path().join("agent"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let agent_id = agent_id_from(agent.0.stdout.take().unwrap());
    wait_agent_active(&a_end, &agent_id);

    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let leading = MasterProcess::wait_line(&b.stdout, "listening on", "master b taking over");
    assert!(leading.contains(&b_end), "{leading}");
    wait_agent_active(&b_end, &agent_id);
}

/// The agent prints `agent <id> connected to ...` once connected.
fn agent_id_from(stdout: ChildStdout) -> String {
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("agent printed {line:?}"))
        .to_owned()
}

/// `wasmos <args> --connect endpoint` as JSON, once it succeeds.
fn json_at(args: &[&str], endpoint: &str) -> Option<Value> {
    let out = wasmos()
        .args(args)
        .args(["--connect", endpoint])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn wait_json(args: &[&str], endpoint: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + TAKEOVER_WAIT;
    loop {
        let value = json_at(args, endpoint);
        if let Some(value) = value.as_ref().filter(|v| done(v)) {
            return value.clone();
        }
        assert!(
            Instant::now() < deadline,
            "not {what} at {endpoint}: {value:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_standby_taking_over_goes_on_with_the_rollout_from_etcd() {
    let Some(etcd) = etcd_for_masters() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a_end, b_end) = (
        format!("tcp/127.0.0.1:{}", free_port()),
        format!("tcp/127.0.0.1:{}", free_port()),
    );
    // One module store (content-addressed: both may read and write it); each master its
    // own state directory, so that what carries the jobs over is etcd.
    let store = dir.path().join("store");
    let mut a = MasterProcess::start_with(&etcd.url, &a_end, &store, &dir.path().join("state-a"));
    MasterProcess::wait_line(&a.stdout, "listening on", "master a leading");
    let b = MasterProcess::start_with(&etcd.url, &b_end, &store, &dir.path().join("state-b"));
    MasterProcess::wait_line(&b.stderr, "standing by", "master b standing by");
    let _agent = Killed(
        wasmos()
            .args(["agent", "--connect", &a_end, "--connect", &b_end])
            .arg("--work-dir")
            .arg(dir.path().join("agent"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let job = |file: &str, sleep_ms: u64| {
        let path = dir.path().join(file);
        let text = format!(
            "name = \"svc\"\nmodule = {:?}\nargs = [\"{sleep_ms}\"]\ncount = 2\ncpus = 0.1\nmem = 32\n\
             [update]\nmin_healthy_ms = 4000\nhealthy_deadline_ms = 60000\n",
            wasmos_tests::module("p1_sleep").to_str().unwrap()
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let deploy = |file: &std::path::Path, detach: bool| {
        let mut command = wasmos();
        command.arg("deploy").arg(file).args(["--connect", &a_end]);
        if detach {
            command.arg("--detach");
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    deploy(&job("v1.toml", 300_000), false);
    deploy(&job("v2.toml", 200_000), true);
    let status = ["job", "status", "svc", "--json"];
    wait_json(&status, &a_end, "rolling", |s| {
        s["summary"]["rollout"]["new_placed"].as_u64() >= Some(1)
    });

    a.child.kill().unwrap();
    a.child.wait().unwrap();
    MasterProcess::wait_line(&b.stdout, "listening on", "master b taking over");
    let done = wait_json(&status, &b_end, "rolled out by the standby", |s| {
        s["summary"]["stable_version"] == 2
    });
    assert_eq!(done["summary"]["healthy"], 2, "{done:#}");
    let tasks = wait_json(&["ps", "--json"], &b_end, "listed", |_| true);
    let live: Vec<&Value> = (tasks.as_array().unwrap().iter())
        .filter(|t| t["name"] == "svc" && t["state"] == "running")
        .collect();
    assert_eq!(live.len(), 2, "exactly the copies run: {tasks:#}");
    assert!(
        !dir.path()
            .join("state-b/frameworks/jobs.state.json")
            .exists()
    );
}
