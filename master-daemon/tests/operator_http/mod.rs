//! The operator HTTP API, `/metrics` and the dashboard of a live embedded cluster: a real
//! master daemon serving HTTP on an ephemeral port, a real agent running WASM, the jobs
//! framework attached to the daemon as `wasmos master` attaches it, a task submitted with
//! `POST /api/v1/jobs`, and headless Chromium looking at the dashboard.

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

/// How long Chromium may take to show the task finished.
const DASHBOARD_WAIT: Duration = Duration::from_secs(60);

/// A master serving HTTP on a free loopback port, and one agent.
async fn cluster_with_http() -> (Cluster, String) {
    let cluster = cluster_configured(|config| {
        config.http = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
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
    dashboard_in_chromium(&base, &task_id);
    jobs.shutdown().await;
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

fn chromium(profile: &Path) -> Process {
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
    p.arg(format!("--user-data-dir={}", profile.display()));
    p
}

/// Loads the dashboard until the task's row shows `finished`, then saves a phone-sized
/// screenshot. The page is loaded in its polling mode (`/?live=poll`): Chromium's virtual
/// time waits for open requests, and the event stream never ends.
fn dashboard_in_chromium(base: &str, task_id: &str) {
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
    let profile = tempfile::tempdir().unwrap();
    let page = format!("{base}/?live=poll");
    let row = format!("data-task=\"{task_id}\" data-state=\"finished\"");
    let deadline = Instant::now() + DASHBOARD_WAIT;
    loop {
        let out = chromium(profile.path())
            .args(["--dump-dom", &page])
            .output()
            .unwrap();
        let dom = String::from_utf8_lossy(&out.stdout);
        if dom.contains(&row) {
            assert!(
                dom.contains("data-agent=\"edge-1\""),
                "fleet missing:\n{dom}"
            );
            assert!(dom.contains("jobs"), "framework missing:\n{dom}");
            assert!(dom.contains("data-kind=\"accept\""), "decision log missing");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard never showed {task_id} finished:\n{dom}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let shot = test_output_dir().join("live-cluster-dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(profile.path())
        .args([
            "--window-size=390,844",
            &format!("--screenshot={}", shot.display()),
            &page,
        ])
        .output()
        .unwrap();
    let png = std::fs::read(&shot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}; {out:?}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "the screenshot is not a picture of a page"
    );
    eprintln!("live dashboard screenshot: {}", shot.display());
}
