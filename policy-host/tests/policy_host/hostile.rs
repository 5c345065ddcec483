//! Hostile modules, written here in WAT against the README's ABI: every misbehaviour is a
//! typed error, and the master keeps serving everyone else.

use master::{Master, MasterConfig};
use policy_host::sandbox::GuestError;
use policy_host::{
    FailurePolicy, Health, HostedScheduler, Kind, Limits, ModuleCode, WasmAllocator,
};

use super::cluster::{Cluster, advert, finish_all, info};
use super::examples::batch_scheduler;
use crate::engine;

/// A module with the ABI's exports; `entry` is the entry point's body, `extra` more fields.
fn wat(kind: Kind, entry: &str, extra: &str) -> String {
    let name = match kind {
        Kind::Scheduler => "wasmos_scheduler_handle",
        Kind::Allocator => "wasmos_allocator_allocate",
    };
    format!(
        r#"(module
            (memory (export "memory") 1)
            (func (export "wasmos_abi_version") (result i32) i32.const 2)
            (func (export "wasmos_input") (param i32) (result i32) i32.const 1024)
            (func (export "{name}") (param $len i32) (result i64) {entry})
            {extra})"#
    )
}

const LOOP: &str = "(loop $spin (br $spin)) i64.const 0";
const TRAP: &str = "unreachable";
/// Grows memory until refused, then traps as a Rust module would on allocation failure.
const MEMORY_BOMB: &str =
    "(loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable";
/// Asks for more memory than the cap, forever, ignoring the refusals.
const GROW_LOOP: &str = "(loop $ask (drop (memory.grow (i32.const 100))) (br $ask)) i64.const 0";
/// Asks once, is refused (-1), and goes on to answer: the WASM contract, kept.
const GROW_REFUSED_ONCE: &str = "(drop (memory.grow (i32.const 100))) i64.const -4";
/// Eight 0xff bytes at 2048: no message decodes from them.
const GARBAGE: &str = "(i64.store (i32.const 2048) (i64.const -1)) (i64.const 0x0000080000000008)";
/// An answer far outside the module's memory.
const OUT_OF_BOUNDS: &str = "i64.const 0x7fff000000000010";
const ERROR_CODE: &str = "i64.const -4";

fn limits() -> Limits {
    Limits {
        fuel_per_call: 5_000_000,
        memory_bytes_max: 4 << 20,
        ..Limits::default()
    }
}

fn load(kind: Kind, source: &str) -> Result<ModuleCode, GuestError> {
    ModuleCode::compile(engine(), source.as_bytes(), kind, limits())
}

fn call_once(kind: Kind, entry: &str) -> GuestError {
    let code = load(kind, &wat(kind, entry, "")).unwrap();
    let mut instance = code.instantiate().unwrap();
    instance.call(&[0]).unwrap_err()
}

#[test]
fn each_misbehaviour_is_a_typed_error() {
    for kind in [Kind::Scheduler, Kind::Allocator] {
        assert!(
            matches!(
                call_once(kind, LOOP),
                GuestError::OutOfFuel { fuel: 5_000_000 }
            ),
            "{kind:?}"
        );
        assert!(matches!(call_once(kind, TRAP), GuestError::Trap(_)));
        assert!(
            matches!(call_once(kind, MEMORY_BOMB), GuestError::MemoryCap { bytes_max } if bytes_max == 4 << 20)
        );
        // Stopped after DENIED_GROWS_MAX refusals, long before its fuel runs out.
        assert!(
            matches!(call_once(kind, GROW_LOOP), GuestError::MemoryCap { .. }),
            "{kind:?}"
        );
        assert!(matches!(
            call_once(kind, GROW_REFUSED_ONCE),
            GuestError::GuestCode(-4)
        ));
        assert!(matches!(
            call_once(kind, OUT_OF_BOUNDS),
            GuestError::OutputOutOfBounds { .. }
        ));
        assert!(matches!(
            call_once(kind, ERROR_CODE),
            GuestError::GuestCode(-4)
        ));
    }
}

