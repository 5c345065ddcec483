//! `cargo xtask bench --report`: the fleet-scale figures (#19) measured in one run, each
//! beside its goal and its anchor, written to `target/bench-report.md` and `.json`.
//!
//! What it runs: `wasmos sim --stats` on generated fleets (the release build), every
//! criterion benchmark (`cargo bench --workspace`, extra arguments passed on, e.g.
//! `--quick`), an idle master and agent (their resident memory, and the agent's traffic
//! counted by a TCP relay between the two), and the binary's size (`--dist` builds the
//! `dist` profile first, about half an hour on two cores; `--no-criterion` skips the
//! criterion benchmarks, for a report in a few minutes). A figure no benchmark measures
//! yet is listed as not measured, with why.

mod idle;
mod json;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::SystemTime;

use crate::{Result, cargo, fleet_scenario, root, run};

/// What a figure must be to meet its goal.
#[derive(Clone, Copy)]
pub(crate) enum Goal {
    AtMost(f64),
    AtLeast(f64),
    None,
}

/// One measured (or not yet measurable) figure.
pub(crate) struct Figure {
    pub what: String,
    pub value: Option<f64>,
    pub unit: &'static str,
    pub goal: Goal,
    /// A peer's figure or a published one to compare with.
    pub anchor: String,
    /// Why it is not measured, or how it was.
    pub note: String,
}

impl Figure {
    pub(crate) fn new(what: impl Into<String>, value: f64, unit: &'static str) -> Figure {
        Figure {
            what: what.into(),
            value: Some(value),
            unit,
            goal: Goal::None,
            anchor: String::new(),
            note: String::new(),
        }
    }

    pub(crate) fn missing(what: &str, unit: &'static str, why: &str) -> Figure {
        Figure {
            value: None,
            note: why.to_owned(),
            ..Figure::new(what, 0.0, unit)
        }
    }

    pub(crate) fn goal(mut self, goal: Goal) -> Figure {
        self.goal = goal;
        self
    }

    pub(crate) fn anchor(mut self, anchor: &str) -> Figure {
        self.anchor = anchor.to_owned();
        self
    }

    pub(crate) fn note(mut self, note: impl Into<String>) -> Figure {
        self.note = note.into();
        self
    }

    fn met(&self) -> Option<bool> {
        let v = self.value?;
        match self.goal {
            Goal::AtMost(g) => Some(v <= g),
            Goal::AtLeast(g) => Some(v >= g),
            Goal::None => None,
        }
    }
}

/// `bench --report [--dist] [--no-criterion] [CARGO BENCH ARGS]`.
pub(crate) fn bench_report(args: &[String]) -> Result<()> {
    let flag = |name: &str| args.iter().any(|a| a == name);
    let (dist, criterion) = (flag("--dist"), !flag("--no-criterion"));
    let extra: Vec<String> = (args.iter())
        .filter(|a| !matches!(a.as_str(), "--dist" | "--no-criterion"))
        .cloned()
        .collect();
    let root = root();
    let dir = root.join("target/bench-report");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    run(Command::new(cargo())
        .current_dir(&root)
        .args(["build", "--release", "--bin", "wasmos"]))?;
    let wasmos = root.join("target/release/wasmos");
    let mut sections = vec![(
        "Simulator (`wasmos sim --stats`)",
        sim_figures(&wasmos, &dir)?,
    )];
    sections.push((
        "Idle footprint",
        footprint_figures(&root, &wasmos, &dir, dist)?,
    ));
    if criterion {
        let since = SystemTime::now();
        let printed = cargo_bench(&root, &extra)?;
        let medians = criterion_medians(&root.join("target/criterion"), since);
        sections.push((
            "Against a peer, in one run",
            peer_figures(&medians, &printed),
        ));
        sections.push(("Every criterion benchmark (median)", all_medians(&medians)));
    }
    let md = root.join("target/bench-report.md");
    let json = root.join("target/bench-report.json");
    fs::write(&md, markdown(&sections)).map_err(|e| format!("{}: {e}", md.display()))?;
    fs::write(&json, json::report(&sections)).map_err(|e| format!("{}: {e}", json.display()))?;
    eprintln!("xtask: report in {} and {}", md.display(), json.display());
    Ok(())
}

/// (agents, frameworks, fill) of the simulated fleets.
const SIM_FLEETS: [(u64, u64, bool); 4] = [
    (10_000, 1_000, false),
    (10_000, 1_000, true),
    (100_000, 1_000, false),
    (100_000, 1_000, true),
];

