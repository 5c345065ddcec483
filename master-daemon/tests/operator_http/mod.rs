//! The operator HTTP API, `/metrics` and the dashboard of a live embedded cluster: a real
//! master daemon serving HTTP on an ephemeral port, real agents running WASM, the jobs
//! framework attached to the daemon as `wasmos master` attaches it, tasks submitted with
//! `POST /api/v1/jobs`, and headless Chromium looking at the dashboard of a fleet with
//! running, pending and lost tasks, a lost agent and an outstanding offer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::Arc;
use std::time::Instant;

use http_api::ErrorBody;
use jobs::{JobsConfig, JobsFramework};
use proto::operator::JobAccepted;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::*;

/// How long Chromium may take to show what the API already shows.
const DASHBOARD_WAIT: Duration = Duration::from_secs(30);
/// Writes `spinning` on stdout, then spins: a running task with output to show.
const CHATTY_SPIN: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "spinning\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 9))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (loop $forever (br $forever))))"#;
/// How long an agent's token may stay away before the master declares it lost: short, so
/// that the dashboard gets to show a lost agent.
const AGENT_LOST_TIMEOUT_MS: u64 = 1_000;

/// A master serving HTTP on a free loopback port, and one agent.
async fn cluster_with_http() -> (Cluster, String) {
    let cluster = cluster_configured(|config| {
        config.http = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        config.core.agent_lost_timeout_ms = AGENT_LOST_TIMEOUT_MS;
        // Jobs land on the GPU agent too: what is tested here is the API, not GPU policy.
        config.core.gpu_agents_last_resort = true;
    })
    .await;
    let addr = cluster
        .master
        .http_addr()
        .expect("HTTP asked for, so served");
    assert_ne!(addr.port(), 0, "the port picked is reported");
    (cluster, format!("http://{addr}"))
}

async fn get_json(c: &reqwest::Client, url: &str) -> Value {
    let response = c.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "GET {url}");
    response.json().await.unwrap()
}

