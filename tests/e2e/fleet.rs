//! A fleet of real processes: `wasmos master` and `wasmos agent --connect` over zenoh on
//! loopback (scouting off), driven from here as a native framework
//! (`framework::FrameworkClient`), as a framework author's program would.
//!
//! - an OCI task launched through the cluster finishes (the agent daemon's runc path);
//! - two frameworks of weights 1 and 3 competing for one agent converge to DRF;
//! - an agent killed with SIGKILL mid-task: the framework gets `lost`;
//! - garbage on every key the master and agents listen to is counted and ignored;
//! - agents in their own network namespaces, joined by veth pairs to a bridge.
//!
//! With `WASMOS_E2E_SECURE=1` the first three run on a secure cluster; the garbage test
//! stays on plain TCP (on a secure cluster the access control drops what it sends before
//! any decoder sees it: `e2e/secure.rs` checks that), and so does the namespace test.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use framework::{Events, FrameworkClient, FrameworkConfig, Net};
use proto::operator::{OperatorReply, OperatorRequest};
use proto::{
    DirGrant, Event, Filters, ModuleRef, OciTask, Operation, Resources, TaskId, TaskKind,
    TaskLimits, TaskSpec, TaskState, TaskStatus, WasmTask,
};
use serde_json::Value;
use wasmos_tests::secure_mode::{cluster_endpoint, framework_net, secure_for};
use wasmos_tests::{Killed, free_endpoint, module, oci_image, spawn_master, wasmos};

/// How long a test waits for an event it needs (offers, updates); generous, because
/// process start-up and first compilation on a loaded 2-core machine take seconds.
const EVENT_WAIT: Duration = Duration::from_secs(60);
/// How long the operator's listings may lag the master's state.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(5);
/// Sensor samples of a task that must still run when the test looks (100 ms apart).
const LONG_TASK_SAMPLES: &str = "600";

/// `wasmos master --listen ENDPOINT`, once it printed that it listens.
fn start_master(mut cmd: Command, endpoint: &str, store: &Path) -> Killed {
    cmd.arg("master");
    if let Some(cluster) = secure_for(endpoint) {
        cmd.args(cluster.identity("master"));
    }
    cmd.args([
        "--listen",
        endpoint,
        "--agent-lost-timeout",
        "1",
        "--no-http",
        "--no-jobs",
    ])
    .arg("--store-dir")
    .arg(store)
    .stderr(Stdio::inherit());
    spawn_master(cmd, endpoint)
}

