//! `p1_ticks [COUNT [INTERVAL_MS]]`: prints `tick I` on stdout COUNT times (default 10,
//! at most 100,000), INTERVAL_MS apart (default 200, at most a minute), every tenth also
//! as `tock I` on stderr, then `done` and exits 0: a task whose output grows while it
//! runs, for `wasmos logs -f`. Exit code 2 on an argument that is not a number.
use std::io::Write;
use std::time::Duration;

const COUNT_DEFAULT: u64 = 10;
const COUNT_MAX: u64 = 100_000;
const INTERVAL_MS_DEFAULT: u64 = 200;
const INTERVAL_MS_MAX: u64 = 60_000;

fn arg(index: usize, default: u64, max: u64) -> u64 {
    match std::env::args().nth(index) {
        None => default,
        Some(arg) => match arg.parse::<u64>() {
            Ok(n) => n.min(max),
            Err(_) => {
                eprintln!("p1_ticks: {arg:?} is not a number");
                std::process::exit(2);
            }
        },
    }
}

fn main() {
    let count = arg(1, COUNT_DEFAULT, COUNT_MAX);
    let interval = Duration::from_millis(arg(2, INTERVAL_MS_DEFAULT, INTERVAL_MS_MAX));
    for i in 0..count {
        println!("tick {i}");
        if i % 10 == 0 {
            eprintln!("tock {i}");
        }
        let _ = std::io::stdout().flush();
        std::thread::sleep(interval);
    }
    println!("done");
}
