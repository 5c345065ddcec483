//! The operator's read model: the master's books as the rows of `proto::operator`, which
//! the HTTP API, `/metrics` and the CLI all serve. Built here, from the core's own books
//! (the task registry keeps ended tasks, [`LostAgents`] the agents lost), so that no
//! reader keeps a second copy of the cluster's state.

use std::collections::{BTreeMap, VecDeque};

use proto::operator::{AgentRow, AgentState, FrameworkRow, OfferRow, TaskRow};
use proto::resources::{SCALAR_MILLIS_PER_UNIT, dominant_share_of};
use proto::{AgentId, FrameworkId, Resources, TaskId, TaskState};

use crate::master::Master;
use crate::tasks::{EndedTask, TaskRecord, TaskUsage};
use crate::time::Millis;

/// Ended tasks listed after the live ones, the most recently ended first.
pub const ENDED_TASKS_LISTED_MAX: usize = 200;
/// Lost agents remembered for the listing; the ones lost first are forgotten first.
pub const LOST_AGENTS_KEPT_MAX: usize = 64;

/// Turns the master's times into wall-clock ones: `wall_ms` on the wall clock is
/// `master_now` on the master's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    pub wall_ms: u64,
    pub master_now: Millis,
}

impl WallClock {
    /// Times stay on the master's clock.
    pub const MASTER: WallClock = WallClock {
        wall_ms: 0,
        master_now: Millis(0),
    };

    pub fn wall(self, at: Millis) -> u64 {
        match at.0.checked_sub(self.master_now.0) {
            Some(ahead) => self.wall_ms.saturating_add(ahead),
            None => self.wall_ms.saturating_sub(self.master_now.0 - at.0),
        }
    }
}

/// Agents that were lost, as they were just before, the most recently lost last.
#[derive(Clone, Debug, Default)]
pub struct LostAgents {
    rows: VecDeque<AgentRow>,
}

impl LostAgents {
    /// The agent's row as it was lost: its total stays (what it had); nothing of it is
    /// free, offered or used in the cluster any more, and its tasks went with it.
    pub(crate) fn remember(&mut self, mut row: AgentRow) {
        row.state = AgentState::Lost;
        row.free = Resources::new();
        row.offered = Resources::new();
        row.used = Resources::new();
        row.tasks = 0;
        self.forget(&row.agent_id);
        self.rows.push_back(row);
        while self.rows.len() > LOST_AGENTS_KEPT_MAX {
            self.rows.pop_front();
        }
    }

    /// The agent registered again.
    pub(crate) fn rows(&self) -> impl Iterator<Item = &AgentRow> {
        self.rows.iter()
    }

    pub(crate) fn forget(&mut self, agent_id: &AgentId) {
        self.rows.retain(|r| &r.agent_id != agent_id);
    }
}

impl Master {
    /// The registered agents.
    pub fn agents_view(&self) -> Vec<AgentRow> {
        self.agents
            .keys()
            .filter_map(|id| self.agent_row(id))
            .collect()
    }

    /// The registered agents, then the recently lost ones.
    pub fn agent_rows(&self) -> Vec<AgentRow> {
        let mut rows = self.agents_view();
        rows.extend(self.lost_agents.rows.iter().cloned());
        rows
    }

    pub(crate) fn agent_row(&self, id: &AgentId) -> Option<AgentRow> {
        let r = self.agents.get(id)?;
        let books = self.book.agent(id)?;
        Some(AgentRow {
            id: id.to_string(),
            agent_id: id.clone(),
            hostname: r.hostname.clone(),
            state: match self.agent_token_missing(id) {
                true => AgentState::Disconnected,
                false => AgentState::Active,
            },
            attributes: books.attributes.clone(),
            total: books.total.clone(),
            free: books.free.clone(),
            offered: books.offered.clone(),
            used: books.used.clone(),
            tasks: r.tasks.len(),
        })
    }

    pub fn frameworks_view(&self) -> Vec<FrameworkRow> {
        self.frameworks
            .iter()
            .filter_map(|(id, r)| {
                let snapshot = self.book.snapshot();
                let slot = snapshot.frameworks.get(id)?;
                let role_weights = &snapshot.role_weights;
                Some(FrameworkRow {
                    id: id.to_string(),
                    framework_id: id.clone(),
                    name: r.info.name.clone(),
                    role: slot.role.clone(),
                    role_weight: role_weights.get(&slot.role).copied().unwrap_or(1.0),
                    // The weight the framework gave (in a role without an operator's
                    // weight it is the role's, and the slot's own is 1).
                    weight: r.info.weight,
                    connected: r.connected,
                    suppressed: r.suppressed,
                    allocation: in_units(&slot.allocation),
                    dominant_share: dominant_share_of(&slot.allocation, &snapshot.total),
                    tasks: r.tasks.len(),
                    offers: self.offers.of_framework(id).len(),
                })
            })
            .collect()
    }

