//! Signed modules on the executor: with trusted keys, unsigned, tampered and
//! untrusted-signed modules fail before anything is compiled (the code cache stays empty,
//! also when it already holds the module's code); without, signed modules run as before.

use std::path::Path;
use std::sync::Arc;

use agent::wasm::{CodeOrigin, ExecutorConfig, LoadError, WasmExecutor};
use proto::TaskState;
use signing::{SecretKey, TrustedKeys, VerifyError};

use crate::support::{module_bytes, run_spec, spec};

fn key(byte: u8) -> SecretKey {
    SecretKey::from_seed(&[byte; signing::SEED_BYTES])
}

fn signed(name: &str, key: &SecretKey) -> Arc<[u8]> {
    signing::sign(&module_bytes(name), key).unwrap().into()
}

/// An executor trusting `keys`, caching compiled code in `cache_dir`, nothing in memory.
fn trusting(keys: &[&SecretKey], cache_dir: &Path) -> WasmExecutor {
    WasmExecutor::new(ExecutorConfig {
        cache_dir: Some(cache_dir.to_owned()),
        loaded_modules_max: 0,
        trusted: TrustedKeys::new(keys.iter().map(|k| k.public_key())).unwrap(),
        engine: crate::support::engine(),
    })
    .unwrap()
}

fn cache_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// `bytes` with the first "hello from" changed to "jello from".
fn tampered(bytes: &[u8]) -> Arc<[u8]> {
    let at = bytes
        .windows(10)
        .position(|w| w == b"hello from")
        .expect("the greeting is in the module");
    let mut changed = bytes.to_vec();
    changed[at] = b'j';
    changed.into()
}

#[tokio::test]
async fn signed_modules_run_as_before_where_no_key_is_trusted() {
    let exec = WasmExecutor::new(ExecutorConfig::default()).unwrap();
    let alice = key(1);
    for (name, greeting) in [("p1_hello", "hello from p1"), ("p2_hello", "hello from p2")] {
        let (report, _sandbox) =
            run_spec(&exec, &spec(name, 64.0, None, &[]), signed(name, &alice)).await;
        let o = report.outcome;
        assert_eq!(
            (o.state, o.exit_code),
            (TaskState::Finished, Some(0)),
            "{name}: {}",
            o.reason
        );
        assert!(
            o.stdout_tail.contains(greeting),
            "{name}: {}",
            o.stdout_tail
        );
    }
}

#[tokio::test]
async fn refused_modules_fail_with_the_reason_and_are_never_compiled() {
    let cache = tempfile::tempdir().unwrap();
    let (alice, mallory) = (key(1), key(2));
    let exec = trusting(&[&alice], cache.path());
    let alice_id = alice.public_key().key_id();
    let mallory_id = mallory.public_key().key_id();
    let only = "(only modules signed by a trusted key run here)";
    let cases: [(&str, Arc<[u8]>, String); 5] = [
        (
            "p1_hello",
            module_bytes("p1_hello"),
            format!("refused: the module is unsigned {only}"),
        ),
        (
            "p2_hello",
            module_bytes("p2_hello"),
            format!("refused: the module is unsigned {only}"),
        ),
        (
            "p1_hello",
            tampered(&signed("p1_hello", &alice)),
            format!(
                "refused: the module is tampered: its bytes do not match its signature by key {alice_id} {only}"
            ),
        ),
        (
            "p2_hello",
            tampered(&signed("p2_hello", &alice)),
            format!(
                "refused: the module is tampered: its bytes do not match its signature by key {alice_id} {only}"
            ),
        ),
        (
            "p1_hello",
            signed("p1_hello", &mallory),
            format!("refused: the module is signed by an untrusted key {mallory_id} {only}"),
        ),
    ];
    for (name, bytes, reason) in cases {
        let (report, _sandbox) = run_spec(&exec, &spec(name, 64.0, None, &[]), bytes).await;
        let o = report.outcome;
        assert_eq!((o.state, o.exit_code), (TaskState::Failed, None), "{name}");
        assert_eq!(o.reason, reason, "{name}");
    }
    assert_eq!(cache_entries(cache.path()), 0, "nothing was compiled");
    // WAT text cannot carry a signature.
    assert!(matches!(
        exec.load(b"(module)"),
        Err(LoadError::Refused(VerifyError::Malformed(_)))
    ));

    for name in ["p1_hello", "p2_hello"] {
        let (report, _sandbox) =
            run_spec(&exec, &spec(name, 64.0, None, &[]), signed(name, &alice)).await;
        assert_eq!(
            report.outcome.state,
            TaskState::Finished,
            "{}",
            report.outcome.reason
        );
    }
    assert_eq!(
        cache_entries(cache.path()),
        2,
        "the signed modules were compiled"
    );
}

#[test]
fn code_cached_before_keys_were_trusted_does_not_let_a_module_through() {
    let cache = tempfile::tempdir().unwrap();
    let unsigned = module_bytes("p1_hello");
    let before = WasmExecutor::new(ExecutorConfig {
        cache_dir: Some(cache.path().to_owned()),
        ..ExecutorConfig::default()
    })
    .unwrap();
    assert_eq!(
        before.load(&unsigned).unwrap().origin(),
        CodeOrigin::Compiled
    );
    assert_eq!(cache_entries(cache.path()), 1);

    let alice = key(1);
    let exec = trusting(&[&alice], cache.path());
    assert_eq!(
        exec.load(&unsigned).err(),
        Some(LoadError::Refused(VerifyError::Unsigned))
    );
    // The signed module is other bytes: compiled once, then from the cache.
    let signed = signed("p1_hello", &alice);
    assert_eq!(exec.load(&signed).unwrap().origin(), CodeOrigin::Compiled);
    assert_eq!(exec.load(&signed).unwrap().origin(), CodeOrigin::DiskCache);
}

#[test]
fn modules_in_memory_were_checked_and_others_still_are() {
    let alice = key(1);
    let exec = WasmExecutor::new(ExecutorConfig {
        trusted: TrustedKeys::new([alice.public_key()]).unwrap(),
        ..ExecutorConfig::default()
    })
    .unwrap();
    let signed = signed("p1_exit3", &alice);
    assert_eq!(exec.load(&signed).unwrap().origin(), CodeOrigin::Compiled);
    assert_eq!(exec.load(&signed).unwrap().origin(), CodeOrigin::Memory);
    assert!(matches!(
        exec.load(&tampered_exit3(&signed)),
        Err(LoadError::Refused(VerifyError::Tampered { .. }))
    ));
    assert_eq!(
        exec.load(&module_bytes("p1_exit3")).err(),
        Some(LoadError::Refused(VerifyError::Unsigned))
    );
}

/// `bytes` with its last byte before the signature section flipped.
fn tampered_exit3(bytes: &[u8]) -> Vec<u8> {
    let mut changed = bytes.to_vec();
    let before_signature = changed.len() - signing::SIGNATURE_SECTION_BYTES - 1;
    changed[before_signature] ^= 1;
    changed
}
