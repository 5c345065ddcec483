//! The WASM executor on wasmtime: WASI p1 command modules and WASI p2 components, many at
//! once on one tokio runtime, with one shared [`wasmtime::Engine`].
//!
//! Use: [`WasmExecutor::new`] once per agent; [`WasmExecutor::start_spec`] for each task
//! (or [`WasmExecutor::load`] then [`WasmExecutor::start`]); keep the [`TaskHandle`] to
//! kill the task and await its [`TaskReport`].
//!
//! # What a task can do (no ambient authority)
//! It sees its arguments and environment as given, an empty stdin, its own sandbox
//! directory read-write at guest path `/`, the directories its spec grants (read-only unless
//! granted read-write), and the network only when granted. Paths cannot leave a preopened
//! directory: `..`, absolute host paths and symlinks pointing outside are refused by
//! wasmtime-wasi (cap-std).
//!
//! # Limits, as contracts
//! - **Memory** (`mem` MiB): all linear memories of the task together. A `memory.grow`
//!   past it returns -1 to the guest; if the task then fails, the reason names the limit.
//!   Tables are capped at [`limits::TABLE_ELEMENTS_MAX`] elements the same way.
//! - **CPU** (`cpus`): epoch interruption; the task yields every [`limits::SLICE_TICKS`]
//!   ticks of [`limits::EPOCH_TICK`], and with `cpus < 1` pauses so that it runs that
//!   share of the wall clock. Only the time it runs counts: time its host calls spend
//!   waiting (sleeps, I/O) is never paused for. Spinning is not an error.
//! - **Handles**: at most [`limits::HANDLES_MAX`] WASI handles (files, streams,
//!   pollables, sockets) at once; the call past it traps and the task fails naming the limit.
//! - **Stack**: [`WASM_STACK_BYTES_MAX`] of wasm stack; deeper recursion traps and the task
//!   fails with "stack overflow".
//! - **Wall clock** (`timeout_ms`): the task is dropped at the deadline and fails with
//!   "timed out after N s".
//! - **Output** (`output_bytes_max`): per stream, the first and last halves are kept and the
//!   middle counted; writes never fail.
//!
//! # Engines
//! [`EngineKind::Native`] compiles to machine code with Cranelift. [`EngineKind::Pulley`]
//! compiles to bytecode for wasmtime's Pulley interpreter: no executable memory and no
//! Cranelift backend for the CPU needed, for devices that forbid the one or lack the
//! other, at a cost in speed. Every limit above holds on both. Compiled code carries its
//! engine in the code cache's key, so the two never stand in for each other.
//!
//! # Signed modules
//! With [`ExecutorConfig::trusted`] holding keys, [`WasmExecutor::load`] (and so
//! [`WasmExecutor::start_spec`]) refuses a module that is unsigned, tampered or signed by
//! another key ([`LoadError::Refused`], naming which) before wasmtime sees it: it is not
//! parsed, compiled or looked up in the code cache, so code compiled earlier, by a run that
//! trusted nothing, cannot stand in for a module that fails the check. Only modules this
//! executor checked reach its in-memory cache, which is keyed by the sha256 of the very
//! bytes checked.

mod cache;
pub mod limits;
mod output;
mod p1_sockets;
mod program;
mod reason;
mod run;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use proto::TaskSpec;
use signing::TrustedKeys;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, Linker, Module};
use wasmtime_wasi::p2::bindings::CommandPre;

pub use cache::{CacheMiss, CodeCache, CodeKind};
pub use limits::WasmLimits;
pub use output::{CappedOutput, CapturedOutput, OutputStreams};
pub use program::{CodeOrigin, LoadError, LoadedModule, MODULE_BYTES_MAX};
pub use run::{KillSwitch, NotWasmTask, SANDBOX_GUEST_DIR, TaskReport, TaskRun};

use crate::outcome::TaskOutcome;
use crate::usage::TaskUsage;
use program::{Compiled, Program};
use run::{P1Ctx, P2Ctx};

/// Wasm stack of one task; deeper recursion traps with a stack overflow.
pub const WASM_STACK_BYTES_MAX: usize = 1 << 20;
/// Native stack of one task's fiber: the wasm stack plus room for host calls.
pub const ASYNC_STACK_BYTES: usize = 2 << 20;
/// Loaded modules kept in memory by default (by sha256), for warm starts.
pub const LOADED_MODULES_MAX_DEFAULT: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("wasmtime engine: {0}")]
    Engine(String),
    #[error("code cache at {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the epoch ticker thread: {0}")]
    Ticker(std::io::Error),
}

