//! `wasmos run`: deploy copies of a WASM module or an OCI image through the built-in jobs
//! framework. Uploads the module into the master's store (progress on stderr), submits the
//! job to the master (the operator protocol on `master/admin`), and prints the new task ids, one per line, as the last lines of
//! stdout. With `--wait`, waits for those tasks to end (their states on stderr) and exits
//! 1 if any did not finish.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use jobs::request::{JOB_NAME_BYTES_MAX, JobAccepted, JobRequest, OnReconnect, RestartPolicy};
use master_daemon::tools::{self, ToolError};
use net::modules::{UploadProgress, upload_module};
use net::{Net, NetConfig, QueryError};
use proto::operator::{OperatorError, OperatorReply, OperatorRequest};
use proto::{Constraint, TaskId, TaskState};

use crate::master_cmd::runtime;

/// How long `wasmos run` (and `deploy`, `job`) wait for the jobs framework to answer.
const SUBMIT_TIMEOUT_MS: u64 = 10_000;
/// How long `wasmos run` keeps asking while the master has no jobs framework (one that
/// is still starting next to it).
const SUBMIT_RETRY_WINDOW_MS: u64 = 5_000;
const SUBMIT_RETRY_PAUSE_MS: u64 = 250;
/// Pause between two looks at the tasks' states with `--wait`.
const WAIT_POLL_MS: u64 = 250;
/// How long `--wait` keeps waiting while no master answers (one restarting) before it
/// gives up.
const WAIT_MASTER_AWAY_MAX_MS: u64 = 300_000;
/// Name of a job whose module or image path gives none.
const JOB_NAME_FALLBACK: &str = "job";

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Restart {
    Never,
    OnFailure,
    Always,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Reconnect {
    KeepOriginal,
    KeepReplacement,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The WASM module to run (a WASI p1 command or p2 component), a local file.
    #[arg(
        value_name = "MODULE",
        required_unless_present = "oci",
        conflicts_with = "oci"
    )]
    pub module: Option<PathBuf>,
    /// Run this OCI image layout instead of a module. It is checked here and its absolute
    /// path is sent: the agents must see the same path.
    #[arg(long, value_name = "IMAGE")]
    pub oci: Option<String>,
    /// The --oci image is on the agents only: do not check it here (give an absolute path).
    #[arg(long)]
    pub image_on_agents: bool,
    /// Cpus per task (at least 0.001, at most 1024).
    #[arg(long, default_value_t = 0.1, value_parser = crate::args::finite_amount)]
    pub cpus: f64,
    /// Memory per task, MiB (at least 0.001, at most 1048576).
    #[arg(long, value_name = "MIB", default_value_t = 64.0, value_parser = crate::args::finite_amount)]
    pub mem: f64,
    /// Copies to run, 1 to 256; they are spread over the agents that can take them.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub count: u32,
    /// Where the tasks may run (repeatable; all must hold): `key=value` or `key==value`,
    /// the agent's attribute holds the value (`arch=aarch64`, `has=camera`);
    /// `key!=value`, it does not (`arch!=x86_64`, also met by agents without the key);
    /// several joined by commas (`arch=aarch64,has=camera`).
    #[arg(long = "constraint", value_name = "KEY[!]=VALUE[,...]")]
    pub constraints: Vec<String>,
    /// What to do when a task ends: on-failure restarts failed (or lost) tasks, always
    /// restarts finished ones too, after 1 s doubling up to 60 s, at most 10 starts per
    /// copy; a killed task is never restarted. A restart runs under a new task id, where
    /// the master offers room; while its agent cannot reach a master (or restarts without
    /// one), the agent restarts the task itself, in place, under the same id.
    #[arg(long, value_enum, default_value = "never")]
    pub restart: Restart,
    /// When the master loses a task's agent, the task is `unreachable` (and replaced
    /// elsewhere under --restart) for this long before it is `lost`; an agent back within
    /// it keeps its tasks (see --on-reconnect). Default: lost with the agent. `90s`, `5m`.
    #[arg(long, value_name = "DURATION", value_parser = crate::args::duration_ms)]
    pub lost_after: Option<u64>,
    /// Which copy stays when an unreachable task comes back after it was replaced; the
    /// other is killed.
    #[arg(
        long,
        value_enum,
        default_value = "keep-original",
        requires = "lost_after"
    )]
    pub on_reconnect: Reconnect,
    /// The job's name, which starts its task ids; default: the module's or image's file
    /// name.
    #[arg(long)]
    pub name: Option<String>,
    /// Environment variable for the tasks, `KEY=VALUE` (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Wall-clock limit of each task, ms.
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Wait until the tasks end; exit 1 if any did not finish. With --restart, a task that
    /// ends and is restarted is followed by its replacement, until each copy ends for good
    /// (its restarts used up, or an end its policy does not restart).
    #[arg(long)]
    pub wait: bool,
    /// zenoh endpoint of the master; default tcp/127.0.0.1:7447, or the `--zenoh-config`
    /// file's.
    #[arg(long, value_name = "ENDPOINT", value_parser = crate::args::connect_endpoint)]
    pub connect: Option<String>,
    /// zenoh configuration file (zenoh's json5 format); `--connect` overrides its endpoints.
    #[arg(long, value_name = "FILE")]
    pub zenoh_config: Option<PathBuf>,
    #[command(flatten)]
    pub identity: crate::identity::IdentityArgs,
    /// Arguments for the module (for an image: the command, replacing its entrypoint).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let module = match &args.module {
        Some(path) => Some(read_module(path)?),
        None => None,
    };
    let mut request = job_request(&args)?;
    // What the jobs framework will check, checked before a module is uploaded for nothing.
    let mut checked = request.clone();
    checked.module = (module.as_ref()).map(|(_, bytes)| net::modules::module_hash(bytes).0);
    if let Err(e) = jobs::request::ValidateJob::validate(checked) {
        bail!("the job was refused: {e}");
    }
    runtime()?.block_on(async {
        let (net, endpoint) = open(&args).await?;
        let result = async {
            if let Some((path, bytes)) = &module {
                request.module = Some(upload(&net, path, bytes, &endpoint).await?);
            }
            let accepted = submit(&net, &request, &endpoint).await?;
            eprintln!(
                "job {} accepted: {} task(s)",
                accepted.job_id,
                accepted.task_ids.len()
            );
            print_ids(&accepted.task_ids)?;
            if args.wait {
                let job = (request.restart != RestartPolicy::Never).then_some(Restarts {
                    job_id: &accepted.job_id,
                    policy: request.restart,
                });
                return wait(&net, &accepted.task_ids, job, &endpoint).await;
            }
            Ok(ExitCode::SUCCESS)
        }
        .await;
        if let Err(e) = net.close().await {
            tracing::debug!(%e, "closing the tool session");
        }
        result
    })
}

