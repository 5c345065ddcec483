//! Tasks of a lost agent that may come back (`src/master/disconnect.rs`): `unreachable`
//! for their `lost_after_ms`, taken back if their agent returns in time, one of an
//! original and its replacement killed by the task's `on_reconnect`.

use master::{Action, Master};
use proto::{
    Attributes, Backoff, DisconnectPolicy, FrameworkId, Millis, OnReconnect, RestartPolicy, TaskId,
    TaskSpec, TaskState,
};

use crate::common::*;
use crate::recovery::{advert_with, kills, updates_to};

const LOST_AFTER_MS: u64 = 60_000;

fn with_policy(id: &str, on_reconnect: OnReconnect, replaces: Option<&str>) -> TaskSpec {
    TaskSpec {
        disconnect: Some(Box::new(DisconnectPolicy {
            restart: RestartPolicy::Always,
            backoff: Backoff::default(),
            lost_after_ms: Some(LOST_AFTER_MS),
            on_reconnect,
        })),
        replaces: replaces.map(TaskId::new),
        ..task(id, res(1.0, 256.0))
    }
}

/// Two agents and a framework; `t1` launched on a1 under `on_reconnect`; a1 then lost at
/// 10. Returns the master (drained) and the framework.
fn t1_unreachable(on_reconnect: OnReconnect) -> (Master, FrameworkId) {
    let mut m = master();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe(&mut m, 0, info("f", "r", 1.0));
    let o = offers_to(&step(&mut m, 0), &fw).remove(0);
    call(
        &mut m,
        1,
        &fw,
        accept(&[&o], vec![with_policy("t1", on_reconnect, None)]),
    )
    .unwrap();
    m.handle_status(Millis(2), status("t1", &fw, "a1", TaskState::Running, 9));
    drain(&mut m);
    m.handle_agent_lost(Millis(10), &"a1".into());
    let told = updates_to(&drain(&mut m), &fw);
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].state, TaskState::Unreachable);
    assert_eq!(m.check_invariants(), Ok(()));
    (m, fw)
}

/// a2 joins and `t2`, replacing t1, is launched there.
fn replace_on_a2(m: &mut Master, fw: &FrameworkId, now: u64, on_reconnect: OnReconnect) {
    join(m, now, advert("a2", res(4.0, 4096.0), Attributes::new()));
    let offer = offers_to(&step(m, now), fw)
        .into_iter()
        .find(|o| o.agent_id.as_str() == "a2")
        .expect("an offer of a2");
    let t2 = with_policy("t2", on_reconnect, Some("t1"));
    call(m, now + 1, fw, accept(&[&offer], vec![t2])).unwrap();
    drain(m);
}

/// a1 comes back listing t1 as running.
fn a1_back(m: &mut Master, now: u64, fw: &FrameworkId) -> Vec<Action> {
    let mut back = advert_with("a1", &[("t1", fw, 1.0)]);
    back.seq = 5;
    join(m, now, back);
    step(m, now)
}

