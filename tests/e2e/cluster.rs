//! `wasmos master`, `wasmos agent --connect` and the client commands (`agents`, `ps`,
//! `frameworks` with `--json`, `run`, `logs`, `kill`) as separate processes over real
//! zenoh on loopback. With `WASMOS_E2E_SECURE=1` (`cargo xtask test` runs them so a
//! second time) the same tests run on a secure cluster: mutual TLS, the access control,
//! every process its own identity (`wasmos_tests::secure_mode`).

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmos_tests::secure_mode::{
    agent_command, cluster_endpoint as free_endpoint, http_auth_header, master_command,
    secure_cluster, tool,
};
use wasmos_tests::{Killed, module, spawn_master, wasmos};

/// How long the agent may take to show up in the master's listing.
const AGENT_LISTED_WAIT: Duration = Duration::from_secs(20);
/// How long a task deployed with `wasmos run` may take to reach a state (a generous bound
/// for a loaded CI machine, not a speed target).
const TASK_STATE_WAIT: Duration = Duration::from_secs(60);

pub(crate) fn start_master(endpoint: &str, store: &Path) -> Killed {
    let mut master = master_command();
    master
        .args([
            "--listen",
            endpoint,
            "--agent-lost-timeout",
            "1",
            // Tests run in parallel: each master serves HTTP on a port of its own.
            "--http",
            "127.0.0.1:0",
            "--store-dir",
        ])
        .arg(store)
        .stderr(Stdio::inherit());
    spawn_master(master, endpoint)
}

pub(crate) fn client(args: &[&str], endpoint: &str) -> Output {
    tool()
        .args(args)
        .args(["--connect", endpoint])
        .output()
        .unwrap()
}

/// `wasmos <args> --json`: exit 0 and a JSON array.
pub(crate) fn json_rows(args: &[&str], endpoint: &str) -> Vec<Value> {
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
    let identity = secure_cluster().map(|c| c.agent(None, Path::new(work_dir)));
    let advert = wasmos()
        .args(["agent", "--print-advert", "--work-dir", work_dir])
        .args(identity.iter().flatten())
        .output()
        .unwrap();
    let advert: Value = serde_json::from_slice(&advert.stdout).unwrap();
    let agent_id = advert["agent_id"].as_str().unwrap().to_owned();

    let _master = start_master(&endpoint, &dir.path().join("store"));
    let mut agent = Killed(
        wasmos()
            .args(["agent", "--connect", &endpoint, "--work-dir", work_dir])
            .args(identity.iter().flatten())
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
    // Disk is the free space of the work directory's file system, which other programs
    // change between the two adverts; cpus and memory stay put.
    for scalar in ["cpus", "mem"] {
        assert_eq!(
            row["total"]["scalars"][scalar], advert["total"]["scalars"][scalar],
            "the listed {scalar} are the advertised ones"
        );
    }
    assert!(
        row["total"]["scalars"]["cpus"].is_number(),
        "no cpus in {row}"
    );

    assert_eq!(json_rows(&["ps", "--json"], &endpoint), Vec::<Value>::new());
    let frameworks = json_rows(&["frameworks", "--json"], &endpoint);
    let names: Vec<&Value> = frameworks.iter().map(|f| &f["name"]).collect();
    assert_eq!(names, ["jobs"], "only the built-in jobs framework");
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
    let said = match secure_cluster() {
        None => format!(
            "no master answered at {endpoint}: start one with `wasmos up` or `wasmos master`, or pass --connect"
        ),
        Some(_) => format!(
            "no master answered at {endpoint} as {}: none runs there, or it does not admit \
             this identity",
            secure_cluster().map_or(String::new(), |c| c.identity("admin")[1]
                .to_string_lossy()
                .into_owned())
        ),
    };
    assert!(stderr.contains(&said), "{stderr}");
    // A bad zenoh configuration is named as such, not taken for a master away.
    let out = client(&["ps", "--zenoh-config", "/dev/zero"], &endpoint);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("zenoh configuration file /dev/zero: not a regular file"),
        "{stderr}"
    );
}

