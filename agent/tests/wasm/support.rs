//! Building specs and running modules the way the agent does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent::outcome::TaskOutcome;
use agent::wasm::{EngineKind, ExecutorConfig, TaskReport, WasmExecutor};
use proto::{ModuleRef, Resources, TaskId, TaskKind, TaskLimits, TaskSpec, WasmTask};

/// A module built by `cargo xtask modules`.
pub fn module_bytes(name: &str) -> Arc<[u8]> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/modules")
        .join(format!("{name}.wasm"));
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask modules`", path.display()));
    bytes.into()
}

/// The engine the suite runs on: `WASMOS_TEST_ENGINE=pulley` (`cargo xtask test` runs the
/// WASM tests so a second time, so that every limit is proven on Pulley too), else native.
pub fn engine() -> EngineKind {
    match std::env::var("WASMOS_TEST_ENGINE") {
        Ok(name) => name
            .parse()
            .unwrap_or_else(|e| panic!("WASMOS_TEST_ENGINE: {e}")),
        Err(_) => EngineKind::Native,
    }
}

pub fn executor() -> WasmExecutor {
    WasmExecutor::new(ExecutorConfig {
        engine: engine(),
        ..ExecutorConfig::default()
    })
    .unwrap()
}

/// A wasm task spec: `mem` MiB, `cpus`, optional timeout, module args.
pub fn spec(name: &str, mem_mib: f64, timeout_ms: Option<u64>, args: &[&str]) -> TaskSpec {
    TaskSpec {
        task_id: TaskId::new(format!("t-{name}")),
        name: name.to_owned(),
        resources: Resources::new()
            .with_scalar("mem", mem_mib)
            .with_scalar("cpus", 1.0),
        kind: TaskKind::Wasm(WasmTask {
            module: ModuleRef {
                name: name.to_owned(),
                ..ModuleRef::default()
            },
            args: args.iter().map(|s| s.to_string()).collect(),
            ..WasmTask::default()
        }),
        limits: TaskLimits {
            timeout_ms,
            ..TaskLimits::default()
        },
        disconnect: None,
        replaces: None,
    }
}

pub struct Sandbox {
    pub parent: tempfile::TempDir,
    pub dir: PathBuf,
}

/// A fresh sandbox directory inside a parent directory the task must not reach.
pub fn sandbox() -> Sandbox {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("sandbox");
    std::fs::create_dir(&dir).unwrap();
    Sandbox { parent, dir }
}

pub async fn run_spec(
    exec: &WasmExecutor,
    spec: &TaskSpec,
    bytes: Arc<[u8]>,
) -> (TaskReport, Sandbox) {
    let sb = sandbox();
    let report = exec.start_spec(spec, bytes, sb.dir.clone()).wait().await;
    assert!(
        !report.outcome.reason.is_empty(),
        "every outcome carries a reason"
    );
    (report, sb)
}

pub async fn run_module(
    exec: &WasmExecutor,
    name: &str,
    mem_mib: f64,
    timeout_ms: Option<u64>,
) -> TaskOutcome {
    run_spec(
        exec,
        &spec(name, mem_mib, timeout_ms, &[]),
        module_bytes(name),
    )
    .await
    .0
    .outcome
}
