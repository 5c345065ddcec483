#![allow(clippy::too_many_lines)]
//! `wasmos sim` in-process: single-agent runs against an independent progressive-filling
//! reference, multi-agent runs against the contract's properties, malformed scenarios.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};
use sim::{Scenario, SimError, run_scenario};

const KINDS: [&str; 3] = ["cpus", "mem", "gpus"];
/// Role weights as exact fractions `(numerator, denominator)`.
const WEIGHTS: [(u64, u64); 4] = [(1, 2), (1, 1), (2, 1), (3, 1)];

#[derive(Clone, Debug)]
struct Fw {
    role: Option<u8>,
    weight: usize,
    /// Thousandths per kind.
    task: BTreeMap<&'static str, u64>,
    max_tasks: Option<u64>,
    /// Required `arch`: `Some(true)` aarch64, `Some(false)` x86_64.
    arch: Option<bool>,
}

/// Agent `a{i}` is aarch64 when `i` is even, else x86_64.
fn agent_is_aarch64(i: usize) -> bool {
    i.is_multiple_of(2)
}

fn arch_name(aarch64: bool) -> &'static str {
    if aarch64 { "aarch64" } else { "x86_64" }
}

/// Whether framework `f` accepts agent `a{i}`.
fn accepts(f: &Fw, i: usize) -> bool {
    f.arch.is_none_or(|a| a == agent_is_aarch64(i))
}

fn amounts(min_kinds: usize, max: u64) -> impl Strategy<Value = BTreeMap<&'static str, u64>> {
    proptest::collection::btree_map(
        proptest::sample::select(KINDS.to_vec()),
        // Tenths, so that sums like 0.1 + 0.2 are exercised.
        (1..=max).prop_map(|v| v * 100),
        min_kinds..=3,
    )
}

fn fw() -> impl Strategy<Value = Fw> {
    (
        proptest::option::of(0u8..2),
        0..WEIGHTS.len(),
        amounts(1, 30),
        proptest::option::of(0u64..12),
        prop_oneof![3 => Just(None), 1 => any::<bool>().prop_map(Some)],
    )
        .prop_map(|(role, weight, task, max_tasks, arch)| Fw {
            role,
            weight,
            task,
            max_tasks,
            arch,
        })
}

/// Frameworks sharing a role take the weight of the first of them, as the contract asks.
fn fix_role_weights(mut fws: Vec<Fw>) -> Vec<Fw> {
    let mut first: BTreeMap<u8, usize> = BTreeMap::new();
    for f in &mut fws {
        if let Some(r) = f.role {
            f.weight = *first.entry(r).or_insert(f.weight);
        }
    }
    fws
}

fn units(millis: u64) -> f64 {
    millis as f64 / 1000.0
}

fn scenario(agents: &[BTreeMap<&'static str, u64>], fws: &[Fw]) -> String {
    let agents: Vec<Value> = agents
        .iter()
        .enumerate()
        .map(|(i, r)| json!({"id": format!("a{i}"), "attributes": {"arch": arch_name(agent_is_aarch64(i))},
            "resources": r.iter().map(|(k, v)| (k.to_string(), units(*v))).collect::<BTreeMap<_, _>>()}))
        .collect();
    let fws: Vec<Value> = fws
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (n, d) = WEIGHTS[f.weight];
            // Every framework may have GPU agents: the model is plain progressive filling
            // (the GPU rule has its own tests in the master core).
            let mut v = json!({"id": format!("fw{i}"), "weight": n as f64 / d as f64,
                "task": f.task.iter().map(|(k, v)| (k.to_string(), units(*v))).collect::<BTreeMap<_, _>>(),
                "capabilities": ["gpu_resources"]});
            if let Some(r) = f.role {
                v["role"] = json!(format!("shared{r}"));
            }
            if let Some(m) = f.max_tasks {
                v["max_tasks"] = json!(m);
            }
            if let Some(a) = f.arch {
                v["attributes"] = json!({"arch": arch_name(a)});
            }
            v
        })
        .collect();
    json!({"agents": agents, "frameworks": fws}).to_string()
}

