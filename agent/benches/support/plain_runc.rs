//! What the OCI benchmarks set beside plain runc, shared by `agent/benches/oci.rs` and
//! `cli/benches/task_run_oci.rs`: a busybox task, and the runtime spec the executor writes
//! for it as a bundle runc runs alone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::oci::OciExecutor;
use proto::{OciTask, Resources, TaskId, TaskKind, TaskLimits, TaskSpec};

/// Task `n` of this process: `command` in `image`, one cpu, 64 MiB.
pub fn spec(image: &Path, command: &[&str], n: u64) -> TaskSpec {
    TaskSpec {
        task_id: TaskId::new(format!("bench-{}-{n}", std::process::id())),
        name: "bench".into(),
        resources: Resources::new()
            .with_scalar("cpus", 1.0)
            .with_scalar("mem", 64.0),
        kind: TaskKind::Oci(OciTask {
            image: image.display().to_string(),
            command: command.iter().map(|s| s.to_string()).collect(),
            ..OciTask::default()
        }),
        limits: TaskLimits::default(),
        disconnect: None,
        replaces: None,
    }
}

/// Launches `spec` once, copies its bundle's `config.json` (rootfs path, mounts, cgroup
/// limits) to `dir/plain-bundle` with a cgroup of its own (under [`BENCH_CGROUP`]), and
/// removes the container.
pub fn plain_bundle(
    executor: &OciExecutor,
    spec: &TaskSpec,
    sandbox: &Path,
    dir: &Path,
) -> PathBuf {
    let container = executor.launch(spec, sandbox).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(container.bundle().join("config.json")).unwrap())
            .unwrap();
    config["linux"]["cgroupsPath"] = format!("/{BENCH_CGROUP}/plain").into();
    let bundle = dir.join("plain-bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    container.kill(Duration::ZERO);
    container.wait(Duration::ZERO);
    container.remove().unwrap();
    bundle
}

/// The parent cgroup of the plain bundle's: runc leaves it behind.
pub const BENCH_CGROUP: &str = "wasmos-bench";

/// Removes [`BENCH_CGROUP`] from every hierarchy (once no container is left in it).
pub fn remove_bench_cgroup() {
    let hierarchies = std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten();
    for hierarchy in hierarchies.flatten() {
        let _ = std::fs::remove_dir(hierarchy.path().join(BENCH_CGROUP));
    }
}
