//! Declared jobs in the [`JobBook`]: a service of N copies (or N on every matching agent)
//! kept running, versioned, and updated by health-gated rollouts, Nomad's `update` block
//! as the contract (`proto::declared`).
//!
//! A declared job is a [`Job`] with a [`Service`]: its slots are its copies, each of one
//! version. After every input the book *reconciles* each service: [`plan`] (pure: the
//! service, its copies and the time in; copies to add and stop and an outcome out) says
//! what to do, and the book does it. The rules:
//! - A copy is **healthy** once its task has been `running` for `min_healthy_ms` (a
//!   failure or an end before that resets the wait), or when it is done: it finished and
//!   its restart policy does not restart finished tasks. A copy that finishes under
//!   `always` is not up until its next task has run `min_healthy_ms`.
//! - A per-agent job's rollout is done once it has copies; with none by
//!   `healthy_deadline_ms` it fails (no agent matched).
//! - Scaling up during a rollout adds copies of the new version; a revert that fails is
//!   not reverted again.
//! - **Steady** (no rollout): copies of the newest version are added or stopped until
//!   there are `count`; a copy whose restart policy let it end still counts.
//! - **Rollout** to version `to`: first `canary` copies of `to` beside the old ones (not
//!   on a first version), promoted once all are healthy (`auto_promote`, or
//!   `wasmos job promote`). Then old copies are stopped and replaced by copies of `to`,
//!   at most `max_parallel` of `to` not yet healthy at a time, never taking the healthy
//!   copies below `count - max_parallel` (unhealthy old copies go first). It succeeds
//!   when only copies of `to` are left, `count` of them, all healthy. It fails when a copy
//!   of `to` fails, or is not healthy `healthy_deadline_ms` after it was added; with
//!   `auto_revert`, a new version with the last healthy version's task rolls out then.
//! - **Per agent**: copies are added from offers, `per_agent` on each agent that matches,
//!   bound to it; a rollout replaces each in place.

use std::collections::{BTreeMap, VecDeque};

use proto::declared::{DeployChange, Deployed, HistoryEntry, JobStatus, JobSummary, JobsReply};
use proto::{AgentId, Call, Offer, TaskState};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::book::{Job, JobBook, Slot, SlotState};

mod plan;
mod rows;

use crate::declared::{Desired, ValidDecl, same_task};
use crate::request::ValidJob;
use plan::{NewCopy, Outcome, plan};
use rows::{copy_row, summary, version_row};

/// History entries kept per declared job; the oldest are forgotten first.
pub const HISTORY_KEPT_MAX: usize = 64;
/// Versions kept per declared job; the oldest not in use are forgotten first.
pub const VERSIONS_KEPT_MAX: usize = 32;
/// Reconcile passes per input: an outcome (a failed rollout) may start another rollout.
const RECONCILE_PASSES_MAX: usize = 4;

/// What the operator asks of declared jobs, validated.
#[derive(Clone, Debug, PartialEq)]
pub enum ServiceRequest {
    Deploy(Box<ValidDecl>),
    List,
    Status(String),
    History(String),
    Promote(String),
    Revert { name: String, to: Option<u32> },
    Stop(String),
}

#[derive(Clone, Debug, PartialEq, Error)]
pub enum ServiceError {
    #[error("no job {0}: see `wasmos job list`")]
    NotFound(String),
    #[error("job {name} has no version {version}: see `wasmos job status {name}`")]
    NoVersion { name: String, version: u32 },
    #[error("{0}")]
    Conflict(String),
}

/// What a copy of a declared job is; the default for other jobs' copies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ServiceCopy {
    pub version: u32,
    pub canary: bool,
    /// Stopped by a rollout or a scale-down (its kill is on the way).
    pub stopping: bool,
    /// The agent a per-agent copy belongs to.
    pub bound: Option<AgentId>,
    /// Since when it is up without failing.
    pub up_since: Option<u64>,
    pub healthy: bool,
    /// Failed since it was last healthy.
    pub failed: bool,
    /// When it was added (the healthy deadline counts from then).
    pub created_ms: u64,
    /// When it was first placed on an agent.
    pub placed_ms: Option<u64>,
    /// Its agent's value of the job's spread attribute.
    pub spread_value: Option<String>,
    /// The agent its latest task was placed on (shown once the task ended).
    #[serde(default)]
    pub agent: Option<AgentId>,
}

