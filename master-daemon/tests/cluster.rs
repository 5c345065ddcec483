//! The daemons in one process over real zenoh on loopback (scouting off, a free port per
//! test): a master, an agent running real WASM on wasmtime, and a framework written with
//! the native client.

#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::time::Duration;

use agent_daemon::{AgentDaemon, AgentDaemonConfig, AgentHandle};
use framework::{Events, FrameworkClient, FrameworkConfig};
use master_daemon::tools;
use master_daemon::{MasterDaemon, MasterDaemonConfig, MasterHandle};
use net::modules::upload_module;
use net::{Net, NetConfig};
use proto::operator::{OperatorReply, OperatorRequest};
use proto::{
    AgentAdvert, AgentId, Attributes, Event, Filters, ModuleHash, ModuleRef, Resources, TaskId,
    TaskKind, TaskLimits, TaskSpec, TaskState, TaskStatus, WasmTask,
};

const WAIT: Duration = Duration::from_secs(30);

mod operator_http;
mod signed_modules;

const EXIT_0: &str = r#"(module (func (export "_start")))"#;
const HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from wasm\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 16))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
const EXIT_3: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 3))))"#;
const SPIN: &str = r#"(module (func (export "_start") (loop $forever (br $forever))))"#;

struct Cluster {
    _dir: tempfile::TempDir,
    master: MasterHandle,
    agent: Option<AgentHandle>,
}

async fn cluster(agent_lost_timeout_ms: u64) -> Cluster {
    cluster_configured(|config| {
        config.core.agent_lost_timeout_ms = agent_lost_timeout_ms;
        config.core.offer_timeout_ms = Some(5_000);
    })
    .await
}

/// A master on a loopback port, set up by `configure`, and one agent `edge-1`.
async fn cluster_configured(configure: impl FnOnce(&mut MasterDaemonConfig)) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        MasterDaemonConfig::new(NetConfig::loopback_ephemeral(), dir.path().join("store"));
    configure(&mut config);
    let master = MasterDaemon::start(config).await.unwrap();
    let advert = AgentAdvert {
        agent_id: AgentId::new("edge-1"),
        hostname: "edge-1.local".to_owned(),
        attributes: Attributes::new()
            .with("arch", "aarch64")
            .with("has", "camera"),
        total: Resources::new()
            .with_scalar("cpus", 2.0)
            .with_scalar("mem", 1024.0),
        reserved: Resources::new(),
        seq: 0,
        incarnation: 1,
        tasks: Vec::new(),
        version: String::new(),
        last_census: None,
    };
    let mut agent = AgentDaemonConfig::new(
        NetConfig::member(master.endpoints().to_vec()),
        advert,
        dir.path().join("agent"),
    );
    agent.advert_period_ms = 500;
    agent.status_retry_ms = 300;
    let agent = AgentDaemon::start(agent).await.unwrap();
    Cluster {
        _dir: dir,
        master,
        agent: Some(agent),
    }
}

async fn framework(master: &MasterHandle, name: &str) -> (FrameworkClient, Events) {
    let net = Net::open(&NetConfig::member(master.endpoints().to_vec()))
        .await
        .unwrap();
    FrameworkClient::subscribe(net, FrameworkConfig::new(name))
        .await
        .unwrap()
}

async fn upload(client: &FrameworkClient, wat: &str) -> ModuleRef {
    upload_module(client.net(), "test.wat", wat.as_bytes(), |_| {})
        .await
        .unwrap()
}

fn task(id: &str, module: ModuleRef) -> TaskSpec {
    TaskSpec {
        task_id: TaskId::new(id),
        name: id.to_owned(),
        resources: Resources::new()
            .with_scalar("cpus", 0.5)
            .with_scalar("mem", 64.0),
        kind: TaskKind::Wasm(WasmTask {
            module,
            ..WasmTask::default()
        }),
        limits: TaskLimits::default(),
        disconnect: None,
        replaces: None,
    }
}

