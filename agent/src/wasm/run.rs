//! Running one task: its WASI context (no ambient authority), its store with limits, and
//! the end of it as a [`TaskOutcome`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use proto::{DirGrant, TaskKind, TaskSpec, TaskState};
use tokio::sync::Notify;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::limits::{
    CpuThrottle, HANDLES_MAX, LimitHit, RunClock, SLICE_TICKS, TaskLimiter, WasmLimits,
};
use super::output::{CappedOutput, CapturedOutput, OutputStreams};
use super::program::{LoadedModule, Program};
use super::reason;
use crate::outcome::TaskOutcome;
use crate::usage::TaskUsage;

/// Guest path of the task's own sandbox directory.
pub const SANDBOX_GUEST_DIR: &str = "/";

/// Store data of a WASI p1 task.
pub struct P1Ctx {
    wasi: WasiP1Ctx,
    limiter: TaskLimiter,
    /// The task's descriptor probe for the quiet `sock_*` calls, made on first use.
    pub(crate) fd_probe: Option<TypedFunc<i32, i32>>,
}

/// Store data of a WASI p2 task.
pub struct P2Ctx {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: TaskLimiter,
}

impl P1Ctx {
    pub(crate) fn wasi(&mut self) -> &mut WasiP1Ctx {
        &mut self.wasi
    }
}

impl WasiView for P2Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Everything one run needs besides the module.
///
/// The task sees only: `args`, `env`, its `sandbox_dir` (read-write, at guest path `/`),
/// each of `dirs` at its guest path (read-only unless granted otherwise), and the network
/// only when `net` is true. Stdin is empty.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRun {
    /// Arguments including `argv[0]` (the module's name).
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub dirs: Vec<DirGrant>,
    pub net: bool,
    pub sandbox_dir: PathBuf,
    pub limits: WasmLimits,
}

/// A spec given to the WASM executor that is not a WASM task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a wasm task")]
pub struct NotWasmTask;

impl TaskRun {
    /// The run of a `TaskKind::Wasm` spec in `sandbox_dir`.
    pub fn from_spec(spec: &TaskSpec, sandbox_dir: PathBuf) -> Result<TaskRun, NotWasmTask> {
        let TaskKind::Wasm(wasm) = &spec.kind else {
            return Err(NotWasmTask);
        };
        let argv0 = if wasm.module.name.is_empty() {
            spec.name.clone()
        } else {
            wasm.module.name.clone()
        };
        Ok(TaskRun {
            args: std::iter::once(argv0)
                .chain(wasm.args.iter().cloned())
                .collect(),
            env: wasm
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            dirs: wasm.dirs.clone(),
            net: wasm.net,
            sandbox_dir,
            limits: WasmLimits::from_spec(&spec.resources, &spec.limits),
        })
    }
}

/// A task's outcome and what it wrote.
#[derive(Clone, Debug)]
pub struct TaskReport {
    pub outcome: TaskOutcome,
    pub stdout: CapturedOutput,
    pub stderr: CapturedOutput,
}

impl TaskReport {
    pub(crate) fn failed_before_start(reason: String) -> TaskReport {
        TaskReport {
            outcome: TaskOutcome {
                state: TaskState::Failed,
                exit_code: None,
                reason,
                stdout_tail: String::new(),
            },
            stdout: CapturedOutput::default(),
            stderr: CapturedOutput::default(),
        }
    }

    pub(crate) fn killed_before_start() -> TaskReport {
        let mut report = TaskReport::failed_before_start("killed".to_owned());
        report.outcome.state = TaskState::Killed;
        report
    }
}

/// Ends a task from anywhere: the task stops at its next epoch tick or host call and ends
/// as `killed`. Killing an ended task does nothing.
#[derive(Clone, Debug, Default)]
pub struct KillSwitch(Arc<Notify>);

impl KillSwitch {
    pub fn new() -> KillSwitch {
        KillSwitch::default()
    }

    pub fn kill(&self) {
        // notify_one keeps a permit when nobody waits yet, so an early kill is not lost.
        self.0.notify_one();
    }

