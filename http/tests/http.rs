//! The HTTP API, `/metrics` and the dashboard over a real `master::Master` core.
//!
//! The harness below plays the master daemon's part: it owns the core and a `Recorder`,
//! publishes snapshots, answers commands, and carries out the core's actions as the jobs
//! framework and the agents would (an agent "runs" a task by reporting `running`, then
//! `finished` with exit code 0; no module is executed here).

#![allow(clippy::too_many_lines)]

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Command as Process;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_api::state::{ClusterState, TaskRow};
use http_api::{Command, ErrorBody, Handles, Recorder};
use jobs::request::{Artifact, ValidJob, ValidateJob};
use master::view::WallClock;
use master::{Action, Master, MasterConfig, Millis, OperatorKillError};
use proto::admin::{LogsRequest, OutputPart, OutputPiece, TaskOutput};
use proto::operator::{JobAccepted, OperatorError, OperatorReply, OperatorRequest};
use proto::{
    AgentAdvert, AgentId, Attributes, Call, CallReply, Event, Filters, FrameworkCall, FrameworkId,
    FrameworkInfo, ModuleRef, Offer, Operation, Principal, Resources, Role, StatusUuid, TaskId,
    TaskKind, TaskLimits, TaskSpec, TaskState, TaskStatus, WasmTask,
};
use secure::LiveTokenBook;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

/// How often the harness runs the core's timers and publishes a snapshot.
const TICK_MS: u64 = 20;
/// How long after launch the simulated agent reports `running`, then `finished`.
const RUNNING_AFTER_MS: u64 = 100;
const FINISHED_AFTER_MS: u64 = 600;
/// Longest wait for a task to reach a state in these tests.
const WAIT_MS_MAX: u64 = 20_000;

const MODULE_SHA: &str = "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12";

/// The daemon's side: the real master core and the parts of the jobs framework and the
/// agents that the tests need.
struct Daemon {
    master: Master,
    recorder: Recorder,
    started: Instant,
    jobs_fw: FrameworkId,
    analytics_fw: FrameworkId,
    /// Tasks submitted through the API and not yet launched.
    pending: VecDeque<(TaskSpec, Vec<proto::Constraint>)>,
    /// The analytics framework launches one long-running task, once.
    analytics_launched: bool,
    /// Status updates the simulated agents will send: `(at, status)`.
    agent_reports: Vec<(Millis, TaskStatus)>,
    jobs_submitted: u64,
    status_seq: u128,
    state_tx: watch::Sender<Arc<ClusterState>>,
    /// Who sent each command, and what it asked (its variant's name).
    callers: Callers,
}

/// The callers of the commands the daemon answered: `(request, caller)`.
type Callers = Arc<std::sync::Mutex<Vec<(String, Principal)>>>;

