//! The SDK's guest types against `proto` and the master's snapshot: same bytes.

use std::collections::BTreeMap;

use executor_sdk as sdk;
use master::Millis;
use master::allocator::{
    AgentSlot, Changes, FilterSlot, FrameworkSlot, GpuAgents, OfferDecision, Snapshot,
};
use policy_host::abi::{self, SchedulerInput};
use proptest::prelude::*;
use proto::{
    AgentId, Attributes, Call, Constraint, DirGrant, Event, Filters, FrameworkId, ModuleHash,
    ModuleRef, OciTask, Offer, OfferId, Operation, Resources, StatusUuid, TaskId, TaskKind,
    TaskLimits, TaskSpec, TaskState, TaskStatus, WasmTask,
};

fn camera_resources() -> Resources {
    Resources::new()
        .with_scalar("cpus", 1.5)
        .with_scalar("mem", 512.0)
        .with_range("ports", 8000, 8099)
        .with_range("ports", 9000, 9000)
        .with_set_item("cameras", "camera:/dev/video0")
        .with_set_item("cameras", "camera:/dev/video1")
}

fn offer(id: &str, agent: &str) -> Offer {
    Offer {
        offer_id: OfferId::new(id),
        framework_id: FrameworkId::new("fw-1"),
        agent_id: AgentId::new(agent),
        hostname: format!("{agent}.local"),
        attributes: Attributes::new()
            .with("arch", "aarch64")
            .with("has", "camera")
            .with("has", "gpu"),
        resources: camera_resources(),
    }
}

fn status() -> TaskStatus {
    TaskStatus {
        task_id: TaskId::new("t-1"),
        framework_id: FrameworkId::new("fw-1"),
        agent_id: AgentId::new("a-1"),
        state: TaskState::Failed,
        exit_code: Some(-3),
        reason: "exited with code -3".into(),
        uuid: StatusUuid(u128::MAX - 5),
        timestamp_ms: 1_700_000_000_000,
    }
}

fn decode_event(event: Event) -> (Vec<u8>, u64) {
    let bytes = postcard::to_allocvec(&SchedulerInput::Event { now_ms: 42, event }).unwrap();
    (bytes, 42)
}

#[test]
fn offers_event_decodes_field_by_field() {
    let offers = vec![offer("o-1", "a-1"), offer("o-2", "a-2")];
    let (bytes, _) = decode_event(Event::Offers {
        offers: offers.clone(),
    });
    let sdk::SchedulerInput::Event {
        now_ms,
        event: sdk::Event::Offers { offers: seq },
    } = sdk::SchedulerInput::decode(&bytes).unwrap()
    else {
        panic!("not an offers event")
    };
    assert_eq!(now_ms, 42);
    assert_eq!(seq.len(), 2);
    for (guest, host) in seq.iter().zip(&offers) {
        assert_eq!(guest.offer_id, host.offer_id.as_str());
        assert_eq!(guest.agent_id, host.agent_id.as_str());
        assert_eq!(guest.hostname, host.hostname);
        assert!(guest.attributes.has("has", "gpu") && guest.attributes.has("arch", "aarch64"));
        assert!(!guest.attributes.has("has", "lidar"));
        assert_eq!(guest.resources.scalar("cpus"), 1500);
        assert_eq!(guest.resources.scalar("mem"), 512_000);
        let quantities: BTreeMap<String, u64> = guest
            .resources
            .quantities()
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        assert_eq!(quantities, host.resources.quantities());
        // The guest view re-encodes to exactly the host's bytes.
        assert_eq!(
            postcard::to_allocvec(&guest).unwrap(),
            postcard::to_allocvec(host).unwrap()
        );
    }
}

