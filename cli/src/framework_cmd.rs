//! `wasmos framework add MODULE.wasm --name NAME`: a framework whose scheduler is a module
//! run inside the master (uploaded to its module store, then hosted on request; see
//! `master_daemon::frameworks::hosted`), `wasmos framework list`: those frameworks and their
//! health, and `wasmos framework remove NAME`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use master_daemon::tools;
use net::Net;
use net::modules::{MODULE_BYTES_MAX, upload_module};
use proto::operator::{
    HOSTED_CONFIG_BYTES_MAX, HostedFramework, HostedReply, HostedRequest, OperatorReply,
    OperatorRequest,
};

use crate::master_cmd::runtime;

/// How long the master may take to compile and subscribe a hosted scheduler.
const ADD_TIMEOUT_MS: u64 = 30_000;
/// How long the master may take to list its hosted schedulers.
const LIST_TIMEOUT_MS: u64 = 5_000;

#[derive(clap::Subcommand)]
pub enum FrameworkCommand {
    /// Register a framework whose scheduler is MODULE.wasm (executor-sdk/README.md), run
    /// inside the master in wasmtime; prints the framework id.
    Add(AddArgs),
    /// List the frameworks whose scheduler the master runs, with their health.
    List(ListHostedArgs),
    /// Stop the hosted framework NAME: it tears down (the master kills its tasks) and
    /// leaves the list; prints its id.
    Remove(RemoveArgs),
}

#[derive(clap::Args)]
pub struct RemoveArgs {
    /// The framework's name (see `wasmos framework list`).
    name: String,
    #[command(flatten)]
    master: crate::listing::ConnectArgs,
}

#[derive(clap::Args)]
pub struct AddArgs {
    /// The scheduler module.
    module: PathBuf,
    /// The framework's name.
    #[arg(long)]
    name: String,
    /// The role it allocates under.
    #[arg(long, default_value = "default")]
    role: String,
    /// Its DRF weight within the role.
    #[arg(long, default_value_t = 1.0, value_parser = crate::args::positive_amount)]
    weight: f64,
    /// Configuration handed to the module's `start` (for the SDK's modules, `key = value`
    /// lines).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    master: crate::listing::ConnectArgs,
}

#[derive(clap::Args)]
pub struct ListHostedArgs {
    /// Print a JSON array with one object per framework instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    master: crate::listing::ConnectArgs,
}

pub fn run(command: FrameworkCommand) -> anyhow::Result<ExitCode> {
    match command {
        FrameworkCommand::Add(args) => add(args),
        FrameworkCommand::List(args) => list(args),
        FrameworkCommand::Remove(args) => remove(args),
    }
}

fn remove(args: RemoveArgs) -> anyhow::Result<ExitCode> {
    let framework_id = runtime()?.block_on(async {
        let net = crate::listing::open(&args.master).await?;
        let request = HostedRequest::Remove { name: args.name };
        let reply = query(&net, request, LIST_TIMEOUT_MS).await;
        crate::listing::close(&net).await;
        match reply? {
            HostedReply::Removed { framework_id } => Ok(framework_id),
            HostedReply::Error { message } => Err(anyhow!("the master refused: {message}")),
            other => Err(anyhow!("the master answered another question: {other:?}")),
        }
    })?;
    println!("{}", framework_id.as_str());
    Ok(ExitCode::SUCCESS)
}

fn add(args: AddArgs) -> anyhow::Result<ExitCode> {
    let module = read_capped(&args.module, MODULE_BYTES_MAX)?;
    let config = match &args.config {
        Some(path) => read_capped(path, HOSTED_CONFIG_BYTES_MAX as u64)?,
        None => Vec::new(),
    };
    let module_name = args.module.file_name().map_or_else(
        || "scheduler.wasm".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let framework_id = runtime()?.block_on(async {
        let net = crate::listing::open(&args.master).await?;
        let result = async {
            let module = upload_module(&net, &module_name, &module, |_| {})
                .await
                .context("uploading the scheduler module")?;
            let request = HostedRequest::Add(HostedFramework {
                name: args.name.clone(),
                role: args.role.clone(),
                weight: args.weight,
                module,
                config,
            });
            match query(&net, request, ADD_TIMEOUT_MS).await? {
                HostedReply::Added { framework_id } => Ok(framework_id),
                HostedReply::Error { message } => Err(anyhow!("the master refused: {message}")),
                other => Err(anyhow!("the master answered another question: {other:?}")),
            }
        }
        .await;
        crate::listing::close(&net).await;
        result
    })?;
    println!("{}", framework_id.as_str());
    Ok(ExitCode::SUCCESS)
}

fn list(args: ListHostedArgs) -> anyhow::Result<ExitCode> {
    let rows = runtime()?.block_on(async {
        let net = crate::listing::open(&args.master).await?;
        let reply = query(&net, HostedRequest::List, LIST_TIMEOUT_MS).await;
        crate::listing::close(&net).await;
        match reply? {
            HostedReply::List { rows } => Ok(rows),
            HostedReply::Error { message } => Err(anyhow!("the master refused: {message}")),
            other => Err(anyhow!("the master answered another question: {other:?}")),
        }
    })?;
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()
        .context("the master's rows are not JSON")?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
    } else {
        let columns = [
            ("ID", "framework_id"),
            ("NAME", "name"),
            ("MODULE", "module"),
            ("HEALTH", "health"),
            ("FAILURES", "failures_total"),
            ("LAST_ERROR", "last_error"),
        ];
        write!(out, "{}", crate::listing::table(&columns, &rows))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

async fn query(net: &Net, request: HostedRequest, timeout_ms: u64) -> anyhow::Result<HostedReply> {
    let request = OperatorRequest::Hosted(request);
    // A refusal (policy, validation) is the master's own words; only silence gets a hint.
    let reply = tools::ask(net, &request, timeout_ms).await.map_err(|e| {
        let no_answer = e.no_master_answer();
        let e = anyhow!(e);
        match no_answer {
            true => e.context("the master did not answer"),
            false => e,
        }
    })?;
    match reply {
        OperatorReply::Hosted(reply) => Ok(reply),
        other => Err(anyhow!(tools::unexpected(&other))),
    }
}

fn read_capped(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
    crate::files::read_capped(path, max).with_context(|| format!("reading {}", path.display()))
}
