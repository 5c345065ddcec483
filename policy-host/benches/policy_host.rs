//! Cost of modules against the same logic compiled natively:
//! - one scheduler call: `batch` answering an `Offers` event of 10 offers (20 launches),
//!   through wasmtime (`HostedScheduler`, encode + call + decode) and natively (the same
//!   module source run through the SDK on the host, encode + handle + decode);
//! - one allocation pass at 1,000 agents × 100 frameworks: `drf.wasm` through
//!   `WasmAllocator` (encode the snapshot + call + decode + checks) under fuel (as `wasmos
//!   sim` runs it) and under a deadline (as the master daemon does), against the built-in
//!   `DrfAllocator` (a fresh sorter: a full pass), and the module's logic natively;
//! - the parts of a `drf.wasm` pass: encoding, the guest call, decoding, and what keeping
//!   the fallback's sorter in step would cost.
//!
//! Needs the modules built: `cargo xtask modules`. Short run: `cargo bench -p
//! wasmos-policy-host -- --warm-up-time 1 --measurement-time 3`.

#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use master::Millis;
use master::allocator::{
    AgentSlot, Allocator, Changes, DrfAllocator, FrameworkSlot, GpuAgents, Snapshot,
};
use policy_host::abi::SchedulerInput;
use policy_host::{
    FailurePolicy, HostedScheduler, Kind, Limits, Metering, ModuleCode, WasmAllocator,
};
use proto::{AgentId, Attributes, Event, FrameworkId, Offer, OfferId, Resources};

#[allow(unused_attributes, dead_code)]
#[path = "../../modules/schedulers/batch/src/lib.rs"]
mod batch;
#[allow(unused_attributes, dead_code)]
#[path = "../../modules/allocators/drf/src/lib.rs"]
mod drf;

const AGENTS: usize = 1_000;
const FRAMEWORKS: usize = 100;
const OFFERS: usize = 10;
const CONFIG: &str = "name = job\ncount = 1000\ncpus = 1\nmem = 256\n\
    module_sha256 = 5e4d5e4d5e4d5e4d5e4d5e4d5e4d5e4d5e4d5e4d5e4d5e4d5e4d5e4d5e4d5e4d\nmodule_size = 100";

/// A module under fuel metering.
fn module(name: &str, kind: Kind) -> ModuleCode {
    module_metered(name, kind, Metering::Fuel)
}

fn module_metered(name: &str, kind: Kind, metering: Metering) -> ModuleCode {
    let path = format!(
        "{}/../target/modules/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}; run cargo xtask modules"));
    let engine = policy_host::sandbox::engine_for(metering).unwrap();
    let limits = Limits {
        metering,
        ..Limits::default()
    };
    ModuleCode::compile(&engine, &bytes, kind, limits).unwrap()
}

fn offers_event() -> Event {
    let offers = (0..OFFERS)
        .map(|i| Offer {
            offer_id: OfferId::new(format!("o-{i}")),
            framework_id: FrameworkId::new("fw-0"),
            agent_id: AgentId::new(format!("agent-{i:04}")),
            hostname: format!("agent-{i:04}.local"),
            attributes: Attributes::new()
                .with("arch", "aarch64")
                .with("has", "camera"),
            resources: Resources::new()
                .with_scalar("cpus", 2.0)
                .with_scalar("mem", 2048.0),
        })
        .collect();
    Event::Offers { offers }
}

