//! `wasmos task run --oci IMAGE [--mem MIB] [--cpus N] [--timeout SECS] [--env K=V]
//! [--net] [-- CMD...]`: one OCI image layout (directory or `.tar`) run by the agent's OCI
//! executor on runc, exactly as an agent runs it.
//!
//! The work directory (runc state, rootfs cache, bundles) is `$WASMOS_WORK_DIR`, else
//! `<tmp>/wasmos-task-run`; the rootfs cache there makes later runs of the same image start
//! without unpacking. It must be this user's own (see [`private_work_dir`]). Each run gets
//! a fresh sandbox directory, removed afterwards. Ctrl-C or SIGTERM kill the container
//! (SIGTERM, 2 s grace, SIGKILL) and report `killed`, also when they come while the image
//! is unpacked or the container created: it is killed as soon as it exists.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

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
    if let Err(e) = private_work_dir(&work_dir) {
        eprintln!("error: {e:#}");
        return Ok(ExitCode::from(2));
    }
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

/// `dir`, made if missing (mode 0700), once it is known to be this user's own directory
/// that no one else may write. The default sits in `/tmp`, where anyone may make it first:
/// a rootfs cached there by another user would then run as this one (root), unchecked.
fn private_work_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the work directory {}", dir.display()))?;
    let meta = std::fs::symlink_metadata(dir)
        .with_context(|| format!("cannot read the work directory {}", dir.display()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let others_write = meta.mode() & 0o022 != 0;
    if !meta.is_dir() || meta.uid() != euid || others_write {
        bail!(
            "the work directory {} is not a directory of this user (uid {euid}) that only it \
             may write (owner uid {}, mode {:o}): the images cached there would run \
             unchecked; remove it, or set WASMOS_WORK_DIR to a directory of your own",
            dir.display(),
            meta.uid(),
            meta.mode() & 0o7777,
        );
    }
    Ok(())
}

/// Runs the task; an interrupt kills it, also one that came while it was launched.
fn run_until_signal(
    executor: &OciExecutor,
    spec: &TaskSpec,
    sandbox: &Path,
) -> anyhow::Result<TaskOutcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let interrupts = {
        let _in_runtime = runtime.enter();
        super::Interrupts::register()?
    };
    let container = match executor.launch(spec, sandbox) {
        Ok(container) => container,
        Err(e) => return Ok(e.outcome()),
    };
    let outcome = runtime.block_on(async {
        let waiter = container.clone();
        let wait = tokio::task::spawn_blocking(move || waiter.wait(KILL_GRACE));
        tokio::pin!(wait);
        tokio::select! {
            outcome = &mut wait => Ok::<_, anyhow::Error>(outcome?),
            () = interrupts.recv() => {
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
