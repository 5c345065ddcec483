//! How big a fleet one master takes, over real zenoh on loopback.
//!
//! - `advert_cpu` (printed, not a criterion timing): 10,000 distinct agents advertising
//!   once every 5 s, i.e. 2,000 adverts/s paced by one publisher, for two periods; the
//!   master runs in its own process (this bench binary started again with
//!   `WASMOS_BENCH_MASTER` set) so that its CPU time can be read from `/proc/<pid>/stat`.
//!   Target: within 20% of one core. Then the master's resident memory with the fleet
//!   known (`master_rss`, printed).
//!   (The most adverts per second one master takes in, in process, is `advert_ingest` in
//!   `transport.rs`.)
//! - `offers`: a framework declines every offer (filter 0 s) so the master offers again at
//!   once; 10 agents, in process; time per offer round and offers/s printed.

#![allow(clippy::too_many_lines)]

use std::process::Command;
use std::time::{Duration, Instant};

use criterion::Criterion;
use framework::{Events, FrameworkClient, FrameworkConfig};
use master_daemon::{MasterDaemon, MasterDaemonConfig, MasterHandle};
use net::{Net, NetConfig};
use proto::{AgentAdvert, AgentId, Attributes, Event, Filters, Resources};

#[path = "support/child_master.rs"]
mod child_master;
#[path = "support/logs.rs"]
mod logs;

use child_master::ChildMaster;

/// Agents advertising in the paced run, and their advert period.
const FLEET_AGENTS: usize = 10_000;
const ADVERT_PERIOD: Duration = Duration::from_secs(5);
/// Adverts sent per pacing tick in the paced run (every 10 ms: 2,000 adverts/s).
const PACE_TICK: Duration = Duration::from_millis(10);
/// Agents offered in the offers bench.
const OFFER_AGENTS: usize = 10;
/// Set in the child: the endpoint its master listens on.
const CHILD_ENV: &str = "WASMOS_BENCH_MASTER";

fn main() {
    logs::init_tracing();
    if let Ok(listen) = std::env::var(CHILD_ENV) {
        run_child_master(&listen);
        return;
    }
    let mut c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    adverts();
    offers(&mut c);
    c.final_summary();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn advert(agent: &str, seq: u64) -> AgentAdvert {
    AgentAdvert {
        agent_id: AgentId::new(agent),
        hostname: format!("{agent}.local"),
        attributes: Attributes::new()
            .with("arch", "aarch64")
            .with("zone", "dock-3"),
        total: Resources::new()
            .with_scalar("cpus", 4.0)
            .with_scalar("mem", 4096.0),
        reserved: Resources::new(),
        seq,
        incarnation: 1,
        tasks: Vec::new(),
        version: String::new(),
        last_census: None,
    }
}

async fn agent_count(master: &MasterHandle) -> usize {
    master
        .inspect(|core| core.agents_view().len())
        .await
        .unwrap()
}

/// The child: a master (agents are not declared lost: they hold no tokens) that answers
/// each `count` line on stdin with its number of agents, and ends at EOF.
fn run_child_master(listen: &str) {
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut config =
            MasterDaemonConfig::new(NetConfig::master(vec![listen.to_owned()]), dir.path());
        config.core.agent_lost_timeout_ms = 3_600_000;
        let master = MasterDaemon::start(config).await.unwrap();
        println!("ready");
        let mut lines = child_master::stdin_lines();
        while let Some(line) = lines.recv().await {
            if line.trim() == "count" {
                println!("{}", agent_count(&master).await);
            }
        }
        master.shutdown().await;
    });
}

/// A master in its own process listening on a free loopback port, and that endpoint.
fn start_master() -> (ChildMaster, String) {
    let endpoint = child_master::free_loopback_endpoint();
    (ChildMaster::start(CHILD_ENV, &endpoint), endpoint)
}

fn agents(master: &mut ChildMaster) -> usize {
    master.ask("count").parse().unwrap()
}

/// The master process's resident memory, MiB.
fn rss_mib(master: &ChildMaster) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", master.pid())).unwrap();
    let kib: f64 = (status.lines())
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

/// User plus system CPU time of the master process so far.
fn cpu(master: &ChildMaster) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", master.pid())).unwrap();
    // Fields after the command name (which may hold spaces) closed by ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Puts are dropped until the publisher has learnt of the master's subscriber.
async fn wait_for_route(master: &mut ChildMaster, publisher: &Net) {
    loop {
        publisher
            .put(&publisher.keys().agent_advert("route"), &advert("route", 0))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        if agents(master) > 0 {
            return;
        }
    }
}

