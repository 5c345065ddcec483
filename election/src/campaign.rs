//! Campaigning for the leadership and holding it.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::ElectionError;
use crate::etcd::{Etcd, LeaseId};

/// Shortest lease etcd grants reliably (its minimum TTL follows its election timeout).
pub const LEASE_TTL_S_MIN: u64 = 2;
/// Default lease: a dead leader is replaced within about this long.
pub const LEASE_TTL_S_DEFAULT: u64 = 3;
/// How often a standby looks whether the leadership is free.
pub const STANDBY_POLL_MS: u64 = 500;

/// What to campaign for.
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    /// etcd client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// The key whose holder leads, e.g. `/wasmos/default/leader`.
    pub key: String,
    /// What the leader writes under the key: how to reach it (its zenoh endpoints).
    pub candidate: String,
    pub lease_ttl_s: u64,
}

/// One candidate in one election.
#[derive(Debug)]
pub struct Election {
    etcd: Etcd,
    config: ElectionConfig,
}

impl Election {
    pub fn new(mut config: ElectionConfig) -> Result<Election, ElectionError> {
        config.lease_ttl_s = config.lease_ttl_s.max(LEASE_TTL_S_MIN);
        let etcd = Etcd::new(config.endpoints.clone())?;
        Ok(Election { etcd, config })
    }

    /// Waits until this candidate leads. `on_standby` is told the current leader each
    /// time it changes while waiting. etcd being unreachable is an error, so that an
    /// operator who mistyped `--etcd` hears of it instead of waiting for ever.
    pub async fn campaign(
        &self,
        mut on_standby: impl FnMut(&str),
    ) -> Result<Leadership, ElectionError> {
        let mut seen_leader: Option<String> = None;
        loop {
            let lease = self.etcd.grant(self.config.lease_ttl_s).await?;
            let granted_at = Instant::now();
            let holder = self
                .etcd
                .create(&self.config.key, &self.config.candidate, lease)
                .await?;
            let Some(holder) = holder else {
                tracing::info!(key = %self.config.key, lease, "leading");
                return Ok(Leadership::hold(
                    self.etcd.clone(),
                    lease,
                    self.config.lease_ttl_s,
                    granted_at,
                ));
            };
            // Not leading: the lease is of no use, and holding it would keep nothing.
            if let Err(e) = self.etcd.revoke(lease).await {
                tracing::debug!(%e, lease, "revoking an unused lease");
            }
            if seen_leader.as_deref() != Some(holder.as_str()) {
                on_standby(&holder);
                seen_leader = Some(holder);
            }
            tokio::time::sleep(Duration::from_millis(STANDBY_POLL_MS)).await;
        }
    }

    /// Who leads now, if anyone.
    pub async fn leader(&self) -> Result<Option<String>, ElectionError> {
        self.etcd.get(&self.config.key).await
    }
}

/// The leadership, kept alive in the background until [`Leadership::lost`] says it went
/// or [`Leadership::resign`] gives it up.
///
/// Contract: `lost` fires *before* etcd can expire the lease (see [`LeaseClock`]), so two
/// masters never both believe they lead, as long as clocks run at the same rate.
pub struct Leadership {
    etcd: Etcd,
    lease: LeaseId,
    lost: watch::Receiver<Option<String>>,
    keeper: JoinHandle<()>,
}

impl Leadership {
    fn hold(etcd: Etcd, lease: LeaseId, ttl_s: u64, granted_at: Instant) -> Leadership {
        let (tx, lost) = watch::channel(None);
        let keeper = tokio::spawn(keep_alive(etcd.clone(), lease, ttl_s, granted_at, tx));
        Leadership {
            etcd,
            lease,
            lost,
            keeper,
        }
    }

    /// Returns, with the reason, once the leadership is gone.
    pub async fn lost(&mut self) -> String {
        match self.lost.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => "the lease keeper stopped".to_owned(),
        }
    }

    /// Gives the leadership up at once, so that a standby takes over without waiting for
    /// the lease to expire.
    pub async fn resign(self) {
        self.keeper.abort();
        if let Err(e) = self.etcd.revoke(self.lease).await {
            tracing::warn!(%e, "resigning: the lease will expire by itself");
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// Renews the lease every third of its TTL; reports the leadership lost when etcd says
/// the lease expired or when [`LeaseClock`] says it may have.
async fn keep_alive(
    etcd: Etcd,
    lease: LeaseId,
    ttl_s: u64,
    granted_at: Instant,
    lost: watch::Sender<Option<String>>,
) {
    let mut clock = LeaseClock::new(ttl_s * 1000, granted_at);
    let period = Duration::from_millis(clock.renew_every_ms());
    loop {
        tokio::time::sleep(period).await;
        let sent_at = Instant::now();
        let reason = match etcd.keep_alive(lease).await {
            Ok(0) => Some("etcd says the lease expired".to_owned()),
            Ok(_) => {
                clock.renewed(sent_at);
                None
            }
            Err(e) if clock.may_have_expired(Instant::now()) => {
                Some(format!("the lease could not be renewed in time ({e})"))
            }
            Err(e) => {
                tracing::warn!(%e, "renewing the leader lease; retrying");
                None
            }
        };
        if let Some(reason) = reason {
            let _ = lost.send(Some(reason));
            return;
        }
    }
}

/// When a lease may have expired, from the holder's side.
///
/// etcd starts a renewed lease's TTL when it handles the renewal, which is after the
/// holder sent it; counting from the send is therefore safe. The holder gives up a third
/// of the TTL early, as a margin for clock-rate differences and its own reaction time.
#[derive(Clone, Copy, Debug)]
pub struct LeaseClock {
    ttl_ms: u64,
    renewed_at: Instant,
}

impl LeaseClock {
    pub fn new(ttl_ms: u64, renewed_at: Instant) -> LeaseClock {
        LeaseClock { ttl_ms, renewed_at }
    }

    pub fn renew_every_ms(&self) -> u64 {
        (self.ttl_ms / 3).max(1)
    }

    pub fn renewed(&mut self, sent_at: Instant) {
        self.renewed_at = self.renewed_at.max(sent_at);
    }

    pub fn may_have_expired(&self, now: Instant) -> bool {
        let safe_ms = self.ttl_ms - self.ttl_ms / 3;
        now.saturating_duration_since(self.renewed_at) >= Duration::from_millis(safe_ms)
    }
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_given_up_a_third_of_its_ttl_early() {
        let t0 = Instant::now();
        let mut clock = LeaseClock::new(3_000, t0);
        assert_eq!(clock.renew_every_ms(), 1_000);
        assert!(!clock.may_have_expired(t0 + Duration::from_millis(1_999)));
        assert!(clock.may_have_expired(t0 + Duration::from_millis(2_000)));
        clock.renewed(t0 + Duration::from_millis(1_500));
        assert!(!clock.may_have_expired(t0 + Duration::from_millis(3_000)));
        // A renewal answered late never moves the clock back.
        clock.renewed(t0);
        assert!(!clock.may_have_expired(t0 + Duration::from_millis(3_000)));
    }
}