#[test]
fn an_unreachable_task_whose_agent_does_not_return_in_time_is_lost_and_killed_if_seen_later() {
    let (mut m, fw) = t1_unreachable(OnReconnect::KeepOriginal);
    assert!(updates_to(&step(&mut m, 10 + LOST_AFTER_MS - 1), &fw).is_empty());
    let lost = updates_to(&step(&mut m, 10 + LOST_AFTER_MS), &fw);
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].state, TaskState::Lost);
    let actions = a1_back(&mut m, 20 + LOST_AFTER_MS, &fw);
    assert_eq!(kills(&actions), [TaskId::new("t1")], "the lost-agent rule");
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn an_unreachable_task_whose_agent_returns_in_time_is_running_again_and_counted() {
    let (mut m, fw) = t1_unreachable(OnReconnect::KeepOriginal);
    let actions = a1_back(&mut m, 5_000, &fw);
    let told = updates_to(&actions, &fw);
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].state, TaskState::Running);
    assert!(kills(&actions).is_empty());
    for o in offers_to(&actions, &fw) {
        assert_eq!(
            o.resources,
            res(3.0, 3840.0),
            "t1's resources are used again"
        );
    }
    assert!(
        updates_to(&step(&mut m, 10 + LOST_AFTER_MS), &fw).is_empty(),
        "never lost"
    );
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn keep_original_kills_the_replacement_when_the_original_returns() {
    let (mut m, fw) = t1_unreachable(OnReconnect::KeepOriginal);
    replace_on_a2(&mut m, &fw, 100, OnReconnect::KeepOriginal);
    let actions = a1_back(&mut m, 5_000, &fw);
    assert_eq!(kills(&actions), [TaskId::new("t2")]);
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn keep_replacement_kills_the_returning_original() {
    let (mut m, fw) = t1_unreachable(OnReconnect::KeepReplacement);
    replace_on_a2(&mut m, &fw, 100, OnReconnect::KeepReplacement);
    let actions = a1_back(&mut m, 5_000, &fw);
    assert_eq!(kills(&actions), [TaskId::new("t1")]);
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn a_replacement_of_an_original_back_and_kept_is_refused() {
    let (mut m, fw) = t1_unreachable(OnReconnect::KeepOriginal);
    a1_back(&mut m, 5_000, &fw);
    join(
        &mut m,
        5_100,
        advert("a2", res(4.0, 4096.0), Attributes::new()),
    );
    let offer = offers_to(&step(&mut m, 5_100), &fw)
        .into_iter()
        .find(|o| o.agent_id.as_str() == "a2")
        .expect("an offer of a2");
    let t2 = with_policy("t2", OnReconnect::KeepOriginal, Some("t1"));
    let refused = call(&mut m, 5_101, &fw, accept(&[&offer], vec![t2]));
    assert!(
        matches!(refused, Err(master::CallError::OriginalKept { .. })),
        "{refused:?}"
    );
    assert!(
        kills(&drain(&mut m)).is_empty(),
        "nothing launched, nothing killed"
    );
}

#[test]
fn an_unreachable_task_killed_or_of_a_framework_torn_down_is_killed_when_back() {
    let (mut m, fw) = t1_unreachable(OnReconnect::KeepOriginal);
    call(
        &mut m,
        100,
        &fw,
        proto::Call::Kill {
            task_id: TaskId::new("t1"),
        },
    )
    .unwrap();
    let actions = a1_back(&mut m, 5_000, &fw);
    assert_eq!(kills(&actions), [TaskId::new("t1")]);
    assert!(
        updates_to(&actions, &fw).is_empty(),
        "its framework keeps what it was told"
    );
    assert_eq!(m.check_invariants(), Ok(()));

    let (mut m, fw) = t1_unreachable(OnReconnect::KeepOriginal);
    call(&mut m, 100, &fw, proto::Call::Teardown).unwrap();
    let actions = a1_back(&mut m, 5_000, &fw);
    assert_eq!(kills(&actions), [TaskId::new("t1")]);
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn policies_out_of_bounds_are_refused_at_accept() {
    let mut m = master();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe(&mut m, 0, info("f", "r", 1.0));
    let o = offers_to(&step(&mut m, 0), &fw).remove(0);
    let mut forever = with_policy("t1", OnReconnect::KeepOriginal, None);
    if let Some(d) = &mut forever.disconnect {
        d.lost_after_ms = Some(u64::MAX);
    }
    let mut tight = with_policy("t2", OnReconnect::KeepOriginal, None);
    if let Some(d) = &mut tight.disconnect {
        d.backoff.initial_ms = 0;
    }
    for task in [forever, tight] {
        let refused = call(&mut m, 1, &fw, accept(&[&o], vec![task]));
        assert!(
            matches!(refused, Err(master::CallError::BadDisconnectPolicy { .. })),
            "{refused:?}"
        );
    }
}

#[test]
fn an_unreachable_task_that_ended_while_away_reports_that_end() {
    let (mut m, fw) = t1_unreachable(OnReconnect::KeepOriginal);
    let mut back = advert_with("a1", &[("t1", &fw, 1.0)]);
    back.seq = 5;
    back.tasks[0].status.state = TaskState::Failed;
    join(&mut m, 5_000, back);
    let told = updates_to(&step(&mut m, 5_000), &fw);
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].state, TaskState::Failed);
    assert!(
        updates_to(&step(&mut m, 10 + LOST_AFTER_MS), &fw).is_empty(),
        "not lost after"
    );
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn a_task_without_lost_after_is_lost_with_its_agent() {
    let mut m = master();
    join(&mut m, 0, advert("a1", res(4.0, 4096.0), Attributes::new()));
    let fw = subscribe(&mut m, 0, info("f", "r", 1.0));
    let o = offers_to(&step(&mut m, 0), &fw).remove(0);
    let mut t1 = with_policy("t1", OnReconnect::KeepOriginal, None);
    if let Some(d) = &mut t1.disconnect {
        d.lost_after_ms = None;
    }
    call(&mut m, 1, &fw, accept(&[&o], vec![t1])).unwrap();
    drain(&mut m);
    m.handle_agent_lost(Millis(10), &"a1".into());
    let told = updates_to(&drain(&mut m), &fw);
    assert_eq!(told[0].state, TaskState::Lost);
}
