//! What a running task uses, as its executor measures it: cpu time and memory. The
//! executor updates a shared [`TaskUsage`] while the task runs; the agent daemon reads it
//! to publish task metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Cpu time and memory of one task, updated by its executor, read from anywhere.
#[derive(Debug, Default)]
pub struct TaskUsage {
    cpu_ns: AtomicU64,
    memory_bytes: AtomicU64,
}

impl TaskUsage {
    pub fn new() -> Arc<TaskUsage> {
        Arc::default()
    }

    /// Cpu time used so far, seconds.
    pub fn cpu_seconds(&self) -> f64 {
        self.cpu_ns.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Memory in use now (wasm: linear memories; OCI: the container's cgroup), bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes.load(Ordering::Relaxed)
    }

    pub fn add_cpu(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.cpu_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Replaces the cpu time by a total measured elsewhere (a cgroup's).
    pub fn set_cpu_ns(&self, total_ns: u64) {
        self.cpu_ns.store(total_ns, Ordering::Relaxed);
    }

    pub fn set_memory_bytes(&self, bytes: u64) {
        self.memory_bytes.store(bytes, Ordering::Relaxed);
    }
}