/// GETs `url` until `done` holds for the answer.
async fn poll_json(c: &reqwest::Client, url: &str, done: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            let value = get_json(c, url).await;
            if done(&value) {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{url} never answered what was waited for"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_cluster_serves_the_api_metrics_and_the_dashboard_in_chromium() {
    let (cluster, base) = cluster_with_http().await;
    let c = reqwest::Client::new();
    assert_eq!(
        get_json(&c, &format!("{base}/health")).await["status"],
        "ok"
    );
    poll_json(&c, &format!("{base}/api/v1/agents"), |agents| {
        agents[0]["agent_id"] == "edge-1" && agents[0]["state"] == "active"
    })
    .await;

    let member = Net::open(&NetConfig::member(cluster.master.endpoints().to_vec()))
        .await
        .unwrap();
    let hello = upload_module(&member, "hello.wat", HELLO.as_bytes(), |_| {})
        .await
        .unwrap();
    let job = json!({"name": "hello", "module": hello.sha256.0, "cpus": 0.5, "mem": 64});

    // No jobs framework attached yet: a valid job is refused, clearly.
    let refused = c
        .post(format!("{base}/api/v1/jobs"))
        .json(&job)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let body: ErrorBody = refused.json().await.unwrap();
    assert!(
        body.error.message.contains("jobs framework not running"),
        "{body:?}"
    );

    // Attached, as `wasmos master` does: the job is taken, its task runs on the agent and
    // reaches `finished`, with the output the agent kept.
    let jobs = JobsFramework::start(member.clone(), JobsConfig::default())
        .await
        .unwrap();
    cluster.master.attach_jobs(Arc::new(jobs.client()));
    let accepted = c
        .post(format!("{base}/api/v1/jobs"))
        .json(&job)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::CREATED);
    let accepted: JobAccepted = accepted.json().await.unwrap();
    let task_id = accepted.task_ids[0].to_string();
    // A module the store does not hold is refused before the jobs framework sees it.
    let unknown = json!({"name": "ghost", "module": "ab".repeat(32), "cpus": 0.5, "mem": 64});
    let refused = c
        .post(format!("{base}/api/v1/jobs"))
        .json(&unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: ErrorBody = refused.json().await.unwrap();
    assert!(
        body.error.message.contains("is not in the store"),
        "{body:?}"
    );
    let finished = poll_json(&c, &format!("{base}/api/v1/tasks?state=finished"), |t| {
        t.as_array().is_some_and(|t| !t.is_empty())
    })
    .await;
    assert_eq!(finished[0]["task_id"], task_id.as_str());
    assert_eq!(finished[0]["exit_code"], 0);
    // The agent's last usage report: the module's one page of memory, some cpu time.
    let measured = poll_json(&c, &format!("{base}/api/v1/tasks?state=finished"), |t| {
        t[0]["memory_bytes"].is_u64()
    })
    .await;
    assert_eq!(measured[0]["memory_bytes"], 65_536, "{measured}");
    assert!(
        measured[0]["cpu_seconds"].as_f64().unwrap() > 0.0,
        "{measured}"
    );
    let detail = get_json(&c, &format!("{base}/api/v1/tasks/{task_id}")).await;
    assert_eq!(detail["state"], "finished");
    assert_eq!(
        detail["log_tail"]["stdout"], "hello from wasm\n",
        "{detail}"
    );
    let state = get_json(&c, &format!("{base}/api/v1/state")).await;
    assert_eq!(state["frameworks"][0]["name"], "jobs");
    assert!(state["counters"]["offers_sent"].as_u64().unwrap() >= 1);
    assert!(state["counters"]["offers_accepted"].as_u64().unwrap() >= 1);

    // One code path: the CLI's `master/admin` rows are the API's rows.
    let tool = Net::open(&NetConfig::tool(cluster.master.endpoints().to_vec()))
        .await
        .unwrap();
    for (request, path) in [
        (OperatorRequest::Tasks, "tasks"),
        (OperatorRequest::Agents, "agents"),
    ] {
        let admin = tools::listing_json(&tool, &request).await.unwrap();
        let api = get_json(&c, &format!("{base}/api/v1/{path}")).await;
        assert_eq!(admin, api, "master/admin and /api/v1/{path} disagree");
    }
    // Asked by id (what `wasmos run --wait` asks): the known row, the unknown left out.
    let id = TaskId::new(task_id.as_str());
    let asked = OperatorRequest::TaskRows {
        task_ids: vec![TaskId::new("no-such-task"), id.clone()],
    };
    match tools::ask(&tool, &asked, 5_000).await.unwrap() {
        OperatorReply::Tasks(rows) => {
            let found: Vec<_> = rows.iter().map(|r| (&r.task_id, r.state)).collect();
            assert_eq!(found, [(&id, TaskState::Finished)]);
        }
        other => panic!("{other:?}"),
    }
    let too_many = OperatorRequest::TaskRows {
        task_ids: vec![id; proto::operator::TASK_ROWS_ASKED_MAX + 1],
    };
    let refused = tools::ask(&tool, &too_many, 5_000).await.unwrap_err();
    assert!(refused.to_string().contains("at most 1024"), "{refused}");

    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("wasmos_tasks{state=\"finished\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wasmos_agents{state=\"active\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("wasmos_allocation_pass_duration_seconds_count"));
    for family in [
        "wasmos_task_exit_code",
        "wasmos_task_cpu_seconds_total",
        "wasmos_task_memory_bytes",
    ] {
        assert!(
            metrics.contains(&format!("{family}{{task=\"{task_id}\",")),
            "no {family} for {task_id}: {metrics}"
        );
    }

    bad_requests_get_a_4xx_json_error(&c, &base, &task_id).await;
    let fleet = fleet_with_every_kind_of_task(&cluster, &c, &base, &member).await;
    dashboard_in_chromium(&base, &task_id, &fleet).await;
    fleet.edge_2.shutdown().await;
    jobs.shutdown().await;
}

/// What [`fleet_with_every_kind_of_task`] made: a task of each kind, and an idle
/// framework holding an offer.
struct Fleet {
    running: String,
    pending: String,
    lost: String,
    edge_2: AgentHandle,
    _edge_2_dir: tempfile::TempDir,
    _hoarder: (FrameworkClient, Events),
}

/// A second agent, `edge-2`, on a host named as edge-1's: two cards, told apart by id.
async fn start_edge_2(cluster: &Cluster, dir: &Path) -> AgentHandle {
    let advert = AgentAdvert {
        agent_id: AgentId::new("edge-2"),
        hostname: "edge-1.local".to_owned(),
        attributes: Attributes::new().with("arch", "x86_64").with("rack", "b"),
        total: Resources::new()
            .with_scalar("cpus", 4.0)
            .with_scalar("mem", 2048.0)
            .with_scalar("gpus", 1.0),
        reserved: Resources::new(),
        seq: 0,
        incarnation: 1,
        tasks: Vec::new(),
        version: String::new(),
        last_census: None,
    };
    let net = NetConfig::member(cluster.master.endpoints().to_vec());
    let mut config = AgentDaemonConfig::new(net, advert, dir.to_path_buf());
    config.advert_period_ms = 500;
    AgentDaemon::start(config).await.unwrap()
}

async fn submit_job(c: &reqwest::Client, base: &str, job: Value) -> String {
    let response = c
        .post(format!("{base}/api/v1/jobs"))
        .json(&job)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED, "{job}");
    let accepted: JobAccepted = response.json().await.unwrap();
    accepted.task_ids[0].to_string()
}

fn task_in<'a>(tasks: &'a Value, id: &str) -> Option<&'a Value> {
    tasks.as_array()?.iter().find(|t| t["task_id"] == id)
}

