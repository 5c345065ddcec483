//! The one-shot CLI beside plain runc, in one run (#19: ≤ 1.1×):
//! - `oci_one_shot/wasmos_task_run`: `wasmos task run --oci IMAGE -- /bin/true`, the whole
//!   process (verify the cached image, write the bundle, fork the supervisor,
//!   `runc run --detach`, wait, read the outcome, delete the container and the bundle);
//! - `oci_one_shot/runc_run`: `runc run` (foreground: create, start, wait, delete) of the
//!   runtime spec the executor writes for that task (the same limits) on the same rootfs,
//!   the floor.
//!
//! Needs root, runc and /bin/busybox. Run: `cargo bench -p wasmos-cli --bench task_run_oci`.

use std::process::{Command, Stdio};
use std::time::Duration;

use agent::oci::{OciConfig, OciExecutor};
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../../agent/benches/support/plain_runc.rs"]
mod plain_runc;

const COMMAND: &str = "/bin/true";

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("busybox");
    wasmos_tests::oci_image::busybox_layout(&image, &["true"]);
    let work = dir.path().join("work");
    let task_run = || {
        let status = Command::new(env!("CARGO_BIN_EXE_wasmos"))
            .env("WASMOS_WORK_DIR", &work)
            .args(["task", "run", "--mem", "64", "--cpus", "1", "--oci"])
            .arg(&image)
            .args(["--", COMMAND])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    };
    // Unpacks the image into the work directory's rootfs cache, which both then use.
    task_run();
    // The runtime spec the executor writes for the same task, on the same cached rootfs.
    let executor = OciExecutor::new(OciConfig::new(&work)).unwrap();
    let sandbox = dir.path().join("sandbox");
    std::fs::create_dir_all(&sandbox).unwrap();
    let spec = plain_runc::spec(&image, &[COMMAND], 0);
    let bundle = plain_runc::plain_bundle(&executor, &spec, &sandbox, dir.path());
    let root = dir.path().join("plain-runc");

    let mut group = c.benchmark_group("oci_one_shot");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("wasmos_task_run", |b| b.iter(task_run));
    group.bench_function("runc_run", |b| {
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            let status = Command::new("runc")
                .arg("--root")
                .arg(&root)
                .args(["run", "--bundle"])
                .arg(&bundle)
                .arg(format!("plain-{n}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
        })
    });
    group.finish();
    plain_runc::remove_bench_cgroup();
}

criterion_group!(benches, bench);
criterion_main!(benches);
