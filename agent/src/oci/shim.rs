//! The supervisor that outlives the agent: it starts a container with
//! `runc run --detach`, becomes the parent of the container's init, captures its stdout and
//! stderr with a size cap, and writes the exit status to a file in the bundle.
//!
//! # Why a forked supervisor
//! After `runc run --detach` returns, the container's init is re-parented to the nearest
//! *child subreaper*, and only its parent can learn its exit status. If that parent were
//! the agent, a `kill -9` of the agent would lose the status for good (and `runc state`
//! only says "stopped", without a code). So the agent double-forks a small supervisor:
//! it calls `setsid` (signals to the agent's process group do not reach it),
//! `prctl(PR_SET_CHILD_SUBREAPER)`, runs runc as its child, reaps the init, and writes
//! `exit` atomically (`exit.tmp` then rename). Being a grandchild re-parented to pid 1, it
//! keeps running when the agent dies, and a restarted agent reads `exit` (or waits on the
//! supervisor with a pidfd, checked against its recorded start time).
//!
//! The supervisor is a `fork` of the agent without `exec`, so that every binary embedding
//! the agent (the daemon, `wasmos task run`, the tests) gets it without shipping a second
//! executable. After `fork` in a multi-threaded process only async-signal-safe calls are
//! allowed: everything it needs (C strings, argv, buffers) is allocated before the fork,
//! and the child only calls raw syscalls (`poll`, `read`, `write`, `waitpid`, `open`,
//! `rename`, `execve`, `_exit`).
//!
//! # Output capture
//! Container stdout and stderr are pipes read by the supervisor; the first
//! `output_bytes_max` bytes of each go to `stdout.log` / `stderr.log`, the rest is counted
//! (in `exit`) and dropped, so a chatty container cannot fill the disk nor block.
//!
//! # The `exit` file
//! `key=value` lines: `runc_status`, `init_pid`, `init_status` (raw `waitpid` statuses,
//! `-1` when unknown), `stdout_dropped`, `stderr_dropped`.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

/// Bytes read from a pipe per `read` call.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Longest the supervisor sleeps in `poll`; exits of children wake it at once (SIGCHLD
/// through a signalfd), this only bounds the damage of a missed wakeup.
const REAP_POLL_MS: i32 = 1000;
/// Children reaped before runc itself whose statuses are kept, in case one of them is the
/// container's init (see `supervise`).
const EARLY_REAPS_MAX: usize = 32;
/// `PATH` given to runc.
const RUNC_PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Files of the supervisor inside a bundle.
pub const EXIT_FILE: &str = "exit";
pub const STDOUT_FILE: &str = "stdout.log";
pub const STDERR_FILE: &str = "stderr.log";
pub const PID_FILE: &str = "init.pid";
pub const RUNC_LOG_FILE: &str = "runc.log";

/// What the supervisor runs.
pub struct ShimSpec<'a> {
    pub runc: &'a Path,
    pub runc_root: &'a Path,
    pub bundle: &'a Path,
    pub container_id: &'a str,
    pub output_bytes_max: u64,
}

/// A started supervisor: its pid, and whether runc managed to start the container.
#[derive(Debug)]
pub struct Started {
    pub shim_pid: i32,
    /// runc's raw wait status; 0 when the container started.
    pub runc_status: i32,
}

