//! `wasmos sim [FILE]`: runs the master core in virtual time on a JSON scenario (from FILE,
//! or stdin when none is given) and prints one JSON object on stdout. A malformed scenario
//! is reported on stderr with exit code 2, and so is an `--allocator` that cannot be used
//! (neither `drf` nor a loadable allocator module). The logic lives in `master::sim`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use master::sim::{SIM_SEED, Scenario, SimError, run_scenario_with};

/// Exit code for a malformed scenario.
const EXIT_MALFORMED: u8 = 2;
/// Scenario files larger than this are refused (malformed).
const SCENARIO_BYTES_MAX: u64 = 64 << 20;

#[derive(clap::Args)]
pub struct SimArgs {
    /// Scenario file (JSON); stdin when absent.
    file: Option<PathBuf>,
    /// Allocation policy: `drf` (the built-in hierarchical weighted DRF) or the path of an
    /// allocator module (`MODULE.wasm`, see executor-sdk/README.md); a module that fails a
    /// pass is replaced by the built-in DRF for that pass, with an error logged.
    #[arg(long, default_value = "drf", value_name = "drf|MODULE.wasm")]
    allocator: String,
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
    let allocator =
        match plugins::allocator_from_spec(&args.allocator, SIM_SEED, plugins::Limits::default()) {
            Ok(allocator) => allocator,
            Err(e) => {
                eprintln!("error: --allocator: {e}");
                return Ok(ExitCode::from(EXIT_MALFORMED));
            }
        };
    match run_scenario_with(&json, allocator) {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(SimError::Scenario(e)) => {
            eprintln!("error: malformed scenario: {e}");
            Ok(ExitCode::from(EXIT_MALFORMED))
        }
        Err(e) => Err(e.into()),
    }
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
