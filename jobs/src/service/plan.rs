//! What to do with a declared job's copies now: pure, the service, its copies and the
//! time in; copies to add and stop and an outcome out (the rules are in the parent
//! module's documentation).

use std::collections::BTreeMap;

use proto::AgentId;

use super::{Rollout, Service};
use crate::book::{Slot, SlotState};

/// A copy to add.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct NewCopy {
    pub version: u32,
    pub canary: bool,
    pub bound: Option<AgentId>,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Outcome {
    Succeeded,
    Failed(String),
    CanariesHealthy,
    Promoted,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Plan {
    pub add: Vec<NewCopy>,
    /// Slot numbers.
    pub stop: Vec<usize>,
    pub outcome: Option<Outcome>,
}

/// What to do with a service's copies now (see the module documentation).
pub(super) fn plan(service: &Service, slots: &BTreeMap<usize, Slot>, now_ms: u64) -> Plan {
    let live: Vec<(usize, &Slot)> = (slots.iter())
        .filter(|(_, s)| !s.copy.stopping)
        .map(|(i, s)| (*i, s))
        .collect();
    if service.stopped {
        return Plan {
            stop: live.iter().map(|(i, _)| *i).collect(),
            ..Plan::default()
        };
    }
    let n = service.desired(slots);
    match &service.rollout {
        None => steady(service, &live, n),
        Some(rollout) => rolling(service, rollout, &live, n, now_ms),
    }
}

/// No rollout: `n` copies of the newest version.
fn steady(service: &Service, live: &[(usize, &Slot)], n: usize) -> Plan {
    let mut plan = Plan::default();
    if let Some(per_agent) = service.per_agent() {
        plan.stop = excess_per_agent(live, per_agent);
        return plan;
    }
    for _ in live.len()..n {
        plan.add.push(NewCopy {
            version: service.latest,
            canary: false,
            bound: None,
        });
    }
    plan.stop = fewest_first(live, live.len().saturating_sub(n));
    plan
}

/// Copies beyond `per_agent` on any agent, unhealthy then newest first.
fn excess_per_agent(live: &[(usize, &Slot)], per_agent: usize) -> Vec<usize> {
    let mut by_agent: BTreeMap<Option<&AgentId>, Vec<(usize, &Slot)>> = BTreeMap::new();
    for (i, s) in live {
        by_agent
            .entry(s.copy.bound.as_ref())
            .or_default()
            .push((*i, s));
    }
    (by_agent.values())
        .flat_map(|copies| fewest_first(copies, copies.len().saturating_sub(per_agent)))
        .collect()
}

/// `k` copies to stop: those not running first, then unhealthy ones, then the newest.
fn fewest_first(copies: &[(usize, &Slot)], k: usize) -> Vec<usize> {
    let mut order: Vec<&(usize, &Slot)> = copies.iter().collect();
    order.sort_by_key(|(i, s)| {
        let launched = matches!(s.state, SlotState::Launched { .. });
        (launched, s.copy.healthy, std::cmp::Reverse(*i))
    });
    order.iter().take(k).map(|(i, _)| *i).collect()
}

fn rolling(
    service: &Service,
    rollout: &Rollout,
    live: &[(usize, &Slot)],
    n: usize,
    now_ms: u64,
) -> Plan {
    let update = &service.decl.update;
    let to = rollout.to;
    let (new, old): (Vec<_>, Vec<_>) = live
        .iter()
        .copied()
        .partition(|(_, s)| s.copy.version == to);
    let per_agent = service.per_agent().is_some();
    let reason = failure(&new, to, update.healthy_deadline_ms, now_ms)
        .or_else(|| nothing_placed(rollout, n, per_agent, update.healthy_deadline_ms, now_ms));
    if let Some(reason) = reason {
        return Plan {
            outcome: Some(Outcome::Failed(reason)),
            ..Plan::default()
        };
    }
    let canaries_wanted = match rollout.from.is_some() && !rollout.promoted {
        true => update.canary as usize,
        false => 0,
    };
    if canaries_wanted > 0 {
        return canary_step(service, rollout, &new, canaries_wanted);
    }
    let mut plan = Plan::default();
    let max_parallel = update.max_parallel as usize;
    let floor = n.saturating_sub(max_parallel);
    let mut healthy = live.iter().filter(|(_, s)| s.copy.healthy).count();
    let new_unhealthy = new.iter().filter(|(_, s)| !s.copy.healthy).count();
    let mut budget = max_parallel.saturating_sub(new_unhealthy);
    let mut new_count = new.len();
    // Fewer copies than wanted (a scale-up during the rollout): copies of `to` at once,
    // within the budget; per-agent copies come with their agents' offers.
    let mut total = new_count + old.len();
    while total < n && budget > 0 && !per_agent {
        plan.add.push(NewCopy {
            version: to,
            canary: false,
            bound: None,
        });
        (new_count, total, budget) = (new_count + 1, total + 1, budget - 1);
    }
    let mut old_order = old.clone();
    old_order.sort_by_key(|(i, s)| (s.copy.healthy, *i));
    for (i, s) in old_order {
        if budget == 0 || (s.copy.healthy && healthy <= floor) {
            break;
        }
        plan.stop.push(i);
        healthy -= usize::from(s.copy.healthy);
        budget -= 1;
        if new_count < n {
            plan.add.push(NewCopy {
                version: to,
                canary: false,
                bound: s.copy.bound.clone(),
            });
            new_count += 1;
        }
    }
    if old.is_empty() {
        last_step(&mut plan, to, &new, new_count, n, per_agent);
    }
    plan
}

/// Only copies of `to` are left: as many as wanted, and done once all are healthy.
fn last_step(
    plan: &mut Plan,
    to: u32,
    new: &[(usize, &Slot)],
    mut new_count: usize,
    n: usize,
    per_agent: bool,
) {
    while new_count < n && !per_agent {
        plan.add.push(NewCopy {
            version: to,
            canary: false,
            bound: None,
        });
        new_count += 1;
    }
    plan.stop
        .extend(fewest_first(new, new.len().saturating_sub(n)));
    let all_healthy = new.iter().all(|(_, s)| s.copy.healthy);
    // A per-agent job is done once it has copies: with none, no agent matched yet.
    if new.len() == n && all_healthy && (n > 0 || !per_agent) {
        plan.outcome = Some(Outcome::Succeeded);
    }
}

/// A per-agent job that has no copy `deadline_ms` after its rollout began: no agent
/// matches it (or none offered).
fn nothing_placed(
    rollout: &Rollout,
    n: usize,
    per_agent: bool,
    deadline_ms: u64,
    now_ms: u64,
) -> Option<String> {
    let since = rollout.since_ms?;
    (per_agent && n == 0 && now_ms >= since.saturating_add(deadline_ms)).then(|| {
        format!(
            "no agent took a copy of version {} within {deadline_ms} ms (see `wasmos explain`)",
            rollout.to
        )
    })
}

/// Why the rollout to `to` failed, if it did.
fn failure(new: &[(usize, &Slot)], to: u32, deadline_ms: u64, now_ms: u64) -> Option<String> {
    for (_, s) in new {
        if s.copy.failed {
            return Some(format!(
                "copy {} of version {to} failed before it was healthy",
                s.task_id
            ));
        }
        let late = now_ms >= s.copy.created_ms.saturating_add(deadline_ms);
        if !s.copy.healthy && late {
            let placed = match s.copy.placed_ms {
                Some(_) => "",
                None => " (it was never placed: see `wasmos explain`)",
            };
            return Some(format!(
                "copy {} of version {to} was not healthy within {deadline_ms} ms{placed}",
                s.task_id
            ));
        }
    }
    None
}

fn canary_step(
    service: &Service,
    rollout: &Rollout,
    new: &[(usize, &Slot)],
    wanted: usize,
) -> Plan {
    let canaries: Vec<&(usize, &Slot)> = new.iter().filter(|(_, s)| s.copy.canary).collect();
    let mut plan = Plan::default();
    for _ in canaries.len()..wanted {
        plan.add.push(NewCopy {
            version: rollout.to,
            canary: true,
            bound: None,
        });
    }
    if canaries.len() >= wanted && canaries.iter().all(|(_, s)| s.copy.healthy) {
        plan.outcome = Some(match service.decl.update.auto_promote {
            true => Outcome::Promoted,
            false => Outcome::CanariesHealthy,
        });
    }
    plan
}
