//! Signed modules through the real `wasmos` binary: `module keygen` and `module sign`,
//! `task run --trust` refusing unsigned, tampered and untrusted-signed modules with the
//! exact reason (also when the code cache already holds the module), and a master and an
//! agent process with `--trust`: the master refuses an unsigned upload, the agent fails
//! an unsigned task.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmos_tests::{Killed, free_endpoint, module, spawn_master, wasmos};

use crate::cluster::{json_rows, run, state_is, wait_for_tasks};

/// What every refusal ends with.
const ONLY_TRUSTED: &str = "(only modules signed by a trusted key run here)";
/// How long the agent may take to show up in the master's listing.
const AGENT_LISTED_WAIT: Duration = Duration::from_secs(20);

fn output_ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `wasmos module keygen DIR/NAME`; returns the key id, read from the public key file.
fn keygen(base: &Path) -> String {
    let out = wasmos()
        .args(["module", "keygen"])
        .arg(base)
        .output()
        .unwrap();
    output_ok(&out, "keygen");
    let mode = |ext: &str| {
        let path = base.with_extension(ext);
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode("key"), 0o600, "the secret key is private");
    let public = std::fs::read_to_string(base.with_extension("pub")).unwrap();
    let words: Vec<&str> = public.split_whitespace().collect();
    assert_eq!(words[0], "wasmos-ed25519-public-key-v1", "{public}");
    assert_eq!(
        words.get(2).copied(),
        base.file_name().and_then(|n| n.to_str())
    );
    words[1][..16].to_owned()
}

/// `wasmos module sign --key KEY MODULE [-o OUT]`: the path printed last.
fn sign(key: &Path, module: &Path, out: Option<&Path>) -> PathBuf {
    let mut cmd = wasmos();
    cmd.args(["module", "sign", "--key"]).arg(key).arg(module);
    if let Some(out) = out {
        cmd.arg("-o").arg(out);
    }
    let stdout = output_ok(&cmd.output().unwrap(), "sign");
    PathBuf::from(stdout.lines().last().unwrap())
}

/// `wasmos task run [--trust KEY]... MODULE` with its own code cache: the exit code and
/// the contract's JSON line.
fn task_run(trust: &[&Path], module: &Path, cache: &Path) -> (i32, Value) {
    let mut cmd = wasmos();
    cmd.args(["task", "run"]).env("WASMOS_CACHE_DIR", cache);
    for key in trust {
        cmd.arg("--trust").arg(key);
    }
    let out = cmd.arg(module).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "no stdout; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(line).unwrap(),
    )
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// `module` with its first "hello from" changed to "jello from".
fn tampered(module: &Path, out: &Path) -> PathBuf {
    let mut bytes = std::fs::read(module).unwrap();
    let at = bytes
        .windows(10)
        .position(|w| w == b"hello from")
        .expect("the greeting is in the module");
    bytes[at] = b'j';
    std::fs::write(out, bytes).unwrap();
    out.to_owned()
}

