//! `wasmos demo`: two-level scheduling you can watch, in one process, in a few seconds.
//!
//! It starts a master on a free loopback port, three agents of different shapes (an
//! aarch64 board, an x86_64 box with a GPU, a small x86_64 sensor box), and two native
//! frameworks of weights 1 and 3 that compete for them with ~1.5 s sensor-sampling tasks
//! plus a few tasks that only some agents can take. Every offer, accept, task result and
//! change of the frameworks' DRF dominant shares is printed as it happens. Exit status 0
//! when every task finished, 1 otherwise (a task did not finish, or the deadline passed).
//!
//! Everything is real: zenoh over loopback (mutual TLS with the access control on, unless
//! `--insecure`), the master's DRF allocator, wasmtime on the agents, the module store. Only the agents' adverts are made up, so that one
//! machine can stand for a fleet.

mod fleet;
mod scheduler;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use master_daemon::{MasterDaemon, MasterDaemonConfig, MasterHandle};
use net::NetConfig;
use proto::ModuleRef;
use tokio::task::JoinSet;

use crate::master_cmd::runtime;
use scheduler::{FrameworkPlan, Tally};

/// What `wasmos demo --help` says.
pub const LONG_ABOUT: &str = "Start a whole cluster in this process and watch two frameworks share it.\n\n\
A master (on a free loopback port), three agents of different shapes (an aarch64 board, an \
x86_64 box with a GPU, a small x86_64 sensor box) and two native frameworks of weights 1 \
and 3 run here, over real zenoh and wasmtime. The demo prints offers, accepts, the \
frameworks' DRF dominant shares and task results as they happen, and exits 0 once every \
task finished (1 if one did not, or if --timeout passed).\n\n\
It runs the example modules built by `cargo xtask modules` (p1_sensor, p1_hello, \
p2_hello); `cargo xtask demo` builds them and runs this.";

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Directory of the example modules; default target/modules here, else next to the
    /// wasmos binary's target directory.
    #[arg(long, value_name = "DIR", env = "WASMOS_MODULES")]
    pub modules: Option<PathBuf>,
    /// Give up, with exit status 1, when the tasks have not all ended after this long.
    #[arg(long, value_name = "SECS", default_value_t = DEMO_TIMEOUT_S_DEFAULT)]
    pub timeout: u64,
    /// Plain TCP without authentication. By default the demo makes a cluster CA and an
    /// identity for the master, each agent and each framework, and runs everything over
    /// mutual TLS with the access control on, as `wasmos up` does.
    #[arg(long)]
    pub insecure: bool,
}

/// The whole demo normally takes well under 20 s; this is how long it may take at most.
const DEMO_TIMEOUT_S_DEFAULT: u64 = 60;
/// How often the frameworks' shares are read from the master (printed when they changed).
const SHARES_POLL_MS: u64 = 250;
/// The modules the demo runs, by file stem.
const MODULES: [&str; 3] = ["p1_sensor", "p1_hello", "p2_hello"];

/// The example modules, stored in the master's module store.
pub struct DemoModules {
    pub sensor: ModuleRef,
    pub hello_p1: ModuleRef,
    pub hello_p2: ModuleRef,
}

/// Prints one timestamped line per event, from any task.
#[derive(Clone)]
pub struct Printer {
    start: Instant,
}

