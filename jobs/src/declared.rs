//! A declared job (`wasmos deploy FILE`, proto's [`JobDecl`]) and its validation into a
//! [`ValidDecl`]: the task template (a [`ValidJob`], validated as `wasmos run`'s jobs
//! are), how many copies, the spread and the update policy.

use proto::declared::{JobDecl, UpdatePolicy};
use proto::operator::JobRequest;

use crate::request::{JOB_COUNT_MAX, JobError, ValidJob, ValidateJob};

/// Copies per agent a `per_agent` job may ask for.
pub const PER_AGENT_MAX: u32 = 16;
/// Longest `healthy_deadline_ms` (a day).
pub const HEALTHY_DEADLINE_MS_MAX: u64 = 24 * 3600 * 1000;
/// Longest attribute name given as `spread`, bytes.
pub const SPREAD_KEY_BYTES_MAX: usize = 64;

/// How many copies a declared job wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Desired {
    Count(u32),
    /// This many on every agent that matches the constraints.
    PerAgent(u32),
}

/// A declared job that passed validation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ValidDecl {
    /// As given (the module a sha256), shown back by `wasmos job status`.
    pub decl: JobDecl,
    /// The task every copy runs; its `count` means nothing here.
    pub template: ValidJob,
    pub desired: Desired,
    pub spread: Option<String>,
    pub update: UpdatePolicy,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DeclError {
    #[error(transparent)]
    Job(#[from] JobError),
    #[error("give exactly one of module (a .wasm file) and oci (an OCI image layout's path)")]
    Artifact,
    #[error("give one of count and per_agent, not both")]
    CountAndPerAgent,
    #[error("count must be 0 to {JOB_COUNT_MAX}, got {0}")]
    Count(u32),
    #[error("per_agent must be 1 to {PER_AGENT_MAX}, got {0}")]
    PerAgent(u32),
    #[error("per_agent jobs take no canaries (each agent's copy is replaced in place)")]
    PerAgentCanary,
    #[error("update.max_parallel must be at least 1")]
    MaxParallel,
    #[error("update.canary must be at most {JOB_COUNT_MAX}, got {0}")]
    Canary(u32),
    #[error("update.canary ({canary}) must be at most count ({count})")]
    CanaryOverCount { canary: u32, count: u32 },
    #[error(
        "update.min_healthy_ms ({min}) must be less than update.healthy_deadline_ms ({deadline}), \
         which is at most {HEALTHY_DEADLINE_MS_MAX}"
    )]
    Health { min: u64, deadline: u64 },
    #[error("spread must name an agent attribute: 1 to {SPREAD_KEY_BYTES_MAX} of a-z 0-9 - _ .")]
    Spread,
}

impl ValidDecl {
    pub fn validate(decl: JobDecl) -> Result<ValidDecl, DeclError> {
        if decl.module.is_some() == decl.oci.is_some() {
            return Err(DeclError::Artifact);
        }
        let template = JobRequest {
            name: decl.name.clone(),
            module: decl.module.clone(),
            image: decl.oci.clone(),
            cpus: decl.cpus,
            mem: decl.mem,
            count: 1,
            constraints: decl.constraints.clone(),
            args: decl.args.clone(),
            env: decl.env.clone(),
            restart: decl.restart,
            lost_after_ms: None,
            on_reconnect: proto::OnReconnect::default(),
            timeout_ms: decl.timeout_ms,
        }
        .validate()?;
        let desired = match (decl.count, decl.per_agent) {
            (Some(_), Some(_)) => return Err(DeclError::CountAndPerAgent),
            (Some(n), None) if n > JOB_COUNT_MAX => return Err(DeclError::Count(n)),
            (Some(n), None) => Desired::Count(n),
            (None, Some(n)) if n == 0 || n > PER_AGENT_MAX => return Err(DeclError::PerAgent(n)),
            (None, Some(n)) => Desired::PerAgent(n),
            (None, None) => Desired::Count(1),
        };
        let update = decl.update.clone();
        check_update(&update, desired)?;
        let spread = decl.spread.clone().filter(|s| !s.is_empty());
        if let Some(key) = &spread {
            let ok = key.len() <= SPREAD_KEY_BYTES_MAX
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok {
                return Err(DeclError::Spread);
            }
        }
        Ok(ValidDecl {
            decl,
            template,
            desired,
            spread,
            update,
        })
    }

    /// Whether a copy of `self` runs the same task as a copy of `other`: what a rollout
    /// replaces when it changes (the count, restart and update policies, the spread
    /// change in place).
    pub fn same_task(&self, other: &ValidJob) -> bool {
        same_task(&self.template, other)
    }
}

/// Whether copies of `a` and `b` run the same task (see [`ValidDecl::same_task`]).
pub fn same_task(a: &ValidJob, other: &ValidJob) -> bool {
    a.artifact == other.artifact
        && a.args == other.args
        && a.env == other.env
        && a.cpus == other.cpus
        && a.mem_mib == other.mem_mib
        && a.constraints == other.constraints
        && a.timeout_ms == other.timeout_ms
}

fn check_update(update: &UpdatePolicy, desired: Desired) -> Result<(), DeclError> {
    if update.max_parallel == 0 {
        return Err(DeclError::MaxParallel);
    }
    if update.canary > JOB_COUNT_MAX {
        return Err(DeclError::Canary(update.canary));
    }
    match desired {
        Desired::PerAgent(_) if update.canary > 0 => return Err(DeclError::PerAgentCanary),
        Desired::Count(count) if update.canary > count => {
            return Err(DeclError::CanaryOverCount {
                canary: update.canary,
                count,
            });
        }
        _ => {}
    }
    if update.min_healthy_ms >= update.healthy_deadline_ms
        || update.healthy_deadline_ms > HEALTHY_DEADLINE_MS_MAX
    {
        return Err(DeclError::Health {
            min: update.min_healthy_ms,
            deadline: update.healthy_deadline_ms,
        });
    }
    Ok(())
}
