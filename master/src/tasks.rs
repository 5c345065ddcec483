//! The task registry: live tasks with their resources, and a bounded memory of ended ones
//! so that late or repeated status updates are recognized and never free resources twice.

use std::collections::{BTreeMap, HashMap, VecDeque};

use litemap::LiteMap;
use proto::thin_store::ThinStore;
use proto::{
    AgentId, DisconnectPolicy, FrameworkId, Resources, StatusBody, TaskId, TaskState, TaskStatus,
};
use serde::Serialize;

use crate::time::Millis;

/// A task the master launched (or learned of) and has not seen end.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskRecord {
    pub task_id: TaskId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub name: Box<str>,
    pub resources: Resources,
    pub state: TaskState,
    /// The latest status from the agent, if any (the whole of it: [`TaskRecord::latest_status`]).
    pub latest: Option<StatusBody>,
    /// Launch order across the cluster: reclaim takes the newest (highest) first.
    pub launch_seq: u64,
    pub launched_at: Millis,
    /// Set when the task was chosen for reclaim: when it will be (or was) killed.
    pub reclaim_at: Option<Millis>,
    /// Declared lost while its agent was away, and found running when the agent came
    /// back: it is being killed. Its framework was already told `lost`, which stays its
    /// state; its resources stay used until the agent reports it ended.
    pub doomed: bool,
    /// Its framework or an operator asked for its kill: asked again should its agent
    /// come back from a restart still running it (the kill died with the agent's process).
    pub kill_requested: bool,
    /// What happens to it while its agent is lost (`TaskSpec::disconnect`); `None` for a
    /// task this master adopted from an advert (adverts do not carry it).
    pub disconnect: Option<Box<DisconnectPolicy>>,
}

/// Task ids in one sorted vector: an agent's tasks are a few, and a B-tree's first node
/// alone was hundreds of bytes per agent at fleet scale.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskIdSet(LiteMap<TaskId, (), ThinStore<TaskId, ()>>);

impl TaskIdSet {
    /// False when it held `task_id` already.
    pub fn insert(&mut self, task_id: TaskId) -> bool {
        self.0.try_insert(task_id, ()).is_none()
    }