fn sim_figures(wasmos: &Path, dir: &Path) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for (agents, frameworks, fill) in SIM_FLEETS {
        let name = format!(
            "{agents} agents x {frameworks} frameworks{}",
            if fill { ", fill" } else { "" }
        );
        let file = dir.join(format!("fleet-{agents}x{frameworks}-{fill}.json"));
        fs::write(&file, fleet_scenario(agents, frameworks, fill))
            .map_err(|e| format!("{}: {e}", file.display()))?;
        eprintln!("xtask: report: wasmos sim --stats on {name}");
        let out = Command::new(wasmos)
            .args(["sim", "--stats"])
            .arg(&file)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("{}: {e}", wasmos.display()))?;
        if !out.status.success() {
            return Err(format!("wasmos sim on {name} failed with {}", out.status));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let stats = text.find("\"stats\"").map_or("", |i| &text[i..]);
        let number = |key: &str| {
            json::number_after(stats, key).ok_or_else(|| format!("no {key} in the stats"))
        };
        let (placements, wall_ms) = (number("placements")?, number("wall_ms")?);
        let (per_s, rss) = (number("placements_per_s")?, number("peak_rss_bytes")?);
        let core = number("core_bytes_per_agent_and_task")?;
        figures.extend(sim_fleet_figures(
            agents,
            fill,
            &name,
            [placements, wall_ms, per_s, rss, core],
        ));
    }
    Ok(figures)
}

fn sim_fleet_figures(agents: u64, fill: bool, name: &str, stats: [f64; 5]) -> Vec<Figure> {
    let [placements, wall_ms, per_s, rss, core] = stats;
    let small = agents <= 10_000;
    let wall_goal = match (small, fill) {
        (_, true) => Goal::None,
        (true, false) => Goal::AtMost(10_000.0),
        (false, false) => Goal::AtMost(120_000.0),
    };
    let rss_goal = if small && !fill {
        Goal::AtMost(500.0)
    } else {
        Goal::None
    };
    let per_unit_goal = if small {
        Goal::None
    } else {
        Goal::AtMost(1024.0)
    };
    let rate_goal = if small && fill {
        Goal::AtLeast(1_000_000.0)
    } else {
        Goal::None
    };
    vec![
        Figure::new(format!("{name}: wall time"), wall_ms, "ms")
            .goal(wall_goal)
            .note(format!("{placements} placements"))
            .anchor("Mesos' allocator: 1.06 s for one 10,000 x 1,000 cycle"),
        Figure::new(format!("{name}: placements per second"), per_s, "/s")
            .goal(rate_goal)
            .anchor("Nomad C1M 3,750 containers/s; Goedel 5,000 pods/s"),
        Figure::new(format!("{name}: peak RSS"), rss / 1e6, "MB").goal(rss_goal),
        Figure::new(
            format!("{name}: core state per agent plus per task"),
            core,
            "B",
        )
        .goal(per_unit_goal)
        .note("heap the master and the agents held at the end (`core_bytes`)"),
        Figure::new(
            format!("{name}: peak RSS per agent plus per task"),
            rss / (agents as f64 + placements),
            "B",
        )
        .note("the whole process: scenario, simulator, report, allocator, code"),
    ]
}

fn footprint_figures(root: &Path, wasmos: &Path, dir: &Path, dist: bool) -> Result<Vec<Figure>> {
    let mut figures = vec![Figure::new(
        "release binary (debug line tables)",
        file_mb(wasmos)?,
        "MB",
    )];
    if dist {
        run(Command::new(cargo()).current_dir(root).args([
            "build",
            "--profile",
            "dist",
            "--bin",
            "wasmos",
        ]))?;
    }
    let dist_bin = root.join("target/dist/wasmos");
    figures.push(
        match dist && dist_bin.exists() {
            true => Figure::new("dist binary, x86_64", file_mb(&dist_bin)?, "MB"),
            false => Figure::missing("dist binary, x86_64", "MB", "pass --dist"),
        }
        .goal(Goal::AtMost(30.0)),
    );
    figures.push(
        Figure::missing(
            "dist binary, aarch64",
            "MB",
            "not built by the report (cargo xtask cross builds the cross profile)",
        )
        .goal(Goal::AtMost(30.0)),
    );
    crate::modules()?;
    let module = root.join("target/modules/p1_hello.wasm");
    figures.extend(idle::figures(wasmos, &module, dir)?);
    Ok(figures)
}

fn file_mb(path: &Path) -> Result<f64> {
    let len = fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    Ok(len as f64 / 1e6)
}

