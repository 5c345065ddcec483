//! Scheduler modules hosted by a `wasmos master` process (`wasmos framework add`), hostile
//! ones among them, and scheduler modules in `wasmos sim` scenarios.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wasmos_tests::secure_mode::{
    agent_command, cluster_endpoint as free_endpoint, http_auth_header, master_command, tool,
};
use wasmos_tests::{Killed, module, wasmos};

/// How long a batch of tiny tasks may take to finish.
const TASKS_FINISHED_WAIT: Duration = Duration::from_secs(60);
/// How long a failing scheduler may take to be deactivated: five failures with backoffs
/// of 1, 2, 4 and 8 s between them, a looping one burning its whole fuel each time.
const DEACTIVATED_WAIT: Duration = Duration::from_secs(120);
/// Consecutive failures after which a hosted scheduler is deactivated
/// (`policy_host::FailurePolicy::default`).
const FAILURES_MAX: u64 = 5;

/// A master and one agent, as separate processes over loopback zenoh.
struct Cluster {
    endpoint: String,
    /// The master's HTTP address, `127.0.0.1:PORT`.
    http: String,
    store: PathBuf,
    master_log: PathBuf,
    dir: tempfile::TempDir,
    _master: Killed,
    _agent: Killed,
}

impl Cluster {
    /// `GET path` on the master's HTTP API, as JSON (HTTP/1.1 by hand: one request).
    fn http_get_json(&self, path: &str) -> Value {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.http).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{}Connection: close\r\n\r\n",
            self.http,
            http_auth_header()
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// A master running `allocator` (`drf` or a module's path) and one agent.
    fn start(allocator: &Path) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = free_endpoint();
        let store = dir.path().join("store");
        let master_log = dir.path().join("master.log");
        let (master, http) = spawn_master_logged(&endpoint, &store, allocator, &master_log);
        let agent = Killed(
            agent_command(None, &dir.path().join("agent"))
                .args(["--connect", &endpoint, "--work-dir"])
                .arg(dir.path().join("agent"))
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        Cluster {
            endpoint,
            http,
            store,
            master_log,
            dir,
            _master: master,
            _agent: agent,
        }
    }

    /// Kills the master with SIGKILL and starts it again on the same endpoint and store.
    fn restart_master(&mut self, allocator: &Path) {
        self._master.kill();
        let log = self.master_log.with_extension("2.log");
        let (master, http) = spawn_master_logged(&self.endpoint, &self.store, allocator, &log);
        self._master = master;
        self.http = http;
        self.master_log = log;
    }

    /// Puts a task module in the master's content-addressed store (as an upload would)
    /// and returns the batch scheduler's config lines naming it.
    fn task_config(&self, task: &str, count: u32) -> PathBuf {
        let bytes = std::fs::read(module(task)).unwrap();
        let sha256 = hex::encode(Sha256::digest(&bytes));
        std::fs::create_dir_all(&self.store).unwrap();
        std::fs::write(self.store.join(&sha256), &bytes).unwrap();
        let path = self.dir.path().join(format!("{task}-{count}.conf"));
        std::fs::write(&path, batch_config(task, count, &sha256, bytes.len())).unwrap();
        path
    }

    fn run(&self, args: &[&str]) -> Output {
        tool()
            .args(args)
            .args(["--connect", &self.endpoint])
            .output()
            .unwrap()
    }

