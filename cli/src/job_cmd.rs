//! `wasmos deploy FILE` and `wasmos job list|status|history|promote|revert|stop`: declared
//! jobs (`proto::declared`), kept running and rolled out by the jobs framework.
//!
//! `deploy` reads the file (TOML; JSON when it ends in `.json`), uploads its module into
//! the master's store, sends the declaration, and then follows the rollout: a progress
//! line per step on stderr, exit 0 once the deployed version is healthy (or its canaries
//! wait for `wasmos job promote`), 1 when it failed (reverted) or was superseded.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use master_daemon::tools::{self, ToolError};
use net::{Net, QueryError};
use proto::declared::{DeployChange, JobDecl, JobStatus, JobsReply, JobsRequest};
use proto::operator::{OperatorError, OperatorReply, OperatorRequest};
use serde_json::Value;

use crate::listing::{ConnectArgs, close, open, table};
use crate::master_cmd::runtime;

/// Between two looks at a rollout.
const FOLLOW_POLL_MS: u64 = 500;
/// A job file (TOML or JSON) larger than this is refused unread.
const JOB_FILE_BYTES_MAX: u64 = 1 << 20;
/// How long `deploy` follows while no master answers (one restarting) before it gives up.
const FOLLOW_MASTER_AWAY_MAX_MS: u64 = 300_000;
/// Beyond the job's own healthy deadline, how long `deploy` waits for copies added in
/// place (a scale-up) to be healthy.
const FOLLOW_SLACK_MS: u64 = 5_000;

