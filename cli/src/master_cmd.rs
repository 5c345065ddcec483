//! `wasmos master`: the master daemon, a zenoh router that agents, frameworks and tools
//! connect to. Runs until Ctrl-C or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use master_daemon::{
    AGENT_LOST_TIMEOUT_MS_DEFAULT, MasterDaemon, MasterDaemonConfig, MasterHandle,
};
use net::NetConfig;

use crate::leader::{self, ElectionArgs};

#[derive(clap::Args, Clone)]
pub struct MasterArgs {
    /// zenoh endpoint to listen on (repeatable); default tcp/127.0.0.1:7447, or the
    /// `--zenoh-config` file's.
    #[arg(long, value_name = "ENDPOINT", value_parser = crate::args::listen_endpoint)]
    pub listen: Vec<String>,
    /// zenoh configuration file (zenoh's json5 format); `--listen` overrides its endpoints.
    #[arg(long, value_name = "FILE")]
    pub zenoh_config: Option<PathBuf>,
    /// Directory of the module store; default /var/lib/wasmos/master-store when it can be
    /// created, else ~/.local/share/wasmos/master-store.
    #[arg(long, value_name = "DIR")]
    pub store_dir: Option<PathBuf>,
    /// The master's own state apart from modules (the ids of the frameworks it runs, so
    /// that they survive a restart); default /var/lib/wasmos/master-state (or
    /// ~/.local/share/wasmos/master-state), or `STORE_DIR.state` with `--store-dir`.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Seconds after an agent's liveliness token goes before its tasks are `lost`.
    #[arg(long, value_name = "SECS", default_value_t = AGENT_LOST_TIMEOUT_MS_DEFAULT / 1000)]
    pub agent_lost_timeout: u64,
    /// Seconds, from start (with --etcd, from taking the lead), that agents and
    /// frameworks have to re-register after a master restart: a master that finds it
    /// replaces an earlier one makes no offers before, unless every agent of the earlier
    /// one is back sooner; tasks not back by then are `lost` (0: no hold). Default 5, or
    /// 30 with --etcd: agents of a leader that hung take that long to find the new one.
    #[arg(long, value_name = "SECS")]
    pub reregistration_window: Option<u64>,
    /// A role's DRF weight, `ROLE=WEIGHT` (repeatable): the role's frameworks then share
    /// by the weights they give. Roles not named here weigh 1, and the first framework
    /// of such a role sets the weight the later ones must give.
    #[arg(long = "role-weight", value_name = "ROLE=WEIGHT", value_parser = crate::args::role_weight)]
    pub role_weights: Vec<(String, f64)>,
    /// Agents with free GPUs are offered only to frameworks that declare the GPU
    /// capability (so CPU work does not hold a GPU box, nor count a GPU in its DRF share).
    /// With this, other frameworks may have one that no GPU framework takes, once every
    /// agent without GPUs was looked at. `wasmos up` turns it on: its agent is all there is.
    #[arg(long)]
    pub gpu_agents_last_resort: bool,
    /// Allocation policy: `drf` (the built-in hierarchical weighted DRF) or the path of an
    /// allocator module (`MODULE.wasm`, see executor-sdk/README.md); a module that fails a
    /// pass is replaced by the built-in DRF for that pass, with an error logged.
    #[arg(long, default_value = "drf", value_name = "drf|MODULE.wasm")]
    pub allocator: String,
    /// Address of the operator HTTP API, `/metrics` and the web dashboard (port 0: any
    /// free port; the address served is printed as `http on http://ADDR`).
    #[arg(long, value_name = "ADDR", default_value = HTTP_ADDR_DEFAULT)]
    pub http: SocketAddr,
    /// Serve no HTTP API, metrics or dashboard.
    #[arg(long, conflicts_with = "http")]
    pub no_http: bool,
    /// Do not start the built-in jobs framework (`wasmos run` and `POST /api/v1/jobs`
    /// then have no scheduler to go to).
    #[arg(long)]
    pub no_jobs: bool,
    /// Take only modules signed by this key (repeatable: any of them): the module store
    /// refuses other uploads, telling the uploader why (unsigned, tampered, untrusted
    /// key), and so are scheduler and allocator modules. Agents check on their own
    /// (`wasmos agent --trust`). See `wasmos module --help`.
    #[arg(long = "trust", value_name = "KEY.pub")]
    pub trust: Vec<PathBuf>,
    /// Run secure as this identity (`DIR/master`, made by `wasmos secure init DIR`):
    /// listen only on `tls/` endpoints with mutual TLS (default tls/127.0.0.1:7447), let
    /// in only identities of `DIR`'s CA, each limited by an access control generated from
    /// `DIR` to its own keys, and hold them to `DIR/policy.toml`. Identities issued later
    /// are admitted when the master restarts.
    #[arg(long, value_name = "DIR/master")]
    pub identity: Option<PathBuf>,
}

/// Where `wasmos master` and `wasmos up` serve HTTP unless told otherwise.
pub const HTTP_ADDR_DEFAULT: &str = "127.0.0.1:5050";

