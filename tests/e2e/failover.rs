//! Failover with real processes: a `wasmos master` killed with SIGKILL and replaced on the
//! same port rebuilds its state from the agents' adverts and the framework's
//! re-subscription; an agent killed with SIGKILL and restarted on the same work directory
//! reports the WASM task that died with it as `failed`.
//!
//! The framework is this test, through the native client, with explicit acknowledgements
//! so that it counts every update it acknowledges.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use framework::{Events, FrameworkClient, FrameworkConfig, Net};
use proto::{
    Event, Filters, ModuleRef, Offer, Resources, TaskId, TaskKind, TaskLimits, TaskSpec, TaskState,
    TaskStatus, WasmTask,
};
use serde_json::Value;
use wasmos_tests::secure_mode::{
    agent_command, cluster_endpoint as free_endpoint, framework_net, master_command, tool,
};
use wasmos_tests::{Killed, module, spawn_master};

/// Longer than any restart here: no agent is declared lost in these tests.
const AGENT_LOST_TIMEOUT_S: &str = "60";
/// Generous bound for each awaited step on a loaded 2-core machine; not a speed claim.
const STEP_WAIT: Duration = Duration::from_secs(60);
/// The spinning tasks' own limit, so that nothing outlives a failed test for long.
const SPIN_TIMEOUT_MS: u64 = 300_000;
/// The task that ends while the master is down.
const SLEEP_MS: u64 = 1_500;

fn start_master(endpoint: &str, store: &Path) -> Killed {
    let mut master = master_command();
    master
        .args(["--listen", endpoint, "--no-http", "--no-jobs"])
        .args(["--agent-lost-timeout", AGENT_LOST_TIMEOUT_S, "--store-dir"])
        .arg(store);
    spawn_master(master, endpoint)
}

