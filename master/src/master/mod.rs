//! The master core: one sans-IO state machine owning the agents' books, the offer book,
//! the task registry, the allocator and reclaim.

mod accept;
mod agents;
mod books;
mod calls;
mod census;
mod disconnect;
mod liveness;
mod operator;
mod reclaiming;
mod recovery;
mod timers;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proto::{Ack, AgentId, Event, FrameworkId, FrameworkInfo, MasterCensus, TaskId, TaskSpec};

use crate::allocator::{Allocator, DrfAllocator, Snapshot};
use crate::config::MasterConfig;
use crate::deadlines::Deadlines;
use crate::offer_book::OfferBook;
use crate::resource_book::ResourceBook;
use crate::rng::SplitMix64;
use crate::tasks::{TaskIdSet, TaskRegistry};
use crate::time::Millis;
use crate::view::LostAgents;

pub use operator::OperatorKillError;

pub use books::BrokenInvariant;
pub use census::{CENSUS_QUIET_MS, MASTER_CENSUS_REPEAT_MS};
pub use liveness::LaunchOutcome;
use liveness::Liveness;

/// Something the adapter must do. Actions come out in the order they must be done.
#[must_use]
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Publish `event` on `frameworks/<framework_id>/events`.
    SendEvent {
        framework_id: FrameworkId,
        event: Event,
    },
    /// `AgentCommand::Launch` to the agent.
    LaunchTask {
        agent_id: AgentId,
        framework_id: FrameworkId,
        task: TaskSpec,
    },
    /// `AgentCommand::Kill` to the agent.
    KillTask {
        agent_id: AgentId,
        task_id: TaskId,
        grace_ms: u64,
    },
    /// `AgentCommand::Acknowledge` to the agent: the framework (or the master, for a
    /// framework that is gone) acknowledged these status updates of the agent's tasks
    /// (at most [`proto::ACKS_PER_CALL_MAX`]).
    AckStatus { agent_id: AgentId, acks: Vec<Ack> },
    /// `AgentCommand::Stop` to the agent's id: a process of an earlier `incarnation`
    /// than the one registered still advertises under it.
    StopAgent { agent_id: AgentId, incarnation: u64 },
    /// Tell the framework that its task will be killed at `kill_at` to give resources
    /// back to a framework below its fair share (`proto` has no event for it yet; the
    /// adapter may send it as an `Event::Error` message).
    ReclaimNotice {
        framework_id: FrameworkId,
        task_id: TaskId,
        agent_id: AgentId,
        kill_at: Millis,
    },
    /// Publish the census on `master/census`, for the agents to keep (`census.rs`).
    AnnounceCensus(MasterCensus),
}