/// `wasmos agent --connect ENDPOINT --work-dir DIR [--config FILE]`, once connected.
fn start_agent(mut cmd: Command, endpoint: &str, work_dir: &Path, config: Option<&Path>) -> Killed {
    cmd.arg("agent");
    if let Some(cluster) = secure_for(endpoint) {
        let configured = config.map(|c| c.file_stem().and_then(|s| s.to_str()).unwrap_or_default());
        cmd.args(cluster.agent(configured, work_dir));
    }
    cmd.args(["--connect", endpoint, "--work-dir"])
        .arg(work_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Killed(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(line.contains("connected to"), "agent said {line:?}");
    child
}

/// An agent configuration with an id and `cpus` (so tests do not depend on this machine).
fn agent_config(dir: &Path, agent_id: &str, cpus: u32) -> PathBuf {
    let path = dir.join(format!("{agent_id}.toml"));
    std::fs::write(
        &path,
        format!("agent_id = \"{agent_id}\"\n[resources.scalars]\ncpus = {cpus}\nmem = 4096\n"),
    )
    .unwrap();
    path
}

async fn open(endpoint: &str) -> Net {
    Net::open(&framework_net(endpoint)).await.unwrap()
}

async fn subscribe(endpoint: &str, name: &str, weight: f64) -> (FrameworkClient, Events) {
    let mut config = FrameworkConfig::new(name).with_role(name, weight);
    config.info.min_offer = one_cpu();
    FrameworkClient::subscribe(open(endpoint).await, config)
        .await
        .unwrap()
}

fn one_cpu() -> Resources {
    Resources::new()
        .with_scalar("cpus", 1.0)
        .with_scalar("mem", 32.0)
}

async fn upload(net: &Net, name: &str) -> ModuleRef {
    let bytes = std::fs::read(module(name)).unwrap();
    net::modules::upload_module(net, name, &bytes, |_| {})
        .await
        .unwrap()
}

/// A directory with a sensor file, for `p1_sensor`.
fn sensor_dir(dir: &Path) -> PathBuf {
    let sensor = dir.join("sensor");
    std::fs::create_dir_all(&sensor).unwrap();
    std::fs::write(sensor.join("temp"), "21000\n").unwrap();
    sensor
}

/// `p1_sensor` sampling `samples` times, 100 ms apart, on one cpu.
fn sensor_task(task_id: &str, sensor: &ModuleRef, dir: &Path, samples: &str) -> TaskSpec {
    TaskSpec {
        task_id: TaskId::new(task_id),
        name: task_id.to_owned(),
        resources: one_cpu(),
        kind: TaskKind::Wasm(WasmTask {
            module: sensor.clone(),
            args: [
                "--device",
                "/sensor/temp",
                "--samples",
                samples,
                "--interval-ms",
                "100",
            ]
            .map(String::from)
            .to_vec(),
            dirs: vec![DirGrant {
                host: dir.display().to_string(),
                guest: "/sensor".into(),
                read_only: true,
            }],
            ..WasmTask::default()
        }),
        limits: TaskLimits::default(),
        disconnect: None,
        replaces: None,
    }
}

/// Launches `task` on the first offer (of `agent_id` when given); every other offer is
/// declined briefly, so that it goes back to the pool rather than waiting for its timeout.
async fn launch_on_next_offer(
    client: &FrameworkClient,
    events: &mut Events,
    task: TaskSpec,
    agent_id: Option<&str>,
) {
    let mut task = Some(task);
    while task.is_some() {
        let event = tokio::time::timeout(EVENT_WAIT, events.recv())
            .await
            .expect("no offer came")
            .expect("event stream ended");
        let Event::Offers { offers } = event else {
            continue;
        };
        for offer in offers {
            let wanted = agent_id.is_none_or(|id| offer.agent_id.as_str() == id);
            match task.take_if(|_| wanted) {
                Some(task) => client.launch(offer.offer_id, vec![task]).await.unwrap(),
                None => {
                    let filters = Filters {
                        refuse_seconds: 0.5,
                    };
                    client.decline(vec![offer.offer_id], filters).await.unwrap();
                }
            }
        }
    }
}

/// Waits for an update of `task_id` in a state `until` accepts and returns it; offers
/// that come meanwhile are declined briefly (held, they would wait for their timeout).
async fn update_until(
    client: &FrameworkClient,
    events: &mut Events,
    task_id: &str,
    until: impl Fn(TaskState) -> bool,
) -> TaskStatus {
    loop {
        let event = tokio::time::timeout(EVENT_WAIT, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no awaited update of {task_id}"))
            .expect("event stream ended");
        match event {
            Event::Update { status } if status.task_id.as_str() == task_id => {
                assert!(
                    !status.state.is_terminal() || until(status.state),
                    "{task_id} ended unexpectedly: {status:?}"
                );
                if until(status.state) {
                    return status;
                }
            }
            Event::Offers { offers } => {
                let ids = offers.into_iter().map(|o| o.offer_id).collect();
                let filters = Filters {
                    refuse_seconds: 0.5,
                };
                client.decline(ids, filters).await.unwrap();
            }
            _ => {}
        }
    }
}

/// `wasmos <args> --json --connect ENDPOINT` as a JSON array.
fn json_rows(args: &[&str], endpoint: &str) -> Vec<Value> {
    let mut cmd = wasmos();
    if let Some(cluster) = secure_for(endpoint) {
        let [_, admin] = cluster.identity("admin");
        cmd.env("WASMOS_IDENTITY", admin);
    }
    let out = cmd
        .args(args)
        .args(["--json", "--connect", endpoint])
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

fn runc_usable() -> Result<(), String> {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    });
    if !root {
        return Err("not root".into());
    }
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("runc").is_file()));
    if !on_path {
        return Err("runc is not on PATH".into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_task_launched_through_the_cluster_finishes() {
    if let Err(why) = runc_usable() {
        println!("skipped: the agent runs no OCI tasks here ({why})");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("busybox");
    oci_image::busybox_layout(&image, &["sh", "-c", "echo hello from a container"]);
    let endpoint = cluster_endpoint();
    let _master = start_master(wasmos(), &endpoint, &dir.path().join("store"));
    let config = agent_config(dir.path(), "oci-agent", 2);
    let _agent = start_agent(
        wasmos(),
        &endpoint,
        &dir.path().join("agent"),
        Some(&config),
    );

    let (client, mut events) = subscribe(&endpoint, "oci", 1.0).await;
    let task = TaskSpec {
        task_id: TaskId::new("oci-hello"),
        name: "oci-hello".into(),
        resources: one_cpu(),
        kind: TaskKind::Oci(OciTask {
            image: image.display().to_string(),
            command: Vec::new(),
            env: Default::default(),
            host_network: false,
            capabilities: Vec::new(),
        }),
        limits: TaskLimits::default(),
        disconnect: None,
        replaces: None,
    };
    launch_on_next_offer(&client, &mut events, task, None).await;
    let status = update_until(&client, &mut events, "oci-hello", |s| {
        s == TaskState::Finished
    })
    .await;
    assert_eq!(status.exit_code, Some(0), "{status:?}");
    assert_eq!(status.agent_id.as_str(), "oci-agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_frameworks_of_weights_1_and_3_converge_to_drf_shares() {
    let dir = tempfile::tempdir().unwrap();
    let sensor = sensor_dir(dir.path());
    let endpoint = cluster_endpoint();
    let _master = start_master(wasmos(), &endpoint, &dir.path().join("store"));
    // Both subscribe before the agent comes, so neither gets a head start.
    let (light, mut light_events) = subscribe(&endpoint, "light", 1.0).await;
    let (heavy, mut heavy_events) = subscribe(&endpoint, "heavy", 3.0).await;
    let module = upload(light.net(), "p1_sensor").await;
    let config = agent_config(dir.path(), "drf-agent", 8);
    let _agent = start_agent(
        wasmos(),
        &endpoint,
        &dir.path().join("agent"),
        Some(&config),
    );

    // Each launches one long task per offer, for as long as offers come; the rest of each
    // offer goes back to the allocator at once.
    let mut running = [0usize; 2];
    let frameworks = [(&light, &mut light_events), (&heavy, &mut heavy_events)];
    let [(light_client, light_events), (heavy_client, heavy_events)] = frameworks;
    let deadline = tokio::time::Instant::now() + EVENT_WAIT;
    while running.iter().sum::<usize>() < 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {running:?} launched"
        );
        let (index, client, event) = tokio::select! {
            e = light_events.recv() => (0, light_client, e.unwrap()),
            e = heavy_events.recv() => (1, heavy_client, e.unwrap()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
        };
        let Event::Offers { offers } = event else {
            continue;
        };
        for offer in offers {
            let id = format!("{}-{}", ["light", "heavy"][index], running[index]);
            let task = sensor_task(&id, &module, &sensor, LONG_TASK_SAMPLES);
            let operations = vec![Operation::Launch { tasks: vec![task] }];
            let filters = Filters {
                refuse_seconds: 0.0,
            };
            client
                .accept(vec![offer.offer_id], operations, filters)
                .await
                .unwrap();
            running[index] += 1;
        }
    }
    assert_eq!(running, [2, 6], "8 cpus shared 1:3");

    // The operator's view says the same: dominant shares of 0.25 and 0.75 (the listing
    // is a snapshot refreshed a few times a second, so it may lag the launches a little).
    let shares = |rows: &[Value]| {
        let share = |name: &str| {
            rows.iter()
                .find(|r| r["name"] == name)
                .and_then(|r| r["dominant_share"].as_f64())
        };
        (share("light"), share("heavy"))
    };
    let deadline = tokio::time::Instant::now() + SNAPSHOT_WAIT;
    let mut rows = json_rows(&["frameworks"], &endpoint);
    while shares(&rows) != (Some(0.25), Some(0.75)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        rows = json_rows(&["frameworks"], &endpoint);
    }
    assert_eq!(shares(&rows), (Some(0.25), Some(0.75)), "{rows:?}");
    light.teardown().await.unwrap();
    heavy.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_task_brings_a_lost_update() {
    let dir = tempfile::tempdir().unwrap();
    let sensor = sensor_dir(dir.path());
    let endpoint = cluster_endpoint();
    let _master = start_master(wasmos(), &endpoint, &dir.path().join("store"));
    let config = agent_config(dir.path(), "doomed", 2);
    let mut agent = start_agent(
        wasmos(),
        &endpoint,
        &dir.path().join("agent"),
        Some(&config),
    );
    let (client, mut events) = subscribe(&endpoint, "survivor", 1.0).await;
    let module = upload(client.net(), "p1_sensor").await;

    let task = sensor_task("long", &module, &sensor, LONG_TASK_SAMPLES);
    launch_on_next_offer(&client, &mut events, task, Some("doomed")).await;
    update_until(&client, &mut events, "long", |s| s == TaskState::Running).await;
    agent.0.kill().unwrap(); // SIGKILL
    agent.0.wait().unwrap();
    let status = update_until(&client, &mut events, "long", |s| s == TaskState::Lost).await;
    assert_eq!(status.agent_id.as_str(), "doomed");
}

/// `wasmos` logging errors only: the garbage test makes every dropped payload a warning.
fn quiet() -> Command {
    let mut cmd = wasmos();
    cmd.env("WASMOS_LOG", "error");
    cmd
}

/// Every key the master and agents listen to, for the agent `agent_id`.
fn listened_keys(net: &Net, agent_id: &str) -> Vec<(String, bool)> {
    let keys = net.keys();
    let put = |k: String| (k, false);
    let query = |k: String| (k, true);
    vec![
        put(keys.agent_advert(agent_id)),
        put(keys.agent_advert("no-such-agent")),
        put(keys.agent_status(agent_id)),
        put(keys.agent_metrics(agent_id)),
        query(keys.agent_cmd(agent_id)),
        query(keys.agent_logs(agent_id)),
        query(keys.master_calls(proto::principal::ANONYMOUS)),
        query(keys.master_upload(proto::principal::ANONYMOUS)),
        query(keys.master_admin(proto::principal::ANONYMOUS)),
        query(keys.module(&"0".repeat(64))),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_every_key_is_counted_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = free_endpoint();
    let _master = start_master(quiet(), &endpoint, &dir.path().join("store"));
    let config = agent_config(dir.path(), "sturdy", 2);
    let _agent = start_agent(
        wasmos(),
        &endpoint,
        &dir.path().join("agent"),
        Some(&config),
    );
    let raw = open(&endpoint).await;
    let garbage: [&[u8]; 4] = [
        b"",
        b"\xff\xff\xff\xff",
        b"\x01\xff\x00garbage",
        &[0x01; 4096],
    ];
    let keys = listened_keys(&raw, "sturdy");
    for (key, is_query) in &keys {
        for bytes in garbage {
            if *is_query {
                // The answer is an error reply or none; either way the service goes on.
                let _ = raw.query_raw(key, Some(bytes.to_vec()), 2_000).await;
            } else {
                raw.put_raw(key, bytes.to_vec()).await.unwrap();
            }
        }
    }

    // Liveliness tokens carry no payload; ones for agents and frameworks that never
    // registered must be ignored too.
    let _ghost_agent = raw
        .declare_alive(&raw.keys().agent_alive("ghost"))
        .await
        .unwrap();
    let _ghost_framework = raw
        .declare_alive(&raw.keys().framework_alive(&"ghost".into()))
        .await
        .unwrap();

    // The master counted what it dropped, per key.
    let counts: Value = {
        let reply: OperatorReply = raw
            .query(
                &raw.keys().master_admin(proto::principal::ANONYMOUS),
                &OperatorRequest::DecodeErrors,
                5_000,
            )
            .await
            .unwrap();
        let OperatorReply::DecodeErrors(counts) = reply else {
            panic!("{reply:?}");
        };
        serde_json::to_value(counts).unwrap()
    };
    for (key, _) in keys
        .iter()
        .filter(|(k, _)| !k.contains("/agents/sturdy/cmd") && !k.contains("/logs"))
    {
        let count = counts[key.as_str()].as_u64().unwrap_or(0);
        assert!(count >= 1, "no decode errors counted on {key}: {counts}");
    }

    // And a task still deploys and finishes.
    let (client, mut events) = subscribe(&endpoint, "after-garbage", 1.0).await;
    let hello = upload(client.net(), "p1_hello").await;
    let task = TaskSpec {
        task_id: TaskId::new("hello"),
        name: "hello".into(),
        resources: one_cpu(),
        kind: TaskKind::Wasm(WasmTask {
            module: hello,
            ..WasmTask::default()
        }),
        limits: TaskLimits::default(),
        disconnect: None,
        replaces: None,
    };
    launch_on_next_offer(&client, &mut events, task, Some("sturdy")).await;
    update_until(&client, &mut events, "hello", |s| s == TaskState::Finished).await;
}

/// Network namespaces for one test: a bridge in the root namespace with `10.213.K.1/24`,
/// and per agent a namespace joined to it by a veth pair (`10.213.K.(10+i)`). Everything
/// is removed on drop, whether the test passed or not; names carry the process id.
struct NetnsFleet {
    bridge: String,
    namespaces: Vec<String>,
    subnet: String,
}

impl NetnsFleet {
    /// `Err` with the reason when namespaces cannot be made here (not permitted).
    fn new(agents: usize) -> Result<NetnsFleet, String> {
        let pid = std::process::id();
        let mut fleet = NetnsFleet {
            bridge: format!("wbr{pid}"),
            namespaces: Vec::new(),
            subnet: format!("10.213.{}", pid % 250),
        };
        let probe = format!("wasmos-{pid}-0");
        let out = Command::new("ip")
            .args(["netns", "add", &probe])
            .output()
            .map_err(|e| format!("cannot run `ip`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`ip netns add` is not permitted here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        fleet.namespaces.push(probe);
        ip(&["link", "add", &fleet.bridge, "type", "bridge"]);
        let bridge_addr = format!("{}.1/24", fleet.subnet);
        ip(&["addr", "add", &bridge_addr, "dev", &fleet.bridge]);
        ip(&["link", "set", &fleet.bridge, "up"]);
        for i in 0..agents {
            let ns = format!("wasmos-{pid}-{i}");
            if i > 0 {
                ip(&["netns", "add", &ns]);
                fleet.namespaces.push(ns.clone());
            }
            let (host_end, ns_end) = (format!("wvh{pid}{i}"), format!("wvn{pid}{i}"));
            ip(&[
                "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end,
            ]);
            ip(&["link", "set", &ns_end, "netns", &ns]);
            ip(&["link", "set", &host_end, "master", &fleet.bridge]);
            ip(&["link", "set", &host_end, "up"]);
            let addr = format!("{}.{}/24", fleet.subnet, 10 + i);
            ip(&[
                "netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", &ns_end,
            ]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", &ns_end, "up"]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        }
        Ok(fleet)
    }

    fn bridge_ip(&self) -> String {
        format!("{}.1", self.subnet)
    }

    /// `wasmos` run inside namespace `i`.
    fn wasmos_in(&self, i: usize) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.namespaces[i]])
            .arg(wasmos_tests::wasmos_bin());
        cmd
    }
}

impl Drop for NetnsFleet {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth end, and with it the peer on the bridge.
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn agents_in_their_own_network_namespaces_run_tasks_over_a_bridge() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(agents_in_namespaces());
}

async fn agents_in_namespaces() {
    const AGENTS: usize = 2;
    let fleet = match NetnsFleet::new(AGENTS) {
        Ok(fleet) => fleet,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind((fleet.bridge_ip().as_str(), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("tcp/{}:{port}", fleet.bridge_ip());
    let _master = start_master(wasmos(), &endpoint, &dir.path().join("store"));
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let agent_id = format!("ns-agent-{i}");
        let config = agent_config(dir.path(), &agent_id, 1);
        let work_dir = dir.path().join(&agent_id);
        agents.push(start_agent(
            fleet.wasmos_in(i),
            &endpoint,
            &work_dir,
            Some(&config),
        ));
    }

    let (client, mut events) = subscribe(&endpoint, "across-namespaces", 1.0).await;
    let hello = upload(client.net(), "p1_hello").await;
    for i in 0..AGENTS {
        let task = TaskSpec {
            task_id: TaskId::new(format!("hello-{i}")),
            name: format!("hello-{i}"),
            resources: one_cpu(),
            kind: TaskKind::Wasm(WasmTask {
                module: hello.clone(),
                ..WasmTask::default()
            }),
            limits: TaskLimits::default(),
            disconnect: None,
            replaces: None,
        };
        let agent_id = format!("ns-agent-{i}");
        launch_on_next_offer(&client, &mut events, task, Some(&agent_id)).await;
        let status = update_until(&client, &mut events, &format!("hello-{i}"), |s| {
            s == TaskState::Finished
        })
        .await;
        assert_eq!(status.agent_id.as_str(), agent_id);
    }
    // Closed while the bridge is there: a session left to the runtime's end would keep
    // trying to reach an address that no longer exists.
    let net = client.net().clone();
    client.teardown().await.unwrap();
    net.close().await.unwrap();
    drop(agents);
}