#[test]
fn modules_outside_the_abi_do_not_load() {
    let kind = Kind::Scheduler;
    // WAT wants imports before other fields.
    let import = wat(kind, TRAP, "").replacen(
        "(memory",
        "(import \"wasi_snapshot_preview1\" \"proc_exit\" (func (param i32)))\n(memory",
        1,
    );
    assert!(matches!(load(kind, &import), Err(GuestError::Imports(i)) if i.contains("proc_exit")));
    let no_entry = wat(Kind::Allocator, TRAP, "");
    assert!(matches!(
        load(Kind::Scheduler, &no_entry),
        Err(GuestError::MissingExport {
            name: "wasmos_scheduler_handle"
        })
    ));
    // A module of ABI 1 (constraints without an operator) is refused.
    let v1 = wat(kind, TRAP, "").replace("(result i32) i32.const 2)", "(result i32) i32.const 1)");
    let code = load(kind, &v1).unwrap();
    assert!(matches!(
        code.instantiate(),
        Err(GuestError::AbiVersion {
            found: 1,
            expected: 2
        })
    ));
    let huge = wat(kind, TRAP, "").replace(
        "(memory (export \"memory\") 1)",
        "(memory (export \"memory\") 1000)",
    );
    let code = load(kind, &huge).unwrap();
    assert!(code.instantiate().is_err());
    assert!(matches!(load(kind, "(module"), Err(GuestError::Compile(_))));
    let refuses_input = wat(kind, TRAP, "").replace(
        "(param i32) (result i32) i32.const 1024",
        "(param i32) (result i32) i32.const 0",
    );
    let mut instance = load(kind, &refuses_input).unwrap().instantiate().unwrap();
    assert!(matches!(
        instance.call(&[1, 2, 3]),
        Err(GuestError::InputRefused { len: 3 })
    ));
}

/// A hosted scheduler for each hostile behaviour, beside a healthy `batch.wasm`: the hostile
/// ones back off and end deactivated; batch runs every copy; the master keeps serving.
#[test]
fn hostile_schedulers_leave_the_master_serving() {
    let mut cluster = Cluster::with_builtin(finish_all);
    for i in 0..4 {
        cluster.add_agent(advert(&format!("a-{i}"), 4.0, 4096.0, &[]));
    }
    let policy = FailurePolicy {
        failures_max: 3,
        backoff_base_ms: 200,
        backoff_max_ms: 1_000,
    };
    let mut hostile_ids = Vec::new();
    for (name, entry) in [
        ("loop", LOOP),
        ("trap", TRAP),
        ("bomb", MEMORY_BOMB),
        ("garbage", GARBAGE),
    ] {
        let code = load(Kind::Scheduler, &wat(Kind::Scheduler, entry, "")).unwrap();
        let scheduler = HostedScheduler::new(name, code, Vec::new(), policy);
        hostile_ids.push(cluster.subscribe(info(name, "hostile", 1.0), Some(scheduler)));
    }
    let batch = cluster.subscribe(info("batch", "jobs", 1.0), Some(batch_scheduler(12, "")));
    cluster.run(400);
    for id in &hostile_ids {
        let scheduler = &cluster.hosted[id];
        assert_eq!(
            scheduler.health(),
            Health::Deactivated,
            "{}",
            scheduler.name()
        );
        assert_eq!(scheduler.failures_total(), 3);
        assert!(cluster.launches_of(id).is_empty());
    }
    assert!(
        cluster
            .faults
            .iter()
            .any(|f| f.contains("3 in a row); deactivated")),
        "{:?}",
        cluster.faults
    );
    let launched = cluster.launches_of(&batch);
    assert_eq!(launched.len(), 12, "batch ran every copy");
    assert_eq!(cluster.hosted[&batch].health(), Health::Healthy);
    assert!(
        cluster.refused_calls.is_empty(),
        "{:?}",
        cluster.refused_calls
    );
}

#[test]
fn backoff_doubles_then_deactivates() {
    let code = load(Kind::Scheduler, &wat(Kind::Scheduler, TRAP, "")).unwrap();
    let policy = FailurePolicy {
        failures_max: 3,
        backoff_base_ms: 1_000,
        backoff_max_ms: 1_500,
    };
    let mut s = HostedScheduler::new("trap", code, Vec::new(), policy);
    assert!(s.tick(0).is_err());
    assert_eq!(s.health(), Health::BackingOff { until_ms: 1_000 });
    assert!(matches!(
        s.tick(999),
        Err(policy_host::SchedulerFault::BackingOff {
            until_ms: 1_000,
            ..
        })
    ));
    assert!(s.tick(1_000).is_err());
    assert_eq!(
        s.health(),
        Health::BackingOff { until_ms: 2_500 },
        "2 s capped at 1.5 s"
    );
    assert!(s.tick(2_500).is_err());
    assert_eq!(s.health(), Health::Deactivated);
    assert!(matches!(
        s.tick(1_000_000),
        Err(policy_host::SchedulerFault::Deactivated { .. })
    ));
    assert_eq!(s.failures_total(), 3);
}

