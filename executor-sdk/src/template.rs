//! The task a scheduler module launches again and again, read from its `--config`:
//!
//! ```text
//! name = resize            # task name
//! cpus = 0.5               # per copy
//! mem = 64                 # MiB per copy
//! module_sha256 = <64 hex> # the task module, as stored in the master's module store
//! module_size = 12345      # optional
//! module_name = resize.wasm  # optional
//! args = --quality 80      # optional, split on spaces
//! ```

use heapless::Vec;

use crate::config::Config;
use crate::scheduler::{ModuleRef, TaskKind, TaskLimits, TaskSpec, WasmTask};
use crate::types::Resources;
use crate::wire::Error;

/// Most arguments a template's task takes.
pub const TEMPLATE_ARGS_MAX: usize = 16;

/// One WASM task's shape, borrowed from the config bytes.
#[derive(Clone, Debug)]
pub struct WasmTaskTemplate<'c> {
    pub name: &'c str,
    pub resources: Resources<'c>,
    pub module: ModuleRef<'c>,
    pub args: Vec<&'c str, TEMPLATE_ARGS_MAX>,
}

impl<'c> WasmTaskTemplate<'c> {
    /// Reads the keys above; `name` defaults to `default_name`. `cpus`, `mem` and
    /// `module_sha256` are required (`Err(Malformed)` without them, or with more than
    /// [`TEMPLATE_ARGS_MAX`] args).
    pub fn from_config(c: &Config<'c>, default_name: &'c str) -> Result<Self, Error> {
        let resources = Resources::default()
            .with_scalar("cpus", c.get_millis("cpus").ok_or(Error::Malformed)?)?
            .with_scalar("mem", c.get_millis("mem").ok_or(Error::Malformed)?)?;
        let module = ModuleRef {
            sha256: c.get("module_sha256").ok_or(Error::Malformed)?,
            size_bytes: c.get_u64("module_size").unwrap_or(0),
            name: c.get("module_name").unwrap_or("task.wasm"),
        };
        let mut args = Vec::new();
        for arg in c.get("args").unwrap_or("").split_whitespace() {
            args.push(arg).map_err(|_| Error::Malformed)?;
        }
        Ok(WasmTaskTemplate {
            name: c.get("name").unwrap_or(default_name),
            resources,
            module,
            args,
        })
    }

    /// The task to launch as `task_id`.
    pub fn spec<'s>(&'s self, task_id: &'s str) -> TaskSpec<'s> {
        TaskSpec {
            task_id,
            name: self.name,
            resources: self.resources.clone(),
            kind: TaskKind::Wasm(WasmTask {
                module: self.module,
                args: &self.args,
                ..WasmTask::default()
            }),
            limits: TaskLimits::default(),
            disconnect: None,
            replaces: None,
        }
    }
}
