//! `wasmos sim [FILE]`: the binary's contract, checked from outside as a caller sees it.

use std::io::Write;
use std::process::{Output, Stdio};

use serde_json::{Value, json};

fn sim_stdin(input: &str) -> Output {
    sim_stdin_with(input, &[])
}

fn sim_stdin_with(input: &str, flags: &[&str]) -> Output {
    let mut child = wasmos_tests::wasmos()
        .arg("sim")
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}, stderr {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        text.trim().lines().count(),
        1,
        "one JSON object on one line: {text}"
    );
    serde_json::from_str(&text).unwrap()
}

#[test]
fn sim_reads_stdin_and_prints_progressive_filling_counts() {
    let scenario = json!({
        "agents": [{"id": "a1", "resources": {"cpus": 9, "mem": 18432}}],
        "frameworks": [
            {"id": "fw0", "task": {"cpus": 1, "mem": 4096}},
            {"id": "fw1", "task": {"cpus": 3, "mem": 1024}, "max_tasks": 10}
        ]
    });
    let report = stdout_json(&sim_stdin(&scenario.to_string()));
    assert_eq!(
        report,
        json!({"launched": {"fw0": 3, "fw1": 2}, "placements": [
            {"framework": "fw0", "agent": "a1", "tasks": 3},
            {"framework": "fw1", "agent": "a1", "tasks": 2}
        ]})
    );
}

#[test]
fn sim_stats_count_placements_time_and_memory() {
    let scenario = json!({
        "agents": [{"id": "a1", "resources": {"cpus": 64}}],
        "frameworks": [{"id": "f", "task": {"cpus": 1}, "fill": true}]
    });
    let report = stdout_json(&sim_stdin_with(&scenario.to_string(), &["--stats"]));
    assert_eq!(report["launched"], json!({"f": 64}), "{report}");
    let stats = &report["stats"];
    assert_eq!(stats["placements"], 64, "{report}");
    let wall_ms = stats["wall_ms"].as_u64().unwrap();
    let rate = stats["placements_per_s"].as_u64().unwrap();
    // The rate is the count over the time (rounded; the time in whole ms is rounded down).
    assert!(rate >= 64_000 / (wall_ms + 1), "{report}");
    assert!(
        stats["peak_rss_bytes"].as_u64().unwrap() > 1 << 20,
        "{report}"
    );
}

#[test]
fn sim_reads_a_file_and_never_overcommits_an_agent() {
    let path = wasmos_tests::workspace_root().join("examples/scenarios/edge-fleet.json");
    let out = wasmos_tests::wasmos()
        .arg("sim")
        .arg(&path)
        .output()
        .unwrap();
    let report = stdout_json(&out);
    let scenario: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cpus = |agent: &str| {
        scenario["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == agent)
            .unwrap()["resources"]["cpus"]
            .as_f64()
            .unwrap()
    };
    let task_cpus = |fw: &str| {
        scenario["frameworks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == fw)
            .unwrap()["task"]["cpus"]
            .as_f64()
            .unwrap_or(0.0)
    };
    let mut used = std::collections::BTreeMap::<String, f64>::new();
    for p in report["placements"].as_array().unwrap() {
        let agent = p["agent"].as_str().unwrap();
        *used.entry(agent.to_owned()).or_default() +=
            task_cpus(p["framework"].as_str().unwrap()) * p["tasks"].as_f64().unwrap();
    }
    assert!(!used.is_empty());
    for (agent, cpus_used) in used {
        assert!(
            cpus_used <= cpus(&agent) + 1e-9,
            "{agent} over-committed: {cpus_used}"
        );
    }
}

#[test]
fn sim_rejects_malformed_scenarios_with_exit_code_2() {
    for bad in [
        "{",
        r#"{"agents": [], "frameworks": [{"id": "f", "task": {"cpus": -1}}]}"#,
        r#"{"agents": [], "frameworks": [{"id": "f", "role": "r", "task": {"cpus": 1}},
                                         {"id": "g", "role": "r", "weight": 3, "task": {"cpus": 1}}]}"#,
    ] {
        let out = sim_stdin(bad);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(out.stdout.is_empty(), "nothing on stdout for {bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("malformed scenario"), "{bad}: {stderr}");
    }
}

#[test]
fn sim_honours_framework_attributes_and_warns_about_unknown_fields() {
    let scenario = json!({
        "agents": [
            {"id": "arm", "resources": {"cpus": 2}, "attributes": {"arch": "aarch64", "rack": 1}},
            {"id": "x86", "resources": {"cpus": 6}, "attributes": {"arch": "x86_64"}}
        ],
        "frameworks": [
            {"id": "edge", "task": {"cpus": 1}, "attributes": {"arch": "aarch64", "rack": 1}},
            {"id": "any", "task": {"cpus": 1}, "max_tasks": 0, "note": "typo-prone"}
        ]
    });
    let out = sim_stdin(&scenario.to_string());
    let report = stdout_json(&out);
    assert_eq!(
        report,
        json!({"launched": {"edge": 2, "any": 0}, "placements": [
            {"framework": "edge", "agent": "arm", "tasks": 2}
        ]})
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("frameworks[1].note"), "{stderr}");
}

/// `wasmos sim ... | head -c 0`: a reader that goes ends the command by SIGPIPE, as Unix
/// tools end, not by a panic in `println!` (exit 101 and a backtrace hint on stderr).
#[test]
fn a_reader_that_goes_ends_sim_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let scenario = json!({
        "agents": [{"id": "a1", "resources": {"cpus": 1, "mem": 1024}}],
        "frameworks": [{"id": "fw0", "task": {"cpus": 1, "mem": 1024}}]
    });
    let mut child = wasmos_tests::wasmos()
        .arg("sim")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes before anything is printed: the report is printed after the input.
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(scenario.to_string().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    const SIGPIPE: i32 = 13;
    assert_eq!(
        out.status.signal(),
        Some(SIGPIPE),
        "exit {:?}, stderr {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
