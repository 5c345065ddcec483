//! `wasmos agent`: the agent of one device.
//!
//! `wasmos agent --print-advert [--root DIR] [--config FILE] [--work-dir DIR]` prints the
//! advert the agent would publish, as JSON (a contract). Without `--print-advert` the agent
//! daemon runs: it connects to the master at `--connect` (waiting until one answers), serves
//! tasks, and stops on Ctrl-C or SIGTERM.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent::detect::{self, AgentConfig};
use agent::oci::OciConfig;
use agent::wasm::EngineKind;
use agent_daemon::{AgentDaemon, AgentDaemonConfig};
use anyhow::Context;
use net::NetConfig;
use proto::AgentAdvert;
use signing::TrustedKeys;

use crate::master_cmd::{runtime, wait_for_signal};

#[derive(clap::Args)]
pub struct AgentArgs {
    /// Print the advert this agent would publish (JSON) and exit.
    #[arg(long)]
    pub print_advert: bool,
    /// Read devices under this directory instead of `/` (a fake tree in the Linux layout).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Agent configuration, TOML (see agent/agent.example.toml).
    #[arg(long, value_name = "FILE", env = "WASMOS_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Work directory (agent id, code cache, sandboxes); overrides the configuration's.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// zenoh endpoint of the master to connect to; default tcp/127.0.0.1:7447, or the
    /// `--zenoh-config` file's. Repeat it for standby masters: the agent connects to
    /// whichever answers and moves to another when it goes.
    #[arg(long, value_name = "ENDPOINT", value_parser = crate::args::connect_endpoint)]
    pub connect: Vec<String>,
    /// zenoh configuration file (zenoh's json5 format); `--connect` overrides its endpoints.
    #[arg(long, value_name = "FILE")]
    pub zenoh_config: Option<PathBuf>,
    /// Run no OCI tasks (they fail with a reason). By default the agent runs them when it
    /// runs as root with runc on PATH.
    #[arg(long)]
    pub no_oci: bool,
    /// Run only WASM modules signed by this key (repeatable: any of them; added to the
    /// configuration's `trust`). Any other module fails before it is compiled, its reason
    /// saying why: unsigned, tampered, or signed by an untrusted key. See
    /// `wasmos module --help`.
    #[arg(long = "trust", value_name = "KEY.pub")]
    pub trust: Vec<PathBuf>,
    /// What runs WASM tasks: `native` (Cranelift machine code) or `pulley` (wasmtime's
    /// interpreter: no executable memory, any CPU, slower). The advert says which
    /// (`engine=native|pulley`), so frameworks can constrain on it.
    #[arg(long, value_name = "native|pulley", default_value = "native")]
    pub engine: EngineKind,
    #[command(flatten)]
    pub identity: crate::identity::IdentityArgs,
}

/// What the agent runs with: its advert, its work directory, the keys it trusts.
pub struct AgentSetup {
    pub advert: AgentAdvert,
    pub work_dir: PathBuf,
    pub trusted: TrustedKeys,
    pub engine: EngineKind,
}

/// The advert attribute naming the agent's WASM engine (`native` or `pulley`).
pub const ENGINE_ATTRIBUTE: &str = "engine";

