//! The framework client against a tiny fake master made of real zenoh parts on loopback:
//! a router session with the `master/calls` queryable, the `master/alive` token, and
//! events put on `frameworks/<id>/events` once the framework's token is seen.

#![allow(clippy::too_many_lines)]

use std::time::Duration;

use framework::{FrameworkClient, FrameworkConfig, FrameworkError};
use net::{AliveToken, AliveWatch, Liveness, Net, NetConfig, Request, Requests};
use proto::{
    Ack, AgentId, Attributes, Call, CallReply, Event, FrameworkCall, FrameworkId, Offer, OfferId,
    Operation, Resources, StatusUuid, TaskId, TaskKind, TaskLimits, TaskSpec, TaskState,
    TaskStatus, WasmTask,
};

const WAIT: Duration = Duration::from_secs(10);

struct FakeMaster {
    net: Net,
    calls: Requests<FrameworkCall>,
    frameworks_alive: AliveWatch,
    token: Option<AliveToken>,
}

impl FakeMaster {
    async fn start() -> FakeMaster {
        let net = Net::open(&NetConfig::loopback_ephemeral()).await.unwrap();
        let keys = net.keys().clone();
        let calls = net
            .serve::<FrameworkCall>(&keys.master_calls(proto::principal::ANONYMOUS))
            .await
            .unwrap();
        let frameworks_alive = net.watch_alive(&keys.all_framework_alive()).await.unwrap();
        let token = Some(net.declare_alive(&keys.master_alive()).await.unwrap());
        FakeMaster {
            net,
            calls,
            frameworks_alive,
            token,
        }
    }

    /// A crash and a restart as the client sees them: the master's token goes and comes
    /// back.
    async fn restart(&mut self) {
        self.token = None;
        let token = self
            .net
            .declare_alive(&self.net.keys().master_alive())
            .await;
        self.token = Some(token.unwrap());
    }

    async fn next_call(&mut self) -> Request<FrameworkCall> {
        tokio::time::timeout(WAIT, self.calls.recv())
            .await
            .unwrap()
            .unwrap()
    }

    /// Answers the Subscribe call (framework id `fw-1`) and waits for the framework's token,
    /// after which events reach it.
    async fn accept_subscription(&mut self) -> FrameworkCall {
        let request = self.next_call().await;
        let call = request.message.clone();
        assert!(matches!(call.call, Call::Subscribe { .. }), "{call:?}");
        let reply = CallReply::Subscribed {
            framework_id: FrameworkId::new("fw-1"),
            heartbeat_interval_ms: 1000,
        };
        request.reply(&reply).await.unwrap();
        let alive = tokio::time::timeout(WAIT, self.frameworks_alive.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            alive,
            Liveness::Alive {
                key: self.net.keys().framework_alive(&"fw-1".into())
            }
        );
        call
    }

    async fn send(&self, event: &Event) {
        self.net
            .put(&self.net.keys().framework_events(&"fw-1".into()), event)
            .await
            .unwrap();
    }
}

async fn connect(master: &FakeMaster) -> Net {
    Net::open(&NetConfig::member(master.net.endpoints().await))
        .await
        .unwrap()
}

fn offer(id: &str) -> Offer {
    Offer {
        offer_id: OfferId::new(id),
        framework_id: FrameworkId::new("fw-1"),
        agent_id: AgentId::new("a1"),
        hostname: "a1.local".to_owned(),
        attributes: Attributes::new().with("arch", "x86_64"),
        resources: Resources::new()
            .with_scalar("cpus", 2.0)
            .with_scalar("mem", 512.0),
    }
}

fn task(id: &str) -> TaskSpec {
    TaskSpec {
        task_id: TaskId::new(id),
        name: id.to_owned(),
        resources: Resources::new()
            .with_scalar("cpus", 0.5)
            .with_scalar("mem", 64.0),
        kind: TaskKind::Wasm(WasmTask::default()),
        limits: TaskLimits::default(),
        disconnect: None,
        replaces: None,
    }
}

fn status(task: &str, uuid: u128) -> TaskStatus {
    TaskStatus {
        task_id: TaskId::new(task),
        framework_id: FrameworkId::new("fw-1"),
        agent_id: AgentId::new("a1"),
        state: TaskState::Running,
        exit_code: None,
        reason: String::new(),
        uuid: StatusUuid(uuid),
        timestamp_ms: 1,
    }
}