fn has_state(tasks: &Value, id: &str, state: &str) -> bool {
    task_in(tasks, id).is_some_and(|t| t["state"] == state)
}

/// Makes the cluster show everything the dashboard shows: a task running on edge-1, one
/// pending (its constraint `arch=riscv64` no agent meets), one lost with edge-2 (whose
/// session is cut, as when its process is killed), and a framework that never answers
/// its offers.
async fn fleet_with_every_kind_of_task(
    cluster: &Cluster,
    c: &reqwest::Client,
    base: &str,
    member: &Net,
) -> Fleet {
    let edge_2_dir = tempfile::tempdir().unwrap();
    let edge_2 = start_edge_2(cluster, edge_2_dir.path()).await;
    let spin = upload_module(member, "spin.wat", CHATTY_SPIN.as_bytes(), |_| {})
        .await
        .unwrap();
    let job = |name: &str, constraint: &str| {
        json!({"name": name, "module": spin.sha256.0, "cpus": 0.5, "mem": 64,
               "constraints": [constraint]})
    };
    poll_json(c, &format!("{base}/api/v1/agents"), |agents| {
        agents[1]["agent_id"] == "edge-2" && agents[1]["state"] == "active"
    })
    .await;
    let running = submit_job(c, base, job("spin", "arch=aarch64")).await;
    let lost = submit_job(c, base, job("doomed", "rack=b")).await;
    let pending = submit_job(c, base, job("riscv", "arch=riscv64")).await;
    let tasks = poll_json(c, &format!("{base}/api/v1/tasks"), |tasks| {
        has_state(tasks, &running, "running")
            && has_state(tasks, &lost, "running")
            && has_state(tasks, &pending, "pending")
    })
    .await;
    let waiting = task_in(&tasks, &pending).expect("the pending task is listed");
    // Regression: pending rows came last, though `ps` lists pending, live, then ended.
    assert_eq!(tasks[0]["state"], "pending", "{tasks}");
    assert!(
        waiting["reason"]
            .as_str()
            .is_some_and(|r| r.contains("arch=riscv64")),
        "{waiting}"
    );

    edge_2.net().close().await.unwrap();
    let hoarder = framework(&cluster.master, "hoarder").await;
    let hoarder_id = hoarder.0.framework_id().to_string();
    poll_json(c, &format!("{base}/api/v1/tasks"), |tasks| {
        has_state(tasks, &lost, "lost")
    })
    .await;
    let state = poll_json(c, &format!("{base}/api/v1/state"), |state| {
        state["agents"][1]["state"] == "lost"
            && (state["offers"].as_array())
                .is_some_and(|offers| offers.iter().any(|o| o["framework_id"] == hoarder_id))
    })
    .await;
    // What is offered to the hoarder is its dominant share, but none of it is in use.
    let hoarder_row = (state["frameworks"].as_array().unwrap().iter())
        .find(|f| f["framework_id"] == hoarder_id)
        .unwrap();
    assert!(hoarder_row["dominant_share"].as_f64().unwrap() > 0.0);
    let share_history = state["share_history"].as_array().unwrap();
    let in_use = &share_history.last().unwrap()["shares"][&hoarder_id];
    assert_eq!(in_use.as_f64(), Some(0.0), "{share_history:?}");
    assert!(state["agent_usage"]["edge-1"]["used"]["cpus"].is_array());
    Fleet {
        running,
        pending,
        lost,
        edge_2,
        _edge_2_dir: edge_2_dir,
        _hoarder: hoarder,
    }
}