fn request_name(request: &OperatorRequest) -> String {
    let debug = format!("{request:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_owned()
}

impl Daemon {
    fn now(&self) -> Millis {
        Millis(self.started.elapsed().as_millis() as u64)
    }

    fn wall_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn call(&mut self, framework_id: Option<FrameworkId>, call: Call) -> CallReply {
        let now = self.now();
        let call = FrameworkCall { framework_id, call };
        let result = self
            .master
            .handle_call(now, &proto::Principal::anonymous(), call.clone());
        self.recorder
            .observe_call(Daemon::wall_ms(), &call, &result);
        result.unwrap()
    }

    fn subscribe(&mut self, name: &str) -> FrameworkId {
        let info = FrameworkInfo {
            name: name.to_owned(),
            role: name.to_owned(),
            weight: 1.0,
            framework_id: None,
            failover_timeout_ms: 60_000,
            constraints: vec![],
            min_offer: Resources::new(),
            capabilities: Vec::new(),
        };
        match self.call(None, Call::Subscribe { info }) {
            CallReply::Subscribed { framework_id, .. } => {
                let now = self.now();
                self.master.handle_framework_token(now, &framework_id, true);
                framework_id
            }
            other => panic!("subscribe answered {other:?}"),
        }
    }

    fn drain(&mut self) {
        while let Some(action) = self.master.poll_action() {
            self.recorder.observe_action(Daemon::wall_ms(), &action);
            match action {
                Action::SendEvent {
                    framework_id,
                    event,
                } => self.on_event(framework_id, event),
                Action::LaunchTask {
                    agent_id,
                    framework_id,
                    task,
                } => self.agent_launch(agent_id, framework_id, task),
                Action::KillTask {
                    agent_id, task_id, ..
                } => {
                    let fw = self.framework_of(&task_id);
                    self.agent_report(
                        Millis(self.now().0 + 10),
                        &agent_id,
                        &fw,
                        &task_id,
                        TaskState::Killed,
                        None,
                    );
                }
                Action::AckStatus { .. }
                | Action::ReclaimNotice { .. }
                | Action::AnnounceCensus(_)
                | Action::StopAgent { .. } => {}
            }
        }
    }

    fn framework_of(&self, task_id: &TaskId) -> FrameworkId {
        self.master
            .tasks_view()
            .into_iter()
            .find(|t| &t.task_id == task_id)
            .map_or_else(|| self.jobs_fw.clone(), |t| t.framework_id)
    }

    fn on_event(&mut self, framework_id: FrameworkId, event: Event) {
        match event {
            Event::Offers { offers } => {
                for offer in offers {
                    self.answer_offer(&framework_id, offer);
                }
            }
            Event::Update { status } => {
                let call = Call::Acknowledge {
                    task_id: status.task_id,
                    status_uuid: status.uuid,
                };
                self.call(Some(framework_id), call);
            }
            _ => {}
        }
    }

    /// The frameworks' schedulers: launch what fits, decline the rest for a short while.
    fn answer_offer(&mut self, framework_id: &FrameworkId, offer: Offer) {
        let mut launch = Vec::new();
        if *framework_id == self.jobs_fw {
            let mut left = offer.resources.clone();
            while let Some((task, constraints)) = self.pending.front() {
                if !offer.attributes.satisfies(constraints) {
                    break;
                }
                let Some(rest) = left.checked_sub(&task.resources) else {
                    break;
                };
                left = rest;
                launch.extend(self.pending.pop_front().map(|(task, _)| task));
            }
        } else if !self.analytics_launched {
            self.analytics_launched = true;
            launch.push(task_spec("analytics-0", 1.0, 1024.0));
        }
        let offer_ids = vec![offer.offer_id];
        let filters = Filters {
            refuse_seconds: 0.2,
        };
        let call = if launch.is_empty() {
            Call::Decline { offer_ids, filters }
        } else {
            Call::Accept {
                offer_ids,
                operations: vec![Operation::Launch { tasks: launch }],
                filters,
            }
        };
        self.call(Some(framework_id.clone()), call);
    }

    fn agent_launch(&mut self, agent_id: AgentId, framework_id: FrameworkId, task: TaskSpec) {
        let now = self.now();
        let id = task.task_id.clone();
        self.agent_report(
            Millis(now.0 + RUNNING_AFTER_MS),
            &agent_id,
            &framework_id,
            &id,
            TaskState::Running,
            None,
        );
        if framework_id == self.jobs_fw {
            self.agent_report(
                Millis(now.0 + FINISHED_AFTER_MS),
                &agent_id,
                &framework_id,
                &id,
                TaskState::Finished,
                Some(0),
            );
        }
    }

    fn agent_report(
        &mut self,
        at: Millis,
        agent: &AgentId,
        fw: &FrameworkId,
        task: &TaskId,
        state: TaskState,
        exit_code: Option<i32>,
    ) {
        self.status_seq += 1;
        let status = TaskStatus {
            task_id: task.clone(),
            framework_id: fw.clone(),
            agent_id: agent.clone(),
            state,
            exit_code,
            reason: if state == TaskState::Killed {
                "killed through the API".into()
            } else {
                String::new()
            },
            uuid: StatusUuid(self.status_seq),
            timestamp_ms: Daemon::wall_ms(),
        };
        self.agent_reports.push((at, status));
    }

    /// Every input gets a fresh `now`: a time taken before a call that itself reads the
    /// clock would go back.
    fn tick(&mut self) {
        let now = self.now();
        let (due, later): (Vec<_>, Vec<_>) =
            self.agent_reports.drain(..).partition(|(at, _)| *at <= now);
        self.agent_reports = later;
        for (_, status) in due {
            self.recorder.observe_status(Daemon::wall_ms(), &status);
            let now = self.now();
            self.master.handle_status(now, status);
            self.drain();
        }
        let now = self.now();
        if self.master.poll_timeout().is_some_and(|t| t <= now) {
            let started = Instant::now();
            self.master.handle_timeout(now);
            self.recorder.observe_allocation_pass(started.elapsed());
            self.drain();
        }
        let now = self.now();
        let snapshot = self.recorder.snapshot(&self.master, Daemon::wall_ms(), now);
        self.state_tx.send_replace(Arc::new(snapshot));
    }

    /// Answers as the master daemon's operator does: jobs validated, then queued;
    /// kills through the core's operator input; logs of tasks the core knows.
    fn command(
        &mut self,
        Command {
            request,
            caller,
            reply,
        }: Command,
    ) {
        let name = request_name(&request);
        self.callers.lock().unwrap().push((name, caller));
        let answer = match request {
            OperatorRequest::SubmitJob(job) => match job.validate() {
                Ok(job) => OperatorReply::JobAccepted(self.submit(job)),
                Err(e) => OperatorReply::Error(OperatorError::InvalidJob(e.to_string())),
            },
            OperatorRequest::Kill { task_id } => match self.kill(task_id) {
                Ok(()) => OperatorReply::Killed,
                Err(e) => OperatorReply::Error(e),
            },
            OperatorRequest::Logs(LogsRequest { task_id, .. }) => match self
                .master
                .task_place(&task_id)
            {
                Some(_) => {
                    let hello = format!("hello from {task_id}\n").into_bytes();
                    let end = hello.len() as u64;
                    OperatorReply::Logs(TaskOutput {
                        state: TaskState::Finished,
                        stdout: OutputPart::new(
                            [OutputPiece {
                                offset: 0,
                                bytes: hello,
                            }],
                            end,
                        ),
                        stderr: OutputPart::default(),
                    })
                }
                None => OperatorReply::Error(OperatorError::NotFound(format!("no task {task_id}"))),
            },
            OperatorRequest::TaskRows { task_ids } => {
                let clock = WallClock {
                    wall_ms: Daemon::wall_ms(),
                    master_now: self.now(),
                };
                OperatorReply::Tasks(self.master.task_rows_of(&task_ids, clock))
            }
            other => OperatorReply::Error(OperatorError::Conflict(format!(
                "the API does not ask {other:?}"
            ))),
        };
        let _ = reply.send(answer);
    }

    fn submit(&mut self, job: ValidJob) -> JobAccepted {
        self.jobs_submitted += 1;
        let job_id = format!("job-{}", self.jobs_submitted);
        let mut task_ids = Vec::new();
        for n in 0..job.count {
            let mut spec = task_spec(
                &format!("{}-{}-{n}", job.name, self.jobs_submitted),
                job.cpus,
                job.mem_mib,
            );
            if let (TaskKind::Wasm(w), Artifact::Module(sha)) = (&mut spec.kind, &job.artifact) {
                w.module.sha256 = sha.clone();
                w.args = job.args.clone();
            }
            task_ids.push(spec.task_id.clone());
            self.pending.push_back((spec, job.constraints.clone()));
        }
        let fw = self.jobs_fw.clone();
        self.call(Some(fw), Call::Revive);
        self.drain();
        JobAccepted { job_id, task_ids }
    }

    fn kill(&mut self, task_id: TaskId) -> Result<(), OperatorError> {
        let now = self.now();
        let killed = self.master.handle_operator_kill(now, &task_id);
        self.drain();
        killed.map_err(|e| match e {
            OperatorKillError::Unknown(_) => OperatorError::NotFound(e.to_string()),
            OperatorKillError::Ended { .. } => OperatorError::Conflict(e.to_string()),
        })
    }
}

fn task_spec(id: &str, cpus: f64, mem: f64) -> TaskSpec {
    TaskSpec {
        task_id: TaskId::new(id),
        name: id.to_owned(),
        resources: Resources::new()
            .with_scalar("cpus", cpus)
            .with_scalar("mem", mem),
        kind: TaskKind::Wasm(WasmTask {
            module: ModuleRef {
                sha256: proto::ModuleHash(MODULE_SHA.into()),
                size_bytes: 1,
                name: "hello.wasm".into(),
            },
            ..WasmTask::default()
        }),
        limits: TaskLimits::default(),
        disconnect: None,
        replaces: None,
    }
}

fn advert(id: &str, arch: &str, has: &str, total: Resources) -> AgentAdvert {
    AgentAdvert {
        agent_id: AgentId::new(id),
        hostname: format!("{id}.local"),
        attributes: Attributes::new()
            .with("arch", arch)
            .with("has", has)
            .with("zone", "dock-3"),
        total,
        reserved: Resources::new(),
        seq: 1,
        incarnation: 1,
        tasks: vec![],
        version: "test".into(),
        last_census: None,
    }
}

/// A running "master": the core in a task, the HTTP server on 127.0.0.1:0.
struct Cluster {
    base: String,
    handles: Handles,
    callers: Callers,
    _runtime_guard: tokio::task::JoinHandle<()>,
}

async fn start_cluster() -> Cluster {
    start_cluster_with(None).await
}

/// A cluster whose API takes only the bearer tokens of `tokens`, if any.
async fn start_cluster_with(tokens: Option<Arc<LiveTokenBook>>) -> Cluster {
    let callers = Callers::default();
    let (state_tx, state_rx) = watch::channel(Arc::new(ClusterState::default()));
    let (commands_tx, mut commands_rx) = mpsc::channel::<Command>(64);
    let mut daemon = Daemon {
        // Jobs land on the GPU box too: what is tested here is the API, not GPU policy.
        master: Master::new(
            MasterConfig {
                gpu_agents_last_resort: true,
                ..MasterConfig::default()
            },
            7,
        ),
        recorder: Recorder::new(),
        started: Instant::now(),
        jobs_fw: FrameworkId::new(""),
        analytics_fw: FrameworkId::new(""),
        pending: VecDeque::new(),
        analytics_launched: false,
        agent_reports: vec![],
        jobs_submitted: 0,
        status_seq: 0,
        state_tx,
        callers: callers.clone(),
    };
    let gpu_box = Resources::new()
        .with_scalar("cpus", 4.0)
        .with_scalar("mem", 8192.0)
        .with_scalar("gpus", 1.0);
    let camera_board = Resources::new()
        .with_scalar("cpus", 2.0)
        .with_scalar("mem", 2048.0);
    let now = daemon.now();
    for agent in ["edge-1", "edge-2"] {
        daemon
            .master
            .handle_agent_token(now, &AgentId::new(agent), true);
    }
    daemon
        .master
        .handle_agent_advert(now, advert("edge-1", "x86_64", "gpu", gpu_box));
    daemon
        .master
        .handle_agent_advert(now, advert("edge-2", "aarch64", "camera", camera_board));
    daemon.jobs_fw = daemon.subscribe("jobs");
    daemon.analytics_fw = daemon.subscribe("analytics");
    daemon.drain();
    daemon.tick();
    let driver = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(TICK_MS));
        loop {
            tokio::select! {
                _ = ticks.tick() => daemon.tick(),
                command = commands_rx.recv() => match command {
                    Some(c) => daemon.command(c),
                    None => return,
                },
            }
        }
    });
    let mut handles = Handles::new(state_rx, commands_tx);
    if let Some(tokens) = tokens {
        handles = handles.with_tokens(tokens);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(http_api::serve_on(listener, handles.clone()));
    Cluster {
        base,
        handles,
        callers,
        _runtime_guard: driver,
    }
}

