//! The scenario file of `wasmos sim`, parsed and checked.

use std::collections::{BTreeMap, BTreeSet};

use proto::{Attributes, Capability, Constraint, ConstraintOp, Resources, Scalar};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// More agents than this is a scenario error.
pub const SCENARIO_AGENTS_MAX: usize = 100_000;
/// More frameworks than this is a scenario error.
pub const SCENARIO_FRAMEWORKS_MAX: usize = 10_000;
/// More faults than this is a scenario error.
pub const SCENARIO_FAULTS_MAX: usize = 100_000;

/// A malformed scenario; the message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a scenario is a JSON object (`{{\"agents\": [...], \"frameworks\": [...]}}`)")]
    NotObject,
    #[error("{what} id must not be empty")]
    EmptyId { what: &'static str },
    #[error("framework {0:?}: {1}")]
    Label(String, String),
    #[error("{what} id {id:?} appears twice")]
    DuplicateId { what: &'static str, id: String },
    #[error("{owner}: {name} = {value} is not an amount (0 to about 4.6e15)")]
    BadAmount {
        owner: String,
        name: String,
        value: f64,
    },
    #[error(
        "framework {0}: its task asks for no resources (amounts count in thousandths); every task must reserve some, as the master requires"
    )]
    EmptyTask(String),
    #[error("framework {0}: needs a `task` shape, or a `scheduler` module")]
    MissingTask(String),
    #[error("framework {0}: `config` is for a `scheduler` module; a synthetic framework has none")]
    ConfigWithoutScheduler(String),
    #[error("framework {id}: weight {weight} is not a positive number")]
    BadWeight { id: String, weight: f64 },
    #[error("role {role}: frameworks give it different weights ({first} and {second})")]
    RoleWeightConflict {
        role: String,
        first: f64,
        second: f64,
    },
    #[error(
        "framework {0}: its tasks end (duration_ms) and it has no max_tasks, so the run never settles: give the scenario an until_ms"
    )]
    NeverSettles(String),
    #[error("fault {index}: no agent {agent:?} in the scenario")]
    FaultAgent { index: usize, agent: String },
    #[error("fault {index}: at_ms {at_ms} is after until_ms {until_ms}")]
    FaultAfterEnd {
        index: usize,
        at_ms: u64,
        until_ms: u64,
    },
    #[error("{count} {what}, more than the limit of {max}")]
    TooMany {
        what: &'static str,
        count: usize,
        max: usize,
    },
}

/// A whole scenario. Unknown fields are ignored, as in any JSON contract that may grow;
/// [`Scenario::unknown_fields`] lists them so that a caller can warn about typos.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Scenario {
    pub agents: Vec<ScenarioAgent>,
    pub frameworks: Vec<ScenarioFramework>,
    /// Seeds the master core (and so the DRF visiting order); [`crate::SIM_SEED`] when absent.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Virtual time at which the run stops; absent: when nothing more happens.
    #[serde(default)]
    pub until_ms: Option<u64>,
    /// Agents lost and back, master restarts, at given virtual times.
    #[serde(default)]
    pub faults: Vec<Fault>,
}

/// Something that happens to the cluster at `at_ms` of virtual time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub at_ms: u64,
    pub kind: FaultKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The agent's liveliness token goes and nothing passes between it and the master;
    /// it keeps running its tasks. The master declares it lost after its agent-lost timeout.
    AgentLost(String),
    /// The agent's token and link come back, with whatever it still runs.
    AgentBack(String),
    /// The master core is dropped and a new one rebuilt from re-registration alone.
    MasterRestart,
}

/// A fault as the scenario file spells it.
#[derive(Deserialize)]
struct FaultJson {
    at_ms: u64,
    #[serde(default)]
    agent_lost: Option<String>,
    #[serde(default)]
    agent_back: Option<String>,
    #[serde(default)]
    master_restart: Option<bool>,
}

