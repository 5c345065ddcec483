//! `wasmos explain TASK|JOB [--json]`: why a task, or a job's copies, are not running:
//! the summary line, then per waiting copy its reason, its framework's place in DRF and
//! each agent's fit (`proto::explain`).

use std::process::ExitCode;

use anyhow::anyhow;
use master_daemon::tools::{self, ToolError};
use proto::explain::{CopyExplanation, Explanation};
use proto::operator::{OperatorError, OperatorReply, OperatorRequest};
use serde_json::Value;

use crate::listing::{ConnectArgs, close, open, table};
use crate::master_cmd::runtime;

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// A task id (see `wasmos ps`) or a job's name (see `wasmos job list`).
    pub subject: String,
    /// Print the explanation as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let endpoint = args.connect.endpoint();
        let net = open(&args.connect).await?;
        let request = OperatorRequest::Explain {
            subject: args.subject.clone(),
        };
        let reply = tools::ask(&net, &request, tools::TOOL_QUERY_TIMEOUT_MS).await;
        close(&net).await;
        let explanation = match reply {
            Ok(OperatorReply::Explain(e)) => *e,
            Ok(other) => return Err(anyhow!(tools::unexpected(&other))),
            Err(ToolError::Operator(OperatorError::NotFound(m))) => return Err(anyhow!("{m}")),
            Err(ToolError::Operator(e)) => return Err(anyhow!("refused: {e}")),
            Err(e) => {
                tracing::debug!(%e, "explain");
                return Err(crate::identity::no_master(&endpoint));
            }
        };
        match args.json {
            true => println!("{}", serde_json::to_string_pretty(&explanation)?),
            false => print!("{}", text(&explanation)?),
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn text(e: &Explanation) -> anyhow::Result<String> {
    let mut out = format!("{}\n", e.summary);
    for copy in e
        .copies
        .iter()
        .filter(|c| !c.agents.is_empty() || c.framework.is_some())
    {
        out.push_str(&copy_text(copy)?);
    }
    Ok(out)
}

fn copy_text(copy: &CopyExplanation) -> anyhow::Result<String> {
    let mut out = format!(
        "\n{} ({}): {}\n",
        copy.task_id,
        copy.state.as_str(),
        copy.reason
    );
    if let Some(fw) = &copy.framework {
        let ahead: Vec<String> = (fw.ahead.iter())
            .map(|a| format!("{} {:.3}", a.name, a.weighted_share))
            .collect();
        out.push_str(&format!(
            "  framework {} ({}): dominant share {:.3}, weighted {:.3}{}{}\n",
            fw.name,
            fw.framework_id,
            fw.dominant_share,
            fw.weighted_share,
            if fw.suppressed { ", suppressed" } else { "" },
            match ahead.is_empty() {
                true => String::new(),
                false => format!("; DRF serves first: {}", ahead.join(", ")),
            }
        ));
    }
    let rows: Vec<Value> = (copy.agents.iter())
        .map(|a| {
            serde_json::json!({
                "agent": a.agent_id.as_str(), "host": a.hostname,
                "fit": fit_kind(&a.fit), "why": a.message,
            })
        })
        .collect();
    let columns = [
        ("AGENT", "agent"),
        ("HOST", "host"),
        ("FIT", "fit"),
        ("WHY", "why"),
    ];
    for line in table(&columns, &rows).lines() {
        out.push_str(&format!("  {line}\n"));
    }
    Ok(out)
}

fn fit_kind(fit: &proto::explain::Fit) -> &'static str {
    use proto::explain::Fit;
    match fit {
        Fit::Fits => "fits",
        Fit::Unreachable { .. } => "unreachable",
        Fit::Constraint { .. } => "constraint",
        Fit::Short { .. } => "short",
        Fit::Filtered { .. } => "filtered",
        Fit::Quarantined { .. } => "quarantined",
    }
}
