//! The WASM executor: ordinary programs, the hostile-module suite, kills, concurrency and
//! the code cache.

use std::collections::BTreeMap;
use std::time::Duration;

use agent::wasm::{CodeOrigin, EngineKind, ExecutorConfig, WasmExecutor};
use proto::{DirGrant, TaskKind, TaskState};

use crate::support::{engine, executor, module_bytes, run_module, run_spec, sandbox, spec};

#[tokio::test]
async fn p1_command_sees_its_args_env_and_sandbox() {
    let exec = executor();
    let mut task = spec("p1_hello", 64.0, Some(10_000), &["one", "two"]);
    let TaskKind::Wasm(wasm) = &mut task.kind else {
        unreachable!()
    };
    wasm.env = BTreeMap::from([("GREETING".to_owned(), "hi".to_owned())]);
    let (report, sb) = run_spec(&exec, &task, module_bytes("p1_hello")).await;
    let o = report.outcome;
    assert_eq!(
        (o.state, o.exit_code, o.reason.as_str()),
        (TaskState::Finished, Some(0), "exited with code 0")
    );
    assert!(
        o.stdout_tail
            .contains("hello from p1\nargs: one two\nGREETING=hi\nfile: written by p1_hello\n"),
        "{}",
        o.stdout_tail
    );
    let written = std::fs::read_to_string(sb.dir.join("hello.txt")).unwrap();
    assert_eq!(
        written, "written by p1_hello",
        "the guest's `/` is the sandbox directory"
    );
}

#[tokio::test]
async fn p2_component_is_told_apart_and_runs() {
    let exec = executor();
    let loaded = exec.load(&module_bytes("p2_hello")).unwrap();
    assert!(loaded.is_component());
    let (report, _sb) = run_spec(
        &exec,
        &spec("p2_hello", 64.0, Some(10_000), &["x"]),
        module_bytes("p2_hello"),
    )
    .await;
    let o = report.outcome;
    assert_eq!(
        (o.state, o.exit_code),
        (TaskState::Finished, Some(0)),
        "{}",
        o.reason
    );
    assert!(
        o.stdout_tail.contains("hello from p2\nargs: x\n"),
        "{}",
        o.stdout_tail
    );
}

#[tokio::test]
async fn non_zero_exit_fails_with_its_code() {
    let o = run_module(&executor(), "p1_exit3", 64.0, Some(10_000)).await;
    assert_eq!(
        (o.state, o.exit_code, o.reason.as_str()),
        (TaskState::Failed, Some(3), "exited with code 3")
    );
    assert!(o.stdout_tail.contains("about to exit with 3"));
}

#[tokio::test]
async fn trap_fails_naming_the_trap() {
    let o = run_module(&executor(), "p1_trap", 64.0, Some(10_000)).await;
    assert_eq!((o.state, o.exit_code), (TaskState::Failed, None));
    assert_eq!(o.reason, "wasm trap: unreachable instruction executed");
    assert!(
        o.stdout_tail.contains("about to trap"),
        "output before the trap is kept"
    );
}

#[tokio::test]
async fn unbounded_recursion_fails_with_stack_overflow() {
    let o = run_module(&executor(), "p1_recurse", 64.0, Some(10_000)).await;
    assert_eq!(o.state, TaskState::Failed);
    assert!(o.reason.starts_with("stack overflow"), "{}", o.reason);
}

#[tokio::test]
async fn memory_bomb_fails_naming_the_memory_limit() {
    let o = run_module(&executor(), "p1_membomb", 32.0, Some(20_000)).await;
    assert_eq!(o.state, TaskState::Failed);
    assert!(
        o.reason
            .starts_with("memory limit of 32 MiB reached (memory.grow to "),
        "{}",
        o.reason
    );
    assert!(
        o.stdout_tail.contains("\n"),
        "it reported progress before the limit: {:?}",
        o.stdout_tail
    );
}