/// Runs every criterion benchmark, echoing its output; returns the lines it printed.
fn cargo_bench(root: &Path, extra: &[String]) -> Result<Vec<String>> {
    crate::modules()?;
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root)
        .args(["bench", "--workspace", "--"])
        .args(extra)
        .stdout(Stdio::piped());
    eprintln!("xtask: $ {cmd:?}");
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let mut lines = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(std::io::Result::ok) {
            println!("{line}");
            lines.push(line);
        }
    }
    let status = child.wait().map_err(|e| format!("{cmd:?}: {e}"))?;
    match status.success() {
        true => Ok(lines),
        false => Err(format!("{cmd:?} failed with {status}")),
    }
}

/// Criterion's median (ns) of every benchmark whose estimate was written since `since`,
/// by its full id (`group/function/parameter`).
fn criterion_medians(dir: &Path, since: SystemTime) -> BTreeMap<String, f64> {
    let mut medians = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_dir() && path.file_name().is_some_and(|n| n != "report") {
                stack.push(path);
            } else if path.ends_with("new/estimates.json")
                && let Some((id, ns)) = criterion_median(&path, since)
            {
                medians.insert(id, ns);
            }
        }
    }
    medians
}

fn criterion_median(estimates: &Path, since: SystemTime) -> Option<(String, f64)> {
    let fresh = fs::metadata(estimates).and_then(|m| m.modified()).ok()? >= since;
    let text = fs::read_to_string(estimates).ok()?;
    let id_file = estimates.with_file_name("benchmark.json");
    let ids = fs::read_to_string(id_file).ok()?;
    let id = json::string_after(&ids, "full_id")?;
    let median = &text[text.find("\"median\"")?..];
    let ns = json::number_after(median, "point_estimate")?;
    fresh.then_some((id, ns))
}

fn peer_figures(medians: &BTreeMap<String, f64>, printed: &[String]) -> Vec<Figure> {
    let ms = |id: &str| medians.get(id).map(|ns| ns / 1e6);
    let ratio = |what: &str, ours: &str, peer: &str, goal: f64, anchor: &str| {
        match (medians.get(ours), medians.get(peer)) {
            (Some(a), Some(b)) if *b > 0.0 => Figure::new(what, a / b, "x").note(format!(
                "{ours} {:.3} ms / {peer} {:.3} ms",
                a / 1e6,
                b / 1e6
            )),
            _ => Figure::missing(what, "x", &format!("{ours} or {peer} did not run")),
        }
        .goal(Goal::AtMost(goal))
        .anchor(anchor)
    };
    let mut figures = vec![
        match ms("allocator/drf_full_pass/10000x1000") {
            Some(v) => Figure::new("DRF full pass, 10,000 x 1,000", v, "ms"),
            None => Figure::missing("DRF full pass, 10,000 x 1,000", "ms", "did not run"),
        }
        .goal(Goal::AtMost(1.0))
        .anchor("Mesos' allocator: 1.06 s per cycle"),
        ratio(
            "drf.wasm against the built-in DRF, 1,000 x 100",
            "allocation_pass_1000x100/drf_wasm",
            "allocation_pass_1000x100/builtin_drf",
            2.0,
            "the built-in DRF, same run",
        ),
        ratio(
            "OCI start by the agent against plain runc run",
            "launch/cached_rootfs",
            "runc_run_detach/same_bundle",
            1.1,
            "runc run --detach of the same bundle, same run",
        ),
        ratio(
            "wasmos task run --oci against plain runc run",
            "oci_one_shot/wasmos_task_run",
            "oci_one_shot/runc_run",
            1.1,
            "runc run of the same spec and rootfs, same run",
        ),
    ];
    figures.extend(latency_figures(printed));
    figures.push(master_rss_figure(printed));
    figures.push(throughput_figure(printed));
    figures.extend(failover_figures(printed));
    figures
}

/// The throughput bench prints `launch_throughput/plain: N tasks finished in S s = X
/// tasks/s (...)`.
fn throughput_figure(printed: &[String]) -> Figure {
    let what = "launches per second through the transport, 100 virtual agents, 60 s";
    let line = printed
        .iter()
        .find(|l| l.starts_with("launch_throughput/") && l.contains("tasks/s"));
    match line.and_then(|l| json::number_after_word(l, "=")) {
        Some(per_s) => Figure::new(what, per_s, "/s").note(
            "throughput bench: accept, run a trivial WASM task, `finished` acknowledged; journals synced",
        ),
        None => Figure::missing(what, "/s", "the throughput bench did not run"),
    }
    .goal(Goal::AtLeast(5_000.0))
    .anchor("Nomad C1M 3,750 containers/s; Goedel 5,000 pods/s")
}

