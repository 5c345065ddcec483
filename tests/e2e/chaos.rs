//! Chaos: a master, three agents (one in its own network namespace when namespaces are
//! permitted) and a framework under a steady load of short tasks, while a schedule drawn
//! from a fixed seed kills the master with SIGKILL and restarts it, kills and restarts
//! agents, cuts the namespaced agent off, and makes its link slow and lossy for a while
//! (10% of its packets dropped by nft, 200 ms ± 50 ms of delay through a relay). Checked
//! at the end:
//! - every launched task has a terminal state known to its framework (none stuck);
//! - the framework's view and `wasmos ps --json` agree on every task the master lists;
//! - no agent was ever allocated more than it has (sampled throughout);
//! - the cluster converges: after the last fault, new tasks launch and finish.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use framework::{FrameworkClient, FrameworkConfig, Net, NetConfig};
use proto::{
    Event, Filters, Offer, Resources, TaskId, TaskKind, TaskLimits, TaskSpec, TaskState, WasmTask,
};
use serde_json::Value;
use wasmos_tests::netns::Netns;
use wasmos_tests::relay::DelayRelay;
use wasmos_tests::{Killed, free_port, module, wasmos, wasmos_bin};

const SEED: u64 = 0x0c4a_0515;
/// Tasks kept in flight while the faults strike: each task that ends is replaced.
const LOAD_IN_FLIGHT: usize = 8;
/// Most tasks the steady load launches: a bound on a framework that replaces every
/// `lost` task at once.
const LOAD_TASKS_MAX: usize = 300;
/// Tasks launched on one offer, at most.
const TASKS_PER_OFFER_MAX: usize = 2;
/// Tasks of the convergence check after the last fault.
const CONVERGE_TASKS: usize = 3;
/// How long each task sleeps, ms: short enough to finish between faults, long enough to
/// be running when one strikes.
const TASK_SLEEP_MS: (u64, u64) = (1_000, 4_000);
const FAULTS: usize = 4;
/// Time between faults.
const FAULT_GAP: Duration = Duration::from_secs(4);
/// A cut lasts well beyond zenoh's link lease (10 s) plus the agent-lost timeout (3 s), so
/// that the master really loses the agent, even on a loaded machine.
const CUT_FOR: Duration = Duration::from_secs(20);
const AGENT_LOST_TIMEOUT_S: &str = "3";
/// How long the namespaced agent's link is slow and lossy, and how lossy.
const LOSSY_FOR: Duration = Duration::from_secs(20);
const LOSS_PERCENT: u8 = 10;
/// Generous bound for everything to settle on a loaded 2-core machine; not a speed claim.
const CONVERGE_WAIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug)]
enum Fault {
    KillMaster,
    KillAgent(usize),
    CutAgent,
    LossyLink,
}

/// SplitMix64: the schedule is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn schedule(rng: &mut Rng, agents: usize, with_cut: bool) -> Vec<Fault> {
    // One of each kind at least; an agent outside the namespace is killed, so that the
    // kill meets running tasks rather than the ones a cut already ended.
    let mut faults = vec![
        Fault::KillMaster,
        Fault::KillAgent(rng.below(agents as u64 - 1) as usize),
    ];
    if with_cut {
        faults.push(Fault::CutAgent);
        faults.push(Fault::LossyLink);
    }
    while faults.len() < FAULTS {
        faults.push(match rng.below(2) {
            0 => Fault::KillMaster,
            _ => Fault::KillAgent(rng.below(agents as u64) as usize),
        });
    }
    // Fisher-Yates, seeded.
    for i in (1..faults.len()).rev() {
        faults.swap(i, rng.below(i as u64 + 1) as usize);
    }
    faults
}

struct Cluster {
    dir: PathBuf,
    port: u16,
    master: Killed,
    agents: Vec<(Killed, Option<Netns>)>,
    /// The namespaced agent's way to the master, which delays while its link is lossy.
    relay: Option<DelayRelay>,
}

impl Cluster {
    fn local(&self) -> String {
        format!("tcp/127.0.0.1:{}", self.port)
    }

