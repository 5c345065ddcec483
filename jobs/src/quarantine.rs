//! Agents where a job's tasks keep failing: after `failures` tasks of the job ended
//! `failed` or `error` on one agent within `window_ms`, the agent gets no copies of the
//! job for `backoff_ms` (Nomad's reschedule penalty, made explicit). Sans-IO, times on
//! the book's clock.

use std::collections::{BTreeMap, VecDeque};

use proto::AgentId;
use proto::declared::{QuarantinePolicy, QuarantineRow};
use serde::{Deserialize, Serialize};

/// One job's record of failures and quarantined agents.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Quarantine {
    agents: BTreeMap<AgentId, Record>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Record {
    /// When its recent failures were, oldest first (at most `policy.failures`).
    failures: VecDeque<u64>,
    /// Quarantined until then.
    until: Option<u64>,
}

impl Quarantine {
    /// A task of the job failed on `agent`; whether that quarantines it now.
    pub(crate) fn failed(
        &mut self,
        now_ms: u64,
        agent: &AgentId,
        policy: QuarantinePolicy,
    ) -> bool {
        if policy.failures == 0 {
            return false;
        }
        let record = self.agents.entry(agent.clone()).or_default();
        record.failures.push_back(now_ms);
        let since = now_ms.saturating_sub(policy.window_ms);
        while record.failures.front().is_some_and(|t| *t < since) {
            record.failures.pop_front();
        }
        while record.failures.len() > policy.failures as usize {
            record.failures.pop_front();
        }
        let newly = record.failures.len() >= policy.failures as usize
            && record.until.is_none_or(|until| until <= now_ms);
        if newly {
            record.until = Some(now_ms.saturating_add(policy.backoff_ms));
        }
        newly
    }

    pub(crate) fn holds(&self, agent: &AgentId, now_ms: u64) -> bool {
        (self.agents.get(agent)).is_some_and(|r| r.until.is_some_and(|until| until > now_ms))
    }

    /// The agents quarantined at `now_ms`.
    pub(crate) fn agents(&self, now_ms: u64) -> Vec<AgentId> {
        (self.agents.keys())
            .filter(|a| self.holds(a, now_ms))
            .cloned()
            .collect()
    }

    /// When the next quarantine ends.
    pub(crate) fn next_end(&self, now_ms: u64) -> Option<u64> {
        (self.agents.values())
            .filter_map(|r| r.until)
            .filter(|until| *until > now_ms)
            .min()
    }

    /// Forgets what has ended and failures older than the window.
    pub(crate) fn expire(&mut self, now_ms: u64, policy: QuarantinePolicy) {
        let since = now_ms.saturating_sub(policy.window_ms);
        self.agents.retain(|_, r| {
            if r.until.is_some_and(|until| until <= now_ms) {
                r.until = None;
                r.failures.clear();
            }
            r.failures.retain(|t| *t >= since);
            r.until.is_some() || !r.failures.is_empty()
        });
    }

    /// Onto a new book's clock: times of the book whose clock began at `old_base_ms`
    /// (wall clock) become times of one whose clock began at `new_base_ms`; what is over
    /// by then is forgotten.
    pub(crate) fn rebase(&mut self, old_base_ms: u64, new_base_ms: u64) {
        let rebase = |t: u64| old_base_ms.saturating_add(t).checked_sub(new_base_ms);
        self.agents.retain(|_, r| {
            r.failures = r.failures.iter().filter_map(|t| rebase(*t)).collect();
            r.until = r.until.and_then(rebase).filter(|until| *until > 0);
            r.until.is_some() || !r.failures.is_empty()
        });
    }

    pub(crate) fn rows(&self, now_ms: u64, wall_base_ms: u64) -> Vec<QuarantineRow> {
        (self.agents.iter())
            .filter(|(_, r)| r.until.is_some_and(|until| until > now_ms))
            .map(|(agent_id, r)| QuarantineRow {
                agent_id: agent_id.clone(),
                failures: r.failures.len() as u32,
                until_at_ms: wall_base_ms.saturating_add(r.until.unwrap_or(now_ms)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_quarantine_keeps_its_end_on_the_wall_clock() {
        let policy = QuarantinePolicy {
            failures: 1,
            window_ms: 1_000,
            backoff_ms: 5_000,
        };
        let a = AgentId::new("a");
        let mut q = Quarantine::default();
        assert!(q.failed(10_000, &a, policy));
        // The old book's clock began at wall 1_000_000; the new one's 3 s later.
        q.rebase(1_000_000, 1_003_000);
        assert_eq!(q.next_end(0), Some(12_000));
        q.rebase(1_003_000, 1_020_000);
        assert!(q.agents(0).is_empty(), "over by then");
    }

    #[test]
    fn failures_within_the_window_quarantine_for_the_backoff() {
        let policy = QuarantinePolicy {
            failures: 3,
            window_ms: 1_000,
            backoff_ms: 5_000,
        };
        let a = AgentId::new("a");
        let mut q = Quarantine::default();
        assert!(!q.failed(0, &a, policy));
        assert!(
            !q.failed(2_000, &a, policy),
            "the first fell out of the window"
        );
        assert!(!q.failed(2_500, &a, policy));
        assert!(q.failed(2_900, &a, policy));
        assert!(q.holds(&a, 7_899));
        assert_eq!(q.next_end(3_000), Some(7_900));
        assert!(!q.holds(&a, 7_900));
        q.expire(7_900, policy);
        assert!(q.agents(7_900).is_empty());
        let off = QuarantinePolicy {
            failures: 0,
            ..policy
        };
        for t in 0..10 {
            assert!(!q.failed(t, &a, off));
        }
    }
}
