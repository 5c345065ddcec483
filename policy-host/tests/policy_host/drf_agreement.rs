//! `drf.wasm` and the built-in DRF agree on randomly generated scenarios: on raw snapshots
//! over several passes, and on whole master runs.

use std::collections::{BTreeMap, BTreeSet};

use master::allocator::{
    AgentSlot, Allocator, Changes, DrfAllocator, FilterSlot, FrameworkSlot, GpuAgents, Snapshot,
};
use master::{Master, MasterConfig, Millis};
use policy_host::WasmAllocator;
use proptest::prelude::*;
use proto::{
    AgentId, Attributes, Call, Constraint, ConstraintOp, Filters, FrameworkCall, FrameworkId,
    Resources,
};

use super::cluster::{Cluster, advert, finish_all, info};
use crate::drf_code;

const ROLES: [&str; 3] = ["edge", "batch", "ops"];
const WEIGHTS: [f64; 4] = [0.5, 1.0, 2.0, 3.0];

#[derive(Clone, Debug)]
struct AgentGen {
    cpus_millis: u64,
    mem: u64,
    gpus: u8,
    camera: bool,
    empty: bool,
}

#[derive(Clone, Debug)]
struct FrameworkGen {
    role: usize,
    weight: usize,
    seq: u64,
    alloc_cpus_millis: u64,
    alloc_mem: u64,
    wants: bool,
    /// `has=camera`, `has!=camera` or no constraint.
    camera: Option<ConstraintOp>,
    min_cpus_millis: u64,
    filtered_agents: Vec<usize>,
    filter_until_ms: u64,
    gpu_agents: GpuAgents,
}

fn agent_gen() -> impl Strategy<Value = AgentGen> {
    (
        0u64..8_000,
        0u64..8_192,
        0u8..3,
        any::<bool>(),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(cpus_millis, mem, gpus, camera, empty)| AgentGen {
            cpus_millis,
            mem,
            gpus,
            camera,
            empty,
        })
}

fn framework_gen() -> impl Strategy<Value = FrameworkGen> {
    (
        (0..ROLES.len(), 0..WEIGHTS.len(), 0u64..1_000),
        (0u64..4_000, 0u64..4_096, prop::bool::weighted(0.85)),
        (
            prop_oneof![
                13 => Just(None),
                4 => Just(Some(ConstraintOp::Eq)),
                3 => Just(Some(ConstraintOp::Ne)),
            ],
            prop::sample::select(vec![0u64, 0, 0, 500, 2_000]),
        ),
        (
            prop::collection::vec(0usize..40, 0..4),
            0u64..20_000,
            prop::sample::select(vec![
                GpuAgents::Offered,
                GpuAgents::LastResort,
                GpuAgents::NotOffered,
            ]),
        ),
    )
        .prop_map(
            |(
                (role, weight, seq),
                (alloc_cpus_millis, alloc_mem, wants),
                (camera, min),
                (filtered_agents, until, gpu_agents),
            )| {
                FrameworkGen {
                    role,
                    weight,
                    seq,
                    alloc_cpus_millis,
                    alloc_mem,
                    wants,
                    camera,
                    min_cpus_millis: min,
                    filtered_agents,
                    filter_until_ms: until,
                    gpu_agents,
                }
            },
        )
}

fn resources_of(a: &AgentGen, index: usize) -> Resources {
    if a.empty {
        return Resources::new();
    }
    let mut r = Resources::new();
    r.set_scalar("cpus", proto::Scalar(a.cpus_millis));
    r.set_scalar("mem", proto::Scalar::from_whole(a.mem));
    for g in 0..a.gpus {
        r = r.with_set_item("gpus", &format!("gpu:{index}-{g}"));
    }
    r
}

fn build_snapshot(
    agents: &[AgentGen],
    frameworks: &[FrameworkGen],
    role_weights: &[f64],
) -> Snapshot {
    let mut snap = Snapshot {
        now: Millis(10_000),
        ..Snapshot::default()
    };
    for (i, a) in agents.iter().enumerate() {
        let mut attributes = Attributes::new().with("arch", "x86_64");
        if a.camera {
            attributes.insert("has", "camera");
        }
        let free = resources_of(a, i);
        proto::resources::add_quantities(&mut snap.total, &free.quantities());
        snap.agents.insert(
            AgentId::new(format!("agent-{i:02}")),
            AgentSlot { attributes, free },
        );
    }
    let mut seqs = BTreeSet::new();
    for (i, f) in frameworks.iter().enumerate() {
        // Subscription order is unique: collisions are pushed to a fresh value.
        let mut seq = f.seq;
        while !seqs.insert(seq) {
            seq += 1_000;
        }
        let allocation: BTreeMap<String, u64> = [
            ("cpus".to_owned(), f.alloc_cpus_millis),
            ("mem".to_owned(), f.alloc_mem * 1000),
        ]
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .collect();
        proto::resources::add_quantities(&mut snap.total, &allocation);
        let filters = f
            .filtered_agents
            .iter()
            .filter(|&&a| a < agents.len())
            .map(|&a| {
                let resources =
                    resources_of(&agents[a], a).plus(&Resources::new().with_scalar("cpus", 1.0));
                (
                    AgentId::new(format!("agent-{a:02}")),
                    vec![FilterSlot {
                        resources,
                        until: Millis(f.filter_until_ms),
                    }],
                )
            })
            .collect();
        let slot = FrameworkSlot {
            role: ROLES[f.role].into(),
            weight: WEIGHTS[f.weight],
            subscribed_seq: seq,
            allocation,
            wants_offers: f.wants,
            constraints: f
                .camera
                .map(|op| Constraint::new("has", op, "camera"))
                .into_iter()
                .collect(),
            min_offer: Resources::new().with_scalar("cpus", f.min_cpus_millis as f64 / 1000.0),
            filters,
            gpu_agents: f.gpu_agents,
        };
        snap.frameworks
            .insert(FrameworkId::new(format!("fw-{i:02}")), slot);
    }
    for (role, w) in ROLES.iter().zip(role_weights) {
        if *w > 0.0 {
            snap.role_weights.insert((*role).into(), *w);
        }
    }
    snap.changes = Changes {
        all: true,
        frameworks: BTreeSet::new(),
    };
    snap
}