fn cstr(p: impl AsRef<std::ffi::OsStr>) -> io::Result<CString> {
    CString::new(p.as_ref().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

/// Everything the forked child uses, allocated before the fork.
struct Prepared {
    runc: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    stdout: CString,
    stderr: CString,
    pid_file: CString,
    exit_tmp: CString,
    exit: CString,
    dev_null: CString,
    buf: Vec<u8>,
    line: Vec<u8>,
    output_bytes_max: u64,
}

impl Prepared {
    fn new(spec: &ShimSpec<'_>) -> io::Result<Prepared> {
        let b = |name: &str| cstr(spec.bundle.join(name));
        let argv = [
            spec.runc.as_os_str(),
            "--root".as_ref(),
            spec.runc_root.as_os_str(),
            "--log".as_ref(),
            spec.bundle.join(RUNC_LOG_FILE).as_os_str(),
            "--log-format".as_ref(),
            "json".as_ref(),
            "run".as_ref(),
            "--detach".as_ref(),
            "--bundle".as_ref(),
            spec.bundle.as_os_str(),
            "--pid-file".as_ref(),
            spec.bundle.join(PID_FILE).as_os_str(),
            spec.container_id.as_ref(),
        ]
        .iter()
        .map(cstr)
        .collect::<io::Result<Vec<_>>>()?;
        Ok(Prepared {
            runc: cstr(spec.runc)?,
            argv,
            env: vec![cstr(RUNC_PATH_ENV)?],
            stdout: b(STDOUT_FILE)?,
            stderr: b(STDERR_FILE)?,
            pid_file: b(PID_FILE)?,
            exit_tmp: b("exit.tmp")?,
            exit: b(EXIT_FILE)?,
            dev_null: cstr("/dev/null")?,
            buf: vec![0u8; READ_CHUNK_BYTES],
            line: vec![0u8; 512],
            output_bytes_max: spec.output_bytes_max,
        })
    }
}

/// Forks the supervisor and waits (up to `start_timeout`) until runc has started the
/// container or failed to.
pub fn spawn(spec: &ShimSpec<'_>, start_timeout: Duration) -> io::Result<Started> {
    let mut prepared = Prepared::new(spec)?;
    let argv_ptrs: Vec<*const libc::c_char> = prepared
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let env_ptrs: Vec<*const libc::c_char> = prepared
        .env
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let mut sync = [0 as libc::c_int; 2];
    // SAFETY: plain syscalls on owned descriptors; the child branches only make
    // async-signal-safe calls on memory allocated above.
    unsafe {
        if libc::pipe2(sync.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(io::Error::last_os_error());
        }
        let middle = libc::fork();
        if middle < 0 {
            let e = io::Error::last_os_error();
            libc::close(sync[0]);
            libc::close(sync[1]);
            return Err(e);
        }
        if middle == 0 {
            libc::close(sync[0]);
            libc::setsid();
            let shim = libc::fork();
            if shim == 0 {
                supervise(&mut prepared, &argv_ptrs, &env_ptrs, sync[1]);
            }
            libc::_exit(if shim < 0 { 1 } else { 0 });
        }
        libc::close(sync[1]);
        let mut status = 0;
        while libc::waitpid(middle, &mut status, 0) < 0 && errno() == libc::EINTR {}
        let result = read_started(sync[0], start_timeout);
        libc::close(sync[0]);
        result
    }
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Reads the shim's pid, then runc's status, from the sync pipe.
fn read_started(fd: libc::c_int, timeout: Duration) -> io::Result<Started> {
    let mut words = [0i32; 2];
    let mut got = 0usize;
    let deadline = std::time::Instant::now() + timeout;
    let bytes = words.as_mut_ptr().cast::<u8>();
    while got < 8 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "runc did not start the container in time",
            ));
        }
        // SAFETY: writes stay within the 8 bytes of `words`.
        let r = unsafe { libc::read(fd, bytes.add(got).cast(), 8 - got) };
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        if r <= 0 {
            break;
        }
        got += r as usize;
    }
    match got {
        8 => Ok(Started {
            shim_pid: words[0],
            runc_status: words[1],
        }),
        4.. => Err(io::Error::other(format!(
            "supervisor {} stopped before runc finished",
            words[0]
        ))),
        _ => Err(io::Error::other("supervisor did not start")),
    }
}

