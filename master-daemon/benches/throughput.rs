//! Launches per second end to end through the real transport (#19, item 3): a framework
//! accepts every offer with as many trivial WASM tasks as fit, 100 virtual agents run
//! them, and a task counts once the framework got its `finished` update (acknowledged by
//! the client, implicitly). The master, the agents and the framework are real daemons in
//! this process on loopback, plain TCP; each agent's status journal is synced to disk
//! (group commit). Printed, not a criterion timing: one run is one figure.
//!
//! `THROUGHPUT_SECONDS=10` runs shorter than the 60 s of the figure.

#![allow(clippy::too_many_lines)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use framework::{FrameworkClient, FrameworkConfig};
use master_daemon::{MasterDaemon, MasterDaemonConfig};
use net::{Net, NetConfig};
use proto::{Event, Offer, Resources, TaskId, TaskKind, TaskLimits, TaskSpec, TaskState, WasmTask};

#[path = "support/logs.rs"]
mod logs;
#[path = "support/virtual_agents.rs"]
mod virtual_agents;

const EXIT_0: &str = r#"(module (func (export "_start")))"#;
const AGENTS: usize = 100;
/// Each agent's size, and each task's: 40 tasks fit on an agent at once.
const AGENT_CPUS: f64 = 4.0;
const AGENT_MEM_MIB: f64 = 4096.0;
const TASK_CPUS: f64 = 0.1;
const TASK_MEM_MIB: f64 = 16.0;
/// Bound on the wait for any event, so that a stalled run fails instead of hanging.
const EVENT_WAIT: Duration = Duration::from_secs(30);

fn main() {
    logs::init_tracing();
    let seconds: u64 = std::env::var("THROUGHPUT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let run = rt.block_on(launch_throughput(Duration::from_secs(seconds)));
    // Read by `cargo xtask bench --report`.
    println!(
        "launch_throughput/plain: {} tasks finished in {:.1} s = {:.0} tasks/s ({} launched, {} failed, {} accept calls unanswered; {AGENTS} virtual agents)",
        run.finished,
        run.elapsed.as_secs_f64(),
        run.finished as f64 / run.elapsed.as_secs_f64(),
        run.launched,
        run.failed,
        run.calls_failed.load(Ordering::Relaxed),
    );
    let mut times = std::mem::take(&mut *run.call_times.lock().unwrap());
    times.sort();
    let at =
        |q: f64| times.get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)));
    if let (Some(p50), Some(p99), Some(max)) = (at(0.5), at(0.99), times.last()) {
        println!(
            "launch_throughput/plain accept calls: answered in p50 {:.1} ms, p99 {:.1} ms, at most {:.1} ms ({} calls)",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            times.len()
        );
    }
}

struct Run {
    launched: u64,
    /// Tasks that finished, counted once each (an update not yet acknowledged is sent
    /// again).
    finished: u64,
    failed: u64,
    /// Accept calls that got no answer in the client's call timeout (their tasks may
    /// still have run: a framework learns that from the updates).
    calls_failed: Arc<AtomicU64>,
    /// How long each answered `Accept` took, call to answer.
    call_times: Arc<std::sync::Mutex<Vec<Duration>>>,
    elapsed: Duration,
    /// By task number: its end was seen.
    ended: Vec<bool>,
}

impl Run {
    /// The task's end, once: whether it was the first time.
    fn ends(&mut self, task_id: &TaskId) -> bool {
        let Some(n) = (task_id.as_str().strip_prefix('t')).and_then(|n| n.parse::<usize>().ok())
        else {
            return false;
        };
        if self.ended.len() <= n {
            self.ended.resize(n + 1, false);
        }
        !std::mem::replace(&mut self.ended[n], true)
    }
}

/// How many tasks fit in `offer`.
fn fitting(offer: &Offer) -> u64 {
    let cpus = offer.resources.scalar("cpus").units() / TASK_CPUS;
    let mem = offer.resources.scalar("mem").units() / TASK_MEM_MIB;
    // Offers are whole multiples of the task's shape here; the epsilon absorbs rounding.
    (cpus.min(mem) + 1e-9).floor() as u64
}

async fn launch_throughput(length: Duration) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let config = MasterDaemonConfig::new(NetConfig::loopback_ephemeral(), dir.path().join("store"));
    let master = MasterDaemon::start(config).await.unwrap();
    let endpoint = master.endpoints()[0].clone();
    let _agents =
        virtual_agents::start(&endpoint, dir.path(), AGENTS, AGENT_CPUS, AGENT_MEM_MIB).await;
    let net = Net::open(&NetConfig::member(vec![endpoint])).await.unwrap();
    let (client, mut events) = FrameworkClient::subscribe(net, FrameworkConfig::new("throughput"))
        .await
        .unwrap();
    let module = net::modules::upload_module(client.net(), "exit0.wat", EXIT_0.as_bytes(), |_| {})
        .await
        .unwrap();
    let task = |n: u64| TaskSpec {
        task_id: TaskId::new(format!("t{n}")),
        name: "exit0".to_owned(),
        resources: Resources::new()
            .with_scalar("cpus", TASK_CPUS)
            .with_scalar("mem", TASK_MEM_MIB),
        kind: TaskKind::Wasm(WasmTask {
            module: module.clone(),
            ..WasmTask::default()
        }),
        limits: TaskLimits::default(),
        disconnect: None,
        replaces: None,
    };

    let mut run = Run {
        launched: 0,
        finished: 0,
        failed: 0,
        calls_failed: Arc::new(AtomicU64::new(0)),
        call_times: Arc::default(),
        elapsed: Duration::ZERO,
        ended: Vec::new(),
    };
    let mut calls = tokio::task::JoinSet::new();
    let started = Instant::now();
    while started.elapsed() < length {
        let event = tokio::time::timeout(EVENT_WAIT, events.recv())
            .await
            .expect("no event in time")
            .expect("the event stream ended");
        match event {
            // Launched from their own tasks: events keep being taken meanwhile (`Events`).
            Event::Offers { offers } => {
                for offer in offers {
                    let tasks: Vec<TaskSpec> = (run.launched..run.launched + fitting(&offer))
                        .map(task)
                        .collect();
                    run.launched += tasks.len() as u64;
                    let (client, calls_failed) = (client.clone(), run.calls_failed.clone());
                    let call_times = run.call_times.clone();
                    calls.spawn(async move {
                        let called = Instant::now();
                        match client.launch(offer.offer_id, tasks).await {
                            Ok(_) => call_times.lock().unwrap().push(called.elapsed()),
                            Err(e) => {
                                eprintln!("throughput: {e}");
                                calls_failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            }
            Event::Update { status } if status.state.is_terminal() && run.ends(&status.task_id) => {
                if status.state == TaskState::Finished {
                    run.finished += 1;
                } else {
                    if run.failed == 0 {
                        eprintln!("throughput: first task that did not finish: {status:?}");
                    }
                    run.failed += 1;
                }
            }
            _ => {}
        }
    }
    run.elapsed = started.elapsed();
    // The calls still out are waited for before the cluster is torn down: its teardown
    // ends them without an answer, and they were counted as unanswered (all of them, in
    // the runs where a trace followed each call through zenoh). Events are taken
    // meanwhile, so that none waits on a full queue.
    let answered = async { while calls.join_next().await.is_some() {} };
    tokio::pin!(answered);
    loop {
        tokio::select! {
            () = &mut answered => break,
            event = events.recv() => if event.is_none() { break },
        }
    }
    run
}
