//! `wasmos agent`: the agent of one device.
//!
//! Now: `wasmos agent --print-advert [--root DIR] [--config FILE] [--work-dir DIR]` prints
//! the advert the agent would publish, as JSON (a contract). The daemon mode (serving tasks
//! over zenoh) is not in this build; without `--print-advert` the command says so and exits
//! with status 2.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use agent::detect::{self, AgentConfig};
use anyhow::Context;
use proto::AgentAdvert;

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
}

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    if !args.print_advert {
        eprintln!(
            "error: the agent daemon mode is not available in this build; \
             use `wasmos agent --print-advert` to print what this agent would advertise"
        );
        return Ok(ExitCode::from(2));
    }
    if !args.root.is_dir() {
        eprintln!("error: --root {}: not a directory", args.root.display());
        return Ok(ExitCode::from(2));
    }
    let advert = build_advert(&args)?;
    println!("{}", serde_json::to_string_pretty(&advert)?);
    Ok(ExitCode::SUCCESS)
}

/// The advert of this agent: detection under `--root`, the configuration, and the agent id
/// kept in the work directory.
pub fn build_advert(args: &AgentArgs) -> anyhow::Result<AgentAdvert> {
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
    detect::advert(detected, &config, agent_id, incarnation).map_err(anyhow::Error::msg)
}