/// One advert of every agent in `agents`, `per_tick` every [`PACE_TICK`].
async fn publish_paced(publisher: &Net, agents: &[String], seq: u64, per_tick: usize) {
    let mut tick = tokio::time::interval(PACE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for batch in agents.chunks(per_tick) {
        tick.tick().await;
        for agent in batch {
            publisher
                .put(&publisher.keys().agent_advert(agent), &advert(agent, seq))
                .await
                .unwrap();
        }
    }
}

fn adverts() {
    let rt = runtime();
    let (mut master, endpoint) = start_master();
    let publisher = rt
        .block_on(Net::open(&NetConfig::member(vec![endpoint])))
        .unwrap();
    rt.block_on(wait_for_route(&mut master, &publisher));

    // Paced: the fleet's steady state. The first period registers the agents, the second
    // is re-adverts of known agents, which is what a fleet sends all day.
    let fleet: Vec<String> = (0..FLEET_AGENTS).map(|i| format!("agent-{i:05}")).collect();
    let per_tick = FLEET_AGENTS / (ADVERT_PERIOD.as_millis() / PACE_TICK.as_millis()) as usize;
    for (seq, what) in [(1, "first adverts"), (2, "re-adverts")] {
        let (cpu0, t0) = (cpu(&master), Instant::now());
        rt.block_on(publish_paced(&publisher, &fleet, seq, per_tick));
        std::thread::sleep(Duration::from_millis(200));
        let (cpu, wall) = (cpu(&master) - cpu0, t0.elapsed());
        let known = agents(&mut master);
        println!(
            "advert_cpu {what}: {FLEET_AGENTS} agents in {:.2} s ({:.0} adverts/s): master CPU {:.3} s = {:.1}% of a core; it knows {known} agents",
            wall.as_secs_f64(),
            FLEET_AGENTS as f64 / wall.as_secs_f64(),
            cpu.as_secs_f64(),
            100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        );
    }
    // Read by `cargo xtask bench --report`.
    println!(
        "master_rss with {FLEET_AGENTS} virtual agents: rss {:.1} MiB",
        rss_mib(&master)
    );

    drop(publisher);
}

struct OfferBench {
    _dir: tempfile::TempDir,
    _master: MasterHandle,
    _publisher: Net,
    client: FrameworkClient,
    events: Events,
    offers: u64,
}

async fn offer_setup() -> OfferBench {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        MasterDaemonConfig::new(NetConfig::loopback_ephemeral(), dir.path().join("store"));
    config.core.agent_lost_timeout_ms = 3_600_000;
    let master = MasterDaemon::start(config).await.unwrap();
    let publisher = Net::open(&NetConfig::member(master.endpoints().to_vec()))
        .await
        .unwrap();
    while agent_count(&master).await < OFFER_AGENTS {
        for i in 0..OFFER_AGENTS {
            let agent = format!("offered-{i}");
            publisher
                .put(&publisher.keys().agent_advert(&agent), &advert(&agent, 1))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let net = Net::open(&NetConfig::member(master.endpoints().to_vec()))
        .await
        .unwrap();
    let (client, events) = FrameworkClient::subscribe(net, FrameworkConfig::new("decliner"))
        .await
        .unwrap();
    OfferBench {
        _dir: dir,
        _master: master,
        _publisher: publisher,
        client,
        events,
        offers: 0,
    }
}

impl OfferBench {
    /// Takes the next `Offers` event and declines all its offers with a 0 s filter.
    async fn round(&mut self) {
        loop {
            match self.events.recv().await {
                Some(Event::Offers { offers }) => {
                    self.offers += offers.len() as u64;
                    let ids = offers.into_iter().map(|o| o.offer_id).collect();
                    let filters = Filters {
                        refuse_seconds: 0.0,
                    };
                    self.client.decline(ids, filters).await.unwrap();
                    return;
                }
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
    }
}

fn offers(c: &mut Criterion) {
    let rt = runtime();
    let mut bench = rt.block_on(offer_setup());
    let (mut offers, mut took) = (0u64, Duration::ZERO);
    c.bench_function("offer_decline_round", |b| {
        b.iter_custom(|iters| {
            let before = bench.offers;
            let start = Instant::now();
            rt.block_on(async {
                for _ in 0..iters {
                    bench.round().await;
                }
            });
            let elapsed = start.elapsed();
            offers += bench.offers - before;
            took += elapsed;
            elapsed
        })
    });
    if took > Duration::ZERO {
        println!(
            "offers: {offers} offers in {:.2} s through the real transport = {:.0} offers/s ({OFFER_AGENTS} agents, every offer declined with a 0 s filter)",
            took.as_secs_f64(),
            offers as f64 / took.as_secs_f64()
        );
    }
}
