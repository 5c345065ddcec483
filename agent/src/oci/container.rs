//! One container's lifecycle: its bundle directory, its supervisor, and how its end is
//! turned into a [`TaskOutcome`].
//!
//! Bundle directory `<work>/oci/containers/<container id>/`:
//! - `config.json` (runtime spec), `task.json` (what the agent needs to report on the task,
//!   written before the start), `runtime.json` (supervisor pid and start time, init pid,
//!   cgroup paths; written once the container runs);
//! - the supervisor's files: `stdout.log`, `stderr.log`, `runc.log`, `init.pid`, `exit`;
//! - `stop`: why the agent stopped the task (`killed` or `timeout`), written before it
//!   signals the container so that a restarted agent reports the same outcome;
//! - `outcome.json`: the final outcome, written once, so that it is reported identically
//!   however many times the agent restarts before [`OciContainer::remove`].

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto::TaskState;
use proto::admin::{LogOffsets, OutputPart, OutputPiece};
use serde::{Deserialize, Serialize};

use super::cgroup::CgroupPaths;
use super::runc::{self, Runc};
use super::shim::{self, ExitRecord};
use crate::outcome::{STDOUT_TAIL_BYTES, TaskOutcome};
use crate::wasm::CapturedOutput;

/// How often the exit file is checked when the supervisor cannot be watched by pidfd.
const EXIT_FILE_POLL: Duration = Duration::from_millis(50);
/// How long to wait for the container to die after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

pub const TASK_FILE: &str = "task.json";
pub const RUNTIME_FILE: &str = "runtime.json";
pub const STOP_FILE: &str = "stop";
pub const OUTCOME_FILE: &str = "outcome.json";

/// What the agent must remember about a task to report on it after a restart.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task_id: String,
    pub container_id: String,
    pub mem_mib: u64,
    pub timeout_ms: Option<u64>,
    /// Wall clock at launch, milliseconds since the Unix epoch: timeouts survive restarts.
    pub started_at_ms: u64,
}

/// The running container's processes and cgroup.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RuntimeRecord {
    pub shim_pid: i32,
    /// Field 22 of `/proc/<pid>/stat`: tells our supervisor from a later process that
    /// reused its pid.
    pub shim_start_ticks: u64,
    pub init_pid: i32,
    pub cgroup: Option<CgroupPaths>,
}

/// Why the agent stopped a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopCause {
    Killed,
    Timeout,
}

impl StopCause {
    fn as_str(self) -> &'static str {
        match self {
            StopCause::Killed => "killed",
            StopCause::Timeout => "timeout",
        }
    }
}

/// A handle on one container, cheap to clone; every method may be called from any thread.
#[derive(Clone, Debug)]
pub struct OciContainer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bundle: PathBuf,
    runc: Runc,
    task: TaskRecord,
    runtime: Option<RuntimeRecord>,
    /// The supervisor, watched by pidfd; `None` when it is gone or unknown.
    shim: Option<OwnedFd>,
}

impl OciContainer {
    pub(super) fn attach(
        bundle: PathBuf,
        runc: Runc,
        task: TaskRecord,
        runtime: Option<RuntimeRecord>,
    ) -> OciContainer {
        let shim = runtime
            .as_ref()
            .and_then(|r| open_shim(r.shim_pid, r.shim_start_ticks));
        OciContainer {
            inner: Arc::new(Inner {
                bundle,
                runc,
                task,
                runtime,
                shim,
            }),
        }
    }

    pub fn task_id(&self) -> &str {
        &self.inner.task.task_id
    }

    /// The runc container id (under the agent's runc root).
    pub fn container_id(&self) -> &str {
        &self.inner.task.container_id
    }

    pub fn bundle(&self) -> &Path {
        &self.inner.bundle
    }

    /// The container's init as seen from the host.
    pub fn init_pid(&self) -> Option<i32> {
        self.inner.runtime.as_ref().map(|r| r.init_pid)
    }

    /// The container's cgroup directories (for accounting), when known.
    pub fn cgroup(&self) -> Option<&CgroupPaths> {
        self.inner.runtime.as_ref()?.cgroup.as_ref()
    }

    /// True once the supervisor has recorded the container's end.
    pub fn has_exited(&self) -> bool {
        self.inner.bundle.join(shim::EXIT_FILE).exists()
    }

