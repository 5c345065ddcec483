//! `wasmos deploy FILE` and `wasmos job …` against real processes: a declared job
//! becomes healthy, the same file twice changes nothing, a version that fails is reverted
//! (exit 1), `count` alone scales in place, and a master killed with SIGKILL in the
//! middle of a rollout is restarted and goes on with it, without a duplicated copy.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmos_tests::module;
use wasmos_tests::secure_mode::cluster_endpoint as free_endpoint;

use crate::cluster::{client, start_agent, start_master};

/// A generous bound for a loaded 2-core machine, not a speed claim.
const STEP_WAIT: Duration = Duration::from_secs(90);

/// A job file of `count` copies of p1_sleep (`sleep_ms`), or of `module`.
fn job_file(
    dir: &Path,
    file: &str,
    module_name: &str,
    sleep_ms: u64,
    count: u32,
    update: &str,
) -> String {
    let path = dir.join(file);
    let text = format!(
        "name = \"svc\"\nmodule = {:?}\nargs = [\"{sleep_ms}\"]\ncount = {count}\ncpus = 0.1\nmem = 32\nrestart = \"always\"\n[update]\n{update}\n",
        module(module_name).to_str().unwrap()
    );
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn deploy(file: &str, endpoint: &str, detach: bool) -> Output {
    let mut args = vec!["deploy", file];
    if detach {
        args.push("--detach");
    }
    client(&args, endpoint)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn job_status(endpoint: &str) -> Value {
    let out = client(&["job", "status", "svc", "--json"], endpoint);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Tasks of the job not ended, from `wasmos ps --json`.
fn live_tasks(endpoint: &str) -> Vec<Value> {
    crate::cluster::json_rows(&["ps", "--json"], endpoint)
        .into_iter()
        .filter(|r| r["name"] == "svc")
        .filter(|r| {
            ["staging", "starting", "running", "pending"]
                .contains(&r["state"].as_str().unwrap_or(""))
        })
        .collect()
}

fn wait_until(what: &str, endpoint: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + STEP_WAIT;
    loop {
        let out = client(&["job", "status", "svc", "--json"], endpoint);
        if out.status.success() {
            let status: Value = serde_json::from_slice(&out.stdout).unwrap();
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "not {what} within {STEP_WAIT:?}: {status:#}"
            );
        }
        assert!(Instant::now() < deadline, "not {what}: {}", stderr(&out));
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn deploy_becomes_healthy_reverts_a_failing_version_and_scales_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = free_endpoint();
    let _master = start_master(&endpoint, &dir.path().join("store"));
    let (_agent, _) = start_agent(&endpoint, &dir.path().join("agent"), None);
    let update =
        "canary = 1\nmin_healthy_ms = 1000\nhealthy_deadline_ms = 30000\nauto_revert = true";
    let good = job_file(dir.path(), "good.toml", "p1_sleep", 300_000, 2, update);

    let out = deploy(&good, &endpoint, false);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("job svc: version 1 healthy, 2 copies"),
        "{}",
        stderr(&out)
    );
    let out = deploy(&good, &endpoint, false);
    assert!(
        out.status.success() && stderr(&out).contains("unchanged"),
        "{}",
        stderr(&out)
    );

    // A module that exits 3: its canary fails, version 2 is reverted to version 1's task.
    let bad = job_file(dir.path(), "bad.toml", "p1_exit3", 300_000, 2, update);
    let out = deploy(&bad, &endpoint, false);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("version 2 failed") && said.contains("reverting to version 3"),
        "{said}"
    );
    let status = wait_until("reverted", &endpoint, |s| {
        s["summary"]["stable_version"] == 3
    });
    assert_eq!(status["versions"][1]["state"], "failed", "{status:#}");
    assert_eq!(status["versions"][0]["reverts_to"], 1);
    assert_eq!(live_tasks(&endpoint).len(), 2);

    // Count alone: in place, no new version.
    let more = job_file(dir.path(), "more.toml", "p1_sleep", 300_000, 3, update);
    let out = deploy(&more, &endpoint, false);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("updated in place: version 3"),
        "{}",
        stderr(&out)
    );
    let status = job_status(&endpoint);
    assert_eq!(status["summary"]["healthy"], 3);
    assert_eq!(live_tasks(&endpoint).len(), 3);
    let history = client(&["job", "history", "svc"], &endpoint);
    let history = String::from_utf8_lossy(&history.stdout);
    for event in ["deployed", "succeeded", "failed", "reverting", "updated"] {
        assert!(history.contains(event), "{event} not in\n{history}");
    }
    let list = crate::cluster::json_rows(&["job", "list", "--json"], &endpoint);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["state"], "running");
}

