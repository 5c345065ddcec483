//! What `wasmos sim` prints: one JSON object.

use std::sync::Arc;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

/// Per scenario framework, in scenario order: `(framework, count)`.
pub type Counts = Vec<(String, u64)>;

/// The result of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct SimReport {
    /// Tasks launched, per scenario framework.
    pub launched: Counts,
    /// `(framework, agent, tasks)` with `tasks > 0`, in scenario order of framework, then agent.
    pub placements: Vec<(Arc<str>, Arc<str>, u64)>,
    /// How tasks ended, as their frameworks were told; `None` for a scenario of the first
    /// format (no seed, end time, faults or durations), whose report stays as it was.
    pub outcomes: Option<Outcomes>,
}

/// Tasks per framework by the first terminal state its framework was told, and whether
/// every invariant held throughout the run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcomes {
    pub finished: Counts,
    pub lost: Counts,
    pub killed: Counts,
    pub violations: Vec<String>,
}

struct CountMap<'a>(&'a [(String, u64)]);

/// By framework name: every object of the report has its keys sorted.
impl Serialize for CountMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut sorted: Vec<_> = self.0.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        serializer.collect_map(sorted.into_iter().map(|(framework, n)| (framework, n)))
    }
}

/// Fields in alphabetical order.
#[derive(Serialize)]
struct Placement<'a> {
    agent: &'a str,
    framework: &'a str,
    tasks: u64,
}

#[derive(Serialize)]
struct Invariants<'a> {
    ok: bool,
    violations: &'a [String],
}

/// The placements as they are written, without a copy of them (a large fleet's are
/// hundreds of thousands).
struct Placements<'a>(&'a [(Arc<str>, Arc<str>, u64)]);

impl Serialize for Placements<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|(framework, agent, tasks)| Placement {
            framework,
            agent,
            tasks: *tasks,
        }))
    }
}

/// Keys in alphabetical order, so that a caller may add its own after them (`stats`) and
/// the object reads as one sorted map.
impl Serialize for SimReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(outcomes) = &self.outcomes {
            map.serialize_entry("finished", &CountMap(&outcomes.finished))?;
            let invariants = Invariants {
                ok: outcomes.violations.is_empty(),
                violations: &outcomes.violations,
            };
            map.serialize_entry("invariants", &invariants)?;
            map.serialize_entry("killed", &CountMap(&outcomes.killed))?;
        }
        map.serialize_entry("launched", &CountMap(&self.launched))?;
        if let Some(outcomes) = &self.outcomes {
            map.serialize_entry("lost", &CountMap(&outcomes.lost))?;
        }
        map.serialize_entry("placements", &Placements(&self.placements))?;
        map.end()
    }
}
