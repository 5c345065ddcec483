//! `wasmos sim` (owned by the master-core work).
use std::process::ExitCode;
#[derive(clap::Args)]
pub struct SimArgs {}
pub fn run(_args: SimArgs) -> anyhow::Result<ExitCode> { anyhow::bail!("not yet") }
