//! At-least-once delivery under random commands, executor outcomes, acknowledgements,
//! master appearances, time and agent restarts: every task's terminal status is
//! published, is never replaced by another, and the task goes only once it is
//! acknowledged.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use agent_core::{AgentAction, AgentNode, Journal, TaskEnd};
use common::*;
use proptest::prelude::*;
use proto::{Millis, StatusUuid, TaskId, TaskState, TaskStatus};

const TASK_IDS: [&str; 4] = ["t0", "t1", "t2", "t3"];
const ENDS: [TaskState; 4] = [
    TaskState::Finished,
    TaskState::Failed,
    TaskState::Killed,
    TaskState::Lost,
];

#[derive(Clone, Debug)]
enum Op {
    Launch(usize),
    Running(usize),
    End(usize, usize),
    AckLatest(usize),
    AckStale(usize),
    Kill(usize),
    Advance(u64),
    MasterAppeared,
    /// The agent process dies and a new one (a new incarnation, as every process start
    /// has) recovers from the journal; `survivors` is a bit set of surviving executors.
    Restart {
        survivors: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let task = 0..TASK_IDS.len();
    prop_oneof![
        3 => task.clone().prop_map(Op::Launch),
        2 => task.clone().prop_map(Op::Running),
        3 => (task.clone(), 0..ENDS.len()).prop_map(|(t, e)| Op::End(t, e)),
        3 => task.clone().prop_map(Op::AckLatest),
        1 => task.clone().prop_map(Op::AckStale),
        1 => task.prop_map(Op::Kill),
        3 => (0..20_000u64).prop_map(Op::Advance),
        1 => Just(Op::MasterAppeared),
        1 => any::<u8>().prop_map(|survivors| Op::Restart { survivors }),
    ]
}

struct Harness {
    node: AgentNode,
    now: u64,
    incarnation: u64,
    /// The journal, every change applied.
    journal: Journal,
    /// Every status published, by uuid: one uuid, one status.
    by_uuid: BTreeMap<u128, TaskStatus>,
    /// Statuses published for each task since it was last forgotten.
    published: BTreeMap<TaskId, Vec<TaskStatus>>,
    /// The terminal status published for each task since it was last forgotten.
    terminal: BTreeMap<TaskId, TaskStatus>,
}

impl Harness {
    fn new() -> Harness {
        let mut harness = Harness {
            node: AgentNode::new(config(1)),
            now: 0,
            incarnation: 1,
            journal: Journal::default(),
            by_uuid: BTreeMap::new(),
            published: BTreeMap::new(),
            terminal: BTreeMap::new(),
        };
        harness.node.handle_timeout(Millis(0));
        harness.absorb();
        harness
    }

    /// Takes the node's actions, checking each published status against what came before.
    fn absorb(&mut self) {
        while let Some(action) = self.node.poll_action() {
            match action {
                AgentAction::PublishStatus(status) => self.published_status(status),
                AgentAction::Journal(change) => self.journal.apply(change),
                AgentAction::ForgetTask { task_id } => {
                    self.published.remove(&task_id);
                    self.terminal.remove(&task_id);
                }
                AgentAction::PublishAdvert(advert) => {
                    let held: Vec<_> = self.node.tasks().collect();
                    let listed: Vec<_> = advert.tasks.iter().map(|t| t.status.clone()).collect();
                    assert_eq!(listed, held, "the advert lists every held task");
                }
                AgentAction::StartTask { .. } | AgentAction::KillTask { .. } => {}
                AgentAction::Leave | AgentAction::TakenOver => {
                    panic!("left without being shut down")
                }
            }
        }
        assert!(self.node.tasks().count() <= TASKS_MAX);
    }

    fn published_status(&mut self, status: TaskStatus) {
        let same = self
            .by_uuid
            .entry(status.uuid.0)
            .or_insert_with(|| status.clone());
        assert_eq!(*same, status, "one uuid, one status");
        if let Some(terminal) = self.terminal.get(&status.task_id) {
            assert_eq!(*terminal, status, "a terminal status is never replaced");
        }
        if status.state.is_terminal() {
            self.terminal.insert(status.task_id.clone(), status.clone());
        }
        self.published
            .entry(status.task_id.clone())
            .or_default()
            .push(status);
    }