/// The supervisor's body. Never returns.
///
/// # Safety
/// Runs in a forked child of a multi-threaded process: async-signal-safe calls only, no
/// allocation. The same holds for every step it calls.
unsafe fn supervise(
    p: &mut Prepared,
    argv: &[*const libc::c_char],
    env: &[*const libc::c_char],
    sync: libc::c_int,
) -> ! {
    unsafe {
        let chld = become_supervisor(sync);
        let log_flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC;
        let out_log = libc::open(p.stdout.as_ptr(), log_flags, 0o640);
        let err_log = libc::open(p.stderr.as_ptr(), log_flags, 0o640);
        let null = libc::open(p.dev_null.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        // The agent's own stdio (a terminal, a pipe to a log collector) must not be held
        // open by a supervisor that may outlive it by days.
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        let sigfd = libc::signalfd(-1, &chld, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        let (mut out, mut err) = ([-1; 2], [-1; 2]);
        libc::pipe2(out.as_mut_ptr(), libc::O_CLOEXEC);
        libc::pipe2(err.as_mut_ptr(), libc::O_CLOEXEC);
        let runc = start_runc(p, argv, env, [null, out[1], err[1]]);
        libc::close(out[1]);
        libc::close(err[1]);
        libc::close(null);

        let mut streams = [Stream::new(out[0], out_log), Stream::new(err[0], err_log)];
        let mut reaps = Reaps::new(runc);
        let mut children_left = true;
        if runc < 0 {
            reaps.runc_status = 127 << 8;
            children_left = false;
        }
        loop {
            let open = streams.iter().any(|s| s.pipe >= 0);
            if open {
                pump(&mut streams, sigfd, &mut p.buf, p.output_bytes_max);
            }
            // Block in waitpid only once the pipes are closed.
            if !reap_exited(p, &mut reaps, sync, !open) {
                children_left = false;
            }
            if !open && !children_left {
                break;
            }
        }
        write_exit_file(p, &reaps, &streams);
        libc::_exit(0)
    }
}

/// The supervisor's first steps: a subreaper that ignores SIGPIPE and reads SIGCHLD only
/// through a signalfd; it reports its pid on `sync` and closes what it inherited.
/// Returns the SIGCHLD set (blocked) for the signalfd.
unsafe fn become_supervisor(sync: libc::c_int) -> libc::sigset_t {
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        let mut chld: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut chld);
        libc::sigaddset(&mut chld, libc::SIGCHLD);
        // SIGCHLD is only read through a signalfd, so it stays blocked here (not in runc).
        libc::pthread_sigmask(libc::SIG_SETMASK, &chld, std::ptr::null_mut());
        let me = libc::getpid();
        write_all(sync, (&raw const me).cast(), 4);
        close_inherited(sync);
        chld
    }
}

/// Forks and execs runc with `stdio` (stdin, stdout, stderr) and the default signal state;
/// the pid, or a negative number when the fork failed.
unsafe fn start_runc(
    p: &Prepared,
    argv: &[*const libc::c_char],
    env: &[*const libc::c_char],
    stdio: [libc::c_int; 3],
) -> libc::pid_t {
    unsafe {
        let runc = libc::fork();
        if runc == 0 {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            for (fd, from) in stdio.into_iter().enumerate() {
                libc::dup2(from, fd as libc::c_int);
            }
            libc::execve(p.runc.as_ptr(), argv.as_ptr(), env.as_ptr());
            libc::_exit(127);
        }
        runc
    }
}

/// Reaps every child that has exited (waiting for one when `block`); once runc is reaped
/// its status goes to `sync`, which is then closed. False when no child is left.
unsafe fn reap_exited(p: &mut Prepared, reaps: &mut Reaps, sync: libc::c_int, block: bool) -> bool {
    unsafe {
        loop {
            let mut status = 0;
            let flags = if block { 0 } else { libc::WNOHANG };
            let pid = libc::waitpid(-1, &mut status, flags);
            if pid == 0 {
                return true;
            }
            if pid < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                return false;
            }
            let line = &mut p.line;
            let pid_file = p.pid_file.as_ptr();
            if reaps.reaped(pid, status, || read_pid(pid_file, line)) {
                write_all(sync, (&raw const status).cast(), 4);
                libc::close(sync);
            }
        }
    }
}

/// Writes the `exit` file atomically (`exit.tmp`, then rename).
unsafe fn write_exit_file(p: &mut Prepared, reaps: &Reaps, streams: &[Stream; 2]) {
    unsafe {
        let values = [
            ("runc_status=", reaps.runc_status as i64),
            ("init_pid=", reaps.init_pid as i64),
            ("init_status=", reaps.init_status as i64),
            ("stdout_dropped=", streams[0].dropped as i64),
            ("stderr_dropped=", streams[1].dropped as i64),
        ];
        let mut len = 0;
        for (key, value) in values {
            len = push_bytes(&mut p.line, len, key.as_bytes());
            len = push_int(&mut p.line, len, value);
            len = push_bytes(&mut p.line, len, b"\n");
        }
        let fd = libc::open(
            p.exit_tmp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o640,
        );
        if fd >= 0 {
            write_all(fd, p.line.as_ptr(), len);
            libc::fsync(fd);
            libc::close(fd);
            libc::rename(p.exit_tmp.as_ptr(), p.exit.as_ptr());
        }
    }
}

