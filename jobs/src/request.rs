//! A job as operators submit it (`wasmos run`, `POST /api/v1/jobs`, both through the
//! master's operator protocol): its limits, and its validation into a [`ValidJob`]. The
//! shape itself, [`JobRequest`], is the operator's contract and lives in
//! `proto::operator`.

use std::collections::BTreeMap;

use proto::{Constraint, ConstraintError, ModuleHash};

pub use proto::LOST_AFTER_MS_MAX;
pub use proto::operator::{JobAccepted, JobRequest, OnReconnect, RestartPolicy};

/// Tasks one job may ask for.
pub const JOB_COUNT_MAX: u32 = 256;
/// The smallest amount of a resource: amounts are kept in thousandths, and a smaller
/// one would round to nothing, a task that runs without being counted.
pub const AMOUNT_MIN: f64 = 0.001;

/// Whether `amount` is at least one thousandth once rounded as resources keep it.
fn counts(amount: f64) -> bool {
    proto::Scalar::from_units(amount).is_some_and(|s| s > proto::Scalar::ZERO)
}

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

/// A job that passed validation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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
    pub lost_after_ms: Option<u64>,
    pub on_reconnect: OnReconnect,
    pub timeout_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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
    #[error(
        "image must be the absolute path of an OCI image layout on the agents, of at most {JOB_ITEM_BYTES_MAX} bytes"
    )]
    Image,
    #[error(
        "cpus must be at least {AMOUNT_MIN} (amounts count in thousandths) and at most {TASK_CPUS_MAX}, got {0}"
    )]
    Cpus(f64),
    #[error(
        "mem must be at least {AMOUNT_MIN} MiB (amounts count in thousandths) and at most {TASK_MEM_MIB_MAX} MiB, got {0}"
    )]
    Mem(f64),
    #[error("timeout_ms must be more than 0 (leave it out for no time limit)")]
    Timeout,
    #[error("count must be 1 to {JOB_COUNT_MAX}, got {0}")]
    Count(u32),
    #[error("lost_after_ms must be at most {LOST_AFTER_MS_MAX} (a week), got {0}")]
    LostAfter(u64),
    #[error(transparent)]
    Constraint(#[from] ConstraintError),
    #[error(
        "{0} may hold at most {JOB_LIST_ITEMS_MAX} items of at most {JOB_ITEM_BYTES_MAX} bytes"
    )]
    TooLong(&'static str),
}

/// Validation of a [`JobRequest`] (a trait, since the request is `proto`'s type).
pub trait ValidateJob {
    fn validate(self) -> Result<ValidJob, JobError>;
}

impl ValidateJob for JobRequest {
    fn validate(self) -> Result<ValidJob, JobError> {
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
            (None, Some(i)) if i.starts_with('/') && i.len() <= JOB_ITEM_BYTES_MAX => {
                Artifact::Image(i)
            }
            (None, Some(_)) => return Err(JobError::Image),
            _ => return Err(JobError::Artifact),
        };
        if !(counts(self.cpus) && self.cpus <= TASK_CPUS_MAX) {
            return Err(JobError::Cpus(self.cpus));
        }
        if !(counts(self.mem) && self.mem <= TASK_MEM_MIB_MAX) {
            return Err(JobError::Mem(self.mem));
        }
        if self.timeout_ms == Some(0) {
            return Err(JobError::Timeout);
        }
        if !(1..=JOB_COUNT_MAX).contains(&self.count) {
            return Err(JobError::Count(self.count));
        }
        if let Some(ms) = self.lost_after_ms.filter(|ms| *ms > LOST_AFTER_MS_MAX) {
            return Err(JobError::LostAfter(ms));
        }
        check_list("args", &self.args)?;
        check_list("env", self.env.keys().chain(self.env.values()))?;
        check_list("constraints", &self.constraints)?;
        // Each item may itself be a comma-separated list (`arch=aarch64,has=camera`).
        let mut constraints = Vec::new();
        for item in &self.constraints {
            constraints.extend(Constraint::parse_list(item)?);
        }
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
            lost_after_ms: self.lost_after_ms,
            on_reconnect: self.on_reconnect,
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