    fn start_master(dir: &Path, port: u16) -> Killed {
        let mut child = wasmos()
            .args(["master", "--listen", &format!("tcp/0.0.0.0:{port}")])
            .args(["--agent-lost-timeout", AGENT_LOST_TIMEOUT_S])
            .args(["--no-http", "--no-jobs"])
            .arg("--store-dir")
            .arg(dir.join("store"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with("listening on"), "master printed {line:?}");
        // Keep reading, or the master's next line would meet a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Killed(child)
    }

    fn start_agent(dir: &Path, index: usize, netns: Option<&Netns>, port: u16) -> Killed {
        let (mut command, host) = match netns {
            Some(ns) => (ns.command(&wasmos_bin()), ns.host_addr.clone()),
            None => (Command::new(wasmos_bin()), "127.0.0.1".to_owned()),
        };
        // The attribute tells the agents apart in `wasmos agents --json`.
        let config = dir.join(format!("agent-{index}.toml"));
        std::fs::write(&config, format!("[attributes]\nchaos = \"{index}\"\n")).unwrap();
        let child = command
            .args(["agent", "--connect", &format!("tcp/{host}:{port}")])
            .arg("--config")
            .arg(&config)
            .arg("--work-dir")
            .arg(dir.join(format!("agent-{index}")))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Killed(child)
    }

    fn restart_agent(&mut self, index: usize) {
        let (agent, netns) = &mut self.agents[index];
        agent.kill();
        let port = match (&self.relay, netns.is_some()) {
            (Some(relay), true) => relay.addr().port(),
            _ => self.port,
        };
        *agent = Cluster::start_agent(&self.dir, index, netns.as_ref(), port);
    }

    fn restart_master(&mut self) {
        self.master.kill();
        self.master = Cluster::start_master(&self.dir, self.port);
    }
}

/// What the framework knows: every state each task went through, in order.
struct Ledger {
    module: proto::ModuleRef,
    rng: Rng,
    /// Replace every task that ends with a new one (the steady load).
    keep_busy: bool,
    next_task: usize,
    launched: Vec<TaskId>,
    states: BTreeMap<TaskId, Vec<TaskState>>,
    /// Task specs waiting for an offer.
    pending: Vec<TaskSpec>,
}

impl Ledger {
    fn add_task(&mut self, sleep_ms: u64) -> TaskId {
        let spec = task(&self.module, self.next_task, sleep_ms);
        self.next_task += 1;
        let id = spec.task_id.clone();
        self.pending.push(spec);
        id
    }

    fn add_load_task(&mut self) {
        if self.next_task >= LOAD_TASKS_MAX {
            return;
        }
        let (low, high) = TASK_SLEEP_MS;
        let sleep_ms = low + self.rng.below(high - low);
        self.add_task(sleep_ms);
    }

    fn record(&mut self, task: TaskId, state: TaskState) {
        let states = self.states.entry(task).or_default();
        let first_end = state.is_terminal() && !states.iter().any(|s| s.is_terminal());
        states.push(state);
        if first_end && self.keep_busy {
            self.add_load_task();
        }
    }

    fn last(&self, task: &TaskId) -> Option<TaskState> {
        self.states.get(task).and_then(|s| s.last().copied())
    }

