//! Restarts in place while no master is reachable (`offline.rs`): the agent restarts a
//! task whose policy says so, under its own id, only while it sees no master.

mod common;

use agent_core::{AGENT_RESTARTED, AgentAction, AgentNode, TaskEnd};
use common::*;
use proto::{
    Backoff, DisconnectPolicy, Millis, OnReconnect, RestartPolicy, TaskSpec, TaskState, TaskStatus,
};

const BACKOFF_MS: u64 = 1_000;

fn policy_spec(id: &str, restart: RestartPolicy) -> TaskSpec {
    TaskSpec {
        disconnect: Some(Box::new(DisconnectPolicy {
            restart,
            backoff: Backoff {
                initial_ms: BACKOFF_MS,
                max_ms: 4 * BACKOFF_MS,
                starts_max: 3,
            },
            lost_after_ms: None,
            on_reconnect: OnReconnect::KeepOriginal,
        })),
        ..spec(id, false)
    }
}

fn failed(reason: &str) -> TaskEnd {
    TaskEnd {
        state: TaskState::Failed,
        exit_code: Some(1),
        reason: reason.to_owned(),
    }
}

fn starts(actions: &[AgentAction]) -> Vec<TaskSpec> {
    actions
        .iter()
        .filter_map(|a| match a {
            AgentAction::StartTask { task, .. } => Some(task.clone()),
            _ => None,
        })
        .collect()
}

fn states(statuses: &[TaskStatus]) -> Vec<TaskState> {
    statuses.iter().map(|s| s.state).collect()
}

/// A node running `t1` under `restart`, its `running` status acknowledged.
fn running(restart: RestartPolicy) -> AgentNode {
    let mut node = node(7);
    assert_eq!(
        launch_spec(&mut node, 10, policy_spec("t1", restart)),
        proto::AgentReply::Ok
    );
    node.handle_task_running(Millis(20), &"t1".into());
    ack_latest(&mut node, 25);
    drain(&mut node);
    node
}

fn ack_latest(node: &mut AgentNode, now: u64) {
    let uuid = node.task(&"t1".into()).map(|s| s.uuid);
    if let Some(uuid) = uuid {
        ack(node, now, "t1", uuid);
    }
}

/// The actions of the node's timeouts up to `until`.
fn timed_actions(node: &mut AgentNode, until: u64) -> Vec<AgentAction> {
    run_until(node, until).into_iter().map(|(_, a)| a).collect()
}

#[test]
fn offline_a_failed_task_restarts_in_place_after_its_backoff_until_its_starts_are_used_up() {
    let mut node = running(RestartPolicy::OnFailure);
    node.handle_task_ended(Millis(100), &"t1".into(), failed("exit 1"));
    let at_end = drain(&mut node);
    assert!(statuses(&at_end).is_empty(), "no end reported: {at_end:?}");
    assert!(starts(&at_end).is_empty(), "not before the backoff");

    let actions = timed_actions(&mut node, 100 + BACKOFF_MS);
    let started = starts(&actions);
    assert_eq!(started.len(), 1, "{actions:?}");
    assert_eq!(started[0].task_id.as_str(), "t1", "same task id");
    let restarted = statuses(&actions);
    assert_eq!(states(&restarted), [TaskState::Starting]);
    assert!(
        restarted[0].reason.contains("start 2 of at most 3"),
        "{}",
        restarted[0].reason
    );
    assert!(
        restarted[0].reason.contains("failed: exit 1"),
        "{}",
        restarted[0].reason
    );
    let journal = journaled(Vec::new(), &actions);
    assert_eq!(journal[0].starts, 2, "the start is journaled");

    // Second failure: doubled backoff; third: starts used up, the end is reported.
    node.handle_task_running(Millis(1_200), &"t1".into());
    node.handle_task_ended(Millis(1_300), &"t1".into(), failed("exit 2"));
    drain(&mut node);
    assert!(starts(&timed_actions(&mut node, 1_300 + 2 * BACKOFF_MS - 1)).is_empty());
    assert_eq!(
        starts(&timed_actions(&mut node, 1_300 + 2 * BACKOFF_MS)).len(),
        1
    );
    node.handle_task_ended(Millis(3_400), &"t1".into(), failed("exit 3"));
    let ended = statuses(&drain(&mut node));
    assert_eq!(states(&ended), [TaskState::Failed]);
    assert_eq!(ended[0].reason, "exit 3");
}

#[test]
fn with_a_master_present_an_end_is_reported_and_the_framework_decides() {
    let mut node = running(RestartPolicy::Always);
    node.handle_master_appeared(Millis(30));
    drain(&mut node);
    node.handle_task_ended(Millis(100), &"t1".into(), failed("exit 1"));
    let actions = drain(&mut node);
    assert_eq!(states(&statuses(&actions)), [TaskState::Failed]);
    assert!(starts(&timed_actions(&mut node, 10_000)).is_empty());
}

#[test]
fn a_master_appearing_during_the_backoff_gets_the_end_instead() {
    let mut node = running(RestartPolicy::Always);
    node.handle_master_appeared(Millis(30));
    node.handle_master_gone(Millis(40));
    drain(&mut node);
    node.handle_task_ended(Millis(100), &"t1".into(), failed("exit 1"));
    assert!(statuses(&drain(&mut node)).is_empty());
    node.handle_master_appeared(Millis(500));
    let actions = drain(&mut node);
    let reported = statuses(&actions);
    assert_eq!(states(&reported), [TaskState::Failed]);
    assert_eq!(reported[0].reason, "exit 1");
    // The advert the master re-registers from lists it ended, not running.
    let listed = adverts(&actions);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].tasks[0].status.state, TaskState::Failed);
    assert!(
        starts(&timed_actions(&mut node, 10_000)).is_empty(),
        "no restart after the master took over"
    );
}

