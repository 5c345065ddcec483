//! A secure cluster of real processes: `wasmos secure init|issue`, `wasmos master
//! --identity` (mutual TLS, access control generated from the identities, the policy
//! file) and `wasmos agent --identity`; frameworks and attackers are zenoh sessions in
//! this process holding certificates of the cluster, of another CA, or none.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use framework::{FrameworkClient, FrameworkConfig, FrameworkError, Net, NetConfig};
use net::TlsFiles;
use proto::operator::{OperatorReply, OperatorRequest};
use proto::{
    AgentAdvert, Call, CallReply, Event, FrameworkCall, ModuleRef, OciTask, Resources, TaskId,
    TaskKind, TaskLimits, TaskSpec, TaskState, WasmTask,
};
use serde_json::Value;
use wasmos_tests::{Killed, free_port, module, spawn_master, wasmos};

/// How long a test waits for an event it needs.
const EVENT_WAIT: Duration = Duration::from_secs(60);
/// How long a refused zenoh query may go unanswered (the access control drops it).
const DENIED_QUERY_WAIT_MS: u64 = 1_500;

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {:?}, stdout: {}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `wasmos secure init DIR`, then `wasmos secure issue DIR FLAGS...` for each of `issues`.
fn cluster(dir: &Path, issues: &[&[&str]]) {
    let out = wasmos().args(["secure", "init"]).arg(dir).output().unwrap();
    ok(&out, "secure init");
    for flags in issues {
        cluster_issue(dir, flags);
    }
}

fn cluster_issue(dir: &Path, flags: &[&str]) {
    let out = wasmos()
        .args(["secure", "issue"])
        .arg(dir)
        .args(flags)
        .output()
        .unwrap();
    ok(&out, &format!("secure issue {flags:?}"));
}

fn start_master(dir: &Path, endpoint: &str, http: &str, work: &Path) -> Killed {
    let mut cmd = wasmos();
    cmd.args([
        "master",
        "--listen",
        endpoint,
        "--http",
        http,
        "--agent-lost-timeout",
        "2",
    ])
    .arg("--identity")
    .arg(dir.join("master"))
    .arg("--store-dir")
    .arg(work.join("store"))
    .stderr(Stdio::inherit());
    spawn_master(cmd, endpoint)
}

/// An agent process, and what it has written to stderr so far.
struct AgentProcess {
    _child: Killed,
    stderr: Arc<Mutex<String>>,
}

impl AgentProcess {
    /// Waits up to `wait` for `text` in its stderr.
    fn says(&self, text: &str, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            if self.stderr.lock().unwrap().contains(text) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn start_agent(dir: &Path, name: &str, endpoint: &str, work: &Path) -> AgentProcess {
    let mut cmd = wasmos();
    cmd.args(["agent", "--connect", endpoint, "--identity"])
        .arg(dir.join(name))
        .arg("--work-dir")
        .arg(work.join(name))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let child = Killed(child);
    let said = Arc::new(Mutex::new(String::new()));
    let into = said.clone();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            eprintln!("{line}");
            let mut said = into.lock().unwrap();
            said.push_str(&line);
            said.push('\n');
        }
    });
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(
        line.contains(&format!("agent {name} connected")),
        "agent said {line:?}"
    );
    AgentProcess {
        _child: child,
        stderr: said,
    }
}

/// `wasmos ARGS --connect ENDPOINT [--identity IDENTITY]`.
fn tool(args: &[&str], endpoint: &str, identity: Option<&Path>) -> Output {
    let mut cmd: Command = wasmos();
    cmd.args(args).args(["--connect", endpoint]);
    if let Some(identity) = identity {
        cmd.arg("--identity").arg(identity);
    }
    cmd.output().unwrap()
}

fn tls(dir: &Path, name: &str) -> TlsFiles {
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    }
}

/// A session as `name` of the cluster in `dir`.
async fn session(dir: &Path, name: &str, endpoint: &str) -> Result<Net, net::NetError> {
    let mut config = NetConfig::member(vec![endpoint.to_owned()]).with_tls(name, tls(dir, name));
    config.connect_timeout_ms = Some(3_000);
    Net::open(&config).await
}

async fn admin_ask(admin: &Net, request: &OperatorRequest) -> OperatorReply {
    admin
        .query(&admin.keys().master_admin("admin"), request, 5_000)
        .await
        .unwrap()
}

