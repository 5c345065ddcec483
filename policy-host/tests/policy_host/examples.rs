//! The example modules of `modules/`, each exercised through the master core.

use std::collections::{BTreeMap, BTreeSet};

use master::{Master, MasterConfig};
use policy_host::{FailurePolicy, Health, HostedScheduler, Kind, WasmAllocator};
use proto::TaskState;

use super::cluster::{Cluster, advert, finish_all, info};
use crate::{compile, drf_code, module_bytes};

pub const SHA: &str = "5e4d5e4d5e4d5e4d5e4d5e4d5e4d5e4d5e4d5e4d5e4d5e4d5e4d5e4d5e4d5e4d";

/// `batch.wasm` running `count` copies of a 1-cpu, 256 MiB task; `extra` adds config lines.
pub fn batch_scheduler(count: u32, extra: &str) -> HostedScheduler {
    let config = format!(
        "name = job\ncount = {count}\ncpus = 1\nmem = 256\nmodule_sha256 = {SHA}\nmodule_size = 100\n\
         module_name = p1_hello.wasm\nargs = --greeting hi\n{extra}"
    );
    HostedScheduler::new(
        "batch",
        compile("batch", Kind::Scheduler),
        config.into_bytes(),
        FailurePolicy::default(),
    )
}

/// Copy index and attempt of a batch task id `FRAMEWORK-job-INDEX-ATTEMPT`.
fn index_attempt(task_id: &str) -> (u32, u32) {
    let mut parts = task_id.rsplitn(3, '-');
    let attempt = parts.next().unwrap().parse().unwrap();
    let index = parts.next().unwrap().parse().unwrap();
    (index, attempt)
}

/// Even copies fail their first attempt.
fn even_copies_fail_once(task_id: &str) -> TaskState {
    let (index, attempt) = index_attempt(task_id);
    if index % 2 == 0 && attempt == 0 {
        TaskState::Failed
    } else {
        TaskState::Finished
    }
}

fn copy_zero_always_fails(task_id: &str) -> TaskState {
    if index_attempt(task_id).0 == 0 {
        TaskState::Failed
    } else {
        TaskState::Finished
    }
}

#[test]
fn batch_runs_every_copy_and_retries_failures() {
    let mut cluster = Cluster::with_builtin(even_copies_fail_once);
    cluster.add_agent(advert("a-0", 2.0, 1024.0, &[]));
    cluster.add_agent(advert("a-1", 2.0, 1024.0, &[]));
    let fw = cluster.subscribe(info("batch", "jobs", 1.0), Some(batch_scheduler(6, "")));
    cluster.run(200);
    let ids: Vec<(u32, u32)> = cluster
        .launches_of(&fw)
        .iter()
        .map(|(_, _, t)| index_attempt(t.task_id.as_str()))
        .collect();
    assert_eq!(ids.len(), 9, "6 copies and 3 retries: {ids:?}");
    let finished: BTreeSet<u32> = ids
        .iter()
        .filter(|(i, a)| i % 2 == 1 || *a == 1)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(finished, (0..6).collect());
    let (_, _, task) = cluster.launches_of(&fw)[0];
    let proto::TaskKind::Wasm(wasm) = &task.kind else {
        panic!("not a wasm task")
    };
    assert_eq!(
        (wasm.module.sha256.0.as_str(), wasm.args.as_slice()),
        (SHA, &["--greeting".to_owned(), "hi".to_owned()][..])
    );
    assert_eq!(
        task.resources,
        proto::Resources::new()
            .with_scalar("cpus", 1.0)
            .with_scalar("mem", 256.0)
    );
    // Once every copy is done the framework suppresses itself.
    let view = cluster.master.frameworks_view();
    assert!(
        view.iter().any(|f| f.framework_id == fw && f.suppressed),
        "{view:?}"
    );
    assert!(cluster.refused_calls.is_empty() && cluster.faults.is_empty());
}

#[test]
fn batch_gives_up_after_its_retries() {
    let mut cluster = Cluster::with_builtin(copy_zero_always_fails);
    cluster.add_agent(advert("a-0", 4.0, 4096.0, &[]));
    let fw = cluster.subscribe(
        info("batch", "jobs", 1.0),
        Some(batch_scheduler(2, "retries_max = 2")),
    );
    cluster.run(200);
    let attempts_of_zero = cluster
        .launches_of(&fw)
        .iter()
        .filter(|(_, _, t)| index_attempt(t.task_id.as_str()).0 == 0)
        .count();
    assert_eq!(attempts_of_zero, 3, "one launch and two retries");
    assert_eq!(cluster.launches_of(&fw).len(), 4);
}

