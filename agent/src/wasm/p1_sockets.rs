//! WASI p1 `sock_*` calls answered as the spec says, without a log line per call:
//! `badf` for a descriptor that is not open, `notsock` for an open one (a p1 task never
//! holds a socket: none is ever preopened and p1 cannot create one).
//!
//! wasmtime-wasi's own `sock_*` give these answers but log a warning on every call, so a
//! guest calling them in a loop would flood the agent's log. Whether a descriptor is open
//! is known only to the p1 context's descriptor table, which wasmtime-wasi keeps private
//! and answers about only through its p1 host functions; those read and write through the
//! memory of the instance that calls them, so a host function cannot call them directly.
//! So each task gets, on its first socket call, a tiny probe instance in its own store
//! that calls the real `fd_fdstat_get` with the probe's own scratch memory: the table
//! answers, and the guest's memory is never touched.
//!
//! The probe is compiled when a task first calls a socket function, not when the agent
//! starts: compiling it at start brought the WAT parser and all of Cranelift into every
//! idle agent's resident memory (#19), for calls most tasks never make.

use std::sync::{Arc, OnceLock};

use wasmtime::{Caller, FuncType, InstancePre, Linker, Module, Val, ValType};

use super::run::P1Ctx;

/// WASI p1 errno `badf`: the descriptor is not open.
pub const ERRNO_BADF: i32 = 8;
/// WASI p1 errno `nomem`: the probe did not fit in the task's memory limit.
pub const ERRNO_NOMEM: i32 = 48;
/// WASI p1 errno `notsock`: the descriptor is open but not a socket.
pub const ERRNO_NOTSOCK: i32 = 57;

const P1_MODULES: [&str; 2] = ["wasi_snapshot_preview1", "wasi_unstable"];
/// The p1 socket calls and how many `i32` parameters each takes (the descriptor first).
const SOCK_CALLS: [(&str, usize); 4] = [
    ("sock_accept", 3),
    ("sock_recv", 6),
    ("sock_send", 5),
    ("sock_shutdown", 2),
];

/// `fd_errno(fd)`: the errno of the real `fd_fdstat_get` on `fd` (its 24-byte result goes
/// to the probe's own memory at 0).
const PROBE_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fdstat (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "fd_errno") (param $fd i32) (result i32)
    (call $fdstat (local.get $fd) (i32.const 0))))"#;

/// The probe, made once for all tasks from the linker as it was before the socket calls
/// were shadowed, so that it keeps the real `fd_fdstat_get`.
struct Probe {
    unshadowed: Linker<P1Ctx>,
    made: OnceLock<InstancePre<P1Ctx>>,
}

impl Probe {
    fn get(&self) -> wasmtime::Result<&InstancePre<P1Ctx>> {
        if let Some(probe) = self.made.get() {
            return Ok(probe);
        }
        let module = Module::new(self.unshadowed.engine(), PROBE_WAT)?;
        let probe = self.unshadowed.instantiate_pre(&module)?;
        // Two tasks may make it at once; both are the same, the first one kept.
        Ok(self.made.get_or_init(|| probe))
    }
}

/// Replaces the p1 `sock_*` functions in `linker` (which must already hold the real p1
/// functions) with quiet, conforming ones.
pub fn add_quiet(linker: &mut Linker<P1Ctx>) -> wasmtime::Result<()> {
    let probe = Arc::new(Probe {
        unshadowed: linker.clone(),
        made: OnceLock::new(),
    });
    linker.allow_shadowing(true);
    for module in P1_MODULES {
        for (name, arity) in SOCK_CALLS {
            let ty = FuncType::new(linker.engine(), vec![ValType::I32; arity], [ValType::I32]);
            let p = probe.clone();
            linker.func_new_async(module, name, ty, move |mut caller, params, results| {
                let p = p.clone();
                Box::new(async move {
                    // The descriptor is every call's first parameter.
                    let fd = params.first().and_then(Val::i32).unwrap_or(-1);
                    let errno = sock_errno(&mut caller, &p, fd).await?;
                    if let Some(result) = results.first_mut() {
                        *result = Val::I32(errno);
                    }
                    Ok(())
                })
            })?;
        }
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// The errno of a socket call on `fd`: `badf` when the task's table has no such
/// descriptor, else `notsock`.
async fn sock_errno(
    caller: &mut Caller<'_, P1Ctx>,
    probe: &Probe,
    fd: i32,
) -> wasmtime::Result<i32> {
    let fd_errno = match caller.data().fd_probe.clone() {
        Some(f) => f,
        None => {
            // Fails when the probe's one page of memory does not fit the task's limits;
            // the task learns it as `nomem`, like any allocation failure, not as a trap.
            let Ok(instance) = probe.get()?.instantiate_async(&mut *caller).await else {
                return Ok(ERRNO_NOMEM);
            };
            let f = instance.get_typed_func::<i32, i32>(&mut *caller, "fd_errno")?;
            caller.data_mut().fd_probe = Some(f.clone());
            f
        }
    };
    let errno = fd_errno.call_async(&mut *caller, fd).await?;
    Ok(if errno == ERRNO_BADF {
        ERRNO_BADF
    } else {
        ERRNO_NOTSOCK
    })
}
