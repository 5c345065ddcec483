//! Reasons a person understands, for every way a task can end.

use std::time::Duration;

use wasmtime::component::ResourceTableError;
use wasmtime::{Trap, WasmBacktrace};

use super::limits::{HANDLES_MAX, LimitHit, TABLE_ELEMENTS_MAX, WasmLimits};

/// The reason for a wasmtime error that ended a task: a trap by name, else the error chain.
pub fn of_error(e: &wasmtime::Error) -> String {
    if let Some(ResourceTableError::Full) = e.downcast_ref::<ResourceTableError>() {
        return format!("handle limit of {HANDLES_MAX} open files, streams and sockets reached");
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => "stack overflow (wasm call stack exhausted)".to_owned(),
        Some(Trap::UnreachableCodeReached) => {
            "wasm trap: unreachable instruction executed".to_owned()
        }
        Some(trap) => trap.to_string(),
        None => without_backtrace(e),
    }
}

/// The error chain without wasmtime's "error while executing at wasm backtrace: …"
/// context (a list of frame offsets, noise in a one-line reason).
fn without_backtrace(e: &wasmtime::Error) -> String {
    // The backtrace is attached as a context layer, so it is recognised by its text.
    let backtrace = e.downcast_ref::<WasmBacktrace>().map(|b| b.to_string());
    let parts: Vec<String> = e
        .chain()
        .map(|cause| cause.to_string())
        .filter(|text| Some(text) != backtrace.as_ref())
        .collect();
    if parts.is_empty() {
        e.root_cause().to_string()
    } else {
        parts.join(": ")
    }
}

/// "memory limit of 64 MiB reached (memory.grow to N bytes denied)".
pub fn of_limit(hit: &LimitHit, limits: &WasmLimits) -> String {
    match hit {
        LimitHit::Memory { desired_bytes } => format!(
            "memory limit of {} reached (memory.grow to {desired_bytes} bytes denied)",
            limits.memory_text()
        ),
        LimitHit::Table { desired_elements } => format!(
            "table limit of {TABLE_ELEMENTS_MAX} elements reached (table.grow to {desired_elements} denied)"
        ),
    }
}

/// "timed out after 2 s", "timed out after 0.5 s" (to the millisecond).
pub fn of_timeout(timeout: Duration) -> String {
    let millis = format!("{:.3}", timeout.as_secs_f64());
    let secs = millis.trim_end_matches('0').trim_end_matches('.');
    format!("timed out after {secs} s")
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_read_naturally() {
        assert_eq!(of_timeout(Duration::from_secs(2)), "timed out after 2 s");
        assert_eq!(
            of_timeout(Duration::from_millis(1500)),
            "timed out after 1.5 s"
        );
        assert_eq!(
            of_timeout(Duration::from_millis(1)),
            "timed out after 0.001 s"
        );
        assert_eq!(of_timeout(Duration::from_secs(10)), "timed out after 10 s");
    }
}