#[tokio::test]
async fn initial_memory_above_the_limit_fails_to_instantiate() {
    // 64 pages of 64 KiB = 4 MiB initial memory against a 1 MiB limit.
    let wat = br#"(module (memory 64) (func (export "_start")))"#;
    let (report, _sb) = run_spec(
        &executor(),
        &spec("bigmem", 1.0, Some(5_000), &[]),
        wat.to_vec().into(),
    )
    .await;
    assert_eq!(report.outcome.state, TaskState::Failed);
    assert!(
        report
            .outcome
            .reason
            .starts_with("memory limit of 1 MiB reached"),
        "{}",
        report.outcome.reason
    );
}

#[tokio::test]
async fn flood_is_capped_and_counted_and_keeps_the_tail() {
    let mut task = spec("p1_flood", 64.0, Some(30_000), &[]);
    task.limits.output_bytes_max = 64 * 1024;
    let (report, _sb) = run_spec(&executor(), &task, module_bytes("p1_flood")).await;
    let o = report.outcome;
    assert_eq!(o.state, TaskState::Finished, "{}", o.reason);
    assert!(
        o.stdout_tail.ends_with("xxx\nflood done\n"),
        "{:?}",
        &o.stdout_tail[o.stdout_tail.len().saturating_sub(40)..]
    );
    assert_eq!(o.stdout_tail.len(), agent::outcome::STDOUT_TAIL_BYTES);
    assert_eq!(
        report.stdout.total_bytes(),
        64 * 1024 * 1024 + "flood done\n".len() as u64
    );
    assert_eq!(
        report.stdout.head.len() + report.stdout.tail.len(),
        64 * 1024,
        "exactly the cap is kept"
    );
    assert!(
        o.reason.contains("stdout exceeded the 65536 byte cap"),
        "{}",
        o.reason
    );
}

#[tokio::test]
async fn escape_attempts_are_denied() {
    let exec = executor();
    let sb = sandbox();
    let secret_dir = sb.parent.path().join("secret");
    std::fs::create_dir(&secret_dir).unwrap();
    std::fs::write(secret_dir.join("passwd"), "host secret").unwrap();
    std::os::unix::fs::symlink(&secret_dir, sb.dir.join("planted")).unwrap();
    let task = spec("p1_escape", 64.0, Some(10_000), &[]);
    let report = exec
        .start_spec(&task, module_bytes("p1_escape"), sb.dir.clone())
        .wait()
        .await;
    let o = report.outcome;
    assert_eq!(o.state, TaskState::Finished, "{}", o.reason);
    assert!(
        o.stdout_tail.contains("escape attempts done"),
        "{}",
        o.stdout_tail
    );
    assert!(!o.stdout_tail.contains("ESCAPED"), "{}", o.stdout_tail);
    assert_eq!(
        o.stdout_tail.matches("denied ").count(),
        11,
        "{}",
        o.stdout_tail
    );
    assert!(!sb.parent.path().join("escape.txt").exists());
    assert!(!secret_dir.join("wasmos-escape.txt").exists());
    assert!(!std::path::Path::new("/tmp/wasmos-escape.txt").exists());
}

#[tokio::test]
async fn granted_directory_is_read_only_unless_granted_rw() {
    let exec = executor();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("in.txt"), "granted").unwrap();
    // Copies /data/in.txt to /out.txt (the sandbox) and tries to write /data/new.txt.
    let wat = include_str!("grant.wat");
    let mut task = spec("grant", 16.0, Some(5_000), &[]);
    let TaskKind::Wasm(wasm) = &mut task.kind else {
        unreachable!()
    };
    wasm.dirs = vec![DirGrant {
        host: data.path().display().to_string(),
        guest: "/data".into(),
        read_only: true,
    }];
    let (report, sb) = run_spec(&exec, &task, wat.as_bytes().to_vec().into()).await;
    assert_eq!(
        report.outcome.exit_code,
        Some(0),
        "{}",
        report.outcome.reason
    );
    assert_eq!(
        std::fs::read_to_string(sb.dir.join("out.txt")).unwrap(),
        "granted"
    );
    assert!(
        !data.path().join("new.txt").exists(),
        "read-only grant was written"
    );
}