#[test]
fn a_master_killed_in_the_middle_of_a_rollout_goes_on_with_it_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = free_endpoint();
    let store = dir.path().join("store");
    let mut master = start_master(&endpoint, &store);
    let (_agent, _) = start_agent(&endpoint, &dir.path().join("agent"), None);
    let update = "min_healthy_ms = 4000\nhealthy_deadline_ms = 60000";
    let v1 = job_file(dir.path(), "v1.toml", "p1_sleep", 300_000, 3, update);
    let out = deploy(&v1, &endpoint, false);
    assert!(out.status.success(), "{}", stderr(&out));

    let v2 = job_file(dir.path(), "v2.toml", "p1_sleep", 200_000, 3, update);
    let out = deploy(&v2, &endpoint, true);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until("rolling", &endpoint, |s| {
        s["summary"]["rollout"]["new_placed"].as_u64() >= Some(1)
    });
    master.kill();
    let _master = start_master(&endpoint, &store);

    let status = wait_until("rolled out after the restart", &endpoint, |s| {
        s["summary"]["stable_version"] == 2
    });
    assert_eq!(status["summary"]["healthy"], 3, "{status:#}");
    let live = live_tasks(&endpoint);
    assert_eq!(live.len(), 3, "exactly the copies run: {live:#?}");
    for copy in status["copies"].as_array().unwrap() {
        assert_eq!(copy["version"], 2, "{status:#}");
    }
}

