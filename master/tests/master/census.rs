//! The census: what a master tells its agents of itself, and how a restarted master ends
//! its re-registration window early with it.

use master::{Action, CENSUS_QUIET_MS, MASTER_CENSUS_REPEAT_MS, Master, MasterConfig, Millis};
use proto::{AgentAdvert, Attributes, MASTER_CENSUS_PERIOD_MS, MasterCensus};

use crate::common::*;

const WINDOW_MS: u64 = 5_000;

fn master_of(incarnation: u64) -> Master {
    Master::new(
        MasterConfig {
            incarnation,
            offer_timeout_ms: None,
            reclaim: None,
            reregistration_window_ms: WINDOW_MS,
            ..MasterConfig::default()
        },
        7,
    )
}

fn censuses(actions: &[Action]) -> Vec<MasterCensus> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::AnnounceCensus(c) => Some(*c),
            _ => None,
        })
        .collect()
}

fn agent_listing(id: &str, census: Option<MasterCensus>) -> AgentAdvert {
    let mut a = advert(id, res(2.0, 1024.0), Attributes::new());
    a.last_census = census;
    a
}

fn census(incarnation: u64, seq: u64, agents: u64) -> Option<MasterCensus> {
    Some(MasterCensus {
        incarnation,
        seq,
        agents,
    })
}

#[test]
fn a_master_announces_who_it_counts_at_most_once_a_period() {
    let mut m = master_of(1);
    join(&mut m, 0, agent_listing("a1", None));
    assert_eq!(censuses(&step(&mut m, 0)), vec![census(1, 1, 1).unwrap()]);
    // Two more join within the period: one census for both, when the period is over.
    join(&mut m, 10, agent_listing("a2", None));
    join(&mut m, 20, agent_listing("a3", None));
    assert!(censuses(&step(&mut m, 20)).is_empty());
    assert_eq!(m.poll_timeout(), Some(Millis(MASTER_CENSUS_PERIOD_MS)));
    let at = MASTER_CENSUS_PERIOD_MS;
    assert_eq!(censuses(&step(&mut m, at)), vec![census(1, 2, 3).unwrap()]);
    // Nothing changed: nothing new to announce, the same census again after a while.
    assert!(censuses(&step(&mut m, 5 * at)).is_empty());
    let again = at + MASTER_CENSUS_REPEAT_MS;
    assert_eq!(
        censuses(&step(&mut m, again)),
        vec![census(1, 2, 3).unwrap()]
    );
    m.handle_agent_left(Millis(again + 1), &proto::AgentId::new("a2"));
    let changed = again + at;
    assert!(censuses(&step(&mut m, changed - 1)).is_empty());
    assert_eq!(
        censuses(&step(&mut m, changed)),
        vec![census(1, 3, 2).unwrap()]
    );
}

#[test]
fn offers_resume_once_every_agent_of_the_previous_master_is_back_and_quiet() {
    let mut m = master_of(2);
    let fw = subscribe(&mut m, 0, info("fw", "r", 1.0));
    // The predecessor counted 3 agents in its newest census (seq 4).
    join(&mut m, 100, agent_listing("a1", census(1, 4, 3)));
    assert!(m.offers_held(), "an agent of an earlier master is evidence");
    join(&mut m, 150, agent_listing("a2", census(1, 4, 3)));
    // A census of this master says nothing of the predecessor.
    join(&mut m, 180, agent_listing("a4", census(2, 1, 3)));
    join(&mut m, 200, agent_listing("a3", census(1, 4, 3)));
    let quiet_over = 200 + CENSUS_QUIET_MS;
    assert!(offers(&step(&mut m, quiet_over - 1)).is_empty());
    assert!(m.offers_held());
    // The quiet time after the third agent of the census: offers, well inside the window.
    let actions = step(&mut m, quiet_over);
    assert!(!m.offers_held());
    assert_eq!(offers_to(&actions, &fw).len(), 4, "every agent is offered");
    // The master held its own census until then, and announces it now it is whole.
    assert_eq!(censuses(&actions), vec![census(2, 1, 4).unwrap()]);
    // A late agent of the predecessor does not start the hold again.
    join(&mut m, 1_000, agent_listing("a5", census(1, 4, 3)));
    assert!(!m.offers_held());
    assert_eq!(offers_to(&step(&mut m, 1_000), &fw).len(), 1);
}

#[test]
fn an_agent_listing_another_census_or_none_keeps_offers_held_for_the_window() {
    let listings = [
        // Restarted meanwhile, or joined after the last census: it lists none.
        [census(1, 9, 3), None, census(1, 9, 3)],
        // Missed the newest census.
        [census(1, 9, 3), census(1, 8, 2), census(1, 9, 3)],
        // Knew only a master before the predecessor.
        [census(1, 9, 3), census(0, 3, 3), census(1, 9, 3)],
    ];
    for listed in listings {
        let mut m = master_of(2);
        let fw = subscribe(&mut m, 0, info("fw", "r", 1.0));
        for (i, census) in listed.into_iter().enumerate() {
            join(
                &mut m,
                100 + i as u64,
                agent_listing(&format!("a{i}"), census),
            );
        }
        let before = step(&mut m, WINDOW_MS - 1);
        assert!(offers(&before).is_empty(), "{listed:?}");
        assert!(censuses(&before).is_empty(), "no census while held");
        assert_eq!(offers_to(&step(&mut m, WINDOW_MS), &fw).len(), 3);
    }
}

#[test]
fn an_agent_arriving_within_the_quiet_time_undoes_a_complete_count() {
    let mut m = master_of(2);
    // A stale census: the predecessor died before announcing the agents that joined late.
    join(&mut m, 100, agent_listing("a1", census(1, 1, 1)));
    join(&mut m, 100 + CENSUS_QUIET_MS - 1, agent_listing("a2", None));
    assert!(offers(&step(&mut m, 100 + CENSUS_QUIET_MS)).is_empty());
    assert!(m.offers_held());
    assert_eq!(m.poll_timeout(), Some(Millis(WINDOW_MS)));
}