#[test]
fn every_event_kind_decodes() {
    let cases = [
        Event::Subscribed {
            framework_id: FrameworkId::new("fw-9"),
            heartbeat_interval_ms: 15_000,
        },
        Event::Rescind {
            offer_id: OfferId::new("o-7"),
        },
        Event::Update { status: status() },
        Event::Error {
            message: "quota".into(),
        },
        Event::Heartbeat,
    ];
    for event in cases {
        let (bytes, _) = decode_event(event.clone());
        let sdk::SchedulerInput::Event { event: guest, .. } =
            sdk::SchedulerInput::decode(&bytes).unwrap()
        else {
            panic!("not an event")
        };
        match (guest, &event) {
            (
                sdk::Event::Subscribed {
                    framework_id,
                    heartbeat_interval_ms,
                },
                Event::Subscribed { .. },
            ) => {
                assert_eq!((framework_id, heartbeat_interval_ms), ("fw-9", 15_000));
            }
            (sdk::Event::Rescind { offer_id }, Event::Rescind { .. }) => {
                assert_eq!(offer_id, "o-7")
            }
            (sdk::Event::Update { status: s }, Event::Update { status: host }) => {
                assert_eq!(
                    postcard::to_allocvec(&s).unwrap(),
                    postcard::to_allocvec(host).unwrap()
                );
                assert_eq!(
                    (s.state, s.exit_code, s.uuid),
                    (sdk::TaskState::Failed, Some(-3), u128::MAX - 5)
                );
            }
            (sdk::Event::Error { message }, Event::Error { .. }) => assert_eq!(message, "quota"),
            (sdk::Event::Heartbeat, Event::Heartbeat) => {}
            (guest, host) => panic!("{host:?} decoded as {guest:?}"),
        }
    }
}

#[test]
fn start_and_tick_decode_and_garbage_is_refused() {
    let start = postcard::to_allocvec(&SchedulerInput::Start {
        now_ms: 5,
        config: b"count = 3".to_vec(),
    })
    .unwrap();
    let sdk::SchedulerInput::Start { now_ms: 5, config } =
        sdk::SchedulerInput::decode(&start).unwrap()
    else {
        panic!("not a start")
    };
    assert_eq!(config, b"count = 3");
    let tick = postcard::to_allocvec(&SchedulerInput::Tick { now_ms: u64::MAX }).unwrap();
    assert!(matches!(
        sdk::SchedulerInput::decode(&tick),
        Ok(sdk::SchedulerInput::Tick { now_ms: u64::MAX })
    ));
    let mut trailing = tick.clone();
    trailing.push(0);
    assert_eq!(
        sdk::SchedulerInput::decode(&trailing).unwrap_err(),
        sdk::Error::TrailingBytes
    );
    assert_eq!(
        sdk::SchedulerInput::decode(&[9, 0]).unwrap_err(),
        sdk::Error::UnknownVariant
    );
    assert_eq!(
        sdk::SchedulerInput::decode(&[]).unwrap_err(),
        sdk::Error::Malformed
    );
    // An offer with more scalar kinds than the SDK holds is refused, not truncated.
    let mut wide = camera_resources();
    for i in 0..sdk::types::SCALARS_MAX {
        wide = wide.with_scalar(&format!("s{i}"), 1.0);
    }
    let mut big = offer("o-1", "a-1");
    big.resources = wide;
    let (bytes, _) = decode_event(Event::Offers { offers: vec![big] });
    assert_eq!(
        sdk::SchedulerInput::decode(&bytes).unwrap_err(),
        sdk::Error::Malformed
    );
}

/// Encodes an SDK call into a buffer the way a module does.
fn guest_bytes(call: &sdk::Call<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 1 << 16];
    let mut out = sdk::Output::new(&mut buf);
    out.push(call).unwrap();
    let len = out.len();
    buf.truncate(len);
    buf
}

