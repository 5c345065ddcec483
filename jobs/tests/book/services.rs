//! Declared jobs (`wasmos deploy`): copies kept, scaling, rollouts with canaries, health
//! gates and reverts, per-agent copies and spreading, through the real master core.

use std::collections::BTreeSet;

use jobs::declared::ValidDecl;
use jobs::service::{ServiceError, ServiceRequest};
use proto::declared::{DeployChange, JobDecl, JobStatus, JobsReply};

use super::*;

const OTHER: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

/// A declared job from TOML-like JSON: defaults fast health (1 s) and deadline (10 s).
fn decl(json: &str) -> ValidDecl {
    let mut decl: JobDecl = serde_json::from_str(json).unwrap();
    if !json.contains("min_healthy_ms") {
        decl.update.min_healthy_ms = 1_000;
        decl.update.healthy_deadline_ms = 10_000;
    }
    ValidDecl::validate(decl).unwrap()
}

fn svc(count: u32, module: &str, extra: &str) -> ValidDecl {
    decl(&format!(
        r#"{{"name": "svc", "module": "{module}", "cpus": 1, "mem": 64, "count": {count} {extra}}}"#
    ))
}

impl World {
    fn request(&mut self, request: ServiceRequest) -> Result<JobsReply, ServiceError> {
        let reply = self.book.handle_service_request(self.now, request);
        self.pump();
        reply
    }

    fn deploy(&mut self, decl: ValidDecl) -> (u32, DeployChange) {
        match self.request(ServiceRequest::Deploy(Box::new(decl))) {
            Ok(JobsReply::Deployed(d)) => (d.version, d.change),
            other => panic!("{other:?}"),
        }
    }

    fn status(&mut self) -> JobStatus {
        match self.request(ServiceRequest::Status("svc".to_owned())) {
            Ok(JobsReply::Status(s)) => *s,
            other => panic!("{other:?}"),
        }
    }

    /// Every launched task not yet reported: reported running.
    fn run_launched(&mut self, reported: &mut BTreeSet<TaskId>) {
        let ids: Vec<TaskId> = (self.launched.iter().map(|(_, t)| t.task_id.clone()))
            .filter(|id| !reported.contains(id))
            .collect();
        for id in ids {
            reported.insert(id.clone());
            self.report(&id, TaskState::Running);
        }
    }

    /// Every task the master killed ends `killed` on its agent.
    fn confirm_kills(&mut self, confirmed: &mut BTreeSet<TaskId>) {
        let ids: Vec<TaskId> = (self.killed.iter())
            .filter(|&id| !confirmed.contains(id))
            .cloned()
            .collect();
        for id in ids {
            confirmed.insert(id.clone());
            self.report(&id, TaskState::Killed);
        }
    }

    /// Runs what is launched, confirms kills and lets time pass, `steps` times of
    /// `step_ms`; returns the fewest healthy copies seen at any step.
    fn play(&mut self, steps: usize, step_ms: u64, seen: &mut Seen) -> u32 {
        let mut fewest = u32::MAX;
        for _ in 0..steps {
            self.run_launched(&mut seen.running);
            self.confirm_kills(&mut seen.killed);
            let now = self.now + step_ms;
            self.advance_to(now);
            fewest = fewest.min(self.status().summary.healthy);
        }
        fewest
    }
}

#[derive(Default)]
struct Seen {
    running: BTreeSet<TaskId>,
    killed: BTreeSet<TaskId>,
}

fn versions_live(status: &JobStatus) -> Vec<u32> {
    let mut v: Vec<u32> = (status.copies.iter())
        .filter(|c| !c.stopping)
        .map(|c| c.version)
        .collect();
    v.sort_unstable();
    v
}