fn scheduler_call(c: &mut Criterion) {
    let code = module("batch", Kind::Scheduler);
    let event = offers_event();
    let mut group = c.benchmark_group("scheduler_call_10_offers");
    group.bench_function("wasm", |b| {
        b.iter_batched(
            || {
                let mut s = HostedScheduler::new(
                    "batch",
                    code.clone(),
                    CONFIG.into(),
                    FailurePolicy::default(),
                );
                s.tick(0).unwrap();
                s
            },
            |mut s| {
                let calls = s.handle_event(1, &event).unwrap();
                assert_eq!(calls.len(), OFFERS);
                black_box(calls)
            },
            BatchSize::PerIteration,
        )
    });
    let mut out = vec![0u8; executor_sdk::OUTPUT_BYTES_MAX];
    let start = postcard::to_allocvec(&SchedulerInput::Start {
        now_ms: 0,
        config: CONFIG.into(),
    })
    .unwrap();
    group.bench_function("native", |b| {
        b.iter_batched(
            || {
                let mut state: Option<batch::Batch> = None;
                executor_sdk::scheduler::handle(
                    &mut state,
                    &start,
                    executor_sdk::Output::new(&mut out),
                )
                .unwrap();
                state
            },
            |mut state| {
                let input = postcard::to_allocvec(&SchedulerInput::Event {
                    now_ms: 1,
                    event: event.clone(),
                })
                .unwrap();
                let mut buf = vec![0u8; executor_sdk::OUTPUT_BYTES_MAX];
                let len = executor_sdk::scheduler::handle(
                    &mut state,
                    &input,
                    executor_sdk::Output::new(&mut buf),
                )
                .unwrap();
                let calls = policy_host::abi::decode_calls(&buf[..len]).unwrap();
                assert_eq!(calls.len(), OFFERS);
                black_box(calls)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// 1,000 agents with cpus, mem and a camera set on some; 100 frameworks in 4 roles, a
/// tenth with a constraint, all with some allocation.
fn big_snapshot() -> (Snapshot, Vec<AgentId>) {
    let mut snap = Snapshot {
        now: Millis(1_000),
        ..Snapshot::default()
    };
    for i in 0..AGENTS {
        let mut attributes =
            Attributes::new().with("arch", if i % 3 == 0 { "aarch64" } else { "x86_64" });
        let mut free = Resources::new()
            .with_scalar("cpus", (1 + i % 8) as f64)
            .with_scalar("mem", (512 * (1 + i % 4)) as f64);
        if i % 5 == 0 {
            attributes.insert("has", "camera");
            free = free.with_set_item("cameras", &format!("camera:{i}"));
        }
        proto::resources::add_quantities(&mut snap.total, &free.quantities());
        snap.agents.insert(
            AgentId::new(format!("agent-{i:04}")),
            AgentSlot { attributes, free },
        );
    }
    for i in 0..FRAMEWORKS {
        let constraints = if i % 10 == 0 {
            vec![proto::Constraint::new(
                "has",
                proto::ConstraintOp::Eq,
                "camera",
            )]
        } else {
            vec![]
        };
        let slot = FrameworkSlot {
            role: format!("role-{}", i % 4),
            weight: 1.0 + (i % 3) as f64,
            subscribed_seq: i as u64,
            allocation: BTreeMap::from([
                ("cpus".into(), (i as u64 % 7) * 1000),
                ("mem".into(), (i as u64 % 5) * 256_000),
            ]),
            wants_offers: true,
            constraints,
            min_offer: Resources::new(),
            filters: BTreeMap::new(),
            gpu_agents: GpuAgents::NotOffered,
        };
        snap.frameworks
            .insert(FrameworkId::new(format!("fw-{i:03}")), slot);
    }
    snap.changes = Changes {
        all: true,
        frameworks: Default::default(),
    };
    let candidates = snap.agents.keys().cloned().collect();
    (snap, candidates)
}

fn allocation_pass(c: &mut Criterion) {
    let (snap, candidates) = big_snapshot();
    let code = module("drf", Kind::Allocator);
    let mut group = c.benchmark_group("allocation_pass_1000x100");
    group.bench_function("builtin_drf", |b| {
        b.iter_batched(
            || DrfAllocator::new(1),
            |mut drf| black_box(drf.allocate(&snap, &candidates)),
            BatchSize::SmallInput,
        )
    });
    let mut wasm = WasmAllocator::new("drf.wasm", code, 1);
    let reference = DrfAllocator::new(1).allocate(&snap, &candidates);
    assert_eq!(
        wasm.allocate(&snap, &candidates),
        reference,
        "drf.wasm agrees before it is timed"
    );
    group.bench_function("drf_wasm", |b| {
        b.iter(|| black_box(wasm.allocate(&snap, &candidates)))
    });
    // The same under a wall-clock deadline (epoch interruption) instead of fuel.
    let deadline_code = module_metered("drf", Kind::Allocator, Metering::Deadline);
    let mut wasm_deadline = WasmAllocator::new("drf.wasm", deadline_code, 1);
    group.bench_function("drf_wasm_deadline", |b| {
        b.iter(|| black_box(wasm_deadline.allocate(&snap, &candidates)))
    });
    let ids: Vec<&AgentId> = candidates.iter().collect();
    let input = postcard::to_allocvec(&(&snap, &ids)).unwrap();
    let mut out = vec![0u8; executor_sdk::OUTPUT_BYTES_MAX];
    let mut state: Option<drf::Drf> = None;
    group.bench_function("drf_module_logic_native", |b| {
        b.iter(|| {
            let len = executor_sdk::allocator::handle(
                &mut state,
                &input,
                executor_sdk::Output::new(&mut out),
            )
            .unwrap();
            black_box(len)
        })
    });
    group.finish();
    assert_eq!(wasm.failures_total() + wasm_deadline.failures_total(), 0);
    eprintln!("drf.wasm fuel per pass: {}", wasm.fuel_used_last());
}

/// Where a `drf.wasm` pass spends its time: encoding the input, the guest call alone,
/// decoding the answer, and keeping the fallback's sorter in step.
fn allocation_pass_parts(c: &mut Criterion) {
    let (snap, candidates) = big_snapshot();
    let ids: Vec<&AgentId> = candidates.iter().collect();
    let mut group = c.benchmark_group("allocation_pass_parts_1000x100");
    group.bench_function("encode_input", |b| {
        b.iter(|| black_box(postcard::to_allocvec(&(&snap, &ids)).unwrap()))
    });
    let input = postcard::to_allocvec(&(&snap, &ids)).unwrap();
    let mut instance = module("drf", Kind::Allocator).instantiate().unwrap();
    group.bench_function("guest_call", |b| {
        b.iter(|| black_box(instance.call(&input).unwrap()))
    });
    let output = instance.call(&input).unwrap();
    group.bench_function("decode_answer", |b| {
        b.iter(|| black_box(policy_host::abi::decode_decisions(&output).unwrap()))
    });
    let mut fallback = DrfAllocator::new(1);
    group.bench_function("fallback_sync", |b| b.iter(|| fallback.sync(&snap)));
    group.finish();
}

criterion_group!(
    benches,
    scheduler_call,
    allocation_pass,
    allocation_pass_parts
);
criterion_main!(benches);