fn job(name: &str) -> Value {
    json!({"name": name, "module": MODULE_SHA, "cpus": 0.5, "mem": 64, "count": 1, "args": ["--greet"], "constraints": ["arch=x86_64"], "restart": "never"})
}

async fn wait_for_state(client: &reqwest::Client, base: &str, task: &str, state: &str) -> TaskRow {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    loop {
        let tasks: Vec<TaskRow> = client
            .get(format!("{base}/api/v1/tasks"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(t) = tasks
            .iter()
            .find(|t| t.task_id.as_str() == task && t.state.as_str() == state)
        {
            return t.clone();
        }
        assert!(
            Instant::now() < deadline,
            "task {task} never reached {state}: {tasks:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET url`, its body as JSON (of the type the caller names).
async fn get_json<T: serde::de::DeserializeOwned>(c: &reqwest::Client, url: String) -> T {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

async fn error_code(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status().as_u16(), status);
    let body: ErrorBody = response.json().await.unwrap();
    assert!(!body.error.message.is_empty());
    body.error.code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_over_tcp() {
    let cluster = start_cluster().await;
    let (c, base) = (reqwest::Client::new(), cluster.base.as_str());

    let health: Value = get_json(&c, format!("{base}/health")).await;
    assert_eq!(health["status"], "ok");

    let accepted: JobAccepted = {
        let r = c
            .post(format!("{base}/api/v1/jobs"))
            .json(&job("hello"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        r.json().await.unwrap()
    };
    assert_eq!(accepted.task_ids.len(), 1);
    let id = accepted.task_ids[0].to_string();
    let done = wait_for_state(&c, base, &id, "finished").await;
    assert_eq!(done.exit_code, Some(0));
    assert_eq!(
        done.agent_id.as_str(),
        "edge-1",
        "the arch=x86_64 constraint was not for the jobs scheduler to break"
    );

    let state: ClusterState = get_json(&c, format!("{base}/api/v1/state")).await;
    assert_eq!(state.agents.len(), 2);
    assert_eq!(state.frameworks.len(), 2);
    let analytics = state
        .frameworks
        .iter()
        .find(|f| f.name == "analytics")
        .unwrap();
    assert!(
        analytics.dominant_share > 0.0,
        "its running task holds resources: {analytics:?}"
    );
    assert!(
        state
            .log
            .iter()
            .any(|e| e.kind == http_api::state::LogKind::Accept)
    );
    assert!(
        state.counters.offers_sent >= 2 && state.counters.offers_accepted >= 2,
        "{:?}",
        state.counters
    );
    assert!(!state.share_history.is_empty());
    let edge1_usage = &state.agent_usage["edge-1"];
    assert!(
        edge1_usage.used["cpus"].len() == edge1_usage.at_ms.len() && !edge1_usage.at_ms.is_empty(),
        "{edge1_usage:?}"
    );
    let offers: Vec<http_api::state::OfferRow> =
        get_json(&c, format!("{base}/api/v1/offers")).await;
    let latest: ClusterState = get_json(&c, format!("{base}/api/v1/state")).await;
    assert!(
        offers
            .iter()
            .chain(&latest.offers)
            .all(|o| o.made_at_ms <= latest.master_now_ms),
        "offer times are on the master's clock, as master_now_ms: {offers:?}"
    );

    let agents: Vec<Value> = get_json(&c, format!("{base}/api/v1/agents")).await;
    let edge1 = agents.iter().find(|a| a["agent_id"] == "edge-1").unwrap();
    assert_eq!(edge1["attributes"]["arch"], "x86_64");
    assert_eq!(edge1["state"], "active");
    let frameworks: Vec<Value> = get_json(&c, format!("{base}/api/v1/frameworks")).await;
    assert_eq!(frameworks.len(), 2);

    // Filters: each narrows, together they must all hold.
    let get_tasks = |q: &str| {
        let url = format!("{base}/api/v1/tasks?{q}");
        let c = c.clone();
        async move {
            c.get(url)
                .send()
                .await
                .unwrap()
                .json::<Vec<TaskRow>>()
                .await
                .unwrap()
        }
    };
    let finished = get_tasks("state=finished").await;
    assert!(
        finished.iter().all(|t| t.state == TaskState::Finished)
            && finished.iter().any(|t| t.task_id.as_str() == id)
    );
    let on_jobs = get_tasks(&format!("framework={}", done.framework_id)).await;
    assert!(!on_jobs.is_empty() && on_jobs.iter().all(|t| t.framework_id == done.framework_id));
    let on_edge2 = get_tasks("agent=edge-2&state=finished").await;
    assert!(
        on_edge2
            .iter()
            .all(|t| t.agent_id.as_str() == "edge-2" && t.state == TaskState::Finished)
    );
    assert!(!on_edge2.iter().any(|t| t.task_id.as_str() == id));
    let bad = c
        .get(format!("{base}/api/v1/tasks?state=sleeping"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(bad, 400).await, "invalid_query");

    let detail: Value = get_json(&c, format!("{base}/api/v1/tasks/{id}")).await;
    assert_eq!(detail["task_id"], id.as_str());
    assert_eq!(detail["state"], "finished");
    assert_eq!(detail["log_tail"]["stdout"], format!("hello from {id}\n"));
    let unknown = c
        .get(format!("{base}/api/v1/tasks/no-such-task"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(unknown, 404).await, "task_not_found");

    // Kills: an ended task is a conflict, an unknown one 404, a running one is killed.
    let r = c
        .delete(format!("{base}/api/v1/tasks/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 409).await, "conflict");
    let r = c
        .delete(format!("{base}/api/v1/tasks/no-such-task"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 404).await, "task_not_found");
    wait_for_state(&c, base, "analytics-0", "running").await;
    let r = c
        .delete(format!("{base}/api/v1/tasks/analytics-0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let killed = wait_for_state(&c, base, "analytics-0", "killed").await;
    assert_eq!(killed.reason, "killed through the API");

    // Validation: each names the field at fault.
    for (body, field) in [
        (json!({"name": "x", "cpus": 1, "mem": 1}), "module"),
        (
            json!({"name": "x", "module": "abc", "cpus": 1, "mem": 1}),
            "sha256",
        ),
        (
            json!({"name": "x", "module": MODULE_SHA, "image": "i", "cpus": 1, "mem": 1}),
            "exactly one",
        ),
        (
            json!({"name": "x", "module": MODULE_SHA, "cpus": 0, "mem": 1}),
            "cpus",
        ),
        (
            json!({"name": "x", "module": MODULE_SHA, "cpus": 1, "mem": 1, "count": 0}),
            "count",
        ),
        (
            json!({"name": "x", "module": MODULE_SHA, "cpus": 1, "mem": 1, "constraints": ["arch"]}),
            "constraint",
        ),
        (
            json!({"name": "x", "module": MODULE_SHA, "cpus": 1, "mem": 1, "constraints": ["arch<5"]}),
            "constraint \"arch<5\" is refused: \"<\" is not an operator",
        ),
        (
            json!({"name": "x", "module": MODULE_SHA, "cpus": 1, "mem": 1, "constraints": ["arch=aarch64,"]}),
            "key!=value",
        ),
        (
            json!({"name": "Bad Name", "module": MODULE_SHA, "cpus": 1, "mem": 1}),
            "name",
        ),
        (
            json!({"name": "x", "module": MODULE_SHA, "cpus": "1", "mem": 1}),
            "invalid type",
        ),
        (
            json!({"name": "x", "module": MODULE_SHA, "cpus": 1, "mem": 1, "colour": "red"}),
            "unknown field",
        ),
    ] {
        let r = c
            .post(format!("{base}/api/v1/jobs"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 422, "{body}");
        let e: ErrorBody = r.json().await.unwrap();
        assert_eq!(e.error.code, "invalid_job");
        assert!(
            e.error.message.contains(field),
            "{body}: {}",
            e.error.message
        );
    }
    let r = c
        .post(format!("{base}/api/v1/jobs"))
        .body("{\"name\":")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 400).await, "malformed_json");
    let r = c
        .post(format!("{base}/api/v1/jobs"))
        .body(vec![b' '; http_api::BODY_BYTES_MAX + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 413).await, "body_too_large");
    let r = c.put(format!("{base}/api/v1/jobs")).send().await.unwrap();
    assert_eq!(error_code(r, 405).await, "method_not_allowed");
    let r = c
        .get(format!("{base}/api/v2/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");

    // The OpenAPI document names every route and the job body.
    let doc: Value = get_json(&c, format!("{base}/api/v1/openapi.json")).await;
    for path in [
        "/health",
        "/api/v1/state",
        "/api/v1/agents",
        "/api/v1/frameworks",
        "/api/v1/offers",
        "/api/v1/tasks",
        "/api/v1/tasks/{id}",
        "/api/v1/jobs",
        "/api/v1/events",
        "/metrics",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["paths"]["/api/v1/tasks/{id}"].get("delete").is_some());
    assert!(
        doc["components"]["schemas"]["JobRequest"]["properties"]
            .get("cpus")
            .is_some()
    );

    // Server-sent events: the first event is the current state.
    let mut events = c.get(format!("{base}/api/v1/events")).send().await.unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), events.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.starts_with("event: state\ndata: {"), "{text}");
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let first: ClusterState = serde_json::from_str(data).unwrap();
    assert_eq!(first.agents.len(), 2);

    // Without tokens, every command came from the anonymous caller.
    let callers = cluster.callers.lock().unwrap().clone();
    assert!(
        callers.iter().any(|(request, _)| request == "Kill"),
        "{callers:?}"
    );
    assert!(
        callers.iter().all(|(_, c)| *c == Principal::anonymous()),
        "{callers:?}"
    );
    drop(cluster.handles);
}

/// A token book in a cluster directory of its own (`create_token` wants a `ca.pem`):
/// the book, and an operator's and a viewer's token.
fn token_book() -> (tempfile::TempDir, Arc<LiveTokenBook>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "").unwrap();
    let operator = secure::create_token(dir.path(), "ops", Role::Operator).unwrap();
    let viewer = secure::create_token(dir.path(), "watcher", Role::Viewer).unwrap();
    let book = LiveTokenBook::open(dir.path()).unwrap();
    (dir, Arc::new(book), operator, viewer)
}

/// A 401 with the API's error body and a bearer challenge; answers the challenge.
async fn unauthorized(response: reqwest::Response) -> String {
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert_eq!(error_code(response, 401).await, "unauthorized");
    challenge
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_every_route_but_health_and_the_dashboard_wants_one() {
    let (_dir, book, operator, viewer) = token_book();
    let cluster = start_cluster_with(Some(book)).await;
    let (c, base) = (reqwest::Client::new(), cluster.base.as_str());

    // Open: liveness, and the page that asks for a token.
    for path in ["/health", "/", "/assets/app.js", "/assets/app.css"] {
        let r = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    // Everything else, without a token or with a bad one: 401.
    for path in [
        "/api/v1/state",
        "/api/v1/tasks",
        "/api/v1/events",
        "/api/v1/openapi.json",
        "/metrics",
        "/api/v2/nothing",
    ] {
        let r = c.get(format!("{base}{path}")).send().await.unwrap();
        let challenge = unauthorized(r).await;
        assert!(!challenge.contains("error="), "{path}: {challenge}");
    }
    for header in [
        "Bearer wsm_not-a-token".to_owned(),
        format!("Bearer {}", &operator[..operator.len() - 1]),
        format!("Bearer {operator}{operator}"),
        format!("Bearer {}", "x".repeat(10_000)),
    ] {
        let r = c
            .get(format!("{base}/api/v1/state"))
            .header("authorization", &header)
            .send()
            .await
            .unwrap();
        assert!(
            unauthorized(r).await.contains("invalid_token"),
            "{header:.40}"
        );
    }
    for header in [format!("Basic {operator}"), "Bearer".to_owned()] {
        let r = c
            .delete(format!("{base}/api/v1/tasks/analytics-0"))
            .header("authorization", &header)
            .send()
            .await
            .unwrap();
        unauthorized(r).await;
    }
    assert!(cluster.callers.lock().unwrap().is_empty());

    // A viewer reads: the state, metrics, a task (whose log request names the viewer).
    let as_viewer = |r: reqwest::RequestBuilder| r.bearer_auth(&viewer);
    let as_operator = |r: reqwest::RequestBuilder| r.bearer_auth(&operator);
    for path in ["/api/v1/state", "/metrics", "/api/v1/openapi.json"] {
        let r = as_viewer(c.get(format!("{base}{path}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    loop {
        let tasks: Vec<TaskRow> = as_viewer(c.get(format!("{base}/api/v1/tasks")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if tasks.iter().any(|t| t.task_id.as_str() == "analytics-0") {
            break;
        }
        assert!(Instant::now() < deadline, "analytics-0 never listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = as_viewer(c.get(format!("{base}/api/v1/tasks/analytics-0")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // ... and may not write: refused before the daemon hears of it.
    let r = as_viewer(c.delete(format!("{base}/api/v1/tasks/analytics-0")))
        .send()
        .await
        .unwrap();
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    assert_eq!(error_code(r, 403).await, "forbidden");
    let r = as_viewer(c.post(format!("{base}/api/v1/jobs")))
        .json(&job("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 403).await, "forbidden");

    // An operator's kill and job reach the daemon, as the operator.
    let r = as_operator(c.delete(format!("{base}/api/v1/tasks/analytics-0")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let r = as_operator(c.post(format!("{base}/api/v1/jobs")))
        .json(&job("tokened"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    // The event stream takes the header too (the dashboard reads it with fetch).
    let mut events = as_viewer(c.get(format!("{base}/api/v1/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status().as_u16(), 200);
    let chunk = tokio::time::timeout(Duration::from_secs(5), events.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(chunk.starts_with(b"event: state\n"));

    let watcher = Principal::new("watcher", Role::Viewer);
    let ops = Principal::new("ops", Role::Operator);
    let callers = cluster.callers.lock().unwrap().clone();
    let expected = [
        ("TaskRows".to_owned(), watcher.clone()),
        ("Logs".to_owned(), watcher),
        ("Kill".to_owned(), ops.clone()),
        ("SubmitJob".to_owned(), ops),
    ];
    assert_eq!(callers, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text() {
    let cluster = start_cluster().await;
    let (c, base) = (reqwest::Client::new(), cluster.base.as_str());
    let accepted: JobAccepted = c
        .post(format!("{base}/api/v1/jobs"))
        .json(&job("metered"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    wait_for_state(&c, base, accepted.task_ids[0].as_str(), "finished").await;

    let response = c.get(format!("{base}/metrics")).send().await.unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no sample {name} {label:?} in\n{text}"));
        match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name} is {other:?}"),
        }
    };
    assert_eq!(value("wasmos_agents", Some(("state", "active"))), 2.0);
    assert_eq!(value("wasmos_agents", Some(("state", "lost"))), 0.0);
    assert_eq!(value("wasmos_frameworks", None), 2.0);
    assert!(value("wasmos_tasks", Some(("state", "finished"))) >= 1.0);
    let sent = value("wasmos_offers_total", Some(("outcome", "sent")));
    let answered = value("wasmos_offers_total", Some(("outcome", "accepted")))
        + value("wasmos_offers_total", Some(("outcome", "declined")));
    assert!(
        sent >= 2.0 && answered >= 2.0 && answered <= sent,
        "sent {sent}, answered {answered}"
    );
    assert_eq!(value("wasmos_status_update_retries_total", None), 0.0);
    let shares: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "wasmos_framework_dominant_share")
        .collect();
    assert_eq!(shares.len(), 2, "one share per framework");
    let histogram = scrape
        .samples
        .iter()
        .find(|s| s.metric == "wasmos_allocation_pass_duration_seconds")
        .unwrap_or_else(|| panic!("no allocation histogram in\n{text}"));
    match &histogram.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let inf = buckets
                .iter()
                .find(|b| b.less_than == f64::INFINITY)
                .unwrap();
            assert!(inf.count >= 1.0, "allocation passes ran: {buckets:?}");
            assert!(
                buckets.windows(2).all(|w| w[0].count <= w[1].count),
                "cumulative: {buckets:?}"
            );
        }
        other => panic!("allocation pass duration is {other:?}"),
    }
    let doc = scrape.docs.get("wasmos_offers_total").unwrap();
    assert!(!doc.is_empty());
}

mod fuzz {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request};
    use proptest::prelude::*;
    use tower::ServiceExt;

    /// Paths: every route, with random ids and random junk segments.
    fn path() -> impl Strategy<Value = String> {
        let id = "[a-zA-Z0-9%._~-]{0,40}";
        prop_oneof![
            Just("/".to_owned()),
            Just("/health".to_owned()),
            Just("/metrics".to_owned()),
            Just("/api/v1/openapi.json".to_owned()),
            Just("/api/v1/state".to_owned()),
            Just("/api/v1/agents".to_owned()),
            Just("/api/v1/frameworks".to_owned()),
            Just("/api/v1/offers".to_owned()),
            Just("/api/v1/jobs".to_owned()),
            "[a-z=&%0-9]{0,30}".prop_map(|q| format!("/api/v1/tasks?{q}")),
            ("(state|framework|agent|x)", "[a-zA-Z%0-9]{0,12}")
                .prop_map(|(k, v)| format!("/api/v1/tasks?{k}={v}")),
            id.prop_map(|i| format!("/api/v1/tasks/{i}")),
            "(/[a-zA-Z0-9%._-]{0,12}){1,4}",
        ]
    }

    fn method() -> impl Strategy<Value = Method> {
        prop_oneof![
            3 => Just(Method::GET),
            3 => Just(Method::POST),
            2 => Just(Method::DELETE),
            1 => Just(Method::PUT),
            1 => Just(Method::PATCH),
            1 => Just(Method::OPTIONS),
        ]
    }

    /// A JSON value of any shape, to put where a field is expected.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,20}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-z]{1,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        let fields = [
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
        ];
        prop_oneof![
            // A valid job with one field replaced by anything.
            (prop::sample::select(fields.to_vec()), json_value()).prop_map(|(field, v)| {
                let mut j = job("fuzz");
                j[field] = v;
                serde_json::to_vec(&j).unwrap()
            }),
            // A valid job cut short: malformed JSON.
            any::<prop::sample::Index>().prop_map(|i| {
                let bytes = serde_json::to_vec(&job("fuzz")).unwrap();
                bytes[..i.index(bytes.len())].to_vec()
            }),
            json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            prop::collection::vec(any::<u8>(), 0..256),
            // Huge bodies, around and beyond the limit.
            (0usize..3 * http_api::BODY_BYTES_MAX).prop_map(|n| vec![b'['; n]),
        ]
    }

    #[test]
    fn never_a_server_error() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cluster = runtime.block_on(start_cluster());
        let router = http_api::router(cluster.handles.clone());
        let config = ProptestConfig {
            cases: 400,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        proptest!(config, |(method in method(), path in path(), body in body(), json in any::<bool>())| {
            let mut request = Request::builder().method(method.clone()).uri(&path);
            if json {
                request = request.header("content-type", "application/json");
            }
            let request = request.body(Body::from(body)).unwrap();
            let response = runtime.block_on(router.clone().oneshot(request)).unwrap();
            let status = response.status();
            prop_assert!(status.as_u16() < 500, "{method} {path} answered {status}");
            if status.is_client_error() {
                let bytes = runtime.block_on(axum::body::to_bytes(response.into_body(), 1 << 20)).unwrap();
                let parsed: Result<ErrorBody, _> = serde_json::from_slice(&bytes);
                prop_assert!(parsed.is_ok(), "{method} {path}: {status} with body {:?}", String::from_utf8_lossy(&bytes));
            }
        });
    }
}

/// Where tests leave files to look at: `target/test-output/`.
fn test_output_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("..")
        .join("test-output");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Flags that keep headless Chromium quiet and self-contained in a container.
fn chromium(profile: &std::path::Path) -> Process {
    let mut p = Process::new("chromium");
    p.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ]);
    p.arg(format!("--user-data-dir={}", profile.display()));
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let found = Process::new("chromium").arg("--version").output();
    assert!(
        found.as_ref().is_ok_and(|o| o.status.success()),
        "chromium is not installed; run `cargo xtask setup` (it apt-get installs chromium): {found:?}"
    );
    let cluster = start_cluster().await;
    let (c, base) = (reqwest::Client::new(), cluster.base.clone());
    let accepted: JobAccepted = c
        .post(format!("{base}/api/v1/jobs"))
        .json(&job("browser"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = accepted.task_ids[0].to_string();
    let profile = std::env::temp_dir().join(format!("wasmos-chromium-{}", std::process::id()));

    // Chromium's virtual time waits for open requests, and the event stream never ends,
    // so the page is loaded in its polling mode; the stream is tested over TCP above.
    let finished_row = format!("data-task=\"{id}\" data-state=\"finished\"");
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    let dom = loop {
        let mut cmd = chromium(&profile);
        cmd.args([
            "--virtual-time-budget=5000",
            "--dump-dom",
            &format!("{base}/?live=poll"),
        ]);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .unwrap();
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        if dom.contains(&finished_row) {
            break dom;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard never showed {id} finished:\n{dom}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    assert!(
        dom.contains("data-agent=\"edge-1\"") && dom.contains("data-agent=\"edge-2\""),
        "fleet missing"
    );
    assert!(
        dom.contains("GPU") && dom.contains("camera") && dom.contains("aarch64"),
        "badges missing"
    );
    // Any entry: under load, the offers declined every 0.2 s soon push the accept out of
    // the bounded log.
    assert!(dom.contains("<li data-kind=\""), "decision log missing");
    assert!(dom.contains("analytics"), "frameworks missing");

    let shot = test_output_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    // A profile of its own: a Chromium started on a profile still in use (the last dump's
    // may not have let go of it yet) hands its work to that one and exits.
    let mut cmd = chromium(&profile.join("screenshot"));
    cmd.args([
        "--virtual-time-budget=5000",
        "--window-size=390,844",
        &format!("--screenshot={}", shot.display()),
        &format!("{base}/?live=poll"),
    ]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let png = std::fs::read(&shot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}; {out:?}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot is not a picture of a page"
    );
    let _ = std::fs::remove_dir_all(&profile);
    eprintln!("dashboard screenshot: {}", shot.display());
}

/// With tokens, the page still loads, asks for a token in its form and shows nothing of
/// the cluster (headless Chromium cannot type one in; the API's side is tested above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_asks_for_a_token_in_headless_chromium() {
    let found = Process::new("chromium").arg("--version").output();
    assert!(
        found.as_ref().is_ok_and(|o| o.status.success()),
        "chromium is not installed; run `cargo xtask setup` (it apt-get installs chromium): {found:?}"
    );
    let (_dir, book, _, _) = token_book();
    let cluster = start_cluster_with(Some(book)).await;
    let profile =
        std::env::temp_dir().join(format!("wasmos-chromium-token-{}", std::process::id()));
    let mut cmd = chromium(&profile);
    cmd.args([
        "--virtual-time-budget=3000",
        "--dump-dom",
        &format!("{}/?live=poll", cluster.base),
    ]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        dom.contains("<div id=\"token-dialog\" class=\"token-dialog\">"),
        "the token form is not shown:\n{dom}"
    );
    assert!(
        !dom.contains("data-agent="),
        "cluster data without a token:\n{dom}"
    );
}