#[test]
fn keygen_sign_and_task_run_trust_refuse_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    let release_id = keygen(&release);
    let other_id = keygen(&dir.path().join("other"));
    let again = wasmos()
        .args(["module", "keygen"])
        .arg(&release)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists already"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The default output is MODULE.signed.wasm beside MODULE, never overwritten unforced.
    let p2 = dir.path().join("p2_hello.wasm");
    std::fs::copy(module("p2_hello"), &p2).unwrap();
    let (key, other_key) = (release.with_extension("key"), dir.path().join("other.key"));
    let p2_signed = sign(&key, &p2, None);
    assert_eq!(p2_signed, dir.path().join("p2_hello.signed.wasm"));
    let twice = wasmos()
        .args(["module", "sign", "--key"])
        .args([&key, &p2])
        .output()
        .unwrap();
    assert_eq!(twice.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&twice.stderr).contains("--force"));
    let p1 = module("p1_hello");
    let p1_signed = sign(&key, &p1, Some(&dir.path().join("p1.wasm")));
    let p1_other = sign(&other_key, &p1, Some(&dir.path().join("p1.other.wasm")));
    let p1_tampered = tampered(&p1_signed, &dir.path().join("p1.tampered.wasm"));

    // Unsigned p1_hello compiled into the cache first, by a run that trusted nothing.
    let cache = dir.path().join("code-cache");
    let public = release.with_extension("pub");
    let (code, v) = task_run(&[], &p1, &cache);
    assert_eq!((code, v["state"].as_str()), (0, Some("finished")), "{v}");
    assert_eq!(entries(&cache), 1);

    let refusals = [
        (p1.clone(), "the module is unsigned".to_owned()),
        (
            p1_tampered,
            format!(
                "the module is tampered: its bytes do not match its signature by key {release_id}"
            ),
        ),
        (
            p1_other,
            format!("the module is signed by an untrusted key {other_id}"),
        ),
    ];
    for (path, why) in refusals {
        let (code, v) = task_run(&[&public], &path, &cache);
        assert_eq!(code, 1, "{}: {v}", path.display());
        assert_eq!(v["state"], "failed", "{v}");
        assert_eq!(v["reason"], format!("refused: {why} {ONLY_TRUSTED}"), "{v}");
    }
    assert_eq!(entries(&cache), 1, "nothing refused was compiled");

    for (path, greeting) in [(&p1_signed, "hello from p1"), (&p2_signed, "hello from p2")] {
        let (code, v) = task_run(&[&public], path, &cache);
        assert_eq!((code, v["state"].as_str()), (0, Some("finished")), "{v}");
        assert!(v["stdout_tail"].as_str().unwrap().contains(greeting), "{v}");
        // Where nothing is trusted, a signed module runs as any other.
        let (code, v) = task_run(&[], path, &cache);
        assert_eq!((code, v["state"].as_str()), (0, Some("finished")), "{v}");
    }
}

fn agent_with_trust(endpoint: &str, work_dir: &Path, key: &Path) -> Killed {
    Killed(
        wasmos()
            .args(["agent", "--connect", endpoint, "--work-dir"])
            .arg(work_dir)
            .arg("--trust")
            .arg(key)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn master(endpoint: &str, store: &Path, trust: Option<&Path>) -> Killed {
    let mut cmd = wasmos();
    cmd.args(["master", "--listen", endpoint, "--no-http", "--store-dir"])
        .arg(store)
        .stderr(Stdio::inherit());
    if let Some(key) = trust {
        cmd.arg("--trust").arg(key);
    }
    spawn_master(cmd, endpoint)
}

#[test]
fn master_and_agent_with_trust_refuse_unsigned_modules() {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    keygen(&release);
    let (key, public) = (release.with_extension("key"), release.with_extension("pub"));
    let unsigned = module("p1_hello");
    let signed = sign(
        &key,
        &unsigned,
        Some(&dir.path().join("p1_hello.signed.wasm")),
    );

    // A master that trusts the key refuses the unsigned upload and says why.
    let trusting = free_endpoint();
    let _trusting = master(&trusting, &dir.path().join("store-a"), Some(&public));
    let out = wasmos()
        .args(["run", "--connect", &trusting])
        .arg(&unsigned)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "the master refused module \"p1_hello.wasm\": the module is unsigned; this master \
             takes only modules signed by a key it trusts (`wasmos module sign`)"
        ),
        "{stderr}"
    );
    run(&[signed.to_str().unwrap()], 1, &trusting);
    // So is a scheduler module's.
    let out = wasmos()
        .args(["framework", "add", "--connect", &trusting, "--name", "b"])
        .arg(module("batch"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the module is unsigned; this master"),
        "{stderr}"
    );

    // An agent that trusts the key, under a master that trusts none: the unsigned task
    // reaches the agent, which fails it before compiling it.
    let open = free_endpoint();
    let _open = master(&open, &dir.path().join("store-b"), None);
    let _agent = agent_with_trust(&open, &dir.path().join("agent"), &public);
    let deadline = Instant::now() + AGENT_LISTED_WAIT;
    while json_rows(&["agents", "--json"], &open).is_empty() {
        assert!(Instant::now() < deadline, "the agent is not listed in time");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ids = run(&[unsigned.to_str().unwrap()], 1, &open);
    let rows = wait_for_tasks(&open, &ids, "failed", state_is("failed"));
    assert_eq!(
        rows[0]["reason"],
        format!("refused: the module is unsigned {ONLY_TRUSTED}"),
        "{}",
        rows[0]
    );
    let ids = run(&[signed.to_str().unwrap()], 1, &open);
    wait_for_tasks(&open, &ids, "finished", state_is("finished"));
}