fn read_module(path: &Path) -> anyhow::Result<(PathBuf, Vec<u8>)> {
    match crate::files::read_capped(path, net::modules::MODULE_BYTES_MAX) {
        Ok(bytes) => Ok((path.to_owned(), bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(anyhow!(
            "no module at {}: give the path of a .wasm file (build the examples with `cargo xtask modules`)",
            path.display()
        )),
        Err(e) => Err(e).with_context(|| format!("reading module {}", path.display())),
    }
}

/// The job as the jobs framework takes it; the module's hash is filled in after upload.
/// Constraints and environment are checked here so that a typo fails before the upload.
fn job_request(args: &RunArgs) -> anyhow::Result<JobRequest> {
    let mut parsed = Vec::new();
    for c in &args.constraints {
        parsed.extend(Constraint::parse_list(c).map_err(|e| {
            anyhow!(
                "{e}; on the command line: --constraint KEY=VALUE, \
                 e.g. --constraint arch!=x86_64,has=camera"
            )
        })?);
    }
    let mut constraints = args.constraints.clone();
    let image = match &args.oci {
        Some(image) => Some(checked_image(image, args.image_on_agents)?),
        None if args.image_on_agents => return Err(anyhow!("--image-on-agents goes with --oci")),
        None => None,
    };
    if let Some((image, Some(arch))) = &image
        && !parsed.iter().any(|c| c.key == "arch")
    {
        eprintln!("image {image} is for {arch}: placing it on agents with arch={arch}");
        constraints.push(format!("arch={arch}"));
    }
    let mut env = BTreeMap::new();
    for pair in &args.env {
        let (k, v) = pair
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| anyhow!("--env {pair:?} is not KEY=VALUE"))?;
        env.insert(k.to_owned(), v.to_owned());
    }
    let source = match (&args.module, &args.oci) {
        (Some(path), _) => path.file_stem().map(|s| s.to_string_lossy().into_owned()),
        (None, Some(image)) => Path::new(image)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned()),
        (None, None) => None,
    };
    let name = match &args.name {
        Some(name) => name.clone(),
        None => job_name(source.as_deref().unwrap_or_default()),
    };
    Ok(JobRequest {
        name,
        module: None,
        image: image.map(|(path, _)| path),
        cpus: args.cpus,
        mem: args.mem,
        count: args.count,
        constraints,
        args: args.args.clone(),
        env,
        restart: match args.restart {
            Restart::Never => RestartPolicy::Never,
            Restart::OnFailure => RestartPolicy::OnFailure,
            Restart::Always => RestartPolicy::Always,
        },
        lost_after_ms: args.lost_after,
        on_reconnect: match args.on_reconnect {
            Reconnect::KeepOriginal => OnReconnect::KeepOriginal,
            Reconnect::KeepReplacement => OnReconnect::KeepReplacement,
        },
        timeout_ms: args.timeout_ms,
    })
}

