//! Sockets: the network grant of p2 components, and the p1 `sock_*` calls' errors.

use std::io::Read;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proto::{TaskKind, TaskSpec, TaskState};

use crate::support::{executor, module_bytes, run_spec, spec};

fn with_net(mut task: TaskSpec, net: bool) -> TaskSpec {
    if let TaskKind::Wasm(wasm) = &mut task.kind {
        wasm.net = net;
    }
    task
}

/// A listener on a free 127.0.0.1 port.
fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    (listener, port)
}

/// What a connection accepted within a few seconds sent, or `None` without one.
fn received(listener: &TcpListener) -> Option<String> {
    listener.set_nonblocking(true).unwrap();
    for _ in 0..50 {
        match listener.accept() {
            Ok((mut conn, _)) => {
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut text = String::new();
                conn.read_to_string(&mut text).unwrap();
                return Some(text);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    None
}

/// Regression (#18): `--net` opened only wasmtime-wasi's address check, while TCP itself
/// stayed disallowed, so a granted component got "Permission denied".
#[tokio::test]
async fn p2_component_with_the_net_grant_connects() {
    let (listener, port) = listener();
    let task = with_net(spec("p2_connect", 64.0, Some(20_000), &[&port]), true);
    let (report, _sb) = run_spec(&executor(), &task, module_bytes("p2_connect")).await;
    let o = report.outcome;
    assert_eq!(
        (o.state, o.exit_code),
        (TaskState::Finished, Some(0)),
        "{}: {}",
        o.reason,
        o.stdout_tail
    );
    assert_eq!(o.stdout_tail, "connected\n");
    assert_eq!(received(&listener).as_deref(), Some("ping"));
}

#[tokio::test]
async fn p2_component_without_the_net_grant_is_denied() {
    let (listener, port) = listener();
    let task = with_net(spec("p2_connect", 64.0, Some(20_000), &[&port]), false);
    let (report, _sb) = run_spec(&executor(), &task, module_bytes("p2_connect")).await;
    let o = report.outcome;
    assert_eq!(
        (o.state, o.exit_code),
        (TaskState::Failed, Some(1)),
        "{}",
        o.reason
    );
    assert!(
        o.stdout_tail
            .starts_with("connect failed: Permission denied"),
        "{}",
        o.stdout_tail
    );
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "no connection reached the host");
}

/// Regression (#18): every p1 `sock_*` answered `notsock`, even on a descriptor that is
/// not open, where the spec gives `badf`.
#[tokio::test]
async fn p1_socket_calls_give_badf_for_closed_and_notsock_for_open_descriptors() {
    let task = spec("p1_sockerr", 64.0, Some(20_000), &[]);
    let (report, _sb) = run_spec(&executor(), &task, module_bytes("p1_sockerr")).await;
    let o = report.outcome;
    assert_eq!(
        (o.state, o.exit_code),
        (TaskState::Finished, Some(0)),
        "{}",
        o.reason
    );
    assert_eq!(
        o.stdout_tail,
        "sock_shutdown 99: 8\n\
         sock_accept 99: 8\n\
         shutdown 99: -1 errno 8\n\
         sock_shutdown 1: 57\n\
         sock_accept 1: 57\n\
         shutdown 1: -1 errno 57\n\
         done\n"
    );
}

/// The answer follows the task's descriptor table as it changes: stdout is `notsock`
/// while open and `badf` once closed; the preopened sandbox (fd 3) is `notsock`.
#[tokio::test]
async fn p1_socket_calls_follow_the_descriptor_table() {
    let wat = br#"(module
        (import "wasi_snapshot_preview1" "sock_recv"
          (func $recv (param i32 i32 i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "sock_send"
          (func $send (param i32 i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "_start") (local $code i32)
          ;; code = recv(3) * 10000 + send(1) * 100 + send(1 after close)
          (local.set $code (i32.mul (call $recv (i32.const 3) (i32.const 0) (i32.const 0)
                                                (i32.const 0) (i32.const 16) (i32.const 20))
                                    (i32.const 10000)))
          (local.set $code (i32.add (local.get $code)
            (i32.mul (call $send (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)
                                 (i32.const 16))
                     (i32.const 100))))
          (drop (call $close (i32.const 1)))
          (local.set $code (i32.add (local.get $code)
            (call $send (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)
                        (i32.const 16))))
          ;; exit codes are small: report 1 when the three are 57, 57, 8, else 2
          (call $exit (select (i32.const 1) (i32.const 2)
                              (i32.eq (local.get $code) (i32.const 575708))))))"#;
    let task = spec("sockets-table", 16.0, Some(5_000), &[]);
    let (report, _sb) = run_spec(&executor(), &task, wat.to_vec().into()).await;
    assert_eq!(
        report.outcome.exit_code,
        Some(1),
        "{}",
        report.outcome.reason
    );
}

/// Counts the warnings and errors logged on the thread it is the default on.
struct WarningCounter(Arc<AtomicUsize>);

impl tracing::Subscriber for WarningCounter {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() <= tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The p1 socket calls stay quiet: a thousand of them log nothing (wasmtime-wasi's own
/// functions would log a warning for each).
#[tokio::test(flavor = "current_thread")]
async fn p1_socket_calls_log_nothing() {
    let warnings = Arc::new(AtomicUsize::new(0));
    let _default = tracing::subscriber::set_default(WarningCounter(warnings.clone()));
    let task = spec("p1_sockerr", 64.0, Some(20_000), &[]);
    let (report, _sb) = run_spec(&executor(), &task, module_bytes("p1_sockerr")).await;
    assert_eq!(
        report.outcome.exit_code,
        Some(0),
        "{}",
        report.outcome.reason
    );
    assert_eq!(warnings.load(Ordering::Relaxed), 0);
}
