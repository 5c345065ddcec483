//! The daemons over real zenoh on loopback, in one process, each measured side by side
//! over plain TCP (`plain`) and over mutual TLS with the generated access control on
//! (`tls_acl`: a cluster CA, the master, agent and framework as their own identities):
//! - `accept_to_running`: from a framework's `Accept` (a launch) to the `running` update
//!   it receives, for a WASM task whose module is cached and compiled (p50/p99 printed);
//! - `advert_ingest`: adverts per second the master takes in, 10,000 agents
//!   re-advertising. With `tls_acl` the access control names all 10,000 agents (as the
//!   master generates it from their certificates); the adverts come from one session
//!   whose identity has the master's role, so one publisher can speak for them all.

#![allow(clippy::too_many_lines)]

use std::path::Path;
use std::time::{Duration, Instant};

use agent_daemon::{AgentDaemon, AgentDaemonConfig, AgentHandle};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use framework::{Events, FrameworkClient, FrameworkConfig};
use master_daemon::{MasterDaemon, MasterDaemonConfig, MasterHandle, security};
use net::{AclPrincipal, Net, NetConfig};
use proto::{
    AgentAdvert, AgentId, Attributes, Event, Keys, ModuleRef, Resources, Role, TaskId, TaskKind,
    TaskLimits, TaskSpec, TaskState, WasmTask,
};

#[path = "support/logs.rs"]
mod logs;

const EXIT_0: &str = r#"(module (func (export "_start")))"#;
const AGENTS: usize = 10_000;

/// How the daemons talk.
#[derive(Clone, Copy, Debug)]
enum Transport {
    Plain,
    TlsAcl,
}

impl Transport {
    const BOTH: [Transport; 2] = [Transport::Plain, Transport::TlsAcl];

    fn name(self) -> &'static str {
        match self {
            Transport::Plain => "plain",
            Transport::TlsAcl => "tls_acl",
        }
    }

    /// A master storing in `dir`; with TLS, the cluster's identities are made in `dir`
    /// too, `extra` agents are added to its access control, and `members` get certificates.
    fn master(self, dir: &Path, members: &[(&str, Role)], extra: usize) -> MasterDaemonConfig {
        let Transport::TlsAcl = self else {
            return MasterDaemonConfig::new(NetConfig::loopback_ephemeral(), dir.join("store"));
        };
        let cluster = dir.join("cluster");
        secure::init_cluster(&cluster, &[]).unwrap();
        for (name, role) in members {
            secure::issue_identity(&cluster, name, *role, &[]).unwrap();
        }
        let net = NetConfig::master(vec!["tls/127.0.0.1:0".to_owned()]);
        let mut config = MasterDaemonConfig::new(net, dir.join("store"));
        security::secure_master(&mut config, &cluster.join("master")).unwrap();
        if extra > 0 {
            let (identities, _) = secure::cluster_identities(&cluster).unwrap();
            let principals: Vec<AclPrincipal> = identities
                .into_iter()
                .map(|i| AclPrincipal {
                    name: i.name,
                    role: i.role,
                })
                .chain((0..extra).map(|i| AclPrincipal {
                    name: format!("virtual-{i}"),
                    role: Role::Agent,
                }))
                .collect();
            let acl = net::access_control(&Keys::default(), &principals);
            config.net = config.net.with_access_control(acl);
        }
        config
    }

    /// A member session's configuration, as `name` with TLS.
    fn member(self, dir: &Path, endpoints: &[String], name: &str) -> NetConfig {
        let net = NetConfig::member(endpoints.to_vec());
        match self {
            Transport::Plain => net,
            Transport::TlsAcl => {
                let (_, _, tls) =
                    security::identity_files(&dir.join("cluster").join(name)).unwrap();
                net.with_tls(name, tls)
            }
        }
    }
}

struct Bench {
    _dir: tempfile::TempDir,
    _master: MasterHandle,
    _agent: AgentHandle,
    client: FrameworkClient,
    events: Events,
    module: ModuleRef,
    launched: u64,
}

async fn setup(transport: Transport) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let members = [("bench-agent", Role::Agent), ("bench", Role::Framework)];
    let config = transport.master(dir.path(), &members, 0);
    let master = MasterDaemon::start(config).await.unwrap();
    let endpoints = master.endpoints().to_vec();
    let advert = advert("bench-agent", 0);
    let agent_config = AgentDaemonConfig::new(
        transport.member(dir.path(), &endpoints, "bench-agent"),
        advert,
        dir.path().join("agent"),
    );
    let agent = AgentDaemon::start(agent_config).await.unwrap();
    let net = Net::open(&transport.member(dir.path(), &endpoints, "bench"))
        .await
        .unwrap();
    let (client, events) = FrameworkClient::subscribe(net, FrameworkConfig::new("bench"))
        .await
        .unwrap();
    let module = net::modules::upload_module(client.net(), "exit0.wat", EXIT_0.as_bytes(), |_| {})
        .await
        .unwrap();
    Bench {
        _dir: dir,
        _master: master,
        _agent: agent,
        client,
        events,
        module,
        launched: 0,
    }
}

fn advert(agent: &str, round: u64) -> AgentAdvert {
    AgentAdvert {
        agent_id: AgentId::new(agent),
        hostname: format!("{agent}.local"),
        attributes: Attributes::new()
            .with("arch", "x86_64")
            .with("round", &round.to_string()),
        total: Resources::new()
            .with_scalar("cpus", 4.0)
            .with_scalar("mem", 4096.0),
        reserved: Resources::new(),
        seq: round,
        incarnation: 1,
        tasks: Vec::new(),
        version: String::new(),
        last_census: None,
    }
}