fn stable(w: &mut World, count: u32) -> Seen {
    let mut seen = Seen::default();
    assert_eq!(w.deploy(svc(count, MODULE, "")), (1, DeployChange::Created));
    w.play(3, 600, &mut seen);
    let status = w.status();
    assert_eq!(status.summary.stable_version, Some(1), "{status:#?}");
    assert_eq!(status.summary.healthy, count);
    seen
}

#[test]
fn a_declared_job_keeps_its_copies_and_the_same_file_twice_changes_nothing() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    stable(&mut w, 3);
    assert_eq!(w.launched.len(), 3);
    assert_eq!(w.deploy(svc(3, MODULE, "")), (1, DeployChange::Unchanged));
    w.advance_to(w.now + 5_000);
    assert_eq!(w.launched.len(), 3, "nothing new launched");
    assert!(w.killed.is_empty());
    assert_eq!(w.status().summary.state, "running");
}

#[test]
fn count_alone_scales_without_a_rollout() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let mut seen = stable(&mut w, 2);
    assert_eq!(w.deploy(svc(5, MODULE, "")), (1, DeployChange::Updated));
    w.play(3, 600, &mut seen);
    let status = w.status();
    assert_eq!(versions_live(&status), vec![1; 5]);
    assert_eq!(status.summary.healthy, 5);
    assert_eq!(w.deploy(svc(1, MODULE, "")), (1, DeployChange::Updated));
    w.play(2, 600, &mut seen);
    assert_eq!(w.killed.len(), 4);
    let status = w.status();
    assert_eq!(versions_live(&status), vec![1]);
    assert!(status.summary.rollout.is_none());
}

#[test]
fn a_new_module_rolls_out_max_parallel_at_a_time_keeping_count_minus_that_healthy() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let mut seen = stable(&mut w, 4);
    let (version, change) = w.deploy(svc(4, OTHER, ""));
    assert_eq!((version, change), (2, DeployChange::Rollout));
    assert_eq!(w.status().summary.state, "rolling");
    let fewest = w.play(20, 400, &mut seen);
    assert!(fewest >= 3, "healthy copies fell to {fewest}");
    let status = w.status();
    assert_eq!(status.summary.stable_version, Some(2), "{status:#?}");
    assert_eq!(versions_live(&status), vec![2; 4]);
    assert_eq!(w.killed.len(), 4, "each old copy stopped once");
    assert_eq!(status.versions[1].state, "superseded");
    let launched_v2 = (w.launched.iter()).filter(|(_, t)| format!("{:?}", t.kind).contains(OTHER));
    assert_eq!(launched_v2.count(), 4);
}

#[test]
fn a_failing_canary_fails_the_rollout_and_auto_revert_goes_back_without_touching_the_old_copies() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let mut seen = stable(&mut w, 3);
    let update = r#", "update": {"canary": 1, "auto_revert": true, "min_healthy_ms": 1000, "healthy_deadline_ms": 10000}"#;
    assert_eq!(w.deploy(svc(3, OTHER, update)).0, 2);
    assert_eq!(w.launched.len(), 4, "one canary beside the three");
    let canary = w.last_launched().task_id.clone();
    assert!(
        w.status()
            .copies
            .iter()
            .any(|c| c.canary && c.task_id == canary)
    );
    w.report(&canary, TaskState::Running);
    w.report(&canary, TaskState::Failed);
    let status = w.status();
    assert_eq!(status.versions[1].version, 2);
    assert_eq!(status.versions[1].state, "failed");
    assert!(
        status.versions[1]
            .reason
            .contains("failed before it was healthy")
    );
    w.play(3, 600, &mut seen);
    let status = w.status();
    assert_eq!(status.summary.version, 3);
    assert_eq!(status.versions[0].reverts_to, Some(1));
    assert_eq!(status.summary.stable_version, Some(3), "{status:#?}");
    assert_eq!(versions_live(&status), vec![3; 3]);
    assert!(
        w.killed.is_empty(),
        "the old copies were kept: {:?}",
        w.killed
    );
    assert!(
        status.copies.iter().all(|c| c.task_id != canary),
        "the ended canary is gone"
    );
    assert_eq!(w.launched.len(), 4, "nothing launched for the revert");
    let events: Vec<String> = match w.request(ServiceRequest::History("svc".to_owned())) {
        Ok(JobsReply::History(h)) => h.into_iter().map(|e| e.event).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        events,
        [
            "deployed",
            "succeeded",
            "deployed",
            "failed",
            "reverting",
            "succeeded"
        ]
    );
}