impl Printer {
    pub fn line(&self, what: &str, text: impl std::fmt::Display) {
        let at = self.start.elapsed().as_secs_f64();
        println!("[{at:6.2}s] {what:<9} {text}");
    }
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let modules_dir = modules_dir(args.modules.as_deref())?;
    let work = tempfile::Builder::new()
        .prefix("wasmos-demo-")
        .tempdir()
        .context("creating the demo's temporary directory")?;
    let printer = Printer {
        start: Instant::now(),
    };
    let timeout = Duration::from_secs(args.timeout);
    let result = runtime()?.block_on(async {
        let run = demo(&modules_dir, work.path(), !args.insecure, printer.clone());
        tokio::time::timeout(timeout, run).await
    });
    match result {
        Ok(Ok(tallies)) => Ok(report(&printer, &tallies)),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            eprintln!(
                "error: the demo did not finish within {} s (see the last lines above for what was still running); \
                 a loaded machine may need --timeout",
                args.timeout
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// Starts the cluster (`secure`: over mutual TLS, everyone its own identity), runs both
/// frameworks to the end, and stops everything.
async fn demo(
    modules_dir: &Path,
    work: &Path,
    secure: bool,
    printer: Printer,
) -> anyhow::Result<Vec<Tally>> {
    let cluster = secure.then(|| work.join("cluster"));
    let config = master_config(work, cluster.as_deref())?;
    let master = MasterDaemon::start(config)
        .await
        .context("starting the master")?;
    let endpoints = master.endpoints().to_vec();
    let how = match &cluster {
        Some(_) => "mutual TLS, access control on",
        None => "plain TCP, insecure",
    };
    printer.line(
        "master",
        format!("listening on {} ({how})", endpoints.join(", ")),
    );
    let modules = store_modules(&master, modules_dir)?;
    let device_dir = fleet::sensor_device(work)?;
    let agents = fleet::start_agents(&endpoints, work, cluster.as_deref(), &printer).await?;

    let plans = scheduler::plans(&modules, &device_dir);
    let total_tasks: usize = plans.iter().map(|p| p.tasks.len()).sum();
    let names: Vec<String> = plans.iter().map(|p| p.name.clone()).collect();
    let mut frameworks = JoinSet::new();
    for plan in plans {
        let net = framework_net(&endpoints, cluster.as_deref(), &plan.name);
        frameworks.spawn(run_framework(net, plan, printer.clone()));
    }
    let master = Arc::new(master);
    let seen = Arc::new(Mutex::new(Holdings::new()));
    let shares = tokio::spawn(watch_shares(
        master.clone(),
        names,
        printer.clone(),
        seen.clone(),
    ));
    let mut tallies = Vec::new();
    let mut first_error = None;
    while let Some(joined) = frameworks.join_next().await {
        match joined.context("a framework task panicked") {
            Ok(Ok(tally)) => tallies.push(tally),
            Ok(Err(e)) | Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    shares.abort();
    // Its clone of the master handle is dropped once the aborted task is.
    let _ = shares.await;
    print_contention(&printer, &seen);
    printer.line("cluster", format!("{total_tasks} tasks ended; stopping"));
    for agent in agents {
        agent.shutdown().await;
    }
    if let Ok(master) = Arc::try_unwrap(master) {
        master.shutdown().await;
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(tallies),
    }
}

/// The master on a free loopback port; on a secure cluster in `cluster`, made here with
/// an identity for every agent and framework of the demo.
fn master_config(work: &Path, cluster: Option<&Path>) -> anyhow::Result<MasterDaemonConfig> {
    let Some(dir) = cluster else {
        return Ok(MasterDaemonConfig::new(
            NetConfig::loopback_ephemeral(),
            work.join("store"),
        ));
    };
    let agents = fleet::device_names().map(|name| (name, proto::Role::Agent));
    let frameworks = scheduler::FRAMEWORK_NAMES.map(|name| (name, proto::Role::Framework));
    let identities: Vec<_> = agents.chain(frameworks).collect();
    crate::identity::ensure_cluster(dir, &identities)?;
    let net = NetConfig::master(vec!["tls/127.0.0.1:0".to_owned()]);
    let mut config = MasterDaemonConfig::new(net, work.join("store"));
    crate::identity::secure_master(&mut config, &dir.join("master"))?;
    Ok(config)
}

fn framework_net(endpoints: &[String], cluster: Option<&Path>, name: &str) -> NetConfig {
    let net = NetConfig::member(endpoints.to_vec());
    match cluster {
        Some(dir) => net.with_tls(name, crate::identity::tls_of(dir, name)),
        None => net,
    }
}

async fn run_framework(
    net: NetConfig,
    plan: FrameworkPlan,
    printer: Printer,
) -> anyhow::Result<Tally> {
    let name = plan.name.clone();
    let net = net::Net::open(&net)
        .await
        .with_context(|| format!("framework {name}: connecting to the master"))?;
    let tally = scheduler::run(net.clone(), plan, printer).await;
    let _ = net.close().await;
    tally.with_context(|| format!("framework {name}"))
}

/// Each framework's name and weight, and its number of tasks, at one moment.
type Holding = Vec<(String, String, usize)>;
/// How many share polls saw each holding while every framework held tasks.
type Holdings = BTreeMap<Holding, u32>;

/// Prints the frameworks' DRF dominant shares, as the master's allocator sees them, each
/// time they change (allocation counts what runs and what is offered); counts in `seen`
/// how long each holding lasted while every framework held tasks.
async fn watch_shares(
    master: Arc<MasterHandle>,
    names: Vec<String>,
    printer: Printer,
    seen: Arc<Mutex<Holdings>>,
) {
    let mut last = String::new();
    let mut tick = tokio::time::interval(Duration::from_millis(SHARES_POLL_MS));
    loop {
        tick.tick().await;
        let Some(views) = master.inspect(|core| core.frameworks_view()).await else {
            return;
        };
        let ours: Vec<_> = names
            .iter()
            .filter_map(|name| views.iter().find(|v| &v.name == name))
            .collect();
        let line: Vec<String> = ours
            .iter()
            .map(|v| {
                format!(
                    "{} {:.3} (weight {}, {} tasks)",
                    v.name, v.dominant_share, v.role_weight, v.tasks
                )
            })
            .collect();
        let line = line.join(" | ");
        if !line.is_empty() && line != last {
            printer.line("shares", &line);
            last = line;
        }
        let holding: Holding = ours
            .iter()
            .map(|v| (v.name.clone(), v.role_weight.to_string(), v.tasks))
            .collect();
        if holding.len() == names.len() && holding.iter().all(|(_, _, tasks)| *tasks > 0) {
            let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            *seen.entry(holding).or_default() += 1;
        }
    }
}

/// One line on what DRF did while the frameworks competed: the holding that lasted
/// longest.
fn print_contention(printer: &Printer, seen: &Mutex<Holdings>) {
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
    let Some((holding, polls)) = seen.iter().max_by_key(|(_, polls)| **polls) else {
        return;
    };
    let held: Vec<String> = holding
        .iter()
        .map(|(name, weight, tasks)| format!("{name} (weight {weight}) {tasks}"))
        .collect();
    let secs = f64::from(*polls) * SHARES_POLL_MS as f64 / 1000.0;
    printer.line(
        "drf",
        format!(
            "while the frameworks competed, they mostly held tasks as {} (for {secs:.2} s)",
            held.join(" : ")
        ),
    );
}

/// Puts the example modules in the master's store, as `wasmos run` would upload them.
fn store_modules(master: &MasterHandle, dir: &Path) -> anyhow::Result<DemoModules> {
    let store = |stem: &str| -> anyhow::Result<ModuleRef> {
        let path = dir.join(format!("{stem}.wasm"));
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let sha256 = master
            .store()
            .insert(&bytes)
            .with_context(|| format!("storing {}", path.display()))?;
        Ok(ModuleRef {
            sha256,
            size_bytes: bytes.len() as u64,
            name: format!("{stem}.wasm"),
        })
    };
    Ok(DemoModules {
        sensor: store("p1_sensor")?,
        hello_p1: store("p1_hello")?,
        hello_p2: store("p2_hello")?,
    })
}

/// `--modules`, else `target/modules` under the working directory, else the `modules`
/// directory beside the binary's profile directory (`target/debug/wasmos` →
/// `target/modules`); an error saying how to build them when none holds them all.
fn modules_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let holds_all = |dir: &Path| {
        MODULES
            .iter()
            .all(|m| dir.join(format!("{m}.wasm")).is_file())
    };
    let candidates: Vec<PathBuf> = match given {
        Some(dir) => vec![dir.to_path_buf()],
        None => {
            let beside_binary = std::env::current_exe()
                .ok()
                .and_then(|exe| Some(exe.parent()?.parent()?.join("modules")));
            std::iter::once(PathBuf::from("target/modules"))
                .chain(beside_binary)
                .collect()
        }
    };
    if let Some(dir) = candidates.iter().find(|d| holds_all(d)) {
        return Ok(dir.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
    anyhow::bail!(
        "the example modules ({}) are not in {}: build them with `cargo xtask modules` \
         (or run `cargo xtask demo`, which builds them and then runs the demo)",
        MODULES.map(|m| format!("{m}.wasm")).join(", "),
        looked.join(" or ")
    )
}

/// The closing lines, and the exit status: 0 when every task finished.
fn report(printer: &Printer, tallies: &[Tally]) -> ExitCode {
    let mut all_finished = true;
    for tally in tallies {
        printer.line(
            "summary",
            format!(
                "{}: {} of {} tasks finished",
                tally.name, tally.finished, tally.launched
            ),
        );
        all_finished &= tally.finished == tally.launched && tally.launched > 0;
    }
    let secs = printer.start.elapsed().as_secs_f64();
    if all_finished {
        println!("demo done in {secs:.1} s: every task finished");
        ExitCode::SUCCESS
    } else {
        eprintln!("error: some tasks did not finish (see the `failed` lines above)");
        ExitCode::from(1)
    }
}
