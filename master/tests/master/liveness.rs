//! Liveliness and launch outcomes, decided by the core: agents lost when their token stays
//! away, events held for frameworks until their token comes, and the updates the master
//! makes of launches an agent refused or did not answer.

use master::{Action, LaunchOutcome, Master, MasterConfig, Millis};
use proto::{
    AgentId, Attributes, Call, Event, FrameworkCall, FrameworkId, Resources, TaskId, TaskState,
};

use crate::common::*;

const TIMEOUT_MS: u64 = 10_000;

fn a(id: &str) -> AgentId {
    AgentId::new(id)
}

/// A framework subscribed without showing its token.
fn subscribe_tokenless(m: &mut Master, now: u64, name: &str) -> FrameworkId {
    let reply = m.handle_call(
        Millis(now),
        &proto::Principal::anonymous(),
        FrameworkCall {
            framework_id: None,
            call: Call::Subscribe {
                info: info(name, "r", 1.0),
            },
        },
    );
    match reply {
        Ok(proto::CallReply::Subscribed { framework_id, .. }) => framework_id,
        other => panic!("subscribe: {other:?}"),
    }
}

fn events_to(actions: &[Action], fw: &FrameworkId) -> Vec<Event> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendEvent {
                framework_id,
                event,
            } if framework_id == fw => Some(event.clone()),
            _ => None,
        })
        .collect()
}

fn updates(actions: &[Action]) -> Vec<proto::TaskStatus> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendEvent {
                event: Event::Update { status },
                ..
            } => Some(status.clone()),
            _ => None,
        })
        .collect()
}

fn connected(m: &Master, fw: &FrameworkId) -> bool {
    m.frameworks_view()
        .iter()
        .any(|f| &f.framework_id == fw && f.connected)
}

/// One agent running `t1` for a framework that shows its token.
fn running_one_task() -> (Master, FrameworkId) {
    let mut m = master();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe(&mut m, 0, info("f", "r", 1.0));
    let offers = offers_to(&step(&mut m, 0), &fw);
    call(
        &mut m,
        0,
        &fw,
        accept(&[&offers[0]], vec![task("t1", res(1.0, 512.0))]),
    )
    .unwrap();
    step(&mut m, 0);
    (m, fw)
}

#[test]
fn an_agent_whose_token_goes_is_lost_exactly_after_the_timeout() {
    let (mut m, fw) = running_one_task();
    m.handle_agent_token(Millis(100), &a("a1"), false);
    assert!(updates(&step(&mut m, 100 + TIMEOUT_MS - 1)).is_empty());
    assert!(m.knows_agent(&a("a1")));
    let lost = updates(&step(&mut m, 100 + TIMEOUT_MS));
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].task_id, TaskId::new("t1"));
    assert_eq!(lost[0].framework_id, fw);
    assert_eq!(lost[0].state, TaskState::Lost);
    assert!(!m.knows_agent(&a("a1")));
    assert_eq!(m.agents_lost(), 1);
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn an_agent_whose_token_comes_back_in_time_is_not_lost() {
    let (mut m, _) = running_one_task();
    m.handle_agent_token(Millis(100), &a("a1"), false);
    m.handle_agent_token(Millis(100 + TIMEOUT_MS - 1), &a("a1"), true);
    let actions = step(&mut m, 10 * TIMEOUT_MS);
    assert!(updates(&actions).is_empty(), "{actions:?}");
    assert!(m.knows_agent(&a("a1")));
    assert_eq!(m.agents_lost(), 0);
    assert!(
        updates(&step(&mut m, 100 * TIMEOUT_MS)).is_empty(),
        "no clock left"
    );
    assert!(m.knows_agent(&a("a1")));
}

#[test]
fn an_advert_without_a_token_starts_the_lost_clock_and_the_token_stops_it() {
    let mut m = master();
    m.handle_agent_advert(Millis(50), advert("a1", res(1.0, 1.0), Attributes::new()));
    m.handle_agent_advert(Millis(50), advert("a2", res(1.0, 1.0), Attributes::new()));
    // A later advert, still without a token, does not push the deadline back.
    let mut again = advert("a1", res(1.0, 1.0), Attributes::new());
    again.seq = 2;
    m.handle_agent_advert(Millis(5_000), again);
    m.handle_agent_token(Millis(6_000), &a("a2"), true);
    step(&mut m, 50 + TIMEOUT_MS - 1);
    assert!(m.knows_agent(&a("a1")));
    step(&mut m, 50 + TIMEOUT_MS);
    assert!(!m.knows_agent(&a("a1")), "a1 advertised without a token");
    step(&mut m, 10 * TIMEOUT_MS);
    assert!(m.knows_agent(&a("a2")), "a2's token came after its advert");
    assert_eq!(m.agents_lost(), 1);
}

