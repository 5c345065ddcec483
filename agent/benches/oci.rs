//! OCI executor start latency on real runc, with the busybox image built as in the tests:
//! - `launch/cached_rootfs`: `OciExecutor::launch` until the container's process runs
//!   (image verified, rootfs from the cache, bundle written, supervisor forked,
//!   `runc run --detach` done);
//! - `runc_run_detach/same_bundle`: plain `runc run --detach` of the same bundle, the floor;
//! - `launch/uncached_rootfs`: `launch` with an empty rootfs cache (verify and unpack too);
//! - `prepare_image/*`: the image step alone, cached and not.
//!
//! Needs root, runc and /bin/busybox. Run: `cargo bench -p wasmos-agent --bench oci`.

#![allow(clippy::too_many_lines)]

#[path = "support/plain_runc.rs"]
mod plain_runc;

#[path = "../tests/oci/layout.rs"]
#[allow(dead_code)]
mod layout;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use agent::oci::{ImageCache, OciConfig, OciExecutor};
use criterion::{Criterion, criterion_group, criterion_main};
use proto::TaskSpec;

const COMMAND: [&str; 2] = ["sleep", "60"];

fn spec(image: &Path, n: u64) -> TaskSpec {
    plain_runc::spec(image, &COMMAND, n)
}

/// Times `launch` only; each container is killed and removed outside the measurement.
fn time_launches(
    executor_for: impl Fn(u64) -> OciExecutor,
    image: &Path,
    sandbox: &Path,
    iters: u64,
    base: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    for i in 0..iters {
        let executor = executor_for(base + i);
        let spec = spec(image, base + i);
        let t0 = Instant::now();
        let container = executor.launch(&spec, sandbox).expect("launch");
        total += t0.elapsed();
        container.kill(Duration::ZERO);
        container.wait(Duration::ZERO);
        container.remove().expect("remove");
    }
    total
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("busybox");
    layout::busybox_layout(&image, &["true"]);
    let sandbox = dir.path().join("sandbox");
    std::fs::create_dir_all(&sandbox).unwrap();
    let work = dir.path().join("work");
    let executor = OciExecutor::new(OciConfig::new(&work)).unwrap();
    let mut counter = 0u64;

    let mut group = c.benchmark_group("launch");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("cached_rootfs", |b| {
        b.iter_custom(|iters| {
            counter += iters;
            time_launches(|_| executor.clone(), &image, &sandbox, iters, counter)
        })
    });
    group.bench_function("uncached_rootfs", |b| {
        b.iter_custom(|iters| {
            counter += iters;
            time_launches(
                |n| {
                    OciExecutor::new(OciConfig::new(dir.path().join(format!("fresh-{n}")))).unwrap()
                },
                &image,
                &sandbox,
                iters,
                counter,
            )
        })
    });
    group.finish();

    // The same bundle the executor writes, run by runc alone.
    let bundle = plain_runc::plain_bundle(&executor, &spec(&image, u64::MAX), &sandbox, dir.path());
    let root = dir.path().join("plain-runc");
    let mut group = c.benchmark_group("runc_run_detach");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("same_bundle", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let id = format!("plain-{i}");
                let t0 = Instant::now();
                let status = Command::new("runc")
                    .arg("--root")
                    .arg(&root)
                    .args(["run", "--detach", "--bundle"])
                    .arg(&bundle)
                    .arg(&id)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .unwrap();
                total += t0.elapsed();
                assert!(status.success());
                Command::new("runc")
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "--force", &id])
                    .status()
                    .unwrap();
            }
            total
        })
    });
    group.finish();
    plain_runc::remove_bench_cgroup();

    let mut group = c.benchmark_group("prepare_image");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    let cache = ImageCache::new(dir.path().join("prepare-cache"));
    cache.prepare(&image).unwrap();
    group.bench_function("cached", |b| b.iter(|| cache.prepare(&image).unwrap()));
    group.bench_function("uncached", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                counter += 1;
                let fresh = ImageCache::new(dir.path().join(format!("prepare-{counter}")));
                let t0 = Instant::now();
                fresh.prepare(&image).unwrap();
                total += t0.elapsed();
                std::fs::remove_dir_all(fresh.dir()).unwrap();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
