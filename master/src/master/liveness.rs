//! Liveliness and launch outcomes: agents' and frameworks' tokens and the clocks they
//! start, events held for a framework until its token comes, and launches an agent
//! refused or did not answer.
//!
//! - An agent whose token goes, or that adverts without one, is lost
//!   `agent_lost_timeout_ms` later unless the token comes (back) first.
//! - A framework's events wait for its token. If the token has not come
//!   `framework_token_wait_ms` after the framework subscribed, the events held go out
//!   anyway (it may listen without a token) and it counts as disconnected. A token that
//!   goes disconnects the framework at once. At most `events_held_per_framework_max`
//!   events are held per framework; beyond it the oldest are dropped and counted.
//! - A launch the agent refused becomes a `failed` update, one it did not answer a `lost`
//!   update, and the agent unreachable; the master mints those updates' uuids.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::deadlines::Deadlines;

use proto::{
    AGENT_SHUTTING_DOWN, AGENT_STOPPED, AgentAdvert, AgentId, Event, FrameworkId, StatusUuid,
    TaskId, TaskState, TaskStatus,
};

use super::{Action, Master};
use crate::time::Millis;

/// What became of a launch the master asked an agent for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LaunchOutcome {
    /// The agent took it; its status updates follow.
    Taken,
    /// The agent answered with an error.
    Refused { message: String },
    /// The agent did not answer in time (it may be cut off).
    Unanswered { message: String },
}

/// The liveliness books; see the module documentation.
#[derive(Clone, Debug, Default)]
pub(super) struct Liveness {
    /// Agents whose token is present.
    agents_alive: BTreeSet<AgentId>,
    /// Agents without a token, and when they are lost.
    agents_lost_at: Deadlines<AgentId>,
    /// Frameworks whose events go out at once: the token is present, or its wait ran out.
    frameworks_listening: BTreeSet<FrameworkId>,
    /// Frameworks subscribed whose token has not come yet, and when the wait ends.
    frameworks_awaited: Deadlines<FrameworkId>,
    /// Events held for frameworks not listening, oldest first.
    held: BTreeMap<FrameworkId, VecDeque<Event>>,
    events_dropped: u64,
    agents_lost: u64,
}

impl Liveness {
    pub(super) fn framework_listening(&self, id: &FrameworkId) -> bool {
        self.frameworks_listening.contains(id)
    }