#[test]
fn batch_with_a_bad_config_is_deactivated_not_fatal() {
    let mut cluster = Cluster::with_builtin(finish_all);
    cluster.add_agent(advert("a-0", 4.0, 4096.0, &[]));
    let policy = FailurePolicy {
        failures_max: 2,
        backoff_base_ms: 100,
        backoff_max_ms: 100,
    };
    let bad = HostedScheduler::new(
        "bad",
        compile("batch", Kind::Scheduler),
        b"count = many".to_vec(),
        policy,
    );
    let bad_id = cluster.subscribe(info("bad", "jobs", 1.0), Some(bad));
    let good = cluster.subscribe(info("good", "jobs", 1.0), Some(batch_scheduler(3, "")));
    cluster.run(100);
    assert_eq!(cluster.hosted[&bad_id].health(), Health::Deactivated);
    assert!(
        cluster.faults.iter().any(|f| f.contains("error code -1")),
        "{:?}",
        cluster.faults
    );
    assert_eq!(cluster.launches_of(&good).len(), 3);
}

fn spread_scheduler() -> HostedScheduler {
    spread_scheduler_on("has=camera")
}

fn spread_scheduler_on(constraint: &str) -> HostedScheduler {
    let config = format!(
        "name = sampler\nconstraint = {constraint}\ncpus = 0.5\nmem = 64\nmodule_sha256 = {SHA}\n\
         module_size = 1\nmodule_name = p1_sensor.wasm\nargs = --device /sensors/temp0"
    );
    HostedScheduler::new(
        "spread",
        compile("spread", Kind::Scheduler),
        config.into_bytes(),
        FailurePolicy::default(),
    )
}

fn keeps_running(_: &str) -> TaskState {
    TaskState::Running
}