    /// `wasmos framework add MODULE --name NAME [--config FILE]`: the framework id.
    fn add(&self, module: &Path, name: &str, config: Option<&Path>) -> Result<String, String> {
        let mut args = vec![
            "framework".to_owned(),
            "add".to_owned(),
            module.display().to_string(),
            "--name".to_owned(),
            name.to_owned(),
        ];
        if let Some(config) = config {
            args.extend(["--config".to_owned(), config.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run(&args);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(
            !id.is_empty() && !id.contains(char::is_whitespace),
            "one framework id: {id:?}"
        );
        Ok(id)
    }

    /// `wasmos <args> --json`: exit 0 and a JSON array.
    fn rows(&self, args: &[&str]) -> Vec<Value> {
        let out = self.run(args);
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

    fn hosted(&self, framework_id: &str) -> Value {
        self.rows(&["framework", "list", "--json"])
            .into_iter()
            .find(|r| r["framework_id"] == framework_id)
            .unwrap_or_else(|| panic!("{framework_id} is not among the hosted frameworks"))
    }

    /// Waits until the batch framework was told that `count` tasks finished and the
    /// master lists none of its tasks as still running.
    fn wait_batch_finished(&self, framework_id: &str, count: u64) {
        let deadline = Instant::now() + TASKS_FINISHED_WAIT;
        loop {
            let row = self.hosted(framework_id);
            let finished = row["task_states"]["finished"].as_u64().unwrap_or(0);
            let tasks = self.rows(&["ps", "--json"]);
            let of_framework: Vec<&Value> = tasks
                .iter()
                .filter(|t| t["framework_id"] == framework_id)
                .collect();
            let none_running = of_framework.iter().all(|t| t["state"] == "finished");
            if finished == count && none_running {
                assert_eq!(
                    row["task_states"],
                    json!({"finished": count}),
                    "every task finished, none failed"
                );
                assert_eq!(row["health"], "healthy", "{row}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "batch {framework_id} not finished within {TASKS_FINISHED_WAIT:?}: {row}, tasks {tasks:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.master_log).unwrap_or_default()
    }
}

/// `batch.wasm`'s config: `count` copies of the task module `task`.
/// A `wasmos master` running `allocator`, its stderr in `log`; and its HTTP address.
pub(crate) fn spawn_master_logged(
    endpoint: &str,
    store: &Path,
    allocator: &Path,
    log: &Path,
) -> (Killed, String) {
    let mut master = master_command()
        .args(["--listen", endpoint, "--http", "127.0.0.1:0"])
        .arg("--store-dir")
        .arg(store)
        .arg("--allocator")
        .arg(allocator)
        .stdout(Stdio::piped())
        .stderr(File::create(log).unwrap())
        .spawn()
        .unwrap();
    let stdout = master.stdout.take().unwrap();
    let master = Killed(master);
    // Other lines (the HTTP address) may come first; the rest is drained, so that the
    // master never writes into a closed pipe.
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    let listening = lines.find(|line| line.starts_with("listening on"));
    let http = lines
        .find_map(|line| line.strip_prefix("http on http://").map(str::to_owned))
        .unwrap_or_default();
    std::thread::spawn(move || lines.for_each(drop));
    assert_eq!(
        listening,
        Some(format!("listening on {endpoint}")),
        "master log: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    (master, http)
}

fn batch_config(task: &str, count: u32, sha256: &str, size: usize) -> String {
    format!(
        "name = {task}\ncount = {count}\ncpus = 0.1\nmem = 16\nmodule_sha256 = {sha256}\n\
         module_size = {size}\nmodule_name = {task}.wasm\n"
    )
}

/// A scheduler module written from executor-sdk/README.md's ABI alone, whose entry point
/// runs `body` (which leaves an `i64` answer).
fn abi_module(body: &str) -> String {
    format!(
        r#"(module
  (memory (export "memory") 1)
  (data (i32.const 0) "\ff\ff\ff\ff\ff\ff\ff\ff")
  (func (export "wasmos_abi_version") (result i32) i32.const 2)
  (func (export "wasmos_input") (param i32) (result i32)
    (select (i32.const 1024) (i32.const 0) (i32.le_u (local.get 0) (i32.const 60000))))
  (func (export "wasmos_scheduler_handle") (param i32) (result i64)
    {body}))"#
    )
}

#[test]
fn hosted_batch_scheduler_runs_its_tasks_to_finished_under_the_drf_module() {
    let cluster = Cluster::start(&module("drf"));
    let config = cluster.task_config("p1_hello", 3);
    let id = cluster
        .add(&module("batch"), "batch", Some(&config))
        .unwrap();

    let frameworks = cluster.rows(&["frameworks", "--json"]);
    let row = frameworks
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in `wasmos frameworks`: {frameworks:?}"));
    assert_eq!(row["name"], "batch");
    cluster.wait_batch_finished(&id, 3);

    // One name, one framework; removing it frees the name and tears it down.
    let again = cluster.add(&module("batch"), "batch", Some(&config));
    let refused = again.expect_err("a second framework named batch");
    assert!(refused.contains("the name \"batch\" is taken"), "{refused}");
    let removed = cluster.run(&["framework", "remove", "batch"]);
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&removed.stdout).trim(), id);
    assert!(cluster.rows(&["framework", "list", "--json"]).is_empty());
    let table = cluster.run(&["framework", "list"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("(none)"));
    let unknown = cluster.run(&["framework", "remove", "batch"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no hosted framework is named"));
}

#[test]
fn hostile_scheduler_modules_are_deactivated_and_the_master_keeps_serving() {
    let cluster = Cluster::start(Path::new("drf"));
    let hostile = [
        ("loop", "(loop $spin (br $spin)) i64.const 0", "fuel"),
        ("trap", "unreachable", "trapped"),
        // Eight 0xff bytes at address 0: no call decodes from them.
        ("garbage", "i64.const 8", "malformed"),
        (
            "membomb",
            "(loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable",
            "memory cap",
        ),
    ];
    let mut ids = Vec::new();
    for (name, body, _) in hostile {
        let path = cluster.dir.path().join(format!("{name}.wat"));
        std::fs::write(&path, abi_module(body)).unwrap();
        ids.push(cluster.add(&path, name, None).unwrap());
    }

    // A module that imports anything is refused when added, and the master serves on.
    let wasi = cluster.dir.path().join("wasi.wat");
    std::fs::write(
        &wasi,
        r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32))))"#,
    )
    .unwrap();
    let refused = cluster.add(&wasi, "wasi", None).unwrap_err();
    assert!(refused.contains("imports"), "{refused}");

    let deadline = Instant::now() + DEACTIVATED_WAIT;
    for ((name, _, error), id) in hostile.iter().zip(&ids) {
        let row = loop {
            let row = cluster.hosted(id);
            if row["health"] == "deactivated" {
                break row;
            }
            assert!(
                Instant::now() < deadline,
                "{name} not deactivated within {DEACTIVATED_WAIT:?}: {row}"
            );
            std::thread::sleep(Duration::from_millis(500));
        };
        assert_eq!(row["failures_total"], FAILURES_MAX, "{name}: {row}");
        let last_error = row["last_error"].as_str().unwrap_or_default();
        assert!(last_error.contains(error), "{name}: {last_error}");
    }
    let log = cluster.log();
    assert!(log.contains("scheduler module failed"), "{log}");
    // Each fault is also an entry of the operator log the API and the dashboard show.
    let state = cluster.http_get_json("/api/v1/state");
    let faults: Vec<&Value> = state["log"]
        .as_array()
        .map(|log| {
            log.iter()
                .filter(|e| e["kind"] == "scheduler_fault")
                .collect()
        })
        .unwrap_or_default();
    for id in &ids {
        assert!(
            faults.iter().any(|e| e["framework_id"] == id.as_str()),
            "no scheduler_fault entry for {id}: {faults:?}"
        );
    }

    // Every framework is still listed, and the master hosts and runs a new one.
    let frameworks = cluster.rows(&["frameworks", "--json"]);
    for id in &ids {
        assert!(frameworks.iter().any(|r| r["id"] == id.as_str()), "{id}");
    }
    let config = cluster.task_config("p1_hello", 2);
    let batch = cluster
        .add(&module("batch"), "batch", Some(&config))
        .unwrap();
    cluster.wait_batch_finished(&batch, 2);
    cluster.rows(&["agents", "--json"]);
}

#[test]
fn master_refuses_an_allocator_it_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    // WAT text: wasmtime takes it wherever it takes a binary.
    std::fs::write(dir.path().join("scheduler.wasm"), abi_module("unreachable")).unwrap();
    for (allocator, says) in [
        ("bestfit", "neither `drf` nor"),
        ("missing.wasm", "cannot read"),
        // A scheduler is not an allocator: it lacks the allocator's entry point.
        ("scheduler.wasm", "wasmos_allocator_allocate"),
    ] {
        let out = master_command()
            .current_dir(dir.path())
            .args(["--listen", &free_endpoint(), "--no-http"])
            .args(["--allocator", allocator, "--store-dir"])
            .arg(dir.path().join("store"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{allocator}: {stderr}");
        assert!(stderr.contains(says), "{allocator}: {stderr}");
    }
}

/// Runs `wasmos sim FILE`; exit 0 and the report.
fn sim(scenario: &Path) -> Value {
    let out = wasmos().arg("sim").arg(scenario).output().unwrap();
    assert!(
        out.status.success(),
        "{:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn sim_runs_a_scheduler_module_named_relative_to_the_scenario() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(module("batch"), dir.path().join("batch.wasm")).unwrap();
    // In a simulation tasks never run: any module hash does.
    let config = batch_config("job", 5, &"a".repeat(64), 1000);
    std::fs::write(dir.path().join("batch.conf"), config).unwrap();
    let scenario = dir.path().join("scenario.json");
    let json = json!({
        "agents": [
            {"id": "a1", "resources": {"cpus": 4, "mem": 4096}},
            {"id": "a2", "resources": {"cpus": 4, "mem": 4096}}
        ],
        "frameworks": [
            {"id": "batch", "scheduler": "batch.wasm", "config": "batch.conf"},
            {"id": "synth", "task": {"cpus": 1, "mem": 128}, "max_tasks": 2}
        ]
    });
    std::fs::write(&scenario, json.to_string()).unwrap();
    let report = sim(&scenario);
    assert_eq!(
        report["launched"],
        json!({"batch": 5, "synth": 2}),
        "{report}"
    );
    let placed: u64 = report["placements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["framework"] == "batch")
        .map(|p| p["tasks"].as_u64().unwrap())
        .sum();
    assert_eq!(placed, 5, "{report}");
}

#[test]
fn sim_survives_a_hostile_scheduler_module() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("trap.wat"), abi_module("unreachable")).unwrap();
    std::fs::write(dir.path().join("garbage.wat"), abi_module("i64.const 8")).unwrap();
    let scenario = dir.path().join("scenario.json");
    let json = json!({
        "agents": [{"id": "a1", "resources": {"cpus": 4, "mem": 4096}}],
        "frameworks": [
            {"id": "trap", "scheduler": "trap.wat"},
            {"id": "garbage", "scheduler": "garbage.wat"},
            {"id": "synth", "task": {"cpus": 1, "mem": 128}, "max_tasks": 3}
        ]
    });
    std::fs::write(&scenario, json.to_string()).unwrap();
    let report = sim(&scenario);
    assert_eq!(
        report["launched"],
        json!({"trap": 0, "garbage": 0, "synth": 3}),
        "{report}"
    );
}

#[test]
fn a_restarted_master_hosts_its_scheduler_modules_again_under_their_ids() {
    let drf = PathBuf::from("drf");
    let mut cluster = Cluster::start(&drf);
    let config = cluster.task_config("p1_hello", 2);
    let id = cluster
        .add(&module("batch"), "batch", Some(&config))
        .unwrap();
    cluster.wait_batch_finished(&id, 2);
    cluster.restart_master(&drf);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = cluster.run(&["framework", "list", "--json"]);
        let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(row) = rows.iter().find(|r| r["name"] == "batch") {
            assert_eq!(row["framework_id"], id.as_str(), "{rows:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "batch not hosted again: {}",
            cluster.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let frameworks = cluster.rows(&["frameworks", "--json"]);
    let row = frameworks.iter().find(|r| r["id"] == id.as_str());
    assert!(
        row.is_some_and(|r| r["connected"] == true),
        "{frameworks:?}"
    );
    // Removed, it stays removed across a restart.
    assert!(
        cluster
            .run(&["framework", "remove", "batch"])
            .status
            .success()
    );
    cluster.restart_master(&drf);
    std::thread::sleep(Duration::from_secs(3));
    assert!(cluster.rows(&["framework", "list", "--json"]).is_empty());
}
