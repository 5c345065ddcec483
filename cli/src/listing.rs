//! The operator's client commands over a running cluster: `wasmos agents`, `frameworks`,
//! `ps` (a table, or with `--json` an array with one object per row) and `kill`.
//!
//! The rows are the master's answer to the operator protocol on `master/admin`: the
//! master core's rows (`proto::operator`), in the JSON that `GET /api/v1/agents`,
//! `/frameworks` and `/tasks` serve, each with its `id` first. Tasks include the recently
//! ended ones; agents include the recently lost ones (`state` says which). `kill` (and
//! `logs`, in [`crate::logs`]) ask the master too, which answers them as it answers the
//! HTTP API.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use master_daemon::tools::{self, ToolError};
use net::{Net, NetConfig};
use proto::operator::{OperatorError, OperatorRequest};
use proto::{TaskId, TaskState};
use serde_json::{Map, Value};

use crate::master_cmd::runtime;

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print a JSON array with one object per row instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct PsArgs {
    #[command(flatten)]
    pub list: ListArgs,
    /// How many ended tasks to show, the most recently ended first (the master lists at
    /// most 200).
    #[arg(long, value_name = "N", default_value_t = master::view::ENDED_TASKS_LISTED_MAX)]
    pub history: usize,
}

#[derive(clap::Args)]
pub struct ConnectArgs {
    /// zenoh endpoint of the master; default tcp/127.0.0.1:7447, or the `--zenoh-config`
    /// file's.
    #[arg(long, value_name = "ENDPOINT", value_parser = crate::args::connect_endpoint)]
    pub connect: Option<String>,
    /// zenoh configuration file (zenoh's json5 format); `--connect` overrides its endpoints.
    #[arg(long, value_name = "FILE")]
    pub zenoh_config: Option<PathBuf>,
    #[command(flatten)]
    pub identity: crate::identity::IdentityArgs,
}

impl ConnectArgs {
    /// Where the master is looked for, for messages.
    pub(crate) fn endpoint(&self) -> String {
        if let (None, Some(file)) = (&self.connect, &self.zenoh_config) {
            return format!("the endpoints of {}", file.display());
        }
        match self.net_config() {
            Ok(config) => crate::identity::master_at(&config),
            Err(_) => net::DEFAULT_ENDPOINT.to_owned(),
        }
    }

    fn net_config(&self) -> anyhow::Result<NetConfig> {
        let connect = self.connect.iter().cloned().collect();
        let mut config = NetConfig::tool(connect).with_zenoh_config_file(self.zenoh_config.clone());
        if self.connect.is_none() && self.zenoh_config.is_some() {
            config.connect.clear();
        }
        let told_where = self.connect.is_some() || self.zenoh_config.is_some();
        self.identity.apply_tool(config, told_where)
    }
}

#[derive(clap::Args)]
pub struct TaskArgs {
    /// The task id (see `wasmos ps`).
    pub task: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Which listing, with the key its rows are identified by and its table columns.
#[derive(Clone, Copy)]
pub enum Listing {
    Agents,
    Frameworks,
    Tasks,
}

impl Listing {
    fn request(self) -> OperatorRequest {
        match self {
            Listing::Agents => OperatorRequest::Agents,
            Listing::Frameworks => OperatorRequest::Frameworks,
            Listing::Tasks => OperatorRequest::Tasks,
        }
    }

    /// Table columns: heading and the row's key.
    fn columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Listing::Agents => &[
                ("ID", "id"),
                ("STATE", "state"),
                ("HOSTNAME", "hostname"),
                ("TASKS", "tasks"),
                ("TOTAL", "total"),
                ("FREE", "free"),
                ("ATTRIBUTES", "attributes"),
            ],
            Listing::Frameworks => &[
                ("ID", "id"),
                ("NAME", "name"),
                ("ROLE", "role"),
                ("WEIGHT", "weight"),
                ("DOMINANT_SHARE", "dominant_share"),
                ("TASKS", "tasks"),
                ("OFFERS", "offers"),
                ("CONNECTED", "connected"),
            ],
            Listing::Tasks => &[
                ("ID", "id"),
                ("STATE", "state"),
                ("EXIT", "exit_code"),
                ("NAME", "name"),
                ("FRAMEWORK", "framework_id"),
                ("AGENT", "agent_id"),
                ("RESOURCES", "resources"),
                ("REASON", "reason"),
            ],
        }
    }
}

pub fn list(listing: Listing, args: ListArgs) -> anyhow::Result<ExitCode> {
    let rows = fetch(listing, &args.connect)?;
    print_rows(listing, &args, &rows)
}