/// A job name from a file name: lower case, other characters as `-`, starting with a
/// letter or digit, at most [`JOB_NAME_BYTES_MAX`] bytes.
fn job_name(source: &str) -> String {
    let name: String = source
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(JOB_NAME_BYTES_MAX)
        .collect();
    if name.is_empty() {
        JOB_NAME_FALLBACK.to_owned()
    } else {
        name
    }
}

/// A tool session; fails with what to do when no master answers.
async fn open(args: &RunArgs) -> anyhow::Result<(Net, String)> {
    let mut config = NetConfig::tool(args.connect.iter().cloned().collect())
        .with_zenoh_config_file(args.zenoh_config.clone());
    if args.connect.is_none() && args.zenoh_config.is_some() {
        // The file's endpoints.
        config.connect.clear();
    }
    let told_where = args.connect.is_some() || args.zenoh_config.is_some();
    let config = args.identity.apply_tool(config, told_where)?;
    let endpoint = match (&args.connect, &args.zenoh_config) {
        (None, Some(file)) => format!("the endpoints of {}", file.display()),
        _ => crate::identity::master_at(&config),
    };
    let net = (Net::open(&config).await).map_err(|e| crate::identity::open_failed(e, &endpoint))?;
    Ok((net, endpoint))
}

pub(crate) async fn upload(
    net: &Net,
    path: &Path,
    bytes: &[u8],
    endpoint: &str,
) -> anyhow::Result<String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let terminal = std::io::stderr().is_terminal();
    let module = upload_module(net, &name, bytes, |p| show_progress(&name, p, terminal))
        .await
        .map_err(|e| match e {
            net::modules::UploadError::Query {
                source: QueryError::NoReply { .. },
                ..
            } => crate::identity::no_master(endpoint),
            other => anyhow!(other),
        })?;
    eprintln!(
        "uploaded {name} ({} bytes, sha256 {})",
        bytes.len(),
        module.sha256
    );
    Ok(module.sha256.0)
}

/// One line per chunk, redrawn in place on a terminal.
fn show_progress(name: &str, p: UploadProgress, terminal: bool) {
    let percent = (p.sent_bytes * 100)
        .checked_div(p.total_bytes)
        .unwrap_or(100);
    let line = format!(
        "uploading {name}: {percent:>3}% ({} / {} KiB)",
        p.sent_bytes / 1024,
        p.total_bytes / 1024
    );
    if terminal {
        eprint!("\r{line}");
        if p.sent_bytes >= p.total_bytes {
            eprintln!();
        }
    } else {
        eprintln!("{line}");
    }
}

/// Submits `request`, asking again for a while when the master has no jobs framework yet.
async fn submit(net: &Net, request: &JobRequest, endpoint: &str) -> anyhow::Result<JobAccepted> {
    let submission = OperatorRequest::SubmitJob(request.clone());
    match ask_jobs_framework(net, &submission).await {
        Err(e) if no_jobs_yet(&e) => bail!(
            "no jobs framework answered at {endpoint}: the master there runs without one \
             (started with --no-jobs?); start it with `wasmos up` or `wasmos master`"
        ),
        Ok(OperatorReply::JobAccepted(accepted)) => Ok(accepted),
        Ok(other) => Err(anyhow!(tools::unexpected(&other))),
        Err(ToolError::Operator(e)) => Err(anyhow!("the job was refused: {e}")),
        Err(e) => Err(anyhow!(e).context("submitting the job")),
    }
}