/// What the master knows of one agent besides its resources (which are in the
/// [`ResourceBook`]).
#[derive(Clone, Debug)]
pub(crate) struct AgentRecord {
    pub hostname: String,
    pub incarnation: u64,
    pub seq: u64,
    pub tasks: TaskIdSet,
    /// Its liveliness token went since `incarnation` was first heard: a process with a
    /// new incarnation may take the id (a restart). While it holds, one may not.
    pub token_lapsed: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct FrameworkRecord {
    pub info: FrameworkInfo,
    pub connected: bool,
    pub suppressed: bool,
    /// Torn down: gets no offers and no events; removed once its last task ends.
    pub torn_down: bool,
    pub tasks: BTreeSet<TaskId>,
    /// Since when it has wanted offers while below its fair share.
    pub below_fair_since: Option<Millis>,
    /// Known only from agents' adverts after a master restart: it has not subscribed to
    /// this master, so its role and weight are unknown and it has no allocator slot.
    pub recovered: bool,
}

/// The built-in DRF allocator is seeded with `seed ^ BUILTIN_DRF_SEED_MIX`, so that its
/// agent order differs from the master's own generator; a plug-in allocator that wants
/// the built-in's visiting order seeds itself the same way.
pub const BUILTIN_DRF_SEED_MIX: u64 = 0xa11c_a7e5;

/// The wasmos master as a sans-IO state machine.
///
/// Nothing here does I/O or reads a clock: the caller (the zenoh adapter, `wasmos sim`, a
/// test) passes every input with the current time and carries out the [`Action`]s.
///
/// Call order:
/// 1. `Master::new(config, seed)` (or [`Master::with_allocator`]).
/// 2. Feed each input as it arrives with `handle_*(now, ...)`: agents' and frameworks'
///    liveliness tokens appearing and going, agent adverts, framework calls (whose reply
///    goes back to the caller at once), task status updates, and what became of each
///    launch ([`Master::handle_launch_outcome`]).
/// 3. After every input, drain [`Master::poll_action`] until it returns `None`, and carry
///    the actions out in order.
/// 4. Ask [`Master::poll_timeout`] when the master next needs to run; when that time
///    comes (or at once, if it has passed) call [`Master::handle_timeout`], then drain the
///    actions again. Agent loss, the end of a framework's token wait, allocation, offer
///    expiry, filter expiry, failover and reclaim all happen there.
///
/// `now` is milliseconds on a monotonic clock and must never decrease between calls.
/// Randomness (the order agents are visited in) comes from `seed`, so a run is
/// reproducible.
pub struct Master {
    config: MasterConfig,
    allocator: Box<dyn Allocator + Send>,
    /// Agents' resources and frameworks' allocations; the allocator's snapshot.
    pub(crate) book: ResourceBook,
    pub(crate) agents: BTreeMap<AgentId, AgentRecord>,
    pub(crate) frameworks: BTreeMap<FrameworkId, FrameworkRecord>,
    /// Frameworks torn down, never admitted again under the same id.
    removed_frameworks: BTreeSet<FrameworkId>,
    pub(crate) offers: OfferBook,
    pub(crate) tasks: TaskRegistry,
    /// Liveliness tokens, the clocks they start, and events held for frameworks.
    liveness: Liveness,
    /// Disconnected frameworks, torn down at their deadline unless they subscribe again.
    failovers: Deadlines<FrameworkId>,
    actions: VecDeque<Action>,
    rng: SplitMix64,
    now: Millis,
    frameworks_created: u64,
    subscriptions: u64,
    offers_made: u64,
    launches: u64,
    /// Status updates the master made itself (launches refused or unanswered): the low
    /// half of their uuids.
    statuses_made: u64,
    /// When the next allocation runs, and over which agents.
    allocation_at: Option<Millis>,
    allocation_all: bool,
    allocation_agents: BTreeSet<AgentId>,
    /// Agents that did not take a launch: offered nothing until they are heard from again.
    unreachable: BTreeSet<AgentId>,
    /// Agents that refused a launch because they shut down: offered nothing until they
    /// leave, are lost, or come back as a new process.
    stopping: BTreeSet<AgentId>,
    /// Decline filter expiries: `(until, framework, agent)`.
    filter_expiry: BTreeSet<(Millis, FrameworkId, AgentId)>,
    /// Reclaimed tasks to kill: `(kill_at, task)`.
    reclaim_kills: BTreeSet<(Millis, TaskId)>,
    reclaim_check_at: Option<Millis>,
    /// Allocator decisions the master refused (a faulty policy); a counter for operators.
    decisions_refused: u64,
    /// Status updates dropped because their agent does not run the task.
    statuses_refused: u64,
    /// Set once the master sees it replaces an earlier one: no offers until then.
    offers_held_until: Option<Millis>,
    /// The hold has been and ended: later evidence (a late agent) does not start another.
    hold_ended: bool,
    /// Reconciliations asked while offers are held, answered when the hold ends (an
    /// answer then could call a task lost whose agent has not re-registered yet).
    deferred_reconciles: Vec<(FrameworkId, Vec<TaskId>)>,
    census: census::CensusBook,
    /// Tasks `unreachable` while their agent is lost, and their replacements.
    disconnected: disconnect::Disconnected,
    /// For the operator's listing only.
    pub(crate) lost_agents: LostAgents,
    /// The GPU rule was explained in the log already (once per master, not per agent).
    gpu_rule_logged: bool,
}

impl Master {
    /// A master using the built-in DRF allocator.
    pub fn new(config: MasterConfig, seed: u64) -> Master {
        let allocator = Box::new(DrfAllocator::new(seed ^ BUILTIN_DRF_SEED_MIX));
        Master::with_allocator(config, seed, allocator)
    }

