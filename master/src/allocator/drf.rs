//! The built-in policy: hierarchical weighted Dominant Resource Fairness.
//!
//! For each candidate agent (in [`super::visiting_order`]: seeded random, as Mesos does, so that
//! no agent is always served first, and agents with free GPUs last) the agent's free
//! resources go to the first framework in [`DrfSorter`] order that [`may_offer`] allows;
//! the offer then counts against that framework's share before the next agent is looked
//! at. An agent with free GPUs goes to a framework with the GPU capability if one takes
//! it, else to one allowed GPU agents as a last resort ([`in_gpu_turn`]).
//!
//! Cost: keeping the sorter in step with the snapshot is `O(changed frameworks × log F)`,
//! or `O(F log F)` when the cluster total or a role weight changed. Each candidate agent
//! costs `O(log F + log R)` to reorder after an offer, plus one eligibility check for every
//! framework ahead of the one chosen that the agent does not suit (constraints, filters,
//! minimum offer): `O(F)` in the worst case, `O(1)` when frameworks take anything.

use std::sync::Arc;

use proto::AgentId;

use super::sorter::{ClientIdx, DrfSorter};
use super::{AgentSlot, Allocator, GpuAgents, OfferDecision, Snapshot, in_gpu_turn, may_offer};
use crate::rng::SplitMix64;

/// The default allocation policy; see the module documentation.
#[derive(Clone, Debug)]
pub struct DrfAllocator {
    sorter: DrfSorter,
    /// The total the sorter was built against; a different total rebuilds it.
    sorter_total: Option<std::collections::BTreeMap<String, u64>>,
    rng: SplitMix64,
}

impl DrfAllocator {
    pub fn new(seed: u64) -> DrfAllocator {
        DrfAllocator {
            sorter: DrfSorter::default(),
            sorter_total: None,
            rng: SplitMix64::new(seed),
        }
    }

    /// The sorter as of the last call (for views and tests).
    pub fn sorter(&self) -> &DrfSorter {
        &self.sorter
    }

    /// Forgets the sorter, so that the next pass rebuilds it from the whole snapshot: for
    /// a caller that skipped passes (a plug-in allocator falling back to this one).
    pub fn invalidate(&mut self) {
        self.sorter_total = None;
    }

    /// Brings the sorter in step with `snapshot`.
    pub fn sync(&mut self, snapshot: &Snapshot) {
        let stale_total = self.sorter_total.as_ref() != Some(&snapshot.total);
        if snapshot.changes.all || stale_total {
            self.sorter = DrfSorter::new(&snapshot.total);
            self.sorter_total = Some(snapshot.total.clone());
            for (id, fw) in &snapshot.frameworks {
                self.sorter.upsert(id, fw, role_weight(snapshot, &fw.role));
            }
            return;
        }
        for id in &snapshot.changes.frameworks {
            match snapshot.frameworks.get(id) {
                Some(fw) => self.sorter.upsert(id, fw, role_weight(snapshot, &fw.role)),
                None => self.sorter.remove(id),
            }
        }
    }
}

impl DrfAllocator {
    /// The first framework in DRF order that may have `agent` in this turn
    /// ([`in_gpu_turn`]). Frameworks whose minimum offer cannot fit are passed over by
    /// the sorter; an agent without free GPUs skips the per-framework check for
    /// frameworks that take anything.
    fn first_match(
        &self,
        snapshot: &Snapshot,
        (agent_id, agent): (&AgentId, &AgentSlot),
        free: &[u64],
        last_resort: bool,
    ) -> Option<ClientIdx> {
        let gpus = self.has_free_gpus(agent, free);
        self.sorter.first_match(free, |_, fw_id, takes_anything| {
            (takes_anything && !gpus)
                || snapshot.frameworks.get(fw_id).is_some_and(|fw| {
                    in_gpu_turn(fw, agent, last_resort)
                        && may_offer(fw, agent_id, agent, snapshot.now)
                })
        })
    }
}

impl DrfAllocator {
    /// [`AgentSlot::has_free_gpus`], read from the agent's quantities when the cluster
    /// has GPUs (the free GPUs of an agent are part of the cluster's total).
    fn has_free_gpus(&self, agent: &AgentSlot, free: &[u64]) -> bool {
        match self.sorter.gpus_kind() {
            Some(k) => free.get(k).is_some_and(|q| *q > 0),
            None => agent.has_free_gpus(),
        }
    }

    /// Counts the agent's free resources (`free`, as quantities) against framework `idx`.
    fn offer(&mut self, idx: ClientIdx, agent_id: &AgentId, free: &[u64]) -> OfferDecision {
        self.sorter.allocate(idx, free);
        OfferDecision {
            agent_id: agent_id.clone(),
            framework_id: self.sorter.id(idx).clone(),
        }
    }
}

