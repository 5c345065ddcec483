//! The OCI executor against real runc, with an image layout built here from Debian's
//! `busybox-static`. Needs root, runc and /bin/busybox (`cargo xtask test` installs them).

#![allow(clippy::too_many_lines)]

#[path = "oci/layout.rs"]
mod layout;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use agent::oci::{ImageError, LaunchError, OciConfig, OciContainer, OciExecutor};
use agent::outcome::TaskOutcome;
use layout::{Entry, LAYER_GZIP, LAYER_TAR};
use proto::{OciTask, Resources, TaskId, TaskKind, TaskLimits, TaskSpec, TaskState};

/// The busybox layout, built once under cargo's test scratch directory and reused (the
/// tests never modify it; they copy what they break).
fn busybox() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oci-busybox-layout");
        if !dir.join("index.json").exists() {
            let tmp = dir.with_extension(std::process::id().to_string());
            layout::busybox_layout(&tmp, &["sh", "-c", "echo from-image-cmd"]);
            if std::fs::rename(&tmp, &dir).is_err() {
                std::fs::remove_dir_all(&tmp).unwrap();
            }
        }
        dir
    })
}

struct Agent {
    work: tempfile::TempDir,
    sandbox: tempfile::TempDir,
    executor: OciExecutor,
}

fn agent() -> Agent {
    let work = tempfile::tempdir().unwrap();
    let executor = OciExecutor::new(OciConfig::new(work.path())).unwrap();
    Agent {
        work,
        sandbox: tempfile::tempdir().unwrap(),
        executor,
    }
}

fn task(image: &Path, command: &[&str]) -> TaskSpec {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    TaskSpec {
        task_id: TaskId::new(format!("oci-test-{}-{n}", std::process::id())),
        name: "test".into(),
        resources: Resources::new()
            .with_scalar("cpus", 1.0)
            .with_scalar("mem", 64.0),
        kind: TaskKind::Oci(OciTask {
            image: image.display().to_string(),
            command: command.iter().map(|s| s.to_string()).collect(),
            ..OciTask::default()
        }),
        limits: TaskLimits::default(),
        disconnect: None,
        replaces: None,
    }
}

impl Agent {
    fn run(&self, spec: &TaskSpec) -> TaskOutcome {
        self.executor.run(spec, self.sandbox.path())
    }

    fn launch(&self, spec: &TaskSpec) -> OciContainer {
        self.executor.launch(spec, self.sandbox.path()).unwrap()
    }
}

#[test]
fn exit_codes_output_and_filesystem_rules() {
    let a = agent();
    let ok = a.run(&task(busybox(), &[]));
    assert_eq!(
        (ok.state, ok.exit_code),
        (TaskState::Finished, Some(0)),
        "{ok:?}"
    );
    assert_eq!(ok.stdout_tail, "from-image-cmd\n");

    let script = "echo $IMAGE_VAR $TASK_VAR; pwd; echo data > /sandbox/out; \
                  touch /bin/x 2>/dev/null && echo rootfs-writable; exit 3";
    let mut spec = task(busybox(), &["sh", "-c", script]);
    let TaskKind::Oci(oci) = &mut spec.kind else {
        unreachable!()
    };
    oci.env.insert("TASK_VAR".into(), "from-task".into());
    let out = a.run(&spec);
    assert_eq!(
        (out.state, out.exit_code),
        (TaskState::Failed, Some(3)),
        "{out:?}"
    );
    assert_eq!(out.reason, "exited with code 3");
    assert_eq!(out.stdout_tail, "from-image from-task\n/sandbox\n");
    assert_eq!(
        std::fs::read_to_string(a.sandbox.path().join("out")).unwrap(),
        "data\n"
    );
}