/// `wasmos ps`: pending and live tasks, then at most `--history` ended ones.
pub fn ps(args: PsArgs) -> anyhow::Result<ExitCode> {
    let rows = fetch(Listing::Tasks, &args.list.connect)?;
    let mut ended = 0;
    let rows: Vec<Value> = (rows.into_iter())
        .filter(|row| {
            let state = row["state"].as_str().and_then(TaskState::parse);
            if !state.is_some_and(TaskState::is_terminal) {
                return true;
            }
            ended += 1;
            ended <= args.history
        })
        .collect();
    print_rows(Listing::Tasks, &args.list, &rows)
}

/// One listing of the master, in a session of its own.
fn fetch(listing: Listing, connect: &ConnectArgs) -> anyhow::Result<Vec<Value>> {
    runtime()?.block_on(async {
        let net = open(connect).await?;
        let rows = rows(&net, listing, &connect.endpoint()).await;
        close(&net).await;
        rows
    })
}

fn print_rows(listing: Listing, args: &ListArgs, rows: &[Value]) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(rows)?)?;
    } else {
        write!(out, "{}", table(listing.columns(), rows))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub fn kill(args: TaskArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let endpoint = &args.connect.endpoint();
        let net = open(&args.connect).await?;
        let result = async {
            tools::kill_task(&net, &TaskId::new(args.task.clone()))
                .await
                .map_err(|e| task_error(e, &args.task, endpoint))
                .with_context(|| format!("killing task {}", args.task))?;
            println!("kill sent to task {}", args.task);
            Ok(ExitCode::SUCCESS)
        }
        .await;
        close(&net).await;
        result
    })
}

/// A tool session to the master at `endpoint`; fails with what to do when none answers.
pub(crate) async fn open(connect: &ConnectArgs) -> anyhow::Result<Net> {
    (Net::open(&connect.net_config()?).await)
        .map_err(|e| crate::identity::open_failed(e, &connect.endpoint()))
}

pub(crate) async fn close(net: &Net) {
    if let Err(e) = net.close().await {
        tracing::debug!(%e, "closing the tool session");
    }
}

/// A query that got no answer means the endpoint is up but no master serves on it.
fn tool_error(error: ToolError, endpoint: &str) -> anyhow::Error {
    match error {
        e if e.no_master_answer() => {
            tracing::debug!(%e, "query");
            crate::identity::no_master(endpoint)
        }
        ToolError::Operator(e) => anyhow!("refused: {e}"),
        ToolError::Refused(message) => anyhow!("refused: {message}"),
        other => anyhow!(other),
    }
}

/// As [`tool_error`], and an unknown task says where the ids are.
pub(crate) fn task_error(error: ToolError, task: &str, endpoint: &str) -> anyhow::Error {
    match error {
        ToolError::Operator(OperatorError::NotFound(_)) => {
            anyhow!("no task {task} in the cluster: see `wasmos ps` for the task ids")
        }
        other => tool_error(other, endpoint),
    }
}

/// The rows of one of the master's views (each has its `id` first).
async fn rows(net: &Net, listing: Listing, endpoint: &str) -> anyhow::Result<Vec<Value>> {
    let json = tools::listing_json(net, &listing.request())
        .await
        .map_err(|e| tool_error(e, endpoint))?;
    serde_json::from_value(json).context("the master's answer is not rows")
}

/// An aligned table with a heading line (`columns`: heading and the row's key); `(none)`
/// when there are no rows.
pub(crate) fn table(columns: &[(&str, &str)], rows: &[Value]) -> String {
    let mut lines: Vec<Vec<String>> = vec![columns.iter().map(|(h, _)| (*h).to_owned()).collect()];
    for row in rows {
        lines.push(columns.iter().map(|(_, key)| cell(row.get(*key))).collect());
    }
    let widths: Vec<usize> = (0..columns.len())
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let padded: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(none)\n");
    }
    out
}

/// One cell: strings as they are, numbers rounded for reading, resources and attributes as
/// `key=value` pairs.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.3}"),
            _ => n.to_string(),
        },
        Some(Value::Object(map)) => pairs(map),
        Some(other) => other.to_string(),
    }
}

/// `{"scalars": {"cpus": 2}}` → `cpus=2`; a flat map → `k=v`.
fn pairs(map: &Map<String, Value>) -> String {
    let mut parts = Vec::new();
    for (key, value) in map {
        match value {
            Value::Object(inner) if !inner.is_empty() => parts.push(pairs(inner)),
            Value::Object(_) => {}
            Value::String(s) => parts.push(format!("{key}={s}")),
            other => parts.push(format!("{key}={other}")),
        }
    }
    parts.retain(|p| !p.is_empty());
    parts.join(",")
}