/// Asks the master's jobs framework, asking again for a while when no master answers
/// or it has no jobs framework yet (one that is still starting next to it); the last
/// answer.
pub(crate) async fn ask_jobs_framework(
    net: &Net,
    request: &OperatorRequest,
) -> Result<OperatorReply, ToolError> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(SUBMIT_RETRY_WINDOW_MS);
    loop {
        match tools::ask(net, request, SUBMIT_TIMEOUT_MS).await {
            Err(e) if no_jobs_yet(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(SUBMIT_RETRY_PAUSE_MS)).await;
            }
            other => return other,
        }
    }
}

/// No master answers yet, or it has no jobs framework yet: one may be starting.
fn no_jobs_yet(e: &ToolError) -> bool {
    matches!(
        e,
        ToolError::Query(QueryError::NoReply { .. })
            | ToolError::Operator(OperatorError::JobsNotRunning(_))
    )
}

/// The task ids, one per line: the last lines of stdout.
fn print_ids(task_ids: &[TaskId]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for id in task_ids {
        writeln!(out, "{id}")?;
    }
    out.flush()?;
    Ok(())
}

/// A job whose copies restart: `--wait` follows each copy to the task that replaces it.
#[derive(Clone, Copy)]
struct Restarts<'a> {
    job_id: &'a str,
    policy: RestartPolicy,
}