/// An executor whose runc is a script that logs each call's arguments to `runc.calls` in
/// `work` before running the real one.
fn agent_with_logged_runc() -> (Agent, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let calls = work.path().join("runc.calls");
    let wrapper = work.path().join("runc-logged");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec runc \"$@\"\n",
            calls.display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&wrapper).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&wrapper, perms).unwrap();
    let mut config = OciConfig::new(work.path());
    config.runc = wrapper;
    let executor = OciExecutor::new(config).unwrap();
    let agent = Agent {
        work,
        sandbox: tempfile::tempdir().unwrap(),
        executor,
    };
    (agent, calls)
}

/// The cgroup directories runc made for the container, from its `state.json`.
fn runc_cgroups(state_dir: &Path) -> Vec<PathBuf> {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_dir.join("state.json")).unwrap()).unwrap();
    let paths = state["cgroup_paths"].as_object().unwrap();
    assert!(!paths.is_empty(), "{state}");
    paths
        .values()
        .map(|p| PathBuf::from(p.as_str().unwrap()))
        .collect()
}

#[test]
fn an_ended_container_is_deleted_without_runc_and_leaves_nothing_behind() {
    let (a, calls) = agent_with_logged_runc();
    let c = a.launch(&task(busybox(), &["true"]));
    let state = a.work.path().join("runc").join(c.container_id());
    let cgroups = runc_cgroups(&state);
    let out = c.wait(Duration::from_secs(1));
    assert_eq!(out.state, TaskState::Finished, "{out:?}");
    assert!(!state.exists(), "{} left behind", state.display());
    for dir in &cgroups {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    c.remove().unwrap();
    assert!(!c.bundle().exists());
    let calls = std::fs::read_to_string(&calls).unwrap();
    let verbs: Vec<bool> = calls.lines().map(|l| l.contains(" run ")).collect();
    assert_eq!(verbs, [true], "one runc call, `run`: {calls}");
}

#[test]
fn a_container_whose_supervisor_was_killed_is_deleted_by_runc_not_left_running() {
    let (a, calls) = agent_with_logged_runc();
    let c = a.launch(&task(busybox(), &["sleep", "600"]));
    let state = a.work.path().join("runc").join(c.container_id());
    let cgroups = runc_cgroups(&state);
    let init = c.init_pid().unwrap();
    let runtime: serde_json::Value = serde_json::from_slice(
        &std::fs::read(c.bundle().join(agent::oci::container::RUNTIME_FILE)).unwrap(),
    )
    .unwrap();
    let shim = runtime["shim_pid"].as_i64().unwrap();
    Command::new("kill")
        .args(["-9", &shim.to_string()])
        .status()
        .unwrap();
    // No record of an end: the container may still run, so runc deletes it (and kills it).
    c.wait(Duration::from_secs(1));
    assert!(!state.exists(), "{} left behind", state.display());
    for dir in &cgroups {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{init}/stat")).exists()
        && !std::fs::read_to_string(format!("/proc/{init}/stat"))
            .unwrap_or_default()
            .contains(") Z")
    {
        assert!(
            Instant::now() < deadline,
            "the container's init {init} still runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c.remove().unwrap();
    let calls = std::fs::read_to_string(&calls).unwrap();
    assert!(
        calls.lines().any(|l| l.contains(" delete ")),
        "runc calls: {calls}"
    );
}

#[test]
fn isolation_no_capabilities_no_network_no_new_privileges() {
    let a = agent();
    let script =
        "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; ls /sys/class/net; hostname";
    let out = a.run(&task(busybox(), &["sh", "-c", script]));
    assert_eq!(out.state, TaskState::Finished, "{out:?}");
    assert!(
        out.stdout_tail.contains("CapEff:\t0000000000000000"),
        "{}",
        out.stdout_tail
    );
    assert!(
        out.stdout_tail.contains("CapBnd:\t0000000000000000"),
        "{}",
        out.stdout_tail
    );
    assert!(
        out.stdout_tail.contains("NoNewPrivs:\t1"),
        "{}",
        out.stdout_tail
    );
    let lines: Vec<&str> = out.stdout_tail.lines().collect();
    assert_eq!(
        &lines[3..],
        ["lo", "wasmos"],
        "only loopback in the network namespace"
    );
}

#[test]
fn output_over_the_cap_is_dropped_and_counted() {
    let a = agent();
    let mut spec = task(
        busybox(),
        &["sh", "-c", "yes | head -c 100000; echo; echo end"],
    );
    spec.limits.output_bytes_max = 1000;
    let out = a.run(&spec);
    assert_eq!(out.state, TaskState::Finished, "{out:?}");
    assert!(
        out.reason.contains("99005 bytes of stdout"),
        "{}",
        out.reason
    );
    assert_eq!(out.stdout_tail.len(), 1000);
}

#[test]
fn memory_hog_is_killed_by_its_limit_and_reported_as_oom() {
    let a = agent();
    let mut spec = task(
        busybox(),
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
    );
    spec.resources
        .set_scalar("mem", proto::Scalar::from_whole(32));
    let out = a.run(&spec);
    assert_eq!(out.state, TaskState::Failed, "{out:?}");
    assert!(
        out.reason.contains("memory limit of 32 MiB") && out.reason.contains("OOM"),
        "{}",
        out.reason
    );
}

#[test]
fn cpu_limit_holds_a_busy_loop_to_its_share() {
    let a = agent();
    let mut spec = task(busybox(), &["sh", "-c", "while :; do :; done"]);
    spec.resources
        .set_scalar("cpus", proto::Scalar::from_units(0.2).unwrap());
    let c = a.launch(&spec);
    let cgroup = c.cgroup().expect("cgroup paths recorded").clone();
    // Skip the start, then measure the cgroup's own cpu accounting over wall time.
    std::thread::sleep(Duration::from_millis(300));
    let (cpu0, t0) = (cgroup.cpu_usage_ns().unwrap(), Instant::now());
    std::thread::sleep(Duration::from_millis(1500));
    let (cpu1, wall) = (cgroup.cpu_usage_ns().unwrap(), t0.elapsed());
    c.kill(Duration::from_millis(100));
    let out = c.wait(Duration::from_millis(100));
    c.remove().unwrap();
    let share = (cpu1 - cpu0) as f64 / wall.as_nanos() as f64;
    assert!(
        share > 0.05 && share < 0.35,
        "busy loop used {share:.2} cores with cpus=0.2"
    );
    assert_eq!(out.state, TaskState::Killed);
}

#[test]
fn kill_uses_sigterm_then_sigkill_and_reports_killed() {
    let a = agent();
    // A shell that traps TERM exits at once: the grace period is not used up.
    let c = a.launch(&task(
        busybox(),
        &["sh", "-c", "trap 'exit 143' TERM; sleep 60 & wait"],
    ));
    // Let the shell install its trap first: this test is about what a TERM does to a
    // running task (a cold CI run once killed it before then and waited out the grace).
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    c.kill(Duration::from_secs(20));
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "TERM was not delivered"
    );
    let out = c.wait(Duration::from_secs(1));
    assert_eq!(
        (out.state, out.exit_code),
        (TaskState::Killed, Some(143)),
        "{out:?}"
    );
    c.remove().unwrap();

    // pid 1 of a pid namespace ignores an untrapped TERM: SIGKILL after the grace.
    let c = a.launch(&task(busybox(), &["sleep", "60"]));
    c.kill(Duration::from_millis(200));
    let out = c.wait(Duration::from_secs(1));
    assert_eq!(
        (out.state, out.exit_code),
        (TaskState::Killed, None),
        "{out:?}"
    );
    assert!(out.reason.contains("SIGKILL"), "{}", out.reason);
    c.remove().unwrap();
}

#[test]
fn timeout_fails_the_task() {
    let a = agent();
    let mut spec = task(busybox(), &["sleep", "60"]);
    spec.limits.timeout_ms = Some(500);
    let out = a.run(&spec);
    assert_eq!(out.state, TaskState::Failed, "{out:?}");
    assert!(out.reason.contains("timed out"), "{}", out.reason);
}

#[test]
fn command_not_in_image_fails_with_runc_reason() {
    let a = agent();
    let out = a.run(&task(busybox(), &["/no/such/program"]));
    assert_eq!(out.state, TaskState::Failed, "{out:?}");
    assert!(out.reason.contains("/no/such/program"), "{}", out.reason);
}

#[test]
fn rootfs_is_cached_by_manifest_and_a_tar_layout_runs() {
    let a = agent();
    let first = a.executor.image_cache().prepare(busybox()).unwrap();
    let second = a.executor.image_cache().prepare(busybox()).unwrap();
    assert!(!first.from_cache && second.from_cache);
    assert_eq!(first.rootfs, second.rootfs);

    let tar = layout::layout_tar(busybox(), &a.work.path().join("image.tar"));
    let from_tar = a.executor.image_cache().prepare(&tar).unwrap();
    assert!(from_tar.from_cache, "same manifest, same cache entry");
    let out = a.run(&task(&tar, &["echo", "tar"]));
    assert_eq!(
        (out.state, out.stdout_tail.as_str()),
        (TaskState::Finished, "tar\n"),
        "{out:?}"
    );
}

/// A layout with one extra layer on top of busybox.
fn layered(dir: &Path, top: &[Entry], media_type: &str) -> PathBuf {
    let base = layout::gzip(&layout::layer_tar(&layout::busybox_entries()));
    let top = layout::layer_tar(top);
    let top = if media_type == LAYER_GZIP {
        layout::gzip(&top)
    } else {
        top
    };
    let path = dir.join("layered");
    layout::write_layout(&path, &[(LAYER_GZIP, base), (media_type, top)], &["true"]);
    path
}

fn launch_error(a: &Agent, image: &Path) -> LaunchError {
    match a.executor.launch(&task(image, &[]), a.sandbox.path()) {
        Err(e) => e,
        Ok(_) => panic!("{} launched", image.display()),
    }
}

/// The first blob (in name order) that is not JSON: the layer.
fn layer_blob(layout: &Path) -> PathBuf {
    let mut blobs: Vec<_> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    blobs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    blobs.pop().unwrap()
}

#[test]
fn bad_images_fail_the_task_with_a_reason() {
    let a = agent();
    let dir = tempfile::tempdir().unwrap();
    let fresh = |name: &str| {
        let path = dir.path().join(name);
        layout::busybox_layout(&path, &["true"]);
        path
    };

    let missing = fresh("missing");
    std::fs::remove_file(layer_blob(&missing)).unwrap();
    let err = launch_error(&a, &missing);
    assert!(
        matches!(err, LaunchError::Image(ImageError::MissingBlob { .. })),
        "{err}"
    );
    assert!(
        err.outcome().reason.contains("missing"),
        "{}",
        err.outcome().reason
    );
    assert_eq!(err.outcome().state, TaskState::Failed);

    let tampered = fresh("tampered");
    let blob = layer_blob(&tampered);
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let err = launch_error(&a, &tampered);
    assert!(
        matches!(err, LaunchError::Image(ImageError::DigestMismatch { .. })),
        "{err}"
    );

    let unknown = layered(
        dir.path(),
        &[Entry::Dir("etc")],
        "application/x-mystery-layer",
    );
    let err = launch_error(&a, &unknown);
    assert!(
        err.to_string()
            .contains("unsupported media type application/x-mystery-layer"),
        "{err}"
    );
    std::fs::remove_dir_all(&unknown).unwrap();

    let no_index = fresh("no-index");
    std::fs::remove_file(no_index.join("index.json")).unwrap();
    assert!(
        launch_error(&a, &no_index)
            .to_string()
            .contains("index.json")
    );
}

#[test]
fn layers_cannot_write_outside_the_rootfs() {
    let a = agent();
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let outside_str = outside.display().to_string();

    let dotdot = layered(
        dir.path(),
        &[Entry::RawName("../../escaped", b"x".to_vec())],
        LAYER_TAR,
    );
    let err = launch_error(&a, &dotdot);
    assert!(err.to_string().contains("escapes the rootfs"), "{err}");
    std::fs::remove_dir_all(&dotdot).unwrap();

    let absolute = layered(
        dir.path(),
        &[Entry::RawName("/tmp/escaped", b"x".to_vec())],
        LAYER_TAR,
    );
    assert!(
        launch_error(&a, &absolute)
            .to_string()
            .contains("escapes the rootfs")
    );
    std::fs::remove_dir_all(&absolute).unwrap();

    let hardlink = layered(
        dir.path(),
        &[Entry::HardLink(
            "passwd".into(),
            "../../../../etc/passwd".into(),
        )],
        LAYER_TAR,
    );
    assert!(
        launch_error(&a, &hardlink)
            .to_string()
            .contains("escapes the rootfs")
    );
    std::fs::remove_dir_all(&hardlink).unwrap();

    // A symlink to a host directory, then a file "through" it: the write stays inside,
    // under the rootfs's own copy of that path.
    let via_symlink = layered(
        dir.path(),
        &[
            Entry::Symlink("escape".into(), outside_str.clone()),
            Entry::File("escape/planted".into(), b"x".to_vec(), 0o644),
            Entry::Symlink("up".into(), "../../../../../..".into()),
            Entry::File("up/planted-too".into(), b"x".to_vec(), 0o644),
        ],
        LAYER_GZIP,
    );
    let prepared = a.executor.image_cache().prepare(&via_symlink).unwrap();
    assert!(
        std::fs::read_dir(&outside).unwrap().next().is_none(),
        "wrote through a symlink"
    );
    let inside = prepared
        .rootfs
        .join(outside_str.trim_start_matches('/'))
        .join("planted");
    assert!(inside.is_file(), "{} missing", inside.display());
    assert!(prepared.rootfs.join("planted-too").is_file());
    assert!(!Path::new("/planted-too").exists());
}

#[test]
fn whiteouts_and_opaque_directories_hide_lower_layers() {
    let a = agent();
    let dir = tempfile::tempdir().unwrap();
    let lower = layout::layer_tar(&[
        Entry::Dir("etc"),
        Entry::File("etc/gone".into(), b"1".to_vec(), 0o644),
        Entry::File("etc/kept".into(), b"1".to_vec(), 0o644),
        Entry::Dir("opaque"),
        Entry::File("opaque/old".into(), b"1".to_vec(), 0o644),
        Entry::File("data".into(), b"original".to_vec(), 0o644),
    ]);
    let upper = layout::layer_tar(&[
        Entry::File("etc/.wh.gone".into(), Vec::new(), 0o644),
        Entry::Dir("opaque"),
        Entry::File("opaque/new".into(), b"2".to_vec(), 0o644),
        Entry::File("opaque/.wh..wh..opq".into(), Vec::new(), 0o644),
        Entry::HardLink("data-link".into(), "data".into()),
    ]);
    let path = dir.path().join("wh");
    layout::write_layout(
        &path,
        &[(LAYER_TAR, lower), (LAYER_GZIP, layout::gzip(&upper))],
        &["true"],
    );
    let root = a.executor.image_cache().prepare(&path).unwrap().rootfs;
    assert!(!root.join("etc/gone").exists() && root.join("etc/kept").exists());
    assert!(!root.join("opaque/old").exists() && root.join("opaque/new").exists());
    assert!(!root.join("opaque/.wh..wh..opq").exists() && !root.join("etc/.wh.gone").exists());
    assert_eq!(std::fs::read(root.join("data-link")).unwrap(), b"original");
}

/// Regression: a whiteout named `.wh..` or `.wh...` named the directory itself or its
/// parent, and emptied the rootfs (at the top, the directory above it).
#[test]
fn whiteouts_of_dot_and_dotdot_are_refused() {
    let a = agent();
    let dir = tempfile::tempdir().unwrap();
    for name in [".wh..", ".wh...", "bin/.wh..."] {
        let layout = layered(dir.path(), &[Entry::RawName(name, Vec::new())], LAYER_TAR);
        let err = launch_error(&a, &layout);
        assert!(
            err.to_string()
                .contains("escapes the rootfs (whiteout of . or ..)"),
            "{name}: {err}"
        );
        std::fs::remove_dir_all(&layout).unwrap();
    }
}

/// Regression: a FIFO in a layout (as `index.json` or as a blob) blocked the launch
/// forever, whatever the task's timeout.
#[test]
fn fifos_in_a_layout_are_refused_not_waited_on() {
    let a = agent();
    let dir = tempfile::tempdir().unwrap();
    let mkfifo = |path: &Path| {
        std::fs::remove_file(path).unwrap();
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    };
    let index = dir.path().join("fifo-index");
    layout::busybox_layout(&index, &["true"]);
    mkfifo(&index.join("index.json"));
    let err = launch_error(&a, &index);
    assert!(
        err.to_string().contains("index.json is not a regular file"),
        "{err}"
    );

    let blob = dir.path().join("fifo-blob");
    layout::busybox_layout(&blob, &["true"]);
    mkfifo(&layer_blob(&blob));
    let err = launch_error(&a, &blob);
    assert!(err.to_string().contains("is not a regular file"), "{err}");

    let err = launch_error(&a, &index.join("index.json"));
    assert!(
        err.to_string()
            .contains("neither an image layout directory nor a tar file"),
        "{err}"
    );
}

/// Regression: a layer that is not a tar archive failed with the tar reader's message,
/// which quotes raw header bytes, and the path of a temporary directory.
#[test]
fn a_layer_that_is_not_tar_fails_with_a_readable_reason() {
    let a = agent();
    let dir = tempfile::tempdir().unwrap();
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for (name, media_type, bytes) in [
        ("noise.tar", LAYER_TAR, noise.clone()),
        ("noise.tgz", LAYER_GZIP, layout::gzip(&noise)),
        (
            "plain-as-gzip",
            LAYER_GZIP,
            layout::layer_tar(&[Entry::Dir("etc")]),
        ),
    ] {
        let path = dir.path().join(name);
        layout::write_layout(&path, &[(media_type, bytes)], &["true"]);
        let reason = launch_error(&a, &path).outcome().reason;
        assert!(
            reason.contains(": not a readable tar archive: "),
            "{name}: {reason}"
        );
        assert!(
            reason.chars().all(|c| c.is_ascii_graphic() || c == ' ') && !reason.contains(".unpack"),
            "{name}: {reason}"
        );
    }
}

/// Regression: a layout `.tar` that is not one failed with raw header bytes in the reason,
/// and a tar without `oci-layout` named the temporary directory it was extracted to.
#[test]
fn a_layout_tar_that_is_not_one_fails_with_a_readable_reason() {
    let a = agent();
    let dir = tempfile::tempdir().unwrap();
    let noise_tar = dir.path().join("noise.tar");
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&noise_tar, noise).unwrap();
    let reason = launch_error(&a, &noise_tar).outcome().reason;
    assert!(reason.contains("not a readable tar archive"), "{reason}");
    assert!(
        reason.chars().all(|c| c.is_ascii_graphic() || c == ' '),
        "{reason}"
    );
    // Regression: the reader quotes header bytes, which are the start of the file given:
    // a reason showed a secret from any file the agent could read to whoever lists tasks.
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "SECRET_TOKEN=hunter2-abcdef ".repeat(40)).unwrap();
    let reason = launch_error(&a, &secret).outcome().reason;
    assert!(reason.contains("not a readable tar archive"), "{reason}");
    assert!(!reason.contains("hunter2"), "{reason}");

    let empty_tar = dir.path().join("empty.tar");
    std::fs::write(&empty_tar, b"").unwrap();
    let reason = launch_error(&a, &empty_tar).outcome().reason;
    assert!(
        reason.contains(&format!("{}:/oci-layout is missing", empty_tar.display())),
        "{reason}"
    );
}

/// Regression: runc created a missing working directory inside the cached rootfs, which
/// every later container of the image shares; it is now made while unpacking.
#[test]
fn the_working_directory_is_made_in_the_rootfs_when_unpacking() {
    let a = agent();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workdir");
    let layer = layout::gzip(&layout::layer_tar(&layout::busybox_entries()));
    layout::write_layout(&path, &[(LAYER_GZIP, layer)], &["pwd"]);
    // Give the image config a working directory that no layer creates.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path.join("index.json")).unwrap()).unwrap();
    let blob = |digest: &serde_json::Value| {
        let hex = digest
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_owned();
        path.join("blobs/sha256").join(hex)
    };
    let manifest_path = blob(&index["manifests"][0]["digest"]);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&manifest["config"]["digest"])).unwrap())
            .unwrap();
    config["config"]["WorkingDir"] = "/srv/app".into();
    manifest["config"] = layout::put_blob(
        &path,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).unwrap(),
    );
    let manifest = layout::put_blob(
        &path,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    std::fs::write(
        path.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [manifest]}))
            .unwrap(),
    )
    .unwrap();

    let prepared = a.executor.image_cache().prepare(&path).unwrap();
    assert!(prepared.rootfs.join("srv/app").is_dir());
    let out = a.run(&task(&path, &[]));
    assert_eq!(out.stdout_tail, "/srv/app\n", "{out:?}");
}

