//! What `wasmos sim` prints: one JSON object.

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
    pub placements: Vec<(String, String, u64)>,
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

impl Serialize for CountMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (framework, n) in self.0 {
            map.serialize_entry(framework, n)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct Placement<'a> {
    framework: &'a str,
    agent: &'a str,
    tasks: u64,
}

#[derive(Serialize)]
struct Invariants<'a> {
    ok: bool,
    violations: &'a [String],
}

impl Serialize for SimReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let placements: Vec<Placement<'_>> = self
            .placements
            .iter()
            .map(|(framework, agent, tasks)| Placement {
                framework,
                agent,
                tasks: *tasks,
            })
            .collect();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("launched", &CountMap(&self.launched))?;
        map.serialize_entry("placements", &placements)?;
        if let Some(outcomes) = &self.outcomes {
            map.serialize_entry("finished", &CountMap(&outcomes.finished))?;
            map.serialize_entry("lost", &CountMap(&outcomes.lost))?;
            map.serialize_entry("killed", &CountMap(&outcomes.killed))?;
            let invariants = Invariants {
                ok: outcomes.violations.is_empty(),
                violations: &outcomes.violations,
            };
            map.serialize_entry("invariants", &invariants)?;
        }
        map.end()
    }
}