/// What the master does with decisions: the agent's free resources move to the framework.
fn apply(snap: &mut Snapshot, decisions: &[master::OfferDecision]) {
    snap.changes = Changes::default();
    for d in decisions {
        let Some(agent) = snap.agents.get_mut(&d.agent_id) else {
            continue;
        };
        let free = std::mem::take(&mut agent.free);
        if let Some(fw) = snap.frameworks.get_mut(&d.framework_id) {
            proto::resources::add_quantities(&mut fw.allocation, &free.quantities());
            snap.changes.frameworks.insert(d.framework_id.clone());
        }
    }
    snap.now = snap.now.plus_ms(3_000);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Three passes over a random snapshot (the second and third incremental): the same
    /// decisions, in the same order, and the module never failed.
    #[test]
    fn drf_module_agrees_with_builtin_on_snapshots(
        agents in prop::collection::vec(agent_gen(), 1..40),
        frameworks in prop::collection::vec(framework_gen(), 1..12),
        role_weights in prop::collection::vec(prop::sample::select(vec![0.0, 1.0, 2.0, 0.5]), 3),
        candidate_mask in prop::collection::vec(prop::bool::weighted(0.8), 40),
        seed in any::<u64>(),
    ) {
        let mut snap = build_snapshot(&agents, &frameworks, &role_weights);
        let mut builtin = DrfAllocator::new(seed);
        let mut wasm = WasmAllocator::new("drf.wasm", drf_code().clone(), seed);
        for pass in 0..3 {
            let mut candidates: Vec<AgentId> = snap
                .agents
                .keys()
                .zip(&candidate_mask)
                .filter(|(_, keep)| **keep || pass > 0)
                .map(|(id, _)| id.clone())
                .collect();
            candidates.push(AgentId::new("not-an-agent"));
            let expected = builtin.allocate(&snap, &candidates);
            let got = wasm.allocate(&snap, &candidates);
            prop_assert_eq!(wasm.failures_total(), 0);
            prop_assert_eq!(&got, &expected, "pass {}", pass);
            apply(&mut snap, &expected);
        }
    }

    /// Whole master runs with random agents, frameworks and declines: the built-in master
    /// and one with `drf.wasm` emit the same actions.
    #[test]
    fn drf_module_agrees_with_builtin_in_master_runs(
        agents in prop::collection::vec((1u32..8, 256u32..4096, any::<bool>()), 1..12),
        frameworks in prop::collection::vec((0..ROLES.len(), 0u32..6, prop::bool::weighted(0.3), any::<bool>()), 1..6),
        role_weights in prop::collection::vec(0..WEIGHTS.len(), ROLES.len()),
        seed in any::<u64>(),
    ) {
        let run = |master: Master| {
            let mut cluster = Cluster::new(master, finish_all);
            for (i, (cpus, mem, camera)) in agents.iter().enumerate() {
                let attrs: &[(&str, &str)] = if *camera { &[("has", "camera")] } else { &[] };
                cluster.add_agent(advert(&format!("a-{i}"), *cpus as f64, *mem as f64, attrs));
            }
            let mut ids = Vec::new();
            for (i, (role, count, decliner, not_camera)) in frameworks.iter().enumerate() {
                // The master wants one weight per role.
                let mut fi = info(&format!("fw{i}"), ROLES[*role], WEIGHTS[role_weights[*role]]);
                if *decliner {
                    let op = if *not_camera { ConstraintOp::Ne } else { ConstraintOp::Eq };
                    fi.constraints = vec![Constraint::new("has", op, "camera")];
                }
                let scheduler = (!*decliner).then(|| super::examples::batch_scheduler(*count, ""));
                ids.push((cluster.subscribe(fi, scheduler), *decliner));
            }
            for _ in 0..30 {
                cluster.run(2);
                // Native frameworks decline everything they are offered, with a short filter.
                let events = std::mem::take(&mut cluster.native_events);
                for (fw, event) in events {
                    if let proto::Event::Offers { offers } = event {
                        let offer_ids = offers.into_iter().map(|o| o.offer_id).collect();
                        let call = Call::Decline { offer_ids, filters: Filters { refuse_seconds: 0.3 } };
                        let now = Millis(cluster.now);
                        let _ = cluster.master.handle_call(now, &proto::Principal::anonymous(), FrameworkCall { framework_id: Some(fw), call });
                        cluster.drain();
                    }
                }
            }
            (cluster.launched.clone(), cluster.master.offers_view().len())
        };
        let builtin = run(Master::new(MasterConfig::default(), seed));
        let allocator = WasmAllocator::new("drf.wasm", drf_code().clone(), seed ^ policy_host::allocator::BUILTIN_DRF_SEED_MIX);
        let wasm = run(Master::with_allocator(MasterConfig::default(), seed, Box::new(allocator)));
        prop_assert_eq!(wasm, builtin);
    }
}