#[tokio::test]
async fn invalid_bytes_fail_as_not_validating() {
    let (report, _sb) = run_spec(
        &executor(),
        &spec("junk", 16.0, None, &[]),
        b"\x7fELF\x02\x01\x01junk".to_vec().into(),
    )
    .await;
    assert_eq!(report.outcome.state, TaskState::Failed);
    assert!(
        report
            .outcome
            .reason
            .starts_with("module does not validate: "),
        "{}",
        report.outcome.reason
    );
    let mut broken = module_bytes("p1_hello").to_vec();
    broken.truncate(broken.len() / 2);
    let (report, _sb) = run_spec(&executor(), &spec("half", 16.0, None, &[]), broken.into()).await;
    assert!(
        report
            .outcome
            .reason
            .starts_with("module does not validate: "),
        "{}",
        report.outcome.reason
    );
}

#[tokio::test]
async fn unknown_import_is_named() {
    let wat = br#"(module (import "env" "foo" (func)) (func (export "_start")))"#;
    let path = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(path.path(), wat).unwrap();
    let bytes = std::fs::read(path.path()).unwrap();
    let (report, _sb) =
        run_spec(&executor(), &spec("imports", 16.0, None, &[]), bytes.into()).await;
    assert_eq!(report.outcome.state, TaskState::Failed);
    assert_eq!(report.outcome.reason, "unknown import `env::foo`");
}

#[tokio::test]
async fn module_without_start_is_not_a_command() {
    let wat = br#"(module (func (export "main")))"#;
    let (report, _sb) = run_spec(
        &executor(),
        &spec("lib", 16.0, None, &[]),
        wat.to_vec().into(),
    )
    .await;
    assert_eq!(
        report.outcome.reason,
        "module exports no `_start` function (not a WASI command)"
    );
}

/// On a single-threaded runtime a spinning task must still let another task run to its end.
#[tokio::test(flavor = "current_thread")]
async fn spinning_task_does_not_starve_others_and_times_out() {
    let exec = executor();
    let sb = sandbox();
    let spin = exec.start_spec(
        &spec("p1_spin", 16.0, Some(3_000), &[]),
        module_bytes("p1_spin"),
        sb.dir.clone(),
    );
    let hello_sb = sandbox();
    let hello = exec.start_spec(
        &spec("p1_hello", 16.0, None, &[]),
        module_bytes("p1_hello"),
        hello_sb.dir.clone(),
    );
    let hello = hello.outcome().await;
    assert_eq!(hello.state, TaskState::Finished, "{}", hello.reason);
    assert!(
        !spin.is_finished(),
        "hello ended while the spinner still ran"
    );
    let spin = spin.outcome().await;
    assert_eq!((spin.state, spin.exit_code), (TaskState::Failed, None));
    assert_eq!(spin.reason, "timed out after 3 s");
    assert!(spin.stdout_tail.contains("spinning"));
}