    fn unsettled(&self) -> Vec<(TaskId, Option<TaskState>)> {
        self.launched
            .iter()
            .map(|t| (t.clone(), self.last(t)))
            .filter(|(_, s)| !s.is_some_and(TaskState::is_terminal))
            .collect()
    }
}

fn task(module: &proto::ModuleRef, n: usize, sleep_ms: u64) -> TaskSpec {
    TaskSpec {
        task_id: TaskId::new(format!("chaos-{}-{n}", std::process::id())),
        name: format!("chaos #{n}"),
        resources: Resources::new()
            .with_scalar("cpus", 0.1)
            .with_scalar("mem", 16.0),
        kind: TaskKind::Wasm(WasmTask {
            module: module.clone(),
            args: vec![sleep_ms.to_string()],
            ..WasmTask::default()
        }),
        limits: TaskLimits::default(),
        disconnect: None,
        replaces: None,
    }
}

/// The framework: launches pending tasks on offers, records every update.
async fn run_framework(
    client: FrameworkClient,
    mut events: framework::Events,
    ledger: Arc<Mutex<Ledger>>,
) {
    while let Some(event) = events.recv().await {
        match event {
            Event::Offers { offers } => {
                for offer in offers {
                    use_offer(&client, offer, &ledger).await;
                }
            }
            Event::Update { status } => {
                ledger.lock().unwrap().record(status.task_id, status.state);
            }
            _ => {}
        }
    }
}

async fn use_offer(client: &FrameworkClient, offer: Offer, ledger: &Mutex<Ledger>) {
    let launch: Vec<TaskSpec> = {
        let mut ledger = ledger.lock().unwrap();
        let mut left = offer.resources.clone();
        let mut launch = Vec::new();
        // A few per offer, so that the load spreads over every agent.
        while let Some(task) = ledger
            .pending
            .last()
            .filter(|_| launch.len() < TASKS_PER_OFFER_MAX)
        {
            let Some(rest) = left.checked_sub(&task.resources) else {
                break;
            };
            left = rest;
            launch.extend(ledger.pending.pop());
        }
        launch
    };
    if launch.is_empty() {
        let _ = client
            .decline(
                vec![offer.offer_id],
                Filters {
                    refuse_seconds: 1.0,
                },
            )
            .await;
        return;
    }
    let ids: Vec<TaskId> = launch.iter().map(|t| t.task_id.clone()).collect();
    match client.launch(offer.offer_id, launch.clone()).await {
        Ok(()) => ledger.lock().unwrap().launched.extend(ids),
        // Refused (offer rescinded by a restart, say): nothing launched, try again later.
        Err(_) => ledger.lock().unwrap().pending.extend(launch),
    }
}

fn json_rows(args: &[&str], endpoint: &str) -> Option<Vec<Value>> {
    let out = wasmos()
        .args(args)
        .args(["--json", "--connect", endpoint])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// What sampling the master's agent listing found.
#[derive(Default)]
struct Samples {
    /// Agents allocated more than they have: resources allocated twice.
    overcommits: Vec<String>,
    /// Samples in which the cut-off agent (attribute `chaos=2`) was not listed `active`.
    cut_agent_inactive: usize,
}

/// Every agent's used resources within its total: nothing allocated twice.
fn sample(endpoint: &str, samples: &mut Samples) {
    let Some(agents) = json_rows(&["agents"], endpoint) else {
        return;
    };
    let cut_agent_active = agents
        .iter()
        .any(|a| a["attributes"]["chaos"] == "2" && a["state"] == "active");
    if !cut_agent_active {
        samples.cut_agent_inactive += 1;
    }
    let violations = &mut samples.overcommits;
    for agent in agents {
        let (Some(total), Some(used)) = (
            agent["total"]["scalars"].as_object(),
            agent["used"]["scalars"].as_object(),
        ) else {
            continue;
        };
        for (name, amount) in used {
            let have = total.get(name).and_then(Value::as_f64).unwrap_or(0.0);
            if amount.as_f64().unwrap_or(0.0) > have + 1e-9 {
                violations.push(format!(
                    "agent {}: {name} used {amount} of {have}",
                    agent["id"]
                ));
            }
        }
    }
}

#[test]
fn the_cluster_converges_and_agrees_after_seeded_faults() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let netns = match Netns::create("chaos", 1) {
        Ok(ns) => Some(ns),
        Err(e) => {
            eprintln!("no network-namespace fault: namespaces are not permitted here ({e})");
            None
        }
    };
    let mut rng = Rng(SEED);
    let faults = schedule(&mut rng, 3, netns.is_some());
    eprintln!("chaos schedule (seed {SEED:#x}): {faults:?}");

    // The last agent lives in the namespace, when there is one, and reaches the master
    // through a relay that can delay.
    let relay = netns.as_ref().map(|ns| {
        let listen = format!("{}:0", ns.host_addr).parse().unwrap();
        let master = format!("127.0.0.1:{port}").parse().unwrap();
        DelayRelay::start(listen, master).unwrap()
    });
    let mut netns = netns;
    let agents = (0..3)
        .map(|index| {
            let ns = if index == 2 { netns.take() } else { None };
            let port = match (&relay, &ns) {
                (Some(relay), Some(_)) => relay.addr().port(),
                _ => port,
            };
            (
                Cluster::start_agent(dir.path(), index, ns.as_ref(), port),
                ns,
            )
        })
        .collect();
    let mut cluster = Cluster {
        dir: dir.path().to_owned(),
        port,
        master: Cluster::start_master(dir.path(), port),
        agents,
        relay,
    };

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let endpoint = cluster.local();
    let ledger = runtime.block_on(async {
        let net = Net::open(&NetConfig::member(vec![endpoint.clone()]))
            .await
            .unwrap();
        let bytes = std::fs::read(module("p1_sleep")).unwrap();
        let module = net::modules::upload_module(&net, "p1_sleep.wasm", &bytes, |_| {})
            .await
            .unwrap();
        let mut ledger = Ledger {
            module,
            rng: Rng(rng.next()),
            keep_busy: true,
            next_task: 0,
            launched: Vec::new(),
            states: BTreeMap::new(),
            pending: Vec::new(),
        };
        for _ in 0..LOAD_IN_FLIGHT {
            ledger.add_load_task();
        }
        let ledger = Arc::new(Mutex::new(ledger));
        let mut config = FrameworkConfig::new("chaos");
        config.info.failover_timeout_ms = 600_000;
        let (client, events) = FrameworkClient::subscribe(net, config).await.unwrap();
        tokio::spawn(run_framework(client, events, ledger.clone()));
        ledger
    });

    let mut samples = Samples::default();
    for fault in &faults {
        sleep_sampling(FAULT_GAP, &endpoint, &mut samples);
        eprintln!("chaos: {fault:?}");
        match *fault {
            Fault::KillMaster => cluster.restart_master(),
            Fault::KillAgent(i) => cluster.restart_agent(i),
            Fault::CutAgent => {
                let ns = cluster.agents[2].1.as_ref().unwrap();
                ns.set_link(false).unwrap();
                let before = samples.cut_agent_inactive;
                sleep_sampling(CUT_FOR, &endpoint, &mut samples);
                ns.set_link(true).unwrap();
                assert!(
                    samples.cut_agent_inactive > before,
                    "the master never noticed that the cut-off agent was gone"
                );
            }
            Fault::LossyLink => {
                let ns = cluster.agents[2].1.as_ref().unwrap();
                let relay = cluster.relay.as_ref().unwrap();
                match ns.set_loss(LOSS_PERCENT) {
                    Ok(()) => {}
                    // `cargo xtask test` installs nftables; by hand it may be missing.
                    Err(e) => eprintln!("chaos: no packet loss, only delay ({e})"),
                }
                relay.set_impaired(true);
                let (chunks, inactive) = (relay.delayed_chunks(), samples.cut_agent_inactive);
                sleep_sampling(LOSSY_FOR, &endpoint, &mut samples);
                relay.set_impaired(false);
                ns.set_loss(0).unwrap_or_else(|e| eprintln!("chaos: {e}"));
                let delayed = relay.delayed_chunks() - chunks;
                eprintln!(
                    "chaos: lossy link: {delayed} chunks delayed; the agent was seen inactive in {} samples",
                    samples.cut_agent_inactive - inactive
                );
                assert!(delayed > 0, "nothing went over the impaired link");
            }
        }
    }

    // Convergence: the load stops; a few more tasks after the last fault must launch and
    // finish.
    let converge: Vec<TaskId> = {
        let mut l = ledger.lock().unwrap();
        l.keep_busy = false;
        (0..CONVERGE_TASKS)
            .map(|_| l.add_task(TASK_SLEEP_MS.0))
            .collect()
    };
    let deadline = Instant::now() + CONVERGE_WAIT;
    loop {
        let (unsettled, pending) = {
            let l = ledger.lock().unwrap();
            (l.unsettled(), l.pending.len())
        };
        if unsettled.is_empty() && pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not converged: {pending} never launched; unsettled {unsettled:?}"
        );
        sleep_sampling(Duration::from_millis(500), &endpoint, &mut samples);
    }
    assert!(
        samples.overcommits.is_empty(),
        "over-commit: {:#?}",
        samples.overcommits
    );

