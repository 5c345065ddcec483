//! `/metrics` in the Prometheus text exposition format (0.0.4), rendered straight from a
//! [`ClusterState`]: gauges are counted from the snapshot, counters come from
//! [`crate::state::Counters`].

use std::collections::BTreeMap;
use std::fmt::Write;

use proto::TaskState;

use crate::state::{AgentState, ClusterState, Histogram, TaskRow};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn render(state: &ClusterState) -> String {
    let mut out = String::new();
    gauges(&mut out, state);
    counters(&mut out, state);
    task_samples(&mut out, &state.tasks);
    resources(&mut out, state);
    out
}

/// What the rows count: agents, frameworks, tasks and offers.
fn gauges(out: &mut String, state: &ClusterState) {
    family(
        out,
        "wasmos_agents",
        "gauge",
        "Agents known to the master, by state.",
    );
    for s in AgentState::ALL {
        let n = state.agents.iter().filter(|a| a.state == s).count();
        sample(out, "wasmos_agents", &[("state", s.as_str())], n as f64);
    }

    family(
        out,
        "wasmos_frameworks",
        "gauge",
        "Frameworks registered with the master.",
    );
    sample(out, "wasmos_frameworks", &[], state.frameworks.len() as f64);

    family(
        out,
        "wasmos_tasks",
        "gauge",
        "Tasks live or recently ended, by state.",
    );
    for s in TaskState::ALL {
        let n = state.tasks.iter().filter(|t| t.state == s).count();
        sample(out, "wasmos_tasks", &[("state", s.as_str())], n as f64);
    }

    family(
        out,
        "wasmos_offers_outstanding",
        "gauge",
        "Offers made and not yet answered.",
    );
    sample(
        out,
        "wasmos_offers_outstanding",
        &[],
        state.offers.len() as f64,
    );
}

/// The recorder's counters of offers and allocation passes.
fn counters(out: &mut String, state: &ClusterState) {
    let c = &state.counters;
    family(
        out,
        "wasmos_offers_total",
        "counter",
        "Offers by outcome since the master started.",
    );
    for (outcome, n) in [
        ("sent", c.offers_sent),
        ("accepted", c.offers_accepted),
        ("declined", c.offers_declined),
        ("rescinded", c.offers_rescinded),
    ] {
        sample(
            out,
            "wasmos_offers_total",
            &[("outcome", outcome)],
            n as f64,
        );
    }

    family(
        out,
        "wasmos_allocation_pass_duration_seconds",
        "histogram",
        "Time of one allocation pass of the master.",
    );
    histogram(
        out,
        "wasmos_allocation_pass_duration_seconds",
        &c.allocation_pass_seconds,
    );
    shares_and_faults(out, state);
}

/// Dominant shares, then the counters of what went wrong on the way in.
fn shares_and_faults(out: &mut String, state: &ClusterState) {
    let c = &state.counters;
    family(
        out,
        "wasmos_framework_dominant_share",
        "gauge",
        "DRF dominant share of each framework (0 to 1).",
    );
    for f in &state.frameworks {
        sample(
            out,
            "wasmos_framework_dominant_share",
            &[("framework", f.framework_id.as_str()), ("name", &f.name)],
            f.dominant_share,
        );
    }

    family(
        out,
        "wasmos_decode_errors_total",
        "counter",
        "Payloads dropped because they did not decode, by key.",
    );
    for (key, n) in &c.decode_errors {
        sample(
            out,
            "wasmos_decode_errors_total",
            &[("key", key)],
            *n as f64,
        );
    }

    family(
        out,
        "wasmos_status_update_retries_total",
        "counter",
        "Task status updates resent by agents for want of an acknowledgement.",
    );
    sample(
        out,
        "wasmos_status_update_retries_total",
        &[],
        c.status_update_retries as f64,
    );
}

/// Per task: exit codes and usage.
fn task_samples(out: &mut String, tasks: &[TaskRow]) {
    family(
        out,
        "wasmos_task_exit_code",
        "gauge",
        "Exit code of each task in the snapshot that reported one (live and recently ended).",
    );
    for t in tasks {
        if let Some(code) = t.exit_code {
            let labels = task_labels(t);
            sample(out, "wasmos_task_exit_code", &labels, f64::from(code));
        }
    }

    let usage = |t: &&TaskRow| t.cpu_seconds.is_some();
    family(
        out,
        "wasmos_task_cpu_seconds_total",
        "counter",
        "Cpu time each task in the snapshot used, as its agent reported it.",
    );
    for t in tasks.iter().filter(usage) {
        let labels = task_labels(t);
        let cpu = t.cpu_seconds.unwrap_or_default();
        sample(out, "wasmos_task_cpu_seconds_total", &labels, cpu);
    }
    family(
        out,
        "wasmos_task_memory_bytes",
        "gauge",
        "Memory each task in the snapshot used at its agent's last report.",
    );
    for t in tasks.iter().filter(usage) {
        let labels = task_labels(t);
        let memory = t.memory_bytes.unwrap_or_default() as f64;
        sample(out, "wasmos_task_memory_bytes", &labels, memory);
    }
}

fn resources(out: &mut String, state: &ClusterState) {
    let resources = cluster_resources(state);
    family(
        out,
        "wasmos_cluster_resources",
        "gauge",
        "Scalar resources of active agents, by resource and kind (total, used, offered).",
    );
    for ((resource, kind), v) in &resources {
        sample(
            out,
            "wasmos_cluster_resources",
            &[("resource", resource), ("kind", kind)],
            *v,
        );
    }
}

fn task_labels(t: &TaskRow) -> [(&'static str, &str); 3] {
    [
        ("task", t.task_id.as_str()),
        ("framework", t.framework_id.as_str()),
        ("agent", t.agent_id.as_str()),
    ]
}

fn cluster_resources(state: &ClusterState) -> BTreeMap<(String, &'static str), f64> {
    let mut sums = BTreeMap::new();
    for a in state
        .agents
        .iter()
        .filter(|a| a.state == AgentState::Active)
    {
        for (kind, r) in [
            ("total", &a.total),
            ("used", &a.used),
            ("offered", &a.offered),
        ] {
            for (name, v) in &r.scalars {
                *sums.entry((name.to_string(), kind)).or_insert(0.0) += v.units();
            }
        }
    }
    sums
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", format_value(value));
}

fn histogram(out: &mut String, name: &str, h: &Histogram) {
    let bucket = format!("{name}_bucket");
    for (bound, n) in h.bounds.iter().zip(&h.cumulative_counts) {
        sample(out, &bucket, &[("le", &format_value(*bound))], *n as f64);
    }
    sample(out, &bucket, &[("le", "+Inf")], h.count as f64);
    sample(out, &format!("{name}_sum"), &[], h.sum);
    sample(out, &format!("{name}_count"), &[], h.count as f64);
}

/// Label values escape backslash, double quote and newline, as the format requires.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".to_owned()
        } else {
            "-Inf".to_owned()
        }
    } else {
        format!("{v}")
    }
}
