//! `wasmos agent` (owned by the detection work).
use std::process::ExitCode;
#[derive(clap::Args)]
pub struct AgentArgs {}
pub fn run(_args: AgentArgs) -> anyhow::Result<ExitCode> { anyhow::bail!("not yet") }