/// An exact fraction.
#[derive(Clone, Copy, Debug)]
struct Frac(u128, u128);

impl Frac {
    fn lt(self, o: Frac) -> bool {
        self.0 * o.1 < o.0 * self.1
    }
    fn eq(self, o: Frac) -> bool {
        self.0 * o.1 == o.0 * self.1
    }
}

/// Dominant share of `alloc` against `total`, exactly; kinds the agent lacks are ignored.
fn share(alloc: &BTreeMap<&str, u64>, total: &BTreeMap<&str, u64>) -> Frac {
    let mut best = Frac(0, 1);
    for (k, a) in alloc {
        if let Some(t) = total.get(k).filter(|t| **t > 0) {
            let f = Frac(*a as u128, *t as u128);
            if best.lt(f) {
                best = f;
            }
        }
    }
    best
}

/// Progressive filling with weighted hierarchical DRF on one agent, written from the
/// definition: repeatedly, among frameworks with tasks left that accept the agent and
/// have not been refused,
/// take the lowest `(role share / role weight, own share, subscription order)`; launch one
/// of its tasks if it fits, else it is out for good (free resources only shrink).
fn reference(agent: &BTreeMap<&'static str, u64>, fws: &[Fw]) -> Vec<u64> {
    let role_of = |i: usize| {
        fws[i]
            .role
            .map_or(format!("own{i}"), |r| format!("shared{r}"))
    };
    let mut free = agent.clone();
    let mut count = vec![0u64; fws.len()];
    let mut out = vec![false; fws.len()];
    loop {
        let alloc = |i: usize| -> BTreeMap<&str, u64> {
            fws[i]
                .task
                .iter()
                .map(|(k, v)| (*k, v * count[i]))
                .collect()
        };
        let mut best: Option<(Frac, Frac, usize)> = None;
        for i in 0..fws.len() {
            // The one agent is a0; a framework that does not accept it never launches.
            if out[i] || !accepts(&fws[i], 0) || fws[i].max_tasks.is_some_and(|m| count[i] >= m) {
                continue;
            }
            let mut role_alloc: BTreeMap<&str, u64> = BTreeMap::new();
            for j in (0..fws.len()).filter(|j| role_of(*j) == role_of(i)) {
                for (k, v) in alloc(j) {
                    *role_alloc.entry(k).or_default() += v;
                }
            }
            let (n, d) = WEIGHTS[fws[i].weight];
            let rs = share(&role_alloc, agent);
            let role_key = Frac(rs.0 * d as u128, rs.1 * n as u128);
            let own = share(&alloc(i), agent);
            let better = match best {
                None => true,
                Some((r, o, _)) => role_key.lt(r) || (role_key.eq(r) && own.lt(o)),
            };
            if better {
                best = Some((role_key, own, i));
            }
        }
        let Some((_, _, i)) = best else { return count };
        let fits = fws[i]
            .task
            .iter()
            .all(|(k, v)| free.get(k).is_some_and(|f| f >= v));
        if fits {
            for (k, v) in &fws[i].task {
                *free.get_mut(k).unwrap() -= v;
            }
            count[i] += 1;
        } else {
            out[i] = true;
        }
    }
}

fn launched(report: &Value, i: usize) -> u64 {
    report["launched"][format!("fw{i}")].as_u64().unwrap()
}