/// A client subscribed through `master` with `config`; the Subscribe call it made beside it.
async fn subscribed(
    master: &mut FakeMaster,
    net: Net,
    config: FrameworkConfig,
) -> (FrameworkCall, FrameworkClient, framework::Events) {
    let subscribing = tokio::spawn(FrameworkClient::subscribe(net, config));
    let subscribe = master.accept_subscription().await;
    let (client, events) = subscribing.await.unwrap().unwrap();
    (subscribe, client, events)
}

async fn next_event(events: &mut framework::Events) -> Event {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_receive_offers_accept_and_refusals() {
    let mut master = FakeMaster::start().await;
    let net = connect(&master).await;
    let config = FrameworkConfig::new("test-scheduler").with_role("analytics", 2.0);
    let (subscribe, client, mut events) = subscribed(&mut master, net, config).await;
    assert_eq!(
        subscribe.framework_id, None,
        "a first subscription carries no id"
    );
    let Call::Subscribe { info } = subscribe.call else {
        unreachable!()
    };
    assert_eq!(
        (info.name.as_str(), info.role.as_str(), info.weight),
        ("test-scheduler", "analytics", 2.0)
    );
    assert_eq!(client.framework_id().as_str(), "fw-1");
    assert_eq!(client.heartbeat_interval_ms(), 1000);

    // Events sent right after the token was seen are all delivered, in order.
    master
        .send(&Event::Subscribed {
            framework_id: FrameworkId::new("fw-1"),
            heartbeat_interval_ms: 1000,
        })
        .await;
    master
        .send(&Event::Offers {
            offers: vec![offer("o-1"), offer("o-2")],
        })
        .await;
    master
        .send(&Event::Rescind {
            offer_id: OfferId::new("o-2"),
        })
        .await;
    assert!(matches!(
        next_event(&mut events).await,
        Event::Subscribed { .. }
    ));
    let Event::Offers { offers } = next_event(&mut events).await else {
        panic!("offers expected")
    };
    assert_eq!(offers, vec![offer("o-1"), offer("o-2")]);
    assert_eq!(
        next_event(&mut events).await,
        Event::Rescind {
            offer_id: OfferId::new("o-2")
        }
    );

    let launching = tokio::spawn({
        let client = client.clone();
        async move { client.launch(OfferId::new("o-1"), vec![task("t-1")]).await }
    });
    let request = master.next_call().await;
    assert_eq!(request.message.framework_id, Some(FrameworkId::new("fw-1")));
    let Call::Accept {
        offer_ids,
        operations,
        ..
    } = &request.message.call
    else {
        panic!("{:?}", request.message)
    };
    assert_eq!(offer_ids, &[OfferId::new("o-1")]);
    assert_eq!(
        operations,
        &[Operation::Launch {
            tasks: vec![task("t-1")]
        }]
    );
    request.reply(&CallReply::Ok).await.unwrap();
    launching.await.unwrap().unwrap();

    // A refusal is an error that carries the master's words.
    let killing = tokio::spawn({
        let client = client.clone();
        async move { client.kill(TaskId::new("nope")).await }
    });
    let request = master.next_call().await;
    assert_eq!(
        request.message.call,
        Call::Kill {
            task_id: TaskId::new("nope")
        }
    );
    request
        .reply(&CallReply::Error {
            message: "no task nope".to_owned(),
        })
        .await
        .unwrap();
    let error = killing.await.unwrap().unwrap_err();
    assert!(
        matches!(&error, FrameworkError::Refused { call: "Kill", message } if message == "no task nope"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_acknowledged_and_garbage_on_the_events_key_is_dropped() {
    let mut master = FakeMaster::start().await;
    let net = connect(&master).await;
    let (_, _client, mut events) =
        subscribed(&mut master, net.clone(), FrameworkConfig::new("acks")).await;

    let events_key = master.net.keys().framework_events(&"fw-1".into());
    master
        .net
        .put_raw(&events_key, b"\x01garbage".to_vec())
        .await
        .unwrap();
    master
        .send(&Event::Update {
            status: status("t-1", 77),
        })
        .await;
    assert_eq!(
        next_event(&mut events).await,
        Event::Update {
            status: status("t-1", 77)
        }
    );
    assert_eq!(net.decode_errors().count(&events_key), 1);

    let request = master.next_call().await;
    assert_eq!(
        request.message,
        FrameworkCall {
            framework_id: Some(FrameworkId::new("fw-1")),
            call: Call::AcknowledgeMany {
                acks: vec![Ack {
                    task_id: TaskId::new("t-1"),
                    status_uuid: StatusUuid(77)
                }],
            },
        }
    );
    request.reply(&CallReply::Ok).await.unwrap();
}

/// Acknowledgements that queue while every acknowledging call is out go together in the
/// next call, not one call each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_queued_behind_calls_in_flight_share_a_call() {
    let mut master = FakeMaster::start().await;
    let net = connect(&master).await;
    let (_, _client, mut events) =
        subscribed(&mut master, net.clone(), FrameworkConfig::new("acks")).await;
    let acks_in = |request: &Request<FrameworkCall>| match &request.message.call {
        Call::AcknowledgeMany { acks } => acks.clone(),
        other => panic!("not an acknowledgement: {other:?}"),
    };
    // Four calls out, one update each, none answered yet.
    let mut held = Vec::new();
    for uuid in 0..4 {
        master
            .send(&Event::Update {
                status: status("t", uuid),
            })
            .await;
        next_event(&mut events).await;
        let request = master.next_call().await;
        assert_eq!(acks_in(&request).len(), 1);
        held.push(request);
    }
    for uuid in 4..24 {
        master
            .send(&Event::Update {
                status: status("t", uuid),
            })
            .await;
        next_event(&mut events).await;
    }
    for request in held {
        request.reply(&CallReply::Ok).await.unwrap();
    }
    let (mut acked, mut calls) = (Vec::new(), 0);
    while acked.len() < 20 {
        let request = master.next_call().await;
        acked.extend(acks_in(&request).into_iter().map(|a| a.status_uuid.0));
        calls += 1;
        request.reply(&CallReply::Ok).await.unwrap();
    }
    // The last acknowledgement may miss a call and go in the next, which may arrive first.
    acked.sort_unstable();
    assert_eq!(acked, (4..24).collect::<Vec<_>>());
    assert!(calls < 20, "20 acknowledgements took {calls} calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_subscribes_again_with_its_id_when_the_master_comes_back() {
    let mut master = FakeMaster::start().await;
    let net = connect(&master).await;
    let (_, client, mut events) =
        subscribed(&mut master, net, FrameworkConfig::new("failover")).await;

    master.restart().await;

    let request = master.next_call().await;
    assert_eq!(request.message.framework_id, Some(FrameworkId::new("fw-1")));
    let Call::Subscribe { info } = &request.message.call else {
        panic!("{:?}", request.message)
    };
    assert_eq!(
        info.framework_id,
        Some(FrameworkId::new("fw-1")),
        "re-subscribes with its id"
    );
    let reply = CallReply::Subscribed {
        framework_id: FrameworkId::new("fw-1"),
        heartbeat_interval_ms: 1000,
    };
    request.reply(&reply).await.unwrap();

    master.send(&Event::Heartbeat).await;
    assert_eq!(next_event(&mut events).await, Event::Heartbeat);
    drop(client);
    assert_eq!(
        tokio::time::timeout(WAIT, events.recv()).await.unwrap(),
        None,
        "events end with the client"
    );
}

/// A restarted master sends events (offers, the reconciliation's updates) while the client
/// subscribes again. They used to wait in zenoh's queue (256) until the answer came; more
/// of them stalled the link, the answer never arrived and the client subscribed again and
/// again until it gave up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_during_a_resubscription_do_not_hold_up_its_answer() {
    const EVENTS: usize = 1_000;
    let mut master = FakeMaster::start().await;
    let net = connect(&master).await;
    let (_, _client, mut events) =
        subscribed(&mut master, net, FrameworkConfig::new("failover")).await;

    master.restart().await;
    let request = master.next_call().await;
    assert!(
        matches!(request.message.call, Call::Subscribe { .. }),
        "{:?}",
        request.message
    );
    for _ in 0..EVENTS {
        master.send(&Event::Heartbeat).await;
    }
    let reply = CallReply::Subscribed {
        framework_id: FrameworkId::new("fw-1"),
        heartbeat_interval_ms: 1000,
    };
    request.reply(&reply).await.unwrap();

    // The answer arrived: the client's next call is the reconciliation, not Subscribe again.
    let next = master.next_call().await;
    assert!(
        matches!(next.message.call, Call::Reconcile { .. }),
        "{:?}",
        next.message
    );
    next.reply(&CallReply::Ok).await.unwrap();
    let mut heartbeats = 0;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(500), events.recv()).await
    {
        assert_eq!(event, Event::Heartbeat, "no error reaches the program");
        heartbeats += 1;
    }
    assert!(heartbeats > 0, "the events reached the program");
}