#[test]
fn events_wait_for_the_framework_token_and_go_out_in_order() {
    let mut m = master();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe_tokenless(&mut m, 0, "f");
    let mut held = drain(&mut m);
    held.extend(step(&mut m, 0));
    assert!(events_to(&held, &fw).is_empty(), "{held:?}");
    call(
        &mut m,
        1,
        &fw,
        Call::Reconcile {
            tasks: vec![TaskId::new("x1"), TaskId::new("x2")],
        },
    )
    .unwrap();
    assert!(events_to(&drain(&mut m), &fw).is_empty());
    m.handle_framework_token(Millis(2), &fw, true);
    let released = events_to(&drain(&mut m), &fw);
    assert_eq!(released.len(), 4, "{released:?}");
    assert!(matches!(released[0], Event::Subscribed { .. }));
    assert!(matches!(released[1], Event::Offers { .. }));
    let reconciled: Vec<&TaskId> = released[2..]
        .iter()
        .filter_map(|e| match e {
            Event::Update { status } => Some(&status.task_id),
            _ => None,
        })
        .collect();
    assert_eq!(reconciled, [&TaskId::new("x1"), &TaskId::new("x2")]);
    assert_eq!(m.events_dropped(), 0);
    // With the token present, events go out at once.
    call(
        &mut m,
        3,
        &fw,
        Call::Reconcile {
            tasks: vec![TaskId::new("x3")],
        },
    )
    .unwrap();
    assert_eq!(events_to(&drain(&mut m), &fw).len(), 1);
    assert!(connected(&m, &fw));
}

#[test]
fn events_held_are_bounded_and_the_oldest_dropped() {
    let mut m = Master::new(
        MasterConfig {
            offer_timeout_ms: None,
            reclaim: None,
            events_held_per_framework_max: 3,
            ..MasterConfig::default()
        },
        7,
    );
    let fw = subscribe_tokenless(&mut m, 0, "f");
    let tasks: Vec<TaskId> = (1..=5).map(|i| TaskId::new(format!("x{i}"))).collect();
    call(&mut m, 1, &fw, Call::Reconcile { tasks }).unwrap();
    drain(&mut m);
    // Held: Subscribed, x1..x5; kept: the newest three.
    assert_eq!(m.events_dropped(), 3);
    m.handle_framework_token(Millis(2), &fw, true);
    let released: Vec<TaskId> = events_to(&drain(&mut m), &fw)
        .into_iter()
        .filter_map(|e| match e {
            Event::Update { status } => Some(status.task_id),
            _ => None,
        })
        .collect();
    assert_eq!(
        released,
        [TaskId::new("x3"), TaskId::new("x4"), TaskId::new("x5")]
    );
}

#[test]
fn a_token_that_never_comes_releases_the_events_and_disconnects_the_framework() {
    let mut m = master();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe_tokenless(&mut m, 100, "f");
    let before = step(&mut m, 100 + TIMEOUT_MS - 1);
    assert!(events_to(&before, &fw).is_empty());
    assert!(connected(&m, &fw));
    assert_eq!(m.outstanding_offers(), 1, "offered, the offer held");
    let at_deadline = events_to(&step(&mut m, 100 + TIMEOUT_MS), &fw);
    assert!(matches!(at_deadline[0], Event::Subscribed { .. }));
    assert!(matches!(at_deadline[1], Event::Offers { .. }));
    assert!(!connected(&m, &fw), "counts as disconnected");
    assert_eq!(
        m.outstanding_offers(),
        0,
        "its offers went back to the pool"
    );
    // Torn down when its failover time (1 s in `info`) runs out.
    step(&mut m, 100 + TIMEOUT_MS + 1_000);
    assert!(m.frameworks_view().iter().all(|f| f.framework_id != fw));
}

#[test]
fn a_framework_whose_token_goes_is_disconnected_and_its_events_held_again() {
    let (mut m, fw) = running_one_task();
    m.handle_framework_token(Millis(10), &fw, false);
    assert!(!connected(&m, &fw));
    let status = status("t1", &fw, "a1", TaskState::Running, 1);
    m.handle_status(Millis(11), status);
    assert!(events_to(&drain(&mut m), &fw).is_empty());
    m.handle_framework_token(Millis(12), &fw, true);
    let released = events_to(&drain(&mut m), &fw);
    assert!(
        matches!(&released[..], [Event::Update { status }] if status.state == TaskState::Running),
        "{released:?}"
    );
}

