//! The agent core's rules, driven without I/O: launches and their refusals, kills,
//! at-least-once status delivery with backoff, adverts, and restart recovery.

mod common;

use std::collections::BTreeSet;

use agent_core::{AGENT_RESTARTED, AgentAction, AgentNode, JournalChange, TaskEnd};
use common::*;
use proto::{
    Ack, AgentCommand, AgentReply, MasterCensus, Millis, StatusUuid, TaskId, TaskState, TaskStatus,
};

fn refused(message: &str) -> AgentReply {
    AgentReply::Error {
        message: message.to_owned(),
    }
}

fn latest(node: &AgentNode, id: &str) -> TaskStatus {
    node.task(&TaskId::new(id)).expect("the task is held")
}

fn ack_latest(node: &mut AgentNode, now: u64, id: &str) {
    let uuid = latest(node, id).uuid;
    assert_eq!(ack(node, now, id, uuid), AgentReply::Ok);
}

fn end(state: TaskState, reason: &str) -> TaskEnd {
    TaskEnd {
        state,
        exit_code: Some(3),
        reason: reason.to_owned(),
    }
}

#[test]
fn a_launch_is_journaled_published_and_started_in_that_order() {
    let mut node = node(7);
    assert_eq!(launch(&mut node, 40, "t1"), AgentReply::Ok);
    let actions = drain(&mut node);
    assert_eq!(actions.len(), 3, "{actions:?}");
    let AgentAction::Journal(JournalChange::Put(journaled)) = &actions[0] else {
        panic!("{actions:?}");
    };
    assert!(!journaled.oci);
    assert_eq!(journaled.task.name, "t1-name");
    let AgentAction::PublishStatus(status) = &actions[1] else {
        panic!("{actions:?}");
    };
    assert_eq!(status.state, TaskState::Starting);
    assert_eq!(status.task_id, TaskId::new("t1"));
    assert_eq!(status.framework_id, "fw".into());
    assert_eq!(status.agent_id, "a1".into());
    assert_eq!(status.uuid, StatusUuid((7 << 64) | 1));
    assert_eq!(status.timestamp_ms, WALL_ORIGIN_MS + 40);
    assert_eq!(&journaled.task.status, status);
    assert!(matches!(
        &actions[2],
        AgentAction::StartTask { framework_id, task } if framework_id.as_str() == "fw" && task.task_id.as_str() == "t1"
    ));
    assert_eq!(node.tasks().collect::<Vec<_>>(), vec![status.clone()]);
}

#[test]
fn launches_with_bad_ids_duplicates_or_over_the_limit_are_refused_without_effect() {
    let mut node = node(1);
    assert_eq!(
        launch(&mut node, 0, "a/b"),
        refused(
            "task id \"a/b\" cannot be used in a key: it holds one of / * $ ? # or white space"
        )
    );
    assert_eq!(
        launch(&mut node, 0, ""),
        refused("task id \"\" cannot be used in a key: it is empty")
    );
    assert_eq!(
        launch(&mut node, 0, ".hidden"),
        refused("task id TaskId(\".hidden\") must not start with a dot")
    );
    assert!(drain(&mut node).is_empty());
    assert_eq!(launch(&mut node, 0, "t1"), AgentReply::Ok);
    drain(&mut node);
    assert_eq!(
        launch(&mut node, 1, "t1"),
        refused("agent a1 already holds a task t1")
    );
    // An ended task not yet acknowledged still counts.
    node.handle_task_ended(Millis(2), &TaskId::new("t1"), end(TaskState::Finished, ""));
    assert_eq!(launch(&mut node, 3, "t2"), AgentReply::Ok);
    assert_eq!(launch(&mut node, 3, "t3"), AgentReply::Ok);
    drain(&mut node);
    assert_eq!(
        launch(&mut node, 4, "t4"),
        refused("agent a1 holds 3 tasks already")
    );
    assert!(drain(&mut node).is_empty());
    assert_eq!(node.tasks().count(), TASKS_MAX);
}