/// Every route with malformed JSON, wrong types, a huge body and unknown ids, through the
/// live daemon: a 4xx with a JSON error, never a 5xx.
async fn bad_requests_get_a_4xx_json_error(c: &reqwest::Client, base: &str, ended: &str) {
    let huge = vec![b'['; 3 * http_api::BODY_BYTES_MAX];
    let cases: Vec<(reqwest::Method, String, Option<Vec<u8>>)> = vec![
        (
            reqwest::Method::POST,
            "/api/v1/jobs".into(),
            Some(b"{\"name\":".to_vec()),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/jobs".into(),
            Some(br#"{"name":"x","module":7,"cpus":"one","mem":[]}"#.to_vec()),
        ),
        (reqwest::Method::POST, "/api/v1/jobs".into(), Some(huge)),
        (
            reqwest::Method::POST,
            "/api/v1/jobs".into(),
            Some(b"[]".to_vec()),
        ),
        (
            reqwest::Method::GET,
            "/api/v1/tasks/no-such-task".into(),
            None,
        ),
        (
            reqwest::Method::DELETE,
            "/api/v1/tasks/no-such-task".into(),
            None,
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/v1/tasks/{ended}"),
            None,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/tasks?state=bogus".into(),
            None,
        ),
        (reqwest::Method::GET, "/api/v1/tasks?nope=1".into(), None),
        (
            reqwest::Method::PUT,
            "/api/v1/state".into(),
            Some(b"{}".to_vec()),
        ),
        (reqwest::Method::GET, "/api/v2/anything".into(), None),
    ];
    for (method, path, body) in cases {
        let mut request = c.request(method.clone(), format!("{base}{path}"));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        assert!(
            status.is_client_error(),
            "{method} {path} answered {status}"
        );
        let body: Result<ErrorBody, _> = response.json().await;
        assert!(
            body.is_ok(),
            "{method} {path}: {status} without a JSON error"
        );
    }
}

/// Where tests leave files to look at: `target/test-output/`.
fn test_output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-output");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium on `args`, quiet and self-contained, letting the page's
/// scripts run for five seconds of virtual time; off the runtime's threads (the master
/// answers it on them), with a profile of its own (a second Chromium on a profile in use
/// hands its work to the first and exits).
async fn chromium(args: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let mut p = Process::new("chromium");
    p.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        "--virtual-time-budget=5000",
    ]);
    p.arg(format!("--user-data-dir={}", profile.path().display()));
    p.args(args);
    tokio::task::spawn_blocking(move || (p.output(), profile))
        .await
        .unwrap()
        .0
        .unwrap()
}

/// The opening tag of the element with `id` in a dumped DOM, if there is one.
fn opening_tag<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let start = dom[..at].rfind('<')?;
    let end = at + dom[at..].find('>')?;
    Some(&dom[start..=end])
}

