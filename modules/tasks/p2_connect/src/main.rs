//! Connects over TCP to `127.0.0.1:<port>` (`<port>` is the first argument) and writes
//! `ping` on it. Prints `connected` and exits 0, or prints `connect failed: <error>` and
//! exits 1.

use std::io::Write;
use std::net::TcpStream;

fn main() {
    let port: u16 = match std::env::args().nth(1).map(|a| a.parse()) {
        Some(Ok(port)) => port,
        _ => {
            println!("usage: p2_connect <port>");
            std::process::exit(2);
        }
    };
    match TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| s.write_all(b"ping")) {
        Ok(()) => println!("connected"),
        Err(e) => {
            println!("connect failed: {e}");
            std::process::exit(1);
        }
    }
}