#[test]
fn kills_reach_live_tasks_only() {
    let mut node = node(1);
    launch(&mut node, 0, "t1");
    drain(&mut node);
    assert_eq!(kill(&mut node, 1, "t1"), AgentReply::Ok);
    assert_eq!(
        drain(&mut node),
        vec![AgentAction::KillTask {
            task_id: TaskId::new("t1"),
            grace_ms: 250
        }]
    );
    assert_eq!(
        kill(&mut node, 1, "nope"),
        refused("agent a1 holds no task nope")
    );
    node.handle_task_ended(
        Millis(2),
        &TaskId::new("t1"),
        end(TaskState::Killed, "killed"),
    );
    drain(&mut node);
    // Ended, not yet acknowledged: nothing left to kill, and no error.
    assert_eq!(kill(&mut node, 3, "t1"), AgentReply::Ok);
    assert!(drain(&mut node).is_empty());
    let uuid = latest(&node, "t1").uuid;
    ack(&mut node, 4, "t1", uuid);
    drain(&mut node);
    assert_eq!(
        kill(&mut node, 5, "t1"),
        refused("agent a1 holds no task t1")
    );
}

#[test]
fn an_unacknowledged_status_is_resent_with_a_doubling_capped_backoff() {
    let mut node = node(1);
    launch(&mut node, 0, "t1");
    drain(&mut node);
    let timed = run_until(&mut node, 40_000);
    // 1 s, then +2, +4, +8 (the cap), +8, ...
    assert_eq!(
        sends_of(&timed, "t1"),
        vec![1_000, 3_000, 7_000, 15_000, 23_000, 31_000, 39_000]
    );
    let starting = latest(&node, "t1");
    for (_, action) in &timed {
        if let AgentAction::PublishStatus(s) = action {
            assert_eq!(s, &starting, "resent unchanged");
        }
    }
}

#[test]
fn an_acknowledged_status_is_not_sent_again_and_a_stale_ack_changes_nothing() {
    let mut node = node(1);
    launch(&mut node, 0, "t1");
    drain(&mut node);
    let starting = latest(&node, "t1");
    node.handle_task_running(Millis(500), &TaskId::new("t1"));
    let running = statuses(&drain(&mut node));
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].state, TaskState::Running);
    assert_ne!(running[0].uuid, starting.uuid);
    // The ack of the superseded `starting`: still unacknowledged, nothing journaled.
    assert_eq!(ack(&mut node, 600, "t1", starting.uuid), AgentReply::Ok);
    assert!(drain(&mut node).is_empty());
    // The newer status restarted the backoff at 500.
    let timed = run_until(&mut node, 3_600);
    assert_eq!(sends_of(&timed, "t1"), vec![1_500, 3_500]);
    assert!(
        statuses(&timed.iter().map(|(_, a)| a.clone()).collect::<Vec<_>>())
            .iter()
            .all(|s| s == &running[0])
    );
    // The ack of `running`: never sent again, and the task stays.
    ack(&mut node, 3_700, "t1", running[0].uuid);
    assert!(drain(&mut node).is_empty());
    assert!(sends_of(&run_until(&mut node, 100_000), "t1").is_empty());
    assert_eq!(latest(&node, "t1"), running[0]);
    assert_eq!(
        node.poll_timeout(),
        Some(Millis(105_000)),
        "only adverts are due"
    );
}

#[test]
fn a_terminal_status_is_never_superseded_and_goes_once_acknowledged() {
    let mut node = node(1);
    launch(&mut node, 0, "t1");
    let id = TaskId::new("t1");
    node.handle_task_running(Millis(1), &id);
    node.handle_task_ended(Millis(2), &id, end(TaskState::Failed, "exited with code 3"));
    drain(&mut node);
    let failed = latest(&node, "t1");
    assert_eq!(failed.state, TaskState::Failed);
    assert_eq!(failed.exit_code, Some(3));
    assert_eq!(failed.reason, "exited with code 3");
    node.handle_task_running(Millis(3), &id);
    node.handle_task_ended(Millis(4), &id, end(TaskState::Finished, "again"));
    assert!(drain(&mut node).is_empty());
    assert_eq!(latest(&node, "t1"), failed);
    let timed = run_until(&mut node, 10_000);
    assert_eq!(sends_of(&timed, "t1"), vec![1_002, 3_002, 7_002]);
    let sent: Vec<_> = timed.into_iter().map(|(_, a)| a).collect();
    assert!(statuses(&sent).iter().all(|s| s == &failed));

    ack(&mut node, 10_001, "t1", failed.uuid);
    let actions = drain(&mut node);
    assert_eq!(
        actions,
        vec![
            AgentAction::Journal(JournalChange::Remove(id.clone())),
            AgentAction::ForgetTask {
                task_id: id.clone()
            }
        ]
    );
    assert_eq!(node.tasks().count(), 0);
    // A second ack of the same uuid finds nothing.
    ack(&mut node, 10_002, "t1", failed.uuid);
    assert!(drain(&mut node).is_empty());
    // The id may be used again.
    assert_eq!(launch(&mut node, 10_003, "t1"), AgentReply::Ok);
}

