//! Helpers shared by the test modules: building inputs and draining actions.

use master::{Action, Master, MasterConfig, Millis};
use proto::{
    AgentAdvert, AgentId, Attributes, Call, Event, Filters, FrameworkCall, FrameworkId,
    FrameworkInfo, Offer, OfferId, Operation, Resources, TaskId, TaskKind, TaskLimits, TaskSpec,
    TaskState, TaskStatus, WasmTask,
};

pub fn res(cpus: f64, mem: f64) -> Resources {
    Resources::new()
        .with_scalar("cpus", cpus)
        .with_scalar("mem", mem)
}

pub fn advert(id: &str, total: Resources, attributes: Attributes) -> AgentAdvert {
    AgentAdvert {
        agent_id: AgentId::new(id),
        hostname: id.to_owned(),
        attributes,
        total,
        reserved: Resources::new(),
        seq: 1,
        incarnation: 1,
        tasks: Vec::new(),
        version: "test".to_owned(),
        last_census: None,
    }
}

pub fn info(name: &str, role: &str, weight: f64) -> FrameworkInfo {
    FrameworkInfo {
        name: name.to_owned(),
        role: role.to_owned(),
        weight,
        framework_id: None,
        failover_timeout_ms: 1_000,
        constraints: Vec::new(),
        min_offer: Resources::new(),
        capabilities: Vec::new(),
    }
}

pub fn task(id: &str, resources: Resources) -> TaskSpec {
    TaskSpec {
        task_id: TaskId::new(id),
        name: id.to_owned(),
        resources,
        kind: TaskKind::Wasm(WasmTask::default()),
        limits: TaskLimits::default(),
        disconnect: None,
        replaces: None,
    }
}

pub fn status(
    task: &str,
    fw: &FrameworkId,
    agent: &str,
    state: TaskState,
    uuid: u128,
) -> TaskStatus {
    TaskStatus {
        task_id: TaskId::new(task),
        framework_id: fw.clone(),
        agent_id: AgentId::new(agent),
        state,
        exit_code: None,
        reason: String::new(),
        uuid: proto::StatusUuid(uuid),
        timestamp_ms: 0,
    }
}

/// A master with offers that never expire and no reclaim, unless the test says otherwise.
pub fn master() -> Master {
    Master::new(
        MasterConfig {
            offer_timeout_ms: None,
            reclaim: None,
            ..MasterConfig::default()
        },
        7,
    )
}

/// Subscribes a framework, which then shows its liveliness token (so that its events go
/// out).
pub fn subscribe(m: &mut Master, now: u64, info: FrameworkInfo) -> FrameworkId {
    match m.handle_call(
        Millis(now),
        &proto::Principal::anonymous(),
        FrameworkCall {
            framework_id: None,
            call: Call::Subscribe { info },
        },
    ) {
        Ok(proto::CallReply::Subscribed { framework_id, .. }) => {
            m.handle_framework_token(Millis(now), &framework_id, true);
            framework_id
        }
        other => panic!("subscribe: {other:?}"),
    }
}

/// An agent joins: its liveliness token, then its advert.
pub fn join(m: &mut Master, now: u64, advert: AgentAdvert) {
    m.handle_agent_token(Millis(now), &advert.agent_id, true);
    m.handle_agent_advert(Millis(now), advert);
}

pub fn call(
    m: &mut Master,
    now: u64,
    fw: &FrameworkId,
    call: Call,
) -> Result<proto::CallReply, master::CallError> {
    m.handle_call(
        Millis(now),
        &proto::Principal::anonymous(),
        FrameworkCall {
            framework_id: Some(fw.clone()),
            call,
        },
    )
}

pub fn accept(offers: &[&Offer], tasks: Vec<TaskSpec>) -> Call {
    Call::Accept {
        offer_ids: offers.iter().map(|o| o.offer_id.clone()).collect(),
        operations: vec![Operation::Launch { tasks }],
        filters: Filters {
            refuse_seconds: 0.0,
        },
    }
}

pub fn decline(offer: &OfferId, refuse_seconds: f64) -> Call {
    Call::Decline {
        offer_ids: vec![offer.clone()],
        filters: Filters { refuse_seconds },
    }
}

/// Runs whatever is due at `now` and returns every action.
pub fn step(m: &mut Master, now: u64) -> Vec<Action> {
    if m.poll_timeout().is_some_and(|t| t <= Millis(now)) {
        m.handle_timeout(Millis(now));
    }
    drain(m)
}

pub fn drain(m: &mut Master) -> Vec<Action> {
    std::iter::from_fn(|| m.poll_action()).collect()
}

/// The offers among `actions`.
pub fn offers(actions: &[Action]) -> Vec<Offer> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendEvent {
                event: Event::Offers { offers },
                ..
            } => Some(offers.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

pub fn offers_to(actions: &[Action], fw: &FrameworkId) -> Vec<Offer> {
    offers(actions)
        .into_iter()
        .filter(|o| &o.framework_id == fw)
        .collect()
}