async fn agents_listed(admin: &Net) -> Vec<String> {
    match admin_ask(admin, &OperatorRequest::Agents).await {
        OperatorReply::Agents(rows) => rows.into_iter().map(|r| r.agent_id.to_string()).collect(),
        other => panic!("{other:?}"),
    }
}

async fn subscribe(
    dir: &Path,
    name: &str,
    role: &str,
    endpoint: &str,
) -> Result<(FrameworkClient, framework::Events), FrameworkError> {
    let net = session(dir, name, endpoint).await.unwrap();
    let mut config = FrameworkConfig::new(name).with_role(role, 1.0);
    config.info.min_offer = Resources::new().with_scalar("cpus", 0.5);
    FrameworkClient::subscribe(net, config).await
}

async fn next_offer(events: &mut framework::Events) -> proto::Offer {
    let deadline = Instant::now() + EVENT_WAIT;
    while Instant::now() < deadline {
        if let Ok(Some(Event::Offers { offers })) =
            tokio::time::timeout(Duration::from_secs(5), events.recv()).await
            && let Some(offer) = offers.into_iter().next()
        {
            return offer;
        }
    }
    panic!("no offer within {EVENT_WAIT:?}");
}

fn wasm_task(id: &str, module: &ModuleRef, args: &[&str]) -> TaskSpec {
    TaskSpec {
        task_id: TaskId::new(id),
        name: id.to_owned(),
        resources: Resources::new()
            .with_scalar("cpus", 0.5)
            .with_scalar("mem", 32.0),
        kind: TaskKind::Wasm(WasmTask {
            module: module.clone(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            ..WasmTask::default()
        }),
        limits: TaskLimits::default(),
        disconnect: None,
        replaces: None,
    }
}

fn refused_with(result: Result<(), FrameworkError>, expected: &str) {
    match result {
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
        Ok(()) => panic!("expected a refusal saying {expected:?}"),
    }
}

fn policy(dir: &Path) -> PathBuf {
    let path = dir.join("policy.toml");
    std::fs::write(&path, "[framework.f2]\nroles = [\"batch\"]\n").unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_cluster_lets_in_only_its_identities_each_on_its_own_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let foreign = tmp.path().join("foreign");
    cluster(
        &dir,
        &[
            &["--agent", "a1"],
            &["--agent", "a2"],
            &["--framework", "f1"],
            &["--framework", "f2"],
            &["--operator", "watcher", "--viewer"],
        ],
    );
    cluster(&foreign, &[&["--agent", "a1"]]);
    policy(&dir);
    let endpoint = format!("tls/127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let _master = start_master(&dir, &endpoint, &http, tmp.path());
    let a1 = start_agent(&dir, "a1", &endpoint, tmp.path());

    // No certificate, or one of another CA: no session at all.
    let plain = tool(&["agents"], &endpoint, None);
    assert!(
        !plain.status.success(),
        "a client without a certificate got in"
    );
    let stranger = tool(&["agents"], &endpoint, Some(&foreign.join("admin")));
    assert!(!stranger.status.success(), "a foreign CA's admin got in");
    assert!(session(&foreign, "a1", &endpoint).await.is_err());
    let tcp = endpoint.replace("tls/", "tcp/");
    let mut plain_config = NetConfig::member(vec![tcp]);
    plain_config.connect_timeout_ms = Some(3_000);
    assert!(
        Net::open(&plain_config).await.is_err(),
        "plain TCP reached a TLS master"
    );

    let admin = session(&dir, "admin", &endpoint).await.unwrap();
    assert_eq!(agents_listed(&admin).await, ["a1"]);

    // Agent a2 may speak only as a2: its advert under a1's key never reaches the master,
    // and one naming a1 under its own key is counted and ignored.
    let a2 = session(&dir, "a2", &endpoint).await.unwrap();
    let forged = forged_advert("a1");
    a2.put(&a2.keys().agent_advert("a1"), &forged)
        .await
        .unwrap();
    a2.put(&a2.keys().agent_advert("a2"), &forged)
        .await
        .unwrap();
    // And it may not ask the master for another agent's module door or command.
    let denied = a2
        .query_raw(&a2.keys().agent_cmd("a1"), None, DENIED_QUERY_WAIT_MS)
        .await;
    assert!(denied.is_err(), "a2 reached a1's command queryable");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(agents_listed(&admin).await, ["a1"]);
    let OperatorReply::DecodeErrors(counts) =
        admin_ask(&admin, &OperatorRequest::DecodeErrors).await
    else {
        panic!("no decode errors");
    };
    let a2_key = admin.keys().agent_advert("a2");
    assert_eq!(counts.get(&a2_key), Some(&1), "{counts:?}");
    assert!(
        !counts.contains_key(&admin.keys().agent_advert("a1")),
        "{counts:?}"
    );

    frameworks_act_only_on_their_own(&dir, &endpoint, &admin).await;
    operators_by_role(&endpoint, &dir);
    http_wants_a_token(&http, &dir);

    // An identity issued after the master started is not admitted, and its agent says
    // so; an admitted one never did.
    cluster_issue(&dir, &["--agent", "late"]);
    let late = start_agent(&dir, "late", &endpoint, tmp.path());
    assert!(
        late.says(NOT_ADMITTED, ADMISSION_SAID_WAIT),
        "the late agent did not say it is not admitted"
    );
    assert!(
        !a1.says(NOT_ADMITTED, Duration::ZERO),
        "a1 was told it is not admitted"
    );
}

/// What an agent the master does not admit says.
const NOT_ADMITTED: &str = "does not answer identity";
/// The agent asks for 5 s; generous for a loaded machine.
const ADMISSION_SAID_WAIT: Duration = Duration::from_secs(30);

/// One HTTP/1.1 request; the status and the body.
fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

/// The HTTP API of a secure master: 401 without a valid token, 403 for a viewer's write.
fn http_wants_a_token(addr: &str, dir: &Path) {
    let admin = std::fs::read_to_string(dir.join("admin.token")).unwrap();
    let out = wasmos()
        .args(["secure", "token"])
        .arg(dir)
        .args(["--name", "grafana", "--role", "viewer"])
        .output()
        .unwrap();
    let viewer = ok(&out, "secure token");
    let viewer = viewer.trim();
    assert_eq!(http(addr, "GET", "/health", None).0, 200);
    let (status, body) = http(addr, "GET", "/api/v1/tasks", None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"unauthorized\""), "{body}");
    assert_eq!(
        http(addr, "GET", "/api/v1/tasks", Some("wsm_forged")).0,
        401
    );
    assert_eq!(http(addr, "GET", "/metrics", None).0, 401);
    assert_eq!(http(addr, "GET", "/api/v1/tasks", Some(viewer)).0, 200);
    let (status, body) = http(addr, "DELETE", "/api/v1/tasks/f1-sleep", Some(viewer));
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        http(addr, "GET", "/api/v1/tasks", Some(admin.trim())).0,
        200
    );
    // The admin gets past the door: the task ended, so the kill is a conflict.
    let (status, body) = http(addr, "DELETE", "/api/v1/tasks/f1-sleep", Some(admin.trim()));
    assert_eq!(status, 409, "{body}");
}