#[tokio::test]
async fn kill_ends_a_spinning_task_as_killed() {
    let exec = executor();
    let sb = sandbox();
    let handle = exec.start_spec(
        &spec("p1_spin", 16.0, None, &[]),
        module_bytes("p1_spin"),
        sb.dir.clone(),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    handle.kill();
    let o = handle.outcome().await;
    assert_eq!(
        (o.state, o.exit_code, o.reason.as_str()),
        (TaskState::Killed, None, "killed")
    );
}

/// Fifty tasks on one executor and a two-worker runtime, a fifth of them spinners holding
/// a 0.2 cpu share each (as their specs would say): every task ends with its own outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tasks_at_once_including_hostile_ones() {
    let exec = executor();
    let names = ["p1_hello", "p1_trap", "p1_exit3", "p2_hello", "p1_spin"];
    let mut handles = Vec::new();
    let mut sandboxes = Vec::new();
    for i in 0..50 {
        let name = names[i % names.len()];
        let sb = sandbox();
        let mut task = spec(name, 16.0, Some(20_000), &[]);
        if name == "p1_spin" {
            task.limits.timeout_ms = Some(2_000);
            task.resources = task.resources.with_scalar("cpus", 0.2);
        }
        handles.push((
            name,
            exec.start_spec(&task, module_bytes(name), sb.dir.clone()),
        ));
        sandboxes.push(sb);
    }
    for (name, handle) in handles {
        let o = handle.outcome().await;
        let expected = match name {
            "p1_hello" | "p2_hello" => (TaskState::Finished, "exited with code 0"),
            "p1_trap" => (
                TaskState::Failed,
                "wasm trap: unreachable instruction executed",
            ),
            "p1_exit3" => (TaskState::Failed, "exited with code 3"),
            _ => (TaskState::Failed, "timed out after 2 s"),
        };
        // On a loaded machine the deadline may pass while fifty modules still compile:
        // the reason then says so after the same words.
        assert_eq!(o.state, expected.0, "{name}: {}", o.reason);
        assert!(o.reason.starts_with(expected.1), "{name}: {}", o.reason);
    }
    let after = run_module(&exec, "p1_hello", 16.0, None).await;
    assert_eq!(
        after.state,
        TaskState::Finished,
        "the executor keeps serving"
    );
}

#[test]
fn code_cache_skips_compilation_and_recovers_from_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let config = ExecutorConfig {
        cache_dir: Some(dir.path().to_owned()),
        loaded_modules_max: 0,
        engine: engine(),
        ..ExecutorConfig::default()
    };
    let bytes = module_bytes("p1_hello");
    let first = WasmExecutor::new(config.clone())
        .unwrap()
        .load(&bytes)
        .unwrap();
    assert_eq!(first.origin(), CodeOrigin::Compiled);
    let exec = WasmExecutor::new(config.clone()).unwrap();
    assert_eq!(exec.load(&bytes).unwrap().origin(), CodeOrigin::DiskCache);

    let entry = exec.code_cache().unwrap().entry_path(first.sha256());
    let mut code = std::fs::read(&entry).unwrap();
    let middle = code.len() / 2;
    code[middle] ^= 0x55;
    std::fs::write(&entry, &code).unwrap();
    assert_eq!(
        exec.load(&bytes).unwrap().origin(),
        CodeOrigin::Compiled,
        "corrupt entry is recompiled"
    );
    assert_eq!(
        exec.load(&bytes).unwrap().origin(),
        CodeOrigin::DiskCache,
        "and overwritten with a sound one"
    );

    let component = module_bytes("p2_hello");
    assert_eq!(
        exec.load(&component).unwrap().origin(),
        CodeOrigin::Compiled
    );
    assert_eq!(
        exec.load(&component).unwrap().origin(),
        CodeOrigin::DiskCache
    );
}

#[tokio::test]
async fn pulley_and_native_code_share_a_cache_directory_without_mixing() {
    let dir = tempfile::tempdir().unwrap();
    let config = |engine| ExecutorConfig {
        cache_dir: Some(dir.path().to_owned()),
        loaded_modules_max: 0,
        engine,
        ..ExecutorConfig::default()
    };
    let bytes = module_bytes("p1_hello");
    for engine in [EngineKind::Native, EngineKind::Pulley] {
        let exec = WasmExecutor::new(config(engine)).unwrap();
        assert_eq!(
            exec.load(&bytes).unwrap().origin(),
            CodeOrigin::Compiled,
            "{engine:?}: the other engine's code is not this one's"
        );
    }
    for engine in [EngineKind::Native, EngineKind::Pulley] {
        let exec = WasmExecutor::new(config(engine)).unwrap();
        let loaded = exec.load(&bytes).unwrap();
        assert_eq!(loaded.origin(), CodeOrigin::DiskCache, "{engine:?}");
        let outcome = run_module(&exec, "p1_hello", 64.0, None).await;
        assert_eq!(
            outcome.state,
            TaskState::Finished,
            "{engine:?}: {outcome:?}"
        );
    }
}

