//! The offer protocol, call by call.

use master::{Action, CallError, MasterConfig, Millis};
use proto::{Attributes, Call, Constraint, Event, Resources, TaskId, TaskState};

use crate::common::*;

#[test]
fn an_offer_is_all_free_resources_of_one_agent_and_counts_against_the_share() {
    let mut m = master();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    join(&mut m, 0, advert("a2", res(2.0, 2048.0), Attributes::new()));
    let fw = subscribe(&mut m, 0, info("one", "r", 1.0));
    let actions = step(&mut m, 0);
    let mut got: Vec<_> = offers_to(&actions, &fw)
        .into_iter()
        .map(|o| (o.agent_id.0, o.resources))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("a1".into(), res(4.0, 4096.0)),
            ("a2".into(), res(2.0, 2048.0))
        ]
    );
    let view = m.frameworks_view();
    assert_eq!(
        view[0].dominant_share, 1.0,
        "outstanding offers count against the share"
    );
    // Nothing is left for a second framework.
    let other = subscribe(&mut m, 1, info("two", "s", 1.0));
    assert!(offers_to(&step(&mut m, 1), &other).is_empty());
    m.check_invariants().unwrap();
}

#[test]
fn accept_launches_and_the_rest_returns_to_the_pool_at_once() {
    let mut m = master();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw_a = subscribe(&mut m, 0, info("a", "r", 1.0));
    let offer = offers_to(&step(&mut m, 0), &fw_a).remove(0);
    let fw_b = subscribe(&mut m, 1, info("b", "s", 1.0));
    call(
        &mut m,
        1,
        &fw_a,
        accept(&[&offer], vec![task("t1", res(1.0, 1024.0))]),
    )
    .unwrap();
    let actions = step(&mut m, 1);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::LaunchTask { task, .. } if task.task_id.as_str() == "t1"))
    );
    // b has the lower share now and gets the rest.
    let rest = offers_to(&actions, &fw_b);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].resources, res(3.0, 3072.0));
    let agent = &m.agents_view()[0];
    assert_eq!(
        (agent.used.clone(), agent.offered.clone()),
        (res(1.0, 1024.0), res(3.0, 3072.0))
    );
}

#[test]
fn a_refused_launch_changes_nothing() {
    let mut m = master();
    join(&mut m, 0, advert("a1", res(2.0, 2048.0), Attributes::new()));
    join(&mut m, 0, advert("a2", res(2.0, 2048.0), Attributes::new()));
    let fw_a = subscribe(&mut m, 0, info("a", "r", 1.0));
    let fw_b = subscribe(&mut m, 0, info("b", "s", 1.0));
    let actions = step(&mut m, 0);
    let (mine, theirs) = (
        offers_to(&actions, &fw_a).remove(0),
        offers_to(&actions, &fw_b).remove(0),
    );
    let before = (m.agents_view(), m.offers_view(), m.frameworks_view());
    let too_big = accept(&[&mine], vec![task("t1", res(3.0, 1.0))]);
    assert!(matches!(
        call(&mut m, 1, &fw_a, too_big),
        Err(CallError::DoesNotFit { .. })
    ));
    let second_too_big = accept(
        &[&mine],
        vec![task("t1", res(1.0, 1.0)), task("t2", res(1.5, 1.0))],
    );
    assert!(matches!(
        call(&mut m, 1, &fw_a, second_too_big),
        Err(CallError::DoesNotFit { .. })
    ));
    // Amounts below a thousandth round to nothing: such a task would run uncounted.
    let nothing = accept(&[&mine], vec![task("t1", res(0.0001, 0.0001))]);
    assert_eq!(
        call(&mut m, 1, &fw_a, nothing),
        Err(CallError::NoResources(TaskId::new("t1")))
    );
    let not_mine = accept(&[&mine, &theirs], vec![task("t1", res(1.0, 1.0))]);
    assert_eq!(
        call(&mut m, 1, &fw_a, not_mine),
        Err(CallError::NotYourOffer(theirs.offer_id.clone()))
    );
    let twice = accept(
        &[&mine],
        vec![task("t1", res(0.5, 1.0)), task("t1", res(0.5, 1.0))],
    );
    assert_eq!(
        call(&mut m, 1, &fw_a, twice),
        Err(CallError::DuplicateTask("t1".into()))
    );
    let mut unknown = mine.clone();
    unknown.offer_id = proto::OfferId::new(format!("{}-nope", unknown.offer_id));
    let err = call(&mut m, 1, &fw_a, accept(&[&unknown], vec![])).unwrap_err();
    assert_eq!(err, CallError::UnknownOffer(unknown.offer_id.clone()));
    assert!(err.to_string().contains("unknown"), "{err}");
    assert!(drain(&mut m).is_empty(), "a refused call causes no action");
    assert_eq!(
        before,
        (m.agents_view(), m.offers_view(), m.frameworks_view())
    );
    // A declined offer is gone: accepting it afterwards is refused.
    call(&mut m, 2, &fw_a, decline(&mine.offer_id, 0.0)).unwrap();
    let late = call(
        &mut m,
        2,
        &fw_a,
        accept(&[&mine], vec![task("t1", res(1.0, 1.0))]),
    );
    assert_eq!(late, Err(CallError::UnknownOffer(mine.offer_id.clone())));
}

