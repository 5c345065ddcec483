//! The agent's zenoh session, once it is open. An agent that starts while no master
//! answers runs without one (it recovers its journal, and restarts in place the tasks
//! whose policy says so: `agent_core`'s `offline.rs`) until the session opens; what needs
//! the network waits for it (a module not in the cache) or is skipped (a status or an
//! advert: the node sends those again until the master has them).

use net::Net;
use tokio::sync::watch;

#[derive(Clone)]
pub(crate) struct NetLink(watch::Receiver<Option<Net>>);

/// Where the session is handed over once open.
pub(crate) struct NetLinkSetter(watch::Sender<Option<Net>>);

impl NetLink {
    /// A link without a session yet, and where to give it one.
    pub(crate) fn pending() -> (NetLinkSetter, NetLink) {
        let (tx, rx) = watch::channel(None);
        (NetLinkSetter(tx), NetLink(rx))
    }

    /// The session, if open.
    pub(crate) fn now(&self) -> Option<Net> {
        self.0.borrow().clone()
    }

    /// The session, once open (never, if the agent stops first).
    pub(crate) async fn wait(&self) -> Net {
        let mut rx = self.0.clone();
        loop {
            if let Some(net) = rx.borrow_and_update().clone() {
                return net;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

impl NetLinkSetter {
    pub(crate) fn set(&self, net: Net) {
        self.0.send_replace(Some(net));
    }
}
