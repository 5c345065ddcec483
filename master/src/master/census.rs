//! The census: how a restarted master knows, sooner than its fixed re-registration
//! window, that every agent of its predecessor is back.
//!
//! A master announces a [`MasterCensus`] (its incarnation, a sequence number, the agents it
//! counts) whenever the agents it counts change, at most once per
//! [`MASTER_CENSUS_PERIOD_MS`], and never while its own offers are held (a half-rebuilt
//! count would end a successor's wait too early); an unchanged census is announced again
//! every [`MASTER_CENSUS_REPEAT_MS`], for agents that missed it. Agents keep the newest
//! and list it in their adverts.
//!
//! A master that replaces an earlier one looks at the census each re-registering agent
//! lists. If every agent so far lists one and the same census of an earlier master, and
//! as many distinct agents as it counted are back, then every agent the predecessor
//! counted is back: once no other agent has re-registered for [`CENSUS_QUIET_MS`] the
//! hold ends, not at the window's end. An agent listing anything else (no census: it
//! restarted, or joined after the last census; an older census: it missed the newest)
//! shows the census may undercount, and the window stays as it was. The quiet time
//! catches those that arrive just after the count is reached: agents re-register in one
//! burst when the new master's token appears. One that comes later still (slower than
//! the quiet time, and joined within the census period before the crash) re-registers
//! after offers resumed; its tasks count from then on.

use std::collections::BTreeSet;

use proto::{AgentId, MASTER_CENSUS_PERIOD_MS, MasterCensus};

use super::{Action, Master};
use crate::time::Millis;

/// A census unchanged this long is announced again, for agents that missed it (every agent
/// gets each repeat: it is part of an idle agent's traffic).
pub const MASTER_CENSUS_REPEAT_MS: u64 = 30_000;

/// How long after the last re-registering agent a complete census ends the hold.
pub const CENSUS_QUIET_MS: u64 = 250;

/// This master's census and what it learned of its predecessor's.
#[derive(Debug, Default)]
pub(super) struct CensusBook {
    seq: u64,
    /// The agents counted in census `seq`.
    agents: u64,
    /// The agents counted changed since the last census.
    due: bool,
    sent_at: Option<Millis>,
    /// Within the re-registration window, until the hold ends: what re-registering
    /// agents listed.
    predecessor: Option<Predecessor>,
}

#[derive(Debug)]
enum Predecessor {
    /// Every agent so far listed `census`; `back` are they, the last at `last_at`.
    Agreed {
        census: MasterCensus,
        back: BTreeSet<AgentId>,
        last_at: Millis,
    },
    /// Agents listed different censuses, or none: the window decides.
    Contradicted,
}

impl Master {
    /// The agents counted changed: a census is announced within the period.
    pub(super) fn want_census(&mut self) {
        self.census.due = true;
    }

    /// When the next census may go out; `None` when none is due.
    pub(super) fn census_at(&self) -> Option<Millis> {
        let sent_at = self.census.sent_at;
        let next = if self.census.due {
            sent_at.map_or(Millis::ZERO, |t| t.plus_ms(MASTER_CENSUS_PERIOD_MS))
        } else if self.census.agents > 0 {
            sent_at?.plus_ms(MASTER_CENSUS_REPEAT_MS)
        } else {
            return None;
        };
        let hold_over = self.offers_held_until.filter(|_| self.offers_held());
        Some(hold_over.map_or(next, |h| h.max(next)))
    }

    /// Announces a new census when the agents counted changed, or the last one again
    /// (same `seq`) when it is due for repeating: a put is not guaranteed to arrive, and
    /// an agent that missed the newest census would keep a successor waiting the window.
    pub(super) fn announce_census_if_due(&mut self, now: Millis) {
        if self.census_at().is_none_or(|at| at > now) || self.offers_held() {
            return;
        }
        if std::mem::take(&mut self.census.due) {
            self.census.seq += 1;
            self.census.agents = self.agents.len() as u64;
        }
        self.census.sent_at = Some(now);
        self.actions.push_back(Action::AnnounceCensus(MasterCensus {
            incarnation: self.config.incarnation,
            seq: self.census.seq,
            agents: self.census.agents,
        }));
    }

    /// `agent_id`'s advert lists `census`. One of an earlier master is evidence that this
    /// master replaces it; within the window, every listing counts towards (or against)
    /// ending the hold early.
    pub(super) fn witness_census(&mut self, agent_id: &AgentId, census: Option<MasterCensus>) {
        let ours = self.config.incarnation;
        if census.is_some_and(|c| c.incarnation >= ours) {
            return;
        }
        if census.is_some() {
            self.note_recovery_evidence();
        }
        let window_end = Millis(self.config.reregistration_window_ms);
        let hold_over = self.hold_ended || self.offers_held_until.is_some_and(|t| t <= self.now);
        if self.now >= window_end || hold_over {
            return;
        }
        let now = self.now;
        let book = &mut self.census.predecessor;
        *book = match (book.take(), census) {
            (None, Some(census)) => Some(Predecessor::Agreed {
                census,
                back: BTreeSet::from([agent_id.clone()]),
                last_at: now,
            }),
            (
                Some(Predecessor::Agreed {
                    census: agreed,
                    mut back,
                    last_at,
                }),
                Some(census),
            ) if agreed == census => {
                // An agent advertising again is not one more agent back.
                let last_at = if back.insert(agent_id.clone()) {
                    now
                } else {
                    last_at
                };
                Some(Predecessor::Agreed {
                    census,
                    back,
                    last_at,
                })
            }
            (Some(Predecessor::Contradicted), _) => Some(Predecessor::Contradicted),
            (agreed, listed) => {
                let agreed = match agreed {
                    Some(Predecessor::Agreed { census, .. }) => Some(census),
                    _ => None,
                };
                if agreed.is_some() || listed.is_some() {
                    tracing::info!(%agent_id, ?listed, ?agreed, "agents list different censuses of the previous master: offers wait for the re-registration window");
                }
                Some(Predecessor::Contradicted)
            }
        };
        self.offers_held_until = self
            .offers_held_until
            .map(|_| self.census_hold_end().unwrap_or(window_end).min(window_end));
    }

    /// When a complete, uncontradicted census ends the hold.
    fn census_hold_end(&self) -> Option<Millis> {
        match &self.census.predecessor {
            Some(Predecessor::Agreed {
                census,
                back,
                last_at,
            }) if back.len() as u64 >= census.agents => Some(last_at.plus_ms(CENSUS_QUIET_MS)),
            _ => None,
        }
    }

    /// The hold ended: what was learned of the predecessor is no longer needed.
    pub(super) fn forget_predecessor(&mut self) {
        self.census.predecessor = None;
    }
}
