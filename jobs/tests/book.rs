//! The jobs scheduler driven through the real master core (`master::Master`, sans-IO):
//! the book's calls go to the master, the master's events come back to the book, and
//! the agents are played by the test.

#![allow(clippy::too_many_lines)]

#[path = "book/services.rs"]
mod services;

use std::collections::BTreeMap;

use jobs::book::{JobBook, JobBookConfig, KillError, SubmitError};
use jobs::request::{JobError, JobRequest, RestartPolicy, ValidJob, ValidateJob};
use jobs::restart::Backoff;
use master::{Action, Master, MasterConfig, Millis};
use proto::{
    AgentAdvert, AgentId, Attributes, Call, CallReply, Constraint, ConstraintOp, Event,
    FrameworkCall, FrameworkId, FrameworkInfo, Resources, StatusUuid, TaskId, TaskKind, TaskSpec,
    TaskState, TaskStatus,
};

const MODULE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn res(cpus: f64, mem: f64) -> Resources {
    Resources::new()
        .with_scalar("cpus", cpus)
        .with_scalar("mem", mem)
}

fn advert(id: &str, total: Resources, attributes: Attributes) -> AgentAdvert {
    AgentAdvert {
        agent_id: AgentId::new(id),
        hostname: id.to_owned(),
        attributes,
        total,
        reserved: Resources::new(),
        seq: 1,
        incarnation: 1,
        tasks: Vec::new(),
        version: "test".to_owned(),
        last_census: None,
    }
}

fn job(json: &str) -> ValidJob {
    let request: JobRequest = serde_json::from_str(json).unwrap();
    request.validate().unwrap()
}

fn module_job(name: &str, count: u32, extra: &str) -> ValidJob {
    job(&format!(
        r#"{{"name": "{name}", "module": "{MODULE}", "cpus": 1, "mem": 64, "count": {count} {extra}}}"#
    ))
}

/// The master, the jobs book subscribed to it, and agents played by the test.
struct World {
    master: Master,
    book: JobBook,
    framework_id: FrameworkId,
    now: u64,
    /// Every task the master told an agent to launch, in order.
    launched: Vec<(AgentId, TaskSpec)>,
    killed: Vec<TaskId>,
    calls: Vec<Call>,
    uuids: u128,
}

impl World {
    fn new(config: JobBookConfig, agents: Vec<AgentAdvert>) -> World {
        let mut master = Master::new(
            MasterConfig {
                offer_timeout_ms: None,
                reclaim: None,
                ..MasterConfig::default()
            },
            7,
        );
        for agent in agents {
            master.handle_agent_token(Millis(0), &agent.agent_id, true);
            master.handle_agent_advert(Millis(0), agent);
        }
        let info = FrameworkInfo {
            name: "jobs".to_owned(),
            role: "default".to_owned(),
            weight: 1.0,
            framework_id: None,
            failover_timeout_ms: 60_000,
            constraints: Vec::new(),
            min_offer: Resources::new(),
            capabilities: Vec::new(),
        };
        let subscribe = FrameworkCall {
            framework_id: None,
            call: Call::Subscribe { info },
        };
        let Ok(CallReply::Subscribed { framework_id, .. }) =
            master.handle_call(Millis(0), &proto::Principal::anonymous(), subscribe)
        else {
            panic!("subscribe refused");
        };
        master.handle_framework_token(Millis(0), &framework_id, true);
        let mut world = World {
            master,
            book: JobBook::new(config, 42),
            framework_id,
            now: 0,
            launched: Vec::new(),
            killed: Vec::new(),
            calls: Vec::new(),
            uuids: 0,
        };
        world.pump();
        world
    }

