//! Executor benchmarks: start latency of a trivial task cold (compile), cached (compiled
//! code from the disk cache) and warm (module loaded: instantiate, enter `_start`, end),
//! tasks per second, memory per idle task (printed before the timings), and the Pulley
//! interpreter against native code (`engine/*`: a warm start and a compute loop each).
//!
//! `cargo bench -p wasmos-agent --bench executor` (needs `cargo xtask modules` for the
//! Rust modules). Times include the whole run of the task and the teardown of its store,
//! so they bound "launch to guest entry" from above.

#![allow(clippy::too_many_lines)]

use std::path::Path;
use std::time::Duration;

use agent::wasm::{
    EngineKind, ExecutorConfig, KillSwitch, LoadedModule, TaskRun, WasmExecutor, WasmLimits,
};
use criterion::{BenchmarkId, Criterion, Throughput};
use proto::TaskState;

/// The smallest WASI command: one page of memory and an empty `_start`.
const TRIVIAL_WAT: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

/// Sleeps 60 s in `poll_oneoff` (a relative monotonic clock subscription): an idle task.
const SLEEPER_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store8 (i32.const 8) (i32.const 0))            ;; tag: clock
    (i32.store (i32.const 16) (i32.const 1))            ;; clock id: monotonic
    (i64.store (i32.const 24) (i64.const 60000000000))  ;; timeout: 60 s, relative
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#;

/// A compute-bound command: 10 million rounds of an integer hash in a loop, the result
/// stored so that the loop is not dead code.
const COMPUTE_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") (local $i i32) (local $h i32)
    (local.set $i (i32.const 10000000))
    (local.set $h (i32.const 2166136261))
    (loop $next
      (local.set $h (i32.mul (i32.xor (local.get $h) (local.get $i)) (i32.const 16777619)))
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br_if $next (local.get $i)))
    (i32.store (i32.const 0) (local.get $h))))"#;

/// Tasks started at once in the throughput and idle-memory measurements.
const TASKS_AT_ONCE: usize = 200;

fn rust_module(name: &str) -> Option<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/modules")
        .join(format!("{name}.wasm"));
    std::fs::read(path).ok()
}

fn task(sandbox: &Path) -> TaskRun {
    TaskRun {
        args: vec!["bench".into()],
        env: Vec::new(),
        dirs: Vec::new(),
        net: false,
        sandbox_dir: sandbox.to_owned(),
        limits: WasmLimits {
            memory_bytes_max: 64 << 20,
            cpus: 1.0,
            timeout: None,
            output_bytes_max: 1 << 16,
        },
    }
}

fn run_once(
    rt: &tokio::runtime::Runtime,
    exec: &WasmExecutor,
    module: &LoadedModule,
    task: &TaskRun,
) {
    let report = rt.block_on(exec.run(module, task, &KillSwitch::new()));
    assert_eq!(
        report.outcome.state,
        TaskState::Finished,
        "{}",
        report.outcome.reason
    );
}

fn start_latency(c: &mut Criterion, name: &str, bytes: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sandbox = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let task = task(sandbox.path());
    let mut group = c.benchmark_group(format!("start/{name}"));

    let uncached = WasmExecutor::new(ExecutorConfig {
        cache_dir: None,
        loaded_modules_max: 0,
        ..ExecutorConfig::default()
    })
    .unwrap();
    group.bench_function("cold_compile", |b| {
        b.iter(|| run_once(&rt, &uncached, &uncached.load(bytes).unwrap(), &task))
    });

    let disk = ExecutorConfig {
        cache_dir: Some(cache.path().to_owned()),
        loaded_modules_max: 0,
        ..ExecutorConfig::default()
    };
    let cached = WasmExecutor::new(disk).unwrap();
    cached.load(bytes).unwrap();
    group.bench_function("cached_disk", |b| {
        b.iter(|| run_once(&rt, &cached, &cached.load(bytes).unwrap(), &task))
    });
    group.bench_function("cached_disk_load_only", |b| {
        b.iter(|| cached.load(bytes).unwrap())
    });

    let module = uncached.load(bytes).unwrap();
    group.bench_function("warm", |b| {
        b.iter(|| run_once(&rt, &uncached, &module, &task))
    });
    group.finish();
}

