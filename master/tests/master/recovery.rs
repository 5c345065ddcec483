//! Master restart (state rebuilt from adverts and re-subscriptions), the lost-agent rule,
//! and reconciliation.

use master::{Action, Master, MasterConfig, Millis};
use proto::{
    AdvertTask, AgentAdvert, Attributes, Call, Event, FrameworkCall, FrameworkId, Resources,
    TaskId, TaskState, TaskStatus,
};

use crate::common::*;

const WINDOW_MS: u64 = 3_000;
const RECOVERED_TIMEOUT_MS: u64 = 10_000;

fn restarted_master() -> Master {
    Master::new(
        MasterConfig {
            incarnation: 2,
            offer_timeout_ms: None,
            reclaim: None,
            reregistration_window_ms: WINDOW_MS,
            recovered_framework_timeout_ms: RECOVERED_TIMEOUT_MS,
            ..MasterConfig::default()
        },
        7,
    )
}

/// An agent of 4 cpus and 4096 MiB running `tasks` (id, framework, cpus), all running.
pub(crate) fn advert_with(agent: &str, tasks: &[(&str, &FrameworkId, f64)]) -> AgentAdvert {
    let mut a = advert(agent, res(4.0, 4096.0), Attributes::new());
    a.tasks = tasks
        .iter()
        .enumerate()
        .map(|(i, (id, fw, cpus))| AdvertTask {
            status: status(id, fw, agent, TaskState::Running, 100 + i as u128),
            name: (*id).to_owned(),
            resources: res(*cpus, 256.0),
        })
        .collect();
    a
}

fn resubscribe(m: &mut Master, now: u64, fw: &FrameworkId, role: &str) {
    let mut i = info("back", role, 1.0);
    i.framework_id = Some(fw.clone());
    let reply = m.handle_call(
        Millis(now),
        &proto::Principal::anonymous(),
        FrameworkCall {
            framework_id: Some(fw.clone()),
            call: Call::Subscribe { info: i },
        },
    );
    assert!(
        matches!(reply, Ok(proto::CallReply::Subscribed { ref framework_id, .. }) if framework_id == fw),
        "{reply:?}"
    );
    m.handle_framework_token(Millis(now), fw, true);
}

pub(crate) fn updates_to(actions: &[Action], fw: &FrameworkId) -> Vec<TaskStatus> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendEvent {
                framework_id,
                event: Event::Update { status },
            } if framework_id == fw => Some(status.clone()),
            _ => None,
        })
        .collect()
}

