//! `batch.wasm`: runs `count` copies of one WASM task and retries the ones that fail, up
//! to `retries_max` times each; suppresses offers once every copy has finished or given up.
//!
//! Config (`--config FILE`, `key = value` lines):
//! ```text
//! name = resize            # task name (task ids are FRAMEWORK_ID-NAME-INDEX-ATTEMPT)
//! count = 10               # copies to run
//! cpus = 0.5               # per copy
//! mem = 64                 # MiB per copy
//! module_sha256 = <64 hex> # the task module, as stored in the master's module store
//! module_size = 12345
//! module_name = resize.wasm
//! args = --quality 80      # optional, split on spaces
//! retries_max = 3          # optional, default 3
//! ```

#![no_std]

use core::fmt::Write;

use executor_sdk::{
    Calls, Config, Error, Filters, Offer, Resources, Scheduler, Seq, TaskSpec, TaskState,
    TaskStatus, WasmTaskTemplate,
};
use heapless::{String, Vec};

/// Copies one batch may run.
const COUNT_MAX: usize = 1024;
/// Tasks launched on one offer.
const TASKS_PER_OFFER_MAX: usize = 16;
/// Length of a framework id kept.
const FRAMEWORK_ID_BYTES_MAX: usize = 64;
/// Length of a task id.
const TASK_ID_BYTES_MAX: usize = 160;
/// Bytes of config kept.
const CONFIG_BYTES_MAX: usize = 4096;
/// How long an offer that fits nothing is refused.
const REFUSE_SECONDS_NOTHING_FITS: f64 = 5.0;
/// How long offers are refused once the batch is done.
const REFUSE_SECONDS_DONE: f64 = 3600.0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum CopyState {
    Pending,
    Launched,
    Finished,
    GaveUp,
}

#[derive(Clone, Copy)]
struct Copy {
    state: CopyState,
    attempts: u32,
}

pub struct Batch {
    /// Kept so that offers can borrow the task template from it.
    config: Vec<u8, CONFIG_BYTES_MAX>,
    /// Prefixes task ids, which must be unique in the cluster.
    framework_id: String<FRAMEWORK_ID_BYTES_MAX>,
    run: Run,
}

/// The copies' progress.
struct Run {
    copies: Vec<Copy, COUNT_MAX>,
    retries_max: u32,
    suppressed: bool,
}

/// The task settings read from the config (borrowing it).
fn template(config: &[u8]) -> Result<WasmTaskTemplate<'_>, Error> {
    WasmTaskTemplate::from_config(&Config::parse(config)?, "batch")
}

impl Scheduler for Batch {
    fn start(config: &[u8], _calls: &mut Calls<'_>) -> Result<Batch, Error> {
        template(config)?;
        let c = Config::parse(config)?;
        let count = c.get_u64("count").ok_or(Error::Malformed)? as usize;
        let mut copies = Vec::new();
        for _ in 0..count {
            copies
                .push(Copy {
                    state: CopyState::Pending,
                    attempts: 0,
                })
                .map_err(|_| Error::Malformed)?;
        }
        let retries_max = c.get_u64("retries_max").unwrap_or(3) as u32;
        let config = Vec::from_slice(config).map_err(|_| Error::Malformed)?;
        Ok(Batch {
            config,
            framework_id: String::new(),
            run: Run {
                copies,
                retries_max,
                suppressed: false,
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
        let run = &mut self.run;
        for offer in offers.iter() {
            let ids = run.pack(&self.framework_id, &template, &offer.resources);
            if ids.is_empty() {
                let refuse_seconds = if run.is_done() {
                    REFUSE_SECONDS_DONE
                } else {
                    REFUSE_SECONDS_NOTHING_FITS
                };
                calls.decline(&[offer.offer_id], Filters { refuse_seconds });
                continue;
            }
            let mut tasks: Vec<TaskSpec<'_>, TASKS_PER_OFFER_MAX> = Vec::new();
            for id in &ids {
                let _ = tasks.push(template.spec(id));
            }
            calls.launch(&[offer.offer_id], &tasks, Filters::default());
        }
        run.suppress_when_done(calls);
    }

    fn update(&mut self, status: &TaskStatus<'_>, calls: &mut Calls<'_>) {
        self.run.update(status, calls);
    }
}

impl Run {
    fn update(&mut self, status: &TaskStatus<'_>, calls: &mut Calls<'_>) {
        let Some(index) = parse_index(status.task_id) else {
            return;
        };
        let retries_max = self.retries_max;
        let Some(copy) = self.copies.get_mut(index) else {
            return;
        };
        if copy.state != CopyState::Launched || !status.state.is_terminal() {
            return;
        }
        copy.state = match status.state {
            TaskState::Finished => CopyState::Finished,
            _ if copy.attempts > retries_max => CopyState::GaveUp,
            _ => CopyState::Pending,
        };
        if copy.state == CopyState::Pending && self.suppressed {
            self.suppressed = false;
            calls.revive();
        }
        self.suppress_when_done(calls);
    }

    /// Marks as many pending copies launched as fit in `offered`, returning their task ids.
    fn pack(
        &mut self,
        framework_id: &str,
        template: &WasmTaskTemplate<'_>,
        offered: &Resources<'_>,
    ) -> Vec<String<TASK_ID_BYTES_MAX>, TASKS_PER_OFFER_MAX> {
        let mut left = offered.clone();
        let mut ids = Vec::new();
        for (index, copy) in self.copies.iter_mut().enumerate() {
            if ids.is_full() || !left.fits_scalars(&template.resources) {
                break;
            }
            if copy.state != CopyState::Pending {
                continue;
            }
            let mut id = String::new();
            if write!(
                id,
                "{}-{}-{}-{}",
                framework_id, template.name, index, copy.attempts
            )
            .is_err()
            {
                continue;
            }
            left.subtract_scalars(&template.resources);
            copy.state = CopyState::Launched;
            copy.attempts += 1;
            let _ = ids.push(id);
        }
        ids
    }

    fn is_done(&self) -> bool {
        self.copies
            .iter()
            .all(|c| matches!(c.state, CopyState::Finished | CopyState::GaveUp))
    }

    fn suppress_when_done(&mut self, calls: &mut Calls<'_>) {
        let nothing_pending = self.copies.iter().all(|c| c.state != CopyState::Pending);
        if nothing_pending && !self.suppressed {
            self.suppressed = true;
            calls.suppress();
        }
    }
}

/// The copy index in a task id `FRAMEWORK_ID-NAME-INDEX-ATTEMPT`.
fn parse_index(task_id: &str) -> Option<usize> {
    let mut parts = task_id.rsplitn(3, '-');
    let _attempt = parts.next()?;
    parts.next()?.parse().ok()
}

// Exported only in the module, so that benchmarks can run the same logic natively.
#[cfg(target_arch = "wasm32")]
executor_sdk::export_scheduler!(Batch);

#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}