/// An agent process with `config` (TOML) in `work_dir`, and its id.
pub(crate) fn start_agent(
    endpoint: &str,
    work_dir: &Path,
    config: Option<&str>,
) -> (Killed, String) {
    let mut args: Vec<String> = vec!["--work-dir".into(), work_dir.to_str().unwrap().into()];
    if let Some(config) = config {
        let file = work_dir.with_extension("toml");
        std::fs::write(&file, config).unwrap();
        args.extend(["--config".into(), file.to_str().unwrap().into()]);
    }
    let configured = config.and_then(|c| {
        let rest = c.split("agent_id = \"").nth(1)?;
        rest.split('"').next()
    });
    let identity = secure_cluster().map(|c| c.agent(configured, work_dir));
    let advert = wasmos()
        .args(["agent", "--print-advert"])
        .args(identity.iter().flatten())
        .args(&args)
        .output()
        .unwrap();
    let advert: Value = serde_json::from_slice(&advert.stdout).unwrap();
    let agent_id = advert["agent_id"].as_str().unwrap().to_owned();
    let child = wasmos()
        .args(["agent", "--connect", endpoint])
        .args(identity.iter().flatten())
        .args(&args)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    (Killed(child), agent_id)
}

/// Polls `wasmos ps --json` until `ready` holds for the rows of `ids`; returns those rows.
pub(crate) fn wait_for_tasks(
    endpoint: &str,
    ids: &[String],
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + TASK_STATE_WAIT;
    loop {
        let rows = json_rows(&["ps", "--json"], endpoint);
        let ours: Vec<Value> = ids
            .iter()
            .filter_map(|id| rows.iter().find(|r| r["id"] == id.as_str()).cloned())
            .collect();
        if ours.len() == ids.len() && ours.iter().all(&ready) {
            return ours;
        }
        assert!(
            Instant::now() < deadline,
            "tasks {ids:?} not {what} within {TASK_STATE_WAIT:?}: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `wasmos run <args>`: exit 0, and the last `count` lines of stdout are the task ids.
pub(crate) fn run(args: &[&str], count: usize, endpoint: &str) -> Vec<String> {
    // `--connect` first: after `--` it would be an argument of the task.
    let out = tool()
        .args(["run", "--connect", endpoint])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "run {args:?}: {:?}, stdout: {stdout}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.ends_with('\n'), "ids end the output: {stdout:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= count, "{count} ids expected: {stdout:?}");
    let ids: Vec<String> = lines[lines.len() - count..]
        .iter()
        .map(|l| l.to_string())
        .collect();
    for id in &ids {
        assert!(
            !id.is_empty() && !id.contains(char::is_whitespace),
            "not a task id: {id:?} in {stdout:?}"
        );
    }
    ids
}

pub(crate) fn state_is(state: &'static str) -> impl Fn(&Value) -> bool {
    move |row| row["state"] == state
}

#[test]
fn run_deploys_through_the_jobs_framework_spreads_honours_constraints_and_kills() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = free_endpoint();
    let _master = start_master(&endpoint, &dir.path().join("store"));
    let (_plain, plain_id) = start_agent(&endpoint, &dir.path().join("plain"), None);
    let (_arm, arm_id) = start_agent(
        &endpoint,
        &dir.path().join("arm"),
        Some("[attributes]\narch = \"aarch64\"\nhas = \"camera\"\n"),
    );
    let deadline = Instant::now() + AGENT_LISTED_WAIT;
    while json_rows(&["agents", "--json"], &endpoint).len() < 2 {
        assert!(Instant::now() < deadline, "agents not listed in time");
        std::thread::sleep(Duration::from_millis(200));
    }
    let frameworks = json_rows(&["frameworks", "--json"], &endpoint);
    assert!(
        frameworks.iter().any(|f| f["name"] == "jobs"),
        "the master runs the jobs framework: {frameworks:?}"
    );

    // Two copies finish, one on each agent, and their output is there.
    let hello = module("p1_hello");
    let hello = hello.to_str().unwrap();
    let ids = run(&[hello, "--count", "2"], 2, &endpoint);
    assert_ne!(ids[0], ids[1]);
    let rows = wait_for_tasks(&endpoint, &ids, "finished", state_is("finished"));
    let mut agents: Vec<&str> = rows
        .iter()
        .map(|r| r["agent_id"].as_str().unwrap())
        .collect();
    agents.sort();
    let mut expected = vec![plain_id.as_str(), arm_id.as_str()];
    expected.sort();
    assert_eq!(agents, expected, "the copies spread over both agents");
    let logs = client(&["logs", &ids[0]], &endpoint);
    assert!(
        logs.status.success(),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("hello from p1"),
        "{}",
        String::from_utf8_lossy(&logs.stdout)
    );
    let full = String::from_utf8_lossy(&logs.stdout).into_owned();
    let last = client(&["logs", "--tail", "1", &ids[0]], &endpoint);
    let last = String::from_utf8_lossy(&last.stdout).into_owned();
    assert_eq!(last.lines().count(), 1, "{last:?}");
    assert!(full.ends_with(&last), "{last:?} is not the end of {full:?}");

    // A constraint only the second agent meets; `--wait` exits 0 once all finished.
    let arm = run(
        &[
            hello,
            "--count",
            "2",
            "--constraint",
            "arch=aarch64",
            "--name",
            "arm",
            "--wait",
        ],
        2,
        &endpoint,
    );
    for row in wait_for_tasks(&endpoint, &arm, "finished", state_is("finished")) {
        assert_eq!(row["agent_id"], arm_id.as_str(), "{row}");
    }
    // Operators and lists: `==`, `!=` and a comma list, with a second flag.
    let listed = run(
        &[
            hello,
            "--constraint",
            "arch==aarch64,has=camera",
            "--constraint",
            "os!=windows",
            "--name",
            "listed",
            "--wait",
        ],
        1,
        &endpoint,
    );
    for row in wait_for_tasks(&endpoint, &listed, "finished", state_is("finished")) {
        assert_eq!(row["agent_id"], arm_id.as_str(), "{row}");
    }

    // A task that fails: `--wait` says so with exit 1; ids still end stdout.
    let exit3 = module("p1_exit3");
    let out = client(&["run", exit3.to_str().unwrap(), "--wait"], &endpoint);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let failed_id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_owned();
    wait_for_tasks(&endpoint, &[failed_id], "failed", state_is("failed"));

    // A long task is killed and stays killed.
    let spin = module("p1_spin");
    let spin_ids = run(&[spin.to_str().unwrap()], 1, &endpoint);
    wait_for_tasks(&endpoint, &spin_ids, "running", state_is("running"));
    let kill = client(&["kill", &spin_ids[0]], &endpoint);
    assert!(
        kill.status.success(),
        "{}",
        String::from_utf8_lossy(&kill.stderr)
    );
    wait_for_tasks(&endpoint, &spin_ids, "killed", state_is("killed"));
    // `--history N` keeps the N most recently ended, the kill first.
    let recent = json_rows(&["ps", "--json", "--history", "1"], &endpoint);
    let ended: Vec<&Value> = recent
        .iter()
        .filter(|r| {
            !matches!(
                r["state"].as_str(),
                Some("running" | "pending" | "staging" | "starting")
            )
        })
        .collect();
    assert_eq!(ended.len(), 1, "{recent:?}");
    assert_eq!(ended[0]["id"], spin_ids[0].as_str());

    // Mistakes fail before anything is sent, saying what to do.
    for constraint in [
        "arch",
        "arch<5",
        "arch!x86_64",
        "arch=aarch64,",
        "arch = aarch64",
    ] {
        let bad = client(&["run", hello, "--constraint", constraint], &endpoint);
        assert_eq!(bad.status.code(), Some(1), "{constraint}");
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(stderr.contains("--constraint KEY=VALUE"), "{stderr}");
        assert!(stderr.contains("key!=value"), "{stderr}");
        assert!(stderr.contains(&format!("{constraint:?}")), "{stderr}");
    }
    // What the jobs framework checks, the CLI checks before uploading, field named.
    let refused = client(&["run", hello, "--cpus", "0"], &endpoint);
    assert_eq!(refused.status.code(), Some(1));
    assert!(refused.stdout.is_empty(), "no ids for a refused job");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("the job was refused: cpus must be at least 0.001"),
        "{stderr}"
    );
    let missing = client(&["run", "/nonexistent/module.wasm"], &endpoint);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no module at /nonexistent/module.wasm")
    );
}

