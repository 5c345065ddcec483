//! The runc commands the executor uses besides `run` (which the supervisor issues):
//! `kill`, `delete`, `state`. Each runs with the agent's own `--root`, so the agent only
//! ever sees and touches its own containers.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    #[error("cannot run {runc}: {source}")]
    Spawn {
        runc: String,
        source: std::io::Error,
    },
    #[error("runc {command} failed: {stderr}")]
    Failed {
        command: &'static str,
        stderr: String,
    },
}

/// A runc binary and the state directory (`--root`) of one agent.
#[derive(Clone, Debug)]
pub struct Runc {
    pub binary: PathBuf,
    pub root: PathBuf,
}

impl Runc {
    pub fn new(binary: PathBuf, root: PathBuf) -> Runc {
        Runc { binary, root }
    }

    fn command(&self, verb: &str) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root).arg(verb);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, name: &'static str, mut cmd: Command) -> Result<Vec<u8>, RuncError> {
        let out = cmd.output().map_err(|source| RuncError::Spawn {
            runc: self.binary.display().to_string(),
            source,
        })?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(RuncError::Failed {
                command: name,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// Sends `signal` (a name such as `TERM` or `KILL`) to the container's init.
    pub fn kill(&self, id: &str, signal: &str) -> Result<(), RuncError> {
        let mut cmd = self.command("kill");
        cmd.arg(id).arg(signal);
        self.run("kill", cmd).map(drop)
    }

    /// Deletes the container and its cgroup (`--force` also kills a running one).
    pub fn delete(&self, id: &str) -> Result<(), RuncError> {
        let mut cmd = self.command("delete");
        cmd.arg("--force").arg(id);
        self.run("delete", cmd).map(drop)
    }

    /// Deletes a container whose init has ended (its supervisor recorded the end), as
    /// `runc delete` does for a stopped one:
    /// its cgroups (the paths runc listed in its own `state.json`), then its state
    /// directory, without starting runc, whose start-up is most of a short container's
    /// end. Anything unexpected (no state, a path outside the cgroup mount, a cgroup still
    /// holding processes) is left to `runc delete --force`.
    pub fn delete_stopped(&self, id: &str) -> Result<(), RuncError> {
        match self.remove_stopped_state(id) {
            Some(()) => Ok(()),
            None => self.delete(id),
        }
    }

    fn remove_stopped_state(&self, id: &str) -> Option<()> {
        let dir = self.root.join(id);
        let state: RuncState =
            serde_json::from_slice(&std::fs::read(dir.join("state.json")).ok()?).ok()?;
        // runc 1.x always lists them; none would mean a format this code does not know.
        if state.cgroup_paths.is_empty() {
            return None;
        }
        for path in state.cgroup_paths.values().map(Path::new) {
            if !path.starts_with(super::cgroup::CGROUP_MOUNT) {
                return None;
            }
            // rmdir fails on a cgroup with a process in it (EBUSY); every hierarchy holds
            // each of the container's processes, so a live container loses none of them.
            match std::fs::remove_dir(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => return None,
            }
        }
        std::fs::remove_dir_all(&dir).ok()
    }

    /// True while runc has state for the container `id` (until it is deleted).
    pub fn knows(&self, id: &str) -> bool {
        self.root.join(id).exists()
    }

    /// The ids of every container under this root (empty when runc cannot tell).
    pub fn list(&self) -> Vec<String> {
        let mut cmd = self.command("list");
        cmd.arg("--quiet");
        let out = self.run("list", cmd).unwrap_or_default();
        String::from_utf8_lossy(&out)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The container's status (`created`, `running`, `stopped`, `paused`); `None` when
    /// runc does not know it.
    pub fn status(&self, id: &str) -> Option<String> {
        let mut cmd = self.command("state");
        cmd.arg(id);
        let out = self.run("state", cmd).ok()?;
        let state: serde_json::Value = serde_json::from_slice(&out).ok()?;
        state.get("status")?.as_str().map(str::to_owned)
    }
}

/// What [`Runc::delete_stopped`] reads of runc's `state.json` (runc 1.x).
#[derive(serde::Deserialize)]
struct RuncState {
    #[serde(default)]
    cgroup_paths: std::collections::BTreeMap<String, String>,
}

/// The last error runc logged (`--log-format json`) in `log`, for a failure reason.
pub fn last_logged_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|line| {
        let entry: serde_json::Value = serde_json::from_str(line).ok()?;
        let level = entry.get("level")?.as_str()?;
        (level == "error" || level == "fatal")
            .then(|| entry.get("msg")?.as_str().map(str::to_owned))
            .flatten()
    })
}