async fn frameworks_act_only_on_their_own(dir: &Path, endpoint: &str, admin: &Net) {
    // f2 may register only under `batch` (policy.toml); an agent may not register at all.
    refused_with(
        subscribe(dir, "f2", "default", endpoint).await.map(drop),
        "may not register under role \"default\"",
    );
    refused_with(
        subscribe(dir, "a2", "default", endpoint).await.map(drop),
        "may not register frameworks",
    );
    let (f1, mut f1_events) = subscribe(dir, "f1", "default", endpoint).await.unwrap();
    assert_eq!(f1.framework_id().owner(), "f1");
    let (f2, _f2_events) = subscribe(dir, "f2", "batch", endpoint).await.unwrap();

    let sleeper = net::modules::upload_module(
        f1.net(),
        "p1_sleep.wasm",
        &std::fs::read(module("p1_sleep")).unwrap(),
        |_| {},
    )
    .await
    .unwrap();
    // OCI runs as root: not without the grant.
    let offer = next_offer(&mut f1_events).await;
    let mut oci = wasm_task("f1-oci", &sleeper, &[]);
    oci.kind = TaskKind::Oci(OciTask {
        image: "/nonexistent".to_owned(),
        command: Vec::new(),
        env: std::collections::BTreeMap::new(),
        host_network: false,
        capabilities: Vec::new(),
    });
    refused_with(
        f1.launch(offer.offer_id.clone(), vec![oci]).await,
        "may not run OCI containers",
    );
    f1.launch(
        offer.offer_id,
        vec![wasm_task("f1-sleep", &sleeper, &["60000"])],
    )
    .await
    .unwrap();
    wait_state(&mut f1_events, "f1-sleep", TaskState::Running).await;

    // f2 names f1's framework: refused by owner; and f1's call key is not f2's to use.
    let kill = FrameworkCall {
        framework_id: Some(f1.framework_id().clone()),
        call: Call::Kill {
            task_id: TaskId::new("f1-sleep"),
        },
    };
    let reply: CallReply = f2
        .net()
        .query(&f2.net().keys().master_calls("f2"), &kill, 5_000)
        .await
        .unwrap();
    match reply {
        CallReply::Error { message } => assert!(message.contains("belongs to f1"), "{message}"),
        other => panic!("f2 killed f1's task: {other:?}"),
    }
    let bytes = proto::encode(&kill).unwrap();
    let stolen = f2
        .net()
        .query_raw(
            &f2.net().keys().master_calls("f1"),
            Some(bytes),
            DENIED_QUERY_WAIT_MS,
        )
        .await;
    assert!(stolen.is_err(), "f2 called on f1's key");
    let OperatorReply::Tasks(rows) = admin_ask(admin, &OperatorRequest::Tasks).await else {
        panic!("no tasks");
    };
    let row = rows
        .iter()
        .find(|r| r.task_id.as_str() == "f1-sleep")
        .unwrap();
    assert_eq!(row.state, TaskState::Running, "{row:?}");
    f1.kill(TaskId::new("f1-sleep")).await.unwrap();
    wait_state(&mut f1_events, "f1-sleep", TaskState::Killed).await;
    // A framework reads its own tasks' output through the master, not another's.
    let sleep_id = TaskId::new("f1-sleep");
    assert!(
        master_daemon::tools::task_logs(f1.net(), &sleep_id)
            .await
            .is_ok()
    );
    let theirs = master_daemon::tools::task_logs(f2.net(), &sleep_id).await;
    let said = theirs
        .map(|o| format!("{o:?}"))
        .unwrap_or_else(|e| e.to_string());
    assert!(said.contains("belongs to f1"), "{said}");
}