pub(crate) fn kills(actions: &[Action]) -> Vec<TaskId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::KillTask { task_id, .. } => Some(task_id.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_restarted_master_adopts_tasks_from_adverts_and_holds_offers_for_the_window() {
    let mut m = restarted_master();
    let (fw_a, fw_b) = (FrameworkId::new("fw1-1"), FrameworkId::new("fw1-2"));
    join(
        &mut m,
        100,
        advert_with("a1", &[("t1", &fw_a, 1.0), ("t2", &fw_b, 2.0)]),
    );
    join(&mut m, 150, advert_with("a2", &[("t3", &fw_a, 1.0)]));
    assert_eq!(m.check_invariants(), Ok(()));
    resubscribe(&mut m, 200, &fw_a, "r");
    let fresh = subscribe(&mut m, 250, info("new", "s", 1.0));
    assert!(m.offers_held());
    assert!(
        offers(&step(&mut m, 2_999)).is_empty(),
        "no offer inside the window"
    );

    // Framework A has its tasks back, with their resources as its allocation.
    let view = m.frameworks_view();
    let a = view.iter().find(|f| f.framework_id == fw_a).unwrap();
    assert_eq!(a.tasks, 2);
    let in_units = std::collections::BTreeMap::from([("cpus".into(), 2.0), ("mem".into(), 512.0)]);
    assert_eq!(a.allocation, in_units);
    let a1 = m
        .agents_view()
        .into_iter()
        .find(|v| v.agent_id.as_str() == "a1")
        .unwrap();
    assert_eq!(a1.used, res(3.0, 512.0));

    // After the window, the free part of each agent is offered, and only it.
    let actions = step(&mut m, WINDOW_MS);
    let made = offers(&actions);
    assert!(!made.is_empty());
    for o in &made {
        assert!(o.framework_id == fw_a || o.framework_id == fresh);
        let free = if o.agent_id.as_str() == "a1" {
            res(1.0, 3584.0)
        } else {
            res(3.0, 3840.0)
        };
        assert_eq!(o.resources, free);
    }
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn a_new_cluster_offers_at_once() {
    let mut m = restarted_master();
    join(
        &mut m,
        10,
        advert("a1", res(4.0, 4096.0), Attributes::new()),
    );
    let fw = subscribe(&mut m, 20, info("new", "r", 1.0));
    assert!(!m.offers_held());
    assert_eq!(offers_to(&step(&mut m, 20), &fw).len(), 1);
}

#[test]
fn reconciliation_during_the_window_is_answered_at_its_end_with_what_agents_reported() {
    let mut m = restarted_master();
    let fw = FrameworkId::new("fw1-1");
    resubscribe(&mut m, 100, &fw, "r");
    call(&mut m, 110, &fw, Call::Reconcile { tasks: Vec::new() }).unwrap();
    let named = vec![TaskId::new("t1"), TaskId::new("t2"), TaskId::new("nobody")];
    call(&mut m, 120, &fw, Call::Reconcile { tasks: named }).unwrap();
    assert!(updates_to(&drain(&mut m), &fw).is_empty());
    // The agent re-registers late in the window.
    join(
        &mut m,
        2_500,
        advert_with("a1", &[("t1", &fw, 1.0), ("t2", &fw, 1.0)]),
    );
    let updates = updates_to(&step(&mut m, WINDOW_MS), &fw);
    let state_of = |id: &str| -> Vec<TaskState> {
        updates
            .iter()
            .filter(|s| s.task_id.as_str() == id)
            .map(|s| s.state)
            .collect()
    };
    // Implicit (all tasks) then explicit: t1 and t2 twice, running; the unknown id lost.
    assert_eq!(state_of("t1"), vec![TaskState::Running; 2]);
    assert_eq!(state_of("t2"), vec![TaskState::Running; 2]);
    assert_eq!(state_of("nobody"), vec![TaskState::Lost]);
    // After the window, reconciliation answers at once.
    call(
        &mut m,
        3_100,
        &fw,
        Call::Reconcile {
            tasks: vec![TaskId::new("t1")],
        },
    )
    .unwrap();
    assert_eq!(updates_to(&drain(&mut m), &fw).len(), 1);
}

#[test]
fn tasks_of_a_framework_that_does_not_return_are_killed_after_its_timeout() {
    let mut m = restarted_master();
    let (gone, back) = (FrameworkId::new("fw1-1"), FrameworkId::new("fw1-2"));
    join(
        &mut m,
        100,
        advert_with("a1", &[("t1", &gone, 1.0), ("t2", &back, 1.0)]),
    );
    resubscribe(&mut m, 200, &back, "r");
    assert!(kills(&step(&mut m, WINDOW_MS + RECOVERED_TIMEOUT_MS - 1)).is_empty());
    let actions = step(&mut m, WINDOW_MS + RECOVERED_TIMEOUT_MS);
    assert_eq!(kills(&actions), vec![TaskId::new("t1")]);
    // The kill's status is acknowledged by the master (nobody listens) and frees t1.
    m.handle_status(
        Millis(13_100),
        status("t1", &gone, "a1", TaskState::Killed, 9),
    );
    let actions = drain(&mut m);
    assert!(
        actions.iter().any(
            |a| matches!(a, Action::AckStatus { acks, .. } if acks[0].task_id.as_str() == "t1")
        )
    );
    let a1 = m
        .agents_view()
        .into_iter()
        .find(|v| v.agent_id.as_str() == "a1")
        .unwrap();
    assert_eq!(a1.used, res(1.0, 256.0));
    // Too late: its id is not admitted again.
    let mut i = info("late", "r", 1.0);
    i.framework_id = Some(gone.clone());
    let late = m.handle_call(
        Millis(13_200),
        &proto::Principal::anonymous(),
        FrameworkCall {
            framework_id: Some(gone),
            call: Call::Subscribe { info: i },
        },
    );
    assert!(late.is_err());
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn updates_for_a_framework_not_yet_back_are_held_for_it_not_acknowledged_by_the_master() {
    let mut m = restarted_master();
    let fw = FrameworkId::new("fw1-1");
    // The framework still runs (only the master restarted): its token is there.
    m.handle_framework_token(Millis(100), &fw, true);
    join(&mut m, 100, advert_with("a1", &[("t1", &fw, 1.0)]));
    m.handle_status(
        Millis(150),
        status("t1", &fw, "a1", TaskState::Finished, 50),
    );
    let actions = drain(&mut m);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::AckStatus { .. })),
        "the framework may come back for this update"
    );
    assert_eq!(updates_to(&actions, &fw).len(), 1);
    resubscribe(&mut m, 200, &fw, "r");
    drain(&mut m);
    // Its acknowledgement routes to the agent.
    call(
        &mut m,
        210,
        &fw,
        Call::Acknowledge {
            task_id: TaskId::new("t1"),
            status_uuid: proto::StatusUuid(50),
        },
    )
    .unwrap();
    assert!(
        drain(&mut m)
            .iter()
            .any(|a| matches!(a, Action::AckStatus { .. }))
    );
}

