//! One guest module in wasmtime, called through the ABI with a budget on every call.
//!
//! Limits, as contracts:
//! - **CPU budget**, by [`Limits::metering`]:
//!   - [`Metering::Fuel`] (the default): each call gets [`Limits::fuel_per_call`] units
//!     (about one per WASM instruction). A call that uses them all traps with
//!     [`GuestError::OutOfFuel`]; fuel is deterministic, so a budget that suffices once
//!     suffices on every host.
//!   - [`Metering::Deadline`]: each call gets [`Limits::deadline_ms_per_call`] of
//!     wall-clock time, counted in epochs of [`EPOCH_TICK_MS`] by a thread of the engine
//!     ([`engine_for`]); a call past it traps with [`GuestError::OutOfTime`]. Not
//!     deterministic; about 8% faster than fuel on an allocation pass (an epoch check on
//!     every loop back-edge costs much of what fuel counting does). The master daemon's
//!     allocator uses it.
//! - **Memory**: linear memory may not grow past [`Limits::memory_bytes_max`]. A growth
//!   past it makes `memory.grow` return -1 to the guest (the WASM contract); a guest that
//!   then traps or loops is reported as [`GuestError::MemoryCap`] or out of fuel. A
//!   guest refused [`DENIED_GROWS_MAX`] times in one call is stopped there (also
//!   `MemoryCap`): a refused growth costs one unit of fuel but a call into the host, so a
//!   loop of them would otherwise take a minute of fuel. A module whose initial memory
//!   is over the cap does not instantiate.
//! - **Host access**: none. The linker is empty: a module importing anything fails with
//!   [`GuestError::Imports`]. One instance, one memory, one table per store.
//! - **Messages**: input is refused above [`Limits::input_bytes_max`]; output must lie in
//!   linear memory and be at most [`Limits::output_bytes_max`].
//!
//! After any [`GuestError`] from a call the instance is poisoned (its state may be half
//! updated): callers drop it and instantiate again.

use wasmtime::{Engine, Instance, Linker, Memory, Module, ResourceLimiter, Store, Trap, TypedFunc};

use crate::abi;

/// How a call's CPU budget is counted; the engine must come from [`engine_for`] with the
/// same metering.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Metering {
    /// Instructions, deterministic ([`Limits::fuel_per_call`]).
    #[default]
    Fuel,
    /// Wall-clock time in epochs ([`Limits::deadline_ms_per_call`]).
    Deadline,
}

/// One epoch of a [`Metering::Deadline`] engine: the granularity of its deadlines.
pub const EPOCH_TICK_MS: u64 = 10;

/// Budgets of one module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub metering: Metering,
    pub fuel_per_call: u64,
    /// With [`Metering::Deadline`]: rounded up to whole epochs, plus the one under way.
    pub deadline_ms_per_call: u64,
    pub memory_bytes_max: usize,
    pub input_bytes_max: usize,
    pub output_bytes_max: usize,
    pub module_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            metering: Metering::Fuel,
            // A few tenths of a second of guest work here; a DRF pass over 1,000 agents and
            // 100 frameworks uses a small fraction of it, one over 10,000 × 1,000 where
            // many frameworks refuse many agents 1e9 to 2e9 (`wasmos sim` scales its
            // budget with the scenario).
            fuel_per_call: 2_000_000_000,
            deadline_ms_per_call: 1_000,
            memory_bytes_max: 64 << 20,
            input_bytes_max: 16 << 20,
            output_bytes_max: 4 << 20,
            module_bytes_max: 16 << 20,
        }
    }
}