impl<'de> Deserialize<'de> for Fault {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fault, D::Error> {
        let f = FaultJson::deserialize(deserializer)?;
        let kind = match (f.agent_lost, f.agent_back, f.master_restart) {
            (Some(id), None, None) => FaultKind::AgentLost(id),
            (None, Some(id), None) => FaultKind::AgentBack(id),
            (None, None, Some(true)) => FaultKind::MasterRestart,
            _ => {
                return Err(serde::de::Error::custom(
                    "a fault has `at_ms` and exactly one of `\"agent_lost\": ID`, `\"agent_back\": ID`, `\"master_restart\": true`",
                ));
            }
        };
        Ok(Fault {
            at_ms: f.at_ms,
            kind,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ScenarioAgent {
    pub id: String,
    /// Scalar resources by name, in whole units (`"cpus": 8`).
    pub resources: BTreeMap<String, f64>,
    /// Values are strings, numbers or booleans (`"rack": 3` is `rack=3`), or arrays of them.
    #[serde(default, deserialize_with = "attributes_of_json")]
    pub attributes: Attributes,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ScenarioFramework {
    pub id: String,
    /// Defaults to a role of its own, named after its id.
    #[serde(default)]
    pub role: Option<String>,
    /// The weight of its role; 1 by default.
    #[serde(default)]
    pub weight: Option<f64>,
    /// The shape of each of its tasks; required unless `scheduler` is given.
    #[serde(default)]
    pub task: Option<BTreeMap<String, f64>>,
    /// Unlimited by default.
    #[serde(default)]
    pub max_tasks: Option<u64>,
    /// Agent attributes the framework requires (every `key=value`, every value of an
    /// array): it is offered, and so launches on, only agents that have them all.
    #[serde(default, deserialize_with = "attributes_of_json")]
    pub attributes: Attributes,
    /// More placement constraints, as `wasmos run --constraint` takes them
    /// (`"arch!=x86_64"`, `"arch=aarch64,has=camera"`); all must hold, with `attributes`.
    #[serde(default, deserialize_with = "constraints_of_json")]
    pub constraints: Vec<Constraint>,
    /// A scheduler module (`PATH.wasm`, relative to the scenario file) that answers the
    /// framework's events instead of the synthetic behaviour; `task` and `max_tasks` are
    /// then unused.
    #[serde(default)]
    pub scheduler: Option<String>,
    /// The scheduler module's configuration file (its `--config`), relative to the
    /// scenario file.
    #[serde(default)]
    pub config: Option<String>,
    /// Each of its tasks runs this long in virtual time, then finishes; absent: its tasks
    /// never end.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// On each offer, launch as many tasks of its shape as fit (and as it has left, at most
    /// [`crate::frameworks::SIM_FILL_TASKS_MAX`]) instead of exactly one.
    #[serde(default)]
    pub fill: bool,
    /// What it declares, as `FrameworkInfo::capabilities` (`["gpu_resources"]`: it is
    /// offered agents with free GPUs, which others are not).
    #[serde(default)]
    pub capabilities: Vec<Capability>,
}

impl ScenarioFramework {
    /// The synthetic task's shape (empty for a framework with a scheduler module).
    pub fn task_amounts(&self) -> &BTreeMap<String, f64> {
        static NONE: BTreeMap<String, f64> = BTreeMap::new();
        self.task.as_ref().unwrap_or(&NONE)
    }

    pub fn role(&self) -> &str {
        self.role.as_deref().unwrap_or(&self.id)
    }

    pub fn weight(&self) -> f64 {
        self.weight.unwrap_or(1.0)
    }

    /// Its required attributes as constraints, then its other constraints.
    pub fn constraints(&self) -> Vec<Constraint> {
        self.attributes
            .iter()
            .flat_map(|(key, values)| {
                values
                    .iter()
                    .map(move |value| Constraint::new(key, ConstraintOp::Eq, value))
            })
            .chain(self.constraints.iter().cloned())
            .collect()
    }
}

/// Known fields of each object of a scenario.
const SCENARIO_FIELDS: [&str; 5] = ["agents", "frameworks", "seed", "until_ms", "faults"];
const AGENT_FIELDS: [&str; 3] = ["id", "resources", "attributes"];
const FAULT_FIELDS: [&str; 4] = ["at_ms", "agent_lost", "agent_back", "master_restart"];
const FRAMEWORK_FIELDS: [&str; 12] = [
    "capabilities",
    "duration_ms",
    "fill",
    "id",
    "role",
    "weight",
    "task",
    "max_tasks",
    "attributes",
    "constraints",
    "scheduler",
    "config",
];

/// Attribute values as JSON: a string, number or boolean, or an array of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum AttributeValue {
    One(Value),
    Many(Vec<Value>),
}

fn attribute_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Constraints as JSON: strings, each one constraint or several joined by commas.
fn constraints_of_json<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Constraint>, D::Error> {
    let mut constraints = Vec::new();
    for item in Vec::<String>::deserialize(deserializer)? {
        constraints.extend(Constraint::parse_list(&item).map_err(serde::de::Error::custom)?);
    }
    Ok(constraints)
}

fn attributes_of_json<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Attributes, D::Error> {
    let view = Option::<BTreeMap<String, AttributeValue>>::deserialize(deserializer)?;
    let mut attributes = Attributes::new();
    for (key, value) in view.unwrap_or_default() {
        let values = match value {
            AttributeValue::Many(vs) => vs,
            AttributeValue::One(Value::Array(vs)) => vs,
            AttributeValue::One(v) => vec![v],
        };
        for v in &values {
            let text = attribute_text(v).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "attribute {key:?}: {v} is not a string, number or boolean"
                ))
            })?;
            attributes.insert(&key, &text);
        }
    }
    Ok(attributes)
}