impl Bench {
    /// Launches one task on the next offer and returns the time from the launch call to
    /// the `running` update; then waits for its end (not timed).
    async fn launch_once(&mut self) -> Duration {
        let offer = loop {
            if let Some(Event::Offers { mut offers }) = self.events.recv().await {
                break offers.remove(0);
            }
        };
        self.launched += 1;
        let task_id = TaskId::new(format!("bench-{}", self.launched));
        let task = TaskSpec {
            task_id: task_id.clone(),
            name: "bench".to_owned(),
            resources: Resources::new()
                .with_scalar("cpus", 0.1)
                .with_scalar("mem", 16.0),
            kind: TaskKind::Wasm(WasmTask {
                module: self.module.clone(),
                ..WasmTask::default()
            }),
            limits: TaskLimits::default(),
            disconnect: None,
            replaces: None,
        };
        let start = Instant::now();
        self.client
            .launch(offer.offer_id, vec![task])
            .await
            .unwrap();
        let mut running_after = None;
        loop {
            match self.events.recv().await {
                Some(Event::Update { status }) if status.task_id == task_id => match status.state {
                    TaskState::Running => running_after = Some(start.elapsed()),
                    state if state.is_terminal() => {
                        return running_after.unwrap_or_else(|| start.elapsed());
                    }
                    _ => {}
                },
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
    }
}

fn accept_to_running(c: &mut Criterion) {
    logs::init_tracing();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("accept_to_running");
    for transport in Transport::BOTH {
        let mut bench = runtime.block_on(setup(transport));
        runtime.block_on(bench.launch_once()); // compiles the module once
        let mut samples = Vec::new();
        group.bench_function(transport.name(), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let took = bench.launch_once().await;
                        samples.push(took);
                        total += took;
                    }
                    total
                })
            })
        });
        print_quantiles(transport, &mut samples);
    }
    group.finish();
}

fn print_quantiles(transport: Transport, samples: &mut [Duration]) {
    samples.sort();
    if !samples.is_empty() {
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
        // Read by `cargo xtask bench --report`.
        println!(
            "accept_to_running/{} over {} launches: p50 {:.1} us, p99 {:.1} us",
            transport.name(),
            samples.len(),
            at(0.50).as_secs_f64() * 1e6,
            at(0.99).as_secs_f64() * 1e6
        );
    }
}

fn advert_ingest(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("advert_ingest");
    group.throughput(Throughput::Elements(AGENTS as u64));
    group.sample_size(20);
    for transport in Transport::BOTH {
        // A master alone: no framework to offer to, so only taking adverts in is
        // measured; and agents without tokens are not declared lost during the run.
        let dir = tempfile::tempdir().unwrap();
        let publisher = [("bench-publisher", Role::Master)];
        let mut config = transport.master(dir.path(), &publisher, AGENTS);
        config.core.agent_lost_timeout_ms = 3_600_000;
        let master = runtime.block_on(MasterDaemon::start(config)).unwrap();
        let member = transport.member(dir.path(), master.endpoints(), "bench-publisher");
        let publisher = runtime.block_on(Net::open(&member)).unwrap();
        runtime.block_on(wait_for_route(&master, &publisher));
        let mut round = 0u64;
        group.bench_function(format!("{AGENTS}_agents/{}", transport.name()), |b| {
            b.iter(|| {
                round += 1;
                runtime.block_on(ingest_round(&master, &publisher, round));
            })
        });
        runtime.block_on(master.shutdown());
    }
    group.finish();
}

/// Publishes one advert of each of [`AGENTS`] agents, then a sentinel, and waits until the
/// master took the sentinel (zenoh keeps the order of one publisher's puts).
async fn ingest_round(master: &MasterHandle, publisher: &Net, round: u64) {
    for i in 0..AGENTS {
        let agent = format!("virtual-{i}");
        publisher
            .put(
                &publisher.keys().agent_advert(&agent),
                &advert(&agent, round),
            )
            .await
            .unwrap();
    }
    // A new sentinel each round: its arrival is seen whatever a re-advert updates. Puts
    // go with zenoh's default congestion control, which drops under a burst: an advert
    // lost that way is made good by the next period, and the sentinel is sent again.
    let sentinel = format!("sentinel-{round}");
    loop {
        publisher
            .put(
                &publisher.keys().agent_advert(&sentinel),
                &advert(&sentinel, round),
            )
            .await
            .unwrap();
        for _ in 0..100 {
            if master_knows(master, &sentinel).await {
                return;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
}

async fn master_knows(master: &MasterHandle, agent: &str) -> bool {
    let agent = agent.to_owned();
    master
        .inspect(move |core| {
            core.agents_view()
                .iter()
                .any(|a| a.agent_id.as_str() == agent)
        })
        .await
        .unwrap()
}

/// Puts are dropped until the publisher has learnt of the master's subscriber: advertise
/// until the master has heard one.
async fn wait_for_route(master: &MasterHandle, publisher: &Net) {
    while !master_knows(master, "route").await {
        publisher
            .put(&publisher.keys().agent_advert("route"), &advert("route", 0))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

criterion_group!(benches, accept_to_running, advert_ingest);
criterion_main!(benches);
