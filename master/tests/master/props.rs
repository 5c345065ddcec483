//! Random event sequences against the master's invariants: per agent free + offered +
//! used == total, nothing offered twice, a terminal task frees its resources once.

use std::collections::{BTreeMap, BTreeSet};

use master::{Action, Master, MasterConfig, Millis, ReclaimConfig};
use proptest::prelude::*;
use proto::operator::TaskRow;
use proto::resources::add_quantities;
use proto::{
    AdvertTask, Attributes, Call, Event, FrameworkId, Offer, OfferId, Resources, TaskState,
};

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
    /// An agent declared lost comes back still running the tasks it had.
    AgentReturns {
        agent: u8,
    },
    /// The master restarts: a new one is rebuilt from adverts and re-subscriptions.
    RestartMaster,
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
        (0u8..4).prop_map(|agent| Op::AgentReturns { agent }),
        Just(Op::RestartMaster),
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
    /// Frameworks the test tore down: they do not come back after a restart.
    torn_down: BTreeSet<FrameworkId>,
    /// Agents declared lost, with their total and the tasks they keep running.
    partitioned: BTreeMap<String, (Resources, Vec<TaskRow>)>,
    restarts: u64,
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

    /// How an agent lists a task it runs in its advert.
    fn listed(&mut self, t: &TaskRow) -> AdvertTask {
        self.uuid += 1;
        // A task the master declared lost still runs on its agent.
        let state = if t.state.is_terminal() {
            TaskState::Running
        } else {
            t.state
        };
        AdvertTask {
            status: status(
                &t.task_id.0,
                &t.framework_id,
                &t.agent_id.0,
                state,
                self.uuid,
            ),
            name: t.name.clone(),
            resources: t.resources.clone(),
        }
    }

    /// Replaces `m` with a new master (new incarnation) that learns everything from the
    /// agents' adverts and the frameworks' re-subscriptions, and checks that it rebuilt
    /// the same allocations: per framework, its tasks' quantities; per agent, what is used.
    fn restart(&mut self, m: &mut Master) {
        let now = self.now;
        let tasks_of = |m: &Master| {
            let mut per_fw: BTreeMap<FrameworkId, BTreeMap<String, u64>> = BTreeMap::new();
            for t in m.tasks_view() {
                add_quantities(
                    per_fw.entry(t.framework_id).or_default(),
                    &t.resources.quantities(),
                );
            }
            per_fw
        };
        let used_of = |m: &Master| -> BTreeMap<_, _> {
            m.agents_view()
                .into_iter()
                .map(|a| (a.agent_id, a.used))
                .collect()
        };
        let (tasks_before, used_before) = (tasks_of(m), used_of(m));
        self.restarts += 1;
        let config = MasterConfig {
            incarnation: m.config().incarnation + self.restarts * 1000,
            ..m.config().clone()
        };
        let mut new = Master::new(config, 3 + self.restarts);
        let tasks = m.tasks_view();
        for a in m.agents_view() {
            let mut ad = advert(&a.agent_id.0, a.total.clone(), a.attributes.clone());
            ad.seq = now + 2;
            ad.tasks = tasks
                .iter()
                .filter(|t| t.agent_id == a.agent_id)
                .map(|t| self.listed(t))
                .collect();
            join(&mut new, now, ad);
        }
        let mut back = Vec::new();
        for f in m.frameworks_view() {
            if self.torn_down.contains(&f.framework_id) {
                continue;
            }
            let mut i = info(&f.name, &f.role, f.role_weight);
            i.framework_id = Some(f.framework_id.clone());
            let reply = new.handle_call(
                Millis(now),
                &proto::Principal::anonymous(),
                proto::FrameworkCall {
                    framework_id: Some(f.framework_id.clone()),
                    call: Call::Subscribe { info: i },
                },
            );
            assert!(reply.is_ok(), "re-subscribe refused: {reply:?}");
            new.handle_framework_token(Millis(now), &f.framework_id, true);
            back.push(f.framework_id);
        }
        assert_eq!(new.check_invariants(), Ok(()));
        assert_eq!(
            used_of(&new),
            used_before,
            "agents' used resources differ after the restart"
        );
        let tasks_after = tasks_of(&new);
        let views: BTreeMap<FrameworkId, _> = new
            .frameworks_view()
            .into_iter()
            .map(|f| (f.framework_id.clone(), f))
            .collect();
        for id in &back {
            let want = tasks_before.get(id).cloned().unwrap_or_default();
            assert_eq!(
                tasks_after.get(id).cloned().unwrap_or_default(),
                want,
                "tasks of {id}"
            );
            // No offers yet: the allocation is exactly the tasks'.
            let want_units: BTreeMap<String, f64> = (want.iter())
                .map(|(kind, q)| (kind.clone(), *q as f64 / 1000.0))
                .collect();
            assert_eq!(
                views.get(id).map(|v| v.allocation.clone()),
                Some(want_units),
                "allocation of {id}"
            );
        }
        *m = new;
        self.held.clear();
        self.partitioned.clear();
        // A framework subscribing afresh never gets an id the earlier masters issued.
        let fresh = subscribe(m, now, info("new", "r0", 1.0));
        assert!(
            !self.frameworks.contains(&fresh),
            "framework id {fresh} reused"
        );
        self.frameworks.push(fresh);
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
                join(m, now, a);
            }
            Op::AgentLost { agent } => {
                let id = format!("a{agent}");
                if let Some(a) = m
                    .agents_view()
                    .into_iter()
                    .find(|a| a.agent_id.as_str() == id)
                {
                    let running = m
                        .tasks_view()
                        .into_iter()
                        .filter(|t| t.agent_id.as_str() == id)
                        .collect();
                    self.partitioned.insert(id.clone(), (a.total, running));
                }
                m.handle_agent_lost(Millis(now), &id.as_str().into())
            }
            Op::AgentReturns { agent } => {
                let id = format!("a{agent}");
                if let Some((total, running)) = self.partitioned.remove(&id) {
                    let mut a = advert(&id, total, Attributes::new());
                    a.seq = now + 2;
                    a.tasks = running.iter().map(|t| self.listed(t)).collect();
                    join(m, now, a);
                }
            }
            Op::RestartMaster => self.restart(m),
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
                    self.torn_down.insert(fw);
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