/// The supervisor's children as `waitpid` returns them: runc, then the container's init,
/// whose pid is only known once runc has exited.
///
/// A container that ends at once is reaped *before* runc: when runc exits, its zombie and
/// the init's (re-parented to us) become waitable together, in no set order. Statuses of
/// children reaped while the init's pid is still unknown are kept (up to
/// [`EARLY_REAPS_MAX`]) and matched once it is. Fixed-size: used after `fork`.
struct Reaps {
    runc: libc::pid_t,
    /// Raw wait status of runc; -1 until reaped.
    runc_status: i32,
    /// -1 until runc has exited and written the pid file.
    init_pid: i32,
    /// Raw wait status of the init; -1 until reaped.
    init_status: i32,
    early: [(libc::pid_t, i32); EARLY_REAPS_MAX],
    early_len: usize,
}

impl Reaps {
    fn new(runc: libc::pid_t) -> Reaps {
        Reaps {
            runc,
            runc_status: -1,
            init_pid: -1,
            init_status: -1,
            early: [(0, 0); EARLY_REAPS_MAX],
            early_len: 0,
        }
    }

    /// Records a reaped child; `init_pid` reads the init's pid (called once runc exited
    /// with status 0). True when the child was runc.
    fn reaped(&mut self, pid: libc::pid_t, status: i32, init_pid: impl FnOnce() -> i32) -> bool {
        if pid == self.runc {
            self.runc_status = status;
            if status == 0 {
                self.init_pid = init_pid();
                let early = &self.early[..self.early_len];
                if let Some(&(_, s)) = early.iter().find(|(p, _)| *p == self.init_pid) {
                    self.init_status = s;
                }
            }
            return true;
        }
        if pid == self.init_pid {
            self.init_status = status;
        } else if self.runc_status < 0 && self.early_len < EARLY_REAPS_MAX {
            self.early[self.early_len] = (pid, status);
            self.early_len += 1;
        }
        false
    }
}

struct Stream {
    pipe: libc::c_int,
    log: libc::c_int,
    kept: u64,
    dropped: u64,
}

impl Stream {
    fn new(pipe: libc::c_int, log: libc::c_int) -> Stream {
        Stream {
            pipe,
            log,
            kept: 0,
            dropped: 0,
        }
    }
}

