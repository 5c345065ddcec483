//! Per-task limits: memory and tables (a [`ResourceLimiter`]), the cpu share (an epoch
//! time-slice budget), wall-clock time and captured output.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use proto::{Resources, TaskLimits};
use wasmtime::{ResourceLimiter, UpdateDeadline};

use crate::usage::TaskUsage;

/// Memory limit when a task's resources carry no `mem` scalar.
pub const MEMORY_MIB_DEFAULT: u64 = 256;
/// CPU share when a task's resources carry no `cpus` scalar.
pub const CPUS_DEFAULT: f64 = 1.0;
/// The smallest cpu share a task is throttled to; smaller `cpus` values count as this.
pub const CPUS_MIN: f64 = 0.01;
/// Elements of all tables of one task together (function references, 8-16 bytes each).
pub const TABLE_ELEMENTS_MAX: usize = 1 << 20;
/// Instances one task may create (a p2 component holds several core instances).
pub const INSTANCES_MAX: usize = 64;
/// Linear memories of one task, all instances together.
pub const MEMORIES_MAX: usize = 16;
/// Tables of one task, all instances together.
pub const TABLES_MAX: usize = 64;
/// WASI handles (open files and directories, streams, pollables, sockets) one task may hold
/// at once. Past it, the host call that would add one fails and the task fails with
/// "handle limit … reached", so a task cannot exhaust the agent's file descriptors.
pub const HANDLES_MAX: usize = 1024;
/// Length of one epoch tick: the engine's epoch advances this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Ticks a task runs before it yields to the runtime (its time slice).
pub const SLICE_TICKS: u64 = 10;

const MIB: u64 = 1 << 20;

/// The limits of one task, derived from its [`proto::TaskSpec`].
#[derive(Clone, Debug, PartialEq)]
pub struct WasmLimits {
    /// Bytes of linear memory, all memories of the task together.
    pub memory_bytes_max: u64,
    /// Share of one core: 0.5 runs half the time, 1 or more never pauses.
    pub cpus: f64,
    /// Wall-clock limit from start to end; `None` runs until the end or a kill.
    pub timeout: Option<Duration>,
    /// Bytes kept of stdout and, separately, of stderr.
    pub output_bytes_max: usize,
}

impl WasmLimits {
    /// `mem` (MiB) and `cpus` from the task's resources, the rest from its limits.
    pub fn from_spec(resources: &Resources, limits: &TaskLimits) -> WasmLimits {
        let mem_mib = match resources.scalar("mem").units() {
            m if m > 0.0 => m,
            _ => MEMORY_MIB_DEFAULT as f64,
        };
        let cpus = match resources.scalar("cpus").units() {
            c if c > 0.0 => c,
            _ => CPUS_DEFAULT,
        };
        WasmLimits {
            memory_bytes_max: (mem_mib * MIB as f64) as u64,
            cpus,
            timeout: limits.timeout_ms.map(Duration::from_millis),
            output_bytes_max: usize::try_from(limits.output_bytes_max).unwrap_or(usize::MAX),
        }
    }

    /// The memory limit for people: "64 MiB".
    pub fn memory_text(&self) -> String {
        let mib = self.memory_bytes_max as f64 / MIB as f64;
        if mib.fract() == 0.0 {
            format!("{mib} MiB")
        } else {
            format!("{mib:.2} MiB")
        }
    }
}

/// Which limit a task ran into, recorded when the limiter says no.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitHit {
    Memory { desired_bytes: usize },
    Table { desired_elements: usize },
}

/// Caps linear memory and tables of one task (one `Store`).
///
/// Contract (as [`ResourceLimiter`]): a `memory.grow` or `table.grow` that would take the
/// task past its limit returns `Ok(false)`, so the guest sees the ordinary failure value
/// (`-1`) and may recover; the first denial is recorded and becomes the reason when the task
/// then fails. A module whose *initial* memory exceeds the limit fails to instantiate.
/// Counts of instances, memories and tables are capped by [`INSTANCES_MAX`],
/// [`MEMORIES_MAX`] and [`TABLES_MAX`].
pub struct TaskLimiter {
    memory_bytes_max: usize,
    /// Bytes of every memory of the task but the one growing: all memories share the cap.
    memory_bytes_used: usize,
    table_elements_used: usize,
    pub(crate) hit: Option<LimitHit>,
    /// Where the memory in use is published, if anywhere.
    usage: Option<Arc<TaskUsage>>,
}

impl TaskLimiter {
    pub fn new(memory_bytes_max: u64) -> TaskLimiter {
        TaskLimiter {
            memory_bytes_max: usize::try_from(memory_bytes_max).unwrap_or(usize::MAX),
            memory_bytes_used: 0,
            table_elements_used: 0,
            hit: None,
            usage: None,
        }
    }

