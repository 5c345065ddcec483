//! `wasmos task run MODULE`: one WASM task through the agent's executor
//! ([`agent::wasm::WasmExecutor::start_spec`], the call the agent makes for a launch), in a
//! fresh sandbox directory that is removed afterwards.
//!
//! Compiled code is cached in `$WASMOS_CACHE_DIR`, else `$XDG_CACHE_HOME/wasmos/code`, else
//! `$HOME/.cache/wasmos/code` (no cache when none can be created). Ctrl-C or SIGTERM kill
//! the task, which is reported as `killed`. With `--trust KEY.pub`, a module not signed by
//! one of the keys fails (`refused: ...`) before it is compiled or looked up in the cache.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use agent::wasm::{ExecutorConfig, WasmExecutor};
use anyhow::Context;
use proto::{DirGrant, ModuleRef, TaskId, TaskKind, TaskLimits, TaskSpec, WasmTask};

const USAGE_ERROR: u8 = 2;

pub fn run(args: super::RunArgs) -> anyhow::Result<ExitCode> {
    let (spec, bytes) = match task_spec(&args) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(USAGE_ERROR));
        }
    };
    let trusted = match crate::module_cmd::trusted_keys(&args.trust) {
        Ok(trusted) => trusted,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(USAGE_ERROR));
        }
    };
    let executor = WasmExecutor::new(ExecutorConfig {
        cache_dir: cache_dir(),
        trusted,
        engine: args.engine,
        ..ExecutorConfig::default()
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Registered before the sandbox exists: from then on a signal kills the task (and is
    // reported) instead of ending this process without its status line.
    let interrupts = {
        let _in_runtime = runtime.enter();
        super::Interrupts::register()?
    };
    let sandbox = fresh_sandbox()?;
    let report = runtime.block_on(async {
        let handle = executor.start_spec(&spec, bytes, sandbox.clone());
        let kill = handle.kill_switch();
        let interrupt = tokio::spawn(async move {
            interrupts.recv().await;
            kill.kill();
        });
        let report = handle.wait().await;
        interrupt.abort();
        report
    });
    // A compilation cut short by the timeout or a kill cannot be interrupted; dropping the
    // runtime would wait for it. The report is final: leave it running, exit now.
    runtime.shutdown_background();
    if let Err(e) = std::fs::remove_dir_all(&sandbox) {
        tracing::warn!(sandbox = %sandbox.display(), error = %e, "cannot remove the sandbox");
    }
    let stderr = report.stderr.last_bytes(agent::outcome::STDOUT_TAIL_BYTES);
    if !stderr.is_empty() {
        eprint!("{}", String::from_utf8_lossy(&stderr));
    }
    super::report(&report.outcome)
}

/// The spec the agent would receive for these arguments, and the module's bytes.
fn task_spec(args: &super::RunArgs) -> Result<(TaskSpec, Arc<[u8]>), String> {
    let path = args.module.as_ref().ok_or("a MODULE is required")?;
    let bytes = read_module(path)?;
    let resources = args.resources()?;
    let timeout_ms = args.timeout_ms()?;
    let env = args.env_vars()?;
    let dirs = args
        .dirs
        .iter()
        .map(|d| DirGrant::parse(d).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    for grant in &dirs {
        if !Path::new(&grant.host).is_dir() {
            return Err(format!("--dir {}: not a directory", grant.host));
        }
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "task".into());
    let module = ModuleRef {
        sha256: Default::default(),
        size_bytes: bytes.len() as u64,
        name: name.clone(),
    };
    let spec = TaskSpec {
        task_id: TaskId::new("local"),
        name,
        resources,
        kind: TaskKind::Wasm(WasmTask {
            module,
            args: args.args.clone(),
            env,
            dirs,
            net: args.net,
        }),
        limits: TaskLimits {
            timeout_ms,
            ..TaskLimits::default()
        },
        disconnect: None,
        replaces: None,
    };
    Ok((spec, bytes))
}

fn read_module(path: &Path) -> Result<Arc<[u8]>, String> {
    crate::files::read_capped(path, agent::wasm::MODULE_BYTES_MAX as u64)
        .map(Arc::from)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn cache_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("WASMOS_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let xdg = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from);
            xdg.or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|c| c.join("wasmos/code"))
        })?;
    std::fs::create_dir_all(&dir).ok().map(|()| dir)
}

fn fresh_sandbox() -> anyhow::Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("wasmos-task-{}-{nanos:09}", std::process::id()));
    std::fs::create_dir(&dir).with_context(|| format!("sandbox {}", dir.display()))?;
    Ok(dir)
}
