#![allow(clippy::too_many_lines)]
//! `wasmos sim` with task durations and faults: the real master and agent cores in virtual
//! time. Counts are checked against what a person works out by hand for small fleets, and
//! against conservation laws on random ones.

use proptest::prelude::*;
use serde_json::{Value, json};
use sim::run_scenario;

fn run(scenario: &Value) -> Value {
    let report = run_scenario(&scenario.to_string()).unwrap();
    serde_json::to_value(&report).unwrap()
}

fn ok(report: &Value) {
    assert_eq!(
        report["invariants"],
        json!({"ok": true, "violations": []}),
        "{report}"
    );
}

#[test]
fn tasks_with_a_duration_finish_and_free_their_resources_for_more() {
    // 2 cpus, tasks of 1 cpu for 1 s: 10 tasks run two at a time and all finish.
    let report = run(&json!({
        "agents": [{"id": "a1", "resources": {"cpus": 2, "mem": 1024}}],
        "frameworks": [{"id": "fw", "task": {"cpus": 1, "mem": 10}, "max_tasks": 10, "duration_ms": 1000}]
    }));
    ok(&report);
    assert_eq!(report["launched"], json!({"fw": 10}));
    assert_eq!(report["finished"], json!({"fw": 10}));
    assert_eq!(report["lost"], json!({"fw": 0}));
    assert_eq!(report["killed"], json!({"fw": 0}));
}

#[test]
fn an_agent_that_stays_away_has_its_tasks_lost_after_the_timeout() {
    // a2's two tasks never end; it goes at 1 s and is lost 10 s later.
    let report = run(&json!({
        "agents": [
            {"id": "a1", "resources": {"cpus": 2}},
            {"id": "a2", "resources": {"cpus": 2}}
        ],
        "frameworks": [{"id": "fw", "task": {"cpus": 1}, "max_tasks": 4}],
        "faults": [{"at_ms": 1000, "agent_lost": "a2"}]
    }));
    ok(&report);
    assert_eq!(report["launched"], json!({"fw": 4}));
    assert_eq!(report["lost"], json!({"fw": 2}));
    assert_eq!(report["finished"], json!({"fw": 0}));
}

#[test]
fn an_agent_back_before_the_timeout_loses_nothing_and_reports_what_ended_meanwhile() {
    // The tasks end at 2 s while a2 is cut off (1 s to 5 s): their ends arrive when it is back.
    let report = run(&json!({
        "agents": [{"id": "a1", "resources": {"cpus": 1}}, {"id": "a2", "resources": {"cpus": 1}}],
        "frameworks": [{"id": "fw", "task": {"cpus": 1}, "max_tasks": 2, "duration_ms": 2000}],
        "faults": [{"at_ms": 1000, "agent_lost": "a2"}, {"at_ms": 5000, "agent_back": "a2"}]
    }));
    ok(&report);
    assert_eq!(report["finished"], json!({"fw": 2}));
    assert_eq!(report["lost"], json!({"fw": 0}));
}

#[test]
fn an_agent_back_after_the_timeout_keeps_its_tasks_lost_and_they_are_killed() {
    // Declared lost at 11 s; back at 20 s still running its never-ending task, which the
    // master kills (kill, never adopt): its framework keeps the `lost` it was told, and
    // the agent's resources come back for the one task left to launch.
    let report = run(&json!({
        "agents": [{"id": "a1", "resources": {"cpus": 1}}],
        "frameworks": [{"id": "fw", "task": {"cpus": 1}, "max_tasks": 2}],
        "faults": [{"at_ms": 1000, "agent_lost": "a1"}, {"at_ms": 20000, "agent_back": "a1"}]
    }));
    ok(&report);
    assert_eq!(report["launched"], json!({"fw": 2}));
    assert_eq!(report["lost"], json!({"fw": 1}));
    assert_eq!(report["killed"], json!({"fw": 0}));
    assert_eq!(
        report["placements"],
        json!([{"framework": "fw", "agent": "a1", "tasks": 2}])
    );
}

#[test]
fn a_master_restart_loses_no_task_and_no_update() {
    // Tasks of 3 s on 2 agents; the master restarts at 2 s, while four run. The new master
    // rebuilds them from the adverts, offers nothing for its re-registration window, and
    // every task still finishes exactly once.
    let report = run(&json!({
        "agents": [{"id": "a1", "resources": {"cpus": 2}}, {"id": "a2", "resources": {"cpus": 2}}],
        "frameworks": [
            {"id": "fw0", "task": {"cpus": 1}, "max_tasks": 6, "duration_ms": 3000},
            {"id": "fw1", "task": {"cpus": 1}, "max_tasks": 6, "duration_ms": 3000}
        ],
        "faults": [{"at_ms": 2000, "master_restart": true}]
    }));
    ok(&report);
    assert_eq!(report["launched"], json!({"fw0": 6, "fw1": 6}));
    assert_eq!(report["finished"], json!({"fw0": 6, "fw1": 6}));
    assert_eq!(report["lost"], json!({"fw0": 0, "fw1": 0}));
}

#[test]
fn tasks_of_an_agent_lost_before_a_master_restart_are_told_lost_by_reconciliation() {
    // Agent a is cut off at 1 s; the master restarts at 2 s, before a's lost clock ran
    // out, so the new master never knew a's tasks. Re-subscribed, the framework asks about
    // every task it launched, and the two on a come back `lost`.
    let report = run(&json!({
        "agents": [{"id": "a", "resources": {"cpus": 2}}, {"id": "b", "resources": {"cpus": 2}}],
        "frameworks": [{"id": "f", "task": {"cpus": 1}, "max_tasks": 4, "duration_ms": 60000}],
        "faults": [{"at_ms": 1000, "agent_lost": "a"}, {"at_ms": 2000, "master_restart": true}]
    }));
    ok(&report);
    assert_eq!(report["launched"], json!({"f": 4}));
    assert_eq!(report["finished"], json!({"f": 2}));
    assert_eq!(report["lost"], json!({"f": 2}));
}

