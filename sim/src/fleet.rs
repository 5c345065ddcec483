//! The simulated devices: a real [`AgentNode`] per scenario agent, with tasks that "run"
//! for their framework's `duration_ms` of virtual time and a link to the master that a
//! fault can cut.

use std::collections::{BTreeMap, BTreeSet};

use agent_core::{AgentAction, AgentNode, AgentNodeConfig, TaskEnd};
use proto::{AgentAdvert, AgentCommand, AgentId, AgentReply, Millis, Resources, TaskId, TaskState};

/// Agents re-advertise this rarely in a simulation: a periodic advert repeats what the
/// master knows, and re-registration after a master restart is driven by
/// `handle_master_appeared`. Far enough to stay out of any run, near enough not to overflow.
const SIM_ADVERT_PERIOD_MS: u64 = 1 << 40;

/// The agent daemon's defaults: a status is sent again after 2 s, then backs off to 30 s.
const SIM_STATUS_RETRY_MS: u64 = 2_000;
const SIM_STATUS_RETRY_MAX_MS: u64 = 30_000;
/// Tasks one simulated agent holds at most: unbounded in effect, as a scenario agent is
/// limited by its resources alone.
const SIM_AGENT_TASKS_MAX: usize = u32::MAX as usize;

/// One simulated device.
pub(crate) struct SimAgent {
    pub id: AgentId,
    pub node: AgentNode,
    /// Its token is up and messages pass between it and the master.
    pub connected: bool,
    pub total: Resources,
    /// What its running tasks use: never more than `total` (an invariant of the run).
    pub used: Resources,
    /// Its running tasks (what each uses is what its node holds it launched with). A few
    /// per agent: a vector, not a B-tree node each.
    pub running: Vec<TaskId>,
}

/// Every simulated agent and the time each next needs to run.
#[derive(Default)]
pub(crate) struct Fleet {
    pub agents: Vec<SimAgent>,
    index: BTreeMap<AgentId, usize>,
    /// `(when, agent)` for each agent's `poll_timeout`.
    timers: BTreeSet<(Millis, usize)>,
    timer_of: Vec<Option<Millis>>,
}

impl Fleet {
    /// A fleet for `agents` agents: the vector of agents, hundreds of bytes each, is made
    /// once at its size rather than doubled while they join.
    pub fn with_capacity(agents: usize) -> Fleet {
        Fleet {
            agents: Vec::with_capacity(agents),
            timer_of: Vec::with_capacity(agents),
            ..Fleet::default()
        }
    }

    pub fn add(&mut self, advert: AgentAdvert) -> usize {
        let config = AgentNodeConfig {
            advert: advert.clone(),
            advert_period_ms: SIM_ADVERT_PERIOD_MS,
            status_retry_ms: SIM_STATUS_RETRY_MS,
            status_retry_max_ms: SIM_STATUS_RETRY_MAX_MS,
            tasks_max: SIM_AGENT_TASKS_MAX,
            wall_origin_ms: 0,
        };
        let i = self.agents.len();
        self.index.insert(advert.agent_id.clone(), i);
        self.agents.push(SimAgent {
            id: advert.agent_id.clone(),
            node: AgentNode::new(config),
            connected: true,
            total: advert.total,
            used: Resources::new(),
            running: Vec::new(),
        });
        self.timer_of.push(None);
        i
    }

    pub fn find(&self, id: &AgentId) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The earliest agent timer.
    pub fn next_timer(&self) -> Option<Millis> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Agents whose timer is due at `now`.
    pub fn due(&self, now: Millis) -> Vec<usize> {
        self.timers
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, i)| *i)
            .collect()
    }

    /// Files agent `i`'s next timer after it was given an input.
    pub fn rearm(&mut self, i: usize) {
        if let Some(old) = self.timer_of[i].take() {
            self.timers.remove(&(old, i));
        }
        if let Some(at) = self.agents[i].node.poll_timeout() {
            self.timers.insert((at, i));
            self.timer_of[i] = Some(at);
        }
    }

    /// Carries a master command to agent `i`; `None` when the link is cut.
    pub fn command(&mut self, i: usize, now: Millis, command: AgentCommand) -> Option<AgentReply> {
        let agent = &mut self.agents[i];
        if !agent.connected {
            return None;
        }
        Some(agent.node.handle_command(now, command))
    }

    /// A task starts on agent `i`: it is running at once. Returns an over-commit, if any.
    pub fn start(
        &mut self,
        i: usize,
        now: Millis,
        task_id: &TaskId,
        used: &Resources,
    ) -> Option<String> {
        let agent = &mut self.agents[i];
        agent.used = agent.used.plus(used);
        agent.running.push(task_id.clone());
        agent.node.handle_task_running(now, task_id);
        (!agent.total.contains(&agent.used)).then(|| {
            format!(
                "agent {} over-committed at {} ms: its tasks use {}, it has {}",
                agent.id, now.0, agent.used, agent.total
            )
        })
    }

    /// A task of agent `i` ends (its duration ran out, or it was killed). False when it
    /// was not running.
    pub fn end(&mut self, i: usize, now: Millis, task_id: &TaskId, state: TaskState) -> bool {
        let agent = &mut self.agents[i];
        let Some(at) = agent.running.iter().position(|t| t == task_id) else {
            return false;
        };
        agent.running.swap_remove(at);
        // The node holds a task until its end is acknowledged, so it holds this one.
        if let Some(used) = agent.node.task_resources(task_id) {
            agent.used = agent.used.checked_sub(used).unwrap_or_default();
        }
        let reason = match state {
            TaskState::Killed => "killed".to_owned(),
            _ => String::new(),
        };
        let end = TaskEnd {
            state,
            exit_code: (state == TaskState::Finished).then_some(0),
            reason,
        };
        agent.node.handle_task_ended(now, task_id, end);
        true
    }

    pub fn poll_action(&mut self, i: usize) -> Option<AgentAction> {
        self.agents[i].node.poll_action()
    }
}
