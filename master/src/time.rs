//! Time as the master core sees it: a monotonic count of milliseconds handed in by the
//! caller. The core never reads a clock, so tests and `wasmos sim` run in virtual time.

pub use proto::Millis;

/// Converts a framework's `refuse_seconds` to milliseconds, clamped to
/// `[0, refuse_ms_max]`; NaN and negative values mean "no filter".
pub fn refuse_ms(refuse_seconds: f64, refuse_ms_max: u64) -> u64 {
    if refuse_seconds.is_nan() || refuse_seconds <= 0.0 {
        return 0;
    }
    let ms = refuse_seconds * 1000.0;
    if ms >= refuse_ms_max as f64 {
        refuse_ms_max
    } else {
        ms.round() as u64
    }
}