#[test]
fn until_ms_stops_the_run_with_tasks_still_running() {
    // Unlimited tasks of 1 s on 1 cpu: by 10.5 s, ten have finished and one runs.
    let report = run(&json!({
        "agents": [{"id": "a1", "resources": {"cpus": 1}}],
        "frameworks": [{"id": "fw", "task": {"cpus": 1}, "duration_ms": 1000}],
        "until_ms": 10500
    }));
    ok(&report);
    assert_eq!(report["launched"], json!({"fw": 11}));
    assert_eq!(report["finished"], json!({"fw": 10}));
}

#[test]
fn the_first_format_prints_exactly_what_it_did() {
    let report = run(&json!({
        "agents": [{"id": "a1", "resources": {"cpus": 2}}],
        "frameworks": [{"id": "fw", "task": {"cpus": 1}}]
    }));
    assert_eq!(
        report,
        json!({"launched": {"fw": 2}, "placements": [{"framework": "fw", "agent": "a1", "tasks": 2}]})
    );
}

#[test]
fn malformed_faults_are_scenario_errors() {
    for (faults, says) in [
        (
            json!([{"at_ms": 1, "agent_lost": "nobody"}]),
            "no agent \"nobody\"",
        ),
        (json!([{"at_ms": 1}]), "exactly one of"),
        (
            json!([{"at_ms": 1, "agent_lost": "a1", "master_restart": true}]),
            "exactly one of",
        ),
        (
            json!([{"at_ms": 1, "master_restart": false}]),
            "exactly one of",
        ),
        (json!([{"agent_lost": "a1"}]), "at_ms"),
    ] {
        let scenario = json!({
            "agents": [{"id": "a1", "resources": {"cpus": 1}}],
            "frameworks": [{"id": "fw", "task": {"cpus": 1}, "max_tasks": 1}],
            "faults": faults
        });
        let e = run_scenario(&scenario.to_string()).unwrap_err().to_string();
        assert!(e.contains(says), "{faults}: {e}");
    }
}

/// A random fleet whose frameworks all have durations and finitely many tasks, with
/// agents that are cut off and always come back, and master restarts.
fn dynamic_scenario() -> impl Strategy<Value = (Value, u64)> {
    let agents = prop::collection::vec(2u64..5, 1..5);
    let frameworks = prop::collection::vec((1u64..3, 1u64..8, 100u64..5000), 1..4);
    let cuts = prop::collection::vec((0usize..4, 0u64..20_000, 1u64..30_000), 0..3);
    let restarts = prop::collection::vec(0u64..30_000, 0..3);
    (agents, frameworks, cuts, restarts, any::<u64>()).prop_map(
        |(agents, frameworks, cuts, restarts, seed)| {
            let n = agents.len();
            let agents: Vec<Value> = agents
                .iter()
                .enumerate()
                .map(|(i, cpus)| json!({"id": format!("a{i}"), "resources": {"cpus": cpus}}))
                .collect();
            let frameworks: Vec<Value> = frameworks
                .iter()
                .enumerate()
                .map(|(i, (cpus, max, ms))| {
                    json!({"id": format!("f{i}"), "task": {"cpus": cpus}, "max_tasks": max, "duration_ms": ms})
                })
                .collect();
            let mut faults = Vec::new();
            for (agent, at, away) in cuts {
                let id = format!("a{}", agent % n);
                faults.push(json!({"at_ms": at, "agent_lost": id}));
                faults.push(json!({"at_ms": at + away, "agent_back": id}));
            }
            for at in restarts {
                faults.push(json!({"at_ms": at, "master_restart": true}));
            }
            let scenario = json!({"agents": agents, "frameworks": frameworks, "faults": faults, "seed": seed});
            (scenario, seed)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every run keeps every invariant; once settled, every launched task ended exactly
    /// once as its framework was told (cut-off agents always come back here, so nothing is
    /// left unknown); and a run is reproducible to the byte.
    #[test]
    fn random_faults_keep_the_invariants_and_account_for_every_task((scenario, _seed) in dynamic_scenario()) {
        let text = scenario.to_string();
        let first = serde_json::to_string(&run_scenario(&text).unwrap()).unwrap();
        let second = serde_json::to_string(&run_scenario(&text).unwrap()).unwrap();
        prop_assert_eq!(&first, &second);
        let report: Value = serde_json::from_str(&first).unwrap();
        prop_assert_eq!(&report["invariants"], &json!({"ok": true, "violations": []}), "{}", report);
        let frameworks = scenario["frameworks"].as_array().unwrap();
        for f in frameworks {
            let id = f["id"].as_str().unwrap();
            let launched = report["launched"][id].as_u64().unwrap();
            let ended = ["finished", "lost", "killed"]
                .iter()
                .map(|k| report[k][id].as_u64().unwrap())
                .sum::<u64>();
            prop_assert_eq!(launched, ended, "framework {}: {}", id, report);
            prop_assert_eq!(launched, f["max_tasks"].as_u64().unwrap(), "{}", report);
        }
    }
}

#[test]
fn unlimited_tasks_that_end_need_an_end_time() {
    let scenario = json!({
        "agents": [{"id": "a1", "resources": {"cpus": 1}}],
        "frameworks": [{"id": "fw", "task": {"cpus": 1}, "duration_ms": 10}]
    });
    let e = run_scenario(&scenario.to_string()).unwrap_err().to_string();
    assert!(e.contains("give the scenario an until_ms"), "{e}");
}
