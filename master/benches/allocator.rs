//! Allocation cost for 100 × 10, 1,000 × 100 and 10,000 × 1,000 (agents × frameworks).
//!
//! - `drf_full_pass`: the DRF allocator offers every agent once, its sorter already in
//!   step with the snapshot (what a periodic allocation costs);
//! - `drf_full_pass_cold`: the same with the sorter built from scratch first (after the
//!   cluster total or a role weight changed);
//! - `drf_incremental`: one agent's resources were freed and one framework's allocation
//!   changed; the allocator resyncs that framework and offers that agent;
//! - `master_incremental`: the whole path in the real master on a full cluster: a task
//!   ends (status update), the agent is offered again (`handle_timeout`), and the
//!   framework launches a task on the offer (`handle_call`).

#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use master::allocator::{AgentSlot, Allocator, DrfAllocator, FrameworkSlot, GpuAgents, Snapshot};
use master::{Action, Master, MasterConfig, Millis};
use proto::resources::add_quantities;
use proto::{
    AgentAdvert, AgentId, Attributes, Call, CallReply, Event, Filters, FrameworkCall, FrameworkId,
    FrameworkInfo, Operation, Resources, StatusUuid, TaskId, TaskKind, TaskLimits, TaskSpec,
    TaskState, TaskStatus, WasmTask,
};

const SIZES: [(usize, usize); 3] = [(100, 10), (1_000, 100), (10_000, 1_000)];
/// Frameworks per role.
const ROLE_SIZE: usize = 10;

fn agent_total(i: usize) -> Resources {
    let r = Resources::new()
        .with_scalar("cpus", 16.0)
        .with_scalar("mem", 65536.0);
    if i.is_multiple_of(10) {
        r.with_scalar("gpus", 1.0)
    } else {
        r
    }
}

/// A deterministic spread of allocations, so shares differ.
fn allocation(j: usize) -> BTreeMap<String, u64> {
    let x = (j as u64).wrapping_mul(2_654_435_761) % 1000;
    BTreeMap::from([
        ("cpus".to_owned(), x * 1000),
        ("mem".to_owned(), (999 - x) * 4_000_000),
    ])
}

fn snapshot(agents: usize, frameworks: usize) -> Snapshot {
    let mut s = Snapshot::default();
    for i in 0..agents {
        add_quantities(&mut s.total, &agent_total(i).quantities());
        s.agents.insert(
            AgentId::new(format!("a{i}")),
            AgentSlot {
                attributes: Attributes::new(),
                free: agent_total(i),
            },
        );
    }
    for j in 0..frameworks {
        let role = format!("r{}", j / ROLE_SIZE);
        s.role_weights
            .insert(role.clone(), 1.0 + (j / ROLE_SIZE % 3) as f64);
        // One framework in ten has a standing preference, so the slow check runs too.
        let min_offer = if j % 10 == 0 {
            Resources::new().with_scalar("cpus", 1.0)
        } else {
            Resources::new()
        };
        let slot = FrameworkSlot {
            role,
            weight: 1.0,
            subscribed_seq: j as u64,
            allocation: allocation(j),
            wants_offers: true,
            constraints: Vec::new(),
            min_offer,
            filters: BTreeMap::new(),
            gpu_agents: GpuAgents::NotOffered,
        };
        s.frameworks
            .insert(FrameworkId::new(format!("fw{j}")), slot);
    }
    s.changes.all = true;
    s
}