/// How long the agent waits for a master before it says it is waiting.
const WAITING_NOTICE_AFTER: Duration = Duration::from_secs(1);

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    if !args.root.is_dir() {
        eprintln!("error: --root {}: not a directory", args.root.display());
        return Ok(ExitCode::from(2));
    }
    let AgentSetup {
        advert,
        work_dir,
        trusted,
        engine,
    } = setup(&args)?;
    if args.print_advert {
        println!("{}", serde_json::to_string_pretty(&advert)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut net =
        NetConfig::member(args.connect.clone()).with_zenoh_config_file(args.zenoh_config.clone());
    if args.connect.is_empty() && args.zenoh_config.is_some() {
        net.connect.clear();
    }
    let net = args.identity.apply_agent(net)?;
    let mut config = AgentDaemonConfig::new(net, advert, work_dir.clone());
    config.oci = oci_config(args.no_oci, &work_dir)?;
    config.trusted = trusted;
    config.engine = engine;
    let runtime = runtime()?;
    let code = runtime.block_on(run_daemon(config));
    // zenoh opens a session in a blocking section that waits for a master: a signal
    // while it waits must not wait for it to end.
    runtime.shutdown_background();
    code
}

/// The OCI executor's configuration when this agent should run OCI tasks: unless
/// `no_oci`, when it runs as root (runc's containers need it) and runc is on PATH. When
/// not, a log line says why, and OCI tasks sent here fail with a reason; but an error
/// when a previous agent left containers in `work_dir`, which only OCI tasks recover.
pub fn oci_config(no_oci: bool, work_dir: &Path) -> anyhow::Result<Option<OciConfig>> {
    let why_not = if no_oci {
        "--no-oci was given"
    } else if !running_as_root() {
        "the agent does not run as root, which runc's containers need"
    } else if !on_path(RUNC) {
        "runc is not on PATH (apt-get install runc)"
    } else {
        tracing::info!(work_dir = %work_dir.display(), "OCI tasks enabled (runc)");
        return Ok(Some(OciConfig::new(work_dir)));
    };
    let left = agent::oci::containers_left(work_dir);
    if let Some(first) = left.first() {
        anyhow::bail!(
            "OCI tasks cannot run here ({why_not}), but a previous agent left {} container(s) \
             in {} (the first: {}); they may still run, unseen, or have ended with their outcome \
             not yet reported. Start the agent with OCI \
             tasks so that it recovers and reports them, or stop them first (runc --root \
             {} delete --force ID) and remove their bundles",
            left.len(),
            work_dir.display(),
            first.display(),
            work_dir.join("runc").display(),
        );
    }
    if no_oci {
        tracing::info!("OCI tasks disabled: {why_not}");
    } else {
        tracing::warn!("OCI tasks disabled: {why_not}; WASM tasks run as usual");
    }
    Ok(None)
}

/// The runc binary the OCI executor runs (see `agent::oci::OciConfig::runc`).
const RUNC: &str = "runc";

/// The owner of `/proc/self` is the process's effective user.
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Runs the agent daemon until Ctrl-C or SIGTERM, which stop it at any time, also while
/// it waits for a master.
async fn run_daemon(config: AgentDaemonConfig) -> anyhow::Result<ExitCode> {
    let connect = match config.net.connect.join(", ") {
        endpoints if endpoints.is_empty() => "the zenoh configuration's endpoints".to_owned(),
        endpoints => endpoints,
    };
    let agent_id = config.advert.agent_id.clone();
    tracing::info!(agent_id = %agent_id.as_str(), %connect, "agent connecting");
    // Its own task: opening the session blocks the task it runs on until a master answers.
    let mut start = tokio::spawn(AgentDaemon::start(config));
    let mut waiting_said = false;
    // One listener for the whole wait: a signal that came between two listeners (one
    // dropped at the notice, the next not yet made) was missed, and the agent ran on.
    let signal = wait_for_signal();
    tokio::pin!(signal);
    let agent = loop {
        tokio::select! {
            started = &mut start => break started.context("starting the agent")?.context("starting the agent")?,
            r = &mut signal => {
                eprintln!("stopped before a master answered at {connect}");
                return r.map(|()| ExitCode::SUCCESS);
            }
            () = tokio::time::sleep(WAITING_NOTICE_AFTER), if !waiting_said => {
                waiting_said = true;
                eprintln!("agent {}: waiting for a master at {connect} (Ctrl-C to stop)", agent_id.as_str());
            }
        }
    };
    println!("agent {} connected to {connect}", agent.agent_id().as_str());
    let admission = (agent.net().principal() != proto::principal::ANONYMOUS)
        .then(|| tokio::spawn(say_if_not_admitted(agent.net().clone(), connect.clone())));
    let taken_over = tokio::select! {
        r = signal => {
            r?;
            false
        }
        () = agent.taken_over() => true,
    };
    if let Some(check) = admission {
        check.abort();
    }
    if taken_over {
        eprintln!(
            "error: agent {} stopped: another process has its id now (this one could not be \
             reached long enough to be counted gone, and its tasks were told lost); its \
             tasks were killed",
            agent.agent_id().as_str()
        );
        agent.shutdown().await;
        return Ok(ExitCode::from(1));
    }
    tracing::info!("stopping the agent");
    agent.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// How long a secure agent waits for the master to answer its identity at all.
const ADMISSION_WAIT_MS: u64 = 5_000;
/// How often it asks in that time (the master's token may come a little after its
/// router accepts connections).
const ADMISSION_ASK_EVERY_MS: u64 = 250;

/// A secure master that does not know this identity drops everything it sends without a
/// word: its access control has no rule for the name. Asking whether the master is alive
/// is allowed to every identity it admits, so no answer in [`ADMISSION_WAIT_MS`] tells
/// the two apart.
async fn say_if_not_admitted(net: net::Net, connect: String) {
    let master_alive = net.keys().master_alive();
    let started = std::time::Instant::now();
    loop {
        match net.alive_now(&master_alive, ADMISSION_ASK_EVERY_MS).await {
            Ok(true) => return,
            outcome => tracing::debug!(?outcome, "admission check"),
        }
        if started.elapsed() >= Duration::from_millis(ADMISSION_WAIT_MS) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(ADMISSION_ASK_EVERY_MS)).await;
    }
    eprintln!(
        "warning: the master at {connect} does not answer identity {}: it does not admit it \
         (issued after the master started? restart the master to admit it); this agent gets \
         no tasks until it does",
        net.principal()
    );
}

/// The advert of this agent (detection under `--root`, the configuration, and the agent id
/// kept in the work directory), its work directory, and the keys of `--trust` and the
/// configuration's `trust`.
pub fn setup(args: &AgentArgs) -> anyhow::Result<AgentSetup> {
    let mut config = match &args.config {
        Some(path) => AgentConfig::load(path)?,
        None => AgentConfig::default(),
    };
    if let Some(dir) = &args.work_dir {
        config.work_dir = Some(dir.clone());
    }
    if let Some(name) = args.identity.name()? {
        // The access control lets an agent use only `agents/<its certificate's name>/…`.
        match &config.agent_id {
            Some(id) if id.trim() != name => anyhow::bail!(
                "the configuration's agent_id {id:?} is not the identity's name {name:?}: \
                 on a secure cluster an agent's id is its certificate's name"
            ),
            _ => config.agent_id = Some(name),
        }
    }
    let work_dir = detect::work_dir(&config);
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("work directory {}", work_dir.display()))?;
    let detected = detect::detect(&args.root, &work_dir);
    let agent_id = detect::agent_id(&config, &work_dir, &detected.hostname)?;
    let incarnation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let trust: Vec<PathBuf> = config.trust.iter().chain(&args.trust).cloned().collect();
    let trusted = crate::module_cmd::trusted_keys(&trust)?;
    let mut advert = detect::advert(detected, &config, agent_id, incarnation)?;
    // What runs the tasks is `--engine`'s to say, whatever the configuration's attributes say.
    advert.attributes.set(ENGINE_ATTRIBUTE, args.engine.name());
    Ok(AgentSetup {
        advert,
        work_dir,
        trusted,
        engine: args.engine,
    })
}
