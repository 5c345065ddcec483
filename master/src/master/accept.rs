//! Accept and decline: the calls that answer offers, and the filters they leave.

use std::collections::BTreeSet;

use proto::{AgentId, Filters, FrameworkId, OfferId, Operation, Resources, TaskSpec, TaskState};

use super::{Action, Master};
use crate::allocator::FilterSlot;
use crate::error::CallError;
use crate::tasks::TaskRecord;
use crate::time::refuse_ms;

/// One accepted offer while an `Accept` is checked: what is left of it.
struct Placement {
    offer_id: OfferId,
    agent_id: AgentId,
    left: Resources,
    tasks: Vec<TaskSpec>,
}

impl Master {
    pub(super) fn accept(
        &mut self,
        id: &FrameworkId,
        offer_ids: Vec<OfferId>,
        ops: Vec<Operation>,
        filters: Filters,
    ) -> Result<(), CallError> {
        let mut placements = self.check_offers(id, &offer_ids)?;
        let tasks: Vec<TaskSpec> = ops
            .into_iter()
            .flat_map(|Operation::Launch { tasks }| tasks)
            .collect();
        if tasks.len() > self.config.tasks_per_accept_max {
            return Err(CallError::TooManyTasks {
                count: tasks.len(),
                max: self.config.tasks_per_accept_max,
            });
        }
        let mut seen = BTreeSet::new();
        for task in tasks {
            if self.tasks.is_known(&task.task_id) || !seen.insert(task.task_id.clone()) {
                return Err(CallError::DuplicateTask(task.task_id));
            }
            self.check_disconnect(id, &task)?;
            if task.resources.is_empty() {
                return Err(CallError::NoResources(task.task_id));
            }
            // First fit, in the order the offers were named.
            let Some(p) = placements
                .iter_mut()
                .find(|p| p.left.contains(&task.resources))
            else {
                return Err(CallError::DoesNotFit {
                    task: task.task_id,
                    needs: task.resources,
                });
            };
            p.left.subtract_saturating(&task.resources);
            p.tasks.push(task);
        }
        // Everything checked: from here on nothing fails.
        for p in placements {
            self.commit_placement(id, p, filters);
        }
        Ok(())
    }

    /// The named offers, all outstanding and all made to `id`, each named once.
    fn check_offers(
        &self,
        id: &FrameworkId,
        offer_ids: &[OfferId],
    ) -> Result<Vec<Placement>, CallError> {
        if offer_ids.is_empty() {
            return Err(CallError::NoOffers);
        }
        let mut placements: Vec<Placement> = Vec::with_capacity(offer_ids.len());
        for offer_id in offer_ids {
            if placements.iter().any(|p| &p.offer_id == offer_id) {
                return Err(CallError::DuplicateOffer(offer_id.clone()));
            }
            let o = self
                .offers
                .get(offer_id)
                .ok_or_else(|| CallError::UnknownOffer(offer_id.clone()))?;
            if &o.offer.framework_id != id {
                return Err(CallError::NotYourOffer(offer_id.clone()));
            }
            placements.push(Placement {
                offer_id: offer_id.clone(),
                agent_id: o.offer.agent_id.clone(),
                left: o.offer.resources.clone(),
                tasks: Vec::new(),
            });
        }
        Ok(placements)
    }

    fn commit_placement(&mut self, id: &FrameworkId, p: Placement, filters: Filters) {
        if self.offers.remove(&p.offer_id).is_none() {
            return;
        }
        if !p.left.is_empty() {
            self.offered_to_free(&p.agent_id, id, &p.left);
            self.add_filter(id, &p.agent_id, p.left, filters);
        }
        for task in p.tasks {
            let task_id = task.task_id.clone();
            self.book.launch_from_offer(&p.agent_id, &task.resources);
            self.launches += 1;
            let record = TaskRecord {
                task_id: task.task_id.clone(),
                framework_id: id.clone(),
                agent_id: p.agent_id.clone(),
                name: task.name.as_str().into(),
                resources: task.resources.clone(),
                state: TaskState::Staging,
                latest: None,
                launch_seq: self.launches,
                launched_at: self.now,
                reclaim_at: None,
                doomed: false,
                kill_requested: false,
                disconnect: task.disconnect.clone(),
            };
            if let Some(agent) = self.agents.get_mut(&p.agent_id) {
                agent.tasks.insert(task.task_id.clone());
            }
            if let Some(fw) = self.frameworks.get_mut(id) {
                fw.tasks.insert(task.task_id.clone());
            }
            self.tasks.insert(record);
            let replaces = task.replaces.clone();
            self.actions.push_back(Action::LaunchTask {
                agent_id: p.agent_id.clone(),
                framework_id: id.clone(),
                task,
            });
            if let Some(original) = replaces {
                self.note_replacement(id, original, &task_id);
            }
        }
    }

    /// Declines the named offers. Offers that are no longer outstanding are skipped (they
    /// are back in the pool already); an offer of another framework refuses the call.
    pub(super) fn decline(
        &mut self,
        id: &FrameworkId,
        offer_ids: Vec<OfferId>,
        filters: Filters,
    ) -> Result<(), CallError> {
        if let Some(bad) = offer_ids.iter().find(|o| {
            self.offers
                .get(o)
                .is_some_and(|o| &o.offer.framework_id != id)
        }) {
            return Err(CallError::NotYourOffer(bad.clone()));
        }
        for offer_id in offer_ids {
            let Some(o) = self.offers.get(&offer_id) else {
                continue;
            };
            let (agent_id, resources) = (o.offer.agent_id.clone(), o.offer.resources.clone());
            self.withdraw_offer(&offer_id, false);
            self.add_filter(id, &agent_id, resources, filters);
        }
        Ok(())
    }

    /// Stops offering a subset of `resources` of `agent_id` to `id` for the filter's time.
    fn add_filter(
        &mut self,
        id: &FrameworkId,
        agent_id: &AgentId,
        resources: Resources,
        filters: Filters,
    ) {
        let ms = refuse_ms(filters.refuse_seconds, self.config.filter_refuse_ms_max);
        if ms == 0 || resources.is_empty() {
            return;
        }
        let until = self.now.plus_ms(ms);
        let max = self.config.filters_per_framework_max.max(1);
        let Some(fw) = self.book.framework_mut(id) else {
            return;
        };
        let count: usize = fw.filters.values().map(Vec::len).sum();
        if count >= max {
            // Drop the filter that would expire first to stay within the limit.
            let first = self.filter_expiry.iter().find(|(_, f, _)| f == id).cloned();
            if let Some((at, _, agent)) = first {
                self.filter_expiry.remove(&(at, id.clone(), agent.clone()));
                if let Some(list) = fw.filters.get_mut(&agent) {
                    list.retain(|f| f.until != at);
                    if list.is_empty() {
                        fw.filters.remove(&agent);
                    }
                }
            }
        }
        fw.filters
            .entry(agent_id.clone())
            .or_default()
            .push(FilterSlot { resources, until });
        self.filter_expiry
            .insert((until, id.clone(), agent_id.clone()));
    }

    pub(super) fn clear_filters(&mut self, id: &FrameworkId) {
        if let Some(fw) = self.book.framework_mut(id) {
            fw.filters.clear();
        }
        self.filter_expiry.retain(|(_, f, _)| f != id);
    }
}