fn run(json: &str) -> Value {
    serde_json::to_value(run_scenario(json).unwrap()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn single_agent_runs_give_progressive_filling_drf_counts(
        agent in amounts(1, 200),
        fws in proptest::collection::vec(fw(), 1..6),
    ) {
        let fws = fix_role_weights(fws);
        let report = run(&scenario(std::slice::from_ref(&agent), &fws));
        let want = reference(&agent, &fws);
        for (i, n) in want.iter().enumerate() {
            prop_assert_eq!(launched(&report, i), *n, "framework fw{}; report {}", i, report);
        }
    }

    #[test]
    fn multi_agent_runs_overcommit_nothing_and_leave_nothing_launchable(
        agents in proptest::collection::vec(amounts(2, 120), 1..5),
        fws in proptest::collection::vec(fw(), 1..6),
    ) {
        let fws = fix_role_weights(fws);
        let report = run(&scenario(&agents, &fws));
        let mut free = agents.clone();
        let mut placed = vec![0u64; fws.len()];
        for p in report["placements"].as_array().unwrap() {
            let i: usize = p["framework"].as_str().unwrap()[2..].parse().unwrap();
            let a: usize = p["agent"].as_str().unwrap()[1..].parse().unwrap();
            let n = p["tasks"].as_u64().unwrap();
            prop_assert!(n > 0);
            placed[i] += n;
            for (k, v) in &fws[i].task {
                let slot = free[a].get_mut(k);
                prop_assert!(slot.as_ref().is_some_and(|f| **f >= v * n), "agent a{} over-committed", a);
                *slot.unwrap() -= v * n;
            }
        }
        for (i, f) in fws.iter().enumerate() {
            prop_assert_eq!(placed[i], launched(&report, i));
            prop_assert!(f.max_tasks.is_none_or(|m| placed[i] <= m));
            let left = f.max_tasks.is_none_or(|m| placed[i] < m);
            prop_assert!(report["placements"].as_array().unwrap().iter().all(|p| {
                p["framework"] != format!("fw{i}") || accepts(f, p["agent"].as_str().unwrap()[1..].parse().unwrap())
            }), "fw{} placed on an agent it does not accept; report {}", i, report);
            let fits_somewhere = free.iter().enumerate().any(|(a, r)| {
                accepts(f, a) && f.task.iter().all(|(k, v)| r.get(k).is_some_and(|x| x >= v))
            });
            prop_assert!(!(left && fits_somewhere), "fw{} could still launch; report {}", i, report);
        }
    }
}

#[test]
fn the_drf_paper_example() {
    let json = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/scenarios/drf-demo.json"
    ))
    .unwrap();
    let out = serde_json::to_string(&run_scenario(&json).unwrap()).unwrap();
    assert_eq!(
        out,
        r#"{"launched":{"fw0":3,"fw1":2},"placements":[{"agent":"a1","framework":"fw0","tasks":3},{"agent":"a1","framework":"fw1","tasks":2}]}"#
    );
}

#[test]
fn a_shared_role_splits_its_weighted_share() {
    // Role "big" (weight 2, two frameworks) against "small" (weight 1): 8 of 12 cpus to
    // "big", split 4 and 4; 4 to "small". Ties go to the earlier framework.
    let json = r#"{"agents":[{"id":"a","resources":{"cpus":12}}],
        "frameworks":[{"id":"s","role":"small","task":{"cpus":1}},
                      {"id":"b1","role":"big","weight":2,"task":{"cpus":1}},
                      {"id":"b2","role":"big","weight":2,"task":{"cpus":1}}]}"#;
    let report = run(json);
    assert_eq!(report["launched"], json!({"s": 4, "b1": 4, "b2": 4}));
}