#[test]
fn every_call_kind_decodes_as_proto() {
    let sha = "ab".repeat(32);
    let resources = sdk::Resources::default()
        .with_scalar("cpus", 500)
        .unwrap()
        .with_scalar("mem", 64_000)
        .unwrap();
    let dirs = [sdk::DirGrant {
        host: "/dev/sensors",
        guest: "/sensors",
        read_only: true,
    }];
    let wasm = sdk::TaskSpec {
        task_id: "t-1",
        name: "sampler",
        resources: resources.clone(),
        kind: sdk::TaskKind::Wasm(sdk::WasmTask {
            module: sdk::ModuleRef {
                sha256: &sha,
                size_bytes: 1234,
                name: "p1_sensor.wasm",
            },
            args: &["--device", "/sensors/temp0"],
            env: &[("A", "1"), ("B", "2")],
            dirs: &dirs,
            net: false,
        }),
        limits: sdk::TaskLimits {
            timeout_ms: Some(60_000),
            output_bytes_max: 4096,
        },
        disconnect: None,
        replaces: None,
    };
    let oci = sdk::TaskSpec {
        task_id: "t-2",
        name: "web",
        resources: resources.clone(),
        kind: sdk::TaskKind::Oci(sdk::OciTask {
            image: "/images/nginx.tar",
            command: &["nginx", "-g", "daemon off;"],
            env: &[],
            host_network: true,
            capabilities: &["CAP_NET_BIND_SERVICE"],
        }),
        limits: sdk::TaskLimits::default(),
        disconnect: None,
        replaces: None,
    };
    let tasks = [wasm, oci];
    let operations = [sdk::Operation::Launch { tasks: &tasks }];
    let filters = sdk::Filters {
        refuse_seconds: 2.5,
    };
    let host_resources = Resources::new()
        .with_scalar("cpus", 0.5)
        .with_scalar("mem", 64.0);
    let host_tasks = vec![
        TaskSpec {
            task_id: TaskId::new("t-1"),
            name: "sampler".into(),
            resources: host_resources.clone(),
            kind: TaskKind::Wasm(WasmTask {
                module: ModuleRef {
                    sha256: ModuleHash(sha.clone()),
                    size_bytes: 1234,
                    name: "p1_sensor.wasm".into(),
                },
                args: vec!["--device".into(), "/sensors/temp0".into()],
                env: BTreeMap::from([("A".into(), "1".into()), ("B".into(), "2".into())]),
                dirs: vec![DirGrant {
                    host: "/dev/sensors".into(),
                    guest: "/sensors".into(),
                    read_only: true,
                }],
                net: false,
            }),
            limits: TaskLimits {
                timeout_ms: Some(60_000),
                output_bytes_max: 4096,
            },
            disconnect: None,
            replaces: None,
        },
        TaskSpec {
            task_id: TaskId::new("t-2"),
            name: "web".into(),
            resources: host_resources,
            kind: TaskKind::Oci(OciTask {
                image: "/images/nginx.tar".into(),
                command: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
                env: BTreeMap::new(),
                host_network: true,
                capabilities: vec!["CAP_NET_BIND_SERVICE".into()],
            }),
            limits: TaskLimits::default(),
            disconnect: None,
            replaces: None,
        },
    ];
    let cases: Vec<(sdk::Call<'_>, Call)> = vec![
        (
            sdk::Call::Accept {
                offer_ids: &["o-1", "o-2"],
                operations: &operations,
                filters,
            },
            Call::Accept {
                offer_ids: vec![OfferId::new("o-1"), OfferId::new("o-2")],
                operations: vec![Operation::Launch { tasks: host_tasks }],
                filters: Filters {
                    refuse_seconds: 2.5,
                },
            },
        ),
        (
            sdk::Call::Decline {
                offer_ids: &["o-3"],
                filters: sdk::Filters::default(),
            },
            Call::Decline {
                offer_ids: vec![OfferId::new("o-3")],
                filters: Filters::default(),
            },
        ),
        (sdk::Call::Revive, Call::Revive),
        (sdk::Call::Suppress, Call::Suppress),
        (
            sdk::Call::Kill { task_id: "t-1" },
            Call::Kill {
                task_id: TaskId::new("t-1"),
            },
        ),
        (
            sdk::Call::Acknowledge {
                task_id: "t-1",
                status_uuid: u128::MAX,
            },
            Call::Acknowledge {
                task_id: TaskId::new("t-1"),
                status_uuid: StatusUuid(u128::MAX),
            },
        ),
        (
            sdk::Call::Reconcile { tasks: &["t-1"] },
            Call::Reconcile {
                tasks: vec![TaskId::new("t-1")],
            },
        ),
        (sdk::Call::Teardown, Call::Teardown),
    ];
    let mut answer = Vec::new();
    for (guest, host) in &cases {
        let bytes = guest_bytes(guest);
        assert_eq!(bytes, postcard::to_allocvec(host).unwrap(), "{host:?}");
        answer.extend(bytes);
    }
    // An answer is the calls back to back.
    let hosts: Vec<Call> = cases.into_iter().map(|(_, h)| h).collect();
    assert_eq!(abi::decode_calls(&answer).unwrap(), hosts);
}