async fn wait_state(events: &mut framework::Events, task: &str, state: TaskState) {
    let deadline = Instant::now() + EVENT_WAIT;
    while Instant::now() < deadline {
        if let Ok(Some(Event::Update { status })) =
            tokio::time::timeout(Duration::from_secs(5), events.recv()).await
            && status.task_id.as_str() == task
            && status.state == state
        {
            return;
        }
    }
    panic!("{task} did not become {state:?}");
}

/// Operator identities: a viewer reads but may not kill or submit; the admin may.
fn operators_by_role(endpoint: &str, dir: &Path) {
    let watcher = dir.join("watcher");
    let listed = tool(&["ps", "--json"], endpoint, Some(&watcher));
    let rows: Value = serde_json::from_str(&ok(&listed, "viewer ps")).unwrap();
    assert!(rows.as_array().is_some_and(|r| !r.is_empty()), "{rows}");
    let kill = tool(&["kill", "f1-sleep"], endpoint, Some(&watcher));
    assert!(!kill.status.success());
    let said = String::from_utf8_lossy(&kill.stderr);
    assert!(said.contains("a viewer only reads"), "{said}");
    let hello = module("p1_hello");
    let mut run = wasmos();
    run.args(["run", "--wait", "--connect", endpoint, "--identity"])
        .arg(&watcher)
        .arg(&hello);
    let refused = run.output().unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("viewer"), "{said}");
    let mut run = wasmos();
    run.args(["run", "--wait", "--connect", endpoint, "--identity"])
        .arg(dir.join("admin"))
        .arg(&hello);
    ok(&run.output().unwrap(), "admin run");
}

fn forged_advert(agent_id: &str) -> AgentAdvert {
    AgentAdvert {
        agent_id: proto::AgentId::new(agent_id),
        hostname: "forged".to_owned(),
        attributes: proto::Attributes::default(),
        total: Resources::new().with_scalar("cpus", 64.0),
        reserved: Resources::new(),
        seq: u64::MAX,
        incarnation: u64::MAX,
        tasks: Vec::new(),
        version: "forged".to_owned(),
        last_census: None,
    }
}
