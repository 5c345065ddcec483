//! The operator's client commands over a running cluster: `wasmos agents`, `frameworks`,
//! `ps` (a table, or with `--json` an array with one object per row), `logs` and `kill`.
//!
//! The rows are the master's `master/admin` answer: the rows of the same
//! `http_api::ClusterState` snapshot that `GET /api/v1/agents`, `/frameworks` and `/tasks`
//! serve (one code path), each with an `id` added. Tasks include the recently ended
//! ones; agents include the recently lost ones (`state` says which).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use master_daemon::tools::{self, ToolError};
use net::{Net, NetConfig};
use proto::admin::{AdminRequest, LogsReply};
use proto::{AgentId, FrameworkId, TaskId};
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
pub struct ConnectArgs {
    /// zenoh endpoint of the master; default tcp/127.0.0.1:7447, or the `--zenoh-config`
    /// file's.
    #[arg(long, value_name = "ENDPOINT")]
    pub connect: Option<String>,
    /// zenoh configuration file (zenoh's json5 format); `--connect` overrides its endpoints.
    #[arg(long, value_name = "FILE")]
    pub zenoh_config: Option<PathBuf>,
}

impl ConnectArgs {
    /// Where the master is looked for, for messages.
    fn endpoint(&self) -> String {
        match (&self.connect, &self.zenoh_config) {
            (Some(endpoint), _) => endpoint.clone(),
            (None, Some(file)) => format!("the endpoints of {}", file.display()),
            (None, None) => net::DEFAULT_ENDPOINT.to_owned(),
        }
    }

    fn net_config(&self) -> NetConfig {
        let connect = self.connect.iter().cloned().collect();
        let mut config = NetConfig::tool(connect).with_zenoh_config_file(self.zenoh_config.clone());
        if self.connect.is_none() && self.zenoh_config.is_some() {
            config.connect.clear();
        }
        config
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
    fn request(self) -> AdminRequest {
        match self {
            Listing::Agents => AdminRequest::Agents,
            Listing::Frameworks => AdminRequest::Frameworks,
            Listing::Tasks => AdminRequest::Tasks,
        }
    }

    /// The key of the master's view that holds the row's id, copied to `id` in the output.
    fn id_key(self) -> &'static str {
        match self {
            Listing::Agents => "agent_id",
            Listing::Frameworks => "framework_id",
            Listing::Tasks => "task_id",
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
            ],
        }
    }
}

pub fn list(listing: Listing, args: ListArgs) -> anyhow::Result<ExitCode> {
    let rows = runtime()?.block_on(async {
        let net = open(&args.connect).await?;
        let rows = rows(&net, listing, &args.connect.endpoint()).await;
        close(&net).await;
        rows
    })?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
    } else {
        write!(out, "{}", table(listing, &rows))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub fn logs(args: TaskArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let endpoint = &args.connect.endpoint();
        let net = open(&args.connect).await?;
        let result = async {
            let task = find_task(&net, &args.task, endpoint).await?;
            let agent = AgentId::new(field(&task, "agent_id"));
            let reply = tools::task_logs(&net, &agent, &TaskId::new(args.task.clone()))
                .await
                .map_err(|e| tool_error(e, endpoint))
                .with_context(|| {
                    format!("logs of task {} from agent {}", args.task, agent.as_str())
                })?;
            print_logs(reply)
        }
        .await;
        close(&net).await;
        result
    })
}

pub fn kill(args: TaskArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let endpoint = &args.connect.endpoint();
        let net = open(&args.connect).await?;
        let result = async {
            let task = find_task(&net, &args.task, endpoint).await?;
            let framework = FrameworkId::new(field(&task, "framework_id"));
            tools::kill_task(&net, &framework, &TaskId::new(args.task.clone()))
                .await
                .map_err(|e| tool_error(e, endpoint))
                .with_context(|| format!("killing task {}", args.task))?;
            println!("kill sent to task {}", args.task);
            Ok(ExitCode::SUCCESS)
        }
        .await;
        close(&net).await;
        result
    })
}

fn no_master(endpoint: &str) -> anyhow::Error {
    anyhow!(
        "no master answered at {endpoint}: start one with `wasmos up` or `wasmos master`, \
         or pass --connect"
    )
}

/// A tool session to the master at `endpoint`; fails with what to do when none answers.
async fn open(connect: &ConnectArgs) -> anyhow::Result<Net> {
    Net::open(&connect.net_config()).await.map_err(|e| {
        tracing::debug!(%e, "opening the tool session");
        no_master(&connect.endpoint())
    })
}

async fn close(net: &Net) {
    if let Err(e) = net.close().await {
        tracing::debug!(%e, "closing the tool session");
    }
}

/// A query that got no answer means the endpoint is up but no master serves on it.
fn tool_error(error: ToolError, endpoint: &str) -> anyhow::Error {
    match error {
        ToolError::Query(e) => {
            tracing::debug!(%e, "query");
            no_master(endpoint)
        }
        ToolError::Refused(message) => anyhow!("refused: {message}"),
    }
}

/// The rows of one of the master's views, each with an `id` key added.
async fn rows(net: &Net, listing: Listing, endpoint: &str) -> anyhow::Result<Vec<Value>> {
    let json = tools::admin_json(net, listing.request())
        .await
        .map_err(|e| tool_error(e, endpoint))?;
    let rows: Vec<Map<String, Value>> =
        serde_json::from_str(&json).context("the master's answer is not a JSON array of rows")?;
    Ok(rows
        .into_iter()
        .map(|row| with_id(row, listing.id_key()))
        .collect())
}

/// `row` with `id` (a copy of `id_key`) first.
fn with_id(row: Map<String, Value>, id_key: &str) -> Value {
    let mut out = Map::new();
    if let Some(id) = row.get(id_key) {
        out.insert("id".to_owned(), id.clone());
    }
    out.extend(row);
    Value::Object(out)
}

async fn find_task(net: &Net, task: &str, endpoint: &str) -> anyhow::Result<Value> {
    rows(net, Listing::Tasks, endpoint)
        .await?
        .into_iter()
        .find(|row| row.get("id").and_then(Value::as_str) == Some(task))
        .ok_or_else(|| anyhow!("no task {task} in the cluster: see `wasmos ps` for the task ids"))
}

fn field(row: &Value, key: &str) -> String {
    row.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn print_logs(reply: LogsReply) -> anyhow::Result<ExitCode> {
    match reply {
        LogsReply::Output {
            stdout,
            stderr,
            dropped_bytes,
            ..
        } => {
            std::io::stdout().write_all(&stdout)?;
            std::io::stdout().flush()?;
            std::io::stderr().write_all(&stderr)?;
            if dropped_bytes > 0 {
                eprintln!("({dropped_bytes} bytes of output were not kept)");
            }
            Ok(ExitCode::SUCCESS)
        }
        LogsReply::Error { message } => Err(anyhow!("{message}")),
    }
}

/// An aligned table with a heading line; `(none)` when there are no rows.
fn table(listing: Listing, rows: &[Value]) -> String {
    let columns = listing.columns();
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