/// One command acknowledges the updates of several tasks, each as its own command would;
/// a command over the bound is refused whole.
#[test]
fn one_command_acknowledges_many_updates_and_a_command_over_the_bound_none() {
    let mut node = node(1);
    for (i, id) in ["t1", "t2", "t3"].iter().enumerate() {
        launch(&mut node, i as u64, id);
        let id = TaskId::new(*id);
        node.handle_task_ended(Millis(10), &id, end(TaskState::Finished, "done"));
    }
    drain(&mut node);
    let acks_of = |node: &AgentNode, ids: &[&str]| -> Vec<Ack> {
        (ids.iter())
            .map(|id| Ack {
                task_id: TaskId::new(*id),
                status_uuid: latest(node, id).uuid,
            })
            .collect()
    };
    let mut too_many = acks_of(&node, &["t1"]);
    too_many.resize(proto::ACKS_PER_CALL_MAX + 1, too_many[0].clone());
    let reply = node.handle_command(Millis(12), AgentCommand::Acknowledge { acks: too_many });
    assert_eq!(
        reply,
        refused("1025 acknowledgements in one command, over the limit of 1024")
    );
    assert!(drain(&mut node).is_empty());
    assert_eq!(node.tasks().count(), 3);

    let mut acks = acks_of(&node, &["t1", "t3"]);
    acks.push(Ack {
        task_id: TaskId::new("t2"),
        status_uuid: StatusUuid(7), // not its latest: changes nothing
    });
    let reply = node.handle_command(Millis(13), AgentCommand::Acknowledge { acks });
    assert_eq!(reply, AgentReply::Ok);
    let forgotten: Vec<TaskId> = (drain(&mut node).into_iter())
        .filter_map(|a| match a {
            AgentAction::ForgetTask { task_id } => Some(task_id),
            _ => None,
        })
        .collect();
    assert_eq!(forgotten, vec![TaskId::new("t1"), TaskId::new("t3")]);
    let held: Vec<TaskId> = node.tasks().map(|s| s.task_id).collect();
    assert_eq!(held, vec![TaskId::new("t2")]);
}

#[test]
fn every_status_gets_a_new_uuid_and_the_time_it_happened() {
    let mut node = node(3);
    launch(&mut node, 10, "t1");
    launch(&mut node, 20, "t2");
    node.handle_task_running(Millis(30), &TaskId::new("t1"));
    let published = statuses(&drain(&mut node));
    let uuids: Vec<u128> = published.iter().map(|s| s.uuid.0).collect();
    assert_eq!(uuids, vec![(3 << 64) | 1, (3 << 64) | 2, (3 << 64) | 3]);
    let stamps: Vec<u64> = published
        .iter()
        .map(|s| s.timestamp_ms - WALL_ORIGIN_MS)
        .collect();
    assert_eq!(stamps, vec![10, 20, 30]);
}

