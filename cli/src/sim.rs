//! `wasmos sim [FILE]`: runs the master core in virtual time on a JSON scenario (from FILE,
//! or stdin when none is given) and prints one JSON object on stdout. A malformed scenario
//! is reported on stderr with exit code 2, and so is an `--allocator` that cannot be used
//! (neither `drf` nor a loadable allocator module). The logic lives in the `wasmos-sim` crate.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use policy_host::{FailurePolicy, HostedScheduler, Kind, Limits, ModuleCode};
use proto::{Call, Event};
use sim::{
    CoreWeight, SIM_SEED, Scenario, ScenarioFramework, SimError, SimScheduler, run_scenario_weighed,
};

/// Allocator fuel per agent and framework pair, and its bounds: see `--allocator-fuel`.
const FUEL_PER_PAIR: u64 = 4_000;
const FUEL_MIN: u64 = 2_000_000_000;
const FUEL_MAX: u64 = 200_000_000_000;

/// `--allocator-fuel`'s default for this scenario (the built-in DRF needs none: the
/// scenario is not read twice for it).
fn default_fuel(allocator: &str, json: &str) -> u64 {
    let pairs = match allocator {
        "drf" => 0,
        _ => Scenario::parse(json).map_or(0, |s| s.agents.len() * s.frameworks.len()),
    };
    (FUEL_PER_PAIR.saturating_mul(pairs as u64)).clamp(FUEL_MIN, FUEL_MAX)
}

/// Exit code for a malformed scenario.
const EXIT_MALFORMED: u8 = 2;
/// Scenario files larger than this are refused (malformed).
const SCENARIO_BYTES_MAX: u64 = 64 << 20;

#[derive(clap::Args)]
pub struct SimArgs {
    /// Scenario file (JSON; its format: README.md, "Simulating a fleet"); stdin when absent.
    file: Option<PathBuf>,
    /// Allocation policy: `drf` (the built-in hierarchical weighted DRF) or the path of an
    /// allocator module (`MODULE.wasm`, see executor-sdk/README.md); a module that fails a
    /// pass is replaced by the built-in DRF for that pass, with an error logged (one failing
    /// pass after pass sits out 1, 2, 4 ... at most 64 passes).
    #[arg(long, default_value = "drf", value_name = "drf|MODULE.wasm")]
    allocator: String,
    /// Fuel an allocator module may use in one pass (about one unit per WASM instruction;
    /// deterministic, unlike the master daemon's wall-clock deadline). A pass that uses
    /// it all is done by the built-in DRF instead, with an error logged. Default: 4,000
    /// per agent and framework pair of the scenario, from 2e9 to 2e11 (a pass walks the
    /// frameworks that refuse an agent: `drf.wasm` took 1e9 to 2e9 at 10,000 agents ×
    /// 1,000 frameworks where many refuse many agents).
    #[arg(long, value_name = "UNITS")]
    allocator_fuel: Option<u64>,
    /// Add `"stats": {"placements", "wall_ms", "placements_per_s", "peak_rss_bytes",
    /// "core_bytes", "core_bytes_per_agent_and_task"}`: tasks launched, the run's
    /// wall-clock time (parsing included), this process's peak resident memory, and the
    /// heap the master and the agents held at the end (the last two with glibc only).
    #[arg(long)]
    stats: bool,
}

pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let json = match read_scenario(args.file.as_ref()) {
        Ok(json) => json,
        Err(ReadError::TooLarge) => {
            eprintln!("error: malformed scenario: larger than {SCENARIO_BYTES_MAX} bytes");
            return Ok(ExitCode::from(EXIT_MALFORMED));
        }
        Err(ReadError::Io(e)) => return Err(e),
    };
    // Unknown fields are ignored (the format may grow) but a typo should not pass unseen.
    for field in Scenario::unknown_fields(&json) {
        eprintln!("warning: scenario: ignoring unknown field {field}");
    }
    // Checked once here, so that a bad `--allocator` is a clear error before the run; each
    // master of the run (one more per restart) then gets its own instance.
    // A simulation runs nothing on the fleet: it checks no signatures.
    let unchecked = signing::TrustedKeys::default();
    let limits = Limits {
        fuel_per_call: args
            .allocator_fuel
            .unwrap_or_else(|| default_fuel(&args.allocator, &json)),
        ..Limits::default()
    };
    if let Err(e) = policy_host::allocator_from_spec(&args.allocator, SIM_SEED, limits, &unchecked)
    {
        eprintln!("error: --allocator: {e}");
        return Ok(ExitCode::from(EXIT_MALFORMED));
    }
    let spec = args.allocator.clone();
    let mut allocators = move |seed: u64| {
        policy_host::allocator_from_spec(&spec, seed, limits, &unchecked).unwrap_or_else(|e| {
            tracing::error!(%e, "the allocator cannot be made again; using the built-in DRF");
            Box::new(master::DrfAllocator::new(seed))
        })
    };
    let base = scenario_dir(args.file.as_deref());
    let engine = policy_host::sandbox::engine()?;
    let mut load = |f: &ScenarioFramework| load_scheduler(&engine, &base, f);
    let started = std::time::Instant::now();
    let mut heap = || args.stats.then(heap_in_use).flatten();
    match run_scenario_weighed(&json, &mut allocators, &mut load, &mut heap) {
        Ok((report, weight)) => {
            let stats = (args.stats).then(|| stats(&report, weight, started.elapsed()));
            // Written as it is serialized: a large fleet's report as one JSON value in
            // memory took more than the simulation.
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            serde_json::to_writer(
                &mut out,
                &Output {
                    report: &report,
                    stats,
                },
            )?;
            writeln!(out)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(SimError::Scenario(e)) => {
            eprintln!("error: malformed scenario: {e}");
            Ok(ExitCode::from(EXIT_MALFORMED))
        }
        Err(e @ SimError::Scheduler { .. }) => {
            eprintln!("error: malformed scenario: {e}");
            Ok(ExitCode::from(EXIT_MALFORMED))
        }
        Err(e) => Err(e.into()),
    }
}