#[test]
fn a_rigid_framework_holds_offers_and_launches_across_agents_all_or_nothing() {
    let mut m = master();
    for id in ["a1", "a2"] {
        join(&mut m, 0, advert(id, res(4.0, 4096.0), Attributes::new()));
    }
    let fw = subscribe(&mut m, 0, info("mpi", "hpc", 1.0));
    let held = offers_to(&step(&mut m, 0), &fw);
    assert_eq!(
        held.len(),
        2,
        "a rigid framework keeps both offers while it gathers enough"
    );
    let three = |n| {
        (0..n)
            .map(|i| task(&format!("rank{i}"), res(3.0, 1024.0)))
            .collect::<Vec<_>>()
    };
    // Three ranks of 3 cpus do not fit on 2 × 4 cpus: nothing is launched.
    let refs: Vec<_> = held.iter().collect();
    assert!(call(&mut m, 1, &fw, accept(&refs, three(3))).is_err());
    assert!(drain(&mut m).is_empty());
    // Two ranks do: one on each agent, together.
    call(&mut m, 1, &fw, accept(&refs, three(2))).unwrap();
    let launched: Vec<String> = drain(&mut m)
        .into_iter()
        .filter_map(|a| match a {
            Action::LaunchTask { agent_id, .. } => Some(agent_id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(launched, vec!["a1".to_owned(), "a2".to_owned()]);
    m.check_invariants().unwrap();
}

#[test]
fn a_decline_filter_sends_the_agent_to_others_until_it_expires() {
    let mut m = master();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw_a = subscribe(&mut m, 0, info("a", "r", 1.0));
    let fw_b = subscribe(&mut m, 0, info("b", "s", 1.0));
    let first = offers(&step(&mut m, 0));
    assert_eq!(
        first[0].framework_id, fw_a,
        "equal shares: the earlier subscription first"
    );
    call(&mut m, 0, &fw_a, decline(&first[0].offer_id, 10.0)).unwrap();
    let second = offers(&step(&mut m, 0));
    assert_eq!(second[0].framework_id, fw_b);
    call(&mut m, 0, &fw_b, decline(&second[0].offer_id, 20.0)).unwrap();
    assert!(offers(&step(&mut m, 0)).is_empty(), "both filtered");
    assert_eq!(m.poll_timeout(), Some(Millis(10_000)));
    assert!(offers(&step(&mut m, 9_999)).is_empty());
    assert_eq!(offers(&step(&mut m, 10_000))[0].framework_id, fw_a);
}

#[test]
fn suppress_stops_offers_and_revive_clears_filters() {
    let mut m = master();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe(&mut m, 0, info("a", "r", 1.0));
    let offer = offers(&step(&mut m, 0)).remove(0);
    call(&mut m, 0, &fw, decline(&offer.offer_id, 3600.0)).unwrap();
    call(&mut m, 0, &fw, Call::Suppress).unwrap();
    assert!(offers(&step(&mut m, 0)).is_empty());
    call(&mut m, 5, &fw, Call::Revive).unwrap();
    assert_eq!(
        offers_to(&step(&mut m, 5), &fw).len(),
        1,
        "revive clears the one-hour filter"
    );
}

#[test]
fn standing_preferences_send_what_a_framework_will_not_take_to_others() {
    let mut m = master();
    join(
        &mut m,
        0,
        advert(
            "arm",
            res(4.0, 4096.0),
            Attributes::new().with("arch", "aarch64"),
        ),
    );
    join(
        &mut m,
        0,
        advert(
            "x86",
            res(4.0, 4096.0),
            Attributes::new().with("arch", "x86_64"),
        ),
    );
    join(
        &mut m,
        0,
        advert(
            "tiny",
            res(1.0, 4096.0),
            Attributes::new().with("arch", "aarch64"),
        ),
    );
    let mut picky = info("picky", "r", 1.0);
    picky.constraints = vec![Constraint::parse("arch=aarch64").unwrap()];
    picky.min_offer = Resources::new().with_scalar("cpus", 2.0);
    let picky = subscribe(&mut m, 0, picky);
    let any = subscribe(&mut m, 0, info("any", "s", 1.0));
    let actions = step(&mut m, 0);
    let agents = |fw| {
        offers_to(&actions, fw)
            .into_iter()
            .map(|o| o.agent_id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(agents(&picky), vec!["arm".to_owned()]);
    let mut rest = agents(&any);
    rest.sort();
    assert_eq!(rest, vec!["tiny".to_owned(), "x86".to_owned()]);
}

#[test]
fn frameworks_whose_minimum_offer_the_agent_cannot_hold_are_passed_over_for_the_next() {
    // The allocator passes over these by quantities before it looks a framework up; the
    // port range shows that equal quantities are not enough (the port itself is checked).
    let mut m = master();
    let small = res(1.0, 1024.0).with_range("ports", 31_000, 31_009);
    join(&mut m, 0, advert("small", small, Attributes::new()));
    let picky = [
        ("big", Resources::new().with_scalar("cpus", 2.0)),
        ("fpga", Resources::new().with_scalar("fpgas", 1.0)),
        ("port", Resources::new().with_range("ports", 40_000, 40_000)),
    ]
    .map(|(name, min_offer)| {
        let mut i = info(name, name, 1.0);
        i.min_offer = min_offer;
        // Subscribed first: ahead of `any` in DRF order.
        subscribe(&mut m, 0, i)
    });
    let mut fits = info("fits", "fits", 1.0);
    fits.min_offer = res(1.0, 512.0).with_range("ports", 31_005, 31_005);
    let fits = subscribe(&mut m, 0, fits);
    let actions = step(&mut m, 0);
    for fw in &picky {
        assert!(offers_to(&actions, fw).is_empty(), "{fw} was offered");
    }
    let offered: Vec<_> = offers_to(&actions, &fits)
        .into_iter()
        .map(|o| o.agent_id.to_string())
        .collect();
    assert_eq!(offered, vec!["small".to_owned()]);
}

#[test]
fn a_not_equal_constraint_keeps_offers_of_agents_holding_the_value_away() {
    let mut m = master();
    for (id, attributes) in [
        ("arm", Attributes::new().with("arch", "aarch64")),
        ("x86", Attributes::new().with("arch", "x86_64")),
        ("bare", Attributes::new()),
    ] {
        join(&mut m, 0, advert(id, res(4.0, 4096.0), attributes));
    }
    let mut not_x86 = info("not-x86", "r", 1.0);
    not_x86.constraints = Constraint::parse_list("arch!=x86_64").unwrap();
    let not_x86 = subscribe(&mut m, 0, not_x86);
    let mut agents = offers_to(&step(&mut m, 0), &not_x86)
        .into_iter()
        .map(|o| o.agent_id.to_string())
        .collect::<Vec<_>>();
    agents.sort();
    assert_eq!(agents, vec!["arm".to_owned(), "bare".to_owned()]);
}

#[test]
fn a_terminal_status_frees_the_task_resources_exactly_once() {
    let mut m = master();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe(&mut m, 0, info("a", "r", 1.0));
    let offer = offers(&step(&mut m, 0)).remove(0);
    call(
        &mut m,
        0,
        &fw,
        accept(&[&offer], vec![task("t1", res(1.0, 1024.0))]),
    )
    .unwrap();
    call(&mut m, 0, &fw, Call::Suppress).unwrap();
    drain(&mut m);
    m.handle_status(Millis(1), status("t1", &fw, "a1", TaskState::Running, 1));
    m.handle_status(Millis(2), status("t1", &fw, "a1", TaskState::Finished, 2));
    // Delivered at least once: the same terminal update again frees nothing more.
    m.handle_status(Millis(3), status("t1", &fw, "a1", TaskState::Finished, 2));
    let updates = drain(&mut m)
        .into_iter()
        .filter(|a| {
            matches!(
                a,
                Action::SendEvent {
                    event: Event::Update { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        updates, 3,
        "every update reaches the framework so it can acknowledge it"
    );
    let agent = &m.agents_view()[0];
    assert_eq!(
        (agent.free.clone(), agent.used.clone()),
        (res(4.0, 4096.0), Resources::new())
    );
    m.check_invariants().unwrap();
    call(
        &mut m,
        4,
        &fw,
        Call::Acknowledge {
            task_id: "t1".into(),
            status_uuid: proto::StatusUuid(2),
        },
    )
    .unwrap();
    assert!(matches!(
        drain(&mut m).as_slice(),
        [Action::AckStatus { .. }]
    ));
}

fn ack(task_id: &str, uuid: u128) -> proto::Ack {
    proto::Ack {
        task_id: task_id.into(),
        status_uuid: proto::StatusUuid(uuid),
    }
}

/// One call acknowledges updates of tasks on several agents: one command per agent; the
/// acknowledgements the framework may not give are refused and named, the rest go on.
#[test]
fn one_acknowledge_call_becomes_one_command_per_agent() {
    let mut m = master();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    join(&mut m, 0, advert("a2", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe(&mut m, 0, info("a", "r", 1.0));
    let made = offers(&step(&mut m, 0));
    assert_eq!(made.len(), 2);
    for (offer, ids) in made.iter().zip([["t1", "t3"], ["t2", "t4"]]) {
        let tasks = ids.iter().map(|id| task(id, res(1.0, 1024.0))).collect();
        call(&mut m, 0, &fw, accept(&[offer], tasks)).unwrap();
    }
    let other = subscribe(&mut m, 0, info("b", "r", 1.0));
    drain(&mut m);
    let on_a1: Vec<_> = (m.tasks_view().into_iter())
        .filter(|t| t.agent_id.as_str() == made[0].agent_id.as_str())
        .map(|t| t.task_id)
        .collect();
    assert_eq!(
        on_a1,
        vec![proto::TaskId::new("t1"), proto::TaskId::new("t3")]
    );

    let too_many = vec![ack("t1", 1); proto::ACKS_PER_CALL_MAX + 1];
    let refused = call(&mut m, 1, &fw, Call::AcknowledgeMany { acks: too_many }).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "1025 acknowledgements in one call, over the limit of 1024"
    );
    assert!(drain(&mut m).is_empty());

    let acks = vec![ack("t1", 1), ack("t2", 2), ack("nope", 3), ack("t3", 4)];
    let refused = call(
        &mut m,
        2,
        &other,
        Call::AcknowledgeMany { acks: acks.clone() },
    );
    assert_eq!(
        refused.unwrap_err().to_string(),
        "4 of 4 acknowledgements refused; the first: task t1 belongs to another framework"
    );
    assert!(drain(&mut m).is_empty());
    let refused = call(&mut m, 3, &fw, Call::AcknowledgeMany { acks }).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "1 of 4 acknowledgements refused (the others were taken); the first: task nope is unknown or has ended"
    );
    let commands: Vec<(String, Vec<proto::Ack>)> = (drain(&mut m).into_iter())
        .filter_map(|a| match a {
            Action::AckStatus { agent_id, acks } => Some((agent_id.to_string(), acks)),
            _ => None,
        })
        .collect();
    let (a1, a2) = (made[0].agent_id.to_string(), made[1].agent_id.to_string());
    let mut expected = vec![
        (a1, vec![ack("t1", 1), ack("t3", 4)]),
        (a2, vec![ack("t2", 2)]),
    ];
    expected.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(commands, expected);
    m.check_invariants().unwrap();
}

#[test]
fn framework_ids_are_never_reused() {
    let mut m = Master::new(
        MasterConfig {
            incarnation: 9,
            ..MasterConfig::default()
        },
        1,
    );
    let first = subscribe(&mut m, 0, info("a", "r", 1.0));
    call(&mut m, 1, &first, Call::Teardown).unwrap();
    let second = subscribe(&mut m, 2, info("a", "r", 1.0));
    assert_ne!(first, second);
    let mut again = info("a", "r", 1.0);
    again.framework_id = Some(first.clone());
    let reply = m.handle_call(
        Millis(3),
        &proto::Principal::anonymous(),
        proto::FrameworkCall {
            framework_id: None,
            call: Call::Subscribe { info: again },
        },
    );
    assert_eq!(reply, Err(CallError::TornDown(first)));
    let mut restarted = Master::new(
        MasterConfig {
            incarnation: 10,
            ..MasterConfig::default()
        },
        1,
    );
    assert_ne!(
        subscribe(&mut restarted, 0, info("a", "r", 1.0)),
        second,
        "ids embed the incarnation"
    );
}

use master::Master;

#[test]
fn an_unanswered_offer_is_rescinded_when_it_expires() {
    let mut m = Master::new(
        MasterConfig {
            offer_timeout_ms: Some(1_000),
            reclaim: None,
            ..MasterConfig::default()
        },
        1,
    );
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe(&mut m, 0, info("a", "r", 1.0));
    let offer = offers(&step(&mut m, 0)).remove(0);
    assert_eq!(m.poll_timeout(), Some(Millis(1_000)));
    let actions = step(&mut m, 1_000);
    assert!(actions.contains(&Action::SendEvent {
        framework_id: fw.clone(),
        event: Event::Rescind {
            offer_id: offer.offer_id.clone()
        }
    }));
    let again = offers_to(&actions, &fw);
    assert_eq!(again.len(), 1, "the resources are offered again");
    assert_ne!(
        again[0].offer_id, offer.offer_id,
        "offer ids are never reused"
    );
}

#[test]
fn a_lost_agent_takes_its_resources_away_and_its_tasks_are_lost() {
    let mut m = master();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe(&mut m, 0, info("a", "r", 1.0));
    let offer = offers(&step(&mut m, 0)).remove(0);
    call(
        &mut m,
        0,
        &fw,
        accept(&[&offer], vec![task("t1", res(1.0, 1024.0))]),
    )
    .unwrap();
    drain(&mut m);
    m.handle_agent_lost(Millis(1), &"a1".into());
    let lost = drain(&mut m).into_iter().any(|a| {
        matches!(a, Action::SendEvent { event: Event::Update { status }, .. } if status.state == TaskState::Lost && status.task_id.as_str() == "t1")
    });
    assert!(lost);
    assert!(m.agents_view().is_empty() && m.tasks_view().is_empty());
    assert!(m.snapshot().total.is_empty());
    m.check_invariants().unwrap();
}

/// Two frameworks of weights 1 and 3 in a role the operator weighted: progressive filling
/// one task at a time ends with their dominant shares 1 : 3.
#[test]
fn framework_weights_order_frameworks_inside_an_operator_weighted_role() {
    let mut m = master::Master::new(
        MasterConfig {
            offer_timeout_ms: None,
            reclaim: None,
            role_weights: [("shared".to_owned(), 2.0)].into(),
            ..MasterConfig::default()
        },
        7,
    );
    join(&mut m, 0, advert("a1", res(8.0, 8192.0), Attributes::new()));
    let light = subscribe(&mut m, 0, info("light", "shared", 1.0));
    let heavy = subscribe(&mut m, 0, info("heavy", "shared", 3.0));
    let mut launched = std::collections::BTreeMap::new();
    for now in 0..64 {
        for offer in offers(&step(&mut m, now)) {
            let n = launched.entry(offer.framework_id.clone()).or_insert(0u32);
            let task = task(&format!("{}-{n}", offer.framework_id), res(1.0, 1024.0));
            let fits = offer.resources.contains(&task.resources);
            let reply = if fits {
                *n += 1;
                call(
                    &mut m,
                    now,
                    &offer.framework_id,
                    accept(&[&offer], vec![task]),
                )
            } else {
                call(
                    &mut m,
                    now,
                    &offer.framework_id,
                    decline(&offer.offer_id, 3600.0),
                )
            };
            reply.unwrap();
            m.check_invariants().unwrap();
        }
    }
    assert_eq!(launched.get(&light), Some(&2));
    assert_eq!(launched.get(&heavy), Some(&6));
    let weights: Vec<f64> = m.frameworks_view().iter().map(|f| f.weight).collect();
    assert_eq!(weights, vec![1.0, 3.0]);
}

#[test]
fn an_agent_that_does_not_take_a_launch_is_offered_nothing_until_heard_from() {
    let mut m = master();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    join(&mut m, 0, advert("a2", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe(&mut m, 0, info("f", "r", 1.0));
    let first = offers_to(&step(&mut m, 1_000), &fw);
    assert_eq!(first.len(), 2, "{first:?}");

    m.handle_agent_unreachable(Millis(1_100), &proto::AgentId::new("a1"));
    let rescinded = drain(&mut m);
    assert!(
        rescinded.iter().any(|a| matches!(
            a,
            Action::SendEvent {
                event: Event::Rescind { .. },
                ..
            }
        )),
        "{rescinded:?}"
    );
    // Decline everything: only the reachable agent comes back, however long we wait.
    for offer in &first {
        let _ = call(&mut m, 1_200, &fw, decline(&offer.offer_id, 0.0));
    }
    let later = offers_to(&step(&mut m, 60_000), &fw);
    assert!(
        later.iter().all(|o| o.agent_id.as_str() == "a2"),
        "{later:?}"
    );
    assert!(!later.is_empty());

    // An advert (the link is back) makes it eligible again.
    let mut back = advert("a1", res(4.0, 4096.0), Attributes::new());
    back.seq = 2;
    join(&mut m, 61_000, back);
    let again = offers_to(&step(&mut m, 62_000), &fw);
    assert!(
        again.iter().any(|o| o.agent_id.as_str() == "a1"),
        "{again:?}"
    );
    m.check_invariants().unwrap();
}

#[test]
fn framework_rows_show_the_allocation_in_units_and_the_weight_given() {
    let mut m = master();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe(&mut m, 0, info("a", "r", 3.0));
    let offer = offers_to(&step(&mut m, 0), &fw).remove(0);
    call(
        &mut m,
        1,
        &fw,
        accept(&[&offer], vec![task("t1", res(0.5, 64.0))]),
    )
    .unwrap();
    let row = m.frameworks_view().remove(0);
    assert_eq!(row.id, fw.to_string());
    assert_eq!(row.weight, 3.0, "the weight the framework gave");
    assert_eq!(
        row.allocation,
        std::collections::BTreeMap::from([("cpus".to_owned(), 0.5), ("mem".to_owned(), 64.0)]),
        "cores and MiB, as resources are given"
    );
    let task_row = m.tasks_view().remove(0);
    assert_eq!(task_row.id, "t1");
}

#[test]
fn names_and_roles_with_control_characters_or_out_of_length_are_refused() {
    let mut m = master();
    let long = "x".repeat(proto::FRAMEWORK_LABEL_BYTES_MAX + 1);
    for (name, role) in [
        ("a\nb", "r"),
        ("\u{1b}[31mred", "r"),
        ("", "r"),
        (long.as_str(), "r"),
        ("a", "r\tx"),
        ("a", ""),
        (" ", "r"),
        ("abc\u{202e}gpj.exe", "r"),
    ] {
        let reply = m.handle_call(
            Millis(0),
            &proto::Principal::anonymous(),
            proto::FrameworkCall {
                framework_id: None,
                call: Call::Subscribe {
                    info: info(name, role, 1.0),
                },
            },
        );
        assert!(
            matches!(reply, Err(CallError::InvalidLabel(_))),
            "{name:?} {role:?}: {reply:?}"
        );
    }
    assert!(m.frameworks_view().is_empty());
    subscribe(&mut m, 0, info("Ünï code, spaces: fine", "r", 1.0));
}