    /// Waits until the container has ended (up to `timeout`; `None` waits for ever).
    /// Returns true when it has.
    pub fn wait_exit(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if self.has_exited() {
                return true;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return false;
            }
            match &self.inner.shim {
                Some(fd) => {
                    let step = left.unwrap_or(Duration::from_secs(3600));
                    if poll_readable(fd, step) {
                        // The supervisor is gone; it wrote `exit` before leaving, unless it
                        // was killed itself.
                        return true;
                    }
                }
                None => {
                    if !self.shim_may_be_alive() {
                        return true;
                    }
                    std::thread::sleep(left.map_or(EXIT_FILE_POLL, |l| l.min(EXIT_FILE_POLL)));
                }
            }
        }
    }

    /// Without a pidfd: a supervisor we know of is alive when its pid still has its start
    /// time; with no record of one, runc's state decides.
    fn shim_may_be_alive(&self) -> bool {
        match &self.inner.runtime {
            Some(r) => proc_start_ticks(r.shim_pid) == Some(r.shim_start_ticks),
            None => matches!(
                self.inner.runc.status(self.container_id()).as_deref(),
                Some("running" | "created")
            ),
        }
    }

    /// Stops the task as killed: SIGTERM, `grace` to exit, then SIGKILL (waiting up to
    /// [`KILL_WAIT`] for it to take). The outcome (from [`OciContainer::wait`]) is then
    /// `killed`, unless the container had already ended by itself. Note that the init of a
    /// pid namespace ignores SIGTERM unless it handles it, so a plain `sleep` as the
    /// container's command always takes the whole grace period.
    pub fn kill(&self, grace: Duration) {
        self.stop(StopCause::Killed, grace);
    }

    fn stop(&self, cause: StopCause, grace: Duration) {
        if self.has_exited() {
            // It ended by itself first: that is its outcome, not this stop.
            return;
        }
        let marker = self.inner.bundle.join(STOP_FILE);
        // The first cause wins: a kill racing a timeout is reported once, consistently.
        let _ = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
            .and_then(|mut f| io::Write::write_all(&mut f, cause.as_str().as_bytes()));
        if self.has_exited() {
            return;
        }
        let id = self.container_id();
        if let Err(e) = self.inner.runc.kill(id, "TERM") {
            tracing::debug!(container = id, error = %e, "oci: SIGTERM not delivered");
        }
        if self.wait_exit(Some(grace)) {
            return;
        }
        if let Err(e) = self.inner.runc.kill(id, "KILL") {
            tracing::debug!(container = id, error = %e, "oci: SIGKILL not delivered");
        }
        if !self.wait_exit(Some(KILL_WAIT)) {
            tracing::warn!(
                container = id,
                "oci: container still running {KILL_WAIT:?} after SIGKILL"
            );
        }
    }

    /// Waits for the task to end, enforcing its timeout (counted from the launch, across
    /// agent restarts: a task found past its deadline is stopped at once), then deletes the
    /// runc container and returns the outcome. Calling it again returns the same outcome.
    pub fn wait(&self, kill_grace: Duration) -> TaskOutcome {
        if let Some(outcome) = self.saved_outcome() {
            return outcome;
        }
        let deadline = self
            .inner
            .task
            .timeout_ms
            .map(|t| self.inner.task.started_at_ms.saturating_add(t));
        loop {
            let left = deadline.map(|d| Duration::from_millis(d.saturating_sub(now_ms())));
            if self.wait_exit(left) {
                break;
            }
            self.stop(StopCause::Timeout, kill_grace);
        }
        self.finish()
    }

    /// What the container wrote to stdout and stderr, as its supervisor kept it: the last
    /// `max_bytes` of each stream, with the bytes before them counted as dropped. Read it
    /// before [`OciContainer::remove`], which deletes the logs.
    pub fn output(&self, max_bytes: usize) -> (CapturedOutput, CapturedOutput) {
        let stream = |file: &str| {
            let path = self.bundle().join(file);
            let len = fs::metadata(&path).map_or(0, |m| m.len());
            let tail = read_tail(&path, max_bytes);
            CapturedOutput {
                head: Vec::new(),
                dropped_bytes: len.saturating_sub(tail.len() as u64),
                tail,
            }
        };
        (stream(shim::STDOUT_FILE), stream(shim::STDERR_FILE))
    }

    /// What the container has written so far, as a reader asks for it (see
    /// [`OutputPart::select`]): offsets are into the logs its supervisor keeps, which hold
    /// the first `output_bytes_max` bytes of each stream.
    pub fn output_parts(&self, from: Option<LogOffsets>, max: usize) -> (OutputPart, OutputPart) {
        let stream = |file: &str, from: Option<u64>| {
            let path = self.bundle().join(file);
            let len = fs::metadata(&path).map_or(0, |m| m.len());
            // Past the end (the logs are deleted as the container is removed): nothing
            // more, and the reader keeps its offset.
            let offset = from.unwrap_or(len.saturating_sub(max as u64));
            let bytes = if offset < len {
                read_at(&path, offset, max)
            } else {
                Vec::new()
            };
            let end = offset + bytes.len() as u64;
            OutputPart::new([OutputPiece { offset, bytes }], end)
        };
        (
            stream(shim::STDOUT_FILE, from.map(|f| f.stdout)),
            stream(shim::STDERR_FILE, from.map(|f| f.stderr)),
        )
    }

    /// Deletes the bundle (logs included). Call once the outcome has been delivered.
    pub fn remove(&self) -> io::Result<()> {
        // Deleted already when its outcome was read (`finish`).
        if self.inner.runc.knows(self.container_id()) {
            let _ = self.inner.runc.delete(self.container_id());
        }
        fs::remove_dir_all(&self.inner.bundle)
    }

    fn saved_outcome(&self) -> Option<TaskOutcome> {
        let bytes = fs::read(self.inner.bundle.join(OUTCOME_FILE)).ok()?;
        let saved: SavedOutcome = serde_json::from_slice(&bytes).ok()?;
        Some(TaskOutcome {
            state: saved.state,
            exit_code: saved.exit_code,
            reason: saved.reason,
            stdout_tail: saved.stdout_tail,
        })
    }

    /// Reads how the container ended, deletes it, and records the outcome.
    fn finish(&self) -> TaskOutcome {
        let bundle = &self.inner.bundle;
        let exit = ExitRecord::read(bundle);
        let stop = fs::read_to_string(bundle.join(STOP_FILE)).ok();
        let oom_kills = self.cgroup().and_then(CgroupPaths::oom_kills).unwrap_or(0);
        let (state, exit_code, mut reason) =
            judge(exit, stop.as_deref(), oom_kills, &self.inner.task, || {
                runc::last_logged_error(&bundle.join(shim::RUNC_LOG_FILE))
            });
        if let Some(dropped) = exit.map(|e| e.stdout_dropped).filter(|d| *d > 0) {
            reason.push_str(&format!(
                " ({dropped} bytes of stdout over the output cap dropped)"
            ));
        }
        let outcome = TaskOutcome {
            state,
            exit_code,
            reason,
            stdout_tail: TaskOutcome::tail_of(&read_tail(
                &bundle.join(shim::STDOUT_FILE),
                STDOUT_TAIL_BYTES,
            )),
        };
        // Without the supervisor's record of the end (it was killed), the container may
        // still run: runc deletes it, killing what is left.
        let deleted = match exit {
            Some(_) => self.inner.runc.delete_stopped(self.container_id()),
            None => self.inner.runc.delete(self.container_id()),
        };
        if let Err(e) = deleted {
            tracing::debug!(container = self.container_id(), error = %e, "oci: runc delete");
        }
        let saved = SavedOutcome {
            state: outcome.state,
            exit_code: outcome.exit_code,
            reason: outcome.reason.clone(),
            stdout_tail: outcome.stdout_tail.clone(),
        };
        if let Err(e) = write_json_atomic(&bundle.join(OUTCOME_FILE), &saved) {
            tracing::warn!(container = self.container_id(), error = %e, "oci: outcome not saved");
        }
        outcome
    }
}

