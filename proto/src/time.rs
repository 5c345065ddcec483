//! Time as the sans-IO cores see it: a monotonic count of milliseconds handed in by the
//! caller. The master and agent cores never read a clock, so tests and `wasmos sim` run in
//! virtual time.

use serde::{Deserialize, Serialize};

/// A point on the caller's monotonic clock, in milliseconds from an arbitrary origin.
///
/// The caller must never pass a value smaller than one it passed before; the master
/// treats time going backwards as a programmer error (debug assertion) and otherwise
/// behaves as if time stood still.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Millis(pub u64);

impl Millis {
    pub const ZERO: Millis = Millis(0);

    /// `self + ms`, saturating at the end of time.
    #[must_use]
    pub fn plus_ms(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn ms_since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}
