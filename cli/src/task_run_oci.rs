//! `wasmos task run --oci IMAGE` (owned by the oci-executor work).
use std::process::ExitCode;
pub fn run(_args: super::RunArgs) -> anyhow::Result<ExitCode> { anyhow::bail!("not yet") }