/// The outcome of a container from what is known about its end. Pure.
///
/// Order of precedence: runc could not start it; the agent stopped it (kill, timeout);
/// the OOM killer struck in its cgroup; its init's own exit status.
pub fn judge(
    exit: Option<ExitRecord>,
    stop: Option<&str>,
    oom_kills: u64,
    task: &TaskRecord,
    runc_error: impl FnOnce() -> Option<String>,
) -> (TaskState, Option<i32>, String) {
    let Some(exit) = exit else {
        return (
            TaskState::Failed,
            None,
            "the container's supervisor died: exit status unknown".into(),
        );
    };
    if exit.runc_status != 0 {
        let why = runc_error().unwrap_or_else(|| describe_status(exit.runc_status));
        return (
            TaskState::Failed,
            None,
            format!("runc could not start the container: {why}"),
        );
    }
    let code = exit.init_status.and_then(exit_code_of);
    let status = exit
        .init_status
        .map_or_else(|| "exit status unknown".to_owned(), describe_status);
    match stop.map(str::trim) {
        Some("killed") => {
            return (
                TaskState::Killed,
                code,
                format!("stopped on request: {status}"),
            );
        }
        Some("timeout") => {
            let limit = task
                .timeout_ms
                .map_or_else(String::new, |t| format!(" of {} s", t as f64 / 1000.0));
            return (
                TaskState::Failed,
                code,
                format!("timed out: wall-clock limit{limit} reached; {status}"),
            );
        }
        _ => {}
    }
    if oom_kills > 0 {
        let reason = format!(
            "memory limit of {} MiB reached: {oom_kills} process(es) OOM-killed ({status})",
            task.mem_mib
        );
        return (TaskState::Failed, code, reason);
    }
    match code {
        Some(0) => (TaskState::Finished, Some(0), status),
        _ => (TaskState::Failed, code, status),
    }
}