/// Allocator modules that loop, trap, blow up memory, answer garbage or answer with an
/// agent that is not a candidate: every pass falls back to the built-in DRF, so the
/// framework gets exactly the offers the built-in master gives it.
#[test]
fn hostile_allocators_fall_back_to_builtin_drf() {
    let not_a_candidate = r#"(data (i32.const 4096) "\05ghost\04fw-0") "#;
    // (4096 << 32) | 11: the 11 bytes of `OfferDecision { agent_id: "ghost", framework_id: "fw-0" }`.
    let invalid = "i64.const 0x000010000000000b";
    let cases = [
        ("loop", LOOP, ""),
        ("trap", TRAP, ""),
        ("bomb", MEMORY_BOMB, ""),
        ("garbage", GARBAGE, ""),
        ("ghost", invalid, not_a_candidate),
    ];
    let reference = allocations_with(Master::new(MasterConfig::default(), 11));
    for (name, entry, extra) in cases {
        let code = load(Kind::Allocator, &wat(Kind::Allocator, entry, extra)).unwrap();
        let seed = 11 ^ policy_host::allocator::BUILTIN_DRF_SEED_MIX;
        let allocator = WasmAllocator::new(name, code, seed);
        let master = Master::with_allocator(MasterConfig::default(), 11, Box::new(allocator));
        assert_eq!(allocations_with(master), reference, "{name}");
    }
}

/// Launches of a short batch run: (agent, task) in order.
fn allocations_with(master: Master) -> Vec<(String, String)> {
    let mut cluster = Cluster::new(master, finish_all);
    for i in 0..3 {
        cluster.add_agent(advert(&format!("a-{i}"), 2.0, 1024.0, &[]));
    }
    cluster.subscribe(info("batch", "jobs", 1.0), Some(batch_scheduler(6, "")));
    cluster.run(60);
    assert!(
        cluster.refused_calls.is_empty(),
        "{:?}",
        cluster.refused_calls
    );
    let launched: Vec<(String, String)> = cluster
        .launched
        .iter()
        .map(|(a, _, t)| (a.to_string(), t.task_id.to_string()))
        .collect();
    assert_eq!(launched.len(), 6);
    launched
}

/// A module that keeps failing sits out 1, 2, 4 ... passes (the built-in does them), so it
/// does not spend its whole budget on every pass.
#[test]
fn failing_allocator_sits_out_passes() {
    use master::allocator::{Allocator, Snapshot};
    let code = load(Kind::Allocator, &wat(Kind::Allocator, TRAP, "")).unwrap();
    let mut allocator = WasmAllocator::new("trap", code, 1);
    let snapshot = Snapshot::default();
    let failures: Vec<u64> = (0..8)
        .map(|_| {
            allocator.allocate(&snapshot, &[]);
            allocator.failures_total()
        })
        .collect();
    // Tried on passes 1, 3 and 6 (after skipping 1, then 2, then 4).
    assert_eq!(failures, [1, 1, 2, 2, 2, 3, 3, 3]);
}

#[test]
fn a_looping_module_under_a_deadline_runs_out_of_time() {
    let limits = Limits {
        metering: policy_host::Metering::Deadline,
        deadline_ms_per_call: 50,
        ..limits()
    };
    let engine = policy_host::sandbox::engine_for(policy_host::Metering::Deadline).unwrap();
    let source = wat(Kind::Allocator, LOOP, "");
    let code = ModuleCode::compile(&engine, source.as_bytes(), Kind::Allocator, limits).unwrap();
    let mut instance = code.instantiate().unwrap();
    assert!(matches!(
        instance.call(&[0]).unwrap_err(),
        GuestError::OutOfTime { ms: 50 }
    ));
    // A module that answers at once is within the same deadline.
    let empty = wat(Kind::Allocator, "i64.const 0", "");
    let code = ModuleCode::compile(&engine, empty.as_bytes(), Kind::Allocator, limits).unwrap();
    assert_eq!(
        code.instantiate().unwrap().call(&[0]).unwrap(),
        Vec::<u8>::new()
    );
}
