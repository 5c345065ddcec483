//! Read-only views of the master's state, which the operator API and dashboard turn into
//! their own documented rows (`http_api::state`).

use std::collections::BTreeMap;

use proto::resources::dominant_share_of;
use proto::{AgentId, Attributes, FrameworkId, OfferId, Resources, TaskId, TaskState};

use crate::master::Master;
use crate::time::Millis;

#[derive(Clone, Debug, PartialEq)]
pub struct AgentView {
    pub agent_id: AgentId,
    pub hostname: String,
    pub attributes: Attributes,
    pub total: Resources,
    pub free: Resources,
    pub offered: Resources,
    pub used: Resources,
    pub tasks: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FrameworkView {
    pub framework_id: FrameworkId,
    pub name: String,
    pub role: String,
    pub role_weight: f64,
    pub weight: f64,
    pub connected: bool,
    pub suppressed: bool,
    /// Quantities used by its tasks plus offered to it (thousandths, as
    /// [`Resources::quantities`]).
    pub allocation: BTreeMap<String, u64>,
    /// Its dominant share of the cluster, unweighted.
    pub dominant_share: f64,
    pub tasks: usize,
    pub offers: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TaskView {
    pub task_id: TaskId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub name: String,
    pub resources: Resources,
    pub state: TaskState,
    pub launched_at: Millis,
    pub reclaim_at: Option<Millis>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OfferView {
    pub offer_id: OfferId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub resources: Resources,
    pub made_at: Millis,
    pub expires_at: Option<Millis>,
}

impl Master {
    pub fn agents_view(&self) -> Vec<AgentView> {
        self.agents
            .iter()
            .filter_map(|(id, r)| {
                let books = self.book.agent(id)?;
                Some(AgentView {
                    agent_id: id.clone(),
                    hostname: r.hostname.clone(),
                    attributes: books.attributes.clone(),
                    total: books.total.clone(),
                    free: books.free.clone(),
                    offered: books.offered.clone(),
                    used: books.used.clone(),
                    tasks: r.tasks.len(),
                })
            })
            .collect()
    }

    pub fn frameworks_view(&self) -> Vec<FrameworkView> {
        self.frameworks
            .iter()
            .filter_map(|(id, r)| {
                let snapshot = self.book.snapshot();
                let slot = snapshot.frameworks.get(id)?;
                Some(FrameworkView {
                    framework_id: id.clone(),
                    name: r.info.name.clone(),
                    role: slot.role.clone(),
                    role_weight: snapshot
                        .role_weights
                        .get(&slot.role)
                        .copied()
                        .unwrap_or(1.0),
                    weight: slot.weight,
                    connected: r.connected,
                    suppressed: r.suppressed,
                    allocation: slot.allocation.clone(),
                    dominant_share: dominant_share_of(&slot.allocation, &snapshot.total),
                    tasks: r.tasks.len(),
                    offers: self.offers.of_framework(id).len(),
                })
            })
            .collect()
    }

    pub fn tasks_view(&self) -> Vec<TaskView> {
        self.tasks
            .live()
            .map(|t| TaskView {
                task_id: t.task_id.clone(),
                framework_id: t.framework_id.clone(),
                agent_id: t.agent_id.clone(),
                name: t.name.clone(),
                resources: t.resources.clone(),
                state: t.state,
                launched_at: t.launched_at,
                reclaim_at: t.reclaim_at,
            })
            .collect()
    }

    pub fn offers_view(&self) -> Vec<OfferView> {
        self.offers
            .iter()
            .map(|o| OfferView {
                offer_id: o.offer.offer_id.clone(),
                framework_id: o.offer.framework_id.clone(),
                agent_id: o.offer.agent_id.clone(),
                resources: o.offer.resources.clone(),
                made_at: o.made_at,
                expires_at: o.expires_at,
            })
            .collect()
    }
}