/// How long an agent may take to say it waits, and to stop on a signal (generous bounds
/// for a loaded machine, not speed targets).
const AGENT_SAYS_WAIT: Duration = Duration::from_secs(30);

#[test]
fn an_agent_without_a_master_says_it_waits_and_stops_on_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = free_endpoint(); // nothing listens there
    for signal in ["-INT", "-TERM"] {
        let mut child = agent_command(None, dir.path())
            .args(["--connect", &endpoint, "--work-dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (lines_tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = lines_tx.send(line);
            }
        });
        let said = loop {
            let line = lines
                .recv_timeout(AGENT_SAYS_WAIT)
                .expect("the agent says it waits");
            if line.contains("waiting for a master at") {
                break line;
            }
        };
        assert!(said.contains(&endpoint), "{said}");
        let sent = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + AGENT_SAYS_WAIT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the agent ignored SIG{}", &signal[1..]);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{signal}: {status:?}");
    }
}

/// Regression: a jobs framework that could not write its state (a full disk) launched
/// tasks anyway, which a restarted master would not know to keep or replace.
#[test]
fn the_jobs_framework_launches_nothing_until_its_state_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = free_endpoint();
    let store = dir.path().join("store");
    let _master = start_master(&endpoint, &store);
    let (_agent, _) = start_agent(&endpoint, &dir.path().join("agent"), None);
    let state = dir.path().join("store.state/frameworks");
    let deadline = Instant::now() + TASK_STATE_WAIT;
    while !state.join("jobs.id").exists() {
        assert!(
            Instant::now() < deadline,
            "the jobs framework never subscribed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The state is written through `jobs.state.tmp`: a directory there fails every write,
    // even as root. (The file is there for a moment while the framework writes.)
    let staging = state.join("jobs.state.tmp");
    while let Err(e) = std::fs::create_dir(&staging) {
        assert!(Instant::now() < deadline, "{}: {e}", staging.display());
        std::thread::sleep(Duration::from_millis(10));
    }
    let hello = module("p1_hello");
    let ids = run(&[hello.to_str().unwrap()], 1, &endpoint);
    wait_for_tasks(&endpoint, &ids, "pending", state_is("pending"));
    // The agent's offer comes and is declined while the state cannot be written.
    std::thread::sleep(Duration::from_secs(3));
    let rows = wait_for_tasks(&endpoint, &ids, "pending", |_| true);
    assert_eq!(rows[0]["state"], "pending", "{rows:?}");
    let reason = rows[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("the jobs state cannot be written"),
        "{reason}"
    );
    // Meanwhile a new job is refused: a master restarted now would not know it.
    let refused = tool()
        .args(["run", "--connect", &endpoint])
        .arg(&hello)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("the jobs state cannot be written"),
        "{stderr}"
    );
    std::fs::remove_dir(&staging).unwrap();
    wait_for_tasks(&endpoint, &ids, "finished", state_is("finished"));
    assert!(state.join("jobs.state.json").exists());
}

