//! The copies that wait, as `wasmos explain` asks the jobs framework about them: what
//! each needs (resources, constraints, agents its job avoids) and whether it waits for an
//! offer or for its restart. The master core says why no offer fits
//! (`master::Master::placement_facts`).

use proto::{AgentId, Constraint, FrameworkId, Resources, TaskId};

use crate::book::{Job, JobBook, Slot, SlotState, task_resources};
use crate::service::service_key;

/// The waiting copies of a job, or the one copy asked about.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiting {
    pub framework_id: Option<FrameworkId>,
    /// The job's name.
    pub job: String,
    /// Copies wanted, and running now.
    pub desired: u32,
    pub running: u32,
    pub copies: Vec<WaitingCopy>,
    /// The tasks of its copies launched now (the core knows their state).
    pub live: Vec<TaskId>,
    /// How the copies that ended for good ended.
    pub ended: Vec<proto::TaskState>,
    /// A per-agent job without a copy: what a copy would need (why no agent takes one).
    pub per_agent_unplaced: Option<(Resources, Vec<Constraint>)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WaitingCopy {
    pub task_id: TaskId,
    /// Waiting for its restart until then (wall clock); `None`: for an offer.
    pub restart_at_ms: Option<u64>,
    pub resources: Resources,
    pub constraints: Vec<Constraint>,
    /// Agents its job is quarantined on, until when (wall clock).
    pub avoided: Vec<(AgentId, u64)>,
}

impl JobBook {
    /// A declared job by name, a job by id, or a copy by task id; `None` when the book
    /// holds none of them.
    pub fn waiting_for(&self, now_ms: u64, subject: &str) -> Option<Waiting> {
        if let Some(job) = self.jobs.get(&service_key(subject)) {
            return Some(self.waiting_of(now_ms, job, |_| true));
        }
        if let Some(job) = self.jobs.get(subject) {
            return Some(self.waiting_of(now_ms, job, |_| true));
        }
        let task_id = TaskId::new(subject);
        let (job_id, _) = self.tasks.get(&task_id)?;
        let job = self.jobs.get(job_id)?;
        Some(self.waiting_of(now_ms, job, |slot| slot.task_id == task_id))
    }

    fn waiting_of(&self, now_ms: u64, job: &Job, asked: impl Fn(&Slot) -> bool) -> Waiting {
        let wall = |t: u64| self.wall_base_ms.saturating_add(t);
        let avoided: Vec<(AgentId, u64)> = (job.quarantine.rows(now_ms, self.wall_base_ms))
            .into_iter()
            .map(|row| (row.agent_id, row.until_at_ms))
            .collect();
        let copies = (job.slots.values())
            .filter(|slot| asked(slot) && !slot.copy.stopping)
            .filter_map(|slot| {
                let restart_at_ms = match slot.state {
                    SlotState::Waiting => None,
                    SlotState::Backoff { at_ms } => Some(wall(at_ms)),
                    _ => return None,
                };
                let template = job.template(slot);
                Some(WaitingCopy {
                    task_id: slot.task_id.clone(),
                    restart_at_ms,
                    resources: task_resources(template),
                    constraints: template.constraints.clone(),
                    avoided: avoided.clone(),
                })
            })
            .collect();
        let launched =
            |s: &&Slot| !s.copy.stopping && matches!(s.state, SlotState::Launched { .. });
        let running = job.slots.values().filter(launched).count();
        let live = (job.slots.values())
            .filter(|s| asked(s))
            .filter(launched)
            .map(|s| s.task_id.clone())
            .collect();
        let ended = (job.slots.values())
            .filter(|s| asked(s))
            .filter_map(|s| match s.state {
                SlotState::Ended { state } => Some(state),
                _ => None,
            })
            .collect();
        let desired = match &job.service {
            Some(service) => service.desired(&job.slots),
            None => job.slots.len(),
        };
        let per_agent_unplaced = (crate::service::wants_every_agent(job) && desired == 0)
            .then(|| (task_resources(&job.job), job.job.constraints.clone()));
        Waiting {
            framework_id: self.framework_id().cloned(),
            job: job.job.name.clone(),
            desired: desired as u32,
            running: running as u32,
            copies,
            live,
            ended,
            per_agent_unplaced,
        }
    }
}
