//! What a running task uses, as its executor measures it: cpu time and memory. The
//! executor updates a shared [`TaskUsage`] while the task runs; the agent daemon reads it
//! to publish task metrics.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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

/// A future that adds the time spent in each of its polls to a [`TaskUsage`]'s cpu time.
/// A wasm task's code runs inside the poll of its future (wasmtime returns at epoch
/// yields and at host calls that wait), so the sum is the time its code held an agent
/// thread: its cpu time, give or take the thread being preempted.
pub struct Metered<F> {
    inner: Pin<Box<F>>,
    usage: Arc<TaskUsage>,
}

impl<F: Future> Metered<F> {
    pub fn new(inner: F, usage: Arc<TaskUsage>) -> Metered<F> {
        Metered {
            inner: Box::pin(inner),
            usage,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let started = Instant::now();
        let polled = self.inner.as_mut().poll(cx);
        self.usage.add_cpu(started.elapsed());
        polled
    }
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use super::*;

    #[test]
    fn time_spent_inside_polls_is_counted_and_time_between_them_is_not() {
        let usage = TaskUsage::new();
        let mut polls = 0;
        let busy_then_pending = std::future::poll_fn(|cx| {
            polls += 1;
            std::thread::sleep(Duration::from_millis(20));
            if polls == 2 {
                return Poll::Ready(());
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            Metered::new(busy_then_pending, usage.clone()).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
        let seconds = usage.cpu_seconds();
        assert!((0.040..0.090).contains(&seconds), "{seconds}");
    }
}
