//! `wasmos agent`: the agent of one device.
//!
//! `wasmos agent --print-advert [--root DIR] [--config FILE] [--work-dir DIR]` prints the
//! advert the agent would publish, as JSON (a contract). Without `--print-advert` the agent
//! daemon runs: it connects to the master at `--connect` (waiting until one answers), serves
//! tasks, and stops on Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use agent::detect::{self, AgentConfig};
use anyhow::Context;
use cluster::agent::{AgentDaemon, AgentDaemonConfig};
use net::NetConfig;
use proto::AgentAdvert;

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
    /// `--zenoh-config` file's.
    #[arg(long, value_name = "ENDPOINT")]
    pub connect: Option<String>,
    /// zenoh configuration file (zenoh's json5 format); `--connect` overrides its endpoints.
    #[arg(long, value_name = "FILE")]
    pub zenoh_config: Option<PathBuf>,
}

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    if !args.root.is_dir() {
        eprintln!("error: --root {}: not a directory", args.root.display());
        return Ok(ExitCode::from(2));
    }
    let (advert, work_dir) = build_advert(&args)?;
    if args.print_advert {
        println!("{}", serde_json::to_string_pretty(&advert)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut net = NetConfig::member(args.connect.iter().cloned().collect())
        .with_zenoh_config_file(args.zenoh_config.clone());
    if args.connect.is_none() && args.zenoh_config.is_some() {
        net.connect.clear();
    }
    runtime()?.block_on(run_daemon(AgentDaemonConfig::new(net, advert, work_dir)))
}

/// Runs the agent daemon until Ctrl-C or SIGTERM.
async fn run_daemon(config: AgentDaemonConfig) -> anyhow::Result<ExitCode> {
    let connect = match config.net.connect.join(", ") {
        endpoints if endpoints.is_empty() => "the zenoh configuration's endpoints".to_owned(),
        endpoints => endpoints,
    };
    tracing::info!(agent_id = %config.advert.agent_id.as_str(), %connect, "agent connecting");
    let agent = tokio::select! {
        agent = AgentDaemon::start(config) => agent.context("starting the agent")?,
        r = wait_for_signal() => return r.map(|()| ExitCode::SUCCESS),
    };
    println!("agent {} connected to {connect}", agent.agent_id().as_str());
    wait_for_signal().await?;
    tracing::info!("stopping the agent");
    agent.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// The advert of this agent (detection under `--root`, the configuration, and the agent id
/// kept in the work directory) and its work directory.
pub fn build_advert(args: &AgentArgs) -> anyhow::Result<(AgentAdvert, PathBuf)> {
    let mut config = match &args.config {
        Some(path) => AgentConfig::load(path)?,
        None => AgentConfig::default(),
    };
    if let Some(dir) = &args.work_dir {
        config.work_dir = Some(dir.clone());
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
    let advert =
        detect::advert(detected, &config, agent_id, incarnation).map_err(anyhow::Error::msg)?;
    Ok((advert, work_dir))
}