    /// Also publishes the task's memory in use on `usage` as it grows.
    pub fn with_usage(mut self, usage: Arc<TaskUsage>) -> TaskLimiter {
        self.usage = Some(usage);
        self
    }

    fn record(&mut self, hit: LimitHit) {
        if self.hit.is_none() {
            self.hit = Some(hit);
        }
    }
}

impl ResourceLimiter for TaskLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.memory_bytes_used.saturating_add(growth);
        if total > self.memory_bytes_max {
            self.record(LimitHit::Memory {
                desired_bytes: desired,
            });
            return Ok(false);
        }
        self.memory_bytes_used = total;
        if let Some(usage) = &self.usage {
            usage.set_memory_bytes(u64::try_from(total).unwrap_or(u64::MAX));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.table_elements_used.saturating_add(growth);
        if total > TABLE_ELEMENTS_MAX {
            self.record(LimitHit::Table {
                desired_elements: desired,
            });
            return Ok(false);
        }
        self.table_elements_used = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        INSTANCES_MAX
    }

    fn memories(&self) -> usize {
        MEMORIES_MAX
    }

    fn tables(&self) -> usize {
        TABLES_MAX
    }
}

/// Longest run time one slice is charged for when computing the pause after it. A slice
/// that never reaches an epoch check in time (a host call that computes or blocks without
/// yielding, the thread preempted on a loaded machine) is charged at most this.
pub const SLICE_CHARGED_MAX: Duration = EPOCH_TICK.saturating_mul(4 * SLICE_TICKS as u32);

/// A task's run time: the time its code, guest code or host code working for it, held a
/// thread. wasmtime runs a task inside the polls of its future and returns `Pending` when a
/// host call waits (a sleep, I/O, a poll of sockets) and at [`CpuThrottle`]'s pauses, so
/// run time is the time spent inside those polls ([`RunClock::measure`]) and waiting falls
/// between them. Each ended poll is also added to the task's [`TaskUsage`] cpu time, the
/// figure its metrics publish. Clones share one clock; reading it inside a poll counts
/// that poll so far.
#[derive(Clone, Debug, Default)]
pub struct RunClock {
    time: Arc<Mutex<RunTime>>,
    usage: Arc<TaskUsage>,
}

#[derive(Debug, Default)]
struct RunTime {
    /// Run time of the polls that have ended.
    ended: Duration,
    /// Start of the poll under way, if one is.
    poll_started: Option<Instant>,
}

impl RunClock {
    pub fn new(usage: Arc<TaskUsage>) -> RunClock {
        RunClock {
            time: Arc::default(),
            usage,
        }
    }

    /// Runs `task`, counting the time spent in each of its polls as run time.
    pub async fn measure<F: Future>(&self, task: F) -> F::Output {
        let mut task = std::pin::pin!(task);
        std::future::poll_fn(|cx| {
            self.poll_started(Instant::now());
            let polled = task.as_mut().poll(cx);
            self.poll_ended(Instant::now());
            polled
        })
        .await
    }

    fn poll_started(&self, at: Instant) {
        self.lock().poll_started = Some(at);
    }

    fn poll_ended(&self, at: Instant) {
        let mut time = self.lock();
        if let Some(started) = time.poll_started.take() {
            let took = at.saturating_duration_since(started);
            time.ended += took;
            self.usage.add_cpu(took);
        }
    }

