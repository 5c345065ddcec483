//! `wasmos task run --oci IMAGE [--mem MIB] [--cpus N] [--timeout SECS] [--env K=V]
//! [--net] [-- CMD...]`: one OCI image layout (directory or `.tar`) run by the agent's OCI
//! executor on runc, exactly as an agent runs it.
//!
//! The work directory (runc state, rootfs cache, bundles) is `$WASMOS_WORK_DIR`, else
//! `<tmp>/wasmos-task-run`; the rootfs cache there makes later runs of the same image start
//! without unpacking. Each run gets a fresh sandbox directory, removed afterwards.
//! Ctrl-C or SIGTERM kill the container (SIGTERM, 2 s grace, SIGKILL) and report `killed`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agent::oci::{OciConfig, OciExecutor};
use agent::outcome::TaskOutcome;
use proto::{OciTask, TaskId, TaskKind, TaskLimits, TaskSpec, TaskState};

/// Grace period between SIGTERM and SIGKILL on a timeout or an interrupt.
const KILL_GRACE: Duration = Duration::from_secs(2);

pub fn run(args: super::RunArgs) -> anyhow::Result<ExitCode> {
    let spec = match task_spec(&args) {
        Ok(spec) => spec,
        Err(usage) => {
            eprintln!("error: {usage}");
            return Ok(ExitCode::from(2));
        }
    };
    let work_dir = std::env::var_os("WASMOS_WORK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("wasmos-task-run"));
    let executor = match OciExecutor::new(OciConfig::new(&work_dir)) {
        Ok(executor) => executor,
        Err(e) => return super::report(&failed(e.to_string())),
    };
    let sandbox = work_dir.join("sandboxes").join(spec.task_id.as_str());
    std::fs::create_dir_all(&sandbox)?;
    let outcome = run_until_signal(&executor, &spec, &sandbox);
    let _ = std::fs::remove_dir_all(&sandbox);
    super::report(&outcome?)
}

/// Runs the task; an interrupt kills it.
fn run_until_signal(
    executor: &OciExecutor,
    spec: &TaskSpec,
    sandbox: &std::path::Path,
) -> anyhow::Result<TaskOutcome> {
    let container = match executor.launch(spec, sandbox) {
        Ok(container) => container,
        Err(e) => return Ok(e.outcome()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
        let waiter = container.clone();
        let wait = tokio::task::spawn_blocking(move || waiter.wait(KILL_GRACE));
        tokio::pin!(wait);
        tokio::select! {
            outcome = &mut wait => Ok::<_, anyhow::Error>(outcome?),
            () = interrupted() => {
                let killer = container.clone();
                tokio::task::spawn_blocking(move || killer.kill(KILL_GRACE)).await?;
                // The one waiter reads the outcome: two would race to delete and record it.
                Ok(wait.await?)
            }
        }
    })?;
    if let Err(e) = container.remove() {
        tracing::warn!(error = %e, "bundle not removed");
    }
    Ok(outcome)
}

async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn failed(reason: String) -> TaskOutcome {
    TaskOutcome {
        state: TaskState::Failed,
        exit_code: None,
        reason,
        stdout_tail: String::new(),
    }
}

/// The task the arguments describe, or a usage error.
fn task_spec(args: &super::RunArgs) -> Result<TaskSpec, String> {
    let Some(image) = &args.oci else {
        return Err("--oci IMAGE is required".into());
    };
    if !args.dirs.is_empty() {
        return Err(
            "--dir is not supported with --oci: the container gets its sandbox at /sandbox".into(),
        );
    }
    let resources = args.resources()?;
    let timeout_ms = args.timeout_ms()?;
    let env = args.env_vars()?;
    let image = std::path::absolute(image).unwrap_or_else(|_| image.clone());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    Ok(TaskSpec {
        task_id: TaskId::new(format!("task-run-{}-{nanos}", std::process::id())),
        name: image.display().to_string(),
        resources,
        kind: TaskKind::Oci(OciTask {
            image: image.display().to_string(),
            command: args.args.clone(),
            env,
            host_network: args.net,
            capabilities: Vec::new(),
        }),
        limits: TaskLimits {
            timeout_ms,
            ..TaskLimits::default()
        },
        disconnect: None,
        replaces: None,
    })
}
