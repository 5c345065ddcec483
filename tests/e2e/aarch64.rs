//! An aarch64 agent (the build of `cargo xtask cross`, run under `qemu-aarch64`) joins an
//! x86_64 master beside an x86_64 agent: it detects `arch=aarch64` by itself, and a task
//! constrained to `arch=aarch64` runs there, with its output in `wasmos logs`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmos_tests::secure_mode::{cluster_endpoint, secure_cluster};
use wasmos_tests::{Killed, module, wasmos_aarch64};

use crate::cluster::{client, json_rows, run, start_agent, start_master, state_is, wait_for_tasks};

/// Emulated, the agent starts and compiles slower than natively: a bound for a loaded CI
/// machine, not a speed target.
const EMULATED_AGENT_LISTED_WAIT: Duration = Duration::from_secs(90);

#[test]
fn an_aarch64_agent_under_qemu_detects_its_arch_and_runs_the_task_constrained_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = cluster_endpoint();
    let arm_dir = dir.path().join("arm-agent");
    let identity = secure_cluster().map(|c| c.agent(None, &arm_dir));

    let advert = wasmos_aarch64()
        .args(["agent", "--print-advert", "--work-dir"])
        .arg(&arm_dir)
        .args(identity.iter().flatten())
        .output()
        .unwrap();
    assert!(
        advert.status.success(),
        "the aarch64 binary under qemu: {:?}, stderr: {}",
        advert.status,
        String::from_utf8_lossy(&advert.stderr)
    );
    let advert: Value = serde_json::from_slice(&advert.stdout).unwrap();
    assert_eq!(advert["attributes"]["arch"], "aarch64", "{advert}");
    let arm_id = advert["agent_id"].as_str().unwrap().to_owned();

    let _master = start_master(&endpoint, &dir.path().join("store"));
    let (_x86_agent, x86_id) = start_agent(&endpoint, &dir.path().join("x86-agent"), None);
    let _arm_agent = Killed(
        wasmos_aarch64()
            .args(["agent", "--connect", &endpoint, "--work-dir"])
            .arg(&arm_dir)
            .args(identity.iter().flatten())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let arches = wait_for_agents(&endpoint, &[&arm_id, &x86_id]);
    assert_eq!(arches, ["aarch64", "x86_64"], "as the master lists them");

    let hello = module("p1_hello");
    let hello = hello.to_str().unwrap();
    // Waited for below, within a bound (`--wait` has none).
    let ids = run(
        &[hello, "--constraint", "arch=aarch64", "--", "on", "arm"],
        1,
        &endpoint,
    );
    let rows = wait_for_tasks(&endpoint, &ids, "finished", state_is("finished"));
    assert_eq!(rows[0]["agent_id"], arm_id.as_str(), "{}", rows[0]);
    let logs = client(&["logs", &ids[0]], &endpoint);
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.contains("hello from p1") && logs.contains("args: on arm"),
        "{logs}"
    );
}

/// Waits until the master lists every agent of `ids`; returns their `arch` attributes.
fn wait_for_agents(endpoint: &str, ids: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + EMULATED_AGENT_LISTED_WAIT;
    loop {
        let rows = json_rows(&["agents", "--json"], endpoint);
        let arches: Vec<String> = ids
            .iter()
            .filter_map(|id| rows.iter().find(|r| r["id"] == *id))
            .map(|r| r["attributes"]["arch"].as_str().unwrap_or("").to_owned())
            .collect();
        if arches.len() == ids.len() {
            return arches;
        }
        assert!(
            Instant::now() < deadline,
            "agents {ids:?} not all listed within {EMULATED_AGENT_LISTED_WAIT:?}: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
