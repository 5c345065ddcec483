//! Random event sequences against the master's invariants: per agent free + offered +
//! used == total, nothing offered twice, a terminal task frees its resources once.

use std::collections::BTreeSet;

use master::{Action, Master, MasterConfig, Millis, ReclaimConfig};
use proptest::prelude::*;
use proto::{Attributes, Call, Event, FrameworkId, Offer, OfferId, Resources, TaskState};

use crate::common::*;

#[derive(Clone, Debug)]
enum Op {
    Advert {
        agent: u8,
        cpus: u8,
        mem: u8,
        ports: bool,
    },
    AgentLost {
        agent: u8,
    },
    Subscribe {
        role: u8,
    },
    /// Accept some of a framework's offers, launching tasks of `size` eighths of each.
    Accept {
        fw: u8,
        offers: u8,
        size: u8,
        tasks: u8,
    },
    Decline {
        fw: u8,
        refuse_s: u8,
    },
    Suppress {
        fw: u8,
    },
    Revive {
        fw: u8,
    },
    /// A status for the n-th live task (terminal or not), possibly sent twice.
    Status {
        task: u8,
        terminal: bool,
        twice: bool,
    },
    Kill {
        task: u8,
    },
    Disconnect {
        fw: u8,
    },
    Teardown {
        fw: u8,
    },
    Advance {
        ms: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4, 1u8..9, 1u8..9, any::<bool>()).prop_map(|(agent, cpus, mem, ports)| Op::Advert {
            agent,
            cpus,
            mem,
            ports
        }),
        (0u8..4).prop_map(|agent| Op::AgentLost { agent }),
        (0u8..3).prop_map(|role| Op::Subscribe { role }),
        (0u8..4, 1u8..4, 1u8..9, 0u8..4).prop_map(|(fw, offers, size, tasks)| Op::Accept {
            fw,
            offers,
            size,
            tasks
        }),
        (0u8..4, 0u8..3).prop_map(|(fw, refuse_s)| Op::Decline { fw, refuse_s }),
        (0u8..4).prop_map(|fw| Op::Suppress { fw }),
        (0u8..4).prop_map(|fw| Op::Revive { fw }),
        (0u8..8, any::<bool>(), any::<bool>()).prop_map(|(task, terminal, twice)| Op::Status {
            task,
            terminal,
            twice
        }),
        (0u8..8).prop_map(|task| Op::Kill { task }),
        (0u8..4).prop_map(|fw| Op::Disconnect { fw }),
        (0u8..4).prop_map(|fw| Op::Teardown { fw }),
        (0u16..3000).prop_map(|ms| Op::Advance { ms }),
    ]
}

/// The frameworks' and agents' side of the conversation, as far as the test needs it.
#[derive(Default)]
struct World {
    now: u64,
    frameworks: Vec<FrameworkId>,
    held: Vec<Offer>,
    ever_offered: BTreeSet<OfferId>,
    tasks: u64,
    uuid: u128,
}

impl World {
    fn take(&mut self, m: &mut Master) {
        m.handle_timeout(Millis(self.now));
        for action in drain(m) {
            match action {
                Action::SendEvent {
                    event: Event::Offers { offers },
                    ..
                } => {
                    for o in offers {
                        assert!(
                            self.ever_offered.insert(o.offer_id.clone()),
                            "offer id {} reused",
                            o.offer_id
                        );
                        self.held.push(o);
                    }
                }
                Action::SendEvent {
                    event: Event::Rescind { offer_id },
                    ..
                } => self.held.retain(|o| o.offer_id != offer_id),
                _ => {}
            }
        }
    }

    fn fw(&self, i: u8) -> Option<FrameworkId> {
        (!self.frameworks.is_empty())
            .then(|| self.frameworks[i as usize % self.frameworks.len()].clone())
    }

