//! Sleeps for `argv[1]` milliseconds (default 1000, at most an hour), then exits 0: a task
//! that holds its resources for a known time, for demos and failover tests.
use std::time::Duration;

const SLEEP_MS_DEFAULT: u64 = 1_000;
const SLEEP_MS_MAX: u64 = 3_600_000;

fn main() {
    let ms = match std::env::args().nth(1) {
        None => SLEEP_MS_DEFAULT,
        Some(arg) => match arg.parse::<u64>() {
            Ok(ms) => ms.min(SLEEP_MS_MAX),
            Err(_) => {
                eprintln!("p1_sleep: {arg:?} is not a number of milliseconds");
                std::process::exit(2);
            }
        },
    };
    std::thread::sleep(Duration::from_millis(ms));
    println!("slept {ms} ms");
}
