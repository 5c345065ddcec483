//! `wasmos up`: an embedded cluster in one process, a master and one agent for this
//! machine, no external service. Runs until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cluster::agent::{AgentDaemon, AgentDaemonConfig};
use cluster::master::AGENT_LOST_TIMEOUT_MS_DEFAULT;
use net::NetConfig;

use crate::agent_cmd::{self, AgentArgs};
use crate::master_cmd::{self, MasterArgs, runtime, wait_for_signal};

#[derive(clap::Args)]
pub struct UpArgs {
    /// zenoh endpoint the master listens on (repeatable); default tcp/127.0.0.1:7447.
    #[arg(long, value_name = "ENDPOINT")]
    pub listen: Vec<String>,
    /// zenoh configuration file (zenoh's json5 format) for the master.
    #[arg(long, value_name = "FILE")]
    pub zenoh_config: Option<PathBuf>,
    /// Directory of the master's module store (see `wasmos master --help`).
    #[arg(long, value_name = "DIR")]
    pub store_dir: Option<PathBuf>,
    /// The local agent's work directory (see `wasmos agent --help`).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// The local agent's configuration, TOML (see agent/agent.example.toml).
    #[arg(long, value_name = "FILE", env = "WASMOS_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
}

pub fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let agent_args = AgentArgs {
        print_advert: false,
        root: PathBuf::from("/"),
        config: args.config.clone(),
        work_dir: args.work_dir.clone(),
        connect: None,
        zenoh_config: None,
    };
    let (advert, work_dir) = agent_cmd::build_advert(&agent_args)?;
    let master_args = MasterArgs {
        listen: args.listen,
        zenoh_config: args.zenoh_config,
        store_dir: args.store_dir,
        agent_lost_timeout: AGENT_LOST_TIMEOUT_MS_DEFAULT / 1000,
    };
    runtime()?.block_on(async {
        let master = master_cmd::start(&master_args).await?;
        // The agent is a client of the master like any other, over the master's own
        // endpoints, so that what runs here is what runs on a fleet.
        let net = NetConfig::member(master.endpoints().to_vec());
        let agent = AgentDaemon::start(AgentDaemonConfig::new(net, advert, work_dir))
            .await
            .context("starting the local agent")?;
        master_cmd::print_endpoints(&master)?;
        tracing::info!(agent_id = %agent.agent_id().as_str(), "embedded cluster up");
        wait_for_signal().await?;
        agent.shutdown().await;
        master.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}