#[test]
fn refused_and_unanswered_launches_become_updates_the_master_makes() {
    let mut m = Master::new(
        MasterConfig {
            incarnation: 5,
            offer_timeout_ms: None,
            reclaim: None,
            ..MasterConfig::default()
        },
        7,
    );
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    join(&mut m, 0, advert("a2", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe(&mut m, 0, info("f", "r", 1.0));
    let made = offers_to(&step(&mut m, 0), &fw);
    let on = |agent: &str| made.iter().find(|o| o.agent_id == a(agent)).unwrap();
    let two = vec![task("t1", res(1.0, 512.0)), task("t2", res(1.0, 512.0))];
    call(&mut m, 1, &fw, accept(&[on("a1")], two)).unwrap();
    let one = vec![task("t3", res(1.0, 512.0))];
    call(&mut m, 1, &fw, accept(&[on("a2")], one)).unwrap();
    step(&mut m, 1);

    let (t1, t2, t3) = (TaskId::new("t1"), TaskId::new("t2"), TaskId::new("t3"));
    m.handle_launch_outcome(Millis(2), &a("a2"), &t3, LaunchOutcome::Taken);
    assert!(drain(&mut m).is_empty(), "a launch taken changes nothing");
    let refused = LaunchOutcome::Refused {
        message: "no such module".to_owned(),
    };
    m.handle_launch_outcome(Millis(3), &a("a1"), &t1, refused);
    let unanswered = LaunchOutcome::Unanswered {
        message: "timed out".to_owned(),
    };
    m.handle_launch_outcome(Millis(4), &a("a1"), &t2, unanswered);
    let made = updates(&drain(&mut m));
    assert_eq!(made.len(), 2, "{made:?}");
    assert_eq!(
        (made[0].task_id.clone(), made[0].state),
        (t1.clone(), TaskState::Failed)
    );
    assert_eq!(made[0].reason, "agent refused the launch: no such module");
    assert_eq!(
        (made[1].task_id.clone(), made[1].state),
        (t2.clone(), TaskState::Lost)
    );
    assert_eq!(made[1].reason, "agent did not take the launch: timed out");
    for status in &made {
        assert_eq!(status.agent_id, a("a1"));
        assert_eq!(status.framework_id, fw);
        assert_eq!(status.uuid.0 >> 64, 5, "the incarnation is in the uuid");
    }
    assert_ne!(made[0].uuid, made[1].uuid);
    assert_eq!(m.launch_failure(&t1), Some(made[0].clone()));
    assert_eq!(m.launch_failure(&t3), None);
    assert_eq!(m.check_invariants(), Ok(()));

    // a1's resources are free again, but it is offered nothing until heard from.
    let no_a1 = offers(&step(&mut m, 5));
    assert!(no_a1.iter().all(|o| o.agent_id != a("a1")), "{no_a1:?}");
    let mut heartbeat = advert("a1", res(4.0, 4096.0), Attributes::new());
    heartbeat.seq = 2;
    m.handle_agent_advert(Millis(6), heartbeat);
    let again = offers(&step(&mut m, 6));
    assert!(again.iter().any(|o| o.agent_id == a("a1")), "{again:?}");
}

/// Offers stay until answered, and nothing is reclaimed.
fn master_without_timeouts() -> Master {
    Master::new(
        MasterConfig {
            offer_timeout_ms: None,
            reclaim: None,
            ..MasterConfig::default()
        },
        7,
    )
}

#[test]
fn an_agent_refusing_a_launch_as_it_shuts_down_is_offered_nothing_more() {
    let mut m = master_without_timeouts();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe(&mut m, 0, info("f", "r", 1.0));
    let made = offers_to(&step(&mut m, 0), &fw);
    let t1 = TaskId::new("t1");
    let one = vec![task("t1", res(1.0, 512.0))];
    call(&mut m, 1, &fw, accept(&[&made[0]], one)).unwrap();
    step(&mut m, 1);
    let refused = LaunchOutcome::Refused {
        message: format!("agent a1 {}", proto::AGENT_SHUTTING_DOWN),
    };
    m.handle_launch_outcome(Millis(2), &a("a1"), &t1, refused);
    let made = updates(&drain(&mut m));
    assert_eq!(made.len(), 1, "{made:?}");
    // Not `failed`: the task is none the worse, and a framework may start it elsewhere.
    assert_eq!(made[0].state, TaskState::Lost);
    assert_eq!(made[0].reason, proto::AGENT_STOPPED);
    // Its resources are free again, but not offered while it shuts down.
    assert!(offers_to(&step(&mut m, 10_000), &fw).is_empty());
    // Killed before it could leave, then back as a new process: it is offered again.
    m.handle_agent_token(Millis(10_001), &a("a1"), false);
    let mut back = advert("a1", res(4.0, 4096.0), Attributes::new());
    back.incarnation += 1;
    join(&mut m, 10_001, back);
    assert_eq!(offers_to(&step(&mut m, 10_002), &fw).len(), 1);
}

#[test]
fn the_operator_sees_an_agent_disconnected_then_lost_and_its_tasks_throughout() {
    use proto::operator::AgentState;
    let (mut m, _) = running_one_task();
    let state = |m: &Master| m.agent_rows().first().map(|r| r.state);
    let task_state = |m: &Master| {
        let rows = m.task_rows(master::view::WallClock::MASTER);
        rows.into_iter().find(|r| r.id == "t1").map(|r| r.state)
    };
    assert_eq!(state(&m), Some(AgentState::Active));
    m.handle_agent_token(Millis(100), &a("a1"), false);
    assert_eq!(state(&m), Some(AgentState::Disconnected));
    assert_eq!(
        task_state(&m),
        Some(TaskState::Staging),
        "still listed while away"
    );
    step(&mut m, 100 + TIMEOUT_MS);
    assert_eq!(state(&m), Some(AgentState::Lost));
    let lost = m.agent_rows().remove(0);
    assert_eq!(
        (lost.free, lost.offered, lost.used, lost.tasks),
        (Resources::new(), Resources::new(), Resources::new(), 0),
        "nothing of a lost agent is in the cluster any more"
    );
    assert!(!lost.total.is_empty(), "what it had stays");
    assert_eq!(
        task_state(&m),
        Some(TaskState::Lost),
        "listed lost while away"
    );
}

#[test]
fn an_agent_that_leaves_is_gone_at_once_and_its_token_starts_no_clock() {
    let (mut m, fw) = running_one_task();
    m.handle_agent_left(Millis(100), &a("a1"));
    assert!(!m.knows_agent(&a("a1")));
    let lost = updates(&drain(&mut m));
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(
        (lost[0].state, lost[0].framework_id.clone()),
        (TaskState::Lost, fw)
    );
    assert_eq!(lost[0].reason, "the agent shut down");
    m.handle_agent_token(Millis(101), &a("a1"), false);
    assert_eq!(
        m.poll_timeout(),
        Some(Millis(100)),
        "only the allocation is due"
    );
    assert!(updates(&step(&mut m, 101 + TIMEOUT_MS)).is_empty());
    assert_eq!(
        m.poll_timeout(),
        None,
        "no lost clock for an agent that left"
    );
    assert_eq!(m.agents_lost(), 1);
    assert_eq!(m.check_invariants(), Ok(()));
}

/// Two processes with one agent id: the second (a newer incarnation) is ignored while the
/// first's token holds, so it cannot take the agent's place in the books; once the token
/// has gone, a newer incarnation is a restart and takes over.
#[test]
fn a_second_process_with_an_agent_id_does_not_take_the_agent_over_while_its_token_holds() {
    let mut m = master();
    m.handle_agent_token(Millis(0), &a("a1"), true);
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe(&mut m, 0, info("f", "r", 1.0));
    let made = offers_to(&step(&mut m, 0), &fw);
    call(
        &mut m,
        1,
        &fw,
        accept(&[&made[0]], vec![task("t1", res(1.0, 512.0))]),
    )
    .unwrap();
    m.handle_status(Millis(2), status("t1", &fw, "a1", TaskState::Running, 1));
    drain(&mut m);
    let total = |m: &Master| m.agents_view()[0].total.clone();

    let mut impostor = advert("a1", res(64.0, 65536.0), Attributes::new());
    impostor.incarnation = 2;
    m.handle_agent_advert(Millis(3), impostor.clone());
    assert_eq!(
        total(&m),
        res(4.0, 4096.0),
        "the impostor's resources are not taken"
    );
    assert!(
        updates(&drain(&mut m)).is_empty(),
        "the real agent's task is not lost"
    );

    m.handle_agent_token(Millis(4), &a("a1"), false);
    m.handle_agent_token(Millis(5), &a("a1"), true);
    impostor.tasks.clear();
    m.handle_agent_advert(Millis(6), impostor);
    assert_eq!(
        total(&m),
        res(64.0, 65536.0),
        "after the token went: a restart"
    );
    let lost = updates(&drain(&mut m));
    assert!(
        matches!(&lost[..], [s] if s.task_id == TaskId::new("t1") && s.state == TaskState::Lost),
        "{lost:?}"
    );

    // Regression: the first process, paused meanwhile, comes back still running `t1`.
    // Its adverts were dropped without a word, so `t1` ran unseen with its resources
    // counted free. It is told to stop (it kills its tasks and exits).
    let mut first = crate::recovery::advert_with("a1", &[("t1", &fw, 1.0)]);
    first.seq = 7;
    m.handle_agent_advert(Millis(7), first);
    let actions = drain(&mut m);
    assert!(
        actions.contains(&Action::StopAgent {
            agent_id: a("a1"),
            incarnation: 1
        }),
        "{actions:?}"
    );
    assert_eq!(
        total(&m),
        res(64.0, 65536.0),
        "the registered process stays"
    );
    assert_eq!(m.check_invariants(), Ok(()));
}

/// Regression: `wasmos run --count 256 --wait` waited forever when some of its tasks
/// ended and left the listing's 200 most recently ended between two looks.
#[test]
fn tasks_asked_about_by_id_are_found_after_they_leave_the_listing() {
    let mut m = master();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe(&mut m, 0, info("f", "r", 1.0));
    let offer = offers_to(&step(&mut m, 0), &fw);
    let ids: Vec<String> = (0..250).map(|i| format!("t{i}")).collect();
    let tasks = ids.iter().map(|id| task(id, res(0.01, 1.0))).collect();
    call(&mut m, 0, &fw, accept(&[&offer[0]], tasks)).unwrap();
    step(&mut m, 0);
    for (uuid, id) in (1..).zip(&ids) {
        m.handle_status(Millis(1), status(id, &fw, "a1", TaskState::Finished, uuid));
    }
    step(&mut m, 1);
    let clock = master::view::WallClock::MASTER;
    let listed = m.task_rows(clock);
    assert_eq!(listed.len(), master::view::ENDED_TASKS_LISTED_MAX);
    assert!(listed.iter().all(|r| r.id != "t0"), "t0 ended first");

    let asked = [TaskId::new("t3"), TaskId::new("nope"), TaskId::new("t0")];
    let rows = m.task_rows_of(&asked, clock);
    let found: Vec<(&str, TaskState)> = rows.iter().map(|r| (r.id.as_str(), r.state)).collect();
    assert_eq!(
        found,
        [("t3", TaskState::Finished), ("t0", TaskState::Finished)],
        "in the order asked, the unknown left out"
    );
}

/// Regression: an OCI task's kill has a grace period; an agent killed (`-9`) within it and
/// restarted found the task running in its journal and kept it, and nothing asked again.
#[test]
fn a_kill_is_asked_again_of_an_agent_restarted_before_it_took_effect() {
    let mut m = master_without_timeouts();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe(&mut m, 0, info("f", "r", 1.0));
    let made = offers_to(&step(&mut m, 0), &fw);
    let two = vec![task("t1", res(1.0, 512.0)), task("t2", res(1.0, 512.0))];
    call(&mut m, 1, &fw, accept(&[&made[0]], two)).unwrap();
    step(&mut m, 1);
    let kill = proto::Call::Kill {
        task_id: TaskId::new("t1"),
    };
    call(&mut m, 2, &fw, kill).unwrap();
    let killed = |actions: &[Action]| -> Vec<TaskId> {
        (actions.iter())
            .filter_map(|a| match a {
                Action::KillTask { task_id, .. } => Some(task_id.clone()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(killed(&drain(&mut m)), [TaskId::new("t1")]);
    // Killed and restarted within the lost timeout, listing both tasks running.
    m.handle_agent_token(Millis(3), &a("a1"), false);
    let mut back = advert("a1", res(4.0, 4096.0), Attributes::new());
    back.incarnation += 1;
    back.tasks = ["t1", "t2"]
        .iter()
        .map(|id| proto::AdvertTask {
            status: proto::TaskStatus {
                task_id: TaskId::new(*id),
                framework_id: fw.clone(),
                agent_id: a("a1"),
                state: TaskState::Running,
                exit_code: None,
                reason: String::new(),
                uuid: proto::StatusUuid(1),
                timestamp_ms: 0,
            },
            name: (*id).to_owned(),
            resources: res(1.0, 512.0),
        })
        .collect();
    join(&mut m, 4, back.clone());
    // The one asked to be killed, not the other.
    assert_eq!(killed(&drain(&mut m)), [TaskId::new("t1")]);
    // A later advert of the same process asks nothing again.
    back.seq += 1;
    m.handle_agent_advert(Millis(5), back);
    assert!(killed(&drain(&mut m)).is_empty());
}