fn bench_allocator(c: &mut Criterion) {
    let mut group = c.benchmark_group("allocator");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (agents, frameworks) in SIZES {
        let id = format!("{agents}x{frameworks}");
        let mut snap = snapshot(agents, frameworks);
        let all: Vec<AgentId> = snap.agents.keys().cloned().collect();
        group.bench_with_input(BenchmarkId::new("drf_full_pass_cold", &id), &(), |b, _| {
            b.iter(|| black_box(DrfAllocator::new(1).allocate(&snap, &all)))
        });
        let mut synced = DrfAllocator::new(1);
        synced.sync(&snap);
        snap.changes = Default::default();
        group.bench_with_input(BenchmarkId::new("drf_full_pass", &id), &(), |b, _| {
            // The allocator is handed back so that dropping it is not timed.
            b.iter_batched(
                || synced.clone(),
                |mut a| (a.allocate(&snap, &all), a),
                BatchSize::LargeInput,
            )
        });
        // Incremental: everything is allocated but one agent, one framework changed.
        let one = all[agents / 2].clone();
        for (agent_id, slot) in snap.agents.iter_mut() {
            if agent_id != &one {
                slot.free = Resources::new();
            }
        }
        synced.sync(&snap);
        let changed = FrameworkId::new(format!("fw{}", frameworks / 2));
        if let Some(fw) = snap.frameworks.get_mut(&changed) {
            fw.allocation.insert("cpus".to_owned(), 1000);
        }
        snap.changes.frameworks.insert(changed);
        let candidates = vec![one];
        group.bench_with_input(BenchmarkId::new("drf_incremental", &id), &(), |b, _| {
            b.iter_batched(
                || synced.clone(),
                |mut a| (a.allocate(&snap, &candidates), a),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// A master with every agent running one task that fills it.
struct Full {
    m: Master,
    now: u64,
    /// The task running on each agent, and its framework.
    running: Vec<(TaskId, FrameworkId)>,
    next_task: u64,
}

fn task(id: u64, resources: Resources) -> TaskSpec {
    TaskSpec {
        task_id: TaskId::new(format!("t{id}")),
        name: String::new(),
        resources,
        kind: TaskKind::Wasm(WasmTask::default()),
        limits: TaskLimits::default(),
        disconnect: None,
        replaces: None,
    }
}

impl Full {
    fn new(agents: usize, frameworks: usize) -> Full {
        let config = MasterConfig {
            offer_timeout_ms: None,
            reclaim: None,
            ..MasterConfig::default()
        };
        let mut m = Master::new(config, 1);
        for j in 0..frameworks {
            let info = FrameworkInfo {
                name: format!("fw{j}"),
                role: format!("r{}", j / ROLE_SIZE),
                weight: 1.0,
                framework_id: None,
                failover_timeout_ms: 0,
                constraints: Vec::new(),
                min_offer: Resources::new(),
                capabilities: Vec::new(),
            };
            let call = FrameworkCall {
                framework_id: None,
                call: Call::Subscribe { info },
            };
            let Ok(CallReply::Subscribed { framework_id, .. }) =
                m.handle_call(Millis(0), &proto::Principal::anonymous(), call)
            else {
                panic!("subscribe refused");
            };
            m.handle_framework_token(Millis(0), &framework_id, true);
        }
        for i in 0..agents {
            let advert = AgentAdvert {
                agent_id: AgentId::new(format!("a{i}")),
                hostname: String::new(),
                attributes: Attributes::new(),
                total: agent_total(i),
                reserved: Resources::new(),
                seq: 1,
                incarnation: 1,
                tasks: Vec::new(),
                version: String::new(),
                last_census: None,
            };
            m.handle_agent_token(Millis(0), &advert.agent_id, true);
            m.handle_agent_advert(Millis(0), advert);
        }
        let mut full = Full {
            m,
            now: 0,
            running: vec![(TaskId::new(String::new()), FrameworkId::new(String::new())); agents],
            next_task: 0,
        };
        full.m.handle_timeout(Millis(0));
        full.accept_all();
        full
    }

    /// Every framework launches one task filling each offer it got.
    fn accept_all(&mut self) {
        let actions: Vec<Action> = std::iter::from_fn(|| self.m.poll_action()).collect();
        for action in actions {
            let Action::SendEvent {
                framework_id,
                event: Event::Offers { offers },
            } = action
            else {
                continue;
            };
            for o in offers {
                self.next_task += 1;
                let t = task(self.next_task, o.resources.clone());
                let agent: usize = o.agent_id.0[1..].parse().unwrap_or(0);
                self.running[agent] = (t.task_id.clone(), framework_id.clone());
                let call = Call::Accept {
                    offer_ids: vec![o.offer_id],
                    operations: vec![Operation::Launch { tasks: vec![t] }],
                    filters: Filters {
                        refuse_seconds: 0.0,
                    },
                };
                let call = FrameworkCall {
                    framework_id: Some(framework_id.clone()),
                    call,
                };
                assert!(
                    self.m
                        .handle_call(Millis(self.now), &proto::Principal::anonymous(), call)
                        .is_ok()
                );
            }
        }
        while self.m.poll_action().is_some() {}
    }

    /// The task on agent `i` ends; the agent is offered again and filled again.
    fn cycle(&mut self, i: usize) {
        self.now += 1;
        let (task_id, framework_id) = self.running[i].clone();
        let status = TaskStatus {
            task_id,
            framework_id,
            agent_id: AgentId::new(format!("a{i}")),
            state: TaskState::Finished,
            exit_code: Some(0),
            reason: String::new(),
            uuid: StatusUuid(self.now as u128),
            timestamp_ms: 0,
        };
        self.m.handle_status(Millis(self.now), status);
        self.m.handle_timeout(Millis(self.now));
        self.accept_all();
    }
}

fn bench_master(c: &mut Criterion) {
    let mut group = c.benchmark_group("master");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (agents, frameworks) in SIZES {
        let mut full = Full::new(agents, frameworks);
        let mut i = 0;
        group.bench_function(
            BenchmarkId::new("incremental", format!("{agents}x{frameworks}")),
            |b| {
                b.iter(|| {
                    i = (i + 7919) % agents;
                    full.cycle(i);
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_allocator, bench_master);
criterion_main!(benches);