#[test]
fn policies_choose_which_ends_restart_and_a_task_without_one_never_restarts() {
    let finished = TaskEnd {
        state: TaskState::Finished,
        exit_code: Some(0),
        reason: String::new(),
    };
    let mut on_failure = running(RestartPolicy::OnFailure);
    on_failure.handle_task_ended(Millis(100), &"t1".into(), finished.clone());
    assert_eq!(
        states(&statuses(&drain(&mut on_failure))),
        [TaskState::Finished]
    );

    let mut always = running(RestartPolicy::Always);
    always.handle_task_ended(Millis(100), &"t1".into(), finished);
    assert!(
        statuses(&drain(&mut always)).is_empty(),
        "always restarts a finished task"
    );

    let mut none = node(7);
    launch(&mut none, 10, "t1");
    drain(&mut none);
    none.handle_task_ended(Millis(100), &"t1".into(), failed("exit 1"));
    assert_eq!(states(&statuses(&drain(&mut none))), [TaskState::Failed]);
    assert!(starts(&timed_actions(&mut none, 100_000)).is_empty());
}

#[test]
fn a_kill_of_a_task_waiting_to_restart_ends_it_at_once() {
    let mut node = running(RestartPolicy::Always);
    node.handle_task_ended(Millis(100), &"t1".into(), failed("exit 1"));
    drain(&mut node);
    assert_eq!(kill(&mut node, 200, "t1"), proto::AgentReply::Ok);
    let actions = drain(&mut node);
    assert_eq!(states(&statuses(&actions)), [TaskState::Killed]);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, AgentAction::KillTask { .. }))
    );
    assert!(starts(&timed_actions(&mut node, 10_000)).is_empty());
}

#[test]
fn after_an_agent_restart_without_a_master_its_tasks_start_again_under_their_ids() {
    let mut before = AgentNode::new(config(7));
    launch_spec(&mut before, 10, policy_spec("t1", RestartPolicy::OnFailure));
    before.handle_task_running(Millis(20), &"t1".into());
    launch_spec(&mut before, 30, spec("t2", false));
    let journal = journaled(Vec::new(), &drain(&mut before));
    assert_eq!(journal.len(), 2);
    let kept: Vec<_> = journal.iter().filter(|e| e.spec.is_some()).collect();
    assert_eq!(kept.len(), 1, "only the policy task keeps its spec");

    let mut after = AgentNode::new(config(8));
    after.recover(Millis(0), journal, &Default::default());
    let mut actions = drain(&mut after);
    actions.extend(timed_actions(&mut after, 0));
    let ended: Vec<TaskStatus> = statuses(&actions)
        .into_iter()
        .filter(|s| s.state.is_terminal())
        .collect();
    assert_eq!(
        ended.len(),
        1,
        "only the task without a policy ends: {ended:?}"
    );
    assert_eq!(ended[0].task_id.as_str(), "t2");
    assert_eq!(ended[0].reason, AGENT_RESTARTED);
    assert!(starts(&actions).is_empty(), "not before the backoff");

    let timed = timed_actions(&mut after, BACKOFF_MS);
    let started = starts(&timed);
    assert_eq!(started.len(), 1, "{timed:?}");
    assert_eq!(started[0].task_id.as_str(), "t1");
    let restarted: Vec<TaskStatus> = statuses(&timed)
        .into_iter()
        .filter(|s| s.task_id.as_str() == "t1" && s.state == TaskState::Starting)
        .collect();
    assert_eq!(restarted.len(), 1);
    assert!(
        restarted[0].reason.contains(AGENT_RESTARTED),
        "{}",
        restarted[0].reason
    );
}

#[test]
fn after_an_agent_restart_with_a_master_the_death_is_reported_as_before() {
    let mut m = AgentNode::new(config(7));
    launch_spec(&mut m, 10, policy_spec("t1", RestartPolicy::Always));
    m.handle_task_running(Millis(20), &"t1".into());
    let journal = journaled(Vec::new(), &drain(&mut m));

    let mut after = AgentNode::new(config(8));
    after.recover(Millis(0), journal, &Default::default());
    drain(&mut after);
    after.handle_master_appeared(Millis(50));
    let actions = drain(&mut after);
    let reported: Vec<TaskStatus> = statuses(&actions)
        .into_iter()
        .filter(|s| s.state.is_terminal())
        .collect();
    assert_eq!(reported.len(), 1);
    assert_eq!(reported[0].reason, AGENT_RESTARTED);
    assert!(starts(&timed_actions(&mut after, 10_000)).is_empty());
}

#[test]
fn a_policy_that_would_restart_in_a_tight_loop_is_refused_at_launch() {
    let mut node = node(7);
    let mut tight = policy_spec("t1", RestartPolicy::Always);
    if let Some(d) = &mut tight.disconnect {
        d.backoff.initial_ms = 0;
    }
    let reply = launch_spec(&mut node, 10, tight);
    assert!(
        matches!(&reply, proto::AgentReply::Error { message } if message.contains("backoff")),
        "{reply:?}"
    );
    assert!(node.task(&"t1".into()).is_none());
}