/// `wasmos master`'s arguments: a master's, and the election only a standalone master
/// takes part in.
#[derive(clap::Args)]
pub struct MasterCommandArgs {
    #[command(flatten)]
    pub master: MasterArgs,
    #[command(flatten)]
    pub election: ElectionArgs,
}

pub fn run(args: MasterCommandArgs) -> anyhow::Result<ExitCode> {
    let MasterCommandArgs {
        master: args,
        election,
    } = args;
    runtime()?.block_on(async {
        let candidate = master_net(&args.listen, &args.zenoh_config)
            .listen
            .join(",");
        let mut leadership =
            leader::lead_if_elected(&election, proto::keys::DEFAULT_CLUSTER, &candidate).await?;
        let master = start(&args, &election.etcd).await?;
        print_endpoints(&master)?;
        let lost = tokio::select! {
            r = wait_for_signal() => { r?; None }
            reason = leader::lost(&mut leadership) => Some(reason),
        };
        tracing::info!("stopping the master");
        master.shutdown().await;
        if let Some(reason) = lost {
            anyhow::bail!("lost the leadership ({reason}); exiting so that a standby leads");
        }
        if let Some(leadership) = leadership {
            leadership.resign().await;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The window `--reregistration-window` gives, else the default for a lone master or,
/// with `etcd` endpoints, for a standby.
fn reregistration_window_ms(args: &MasterArgs, etcd: &[String]) -> u64 {
    match args.reregistration_window {
        Some(secs) => secs.saturating_mul(1000),
        None if etcd.is_empty() => master::config::REREGISTRATION_WINDOW_MS_DEFAULT,
        None => master::config::REREGISTRATION_WINDOW_MS_STANDBY_DEFAULT,
    }
}

/// Starts the master `args` describe; with `etcd` endpoints, its in-process frameworks
/// keep their state there (for a standby taking over).
pub async fn start(args: &MasterArgs, etcd: &[String]) -> anyhow::Result<MasterHandle> {
    let store_dir = match &args.store_dir {
        Some(dir) => dir.clone(),
        None => default_dir("master-store"),
    };
    let mut config =
        MasterDaemonConfig::new(master_net(&args.listen, &args.zenoh_config), store_dir);
    match (&args.state_dir, &args.store_dir) {
        (Some(dir), _) => config.state_dir.clone_from(dir),
        (None, None) => config.state_dir = default_dir("master-state"),
        (None, Some(_)) => {}
    }
    config.jobs = !args.no_jobs;
    config.etcd = etcd.to_vec();
    config.core.agent_lost_timeout_ms = args.agent_lost_timeout.saturating_mul(1000);
    config.core.reregistration_window_ms = reregistration_window_ms(args, etcd);
    config.core.role_weights = args.role_weights.iter().cloned().collect();
    config.core.gpu_agents_last_resort = args.gpu_agents_last_resort;
    config.allocator.clone_from(&args.allocator);
    config.trusted = crate::module_cmd::trusted_keys(&args.trust)?;
    config.http = (!args.no_http).then_some(args.http);
    match &args.identity {
        Some(identity) => crate::identity::secure_master(&mut config, identity)?,
        None => tracing::warn!(
            "insecure: plain TCP, no authentication; anyone who reaches the master's port \
             may do anything (run with --identity, see `wasmos secure --help`)"
        ),
    }
    MasterDaemon::start(config)
        .await
        .context("starting the master")
}

/// A router on `listen`; with a zenoh configuration file and no `--listen`, the file's
/// endpoints.
fn master_net(listen: &[String], zenoh_config: &Option<PathBuf>) -> NetConfig {
    let mut net = NetConfig::master(listen.to_vec()).with_zenoh_config_file(zenoh_config.clone());
    if listen.is_empty() && zenoh_config.is_some() {
        net.listen.clear();
    }
    net
}

/// Prints `listening on ENDPOINT`, one line each, for agents and tools to connect to,
/// then `http on http://ADDR` when the HTTP API is served.
///
/// All lines go out in one write, and a stdout nobody reads any more (a parent that read
/// the first line and closed the pipe) only logs a warning: the master keeps serving.
pub fn print_endpoints(master: &MasterHandle) -> anyhow::Result<()> {
    let mut text = String::new();
    for endpoint in master.endpoints() {
        text.push_str(&format!("listening on {endpoint}\n"));
    }
    if let Some(addr) = master.http_addr() {
        text.push_str(&format!("http on http://{addr}\n"));
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        tracing::warn!(%e, "could not print the endpoints on stdout");
    }
    Ok(())
}

/// `/var/lib/wasmos/NAME` when it can be created, else `~/.local/share/wasmos/NAME`.
pub fn default_dir(name: &str) -> PathBuf {
    let system = PathBuf::from("/var/lib/wasmos").join(name);
    if std::fs::create_dir_all(&system).is_ok() {
        return system;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".local/share/wasmos").join(name)
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Returns on Ctrl-C (SIGINT) or SIGTERM.
pub async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