#[test]
fn canaries_wait_for_promote_when_auto_promote_is_off() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let mut seen = stable(&mut w, 2);
    let update = r#", "update": {"canary": 1, "auto_promote": false, "min_healthy_ms": 1000, "healthy_deadline_ms": 60000}"#;
    w.deploy(svc(2, OTHER, update));
    let early = w.request(ServiceRequest::Promote("svc".to_owned()));
    assert!(matches!(early, Err(ServiceError::Conflict(m)) if m.contains("0 of 1")));
    w.play(4, 600, &mut seen);
    let status = w.status();
    assert_eq!(status.summary.state, "awaiting_promotion");
    assert_eq!(versions_live(&status), vec![1, 1, 2]);
    assert!(w.killed.is_empty());
    assert!(matches!(
        w.request(ServiceRequest::Promote("svc".to_owned())),
        Ok(JobsReply::Done(_))
    ));
    w.play(10, 600, &mut seen);
    let status = w.status();
    assert_eq!(status.summary.stable_version, Some(2), "{status:#?}");
    assert_eq!(
        versions_live(&status),
        vec![2, 2],
        "the canary counts as a copy"
    );
}

#[test]
fn a_version_that_cannot_be_placed_fails_at_its_deadline_and_reverts() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let mut seen = stable(&mut w, 2);
    let huge = decl(&format!(
        r#"{{"name": "svc", "module": "{MODULE}", "cpus": 64, "mem": 64, "count": 2,
            "update": {{"auto_revert": true, "min_healthy_ms": 1000, "healthy_deadline_ms": 5000}}}}"#
    ));
    w.deploy(huge);
    let fewest = w.play(15, 500, &mut seen);
    assert!(fewest >= 1, "healthy copies fell to {fewest}");
    let status = w.status();
    assert_eq!(status.versions[1].state, "failed", "{status:#?}");
    assert!(
        status.versions[1].reason.contains("never placed"),
        "{}",
        status.versions[1].reason
    );
    assert_eq!(status.summary.stable_version, Some(3));
    assert_eq!(status.summary.healthy, 2);
}

#[test]
fn per_agent_copies_follow_the_agents_that_match() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let mut seen = Seen::default();
    w.deploy(decl(&format!(
        r#"{{"name": "svc", "module": "{MODULE}", "per_agent": 1, "constraints": ["arch!=riscv"]}}"#
    )));
    w.play(3, 600, &mut seen);
    assert_eq!(
        w.per_agent(),
        BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), 1)])
    );
    // A third agent joins; a riscv one does not match.
    for (id, arch) in [("c", "x86_64"), ("d", "riscv")] {
        let agent = AgentId::new(id);
        w.master.handle_agent_token(Millis(w.now), &agent, true);
        w.master.handle_agent_advert(
            Millis(w.now),
            advert(id, res(4.0, 4096.0), Attributes::new().with("arch", arch)),
        );
    }
    w.play(10, 1_000, &mut seen);
    assert_eq!(w.per_agent().get("c"), Some(&1), "{:?}", w.per_agent());
    assert_eq!(w.per_agent().get("d"), None);
    assert_eq!(w.status().summary.desired, 3);
    // Agent a is lost: its copy goes with it and is not placed elsewhere.
    let now = w.now;
    w.master.handle_agent_lost(Millis(now), &AgentId::new("a"));
    w.play(5, 1_000, &mut seen);
    let status = w.status();
    assert_eq!(status.summary.desired, 2, "{status:#?}");
    assert_eq!(w.launched.len(), 3, "no copy moved");
}

