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