    /// Moves actions and calls between the master and the book until both are quiet.
    fn pump(&mut self) {
        loop {
            let mut busy = false;
            let now = Millis(self.now);
            if self.master.poll_timeout().is_some_and(|t| t <= now) {
                self.master.handle_timeout(now);
            }
            while let Some(action) = self.master.poll_action() {
                busy = true;
                match action {
                    Action::SendEvent {
                        framework_id,
                        event,
                    } => {
                        assert_eq!(framework_id, self.framework_id);
                        self.book.handle_event(self.now, event);
                    }
                    Action::LaunchTask { agent_id, task, .. } => {
                        self.launched.push((agent_id, task));
                    }
                    Action::KillTask { task_id, .. } => self.killed.push(task_id),
                    _ => {}
                }
            }
            if self.book.poll_timeout().is_some_and(|t| t <= self.now) {
                self.book.handle_timeout(self.now);
            }
            while let Some(call) = self.book.poll_call() {
                busy = true;
                self.calls.push(call.clone());
                let framework_call = FrameworkCall {
                    framework_id: Some(self.framework_id.clone()),
                    call: call.clone(),
                };
                if self
                    .master
                    .handle_call(now, &proto::Principal::anonymous(), framework_call)
                    .is_err()
                {
                    self.book.handle_call_refused(self.now, &call);
                }
            }
            if !busy {
                return;
            }
        }
    }

    fn submit(&mut self, job: ValidJob) -> Vec<TaskId> {
        let accepted = self.book.submit(self.now, job).unwrap();
        self.pump();
        accepted.task_ids
    }

    fn advance_to(&mut self, now: u64) {
        self.now = now;
        self.pump();
    }

    /// The agent running `task_id` reports `state`.
    fn report(&mut self, task_id: &TaskId, state: TaskState) {
        self.report_why(task_id, state, "");
    }

    fn report_why(&mut self, task_id: &TaskId, state: TaskState, reason: &str) {
        let agent_id = self.agent_of(task_id);
        self.uuids += 1;
        let status = TaskStatus {
            task_id: task_id.clone(),
            framework_id: self.framework_id.clone(),
            agent_id,
            state,
            exit_code: None,
            reason: reason.to_owned(),
            uuid: StatusUuid(self.uuids),
            timestamp_ms: 0,
        };
        self.master.handle_status(Millis(self.now), status);
        self.pump();
    }

    fn agent_of(&self, task_id: &TaskId) -> AgentId {
        self.launched
            .iter()
            .find(|(_, t)| &t.task_id == task_id)
            .map(|(a, _)| a.clone())
            .unwrap_or_else(|| panic!("{task_id} was not launched"))
    }

    fn per_agent(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (agent, _) in &self.launched {
            *counts.entry(agent.to_string()).or_default() += 1;
        }
        counts
    }

    fn last_launched(&self) -> &TaskSpec {
        &self.launched.last().unwrap().1
    }
}

fn two_agents() -> Vec<AgentAdvert> {
    vec![
        advert(
            "a",
            res(4.0, 4096.0),
            Attributes::new().with("arch", "x86_64"),
        ),
        advert(
            "b",
            res(4.0, 4096.0),
            Attributes::new()
                .with("arch", "aarch64")
                .with("has", "camera"),
        ),
    ]
}

#[test]
fn four_copies_on_two_agents_spread_two_and_two() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let ids = w.submit(module_job("hello", 4, ""));
    assert_eq!(ids.len(), 4);
    assert_eq!(w.launched.len(), 4, "calls: {:?}", w.calls);
    assert_eq!(
        w.per_agent(),
        BTreeMap::from([("a".to_owned(), 2), ("b".to_owned(), 2)])
    );
    let launched: Vec<&TaskId> = w.launched.iter().map(|(_, t)| &t.task_id).collect();
    for id in &ids {
        assert!(launched.contains(&id), "{id} announced but not launched");
    }
}

