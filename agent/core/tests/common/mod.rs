//! What the agent core's tests share: a node on small timings, task specs, and the
//! actions it emitted, sorted by kind.

#![allow(dead_code)]

use agent_core::{AgentAction, AgentNode, AgentNodeConfig, Journal, JournalEntry};
use proto::{
    Ack, AgentAdvert, AgentCommand, AgentId, AgentReply, Attributes, Millis, OciTask, Resources,
    StatusUuid, TaskId, TaskKind, TaskLimits, TaskSpec, TaskStatus, WasmTask,
};

pub const RETRY_MS: u64 = 1_000;
pub const RETRY_MAX_MS: u64 = 8_000;
pub const ADVERT_PERIOD_MS: u64 = 5_000;
pub const TASKS_MAX: usize = 3;
pub const WALL_ORIGIN_MS: u64 = 1_700_000_000_000;

pub fn advert(incarnation: u64) -> AgentAdvert {
    AgentAdvert {
        agent_id: AgentId::new("a1"),
        hostname: "a1".to_owned(),
        attributes: Attributes::new(),
        total: Resources::new().with_scalar("cpus", 4.0),
        reserved: Resources::new(),
        seq: 0,
        incarnation,
        tasks: Vec::new(),
        version: String::new(),
        last_census: None,
    }
}

pub fn config(incarnation: u64) -> AgentNodeConfig {
    AgentNodeConfig {
        advert_period_ms: ADVERT_PERIOD_MS,
        status_retry_ms: RETRY_MS,
        status_retry_max_ms: RETRY_MAX_MS,
        tasks_max: TASKS_MAX,
        ..AgentNodeConfig::new(advert(incarnation), WALL_ORIGIN_MS)
    }
}

/// A node that has sent its first advert at 0 (drained).
pub fn node(incarnation: u64) -> AgentNode {
    let mut node = AgentNode::new(config(incarnation));
    node.handle_timeout(Millis(0));
    drain(&mut node);
    node
}

pub fn spec(id: &str, oci: bool) -> TaskSpec {
    let kind = if oci {
        TaskKind::Oci(OciTask::default())
    } else {
        TaskKind::Wasm(WasmTask::default())
    };
    TaskSpec {
        task_id: TaskId::new(id),
        name: format!("{id}-name"),
        resources: Resources::new().with_scalar("cpus", 1.0),
        kind,
        limits: TaskLimits::default(),
        disconnect: None,
        replaces: None,
    }
}

pub fn launch(node: &mut AgentNode, now: u64, id: &str) -> AgentReply {
    launch_spec(node, now, spec(id, false))
}

pub fn launch_spec(node: &mut AgentNode, now: u64, task: TaskSpec) -> AgentReply {
    let command = AgentCommand::Launch {
        framework_id: "fw".into(),
        task,
    };
    node.handle_command(Millis(now), command)
}

pub fn ack(node: &mut AgentNode, now: u64, id: &str, uuid: StatusUuid) -> AgentReply {
    let command = AgentCommand::Acknowledge {
        acks: vec![Ack {
            task_id: TaskId::new(id),
            status_uuid: uuid,
        }],
    };
    node.handle_command(Millis(now), command)
}

pub fn kill(node: &mut AgentNode, now: u64, id: &str) -> AgentReply {
    let command = AgentCommand::Kill {
        task_id: TaskId::new(id),
        grace_ms: 250,
    };
    node.handle_command(Millis(now), command)
}

pub fn drain(node: &mut AgentNode) -> Vec<AgentAction> {
    std::iter::from_fn(|| node.poll_action()).collect()
}

pub fn statuses(actions: &[AgentAction]) -> Vec<TaskStatus> {
    actions
        .iter()
        .filter_map(|a| match a {
            AgentAction::PublishStatus(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

pub fn adverts(actions: &[AgentAction]) -> Vec<AgentAdvert> {
    actions
        .iter()
        .filter_map(|a| match a {
            AgentAction::PublishAdvert(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

/// The journal that `start` becomes with the actions' journal changes.
pub fn journaled(start: Vec<JournalEntry>, actions: &[AgentAction]) -> Vec<JournalEntry> {
    let mut journal = Journal::of_entries(start);
    for a in actions {
        if let AgentAction::Journal(change) = a {
            journal.apply(change.clone());
        }
    }
    journal.entries().cloned().collect()
}

/// Runs the node's timer up to `until` (inclusive), one due timeout at a time, and
/// returns what it emitted with the time each timeout fired.
pub fn run_until(node: &mut AgentNode, until: u64) -> Vec<(u64, AgentAction)> {
    let mut out = Vec::new();
    while let Some(at) = node.poll_timeout() {
        if at.0 > until {
            break;
        }
        node.handle_timeout(at);
        out.extend(drain(node).into_iter().map(|a| (at.0, a)));
    }
    out
}

/// When the statuses of `id` were published in `timed`.
pub fn sends_of(timed: &[(u64, AgentAction)], id: &str) -> Vec<u64> {
    timed
        .iter()
        .filter_map(|(at, a)| match a {
            AgentAction::PublishStatus(s) if s.task_id.as_str() == id => Some(*at),
            _ => None,
        })
        .collect()
}