#[test]
fn a_task_declared_lost_is_killed_when_its_agent_returns_and_keeps_its_resources_until_it_ends() {
    let mut m = master();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe(&mut m, 0, info("f", "r", 1.0));
    let o = offers_to(&step(&mut m, 0), &fw).remove(0);
    call(
        &mut m,
        1,
        &fw,
        accept(&[&o], vec![task("t1", res(1.0, 256.0))]),
    )
    .unwrap();
    drain(&mut m);
    m.handle_agent_lost(Millis(10), &"a1".into());
    let lost = updates_to(&drain(&mut m), &fw);
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].state, TaskState::Lost);

    // The agent comes back (a partition healed) still running t1.
    let mut back = advert_with("a1", &[("t1", &fw, 1.0)]);
    back.seq = 5;
    join(&mut m, 20, back);
    let actions = step(&mut m, 20);
    assert_eq!(kills(&actions), vec![TaskId::new("t1")]);
    assert!(
        updates_to(&actions, &fw).is_empty(),
        "the framework keeps its lost"
    );
    for o in offers_to(&actions, &fw) {
        assert_eq!(
            o.resources,
            res(3.0, 3840.0),
            "t1's resources are not offered"
        );
    }
    assert_eq!(m.check_invariants(), Ok(()));

    // Its updates stop at the master, which acknowledges them; reconciliation says lost.
    m.handle_status(Millis(30), status("t1", &fw, "a1", TaskState::Killed, 77));
    let actions = drain(&mut m);
    assert!(updates_to(&actions, &fw).is_empty());
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::AckStatus { .. }))
    );
    call(
        &mut m,
        40,
        &fw,
        Call::Reconcile {
            tasks: vec![TaskId::new("t1")],
        },
    )
    .unwrap();
    let answer = updates_to(&drain(&mut m), &fw);
    assert_eq!(answer[0].state, TaskState::Lost);
    let a1 = m
        .agents_view()
        .into_iter()
        .find(|v| v.agent_id.as_str() == "a1")
        .unwrap();
    assert_eq!(a1.used, Resources::new());
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn reconciliation_names_each_task_or_all_of_the_framework() {
    let mut m = master();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe(&mut m, 0, info("f", "r", 1.0));
    let other = subscribe(&mut m, 0, info("g", "r", 1.0));
    let o = offers_to(&step(&mut m, 0), &fw).remove(0);
    let tasks = vec![task("t1", res(1.0, 256.0)), task("t2", res(1.0, 256.0))];
    call(&mut m, 1, &fw, accept(&[&o], tasks)).unwrap();
    m.handle_status(Millis(2), status("t1", &fw, "a1", TaskState::Running, 1));
    m.handle_status(Millis(3), status("t2", &fw, "a1", TaskState::Finished, 2));
    drain(&mut m);
    call(&mut m, 4, &fw, Call::Reconcile { tasks: Vec::new() }).unwrap();
    let all = updates_to(&drain(&mut m), &fw);
    assert_eq!(all.len(), 1, "all live tasks: t1 only");
    assert_eq!(
        (all[0].task_id.as_str(), all[0].state),
        ("t1", TaskState::Running)
    );
    let named = vec![TaskId::new("t2"), TaskId::new("t1"), TaskId::new("t9")];
    call(&mut m, 5, &fw, Call::Reconcile { tasks: named }).unwrap();
    let states: Vec<TaskState> = updates_to(&drain(&mut m), &fw)
        .iter()
        .map(|s| s.state)
        .collect();
    assert_eq!(
        states,
        vec![TaskState::Finished, TaskState::Running, TaskState::Lost]
    );
    // Another framework's task is unknown to it.
    call(
        &mut m,
        6,
        &other,
        Call::Reconcile {
            tasks: vec![TaskId::new("t1")],
        },
    )
    .unwrap();
    let theirs = updates_to(&drain(&mut m), &other);
    assert_eq!(theirs[0].state, TaskState::Lost);
}

#[test]
fn a_task_that_ended_during_the_restart_is_listed_with_its_name_and_resources() {
    let fw = FrameworkId::new("fw-old");
    // Its status comes before its agent's advert: the advert then describes it.
    let mut m = restarted_master();
    m.handle_status(
        Millis(0),
        status("early", &fw, "a1", TaskState::Finished, 7),
    );
    let mut listed = advert_with("a1", &[("early", &fw, 1.0), ("late", &fw, 0.5)]);
    listed.tasks[1].status.state = TaskState::Failed;
    m.handle_agent_token(Millis(1), &listed.agent_id, true);
    m.handle_agent_advert(Millis(1), listed);
    let rows = m.task_rows(master::view::WallClock::MASTER);
    for (id, cpus) in [("early", 1.0), ("late", 0.5)] {
        let row = rows.iter().find(|r| r.id == id).unwrap();
        assert_eq!(row.name, id, "{row:?}");
        assert_eq!(row.resources, res(cpus, 256.0), "{row:?}");
    }
}