/// Why a module could not be loaded or a call into it failed.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("module of {len} bytes is over the limit of {max} bytes")]
    ModuleTooLarge { len: usize, max: usize },
    #[error("module does not compile: {0}")]
    Compile(String),
    #[error("module imports {0}; modules get no imports beyond the wasmos ABI")]
    Imports(String),
    #[error("module lacks the export {name} of the right type (executor-sdk/README.md)")]
    MissingExport { name: &'static str },
    #[error("module speaks ABI version {found}, this host speaks {expected}")]
    AbiVersion { found: u32, expected: u32 },
    #[error("module does not instantiate: {0}")]
    Instantiate(String),
    #[error("guest used up its fuel budget of {fuel} units")]
    OutOfFuel { fuel: u64 },
    #[error("guest ran past its deadline of {ms} ms")]
    OutOfTime { ms: u64 },
    #[error("guest hit its memory cap of {bytes_max} bytes")]
    MemoryCap { bytes_max: usize },
    #[error("guest trapped: {0}")]
    Trap(String),
    #[error("guest refused an input of {len} bytes")]
    InputRefused { len: usize },
    #[error("input of {len} bytes is over the limit of {max} bytes")]
    InputTooLarge { len: usize, max: usize },
    #[error("guest output [{ptr}, +{len}) lies outside its {memory_len}-byte memory")]
    OutputOutOfBounds {
        ptr: u64,
        len: u64,
        memory_len: usize,
    },
    #[error("guest output of {len} bytes is over the limit of {max} bytes")]
    OutputTooLarge { len: usize, max: usize },
    #[error("guest reported error code {0} (see executor-sdk/README.md)")]
    GuestCode(i64),
    #[error("guest output is malformed: {0}")]
    Output(#[from] abi::OutputError),
    #[error("guest answer is invalid: {0}")]
    Invalid(String),
    #[error("cannot encode the input: {0}")]
    Encode(String),
}

/// The store's limiter: memory cap, one instance, one memory, one table.
struct Caps {
    memory_bytes_max: usize,
    table_elements_max: usize,
    memory_denied: bool,
    /// Growths refused in the call under way.
    denied_grows: u32,
}

/// Refused memory growths a guest may ask for in one call before it is stopped.
pub const DENIED_GROWS_MAX: u32 = 1_000;

impl ResourceLimiter for Caps {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_bytes_max;
        if !allowed {
            self.memory_denied = true;
            self.denied_grows += 1;
            if self.denied_grows > DENIED_GROWS_MAX {
                wasmtime::bail!("memory growth refused {DENIED_GROWS_MAX} times in one call");
            }
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements_max)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }
}

/// Table elements a module may have (function pointers of a Rust or C module).
const TABLE_ELEMENTS_MAX: usize = 10_000;

/// Which entry point a module serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Scheduler,
    Allocator,
}

impl Kind {
    fn entry_export(self) -> &'static str {
        match self {
            Kind::Scheduler => abi::EXPORT_SCHEDULER_HANDLE,
            Kind::Allocator => abi::EXPORT_ALLOCATOR_ALLOCATE,
        }
    }
}

/// A compiled module, ready to instantiate any number of times.
#[derive(Clone)]
pub struct ModuleCode {
    engine: Engine,
    module: Module,
    kind: Kind,
    limits: Limits,
}

/// The engine modules with [`Metering::Fuel`] run on: fuel metering on, and nothing a
/// guest could use to reach the host.
pub fn engine() -> Result<Engine, GuestError> {
    engine_for(Metering::Fuel)
}

/// The engine for modules with `metering`. A [`Metering::Deadline`] engine has a thread
/// that advances its epoch every [`EPOCH_TICK_MS`]; the thread ends once the engine and
/// every module compiled on it are dropped.
pub fn engine_for(metering: Metering) -> Result<Engine, GuestError> {
    let mut config = wasmtime::Config::new();
    config.consume_fuel(metering == Metering::Fuel);
    config.epoch_interruption(metering == Metering::Deadline);
    // Guest recursion beyond this traps (StackOverflow) instead of exhausting our stack.
    config.max_wasm_stack(1 << 20);
    let engine = Engine::new(&config).map_err(|e| GuestError::Compile(format!("{e:#}")))?;
    if metering == Metering::Deadline {
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasmos-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(std::time::Duration::from_millis(EPOCH_TICK_MS));
                }
            })
            .map_err(|e| GuestError::Compile(format!("cannot start the epoch thread: {e}")))?;
    }
    Ok(engine)
}