    pub(super) fn next_deadline(&self) -> Option<Millis> {
        match (self.agents_lost_at.next(), self.frameworks_awaited.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Master {
    /// True while the agent's token is away and its lost clock runs.
    pub(crate) fn agent_token_missing(&self, agent_id: &AgentId) -> bool {
        self.liveness.agents_lost_at.contains(agent_id)
    }

    /// An agent's liveliness token appeared (`present`) or went. Present stops the agent's
    /// lost clock; gone starts it, and the agent is lost when it runs out.
    pub fn handle_agent_token(&mut self, now: Millis, agent_id: &AgentId, present: bool) {
        self.advance(now);
        if present {
            self.liveness.agents_alive.insert(agent_id.clone());
            self.liveness.agents_lost_at.remove(agent_id);
            return;
        }
        self.liveness.agents_alive.remove(agent_id);
        let Some(record) = self.agents.get_mut(agent_id) else {
            return; // Left already, or never advertised: an advert starts the clock.
        };
        record.token_lapsed = true;
        let timeout_ms = self.config.agent_lost_timeout_ms;
        tracing::info!(%agent_id, timeout_ms, "agent token gone");
        self.liveness
            .agents_lost_at
            .set(agent_id.clone(), now.plus_ms(timeout_ms));
    }

    /// An advert of a newer incarnation than the known one while the known process's
    /// token has stayed: not a restart (whose old token goes first) but a second process
    /// with the same id, which must not take the agent's place in the books.
    pub(super) fn is_another_process(&self, advert: &AgentAdvert) -> bool {
        self.agents.get(&advert.agent_id).is_some_and(|r| {
            advert.incarnation > r.incarnation
                && !r.token_lapsed
                && self.liveness.agents_alive.contains(&advert.agent_id)
        })
    }

    /// An advert from an agent without a token starts its lost clock; the token normally
    /// comes first, and coming later it stops the clock.
    pub(super) fn advert_liveness(&mut self, agent_id: &AgentId) {
        if !self.liveness.agents_alive.contains(agent_id) {
            let at = self.now.plus_ms(self.config.agent_lost_timeout_ms);
            self.liveness
                .agents_lost_at
                .set_if_absent(agent_id.clone(), at);
        }
    }

    /// A framework's liveliness token appeared (`present`: its held events go out) or went
    /// (it is disconnected, [`Master::handle_framework_disconnected`]).
    pub fn handle_framework_token(
        &mut self,
        now: Millis,
        framework_id: &FrameworkId,
        present: bool,
    ) {
        self.advance(now);
        if present {
            self.liveness.frameworks_awaited.remove(framework_id);
            self.liveness
                .frameworks_listening
                .insert(framework_id.clone());
            self.release_held(framework_id);
        } else {
            self.liveness.frameworks_listening.remove(framework_id);
            tracing::info!(%framework_id, "framework token gone");
            self.disconnect(framework_id);
        }
        self.debug_check();
    }

    /// A framework just subscribed: its events wait for its token, for a while.
    pub(super) fn await_token(&mut self, framework_id: &FrameworkId) {
        if !self.liveness.framework_listening(framework_id) {
            let at = self.now.plus_ms(self.config.framework_token_wait_ms);
            self.liveness
                .frameworks_awaited
                .set(framework_id.clone(), at);
        }
    }

    pub(super) fn hold_event(&mut self, framework_id: &FrameworkId, event: Event) {
        let max = self.config.events_held_per_framework_max;
        let held = self.liveness.held.entry(framework_id.clone()).or_default();
        held.push_back(event);
        while held.len() > max {
            held.pop_front();
            self.liveness.events_dropped += 1;
            tracing::warn!(%framework_id, max, "too many events held for a framework without a token; dropped the oldest");
        }
    }

    fn release_held(&mut self, framework_id: &FrameworkId) {
        for event in self.liveness.held.remove(framework_id).unwrap_or_default() {
            self.actions.push_back(Action::SendEvent {
                framework_id: framework_id.clone(),
                event,
            });
        }
    }

    /// A framework forgotten for good: nothing is held or awaited for it any more.
    pub(super) fn forget_liveness(&mut self, framework_id: &FrameworkId) {
        self.liveness.held.remove(framework_id);
        self.liveness.frameworks_awaited.remove(framework_id);
        self.liveness.frameworks_listening.remove(framework_id);
    }

    /// Agents whose lost clock ran out are lost; frameworks whose token did not come get
    /// their events and count as disconnected.
    pub(super) fn liveness_due(&mut self, now: Millis) {
        for agent_id in self.liveness.agents_lost_at.take_due(now) {
            self.lose_agent(&agent_id, super::agents::AGENT_LOST);
        }
        for framework_id in self.liveness.frameworks_awaited.take_due(now) {
            tracing::warn!(%framework_id, "framework subscribed but shows no liveliness token; treating it as disconnected");
            // Its held events go out now: it may still listen without a token.
            self.liveness
                .frameworks_listening
                .insert(framework_id.clone());
            self.release_held(&framework_id);
            self.disconnect(&framework_id);
        }
    }

    /// Clears the agent's lost clock and counts a loss; called as an agent is lost.
    pub(super) fn note_agent_lost(&mut self, agent_id: &AgentId) {
        self.liveness.agents_lost_at.remove(agent_id);
        self.liveness.agents_lost += 1;
        tracing::warn!(%agent_id, "agent lost");
    }

    /// What became of a launch: a refusal fails the task, no answer loses it and marks the
    /// agent unreachable ([`Master::handle_agent_unreachable`]). A refusal because the
    /// agent shuts down ([`AGENT_SHUTTING_DOWN`]) loses it as [`AGENT_STOPPED`] and the
    /// agent is offered nothing more. The status update is the
    /// master's own, with a uuid it mints, and is processed like one from the agent.
    pub fn handle_launch_outcome(
        &mut self,
        now: Millis,
        agent_id: &AgentId,
        task_id: &TaskId,
        outcome: LaunchOutcome,
    ) {
        self.advance(now);
        let (state, reason) = match outcome {
            LaunchOutcome::Taken => return,
            LaunchOutcome::Refused { message } if message.ends_with(AGENT_SHUTTING_DOWN) => {
                self.mark_stopping(agent_id);
                (TaskState::Lost, AGENT_STOPPED.to_owned())
            }
            LaunchOutcome::Refused { message } => (
                TaskState::Failed,
                format!("agent refused the launch: {message}"),
            ),
            LaunchOutcome::Unanswered { message } => (
                TaskState::Lost,
                format!("agent did not take the launch: {message}"),
            ),
        };
        let framework_id = match self.tasks.owner(task_id) {
            Some((framework_id, _)) => framework_id.clone(),
            None => {
                tracing::debug!(%task_id, %agent_id, "launch outcome for a task the master does not know");
                return;
            }
        };
        let status = TaskStatus {
            task_id: task_id.clone(),
            framework_id,
            agent_id: agent_id.clone(),
            state,
            exit_code: None,
            reason,
            uuid: self.mint_status_uuid(),
            timestamp_ms: 0,
        };
        self.take_status(status);
        // After the status: a status from the agent counts as hearing from it.
        if state == TaskState::Lost {
            self.mark_unreachable(agent_id);
        }
        self.debug_check();
    }

    /// The update the master made when the agent refused or did not answer the task's
    /// launch, while it is the task's latest (for the operator's log).
    pub fn launch_failure(&self, task_id: &TaskId) -> Option<TaskStatus> {
        let latest = match (self.tasks.get(task_id), self.tasks.ended(task_id)) {
            (Some(t), _) => t.latest_status()?,
            (None, Some(e)) => e.latest.clone(),
            (None, None) => return None,
        };
        let (made_by, counter) = (latest.uuid.0 >> 64, latest.uuid.0 as u64);
        let ours = made_by == u128::from(self.config.incarnation)
            && (1..=self.statuses_made).contains(&counter);
        ours.then_some(latest)
    }

    /// `(incarnation << 64) | counter`: unique across this master's life and, by the
    /// incarnation, across restarts.
    fn mint_status_uuid(&mut self) -> StatusUuid {
        self.statuses_made += 1;
        StatusUuid((u128::from(self.config.incarnation) << 64) | u128::from(self.statuses_made))
    }

    /// Events dropped so far because a framework without a token had too many held.
    pub fn events_dropped(&self) -> u64 {
        self.liveness.events_dropped
    }

    /// Agents declared lost so far.
    pub fn agents_lost(&self) -> u64 {
        self.liveness.agents_lost
    }
}
