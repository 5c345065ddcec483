//! When a copy whose task ended starts again: exponential backoff, bounded attempts.

/// Default of [`Backoff::initial_ms`].
pub const RESTART_BACKOFF_INITIAL_MS_DEFAULT: u64 = 1_000;
/// Default of [`Backoff::max_ms`].
pub const RESTART_BACKOFF_MAX_MS_DEFAULT: u64 = 60_000;
/// Default of [`Backoff::starts_max`].
pub const RESTART_STARTS_MAX_DEFAULT: u32 = 10;

/// Restart timing of one copy of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Wait before the first restart; each further restart waits twice as long.
    pub initial_ms: u64,
    /// The longest wait.
    pub max_ms: u64,
    /// Tasks one copy may start, the first included; once they are used up the copy ends
    /// in the state of its last task.
    pub starts_max: u32,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            initial_ms: RESTART_BACKOFF_INITIAL_MS_DEFAULT,
            max_ms: RESTART_BACKOFF_MAX_MS_DEFAULT,
            starts_max: RESTART_STARTS_MAX_DEFAULT,
        }
    }
}

impl Backoff {
    /// The wait before the next start of a copy that has started `starts` tasks, or `None`
    /// when it may start no more.
    pub fn delay_ms(&self, starts: u32) -> Option<u64> {
        if starts >= self.starts_max {
            return None;
        }
        let doublings = starts.saturating_sub(1).min(63);
        let delay = self.initial_ms.saturating_mul(1u64 << doublings);
        Some(delay.min(self.max_ms))
    }
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_stops_after_the_last_start() {
        let b = Backoff {
            initial_ms: 100,
            max_ms: 500,
            starts_max: 5,
        };
        let delays: Vec<_> = (1..=5).map(|s| b.delay_ms(s)).collect();
        assert_eq!(delays, [Some(100), Some(200), Some(400), Some(500), None]);
    }

    #[test]
    fn huge_start_counts_do_not_overflow() {
        let b = Backoff {
            starts_max: u32::MAX,
            ..Backoff::default()
        };
        assert_eq!(b.delay_ms(u32::MAX - 1), Some(b.max_ms));
    }
}
