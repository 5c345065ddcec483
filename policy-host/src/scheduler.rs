//! A framework scheduler running as a module: events in, calls out, and what happens when
//! the module fails.
//!
//! Failure policy, as a contract: any [`GuestError`] (trap, fuel or memory budget, bad
//! output, a `Subscribe` call) is logged with `tracing::error!`, drops the instance (its
//! state may be half updated) and is returned as [`SchedulerFault::Failed`]. Inputs are then
//! refused with [`SchedulerFault::BackingOff`] until the backoff has passed (it doubles with
//! each consecutive failure, from [`FailurePolicy::backoff_base_ms`] up to
//! [`FailurePolicy::backoff_max_ms`]); the next input after it starts a fresh instance
//! (`Start` with the config again, then the last `Subscribed` event replayed). After
//! [`FailurePolicy::failures_max`] consecutive failures the scheduler is deactivated for
//! good and every input is refused with [`SchedulerFault::Deactivated`]. A success resets
//! the count. Events refused are lost to the module: the master's offers to it expire.
//!
//! Sans-IO: time comes in with every input; nothing here reads a clock.

use proto::{Call, Event, Filters};

use crate::abi::{self, SchedulerInput};
use crate::sandbox::{GuestError, GuestInstance, ModuleCode};

/// How long offers to a deactivated scheduler are refused (an hour).
pub const DEACTIVATED_REFUSE_SECONDS: f64 = 3600.0;

/// When to retry a failing scheduler and when to give up on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Consecutive failures after which the scheduler is deactivated.
    pub failures_max: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for FailurePolicy {
    fn default() -> FailurePolicy {
        FailurePolicy {
            failures_max: 5,
            backoff_base_ms: 1_000,
            backoff_max_ms: 60_000,
        }
    }
}

impl FailurePolicy {
    /// Backoff after the `failures`-th consecutive failure (1-based).
    pub fn backoff_ms(&self, failures: u32) -> u64 {
        let doublings = failures.saturating_sub(1).min(32);
        self.backoff_base_ms
            .saturating_mul(1u64 << doublings)
            .min(self.backoff_max_ms)
    }
}

/// Whether the scheduler takes inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Healthy,
    BackingOff { until_ms: u64 },
    Deactivated,
}

/// Why an input was not handled.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerFault {
    #[error("scheduler {name} failed ({failures} in a row); {next}: {error}")]
    Failed {
        name: String,
        failures: u32,
        next: NextStep,
        error: GuestError,
    },
    #[error("scheduler {name} is backing off until {until_ms} ms after a failure")]
    BackingOff { name: String, until_ms: u64 },
    #[error("scheduler {name} is deactivated after repeated failures")]
    Deactivated { name: String },
}

/// What follows a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    RetryAt { at_ms: u64 },
    Deactivated,
}

impl std::fmt::Display for NextStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NextStep::RetryAt { at_ms } => write!(f, "retrying at {at_ms} ms"),
            NextStep::Deactivated => write!(f, "deactivated"),
        }
    }
}

/// One framework's scheduler module; see the module documentation for the failure policy.
pub struct HostedScheduler {
    name: String,
    code: ModuleCode,
    config: Vec<u8>,
    policy: FailurePolicy,
    instance: Option<GuestInstance>,
    /// Replayed to every fresh instance after `Start`.
    last_subscribed: Option<Event>,
    health: Health,
    consecutive_failures: u32,
    failures_total: u64,
}