/// Not a test by itself: the "agent" that [`containers_survive_a_killed_agent`] starts in a
/// child process and kills with SIGKILL. Launches two containers and reports their ids.
#[test]
#[ignore = "helper process for containers_survive_a_killed_agent"]
fn helper_agent_launches_and_waits_to_be_killed() {
    let Some(work) = std::env::var_os("OCI_HELPER_WORK") else {
        return;
    };
    let image = PathBuf::from(std::env::var_os("OCI_HELPER_IMAGE").unwrap());
    let executor = OciExecutor::new(OciConfig::new(&work)).unwrap();
    let sandbox = PathBuf::from(&work).join("sandbox");
    std::fs::create_dir_all(&sandbox).unwrap();
    let quick = executor
        .launch(
            &task(&image, &["sh", "-c", "sleep 0.2; echo quick; exit 7"]),
            &sandbox,
        )
        .unwrap();
    let slow = executor
        .launch(
            &task(&image, &["sh", "-c", "sleep 2; echo slow; exit 5"]),
            &sandbox,
        )
        .unwrap();
    let mut late = task(&image, &["sleep", "60"]);
    late.limits.timeout_ms = Some(300);
    let late = executor.launch(&late, &sandbox).unwrap();
    println!(
        "LAUNCHED {} {} {}",
        quick.task_id(),
        slow.task_id(),
        late.task_id()
    );
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn containers_survive_a_killed_agent_and_are_recovered() {
    let work = tempfile::tempdir().unwrap();
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_agent_launches_and_waits_to_be_killed",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("OCI_HELPER_WORK", work.path())
        .env("OCI_HELPER_IMAGE", busybox())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(helper.stdout.take().unwrap()).lines();
    let launched = lines
        .find_map(|l| {
            l.unwrap()
                .split_once("LAUNCHED ")
                .map(|(_, ids)| ids.to_owned())
        })
        .expect("helper launched");
    let ids: Vec<&str> = launched.split_whitespace().collect();
    helper.kill().unwrap(); // SIGKILL
    helper.wait().unwrap();

    let executor = OciExecutor::new(OciConfig::new(work.path())).unwrap();
    let mut found = executor.recover();
    found.sort_by_key(|c| ids.iter().position(|id| *id == c.task_id()));
    assert_eq!(found.iter().map(|c| c.task_id()).collect::<Vec<_>>(), ids);
    // The quick one ends while no agent runs.
    assert!(found[0].wait_exit(Some(Duration::from_secs(10))));
    assert!(
        !found[1].has_exited(),
        "the slow container is still running"
    );

    let quick = found[0].wait(Duration::from_secs(1));
    assert_eq!(
        (quick.state, quick.exit_code, quick.stdout_tail.as_str()),
        (TaskState::Failed, Some(7), "quick\n")
    );
    let slow = found[1].wait(Duration::from_secs(1));
    assert_eq!(
        (slow.state, slow.exit_code, slow.stdout_tail.as_str()),
        (TaskState::Failed, Some(5), "slow\n")
    );

    // Its deadline passed while no agent ran: stopped at once, reported as a timeout.
    let late = found[2].wait(Duration::from_millis(100));
    assert_eq!(late.state, TaskState::Failed);
    assert!(late.reason.contains("timed out"), "{}", late.reason);

    // A second restart reports the same outcomes until the bundles are removed.
    let again = executor.recover();
    assert_eq!(again.len(), 3);
    for c in again {
        let out = c.wait(Duration::from_secs(1));
        assert!([Some(7), Some(5), None].contains(&out.exit_code), "{out:?}");
        c.remove().unwrap();
    }
    assert!(executor.recover().is_empty());
}

/// An image for another architecture is refused by name, and its one architecture is
/// what `wasmos run --oci` constrains placement on (no runc needed).
#[test]
fn an_image_for_another_architecture_is_refused_and_its_arch_read() {
    let dir = tempfile::tempdir().unwrap();
    let (other_oci, other_agent) = match std::env::consts::ARCH {
        "aarch64" => ("amd64", "x86_64"),
        _ => ("arm64", "aarch64"),
    };
    let foreign = dir.path().join("foreign");
    layout::write_layout_for(&foreign, &[], &["/bin/true"], other_oci);
    let cache = agent::oci::ImageCache::new(dir.path().join("cache"));
    let error = cache.prepare(&foreign).map(|_| ()).unwrap_err().to_string();
    assert!(
        error.contains(&format!(
            "the image is for linux/{other_oci}, this agent is linux/"
        )),
        "{error}"
    );
    assert_eq!(
        agent::oci::image_arch(&foreign).unwrap().as_deref(),
        Some(other_agent)
    );
    let native = dir.path().join("native");
    layout::write_layout(&native, &[], &["/bin/true"]);
    assert_eq!(
        agent::oci::image_arch(&native).unwrap().as_deref(),
        Some(std::env::consts::ARCH)
    );
    // A layout tar's architecture is read from its index alone, in place.
    let index_path = foreign.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["manifests"][0]["platform"] =
        serde_json::json!({"architecture": other_oci, "os": "linux"});
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let tar = layout::layout_tar(&foreign, &dir.path().join("foreign.tar"));
    assert_eq!(
        agent::oci::image_arch(&tar).unwrap().as_deref(),
        Some(other_agent)
    );
    // GNU tar names the entry `./index.json`.
    let gnu_tar = dir.path().join("foreign-gnu.tar");
    let packed = std::process::Command::new("tar")
        .arg("-C")
        .arg(&foreign)
        .arg("-cf")
        .arg(&gnu_tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(packed.success());
    assert_eq!(
        agent::oci::image_arch(&gnu_tar).unwrap().as_deref(),
        Some(other_agent)
    );
    let no_index = dir.path().join("no-index.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&no_index).unwrap());
    b.append_path_with_name(foreign.join("oci-layout"), "oci-layout")
        .unwrap();
    b.finish().unwrap();
    drop(b);
    let error = agent::oci::image_arch(&no_index).unwrap_err().to_string();
    assert!(error.contains("no index.json"), "{error}");
}

/// Regression: an image whose user is not root could write neither `/sandbox` (the
/// task's directory, owned by root) nor `/tmp` (its tmpfs took the 0755 of the mount point
/// made in the rootfs).
#[test]
fn a_non_root_image_user_may_write_its_sandbox_and_tmp() {
    let a = agent();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("as-nobody");
    layout::busybox_layout_as(&image, "65534:65534");
    let script = "id -u; touch /sandbox/f && echo sandbox-ok; touch /tmp/f && echo tmp-ok";
    let out = a.run(&task(&image, &["sh", "-c", script]));
    assert_eq!(
        (out.state, out.exit_code),
        (TaskState::Finished, Some(0)),
        "{out:?}"
    );
    assert_eq!(out.stdout_tail, "65534\nsandbox-ok\ntmp-ok\n");
}