    /// The live tasks, times on the master's clock.
    pub fn tasks_view(&self) -> Vec<TaskRow> {
        self.live_task_rows(WallClock::MASTER).collect()
    }

    /// The live tasks, then at most [`ENDED_TASKS_LISTED_MAX`] ended ones (the most
    /// recently ended first), times on the wall clock of `clock`.
    pub fn task_rows(&self, clock: WallClock) -> Vec<TaskRow> {
        let ended = self
            .tasks
            .ended_newest_first()
            .take(ENDED_TASKS_LISTED_MAX)
            .map(|(_, t)| ended_row(t, clock));
        self.live_task_rows(clock).chain(ended).collect()
    }

    /// The rows of `task_ids` the master knows, live or remembered ended, in that order;
    /// ids it does not know are left out.
    pub fn task_rows_of(&self, task_ids: &[TaskId], clock: WallClock) -> Vec<TaskRow> {
        (task_ids.iter())
            .filter_map(|id| match self.tasks.get(id) {
                Some(t) => Some(live_row(t, self.tasks.usage(id), clock)),
                None => self.tasks.ended(id).map(|t| ended_row(t, clock)),
            })
            .collect()
    }

    fn live_task_rows(&self, clock: WallClock) -> impl Iterator<Item = TaskRow> + '_ {
        self.tasks
            .live()
            .map(move |t| live_row(t, self.tasks.usage(&t.task_id), clock))
    }

    /// The framework of a live or remembered ended task, and the agent it ran on.
    pub fn task_place(&self, task_id: &TaskId) -> Option<(FrameworkId, AgentId)> {
        self.tasks
            .owner(task_id)
            .map(|(framework_id, agent_id)| (framework_id.clone(), agent_id.clone()))
    }

    /// The end a task's framework was told, while the master remembers it.
    pub fn task_end(&self, task_id: &TaskId) -> Option<TaskState> {
        self.tasks.ended(task_id).map(|t| t.latest.state)
    }

    /// Outstanding offers, times on the master's clock.
    pub fn offers_view(&self) -> Vec<OfferRow> {
        self.offers
            .iter()
            .map(|o| OfferRow {
                offer_id: o.offer.offer_id.clone(),
                framework_id: o.offer.framework_id.clone(),
                agent_id: o.offer.agent_id.clone(),
                resources: o.offer.resources.clone(),
                made_at_ms: o.made_at.0,
                expires_at_ms: o.expires_at.map(|m| m.0),
            })
            .collect()
    }
}

fn live_row(t: &TaskRecord, usage: Option<TaskUsage>, clock: WallClock) -> TaskRow {
    let latest = t.latest.as_ref();
    TaskRow {
        id: t.task_id.to_string(),
        task_id: t.task_id.clone(),
        framework_id: t.framework_id.clone(),
        agent_id: t.agent_id.clone(),
        name: t.name.to_string(),
        resources: t.resources.clone(),
        state: t.state,
        exit_code: latest.and_then(|s| s.exit_code),
        reason: latest.map(|s| s.reason.clone()).unwrap_or_default(),
        launched_at_ms: clock.wall(t.launched_at),
        reclaim_at_ms: t.reclaim_at.map(|at| clock.wall(at)),
        cpu_seconds: usage.map(|u| u.cpu_seconds),
        memory_bytes: usage.map(|u| u.memory_bytes),
    }
}

/// Quantities (thousandths) in the units resources are given in.
fn in_units(quantities: &BTreeMap<String, u64>) -> BTreeMap<String, f64> {
    let per_unit = SCALAR_MILLIS_PER_UNIT as f64;
    (quantities.iter())
        .map(|(kind, q)| (kind.clone(), *q as f64 / per_unit))
        .collect()
}

fn ended_row(t: &EndedTask, clock: WallClock) -> TaskRow {
    TaskRow {
        id: t.latest.task_id.to_string(),
        task_id: t.latest.task_id.clone(),
        framework_id: t.framework_id().clone(),
        agent_id: t.agent_id().clone(),
        name: t.name.clone(),
        resources: t.resources.clone(),
        state: t.latest.state,
        exit_code: t.latest.exit_code,
        reason: t.latest.reason.clone(),
        launched_at_ms: t.launched_at.map_or(0, |at| clock.wall(at)),
        reclaim_at_ms: None,
        cpu_seconds: t.usage.map(|u| u.cpu_seconds),
        memory_bytes: t.usage.map(|u| u.memory_bytes),
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn master_times_turn_into_wall_clock_times() {
        let clock = WallClock {
            wall_ms: 1_000_000,
            master_now: Millis(500),
        };
        assert_eq!(clock.wall(Millis(400)), 999_900);
        assert_eq!(clock.wall(Millis(700)), 1_000_200);
    }
}