#[test]
fn loaded_modules_are_reused_from_memory() {
    let exec = executor();
    let bytes = module_bytes("p1_exit3");
    assert_eq!(exec.load(&bytes).unwrap().origin(), CodeOrigin::Compiled);
    assert_eq!(exec.load(&bytes).unwrap().origin(), CodeOrigin::Memory);
}

/// Regression: host errors carried wasmtime's "error while executing at wasm backtrace:"
/// and a list of frame offsets into the reason.
#[tokio::test]
async fn host_errors_read_without_a_wasm_backtrace() {
    let exec = executor();
    let cases: [(&str, &[u8]); 2] = [
        (
            "missing required memory export",
            br#"(module (import "wasi_snapshot_preview1" "fd_write"
                  (func $w (param i32 i32 i32 i32) (result i32)))
                (func (export "_start")
                  (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        ),
        (
            "exit with invalid exit status outside of [0..126)",
            br#"(module (import "wasi_snapshot_preview1" "proc_exit" (func $e (param i32)))
                (memory (export "memory") 1)
                (func (export "_start") (call $e (i32.const 256))))"#,
        ),
    ];
    for (expected, wat) in cases {
        let task = spec("host-error", 16.0, Some(5_000), &[]);
        let (report, _sb) = run_spec(&exec, &task, wat.to_vec().into()).await;
        assert_eq!(report.outcome.state, TaskState::Failed);
        assert_eq!(report.outcome.reason, expected);
    }
}

/// Regression: a `_start` that takes parameters failed with wasmtime's "failed to convert
/// function `_start` to given type" instead of saying what is wrong with the module.
#[tokio::test]
async fn start_with_parameters_is_not_a_command() {
    let wat = br#"(module (func (export "_start") (param i32)))"#;
    let task = spec("start-params", 16.0, None, &[]);
    let (report, _sb) = run_spec(&executor(), &task, wat.to_vec().into()).await;
    assert_eq!(report.outcome.state, TaskState::Failed);
    assert!(
        report
            .outcome
            .reason
            .starts_with("the module's `_start` takes parameters"),
        "{}",
        report.outcome.reason
    );
}

/// Regression: wasmtime-wasi logs a warning on each p1 `sock_*` call, so a guest could
/// flood the agent's log; they now answer `notsock` (57) quietly, and the task goes on.
#[tokio::test]
async fn p1_socket_calls_answer_notsock() {
    let wat = br#"(module
        (import "wasi_snapshot_preview1" "sock_send"
          (func $send (param i32 i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "_start")
          (call $exit (call $send (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)
                                  (i32.const 16)))))"#;
    let task = spec("sockets", 16.0, Some(5_000), &[]);
    let (report, _sb) = run_spec(&executor(), &task, wat.to_vec().into()).await;
    assert_eq!(
        report.outcome.exit_code,
        Some(57),
        "{}",
        report.outcome.reason
    );
}

#[tokio::test]
async fn handle_bomb_fails_at_the_handle_limit() {
    let wat = include_str!("fdbomb.wat");
    let task = spec("fdbomb", 16.0, Some(20_000), &[]);
    let (report, _sb) = run_spec(&executor(), &task, wat.as_bytes().to_vec().into()).await;
    assert_eq!(report.outcome.state, TaskState::Failed);
    let expected = format!(
        "handle limit of {} open files, streams and sockets reached",
        agent::wasm::limits::HANDLES_MAX
    );
    assert_eq!(report.outcome.reason, expected);
    let after = run_module(&executor(), "p1_hello", 16.0, None).await;
    assert_eq!(
        after.state,
        TaskState::Finished,
        "the agent still opens files"
    );
}
