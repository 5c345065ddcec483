//! Framework schedulers: the events a scheduler module sees (`proto::Event` plus start and
//! tick), the calls it makes (`proto::Call`), and the [`Scheduler`] trait.

use serde::Serialize;

use crate::types::{Constraint, Filters, Offer, Resources, TaskStatus};
use crate::wire::{Error, Output, Seq, finish, take, take_varint};

/// What the host sends a scheduler module in one call. Mirrors the host's
/// `SchedulerInput` enum: variant 0 `Start { now_ms, config }`, 1 `Event { now_ms, event }`,
/// 2 `Tick { now_ms }`.
#[derive(Debug)]
pub enum SchedulerInput<'a> {
    /// First call of an instance, with the framework's `--config` file bytes.
    Start {
        now_ms: u64,
        config: &'a [u8],
    },
    Event {
        now_ms: u64,
        event: Event<'a>,
    },
    /// Periodic wake-up, so a scheduler can retry or time out without an event.
    Tick {
        now_ms: u64,
    },
}

impl<'a> SchedulerInput<'a> {
    /// Decodes a whole input buffer.
    pub fn decode(input: &'a [u8]) -> Result<SchedulerInput<'a>, Error> {
        let (variant, rest) = take_varint(input)?;
        let (now_ms, rest) = take::<u64>(rest)?;
        let (message, rest) = match variant {
            0 => {
                let (config, rest) = take::<&[u8]>(rest)?;
                (SchedulerInput::Start { now_ms, config }, rest)
            }
            1 => {
                let (event, rest) = Event::take(rest)?;
                (SchedulerInput::Event { now_ms, event }, rest)
            }
            2 => (SchedulerInput::Tick { now_ms }, rest),
            _ => return Err(Error::UnknownVariant),
        };
        finish(rest)?;
        Ok(message)
    }
}

/// `proto::Event`, in the same variant order. Offers stay encoded and decode one at a time.
#[derive(Debug)]
pub enum Event<'a> {
    Subscribed {
        framework_id: &'a str,
        heartbeat_interval_ms: u64,
    },
    Offers {
        offers: Seq<'a, Offer<'a>>,
    },
    Rescind {
        offer_id: &'a str,
    },
    Update {
        status: TaskStatus<'a>,
    },
    Error {
        message: &'a str,
    },
    Heartbeat,
}

impl<'a> Event<'a> {
    /// Takes one event from the front of `input`.
    pub fn take(input: &'a [u8]) -> Result<(Event<'a>, &'a [u8]), Error> {
        let (variant, rest) = take_varint(input)?;
        Ok(match variant {
            0 => {
                let (framework_id, rest) = take::<&str>(rest)?;
                let (heartbeat_interval_ms, rest) = take::<u64>(rest)?;
                (
                    Event::Subscribed {
                        framework_id,
                        heartbeat_interval_ms,
                    },
                    rest,
                )
            }
            1 => {
                let (offers, rest) = Seq::take(rest)?;
                (Event::Offers { offers }, rest)
            }
            2 => {
                let (offer_id, rest) = take::<&str>(rest)?;
                (Event::Rescind { offer_id }, rest)
            }
            3 => {
                let (status, rest) = take::<TaskStatus<'a>>(rest)?;
                (Event::Update { status }, rest)
            }
            4 => {
                let (message, rest) = take::<&str>(rest)?;
                (Event::Error { message }, rest)
            }
            5 => (Event::Heartbeat, rest),
            _ => return Err(Error::UnknownVariant),
        })
    }
}

/// `proto::FrameworkInfo` (only inside [`Call::Subscribe`], which hosted schedulers do not
/// send: the master subscribes them).
#[derive(Clone, Debug, Serialize)]
pub struct FrameworkInfo<'c> {
    pub name: &'c str,
    pub role: &'c str,
    pub weight: f64,
    pub framework_id: Option<&'c str>,
    pub failover_timeout_ms: u64,
    pub constraints: &'c [Constraint<'c>],
    pub min_offer: Resources<'c>,
    pub capabilities: &'c [Capability],
}

/// `proto::Capability`, in the same variant order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Capability {
    /// Runs tasks that use GPUs: offered agents with free GPUs.
    GpuResources,
}

