//! Master failover with real processes and real zenoh on loopback (#19, item 4): the time
//! from a master's SIGKILL to the first offer its replacement makes, with 10, 100 and
//! 1,000 agents each running one task (printed, not a criterion timing: one sample per
//! size is one kill).
//!
//! The master runs in its own process (this bench binary started again with
//! `WASMOS_BENCH_FAILOVER_MASTER` set), killed with SIGKILL and started again at once on
//! the same port and store. The agents are real agent daemons in this process, sharing
//! one zenoh session and one WASM engine (a session and an epoch thread each would starve
//! 2 cores at 1,000 agents), each running a sleeping WASI task (`p1_sleep`, from
//! `cargo xtask modules`). The new master ends its re-registration window once every
//! agent the killed one counted is back (the census); the window (5 s) is the upper
//! bound. Before the figure is printed, the bench checks that the new master knows every
//! task running and that the framework saw none end.
//!
//! `FAILOVER_AGENTS=300,1000` measures other sizes.

#![allow(clippy::too_many_lines)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use framework::{Events, FrameworkClient, FrameworkConfig};
use master_daemon::{MasterDaemon, MasterDaemonConfig};
use net::{Net, NetConfig};
use proto::{
    Event, MasterCensus, ModuleRef, Offer, Resources, TaskId, TaskKind, TaskLimits, TaskSpec,
    TaskState, WasmTask,
};

#[path = "support/child_master.rs"]
mod child_master;
#[path = "support/logs.rs"]
mod logs;
#[path = "support/virtual_agents.rs"]
mod virtual_agents;

use child_master::ChildMaster;

/// Set in the child: `ENDPOINT STORE_DIR` of its master.
const CHILD_ENV: &str = "WASMOS_BENCH_FAILOVER_MASTER";
/// Bound on each awaited step, so that a broken run fails instead of hanging.
const STEP_WAIT: Duration = Duration::from_secs(120);

fn main() {
    logs::init_tracing();
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        run_child_master(&spec);
        return;
    }
    // `cargo bench -- FILTER` passes arguments; this bench has one figure and no filter.
    let counts: Vec<usize> = std::env::var("FAILOVER_AGENTS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 100, 1_000]);
    let sleep = modules_dir().join("p1_sleep.wasm");
    let Ok(sleep) = std::fs::read(&sleep) else {
        eprintln!(
            "failover: {} is missing: run `cargo xtask modules` first",
            sleep.display()
        );
        std::process::exit(2);
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    for agents in counts {
        let took = rt.block_on(first_offer_after_sigkill(agents, &sleep));
        // Read by `cargo xtask bench --report`.
        println!(
            "failover with {agents} agents: first offer {:.0} ms after the master's SIGKILL",
            took.as_secs_f64() * 1e3
        );
    }
}

fn modules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/modules")
}

/// The child: a master on the endpoint and store it is given, answering each `running`
/// line on stdin with the number of tasks it knows running; killed by its parent.
fn run_child_master(spec: &str) {
    let (endpoint, store) = spec.split_once(' ').unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut config =
            MasterDaemonConfig::new(NetConfig::master(vec![endpoint.to_owned()]), store);
        // Longer than any run: no agent is declared lost here.
        config.core.agent_lost_timeout_ms = 600_000;
        let master = MasterDaemon::start(config).await.unwrap();
        println!("ready");
        let mut lines = child_master::stdin_lines();
        while let Some(line) = lines.recv().await {
            if line.trim() == "running" {
                let running = master
                    .inspect(|core| {
                        (core.tasks_view().iter())
                            .filter(|t| t.state == TaskState::Running)
                            .count()
                    })
                    .await
                    .unwrap();
                println!("{running}");
            }
        }
    });
}

/// The framework's side: the latest state of each task, updates acknowledged.
struct Framework {
    client: FrameworkClient,
    events: Events,
    states: std::collections::BTreeMap<TaskId, TaskState>,
}

impl Framework {
    async fn next(&mut self) -> Event {
        let event = tokio::time::timeout(STEP_WAIT, self.events.recv())
            .await
            .expect("no event from the master in time")
            .expect("the event stream ended");
        if let Event::Update { status } = &event {
            self.states.insert(status.task_id.clone(), status.state);
        }
        event
    }