/// Launches `tasks` on the first offer, declines the others, and returns every update
/// until each task reached a state in `until`.
async fn launch_and_follow(
    client: &FrameworkClient,
    events: &mut Events,
    tasks: Vec<TaskSpec>,
    until: &[TaskState],
) -> BTreeMap<TaskId, Vec<TaskStatus>> {
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.task_id.clone()).collect();
    let mut pending = Some(tasks);
    let mut updates: BTreeMap<TaskId, Vec<TaskStatus>> = BTreeMap::new();
    let done = |updates: &BTreeMap<TaskId, Vec<TaskStatus>>| {
        ids.iter().all(|id| {
            updates
                .get(id)
                .and_then(|u| u.last())
                .is_some_and(|s| until.contains(&s.state))
        })
    };
    tokio::time::timeout(WAIT, async {
        while !done(&updates) {
            match events.recv().await.expect("events ended") {
                Event::Offers { offers } => {
                    for offer in offers {
                        match pending.take() {
                            Some(tasks) => client.launch(offer.offer_id, tasks).await.unwrap(),
                            None => client
                                .decline(
                                    vec![offer.offer_id],
                                    Filters {
                                        refuse_seconds: 1.0,
                                    },
                                )
                                .await
                                .unwrap(),
                        }
                    }
                }
                Event::Update { status } => updates
                    .entry(status.task_id.clone())
                    .or_default()
                    .push(status),
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("tasks did not reach {until:?}; updates so far: {updates:#?}"));
    updates
}

fn states(updates: &[TaskStatus]) -> Vec<TaskState> {
    let mut states: Vec<TaskState> = updates.iter().map(|s| s.state).collect();
    states.dedup(); // a retried update may arrive twice
    states
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_to_their_end_and_every_update_is_acknowledged() {
    let cluster = cluster(10_000).await;
    let (client, mut events) = framework(&cluster.master, "jobs").await;
    let ok = upload(&client, HELLO).await;
    let exit_3 = upload(&client, EXIT_3).await;
    let missing = ModuleRef {
        sha256: ModuleHash("0".repeat(64)),
        size_bytes: 10,
        name: "missing.wasm".to_owned(),
    };
    let tasks = vec![
        task("ok", ok),
        task("exit-3", exit_3),
        task("missing", missing),
    ];

    let updates = launch_and_follow(
        &client,
        &mut events,
        tasks,
        &[TaskState::Finished, TaskState::Failed],
    )
    .await;
    let ok = &updates[&TaskId::new("ok")];
    assert_eq!(
        states(ok),
        [TaskState::Starting, TaskState::Running, TaskState::Finished]
    );
    assert_eq!(ok.last().unwrap().exit_code, Some(0));
    assert_eq!(ok.last().unwrap().agent_id, AgentId::new("edge-1"));
    let exit_3 = updates[&TaskId::new("exit-3")].last().unwrap();
    assert_eq!(
        (exit_3.state, exit_3.exit_code),
        (TaskState::Failed, Some(3))
    );
    let missing = updates[&TaskId::new("missing")].last().unwrap();
    assert_eq!(missing.state, TaskState::Failed);
    assert!(
        missing.reason.contains("not in the store"),
        "{}",
        missing.reason
    );

    // The framework's implicit acknowledgements reach the agent through the master, and
    // the agent forgets tasks whose end was acknowledged.
    let agent = cluster.agent.as_ref().unwrap();
    tokio::time::timeout(WAIT, async {
        while !agent.tasks().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the agent still holds tasks: acknowledgements did not arrive");
    let views = cluster
        .master
        .inspect(|core| core.tasks_view())
        .await
        .unwrap();
    assert!(
        views
            .iter()
            .all(|t| t.task_id.as_str() != "ok" || t.state == TaskState::Finished),
        "{views:?}"
    );

    // What an operator's tools see: the master's views as JSON, a task's output.
    let tool = Net::open(&NetConfig::tool(cluster.master.endpoints().to_vec()))
        .await
        .unwrap();
    let agents = tools::listing_json(&tool, &OperatorRequest::Agents)
        .await
        .unwrap();
    assert_eq!(agents[0]["agent_id"], "edge-1", "{agents}");
    let frameworks = tools::listing_json(&tool, &OperatorRequest::Frameworks)
        .await
        .unwrap();
    assert_eq!(frameworks[0]["name"], "jobs", "{frameworks}");
    let logs = tools::task_logs(&tool, &TaskId::new("ok")).await.unwrap();
    assert_eq!(
        (
            logs.state,
            logs.stdout.text_since(0).as_slice(),
            logs.stdout.dropped_since(0)
        ),
        (TaskState::Finished, &b"hello from wasm\n"[..], 0)
    );
    let error = tools::task_logs(&tool, &TaskId::new("never"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no task never"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_task_ends_killed_and_a_lost_agent_reports_lost() {
    let mut cluster = cluster(500).await;
    let (client, mut events) = framework(&cluster.master, "services").await;
    let spin = upload(&client, SPIN).await;
    let tasks = vec![task("spin-1", spin.clone()), task("spin-2", spin)];
    launch_and_follow(&client, &mut events, tasks, &[TaskState::Running]).await;

    // Killed by an operator's tool, in the operator's name.
    let tool = Net::open(&NetConfig::tool(cluster.master.endpoints().to_vec()))
        .await
        .unwrap();
    tools::kill_task(&tool, &TaskId::new("spin-1"))
        .await
        .unwrap();
    let error = tools::kill_task(&tool, &TaskId::new("no-such-task"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no-such-task"), "{error}");
    let killed = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Event::Update { status }) = events.recv().await
                && status.task_id.as_str() == "spin-1"
                && status.state.is_terminal()
            {
                return status;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(killed.state, TaskState::Killed);

    // The agent's session dies with spin-2 running: its token goes, and after the lost
    // timeout the master tells the framework.
    let agent = cluster.agent.take().unwrap();
    agent.net().close().await.unwrap();
    let lost = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Event::Update { status }) = events.recv().await
                && status.task_id.as_str() == "spin-2"
            {
                return status;
            }
        }
    })
    .await
    .expect("no update for spin-2 after its agent went");
    assert_eq!(lost.state, TaskState::Lost, "{lost:?}");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_masters_keys_is_counted_and_the_cluster_goes_on() {
    let cluster = cluster(10_000).await;
    let keys = cluster.master.net().keys().clone();
    let vandal = Net::open(&NetConfig::member(cluster.master.endpoints().to_vec()))
        .await
        .unwrap();
    let junk = b"\x01\xde\xad\xbe\xef".to_vec();
    let put_keys = [
        keys.agent_advert("edge-1"),
        keys.agent_status("edge-1"),
        keys.agent_advert("ghost"),
    ];
    // Puts may be lost until the route exists: send until the master counted them all.
    tokio::time::timeout(WAIT, async {
        while put_keys
            .iter()
            .any(|k| cluster.master.net().decode_errors().count(k) == 0)
        {
            for key in &put_keys {
                vandal.put_raw(key, junk.clone()).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the master did not count the garbage");
    for key in [
        keys.master_calls(proto::principal::ANONYMOUS),
        keys.master_upload(proto::principal::ANONYMOUS),
        keys.master_admin(proto::principal::ANONYMOUS),
        keys.agent_cmd("edge-1"),
    ] {
        let error = vandal
            .query_raw(&key, Some(junk.clone()), 5_000)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("does not decode"),
            "{key}: {error}"
        );
        // What tools tell apart from a master that is away (`ToolError::MasterTooOld`).
        assert!(error.request_not_understood(), "{key}: {error}");
    }
    assert!(
        cluster
            .master
            .net()
            .decode_errors()
            .count(&keys.master_calls(proto::principal::ANONYMOUS))
            >= 1
    );
    assert_eq!(
        cluster
            .agent
            .as_ref()
            .unwrap()
            .net()
            .decode_errors()
            .count(&keys.agent_cmd("edge-1")),
        1
    );

    // An advert whose body names another agent than its key is refused the same way.
    let impostor = AgentAdvert {
        agent_id: AgentId::new("edge-1"),
        hostname: "x".to_owned(),
        attributes: Attributes::new(),
        total: Resources::new().with_scalar("cpus", 64.0),
        reserved: Resources::new(),
        seq: 1,
        incarnation: 1,
        tasks: Vec::new(),
        version: String::new(),
        last_census: None,
    };
    vandal
        .put(&keys.agent_advert("ghost"), &impostor)
        .await
        .unwrap();

    // The cluster still runs tasks.
    let (client, mut events) = framework(&cluster.master, "after-garbage").await;
    let ok = upload(&client, EXIT_0).await;
    let updates = launch_and_follow(
        &client,
        &mut events,
        vec![task("still-fine", ok)],
        &[TaskState::Finished],
    )
    .await;
    assert_eq!(
        updates[&TaskId::new("still-fine")].last().unwrap().state,
        TaskState::Finished
    );
    let agents = cluster
        .master
        .inspect(|core| core.agents_view())
        .await
        .unwrap();
    let ids: Vec<&str> = agents.iter().map(|a| a.agent_id.as_str()).collect();
    assert_eq!(ids, ["edge-1"], "no agent made of garbage");
    assert!(
        cluster
            .master
            .net()
            .decode_errors()
            .count(&keys.agent_advert("ghost"))
            >= 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_master_restart_agents_advertise_and_frameworks_subscribe_again() {
    let dir = tempfile::tempdir().unwrap();
    // A fixed port, so that the second master is where the members reconnect to.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let master_config = || {
        MasterDaemonConfig::new(
            NetConfig::master(vec![endpoint.clone()]),
            dir.path().join("store"),
        )
    };
    let first = MasterDaemon::start(master_config()).await.unwrap();
    let mut advert = AgentAdvert {
        agent_id: AgentId::new("edge-9"),
        hostname: "edge-9.local".to_owned(),
        attributes: Attributes::new(),
        total: Resources::new()
            .with_scalar("cpus", 1.0)
            .with_scalar("mem", 256.0),
        reserved: Resources::new(),
        seq: 0,
        incarnation: 1,
        tasks: Vec::new(),
        version: String::new(),
        last_census: None,
    };
    let mut agent_config = AgentDaemonConfig::new(
        NetConfig::member(vec![endpoint.clone()]),
        advert.clone(),
        dir.path().join("agent"),
    );
    agent_config.advert_period_ms = 60_000; // only the master's return makes it advertise
    let agent = AgentDaemon::start(agent_config).await.unwrap();
    let (client, mut events) = framework(&first, "survivor").await;
    let framework_id = client.framework_id().clone();
    let offers = tokio::time::timeout(WAIT, next_offers(&mut events))
        .await
        .unwrap();
    assert_eq!(offers[0].agent_id, AgentId::new("edge-9"));

    first.shutdown().await;
    let second = MasterDaemon::start(master_config()).await.unwrap();
    // The new master knows nothing until the members come back on their own.
    let offers = tokio::time::timeout(WAIT, next_offers(&mut events))
        .await
        .expect("no offer after the restart");
    assert_eq!(offers[0].agent_id, AgentId::new("edge-9"));
    assert_eq!(
        offers[0].framework_id, framework_id,
        "the framework kept its id"
    );
    let frameworks = second.inspect(|core| core.frameworks_view()).await.unwrap();
    assert_eq!(
        frameworks
            .iter()
            .map(|f| f.framework_id.clone())
            .collect::<Vec<_>>(),
        [framework_id]
    );

    // A changed device advertises at once.
    advert.attributes.insert("has", "camera");
    agent.set_advert(advert).await;
    tokio::time::timeout(WAIT, async {
        loop {
            let agents = second.inspect(|core| core.agents_view()).await.unwrap();
            if agents.iter().any(|a| a.attributes.has("has", "camera")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the new attribute never reached the master");
    agent.shutdown().await;
}

async fn next_offers(events: &mut Events) -> Vec<proto::Offer> {
    loop {
        if let Some(Event::Offers { offers }) = events.recv().await {
            return offers;
        }
    }
}

/// More launches at once than agent commands may be in flight (256): the master queues
/// the rest and sends each as a slot frees, and every task runs to its end. (It used to
/// wait for a free slot, and once more inputs than its queue holds (4,096) were waiting,
/// the answers that free slots queued behind statuses it no longer took: a stall of the
/// command timeout, seen by `benches/throughput.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_launches_at_once_all_run_to_their_end() {
    const TASKS: usize = 1_000;
    let cluster = cluster(60_000).await;
    let (client, mut events) = framework(&cluster.master, "many").await;
    let module = upload(&client, EXIT_0).await;
    let offer = next_offers(&mut events).await.remove(0);
    let tasks: Vec<TaskSpec> = (0..TASKS)
        .map(|i| TaskSpec {
            resources: Resources::new()
                .with_scalar("cpus", 0.002)
                .with_scalar("mem", 1.0),
            ..task(&format!("many-{i}"), module.clone())
        })
        .collect();
    // The events are taken while the launch call waits (`framework::Events`).
    let launching = {
        let client = client.clone();
        tokio::spawn(async move { client.launch(offer.offer_id, tasks).await })
    };
    let mut ended: BTreeMap<TaskId, TaskState> = BTreeMap::new();
    while ended.len() < TASKS {
        let event = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("an event in time")
            .expect("events go on");
        if let Event::Update { status } = event
            && status.state.is_terminal()
        {
            ended.insert(status.task_id, status.state);
        }
    }
    launching.await.unwrap().unwrap();
    let not_finished: Vec<_> = (ended.iter())
        .filter(|(_, state)| **state != TaskState::Finished)
        .collect();
    assert!(not_finished.is_empty(), "{not_finished:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_master_on_the_same_state_directory_is_refused_until_the_first_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        || MasterDaemonConfig::new(NetConfig::loopback_ephemeral(), dir.path().join("store"));
    let first = MasterDaemon::start(config()).await.unwrap();
    let Err(refused) = MasterDaemon::start(config()).await else {
        panic!("two masters on one state directory");
    };
    let message = refused.to_string();
    assert!(
        matches!(
            refused,
            master_daemon::error::DaemonError::StateDirInUse { .. }
        ),
        "{message}"
    );
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    first.shutdown().await;
    let second = MasterDaemon::start(config()).await.unwrap();
    second.shutdown().await;
}
