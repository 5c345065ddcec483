//! A declared job as the operator sees it: its summary, rollout, versions and copies
//! (`proto::declared`'s rows).

use proto::TaskState;
use proto::declared::{CopyRow, JobSummary, RolloutRow, VersionRow};

use super::{Rollout, Service, Version, VersionState};
use crate::book::{Job, Slot, SlotState};
use crate::request::Artifact;

pub(super) fn summary(job: &Job, service: &Service, now_ms: u64, wall_base_ms: u64) -> JobSummary {
    let live = || job.slots.values().filter(|s| !s.copy.stopping);
    let running = live()
        .filter(|s| {
            matches!(
                s.state,
                SlotState::Launched {
                    state: TaskState::Running,
                    ..
                }
            )
        })
        .count();
    let healthy = live().filter(|s| s.copy.healthy).count();
    let state = match (&service.rollout, service.stopped) {
        (_, true) => "stopped",
        (Some(r), _) if service.rollout_phase(r) == "awaiting_promotion" => "awaiting_promotion",
        (Some(_), _) => "rolling",
        (None, _)
            if service
                .versions
                .get(&service.latest)
                .is_some_and(|v| v.state == VersionState::Failed) =>
        {
            "failed"
        }
        (None, _) => "running",
    };
    JobSummary {
        name: job.job.name.clone(),
        version: service.latest,
        stable_version: service.stable,
        desired: match service.stopped {
            true => 0,
            false => service.desired(&job.slots) as u32,
        },
        done: (live())
            .filter(|s| {
                matches!(
                    s.state,
                    SlotState::Ended {
                        state: TaskState::Finished
                    }
                )
            })
            .count() as u32,
        running: running as u32,
        healthy: healthy as u32,
        state: state.to_owned(),
        rollout: (service.rollout.as_ref()).map(|r| rollout_row(service, r, job)),
        quarantined: job.quarantine.rows(now_ms, wall_base_ms),
    }
}

impl Service {
    fn rollout_phase(&self, rollout: &Rollout) -> &'static str {
        let canaries = rollout.from.is_some() && !rollout.promoted && self.decl.update.canary > 0;
        match (canaries, rollout.announced) {
            (true, true) => "awaiting_promotion",
            (true, false) => "canary",
            (false, _) => "rolling",
        }
    }
}

fn rollout_row(service: &Service, rollout: &Rollout, job: &Job) -> RolloutRow {
    let live = || job.slots.values().filter(|s| !s.copy.stopping);
    let new = || live().filter(|s| s.copy.version == rollout.to);
    RolloutRow {
        from: rollout.from,
        to: rollout.to,
        phase: service.rollout_phase(rollout).to_owned(),
        started_at_ms: rollout.started_at_ms,
        new_placed: new().filter(|s| s.copy.placed_ms.is_some()).count() as u32,
        new_healthy: new().filter(|s| s.copy.healthy).count() as u32,
        old_left: live().filter(|s| s.copy.version != rollout.to).count() as u32,
        canaries: new().filter(|s| s.copy.canary).count() as u32,
    }
}

pub(super) fn version_row(number: u32, version: &Version, job: &Job) -> VersionRow {
    let template = &version.job;
    let what = match &template.artifact {
        Artifact::Module(sha) => format!("module {}", sha.0),
        Artifact::Image(image) => format!("oci {image}"),
    };
    let what = match template.args.is_empty() {
        true => what,
        false => format!("{what} -- {}", template.args.join(" ")),
    };
    VersionRow {
        version: number,
        state: version.state.as_str().to_owned(),
        reason: version.reason.clone(),
        what,
        cpus: template.cpus,
        mem: template.mem_mib,
        reverts_to: version.reverts_to,
        created_at_ms: version.created_at_ms,
        copies: (job.slots.values())
            .filter(|s| s.copy.version == number && !s.copy.stopping)
            .count() as u32,
    }
}

pub(super) fn copy_row(slot: &Slot) -> CopyRow {
    let (state, agent_id) = match &slot.state {
        SlotState::Waiting | SlotState::Backoff { .. } => (TaskState::Pending, None),
        SlotState::Launched { agent_id, state } => (*state, Some(agent_id.clone())),
        SlotState::Ended { state } => (*state, slot.copy.agent.clone()),
    };
    CopyRow {
        task_id: slot.task_id.clone(),
        version: slot.copy.version,
        state,
        agent_id,
        healthy: slot.copy.healthy,
        canary: slot.copy.canary,
        stopping: slot.copy.stopping,
    }
}
