//! Writes 64 MiB to stdout in 64 KiB pieces (lines of `x`), then `flood done`, then exits 0.
use std::io::Write;

fn main() {
    let mut line = vec![b'x'; 1023];
    line.push(b'\n');
    let chunk = line.repeat(64);
    let mut out = std::io::stdout().lock();
    for _ in 0..1024 {
        out.write_all(&chunk).expect("stdout");
    }
    writeln!(out, "flood done").expect("stdout");
}
