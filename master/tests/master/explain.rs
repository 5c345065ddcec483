//! `wasmos explain`'s facts from the core: each agent's fit for a waiting task (a
//! constraint that fails, a resource short and by how much, a decline filter, a
//! quarantine, an agent unreachable or lost) and the framework's place in DRF, and the
//! words made of them.

use master::Millis;
use master::explain::{Needs, job_summary, waiting_reason};
use master::view::WallClock;
use proto::explain::Fit;
use proto::operator::AgentState;
use proto::{AgentId, Attributes, Constraint};

use crate::common::*;

fn needs(cpus: f64, constraints: &str) -> Needs {
    Needs {
        resources: res(cpus, 64.0),
        constraints: match constraints {
            "" => Vec::new(),
            c => Constraint::parse_list(c).unwrap(),
        },
        avoided: Vec::new(),
    }
}

fn fit_of(fits: &[proto::explain::AgentFit], agent: &str) -> Fit {
    fits.iter()
        .find(|f| f.agent_id.as_str() == agent)
        .unwrap()
        .fit
        .clone()
}

#[test]
fn each_agent_says_why_it_cannot_take_the_task() {
    let mut m = master();
    join(
        &mut m,
        0,
        advert(
            "pi-1",
            res(1.0, 1024.0),
            Attributes::new().with("arch", "aarch64"),
        ),
    );
    join(
        &mut m,
        0,
        advert(
            "pi-2",
            res(0.25, 1024.0),
            Attributes::new().with("arch", "aarch64"),
        ),
    );
    join(
        &mut m,
        0,
        advert(
            "x86",
            res(8.0, 8192.0),
            Attributes::new().with("arch", "x86_64"),
        ),
    );
    join(
        &mut m,
        0,
        advert(
            "gone",
            res(8.0, 8192.0),
            Attributes::new().with("arch", "aarch64"),
        ),
    );
    let fw = subscribe(&mut m, 0, info("jobs", "default", 1.0));
    let actions = step(&mut m, 0);
    // The framework declines pi-1 for a minute, the others without a filter.
    for offer in offers_to(&actions, &fw) {
        let refuse = if offer.agent_id.as_str() == "pi-1" {
            60.0
        } else {
            0.0
        };
        call(&mut m, 1, &fw, decline(&offer.offer_id, refuse)).unwrap();
    }
    m.handle_agent_token(Millis(2), &AgentId::new("gone"), false);
    let old = advert(
        "old",
        res(8.0, 8192.0),
        Attributes::new().with("arch", "aarch64"),
    );
    join(&mut m, 2, old);
    m.handle_agent_lost(Millis(3), &AgentId::new("old"));
    drain(&mut m);
    let now = Millis(5);
    let wall = WallClock {
        wall_ms: 1_000_000,
        master_now: now,
    };

    let mut asked = needs(0.5, "arch=aarch64");
    asked.avoided = vec![(AgentId::new("pi-1"), 2_000_000)];
    let (fits, framework) = m.placement_facts(now, wall, &fw, &asked);
    assert_eq!(
        fit_of(&fits, "pi-1"),
        Fit::Quarantined {
            until_at_ms: 2_000_000
        }
    );
    assert_eq!(
        fit_of(&fits, "pi-2"),
        Fit::Short {
            resource: "cpus".to_owned(),
            need: 0.5,
            free: 0.25,
            offered: 0.0,
            also: Vec::new(),
        }
    );
    // Short of two resources: both said, the most short first.
    let mut big = needs(0.5, "arch=aarch64");
    big.resources = res(0.5, 4096.0);
    let (two, _) = m.placement_facts(now, wall, &fw, &big);
    let pi2 = two.iter().find(|f| f.agent_id.as_str() == "pi-2").unwrap();
    assert_eq!(
        pi2.message,
        "mem: needs 4096, 1024 free; cpus: needs 0.5, 0.25 free"
    );
    assert_eq!(
        fit_of(&fits, "x86"),
        Fit::Constraint {
            constraint: "arch=aarch64".to_owned()
        }
    );
    assert_eq!(
        fit_of(&fits, "gone"),
        Fit::Unreachable {
            state: AgentState::Disconnected
        }
    );
    assert_eq!(
        fit_of(&fits, "old"),
        Fit::Unreachable {
            state: AgentState::Lost
        }
    );
    let framework = framework.unwrap();
    assert_eq!(framework.name, "jobs");
    let reason = waiting_reason(1_000_000, None, &asked, &fits, Some(&framework));
    assert_eq!(
        reason,
        "no agent with arch=aarch64 has cpus:0.5, mem:64 free (closest: pi-2, 0.25 cpus free)"
    );
    assert_eq!(
        job_summary(
            "vision",
            6,
            3,
            &[reason.clone(), reason.clone(), reason],
            &[]
        ),
        "job vision: 3 of 6 running; 3 wait: no agent with arch=aarch64 has cpus:0.5, mem:64 free (closest: pi-2, 0.25 cpus free)"
    );

    // Without the quarantine, pi-1 fits but the framework filtered it.
    let asked = needs(0.5, "arch=aarch64");
    let (fits, framework) = m.placement_facts(now, wall, &fw, &asked);
    let Fit::Filtered { until_at_ms } = fit_of(&fits, "pi-1") else {
        panic!("{fits:?}");
    };
    assert_eq!(until_at_ms, 1_000_000 - 5 + 1 + 60_000);
    let reason = waiting_reason(1_000_000, None, &asked, &fits, framework.as_ref());
    assert!(reason.contains("declined"), "{reason}");

    // What holds nowhere, and an agent that fits.
    let (fits, _) = m.placement_facts(now, wall, &fw, &needs(0.5, "has=camera"));
    let reason = waiting_reason(1_000_000, None, &needs(0.5, "has=camera"), &fits, None);
    assert!(reason.contains("has=camera"), "{reason}");
    let (fits, framework) = m.placement_facts(now, wall, &fw, &needs(0.5, "arch=x86_64"));
    assert_eq!(fits[0].fit, Fit::Fits, "fitting agents first: {fits:?}");
    let reason = waiting_reason(
        1_000_000,
        None,
        &needs(0.5, "arch=x86_64"),
        &fits,
        framework.as_ref(),
    );
    assert!(reason.starts_with("fits x86"), "{reason}");
    let reason = waiting_reason(1_000_000, Some(1_042_000), &needs(0.5, ""), &fits, None);
    assert!(
        reason.starts_with("restarts after its backoff, in 42 s; then fits x86"),
        "{reason}"
    );
}

#[test]
fn a_framework_behind_others_in_drf_is_told_who_goes_first() {
    let mut m = master();
    join(&mut m, 0, advert("a", res(4.0, 4096.0), Attributes::new()));
    let heavy = subscribe(&mut m, 0, info("heavy", "default", 1.0));
    let light = subscribe(&mut m, 0, info("light", "default", 1.0));
    let actions = step(&mut m, 0);
    // `heavy` runs a big task; `light` declines what it gets and waits.
    let offer = offers_to(&actions, &heavy).remove(0);
    call(
        &mut m,
        1,
        &heavy,
        accept(&[&offer], vec![task("big", res(3.0, 3072.0))]),
    )
    .unwrap();
    for offer in offers_to(&actions, &light) {
        call(&mut m, 1, &light, decline(&offer.offer_id, 0.0)).unwrap();
    }
    step(&mut m, 2);
    let (_, facts) = m.placement_facts(Millis(3), WallClock::MASTER, &heavy, &needs(0.5, ""));
    let facts = facts.unwrap();
    assert!(facts.dominant_share > 0.7, "{facts:?}");
    assert_eq!(facts.ahead.len(), 1, "{facts:?}");
    assert_eq!(facts.ahead[0].name, "light");
}