impl Scenario {
    /// Parses and checks a scenario.
    pub fn parse(json: &str) -> Result<Scenario, ScenarioError> {
        // serde would take a struct from an array of its fields in order too.
        if !json.trim_start().starts_with('{') {
            return Err(ScenarioError::NotObject);
        }
        let scenario: Scenario = serde_json::from_str(json)?;
        scenario.check()?;
        Ok(scenario)
    }

    /// Fields of `json` that a scenario does not have (`frameworks[2].max_task`), for a
    /// warning: they are ignored. Empty when `json` is not a JSON object.
    pub fn unknown_fields(json: &str) -> Vec<String> {
        let Ok(Value::Object(top)) = serde_json::from_str::<Value>(json) else {
            return Vec::new();
        };
        let mut unknown = unknown_keys("", &top, &SCENARIO_FIELDS);
        for (list, known) in [
            ("agents", &AGENT_FIELDS[..]),
            ("frameworks", &FRAMEWORK_FIELDS),
            ("faults", &FAULT_FIELDS),
        ] {
            let Some(Value::Array(items)) = top.get(list) else {
                continue;
            };
            for (i, item) in items.iter().enumerate() {
                if let Value::Object(fields) = item {
                    unknown.extend(unknown_keys(&format!("{list}[{i}]."), fields, known));
                }
            }
        }
        unknown
    }

    fn check(&self) -> Result<(), ScenarioError> {
        check_count("agents", self.agents.len(), SCENARIO_AGENTS_MAX)?;
        check_count("frameworks", self.frameworks.len(), SCENARIO_FRAMEWORKS_MAX)?;
        check_count("faults", self.faults.len(), SCENARIO_FAULTS_MAX)?;
        check_ids("agent", self.agents.iter().map(|a| a.id.as_str()))?;
        check_ids("framework", self.frameworks.iter().map(|f| f.id.as_str()))?;
        for f in &self.frameworks {
            // What the master checks of the name (the id) and the role it subscribes with.
            proto::check_label("name", &f.id)
                .and_then(|()| proto::check_label("role", f.role()))
                .map_err(|e| ScenarioError::Label(f.id.clone(), e))?;
        }
        for a in &self.agents {
            resources_of(&format!("agent {}", a.id), &a.resources)?;
        }
        for f in &self.frameworks {
            let owner = format!("framework {}", f.id);
            match (&f.scheduler, &f.task) {
                (None, None) => return Err(ScenarioError::MissingTask(f.id.clone())),
                (None, Some(task)) => {
                    // The master refuses a task of nothing: it would run uncounted.
                    if resources_of(&owner, task)?.is_empty() {
                        return Err(ScenarioError::EmptyTask(f.id.clone()));
                    }
                    if f.config.is_some() {
                        return Err(ScenarioError::ConfigWithoutScheduler(f.id.clone()));
                    }
                }
                (Some(_), task) => {
                    resources_of(&owner, task.as_ref().unwrap_or(&BTreeMap::new()))?;
                }
            }
            let weight = f.weight();
            if !(weight > 0.0 && weight.is_finite()) {
                return Err(ScenarioError::BadWeight {
                    id: f.id.clone(),
                    weight,
                });
            }
        }
        self.check_faults()?;
        if self.until_ms.is_none()
            && let Some(f) = self
                .frameworks
                .iter()
                .find(|f| f.duration_ms.is_some() && f.max_tasks.is_none() && f.scheduler.is_none())
        {
            return Err(ScenarioError::NeverSettles(f.id.clone()));
        }
        self.role_weights().map(|_| ())
    }