/// Waits (up to [`REAP_POLL_MS`]) for output or a child's exit, and moves output to the
/// logs (within the cap).
unsafe fn pump(streams: &mut [Stream; 2], sigfd: libc::c_int, buf: &mut [u8], cap: u64) {
    unsafe {
        let mut fds = [
            libc::pollfd {
                fd: streams[0].pipe,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: streams[1].pipe,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sigfd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // poll ignores negative fds, so closed streams drop out by themselves.
        if libc::poll(fds.as_mut_ptr(), 3, REAP_POLL_MS) <= 0 {
            return;
        }
        if fds[2].revents != 0 {
            // Drain the pending SIGCHLDs; the caller reaps with waitpid.
            while libc::read(sigfd, buf.as_mut_ptr().cast(), buf.len()) > 0 {}
        }
        for (s, pfd) in streams.iter_mut().zip(&fds[..2]) {
            if s.pipe < 0 || pfd.revents == 0 {
                continue;
            }
            let n = libc::read(s.pipe, buf.as_mut_ptr().cast(), buf.len());
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            if n <= 0 {
                libc::close(s.pipe);
                s.pipe = -1;
                continue;
            }
            let n = n as u64;
            let keep = n.min(cap.saturating_sub(s.kept));
            if keep > 0 && s.log >= 0 {
                write_all(s.log, buf.as_ptr(), keep as usize);
            }
            s.kept += keep;
            s.dropped += n - keep;
        }
    }
}

/// Closes every inherited descriptor except `keep`: the agent's sockets and files must not
/// stay open for as long as the container runs.
unsafe fn close_inherited(keep: libc::c_int) {
    unsafe {
        for fd in 3..keep {
            libc::close(fd);
        }
        let from = (keep + 1) as libc::c_uint;
        if libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, 0) != 0 {
            for fd in (keep + 1)..4096 {
                libc::close(fd);
            }
        }
    }
}

unsafe fn write_all(fd: libc::c_int, mut ptr: *const u8, mut len: usize) {
    unsafe {
        while len > 0 {
            let n = libc::write(fd, ptr.cast(), len);
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            if n <= 0 {
                return;
            }
            ptr = ptr.add(n as usize);
            len -= n as usize;
        }
    }
}

/// Reads a decimal pid from a file; -1 when unreadable.
unsafe fn read_pid(path: *const libc::c_char, buf: &mut [u8]) -> i32 {
    unsafe {
        let fd = libc::open(path, libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return -1;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        if n <= 0 {
            return -1;
        }
        let mut pid: i32 = 0;
        for &c in &buf[..n as usize] {
            if !c.is_ascii_digit() {
                break;
            }
            pid = pid.saturating_mul(10).saturating_add((c - b'0') as i32);
        }
        if pid > 0 { pid } else { -1 }
    }
}

fn push_bytes(out: &mut [u8], at: usize, bytes: &[u8]) -> usize {
    let end = (at + bytes.len()).min(out.len());
    out[at..end].copy_from_slice(&bytes[..end - at]);
    end
}

fn push_int(out: &mut [u8], at: usize, value: i64) -> usize {
    let mut digits = [0u8; 20];
    let mut n = value.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let at = if value < 0 {
        push_bytes(out, at, b"-")
    } else {
        at
    };
    push_bytes(out, at, &digits[i..])
}

/// The supervisor's record of how the container ended, parsed from the `exit` file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitRecord {
    pub runc_status: i32,
    pub init_pid: i32,
    /// Raw wait status of the init; `None` when the supervisor never saw it.
    pub init_status: Option<i32>,
    pub stdout_dropped: u64,
    pub stderr_dropped: u64,
}

impl ExitRecord {
    /// Reads `<bundle>/exit`; `None` while the supervisor has not written it.
    pub fn read(bundle: &Path) -> Option<ExitRecord> {
        let text = std::fs::read_to_string(bundle.join(EXIT_FILE)).ok()?;
        ExitRecord::parse(&text)
    }

    pub fn parse(text: &str) -> Option<ExitRecord> {
        let get = |key: &str| -> Option<i64> {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('=')?.trim().parse().ok())
        };
        let init_status = get("init_status")?;
        Some(ExitRecord {
            runc_status: i32::try_from(get("runc_status")?).ok()?,
            init_pid: i32::try_from(get("init_pid")?).ok()?,
            init_status: (init_status >= 0).then_some(init_status as i32),
            stdout_dropped: get("stdout_dropped").unwrap_or(0).max(0) as u64,
            stderr_dropped: get("stderr_dropped").unwrap_or(0).max(0) as u64,
        })
    }
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use super::*;

    #[test]
    fn exit_record_round_trips_through_the_writer_format() {
        let mut line = vec![0u8; 512];
        let mut len = 0;
        for (k, v) in [
            ("runc_status=", 0i64),
            ("init_pid=", 4242),
            ("init_status=", 768),
            ("stdout_dropped=", 9),
            ("stderr_dropped=", 0),
        ] {
            len = push_bytes(&mut line, len, k.as_bytes());
            len = push_int(&mut line, len, v);
            len = push_bytes(&mut line, len, b"\n");
        }
        let rec = ExitRecord::parse(std::str::from_utf8(&line[..len]).unwrap()).unwrap();
        assert_eq!(
            rec,
            ExitRecord {
                runc_status: 0,
                init_pid: 4242,
                init_status: Some(768),
                stdout_dropped: 9,
                stderr_dropped: 0
            }
        );
    }

    #[test]
    fn an_init_reaped_before_runc_keeps_its_status() {
        // Regression: `busybox true` under load was reported "exit status unknown".
        let mut reaps = Reaps::new(100);
        assert!(!reaps.reaped(200, 3 << 8, || unreachable!()));
        assert!(reaps.reaped(100, 0, || 200));
        assert_eq!((reaps.init_pid, reaps.init_status), (200, 3 << 8));

        let mut ordinary = Reaps::new(100);
        assert!(ordinary.reaped(100, 0, || 200));
        assert!(!ordinary.reaped(200, 0, || unreachable!()));
        assert_eq!(ordinary.init_status, 0);

        let mut failed_start = Reaps::new(100);
        assert!(!failed_start.reaped(300, 9, || unreachable!()));
        assert!(failed_start.reaped(100, 1 << 8, || unreachable!()));
        assert_eq!((failed_start.init_pid, failed_start.init_status), (-1, -1));
    }

    #[test]
    fn unknown_init_status_is_none() {
        let rec = ExitRecord::parse("runc_status=256\ninit_pid=-1\ninit_status=-1\n").unwrap();
        assert_eq!(rec.init_status, None);
        assert_eq!(rec.runc_status, 256);
    }
}