fn explain(subject: &str, endpoint: &str) -> Value {
    let out = client(&["explain", subject, "--json"], endpoint);
    assert!(out.status.success(), "explain {subject}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Polls `wasmos explain SUBJECT --json` until `done` holds for it.
fn explained(subject: &str, endpoint: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + STEP_WAIT;
    loop {
        let e = explain(subject, endpoint);
        if done(&e) {
            return e;
        }
        assert!(Instant::now() < deadline, "explain {subject}: {e:#}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn explain_says_why_copies_wait_in_words_and_per_agent() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = free_endpoint();
    let _master = start_master(&endpoint, &dir.path().join("store"));
    let (_agent, agent_id) = start_agent(&endpoint, &dir.path().join("agent"), None);
    let write = |name: &str, module_name: &str, extra: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        let text = format!(
            "name = \"{name}\"\nmodule = {:?}\nargs = [\"300000\"]\nmem = 16\n{extra}\n",
            module(module_name).to_str().unwrap()
        );
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let arm = write(
        "arm",
        "p1_sleep",
        "count = 2\nconstraints = [\"arch=riscv64\"]",
    );
    let huge = write("huge", "p1_sleep", "count = 1\ncpus = 512");
    let flaky = write(
        "flaky",
        "p1_exit3",
        "count = 1\nrestart = \"always\"\n[quarantine]\nfailures = 2\nwindow_ms = 60000\nbackoff_ms = 120000",
    );
    let fine = write(
        "fine",
        "p1_sleep",
        "count = 1\n[update]\nmin_healthy_ms = 500\nhealthy_deadline_ms = 60000",
    );
    let everywhere = write(
        "everywhere",
        "p1_sleep",
        "per_agent = 1\nconstraints = [\"arch=riscv64\"]",
    );
    for file in [&arm, &huge, &flaky, &everywhere] {
        let out = deploy(file, &endpoint, true);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert!(deploy(&fine, &endpoint, false).status.success());

    let e = explained("arm", &endpoint, |e| {
        e["copies"].as_array().is_some_and(|c| c.len() == 2)
    });
    let summary = e["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("job arm: 0 of 2 running; 2 wait:"),
        "{summary}"
    );
    assert!(summary.contains("arch=riscv64"), "{summary}");
    assert_eq!(
        e["copies"][0]["agents"][0]["fit"]["constraint"]["constraint"], "arch=riscv64",
        "{e:#}"
    );

    // A per-agent job without a copy says why no agent takes one.
    let e = explain("everywhere", &endpoint);
    let summary = e["summary"].as_str().unwrap();
    assert!(
        summary.contains("no agent takes a copy") && summary.contains("arch=riscv64"),
        "{summary}"
    );

    // The shortfall matches the agent's free cpus as the master lists them.
    let e = explain("huge", &endpoint);
    let short = &e["copies"][0]["agents"][0]["fit"]["short"];
    assert_eq!(short["resource"], "cpus", "{e:#}");
    assert_eq!(short["need"], 512.0);
    let agents = crate::cluster::json_rows(&["agents", "--json"], &endpoint);
    let row = agents
        .iter()
        .find(|a| a["id"] == agent_id.as_str())
        .unwrap();
    let free = row["free"]["scalars"]["cpus"].as_f64().unwrap();
    assert!(
        (short["free"].as_f64().unwrap() - free).abs() < 0.01,
        "{short} vs {row}"
    );
    assert!(e["summary"].as_str().unwrap().contains("closest"), "{e:#}");

    // Failing twice quarantines the agent for the job; explain says so.
    let e = explained("flaky", &endpoint, |e| {
        e["copies"][0]["agents"][0]["fit"]["quarantined"].is_object()
    });
    assert!(
        e["summary"].as_str().unwrap().contains("quarantined"),
        "{e:#}"
    );
    let status = crate::cluster::json_rows(&["job", "list", "--json"], &endpoint);
    assert!(status.iter().any(|j| j["name"] == "flaky"));

    // A running task is explained by its own row.
    let running = crate::cluster::json_rows(&["ps", "--json"], &endpoint);
    let task = running
        .iter()
        .find(|r| r["name"] == "fine" && r["state"] == "running")
        .unwrap();
    let e = explain(task["id"].as_str().unwrap(), &endpoint);
    assert_eq!(e["summary"], format!("running on {agent_id}"));
    let out = client(&["explain", "nothing-here"], &endpoint);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no task or job nothing-here"),
        "{}",
        stderr(&out)
    );
}

/// The dashboard shows declared jobs with their rollout, and on a waiting task why it
/// waits (headless Chromium, as the HTTP crate's dashboard test does; without tokens, so
/// not on a secure cluster).
#[test]
fn the_dashboard_shows_rollouts_and_why_a_task_waits() {
    if wasmos_tests::secure_mode::secure_cluster().is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let endpoint = free_endpoint();
    let store = dir.path().join("store");
    let log = dir.path().join("master.log");
    let (_master, http) =
        crate::plugins::spawn_master_logged(&endpoint, &store, Path::new("drf"), &log);
    let (_agent, _) = start_agent(&endpoint, &dir.path().join("agent"), None);
    let update = "min_healthy_ms = 500\nhealthy_deadline_ms = 120000";
    let v1 = job_file(dir.path(), "v1.toml", "p1_sleep", 300_000, 1, update);
    assert!(deploy(&v1, &endpoint, false).status.success());
    let slow = "min_healthy_ms = 60000\nhealthy_deadline_ms = 120000";
    let v2 = job_file(dir.path(), "v2.toml", "p1_sleep", 200_000, 1, slow);
    assert!(deploy(&v2, &endpoint, true).status.success());
    let arm = dir.path().join("arm.toml");
    let text = format!(
        "name = \"arm\"\nmodule = {:?}\nconstraints = [\"arch=riscv64\"]\n",
        module("p1_sleep").to_str().unwrap()
    );
    std::fs::write(&arm, text).unwrap();
    assert!(
        deploy(arm.to_str().unwrap(), &endpoint, true)
            .status
            .success()
    );
    let waiting = explained("arm", &endpoint, |e| {
        !e["copies"].as_array().unwrap().is_empty()
    });
    let task = waiting["copies"][0]["task_id"].as_str().unwrap().to_owned();

    let profile = dir.path().join("chromium");
    let deadline = Instant::now() + STEP_WAIT;
    let dom = loop {
        let out = std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
            ])
            .args([
                "--no-first-run",
                "--disable-background-networking",
                "--virtual-time-budget=5000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--dump-dom")
            .arg(format!("http://{http}/?live=poll#task={task}"))
            .output()
            .expect("chromium (cargo xtask setup installs it)");
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        let ready = dom.contains("data-job=\"svc\" data-declared=\"true\"")
            && dom.contains("rollout v1 → v2")
            && dom.contains("class=\"explain-summary\"");
        if ready {
            break dom;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard never showed the rollout and the explanation:\n{dom}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(dom.contains("arch=riscv64"), "{dom}");
    assert!(dom.contains("data-fit=\"constraint\""), "{dom}");
}

#[test]
fn per_agent_copies_follow_the_agents_that_join_and_leave() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = free_endpoint();
    let _master = start_master(&endpoint, &dir.path().join("store"));
    let (_first, first_id) = start_agent(&endpoint, &dir.path().join("first"), None);
    let path = dir.path().join("daemon.toml");
    let text = format!(
        "name = \"svc\"\nmodule = {:?}\nargs = [\"300000\"]\nper_agent = 1\nmem = 16\n\
         [update]\nmin_healthy_ms = 500\nhealthy_deadline_ms = 60000\n",
        module("p1_sleep").to_str().unwrap()
    );
    std::fs::write(&path, text).unwrap();
    let out = deploy(path.to_str().unwrap(), &endpoint, false);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until("on the first agent", &endpoint, |s| {
        s["summary"]["running"] == 1
    });

    let (mut second, second_id) = start_agent(&endpoint, &dir.path().join("second"), None);
    let status = wait_until("on both agents", &endpoint, |s| {
        s["summary"]["desired"] == 2 && s["summary"]["running"] == 2
    });
    let agents: Vec<&str> = (status["copies"].as_array().unwrap().iter())
        .filter_map(|c| c["agent_id"].as_str())
        .collect();
    assert!(
        agents.contains(&first_id.as_str()) && agents.contains(&second_id.as_str()),
        "{status:#}"
    );

    // The second agent dies: its copy goes with it and is not placed elsewhere.
    second.kill();
    let status = wait_until("back to one", &endpoint, |s| s["summary"]["desired"] == 1);
    assert_eq!(status["summary"]["running"], 1, "{status:#}");
    let live = live_tasks(&endpoint);
    assert_eq!(live.len(), 1, "{live:#?}");
    assert_eq!(live[0]["agent_id"], first_id.as_str());
}