    /// A master using `allocator` as its policy.
    pub fn with_allocator(
        config: MasterConfig,
        seed: u64,
        allocator: Box<dyn Allocator + Send>,
    ) -> Master {
        Master {
            book: ResourceBook::new(config.role_weights.clone()),
            config,
            allocator,
            agents: BTreeMap::new(),
            frameworks: BTreeMap::new(),
            removed_frameworks: BTreeSet::new(),
            offers: OfferBook::default(),
            tasks: TaskRegistry::default(),
            liveness: Liveness::default(),
            failovers: Deadlines::default(),
            actions: VecDeque::new(),
            rng: SplitMix64::new(seed),
            now: Millis::ZERO,
            frameworks_created: 0,
            subscriptions: 0,
            offers_made: 0,
            launches: 0,
            statuses_made: 0,
            allocation_at: None,
            allocation_all: false,
            allocation_agents: BTreeSet::new(),
            unreachable: BTreeSet::new(),
            stopping: BTreeSet::new(),
            filter_expiry: BTreeSet::new(),
            reclaim_kills: BTreeSet::new(),
            reclaim_check_at: None,
            decisions_refused: 0,
            statuses_refused: 0,
            offers_held_until: None,
            hold_ended: false,
            deferred_reconciles: Vec::new(),
            census: census::CensusBook::default(),
            disconnected: disconnect::Disconnected::default(),
            lost_agents: LostAgents::default(),
            gpu_rule_logged: false,
        }
    }

    pub fn config(&self) -> &MasterConfig {
        &self.config
    }

    /// The next action to carry out, oldest first.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The allocator's view of the cluster, as of now.
    pub fn snapshot(&self) -> &Snapshot {
        self.book.snapshot()
    }

    /// The books of agents' resources and frameworks' allocations.
    pub fn resource_book(&self) -> &ResourceBook {
        &self.book
    }

    /// True when the master counts the agent as part of the cluster.
    pub fn knows_agent(&self, agent_id: &AgentId) -> bool {
        self.agents.contains_key(agent_id)
    }

    /// Offers outstanding now.
    pub fn outstanding_offers(&self) -> usize {
        self.offers.len()
    }

    /// Allocator decisions refused so far because they broke a framework's preferences.
    pub fn decisions_refused(&self) -> u64 {
        self.decisions_refused
    }

    /// Records the time of an input; time never goes back.
    fn advance(&mut self, now: Millis) {
        debug_assert!(
            now >= self.now,
            "time went back from {:?} to {:?}",
            self.now,
            now
        );
        self.now = self.now.max(now);
    }

    /// Sends `event` to the framework, or holds it while the framework's liveliness token
    /// is not present (see `liveness.rs`).
    fn send(&mut self, framework_id: &FrameworkId, event: Event) {
        if self.liveness.framework_listening(framework_id) {
            self.actions.push_back(Action::SendEvent {
                framework_id: framework_id.clone(),
                event,
            });
        } else {
            self.hold_event(framework_id, event);
        }
    }

    /// Asks for an allocation over every agent within the batch window.
    fn want_allocation_all(&mut self) {
        self.allocation_all = true;
        self.schedule_allocation();
    }

    /// Asks for an allocation over `agent_id` within the batch window.
    fn want_allocation_of(&mut self, agent_id: &AgentId) {
        self.allocation_agents.insert(agent_id.clone());
        self.schedule_allocation();
    }

    fn schedule_allocation(&mut self) {
        let at = self.now.plus_ms(self.config.allocation_batch_ms);
        self.allocation_at = Some(self.allocation_at.map_or(at, |t| t.min(at)));
    }

    /// Debug builds check every invariant after each input while the cluster is small
    /// enough for that to stay cheap.
    fn debug_check(&self) {
        const DEBUG_CHECK_AGENTS_MAX: usize = 64;
        const DEBUG_CHECK_TASKS_MAX: usize = 256;
        let small = self.agents.len() <= DEBUG_CHECK_AGENTS_MAX
            && self.tasks.live_count() <= DEBUG_CHECK_TASKS_MAX;
        if cfg!(debug_assertions)
            && small
            && let Err(e) = self.check_invariants()
        {
            panic!("master invariant broken: {e}");
        }
    }
}
