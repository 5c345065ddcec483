//! The jobs framework's state on disk, so that a restarted master's jobs framework goes
//! on with the same jobs (Marathon kept its in ZooKeeper): every job with its copies and
//! their task ids, declared jobs with their versions, rollout and history.
//!
//! [`JobBook::save`] gives the bytes (JSON, versioned by [`STATE_FORMAT`]);
//! [`JobBook::restore`] reads them into a new book, which then asks the master for the
//! state of every task it had launched (`Call::Reconcile`, answered once the master's
//! re-registration window is over) and goes on from the answers: a task still running
//! is followed, one the master does not know is `lost` and restarted by its policy.
//! Times on the old book's clock mostly do not carry over: restarts due are due at once,
//! copies not yet healthy start their health wait and deadline again, and so does a
//! rollout's; quarantines keep their end on the wall clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::book::{Job, JobBook, JobBookConfig, SlotState};

/// The version of the saved layout; another one is refused rather than misread.
pub const STATE_FORMAT: u32 = 1;

#[derive(Debug, Error)]
pub enum RestoreError {
    #[error("the jobs state does not parse: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("the jobs state is of format {found}, this build reads format {STATE_FORMAT}")]
    Format { found: u32 },
}

#[derive(Serialize)]
struct SavedRef<'a> {
    format: u32,
    /// The wall clock when the book's clock began (see [`JobBook::new`]).
    wall_base_ms: u64,
    jobs_submitted: u64,
    task_ids_issued: u64,
    jobs: &'a BTreeMap<String, Job>,
}

#[derive(Deserialize)]
struct Saved {
    format: u32,
    #[serde(default)]
    wall_base_ms: u64,
    jobs_submitted: u64,
    task_ids_issued: u64,
    jobs: BTreeMap<String, Job>,
}

impl JobBook {
    /// The book's jobs as bytes for [`JobBook::restore`].
    pub fn save(&self) -> Result<Vec<u8>, serde_json::Error> {
        let (jobs_submitted, task_ids_issued) = self.counters();
        serde_json::to_vec(&SavedRef {
            format: STATE_FORMAT,
            wall_base_ms: self.wall_base_ms,
            jobs_submitted,
            task_ids_issued,
            jobs: &self.jobs,
        })
    }

    /// A new book (see [`JobBook::new`]) with the jobs of `bytes`; its first calls ask the
    /// master for the state of every task they had launched.
    pub fn restore(
        config: JobBookConfig,
        incarnation: u64,
        bytes: &[u8],
    ) -> Result<JobBook, RestoreError> {
        let saved: Saved = serde_json::from_slice(bytes)?;
        if saved.format != STATE_FORMAT {
            return Err(RestoreError::Format {
                found: saved.format,
            });
        }
        let mut book = JobBook::new(config, incarnation);
        let mut launched = Vec::new();
        let mut jobs = saved.jobs;
        for (job_id, job) in &mut jobs {
            job.quarantine.rebase(saved.wall_base_ms, book.wall_base_ms);
            for (index, slot) in &mut job.slots {
                if matches!(slot.state, SlotState::Backoff { .. }) {
                    slot.state = SlotState::Waiting;
                }
                slot.copy.up_since = None;
                if !slot.copy.healthy {
                    slot.copy.created_ms = 0;
                }
                if let SlotState::Launched { .. } = slot.state {
                    launched.push(slot.task_id.clone());
                }
                if !matches!(slot.state, SlotState::Ended { .. }) {
                    book.tasks
                        .insert(slot.task_id.clone(), (job_id.clone(), *index));
                }
                if let Some(original) = slot.original() {
                    launched.push(original.clone());
                    book.tasks
                        .insert(original.clone(), (job_id.clone(), *index));
                }
            }
        }
        book.jobs = jobs;
        book.set_counters(saved.jobs_submitted, saved.task_ids_issued);
        tracing::info!(
            jobs = book.jobs.len(),
            tasks = launched.len(),
            "jobs state restored; reconciling its tasks with the master"
        );
        if !launched.is_empty() {
            book.push_call(proto::Call::Reconcile { tasks: launched });
        }
        book.settle_wants();
        Ok(book)
    }
}