#[test]
fn adverts_count_up_and_list_every_held_task() {
    let mut node = AgentNode::new(config(1));
    assert_eq!(
        node.poll_timeout(),
        Some(Millis(0)),
        "the first advert is due at once"
    );
    node.handle_timeout(Millis(0));
    let first = adverts(&drain(&mut node));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].seq, 1);
    assert!(first[0].tasks.is_empty());
    assert_eq!(first[0].version, env!("CARGO_PKG_VERSION"));
    assert_eq!(node.poll_timeout(), Some(Millis(ADVERT_PERIOD_MS)));

    launch(&mut node, 100, "t1");
    launch(&mut node, 200, "t2");
    node.handle_task_running(Millis(300), &TaskId::new("t2"));
    drain(&mut node);
    for id in ["t1", "t2"] {
        ack_latest(&mut node, 400, id);
    }
    let timed = run_until(&mut node, ADVERT_PERIOD_MS);
    let second = adverts(&timed.into_iter().map(|(_, a)| a).collect::<Vec<_>>());
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].seq, 2);
    let listed: Vec<(&str, TaskState, &str)> = second[0]
        .tasks
        .iter()
        .map(|t| (t.status.task_id.as_str(), t.status.state, t.name.as_str()))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("t1", TaskState::Starting, "t1-name"),
            ("t2", TaskState::Running, "t2-name")
        ]
    );
    assert_eq!(second[0].tasks[0].resources, spec("t1", false).resources);

    // A changed device is advertised at once, keeping the count and the task list.
    let mut changed = advert(1);
    changed.hostname = "renamed".to_owned();
    changed.seq = 99;
    node.handle_advert_changed(Millis(6_000), changed);
    let third = adverts(&drain(&mut node));
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].seq, 3);
    assert_eq!(third[0].hostname, "renamed");
    assert_eq!(third[0].tasks.len(), 2);
    assert_eq!(node.poll_timeout(), Some(Millis(6_000 + ADVERT_PERIOD_MS)));
}

#[test]
fn when_the_master_appears_the_node_advertises_and_resends_at_once_with_a_fresh_backoff() {
    let mut node = node(1);
    launch(&mut node, 0, "t1");
    launch(&mut node, 0, "t2");
    drain(&mut node);
    ack_latest(&mut node, 1, "t2");
    run_until(&mut node, 20_000); // t1's wait has grown to the cap.
    node.handle_master_appeared(Millis(20_500));
    let actions = drain(&mut node);
    assert!(
        matches!(actions[0], AgentAction::PublishAdvert(_)),
        "{actions:?}"
    );
    let resent = statuses(&actions);
    assert_eq!(resent, vec![latest(&node, "t1")], "only the unacknowledged");
    let timed = run_until(&mut node, 25_000);
    assert_eq!(sends_of(&timed, "t1"), vec![21_500, 23_500]);
}

#[test]
fn the_newest_master_census_is_kept_and_listed_in_the_next_advert() {
    let census = |incarnation, seq| MasterCensus {
        incarnation,
        seq,
        agents: seq,
    };
    let mut node = node(1);
    drain(&mut node);
    node.handle_master_census(census(7, 2));
    assert!(drain(&mut node).is_empty(), "kept, not published at once");
    node.handle_master_census(census(7, 1)); // Late: an older census of the same master.
    node.handle_master_census(census(6, 9)); // An earlier master's.
    node.handle_master_appeared(Millis(10));
    let listed = adverts(&drain(&mut node));
    assert_eq!(listed[0].last_census, Some(census(7, 2)));
    node.handle_master_census(census(8, 1));
    node.handle_advert_changed(Millis(20), advert(1));
    let listed = adverts(&drain(&mut node));
    assert_eq!(
        listed[0].last_census,
        Some(census(8, 1)),
        "kept across a new advert"
    );
}

#[test]
fn shutting_down_kills_every_live_task_at_once() {
    let mut node = node(1);
    launch(&mut node, 0, "t1");
    launch(&mut node, 0, "t2");
    node.handle_task_ended(Millis(1), &TaskId::new("t1"), end(TaskState::Finished, ""));
    drain(&mut node);
    node.handle_shutdown(Millis(2));
    assert_eq!(
        drain(&mut node),
        vec![AgentAction::KillTask {
            task_id: TaskId::new("t2"),
            grace_ms: 0
        }]
    );
}

#[test]
fn a_shutting_down_agent_leaves_once_every_end_is_acknowledged() {
    let mut node = node(1);
    launch(&mut node, 0, "t1");
    drain(&mut node);
    node.handle_shutdown(Millis(1));
    drain(&mut node);
    assert!(
        matches!(launch(&mut node, 1, "late"), AgentReply::Error { message } if message.contains("shutting down"))
    );
    node.handle_task_ended(
        Millis(2),
        &TaskId::new("t1"),
        end(TaskState::Killed, "killed"),
    );
    let killed = statuses(&drain(&mut node)).remove(0);
    assert_eq!(killed.state, TaskState::Killed);
    // Regression: "killed", as for an operator's kill, so `--restart always` jobs ended
    // for good at every agent restart (SIGTERM: an upgrade, a reboot).
    assert_eq!(killed.reason, proto::AGENT_STOPPED);
    ack(&mut node, 3, "t1", killed.uuid);
    let actions = drain(&mut node);
    assert_eq!(actions.last(), Some(&AgentAction::Leave), "{actions:?}");
}

