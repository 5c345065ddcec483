//! Counting payloads that do not decode: they are logged with their key, counted per key
//! and dropped, so that garbage on a key never stops the service behind it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use proto::DecodeError;

/// Most distinct keys counted one by one; decode errors on further keys are added to
/// [`OTHER_KEYS`], so that garbage published on ever new keys cannot grow the map.
pub const DECODE_ERROR_KEYS_MAX: usize = 1024;
/// The bucket of decode errors on keys beyond [`DECODE_ERROR_KEYS_MAX`].
pub const OTHER_KEYS: &str = "(other keys)";

/// Per-key counters of payloads that did not decode; shared by the clones of one `Net`.
#[derive(Clone, Debug, Default)]
pub struct DecodeErrors {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl DecodeErrors {
    /// Counts one bad payload on `key` and logs it. Logs are rate limited per key to the
    /// 1st, 2nd, 4th, 8th… error, so a flood of garbage cannot flood the log either.
    pub fn record(&self, key: &str, error: &DecodeError) {
        let count = {
            let mut counts = self.lock();
            let bucket = if counts.contains_key(key) || counts.len() < DECODE_ERROR_KEYS_MAX {
                key
            } else {
                OTHER_KEYS
            };
            let count = counts.entry(bucket.to_owned()).or_insert(0);
            *count += 1;
            *count
        };
        if count.is_power_of_two() {
            tracing::warn!(key, count, %error, "dropped a payload that does not decode");
        }
    }

    /// Bad payloads seen on `key` so far.
    pub fn count(&self, key: &str) -> u64 {
        self.lock().get(key).copied().unwrap_or(0)
    }

    /// Bad payloads seen on all keys so far.
    pub fn total(&self) -> u64 {
        self.lock().values().sum()
    }

    /// Every key with its count, for metrics.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.lock().clone()
    }

    /// The counters stay usable after a panic elsewhere: a count is never left half-written.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, u64>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
