//! The `wasmos task run` contract through the real binary: the last line of stdout is one
//! JSON object `{"state","exit_code","reason","stdout_tail"}`; exit status 0 when the task
//! finished with 0, 1 otherwise, 2 for bad usage. Also `wasmos agent --print-advert`.

use std::io::{BufRead, BufReader};
use std::process::{ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmos_tests::{module, wasmos, workspace_root};

fn task_run(args: &[&str]) -> (i32, Value) {
    let out = wasmos()
        .args(["task", "run"])
        .args(args)
        .env("WASMOS_CACHE_DIR", cache_dir())
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), last_json_line(&out))
}

/// One code cache for every run of these tests (in target/, never in the user's cache), so
/// repeated modules skip compilation.
fn cache_dir() -> std::path::PathBuf {
    workspace_root().join("target/e2e-code-cache")
}

fn last_json_line(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "no stdout; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let value: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("last line {line:?} is not JSON: {e}"));
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["exit_code", "reason", "state", "stdout_tail"],
        "exactly the contract's keys"
    );
    value
}

fn path(name: &str) -> String {
    module(name).display().to_string()
}

#[test]
fn p1_and_p2_programs_finish_with_their_output() {
    let (code, v) = task_run(&[
        "--env",
        "GREETING=hi",
        "--mem",
        "64",
        &path("p1_hello"),
        "--",
        "one",
        "two",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        (v["state"].as_str(), v["exit_code"].as_i64()),
        (Some("finished"), Some(0))
    );
    assert!(
        v["stdout_tail"]
            .as_str()
            .unwrap()
            .contains("args: one two\nGREETING=hi\n"),
        "{v}"
    );
    let (code, v) = task_run(&[&path("p2_hello"), "--", "x"]);
    assert_eq!((code, v["state"].as_str()), (0, Some("finished")), "{v}");
    assert!(
        v["stdout_tail"]
            .as_str()
            .unwrap()
            .contains("hello from p2\nargs: x\n")
    );
}

#[test]
fn the_pulley_interpreter_runs_p1_and_p2_and_keeps_the_limits() {
    for module in ["p1_hello", "p2_hello"] {
        let (code, v) = task_run(&["--engine", "pulley", &path(module), "--", "x"]);
        assert_eq!(
            (code, v["state"].as_str()),
            (0, Some("finished")),
            "{module}: {v}"
        );
    }
    let (code, v) = task_run(&["--engine", "pulley", "--mem", "32", &path("p1_membomb")]);
    assert_eq!((code, v["state"].as_str()), (1, Some("failed")), "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("memory limit"),
        "{v}"
    );
    let (code, v) = task_run(&["--engine", "pulley", "--timeout", "1", &path("p1_spin")]);
    assert_eq!((code, v["state"].as_str()), (1, Some("failed")), "{v}");
    assert!(v["reason"].as_str().unwrap().contains("timed out"), "{v}");
}

#[test]
fn failures_exit_1_with_their_reason() {
    let (code, v) = task_run(&[&path("p1_exit3")]);
    assert_eq!(
        (code, v["state"].as_str(), v["exit_code"].as_i64()),
        (1, Some("failed"), Some(3))
    );
    assert_eq!(v["reason"], "exited with code 3");

    let (code, v) = task_run(&["--mem", "32", &path("p1_membomb")]);
    assert_eq!(
        (code, v["state"].as_str(), v["exit_code"].as_i64()),
        (1, Some("failed"), None)
    );
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("memory limit of 32 MiB reached"),
        "{v}"
    );

    let (code, v) = task_run(&["--timeout", "1", "--cpus", "0.5", &path("p1_spin")]);
    assert_eq!(
        (code, v["reason"].as_str()),
        (1, Some("timed out after 1 s")),
        "{v}"
    );

    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), b"\x00asm\x01\x00\x00\x00\xff\xff").unwrap();
    let (code, v) = task_run(&[&junk.path().display().to_string()]);
    assert_eq!(code, 1);
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("module does not validate: "),
        "{v}"
    );
}

/// A valid module that takes tens of seconds to compile: nine functions of a million
/// instructions each, just under the 64 MiB module limit.
fn slow_to_compile_module() -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(body.len(), out);
        out.extend_from_slice(body);
    }
    const FUNCS: usize = 9;
    // One i32 local; body: (local.set 0 (i32.add (local.get 0) (i32.const 1))) repeated.
    let mut body = vec![1, 1, 0x7f];
    for _ in 0..1_000_000 {
        body.extend_from_slice(&[0x20, 0x00, 0x41, 0x01, 0x6a, 0x21, 0x00]);
    }
    body.push(0x0b);
    let mut code = Vec::new();
    leb(FUNCS, &mut code);
    for _ in 0..FUNCS {
        leb(body.len(), &mut code);
        code.extend_from_slice(&body);
    }
    let mut funcs = vec![FUNCS as u8];
    funcs.extend(std::iter::repeat_n(0u8, FUNCS));
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut module);
    section(3, &funcs, &mut module);
    section(7, b"\x01\x06_start\x00\x00", &mut module);
    section(10, &code, &mut module);
    module
}