    /// Run time up to `at`, including the poll under way.
    pub fn ran(&self, at: Instant) -> Duration {
        let time = self.lock();
        let current = time.poll_started.map_or(Duration::ZERO, |started| {
            at.saturating_duration_since(started)
        });
        time.ended + current
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RunTime> {
        // Nothing panics while the lock is held; a poisoned clock is still a clock.
        self.time.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The cpu share as an epoch-deadline policy.
///
/// Contract: a task runs at most [`SLICE_TICKS`] ticks before it yields to the tokio
/// runtime, so a task that never calls the host cannot starve others on the same worker.
/// With `cpus < 1` it then also pauses for `(1 - cpus) / cpus` times its *run time* in the
/// slice (see [`RunClock`]; at most [`SLICE_CHARGED_MAX`] of it), so that over time it runs
/// `cpus` of the wall clock while it computes (a task with 0.25 that never calls the host
/// runs 10 ms and pauses 30 ms). Time its host calls spend waiting (a sleep, I/O) is not run
/// time: a task is never paused for having waited, so a task that mostly sleeps runs in
/// about the wall time it asks for. Run time and the pause are wall-clock durations, not
/// ticks: on a loaded machine the tick thread runs late, and a pause counted in ticks would
/// shrink with it. Spinning is never an error: only the wall-clock timeout ends a task that
/// does not finish.
#[derive(Clone, Debug)]
pub struct CpuThrottle {
    /// Pause per unit of run time, `(1 - share) / share`; 0 for a whole core or more.
    pause_per_run: f64,
    /// The task's run time, measured around the polls of its future.
    clock: RunClock,
    /// The task's run time when the current slice started.
    slice_started: Duration,
    /// The last slice ended in a pause; the next deadline starts a new slice.
    pausing: bool,
}

/// What a task does when its deadline is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SliceEnd {
    /// Yields to the runtime and runs on (a whole core or more).
    Yield,
    /// Its pause is over: a new slice starts.
    Run,
    /// Its slice is over: it pauses this long.
    Pause(Duration),
}

impl CpuThrottle {
    /// The throttle of a task whose run time `clock` measures.
    pub fn new(cpus: f64, clock: RunClock) -> CpuThrottle {
        let share = if cpus.is_finite() {
            cpus.max(CPUS_MIN)
        } else {
            1.0
        };
        CpuThrottle {
            pause_per_run: if share >= 1.0 {
                0.0
            } else {
                (1.0 - share) / share
            },
            clock,
            slice_started: Duration::ZERO,
            pausing: false,
        }
    }

    /// The pause owed after a slice in which the task ran for `ran`.
    pub fn pause_after(&self, ran: Duration) -> Duration {
        ran.min(SLICE_CHARGED_MAX).mul_f64(self.pause_per_run)
    }

    /// What to do when the task's deadline is reached.
    pub fn on_slice_end(&mut self) -> UpdateDeadline {
        match self.slice_end(Instant::now()) {
            SliceEnd::Yield => UpdateDeadline::Yield(SLICE_TICKS),
            SliceEnd::Run => UpdateDeadline::Continue(SLICE_TICKS),
            // The deadline counts from now; one tick expires during the pause, so the slice
            // after it starts at the task's first check once it resumes.
            SliceEnd::Pause(pause) => {
                UpdateDeadline::YieldCustom(1, Box::pin(tokio::time::sleep(pause)))
            }
        }
    }

    /// The accounting of [`CpuThrottle::on_slice_end`], with the deadline reached at `now`.
    fn slice_end(&mut self, now: Instant) -> SliceEnd {
        if self.pause_per_run == 0.0 {
            return SliceEnd::Yield;
        }
        let ran = self.clock.ran(now);
        if self.pausing {
            // The deadline of one tick set before the pause has passed: a new slice.
            self.pausing = false;
            self.slice_started = ran;
            return SliceEnd::Run;
        }
        self.pausing = true;
        SliceEnd::Pause(self.pause_after(ran.saturating_sub(self.slice_started)))
    }
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_spec() {
        let resources = Resources::new()
            .with_scalar("mem", 64.0)
            .with_scalar("cpus", 0.5);
        let limits = TaskLimits {
            timeout_ms: Some(2000),
            output_bytes_max: 4096,
        };
        let l = WasmLimits::from_spec(&resources, &limits);
        assert_eq!(l.memory_bytes_max, 64 << 20);
        assert_eq!(l.cpus, 0.5);
        assert_eq!(l.timeout, Some(Duration::from_secs(2)));
        assert_eq!(l.output_bytes_max, 4096);
        assert_eq!(l.memory_text(), "64 MiB");
        let defaults = WasmLimits::from_spec(&Resources::new(), &TaskLimits::default());
        assert_eq!(defaults.memory_bytes_max, MEMORY_MIB_DEFAULT << 20);
        assert_eq!(defaults.timeout, None);
    }

    #[test]
    fn memory_is_shared_by_all_memories_and_denials_are_recorded() {
        let mut limiter = TaskLimiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).unwrap());
        assert!(!limiter.memory_growing(0, 50, None).unwrap());
        assert_eq!(limiter.hit, Some(LimitHit::Memory { desired_bytes: 50 }));
        assert!(limiter.memory_growing(60, 100, None).unwrap());
        assert!(!limiter.memory_growing(100, 101, None).unwrap());
        assert_eq!(
            limiter.hit,
            Some(LimitHit::Memory { desired_bytes: 50 }),
            "first denial is kept"
        );
    }

    fn throttle(cpus: f64) -> CpuThrottle {
        CpuThrottle::new(cpus, RunClock::default())
    }

    #[test]
    fn throttle_pauses_in_proportion_to_the_share() {
        let ms = Duration::from_millis;
        assert_eq!(throttle(1.0).pause_after(ms(10)), Duration::ZERO);
        assert_eq!(throttle(4.0).pause_after(ms(10)), Duration::ZERO);
        assert_eq!(throttle(0.5).pause_after(ms(10)), ms(10));
        assert_eq!(throttle(0.25).pause_after(ms(10)), ms(30));
        assert_eq!(throttle(0.25).pause_after(ms(30)), ms(90), "a late tick");
        assert_eq!(
            throttle(0.25).pause_after(Duration::from_secs(5)),
            SLICE_CHARGED_MAX * 3,
            "a long slice is charged at most SLICE_CHARGED_MAX"
        );
        assert_eq!(throttle(0.0).pause_after(ms(10)), ms(990));
    }