/// Roles weigh 1 unless the snapshot says otherwise.
fn role_weight(snapshot: &Snapshot, role: &str) -> f64 {
    snapshot.role_weights.get(role).copied().unwrap_or(1.0)
}

impl Allocator for DrfAllocator {
    fn name(&self) -> &str {
        "drf"
    }

    fn allocate(&mut self, snapshot: &Snapshot, candidates: &[AgentId]) -> Vec<OfferDecision> {
        self.sync(snapshot);
        let mut order = slots_of(snapshot, candidates);
        self.rng.shuffle(&mut order);
        // Agents with free GPUs are put off to the end, which is `visiting_order` without a
        // second lookup per agent.
        let mut with_gpus = Vec::new();
        let mut decisions = Vec::with_capacity(order.len());
        let mut free = Vec::new();
        for (agent_id, agent) in order {
            let Some(agent) = agent else {
                continue;
            };
            self.sorter.quantities_into(&agent.free, &mut free);
            // Not all zero is not empty; all zero is empty unless the agent holds a kind
            // the cluster's total lacks, which only the exact check sees.
            if free.iter().all(|q| *q == 0) && agent.free.is_empty() {
                continue;
            }
            if self.has_free_gpus(agent, &free) {
                with_gpus.push((agent_id, agent));
                continue;
            }
            if let Some(idx) = self.first_match(snapshot, (agent_id, agent), &free, false) {
                decisions.push(self.offer(idx, agent_id, &free));
            }
        }
        if with_gpus.is_empty() {
            return decisions;
        }
        // A turn no framework can take part in is skipped: a GPU agent otherwise costs a
        // look at every framework in each turn (most frameworks are offered none).
        let turn_of = |g: GpuAgents| snapshot.frameworks.values().any(|f| f.gpu_agents == g);
        let turns = [
            (false, turn_of(GpuAgents::Offered)),
            (true, turn_of(GpuAgents::LastResort)),
        ];
        for (agent_id, agent) in with_gpus {
            let free = self.sorter.quantities_of(&agent.free);
            let chosen =
                (turns.iter())
                    .filter(|(_, anyone)| *anyone)
                    .find_map(|(last_resort, _)| {
                        self.first_match(snapshot, (agent_id, agent), &free, *last_resort)
                    });
            if let Some(idx) = chosen {
                decisions.push(self.offer(idx, agent_id, &free));
            }
        }
        decisions
    }
}

/// Each candidate beside its slot (`None` if the snapshot lacks it), in the candidates'
/// order. A candidate holding the very string of the agent after the one matched last is
/// matched by comparing pointers: the master's full pass hands the snapshot's own ids, in
/// order, and comparing or searching ids by name was a tenth of that pass. Any other
/// candidate is searched for, and the walk goes on from it.
fn slots_of<'a>(
    snapshot: &'a Snapshot,
    candidates: &'a [AgentId],
) -> Vec<(&'a AgentId, Option<&'a AgentSlot>)> {
    let mut walk = snapshot.agents.range::<AgentId, _>(..).peekable();
    let mut out = Vec::with_capacity(candidates.len());
    for id in candidates {
        let next = walk.next_if(|(known, _)| Arc::ptr_eq(&known.0, &id.0));
        let found = next.or_else(|| {
            walk = snapshot.agents.range::<AgentId, _>(id..).peekable();
            walk.next_if(|(known, _)| *known == id)
        });
        out.push((id, found.map(|(_, slot)| slot)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk finds what a search per candidate finds, whatever the candidates.
    #[test]
    fn slots_are_those_a_search_finds() {
        let mut snapshot = Snapshot::default();
        for i in (0..40).step_by(2) {
            snapshot
                .agents
                .insert(AgentId::new(format!("a{i:02}")), AgentSlot::default());
        }
        let ids = |list: &[u32]| -> Vec<AgentId> {
            list.iter()
                .map(|i| AgentId::new(format!("a{i:02}")))
                .collect()
        };
        let own: Vec<AgentId> = snapshot.agents.keys().cloned().collect();
        let mut scrambled = own.clone();
        scrambled.swap(1, 7);
        scrambled.insert(3, own[3].clone());
        scrambled.push(own[0].clone());
        let cases = [
            own,
            scrambled,
            ids(&(0..40).collect::<Vec<_>>()),
            ids(&[0, 2, 2, 3, 38, 39, 41]),
            ids(&[38, 0, 2]),
            ids(&[]),
        ];
        for candidates in cases {
            let found: Vec<(&AgentId, bool)> = (slots_of(&snapshot, &candidates).into_iter())
                .map(|(id, slot)| (id, slot.is_some()))
                .collect();
            let searched: Vec<(&AgentId, bool)> = (candidates.iter())
                .map(|id| (id, snapshot.agents.contains_key(id)))
                .collect();
            assert_eq!(found, searched);
        }
    }
}
