//! Per-task limits: memory and tables (a [`ResourceLimiter`]), the cpu share (an epoch
//! time-slice budget), wall-clock time and captured output.

use std::time::Duration;

use proto::{Resources, TaskLimits};
use wasmtime::{ResourceLimiter, UpdateDeadline};

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
}

impl TaskLimiter {
    pub fn new(memory_bytes_max: u64) -> TaskLimiter {
        TaskLimiter {
            memory_bytes_max: usize::try_from(memory_bytes_max).unwrap_or(usize::MAX),
            memory_bytes_used: 0,
            table_elements_used: 0,
            hit: None,
        }
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

/// The cpu share as an epoch-deadline policy.
///
/// Contract: a task runs at most [`SLICE_TICKS`] ticks before it yields to the tokio
/// runtime, so a task that never calls the host cannot starve others on the same worker.
/// With `cpus < 1` it then also sleeps so that, over time, it runs `cpus` of the wall
/// clock (a task with 0.25 runs 10 ms and pauses 30 ms). Ticks are wall-clock, so time the
/// OS takes the thread away counts against the slice. Spinning is never an error: only the
/// wall-clock timeout ends a task that does not finish.
#[derive(Clone, Copy, Debug)]
pub struct CpuThrottle {
    pause_ticks: u64,
}

impl CpuThrottle {
    pub fn new(cpus: f64) -> CpuThrottle {
        let share = if cpus.is_finite() {
            cpus.max(CPUS_MIN)
        } else {
            1.0
        };
        let pause_ticks = if share >= 1.0 {
            0
        } else {
            (SLICE_TICKS as f64 * (1.0 - share) / share).round() as u64
        };
        CpuThrottle { pause_ticks }
    }

    /// What to do when the task's slice is used up.
    pub fn on_slice_end(&self) -> UpdateDeadline {
        if self.pause_ticks == 0 {
            return UpdateDeadline::Yield(SLICE_TICKS);
        }
        // The deadline counts from now, before the pause, so it must cover the pause too.
        let pause = EPOCH_TICK * u32::try_from(self.pause_ticks).unwrap_or(u32::MAX);
        UpdateDeadline::YieldCustom(
            SLICE_TICKS + self.pause_ticks,
            Box::pin(tokio::time::sleep(pause)),
        )
    }

    pub fn pause_ticks(&self) -> u64 {
        self.pause_ticks
    }
}

#[cfg(test)]
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
        assert_eq!(CpuThrottle::new(1.0).pause_ticks(), 0);
        assert_eq!(CpuThrottle::new(4.0).pause_ticks(), 0);
        assert_eq!(CpuThrottle::new(0.5).pause_ticks(), SLICE_TICKS);
        assert_eq!(CpuThrottle::new(0.25).pause_ticks(), 3 * SLICE_TICKS);
        assert_eq!(CpuThrottle::new(0.0).pause_ticks(), 99 * SLICE_TICKS);
    }
}
