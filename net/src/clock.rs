//! The daemons' clock: milliseconds on tokio's monotonic clock since the daemon started,
//! the time the master core wants handed in. tokio's clock so that tests may pause it.

use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }

    pub fn now(&self) -> proto::Millis {
        proto::Millis(u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// The instant `at` stands for, for arming a timer.
    pub fn instant_of(&self, at: proto::Millis) -> Instant {
        self.start + std::time::Duration::from_millis(at.0)
    }
}

/// Wall-clock milliseconds since the Unix epoch, for timestamps people read.
pub fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}