/// How to build a [`WasmExecutor`].
#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    /// Where compiled code is cached across runs; `None` compiles every load.
    pub cache_dir: Option<PathBuf>,
    /// Loaded modules kept in memory; 0 disables the in-memory cache.
    pub loaded_modules_max: usize,
    /// Keys whose signed modules run; none (the default): every module runs, signed or not.
    pub trusted: TrustedKeys,
    /// What runs the tasks' code.
    pub engine: EngineKind,
}

impl Default for ExecutorConfig {
    fn default() -> ExecutorConfig {
        ExecutorConfig {
            cache_dir: None,
            loaded_modules_max: LOADED_MODULES_MAX_DEFAULT,
            trusted: TrustedKeys::default(),
            engine: EngineKind::Native,
        }
    }
}

/// What runs a task's code (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Machine code compiled by Cranelift.
    #[default]
    Native,
    /// Bytecode run by wasmtime's Pulley interpreter.
    Pulley,
}

impl EngineKind {
    /// As the advert's `engine` attribute and `--engine` name it.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Native => "native",
            EngineKind::Pulley => "pulley",
        }
    }
}

impl std::str::FromStr for EngineKind {
    type Err = String;

    fn from_str(name: &str) -> Result<EngineKind, String> {
        match name {
            "native" => Ok(EngineKind::Native),
            "pulley" => Ok(EngineKind::Pulley),
            other => Err(format!("no engine {other:?}: native or pulley")),
        }
    }
}

/// The WASM executor of one agent. Cheap to clone; clones share the engine, the linkers
/// and the caches.
#[derive(Clone)]
pub struct WasmExecutor {
    shared: Arc<Shared>,
}

struct Shared {
    engine: Engine,
    p1_linker: Linker<P1Ctx>,
    p2_linker: wasmtime::component::Linker<P2Ctx>,
    cache: Option<CodeCache>,
    loaded: Mutex<HashMap<String, LoadedModule>>,
    loaded_max: usize,
    trusted: TrustedKeys,
    /// One lock per module being loaded, so that tasks started together with the same
    /// module compile it once (the others wait and take it from memory or the disk cache).
    loading: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// A started task.
pub struct TaskHandle {
    kill: KillSwitch,
    join: tokio::task::JoinHandle<TaskReport>,
    usage: Arc<TaskUsage>,
    output: OutputStreams,
}

impl TaskHandle {
    /// Asks the task to end as `killed`; see [`KillSwitch`].
    pub fn kill(&self) {
        self.kill.kill();
    }

    /// A clonable way to kill the task from elsewhere.
    pub fn kill_switch(&self) -> KillSwitch {
        self.kill.clone()
    }

    /// The task's cpu time and memory, updated while it runs.
    pub fn usage(&self) -> Arc<TaskUsage> {
        self.usage.clone()
    }

    /// What the task has written so far, while it runs.
    pub fn output(&self) -> OutputStreams {
        self.output.clone()
    }

    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// The task's outcome and captured output, once it has ended.
    pub async fn wait(self) -> TaskReport {
        match self.join.await {
            Ok(report) => report,
            Err(e) => TaskReport::failed_before_start(format!(
                "executor error: the task's runner ended abnormally ({e})"
            )),
        }
    }

