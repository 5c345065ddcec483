//! Which waiting copies go on which offer: constraints must hold, resources must fit, and
//! copies of one job spread over the values of its spread attribute, then over the agents
//! offered.

use std::collections::BTreeMap;

use proto::{
    AgentId, Backoff, Constraint, DisconnectPolicy, ModuleRef, OciTask, Offer, Resources,
    RestartPolicy, TaskId, TaskKind, TaskLimits, TaskSpec, WasmTask,
};

use crate::book::task_resources;
use crate::request::{Artifact, ValidJob};

/// One copy waiting for an offer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Want {
    pub job_id: String,
    pub slot: usize,
    pub resources: Resources,
    pub constraints: Vec<Constraint>,
    /// The only agent the copy may run on (a per-agent copy).
    pub bound: Option<AgentId>,
    /// Agents quarantined for its job.
    pub avoid: Vec<AgentId>,
}

/// Where one job's copies run: per agent, and per value of its spread attribute (`""`
/// for agents without it).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Spread {
    pub key: Option<String>,
    pub agents: BTreeMap<AgentId, usize>,
    pub values: BTreeMap<String, usize>,
}

impl Spread {
    fn value_of(&self, offer: &Offer) -> Option<String> {
        let key = self.key.as_ref()?;
        Some(offer.attributes.get(key).unwrap_or_default().to_owned())
    }

    /// Lower is preferred: copies on the offer's spread value, then on its agent.
    fn load(&self, offer: &Offer) -> (usize, usize) {
        let on_value =
            (self.value_of(offer)).map_or(0, |v| self.values.get(&v).copied().unwrap_or(0));
        let on_agent = self.agents.get(&offer.agent_id).copied().unwrap_or(0);
        (on_value, on_agent)
    }

    fn add(&mut self, offer: &Offer) {
        *self.agents.entry(offer.agent_id.clone()).or_default() += 1;
        if let Some(value) = self.value_of(offer) {
            *self.values.entry(value).or_default() += 1;
        }
    }
}

/// Assigns waiting copies to the offers of one batch, oldest copy first; returns, per
/// offer (by index in `offers`), the copies it takes. A copy goes to the offer, among
/// those whose agent satisfies its job's constraints (and is its bound agent, if any) and
/// has room left, whose spread value then whose agent runs the fewest tasks of that job
/// (`running[job]`, plus those assigned in this batch); ties go to the earlier offer. A
/// copy no offer can take stays out and waits.
///
/// Spreading is therefore a preference, never a reason to wait: with one agent able to
/// take a job, it takes every copy that fits.
pub(crate) fn assign(
    offers: &[Offer],
    wants: Vec<Want>,
    running: &BTreeMap<String, Spread>,
) -> Vec<Vec<Want>> {
    let mut left: Vec<Resources> = offers.iter().map(|o| o.resources.clone()).collect();
    let mut assigned: Vec<Vec<Want>> = vec![Vec::new(); offers.len()];
    let mut counts = running.clone();
    for want in wants {
        let job_counts = counts.entry(want.job_id.clone()).or_default();
        let best = offers
            .iter()
            .enumerate()
            .filter(|(i, o)| {
                want.bound.as_ref().is_none_or(|a| *a == o.agent_id)
                    && !want.avoid.contains(&o.agent_id)
                    && o.attributes.satisfies(&want.constraints)
                    && left[*i].contains(&want.resources)
            })
            .min_by_key(|(i, o)| (job_counts.load(o), *i))
            .map(|(i, _)| i);
        let Some(i) = best else { continue };
        left[i].subtract_saturating(&want.resources);
        job_counts.add(&offers[i]);
        assigned[i].push(want);
    }
    assigned
}

/// The task one copy of `job` runs under `task_id`.
pub(crate) fn task_spec(
    job: &ValidJob,
    task_id: &TaskId,
    backoff: Backoff,
    replaces: Option<TaskId>,
) -> TaskSpec {
    let kind = match &job.artifact {
        Artifact::Module(sha256) => TaskKind::Wasm(WasmTask {
            module: ModuleRef {
                sha256: sha256.clone(),
                // Not known here; agents take the size from the store's chunks.
                size_bytes: 0,
                name: job.name.clone(),
            },
            args: job.args.clone(),
            env: job.env.clone(),
            ..WasmTask::default()
        }),
        Artifact::Image(image) => TaskKind::Oci(OciTask {
            image: image.clone(),
            command: job.args.clone(),
            env: job.env.clone(),
            ..OciTask::default()
        }),
    };
    TaskSpec {
        task_id: task_id.clone(),
        name: job.name.clone(),
        resources: task_resources(job),
        kind,
        limits: TaskLimits {
            timeout_ms: job.timeout_ms,
            ..TaskLimits::default()
        },
        disconnect: disconnect_policy(job, backoff),
        replaces,
    }
}

/// What the agent and the master do with the job's tasks while cut off from each other:
/// the agent restarts them in place under the job's policy; the master keeps them
/// `unreachable` for `lost_after_ms`. A job with neither has none.
fn disconnect_policy(job: &ValidJob, backoff: Backoff) -> Option<Box<DisconnectPolicy>> {
    if job.restart == RestartPolicy::Never && job.lost_after_ms.is_none() {
        return None;
    }
    Some(Box::new(DisconnectPolicy {
        restart: job.restart,
        backoff,
        lost_after_ms: job.lost_after_ms,
        on_reconnect: job.on_reconnect,
    }))
}
