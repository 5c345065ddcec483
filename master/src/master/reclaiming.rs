//! Applying [`crate::reclaim`]: looking for starving frameworks and scheduling kills.

use proto::resources::subtract_quantities;
use proto::{FrameworkId, TaskId};

use super::{Action, Master};
use crate::allocator::is_filtered;
use crate::reclaim::{Contender, SHARE_EPSILON, TaskCandidate, choose_victims, fair_shares};
use crate::time::Millis;

impl Master {
    /// Looks for frameworks that have wanted offers below their fair share for
    /// `starvation_ms`, and reclaims tasks for them.
    pub(super) fn reclaim_check(&mut self, now: Millis) {
        let Some(cfg) = self.config.reclaim.clone() else {
            return;
        };
        self.reclaim_check_at = None;
        let contenders = self.contenders();
        let fair = fair_shares(&contenders);
        let mut below_any = false;
        let ids: Vec<FrameworkId> = self.frameworks.keys().cloned().collect();
        for id in ids {
            let Some(c) = contenders.iter().find(|c| c.framework_id == id) else {
                continue;
            };
            let total = &self.book.snapshot().total;
            let share = proto::resources::dominant_share_of(&c.allocation, total);
            let below = c.wants_offers && fair.get(&id).is_some_and(|f| share + SHARE_EPSILON < *f);
            let Some(fw) = self.frameworks.get_mut(&id) else {
                continue;
            };
            if !below {
                fw.below_fair_since = None;
                continue;
            }
            below_any = true;
            let since = *fw.below_fair_since.get_or_insert(now);
            if now.ms_since(since) < cfg.starvation_ms {
                continue;
            }
            // Wait a whole starvation period again before the next reclaim for it.
            fw.below_fair_since = Some(now);
            let candidates = self.reclaim_candidates(&id);
            let victims = choose_victims(
                &self.book.snapshot().total,
                &contenders,
                &fair,
                &id,
                &candidates,
            );
            for task_id in victims {
                self.schedule_reclaim(&task_id, now.plus_ms(cfg.grace_ms));
            }
        }
        if below_any {
            self.reclaim_check_at = Some(now.plus_ms(cfg.check_interval_ms.max(1)));
        }
    }

    /// Kills reclaimed tasks whose grace period is over.
    pub(super) fn reclaim_kills_due(&mut self, now: Millis) {
        while let Some((at, task_id)) = self.reclaim_kills.first().cloned() {
            if at > now {
                break;
            }
            self.reclaim_kills.remove(&(at, task_id.clone()));
            if let Some(task) = self.tasks.get(&task_id) {
                let (agent_id, grace_ms) = (task.agent_id.clone(), self.config.kill_grace_ms);
                self.actions.push_back(Action::KillTask {
                    agent_id,
                    task_id,
                    grace_ms,
                });
            }
        }
    }

    fn schedule_reclaim(&mut self, task_id: &TaskId, kill_at: Millis) {
        let Some(task) = self.tasks.get_mut(task_id) else {
            return;
        };
        task.reclaim_at = Some(kill_at);
        let (framework_id, agent_id) = (task.framework_id.clone(), task.agent_id.clone());
        self.reclaim_kills.insert((kill_at, task_id.clone()));
        self.actions.push_back(Action::ReclaimNotice {
            framework_id,
            task_id: task_id.clone(),
            agent_id,
            kill_at,
        });
    }

    /// Every framework with its allocation less the tasks already being reclaimed.
    fn contenders(&self) -> Vec<Contender> {
        let snapshot = self.book.snapshot();
        let mut out: Vec<Contender> = snapshot
            .frameworks
            .iter()
            .map(|(id, slot)| Contender {
                framework_id: id.clone(),
                role: slot.role.clone(),
                role_weight: snapshot
                    .role_weights
                    .get(&slot.role)
                    .copied()
                    .unwrap_or(1.0),
                weight: slot.weight,
                wants_offers: slot.wants_offers,
                allocation: slot.allocation.clone(),
            })
            .collect();
        for task in self.tasks.live().filter(|t| t.reclaim_at.is_some()) {
            if let Some(c) = out.iter_mut().find(|c| c.framework_id == task.framework_id) {
                subtract_quantities(&mut c.allocation, &task.resources.quantities());
            }
        }
        out
    }

    /// Tasks of other frameworks, not yet being reclaimed, on agents whose attributes
    /// `starving` accepts and whose resources it has not filtered out.
    fn reclaim_candidates(&self, starving: &FrameworkId) -> Vec<TaskCandidate> {
        let snapshot = self.book.snapshot();
        let Some(slot) = snapshot.frameworks.get(starving) else {
            return Vec::new();
        };
        self.tasks
            .live()
            .filter(|t| &t.framework_id != starving && t.reclaim_at.is_none() && !t.doomed)
            // A recovered framework has no slot (no share) until it subscribes again.
            .filter(|t| snapshot.frameworks.contains_key(&t.framework_id))
            .filter(|t| {
                snapshot
                    .agents
                    .get(&t.agent_id)
                    .is_some_and(|a| a.attributes.satisfies(&slot.constraints))
                    && !is_filtered(slot, &t.agent_id, &t.resources, self.now)
            })
            .map(|t| TaskCandidate {
                task_id: t.task_id.clone(),
                framework_id: t.framework_id.clone(),
                launch_seq: t.launch_seq,
                quantities: t.resources.quantities(),
            })
            .collect()
    }
}
