//! Keys a session puts to or hears from again and again (an agent's status key, a
//! framework's events key), declared to zenoh once: zenoh then keeps the key's route with
//! it, where a key named afresh on each message is matched against every subscription its
//! tables know, in the sender's session and again in the router. That matching was
//! about a third of all CPU in the throughput benchmark (`Resource::get_matches` under
//! `route_data` and `resolve_put`). With the keys declared in the sending sessions only,
//! the profile still had a sixth of all CPU matching in the master's router, and
//! throughput went from 1,255 to 1,724 tasks/s; with the master also declaring the keys
//! it hears statuses on ([`crate::Subscription::declaring_keys`]), 2,095 (20 s runs).
//!
//! The price: zenoh matches an undeclared key against each sibling node of its parent,
//! and a declared key is a node more. A fleet's agents have a node each already (their
//! command queryables and tokens); a session that puts for many agents without them (the
//! `fleet_scale` bench's one publisher of 10,000 adverts) makes the master match each
//! advert against the 1,024 it declared: master CPU for re-adverts 4.4% → 9% of a core
//! there.
//!
//! One declaration at a time: zenoh 1.10's `declare_keyexpr` of a key another call is
//! still declaring returns that key's id at once, before the first call has sent the
//! declaration, so a put on it could reach the router first, and the router dropped it
//! ("Route data with unknown scope"). With eight tasks putting on each new key at once,
//! a put was lost within the first few dozen keys in each of three runs
//! (`puts_at_once_on_a_new_key_all_arrive`); in the throughput benchmark, twice in each of
//! two of four runs logged at warn, at start.
//! A lost status is sent again after the agent's retry interval; a message nobody resends
//! was simply gone.
//!
//! Bounded: past [`KEYS_DECLARED_MAX`] keys a session names its keys as before, so a
//! session speaking for many agents costs no more than that. Queries do not use it: with
//! queries on declared keys too, no launch reached the benchmark's agents (the master's
//! commands to them are queries); not pursued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use zenoh::Session;
use zenoh::key_expr::KeyExpr;

/// Keys declared per session.
pub const KEYS_DECLARED_MAX: usize = 1024;

/// One session's declared keys; cheap to clone (shared).
#[derive(Clone, Default)]
pub(crate) struct DeclaredKeys {
    keys: Arc<Mutex<HashMap<String, KeyExpr<'static>>>>,
    /// Held across a declaration (see the module documentation).
    declaring: Arc<tokio::sync::Mutex<()>>,
}

impl DeclaredKeys {
    /// `key` declared on `session`, declaring it on first use; `None` when the bound is
    /// reached or zenoh refuses (the caller then names the key, and zenoh reports what
    /// is wrong with it).
    pub(crate) async fn get(&self, session: &Session, key: &str) -> Option<KeyExpr<'static>> {
        if let Some(known) = self.known(key) {
            return known;
        }
        let _turn = self.declaring.lock().await;
        // Declared by the call that held the turn before, perhaps.
        if let Some(known) = self.known(key) {
            return known;
        }
        // Returns once zenoh has sent the declaration.
        let declared = session.declare_keyexpr(key.to_owned()).await.ok()?;
        self.lock().insert(key.to_owned(), declared.clone());
        Some(declared)
    }

    /// `Some` when the answer is known without declaring: the declared key, or `None` at
    /// the bound.
    fn known(&self, key: &str) -> Option<Option<KeyExpr<'static>>> {
        let keys = self.lock();
        match keys.get(key) {
            Some(declared) => Some(Some(declared.clone())),
            None => (keys.len() >= KEYS_DECLARED_MAX).then_some(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, KeyExpr<'static>>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}