fn start_agent(endpoint: &str, work_dir: &Path) -> Killed {
    Killed(
        agent_command(None, work_dir)
            .args(["--no-oci", "--connect", endpoint, "--work-dir"])
            .arg(work_dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// `wasmos ps --json`: task id → (state, agent id).
fn ps(endpoint: &str) -> BTreeMap<String, (String, String)> {
    let out = tool()
        .args(["ps", "--json", "--connect", endpoint])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let text = |row: &Value, key: &str| row[key].as_str().unwrap_or_default().to_owned();
    rows.iter()
        .map(|r| (text(r, "task_id"), (text(r, "state"), text(r, "agent_id"))))
        .collect()
}

/// The framework's side: every update it acknowledged, in order.
struct Framework {
    client: FrameworkClient,
    events: Events,
    acknowledged: Vec<TaskStatus>,
}

impl Framework {
    async fn subscribe(endpoint: &str) -> Framework {
        let net = Net::open(&framework_net(endpoint)).await.unwrap();
        let mut config = FrameworkConfig::new("failover-test");
        config.implicit_acknowledgements = false;
        let (client, events) = FrameworkClient::subscribe(net, config).await.unwrap();
        Framework {
            client,
            events,
            acknowledged: Vec::new(),
        }
    }

    /// The next event; updates are acknowledged and recorded on the way.
    async fn next(&mut self) -> Event {
        let event = tokio::time::timeout(STEP_WAIT, self.events.recv())
            .await
            .expect("no event from the master in time")
            .expect("the event stream ended");
        if let Event::Update { status } = &event {
            // A busy master may let an acknowledgement time out: the agent then sends the
            // update again, and it is acknowledged (and counted) that time.
            match self
                .client
                .acknowledge(status.task_id.clone(), status.uuid)
                .await
            {
                Ok(()) => self.acknowledged.push(status.clone()),
                Err(e) => eprintln!("acknowledgement of {} not taken: {e}", status.task_id),
            }
        }
        event
    }

    /// Events until `done` says the last one was the one awaited.
    async fn until(&mut self, mut done: impl FnMut(&Event) -> bool) {
        loop {
            if done(&self.next().await) {
                return;
            }
        }
    }

    fn last_state(&self, task: &TaskId) -> Option<TaskState> {
        self.acknowledged
            .iter()
            .rev()
            .find(|s| &s.task_id == task)
            .map(|s| s.state)
    }
}

fn wasm_task(id: &str, module: &ModuleRef, args: Vec<String>, timeout_ms: u64) -> TaskSpec {
    TaskSpec {
        task_id: TaskId::new(id),
        name: id.to_owned(),
        resources: Resources::new()
            .with_scalar("cpus", 0.1)
            .with_scalar("mem", 32.0),
        kind: TaskKind::Wasm(WasmTask {
            module: module.clone(),
            args,
            ..WasmTask::default()
        }),
        limits: TaskLimits {
            timeout_ms: Some(timeout_ms),
            ..TaskLimits::default()
        },
        disconnect: None,
        replaces: None,
    }
}

async fn upload(client: &FrameworkClient, name: &str) -> ModuleRef {
    let bytes = std::fs::read(module(name)).unwrap();
    net::modules::upload_module(client.net(), &format!("{name}.wasm"), &bytes, |_| {})
        .await
        .unwrap()
}

/// Offers until one from each of `agents` distinct agents was seen; the others are
/// declined without a filter.
async fn offers_from_agents(fw: &mut Framework, agents: usize) -> Vec<Offer> {
    let mut by_agent: BTreeMap<String, Offer> = BTreeMap::new();
    while by_agent.len() < agents {
        if let Event::Offers { offers } = fw.next().await {
            for offer in offers {
                by_agent.entry(offer.agent_id.to_string()).or_insert(offer);
            }
        }
    }
    by_agent.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_with_sigkill_is_replaced_and_nothing_is_lost_or_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = free_endpoint();
    let store = dir.path().join("store");
    let mut master = start_master(&endpoint, &store);
    let _agents = [
        start_agent(&endpoint, &dir.path().join("agent-1")),
        start_agent(&endpoint, &dir.path().join("agent-2")),
    ];
    let mut fw = Framework::subscribe(&endpoint).await;
    let spin = upload(&fw.client, "p1_spin").await;
    let sleep = upload(&fw.client, "p1_sleep").await;

    // Two spinning tasks on each agent, and on the first one a task that ends while the
    // master is down.
    let offers = offers_from_agents(&mut fw, 2).await;
    let mut spinning = Vec::new();
    for (i, offer) in offers.iter().enumerate() {
        let mut tasks: Vec<TaskSpec> = (0..2)
            .map(|k| wasm_task(&format!("spin-{i}-{k}"), &spin, Vec::new(), SPIN_TIMEOUT_MS))
            .collect();
        spinning.extend(tasks.iter().map(|t| t.task_id.clone()));
        if i == 0 {
            tasks.push(wasm_task("nap", &sleep, vec![SLEEP_MS.to_string()], 60_000));
        }
        let refuse_none = Filters {
            refuse_seconds: 0.0,
        };
        fw.client
            .accept(
                vec![offer.offer_id.clone()],
                vec![proto::Operation::Launch { tasks }],
                refuse_none,
            )
            .await
            .unwrap();
    }
    let nap = TaskId::new("nap");
    let all_running = |fw: &Framework| {
        spinning
            .iter()
            .chain([&nap])
            .all(|t| fw.last_state(t) == Some(TaskState::Running))
    };
    while !all_running(&fw) {
        fw.next().await;
    }
    let before = ps(&endpoint);
    for task in &spinning {
        assert_eq!(before[task.as_str()].0, "running", "{before:?}");
    }

    // SIGKILL while `nap` runs; it ends while no master is there.
    master.kill();
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(SLEEP_MS + 1_000)).await;
    let _master = start_master(&endpoint, &store);

    // The client re-subscribes by itself with its id; then the framework reconciles.
    fw.until(|e| matches!(e, Event::Subscribed { .. })).await;
    fw.client.reconcile(Vec::new()).await.unwrap();
    let mut first_offer_after = None;
    let mut reconciled: BTreeMap<TaskId, TaskState> = BTreeMap::new();
    while first_offer_after.is_none() || reconciled.len() < spinning.len() {
        let seen = fw.acknowledged.len();
        let event = fw.next().await;
        if matches!(event, Event::Offers { .. }) && first_offer_after.is_none() {
            first_offer_after = Some(killed_at.elapsed());
        }
        if let Some(update) = fw.acknowledged.get(seen)
            && spinning.contains(&update.task_id)
        {
            reconciled.insert(update.task_id.clone(), update.state);
        }
    }
    eprintln!(
        "failover: first offer {:?} after the master's SIGKILL (2 agents)",
        first_offer_after.unwrap()
    );
    for task in &spinning {
        assert_eq!(
            reconciled[task],
            TaskState::Running,
            "{task} after the restart"
        );
    }
    // The update made while the master was down was delivered after it came back.
    while fw.last_state(&nap) != Some(TaskState::Finished) {
        fw.next().await;
    }

    // The new master lists every spinning task, once, running where it ran before.
    let after = ps(&endpoint);
    for task in &spinning {
        assert_eq!(
            after.get(task.as_str()),
            before.get(task.as_str()),
            "{task}: {after:?}"
        );
    }
    assert!(!after.contains_key("nap") || after["nap"].0 != "running");
    // No task was ever reported in a state other than starting, running, or (nap)
    // finished: nothing lost, killed or duplicated.
    for status in &fw.acknowledged {
        let allowed = [TaskState::Starting, TaskState::Running, TaskState::Finished];
        assert!(allowed.contains(&status.state), "unexpected {status:?}");
        assert!(
            status.state != TaskState::Finished || status.task_id == nap,
            "{status:?}"
        );
    }
    let naps_finished = fw
        .acknowledged
        .iter()
        .filter(|s| s.task_id == nap && s.state == TaskState::Finished)
        .count();
    assert!(naps_finished >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_with_sigkill_reports_its_wasm_task_failed_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = free_endpoint();
    let _master = start_master(&endpoint, &dir.path().join("store"));
    let work_dir = dir.path().join("agent");
    let mut agent = start_agent(&endpoint, &work_dir);
    let mut fw = Framework::subscribe(&endpoint).await;
    let spin = upload(&fw.client, "p1_spin").await;
    let offer = offers_from_agents(&mut fw, 1).await.remove(0);
    let task = wasm_task("spin-doomed", &spin, Vec::new(), SPIN_TIMEOUT_MS);
    fw.client
        .launch(offer.offer_id, vec![task.clone()])
        .await
        .unwrap();
    while fw.last_state(&task.task_id) != Some(TaskState::Running) {
        fw.next().await;
    }

    agent.kill();
    let _agent = start_agent(&endpoint, &work_dir);
    let failed = loop {
        fw.next().await;
        if let Some(s) = fw.acknowledged.last()
            && s.task_id == task.task_id
            && s.state.is_terminal()
        {
            break s.clone();
        }
    };
    assert_eq!(failed.state, TaskState::Failed);
    assert_eq!(failed.reason, "agent restarted");
    // The master no longer lists it running: its resources are free again.
    let deadline = Instant::now() + STEP_WAIT;
    while ps(&endpoint)
        .get(task.task_id.as_str())
        .is_some_and(|(state, _)| state == "running")
    {
        assert!(
            Instant::now() < deadline,
            "the task is still listed running"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