    #[test]
    fn run_time_is_the_time_inside_polls() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let clock = RunClock::default();
        assert_eq!(clock.ran(t0 + ms(5)), Duration::ZERO, "not polled yet");
        clock.poll_started(t0);
        assert_eq!(clock.ran(t0 + ms(3)), ms(3), "the poll under way counts");
        clock.poll_ended(t0 + ms(4));
        assert_eq!(
            clock.ran(t0 + ms(500)),
            ms(4),
            "waiting between polls does not"
        );
        clock.poll_started(t0 + ms(500));
        assert_eq!(clock.ran(t0 + ms(502)), ms(6));
        clock.poll_ended(t0 + ms(502));
        assert_eq!(clock.ran(t0 + ms(900)), ms(6));
        // What the task's metrics publish as its cpu time.
        assert!((clock.usage.cpu_seconds() - 0.006).abs() < 1e-9);
    }

    #[test]
    fn measure_counts_a_poll_only_while_it_is_under_way() {
        let clock = RunClock::default();
        let inside = std::cell::Cell::new(None);
        let mut polls = 0;
        let task = std::future::poll_fn(|_| {
            polls += 1;
            // Read inside the poll, an hour later than it started: the poll is under way.
            let hour = Duration::from_secs(3600);
            inside.set(Some(clock.ran(Instant::now() + hour) >= hour));
            if polls == 2 {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        });
        let mut measured = std::pin::pin!(clock.measure(task));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(measured.as_mut().poll(&mut cx).is_pending());
        assert_eq!(inside.take(), Some(true));
        let between = Instant::now();
        assert_eq!(
            clock.ran(between),
            clock.ran(between + Duration::from_secs(3600)),
            "no poll under way between polls"
        );
        assert!(measured.as_mut().poll(&mut cx).is_ready());
        assert_eq!(inside.take(), Some(true));
    }

    /// The defect this guards against: a task that slept in a host call was paused
    /// afterwards as if it had computed for the whole sleep.
    #[test]
    fn waiting_in_a_host_call_is_not_charged_and_computing_is() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let clock = RunClock::default();
        let mut quarter = CpuThrottle::new(0.25, clock.clone());
        // A spinner: one poll, the deadline after a slice of 10 ms, a pause of 30 ms.
        clock.poll_started(t0);
        assert_eq!(quarter.slice_end(t0 + ms(10)), SliceEnd::Pause(ms(30)));
        clock.poll_ended(t0 + ms(10));
        // Resumed after its pause: the next deadline starts a new slice.
        clock.poll_started(t0 + ms(40));
        assert_eq!(quarter.slice_end(t0 + ms(41)), SliceEnd::Run);
        // It computes 2 ms, then a host call sleeps 500 ms (the future is pending); the
        // deadline passed during the sleep, so the first check after it ends the slice:
        // 3 ms of run time in 504 ms of wall clock, paused for 9 ms, not for 120 ms.
        clock.poll_ended(t0 + ms(43));
        clock.poll_started(t0 + ms(543));
        assert_eq!(quarter.slice_end(t0 + ms(544)), SliceEnd::Pause(ms(9)));
        clock.poll_ended(t0 + ms(544));
        // A slice of 10 ms in one poll is charged in full, whether guest code or a host
        // call that computes without waiting (the poll goes on) held the thread.
        clock.poll_started(t0 + ms(553));
        assert_eq!(quarter.slice_end(t0 + ms(553)), SliceEnd::Run);
        assert_eq!(quarter.slice_end(t0 + ms(563)), SliceEnd::Pause(ms(30)));
        // A whole core never pauses, whatever it ran.
        let mut whole = CpuThrottle::new(1.0, clock.clone());
        assert_eq!(whole.slice_end(t0 + ms(600)), SliceEnd::Yield);
    }

    #[test]
    fn a_pause_is_followed_by_a_full_slice() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _in_runtime = runtime.enter();
        let mut half = throttle(0.5);
        assert!(matches!(
            half.on_slice_end(),
            UpdateDeadline::YieldCustom(1, _)
        ));
        assert!(matches!(
            half.on_slice_end(),
            UpdateDeadline::Continue(SLICE_TICKS)
        ));
        let mut whole = throttle(1.0);
        assert!(matches!(
            whole.on_slice_end(),
            UpdateDeadline::Yield(SLICE_TICKS)
        ));
    }
}