    fn apply(&mut self, op: Op) {
        let id = |k: usize| TaskId::new(TASK_IDS[k]);
        let now = Millis(self.now);
        match op {
            Op::Launch(k) => {
                launch(&mut self.node, self.now, TASK_IDS[k]);
            }
            Op::Running(k) => self.node.handle_task_running(now, &id(k)),
            Op::End(k, e) => self.end(&id(k), ENDS[e]),
            Op::AckLatest(k) => {
                if let Some(last) = self.published.get(&id(k)).and_then(|p| p.last()) {
                    let uuid = last.uuid;
                    ack(&mut self.node, self.now, TASK_IDS[k], uuid);
                }
            }
            Op::AckStale(k) => self.ack_stale(&id(k)),
            Op::Kill(k) => {
                kill(&mut self.node, self.now, TASK_IDS[k]);
            }
            Op::Advance(ms) => {
                self.now += ms;
                while let Some(at) = self.node.poll_timeout().filter(|at| at.0 <= self.now) {
                    self.node.handle_timeout(at);
                    self.absorb();
                }
            }
            Op::MasterAppeared => self.node.handle_master_appeared(now),
            Op::Restart { survivors } => self.restart(survivors),
        }
        self.absorb();
    }

    fn end(&mut self, task_id: &TaskId, state: TaskState) {
        let live = self
            .node
            .task(task_id)
            .is_some_and(|s| !s.state.is_terminal());
        let end = TaskEnd {
            state,
            exit_code: None,
            reason: "ended".to_owned(),
        };
        self.node.handle_task_ended(Millis(self.now), task_id, end);
        self.absorb();
        if live {
            let terminal = self.terminal.get(task_id).expect("published at once");
            assert_eq!(terminal.state, state);
        }
    }

    /// Acknowledges a superseded status of the task: nothing may change.
    fn ack_stale(&mut self, task_id: &TaskId) {
        let before: Vec<_> = self.node.tasks().collect();
        let latest = self.node.task(task_id).map(|s| s.uuid);
        let stale = self
            .published
            .get(task_id)
            .and_then(|p| p.iter().find(|s| Some(s.uuid) != latest))
            .map_or(StatusUuid(u128::MAX), |s| s.uuid);
        ack(&mut self.node, self.now, task_id.as_str(), stale);
        assert!(
            self.node.poll_action().is_none(),
            "a stale ack does nothing"
        );
        assert_eq!(self.node.tasks().collect::<Vec<_>>(), before);
    }

    fn restart(&mut self, survivors: u8) {
        self.incarnation += 1;
        let survivors: BTreeSet<TaskId> = (0..TASK_IDS.len())
            .filter(|k| survivors & (1 << k) != 0)
            .map(|k| TaskId::new(TASK_IDS[k]))
            .collect();
        self.node = AgentNode::new(config(self.incarnation));
        self.node.recover(
            Millis(self.now),
            self.journal.entries().cloned().collect(),
            &survivors,
        );
    }

    /// Time runs on with no acknowledgement: every held terminal status is sent again;
    /// then everything is acknowledged and every ended task goes.
    fn settle(&mut self) {
        let held_terminal: Vec<TaskStatus> = self
            .node
            .tasks()
            .filter(|s| s.state.is_terminal())
            .collect();
        let sent_before: BTreeMap<TaskId, usize> = self
            .published
            .iter()
            .map(|(id, p)| (id.clone(), p.len()))
            .collect();
        self.apply(Op::Advance(RETRY_MAX_MS * 4));
        for status in &held_terminal {
            let sends = &self.published[&status.task_id];
            assert!(sends.len() > sent_before.get(&status.task_id).copied().unwrap_or(0));
            assert_eq!(sends.last(), Some(status));
            assert_eq!(self.terminal.get(&status.task_id), Some(status));
        }
        for k in 0..TASK_IDS.len() {
            self.apply(Op::AckLatest(k));
        }
        assert!(self.node.tasks().all(|s| !s.state.is_terminal()));
        for status in held_terminal {
            assert!(self.node.task(&status.task_id).is_none());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn terminal_statuses_are_published_never_replaced_and_forgotten_once_acknowledged(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        let mut harness = Harness::new();
        for op in ops {
            harness.apply(op);
        }
        harness.settle();
    }
}