#[test]
fn a_tie_of_weighted_role_shares_goes_to_the_lower_own_share() {
    // (All may have GPU agents: the kind only matters as a second resource here.)
    // fw1 (weight 3, gpus 2.4 + mem 2 of 14.4 gpus, 18 mem) and fw2 (weight 2, mem 2) have
    // equal weighted role shares after each task: 1/18 per task. The tie goes to the lower
    // own share (fw2's 1/9 per task against fw1's 1/6), as in the reference; ranking
    // frameworks by their share over their role's weight instead gave fw1 3 and fw2 2.
    let json = r#"{"agents":[{"id":"a0","resources":{"gpus":14.4,"mem":18}}],
        "frameworks":[{"id":"fw0","weight":3,"task":{"mem":0.7},"capabilities":["gpu_resources"]},
                      {"id":"fw1","weight":3,"task":{"gpus":2.4,"mem":2},"capabilities":["gpu_resources"]},
                      {"id":"fw2","weight":2,"task":{"mem":2},"capabilities":["gpu_resources"]}]}"#;
    let report = run(json);
    assert_eq!(report["launched"], json!({"fw0": 11, "fw1": 2, "fw2": 3}));
}

#[test]
fn attributes_and_unlimited_tasks_fill_the_agents() {
    let json = r#"{"agents":[{"id":"a1","resources":{"cpus":4},"attributes":{"arch":"aarch64","has":["gpu","camera"]}},
                              {"id":"a2","resources":{"cpus":2,"mem":10}}],
        "frameworks":[{"id":"fw0","task":{"cpus":1}}]}"#;
    let report = run(json);
    assert_eq!(report["launched"], json!({"fw0": 6}));
    assert_eq!(
        report["placements"],
        json!([{"framework":"fw0","agent":"a1","tasks":4},{"framework":"fw0","agent":"a2","tasks":2}])
    );
}

#[test]
fn malformed_scenarios_are_scenario_errors_with_a_clear_message() {
    let cases = [
        ("not json", "JSON"),
        (r#"{"agents":[]}"#, "frameworks"),
        (r#"[[],[]]"#, "a scenario is a JSON object"),
        (
            r#"{"agents":[{"id":"a","resources":{"cpus":1e308}}],"frameworks":[]}"#,
            "is not an amount (0 to about 4.6e15)",
        ),
        (
            r#"{"agents":[{"id":"a","resources":{"cpus":-1}}],"frameworks":[]}"#,
            "cpus",
        ),
        (
            r#"{"agents":[{"id":"a","resources":{}},{"id":"a","resources":{}}],"frameworks":[]}"#,
            "twice",
        ),
        (
            r#"{"agents":[],"frameworks":[{"id":"f","task":{"cpus":0}}]}"#,
            "asks for no resources",
        ),
        (
            r#"{"agents":[],"frameworks":[{"id":"f\u001b[31m","task":{"cpus":1}}]}"#,
            "control characters",
        ),
        (
            r#"{"agents":[],"frameworks":[{"id":"f","weight":0,"task":{"cpus":1}}]}"#,
            "weight",
        ),
        (
            r#"{"agents":[],"frameworks":[{"id":"f","role":"r","task":{"cpus":1}},{"id":"g","role":"r","weight":2,"task":{"cpus":1}}]}"#,
            "different weights",
        ),
        (
            r#"{"agents":[{"id":"a","resources":{"cpus":1},"attributes":{"rack":{"x":1}}}],"frameworks":[]}"#,
            "rack",
        ),
        (
            r#"{"agents":[],"frameworks":[{"id":"f","task":{"cpus":1},"max_tasks":-3}]}"#,
            "-3",
        ),
        (
            r#"{"agents":[],"frameworks":[{"id":"f","task":{"cpus":1},"constraints":["arch<5"]}]}"#,
            "constraint \"arch<5\"",
        ),
    ];
    for (json, needle) in cases {
        match run_scenario(json) {
            Err(SimError::Scenario(e)) => assert!(e.to_string().contains(needle), "{json}: {e}"),
            other => panic!("{json}: {other:?}"),
        }
    }
}

#[test]
fn framework_attributes_are_required_agent_attributes() {
    // fw0 needs arch=aarch64 and rack=3 (numbers and booleans are attribute values too):
    // only a1 has both, so fw0 stops at a1's 2 cpus although a2 has 3 free at the end;
    // fw1 needs x86_64 (a2). fw2 needs attributes nobody has and launches nothing.
    let json = r#"{"agents":[
            {"id":"a1","resources":{"cpus":2},"attributes":{"arch":"aarch64","rack":3,"gpu":true}},
            {"id":"a2","resources":{"cpus":8},"attributes":{"arch":"x86_64","rack":3}}],
        "frameworks":[
            {"id":"fw0","task":{"cpus":1},"attributes":{"arch":"aarch64","rack":3}},
            {"id":"fw1","task":{"cpus":1},"max_tasks":5,"attributes":{"arch":["x86_64"]}},
            {"id":"fw2","task":{"cpus":1},"attributes":{"has":["camera","gpu"]}}]}"#;
    let report = run(json);
    assert_eq!(report["launched"], json!({"fw0": 2, "fw1": 5, "fw2": 0}));
    assert_eq!(
        report["placements"],
        json!([{"framework":"fw0","agent":"a1","tasks":2},{"framework":"fw1","agent":"a2","tasks":5}])
    );
}

