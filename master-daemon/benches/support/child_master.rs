//! A master in its own process for the benchmarks, shared by `failover.rs` and
//! `fleet_scale.rs`: the bench binary starts itself again with an environment variable
//! set, and the child answers one line on stdin with one line on stdout. Its own process
//! so that it can be killed with SIGKILL and its CPU time and memory read from `/proc`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// `tcp/127.0.0.1:PORT` on a port free when asked: where a child master listens, known
/// to its parent before it starts.
pub fn free_loopback_endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("tcp/127.0.0.1:{port}")
}

/// In the child: its stdin, one line at a time, to read beside a runtime.
pub fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (lines_tx, lines) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if lines_tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    lines
}

/// The child process, and the pipe to ask it. Dropping it kills it with SIGKILL and
/// reaps it.
pub struct ChildMaster {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl ChildMaster {
    /// This bench binary again with `env` set to `value`; returns once it printed
    /// `ready`.
    pub fn start(env: &str, value: &str) -> ChildMaster {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(env, value)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        ChildMaster {
            child,
            stdin,
            stdout,
        }
    }

    /// The child's one-line answer to `question`.
    pub fn ask(&mut self, question: &str) -> String {
        writeln!(self.stdin, "{question}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().to_owned()
    }

    #[allow(dead_code, reason = "failover.rs reads nothing from /proc")]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildMaster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