impl ServiceCopy {
    pub(crate) fn launched(&mut self, now_ms: u64, agent: &AgentId, spread_value: Option<String>) {
        self.placed_ms.get_or_insert(now_ms);
        self.agent = Some(agent.clone());
        self.spread_value = spread_value;
    }

    /// A new state of its task. A kill the book asked for is not a failure. A task that
    /// finished is healthy when its copy is done (its restart policy does not restart a
    /// finished task); otherwise the copy is not up, and healthy only once its next task
    /// has run `min_healthy_ms`.
    pub(crate) fn handle_state(
        &mut self,
        now_ms: u64,
        state: TaskState,
        killed_by_us: bool,
        finished_restarts: bool,
    ) {
        match state {
            TaskState::Running => {
                self.up_since.get_or_insert(now_ms);
            }
            TaskState::Failed | TaskState::Error | TaskState::Lost if !killed_by_us => {
                self.failed = true;
                self.healthy = false;
                self.up_since = None;
            }
            TaskState::Finished if !killed_by_us => {
                self.up_since = None;
                self.healthy = !finished_restarts;
            }
            _ => {}
        }
    }

    /// Healthy once up for `min_healthy_ms`, which clears an earlier failure.
    fn refresh_health(&mut self, now_ms: u64, min_healthy_ms: u64) {
        if !self.healthy
            && (self.up_since).is_some_and(|t| now_ms >= t.saturating_add(min_healthy_ms))
        {
            self.healthy = true;
            self.failed = false;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum VersionState {
    Deploying,
    Stable,
    Failed,
    Superseded,
}

impl VersionState {
    fn as_str(self) -> &'static str {
        match self {
            VersionState::Deploying => "deploying",
            VersionState::Stable => "stable",
            VersionState::Failed => "failed",
            VersionState::Superseded => "superseded",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Version {
    pub job: ValidJob,
    state: VersionState,
    reason: String,
    reverts_to: Option<u32>,
    /// Wall clock, ms since the Unix epoch.
    created_at_ms: u64,
    /// Became healthy once: a version `wasmos job revert` may go back to.
    was_stable: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Rollout {
    from: Option<u32>,
    to: u32,
    /// Wall clock, ms since the Unix epoch.
    started_at_ms: u64,
    promoted: bool,
    /// "Canaries healthy, waiting for promote" is in the history.
    announced: bool,
    /// When it began on the book's clock (set by the first reconcile; `None` again after
    /// a restore, so that its waits start afresh).
    #[serde(skip)]
    since_ms: Option<u64>,
}

/// A declared job's versions, rollout and history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Service {
    pub decl: ValidDecl,
    pub versions: BTreeMap<u32, Version>,
    latest: u32,
    stable: Option<u32>,
    rollout: Option<Rollout>,
    stopped: bool,
    history: VecDeque<HistoryEntry>,
}

impl Service {
    /// Copies wanted now: `count`, or `per_agent` times the agents that have copies.
    pub(crate) fn desired(&self, slots: &BTreeMap<usize, Slot>) -> usize {
        match self.decl.desired {
            Desired::Count(n) => n as usize,
            Desired::PerAgent(n) => {
                let mut agents: Vec<&AgentId> = (slots.values())
                    .filter(|s| !s.copy.stopping)
                    .filter_map(|s| s.copy.bound.as_ref())
                    .collect();
                agents.sort();
                agents.dedup();
                agents.len() * n as usize
            }
        }
    }

    fn per_agent(&self) -> Option<usize> {
        match self.decl.desired {
            Desired::PerAgent(n) => Some(n as usize),
            Desired::Count(_) => None,
        }
    }

    fn log(&mut self, at_ms: u64, version: u32, event: &str, message: String) {
        tracing::info!(job = %self.decl.template.name, version, event, %message, "declared job");
        self.history.push_back(HistoryEntry {
            at_ms,
            version,
            event: event.to_owned(),
            message,
        });
        while self.history.len() > HISTORY_KEPT_MAX {
            self.history.pop_front();
        }
    }

    pub(crate) fn quarantined(
        &mut self,
        at: u64,
        agent: &AgentId,
        policy: proto::declared::QuarantinePolicy,
    ) {
        let message = format!(
            "agent {agent} gets no copies for {} ms: {} tasks failed there within {} ms",
            policy.backoff_ms, policy.failures, policy.window_ms
        );
        let latest = self.latest;
        self.log(at, latest, "quarantined", message);
    }

    /// A new declared job at version 1, rolling out.
    fn create(at: u64, decl: ValidDecl) -> (Job, u32) {
        let mut service = Service {
            decl: decl.clone(),
            versions: BTreeMap::new(),
            latest: 0,
            stable: None,
            rollout: None,
            stopped: false,
            history: VecDeque::new(),
        };
        let version = service.new_version(at, decl.template.clone(), None);
        let message = format!("job created at version {version}");
        service.log(at, version, "deployed", message);
        let job = Job {
            job: decl.template,
            slots: BTreeMap::new(),
            next_slot: 0,
            service: Some(Box::new(service)),
            quarantine: crate::quarantine::Quarantine::default(),
        };
        (job, version)
    }

    /// A deploy of an existing job: nothing, a change in place, or a new version.
    fn update(&mut self, at: u64, decl: &ValidDecl) -> DeployChange {
        let latest = self.latest;
        let same_task = (self.versions.get(&latest)).is_some_and(|v| decl.same_task(&v.job));
        if same_task && self.decl == *decl && !self.stopped {
            return DeployChange::Unchanged;
        }
        let message = describe_in_place(&self.decl, decl, self.stopped);
        let was_stopped = std::mem::replace(&mut self.stopped, false);
        self.decl = decl.clone();
        if same_task {
            let mut resume = false;
            if let Some(v) = self.versions.get_mut(&latest) {
                v.job = decl.template.clone();
                resume = was_stopped && v.state != VersionState::Stable;
                if resume {
                    v.state = VersionState::Deploying;
                }
            }
            if resume {
                // Stopped before it was healthy: its rollout starts again.
                self.rollout = Some(Rollout {
                    from: self.stable,
                    to: latest,
                    started_at_ms: at,
                    promoted: true,
                    announced: false,
                    since_ms: None,
                });
            }
            self.log(at, latest, "updated", message);
            return DeployChange::Updated;
        }
        let from = self.stable;
        let version = self.new_version(at, decl.template.clone(), None);
        let from = from.map_or("no healthy version".to_owned(), |v| format!("version {v}"));
        let message = format!("rolling out version {version} (from {from})");
        self.log(at, version, "deployed", message);
        DeployChange::Rollout
    }

    /// Starts a rollout to a new version running `job`; `at` is the wall clock.
    fn new_version(&mut self, at: u64, job: ValidJob, reverts_to: Option<u32>) -> u32 {
        if let Some(r) = self.rollout.take()
            && let Some(v) = self.versions.get_mut(&r.to)
            && v.state == VersionState::Deploying
        {
            v.state = VersionState::Superseded;
        }
        self.latest += 1;
        let number = self.latest;
        self.versions.insert(
            number,
            Version {
                job,
                state: VersionState::Deploying,
                reason: String::new(),
                reverts_to,
                created_at_ms: at,
                was_stable: false,
            },
        );
        self.rollout = Some(Rollout {
            from: self.stable,
            to: number,
            started_at_ms: at,
            // A revert goes back without canaries.
            promoted: reverts_to.is_some(),
            announced: false,
            since_ms: None,
        });
        number
    }

    /// Forgets the oldest versions beyond [`VERSIONS_KEPT_MAX`] that no copy runs and
    /// that are neither stable nor rolled out to.
    fn prune_versions(&mut self, slots: &BTreeMap<usize, Slot>) {
        while self.versions.len() > VERSIONS_KEPT_MAX {
            let in_use = |v: u32| {
                Some(v) == self.stable
                    || v == self.latest
                    || slots.values().any(|s| s.copy.version == v)
            };
            let Some(oldest) = self.versions.keys().copied().find(|v| !in_use(*v)) else {
                return;
            };
            self.versions.remove(&oldest);
        }
    }
}

/// A per-agent job, running, looks at every offer for agents without its copies.
pub(crate) fn wants_every_agent(job: &Job) -> bool {
    job.service
        .as_ref()
        .is_some_and(|s| !s.stopped && s.per_agent().is_some())
}

/// When a copy of `job` next becomes healthy or misses its deadline.
pub(crate) fn next_health_check(job: &Job) -> Option<u64> {
    let service = job.service.as_ref()?;
    let update = &service.decl.update;
    let to = service.rollout.as_ref().map(|r| r.to);
    (job.slots.values())
        .filter(|s| !s.copy.healthy && !s.copy.stopping)
        .filter_map(|s| {
            let healthy = (s.copy.up_since).map(|t| t.saturating_add(update.min_healthy_ms));
            let deadline = (Some(s.copy.version) == to)
                .then(|| s.copy.created_ms.saturating_add(update.healthy_deadline_ms));
            healthy.into_iter().chain(deadline).min()
        })
        .min()
}

/// The job id of a declared job in the book: `@` never starts a `wasmos run` job's id.
pub(crate) fn service_key(name: &str) -> String {
    format!("@{name}")
}

impl JobBook {
    /// An operator's request about declared jobs.
    pub fn handle_service_request(
        &mut self,
        now_ms: u64,
        request: ServiceRequest,
    ) -> Result<JobsReply, ServiceError> {
        let reply = match request {
            ServiceRequest::Deploy(decl) => JobsReply::Deployed(self.deploy(now_ms, *decl)?),
            ServiceRequest::List => JobsReply::List(self.service_summaries(now_ms)),
            ServiceRequest::Status(name) => {
                JobsReply::Status(Box::new(self.service_status(now_ms, &name)?))
            }
            ServiceRequest::History(name) => {
                let service = self.service(&name)?;
                JobsReply::History(service.history.iter().cloned().collect())
            }
            ServiceRequest::Promote(name) => JobsReply::Done(self.promote(now_ms, &name)?),
            ServiceRequest::Revert { name, to } => JobsReply::Done(self.revert(now_ms, &name, to)?),
            ServiceRequest::Stop(name) => JobsReply::Done(self.stop(now_ms, &name)?),
        };
        self.reconcile_services(now_ms);
        self.settle_wants();
        Ok(reply)
    }

    fn service(&self, name: &str) -> Result<&Service, ServiceError> {
        (self.jobs.get(&service_key(name)))
            .and_then(|job| job.service.as_deref())
            .ok_or_else(|| ServiceError::NotFound(name.to_owned()))
    }

    fn service_mut(&mut self, name: &str) -> Result<&mut Job, ServiceError> {
        (self.jobs.get_mut(&service_key(name)))
            .filter(|job| job.service.is_some())
            .ok_or_else(|| ServiceError::NotFound(name.to_owned()))
    }

    fn deploy(&mut self, now_ms: u64, decl: ValidDecl) -> Result<Deployed, ServiceError> {
        let name = decl.template.name.clone();
        let at = self.wall_base_ms.saturating_add(now_ms);
        let key = service_key(&name);
        let Some(job) = self.jobs.get_mut(&key) else {
            if self.jobs.len() >= self.config.jobs_max {
                return Err(ServiceError::Conflict(format!(
                    "the jobs framework holds {} jobs already",
                    self.config.jobs_max
                )));
            }
            let (job, version) = Service::create(at, decl);
            self.jobs.insert(key, job);
            return Ok(Deployed {
                name,
                version,
                change: DeployChange::Created,
            });
        };
        let Some(service) = job.service.as_deref_mut() else {
            return Err(ServiceError::Conflict(format!(
                "{name} is not a declared job"
            )));
        };
        let change = service.update(at, &decl);
        let version = service.latest;
        job.job = decl.template;
        Ok(Deployed {
            name,
            version,
            change,
        })
    }

    fn promote(&mut self, now_ms: u64, name: &str) -> Result<String, ServiceError> {
        let at = self.wall_base_ms.saturating_add(now_ms);
        let job = self.service_mut(name)?;
        let canaries: Vec<bool> = (job.slots.values())
            .filter(|s| s.copy.canary && !s.copy.stopping)
            .map(|s| s.copy.healthy)
            .collect();
        let Some(service) = job.service.as_deref_mut() else {
            return Err(ServiceError::NotFound(name.to_owned()));
        };
        let with_canaries = service.decl.update.canary > 0;
        let waiting =
            (service.rollout.as_mut()).filter(|r| !r.promoted && r.from.is_some() && with_canaries);
        let Some(rollout) = waiting else {
            return Err(ServiceError::Conflict(format!(
                "job {name} has no canaries waiting for promotion"
            )));
        };
        let healthy = canaries.iter().filter(|h| **h).count();
        if canaries.is_empty() || healthy < canaries.len() {
            return Err(ServiceError::Conflict(format!(
                "job {name}: {healthy} of {} canaries are healthy; promote once all are",
                canaries.len()
            )));
        }
        rollout.promoted = true;
        let to = rollout.to;
        service.log(
            at,
            to,
            "promoted",
            format!("canaries of version {to} promoted"),
        );
        Ok(format!("job {name}: version {to} promoted; rolling out"))
    }

    fn revert(&mut self, now_ms: u64, name: &str, to: Option<u32>) -> Result<String, ServiceError> {
        let at = self.wall_base_ms.saturating_add(now_ms);
        let job = self.service_mut(name)?;
        let Some(service) = job.service.as_deref_mut() else {
            return Err(ServiceError::NotFound(name.to_owned()));
        };
        if service.stopped {
            return Err(ServiceError::Conflict(format!(
                "job {name} is stopped: deploy it to start it again"
            )));
        }
        let target = match to {
            Some(v) => v,
            None => (service.versions.iter().rev())
                .find(|(n, v)| v.was_stable && **n != service.latest)
                .map(|(n, _)| *n)
                .ok_or_else(|| {
                    ServiceError::Conflict(format!(
                        "job {name} has no earlier healthy version to go back to"
                    ))
                })?,
        };
        if target == service.latest {
            return Err(ServiceError::Conflict(format!(
                "version {target} is job {name}'s current version"
            )));
        }
        let Some(known) = service.versions.get(&target) else {
            return Err(ServiceError::NoVersion {
                name: name.to_owned(),
                version: target,
            });
        };
        let task = known.job.clone();
        let failed_before = match known.state {
            VersionState::Failed => format!(" (it failed before: {})", known.reason),
            _ => String::new(),
        };
        let version = service.new_version(at, task.clone(), Some(target));
        service.log(
            at,
            version,
            "reverting",
            format!("back to version {target} as version {version}"),
        );
        job.job = task;
        Ok(format!(
            "job {name}: rolling back to version {target} as version {version}{failed_before}"
        ))
    }

    fn stop(&mut self, now_ms: u64, name: &str) -> Result<String, ServiceError> {
        let at = self.wall_base_ms.saturating_add(now_ms);
        let job = self.service_mut(name)?;
        let Some(service) = job.service.as_deref_mut() else {
            return Err(ServiceError::NotFound(name.to_owned()));
        };
        if service.stopped {
            return Ok(format!("job {name} is stopped already"));
        }
        service.stopped = true;
        // A rollout under way stops with the copies; a deploy starts it again.
        service.rollout = None;
        let latest = service.latest;
        service.log(at, latest, "stopped", "every copy stopped".to_owned());
        Ok(format!("job {name}: stopping its copies"))
    }

    /// Adds per-agent copies for the agents of `offers` that match and lack theirs.
    pub(crate) fn add_per_agent_copies(&mut self, now_ms: u64, offers: &[Offer]) {
        let keys: Vec<String> = (self.jobs.iter())
            .filter(|(_, job)| wants_every_agent(job))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            for offer in offers {
                let Some(job) = self.jobs.get(&key) else {
                    break;
                };
                let Some(per_agent) = job.service.as_ref().and_then(|s| s.per_agent()) else {
                    break;
                };
                if !offer.attributes.satisfies(&job.job.constraints) {
                    continue;
                }
                let have = (job.slots.values())
                    .filter(|s| !s.copy.stopping && s.copy.bound.as_ref() == Some(&offer.agent_id))
                    .count();
                let version = job.service.as_ref().map_or(0, |s| s.latest);
                for _ in have..per_agent {
                    let copy = NewCopy {
                        version,
                        canary: false,
                        bound: Some(offer.agent_id.clone()),
                    };
                    self.add_copy(now_ms, &key, copy);
                }
            }
        }
        self.reconcile_services(now_ms);
    }

    /// Reconciles every declared job (see the module documentation).
    pub(crate) fn reconcile_services(&mut self, now_ms: u64) {
        self.last_now_ms = self.last_now_ms.max(now_ms);
        let keys: Vec<String> = (self.jobs.iter())
            .filter(|(_, job)| job.service.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            for _ in 0..RECONCILE_PASSES_MAX {
                if !self.reconcile(&key, now_ms) {
                    break;
                }
            }
        }
    }

    /// One pass; whether the service's rollout changed (then another pass follows).
    fn reconcile(&mut self, key: &str, now_ms: u64) -> bool {
        let at = self.wall_base_ms.saturating_add(now_ms);
        let Some(job) = self.jobs.get_mut(key) else {
            return false;
        };
        let Some(service) = job.service.as_deref_mut() else {
            return false;
        };
        let min_healthy_ms = service.decl.update.min_healthy_ms;
        if let Some(rollout) = service.rollout.as_mut() {
            rollout.since_ms.get_or_insert(now_ms);
        }
        let target = (service.rollout.as_ref())
            .and_then(|r| Some((r.to, &service.versions.get(&r.to)?.job)));
        for slot in job.slots.values_mut() {
            slot.copy.refresh_health(now_ms, min_healthy_ms);
            // A copy of another version running the very task rolled out to (a revert,
            // a change undone) is a copy of it: nothing to replace (Nomad's in-place
            // update).
            if let Some((to, task)) = target
                && slot.copy.version != to
                && !slot.copy.stopping
                && (service.versions.get(&slot.copy.version))
                    .is_some_and(|v| same_task(&v.job, task))
            {
                slot.copy.version = to;
                slot.copy.canary = false;
                // Judged from now on: an old failure is not the rollout's.
                slot.copy.failed = false;
                slot.copy.created_ms = now_ms;
            }
        }
        let plan = plan(service, &job.slots, now_ms);
        let changed = plan.outcome.is_some();
        if let Some(outcome) = plan.outcome {
            apply_outcome(service, outcome, at);
            job.job = (service.versions.get(&service.latest))
                .map_or_else(|| job.job.clone(), |v| v.job.clone());
        }
        service.prune_versions(&job.slots);
        for index in plan.stop {
            self.stop_copy(key, index);
        }
        for copy in plan.add {
            self.add_copy(now_ms, key, copy);
        }
        changed
    }

    fn add_copy(&mut self, now_ms: u64, key: &str, copy: NewCopy) {
        if self.tasks.len() >= self.config.tasks_max {
            tracing::warn!(
                job = key,
                max = self.config.tasks_max,
                "the jobs framework's task limit is reached; a copy waits"
            );
            return;
        }
        let Some(name) = self.jobs.get(key).map(|j| j.job.name.clone()) else {
            return;
        };
        let task_id = self.next_task_id(&name);
        let Some(job) = self.jobs.get_mut(key) else {
            return;
        };
        let index = job.next_slot;
        job.next_slot += 1;
        let copy = ServiceCopy {
            version: copy.version,
            canary: copy.canary,
            bound: copy.bound,
            created_ms: now_ms,
            ..ServiceCopy::default()
        };
        job.slots.insert(index, Slot::new(task_id.clone(), copy));
        self.tasks.insert(task_id, (key.to_owned(), index));
    }

    /// Stops a copy: killed when launched (the slot goes when the kill is confirmed),
    /// gone at once otherwise.
    fn stop_copy(&mut self, key: &str, index: usize) {
        let Some(slot) = self.jobs.get_mut(key).and_then(|j| j.slots.get_mut(&index)) else {
            return;
        };
        slot.copy.stopping = true;
        slot.kill_requested = true;
        let task_id = slot.task_id.clone();
        if matches!(slot.state, SlotState::Launched { .. }) {
            self.push_call(Call::Kill { task_id });
        } else if let Some(job) = self.jobs.get_mut(key) {
            job.slots.remove(&index);
            self.tasks.remove(&task_id);
            self.remember_ended(task_id);
        }
    }

    fn service_summaries(&self, now_ms: u64) -> Vec<JobSummary> {
        (self.jobs.values())
            .filter_map(|job| {
                let service = job.service.as_deref()?;
                Some(summary(job, service, now_ms, self.wall_base_ms))
            })
            .collect()
    }

    fn service_status(&self, now_ms: u64, name: &str) -> Result<JobStatus, ServiceError> {
        let job = (self.jobs.get(&service_key(name)))
            .filter(|job| job.service.is_some())
            .ok_or_else(|| ServiceError::NotFound(name.to_owned()))?;
        let Some(service) = job.service.as_deref() else {
            return Err(ServiceError::NotFound(name.to_owned()));
        };
        let versions = (service.versions.iter().rev())
            .map(|(n, v)| version_row(*n, v, job))
            .collect();
        let copies = job.slots.values().map(copy_row).collect();
        Ok(JobStatus {
            summary: summary(job, service, now_ms, self.wall_base_ms),
            decl: service.decl.decl.clone(),
            versions,
            copies,
        })
    }
}

fn apply_outcome(service: &mut Service, outcome: Outcome, at: u64) {
    let Some(rollout) = service.rollout.as_mut() else {
        return;
    };
    let to = rollout.to;
    match outcome {
        Outcome::Promoted => {
            rollout.promoted = true;
            service.log(at, to, "promoted", "canaries healthy; promoted".to_owned());
        }
        Outcome::CanariesHealthy => {
            if !std::mem::replace(&mut rollout.announced, true) {
                let name = service.decl.template.name.clone();
                let message = format!("canaries healthy; waiting for `wasmos job promote {name}`");
                service.log(at, to, "canaries_healthy", message);
            }
        }
        Outcome::Succeeded => {
            service.rollout = None;
            if let Some(old) = service.stable.filter(|s| *s != to)
                && let Some(v) = service.versions.get_mut(&old)
            {
                v.state = VersionState::Superseded;
            }
            if let Some(v) = service.versions.get_mut(&to) {
                v.state = VersionState::Stable;
                v.was_stable = true;
            }
            service.stable = Some(to);
            service.log(at, to, "succeeded", format!("version {to} is healthy"));
        }
        Outcome::Failed(reason) => {
            service.rollout = None;
            // A revert that fails is not reverted again: that could go on for ever.
            let mut was_revert = false;
            if let Some(v) = service.versions.get_mut(&to) {
                v.state = VersionState::Failed;
                v.reason.clone_from(&reason);
                was_revert = v.reverts_to.is_some();
            }
            service.log(at, to, "failed", reason);
            let back = service.stable.filter(|s| *s != to && !was_revert);
            if let (true, Some(back)) = (service.decl.update.auto_revert, back)
                && let Some(task) = service.versions.get(&back).map(|v| v.job.clone())
            {
                let version = service.new_version(at, task, Some(back));
                service.log(
                    at,
                    version,
                    "reverting",
                    format!("back to version {back} as version {version}"),
                );
            }
        }
    }
}

/// What an in-place deploy changed, for the history.
fn describe_in_place(old: &ValidDecl, new: &ValidDecl, was_stopped: bool) -> String {
    let mut changes = Vec::new();
    if was_stopped {
        changes.push("started again".to_owned());
    }
    if old.desired != new.desired {
        changes.push(format!(
            "copies {} -> {}",
            desired_text(old.desired),
            desired_text(new.desired)
        ));
    }
    if old.update != new.update {
        changes.push("update policy".to_owned());
    }
    if old.spread != new.spread {
        changes.push("spread".to_owned());
    }
    if old.template.restart != new.template.restart {
        changes.push("restart policy".to_owned());
    }
    if changes.is_empty() {
        changes.push("the file, not the task".to_owned());
    }
    changes.join(", ")
}

fn desired_text(desired: Desired) -> String {
    match desired {
        Desired::Count(n) => format!("count {n}"),
        Desired::PerAgent(n) => format!("{n} per agent"),
    }
}