    pub async fn outcome(self) -> TaskOutcome {
        self.wait().await.outcome
    }
}

impl WasmExecutor {
    /// One engine (async, epoch interruption, bounded stacks), WASI linkers, the code cache
    /// and the epoch ticker thread (stopped when the last clone is dropped).
    pub fn new(config: ExecutorConfig) -> Result<WasmExecutor, ExecutorError> {
        let engine = engine_config(config.engine)
            .and_then(|c| Engine::new(&c))
            .map_err(|e| ExecutorError::Engine(format!("{e:#}")))?;
        let mut p1_linker: Linker<P1Ctx> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut p1_linker, P1Ctx::wasi)
            .and_then(|_| wasmtime_wasi::p0::add_to_linker_async(&mut p1_linker, P1Ctx::wasi))
            .and_then(|_| p1_sockets::add_quiet(&mut p1_linker))
            .map_err(|e| ExecutorError::Engine(format!("{e:#}")))?;
        let mut p2_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut p2_linker)
            .map_err(|e| ExecutorError::Engine(format!("{e:#}")))?;
        let cache = match &config.cache_dir {
            Some(dir) => {
                Some(
                    CodeCache::open(dir, &engine).map_err(|source| ExecutorError::Cache {
                        path: dir.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(&engine, ticker_stop.clone()).map_err(ExecutorError::Ticker)?;
        let shared = Shared {
            engine,
            p1_linker,
            p2_linker,
            cache,
            loaded: Mutex::new(HashMap::new()),
            loaded_max: config.loaded_modules_max,
            trusted: config.trusted,
            loading: Mutex::new(HashMap::new()),
            ticker_stop,
        };
        Ok(WasmExecutor {
            shared: Arc::new(shared),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// The on-disk code cache, if configured.
    pub fn code_cache(&self) -> Option<&CodeCache> {
        self.shared.cache.as_ref()
    }

    /// Compiles (or takes from a cache) and links `bytes`: a core module (binary or WAT) or
    /// a component. CPU-heavy on a cold cache: call it off the async workers
    /// ([`WasmExecutor::start_spec`] does). With trusted keys, a module that fails the
    /// signature check is refused first (see "Signed modules" above).
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedModule, LoadError> {
        if bytes.len() > MODULE_BYTES_MAX {
            return Err(LoadError::TooLarge(bytes.len()));
        }
        let sha256 = program::sha256_hex(bytes);
        // Only checked bytes are ever remembered, under their own sha256, by this executor
        // whose trusted keys never change: a hit is a module that passed the check.
        if let Some(module) = self.loaded_from_memory(&sha256) {
            return Ok(module);
        }
        if let Some(signer) = self.shared.trusted.check(bytes)? {
            tracing::debug!(%sha256, %signer, "module signed by a trusted key");
        }
        let binary = program::to_binary(bytes)?;
        let flight = {
            let mut loading = self
                .shared
                .loading
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            loading.entry(sha256.clone()).or_default().clone()
        };
        let result = {
            let _only_loader = flight.lock().unwrap_or_else(|p| p.into_inner());
            match self.loaded_from_memory(&sha256) {
                Some(module) => Ok(module),
                None => self.compile_and_link(sha256.clone(), &binary),
            }
        };
        let mut loading = self
            .shared
            .loading
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&flight) == 2 {
            loading.remove(&sha256);
        }
        result
    }

    /// The module with this sha256 (lower-case hex) if this executor loaded it before and
    /// still remembers it: no bytes to read or hash, and its checks were passed then.
    pub fn loaded_from_memory(&self, sha256: &str) -> Option<LoadedModule> {
        let mut module = self.loaded_lock().get(sha256)?.clone();
        module.origin = CodeOrigin::Memory;
        Some(module)
    }

    fn compile_and_link(&self, sha256: String, binary: &[u8]) -> Result<LoadedModule, LoadError> {
        let (compiled, origin) = program::compile(
            &self.shared.engine,
            self.shared.cache.as_ref(),
            &sha256,
            binary,
        )?;
        let program = match compiled {
            Compiled::Module(module) => Program::P1(self.link_p1(&module)?),
            Compiled::Component(component) => Program::P2(self.link_p2(&component)?),
        };
        let module = LoadedModule {
            sha256: sha256.clone(),
            program,
            origin,
        };
        self.remember(sha256, &module);
        Ok(module)
    }

    fn link_p1(&self, module: &Module) -> Result<wasmtime::InstancePre<P1Ctx>, LoadError> {
        let start = module
            .exports()
            .find(|e| e.name() == "_start")
            .and_then(|e| e.ty().func().cloned());
        let Some(start) = start else {
            return Err(LoadError::NotACommand(
                "module exports no `_start` function (not a WASI command)",
            ));
        };
        if start.params().len() != 0 || start.results().len() != 0 {
            return Err(LoadError::NotACommand(
                "the module's `_start` takes parameters or returns results (a WASI command's takes and returns nothing)",
            ));
        }
        self.shared
            .p1_linker
            .instantiate_pre(module)
            .map_err(program::link_error)
    }

    fn link_p2(&self, component: &Component) -> Result<CommandPre<P2Ctx>, LoadError> {
        let pre = self
            .shared
            .p2_linker
            .instantiate_pre(component)
            .map_err(program::link_error)?;
        CommandPre::new(pre).map_err(|_| {
            LoadError::NotACommand("component does not export `wasi:cli/run` (not a WASI command)")
        })
    }

    fn loaded_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LoadedModule>> {
        self.shared.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, sha256: String, module: &LoadedModule) {
        if self.shared.loaded_max == 0 {
            return;
        }
        let mut loaded = self.loaded_lock();
        if loaded.len() >= self.shared.loaded_max {
            // No recency is tracked: any entry may go; a miss only costs a cache load.
            if let Some(victim) = loaded.keys().next().cloned() {
                loaded.remove(&victim);
            }
        }
        loaded.insert(sha256, module.clone());
    }

    /// Runs a loaded module to its end (or `kill`), on the current task.
    pub async fn run(
        &self,
        module: &LoadedModule,
        task: &TaskRun,
        kill: &KillSwitch,
    ) -> TaskReport {
        let output = OutputStreams::new(task.limits.output_bytes_max);
        self.run_metered(module, task, kill, &TaskUsage::new(), &output)
            .await
    }

    /// [`WasmExecutor::run`], measuring the task's cpu time and memory on `usage`.
    pub async fn run_metered(
        &self,
        module: &LoadedModule,
        task: &TaskRun,
        kill: &KillSwitch,
        usage: &Arc<TaskUsage>,
        output: &OutputStreams,
    ) -> TaskReport {
        run::run(&self.shared.engine, module, task, kill, usage, output).await
    }

    /// Starts a loaded module on the current tokio runtime.
    pub fn start(&self, module: LoadedModule, task: TaskRun) -> TaskHandle {
        let kill = KillSwitch::new();
        let usage = TaskUsage::new();
        let output = OutputStreams::new(task.limits.output_bytes_max);
        let (exec, switch, meter, out) =
            (self.clone(), kill.clone(), usage.clone(), output.clone());
        let join = tokio::spawn(async move {
            exec.run_metered(&module, &task, &switch, &meter, &out)
                .await
        });
        TaskHandle {
            kill,
            join,
            usage,
            output,
        }
    }

    /// Starts the task `spec` (a `TaskKind::Wasm`) from the module's bytes, in
    /// `sandbox_dir` (which the caller creates and removes). Every failure, from bytes that
    /// are not WebAssembly to a trap, ends as a `failed` outcome with its reason. The
    /// spec's timeout bounds loading (compilation) and, afresh, the run.
    pub fn start_spec(
        &self,
        spec: &TaskSpec,
        module_bytes: Arc<[u8]>,
        sandbox_dir: PathBuf,
    ) -> TaskHandle {
        let kill = KillSwitch::new();
        let usage = TaskUsage::new();
        let task = TaskRun::from_spec(spec, sandbox_dir);
        let cap = task.as_ref().map_or(0, |task| task.limits.output_bytes_max);
        let output = OutputStreams::new(cap);
        let (exec, switch, meter, out) =
            (self.clone(), kill.clone(), usage.clone(), output.clone());
        let join = tokio::spawn(async move {
            let task = match task {
                Ok(task) => task,
                Err(reason) => return TaskReport::failed_before_start(reason.to_string()),
            };
            let loader = exec.clone();
            let loading = tokio::task::spawn_blocking(move || loader.load(&module_bytes));
            // The timeout also bounds loading: a module built to compile for ages fails
            // the task. (The compiling thread cannot be interrupted; it finishes unseen.)
            let bounded = async {
                match task.limits.timeout {
                    None => Some(loading.await),
                    Some(limit) => tokio::time::timeout(limit, loading).await.ok(),
                }
            };
            let loaded = tokio::select! {
                biased;
                () = switch.killed() => return TaskReport::killed_before_start(),
                loaded = bounded => loaded,
            };
            let Some(loaded) = loaded else {
                let limit = task.limits.timeout.unwrap_or_default();
                return TaskReport::failed_before_start(format!(
                    "{} while compiling the module",
                    reason::of_timeout(limit)
                ));
            };
            match loaded {
                Ok(Ok(module)) => {
                    exec.run_metered(&module, &task, &switch, &meter, &out)
                        .await
                }
                Ok(Err(e)) => TaskReport::failed_before_start(e.to_string()),
                Err(e) => TaskReport::failed_before_start(format!(
                    "executor error: loading the module ended abnormally ({e})"
                )),
            }
        });
        TaskHandle {
            kill,
            join,
            usage,
            output,
        }
    }
}

fn engine_config(kind: EngineKind) -> wasmtime::Result<Config> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    config.max_wasm_stack(WASM_STACK_BYTES_MAX);
    config.async_stack_size(ASYNC_STACK_BYTES);
    if kind == EngineKind::Pulley {
        config.target(PULLEY_TARGET)?;
    }
    Ok(config)
}

/// Pulley's target for this host: 64-bit, in the host's byte order.
const PULLEY_TARGET: &str = if cfg!(target_endian = "big") {
    "pulley64be"
} else {
    "pulley64"
};

/// One thread per engine advances the epoch every [`limits::EPOCH_TICK`]; it holds only a
/// weak reference and stops with the executor.
fn spawn_ticker(engine: &Engine, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(limits::EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })?;
    Ok(())
}