#[test]
fn framework_constraints_take_operators_and_lists() {
    // fw0 avoids x86_64 (a1 and a3, which has no arch); fw1 wants aarch64 with a camera
    // (a1 only); fw2 wants aarch64 without a camera (a3 has no arch: nothing).
    let json = r#"{"agents":[
            {"id":"a1","resources":{"cpus":2},"attributes":{"arch":"aarch64","has":["camera","gpu"]}},
            {"id":"a2","resources":{"cpus":2},"attributes":{"arch":"x86_64"}},
            {"id":"a3","resources":{"cpus":2}}],
        "frameworks":[
            {"id":"fw0","task":{"cpus":1},"max_tasks":2,"constraints":["arch!=x86_64"]},
            {"id":"fw1","task":{"cpus":1},"max_tasks":1,"constraints":["arch==aarch64,has=camera"]},
            {"id":"fw2","task":{"cpus":1},"attributes":{"arch":"aarch64"},"constraints":["has!=camera"]}]}"#;
    let report = run(json);
    assert_eq!(report["launched"], json!({"fw0": 2, "fw1": 1, "fw2": 0}));
    for p in report["placements"].as_array().unwrap() {
        let (fw, agent) = (&p["framework"], &p["agent"]);
        assert!(agent != "a2", "{fw} placed on a2: {report}");
        if fw == "fw1" {
            assert_eq!(agent, "a1", "{report}");
        }
    }
}

#[test]
fn unknown_fields_are_ignored_and_listed_for_a_warning() {
    let json = r#"{"comment":"x","agents":[{"id":"a","resources":{"cpus":3},"hostname":"h"}],
        "frameworks":[{"id":"f","task":{"cpus":1},"max_task":1}]}"#;
    assert_eq!(
        Scenario::unknown_fields(json),
        ["comment", "agents[0].hostname", "frameworks[0].max_task"]
    );
    assert_eq!(run(json)["launched"], json!({"f": 3}));
}

#[test]
fn a_task_of_nothing_is_refused_as_the_master_refuses_it() {
    // Amounts below a thousandth round to nothing.
    for task in [r#"{"cpus":0}"#, r#"{"cpus":0.0001}"#] {
        let json = format!(
            r#"{{"agents":[{{"id":"a","resources":{{"cpus":2}}}}],
            "frameworks":[{{"id":"zero","task":{task},"max_tasks":3}}]}}"#
        );
        let err = run_scenario(&json).unwrap_err().to_string();
        assert!(err.contains("asks for no resources"), "{err}");
    }
}

/// A framework whose scheduler launches one task of one cpu on each offer it gets, until it
/// has launched `left`, then suppresses: the hook behind `"scheduler"` entries.
struct OnePerOffer {
    left: u32,
}