/// A cluster with agents, frameworks and running tasks, as the start of a sequence.
fn busy_cluster() -> Vec<Op> {
    let mut ops = Vec::new();
    for agent in 0..4 {
        ops.push(Op::Advert {
            agent,
            cpus: 8,
            mem: 8,
            ports: agent % 2 == 0,
        });
    }
    for role in 0..3 {
        ops.push(Op::Subscribe { role });
    }
    for fw in 0..3 {
        ops.push(Op::Accept {
            fw,
            offers: 3,
            size: 4,
            tasks: 2,
        });
    }
    ops
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Restarts in the middle of random traffic on a busy cluster: the rebuilt master
    /// balances its books and holds the same allocations (checked inside the restart).
    #[test]
    fn a_restarted_master_rebuilds_the_same_allocations(ops in proptest::collection::vec(op(), 1..40), at in 0usize..40) {
        let config = MasterConfig {
            offer_timeout_ms: Some(2_000),
            reclaim: Some(ReclaimConfig { starvation_ms: 1_000, grace_ms: 500, check_interval_ms: 500 }),
            ..MasterConfig::default()
        };
        let mut m = Master::new(config, 5);
        let mut world = World::default();
        let mut ops = ops;
        ops.insert(at.min(ops.len()), Op::RestartMaster);
        ops.push(Op::RestartMaster);
        for op in busy_cluster().into_iter().chain(ops) {
            world.apply(&mut m, op);
            world.take(&mut m);
            prop_assert_eq!(m.check_invariants(), Ok(()));
        }
        prop_assert!(world.restarts >= 2);
    }
}