    fn apply(&mut self, m: &mut Master, op: Op) {
        let now = self.now;
        match op {
            Op::Advert {
                agent,
                cpus,
                mem,
                ports,
            } => {
                let mut total = res(cpus as f64, mem as f64 * 512.0);
                if ports {
                    total = total
                        .with_range("ports", 31000, 31009)
                        .with_set_item("gpus", "gpu:0");
                }
                let mut a = advert(&format!("a{agent}"), total, Attributes::new());
                a.seq = now + 2;
                m.handle_agent_advert(Millis(now), a);
            }
            Op::AgentLost { agent } => {
                m.handle_agent_lost(Millis(now), &format!("a{agent}").as_str().into())
            }
            Op::Subscribe { role } => {
                let fw = subscribe(m, now, info("p", &format!("r{role}"), 1.0));
                self.frameworks.push(fw);
            }
            Op::Accept {
                fw,
                offers,
                size,
                tasks,
            } => {
                let Some(fw) = self.fw(fw) else { return };
                let mine: Vec<Offer> = self
                    .held
                    .iter()
                    .filter(|o| o.framework_id == fw)
                    .take(offers as usize)
                    .cloned()
                    .collect();
                let mut specs = Vec::new();
                for o in &mine {
                    for _ in 0..tasks {
                        self.tasks += 1;
                        let cpus = o.resources.scalar("cpus").units() * size as f64
                            / 8.0
                            / tasks.max(1) as f64;
                        specs.push(task(
                            &format!("t{}", self.tasks),
                            Resources::new().with_scalar("cpus", (cpus * 1000.0).floor() / 1000.0),
                        ));
                    }
                }
                let refs: Vec<&Offer> = mine.iter().collect();
                // Refused or not, the books must balance; a refusal keeps the offers held.
                if call(m, now, &fw, accept(&refs, specs)).is_ok() {
                    self.held.retain(|o| !mine.contains(o));
                }
            }
            Op::Decline { fw, refuse_s } => {
                let Some(fw) = self.fw(fw) else { return };
                if let Some(pos) = self.held.iter().position(|o| o.framework_id == fw) {
                    let o = self.held.remove(pos);
                    let _ = call(m, now, &fw, decline(&o.offer_id, refuse_s as f64));
                }
            }
            Op::Suppress { fw } => {
                if let Some(fw) = self.fw(fw) {
                    let _ = call(m, now, &fw, Call::Suppress);
                }
            }
            Op::Revive { fw } => {
                if let Some(fw) = self.fw(fw) {
                    let _ = call(m, now, &fw, Call::Revive);
                }
            }
            Op::Status {
                task,
                terminal,
                twice,
            } => {
                let live = m.tasks_view();
                if live.is_empty() {
                    return;
                }
                let t = &live[task as usize % live.len()];
                let state = if terminal {
                    TaskState::Finished
                } else {
                    TaskState::Running
                };
                self.uuid += 1;
                let s = status(
                    &t.task_id.0,
                    &t.framework_id,
                    &t.agent_id.0,
                    state,
                    self.uuid,
                );
                m.handle_status(Millis(now), s.clone());
                if twice {
                    m.handle_status(Millis(now), s);
                }
            }
            Op::Kill { task } => {
                let live = m.tasks_view();
                if let Some(t) = live.get(task as usize % live.len().max(1)) {
                    let _ = call(
                        m,
                        now,
                        &t.framework_id,
                        Call::Kill {
                            task_id: t.task_id.clone(),
                        },
                    );
                }
            }
            Op::Disconnect { fw } => {
                if let Some(fw) = self.fw(fw) {
                    m.handle_framework_disconnected(Millis(now), &fw);
                    self.held.retain(|o| o.framework_id != fw);
                }
            }
            Op::Teardown { fw } => {
                if let Some(fw) = self.fw(fw)
                    && call(m, now, &fw, Call::Teardown).is_ok()
                {
                    self.held.retain(|o| o.framework_id != fw);
                }
            }
            Op::Advance { ms } => self.now += ms as u64,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_event_sequences_keep_the_books_balanced(ops in proptest::collection::vec(op(), 1..60)) {
        let config = MasterConfig {
            offer_timeout_ms: Some(2_000),
            reclaim: Some(ReclaimConfig { starvation_ms: 1_000, grace_ms: 500, check_interval_ms: 500 }),
            ..MasterConfig::default()
        };
        let mut m = Master::new(config, 3);
        let mut world = World::default();
        for op in ops {
            world.apply(&mut m, op);
            world.take(&mut m);
            prop_assert_eq!(m.check_invariants(), Ok(()));
            // Every offer the test holds is still outstanding, and outstanding offers
            // never share resources (checked by the invariants' sums).
            let outstanding: BTreeSet<OfferId> = m.offers_view().into_iter().map(|o| o.offer_id).collect();
            for o in &world.held {
                prop_assert!(outstanding.contains(&o.offer_id), "offer {} vanished without a rescind", o.offer_id);
            }
        }
    }
}
