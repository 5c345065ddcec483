//! The simulated frameworks: synthetic ones that launch one task of their shape per offer,
//! and ones answered by a scheduler module ([`SimScheduler`]).
//!
//! A synthetic framework subscribes with its task's shape as its minimum offer, so it is
//! offered only agents its task fits on. For each offer it launches exactly one task of its
//! shape when it has tasks left (with `fill`, as many as fit and it has left), declining
//! the rest with a 0-second filter; an offer its task does not fit (none comes while the
//! master keeps the minimum) it declines whole with a one-hour filter; with no tasks left
//! it declines and suppresses. It acknowledges every status update and relaunches nothing
//! on its own: a task that ends, or is lost, is not replaced.

use std::collections::BTreeMap;

use proto::{
    Call, Event, Filters, FrameworkId, Offer, Operation, Resources, TaskId, TaskKind, TaskLimits,
    TaskSpec, TaskState, TaskStatus, WasmTask,
};

/// Declining an offer whose resources cannot hold one task refuses that agent this long
/// (for offers no larger than this one: a filter applies to subsets only).
const SIM_NO_FIT_REFUSE_SECONDS: f64 = 3600.0;

/// Most tasks a `fill` framework launches on one offer: the master's default
/// `tasks_per_accept_max`, beyond which it refuses the `Accept`.
pub const SIM_FILL_TASKS_MAX: u64 = 1024;

/// A framework's scheduler in a simulation instead of the synthetic behaviour (a scenario
/// entry with `"scheduler"`): it gets every event the master sends its framework, in
/// virtual time, and answers with calls that the master handles as any framework's
/// (`Subscribe` excepted: the simulation subscribes it). Calls the master refuses are the
/// scheduler's mistakes, logged and skipped. It gets no ticks.
pub trait SimScheduler: Send {
    fn handle_event(&mut self, now_ms: u64, event: &Event) -> Vec<Call>;
}

/// A synthetic framework.
pub(crate) struct SynthFramework {
    pub name: String,
    pub task: Resources,
    /// Agent attributes it requires.
    pub constraints: Vec<proto::Constraint>,
    /// `None`: unlimited.
    pub left: Option<u64>,
    /// Launches as many tasks as fit on each offer, not one.
    pub fill: bool,
    pub launched: u64,
    pub suppressed: bool,
}

impl SynthFramework {
    pub fn has_tasks_left(&self) -> bool {
        self.left.is_none_or(|n| n > 0)
    }

    /// Its calls in answer to `offer`.
    pub fn answer(&mut self, offer: &Offer) -> Vec<Call> {
        let decline = |refuse_seconds| Call::Decline {
            offer_ids: vec![offer.offer_id.clone()],
            filters: Filters { refuse_seconds },
        };
        if !self.has_tasks_left() {
            let suppress = !std::mem::replace(&mut self.suppressed, true);
            let mut calls = vec![decline(0.0)];
            calls.extend(suppress.then_some(Call::Suppress));
            return calls;
        }
        let count = self.tasks_fitting(&offer.resources);
        if count == 0 {
            return vec![decline(SIM_NO_FIT_REFUSE_SECONDS)];
        }
        let tasks = (0..count).map(|_| self.next_task()).collect();
        let mut calls = vec![Call::Accept {
            offer_ids: vec![offer.offer_id.clone()],
            operations: vec![Operation::Launch { tasks }],
            filters: Filters {
                refuse_seconds: 0.0,
            },
        }];
        if !self.has_tasks_left() {
            self.suppressed = true;
            calls.push(Call::Suppress);
        }
        calls
    }
}