    /// False when it did not hold `task_id`.
    pub fn remove(&mut self, task_id: &TaskId) -> bool {
        self.0.remove(task_id).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = &TaskId> {
        self.0.keys()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TaskRecord {
    /// The latest status from the agent, whole; `None` before the first.
    pub fn latest_status(&self) -> Option<TaskStatus> {
        let latest = self.latest.as_ref()?;
        Some(latest.with_ids(&self.task_id, &self.framework_id, &self.agent_id))
    }
}

/// Where an ended task ran, remembered to route late acknowledgements, and what the
/// operator's listing shows of it.
#[derive(Clone, Debug, PartialEq)]
pub struct EndedTask {
    /// The end its framework was told; its framework and agent ids are the task's.
    pub latest: TaskStatus,
    /// Empty for a task this master never saw launched (it learned of it ended).
    pub name: String,
    pub resources: Resources,
    /// `None` for a task this master never saw launched.
    pub launched_at: Option<Millis>,
    pub usage: Option<TaskUsage>,
}

impl EndedTask {
    pub fn framework_id(&self) -> &FrameworkId {
        &self.latest.framework_id
    }

    pub fn agent_id(&self) -> &AgentId {
        &self.latest.agent_id
    }
}

/// What a task used at its agent's latest report.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TaskUsage {
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
}

#[derive(Clone, Debug, Default)]
pub struct TaskRegistry {
    /// Boxed: a B-tree node holds eleven values and is often half full, and a record is
    /// a few hundred bytes (a large fleet holds one per running task).
    live: BTreeMap<TaskId, Box<TaskRecord>>,
    ended: HashMap<TaskId, EndedTask>,
    ended_order: VecDeque<TaskId>,
    /// The latest usage report of each live task.
    usage: HashMap<TaskId, TaskUsage>,
}

impl TaskRegistry {
    pub fn live(&self) -> impl Iterator<Item = &TaskRecord> {
        self.live.values().map(|r| &**r)
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    pub fn get(&self, id: &TaskId) -> Option<&TaskRecord> {
        self.live.get(id).map(|r| &**r)
    }

    pub fn get_mut(&mut self, id: &TaskId) -> Option<&mut TaskRecord> {
        self.live.get_mut(id).map(|r| &mut **r)
    }

    pub fn ended(&self, id: &TaskId) -> Option<&EndedTask> {
        self.ended.get(id)
    }

    /// The framework and the agent of a live or remembered ended task.
    pub fn owner(&self, id: &TaskId) -> Option<(&FrameworkId, &AgentId)> {
        match self.live.get(id) {
            Some(t) => Some((&t.framework_id, &t.agent_id)),
            None => self.ended.get(id).map(|e| (e.framework_id(), e.agent_id())),
        }
    }

    /// Ended tasks, the most recently ended first.
    pub fn ended_newest_first(&self) -> impl Iterator<Item = (&TaskId, &EndedTask)> {
        self.ended_order
            .iter()
            .rev()
            .filter_map(|id| self.ended.get(id).map(|e| (id, e)))
    }

    /// The latest usage its agent reported of a live task.
    pub fn usage(&self, id: &TaskId) -> Option<TaskUsage> {
        self.usage.get(id).copied()
    }

    /// Keeps a live task's usage; a report for a task not live is dropped.
    pub fn set_usage(&mut self, id: &TaskId, usage: TaskUsage) {
        if self.live.contains_key(id) {
            self.usage.insert(id.clone(), usage);
        }
    }

    /// True when the id is live or remembered as ended: launching it again is refused.
    pub fn is_known(&self, id: &TaskId) -> bool {
        self.live.contains_key(id) || self.ended.contains_key(id)
    }

    /// Brings back a task remembered as ended (declared lost) because its agent still
    /// runs it; it stays live, and `doomed`, until the agent reports its end.
    pub fn revive_doomed(&mut self, mut record: TaskRecord) {
        record.doomed = true;
        self.revive(record);
    }

    /// Brings back a task remembered as ended (`unreachable`, or declared lost) because
    /// its agent still runs it.
    pub fn revive(&mut self, record: TaskRecord) {
        self.ended.remove(&record.task_id);
        self.ended_order.retain(|id| id != &record.task_id);
        self.live.insert(record.task_id.clone(), Box::new(record));
    }

    /// Replaces the status an ended task's framework was last told (an `unreachable`
    /// task's `lost`, or the end it had while its agent was away).
    pub fn retell_ended(&mut self, id: &TaskId, latest: TaskStatus) {
        if let Some(ended) = self.ended.get_mut(id) {
            ended.latest = latest;
        }
    }

    /// Remembers a task that ended before this master heard of it (listed by an agent
    /// with a terminal status not yet acknowledged), so that the acknowledgement routes.
    /// `name` and `resources` are what its agent's advert lists (empty when the status
    /// came first: [`TaskRegistry::describe_ended`] fills them in later).
    pub fn remember_ended(
        &mut self,
        latest: TaskStatus,
        name: String,
        resources: Resources,
        ended_kept_max: usize,
    ) {
        if self.is_known(&latest.task_id) {
            return;
        }
        let id = latest.task_id.clone();
        let ended = EndedTask {
            latest,
            name,
            resources,
            launched_at: None,
            usage: None,
        };
        self.ended.insert(id.clone(), ended);
        self.ended_order.push_back(id);
        self.forget_oldest(ended_kept_max);
    }

    /// Gives a remembered ended task that lacks them the name and resources its agent
    /// lists.
    pub fn describe_ended(&mut self, id: &TaskId, name: &str, resources: &Resources) {
        if let Some(ended) = self.ended.get_mut(id)
            && ended.name.is_empty()
            && ended.resources.is_empty()
        {
            name.clone_into(&mut ended.name);
            ended.resources.clone_from(resources);
        }
    }

    pub fn insert(&mut self, record: TaskRecord) {
        debug_assert!(
            !self.is_known(&record.task_id),
            "task {} registered twice",
            record.task_id
        );
        self.live.insert(record.task_id.clone(), Box::new(record));
    }

    /// Moves a live task to the ended memory, which keeps at most `ended_kept_max`
    /// tasks, and at least this one (the oldest are forgotten first). Returns the ended
    /// task, whose resources the caller frees, and when it was to be reclaimed: this is
    /// the only way out of `live`, so they are freed exactly once.
    pub fn end(
        &mut self,
        id: &TaskId,
        latest: TaskStatus,
        ended_kept_max: usize,
    ) -> Option<(&EndedTask, Option<Millis>)> {
        let record = self.live.remove(id)?;
        let latest = TaskStatus {
            framework_id: record.framework_id,
            agent_id: record.agent_id,
            ..latest
        };
        let ended = EndedTask {
            latest,
            name: record.name.into_string(),
            resources: record.resources,
            launched_at: Some(record.launched_at),
            usage: self.usage.remove(id),
        };
        self.forget_oldest(ended_kept_max.saturating_sub(1));
        self.ended_order.push_back(id.clone());
        let ended = self.ended.entry(id.clone()).insert_entry(ended).into_mut();
        Some((ended, record.reclaim_at))
    }

    fn forget_oldest(&mut self, ended_kept_max: usize) {
        while self.ended_order.len() > ended_kept_max {
            if let Some(old) = self.ended_order.pop_front() {
                self.ended.remove(&old);
            }
        }
    }
}
