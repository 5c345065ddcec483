//! `p1_sensor.wasm`: a WASI p1 command that samples a sensor through its device file, the
//! way sysfs exposes one (`/sys/class/thermal/thermal_zone0/temp`, an IIO `in_*_raw`
//! file): the agent grants the directory holding it (`--dir HOST::GUEST:ro`) and the task
//! is told the guest path.
//!
//! Usage: `p1_sensor --device GUEST_PATH [--samples N] [--interval-ms MS]`
//!
//! Each sample re-reads the file from its start and prints one JSON line
//! `{"sample":I,"value":V}` (a reading that is not a number is printed as a string); a
//! summary line `{"samples":N,"min":..,"max":..,"mean":..}` ends the output. Exit codes:
//! 0 done, 64 bad arguments, 74 the device file cannot be read.

use std::process::ExitCode;
use std::time::Duration;

use executor_sdk::task::{EXIT_IO, EXIT_OK, EXIT_USAGE, flag};

/// Most samples one run takes.
const SAMPLES_MAX: u64 = 100_000;
/// Longest pause between samples.
const INTERVAL_MS_MAX: u64 = 60_000;
/// Most bytes of the device file read per sample (sensor files hold one short line).
const READING_BYTES_MAX: usize = 256;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(device) = flag(&args, "device") else {
        eprintln!("usage: p1_sensor --device GUEST_PATH [--samples N] [--interval-ms MS]");
        return ExitCode::from(EXIT_USAGE as u8);
    };
    let samples = parse_or(&args, "samples", 5).min(SAMPLES_MAX);
    let interval_ms = parse_or(&args, "interval-ms", 100).min(INTERVAL_MS_MAX);
    let mut stats = Stats::default();
    for i in 0..samples {
        let reading = match read_device(device) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("p1_sensor: cannot read {device}: {e}");
                return ExitCode::from(EXIT_IO as u8);
            }
        };
        match reading.parse::<f64>() {
            Ok(value) if value.is_finite() => {
                stats.add(value);
                println!("{{\"sample\":{i},\"value\":{value}}}");
            }
            _ => println!("{{\"sample\":{i},\"value\":{reading:?}}}"),
        }
        if i + 1 < samples && interval_ms > 0 {
            std::thread::sleep(Duration::from_millis(interval_ms));
        }
    }
    println!("{}", stats.summary(samples));
    ExitCode::from(EXIT_OK as u8)
}

fn parse_or(args: &[String], name: &str, default: u64) -> u64 {
    flag(args, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The first line of the device file, trimmed, at most `READING_BYTES_MAX` bytes read.
fn read_device(path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; READING_BYTES_MAX];
    let n = std::fs::File::open(path)?.read(&mut buf)?;
    let text = String::from_utf8_lossy(&buf[..n]);
    Ok(text.lines().next().unwrap_or("").trim().to_owned())
}

#[derive(Default)]
struct Stats {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn add(&mut self, value: f64) {
        if self.count == 0 {
            (self.min, self.max) = (value, value);
        }
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    fn summary(&self, samples: u64) -> String {
        if self.count == 0 {
            return format!("{{\"samples\":{samples},\"numeric\":0}}");
        }
        let mean = self.sum / self.count as f64;
        format!(
            "{{\"samples\":{samples},\"numeric\":{},\"min\":{},\"max\":{},\"mean\":{mean}}}",
            self.count, self.min, self.max
        )
    }
}
