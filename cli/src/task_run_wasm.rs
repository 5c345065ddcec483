//! `wasmos task run MODULE` (owned by the wasm-executor work).
use std::process::ExitCode;
pub fn run(_args: super::RunArgs) -> anyhow::Result<ExitCode> { anyhow::bail!("not yet") }
