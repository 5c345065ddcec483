//! `spread.wasm`: one copy of a WASM task on every agent that has the required attribute
//! (a daemon-set: a sensor reader on every device with `has=camera`). A copy that ends is
//! started again on the next offer of its agent.
//!
//! Config (`--config FILE`, `key = value` lines):
//! ```text
//! name = sampler           # task ids are FRAMEWORK_ID-NAME-AGENT-ATTEMPT
//! constraint = has=camera  # optional: only agents that satisfy it (key=value, key!=value)
//! cpus = 0.1
//! mem = 16                 # MiB
//! module_sha256 = <64 hex>
//! module_size = 12345
//! module_name = p1_sensor.wasm
//! args = --device /dev/sensor0 --samples 10
//! ```

#![no_std]

use core::fmt::Write;

use executor_sdk::{
    Calls, Config, Constraint, Error, Filters, Offer, Scheduler, Seq, TaskStatus, WasmTaskTemplate,
    export_scheduler,
};
use heapless::{String, Vec};

/// Agents one spread covers.
const AGENTS_MAX: usize = 1024;
/// Length of an agent id kept.
const AGENT_ID_BYTES_MAX: usize = 64;
const CONFIG_BYTES_MAX: usize = 4096;
/// How long an agent that does not match, or already runs its copy, is refused.
const REFUSE_SECONDS_NOT_WANTED: f64 = 600.0;
/// How long an agent too small for a copy is refused.
const REFUSE_SECONDS_TOO_SMALL: f64 = 30.0;

struct Spread {
    config: Vec<u8, CONFIG_BYTES_MAX>,
    /// Prefixes task ids, which must be unique in the cluster.
    framework_id: String<AGENT_ID_BYTES_MAX>,
    placed: Placed,
}

/// Agents that run (or are launching) their copy, and the attempt counter.
struct Placed {
    agents: Vec<String<AGENT_ID_BYTES_MAX>, AGENTS_MAX>,
    launches: u64,
}

struct Template<'c> {
    constraint: Option<Constraint<'c>>,
    task: WasmTaskTemplate<'c>,
}

fn template(config: &[u8]) -> Result<Template<'_>, Error> {
    let c = Config::parse(config)?;
    let constraint = match c.get("constraint") {
        Some(c) => Some(Constraint::parse(c)?),
        None => None,
    };
    Ok(Template {
        constraint,
        task: WasmTaskTemplate::from_config(&c, "spread")?,
    })
}

impl Scheduler for Spread {
    fn start(config: &[u8], _calls: &mut Calls<'_>) -> Result<Spread, Error> {
        template(config)?;
        let config = Vec::from_slice(config).map_err(|_| Error::Malformed)?;
        Ok(Spread {
            config,
            framework_id: String::new(),
            placed: Placed {
                agents: Vec::new(),
                launches: 0,
            },
        })
    }

    fn subscribed(&mut self, framework_id: &str, _calls: &mut Calls<'_>) {
        self.framework_id = String::try_from(framework_id).unwrap_or_default();
    }

    fn offers(&mut self, offers: &Seq<'_, Offer<'_>>, calls: &mut Calls<'_>) {
        let Ok(template) = template(&self.config) else {
            return;
        };
        for offer in offers.iter() {
            let matches = template
                .constraint
                .is_none_or(|c| c.holds_for(&offer.attributes));
            if !matches || self.placed.has(offer.agent_id) {
                calls.decline(
                    &[offer.offer_id],
                    Filters {
                        refuse_seconds: REFUSE_SECONDS_NOT_WANTED,
                    },
                );
                continue;
            }
            if !offer.resources.fits_scalars(&template.task.resources) {
                calls.decline(
                    &[offer.offer_id],
                    Filters {
                        refuse_seconds: REFUSE_SECONDS_TOO_SMALL,
                    },
                );
                continue;
            }
            let mut task_id: String<256> = String::new();
            let attempt = self.placed.launches;
            if write!(
                task_id,
                "{}-{}-{}-{}",
                self.framework_id, template.task.name, offer.agent_id, attempt
            )
            .is_err()
                || !self.placed.add(offer.agent_id)
            {
                calls.decline(&[offer.offer_id], Filters::default());
                continue;
            }
            self.placed.launches += 1;
            let task = template.task.spec(&task_id);
            calls.launch(&[offer.offer_id], &[task], Filters::default());
        }
    }

    fn update(&mut self, status: &TaskStatus<'_>, calls: &mut Calls<'_>) {
        if status.state.is_terminal() && self.placed.remove(status.agent_id) {
            // The agent was refused while it ran its copy; ask for offers again.
            calls.revive();
        }
    }
}

impl Placed {
    fn has(&self, agent_id: &str) -> bool {
        self.agents.iter().any(|a| a.as_str() == agent_id)
    }

    fn add(&mut self, agent_id: &str) -> bool {
        let Ok(id) = String::try_from(agent_id) else {
            return false;
        };
        self.agents.push(id).is_ok()
    }

    fn remove(&mut self, agent_id: &str) -> bool {
        let before = self.agents.len();
        self.agents.retain(|a| a.as_str() != agent_id);
        self.agents.len() != before
    }
}

export_scheduler!(Spread);

#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}
