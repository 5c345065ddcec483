//! `wasmos task run`: one task through exactly the code path an agent uses.
//!
//! Contract: the last line of stdout is one JSON object
//! `{"state":…,"exit_code":…,"reason":…,"stdout_tail":…}`; the exit status is 0 when the
//! task finished with code 0, 1 otherwise, 2 for bad usage.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use agent::outcome::TaskOutcome;
use proto::resources::Scalar;
use proto::{Resources, TaskState};
use tokio::signal::unix::{Signal, SignalKind, signal};

#[path = "task_run_oci.rs"]
mod oci;
#[path = "task_run_wasm.rs"]
mod wasm;

#[derive(clap::Subcommand)]
pub enum TaskCommand {
    /// Run one WASM module (or, with --oci, one OCI image) in a fresh sandbox and print its
    /// final status as a JSON line.
    Run(RunArgs),
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Memory limit in MiB.
    #[arg(long, value_name = "MIB")]
    pub mem: Option<u64>,
    /// CPU share (0.5 = half a core).
    #[arg(long, value_name = "N", value_parser = crate::args::positive_amount)]
    pub cpus: Option<f64>,
    /// Wall-clock limit in seconds.
    #[arg(long, value_name = "SECS", value_parser = crate::args::positive_amount)]
    pub timeout: Option<f64>,
    /// Grant a host directory: HOST::GUEST, read-only unless suffixed `:rw`.
    #[arg(long = "dir", value_name = "HOST::GUEST[:ro|:rw]")]
    pub dirs: Vec<String>,
    /// Environment variable for the task (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Grant network access.
    #[arg(long)]
    pub net: bool,
    /// Run the module only if it is signed by this key (repeatable: any of them), and
    /// unchanged since; else the task fails before it is compiled, saying why (unsigned,
    /// tampered, untrusted key). See `wasmos module --help`.
    #[arg(long = "trust", value_name = "KEY.pub", conflicts_with = "oci")]
    pub trust: Vec<PathBuf>,
    /// What runs the module: `native` (Cranelift machine code) or `pulley` (wasmtime's
    /// interpreter: no executable memory, any CPU, slower).
    #[arg(
        long,
        value_name = "native|pulley",
        default_value = "native",
        conflicts_with = "oci"
    )]
    pub engine: agent::wasm::EngineKind,
    /// Run an OCI image layout (directory or .tar) instead of a WASM module.
    #[arg(long, value_name = "IMAGE", conflicts_with = "module")]
    pub oci: Option<PathBuf>,
    /// The WASM module (.wasm core module or component, or .wat text).
    #[arg(value_name = "MODULE", required_unless_present = "oci")]
    pub module: Option<PathBuf>,
    /// Arguments for the module (or, with --oci, the command that replaces the image's).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

pub fn run(cmd: TaskCommand) -> anyhow::Result<ExitCode> {
    let TaskCommand::Run(args) = cmd;
    if args.oci.is_some() {
        oci::run(args)
    } else {
        wasm::run(args)
    }
}

/// What both kinds of task take from the arguments alike; errors are usage errors.
impl RunArgs {
    /// `--mem` and `--cpus` as the task's resources.
    fn resources(&self) -> Result<Resources, String> {
        let mut resources = Resources::new();
        if let Some(mem) = self.mem {
            if mem == 0 {
                return Err("--mem must be at least 1 (MiB)".into());
            }
            resources = resources.with_scalar("mem", mem as f64);
        }
        if let Some(cpus) = self.cpus {
            // Amounts count in thousandths: less than one would be no limit at all.
            if Scalar::from_units(cpus).is_none_or(|s| s.millis() == 0) {
                return Err(format!(
                    "--cpus {cpus}: rounds to 0 (amounts count in thousandths: give at least 0.001)"
                ));
            }
            resources = resources.with_scalar("cpus", cpus);
        }
        Ok(resources)
    }

    /// `--timeout` in whole milliseconds, rounded up.
    fn timeout_ms(&self) -> Result<Option<u64>, String> {
        match self.timeout {
            Some(secs) if secs.is_finite() && secs > 0.0 => Ok(Some((secs * 1000.0).ceil() as u64)),
            Some(secs) => Err(format!(
                "--timeout {secs}: must be a positive number of seconds"
            )),
            None => Ok(None),
        }
    }

    /// The `--env K=V` pairs.
    fn env_vars(&self) -> Result<BTreeMap<String, String>, String> {
        let mut env = BTreeMap::new();
        for pair in &self.env {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("--env {pair:?}: expected K=V"))?;
            if k.is_empty() {
                return Err(format!("--env {pair:?}: empty name"));
            }
            env.insert(k.to_owned(), v.to_owned());
        }
        Ok(env)
    }
}

/// SIGINT (Ctrl-C) and SIGTERM (what `timeout(1)` and service managers send), caught
/// from the moment they are registered (a signal before then ends the process).
struct Interrupts {
    int: Signal,
    term: Signal,
}

impl Interrupts {
    /// Must be called within the tokio runtime.
    fn register() -> std::io::Result<Interrupts> {
        Ok(Interrupts {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Returns at the first signal since [`Interrupts::register`], even one that came
    /// before this call.
    async fn recv(mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// Prints the contract line and maps the outcome to the exit status.
pub fn report(outcome: &TaskOutcome) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string(outcome)?);
    let ok = outcome.state == TaskState::Finished && outcome.exit_code == Some(0);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