impl ModuleCode {
    /// Compiles `bytes` (a `.wasm` binary, or WAT text) and checks its imports and exports
    /// without running it.
    pub fn compile(
        engine: &Engine,
        bytes: &[u8],
        kind: Kind,
        limits: Limits,
    ) -> Result<ModuleCode, GuestError> {
        if bytes.len() > limits.module_bytes_max {
            return Err(GuestError::ModuleTooLarge {
                len: bytes.len(),
                max: limits.module_bytes_max,
            });
        }
        let module =
            Module::new(engine, bytes).map_err(|e| GuestError::Compile(format!("{e:#}")))?;
        let imports: Vec<String> = module
            .imports()
            .map(|i| format!("{}::{}", i.module(), i.name()))
            .collect();
        if !imports.is_empty() {
            return Err(GuestError::Imports(imports.join(", ")));
        }
        for name in [
            abi::EXPORT_MEMORY,
            abi::EXPORT_ABI_VERSION,
            abi::EXPORT_INPUT,
            kind.entry_export(),
        ] {
            if module.get_export(name).is_none() {
                return Err(GuestError::MissingExport {
                    name: export_name(name),
                });
            }
        }
        Ok(ModuleCode {
            engine: engine.clone(),
            module,
            kind,
            limits,
        })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A fresh instance (fresh memory, fresh guest state), with its ABI version checked.
    pub fn instantiate(&self) -> Result<GuestInstance, GuestError> {
        let caps = Caps {
            memory_bytes_max: self.limits.memory_bytes_max,
            table_elements_max: TABLE_ELEMENTS_MAX,
            memory_denied: false,
            denied_grows: 0,
        };
        let mut store = Store::new(&self.engine, caps);
        store.limiter(|caps| caps);
        set_budget(&mut store, self.limits)
            .map_err(|e| GuestError::Instantiate(format!("{e:#}")))?;
        let linker: Linker<Caps> = Linker::new(&self.engine);
        let instance = linker
            .instantiate(&mut store, &self.module)
            .map_err(|e| classify(&store, self.limits, e))?;
        let mut guest = GuestInstance::bind(store, instance, self.kind, self.limits)?;
        guest.check_abi_version()?;
        Ok(guest)
    }
}

/// The `&'static str` of an ABI export name (they are all constants).
fn export_name(name: &str) -> &'static str {
    [
        abi::EXPORT_MEMORY,
        abi::EXPORT_ABI_VERSION,
        abi::EXPORT_INPUT,
        abi::EXPORT_SCHEDULER_HANDLE,
        abi::EXPORT_ALLOCATOR_ALLOCATE,
    ]
    .into_iter()
    .find(|n| *n == name)
    .unwrap_or("?")
}

/// One live instance of a module.
pub struct GuestInstance {
    store: Store<Caps>,
    memory: Memory,
    abi_version: TypedFunc<(), u32>,
    input: TypedFunc<u32, u32>,
    entry: TypedFunc<u32, i64>,
    limits: Limits,
    fuel_used_last: u64,
}

impl GuestInstance {
    fn bind(
        mut store: Store<Caps>,
        instance: Instance,
        kind: Kind,
        limits: Limits,
    ) -> Result<GuestInstance, GuestError> {
        let memory = instance.get_memory(&mut store, abi::EXPORT_MEMORY).ok_or(
            GuestError::MissingExport {
                name: abi::EXPORT_MEMORY,
            },
        )?;
        let abi_version = instance
            .get_typed_func::<(), u32>(&mut store, abi::EXPORT_ABI_VERSION)
            .map_err(|_| GuestError::MissingExport {
                name: abi::EXPORT_ABI_VERSION,
            })?;
        let input = instance
            .get_typed_func::<u32, u32>(&mut store, abi::EXPORT_INPUT)
            .map_err(|_| GuestError::MissingExport {
                name: abi::EXPORT_INPUT,
            })?;
        let entry = instance
            .get_typed_func::<u32, i64>(&mut store, kind.entry_export())
            .map_err(|_| GuestError::MissingExport {
                name: export_name(kind.entry_export()),
            })?;
        Ok(GuestInstance {
            store,
            memory,
            abi_version,
            input,
            entry,
            limits,
            fuel_used_last: 0,
        })
    }

    fn check_abi_version(&mut self) -> Result<(), GuestError> {
        self.refuel()?;
        let found = self
            .abi_version
            .call(&mut self.store, ())
            .map_err(|e| classify(&self.store, self.limits, e))?;
        if found == abi::ABI_VERSION {
            Ok(())
        } else {
            Err(GuestError::AbiVersion {
                found,
                expected: abi::ABI_VERSION,
            })
        }
    }

