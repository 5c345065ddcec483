//! Per-task limits: memory and tables (a [`ResourceLimiter`]), the cpu share (an epoch
//! time-slice budget), wall-clock time and captured output.

use std::sync::Arc;
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

/// Longest run one time slice is charged for when computing the pause after it. Bounds
/// the pause of a task that spent the slice waiting in a host call (a sleep, a read).
pub const SLICE_CHARGED_MAX: Duration = EPOCH_TICK.saturating_mul(4 * SLICE_TICKS as u32);

/// The cpu share as an epoch-deadline policy.
///
/// Contract: a task runs at most [`SLICE_TICKS`] ticks before it yields to the tokio
/// runtime, so a task that never calls the host cannot starve others on the same worker.
/// With `cpus < 1` it then also pauses for `(1 - cpus) / cpus` times the wall-clock time
/// the slice took (at most [`SLICE_CHARGED_MAX`] of it), so that over time it runs `cpus`
/// of the wall clock (a task with 0.25 runs 10 ms and pauses 30 ms). The pause is measured
/// in wall-clock time, not ticks: on a loaded machine the tick thread runs late, and a
/// pause counted in ticks would shrink with it. Spinning is never an error: only the
/// wall-clock timeout ends a task that does not finish.
#[derive(Clone, Copy, Debug)]
pub struct CpuThrottle {
    /// Pause per unit of run time, `(1 - share) / share`; 0 for a whole core or more.
    pause_per_run: f64,
    slice_started: Instant,
    /// The last slice ended in a pause; the next deadline starts a new slice.
    pausing: bool,
}

impl CpuThrottle {
    pub fn new(cpus: f64) -> CpuThrottle {
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
            slice_started: Instant::now(),
            pausing: false,
        }
    }

    /// The pause owed after a slice that took `ran` of wall-clock time.
    pub fn pause_after(&self, ran: Duration) -> Duration {
        ran.min(SLICE_CHARGED_MAX).mul_f64(self.pause_per_run)
    }

    /// What to do when the task's deadline is reached.
    pub fn on_slice_end(&mut self) -> UpdateDeadline {
        if self.pause_per_run == 0.0 {
            return UpdateDeadline::Yield(SLICE_TICKS);
        }
        if self.pausing {
            // The deadline of one tick set before the pause has passed: a new slice.
            self.pausing = false;
            self.slice_started = Instant::now();
            return UpdateDeadline::Continue(SLICE_TICKS);
        }
        let pause = self.pause_after(self.slice_started.elapsed());
        self.pausing = true;
        // The deadline counts from now; one tick expires during the pause, so the slice
        // after it starts at the task's first check once it resumes.
        UpdateDeadline::YieldCustom(1, Box::pin(tokio::time::sleep(pause)))
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

    #[test]
    fn throttle_pauses_in_proportion_to_the_share() {
        let ms = Duration::from_millis;
        assert_eq!(CpuThrottle::new(1.0).pause_after(ms(10)), Duration::ZERO);
        assert_eq!(CpuThrottle::new(4.0).pause_after(ms(10)), Duration::ZERO);
        assert_eq!(CpuThrottle::new(0.5).pause_after(ms(10)), ms(10));
        assert_eq!(CpuThrottle::new(0.25).pause_after(ms(10)), ms(30));
        assert_eq!(
            CpuThrottle::new(0.25).pause_after(ms(30)),
            ms(90),
            "a late tick"
        );
        assert_eq!(
            CpuThrottle::new(0.25).pause_after(Duration::from_secs(5)),
            SLICE_CHARGED_MAX * 3,
            "a slice spent waiting in a host call is not charged in full"
        );
        assert_eq!(CpuThrottle::new(0.0).pause_after(ms(10)), ms(990));
    }

    #[test]
    fn a_pause_is_followed_by_a_full_slice() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _in_runtime = runtime.enter();
        let mut throttle = CpuThrottle::new(0.5);
        assert!(matches!(
            throttle.on_slice_end(),
            UpdateDeadline::YieldCustom(1, _)
        ));
        assert!(matches!(
            throttle.on_slice_end(),
            UpdateDeadline::Continue(SLICE_TICKS)
        ));
        let mut whole = CpuThrottle::new(1.0);
        assert!(matches!(
            whole.on_slice_end(),
            UpdateDeadline::Yield(SLICE_TICKS)
        ));
    }
}