    let ledger = ledger.lock().unwrap();
    for id in &converge {
        assert_eq!(
            ledger.last(id),
            Some(TaskState::Finished),
            "{id} after the faults"
        );
    }
    // The framework's view and the master's agree on every task the master lists.
    let rows = json_rows(&["ps"], &endpoint).expect("wasmos ps --json");
    for row in &rows {
        let id = TaskId::new(row["id"].as_str().unwrap_or_default().to_owned());
        if let Some(seen) = ledger.last(&id) {
            assert_eq!(
                row["state"].as_str(),
                Some(seen.as_str()),
                "{id}: master says {}, framework saw {:?}",
                row["state"],
                ledger.states.get(&id)
            );
        }
    }
    let mut ends: BTreeMap<&str, usize> = BTreeMap::new();
    for task in &ledger.launched {
        let end = ledger.last(task).map_or("none", TaskState::as_str);
        *ends.entry(end).or_default() += 1;
    }
    eprintln!(
        "chaos: {} tasks launched; how they ended: {ends:?}",
        ledger.launched.len()
    );
    for (task, states) in &ledger.states {
        if states.iter().filter(|s| s.is_terminal()).count() > 1 {
            eprintln!("chaos: {task} went through {states:?}");
        }
    }
    // The framework's task may be waiting for the ledger: let it go before the runtime
    // that runs it is shut down (which waits for it).
    drop(ledger);
    drop(runtime);
}

/// Sleeps `d` while sampling the master's agent listing every half second.
fn sleep_sampling(d: Duration, endpoint: &str, samples: &mut Samples) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        sample(endpoint, samples);
        std::thread::sleep(Duration::from_millis(500).min(end - Instant::now()));
    }
}