#[test]
fn copies_spread_evenly_across_the_values_of_the_spread_attribute() {
    let agents = vec![
        advert("a1", res(8.0, 8192.0), Attributes::new().with("zone", "a")),
        advert("a2", res(8.0, 8192.0), Attributes::new().with("zone", "a")),
        advert("b1", res(8.0, 8192.0), Attributes::new().with("zone", "b")),
    ];
    let mut w = World::new(JobBookConfig::default(), agents);
    w.deploy(svc(4, MODULE, r#", "spread": "zone""#));
    let per_agent = w.per_agent();
    let zone_b = per_agent.get("b1").copied().unwrap_or(0);
    assert_eq!(zone_b, 2, "{per_agent:?}");
}

#[test]
fn stop_ends_every_copy_and_a_deploy_starts_the_job_again() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let mut seen = stable(&mut w, 2);
    assert!(matches!(
        w.request(ServiceRequest::Stop("svc".to_owned())),
        Ok(JobsReply::Done(_))
    ));
    w.play(2, 600, &mut seen);
    let status = w.status();
    assert_eq!(status.summary.state, "stopped");
    assert!(status.copies.is_empty(), "{status:#?}");
    assert_eq!(w.deploy(svc(2, MODULE, "")), (1, DeployChange::Updated));
    w.play(3, 600, &mut seen);
    assert_eq!(w.status().summary.healthy, 2);
    assert!(matches!(
        w.request(ServiceRequest::Status("nope".to_owned())),
        Err(ServiceError::NotFound(_))
    ));
}

#[test]
fn bad_declarations_are_refused_naming_the_field() {
    let refused = |json: &str| {
        let decl: JobDecl = serde_json::from_str(json).unwrap();
        ValidDecl::validate(decl).unwrap_err().to_string()
    };
    let base = format!(r#""name": "x", "module": "{MODULE}""#);
    assert!(refused(&format!(r#"{{{base}, "count": 2, "per_agent": 1}}"#)).contains("not both"));
    assert!(
        refused(&format!(
            r#"{{{base}, "per_agent": 1, "update": {{"canary": 1}}}}"#
        ))
        .contains("canaries")
    );
    assert!(
        refused(&format!(r#"{{{base}, "update": {{"max_parallel": 0}}}}"#))
            .contains("max_parallel")
    );
    assert!(
        refused(&format!(
            r#"{{{base}, "update": {{"min_healthy_ms": 9, "healthy_deadline_ms": 9}}}}"#
        ))
        .contains("min_healthy_ms")
    );
    assert!(refused(r#"{"name": "x"}"#).contains("exactly one of module"));
    assert!(refused(&format!(r#"{{{base}, "spread": "a b"}}"#)).contains("spread"));
}

#[test]
fn a_restored_book_goes_on_with_its_rollout_and_duplicates_no_copy() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let mut seen = stable(&mut w, 3);
    w.deploy(svc(3, OTHER, ""));
    w.play(2, 400, &mut seen);
    let before = w.status();
    assert!(before.summary.rollout.is_some(), "{before:#?}");
    // The framework restarts (its master with it, or not): a new book from the saved
    // state, subscribed as the same framework.
    let saved = w.book.save().unwrap();
    w.book = JobBook::restore(JobBookConfig::default(), 99, &saved).unwrap();
    w.book.handle_event(
        w.now,
        Event::Subscribed {
            framework_id: w.framework_id.clone(),
            heartbeat_interval_ms: 1_000,
        },
    );
    let launched_before = w.launched.len();
    w.pump();
    assert!(
        w.calls
            .iter()
            .any(|c| matches!(c, Call::Reconcile { tasks } if !tasks.is_empty())),
        "the restored book asks for its tasks"
    );
    let restored = w.status();
    assert_eq!(restored.summary.version, 2);
    assert_eq!(restored.copies.len(), before.copies.len());
    assert_eq!(w.launched.len(), launched_before, "nothing launched twice");
    w.play(20, 500, &mut seen);
    let status = w.status();
    assert_eq!(status.summary.stable_version, Some(2), "{status:#?}");
    assert_eq!(versions_live(&status), vec![2; 3]);
    let live = (w
        .master
        .task_rows(master::view::WallClock::MASTER)
        .into_iter())
    .filter(|r| !r.state.is_terminal())
    .count();
    assert_eq!(live, 3, "exactly the copies run");
}

#[test]
fn an_unreadable_state_is_refused_with_a_reason() {
    let e = JobBook::restore(
        JobBookConfig::default(),
        1,
        b"{\"format\": 7, \"jobs\": {}, \"jobs_submitted\": 0, \"task_ids_issued\": 0}",
    );
    assert!(e.err().is_some_and(|e| e.to_string().contains("format 7")));
    assert!(JobBook::restore(JobBookConfig::default(), 1, b"not json").is_err());
}

#[test]
fn an_agent_where_a_job_keeps_failing_is_quarantined_for_it() {
    let agents = vec![
        advert("bad", res(4.0, 4096.0), Attributes::new().with("zone", "1")),
        advert(
            "good",
            res(4.0, 4096.0),
            Attributes::new().with("zone", "2"),
        ),
    ];
    let mut w = World::new(JobBookConfig::default(), agents);
    let quarantine = r#", "restart": "always", "constraints": ["zone!=2"],
        "quarantine": {"failures": 2, "window_ms": 60000, "backoff_ms": 30000}"#;
    w.deploy(svc(1, MODULE, quarantine));
    // Fails twice on the only agent it may run on: quarantined there, it waits.
    for _ in 0..2 {
        let id = w.last_launched().task_id.clone();
        assert_eq!(w.agent_of(&id).as_str(), "bad");
        w.report(&id, TaskState::Failed);
        w.advance_to(w.now + 70_000);
    }
    let status = w.status();
    assert_eq!(
        status.summary.quarantined.len(),
        0,
        "the backoff is over: {status:#?}"
    );
    let launched = w.launched.len();
    let id = w.last_launched().task_id.clone();
    w.report(&id, TaskState::Failed);
    let id = {
        w.advance_to(w.now + 5_000);
        w.last_launched().task_id.clone()
    };
    w.report(&id, TaskState::Failed);
    let status = w.status();
    assert_eq!(status.summary.quarantined.len(), 1, "{status:#?}");
    assert_eq!(status.summary.quarantined[0].agent_id.as_str(), "bad");
    let before = w.launched.len();
    w.advance_to(w.now + 20_000);
    assert_eq!(
        w.launched.len(),
        before,
        "nothing placed on the quarantined agent"
    );
    assert!(before > launched);
    w.advance_to(w.now + 15_000);
    assert_eq!(
        w.launched.len(),
        before + 1,
        "placed again once the backoff is over"
    );
    let events: Vec<String> = match w.request(ServiceRequest::History("svc".to_owned())) {
        Ok(JobsReply::History(h)) => h.into_iter().map(|e| e.event).collect(),
        other => panic!("{other:?}"),
    };
    assert!(events.iter().any(|e| e == "quarantined"), "{events:?}");
}

#[test]
fn a_revert_that_fails_is_not_reverted_again() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let mut seen = stable(&mut w, 1);
    let update = r#", "update": {"auto_revert": true, "min_healthy_ms": 1000, "healthy_deadline_ms": 10000}"#;
    w.deploy(svc(1, OTHER, update));
    // The new copy fails: back to version 1's task as version 3, whose copy (the old
    // one, kept) fails in turn before it is healthy again.
    let new = w.last_launched().task_id.clone();
    w.report(&new, TaskState::Running);
    w.report(&new, TaskState::Failed);
    let status = w.status();
    assert_eq!(status.summary.version, 3, "{status:#?}");
    let old = status
        .copies
        .iter()
        .find(|c| c.version == 3)
        .unwrap()
        .task_id
        .clone();
    w.report(&old, TaskState::Failed);
    w.play(3, 600, &mut seen);
    let status = w.status();
    assert_eq!(
        status.summary.version, 3,
        "no version after the failed revert: {status:#?}"
    );
    assert_eq!(status.versions[0].state, "failed");
    assert!(status.summary.rollout.is_none());
}

#[test]
fn scaling_up_in_the_middle_of_a_rollout_adds_copies_of_the_new_version() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let mut seen = stable(&mut w, 3);
    w.deploy(svc(3, OTHER, ""));
    w.play(1, 200, &mut seen);
    assert_eq!(w.deploy(svc(5, OTHER, "")).1, DeployChange::Updated);
    w.play(30, 500, &mut seen);
    let status = w.status();
    assert_eq!(status.summary.stable_version, Some(2), "{status:#?}");
    assert_eq!(versions_live(&status), vec![2; 5]);
}

#[test]
fn a_copy_that_keeps_finishing_under_always_is_never_healthy_one_that_is_done_is() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let mut seen = stable(&mut w, 1);
    let update =
        r#", "restart": "always", "update": {"min_healthy_ms": 3000, "healthy_deadline_ms": 8000}"#;
    w.deploy(svc(1, OTHER, update));
    // Each task of the new version runs a moment and finishes; it restarts.
    for _ in 0..12 {
        let id = w.last_launched().task_id.clone();
        if !seen.running.contains(&id) {
            seen.running.insert(id.clone());
            w.report(&id, TaskState::Running);
            w.report(&id, TaskState::Finished);
        }
        w.confirm_kills(&mut seen.killed);
        w.advance_to(w.now + 1_000);
    }
    let status = w.status();
    assert_eq!(status.versions[0].state, "failed", "{status:#?}");
    assert!(
        status.versions[0].reason.contains("not healthy within"),
        "{status:#?}"
    );
    assert!(status.summary.healthy <= status.summary.running);

    // Under never, a copy that finished is done, and done is healthy.
    let mut w = World::new(JobBookConfig::default(), two_agents());
    w.deploy(svc(1, MODULE, ""));
    let id = w.last_launched().task_id.clone();
    w.report(&id, TaskState::Running);
    w.report(&id, TaskState::Finished);
    assert_eq!(w.status().summary.stable_version, Some(1));
}

#[test]
fn a_per_agent_job_no_agent_takes_is_not_healthy_and_fails_at_its_deadline() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let mut seen = Seen::default();
    w.deploy(decl(&format!(
        r#"{{"name": "svc", "module": "{MODULE}", "per_agent": 1, "constraints": ["arch=riscv"]}}"#
    )));
    w.play(2, 1_000, &mut seen);
    let status = w.status();
    assert_eq!(status.summary.state, "rolling", "no copy yet: {status:#?}");
    assert_eq!(status.summary.stable_version, None);
    w.play(10, 1_000, &mut seen);
    let status = w.status();
    assert_eq!(status.versions[0].state, "failed", "{status:#?}");
    assert!(status.versions[0].reason.contains("no agent took a copy"));
}

#[test]
fn promote_and_revert_refuse_what_cannot_be_done_saying_why() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let mut seen = stable(&mut w, 1);
    w.deploy(svc(1, OTHER, ""));
    let refused = |w: &mut World, request: ServiceRequest| match w.request(request) {
        Err(e) => e.to_string(),
        other => panic!("{other:?}"),
    };
    let promote = refused(&mut w, ServiceRequest::Promote("svc".to_owned()));
    assert!(promote.contains("no canaries waiting"), "{promote}");
    let current = ServiceRequest::Revert {
        name: "svc".to_owned(),
        to: Some(2),
    };
    assert!(refused(&mut w, current).contains("current version"));
    let unknown = ServiceRequest::Revert {
        name: "svc".to_owned(),
        to: Some(99),
    };
    assert!(refused(&mut w, unknown).contains("has no version 99"));
    w.play(10, 500, &mut seen);
    assert!(w.request(ServiceRequest::Stop("svc".to_owned())).is_ok());
    let stopped = ServiceRequest::Revert {
        name: "svc".to_owned(),
        to: Some(1),
    };
    assert!(refused(&mut w, stopped).contains("is stopped"));
    let over = ValidDecl::validate(
        serde_json::from_str(&format!(
            r#"{{"name": "x", "module": "{MODULE}", "count": 2, "update": {{"canary": 3}}}}"#
        ))
        .unwrap(),
    );
    assert!(over.unwrap_err().to_string().contains("at most count (2)"));
}

#[test]
fn a_job_stopped_in_the_middle_of_a_rollout_resumes_it_when_deployed_again() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let mut seen = stable(&mut w, 2);
    w.deploy(svc(2, OTHER, ""));
    w.play(1, 200, &mut seen);
    assert!(w.request(ServiceRequest::Stop("svc".to_owned())).is_ok());
    w.play(2, 500, &mut seen);
    assert_eq!(w.status().summary.desired, 0, "a stopped job wants none");
    assert_eq!(w.deploy(svc(2, OTHER, "")), (2, DeployChange::Updated));
    w.play(10, 500, &mut seen);
    let status = w.status();
    assert_eq!(status.summary.stable_version, Some(2), "{status:#?}");
    assert_eq!(status.versions[0].state, "stable");
    assert_eq!(versions_live(&status), vec![2, 2]);
}

#[test]
fn a_copy_killed_from_outside_is_replaced_and_not_counted() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let mut seen = stable(&mut w, 3);
    // Killed without the jobs framework asking: `wasmos kill` through the master, or its
    // agent shutting down.
    let victim = w.launched[0].1.task_id.clone();
    w.report(&victim, TaskState::Killed);
    let status = w.status();
    assert_eq!(
        (status.summary.running, status.summary.healthy),
        (2, 2),
        "{status:#?}"
    );
    assert_eq!(w.launched.len(), 4, "a replacement is launched at once");
    assert!(status.copies.iter().all(|c| c.task_id != victim));
    w.play(3, 600, &mut seen);
    let status = w.status();
    assert_eq!(
        (
            status.summary.desired,
            status.summary.running,
            status.summary.healthy
        ),
        (3, 3, 3),
        "{status:#?}"
    );
}

#[test]
fn tasks_that_died_with_their_agent_do_not_quarantine_it() {
    let agents = vec![advert("only", res(4.0, 4096.0), Attributes::new())];
    let mut w = World::new(JobBookConfig::default(), agents);
    let quarantine = r#", "restart": "always",
        "quarantine": {"failures": 2, "window_ms": 60000, "backoff_ms": 300000}"#;
    w.deploy(svc(1, MODULE, quarantine));
    for _ in 0..3 {
        let id = w.last_launched().task_id.clone();
        w.report_why(&id, TaskState::Failed, proto::AGENT_RESTARTED);
        w.advance_to(w.now + 5_000);
    }
    let status = w.status();
    assert!(status.summary.quarantined.is_empty(), "{status:#?}");
    assert_eq!(w.launched.len(), 4, "restarted on the same agent each time");
    // The same failures of the task's own are held against the agent.
    for _ in 0..2 {
        let id = w.last_launched().task_id.clone();
        w.report(&id, TaskState::Failed);
        w.advance_to(w.now + 5_000);
    }
    assert_eq!(w.status().summary.quarantined.len(), 1);
}