    /// Offers until one from each of `agents` distinct agents was seen.
    async fn offers_from(&mut self, agents: usize) -> Vec<Offer> {
        let mut by_agent = std::collections::BTreeMap::new();
        while by_agent.len() < agents {
            if let Event::Offers { offers } = self.next().await {
                for offer in offers {
                    by_agent.entry(offer.agent_id.clone()).or_insert(offer);
                }
            }
        }
        by_agent.into_values().collect()
    }
}

fn sleeping_task(i: usize, module: &ModuleRef) -> TaskSpec {
    TaskSpec {
        task_id: TaskId::new(format!("nap-{i}")),
        name: format!("nap-{i}"),
        resources: Resources::new()
            .with_scalar("cpus", 0.1)
            .with_scalar("mem", 32.0),
        kind: TaskKind::Wasm(WasmTask {
            module: module.clone(),
            args: vec!["600000".into()],
            ..WasmTask::default()
        }),
        limits: TaskLimits {
            timeout_ms: Some(900_000),
            ..TaskLimits::default()
        },
        disconnect: None,
        replaces: None,
    }
}

/// A cluster of `agents` virtual agents with one sleeping task each; the master is killed
/// with SIGKILL and a new one started at once. Returns the time from the kill to the first
/// offer the framework gets from the new master.
async fn first_offer_after_sigkill(agents: usize, sleep: &[u8]) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = child_master::free_loopback_endpoint();
    let store = dir.path().join("store");
    let master = ChildMaster::start(CHILD_ENV, &format!("{endpoint} {}", store.display()));
    let watcher = Net::open(&NetConfig::member(vec![endpoint.clone()]))
        .await
        .unwrap();
    let mut censuses = watcher
        .subscribe::<MasterCensus>(&watcher.keys().master_census())
        .await
        .unwrap();
    let _agents = virtual_agents::start(&endpoint, dir.path(), agents, 1.0, 256.0).await;
    let net = Net::open(&NetConfig::member(vec![endpoint.clone()]))
        .await
        .unwrap();
    let config = FrameworkConfig::new("failover-bench");
    let (client, events) = FrameworkClient::subscribe(net, config).await.unwrap();
    let mut fw = Framework {
        client,
        events,
        states: std::collections::BTreeMap::new(),
    };
    let module = net::modules::upload_module(fw.client.net(), "p1_sleep.wasm", sleep, |_| {})
        .await
        .unwrap();
    let offers = fw.offers_from(agents).await;
    // Offer ids begin with the incarnation of the master that made them (`o<hex>-`): the
    // killed master's offers of what the tasks leave free may still be queued.
    let killed_masters = (offers[0].offer_id.as_str().split_once('-'))
        .map(|(prefix, _)| format!("{prefix}-"))
        .unwrap();
    for (i, offer) in offers.into_iter().enumerate() {
        let task = sleeping_task(i, &module);
        fw.client.launch(offer.offer_id, vec![task]).await.unwrap();
    }
    while fw.states.len() < agents || fw.states.values().any(|s| *s != TaskState::Running) {
        fw.next().await;
    }
    // As in a cluster that has run for a while: the census counts every agent, and every
    // agent holds it (a census taken before the last agents joined, or one an agent has
    // not handled yet, makes the new master wait the window).
    loop {
        let census = tokio::time::timeout(STEP_WAIT, censuses.recv())
            .await
            .expect("no census in time")
            .unwrap();
        if census.message.agents >= agents as u64 {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    drop(master);
    let killed_at = Instant::now();
    let mut master = ChildMaster::start(CHILD_ENV, &format!("{endpoint} {}", store.display()));
    loop {
        if let Event::Offers { offers } = fw.next().await
            && (offers.iter()).any(|o| !o.offer_id.as_str().starts_with(&killed_masters))
        {
            break;
        }
    }
    let first_offer = killed_at.elapsed();
    // Offers resumed on a whole view: the new master knows every task running, and the
    // framework saw none end.
    assert_eq!(master.ask("running"), agents.to_string());
    assert!(
        fw.states.values().all(|s| *s == TaskState::Running),
        "a task ended across the failover"
    );
    first_offer
}
