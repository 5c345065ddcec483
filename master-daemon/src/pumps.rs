//! Input pumps: each turns one zenoh subscription, liveliness watch or queryable into
//! [`Input`]s for the driver. A message whose id disagrees with the id in its key is
//! counted as a decode error and dropped, like any other malformed payload.

use net::{AliveWatch, Liveness, Net, Requests, Subscription};
use proto::{
    AgentAdvert, AgentId, CallReply, DecodeError, FrameworkCall, FrameworkId, TaskStatus,
    TaskUsageReport,
};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Input;
use crate::error::DaemonError;
use crate::principals::Principals;

pub(crate) async fn start(
    net: &Net,
    inputs: &mpsc::Sender<Input>,
    calls_queue: mpsc::Sender<Input>,
    principals: &Principals,
) -> Result<Vec<JoinHandle<()>>, DaemonError> {
    let keys = net.keys().clone();
    let adverts = net
        .subscribe::<AgentAdvert>(&keys.all_agent_adverts())
        .await?;
    let statuses = net
        .subscribe::<TaskStatus>(&keys.all_agent_status())
        .await?
        .declaring_keys();
    let agents_alive = net.watch_alive(&keys.all_agent_alive()).await?;
    let frameworks_alive = net.watch_alive(&keys.all_framework_alive()).await?;
    let calls = net.serve::<FrameworkCall>(&keys.all_master_calls()).await?;
    let usage = net
        .subscribe::<TaskUsageReport>(&keys.all_agent_metrics())
        .await?;
    let leaves = net.subscribe::<AgentId>(&keys.all_agent_leave()).await?;
    Ok(vec![
        forward_agent_messages(net, inputs, adverts, |m| &m.agent_id, Input::Advert),
        forward_agent_messages(net, inputs, statuses, |m| &m.agent_id, Input::Status),
        forward_liveness(net, inputs, agents_alive, |id, alive| {
            let id = AgentId::from(id);
            if alive {
                Input::AgentAlive(id)
            } else {
                Input::AgentGone(id)
            }
        }),
        forward_liveness(net, inputs, frameworks_alive, |id, alive| {
            let id = FrameworkId::from(id);
            if alive {
                Input::FrameworkAlive(id)
            } else {
                Input::FrameworkGone(id)
            }
        }),
        forward_calls(net, calls_queue, calls, principals.clone()),
        forward_agent_messages(net, inputs, usage, |m| &m.agent_id, Input::TaskUsage),
        forward_agent_messages(net, inputs, leaves, |m| m, Input::AgentLeft),
    ])
}

/// Forwards each message an agent published whose agent id is the one in its key.
fn forward_agent_messages<T: DeserializeOwned + Send + 'static>(
    net: &Net,
    inputs: &mpsc::Sender<Input>,
    mut messages: Subscription<T>,
    agent_of: fn(&T) -> &AgentId,
    input: fn(T) -> Input,
) -> JoinHandle<()> {
    let (net, inputs) = (net.clone(), inputs.clone());
    tokio::spawn(async move {
        while let Some(received) = messages.recv().await {
            let agent_id = agent_of(&received.message);
            if id_matches_key(&net, &received.key, agent_id.as_str())
                && inputs.send(input(received.message)).await.is_err()
            {
                return;
            }
        }
    })
}

/// Forwards liveliness tokens appearing (`true`) and going, by the id in their key.
fn forward_liveness(
    net: &Net,
    inputs: &mpsc::Sender<Input>,
    mut changes: AliveWatch,
    input: fn(&str, bool) -> Input,
) -> JoinHandle<()> {
    let (net, inputs) = (net.clone(), inputs.clone());
    tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            let Some(id) = net.keys().id_in(change.key()) else {
                continue;
            };
            // A framework's token counts only under its owner's name (an agent's key has
            // no principal chunk).
            let principal = net.keys().principal_in(change.key());
            if principal.is_some_and(|p| p != FrameworkId::from(id).owner()) {
                continue;
            }
            let alive = matches!(change, Liveness::Alive { .. });
            if inputs.send(input(id, alive)).await.is_err() {
                return;
            }
        }
    })
}

/// True when the message's `id` is the id in its key; otherwise counts it as malformed.
fn id_matches_key(net: &Net, key: &str, id: &str) -> bool {
    if net.keys().id_in(key) == Some(id) {
        return true;
    }
    let error = DecodeError::Malformed(format!(
        "the message names agent {id:?}, not the one in its key"
    ));
    net.decode_errors().record(key, &error);
    false
}

/// Forwards each framework call with its caller, proven by the key it came on; a caller
/// the master does not know is refused here.
fn forward_calls(
    net: &Net,
    queue: mpsc::Sender<Input>,
    mut calls: Requests<FrameworkCall>,
    principals: Principals,
) -> JoinHandle<()> {
    let keys = net.keys().clone();
    tokio::spawn(async move {
        while let Some(request) = calls.recv().await {
            let caller = principals.caller(&keys, &request.key);
            let key = request.key.clone();
            let (call, responder) = request.into_parts();
            let Some(caller) = caller else {
                let message = Principals::unknown(&key);
                let _ = responder.reply(&CallReply::Error { message }).await;
                continue;
            };
            if queue
                .send(Input::Call(caller, call, responder))
                .await
                .is_err()
            {
                return;
            }
        }
    })
}