/// What `wasmos sim` prints: the report's keys, then `stats` (sorted with them).
#[derive(serde::Serialize)]
struct Output<'a> {
    #[serde(flatten)]
    report: &'a sim::SimReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<Stats>,
}

/// `--stats`: placements (tasks launched), wall time, their rate, peak RSS, and the heap
/// the master and the agents held at the end of the run.
#[derive(serde::Serialize)]
struct Stats {
    #[serde(skip_serializing_if = "Option::is_none")]
    core_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    core_bytes_per_agent_and_task: Option<u64>,
    peak_rss_bytes: u64,
    placements: u64,
    placements_per_s: u64,
    wall_ms: u64,
}

fn stats(report: &sim::SimReport, weight: Option<CoreWeight>, took: std::time::Duration) -> Stats {
    let placements: u64 = report.launched.iter().map(|(_, n)| n).sum();
    let secs = took.as_secs_f64();
    Stats {
        core_bytes: weight.map(|w| w.bytes),
        core_bytes_per_agent_and_task: weight.map(|w| w.bytes / (w.agents + placements).max(1)),
        peak_rss_bytes: peak_rss_bytes(),
        placements,
        placements_per_s: if secs > 0.0 {
            (placements as f64 / secs).round() as u64
        } else {
            0
        },
        wall_ms: took.as_millis() as u64,
    }
}

/// Bytes the allocator has handed out and not had back (glibc's `mallinfo2`: chunks in
/// use, and blocks mapped on their own); `None` with another C library.
#[cfg(target_env = "gnu")]
fn heap_in_use() -> Option<u64> {
    // SAFETY: no arguments; it reads the allocator's own counters under its locks.
    let info = unsafe { libc::mallinfo2() };
    Some((info.uordblks + info.hblkhd) as u64)
}

#[cfg(not(target_env = "gnu"))]
fn heap_in_use() -> Option<u64> {
    None
}

/// This process's peak resident set (`VmHWM` of /proc/self/status); 0 where unknown.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

enum ReadError {
    TooLarge,
    Io(anyhow::Error),
}

fn read_scenario(file: Option<&PathBuf>) -> Result<String, ReadError> {
    let mut bytes = Vec::new();
    let read = match file {
        Some(path) => std::fs::File::open(path)
            .with_context(|| format!("cannot open scenario {}", path.display()))
            .map_err(ReadError::Io)?
            .take(SCENARIO_BYTES_MAX + 1)
            .read_to_end(&mut bytes),
        None => std::io::stdin()
            .take(SCENARIO_BYTES_MAX + 1)
            .read_to_end(&mut bytes),
    };
    read.context("cannot read the scenario")
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > SCENARIO_BYTES_MAX {
        return Err(ReadError::TooLarge);
    }
    // Not UTF-8 is a malformed scenario, reported by the JSON parser.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Scheduler modules and their configs are named relative to the scenario file (to the
/// working directory for a scenario on stdin).
fn scenario_dir(file: Option<&Path>) -> PathBuf {
    file.and_then(Path::parent)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// A scenario framework's `scheduler` module, run by [`HostedScheduler`] (budgets, backoff
/// and deactivation as in the master, in virtual time).
struct ModuleScheduler(HostedScheduler);

impl SimScheduler for ModuleScheduler {
    fn handle_event(&mut self, now_ms: u64, event: &Event) -> Vec<Call> {
        // A fault is logged by HostedScheduler; the calls are what stands in for it.
        self.0.deliver_event(now_ms, event).0
    }
}

fn load_scheduler(
    engine: &wasmtime::Engine,
    base: &Path,
    framework: &ScenarioFramework,
) -> Result<Box<dyn SimScheduler>, String> {
    let limits = Limits::default();
    let read = |name: &str, max: usize| {
        let path = base.join(name);
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(max as u64 + 1).read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if bytes.len() > max {
            return Err(format!(
                "{} is over the limit of {max} bytes",
                path.display()
            ));
        }
        Ok(bytes)
    };
    let module = framework.scheduler.as_deref().unwrap_or_default();
    let bytes = read(module, limits.module_bytes_max)?;
    let config = match &framework.config {
        Some(config) => read(config, proto::operator::HOSTED_CONFIG_BYTES_MAX)?,
        None => Vec::new(),
    };
    let code = ModuleCode::compile(engine, &bytes, Kind::Scheduler, limits)
        .map_err(|e| format!("scheduler {module}: {e}"))?;
    let scheduler = HostedScheduler::new(&framework.id, code, config, FailurePolicy::default());
    Ok(Box::new(ModuleScheduler(scheduler)))
}
