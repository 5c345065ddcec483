//! Reclaim converges: a framework that arrives on a full cluster gets its fair share back,
//! nobody is pushed below theirs, and the kills stop.

use std::collections::BTreeMap;

use master::{Action, Master, MasterConfig, Millis, ReclaimConfig};
use proto::{Attributes, Event, FrameworkId, TaskState};

use crate::common::*;

/// Greedy elastic frameworks (each launches as many 1-cpu tasks as fit in every offer)
/// and agents that report a kill as done at once.
struct Cluster {
    m: Master,
    now: u64,
    next_task: u64,
    kills: Vec<(u64, FrameworkId)>,
    notices: usize,
    owner: BTreeMap<String, FrameworkId>,
}

impl Cluster {
    fn run_until(&mut self, until: u64, mut observe: impl FnMut(&Master)) {
        while self.now <= until {
            let actions = step(&mut self.m, self.now);
            self.react(actions);
            observe(&self.m);
            self.now += 250;
        }
    }

    fn react(&mut self, actions: Vec<Action>) {
        let mut queue = actions;
        while !queue.is_empty() {
            for action in std::mem::take(&mut queue) {
                match action {
                    Action::SendEvent {
                        framework_id,
                        event: Event::Offers { offers },
                    } => {
                        for o in offers {
                            let n = o.resources.scalar("cpus").units().floor() as u64;
                            let tasks = (0..n)
                                .map(|_| {
                                    self.next_task += 1;
                                    task(&format!("t{}", self.next_task), res(1.0, 1024.0))
                                })
                                .collect();
                            call(&mut self.m, self.now, &framework_id, accept(&[&o], tasks))
                                .unwrap();
                        }
                    }
                    Action::LaunchTask {
                        framework_id, task, ..
                    } => {
                        self.owner.insert(task.task_id.to_string(), framework_id);
                    }
                    Action::KillTask {
                        task_id, agent_id, ..
                    } => {
                        let fw = self.owner[task_id.as_str()].clone();
                        self.kills.push((self.now, fw.clone()));
                        self.m.handle_status(
                            Millis(self.now),
                            status(&task_id.0, &fw, &agent_id.0, TaskState::Killed, 1),
                        );
                    }
                    Action::ReclaimNotice { .. } => self.notices += 1,
                    _ => {}
                }
            }
            queue = drain(&mut self.m);
        }
    }

    fn tasks_of(&self, fw: &FrameworkId) -> usize {
        self.m
            .tasks_view()
            .iter()
            .filter(|t| &t.framework_id == fw)
            .count()
    }
}

#[test]
fn reclaim_converges_to_fair_shares_without_thrashing() {
    let reclaim = ReclaimConfig {
        starvation_ms: 5_000,
        grace_ms: 1_000,
        check_interval_ms: 1_000,
    };
    let config = MasterConfig {
        offer_timeout_ms: Some(10_000),
        reclaim: Some(reclaim),
        ..MasterConfig::default()
    };
    let mut c = Cluster {
        m: Master::new(config, 11),
        now: 0,
        next_task: 0,
        kills: Vec::new(),
        notices: 0,
        owner: BTreeMap::new(),
    };
    join(
        &mut c.m,
        0,
        advert("a1", res(8.0, 8192.0), Attributes::new()),
    );
    let early = subscribe(&mut c.m, 0, info("early", "batch", 1.0));
    c.run_until(1_000, |_| {});
    assert_eq!(c.tasks_of(&early), 8, "alone, it takes the whole cluster");

    let late = subscribe(&mut c.m, c.now, info("late", "service", 1.0));
    let mut early_min = usize::MAX;
    c.run_until(60_000, |m| {
        let n = m
            .tasks_view()
            .iter()
            .filter(|t| t.framework_id == early)
            .count();
        early_min = early_min.min(n);
    });
    assert_eq!(
        (c.tasks_of(&early), c.tasks_of(&late)),
        (4, 4),
        "both at their fair share"
    );
    assert_eq!(
        c.kills.len(),
        4,
        "exactly the excess was reclaimed: {:?}",
        c.kills
    );
    assert_eq!(c.notices, 4, "every victim's framework was told first");
    assert!(c.kills.iter().all(|(_, fw)| fw == &early));
    assert_eq!(early_min, 4, "never reclaimed below the fair share");

    // Converged: another ten minutes change nothing.
    let kills_before = c.kills.len();
    c.run_until(660_000, |_| {});
    assert_eq!(c.kills.len(), kills_before);
    assert_eq!((c.tasks_of(&early), c.tasks_of(&late)), (4, 4));
    c.m.check_invariants().unwrap();
}

#[test]
fn weighted_roles_get_weighted_fair_shares() {
    let reclaim = ReclaimConfig {
        starvation_ms: 5_000,
        grace_ms: 1_000,
        check_interval_ms: 1_000,
    };
    let config = MasterConfig {
        offer_timeout_ms: Some(10_000),
        reclaim: Some(reclaim),
        ..MasterConfig::default()
    };
    let mut c = Cluster {
        m: Master::new(config, 5),
        now: 0,
        next_task: 0,
        kills: Vec::new(),
        notices: 0,
        owner: BTreeMap::new(),
    };
    join(
        &mut c.m,
        0,
        advert("a1", res(12.0, 12288.0), Attributes::new()),
    );
    let light = subscribe(&mut c.m, 0, info("light", "light", 1.0));
    c.run_until(1_000, |_| {});
    let heavy = subscribe(&mut c.m, c.now, info("heavy", "heavy", 2.0));
    c.run_until(120_000, |_| {});
    assert_eq!(
        (c.tasks_of(&light), c.tasks_of(&heavy)),
        (4, 8),
        "weight 2 gets two thirds"
    );
    let kills = c.kills.len();
    c.run_until(300_000, |_| {});
    assert_eq!(c.kills.len(), kills, "no kills after convergence");
}