#[derive(clap::Args)]
pub struct DeployArgs {
    /// The job file: TOML (JSON when it ends in .json). `name`, `module` (a .wasm file,
    /// relative to the job file, then to the current directory) or `oci` (an image
    /// layout's path on the agents), `args`, `env`, `count` or `per_agent`, `cpus`,
    /// `mem` (MiB), `constraints`, `spread`, `restart` (never | on-failure | always),
    /// `timeout_ms`, `[update]`: `max_parallel` (1), `canary` (0), `min_healthy_ms`
    /// (10000), `healthy_deadline_ms` (300000), `auto_revert` (false), `auto_promote`
    /// (true), and `[quarantine]`: `failures` (3) within `window_ms` (60000) keep the job
    /// off an agent for `backoff_ms` (300000). Neither count nor per_agent: count = 1.
    /// Limits: count 0 to 256, per_agent 1 to 16, canary at most count; args, env and
    /// constraints at most 64 items of 4096 bytes; the whole job at most 64 KiB.
    pub file: PathBuf,
    /// Do not follow the rollout: exit once the master took the job.
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Subcommand)]
pub enum JobCommand {
    /// The declared jobs, a line each.
    List {
        /// Print JSON (an array of job summaries).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// A job's versions, copies per version and state, and rollout progress.
    Status {
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// What happened to a job: deploys, rollouts, failures, reverts (oldest first).
    History {
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Promotes a rollout's healthy canaries (when `auto_promote = false`).
    Promote {
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Rolls back to the last healthy version before the current one, or to --to.
    Revert {
        name: String,
        #[arg(long, value_name = "VERSION")]
        to: Option<u32>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Stops every copy; the job stays (stopped), a deploy starts it again.
    Stop {
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

pub fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let mut decl = read_decl(&args.file)?;
    let module = match &decl.module {
        Some(path) => Some(read_module_beside(&args.file, path)?),
        None => None,
    };
    if let Some(image) = &decl.oci {
        decl.oci = Some(image_path(image)?);
    }
    check_before_upload(&decl)?;
    runtime()?.block_on(async {
        let endpoint = args.connect.endpoint();
        let net = open(&args.connect).await?;
        let result = async {
            if let Some((path, bytes)) = &module {
                decl.module = Some(crate::run_cmd::upload(&net, path, bytes, &endpoint).await?);
            }
            let deadline_ms = decl.update.healthy_deadline_ms;
            let deployed =
                match ask_jobs(&net, JobsRequest::Deploy(Box::new(decl)), &endpoint).await? {
                    JobsReply::Deployed(d) => d,
                    other => bail!("the master answered another question: {other:?}"),
                };
            let (name, version) = (deployed.name.clone(), deployed.version);
            let said = match deployed.change {
                DeployChange::Created => format!("job {name} created: version {version}"),
                DeployChange::Unchanged => format!("job {name} unchanged: version {version}"),
                DeployChange::Updated => format!("job {name} updated in place: version {version}"),
                DeployChange::Rollout => format!("job {name}: rolling out version {version}"),
            };
            eprintln!("{said}");
            if args.detach {
                return Ok(ExitCode::SUCCESS);
            }
            follow(&net, &name, version, deadline_ms, &endpoint).await
        }
        .await;
        close(&net).await;
        result
    })
}

pub fn run(command: JobCommand) -> anyhow::Result<ExitCode> {
    let (request, json, connect) = match command {
        JobCommand::List { json, connect } => (JobsRequest::List, json, connect),
        JobCommand::Status {
            name,
            json,
            connect,
        } => (JobsRequest::Status { name }, json, connect),
        JobCommand::History {
            name,
            json,
            connect,
        } => (JobsRequest::History { name }, json, connect),
        JobCommand::Promote { name, connect } => (JobsRequest::Promote { name }, false, connect),
        JobCommand::Revert { name, to, connect } => {
            (JobsRequest::Revert { name, to }, false, connect)
        }
        JobCommand::Stop { name, connect } => (JobsRequest::Stop { name }, false, connect),
    };
    runtime()?.block_on(async {
        let endpoint = connect.endpoint();
        let net = open(&connect).await?;
        let result = ask_jobs(&net, request, &endpoint).await;
        close(&net).await;
        print_reply(result?, json)?;
        Ok(ExitCode::SUCCESS)
    })
}

fn print_reply(reply: JobsReply, json: bool) -> anyhow::Result<()> {
    match reply {
        JobsReply::Done(message) => println!("{message}"),
        JobsReply::Deployed(d) => println!("job {} version {}: {:?}", d.name, d.version, d.change),
        JobsReply::List(rows) if json => println!("{}", pretty(&rows)?),
        JobsReply::List(rows) => {
            let rows: Vec<Value> = serde_json::from_value(serde_json::to_value(rows)?)?;
            print!("{}", table(LIST_COLUMNS, &rows));
        }
        JobsReply::Status(status) if json => println!("{}", pretty(&status)?),
        JobsReply::Status(status) => print!("{}", status_text(&status)?),
        JobsReply::History(entries) if json => println!("{}", pretty(&entries)?),
        JobsReply::History(entries) => {
            let rows: Vec<Value> = (entries.iter())
                .map(|e| {
                    serde_json::json!({
                        "at": wall_time(e.at_ms), "version": e.version,
                        "event": e.event, "message": e.message,
                    })
                })
                .collect();
            let columns = [
                ("TIME", "at"),
                ("VERSION", "version"),
                ("EVENT", "event"),
                ("MESSAGE", "message"),
            ];
            print!("{}", table(&columns, &rows));
        }
    }
    Ok(())
}

fn pretty(value: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

const LIST_COLUMNS: &[(&str, &str)] = &[
    ("NAME", "name"),
    ("VERSION", "version"),
    ("STABLE", "stable_version"),
    ("STATE", "state"),
    ("DESIRED", "desired"),
    ("RUNNING", "running"),
    ("HEALTHY", "healthy"),
];

fn status_text(status: &JobStatus) -> anyhow::Result<String> {
    let s = &status.summary;
    let stable = s
        .stable_version
        .map_or("none".to_owned(), |v| v.to_string());
    let mut out = format!(
        "job {}: {} · version {} (stable {stable}) · {} desired, {} running, {} healthy\n",
        s.name, s.state, s.version, s.desired, s.running, s.healthy
    );
    if let Some(r) = &status.summary.rollout {
        let from = r.from.map_or("none".to_owned(), |v| v.to_string());
        out.push_str(&format!(
            "rollout {from} -> {}: {} · {} placed, {} healthy, {} old left{}\n",
            r.to,
            r.phase,
            r.new_placed,
            r.new_healthy,
            r.old_left,
            match r.canaries {
                0 => String::new(),
                n => format!(", {n} canaries"),
            }
        ));
    }
    for q in &s.quarantined {
        out.push_str(&format!(
            "quarantined on {} until {} ({} failures)\n",
            q.agent_id,
            wall_time(q.until_at_ms),
            q.failures
        ));
    }
    out.push('\n');
    let versions: Vec<Value> = serde_json::from_value(serde_json::to_value(&status.versions)?)?;
    let columns = [
        ("VERSION", "version"),
        ("STATE", "state"),
        ("COPIES", "copies"),
        ("CPUS", "cpus"),
        ("MEM", "mem"),
        ("REVERTS_TO", "reverts_to"),
        ("WHAT", "what"),
        ("REASON", "reason"),
    ];
    out.push_str(&table(&columns, &versions));
    out.push('\n');
    let copies: Vec<Value> = serde_json::from_value(serde_json::to_value(&status.copies)?)?;
    let columns = [
        ("TASK", "task_id"),
        ("VERSION", "version"),
        ("STATE", "state"),
        ("HEALTHY", "healthy"),
        ("CANARY", "canary"),
        ("STOPPING", "stopping"),
        ("AGENT", "agent_id"),
    ];
    out.push_str(&table(&columns, &copies));
    Ok(out)
}

fn wall_time(at_ms: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(at_ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Asks the jobs framework, asking again for a while when the master has none yet.
async fn ask_jobs(net: &Net, request: JobsRequest, endpoint: &str) -> anyhow::Result<JobsReply> {
    let request = OperatorRequest::Jobs(request);
    match crate::run_cmd::ask_jobs_framework(net, &request).await {
        Err(ToolError::Query(QueryError::NoReply { .. })) => {
            Err(crate::identity::no_master(endpoint))
        }
        Ok(OperatorReply::Jobs(reply)) => Ok(reply),
        Ok(other) => Err(anyhow!(tools::unexpected(&other))),
        Err(ToolError::Operator(OperatorError::InvalidJob(e))) => {
            Err(anyhow!("the job was refused: {e}"))
        }
        Err(ToolError::Operator(e)) => Err(anyhow!("{e}")),
        Err(e) => Err(anyhow!(e)),
    }
}

/// Follows the job until `version` is healthy (exit 0), waits for promotion (exit 0), or
/// failed or was superseded (exit 1).
async fn follow(
    net: &Net,
    name: &str,
    version: u32,
    deadline_ms: u64,
    endpoint: &str,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut last_line = String::new();
    let mut away_since: Option<Instant> = None;
    loop {
        let Some(status) = poll_status(net, name, endpoint, &mut away_since).await? else {
            tokio::time::sleep(Duration::from_millis(FOLLOW_POLL_MS)).await;
            continue;
        };
        let line = progress_line(&status, version);
        if line != last_line {
            eprintln!("{line}");
            last_line = line;
        }
        let late = started.elapsed() > Duration::from_millis(deadline_ms + FOLLOW_SLACK_MS);
        if let Some(code) = verdict(&status, name, version, late)? {
            return Ok(code);
        }
        tokio::time::sleep(Duration::from_millis(FOLLOW_POLL_MS)).await;
    }
}

/// The job's status; `None` while no master answers (one restarting), for at most
/// [`FOLLOW_MASTER_AWAY_MAX_MS`].
async fn poll_status(
    net: &Net,
    name: &str,
    endpoint: &str,
    away_since: &mut Option<Instant>,
) -> anyhow::Result<Option<JobStatus>> {
    let request = OperatorRequest::Jobs(JobsRequest::Status {
        name: name.to_owned(),
    });
    match tools::ask(net, &request, tools::TOOL_QUERY_TIMEOUT_MS).await {
        Ok(OperatorReply::Jobs(JobsReply::Status(status))) => {
            if away_since.take().is_some() {
                eprintln!("the master answers again; still following");
            }
            Ok(Some(*status))
        }
        Ok(other) => Err(anyhow!(tools::unexpected(&other))),
        Err(e) if e.no_master_answer() => {
            tracing::debug!(%e, "reading the job's status");
            let since = *away_since.get_or_insert_with(|| {
                eprintln!("no master answers at {endpoint} (restarting?); still following (Ctrl-C to stop)");
                Instant::now()
            });
            if since.elapsed() > Duration::from_millis(FOLLOW_MASTER_AWAY_MAX_MS) {
                return Err(crate::identity::no_master(endpoint));
            }
            Ok(None)
        }
        Err(e) => Err(anyhow!("{e}")),
    }
}

/// Whether following ends, and how (said on stderr): `late` once the job's healthy
/// deadline (and some) has passed since the deploy.
fn verdict(
    status: &JobStatus,
    name: &str,
    version: u32,
    late: bool,
) -> anyhow::Result<Option<ExitCode>> {
    let Some(row) = status.versions.iter().find(|v| v.version == version) else {
        bail!("version {version} of job {name} is gone (forgotten)");
    };
    let s = &status.summary;
    if s.state == "stopped" {
        eprintln!("job {name} was stopped (`wasmos job stop`)");
        return Ok(Some(ExitCode::from(1)));
    }
    match row.state.as_str() {
        "stable" if s.rollout.is_none() && s.healthy >= s.desired => {
            eprintln!(
                "job {name}: version {version} healthy, {} copies",
                s.healthy
            );
            return Ok(Some(ExitCode::SUCCESS));
        }
        "failed" => {
            eprintln!("job {name}: version {version} failed: {}", row.reason);
            if let Some(back) = (status.versions.first()).filter(|v| v.version > version) {
                let task = (back.reverts_to)
                    .map_or(String::new(), |v| format!(" (the task of version {v})"));
                eprintln!("job {name}: reverting to version {}{task}", back.version);
            }
            return Ok(Some(ExitCode::from(1)));
        }
        "superseded" => {
            eprintln!(
                "job {name}: version {version} was superseded by version {}",
                s.version
            );
            return Ok(Some(ExitCode::from(1)));
        }
        _ => {}
    }
    let waiting =
        (s.rollout.as_ref()).is_some_and(|r| r.to == version && r.phase == "awaiting_promotion");
    if waiting {
        eprintln!("job {name}: canaries healthy; promote with `wasmos job promote {name}`");
        return Ok(Some(ExitCode::SUCCESS));
    }
    if s.rollout.is_none() && late {
        eprintln!(
            "job {name}: {} of {} copies healthy by the deadline (see `wasmos job status {name}`)",
            s.healthy, s.desired
        );
        return Ok(Some(ExitCode::from(1)));
    }
    Ok(None)
}

fn progress_line(status: &JobStatus, version: u32) -> String {
    let s = &status.summary;
    match &s.rollout {
        Some(r) if r.to == version => format!(
            "version {version}: {} · {} of {} placed, {} healthy, {} old left",
            r.phase, r.new_placed, s.desired, r.new_healthy, r.old_left
        ),
        _ => format!(
            "version {version}: {} · {} desired, {} running, {} healthy{}",
            s.state,
            s.desired,
            s.running,
            s.healthy,
            match s.done {
                0 => String::new(),
                n => format!(" ({n} done)"),
            }
        ),
    }
}

/// Refuses here what the master would refuse, before the module is uploaded: the module
/// is checked as the sha256 it will be.
fn check_before_upload(decl: &JobDecl) -> anyhow::Result<()> {
    let mut probe = decl.clone();
    if probe.module.is_some() {
        probe.module = Some("0".repeat(64));
    }
    jobs::ValidDecl::validate(probe)
        .map(drop)
        .map_err(|e| anyhow!("the job was refused: {e}"))
}

fn read_decl(file: &Path) -> anyhow::Result<JobDecl> {
    let bytes = crate::files::read_capped(file, JOB_FILE_BYTES_MAX)
        .with_context(|| format!("reading job file {}", file.display()))?;
    let text =
        String::from_utf8(bytes).map_err(|_| anyhow!("{}: not UTF-8 text", file.display()))?;
    let json = file.extension().is_some_and(|e| e == "json");
    let decl = match json {
        true => serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", file.display()))?,
        false => toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", file.display()))?,
    };
    Ok(decl)
}

/// The module's bytes: an absolute path as is; a relative one beside the job file first,
/// then in the current directory.
fn read_module_beside(file: &Path, module: &str) -> anyhow::Result<(PathBuf, Vec<u8>)> {
    let given = Path::new(module);
    let mut tried = Vec::new();
    // The job file's directory is "" when it is in the current one: one place to look.
    if given.is_relative()
        && let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
    {
        tried.push(dir.join(given));
    }
    tried.push(given.to_owned());
    for path in &tried {
        match crate::files::read_capped(path, net::modules::MODULE_BYTES_MAX) {
            Ok(bytes) => return Ok((path.clone(), bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow!("module {}: {e}", path.display())),
        }
    }
    let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    let hint = match module.contains("target/modules") {
        true => " (build the examples with `cargo xtask modules`)",
        false => "",
    };
    Err(anyhow!(
        "no module {module}: looked at {}{hint}",
        tried.join(" and ")
    ))
}

/// An image here is checked and sent by its absolute path; an absolute path that is not
/// here is taken to be on the agents.
fn image_path(image: &str) -> anyhow::Result<String> {
    let path = Path::new(image);
    let here = path.is_dir();
    let (image, _) = crate::run_cmd::checked_image(image, path.is_absolute() && !here)?;
    Ok(image)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_issue_s_example_file_parses_with_its_comments() {
        let text = r#"
name = "vision"
module = "target/modules/p1_hello.wasm"   # or oci = "/images/x"
args = ["frame"]
count = 6                    # or: per_agent = 1
cpus = 0.5
mem = 64
constraints = ["arch=aarch64"]
spread = "zone"
restart = "always"
[update]
max_parallel = 1
canary = 1
min_healthy_ms = 3000
healthy_deadline_ms = 30000
auto_revert = true
auto_promote = true
"#;
        let decl: proto::declared::JobDecl = toml::from_str(text).unwrap();
        assert_eq!(decl.count, Some(6));
        assert_eq!(decl.update.canary, 1);
        assert_eq!(decl.restart, proto::RestartPolicy::Always);
        let on_failure: proto::declared::JobDecl =
            toml::from_str("name = \"x\"\nmodule = \"m\"\nrestart = \"on-failure\"").unwrap();
        assert_eq!(on_failure.restart, proto::RestartPolicy::OnFailure);
        assert!(toml::from_str::<proto::declared::JobDecl>("name = \"x\"\ncount_ = 1").is_err());
    }
}