/// `proto::Call`, in the same variant order.
// Built on the stack and serialized at once, never stored: the size of `Subscribe` is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize)]
pub enum Call<'c> {
    Subscribe {
        info: FrameworkInfo<'c>,
    },
    Accept {
        offer_ids: &'c [&'c str],
        operations: &'c [Operation<'c>],
        filters: Filters,
    },
    Decline {
        offer_ids: &'c [&'c str],
        filters: Filters,
    },
    Revive,
    Suppress,
    Kill {
        task_id: &'c str,
    },
    Acknowledge {
        task_id: &'c str,
        status_uuid: u128,
    },
    Reconcile {
        tasks: &'c [&'c str],
    },
    Teardown,
}

/// `proto::Operation`.
#[derive(Clone, Debug, Serialize)]
pub enum Operation<'c> {
    Launch { tasks: &'c [TaskSpec<'c>] },
}

/// `proto::TaskSpec`.
#[derive(Clone, Debug, Serialize)]
pub struct TaskSpec<'c> {
    pub task_id: &'c str,
    pub name: &'c str,
    pub resources: Resources<'c>,
    pub kind: TaskKind<'c>,
    pub limits: TaskLimits,
    pub disconnect: Option<DisconnectPolicy>,
    /// `proto::TaskSpec::replaces`.
    pub replaces: Option<&'c str>,
}

/// `proto::DisconnectPolicy`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct DisconnectPolicy {
    pub restart: RestartPolicy,
    pub backoff: Backoff,
    pub lost_after_ms: Option<u64>,
    pub on_reconnect: OnReconnect,
}

/// `proto::RestartPolicy`, in the same order.
#[derive(Clone, Copy, Debug, Serialize)]
pub enum RestartPolicy {
    Never,
    OnFailure,
    Always,
}

/// `proto::Backoff`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Backoff {
    pub initial_ms: u64,
    pub max_ms: u64,
    pub starts_max: u32,
}

/// `proto::OnReconnect`, in the same order.
#[derive(Clone, Copy, Debug, Serialize)]
pub enum OnReconnect {
    KeepOriginal,
    KeepReplacement,
}

/// `proto::TaskKind`.
#[derive(Clone, Debug, Serialize)]
pub enum TaskKind<'c> {
    Wasm(WasmTask<'c>),
    Oci(OciTask<'c>),
}

/// `proto::WasmTask`; `env` is sorted by name, as a `BTreeMap` is.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WasmTask<'c> {
    pub module: ModuleRef<'c>,
    pub args: &'c [&'c str],
    pub env: &'c [(&'c str, &'c str)],
    pub dirs: &'c [DirGrant<'c>],
    pub net: bool,
}

/// `proto::ModuleRef`: a module by its sha256 (64 lower-case hex digits).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ModuleRef<'c> {
    pub sha256: &'c str,
    pub size_bytes: u64,
    pub name: &'c str,
}

/// `proto::DirGrant`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct DirGrant<'c> {
    pub host: &'c str,
    pub guest: &'c str,
    pub read_only: bool,
}

/// `proto::OciTask`; `env` is sorted by name.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OciTask<'c> {
    pub image: &'c str,
    pub command: &'c [&'c str],
    pub env: &'c [(&'c str, &'c str)],
    pub host_network: bool,
    pub capabilities: &'c [&'c str],
}

/// `proto::TaskLimits`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TaskLimits {
    pub timeout_ms: Option<u64>,
    pub output_bytes_max: u64,
}

impl Default for TaskLimits {
    /// As proto's: no timeout, 1 MiB of output kept.
    fn default() -> TaskLimits {
        TaskLimits {
            timeout_ms: None,
            output_bytes_max: 1 << 20,
        }
    }
}

/// Where a scheduler writes its calls during one event. Calls are encoded into the output
/// buffer at once; when it is full, later calls are dropped and the whole answer is
/// reported to the host as [`Error::OutputFull`] (the host then counts a failure).
pub struct Calls<'o> {
    now_ms: u64,
    out: Output<'o>,
}