#[test]
fn a_single_able_agent_takes_every_copy() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    w.submit(module_job("cam", 3, r#", "constraints": ["has=camera"]"#));
    assert_eq!(w.per_agent(), BTreeMap::from([("b".to_owned(), 3)]));
}

#[test]
fn constraints_are_honoured_and_other_offers_declined() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    w.submit(module_job("arm", 2, r#", "constraints": ["arch=aarch64"]"#));
    assert_eq!(w.per_agent(), BTreeMap::from([("b".to_owned(), 2)]));
    assert!(
        w.calls.iter().any(|c| matches!(c, Call::Decline { .. })),
        "the offer of agent a is declined: {:?}",
        w.calls
    );
}

#[test]
fn operators_and_lists_place_where_every_constraint_holds() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    w.submit(module_job(
        "not-x86",
        2,
        r#", "constraints": ["arch!=x86_64"]"#,
    ));
    assert_eq!(w.per_agent(), BTreeMap::from([("b".to_owned(), 2)]));
    let mut w = World::new(JobBookConfig::default(), two_agents());
    w.submit(module_job(
        "no-cam",
        1,
        r#", "constraints": ["has!=camera"]"#,
    ));
    assert_eq!(w.per_agent(), BTreeMap::from([("a".to_owned(), 1)]));
    let mut w = World::new(JobBookConfig::default(), two_agents());
    w.submit(module_job(
        "both",
        1,
        r#", "constraints": ["arch==aarch64,has=camera", "os!=windows"]"#,
    ));
    assert_eq!(w.per_agent(), BTreeMap::from([("b".to_owned(), 1)]));
}

#[test]
fn constraints_are_parsed_at_validation_and_bad_ones_refused() {
    let request = |constraints: &str| -> JobRequest {
        serde_json::from_str(&format!(
            r#"{{"name": "x", "module": "{MODULE}", "cpus": 1, "mem": 1, "constraints": {constraints}}}"#
        ))
        .unwrap()
    };
    let valid = request(r#"["arch=aarch64,has=camera", "arch!=x86_64"]"#)
        .validate()
        .unwrap();
    assert_eq!(
        valid.constraints,
        vec![
            Constraint::new("arch", ConstraintOp::Eq, "aarch64"),
            Constraint::new("has", ConstraintOp::Eq, "camera"),
            Constraint::new("arch", ConstraintOp::Ne, "x86_64"),
        ]
    );
    for bad in [
        "arch",
        "arch<5",
        "arch>5",
        "arch=~a",
        "arch!a",
        "arch===a",
        "=a",
        "arch=",
        "arch=a,",
        "arch=a, has=b",
        "arch = a",
        "arch=a b",
        "",
    ] {
        let err = request(&serde_json::to_string(&[bad]).unwrap())
            .validate()
            .expect_err(bad);
        let JobError::Constraint(e) = &err else {
            panic!("{bad}: {err:?}");
        };
        assert_eq!(e.given, bad);
        let message = err.to_string();
        assert!(
            message.contains(&format!("constraint {bad:?}")),
            "{message}"
        );
        assert!(message.contains("key!=value"), "{message}");
    }
}

#[test]
fn a_copy_no_agent_can_take_waits_without_launching() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    w.submit(module_job("gpu", 1, r#", "constraints": ["has=gpu"]"#));
    assert!(w.launched.is_empty());
    // A bigger agent with a GPU arrives: the copy goes there once the master offers it.
    w.master
        .handle_agent_token(Millis(10), &AgentId::new("c"), true);
    w.master.handle_agent_advert(
        Millis(10),
        advert("c", res(2.0, 1024.0), Attributes::new().with("has", "gpu")),
    );
    w.advance_to(10);
    assert_eq!(w.per_agent(), BTreeMap::from([("c".to_owned(), 1)]));
}

#[test]
fn resources_bound_the_copies_per_agent() {
    // Each agent holds two copies of 2 cpus; the fifth waits until one ends.
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let ids = w.submit(job(&format!(
        r#"{{"name": "big", "module": "{MODULE}", "cpus": 2, "mem": 64, "count": 5}}"#
    )));
    assert_eq!(w.launched.len(), 4);
    w.report(&ids[0], TaskState::Finished);
    w.advance_to(100);
    assert_eq!(w.launched.len(), 5);
    assert_eq!(w.last_launched().task_id, ids[4]);
}

#[test]
fn on_failure_restarts_with_exponential_backoff_under_new_ids() {
    let config = JobBookConfig {
        restart: Backoff {
            initial_ms: 1_000,
            max_ms: 60_000,
            starts_max: 3,
        },
        ..JobBookConfig::default()
    };
    let mut w = World::new(config, two_agents());
    let ids = w.submit(module_job("flaky", 1, r#", "restart": "on_failure""#));
    let first = ids[0].clone();
    w.report(&first, TaskState::Running);
    w.report(&first, TaskState::Failed);
    assert_eq!(w.launched.len(), 1, "no restart before the backoff");
    assert_eq!(w.book.poll_timeout(), Some(1_000));
    w.advance_to(999);
    assert_eq!(w.launched.len(), 1);
    w.advance_to(1_000);
    assert_eq!(w.launched.len(), 2, "calls: {:?}", w.calls);
    let second = w.last_launched().task_id.clone();
    assert_ne!(second, first, "a restart runs under a new task id");

    // The second failure waits twice as long.
    w.report(&second, TaskState::Failed);
    assert_eq!(w.book.poll_timeout(), Some(3_000));
    w.advance_to(3_000);
    assert_eq!(w.launched.len(), 3);
    let third = w.last_launched().task_id.clone();

    // Three starts used up: the copy ends failed and nothing is left to do.
    w.report(&third, TaskState::Failed);
    assert_eq!(w.book.poll_timeout(), None);
    assert_eq!(w.book.active_jobs(), 0);
    w.advance_to(100_000);
    assert_eq!(w.launched.len(), 3);
}

#[test]
fn on_failure_leaves_a_finished_task_alone_and_always_restarts_it() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let done = w.submit(module_job("once", 1, r#", "restart": "on_failure""#));
    let again = w.submit(module_job("again", 1, r#", "restart": "always""#));
    w.report(&done[0], TaskState::Finished);
    w.report(&again[0], TaskState::Finished);
    w.advance_to(10_000);
    let names: Vec<&str> = w.launched.iter().map(|(_, t)| t.name.as_str()).collect();
    assert_eq!(names.iter().filter(|n| **n == "once").count(), 1);
    assert_eq!(names.iter().filter(|n| **n == "again").count(), 2);
}

#[test]
fn never_does_not_restart_and_the_job_is_forgotten() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let ids = w.submit(module_job("one", 1, ""));
    w.report(&ids[0], TaskState::Failed);
    w.advance_to(100_000);
    assert_eq!(w.launched.len(), 1);
    assert_eq!(w.book.active_jobs(), 0);
    assert_eq!(
        w.book.kill(w.now, &ids[0]),
        Err(KillError::Ended(ids[0].clone()))
    );
}

#[test]
fn a_killed_task_is_not_restarted_even_under_always() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let ids = w.submit(module_job("svc", 2, r#", "restart": "always""#));
    w.report(&ids[0], TaskState::Running);
    w.book.kill(w.now, &ids[0]).unwrap();
    w.pump();
    assert_eq!(w.killed, vec![ids[0].clone()], "the master kills it");
    w.report(&ids[0], TaskState::Killed);
    w.advance_to(100_000);
    assert_eq!(w.launched.len(), 2, "no restart of the killed copy");
    // Killed from outside (`wasmos kill` goes to the master directly): not restarted either.
    w.report(&ids[1], TaskState::Killed);
    w.advance_to(200_000);
    assert_eq!(w.launched.len(), 2);
    assert_eq!(w.book.active_jobs(), 0);
}

/// Regression: a task its agent killed on stopping (SIGTERM: an upgrade, a reboot) was
/// taken for an operator's kill, so `--restart always|on-failure` jobs ended for good at
/// every agent restart. It is restarted by the policy, as a lost task is.
#[test]
fn a_task_killed_by_its_stopping_agent_is_restarted_by_the_policy() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let kept = w.submit(module_job("kept", 1, r#", "restart": "on_failure""#));
    let once = w.submit(module_job("once", 1, ""));
    for ids in [&kept, &once] {
        w.report(&ids[0], TaskState::Running);
        w.report_why(&ids[0], TaskState::Killed, proto::AGENT_STOPPED);
    }
    w.advance_to(100_000);
    let names: Vec<&str> = w.launched.iter().map(|(_, t)| t.name.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "kept").count(),
        2,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "once").count(),
        1,
        "{names:?}"
    );
}

#[test]
fn killing_an_unknown_task_is_an_error() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let unknown = TaskId::new("nobody-1.x");
    assert_eq!(
        w.book.kill(0, &unknown),
        Err(KillError::Unknown(unknown.clone()))
    );
    w.pump();
    assert!(w.killed.is_empty());
}

#[test]
fn killing_a_waiting_copy_ends_it_without_a_launch() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let ids = w.submit(module_job(
        "never-fits",
        1,
        r#", "constraints": ["has=gpu"]"#,
    ));
    w.book.kill(w.now, &ids[0]).unwrap();
    w.pump();
    assert_eq!(w.book.active_jobs(), 0);
    assert!(w.launched.is_empty() && w.killed.is_empty());
    // Its end is kept for lookups by id: the master never knew the task.
    let rows: Vec<_> = w.book.cancelled_rows().iter().collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (&rows[0].task_id, rows[0].state, rows[0].reason.as_str()),
        (&ids[0], TaskState::Killed, "cancelled before it started")
    );
}

#[test]
fn suppresses_when_nothing_waits_and_revives_for_a_new_job() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    w.submit(module_job("first", 1, ""));
    let suppress_at = w
        .calls
        .iter()
        .rposition(|c| matches!(c, Call::Suppress))
        .expect("suppressed once every copy is launched");
    w.submit(module_job("second", 1, ""));
    let revive_at = w
        .calls
        .iter()
        .rposition(|c| matches!(c, Call::Revive))
        .unwrap();
    assert!(revive_at > suppress_at);
    assert_eq!(w.launched.len(), 2);
}

#[test]
fn limits_refuse_jobs_and_tasks_beyond_them() {
    let config = JobBookConfig {
        jobs_max: 2,
        tasks_max: 5,
        ..JobBookConfig::default()
    };
    let mut w = World::new(config, two_agents());
    w.submit(module_job("a", 4, ""));
    assert_eq!(
        w.book.submit(0, module_job("b", 2, "")),
        Err(SubmitError::TooManyTasks {
            count: 2,
            running: 4,
            max: 5
        })
    );
    w.submit(module_job("b", 1, ""));
    assert_eq!(
        w.book.submit(0, module_job("c", 1, "")),
        Err(SubmitError::TooManyJobs { max: 2 })
    );
}

#[test]
fn task_ids_are_unique_valid_key_chunks_and_differ_between_incarnations() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let mut ids = w.submit(module_job("same", 3, ""));
    ids.extend(w.submit(module_job("same", 3, "")));
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 6);
    for id in &ids {
        proto::keys::valid_chunk("task id", id.as_str()).unwrap();
        assert!(id.as_str().starts_with("same-"));
    }
    let mut other = JobBook::new(JobBookConfig::default(), 43);
    let again = other.submit(0, module_job("same", 1, "")).unwrap();
    assert!(!ids.contains(&again.task_ids[0]));
}

#[test]
fn image_jobs_launch_oci_tasks_with_their_command() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    w.submit(job(
        r#"{"name": "box", "image": "/images/busybox", "cpus": 0.5, "mem": 32, "args": ["echo", "hi"], "env": {"A": "1"}}"#,
    ));
    let TaskKind::Oci(oci) = &w.last_launched().kind else {
        panic!("not an OCI task: {:?}", w.last_launched());
    };
    assert_eq!(oci.image, "/images/busybox");
    assert_eq!(oci.command, ["echo", "hi"]);
    assert_eq!(oci.env.get("A").map(String::as_str), Some("1"));
    assert_eq!(w.last_launched().resources, res(0.5, 32.0));
}

