//! Standby masters: with `--etcd`, a master waits until it wins the leadership in etcd,
//! and exits when it loses it (as Mesos masters do), so that a supervisor restarts it as a
//! standby. Without `--etcd` there is one master and no election.

use anyhow::Context;
use election::{Election, ElectionConfig, LEASE_TTL_S_DEFAULT, Leadership};

#[derive(clap::Args, Clone, Debug)]
pub struct ElectionArgs {
    /// etcd client URL (repeatable), e.g. http://127.0.0.1:2379: run as one of several
    /// masters, of which the one holding the etcd key leads and the others stand by.
    #[arg(long, value_name = "URL", env = "WASMOS_ETCD")]
    pub etcd: Vec<String>,
    /// The etcd key the leader holds; default /wasmos/<cluster>/leader.
    #[arg(long, value_name = "KEY", requires = "etcd")]
    pub election_key: Option<String>,
    /// Seconds a dead leader keeps the leadership before a standby takes over.
    #[arg(long, value_name = "SECS", default_value_t = LEASE_TTL_S_DEFAULT)]
    pub lease_ttl: u64,
}

/// With `--etcd`, waits until this master leads (saying so on stderr while it stands
/// by); without, `None` at once. `candidate` is what the leader publishes in etcd: the
/// endpoints it will listen on.
pub async fn lead_if_elected(
    args: &ElectionArgs,
    cluster: &str,
    candidate: &str,
) -> anyhow::Result<Option<Leadership>> {
    if args.etcd.is_empty() {
        return Ok(None);
    }
    let key = args
        .election_key
        .clone()
        .unwrap_or_else(|| format!("/wasmos/{cluster}/leader"));
    let election = Election::new(ElectionConfig {
        endpoints: args.etcd.clone(),
        key: key.clone(),
        candidate: candidate.to_owned(),
        lease_ttl_s: args.lease_ttl,
    })?;
    eprintln!("campaigning for the leadership ({key} in etcd)");
    let leadership = election
        .campaign(|leader| eprintln!("standing by; the leader is {leader}"))
        .await
        .context("electing a leader through etcd")?;
    eprintln!("leading");
    Ok(Some(leadership))
}

/// Returns when `leadership` is lost; never when there is no election.
pub async fn lost(leadership: &mut Option<Leadership>) -> String {
    match leadership {
        Some(l) => l.lost().await,
        None => std::future::pending().await,
    }
}
