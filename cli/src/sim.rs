//! `wasmos sim [FILE]`: runs the master core in virtual time on a JSON scenario (from FILE,
//! or stdin when none is given) and prints one JSON object on stdout. A malformed scenario
//! is reported on stderr with exit code 2. The logic lives in `master::sim`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use master::sim::{SIM_SEED, SimError, run_scenario_with};
use master::{Allocator, DrfAllocator};

/// Exit code for a malformed scenario.
const EXIT_MALFORMED: u8 = 2;
/// Scenario files larger than this are refused (malformed).
const SCENARIO_BYTES_MAX: u64 = 64 << 20;

#[derive(clap::Args)]
pub struct SimArgs {
    /// Scenario file (JSON); stdin when absent.
    file: Option<PathBuf>,
    /// Allocation policy.
    #[arg(long, value_enum, default_value_t = AllocatorKind::Drf)]
    allocator: AllocatorKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum AllocatorKind {
    /// The built-in hierarchical weighted DRF.
    Drf,
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
    let allocator: Box<dyn Allocator + Send> = match args.allocator {
        AllocatorKind::Drf => Box::new(DrfAllocator::new(SIM_SEED)),
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