#[test]
fn module_jobs_launch_wasm_tasks_with_args_and_timeout() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    w.submit(module_job(
        "args",
        1,
        r#", "args": ["-n", "3"], "timeout_ms": 5000"#,
    ));
    let spec = w.last_launched().clone();
    let TaskKind::Wasm(wasm) = &spec.kind else {
        panic!("not a WASM task");
    };
    assert_eq!(wasm.module.sha256.0, MODULE);
    assert_eq!(wasm.args, ["-n", "3"]);
    assert_eq!(spec.limits.timeout_ms, Some(5000));
}

#[test]
fn a_lost_update_for_an_old_task_is_ignored() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    w.book.handle_event(
        0,
        Event::Update {
            status: TaskStatus {
                task_id: TaskId::new("stranger-1.y"),
                framework_id: w.framework_id.clone(),
                agent_id: AgentId::new("a"),
                state: TaskState::Lost,
                exit_code: None,
                reason: String::new(),
                uuid: StatusUuid(1),
                timestamp_ms: 0,
            },
        },
    );
    assert_eq!(w.book.poll_call(), None);
}

#[test]
fn job_requests_keep_their_json_shape_and_refuse_names_agents_cannot_use() {
    let request: JobRequest = serde_json::from_str(&format!(
        r#"{{"name": "x", "module": "{MODULE}", "cpus": 1, "mem": 1}}"#
    ))
    .unwrap();
    assert_eq!(request.count, 1);
    assert_eq!(request.restart, RestartPolicy::Never);
    let json = serde_json::to_value(&request).unwrap();
    for key in [
        "name",
        "module",
        "image",
        "cpus",
        "mem",
        "count",
        "constraints",
        "args",
        "env",
        "restart",
        "timeout_ms",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    let dotted = JobRequest {
        name: ".hidden".to_owned(),
        ..request.clone()
    };
    assert!(dotted.validate().is_err());
    // An image is a path on the agents: a relative one means nothing there.
    for (image, ok) in [
        ("images/busybox", false),
        ("", false),
        ("/images/busybox", true),
    ] {
        let job = JobRequest {
            module: None,
            image: Some(image.to_owned()),
            ..request.clone()
        };
        assert_eq!(job.validate().is_ok(), ok, "{image:?}");
    }
}

#[test]
fn tasks_of_a_refused_accept_wait_again_under_the_same_ids() {
    let mut book = JobBook::new(JobBookConfig::default(), 1);
    let ids = book.submit(0, module_job("retry", 1, "")).unwrap().task_ids;
    let offer = |id: &str| proto::Offer {
        offer_id: proto::OfferId::new(id),
        framework_id: FrameworkId::new("f"),
        agent_id: AgentId::new("a"),
        hostname: "a".to_owned(),
        attributes: Attributes::new(),
        resources: res(2.0, 1024.0),
    };
    let launched_ids = |book: &mut JobBook| -> Vec<TaskId> {
        let mut out = Vec::new();
        while let Some(call) = book.poll_call() {
            if let Call::Accept { operations, .. } = &call {
                for proto::Operation::Launch { tasks } in operations {
                    out.extend(tasks.iter().map(|t| t.task_id.clone()));
                }
                book.handle_call_refused(0, &call);
            }
        }
        out
    };
    book.handle_event(
        0,
        Event::Offers {
            offers: vec![offer("o1")],
        },
    );
    assert_eq!(launched_ids(&mut book), ids, "first try, refused");
    book.handle_event(
        1,
        Event::Offers {
            offers: vec![offer("o2")],
        },
    );
    assert_eq!(
        launched_ids(&mut book),
        ids,
        "the same id is launched again"
    );
}

#[test]
fn spreading_never_keeps_a_copy_waiting_while_an_agent_has_room() {
    let agents = vec![
        advert("a", res(3.0, 4096.0), Attributes::new()),
        advert("b", res(1.0, 4096.0), Attributes::new()),
    ];
    let mut w = World::new(JobBookConfig::default(), agents);
    w.submit(module_job("lopsided", 4, ""));
    assert_eq!(
        w.per_agent(),
        BTreeMap::from([("a".to_owned(), 3), ("b".to_owned(), 1)])
    );
}

#[test]
fn an_unreachable_copy_is_replaced_and_under_keep_original_the_original_stays_when_it_returns() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let extra = r#", "restart": "always", "lost_after_ms": 60000"#;
    let first = w.submit(module_job("svc", 1, extra))[0].clone();
    w.report(&first, TaskState::Running);
    let home = w.agent_of(&first);
    let spec = w.last_launched().clone();
    let policy = spec.disconnect.clone().expect("a disconnect policy");
    assert_eq!(policy.lost_after_ms, Some(60_000));
    assert_eq!(policy.restart, RestartPolicy::Always);

    // Its agent is lost: unreachable, replaced at once on the other agent.
    w.now = 100;
    w.master.handle_agent_lost(Millis(100), &home);
    w.pump();
    assert_eq!(w.launched.len(), 2, "calls: {:?}", w.calls);
    let replacement = w.last_launched().clone();
    assert_ne!(replacement.task_id, first);
    assert_eq!(replacement.replaces, Some(first.clone()));
    assert_ne!(w.agent_of(&replacement.task_id), home);
    w.report(&replacement.task_id, TaskState::Running);

    // The agent comes back in time, still running the original.
    w.now = 5_000;
    let mut back = advert(home.as_str(), res(4.0, 4096.0), Attributes::new());
    back.seq = 9;
    back.tasks = vec![proto::AdvertTask {
        status: TaskStatus {
            task_id: first.clone(),
            framework_id: w.framework_id.clone(),
            agent_id: home.clone(),
            state: TaskState::Running,
            exit_code: None,
            reason: String::new(),
            uuid: StatusUuid(1_000),
            timestamp_ms: 0,
        },
        name: spec.name.clone(),
        resources: spec.resources.clone(),
    }];
    w.master.handle_agent_token(Millis(5_000), &home, true);
    w.master.handle_agent_advert(Millis(5_000), back);
    w.pump();
    // Killed by the master's rule and by the book (a second kill changes nothing).
    assert!(!w.killed.is_empty(), "keep-original kills the replacement");
    assert!(
        w.killed.iter().all(|t| t == &replacement.task_id),
        "{:?}",
        w.killed
    );

    // The replacement's end is not a copy's end: nothing restarts, the job goes on.
    w.report(&replacement.task_id, TaskState::Killed);
    w.advance_to(200_000);
    assert_eq!(w.launched.len(), 2);
    assert_eq!(w.book.active_jobs(), 1);
    // The original is the copy again: its end restarts it (always).
    w.report(&first, TaskState::Failed);
    w.advance_to(300_000);
    assert_eq!(w.launched.len(), 3, "calls: {:?}", w.calls);
}