fn snapshot() -> (Snapshot, Vec<AgentId>) {
    let mut snap = Snapshot {
        now: Millis(9_000),
        ..Snapshot::default()
    };
    snap.total = BTreeMap::from([("cpus".into(), 8_000), ("mem".into(), 4_096_000)]);
    for (id, battery) in [("a-1", false), ("a-2", true)] {
        let mut attributes = Attributes::new().with("arch", "x86_64");
        if battery {
            attributes.insert("power", "battery");
        }
        snap.agents.insert(
            AgentId::new(id),
            AgentSlot {
                attributes,
                free: camera_resources(),
            },
        );
    }
    snap.role_weights = BTreeMap::from([("ops".into(), 3.0)]);
    let slot = FrameworkSlot {
        role: "ops".into(),
        weight: 2.0,
        subscribed_seq: 4,
        allocation: BTreeMap::from([("cpus".into(), 1_000)]),
        wants_offers: true,
        constraints: vec![Constraint::new("arch", proto::ConstraintOp::Eq, "x86_64")],
        min_offer: Resources::new().with_scalar("mem", 32.0),
        filters: BTreeMap::from([(
            AgentId::new("a-2"),
            vec![FilterSlot {
                resources: camera_resources(),
                until: Millis(10_000),
            }],
        )]),
        gpu_agents: GpuAgents::LastResort,
    };
    snap.frameworks.insert(FrameworkId::new("fw-1"), slot);
    snap.changes = Changes {
        all: true,
        frameworks: [FrameworkId::new("fw-1")].into(),
    };
    (snap, vec![AgentId::new("a-2"), AgentId::new("a-1")])
}

#[test]
fn master_snapshot_decodes_as_allocation_input() {
    let (snap, candidates) = snapshot();
    let bytes = postcard::to_allocvec(&(&snap, &candidates)).unwrap();
    let input = sdk::AllocationInput::decode(&bytes).unwrap();
    assert_eq!(input.now_ms, 9_000);
    assert_eq!(
        input.total.as_slice(),
        &[("cpus", 8_000), ("mem", 4_096_000)]
    );
    assert_eq!(input.role_weight("ops"), 3.0);
    assert_eq!(input.role_weight("other"), 1.0);
    let agents = input.agents.indexed::<16>().unwrap();
    let a2 = agents.get(agents.find_by_key("a-2").unwrap()).unwrap();
    assert!(a2.attributes.has("power", "battery"));
    assert_eq!(agents.find_by_key("a-3"), None);
    let fw = input.frameworks.get(0).unwrap();
    assert_eq!(
        (fw.framework_id, fw.role, fw.weight, fw.subscribed_seq),
        ("fw-1", "ops", 2.0, 4)
    );
    assert_eq!(fw.allocation.as_slice(), &[("cpus", 1_000)]);
    assert!(!fw.takes_anything());
    assert_eq!(fw.gpu_agents, sdk::GpuAgents::LastResort);
    let a1 = agents.get(agents.find_by_key("a-1").unwrap()).unwrap();
    // may_offer agrees with the master's: a-2 is filtered until 10 s, a-1 is not.
    for (agent, id) in [(&a1, "a-1"), (&a2, "a-2")] {
        let host_agent = &snap.agents[&AgentId::new(id)];
        let host = master::allocator::may_offer(
            &snap.frameworks[&FrameworkId::new("fw-1")],
            &AgentId::new(id),
            host_agent,
            snap.now,
        );
        assert_eq!(fw.may_offer(agent, 9_000), host, "{id}");
    }
    assert!(fw.may_offer(&a1, 9_000) && !fw.may_offer(&a2, 9_000));
    assert!(input.changes.all && input.changes.frameworks.len() == 1);
    let order: Vec<&str> = input.candidates.iter().collect();
    assert_eq!(order, ["a-2", "a-1"]);
    // Decisions written by a guest decode as the master's.
    let mut buf = vec![0u8; 256];
    let mut decisions = sdk::Decisions::new(sdk::Output::new(&mut buf));
    decisions.offer("a-1", "fw-1");
    let len = decisions.finish().unwrap();
    let host = abi::decode_decisions(&buf[..len]).unwrap();
    assert_eq!(
        host,
        vec![OfferDecision {
            agent_id: AgentId::new("a-1"),
            framework_id: FrameworkId::new("fw-1")
        }]
    );
}