/// What the rendered page must show and does not: a card per agent (edge-2's lost), the
/// tasks with their states and the pending one's reason, its job, a usage sparkline, the
/// decision log, the hoarder's offer, and the running task's drill-down with its output
/// and a Kill button.
fn not_shown(dom: &str, ended: &str, fleet: &Fleet) -> Option<String> {
    let texts = [
        "data-agent=\"edge-1\" data-state=\"active\"".to_owned(),
        "data-agent=\"edge-2\" data-state=\"lost\"".to_owned(),
        format!("data-task=\"{ended}\" data-state=\"finished\""),
        format!("data-task=\"{}\" data-state=\"running\"", fleet.running),
        format!("data-task=\"{}\" data-state=\"pending\"", fleet.pending),
        format!("data-task=\"{}\" data-state=\"lost\"", fleet.lost),
        "waiting for an offer".to_owned(),
        "arch=riscv64".to_owned(),
        "data-job=\"riscv\"".to_owned(),
        "class=\"spark\"".to_owned(),
        "data-kind=\"gpus\"".to_owned(),
        "<li data-kind=\"".to_owned(),
    ];
    if let Some(missing) = texts.into_iter().find(|t| !dom.contains(t)) {
        return Some(missing);
    }
    let offers = dom.split("id=\"offers\"").nth(1).unwrap_or("");
    let offers = offers.split("</table>").next().unwrap_or("");
    if !(offers.contains("data-offer=") && offers.contains("hoarder")) {
        return Some(format!(
            "the hoarder's offer, in the offers table: {offers}"
        ));
    }
    let drill = opening_tag(dom, "drill").unwrap_or("");
    if !drill.contains(&format!("data-task=\"{}\"", fleet.running)) || drill.contains("hidden") {
        return Some(format!("the running task's drill-down: {drill}"));
    }
    let output = dom.split("id=\"drill-log\"").nth(1).unwrap_or("");
    if !output
        .split("</pre>")
        .next()
        .unwrap_or("")
        .contains("spinning")
    {
        return Some("the running task's output in its drill-down".to_owned());
    }
    let kill = opening_tag(dom, "drill-kill").unwrap_or("");
    (kill.is_empty() || kill.contains("disabled")).then(|| format!("a Kill button: {kill}"))
}

/// Loads the dashboard, with the running task's drill-down open, until it shows the
/// fleet; then saves screenshots at phone and desktop sizes. The page is loaded in its
/// polling mode (`/?live=poll`): Chromium's virtual time waits for open requests, and
/// the event stream never ends.
async fn dashboard_in_chromium(base: &str, ended: &str, fleet: &Fleet) {
    if !Process::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!(
            "SKIPPED the browser part: chromium is not installed (`cargo xtask setup` installs it)"
        );
        return;
    }
    let page = format!("{base}/?live=poll");
    let drilled = format!("{page}#task={}", fleet.running);
    let deadline = Instant::now() + DASHBOARD_WAIT;
    loop {
        let out = chromium(&["--dump-dom", &drilled]).await;
        let dom = String::from_utf8_lossy(&out.stdout);
        let Some(missing) = not_shown(&dom, ended, fleet) else {
            break;
        };
        assert!(
            Instant::now() < deadline,
            "the dashboard never showed {missing}:\n{dom}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (name, size, url) in [
        ("live-cluster-phone.png", "390,844", &page),
        ("live-cluster-desktop.png", "1280,900", &page),
        ("live-cluster-task-phone.png", "390,844", &drilled),
    ] {
        let shot = test_output_dir().join(name);
        let _ = std::fs::remove_file(&shot);
        let window = format!("--window-size={size}");
        let to = format!("--screenshot={}", shot.display());
        let out = chromium(&[&window, &to, url]).await;
        let png = std::fs::read(&shot)
            .unwrap_or_else(|e| panic!("no screenshot at {}: {e}; {out:?}", shot.display()));
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{name} is not a picture of a page"
        );
        eprintln!("live dashboard screenshot: {}", shot.display());
    }
}