impl SynthFramework {
    /// How many of its tasks it launches on `resources`: one if it fits, or with `fill` as
    /// many as fit, within what it has left and [`SIM_FILL_TASKS_MAX`].
    fn tasks_fitting(&self, resources: &Resources) -> u64 {
        let most = match (self.fill, self.left) {
            (false, _) => 1,
            (true, left) => left.unwrap_or(u64::MAX).min(SIM_FILL_TASKS_MAX),
        };
        let mut free = resources.clone();
        let mut count = 0;
        while count < most {
            match free.checked_sub(&self.task) {
                Some(rest) => free = rest,
                None => break,
            }
            count += 1;
        }
        count
    }

    /// The id of its `n`th task (from 1).
    pub fn task_id(&self, n: u64) -> TaskId {
        TaskId::new(format!("{}-{n}", self.name))
    }

    /// Every task it launched whose end it has not been told of.
    pub fn not_ended(&self, told: &TaskEnds) -> Vec<TaskId> {
        (1..=self.launched)
            .map(|n| self.task_id(n))
            .filter(|t| !told.has_ended(t))
            .collect()
    }

    fn next_task(&mut self) -> TaskSpec {
        self.launched += 1;
        self.left = self.left.map(|n| n.saturating_sub(1));
        TaskSpec {
            task_id: self.task_id(self.launched),
            name: self.name.clone(),
            resources: self.task.clone(),
            kind: TaskKind::Wasm(WasmTask::default()),
            limits: TaskLimits::default(),
            disconnect: None,
            replaces: None,
        }
    }
}

/// A framework answered by a [`SimScheduler`].
pub(crate) struct ModuleFramework {
    pub name: String,
    pub scheduler: Box<dyn SimScheduler>,
    pub launched: u64,
    /// Suppressed, or answered its latest offers without launching: it asks for nothing
    /// more, so the run may end.
    pub quiet: bool,
}

impl ModuleFramework {
    /// The scheduler's calls for one event; tracks whether it went quiet.
    pub fn deliver(&mut self, now_ms: u64, event: &Event) -> Vec<Call> {
        let calls = self.scheduler.handle_event(now_ms, event);
        if matches!(event, Event::Offers { .. }) {
            self.quiet = !calls.iter().any(|c| matches!(c, Call::Accept { .. }));
        }
        for call in &calls {
            match call {
                Call::Suppress => self.quiet = true,
                Call::Revive => self.quiet = false,
                _ => {}
            }
        }
        calls
    }
}

/// What every framework was told of its tasks' ends: the first terminal state of each
/// task counts. One master telling a second, different end is a broken invariant. Across a
/// master restart it is a known limit of keeping no database: a master that restarts
/// while an agent is cut off forgets having declared it lost, so if the agent returns its
/// tasks are adopted and their later ends reach frameworks that were told `lost`.
#[derive(Default)]
pub(crate) struct TaskEnds {
    /// The first end told, and by which master incarnation.
    first: BTreeMap<TaskId, (TaskState, u64)>,
    counts: BTreeMap<(FrameworkId, TaskState), u64>,
}

impl TaskEnds {
    /// Records `status` as told to its framework by master `incarnation`; the error
    /// describes a contradiction.
    pub fn record(&mut self, status: &TaskStatus, incarnation: u64) -> Result<(), String> {
        if !status.state.is_terminal() {
            return Ok(());
        }
        match self.first.get(&status.task_id) {
            None => {
                self.first
                    .insert(status.task_id.clone(), (status.state, incarnation));
                *self
                    .counts
                    .entry((status.framework_id.clone(), status.state))
                    .or_default() += 1;
                Ok(())
            }
            Some((first, by)) if *first != status.state && *by == incarnation => Err(format!(
                "task {} of framework {}: told {} after {}",
                status.task_id,
                status.framework_id,
                status.state.as_str(),
                first.as_str()
            )),
            Some(_) => Ok(()),
        }
    }

    pub fn has_ended(&self, task_id: &TaskId) -> bool {
        self.first.contains_key(task_id)
    }

    pub fn count(&self, framework_id: &FrameworkId, state: TaskState) -> u64 {
        self.counts
            .get(&(framework_id.clone(), state))
            .copied()
            .unwrap_or(0)
    }
}
