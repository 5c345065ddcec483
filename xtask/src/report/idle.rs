//! An idle master and agent from the release build, each its own process as on a device:
//! their resident memory once settled, the agent's traffic with the master counted by a
//! TCP relay between the two (every byte on the wire, both directions, zenoh's
//! keep-alives included), then their resident memory after 100, 1,000 and 10,000 trivial
//! WASM tasks have run to the end (`wasmos run --count 256 --wait`, batch after batch).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use super::{Figure, Goal};
use crate::Result;

/// Time for the agent to register and the first adverts to pass before counting.
const SETTLE: Duration = Duration::from_secs(10);
/// How long the agent's traffic is counted.
const COUNTED: Duration = Duration::from_secs(60);
/// Finished tasks after which resident memory is read.
const CURVE: [u64; 3] = [100, 1_000, 10_000];
/// Tasks per `wasmos run` (its most).
const BATCH: u64 = 256;
/// Time for a batch's last acknowledgements and frees before memory is read.
const AFTER_BATCH: Duration = Duration::from_secs(2);

/// A process killed when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command) -> Result<Daemon> {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Daemon)
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))
}

pub(super) fn figures(wasmos: &Path, module: &Path, dir: &Path) -> Result<Vec<Figure>> {
    let run_dir = dir.join("idle");
    let _ = std::fs::remove_dir_all(&run_dir);
    let master_port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let relay = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("relay: {e}"))?;
    let relay_port = relay
        .local_addr()
        .map_err(|e| format!("relay: {e}"))?
        .port();
    let counted = Arc::new(AtomicU64::new(0));
    start_relay(relay, format!("127.0.0.1:{master_port}"), counted.clone());
    let master = spawn(
        Command::new(wasmos)
            .args(["master", "--no-http", "--log", "warn", "--listen"])
            .arg(format!("tcp/127.0.0.1:{master_port}"))
            .arg("--state-dir")
            .arg(run_dir.join("master-state"))
            .arg("--store-dir")
            .arg(run_dir.join("master-store")),
    )?;
    thread::sleep(Duration::from_secs(2));
    let agent = spawn(
        Command::new(wasmos)
            .args(["agent", "--no-oci", "--log", "warn", "--connect"])
            .arg(format!("tcp/127.0.0.1:{relay_port}"))
            .arg("--work-dir")
            .arg(run_dir.join("agent")),
    )?;
    eprintln!(
        "xtask: report: an idle master and agent, {} s to settle, {} s counted",
        SETTLE.as_secs(),
        COUNTED.as_secs()
    );
    thread::sleep(SETTLE);
    let before = counted.load(Ordering::Relaxed);
    thread::sleep(COUNTED);
    let bytes = counted.load(Ordering::Relaxed) - before;
    let (master_rss, agent_rss) = (rss_mib(&master.0)?, rss_mib(&agent.0)?);
    let mut figures = idle_figures(master_rss, agent_rss, bytes, before);
    let connect = format!("tcp/127.0.0.1:{master_port}");
    figures.extend(curve_figures(wasmos, module, &connect, &master, &agent)?);
    drop((agent, master));
    Ok(figures)
}

/// Resident memory of the master and the agent after each count of [`CURVE`] tasks ran.
fn curve_figures(
    wasmos: &Path,
    module: &Path,
    connect: &str,
    master: &Daemon,
    agent: &Daemon,
) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let mut finished = 0;
    for goal in CURVE {
        eprintln!("xtask: report: running tasks until {goal} have finished");
        while finished < goal {
            let count = BATCH.min(goal - finished);
            let out = Command::new(wasmos)
                .arg("run")
                .arg(module)
                .args([
                    "--count",
                    &count.to_string(),
                    "--wait",
                    "--connect",
                    connect,
                ])
                .output()
                .map_err(|e| format!("wasmos run: {e}"))?;
            // A line per task on stderr: shown only when the batch failed.
            if !out.status.success() {
                let said = String::from_utf8_lossy(&out.stderr);
                let tail: Vec<&str> = said.lines().rev().take(5).collect();
                return Err(format!(
                    "wasmos run --count {count} --wait: {}; it said, last first: {}",
                    out.status,
                    tail.join(" | ")
                ));
            }
            finished += count;
        }
        thread::sleep(AFTER_BATCH);
        let agent_rss = Figure::new(
            format!("agent RSS after {goal} finished tasks"),
            rss_mib(&agent.0)?,
            "MiB",
        );
        figures.push(match goal {
            1_000 => agent_rss.goal(Goal::AtMost(16.0)),
            _ => agent_rss,
        });
        figures.push(Figure::new(
            format!("master RSS after {goal} finished tasks"),
            rss_mib(&master.0)?,
            "MiB",
        ));
    }
    Ok(figures)
}

fn idle_figures(master_rss: f64, agent_rss: f64, bytes: u64, before: u64) -> Vec<Figure> {
    let per_minute = bytes as f64 * 60.0 / COUNTED.as_secs_f64();
    vec![
        Figure::new("idle agent RSS", agent_rss, "MiB")
            .goal(Goal::AtMost(12.0))
            .anchor("KubeEdge edgecore ~70 MB, balena supervisor ~45 MB, k3s agent ~270 MB"),
        Figure::new("idle master RSS", master_rss, "MiB").goal(Goal::AtMost(16.0)),
        Figure::new("idle agent traffic with the master", per_minute, "B/min")
            .goal(Goal::AtMost(1024.0))
            .note(format!("{before} bytes while it registered")),
    ]
}

/// Resident memory of a live process, from `/proc`.
fn rss_mib(child: &Child) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .map_err(|e| format!("process {} is gone: {e}", child.id()))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .ok_or_else(|| format!("no VmRSS for process {}", child.id()))?;
    Ok(kib / 1024.0)
}

/// Forwards every connection to `upstream`, adding the bytes passed either way to `counted`.
fn start_relay(listener: TcpListener, upstream: String, counted: Arc<AtomicU64>) {
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let Ok(up) = TcpStream::connect(&upstream) else {
                continue;
            };
            if let (Ok(conn2), Ok(up2)) = (conn.try_clone(), up.try_clone()) {
                pipe(conn, up2, counted.clone());
                pipe(up, conn2, counted.clone());
            }
        }
    });
}

fn pipe(mut from: TcpStream, mut to: TcpStream, counted: Arc<AtomicU64>) {
    thread::spawn(move || {
        let mut buf = [0_u8; 16 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            counted.fetch_add(n as u64, Ordering::Relaxed);
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
