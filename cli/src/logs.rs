//! `wasmos logs TASK [--tail N] [-f]`: what a task wrote, running or ended, asked of the
//! master (which asks the task's agent). With `-f` it goes on printing until the task
//! ends, waiting while the task is pending and while the master or the agent does not
//! answer (a restart), for at most [`FOLLOW_UNANSWERED_MAX_MS`] at a stretch.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use master_daemon::tools::{self, TOOL_QUERY_TIMEOUT_MS, ToolError};
use net::Net;
use proto::admin::{LogOffsets, LogsRequest, TaskOutput};
use proto::operator::{OperatorError, OperatorReply, OperatorRequest};
use proto::{TaskId, TaskState};

use crate::listing::{TaskArgs, close, open, task_error};
use crate::master_cmd::runtime;

/// How often `logs -f` asks for more.
pub const FOLLOW_POLL_MS: u64 = 500;
/// How long `logs -f` keeps asking while nobody answers, before it gives up.
pub const FOLLOW_UNANSWERED_MAX_MS: u64 = 300_000;
/// How long `logs -f` keeps asking while the master does not know a task it knew (a
/// restarted master learns it from its agent within its re-registration window).
pub const FOLLOW_NOT_FOUND_MAX_MS: u64 = 30_000;

#[derive(clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub task: TaskArgs,
    /// Print only the last N lines of each stream (of what is written so far, with -f).
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Keep printing what the task writes until it ends; waits while it is pending.
    #[arg(short = 'f', long)]
    pub follow: bool,
}

pub fn logs(args: LogsArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let net = open(&args.task.connect).await?;
        let result = LogReader::new(&args).run(&net).await;
        close(&net).await;
        result.with_context(|| format!("logs of task {}", args.task.task))
    })
}

/// One `logs` run: where it has read to, and since when nobody answers.
struct LogReader {
    task_id: TaskId,
    endpoint: String,
    tail: Option<usize>,
    follow: bool,
    from: Option<LogOffsets>,
    unanswered_since: Option<Instant>,
    said_pending: bool,
}

impl LogReader {
    fn new(args: &LogsArgs) -> LogReader {
        LogReader {
            task_id: TaskId::new(args.task.task.clone()),
            endpoint: args.task.connect.endpoint(),
            tail: args.tail,
            follow: args.follow,
            from: None,
            unanswered_since: None,
            said_pending: false,
        }
    }

    async fn run(mut self, net: &Net) -> anyhow::Result<ExitCode> {
        loop {
            let request = OperatorRequest::Logs(LogsRequest {
                task_id: self.task_id.clone(),
                from: self.from,
            });
            match tools::ask(net, &request, TOOL_QUERY_TIMEOUT_MS).await {
                Ok(OperatorReply::Logs(output)) => {
                    self.unanswered_since = None;
                    if let Err(e) = self.print(&output) {
                        // `logs -f | head`: the reader went, which is no failure.
                        return match e.kind() {
                            std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
                            _ => Err(e.into()),
                        };
                    }
                    let state = output.state;
                    if state.is_terminal() && state != TaskState::Finished {
                        eprintln!("(task {} ended {})", self.task_id, state.as_str());
                    }
                    if !self.follow || state.is_terminal() {
                        return Ok(ExitCode::SUCCESS);
                    }
                    self.from = Some(output.ends());
                    if output.is_cut_short() {
                        continue; // More is there already: no pause.
                    }
                }
                Ok(other) => return Err(anyhow!(tools::unexpected(&other))),
                Err(ToolError::Operator(OperatorError::NotFound(_))) if self.said_pending => {
                    return Err(anyhow!(
                        "task {} is gone: it was cancelled before it started",
                        self.task_id
                    ));
                }
                Err(e) if self.follow && self.worth_waiting(&e) => self.wait_for_answer(e)?,
                Err(e) => return Err(task_error(e, self.task_id.as_str(), &self.endpoint)),
            }
            tokio::time::sleep(Duration::from_millis(FOLLOW_POLL_MS)).await;
        }
    }

    /// No answer, or an agent that does not answer, may be a restart. A task that was
    /// found before and is not now may be one the restarted master has not heard of yet.
    fn worth_waiting(&self, e: &ToolError) -> bool {
        match e {
            e if e.no_master_answer() => true,
            ToolError::Operator(OperatorError::Conflict(_)) => true,
            ToolError::Operator(OperatorError::NotFound(_)) => self.from.is_some(),
            _ => false,
        }
    }

    /// Waits on, unless nobody has answered for [`FOLLOW_UNANSWERED_MAX_MS`] (a master
    /// that does not know the task: [`FOLLOW_NOT_FOUND_MAX_MS`]).
    fn wait_for_answer(&mut self, e: ToolError) -> anyhow::Result<()> {
        let limit_ms = match e {
            ToolError::Operator(OperatorError::NotFound(_)) => FOLLOW_NOT_FOUND_MAX_MS,
            _ => FOLLOW_UNANSWERED_MAX_MS,
        };
        let since = *self.unanswered_since.get_or_insert_with(|| {
            eprintln!(
                "(no answer about task {} yet: {e}; still waiting)",
                self.task_id
            );
            Instant::now()
        });
        if since.elapsed() > Duration::from_millis(limit_ms) {
            return Err(task_error(e, self.task_id.as_str(), &self.endpoint)).context(format!(
                "gave up following after {} s without an answer",
                limit_ms / 1000
            ));
        }
        Ok(())
    }

    fn print(&mut self, output: &TaskOutput) -> std::io::Result<()> {
        if output.state == TaskState::Pending && !self.said_pending {
            self.said_pending = true;
            let what = if self.follow {
                "waiting for it to start"
            } else {
                "it has written nothing yet"
            };
            eprintln!("(task {} is pending: {what})", self.task_id);
        }
        // --tail applies to the first read: what was written before the command ran.
        let tail = self.tail.filter(|_| self.from.is_none());
        let from = self.from.unwrap_or_default();
        let mut out = std::io::stdout().lock();
        out.write_all(&output.stdout.text(from.stdout, tail))?;
        out.flush()?;
        std::io::stderr().write_all(&output.stderr.text(from.stderr, tail))?;
        Ok(())
    }
}