prop_compose! {
    fn arb_resources()(
        scalars in proptest::collection::btree_map("[a-z]{1,6}", 0u64..1_000_000_000, 0..6),
        ranges in proptest::collection::btree_map("[a-z]{1,4}", proptest::collection::vec((0u64..70_000, 0u64..50), 0..5), 0..3),
        sets in proptest::collection::btree_map("[a-z]{1,4}", proptest::collection::btree_set("[a-z:/0-9]{1,12}", 0..6), 0..3),
    ) -> Resources {
        let mut r = Resources::new();
        for (k, v) in scalars { r.set_scalar(&k, proto::Scalar(v)); }
        for (k, intervals) in ranges {
            let set = proto::RangeSet::from_intervals(intervals.into_iter().map(|(s, l)| (s, s + l))).unwrap();
            r.ranges.insert(k.into(), set);
        }
        r.sets = sets.into_iter().map(|(k, s)| (k.into(), s)).collect();
        r
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any proto `Resources` decodes in the guest, re-encodes to the same bytes, and the
    /// guest's quantities and containment agree with proto's.
    #[test]
    fn resources_round_trip(a in arb_resources(), b in arb_resources()) {
        let (bytes_a, bytes_b) = (postcard::to_allocvec(&a).unwrap(), postcard::to_allocvec(&b).unwrap());
        let guest_a: sdk::Resources<'_> = postcard::from_bytes(&bytes_a).unwrap();
        let guest_b: sdk::Resources<'_> = postcard::from_bytes(&bytes_b).unwrap();
        prop_assert_eq!(&postcard::to_allocvec(&guest_a).unwrap(), &bytes_a);
        let q: BTreeMap<String, u64> = guest_a.quantities().iter().map(|(k, v)| (k.to_string(), *v)).collect();
        prop_assert_eq!(q, a.quantities());
        prop_assert_eq!(guest_a.contains(&guest_b), a.contains(&b));
        prop_assert_eq!(guest_a.contains(&guest_a), true);
        prop_assert_eq!(guest_a.is_empty(), a.is_empty());
    }

    /// The readers of checked bytes end where the checking ones do and see the same
    /// amounts: `pass_resources` as `skip_resources`, `visit_quantities_bytes` as
    /// `visit_quantities`.
    #[test]
    fn passing_over_checked_resources_agrees_with_skipping(a in arb_resources(), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
        let mut bytes = postcard::to_allocvec(&a).unwrap();
        bytes.extend_from_slice(&tail);
        let skipped = sdk::types::skip_resources(&bytes).unwrap();
        prop_assert_eq!(sdk::types::pass_resources(&bytes).unwrap(), skipped);
        let (mut checked, mut passed) = (Vec::new(), Vec::new());
        let end = sdk::types::visit_quantities(&bytes, |k, v| checked.push((k.as_bytes().to_vec(), v))).unwrap();
        prop_assert_eq!(end, skipped);
        let end = sdk::types::visit_quantities_bytes(&bytes, |k, v| passed.push((k.to_vec(), v))).unwrap();
        prop_assert_eq!(end, skipped);
        prop_assert_eq!(checked, passed);
    }
}

prop_compose! {
    fn arb_attributes()(
        map in proptest::collection::btree_map("[a-c]{1,2}", proptest::collection::btree_set("[x-z]{1,2}", 1..4), 0..5),
    ) -> Attributes {
        Attributes::from(map)
    }
}

prop_compose! {
    fn arb_constraint()(
        key in "[a-c]{1,2}",
        ne in any::<bool>(),
        value in "[x-z]{1,2}",
    ) -> Constraint {
        let op = if ne { proto::ConstraintOp::Ne } else { proto::ConstraintOp::Eq };
        Constraint::new(key, op, value)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Proto constraints decode in the guest to the same bytes, skip to the same end, and
    /// the guest's `satisfies` (decoded, and in place on the encoded attributes) agrees
    /// with proto's, for `=` and `!=`, shared keys, several values and missing keys.
    #[test]
    fn guest_constraints_agree_with_proto(
        attributes in arb_attributes(),
        constraints in proptest::collection::vec(arb_constraint(), 0..5),
        tail in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        let attribute_bytes = postcard::to_allocvec(&attributes).unwrap();
        let guest_attributes: sdk::Attributes<'_> = postcard::from_bytes(&attribute_bytes).unwrap();
        let bytes = postcard::to_allocvec(&constraints).unwrap();
        let guest: heapless::Vec<sdk::Constraint<'_>, { sdk::types::CONSTRAINTS_MAX }> =
            postcard::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&postcard::to_allocvec(&guest).unwrap(), &bytes);
        prop_assert_eq!(guest_attributes.satisfies(&guest), attributes.satisfies(&constraints));
        for (host, guest) in constraints.iter().zip(&guest) {
            let host_holds = host.holds_for(&attributes);
            prop_assert_eq!(guest.holds_for(&guest_attributes), host_holds, "{}", host);
            prop_assert_eq!(sdk::types::attributes_satisfy(&attribute_bytes, guest), Ok(host_holds));
            let mut one = postcard::to_allocvec(host).unwrap();
            one.extend_from_slice(&tail);
            prop_assert_eq!(sdk::types::skip_constraint(&one), Ok(&tail[..]));
            // An operator the ABI does not know is refused by decoding and skipping alike.
            one[1 + host.key.len()] = 2;
            prop_assert!(sdk::types::skip_constraint(&one).is_err());
            prop_assert!(postcard::from_bytes::<sdk::Constraint<'_>>(&one).is_err());
        }
    }

    /// The guest parses exactly the constraints proto parses, to the same rule.
    #[test]
    fn guest_constraint_parsing_agrees_with_proto(s in "[ab:=!<~ ._é-]{0,7}") {
        let host = Constraint::parse(&s).ok();
        let guest = sdk::Constraint::parse(&s).ok();
        prop_assert_eq!(
            guest.map(|c| (c.key.to_owned(), c.op == sdk::ConstraintOp::Ne, c.value.to_owned())),
            host.map(|c| (c.key, c.op == proto::ConstraintOp::Ne, c.value)),
            "{:?}", s
        );
    }
}

#[test]
fn guest_constraint_parsing_takes_the_cli_forms() {
    for (given, op) in [
        ("arch=aarch64", sdk::ConstraintOp::Eq),
        ("arch==aarch64", sdk::ConstraintOp::Eq),
        ("arch!=aarch64", sdk::ConstraintOp::Ne),
    ] {
        let c = sdk::Constraint::parse(given).unwrap();
        assert_eq!((c.key, c.op, c.value), ("arch", op, "aarch64"));
    }
    for bad in [
        "arch", "arch<5", "arch=~a", "arch===a", "=a", "arch=", "a=b,c=d", "a = b",
    ] {
        assert_eq!(
            sdk::Constraint::parse(bad),
            Err(sdk::Error::Malformed),
            "{bad}"
        );
    }
}
