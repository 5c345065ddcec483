//! Input pumps: each turns one zenoh subscription, liveliness watch or queryable into
//! [`Input`]s for the driver. A message whose id disagrees with the id in its key is
//! counted as a decode error and dropped, like any other malformed payload.

use net::{Liveness, Net};
use proto::{
    AgentAdvert, AgentId, DecodeError, FrameworkCall, FrameworkId, TaskStatus, TaskUsageReport,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Input;
use crate::error::DaemonError;

pub(crate) async fn start(
    net: &Net,
    inputs: &mpsc::Sender<Input>,
) -> Result<Vec<JoinHandle<()>>, DaemonError> {
    let keys = net.keys().clone();
    let mut adverts = net
        .subscribe::<AgentAdvert>(&keys.all_agent_adverts())
        .await?;
    let mut statuses = net
        .subscribe::<TaskStatus>(&keys.all_agent_status())
        .await?;
    let mut agents_alive = net.watch_alive(&keys.all_agent_alive()).await?;
    let mut frameworks_alive = net.watch_alive(&keys.all_framework_alive()).await?;
    let mut calls = net.serve::<FrameworkCall>(&keys.master_calls()).await?;
    let mut usage = net
        .subscribe::<TaskUsageReport>(&keys.all_agent_metrics())
        .await?;

    let advert_pump = {
        let (net, inputs) = (net.clone(), inputs.clone());
        tokio::spawn(async move {
            while let Some(received) = adverts.recv().await {
                let agent_id = &received.message.agent_id;
                if id_matches_key(&net, &received.key, agent_id.as_str())
                    && inputs.send(Input::Advert(received.message)).await.is_err()
                {
                    return;
                }
            }
        })
    };
    let status_pump = {
        let (net, inputs) = (net.clone(), inputs.clone());
        tokio::spawn(async move {
            while let Some(received) = statuses.recv().await {
                let agent_id = &received.message.agent_id;
                if id_matches_key(&net, &received.key, agent_id.as_str())
                    && inputs.send(Input::Status(received.message)).await.is_err()
                {
                    return;
                }
            }
        })
    };
    let agent_alive_pump = {
        let (net, inputs) = (net.clone(), inputs.clone());
        tokio::spawn(async move {
            while let Some(change) = agents_alive.recv().await {
                let Some(id) = net.keys().id_in(change.key()).map(AgentId::from) else {
                    continue;
                };
                let input = match change {
                    Liveness::Alive { .. } => Input::AgentAlive(id),
                    Liveness::Gone { .. } => Input::AgentGone(id),
                };
                if inputs.send(input).await.is_err() {
                    return;
                }
            }
        })
    };
    let framework_alive_pump = {
        let (net, inputs) = (net.clone(), inputs.clone());
        tokio::spawn(async move {
            while let Some(change) = frameworks_alive.recv().await {
                let Some(id) = net.keys().id_in(change.key()).map(FrameworkId::from) else {
                    continue;
                };
                let input = match change {
                    Liveness::Alive { .. } => Input::FrameworkAlive(id),
                    Liveness::Gone { .. } => Input::FrameworkGone(id),
                };
                if inputs.send(input).await.is_err() {
                    return;
                }
            }
        })
    };
    let usage_pump = {
        let (net, inputs) = (net.clone(), inputs.clone());
        tokio::spawn(async move {
            while let Some(received) = usage.recv().await {
                let agent_id = &received.message.agent_id;
                if id_matches_key(&net, &received.key, agent_id.as_str())
                    && inputs
                        .send(Input::TaskUsage(received.message))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        })
    };
    let call_pump = {
        let inputs = inputs.clone();
        tokio::spawn(async move {
            while let Some(request) = calls.recv().await {
                let (call, responder) = request.into_parts();
                if inputs.send(Input::Call(call, responder)).await.is_err() {
                    return;
                }
            }
        })
    };
    Ok(vec![
        advert_pump,
        status_pump,
        agent_alive_pump,
        framework_alive_pump,
        call_pump,
        usage_pump,
    ])
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