#[test]
fn a_task_killed_on_request_keeps_its_reason_when_it_ends_during_a_shutdown() {
    let mut node = node(1);
    launch(&mut node, 0, "t1");
    assert_eq!(kill(&mut node, 1, "t1"), AgentReply::Ok);
    drain(&mut node);
    node.handle_shutdown(Millis(2));
    drain(&mut node);
    node.handle_task_ended(
        Millis(3),
        &TaskId::new("t1"),
        end(TaskState::Killed, "killed"),
    );
    let killed = statuses(&drain(&mut node)).remove(0);
    // Not "agent stopped", on which a framework restarts the task its operator killed.
    assert_eq!(killed.reason, "killed");
}

#[test]
fn a_shutting_down_agent_leaves_after_the_drain_time_without_acknowledgements() {
    let mut node = node(1);
    launch(&mut node, 0, "t1");
    drain(&mut node);
    node.handle_shutdown(Millis(10));
    node.handle_task_ended(Millis(11), &TaskId::new("t1"), end(TaskState::Killed, ""));
    let timed = run_until(&mut node, 10 + agent_core::SHUTDOWN_DRAIN_MS);
    let left: Vec<u64> = (timed.iter())
        .filter(|(_, a)| *a == AgentAction::Leave)
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(left, vec![10 + agent_core::SHUTDOWN_DRAIN_MS]);
}

/// The master registered a later process of this id: this one kills its tasks and stops
/// without a leave (which would end the other's registration); a stop naming another
/// incarnation is not for it.
#[test]
fn a_stop_for_this_incarnation_kills_the_tasks_and_stops_without_leaving() {
    let mut node = node(3);
    launch(&mut node, 0, "t1");
    drain(&mut node);
    let other = node.handle_command(Millis(1), AgentCommand::Stop { incarnation: 4 });
    assert_eq!(other, AgentReply::Ok);
    assert_eq!(drain(&mut node), vec![], "another process's stop");
    let reply = node.handle_command(Millis(2), AgentCommand::Stop { incarnation: 3 });
    assert_eq!(reply, AgentReply::Ok);
    assert_eq!(
        drain(&mut node),
        vec![AgentAction::KillTask {
            task_id: TaskId::new("t1"),
            grace_ms: 0
        }]
    );
    node.handle_task_ended(
        Millis(3),
        &TaskId::new("t1"),
        end(TaskState::Killed, "killed"),
    );
    let killed = statuses(&drain(&mut node)).remove(0);
    ack(&mut node, 4, "t1", killed.uuid);
    let actions = drain(&mut node);
    assert_eq!(actions.last(), Some(&AgentAction::TakenOver), "{actions:?}");
    assert!(!actions.contains(&AgentAction::Leave), "{actions:?}");
}

#[test]
fn an_idle_agent_leaves_at_once() {
    let mut node = node(1);
    drain(&mut node);
    node.handle_shutdown(Millis(1));
    assert_eq!(drain(&mut node), vec![AgentAction::Leave]);
}

/// The journal of a node (incarnation 1) holding: a running WASM task `wasm`, running
/// OCI tasks `oci-alive` and `oci-gone`, and `done`, finished and not yet acknowledged.
fn journal_before_a_crash() -> Vec<agent_core::JournalEntry> {
    let mut node = node(1);
    launch(&mut node, 0, "wasm");
    launch_spec(&mut node, 0, spec("oci-alive", true));
    let mut actions = drain(&mut node);
    ack_latest(&mut node, 1, "oci-alive");
    launch(&mut node, 0, "done");
    for id in ["wasm", "oci-alive", "done"] {
        node.handle_task_running(Millis(2), &TaskId::new(id));
    }
    node.handle_task_ended(
        Millis(3),
        &TaskId::new("done"),
        end(TaskState::Finished, ""),
    );
    actions.extend(drain(&mut node));
    let mut journal = journaled(Vec::new(), &actions);
    assert_eq!(journal.len(), 3);
    let mut gone = journal[1].clone();
    gone.task.status.task_id = TaskId::new("oci-gone");
    journal.push(gone);
    journal
}