/// The failover bench prints `failover with N agents: first offer X ms after ...`.
fn failover_figures(printed: &[String]) -> Vec<Figure> {
    let what = |agents: &str| format!("master SIGKILL to first new offer, {agents} agents");
    let mut figures: Vec<Figure> = (printed.iter())
        .filter_map(|l| l.strip_prefix("failover with "))
        .filter_map(|rest| {
            let agents = rest.split_whitespace().next()?;
            let ms = json::number_after_word(rest, "offer")?;
            let figure = Figure::new(what(agents), ms, "ms")
                .note("failover bench: real processes, the census ends the 5 s window");
            Some(if agents == "1000" {
                figure.goal(Goal::AtMost(2_000.0))
            } else {
                figure
            })
        })
        .collect();
    if figures.is_empty() {
        figures.push(
            Figure::missing(
                what("1000").as_str(),
                "ms",
                "the failover bench did not run",
            )
            .goal(Goal::AtMost(2_000.0)),
        );
    }
    figures
}

/// The fleet_scale bench prints `master_rss with N virtual agents: rss X MiB`.
fn master_rss_figure(printed: &[String]) -> Figure {
    let line = printed.iter().find(|l| l.starts_with("master_rss "));
    match line.and_then(|l| json::number_after_word(l, "rss")) {
        Some(mib) => Figure::new("master RSS with 10,000 virtual agents", mib, "MiB")
            .note("fleet_scale: the master daemon in its own process, adverts over zenoh"),
        None => Figure::missing(
            "master RSS with 10,000 virtual agents",
            "MiB",
            "fleet_scale did not run",
        ),
    }
}

/// The transport bench prints `accept_to_running/<transport> over N launches: p50 X us,
/// p99 Y us`.
fn latency_figures(printed: &[String]) -> Vec<Figure> {
    let mut figures = Vec::new();
    for line in printed
        .iter()
        .filter(|l| l.starts_with("accept_to_running/"))
    {
        let name = line.split_whitespace().next().unwrap_or_default();
        for (q, goal) in [("p50", 500.0), ("p99", 2_000.0)] {
            if let Some(us) = json::number_after_word(line, q) {
                figures.push(
                    Figure::new(
                        format!("accept to running seen by the framework, {name} {q}"),
                        us,
                        "us",
                    )
                    .goal(if name.ends_with("/plain") {
                        Goal::AtMost(goal)
                    } else {
                        Goal::None
                    })
                    .anchor("plain TCP against TLS with access control, same run"),
                );
            }
        }
    }
    figures
}

fn all_medians(medians: &BTreeMap<String, f64>) -> Vec<Figure> {
    medians
        .iter()
        .map(|(id, ns)| Figure::new(id.clone(), ns / 1e3, "us"))
        .collect()
}

fn markdown(sections: &[(&str, Vec<Figure>)]) -> String {
    let mut md = String::from("# wasmos benchmark report\n\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench --report` on {}.\n",
        host()
    );
    for (title, figures) in sections {
        let _ = writeln!(
            md,
            "## {title}\n\n| figure | measured | goal | met | anchor | note |"
        );
        md.push_str("|---|---|---|---|---|---|\n");
        for f in figures {
            let measured = f.value.map_or("not measured".to_owned(), |v| {
                format!("{} {}", round(v), f.unit)
            });
            let goal = match f.goal {
                Goal::AtMost(g) => format!("<= {} {}", round(g), f.unit),
                Goal::AtLeast(g) => format!(">= {} {}", round(g), f.unit),
                Goal::None => String::new(),
            };
            let met = f.met().map_or("", |m| if m { "yes" } else { "no" });
            let _ = writeln!(
                md,
                "| {} | {measured} | {goal} | {met} | {} | {} |",
                f.what, f.anchor, f.note
            );
        }
        md.push('\n');
    }
    md
}

/// Three significant digits at least, no exponent.
fn round(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 1.0 => format!("{v:.2}"),
        _ => format!("{v:.4}"),
    }
}

fn host() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, Linux {}", kernel.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_failover_lines() {
        let printed = [
            "failover with 10 agents: first offer 260 ms after the master's SIGKILL".to_owned(),
            "failover with 1000 agents: first offer 1037 ms after the master's SIGKILL".to_owned(),
        ];
        let figures = failover_figures(&printed);
        assert_eq!(figures.len(), 2);
        assert_eq!(figures[0].value, Some(260.0));
        assert_eq!(figures[1].value, Some(1037.0));
        assert_eq!(figures[1].met(), Some(true));
        assert_eq!(failover_figures(&[])[0].value, None);
    }

    #[test]
    fn reads_the_throughput_line() {
        let printed = ["launch_throughput/plain: 15605 tasks finished in 15.0 s = 1040 tasks/s (19599 launched, 0 failed, 0 accept calls unanswered; 100 virtual agents)".to_owned()];
        let figure = throughput_figure(&printed);
        assert_eq!(figure.value, Some(1040.0));
        assert_eq!(figure.met(), Some(false));
    }
}
