//! The wasmos agent core: one device's task bookkeeping as a sans-IO state machine.
//!
//! An [`AgentNode`] is told what happens, with the time: master commands
//! ([`AgentNode::handle_command`]), executor outcomes ([`AgentNode::handle_task_running`],
//! [`AgentNode::handle_task_ended`]), the master's (re)appearance, advert changes and its
//! one timer ([`AgentNode::poll_timeout`], [`AgentNode::handle_timeout`]). It answers
//! commands at once and queues [`AgentAction`]s ([`AgentNode::poll_action`]): adverts and
//! status updates to publish, journal writes, executor starts, kills and clean-ups. The
//! agent daemon carries the actions out over zenoh, the filesystem and the executors;
//! `wasmos sim` carries them out in virtual time.
//!
//! Delivery rules (at least once): each task's latest status is published when it happens
//! and again, with a backoff that doubles from `status_retry_ms` up to
//! `status_retry_max_ms`, until the master relays the acknowledgement of that status's
//! uuid; at once when the master (re)appears. A newer status supersedes an unacknowledged
//! older one (a framework needs the latest state; resending `starting` after `running`
//! would only mislead it); a terminal status is never superseded. A task is forgotten once
//! its terminal status is acknowledged; an acknowledgement of another uuid changes nothing.
//!
//! Architecture invariant: this crate knows nothing of zenoh, tokio, wasmtime, files or
//! clocks. Time is a [`Millis`] handed in; status uuids are counted, not random.

pub mod error;
pub mod journal;
mod node;
mod offline;

pub use error::CommandRefused;
pub use journal::{
    AGENT_RESTARTED, JOURNAL_V4, JOURNAL_V5, Journal, JournalChange, JournalEntry, JournalEntryV4,
};
pub use node::{AgentAction, AgentNode, AgentNodeConfig, SHUTDOWN_DRAIN_MS, TaskEnd};
pub use proto::Millis;

/// How often an agent advertises when nothing changes. Only a repair (liveness is the zenoh
/// token; a change, and a master appearing, are advertised at once), so rare: an idle
/// agent's traffic with the master was mostly this advert, every 5 s (2.7 KiB a minute;
/// #19 wants at most 1 KiB).
pub const ADVERT_PERIOD_MS_DEFAULT: u64 = 30_000;
/// The wait before an unacknowledged status update is first sent again.
pub const STATUS_RETRY_MS_DEFAULT: u64 = 2_000;
/// The longest wait between two sends of an unacknowledged status update.
pub const STATUS_RETRY_MAX_MS_DEFAULT: u64 = 30_000;
/// Tasks an agent holds at once (running, or ended with the end not yet acknowledged);
/// launches beyond it are refused.
pub const TASKS_MAX_DEFAULT: usize = 4096;