    fn check_faults(&self) -> Result<(), ScenarioError> {
        let agents: BTreeSet<&str> = self.agents.iter().map(|a| a.id.as_str()).collect();
        for (index, fault) in self.faults.iter().enumerate() {
            if let FaultKind::AgentLost(agent) | FaultKind::AgentBack(agent) = &fault.kind
                && !agents.contains(agent.as_str())
            {
                return Err(ScenarioError::FaultAgent {
                    index,
                    agent: agent.clone(),
                });
            }
            if let Some(until_ms) = self.until_ms
                && fault.at_ms > until_ms
            {
                return Err(ScenarioError::FaultAfterEnd {
                    index,
                    at_ms: fault.at_ms,
                    until_ms,
                });
            }
        }
        Ok(())
    }

    /// True when the scenario uses anything beyond the first format (a seed, an end
    /// time, faults or task durations): its report then also counts how tasks ended and
    /// says whether every invariant held. Older scenarios print exactly what they did.
    pub fn is_dynamic(&self) -> bool {
        self.seed.is_some()
            || self.until_ms.is_some()
            || !self.faults.is_empty()
            || self.frameworks.iter().any(|f| f.duration_ms.is_some())
    }

    /// The weight of each role, checking that frameworks sharing a role agree on it.
    pub fn role_weights(&self) -> Result<BTreeMap<String, f64>, ScenarioError> {
        let mut weights: BTreeMap<String, f64> = BTreeMap::new();
        for f in &self.frameworks {
            match weights.get(f.role()) {
                Some(first) if *first != f.weight() => {
                    return Err(ScenarioError::RoleWeightConflict {
                        role: f.role().to_owned(),
                        first: *first,
                        second: f.weight(),
                    });
                }
                Some(_) => {}
                None => {
                    weights.insert(f.role().to_owned(), f.weight());
                }
            }
        }
        Ok(weights)
    }
}

/// Scalar amounts as [`Resources`] (zero amounts are dropped).
pub(crate) fn resources_of(
    owner: &str,
    amounts: &BTreeMap<String, f64>,
) -> Result<Resources, ScenarioError> {
    let mut r = Resources::new();
    for (name, value) in amounts {
        let scalar = Scalar::from_units(*value).ok_or_else(|| ScenarioError::BadAmount {
            owner: owner.to_owned(),
            name: name.clone(),
            value: *value,
        })?;
        r.set_scalar(name, scalar);
    }
    Ok(r)
}

fn unknown_keys(
    prefix: &str,
    fields: &serde_json::Map<String, Value>,
    known: &[&str],
) -> Vec<String> {
    fields
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| format!("{prefix}{k}"))
        .collect()
}

fn check_count(what: &'static str, count: usize, max: usize) -> Result<(), ScenarioError> {
    if count > max {
        Err(ScenarioError::TooMany { what, count, max })
    } else {
        Ok(())
    }
}

fn check_ids<'a>(
    what: &'static str,
    ids: impl Iterator<Item = &'a str>,
) -> Result<(), ScenarioError> {
    let mut seen = BTreeSet::new();
    for id in ids {
        if id.is_empty() {
            return Err(ScenarioError::EmptyId { what });
        }
        if !seen.insert(id) {
            return Err(ScenarioError::DuplicateId {
                what,
                id: id.to_owned(),
            });
        }
    }
    Ok(())
}