/// `t1` and `t2` launched on `a1` (2 cpus each) and reported finished, in that order.
fn two_tasks_finished(m: &mut Master) -> FrameworkId {
    join(m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe(m, 0, info("f", "r", 1.0));
    let o = offers_to(&step(m, 0), &fw).remove(0);
    let tasks = vec![task("t1", res(2.0, 256.0)), task("t2", res(2.0, 256.0))];
    call(m, 1, &fw, accept(&[&o], tasks)).unwrap();
    m.handle_status(Millis(2), status("t1", &fw, "a1", TaskState::Running, 1));
    m.handle_status(Millis(3), status("t1", &fw, "a1", TaskState::Finished, 2));
    m.handle_status(Millis(4), status("t2", &fw, "a1", TaskState::Finished, 3));
    drain(m);
    fw
}

fn used_on(m: &Master, agent: &str) -> Resources {
    let view = m
        .agents_view()
        .into_iter()
        .find(|v| v.agent_id.as_str() == agent);
    view.unwrap().used
}

#[test]
fn an_advert_made_before_a_task_ended_does_not_bring_it_back() {
    let mut m = master();
    let fw = two_tasks_finished(&mut m);
    // Made while t1 ran, taken after its end: stale, and the master knows the end.
    let mut stale = advert_with("a1", &[("t1", &fw, 2.0)]);
    stale.seq = 2;
    m.handle_agent_advert(Millis(10), stale);
    let actions = step(&mut m, 10);
    assert!(kills(&actions).is_empty(), "t1 ended: {actions:?}");
    assert!(updates_to(&actions, &fw).is_empty());
    assert_eq!(used_on(&m, "a1"), Resources::new());
    assert_eq!(
        m.task_rows_of(&[TaskId::new("t1")], master::view::WallClock::MASTER)[0].state,
        TaskState::Finished
    );
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn a_task_whose_end_the_master_forgot_is_killed_not_adopted_from_a_stale_advert() {
    let mut m = Master::new(
        MasterConfig {
            offer_timeout_ms: None,
            reclaim: None,
            ended_tasks_kept_max: 1,
            ..MasterConfig::default()
        },
        7,
    );
    let fw = two_tasks_finished(&mut m);
    assert!(
        m.task_rows_of(&[TaskId::new("t1")], master::view::WallClock::MASTER)
            .is_empty(),
        "t1 forgotten"
    );
    let mut stale = advert_with("a1", &[("t1", &fw, 2.0)]);
    stale.seq = 2;
    m.handle_agent_advert(Millis(10), stale);
    let actions = step(&mut m, 10);
    assert_eq!(kills(&actions), vec![TaskId::new("t1")]);
    assert!(updates_to(&actions, &fw).is_empty());
    assert_eq!(used_on(&m, "a1"), Resources::new(), "t1 is not counted");
    assert!(
        m.task_rows_of(&[TaskId::new("t1")], master::view::WallClock::MASTER)
            .is_empty()
    );
    assert!(!m.offers_held(), "a stray is no sign of an earlier master");
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn a_task_reconciliation_told_lost_is_killed_when_its_agent_comes_back_with_it() {
    // A new master (no recovery evidence yet) is asked about a task it never heard of.
    let mut m = master();
    let fw = subscribe(&mut m, 0, info("f", "r", 1.0));
    call(
        &mut m,
        1,
        &fw,
        Call::Reconcile {
            tasks: vec![TaskId::new("t1")],
        },
    )
    .unwrap();
    let told = updates_to(&drain(&mut m), &fw);
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].state, TaskState::Lost);
    assert!(
        told[0].agent_id.is_no_agent(),
        "no acknowledgement is awaited"
    );
    // Its agent, cut off across the restart, comes back still running it.
    join(&mut m, 10, advert_with("a1", &[("t1", &fw, 1.0)]));
    let actions = step(&mut m, 10);
    assert_eq!(kills(&actions), vec![TaskId::new("t1")]);
    assert!(
        updates_to(&actions, &fw).is_empty(),
        "the framework keeps its lost"
    );
    assert_eq!(used_on(&m, "a1"), res(1.0, 256.0), "held until it ends");
    m.handle_status(Millis(20), status("t1", &fw, "a1", TaskState::Killed, 9));
    let actions = drain(&mut m);
    assert!(updates_to(&actions, &fw).is_empty());
    assert_eq!(used_on(&m, "a1"), Resources::new());
    assert_eq!(m.check_invariants(), Ok(()));
}
