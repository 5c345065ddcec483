//! `tiers.wasm`: strict priority tiers for edge fleets, with battery-powered devices kept
//! for the top tier. See README.md for the policy.

#![no_std]

use executor_sdk::types::{QUANTITY_KINDS_MAX, Quantities};
use executor_sdk::{AllocationInput, Allocator, Decisions, export_allocator};
use heapless::Vec;

const FRAMEWORKS_MAX: usize = 1024;
const AGENTS_MAX: usize = 16_384;
/// Agents with this attribute are offered only to the highest tier present.
const BATTERY_KEY: &str = "power";
const BATTERY_VALUE: &str = "battery";

struct Client {
    /// The weight of its role: higher is served first, strictly.
    tier: f64,
    weight: f64,
    seq: u64,
    /// Allocation over the cluster's resource kinds (the order of `total`).
    alloc: [u64; QUANTITY_KINDS_MAX],
    share: f64,
    active: bool,
}

#[derive(Default)]
struct Tiers {
    clients: Vec<Client, FRAMEWORKS_MAX>,
}

impl Allocator for Tiers {
    fn allocate(&mut self, input: &AllocationInput<'_>, decisions: &mut Decisions<'_>) {
        let (Ok(agents), Ok(frameworks)) = (
            input.agents.indexed::<AGENTS_MAX>(),
            input.frameworks.indexed::<FRAMEWORKS_MAX>(),
        ) else {
            return decisions.fail();
        };
        if self.build(input).is_none() {
            return decisions.fail();
        }
        // Battery devices are kept for the highest tier present, wanting offers or not, so
        // that they stay asleep while only lower tiers have work.
        let top_tier = self.clients.iter().map(|c| c.tier).fold(f64::MIN, f64::max);
        for agent_id in input.candidates.iter() {
            let Some(agent) = agents.find_by_key(agent_id).and_then(|i| agents.get(i)) else {
                continue;
            };
            if agent.free.is_empty() {
                continue;
            }
            let battery = agent.attributes.has(BATTERY_KEY, BATTERY_VALUE);
            let eligible = |idx: usize, c: &Client| {
                c.active
                    && (!battery || c.tier >= top_tier)
                    && frameworks
                        .get(idx)
                        .is_some_and(|fw| fw.may_offer(&agent, input.now_ms))
            };
            let Some(chosen) = self.best(eligible) else {
                continue;
            };
            let Some(framework_id) = frameworks.key(chosen) else {
                continue;
            };
            let client = &mut self.clients[chosen];
            add_dense(&mut client.alloc, &agent.free.quantities(), &input.total);
            client.share = share(&client.alloc, &input.total);
            decisions.offer(agent_id, framework_id);
        }
    }
}

impl Tiers {
    fn build(&mut self, input: &AllocationInput<'_>) -> Option<()> {
        self.clients.clear();
        for fw in input.frameworks.iter() {
            let mut alloc = [0; QUANTITY_KINDS_MAX];
            add_dense(&mut alloc, &fw.allocation, &input.total);
            let client = Client {
                tier: input.role_weight(fw.role),
                weight: fw.weight,
                seq: fw.subscribed_seq,
                share: share(&alloc, &input.total),
                alloc,
                active: fw.wants_offers && fw.weight > 0.0,
            };
            self.clients.push(client).ok()?;
        }
        Some(())
    }

    /// The eligible framework in the highest tier, then with the lowest share per weight,
    /// then subscribed first.
    fn best(&self, eligible: impl Fn(usize, &Client) -> bool) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (idx, c) in self.clients.iter().enumerate() {
            if !eligible(idx, c) {
                continue;
            }
            let better = match best {
                None => true,
                Some(b) => {
                    let o = &self.clients[b];
                    let (mine, theirs) = (c.share / c.weight, o.share / o.weight);
                    c.tier > o.tier
                        || (c.tier == o.tier
                            && (mine < theirs || (mine == theirs && c.seq < o.seq)))
                }
            };
            if better {
                best = Some(idx);
            }
        }
        best
    }
}

/// Adds quantities `q` into the dense allocation over `total`'s kinds (others ignored).
fn add_dense(alloc: &mut [u64; QUANTITY_KINDS_MAX], q: &Quantities<'_>, total: &Quantities<'_>) {
    for (name, v) in q.iter() {
        if let Ok(k) = total.binary_search_by(|(t, _)| (*t).cmp(name)) {
            alloc[k] = alloc[k].saturating_add(*v);
        }
    }
}

/// Dominant share of a dense allocation.
fn share(alloc: &[u64; QUANTITY_KINDS_MAX], total: &Quantities<'_>) -> f64 {
    alloc
        .iter()
        .zip(total.iter())
        .filter(|(_, (_, t))| *t > 0)
        .map(|(a, (_, t))| *a as f64 / *t as f64)
        .fold(0.0, f64::max)
}

export_allocator!(Tiers);

#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}