/// Regression: after a timeout during compilation the status line was printed but the
/// process stayed until the (uninterruptible) compilation ended, tens of seconds later.
#[test]
fn timeout_while_compiling_reports_and_exits() {
    let module = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(module.path(), slow_to_compile_module()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut child = wasmos()
        .args(["task", "run", "--timeout", "0.5"])
        .arg(module.path())
        .env("WASMOS_CACHE_DIR", cache.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        v["reason"],
        "timed out after 0.5 s while compiling the module"
    );
    // Liveness, not speed: the compilation alone takes far longer than this bound.
    let status = wait_at_most(&mut child, Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "still running after its status line"
    );
}

/// Regression: SIGTERM (what `timeout(1)` sends) ended the process without a status line.
#[test]
fn sigterm_kills_the_task_and_reports_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let spin = tmp.path().join("spin.wat");
    std::fs::write(&spin, "(module (func (export \"_start\") (loop (br 0))))").unwrap();
    let child = wasmos()
        .args(["task", "run"])
        .arg(&spin)
        .env("TMPDIR", tmp.path())
        .env("WASMOS_CACHE_DIR", cache_dir())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The sandbox directory appears once the signal handlers are in place.
    let has_sandbox = || {
        std::fs::read_dir(tmp.path()).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("wasmos-task-")
        })
    };
    while !has_sandbox() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v = last_json_line(&out);
    assert_eq!(
        (v["state"].as_str(), v["reason"].as_str()),
        (Some("killed"), Some("killed"))
    );
    assert!(!has_sandbox(), "sandbox removed");
}

/// Regression: each p1 `sock_*` call logged a wasmtime-wasi warning, so a guest could
/// flood the agent's log (here: this command's stderr).
#[test]
fn socket_calls_do_not_flood_the_log() {
    let module = tempfile::NamedTempFile::new().unwrap();
    let wat = r#"(module
        (import "wasi_snapshot_preview1" "sock_accept"
          (func $accept (param i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "_start") (local $i i32)
          (loop
            (drop (call $accept (i32.const 0) (i32.const 0) (i32.const 0)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if 0 (i32.lt_u (local.get $i) (i32.const 1000))))))"#;
    std::fs::write(module.path(), wat).unwrap();
    let out = wasmos()
        .args(["task", "run"])
        .arg(module.path())
        .env("WASMOS_CACHE_DIR", cache_dir())
        .env("WASMOS_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(last_json_line(&out)["state"], "finished");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

fn wait_at_most(child: &mut std::process::Child, bound: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn granted_directory_is_read_only_by_default() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("in.txt"), "granted").unwrap();
    let wat = workspace_root()
        .join("agent/tests/wasm/grant.wat")
        .display()
        .to_string();
    let grant = format!("{}::/data", data.path().display());
    let (code, v) = task_run(&["--dir", &grant, &wat]);
    assert_eq!(
        code, 0,
        "copied from the grant, and writing to it was refused: {v}"
    );
    assert!(!data.path().join("new.txt").exists());
}

#[test]
fn bad_usage_exits_2() {
    let cases: [&[&str]; 4] = [
        &["task", "run"],
        &["task", "run", "/nonexistent/module.wasm"],
        &["task", "run", "--env", "NOEQUALS", "x.wasm"],
        &["task", "run", "--mem", "lots", "x.wasm"],
    ];
    for args in cases {
        let out = wasmos().args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn print_advert_reads_a_fake_device_tree() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    for (file, text) in [
        (
            "proc/cpuinfo",
            "processor : 0\nprocessor : 1\nprocessor : 2\nprocessor : 3\n",
        ),
        ("proc/meminfo", "MemTotal: 4194304 kB\n"),
        ("proc/sys/kernel/hostname", "pi-dock7\n"),
        ("dev/video0", ""),
        ("sys/class/video4linux/video0/name", "ov5647\n"),
        ("dev/dri/renderD128", ""),
        ("sys/class/drm/renderD128/device/vendor", "0x14e4\n"),
    ] {
        let full = root.path().join(file);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }
    let advert = |extra: &[&str]| {
        let out = wasmos()
            .args(["agent", "--print-advert", "--root"])
            .arg(root.path())
            .arg("--work-dir")
            .arg(work.path())
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let v = advert(&[]);
    assert_eq!(v["total"]["scalars"]["cpus"], 4.0);
    assert_eq!(v["total"]["scalars"]["mem"], 4096.0);
    assert_eq!(v["total"]["scalars"]["gpus"], 1.0);
    assert_eq!(v["total"]["sets"]["cameras"][0], "camera:/dev/video0");
    assert_eq!(v["hostname"], "pi-dock7");
    let has: Vec<&str> = v["attributes"]["has"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(has, ["camera", "gpu"]);
    // The engine is an attribute frameworks may constrain on.
    assert_eq!(v["attributes"]["engine"], "native", "{v}");
    assert_eq!(
        advert(&["--engine", "pulley"])["attributes"]["engine"],
        "pulley"
    );
    // `--engine` says what runs the tasks, whatever the configuration's attributes say.
    let claims = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(claims.path(), "[attributes]\nengine = \"native\"\n").unwrap();
    let claimed = claims.path().display().to_string();
    let overridden = advert(&["--config", &claimed, "--engine", "pulley"]);
    assert_eq!(overridden["attributes"]["engine"], "pulley", "{overridden}");
    assert_eq!(
        advert(&[])["agent_id"],
        v["agent_id"],
        "the id is kept in the work directory"
    );

    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "agent_id = \"pinned\"\n[reserved.scalars]\nmem = 1024\n",
    )
    .unwrap();
    let v = advert(&["--config", &config.path().display().to_string()]);
    assert_eq!(
        (
            v["agent_id"].as_str(),
            v["total"]["scalars"]["mem"].as_f64()
        ),
        (Some("pinned"), Some(3072.0))
    );
    assert_eq!(v["reserved"]["scalars"]["mem"], 1024.0);
}