#[test]
fn a_task_that_cannot_be_placed_is_listed_pending_and_can_be_killed() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = free_endpoint();
    let _master = start_master(&endpoint, &dir.path().join("store"));
    let (_agent, _) = start_agent(&endpoint, &dir.path().join("agent"), None);
    let hello = module("p1_hello");
    let ids = run(
        &[hello.to_str().unwrap(), "--constraint", "arch=riscv64"],
        1,
        &endpoint,
    );
    let rows = wait_for_tasks(&endpoint, &ids, "pending", state_is("pending"));
    let reason = rows[0]["reason"].as_str().unwrap();
    assert!(reason.contains("arch=riscv64"), "{reason}");
    assert_eq!(rows[0]["id"], ids[0].as_str());
    // It has written nothing yet: `logs` says so (and `logs -f` would wait for it).
    let logs = client(&["logs", &ids[0]], &endpoint);
    assert!(logs.status.success());
    assert!(logs.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&logs.stderr).contains("is pending"),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    // An image for another architecture waits for an agent of that architecture.
    let (other_oci, other_arch) = match std::env::consts::ARCH {
        "aarch64" => ("amd64", "x86_64"),
        _ => ("arm64", "aarch64"),
    };
    let image = dir.path().join("foreign-image");
    wasmos_tests::oci_image::write_layout_for(&image, &[], &["/bin/true"], other_oci);
    let out = tool()
        .args([
            "run",
            "--connect",
            &endpoint,
            "--oci",
            image.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("placing it on agents with arch={other_arch}")),
        "{stderr}"
    );
    let oci_id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let rows = wait_for_tasks(
        &endpoint,
        std::slice::from_ref(&oci_id),
        "pending",
        state_is("pending"),
    );
    let reason = rows[0]["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("arch={other_arch}")), "{reason}");

    let kill = client(&["kill", &ids[0]], &endpoint);
    assert!(
        kill.status.success(),
        "{}",
        String::from_utf8_lossy(&kill.stderr)
    );
    let deadline = Instant::now() + TASK_STATE_WAIT;
    while json_rows(&["ps", "--json"], &endpoint)
        .iter()
        .any(|r| r["id"] == ids[0].as_str())
    {
        assert!(
            Instant::now() < deadline,
            "the killed pending task is still listed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn run_wait_keeps_waiting_through_a_master_restart() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = free_endpoint();
    let store = dir.path().join("store");
    let mut master = start_master(&endpoint, &store);
    let (_agent, _) = start_agent(&endpoint, &dir.path().join("agent"), None);
    let spin = module("p1_spin");
    let waiting = tool()
        .args([
            "run",
            "--connect",
            &endpoint,
            spin.to_str().unwrap(),
            "--wait",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TASK_STATE_WAIT;
    let task = loop {
        let rows = json_rows(&["ps", "--json"], &endpoint);
        if let Some(row) = rows.iter().find(|r| r["state"] == "running") {
            break row["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the task never ran: {rows:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    master.0.kill().unwrap();
    master.0.wait().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let _master = start_master(&endpoint, &store);
    wait_for_tasks(
        &endpoint,
        std::slice::from_ref(&task),
        "running",
        state_is("running"),
    );
    let kill = client(&["kill", &task], &endpoint);
    assert!(
        kill.status.success(),
        "{}",
        String::from_utf8_lossy(&kill.stderr)
    );
    let out = waiting.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "killed, not finished: {stderr}");
    assert!(stderr.contains("still waiting for the tasks"), "{stderr}");
    assert!(stderr.contains("the master answers again"), "{stderr}");
    assert!(stderr.contains(&format!("{task}: killed")), "{stderr}");
}

#[test]
fn an_agent_stopped_with_sigterm_leaves_at_once_with_its_task_killed() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = free_endpoint();
    // A lost timeout far longer than the waits below: the agent must say it leaves.
    let mut master = master_command();
    master
        .args(["--listen", &endpoint, "--agent-lost-timeout", "600"])
        .args(["--http", "127.0.0.1:0", "--store-dir"])
        .arg(dir.path().join("store"))
        .stderr(Stdio::inherit());
    let _master = spawn_master(master, &endpoint);
    let (agent, agent_id) = start_agent(&endpoint, &dir.path().join("agent"), None);
    let spin = module("p1_spin");
    let ids = run(&[spin.to_str().unwrap()], 1, &endpoint);
    wait_for_tasks(&endpoint, &ids, "running", state_is("running"));
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let rows = wait_for_tasks(&endpoint, &ids, "killed", state_is("killed"));
    // Not "killed" as an operator's kill says: a scheduler may start it again.
    assert_eq!(rows[0]["reason"], "agent stopped", "{rows:?}");
    let deadline = Instant::now() + TASK_STATE_WAIT;
    loop {
        let agents = json_rows(&["agents", "--json"], &endpoint);
        let row = agents.iter().find(|a| a["id"] == agent_id.as_str());
        if row.is_some_and(|a| a["state"] == "lost") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not leave: {agents:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_second_agent_with_a_live_agent_s_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = free_endpoint();
    let _master = start_master(&endpoint, &dir.path().join("store"));
    let config = "agent_id = \"board1\"\n";
    let (first, id) = start_agent(&endpoint, &dir.path().join("first"), Some(config));
    assert_eq!(id, "board1");
    let deadline = Instant::now() + AGENT_LISTED_WAIT;
    while json_rows(&["agents", "--json"], &endpoint).is_empty() {
        assert!(Instant::now() < deadline, "agent not listed in time");
        std::thread::sleep(Duration::from_millis(200));
    }
    let second_dir = dir.path().join("second");
    let second_config = second_dir.with_extension("toml");
    std::fs::write(&second_config, config).unwrap();
    let second = agent_command(Some("board1"), &second_dir)
        .args(["--connect", &endpoint, "--work-dir"])
        .arg(&second_dir)
        .arg("--config")
        .arg(&second_config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("agent id \"board1\" is held by another agent"),
        "{stderr}"
    );
    let agents = json_rows(&["agents", "--json"], &endpoint);
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(agents[0]["state"], "active", "{agents:?}");

    // The same agent restarted at once after SIGKILL takes its id back.
    let mut first = first;
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let (_again, again_id) = start_agent(&endpoint, &dir.path().join("first"), Some(config));
    assert_eq!(again_id, "board1");
    let deadline = Instant::now() + AGENT_LISTED_WAIT;
    loop {
        let agents = json_rows(&["agents", "--json"], &endpoint);
        if agents
            .iter()
            .any(|a| a["id"] == "board1" && a["state"] == "active")
            && agents.len() == 1
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted agent is not back: {agents:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn malformed_arguments_are_refused_at_once_in_plain_words() {
    let cases: [(&[&str], &str); 8] = [
        (
            &["ps", "--connect", "garbage"],
            "endpoint \"garbage\": no protocol",
        ),
        (&["ps", "--connect", "tcp/"], "endpoint \"tcp/\": no port"),
        (
            &["agents", "--connect", "http://127.0.0.1:7447"],
            "unknown protocol",
        ),
        (
            &["agent", "--connect", "tcp/127.0.0.1:99999"],
            "is not 1 to 65535",
        ),
        (
            &["run", "m.wasm", "--cpus", "NaN"],
            "\"NaN\" is not a finite number",
        ),
        (
            &["run", "m.wasm", "--cpus", "inf"],
            "\"inf\" is not a finite number",
        ),
        (
            &["task", "run", "m.wasm", "--timeout=-1"],
            "must be greater than 0",
        ),
        (
            &["master", "--role-weight", "analytics"],
            "is not ROLE=WEIGHT",
        ),
    ];
    for (args, says) in cases {
        let out = wasmos().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains(".cargo/registry"), "{args:?}: {stderr}");
    }
}

#[test]
fn run_without_a_master_says_to_start_one() {
    let endpoint = free_endpoint();
    let hello = module("p1_hello");
    let out = client(&["run", hello.to_str().unwrap()], &endpoint);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no ids without a master");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = match secure_cluster() {
        None => "start one with `wasmos up`",
        Some(_) => "none runs there, or it does not admit this identity",
    };
    assert!(stderr.contains(said), "{stderr}");
}

/// Why this machine runs no OCI tasks, if it does not (the same check as the fleet tests').
fn runc_unusable() -> Option<String> {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    });
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("runc").is_file()));
    match (root, on_path) {
        (false, _) => Some("not root".into()),
        (_, false) => Some("runc is not on PATH".into()),
        _ => None,
    }
}

#[test]
fn run_oci_image_runs_the_given_command_in_place_of_the_image_s() {
    if let Some(why) = runc_unusable() {
        println!("skipped: the agent runs no OCI tasks here ({why})");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("busybox");
    wasmos_tests::oci_image::busybox_layout(&image, &["sh", "-c", "exit 0"]);
    let endpoint = free_endpoint();
    let _master = start_master(&endpoint, &dir.path().join("store"));
    let (_agent, agent_id) = start_agent(&endpoint, &dir.path().join("agent"), None);
    let image = image.to_str().unwrap();
    let ids = run(
        &[
            "--oci",
            image,
            "--cpus",
            "0.5",
            "--",
            "sh",
            "-c",
            "echo from the container; exit 7",
        ],
        1,
        &endpoint,
    );
    let rows = wait_for_tasks(&endpoint, &ids, "failed", state_is("failed"));
    assert_eq!(rows[0]["agent_id"], agent_id.as_str());
    assert_eq!(rows[0]["exit_code"], 7, "{}", rows[0]);
    let logs = client(&["logs", &ids[0]], &endpoint);
    let stdout = String::from_utf8_lossy(&logs.stdout);
    assert!(stdout.contains("from the container"), "logs: {stdout}");
}

/// The highest `tick N` line in `text`.
fn last_tick(text: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.trim_end().strip_prefix("tick ")?.parse().ok())
        .max()
}

/// Reads lines until one is `tick {n}` or more; panics on the end of the stream.
fn read_until_tick(lines: &mut impl Iterator<Item = std::io::Result<String>>, n: u64, who: &str) {
    for line in lines.by_ref() {
        let line = line.unwrap_or_else(|e| panic!("{who}: {e}"));
        if last_tick(&line).is_some_and(|t| t >= n) {
            return;
        }
    }
    panic!("{who} ended before tick {n}");
}

/// `wasmos logs -f ID`, and the lines it prints.
fn follow_logs(
    id: &str,
    endpoint: &str,
    stderr: Stdio,
) -> (
    Killed,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
) {
    use std::io::BufRead;
    let mut follower = Killed(
        tool()
            .args(["logs", "-f", id, "--connect", endpoint])
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    );
    let stdout = follower.0.stdout.take().unwrap();
    (follower, std::io::BufReader::new(stdout).lines())
}

/// Waits (bounded) for a process that should end by itself.
fn wait_for_exit(process: &mut Killed) -> std::process::ExitStatus {
    let deadline = Instant::now() + TASK_STATE_WAIT;
    loop {
        if let Some(status) = process.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the process did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What `wasmos logs` (no follow) shows now: its highest tick.
fn ticks_now(id: &str, endpoint: &str) -> u64 {
    let out = client(&["logs", id], endpoint);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    last_tick(&text).unwrap_or_else(|| panic!("no tick in {text:?}"))
}

#[test]
fn logs_follow_a_running_task_from_the_cli_and_http_until_it_ends() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let endpoint = free_endpoint();
    let http = format!("127.0.0.1:{}", wasmos_tests::free_port());
    let mut master = master_command();
    master
        .args([
            "--listen",
            &endpoint,
            "--http",
            &http,
            "--agent-lost-timeout",
            "1",
            "--store-dir",
        ])
        .arg(dir.path().join("store"))
        .stderr(Stdio::inherit());
    let _master = spawn_master(master, &endpoint);
    let (mut agent, _) = start_agent(&endpoint, &dir.path().join("agent"), None);
    let ticks = module("p1_ticks");
    let ids = run(
        &[ticks.to_str().unwrap(), "--", "100000", "50"],
        1,
        &endpoint,
    );
    let id = ids[0].as_str();
    wait_for_tasks(&endpoint, &ids, "running", state_is("running"));

    // The CLI follower goes on printing: ticks written after a later snapshot arrive.
    let (mut follower, mut followed) = follow_logs(id, &endpoint, Stdio::inherit());
    read_until_tick(&mut followed, 0, "logs -f");
    let seen = ticks_now(id, &endpoint);
    read_until_tick(&mut followed, seen + 3, "logs -f");

    // So does HTTP's `?follow=true`, as one streamed response.
    let mut stream = std::net::TcpStream::connect(&http).unwrap();
    stream.set_read_timeout(Some(TASK_STATE_WAIT)).unwrap();
    write!(
        stream,
        "GET /api/v1/tasks/{id}/logs?follow=true&stream=stdout HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
        http_auth_header()
    )
    .unwrap();
    let mut response = BufReader::new(stream);
    let mut status = String::new();
    response.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut body = response.lines();
    read_until_tick(&mut body, 0, "HTTP follow");
    let seen = ticks_now(id, &endpoint);
    read_until_tick(&mut body, seen + 3, "HTTP follow");

    // Both end when the task does.
    let killed = client(&["kill", id], &endpoint);
    assert!(
        killed.status.success(),
        "{}",
        String::from_utf8_lossy(&killed.stderr)
    );
    let exit = wait_for_exit(&mut follower);
    assert!(exit.success(), "logs -f: {exit:?}");
    for line in body {
        line.expect("the followed response ends when the task does");
    }

    // A follower of a task lost with its agent stops, and says how the task ended.
    let ids = run(
        &[ticks.to_str().unwrap(), "--", "100000", "50"],
        1,
        &endpoint,
    );
    let (mut follower, mut followed) = follow_logs(&ids[0], &endpoint, Stdio::piped());
    read_until_tick(&mut followed, 0, "logs -f");
    agent.kill();
    assert!(wait_for_exit(&mut follower).success());
    let mut said = String::new();
    std::io::Read::read_to_string(&mut follower.0.stderr.take().unwrap(), &mut said).unwrap();
    assert!(said.contains("ended lost"), "{said}");

    // An unknown task is an error at once, even to a follower.
    let out = client(&["logs", "-f", "no-such-task"], &endpoint);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no task no-such-task"));

    // An OCI image that is not here is refused before anything is sent.
    let out = tool()
        .args(["run", "--connect", &endpoint, "--oci", "/no/such/image"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no OCI image layout at /no/such/image"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Lines of `file` (a process's stderr) that contain every one of `words`, waiting up
/// to [`TASK_STATE_WAIT`] for one.
fn wait_for_line(file: &Path, words: &[&str]) -> String {
    let deadline = Instant::now() + TASK_STATE_WAIT;
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| words.iter().all(|w| l.contains(w))) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no line with {words:?} within {TASK_STATE_WAIT:?} in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_agent_without_its_master_restarts_a_task_in_place_and_the_new_master_takes_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = free_endpoint();
    let store = dir.path().join("store");
    let mut master = start_master(&endpoint, &store);
    let work_dir = dir.path().join("agent");
    let log = dir.path().join("agent.log");
    let _agent = agent_logging_to(&endpoint, &work_dir, &log);
    // Ends (finished) every 2 s; `always` starts it again.
    let ticks = module("p1_ticks");
    let ids = run(
        &[
            ticks.to_str().unwrap(),
            "--restart",
            "always",
            "--",
            "10",
            "200",
        ],
        1,
        &endpoint,
    );
    let task = &ids[0];
    wait_for_tasks(&endpoint, &ids, "running", state_is("running"));
    master.kill();

    // No master: the agent starts the finished task again itself, under its id.
    let line = wait_for_line(&log, &["restarting a task in place", task]);
    assert!(line.contains("starts=2"), "{line}");

    // A new master learns the task from the agent's advert: one task, the same id.
    let _master = start_master(&endpoint, &store);
    let deadline = Instant::now() + TASK_STATE_WAIT;
    let row = loop {
        let rows = json_rows(&["ps", "--json"], &endpoint);
        if let Some(row) = rows.iter().find(|r| r["id"] == task.as_str()) {
            assert_eq!(rows.len(), 1, "no duplicate: {rows:?}");
            break row.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the new master never listed {task}: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let state = row["state"].as_str().unwrap_or_default();
    assert!(
        ["starting", "running", "finished"].contains(&state),
        "{row}"
    );
    if state != "finished" {
        let reason = row["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("restarted in place"), "{row}");
    }
}

#[test]
fn lost_after_and_on_reconnect_are_checked_by_run() {
    let bad = client(
        &["run", "x.wasm", "--lost-after", "soon"],
        "tcp/127.0.0.1:1",
    );
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("is not a duration such as 90s"), "{stderr}");
    let alone = client(
        &["run", "x.wasm", "--on-reconnect", "keep-replacement"],
        "tcp/127.0.0.1:1",
    );
    assert_eq!(
        alone.status.code(),
        Some(2),
        "--on-reconnect needs --lost-after"
    );
}

/// An agent process working in `work_dir` at `endpoint`, its stderr in `log`.
fn agent_logging_to(endpoint: &str, work_dir: &Path, log: &Path) -> Killed {
    Killed(
        agent_command(None, work_dir)
            .args(["--connect", endpoint, "--work-dir"])
            .arg(work_dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn an_agent_restarted_while_no_master_answers_starts_its_tasks_again_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = free_endpoint();
    let store = dir.path().join("store");
    let mut master = start_master(&endpoint, &store);
    let work_dir = dir.path().join("agent");
    let mut agent = agent_logging_to(&endpoint, &work_dir, &dir.path().join("before.log"));
    let ticks = module("p1_ticks");
    let ids = run(
        &[
            ticks.to_str().unwrap(),
            "--restart",
            "always",
            "--",
            "100000",
            "100",
        ],
        1,
        &endpoint,
    );
    let task = &ids[0];
    wait_for_tasks(&endpoint, &ids, "running", state_is("running"));

    // The device reboots while its master is down.
    master.kill();
    agent.kill();
    let log = dir.path().join("after.log");
    let _agent = agent_logging_to(&endpoint, &work_dir, &log);
    wait_for_line(&log, &["no master answers; the agent starts on its own"]);
    let line = wait_for_line(&log, &["restarting a task in place", task]);
    assert!(line.contains("starts=2"), "{line}");

    // The master comes back: the agent joins and its task is the same task, running.
    let _master = start_master(&endpoint, &store);
    let rows = wait_for_tasks(
        &endpoint,
        std::slice::from_ref(task),
        "running",
        state_is("running"),
    );
    let reason = rows[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("restarted in place"), "{}", rows[0]);
    assert!(reason.contains("agent restarted"), "{}", rows[0]);
    let all = json_rows(&["ps", "--json"], &endpoint);
    assert_eq!(all.len(), 1, "no duplicate: {all:?}");
    let logs = client(&["logs", task], &endpoint);
    let out = String::from_utf8_lossy(&logs.stdout);
    assert!(logs.status.success() && out.contains("tick 1"), "{out}");
}