    fn refuel(&mut self) -> Result<(), GuestError> {
        set_budget(&mut self.store, self.limits).map_err(|e| GuestError::Trap(format!("{e:#}")))
    }

    /// Fuel the last [`GuestInstance::call`] used.
    pub fn fuel_used_last(&self) -> u64 {
        self.fuel_used_last
    }

    /// One ABI call: writes `input` into the guest's input buffer, runs the entry point
    /// with a fresh fuel budget, and returns a copy of the output bytes.
    pub fn call(&mut self, input: &[u8]) -> Result<Vec<u8>, GuestError> {
        let len = input.len();
        if len > self.limits.input_bytes_max {
            return Err(GuestError::InputTooLarge {
                len,
                max: self.limits.input_bytes_max,
            });
        }
        let len32 = u32::try_from(len).map_err(|_| GuestError::InputTooLarge {
            len,
            max: self.limits.input_bytes_max,
        })?;
        self.refuel()?;
        let ptr = self
            .input
            .call(&mut self.store, len32)
            .map_err(|e| classify(&self.store, self.limits, e))?;
        if ptr == 0 {
            return Err(GuestError::InputRefused { len });
        }
        self.memory
            .write(&mut self.store, ptr as usize, input)
            .map_err(|_| GuestError::InputRefused { len })?;
        let packed = self.entry.call(&mut self.store, len32);
        if self.limits.metering == Metering::Fuel {
            let fuel_left = self.store.get_fuel().unwrap_or(0);
            self.fuel_used_last = self.limits.fuel_per_call.saturating_sub(fuel_left);
        }
        let packed = packed.map_err(|e| classify(&self.store, self.limits, e))?;
        self.read_output(packed)
    }

    fn read_output(&self, packed: i64) -> Result<Vec<u8>, GuestError> {
        if packed < 0 {
            return Err(GuestError::GuestCode(packed));
        }
        let (ptr, len) = ((packed as u64) >> 32, (packed as u64) & 0xffff_ffff);
        if len as usize > self.limits.output_bytes_max {
            return Err(GuestError::OutputTooLarge {
                len: len as usize,
                max: self.limits.output_bytes_max,
            });
        }
        let data = self.memory.data(&self.store);
        let out_of_bounds = GuestError::OutputOutOfBounds {
            ptr,
            len,
            memory_len: data.len(),
        };
        let end = ptr
            .checked_add(len)
            .ok_or_else(|| out_of_bounds_copy(&out_of_bounds))?;
        data.get(ptr as usize..end as usize)
            .map(<[u8]>::to_vec)
            .ok_or(out_of_bounds)
    }
}

fn out_of_bounds_copy(e: &GuestError) -> GuestError {
    match e {
        GuestError::OutputOutOfBounds {
            ptr,
            len,
            memory_len,
        } => GuestError::OutputOutOfBounds {
            ptr: *ptr,
            len: *len,
            memory_len: *memory_len,
        },
        _ => GuestError::Trap(e.to_string()),
    }
}

/// A fresh CPU budget (and count of refused growths) for the next call.
fn set_budget(store: &mut Store<Caps>, limits: Limits) -> wasmtime::Result<()> {
    store.data_mut().denied_grows = 0;
    match limits.metering {
        Metering::Fuel => store.set_fuel(limits.fuel_per_call),
        Metering::Deadline => {
            // The epoch under way may end at once: one more for it.
            store.set_epoch_deadline(limits.deadline_ms_per_call.div_ceil(EPOCH_TICK_MS) + 1);
            Ok(())
        }
    }
}

/// Names a failed call: fuel, time, the memory cap, or another trap.
fn classify(store: &Store<Caps>, limits: Limits, error: wasmtime::Error) -> GuestError {
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => GuestError::OutOfFuel {
            fuel: limits.fuel_per_call,
        },
        Some(Trap::Interrupt) => GuestError::OutOfTime {
            ms: limits.deadline_ms_per_call,
        },
        _ if store.data().memory_denied => GuestError::MemoryCap {
            bytes_max: limits.memory_bytes_max,
        },
        Some(trap) => GuestError::Trap(trap.to_string()),
        None => GuestError::Instantiate(format!("{error:#}")),
    }
}
