//! `wasmos master`: the master daemon, a zenoh router that agents, frameworks and tools
//! connect to. Runs until Ctrl-C or SIGTERM.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cluster::master::{
    AGENT_LOST_TIMEOUT_MS_DEFAULT, MasterDaemon, MasterDaemonConfig, MasterHandle,
};
use net::NetConfig;

#[derive(clap::Args)]
pub struct MasterArgs {
    /// zenoh endpoint to listen on (repeatable); default tcp/127.0.0.1:7447, or the
    /// `--zenoh-config` file's.
    #[arg(long, value_name = "ENDPOINT")]
    pub listen: Vec<String>,
    /// zenoh configuration file (zenoh's json5 format); `--listen` overrides its endpoints.
    #[arg(long, value_name = "FILE")]
    pub zenoh_config: Option<PathBuf>,
    /// Directory of the module store; default /var/lib/wasmos/master-store when it can be
    /// created, else ~/.local/share/wasmos/master-store.
    #[arg(long, value_name = "DIR")]
    pub store_dir: Option<PathBuf>,
    /// Seconds after an agent's liveliness token goes before its tasks are `lost`.
    #[arg(long, value_name = "SECS", default_value_t = AGENT_LOST_TIMEOUT_MS_DEFAULT / 1000)]
    pub agent_lost_timeout: u64,
}

pub fn run(args: MasterArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let master = start(&args).await?;
        print_endpoints(&master)?;
        wait_for_signal().await?;
        tracing::info!("stopping the master");
        master.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Starts the master `args` describe.
pub async fn start(args: &MasterArgs) -> anyhow::Result<MasterHandle> {
    let store_dir = match &args.store_dir {
        Some(dir) => dir.clone(),
        None => default_store_dir(),
    };
    let mut config =
        MasterDaemonConfig::new(master_net(&args.listen, &args.zenoh_config), store_dir);
    config.agent_lost_timeout_ms = args.agent_lost_timeout.saturating_mul(1000);
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

/// Prints `listening on ENDPOINT`, one line each, for agents and tools to connect to.
pub fn print_endpoints(master: &MasterHandle) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for endpoint in master.endpoints() {
        writeln!(out, "listening on {endpoint}")?;
    }
    out.flush()?;
    Ok(())
}

fn default_store_dir() -> PathBuf {
    let system = PathBuf::from("/var/lib/wasmos/master-store");
    if std::fs::create_dir_all(&system).is_ok() {
        return system;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".local/share/wasmos/master-store")
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
