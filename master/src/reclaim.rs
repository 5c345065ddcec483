//! Reclaim: choosing tasks to take back from frameworks above their fair share for a
//! framework that has stayed below its own. Pure functions; the master applies them.
//!
//! **Fair share.** Among the *contenders* (frameworks that want offers or hold
//! resources), a role's fair share is its weight over the sum of the weights of the roles
//! with contenders, and a framework's is its role's split by the weights of the role's
//! contenders. Shares are dominant shares, as in DRF.
//!
//! **Victims.** Frameworks above their fair share, furthest above first; within each,
//! newest tasks first. A task is taken only if its framework stays at or above its fair
//! share without it, so reclaim never pushes a framework below its fair share: a
//! framework must be over by at least one whole task (the hysteresis that keeps reclaim
//! from taking a task back and forth). Tasks are taken until the dominant shares taken add
//! up to the starving framework's deficit.
//!
//! **Convergence.** Every reclaimed task moves resources from a framework above its fair
//! share, which stays at or above it, to the pool, where DRF offers them to the lowest
//! share first. The master waits `starvation_ms` between two reclaims for one framework,
//! so reclaim stops once no framework is over its fair share by a whole task.

use std::collections::BTreeMap;

use proto::resources::{dominant_share_of, subtract_quantities};
use proto::{FrameworkId, TaskId};

/// Shares this close count as equal.
pub const SHARE_EPSILON: f64 = 1e-9;

/// A framework as reclaim sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Contender {
    pub framework_id: FrameworkId,
    pub role: String,
    pub role_weight: f64,
    pub weight: f64,
    pub wants_offers: bool,
    /// Its allocation less the tasks already chosen for reclaim.
    pub allocation: BTreeMap<String, u64>,
}

/// A task that may be reclaimed.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskCandidate {
    pub task_id: TaskId,
    pub framework_id: FrameworkId,
    pub launch_seq: u64,
    pub quantities: BTreeMap<String, u64>,
}

/// Fair share of each contender (a framework that wants offers or holds resources).
pub fn fair_shares(contenders: &[Contender]) -> BTreeMap<FrameworkId, f64> {
    let active: Vec<&Contender> = contenders
        .iter()
        .filter(|c| c.wants_offers || !c.allocation.is_empty())
        .collect();
    let mut roles: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for c in &active {
        let entry = roles.entry(&c.role).or_insert((c.role_weight, 0.0));
        entry.1 += c.weight;
    }
    let role_weight_sum: f64 = roles.values().map(|(w, _)| w).sum();
    active
        .iter()
        .filter_map(|c| {
            let (role_weight, member_weight_sum) = roles.get(c.role.as_str())?;
            let fair = role_weight / role_weight_sum * c.weight / member_weight_sum;
            fair.is_finite().then(|| (c.framework_id.clone(), fair))
        })
        .collect()
}

/// The tasks to reclaim so that `starving` may reach its fair share; see the module
/// documentation for the rules. `candidates` are the tasks reclaim may take (the caller
/// leaves out tasks on agents `starving` cannot use).
pub fn choose_victims(
    total: &BTreeMap<String, u64>,
    contenders: &[Contender],
    fair: &BTreeMap<FrameworkId, f64>,
    starving: &FrameworkId,
    candidates: &[TaskCandidate],
) -> Vec<TaskId> {
    let share = |c: &Contender| dominant_share_of(&c.allocation, total);
    let Some(s) = contenders.iter().find(|c| &c.framework_id == starving) else {
        return Vec::new();
    };
    let deficit = fair.get(starving).copied().unwrap_or(0.0) - share(s);
    if deficit <= SHARE_EPSILON {
        return Vec::new();
    }
    let mut over: Vec<(&Contender, f64)> = contenders
        .iter()
        .filter_map(|c| {
            let excess = share(c) - fair.get(&c.framework_id).copied()?;
            (excess > SHARE_EPSILON && &c.framework_id != starving).then_some((c, excess))
        })
        .collect();
    over.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then_with(|| a.0.framework_id.cmp(&b.0.framework_id))
    });
    let mut taken = Vec::new();
    let mut reclaimed = 0.0;
    for (victim, _) in over {
        let victim_fair = fair.get(&victim.framework_id).copied().unwrap_or(0.0);
        let mut left = victim.allocation.clone();
        let mut tasks: Vec<&TaskCandidate> = candidates
            .iter()
            .filter(|t| t.framework_id == victim.framework_id)
            .collect();
        tasks.sort_by_key(|t| std::cmp::Reverse(t.launch_seq));
        for task in tasks {
            let mut after = left.clone();
            subtract_quantities(&mut after, &task.quantities);
            if dominant_share_of(&after, total) + SHARE_EPSILON < victim_fair {
                continue;
            }
            left = after;
            reclaimed += dominant_share_of(&task.quantities, total);
            taken.push(task.task_id.clone());
            if reclaimed + SHARE_EPSILON >= deficit {
                return taken;
            }
        }
    }
    taken
}
