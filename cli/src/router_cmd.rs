//! `wasmos router`: a site router. The devices of a site connect to it, and it connects
//! to the master, so a site needs one uplink; zenoh routes between them (agents' adverts,
//! tokens, statuses, commands and module fetches go through it unchanged). It is a plain
//! zenoh router with wasmos' configuration (`net::NetConfig::site_router`), so an
//! ordinary `zenohd -c FILE` with the configuration `--print-config` writes does the same.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use net::{Liveness, Net, NetConfig};

use crate::master_cmd::{runtime, wait_for_signal};

#[derive(clap::Args)]
pub struct RouterArgs {
    /// The master's zenoh endpoint (repeatable); default tcp/127.0.0.1:7447, or the
    /// `--zenoh-config` file's. The router starts whether or not it answers and keeps
    /// connecting.
    #[arg(long, value_name = "ENDPOINT", value_parser = crate::args::connect_endpoint)]
    pub connect: Vec<String>,
    /// Where the site's devices connect (repeatable); default tcp/0.0.0.0:7447 (every
    /// interface).
    #[arg(long, value_name = "ENDPOINT", value_parser = crate::args::listen_endpoint)]
    pub listen: Vec<String>,
    /// zenoh configuration file (zenoh's json5 format); `--connect` and `--listen`
    /// override its endpoints.
    #[arg(long, value_name = "FILE")]
    pub zenoh_config: Option<PathBuf>,
    /// Print the zenoh configuration this router runs (JSON, which json5 is) and exit:
    /// `wasmos router --connect … --print-config > site.json5; zenohd -c site.json5`.
    #[arg(long)]
    pub print_config: bool,
}

pub fn run(args: RouterArgs) -> anyhow::Result<ExitCode> {
    let mut config = NetConfig::site_router(args.connect.clone(), args.listen.clone())
        .with_zenoh_config_file(args.zenoh_config.clone());
    if args.zenoh_config.is_some() {
        // The file's endpoints, unless given here.
        if args.connect.is_empty() {
            config.connect.clear();
        }
        if args.listen.is_empty() {
            config.listen.clear();
        }
    }
    if args.print_config {
        println!("{}", printable(&config)?);
        return Ok(ExitCode::SUCCESS);
    }
    runtime()?.block_on(serve(config))
}

/// The zenoh configuration as pretty JSON, without the node id (each zenohd picks its own).
fn printable(config: &NetConfig) -> anyhow::Result<String> {
    let zenoh = config
        .to_zenoh()
        .context("building the zenoh configuration")?;
    let mut json: serde_json::Value =
        serde_json::from_str(&zenoh.to_string()).context("reading zenoh's configuration")?;
    if let Some(object) = json.as_object_mut() {
        object.remove("id");
    }
    Ok(serde_json::to_string_pretty(&json)?)
}

/// Routes until Ctrl-C or SIGTERM, saying when the master comes and goes.
async fn serve(config: NetConfig) -> anyhow::Result<ExitCode> {
    let net = Net::open(&config).await.context("starting the router")?;
    for endpoint in net.endpoints().await {
        println!("listening on {endpoint}");
    }
    let master = config.connect.join(", ");
    tracing::info!(%master, "site router started; connecting to the master");
    let mut watch = net.watch_alive(&net.keys().master_alive()).await?;
    let watching = tokio::spawn(async move {
        while let Some(change) = watch.recv().await {
            match change {
                Liveness::Alive { .. } => tracing::info!("master reachable"),
                Liveness::Gone { .. } => tracing::warn!("the master is gone; waiting for it"),
            }
        }
    });
    wait_for_signal().await?;
    watching.abort();
    tracing::info!("stopping the router");
    if let Err(e) = net.close().await {
        tracing::warn!(%e, "closing the router's session");
    }
    Ok(ExitCode::SUCCESS)
}
