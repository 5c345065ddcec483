//! `wasmos up`: an embedded cluster in one process, a master and one agent for this
//! machine, no external service. Runs until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use agent_daemon::{AgentDaemon, AgentDaemonConfig};
use anyhow::Context;
use net::NetConfig;

use crate::agent_cmd::{self, AgentArgs};
use crate::master_cmd::{self, MasterArgs, runtime, wait_for_signal};

#[derive(clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub master: MasterArgs,
    /// The local agent's work directory (see `wasmos agent --help`).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// The local agent's configuration, TOML (see agent/agent.example.toml).
    #[arg(long, value_name = "FILE", env = "WASMOS_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// The local agent runs no OCI tasks (see `wasmos agent --help`).
    #[arg(long)]
    pub no_oci: bool,
}

pub fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let agent_args = AgentArgs {
        print_advert: false,
        root: PathBuf::from("/"),
        config: args.config.clone(),
        work_dir: args.work_dir.clone(),
        connect: Vec::new(),
        zenoh_config: None,
        no_oci: args.no_oci,
        // The local agent trusts what the master trusts.
        trust: args.master.trust.clone(),
        identity: crate::identity::IdentityArgs::default(),
    };
    let agent_cmd::AgentSetup {
        advert,
        work_dir,
        trusted,
    } = agent_cmd::setup(&agent_args)?;
    runtime()?.block_on(async {
        let master = master_cmd::start(&args.master).await?;
        // The agent is a client of the master like any other, over the master's own
        // endpoints, so that what runs here is what runs on a fleet.
        let net = NetConfig::member(master.endpoints().to_vec());
        let mut agent_config = AgentDaemonConfig::new(net, advert, work_dir.clone());
        agent_config.oci = agent_cmd::oci_config(args.no_oci, &work_dir);
        agent_config.trusted = trusted;
        let agent = AgentDaemon::start(agent_config)
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