#[test]
fn spread_places_one_task_on_each_matching_agent() {
    let mut cluster = Cluster::with_builtin(keeps_running);
    cluster.add_agent(advert("cam-0", 4.0, 1024.0, &[("has", "camera")]));
    cluster.add_agent(advert(
        "cam-1",
        4.0,
        1024.0,
        &[("has", "camera"), ("arch", "aarch64")],
    ));
    cluster.add_agent(advert("plain-0", 4.0, 1024.0, &[]));
    let fw = cluster.subscribe(info("spread", "sensors", 1.0), Some(spread_scheduler()));
    cluster.run(100);
    cluster.add_agent(advert("cam-2", 4.0, 1024.0, &[("has", "camera")]));
    cluster.run(100);
    let mut per_agent: BTreeMap<String, usize> = BTreeMap::new();
    for (agent, _, _) in cluster.launches_of(&fw) {
        *per_agent.entry(agent.to_string()).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = [
        ("cam-0".into(), 1),
        ("cam-1".into(), 1),
        ("cam-2".into(), 1),
    ]
    .into();
    assert_eq!(
        per_agent, expected,
        "one copy per camera agent, the late one included"
    );
    assert!(cluster.refused_calls.is_empty() && cluster.faults.is_empty());
}

#[test]
fn spread_takes_a_not_equal_constraint() {
    let mut cluster = Cluster::with_builtin(keeps_running);
    cluster.add_agent(advert("cam-0", 4.0, 1024.0, &[("has", "camera")]));
    cluster.add_agent(advert("plain-0", 4.0, 1024.0, &[]));
    cluster.add_agent(advert("gpu-0", 4.0, 1024.0, &[("has", "gpu")]));
    let fw = cluster.subscribe(
        info("spread", "sensors", 1.0),
        Some(spread_scheduler_on("has!=camera")),
    );
    cluster.run(100);
    let mut agents: Vec<String> = cluster
        .launches_of(&fw)
        .into_iter()
        .map(|(agent, _, _)| agent.to_string())
        .collect();
    agents.sort();
    assert_eq!(agents, ["gpu-0", "plain-0"]);
    assert!(cluster.refused_calls.is_empty() && cluster.faults.is_empty());
}

#[test]
fn spread_restarts_a_copy_that_ended() {
    let mut cluster = Cluster::with_builtin(finish_all);
    cluster.add_agent(advert("cam-0", 4.0, 1024.0, &[("has", "camera")]));
    let fw = cluster.subscribe(info("spread", "sensors", 1.0), Some(spread_scheduler()));
    cluster.run(100);
    let launches = cluster.launches_of(&fw);
    assert!(
        launches.len() >= 2,
        "a finished copy is started again: {}",
        launches.len()
    );
    assert!(launches.iter().all(|(a, _, _)| a.as_str() == "cam-0"));
}

/// `drf.wasm` as the master's allocator gives the same launches as the built-in DRF.
#[test]
fn drf_module_runs_a_cluster_like_the_builtin() {
    let run = |master: Master| {
        let mut cluster = Cluster::new(master, even_copies_fail_once);
        for i in 0..5 {
            cluster.add_agent(advert(
                &format!("a-{i}"),
                2.0 + i as f64,
                2048.0,
                &[("has", "camera")],
            ));
        }
        cluster.subscribe(info("batch-a", "jobs", 1.0), Some(batch_scheduler(10, "")));
        cluster.subscribe(
            info("batch-b", "analytics", 2.0),
            Some(batch_scheduler(10, "")),
        );
        cluster.subscribe(info("spread", "sensors", 1.0), Some(spread_scheduler()));
        cluster.run(150);
        cluster
            .launched
            .iter()
            .map(|(a, f, t)| format!("{a} {f} {}", t.task_id))
            .collect::<Vec<_>>()
    };
    let builtin = run(Master::new(MasterConfig::default(), 3));
    let allocator = WasmAllocator::new(
        "drf.wasm",
        drf_code().clone(),
        3 ^ policy_host::allocator::BUILTIN_DRF_SEED_MIX,
    );
    let wasm = run(Master::with_allocator(
        MasterConfig::default(),
        3,
        Box::new(allocator),
    ));
    assert!(builtin.len() > 20);
    assert_eq!(wasm, builtin);
}

/// `tiers.wasm`: the critical tier is served first, and the battery device only ever runs
/// critical work; the built-in DRF, for contrast, puts bulk work on it.
#[test]
fn tiers_module_serves_the_top_tier_first_and_spares_batteries() {
    let run = |master: Master| {
        let mut cluster = Cluster::new(master, finish_all);
        cluster.add_agent(advert("mains-0", 2.0, 2048.0, &[]));
        cluster.add_agent(advert("battery-0", 2.0, 2048.0, &[("power", "battery")]));
        let bulk = cluster.subscribe(info("bulk", "bulk", 1.0), Some(batch_scheduler(12, "")));
        let critical = cluster.subscribe(
            info("critical", "critical", 1.0),
            Some(batch_scheduler(2, "")),
        );
        cluster.run(300);
        (cluster, bulk, critical)
    };
    let config = MasterConfig {
        role_weights: BTreeMap::from([("critical".into(), 10.0), ("bulk".into(), 1.0)]),
        ..MasterConfig::default()
    };
    let tiers = WasmAllocator::new("tiers.wasm", compile("tiers", Kind::Allocator), 1);
    let (cluster, bulk, critical) = run(Master::with_allocator(config.clone(), 1, Box::new(tiers)));
    assert_eq!(cluster.launches_of(&critical).len(), 2);
    assert_eq!(
        cluster.launches_of(&bulk).len(),
        12,
        "bulk work still runs, on mains power"
    );
    assert!(
        cluster
            .launches_of(&bulk)
            .iter()
            .all(|(a, _, _)| a.as_str() == "mains-0")
    );
    assert_eq!(
        cluster.launched[0].1, critical,
        "the critical tier launches first"
    );
    let (builtin, bulk, _) = run(Master::new(config, 1));
    assert!(
        builtin
            .launches_of(&bulk)
            .iter()
            .any(|(a, _, _)| a.as_str() == "battery-0")
    );
}

/// `p1_sensor.wasm` samples a device file in a granted directory (run here with WASI p1
/// in wasmtime, the way the agent's executor runs it).
#[test]
fn sensor_task_samples_a_granted_device_file() {
    use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
    use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("temp0"), "42125\n").unwrap();
    let run = |args: &[&str]| {
        let stdout = MemoryOutputPipe::new(1 << 16);
        let mut builder = WasiCtxBuilder::new();
        builder.args(args).stdout(stdout.clone());
        builder
            .preopened_dir(dir.path(), "/sensors", FsPerms::ReadOnly)
            .unwrap();
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, module_bytes("p1_sensor")).unwrap();
        let mut linker = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx| ctx).unwrap();
        let mut store = wasmtime::Store::new(&engine, builder.build_p1());
        let instance = linker.instantiate(&mut store, &module).unwrap();
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .unwrap();
        let code = match start.call(&mut store, ()) {
            Ok(()) => 0,
            Err(e) => e
                .downcast_ref::<wasmtime_wasi::I32Exit>()
                .map(|e| e.0)
                .unwrap(),
        };
        (code, String::from_utf8(stdout.contents().to_vec()).unwrap())
    };
    let (code, out) = run(&[
        "p1_sensor",
        "--device",
        "/sensors/temp0",
        "--samples",
        "3",
        "--interval-ms",
        "1",
    ]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..3],
        [
            r#"{"sample":0,"value":42125}"#,
            r#"{"sample":1,"value":42125}"#,
            r#"{"sample":2,"value":42125}"#
        ]
    );
    assert_eq!(
        lines[3],
        r#"{"samples":3,"numeric":3,"min":42125,"max":42125,"mean":42125}"#
    );
    let (code, _) = run(&["p1_sensor", "--device", "/sensors/missing"]);
    assert_eq!(code, executor_sdk::task::EXIT_IO);
    let (code, _) = run(&["p1_sensor", "--device", "/etc/passwd"]);
    assert_eq!(
        code,
        executor_sdk::task::EXIT_IO,
        "only the granted directory is reachable"
    );
    let (code, _) = run(&["p1_sensor"]);
    assert_eq!(code, executor_sdk::task::EXIT_USAGE);
}