#[test]
fn on_reconnect_reads_in_json_as_snake_case_and_in_the_cli_s_spelling() {
    use jobs::request::OnReconnect;
    for spelling in ["keep_replacement", "keep-replacement"] {
        let extra = format!(r#", "lost_after_ms": 1000, "on_reconnect": "{spelling}""#);
        assert_eq!(
            module_job("j", 1, &extra).on_reconnect,
            OnReconnect::KeepReplacement
        );
    }
    assert_eq!(
        module_job("j", 1, "").on_reconnect,
        OnReconnect::KeepOriginal
    );
    let week_and_a_bit = r#"{"name": "j", "module": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "cpus": 1, "mem": 64, "lost_after_ms": 604800001}"#;
    let request: JobRequest = serde_json::from_str(week_and_a_bit).unwrap();
    assert_eq!(request.validate(), Err(JobError::LostAfter(604_800_001)));
}

#[test]
fn killing_an_unreachable_original_gives_it_up_and_the_replacement_goes_on() {
    let mut w = World::new(JobBookConfig::default(), two_agents());
    let extra = r#", "restart": "always", "lost_after_ms": 60000"#;
    let first = w.submit(module_job("svc", 1, extra))[0].clone();
    w.report(&first, TaskState::Running);
    let home = w.agent_of(&first);
    w.now = 100;
    w.master.handle_agent_lost(Millis(100), &home);
    w.pump();
    let replacement = w.last_launched().task_id.clone();
    w.report(&replacement, TaskState::Running);

    w.book.kill(w.now, &first).unwrap();
    w.pump();
    assert!(
        w.calls
            .iter()
            .any(|c| matches!(c, Call::Kill { task_id } if task_id == &first)),
        "the kill reaches the master: {:?}",
        w.calls
    );
    assert_eq!(
        w.book.kill(w.now, &first),
        Err(KillError::Ended(first.clone()))
    );
    // The replacement is the copy: its end restarts it (always).
    w.report(&replacement, TaskState::Failed);
    w.advance_to(100_000);
    assert_eq!(w.launched.len(), 3, "calls: {:?}", w.calls);
}

#[test]
fn amounts_that_round_to_nothing_and_a_zero_timeout_are_refused() {
    let request = |fields: &str| -> JobRequest {
        serde_json::from_str(&format!(
            r#"{{"name": "x", "module": "{MODULE}", {fields}}}"#
        ))
        .unwrap()
    };
    assert!(request(r#""cpus": 0.001, "mem": 0.001"#).validate().is_ok());
    for (fields, says) in [
        (r#""cpus": 0.0001, "mem": 1"#, "cpus must be at least 0.001"),
        (r#""cpus": 1, "mem": 0.0004"#, "mem must be at least 0.001"),
        (
            r#""cpus": 1, "mem": 1, "timeout_ms": 0"#,
            "timeout_ms must be more than 0",
        ),
    ] {
        let err = request(fields).validate().expect_err(fields);
        assert!(err.to_string().contains(says), "{fields}: {err}");
    }
}