#[test]
#[allow(clippy::too_many_lines)]
fn after_a_restart_dead_tasks_fail_survivors_run_on_and_ended_ones_are_resent() {
    let journal = journal_before_a_crash();
    let before = |id: &str| {
        journal
            .iter()
            .find(|e| e.status().task_id.as_str() == id)
            .map(|e| e.status().clone())
            .unwrap()
    };
    let survivors: BTreeSet<TaskId> = ["oci-alive", "stray", "done"].map(TaskId::new).into();
    let mut node = AgentNode::new(config(2));
    node.recover(Millis(0), journal.clone(), &survivors);
    let actions = drain(&mut node);
    let forgotten: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            AgentAction::ForgetTask { task_id } => Some(task_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(forgotten, vec!["wasm", "oci-gone"], "in journal order");
    let killed: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            AgentAction::KillTask {
                task_id,
                grace_ms: 0,
            } => Some(task_id.as_str()),
            _ => None,
        })
        .collect();
    // A survivor no live OCI task owns is stopped, even if a task of its id ended.
    assert_eq!(killed, vec!["done", "stray"]);
    let saved = journaled(journal.clone(), &actions);
    assert_eq!(saved.len(), 4);
    for entry in &saved {
        assert_eq!(
            entry.status(),
            &latest(&node, entry.status().task_id.as_str())
        );
    }
    assert!(
        statuses(&actions).is_empty(),
        "sent with the first timeout, after the advert"
    );

    for id in ["wasm", "oci-gone"] {
        let failed = latest(&node, id);
        assert_eq!(failed.state, TaskState::Failed);
        assert_eq!(failed.reason, AGENT_RESTARTED);
        assert_eq!(failed.uuid.0 >> 64, 2, "a uuid of the new incarnation");
    }
    assert_eq!(latest(&node, "oci-alive"), before("oci-alive"));
    assert_eq!(latest(&node, "done"), before("done"));

    assert_eq!(node.poll_timeout(), Some(Millis(0)));
    node.handle_timeout(Millis(0));
    let first = drain(&mut node);
    let AgentAction::PublishAdvert(advert) = &first[0] else {
        panic!("{first:?}");
    };
    assert_eq!(advert.seq, 1);
    assert_eq!(advert.incarnation, 2);
    assert_eq!(advert.tasks.len(), 4);
    assert_eq!(statuses(&first).len(), 4, "every recovered status at once");

    // The ended task is resent unchanged until acknowledged, then forgotten.
    let timed = run_until(&mut node, 3_000);
    assert_eq!(sends_of(&timed, "done"), vec![1_000, 3_000]);
    ack(&mut node, 3_001, "done", before("done").uuid);
    assert!(drain(&mut node).contains(&AgentAction::ForgetTask {
        task_id: TaskId::new("done")
    }));
    // The survivor ends later, like any task.
    node.handle_task_ended(
        Millis(4_000),
        &TaskId::new("oci-alive"),
        end(TaskState::Finished, ""),
    );
    assert_eq!(latest(&node, "oci-alive").state, TaskState::Finished);
}

#[test]
fn a_restart_under_the_same_incarnation_does_not_reuse_uuids() {
    let journal = journal_before_a_crash();
    let past: BTreeSet<u128> = journal.iter().map(|e| e.status().uuid.0).collect();
    let mut node = AgentNode::new(agent_core::AgentNodeConfig {
        tasks_max: 5,
        ..config(1)
    });
    node.recover(Millis(0), journal, &BTreeSet::new());
    drain(&mut node);
    assert_eq!(launch(&mut node, 1, "new"), AgentReply::Ok);
    let fresh = latest(&node, "new").uuid.0;
    assert!(past.iter().all(|uuid| *uuid < fresh), "{past:?} {fresh}");
    for id in ["wasm", "oci-alive", "oci-gone"] {
        assert!(!past.contains(&latest(&node, id).uuid.0));
    }
}