impl<'o> Calls<'o> {
    pub fn new(now_ms: u64, out: Output<'o>) -> Calls<'o> {
        Calls { now_ms, out }
    }

    /// The master's clock at this event (milliseconds, monotonic).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Any call.
    pub fn call(&mut self, call: &Call<'_>) {
        // A full buffer is remembered by `Output` and reported when the event returns.
        let _ = self.out.push(call);
    }

    /// Launches `tasks` on the offers (all of one agent); what they do not use returns to
    /// the pool under `filters`.
    pub fn launch(&mut self, offer_ids: &[&str], tasks: &[TaskSpec<'_>], filters: Filters) {
        let operations = [Operation::Launch { tasks }];
        self.call(&Call::Accept {
            offer_ids,
            operations: &operations,
            filters,
        });
    }

    pub fn decline(&mut self, offer_ids: &[&str], filters: Filters) {
        self.call(&Call::Decline { offer_ids, filters });
    }

    pub fn kill(&mut self, task_id: &str) {
        self.call(&Call::Kill { task_id });
    }

    pub fn acknowledge(&mut self, task_id: &str, status_uuid: u128) {
        self.call(&Call::Acknowledge {
            task_id,
            status_uuid,
        });
    }

    /// Stop offers until [`Calls::revive`].
    pub fn suppress(&mut self) {
        self.call(&Call::Suppress);
    }

    pub fn revive(&mut self) {
        self.call(&Call::Revive);
    }

    pub fn reconcile(&mut self, tasks: &[&str]) {
        self.call(&Call::Reconcile { tasks });
    }

    pub fn teardown(&mut self) {
        self.call(&Call::Teardown);
    }

    /// Output bytes and whether any call was dropped.
    pub fn finish(self) -> Result<usize, Error> {
        if self.out.is_full() {
            Err(Error::OutputFull)
        } else {
            Ok(self.out.len())
        }
    }
}

/// A framework's scheduler. One instance lives in the module from `Start` on; the host
/// re-creates the module (and calls `start` again) after any failure.
///
/// Status updates are acknowledged by the SDK after [`Scheduler::update`] returns, so
/// `update` need not call [`Calls::acknowledge`].
pub trait Scheduler: Sized {
    /// Builds the scheduler from its `--config` file bytes (empty when none). Returns
    /// `Err` for a configuration it cannot use; the host counts that as a failure.
    fn start(config: &[u8], calls: &mut Calls<'_>) -> Result<Self, Error>;

    fn subscribed(&mut self, _framework_id: &str, _calls: &mut Calls<'_>) {}

    /// Offers to accept (with [`Calls::launch`]) or decline. An offer neither accepted nor
    /// declined stays with the framework until it expires or is rescinded.
    fn offers(&mut self, offers: &Seq<'_, Offer<'_>>, calls: &mut Calls<'_>);

    fn rescind(&mut self, _offer_id: &str, _calls: &mut Calls<'_>) {}

    fn update(&mut self, _status: &TaskStatus<'_>, _calls: &mut Calls<'_>) {}

    fn error(&mut self, _message: &str, _calls: &mut Calls<'_>) {}

    fn heartbeat(&mut self, _calls: &mut Calls<'_>) {}

    fn tick(&mut self, _calls: &mut Calls<'_>) {}
}

/// Runs one scheduler input against `state`: what `export_scheduler!` does per call.
pub fn handle<S: Scheduler>(
    state: &mut Option<S>,
    input: &[u8],
    out: Output<'_>,
) -> Result<usize, Error> {
    let input = SchedulerInput::decode(input)?;
    let (now_ms, event) = match input {
        SchedulerInput::Start { now_ms, config } => {
            let mut calls = Calls::new(now_ms, out);
            *state = Some(S::start(config, &mut calls)?);
            return calls.finish();
        }
        SchedulerInput::Event { now_ms, event } => (now_ms, Some(event)),
        SchedulerInput::Tick { now_ms } => (now_ms, None),
    };
    let scheduler = state.as_mut().ok_or(Error::NotStarted)?;
    let mut calls = Calls::new(now_ms, out);
    match event {
        None => scheduler.tick(&mut calls),
        Some(Event::Subscribed { framework_id, .. }) => {
            scheduler.subscribed(framework_id, &mut calls)
        }
        Some(Event::Offers { offers }) => scheduler.offers(&offers, &mut calls),
        Some(Event::Rescind { offer_id }) => scheduler.rescind(offer_id, &mut calls),
        Some(Event::Update { status }) => {
            scheduler.update(&status, &mut calls);
            calls.acknowledge(status.task_id, status.uuid);
        }
        Some(Event::Error { message }) => scheduler.error(message, &mut calls),
        Some(Event::Heartbeat) => scheduler.heartbeat(&mut calls),
    }
    calls.finish()
}