/// The exit code of a normal exit; `None` for a death by signal.
fn exit_code_of(status: i32) -> Option<i32> {
    libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))
}

fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        format!(
            "killed by signal {sig}{}",
            signal_name(sig).map_or(String::new(), |n| format!(" ({n})"))
        )
    } else {
        format!("ended with wait status {status}")
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGHUP => "SIGHUP",
        libc::SIGPIPE => "SIGPIPE",
        _ => return None,
    })
}

#[derive(Serialize, Deserialize)]
struct SavedOutcome {
    state: TaskState,
    exit_code: Option<i32>,
    reason: String,
    stdout_tail: String,
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(super) fn write_json_atomic(path: &Path, value: &impl Serialize) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, serde_json::to_vec(value).map_err(io::Error::other)?)?;
    fs::rename(&tmp, path)
}

/// The last `max` bytes of a file (empty when unreadable).
fn read_tail(path: &Path, max: usize) -> Vec<u8> {
    let len = fs::metadata(path).map_or(0, |m| m.len());
    read_at(path, len.saturating_sub(max as u64), max)
}

/// At most `max` bytes of a file from `offset` (empty when unreadable).
fn read_at(path: &Path, offset: u64, max: usize) -> Vec<u8> {
    let Ok(mut file) = fs::File::open(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if file.seek(SeekFrom::Start(offset)).is_ok() {
        let _ = file.take(max as u64).read_to_end(&mut out);
    }
    out
}

/// Field 22 (start time in clock ticks) of `/proc/<pid>/stat`.
pub(super) fn proc_start_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // After the command come state (field 3) and onward: start time is the 20th of those.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// A pidfd on the supervisor, if it is still the process that was recorded.
fn open_shim(pid: i32, start_ticks: u64) -> Option<OwnedFd> {
    // SAFETY: pidfd_open returns a new descriptor we own, or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is a fresh descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // Checked after opening: if the start time matches now, the pidfd is our supervisor's.
    (proc_start_ticks(pid) == Some(start_ticks)).then_some(fd)
}

/// Waits until `fd` is readable (a pidfd: the process exited), up to `timeout`.
fn poll_readable(fd: &OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n > 0 {
            return true;
        }
        if n == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return n != 0;
        }
    }
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use super::*;

    fn task() -> TaskRecord {
        TaskRecord {
            task_id: "t".into(),
            container_id: "c".into(),
            mem_mib: 32,
            timeout_ms: Some(1500),
            started_at_ms: 0,
        }
    }

    fn exited(status: i32) -> Option<ExitRecord> {
        Some(ExitRecord {
            runc_status: 0,
            init_pid: 10,
            init_status: Some(status),
            ..ExitRecord::default()
        })
    }

    #[test]
    fn exit_codes_map_to_finished_and_failed() {
        assert_eq!(
            judge(exited(0), None, 0, &task(), || None).0,
            TaskState::Finished
        );
        let (state, code, reason) = judge(exited(3 << 8), None, 0, &task(), || None);
        assert_eq!((state, code), (TaskState::Failed, Some(3)));
        assert_eq!(reason, "exited with code 3");
    }

    #[test]
    fn oom_and_stop_causes_win_over_the_signal() {
        let (state, code, reason) = judge(exited(libc::SIGKILL), None, 1, &task(), || None);
        assert_eq!((state, code), (TaskState::Failed, None));
        assert!(reason.contains("memory limit of 32 MiB"), "{reason}");
        assert_eq!(
            judge(exited(libc::SIGKILL), Some("killed"), 0, &task(), || None).0,
            TaskState::Killed
        );
        let (state, _, reason) = judge(exited(libc::SIGKILL), Some("timeout"), 0, &task(), || None);
        assert_eq!(state, TaskState::Failed);
        assert!(
            reason.contains("timed out") && reason.contains("1.5 s"),
            "{reason}"
        );
    }

    #[test]
    fn runc_failure_carries_runc_error() {
        let exit = Some(ExitRecord {
            runc_status: 1 << 8,
            init_pid: -1,
            ..ExitRecord::default()
        });
        let (state, _, reason) = judge(exit, None, 0, &task(), || {
            Some("exec: \"nope\": not found".into())
        });
        assert_eq!(state, TaskState::Failed);
        assert!(reason.contains("nope"), "{reason}");
        assert_eq!(judge(None, None, 0, &task(), || None).0, TaskState::Failed);
    }

    #[test]
    fn start_ticks_of_this_process_are_readable() {
        assert!(proc_start_ticks(std::process::id() as i32).is_some());
    }
}
