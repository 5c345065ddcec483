//! `wasmos up`: an embedded cluster in one process, a master and one agent for this
//! machine, no external service. Runs until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use agent::wasm::EngineKind;
use agent_daemon::{AgentDaemon, AgentDaemonConfig};
use anyhow::Context;
use net::NetConfig;

use crate::agent_cmd::{self, AgentArgs};
use crate::identity;
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
    /// Plain TCP without authentication instead of the default: a cluster CA and
    /// identities in the local cluster directory (`/var/lib/wasmos/cluster`, else
    /// `~/.local/share/wasmos/cluster`; `STATE_DIR/cluster` with `--state-dir`), mutual
    /// TLS and the access control (see `wasmos secure --help`). Tools on this machine
    /// find the local cluster's admin identity by themselves.
    #[arg(long, conflicts_with = "identity")]
    pub insecure: bool,
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
        engine: EngineKind::Native,
        identity: crate::identity::IdentityArgs::default(),
    };
    let agent_cmd::AgentSetup {
        mut advert,
        work_dir,
        trusted,
        engine,
    } = agent_cmd::setup(&agent_args)?;
    let mut master_args = args.master.clone();
    // One machine: when its agent has a GPU, there is no other agent for CPU work.
    master_args.gpu_agents_last_resort = true;
    let agent_tls = match (&master_args.identity, args.insecure) {
        (_, true) => None,
        (Some(identity), false) => {
            let dir = identity.parent().unwrap_or(std::path::Path::new("."));
            Some(secure_local_agent(dir, &mut advert)?)
        }
        (None, false) => {
            let dir = match &master_args.state_dir {
                Some(state) => state.join("cluster"),
                None => identity::local_cluster_dir(),
            };
            let tls = secure_local_agent(&dir, &mut advert)?;
            master_args.identity = Some(dir.join("master"));
            Some(tls)
        }
    };
    runtime()?.block_on(async {
        let master = master_cmd::start(&master_args, &[]).await?;
        // The agent is a client of the master like any other, over the master's own
        // endpoints, so that what runs here is what runs on a fleet.
        let mut net = NetConfig::member(master.endpoints().to_vec());
        if let Some(tls) = agent_tls {
            net = net.with_tls(advert.agent_id.as_str(), tls);
        }
        let mut agent_config = AgentDaemonConfig::new(net, advert, work_dir.clone());
        agent_config.oci = agent_cmd::oci_config(args.no_oci, &work_dir)?;
        agent_config.trusted = trusted;
        agent_config.engine = engine;
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

/// Makes `dir` a cluster unless it is one, with an agent identity for the local agent,
/// whose id becomes the identity's name (ids a certificate cannot carry become `-`s);
/// says where the credentials are.
fn secure_local_agent(
    dir: &std::path::Path,
    advert: &mut proto::AgentAdvert,
) -> anyhow::Result<net::TlsFiles> {
    let name: String = advert
        .agent_id
        .as_str()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let made = identity::ensure_cluster(dir, &[(&name, proto::Role::Agent)])?;
    if made {
        eprintln!("made a cluster CA and identities in {}", dir.display());
    }
    let tools = if identity::local_admin().is_some_and(|admin| admin == dir.join("admin")) {
        "tools on this machine use it by themselves".to_owned()
    } else {
        format!("tools: --identity {}/admin", dir.display())
    };
    eprintln!(
        "secure: mutual TLS with access control; {tools}; the HTTP API wants \
         `Authorization: Bearer $(cat {}/admin.token)`",
        dir.display()
    );
    advert.agent_id = proto::AgentId::new(name.as_str());
    Ok(identity::tls_of(dir, &name))
}
