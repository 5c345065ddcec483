//! Leader election for standby masters, through etcd (as Mesos uses ZooKeeper).
//!
//! Every `wasmos master --etcd URL` campaigns for one key: it takes a lease and puts the
//! key under it only if the key does not exist; whoever put it leads while it renews the
//! lease. A leader that dies stops renewing, etcd deletes the key when the lease runs
//! out, and a standby's next attempt succeeds. Consensus is etcd's; this crate only
//! takes, keeps and gives up one lease.
//!
//! Invariant: a leader gives up (see [`Leadership::lost`]) before etcd can expire its
//! lease, so a new leader is never elected while the old one still acts as leader.

mod campaign;
pub mod etcd;

pub use campaign::{
    Election, ElectionConfig, LEASE_TTL_S_DEFAULT, LEASE_TTL_S_MIN, Leadership, LeaseClock,
    STANDBY_POLL_MS,
};

#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("no etcd endpoint given")]
    NoEndpoint,
    #[error("cannot reach etcd at {endpoint}: {reason}; is etcd running there?")]
    Unreachable { endpoint: String, reason: String },
    #[error("etcd: {0}")]
    Reply(String),
    #[error("cannot build the etcd client: {0}")]
    Client(String),
}