fn tasks_per_second(c: &mut Criterion, bytes: &[u8]) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sandbox = tempfile::tempdir().unwrap();
    let exec = WasmExecutor::new(ExecutorConfig::default()).unwrap();
    let module = exec.load(bytes).unwrap();
    let task = task(sandbox.path());
    let mut group = c.benchmark_group("throughput");
    group.throughput(Throughput::Elements(TASKS_AT_ONCE as u64));
    group.bench_function(
        BenchmarkId::new("trivial_tasks_2_workers", TASKS_AT_ONCE),
        |b| {
            b.iter(|| {
                rt.block_on(async {
                    let handles: Vec<_> = (0..TASKS_AT_ONCE)
                        .map(|_| exec.start(module.clone(), task.clone()))
                        .collect();
                    for h in handles {
                        assert_eq!(h.outcome().await.state, TaskState::Finished);
                    }
                })
            })
        },
    );
    group.finish();
}

/// Pulley against native code, side by side: a warm start of `p1_hello` (its own file I/O
/// included) and the compute loop.
fn engines(c: &mut Criterion, p1_hello: Option<&[u8]>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sandbox = tempfile::tempdir().unwrap();
    let task = task(sandbox.path());
    let mut group = c.benchmark_group("engine");
    for engine in [EngineKind::Native, EngineKind::Pulley] {
        let exec = WasmExecutor::new(ExecutorConfig {
            engine,
            ..ExecutorConfig::default()
        })
        .unwrap();
        let compute = exec.load(COMPUTE_WAT.as_bytes()).unwrap();
        group.bench_function(format!("compute_10m/{}", engine.name()), |b| {
            b.iter(|| run_once(&rt, &exec, &compute, &task))
        });
        if let Some(bytes) = p1_hello {
            let hello = exec.load(bytes).unwrap();
            group.bench_function(format!("p1_hello_warm/{}", engine.name()), |b| {
                b.iter(|| run_once(&rt, &exec, &hello, &task))
            });
        }
    }
    group.finish();
}

/// Resident memory of this process, from /proc/self/statm.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

fn idle_memory_report() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sandbox = tempfile::tempdir().unwrap();
    let exec = WasmExecutor::new(ExecutorConfig::default()).unwrap();
    let module = exec.load(SLEEPER_WAT.as_bytes()).unwrap();
    let task = task(sandbox.path());
    rt.block_on(async {
        // One task first, so one-time allocations (runtime, WASI) are not counted per task.
        let warmup = exec.start(module.clone(), task.clone());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = rss_bytes();
        let handles: Vec<_> = (0..TASKS_AT_ONCE).map(|_| exec.start(module.clone(), task.clone())).collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_bytes();
        let per_task = after.saturating_sub(before) / TASKS_AT_ONCE as u64;
        println!("idle_memory: {TASKS_AT_ONCE} sleeping tasks added {} KiB resident, {} KiB per idle task", (after - before.min(after)) / 1024, per_task / 1024);
        for h in handles.into_iter().chain([warmup]) {
            h.kill();
            assert_eq!(h.outcome().await.state, TaskState::Killed);
        }
    });
}

fn main() {
    idle_memory_report();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();
    start_latency(&mut c, "trivial_wat", TRIVIAL_WAT.as_bytes());
    // Rust programs: p1_hello's run includes its own file I/O (write and read back a file).
    match rust_module("p1_hello").zip(rust_module("p2_hello")) {
        Some((p1, p2)) => {
            start_latency(&mut c, "p1_hello_rust", &p1);
            start_latency(&mut c, "p2_hello_component", &p2);
        }
        None => eprintln!(
            "target/modules missing: run `cargo xtask modules` for the Rust module benchmarks"
        ),
    }
    tasks_per_second(&mut c, TRIVIAL_WAT.as_bytes());
    engines(&mut c, rust_module("p1_hello").as_deref());
    c.final_summary();
}