/// Waits until every copy's task has ended for good, printing state changes on stderr: a
/// task that ended and that the job's restart policy restarts is followed by its
/// replacement (a new id) until the copy's restarts are used up.
async fn wait(
    net: &Net,
    task_ids: &[TaskId],
    job: Option<Restarts<'_>>,
    endpoint: &str,
) -> anyhow::Result<ExitCode> {
    let mut following = task_ids.to_vec();
    let mut seen: BTreeMap<TaskId, TaskState> = BTreeMap::new();
    let mut away_since: Option<std::time::Instant> = None;
    loop {
        let asked = OperatorRequest::TaskRows {
            task_ids: following.clone(),
        };
        let rows = match tools::ask(net, &asked, tools::TOOL_QUERY_TIMEOUT_MS).await {
            Ok(OperatorReply::Tasks(rows)) => rows,
            Ok(other) => bail!(tools::unexpected(&other)),
            Err(e) if e.no_master_answer() => {
                // A master restarting: the session reconnects by itself; keep asking.
                tracing::debug!(%e, "reading the tasks");
                let since = *away_since.get_or_insert_with(|| {
                    eprintln!("no master answers at {endpoint} (restarting?); still waiting for the tasks (Ctrl-C to stop)");
                    std::time::Instant::now()
                });
                if since.elapsed() > Duration::from_millis(WAIT_MASTER_AWAY_MAX_MS) {
                    return Err(crate::identity::no_master(endpoint));
                }
                tokio::time::sleep(Duration::from_millis(WAIT_POLL_MS)).await;
                continue;
            }
            // An answer that is not the tasks' (a refusal, a master too old): asking
            // again would get the same.
            Err(e) => return Err(anyhow!(e).context("reading the tasks' states")),
        };
        if away_since.take().is_some() {
            eprintln!("the master answers again; still waiting");
        }
        for row in &rows {
            if seen.insert(row.task_id.clone(), row.state) != Some(row.state) {
                let (id, state) = (&row.task_id, row.state.as_str());
                match row.reason.as_str() {
                    "" => eprintln!("{id}: {state}"),
                    same if same == state => eprintln!("{id}: {state}"),
                    reason => eprintln!("{id}: {state} ({reason})"),
                }
            }
        }
        let state_of = |id: &TaskId| seen.get(id).copied();
        let restarting = job.filter(|j| {
            (following.iter())
                .any(|id| state_of(id).is_some_and(|s| s.is_terminal() && j.policy.restarts(s)))
        });
        if let Some(job) = restarting {
            match follow_restarts(net, job, &mut following, &seen).await? {
                Copies::Restarting => {
                    tokio::time::sleep(Duration::from_millis(WAIT_POLL_MS)).await;
                    continue;
                }
                Copies::Done => {}
            }
        }
        if following
            .iter()
            .all(|id| state_of(id).is_some_and(|s| s.is_terminal()))
        {
            let all_finished =
                (following.iter()).all(|id| state_of(id) == Some(TaskState::Finished));
            return Ok(if all_finished {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        tokio::time::sleep(Duration::from_millis(WAIT_POLL_MS)).await;
    }
}

/// Whether a job's copies may still start tasks.
enum Copies {
    /// Some copy waits out its restart backoff, or runs a task not followed before (now
    /// followed in place of the one it replaces).
    Restarting,
    /// None will: the job is over (forgotten by the jobs framework) or its copies' tasks
    /// are the followed ones, ended.
    Done,
}

/// Asks the jobs framework about the job's copies (`explain`), and follows each new task
/// in place of an ended one it replaces.
async fn follow_restarts(
    net: &Net,
    job: Restarts<'_>,
    following: &mut [TaskId],
    seen: &BTreeMap<TaskId, TaskState>,
) -> anyhow::Result<Copies> {
    let asked = OperatorRequest::Explain {
        subject: job.job_id.to_owned(),
    };
    let copies = match tools::ask(net, &asked, tools::TOOL_QUERY_TIMEOUT_MS).await {
        Ok(OperatorReply::Explain(e)) => e.copies,
        Err(ToolError::Operator(OperatorError::NotFound(_))) => return Ok(Copies::Done),
        Ok(other) => bail!(tools::unexpected(&other)),
        Err(e) if e.no_master_answer() => return Ok(Copies::Restarting),
        Err(e) => return Err(anyhow!(e).context("reading the job's copies")),
    };
    let mut restarting = false;
    for copy in &copies {
        if following.contains(&copy.task_id) {
            // Its task ended but the copy is not done: a backoff before the restart.
            restarting |= !copy.state.is_terminal()
                && seen.get(&copy.task_id).is_some_and(|s| s.is_terminal());
            continue;
        }
        let replaced = (following.iter_mut()).find(|id| {
            seen.get(*id)
                .is_some_and(|s| s.is_terminal() && job.policy.restarts(*s))
                && !copies.iter().any(|c| &c.task_id == *id)
        });
        if let Some(replaced) = replaced {
            eprintln!("{replaced}: restarted as {}", copy.task_id);
            *replaced = copy.task_id.clone();
            restarting = true;
        }
    }
    Ok(if restarting {
        Copies::Restarting
    } else {
        Copies::Done
    })
}

/// The image's absolute path and the one architecture it runs on (`None`: several, or
/// not known), once it is known to be an OCI image layout here; with `on_agents_only`,
/// once its path is absolute.
pub(crate) fn checked_image(
    image: &str,
    on_agents_only: bool,
) -> anyhow::Result<(String, Option<String>)> {
    let path = Path::new(image);
    if on_agents_only {
        return match path.is_absolute() {
            true => Ok((image.to_owned(), None)),
            false => Err(anyhow!(
                "--image-on-agents needs the image's absolute path on the agents, not {image:?}"
            )),
        };
    }
    // Absolute, but symbolic links kept: the agents are to see the same path.
    let absolute = std::path::absolute(path)
        .ok()
        .filter(|p| p.is_dir() || p.is_file())
        .ok_or_else(|| {
            anyhow!(
                "no OCI image layout at {image}: give the path of an image layout directory \
                 (with oci-layout and index.json) or of a .tar of one, or --image-on-agents \
                 for an image only the agents have"
            )
        })?;
    let arch = agent::oci::image_arch(&absolute)
        .map_err(|e| anyhow!("{image} is not a usable OCI image layout: {e}"))?;
    Ok((absolute.to_string_lossy().into_owned(), arch))
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use super::job_name;

    #[test]
    fn job_names_come_from_file_names_in_the_allowed_alphabet() {
        assert_eq!(job_name("p1_hello"), "p1_hello");
        assert_eq!(job_name("My Module"), "my-module");
        assert_eq!(job_name(".hidden"), "hidden");
        assert_eq!(job_name("…"), "job");
        assert_eq!(job_name(&"x".repeat(100)).len(), 64);
    }

    /// The limits `--help` states are the jobs framework's.
    #[test]
    fn help_states_the_job_limits() {
        use clap::Args;
        let mut command = super::RunArgs::augment_args(clap::Command::new("run"));
        let help = command.render_long_help().to_string();
        for limit in [
            format!("at most {}", jobs::request::TASK_CPUS_MAX),
            format!("at most {}", jobs::request::TASK_MEM_MIB_MAX),
            format!("1 to {}", jobs::request::JOB_COUNT_MAX),
        ] {
            assert!(help.contains(&limit), "{limit:?} not in\n{help}");
        }
    }
}