impl HostedScheduler {
    /// A scheduler named `name` (for logs) from compiled `code`, started with `config`
    /// (the `--config` file bytes). Nothing runs until the first input.
    pub fn new(
        name: &str,
        code: ModuleCode,
        config: Vec<u8>,
        policy: FailurePolicy,
    ) -> HostedScheduler {
        HostedScheduler {
            name: name.to_owned(),
            code,
            config,
            policy,
            instance: None,
            last_subscribed: None,
            health: Health::Healthy,
            consecutive_failures: 0,
            failures_total: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn health(&self) -> Health {
        self.health
    }

    /// Failures since the scheduler was created.
    pub fn failures_total(&self) -> u64 {
        self.failures_total
    }

    /// Delivers a master event; returns the calls the scheduler makes in answer.
    pub fn handle_event(
        &mut self,
        now_ms: u64,
        event: &Event,
    ) -> Result<Vec<Call>, SchedulerFault> {
        if matches!(event, Event::Subscribed { .. }) {
            self.last_subscribed = Some(event.clone());
        }
        self.deliver(
            now_ms,
            &SchedulerInput::Event {
                now_ms,
                event: event.clone(),
            },
        )
    }

    /// [`HostedScheduler::handle_event`] for a master adapter: when the scheduler cannot
    /// take the event (it failed now, backs off, or is deactivated) the answer is what the
    /// master should do on its behalf, so that nothing waits on a broken module: its offers
    /// are declined (refused until it is retried, or for [`DEACTIVATED_REFUSE_SECONDS`] once
    /// it is deactivated, with a `Suppress` too), status updates are acknowledged (a fresh
    /// instance starts from its config and reconciles). The fault is returned for reporting.
    pub fn deliver_event(
        &mut self,
        now_ms: u64,
        event: &Event,
    ) -> (Vec<Call>, Option<SchedulerFault>) {
        match self.handle_event(now_ms, event) {
            Ok(calls) => (calls, None),
            Err(fault) => (self.answer_for_failed(now_ms, event), Some(fault)),
        }
    }

    fn answer_for_failed(&self, now_ms: u64, event: &Event) -> Vec<Call> {
        let refuse_seconds = match self.health {
            Health::BackingOff { until_ms } => until_ms.saturating_sub(now_ms) as f64 / 1000.0,
            Health::Deactivated | Health::Healthy => DEACTIVATED_REFUSE_SECONDS,
        };
        let mut calls = Vec::new();
        match event {
            Event::Offers { offers } if !offers.is_empty() => {
                let offer_ids = offers.iter().map(|o| o.offer_id.clone()).collect();
                calls.push(Call::Decline {
                    offer_ids,
                    filters: Filters { refuse_seconds },
                });
            }
            Event::Update { status } => {
                calls.push(Call::Acknowledge {
                    task_id: status.task_id.clone(),
                    status_uuid: status.uuid,
                });
            }
            _ => {}
        }
        if self.health == Health::Deactivated {
            calls.push(Call::Suppress);
        }
        calls
    }

    /// A periodic wake-up.
    pub fn tick(&mut self, now_ms: u64) -> Result<Vec<Call>, SchedulerFault> {
        self.deliver(now_ms, &SchedulerInput::Tick { now_ms })
    }

    fn deliver(
        &mut self,
        now_ms: u64,
        input: &SchedulerInput,
    ) -> Result<Vec<Call>, SchedulerFault> {
        match self.health {
            Health::Deactivated => {
                return Err(SchedulerFault::Deactivated {
                    name: self.name.clone(),
                });
            }
            Health::BackingOff { until_ms } if now_ms < until_ms => {
                return Err(SchedulerFault::BackingOff {
                    name: self.name.clone(),
                    until_ms,
                });
            }
            _ => {}
        }
        match self.try_deliver(now_ms, input) {
            Ok(calls) => {
                self.health = Health::Healthy;
                self.consecutive_failures = 0;
                Ok(calls)
            }
            Err(error) => Err(self.fail(now_ms, error)),
        }
    }

    fn try_deliver(
        &mut self,
        now_ms: u64,
        input: &SchedulerInput,
    ) -> Result<Vec<Call>, GuestError> {
        let mut calls = Vec::new();
        if self.instance.is_none() {
            let mut instance = self.code.instantiate()?;
            let start = SchedulerInput::Start {
                now_ms,
                config: self.config.clone(),
            };
            calls.extend(call_guest(&mut instance, &start)?);
            if let Some(event) = self
                .last_subscribed
                .clone()
                .filter(|_| !is_subscribed(input))
            {
                calls.extend(call_guest(
                    &mut instance,
                    &SchedulerInput::Event { now_ms, event },
                )?);
            }
            self.instance = Some(instance);
        }
        let Some(instance) = self.instance.as_mut() else {
            return Ok(calls);
        };
        calls.extend(call_guest(instance, input)?);
        Ok(calls)
    }

    fn fail(&mut self, now_ms: u64, error: GuestError) -> SchedulerFault {
        self.instance = None;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.failures_total = self.failures_total.saturating_add(1);
        let failures = self.consecutive_failures;
        let next = if failures >= self.policy.failures_max {
            self.health = Health::Deactivated;
            NextStep::Deactivated
        } else {
            let at_ms = now_ms.saturating_add(self.policy.backoff_ms(failures));
            self.health = Health::BackingOff { until_ms: at_ms };
            NextStep::RetryAt { at_ms }
        };
        tracing::error!(scheduler = %self.name, failures, %next, %error, "scheduler module failed");
        SchedulerFault::Failed {
            name: self.name.clone(),
            failures,
            next,
            error,
        }
    }
}

fn is_subscribed(input: &SchedulerInput) -> bool {
    matches!(
        input,
        SchedulerInput::Event {
            event: Event::Subscribed { .. },
            ..
        }
    )
}

/// One input through the ABI; the answer decoded and checked.
fn call_guest(
    instance: &mut GuestInstance,
    input: &SchedulerInput,
) -> Result<Vec<Call>, GuestError> {
    let bytes = postcard::to_allocvec(input).map_err(|e| GuestError::Encode(e.to_string()))?;
    let output = instance.call(&bytes)?;
    let calls = abi::decode_calls(&output)?;
    if calls.iter().any(|c| matches!(c, Call::Subscribe { .. })) {
        return Err(GuestError::Invalid(
            "a hosted scheduler may not send Subscribe; the master subscribes it".into(),
        ));
    }
    Ok(calls)
}