    pub(crate) async fn killed(&self) {
        self.0.notified().await;
    }
}

enum Exit {
    Code(i32),
    Error(wasmtime::Error),
}

struct Execution {
    exit: Exit,
    limit_hit: Option<LimitHit>,
}

enum Ended {
    Ran(Execution),
    SetupFailed(SetupError),
    TimedOut(Duration),
    Killed,
}

/// Runs `module` to its end, a kill, or the timeout, measuring it on `usage`.
pub(crate) async fn run(
    engine: &Engine,
    module: &LoadedModule,
    run: &TaskRun,
    kill: &KillSwitch,
    usage: &Arc<TaskUsage>,
    output: &OutputStreams,
) -> TaskReport {
    let OutputStreams { stdout, stderr } = output;
    let execution = execute(engine, module, run, stdout, stderr, usage);
    let bounded = async {
        match run.limits.timeout {
            None => execution.await,
            Some(limit) => tokio::time::timeout(limit, execution)
                .await
                .unwrap_or(Ended::TimedOut(limit)),
        }
    };
    // Dropping the execution future (kill, timeout) drops the store and frees the task.
    let ended = tokio::select! {
        biased;
        () = kill.killed() => Ended::Killed,
        ended = bounded => ended,
    };
    let stdout = stdout.captured();
    let outcome = outcome_of(ended, &run.limits, &stdout);
    TaskReport {
        outcome,
        stdout,
        stderr: stderr.captured(),
    }
}

async fn execute(
    engine: &Engine,
    module: &LoadedModule,
    run: &TaskRun,
    stdout: &CappedOutput,
    stderr: &CappedOutput,
    usage: &Arc<TaskUsage>,
) -> Ended {
    let builder = match wasi_builder(run, stdout, stderr) {
        Ok(b) => b,
        Err(reason) => return Ended::SetupFailed(reason),
    };
    let limiter = TaskLimiter::new(run.limits.memory_bytes_max).with_usage(usage.clone());
    let execution = match &module.program {
        Program::P1(pre) => {
            let mut builder = builder;
            let mut wasi = builder.build_p1();
            wasi.ctx().table.set_max_capacity(HANDLES_MAX);
            let mut store = Store::new(
                engine,
                P1Ctx {
                    wasi,
                    limiter,
                    fd_probe: None,
                },
            );
            store.limiter(|ctx| &mut ctx.limiter);
            let clock = arm_epoch(&mut store, run.limits.cpus, usage);
            let result = clock
                .measure(async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                    start.call_async(&mut store, ()).await
                })
                .await;
            Execution {
                exit: exit_of(result),
                limit_hit: store.data_mut().limiter.hit.take(),
            }
        }
        Program::P2(pre) => {
            let mut builder = builder;
            let ctx = P2Ctx {
                wasi: builder.build(),
                table: handle_table(),
                limiter,
            };
            let mut store = Store::new(engine, ctx);
            store.limiter(|ctx| &mut ctx.limiter);
            let clock = arm_epoch(&mut store, run.limits.cpus, usage);
            let result = clock
                .measure(async {
                    let command = pre.instantiate_async(&mut store).await?;
                    command.wasi_cli_run().call_run(&mut store).await
                })
                .await;
            let exit = match result {
                Ok(Ok(())) => Exit::Code(0),
                // `wasi:cli/run` returning an error is the component's exit status 1.
                Ok(Err(())) => Exit::Code(1),
                Err(e) => exit_of(Err(e)),
            };
            Execution {
                exit,
                limit_hit: store.data_mut().limiter.hit.take(),
            }
        }
    };
    Ended::Ran(execution)
}

fn handle_table() -> ResourceTable {
    let mut table = ResourceTable::new();
    table.set_max_capacity(HANDLES_MAX);
    table
}

/// Holds the task in `store` to its `cpus` share ([`CpuThrottle`]). The task must run inside
/// the returned clock's [`RunClock::measure`], which measures the run time it is charged
/// and adds it to `usage`.
fn arm_epoch<T: 'static>(store: &mut Store<T>, cpus: f64, usage: &Arc<TaskUsage>) -> RunClock {
    let clock = RunClock::new(usage.clone());
    let mut throttle = CpuThrottle::new(cpus, clock.clone());
    store.set_epoch_deadline(SLICE_TICKS);
    store.epoch_deadline_callback(move |_| Ok(throttle.on_slice_end()));
    clock
}