impl sim::SimScheduler for OnePerOffer {
    fn handle_event(&mut self, _now_ms: u64, event: &proto::Event) -> Vec<proto::Call> {
        use proto::{Call, Event, Filters, Operation, TaskId, TaskKind, TaskLimits, TaskSpec};
        let Event::Offers { offers } = event else {
            return Vec::new();
        };
        let mut calls = Vec::new();
        for offer in offers {
            if self.left == 0 {
                calls.push(Call::Decline {
                    offer_ids: vec![offer.offer_id.clone()],
                    filters: Filters::default(),
                });
                continue;
            }
            self.left -= 1;
            let mut resources = proto::Resources::new();
            resources.set_scalar("cpus", proto::Scalar::from_units(1.0).unwrap());
            let task = TaskSpec {
                task_id: TaskId::new(format!("{}-{}", offer.framework_id.as_str(), self.left)),
                name: "one".into(),
                resources,
                kind: TaskKind::Wasm(Default::default()),
                limits: TaskLimits::default(),
                disconnect: None,
                replaces: None,
            };
            calls.push(Call::Accept {
                offer_ids: vec![offer.offer_id.clone()],
                operations: vec![Operation::Launch { tasks: vec![task] }],
                filters: Filters::default(),
            });
        }
        if self.left == 0 {
            calls.push(Call::Suppress);
        }
        calls
    }
}

#[test]
fn scheduler_entries_are_answered_by_the_loaded_scheduler() {
    let scenario = json!({
        "agents": [{"id": "a1", "resources": {"cpus": 8, "mem": 1024}}],
        "frameworks": [
            {"id": "hooked", "scheduler": "one.wasm"},
            {"id": "synth", "task": {"cpus": 1}, "max_tasks": 2}
        ]
    });
    let mut loaded = Vec::new();
    let report = sim::run_scenario_with_schedulers(
        &scenario.to_string(),
        &mut |seed| Box::new(master::allocator::DrfAllocator::new(seed)),
        &mut |f| {
            loaded.push((f.id.clone(), f.scheduler.clone()));
            Ok(Box::new(OnePerOffer { left: 3 }))
        },
    )
    .unwrap();
    assert_eq!(loaded, [("hooked".to_owned(), Some("one.wasm".to_owned()))]);
    assert_eq!(
        serde_json::to_value(&report).unwrap()["launched"],
        json!({"hooked": 3, "synth": 2})
    );
    // Without a loader a scheduler entry is an error naming the framework, not a panic.
    let refused = sim::run_scenario_with(&scenario.to_string(), &mut |seed| {
        Box::new(master::allocator::DrfAllocator::new(seed))
    });
    assert!(
        matches!(&refused, Err(SimError::Scheduler { framework, .. }) if framework == "hooked"),
        "{refused:?}"
    );
}

#[test]
fn a_fill_framework_launches_every_task_that_fits_on_one_offer() {
    // One offer of 8 cpus: 8 tasks at once, or 5 when only 5 are left; the plain framework
    // gets one per offer and ends with the same count (its offers come back at once).
    let json = r#"{"agents":[{"id":"a","resources":{"cpus":8}}],
        "frameworks":[{"id":"f","task":{"cpus":1},"fill":true}]}"#;
    let report = run(json);
    assert_eq!(report["launched"], json!({"f": 8}));
    assert_eq!(
        report["placements"],
        json!([{"framework": "f", "agent": "a", "tasks": 8}])
    );
    let json = r#"{"agents":[{"id":"a","resources":{"cpus":8}},{"id":"b","resources":{"cpus":8}}],
        "frameworks":[{"id":"f","task":{"cpus":1},"fill":true,"max_tasks":5},
                      {"id":"g","task":{"cpus":2},"fill":true}]}"#;
    let report = run(json);
    assert_eq!(report["launched"]["f"], 5, "{report}");
    // g takes what f left: 16 - 5 cpus, 2 each.
    assert_eq!(report["launched"]["g"], 5, "{report}");
    assert!(Scenario::unknown_fields(json).is_empty());
}
