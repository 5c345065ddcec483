//! A job as operators submit it (`wasmos run`, `POST /api/v1/jobs`, the `jobs/submit`
//! queryable): its JSON shape, its limits, and its validation into a [`ValidJob`].

use std::collections::BTreeMap;

use proto::{Constraint, ModuleHash, TaskId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Tasks one job may ask for.
pub const JOB_COUNT_MAX: u32 = 256;
/// Most cpus one task may ask for.
pub const TASK_CPUS_MAX: f64 = 1024.0;
/// Most memory one task may ask for, MiB (1 TiB).
pub const TASK_MEM_MIB_MAX: f64 = 1_048_576.0;
/// Longest job name, bytes.
pub const JOB_NAME_BYTES_MAX: usize = 64;
/// Arguments (or environment variables, or constraints) one job may carry.
pub const JOB_LIST_ITEMS_MAX: usize = 64;
/// Longest argument, environment value, constraint or image path, bytes.
pub const JOB_ITEM_BYTES_MAX: usize = 4096;

/// What `POST /api/v1/jobs` takes: `count` copies of one task, placed by the jobs
/// framework on agents that satisfy `constraints`. Exactly one of `module` and `image`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// Names the job's tasks (`<name>-<n>.<tag>`): 1 to 64 of `a-z 0-9 - _ .`, starting
    /// with a letter or digit.
    pub name: String,
    /// sha256 (64 lower-case hex digits) of a WASM module already in the master's store.
    #[serde(default)]
    pub module: Option<String>,
    /// Path of an OCI image layout on the agent.
    #[serde(default)]
    pub image: Option<String>,
    /// Cpus per task, more than 0.
    pub cpus: f64,
    /// Memory per task, MiB, more than 0.
    pub mem: f64,
    /// Tasks to run, 1 to 256.
    #[serde(default = "one")]
    pub count: u32,
    /// `key=value` attributes an agent must have (`arch=aarch64`).
    #[serde(default)]
    pub constraints: Vec<String>,
    /// Arguments (for an image: the command, overriding its entrypoint).
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Wall-clock limit of each task, ms.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    #[default]
    Never,
    OnFailure,
    Always,
}

/// A job that passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidJob {
    pub name: String,
    pub artifact: Artifact,
    pub cpus: f64,
    pub mem_mib: f64,
    pub count: u32,
    pub constraints: Vec<Constraint>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub restart: RestartPolicy,
    pub timeout_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Artifact {
    Module(ModuleHash),
    Image(String),
}

/// Why a job was refused; each names the field at fault.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum JobError {
    #[error(
        "name must be 1 to {JOB_NAME_BYTES_MAX} of a-z 0-9 - _ . starting with a letter or digit (got {0:?})"
    )]
    Name(String),
    #[error("give exactly one of module (a sha256) and image (an OCI image path)")]
    Artifact,
    #[error("module must be 64 lower-case hex digits (a sha256), got {0:?}")]
    Module(String),
    #[error("image must be a non-empty path of at most {JOB_ITEM_BYTES_MAX} bytes")]
    Image,
    #[error("cpus must be more than 0 and at most {TASK_CPUS_MAX}, got {0}")]
    Cpus(f64),
    #[error("mem must be more than 0 and at most {TASK_MEM_MIB_MAX} MiB, got {0}")]
    Mem(f64),
    #[error("count must be 1 to {JOB_COUNT_MAX}, got {0}")]
    Count(u32),
    #[error("constraint {0}")]
    Constraint(String),
    #[error(
        "{0} may hold at most {JOB_LIST_ITEMS_MAX} items of at most {JOB_ITEM_BYTES_MAX} bytes"
    )]
    TooLong(&'static str),
}

impl JobRequest {
    pub fn validate(self) -> Result<ValidJob, JobError> {
        // The first byte is checked apart: task ids start with the name, and agents refuse
        // ids starting with a dot (they name directories).
        let name_ok = self
            .name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && self.name.len() <= JOB_NAME_BYTES_MAX
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if !name_ok {
            return Err(JobError::Name(self.name));
        }
        let artifact = match (self.module, self.image) {
            (Some(m), None) => Artifact::Module(ModuleHash::parse(&m).ok_or(JobError::Module(m))?),
            (None, Some(i)) if !i.is_empty() && i.len() <= JOB_ITEM_BYTES_MAX => Artifact::Image(i),
            (None, Some(_)) => return Err(JobError::Image),
            _ => return Err(JobError::Artifact),
        };
        if !(self.cpus > 0.0 && self.cpus <= TASK_CPUS_MAX) {
            return Err(JobError::Cpus(self.cpus));
        }
        if !(self.mem > 0.0 && self.mem <= TASK_MEM_MIB_MAX) {
            return Err(JobError::Mem(self.mem));
        }
        if !(1..=JOB_COUNT_MAX).contains(&self.count) {
            return Err(JobError::Count(self.count));
        }
        check_list("args", &self.args)?;
        check_list("env", self.env.keys().chain(self.env.values()))?;
        check_list("constraints", &self.constraints)?;
        let constraints = self
            .constraints
            .iter()
            .map(|c| Constraint::parse(c).map_err(JobError::Constraint))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ValidJob {
            name: self.name,
            artifact,
            cpus: self.cpus,
            mem_mib: self.mem,
            count: self.count,
            constraints,
            args: self.args,
            env: self.env,
            restart: self.restart,
            timeout_ms: self.timeout_ms,
        })
    }
}

/// Env counts keys and values, so it may hold half as many variables as args.
fn check_list<'a>(
    field: &'static str,
    items: impl IntoIterator<Item = &'a String>,
) -> Result<(), JobError> {
    let mut n = 0;
    for item in items {
        n += 1;
        if n > JOB_LIST_ITEMS_MAX || item.len() > JOB_ITEM_BYTES_MAX {
            return Err(JobError::TooLong(field));
        }
    }
    Ok(())
}

/// What `POST /api/v1/jobs` answers (201).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobAccepted {
    pub job_id: String,
    /// The tasks the job will run, in the state `staging` until launched.
    #[schema(value_type = Vec<String>)]
    pub task_ids: Vec<TaskId>,
}