fn exit_of(result: wasmtime::Result<()>) -> Exit {
    match result {
        Ok(()) => Exit::Code(0),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => Exit::Code(*code),
            None => Exit::Error(e),
        },
    }
}

/// Why a task's WASI context could not be built; the task fails with this reason.
#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error("cannot open the sandbox directory {}: {:#}", .path.display(), .error)]
    Sandbox {
        path: PathBuf,
        error: wasmtime::Error,
    },
    #[error("cannot grant directory {host} as {guest}: {error:#}")]
    Grant {
        host: String,
        guest: String,
        error: wasmtime::Error,
    },
}

/// The WASI context: nothing but what `run` grants.
fn wasi_builder(
    run: &TaskRun,
    stdout: &CappedOutput,
    stderr: &CappedOutput,
) -> Result<WasiCtxBuilder, SetupError> {
    let mut b = WasiCtxBuilder::new();
    b.args(&run.args)
        .envs(&run.env)
        .stdout(stdout.clone())
        .stderr(stderr.clone());
    b.initial_cwd(SANDBOX_GUEST_DIR);
    b.preopened_dir(&run.sandbox_dir, SANDBOX_GUEST_DIR, FsPerms::ReadWrite)
        .map_err(|error| SetupError::Sandbox {
            path: run.sandbox_dir.clone(),
            error,
        })?;
    for grant in &run.dirs {
        let perms = if grant.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        b.preopened_dir(&grant.host, &grant.guest, perms)
            .map_err(|error| SetupError::Grant {
                host: grant.host.clone(),
                guest: grant.guest.clone(),
                error,
            })?;
    }
    // `inherit_network` only opens the socket address check: wasmtime-wasi also refuses to
    // create any TCP or UDP socket unless they are allowed, and both are off by default
    // (whatever its builder docs say). Without the grant both gates stay shut.
    b.allow_tcp(run.net)
        .allow_udp(run.net)
        .allow_ip_name_lookup(run.net);
    if run.net {
        b.inherit_network();
    }
    Ok(b)
}

fn outcome_of(ended: Ended, limits: &WasmLimits, stdout: &CapturedOutput) -> TaskOutcome {
    let with_limit = |hit: Option<LimitHit>, what: String| match hit {
        Some(hit) => format!("{}, then {what}", reason::of_limit(&hit, limits)),
        None => what,
    };
    let (state, exit_code, mut reason) = match ended {
        Ended::Killed => (TaskState::Killed, None, "killed".to_owned()),
        Ended::TimedOut(limit) => (TaskState::Failed, None, reason::of_timeout(limit)),
        Ended::SetupFailed(why) => (TaskState::Failed, None, why.to_string()),
        Ended::Ran(Execution {
            exit: Exit::Code(0),
            ..
        }) => (
            TaskState::Finished,
            Some(0),
            "exited with code 0".to_owned(),
        ),
        Ended::Ran(Execution {
            exit: Exit::Code(code),
            limit_hit,
        }) => (
            TaskState::Failed,
            Some(code),
            with_limit(limit_hit, format!("exited with code {code}")),
        ),
        Ended::Ran(Execution {
            exit: Exit::Error(e),
            limit_hit,
        }) => (
            TaskState::Failed,
            None,
            with_limit(limit_hit, reason::of_error(&e)),
        ),
    };
    if !stdout.is_complete() {
        reason.push_str(&format!(
            "; stdout exceeded the {} byte cap, {} bytes dropped",
            limits.output_bytes_max, stdout.dropped_bytes
        ));
    }
    let stdout_tail = TaskOutcome::tail_of(&stdout.last_bytes(crate::outcome::STDOUT_TAIL_BYTES));
    TaskOutcome {
        state,
        exit_code,
        reason,
        stdout_tail,
    }
}
