//! `wasmos task run --oci`: the contract line and exit status through the real binary and
//! real runc, on a busybox image layout built here.

use std::path::Path;
use std::process::Output;

use wasmos_tests::{oci_image, wasmos};

fn last_line(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "no output; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
}

fn run(work: &Path, args: &[&str]) -> (serde_json::Value, Option<i32>) {
    let out = wasmos()
        .env("WASMOS_WORK_DIR", work)
        .args(["task", "run"])
        .args(args)
        .output()
        .unwrap();
    (last_line(&out), out.status.code())
}

#[test]
fn oci_task_run_reports_exit_codes_limits_and_bad_images() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("busybox");
    oci_image::busybox_layout(&image, &["echo", "hello from the image"]);
    let image = image.to_str().unwrap();
    let work = dir.path().join("work");

    let (line, code) = run(&work, &["--oci", image]);
    assert_eq!(code, Some(0), "{line}");
    assert_eq!(line["state"], "finished");
    assert_eq!(line["exit_code"], 0);
    assert_eq!(line["stdout_tail"], "hello from the image\n");

    let (line, code) = run(
        &work,
        &[
            "--oci",
            image,
            "--env",
            "X=42",
            "--",
            "sh",
            "-c",
            "echo $X; exit 3",
        ],
    );
    assert_eq!(code, Some(1));
    assert_eq!(
        (line["state"].as_str(), line["exit_code"].as_i64()),
        (Some("failed"), Some(3)),
        "{line}"
    );
    assert_eq!(line["stdout_tail"], "42\n");

    let (line, _) = run(
        &work,
        &[
            "--oci",
            image,
            "--mem",
            "16",
            "--",
            "dd",
            "if=/dev/zero",
            "of=/dev/null",
            "bs=128M",
            "count=1",
        ],
    );
    assert_eq!(line["state"], "failed", "{line}");
    assert!(
        line["reason"]
            .as_str()
            .unwrap()
            .contains("memory limit of 16 MiB"),
        "{line}"
    );

    let (line, code) = run(
        &work,
        &["--oci", image, "--timeout", "0.5", "--", "sleep", "30"],
    );
    assert_eq!(
        (line["state"].as_str(), code),
        (Some("failed"), Some(1)),
        "{line}"
    );
    assert!(
        line["reason"].as_str().unwrap().contains("timed out"),
        "{line}"
    );

    let tar = oci_image::layout_tar(Path::new(image), &dir.path().join("busybox.tar"));
    let (line, code) = run(
        &work,
        &[
            "--oci",
            tar.to_str().unwrap(),
            "--cpus",
            "0.5",
            "--",
            "echo",
            "from tar",
        ],
    );
    assert_eq!(
        (line["stdout_tail"].as_str(), code),
        (Some("from tar\n"), Some(0)),
        "{line}"
    );

    std::fs::remove_file(Path::new(image).join("index.json")).unwrap();
    let (line, code) = run(&work, &["--oci", image]);
    assert_eq!(
        (line["state"].as_str(), code),
        (Some("failed"), Some(1)),
        "{line}"
    );
    assert!(
        line["reason"].as_str().unwrap().contains("bad image"),
        "{line}"
    );

    let (line, code) = run(&work, &["--oci", "/no/such/layout"]);
    assert_eq!(
        (line["state"].as_str(), code),
        (Some("failed"), Some(1)),
        "{line}"
    );
}

#[test]
fn oci_task_run_usage_errors_exit_2() {
    let out = wasmos()
        .args(["task", "run", "--oci", "/x", "--env", "novalue"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Regression: a share that rounds to no thousandth set no CPU limit at all.
    let out = wasmos()
        .args(["task", "run", "--oci", "/x", "--cpus", "0.0001"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("at least 0.001"), "{stderr}");
}

/// Regression: the default work directory is in `/tmp`, where another user could make it
/// first and plant a cached rootfs that root's `task run` then ran. A work directory that
/// is not the caller's own, or that others may write, is refused.
#[test]
fn oci_task_run_refuses_a_work_directory_others_may_write() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let mut refused = vec![shared];
    // Root may give a directory away; anyone else cannot make one owned by another user.
    if std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0) {
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        refused.push(theirs);
    }
    for work in refused {
        let out = wasmos()
            .env("WASMOS_WORK_DIR", &work)
            .args(["task", "run", "--oci", "/no/such/image"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", work.display());
        assert!(stderr.contains("only it may write"), "{stderr}");
        assert!(!work.join("oci").exists(), "{}", work.display());
    }
    // A missing one is made, private.
    let fresh = dir.path().join("a/b/work");
    let out = wasmos()
        .env("WASMOS_WORK_DIR", &fresh)
        .args(["task", "run", "--oci", "/no/such/image"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

/// Regression: an agent restarted without OCI tasks (`--no-oci`, or runc gone) on a work
/// directory holding containers left them running unseen, their resources counted free.
#[test]
fn an_agent_without_oci_refuses_a_work_directory_holding_containers() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("oci/containers/task-left-behind")).unwrap();
    let out = wasmos()
        .args(["agent", "--no-oci", "--connect", "tcp/127.0.0.1:9"])
        .arg("--work-dir")
        .arg(&work)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("left 1 container(s)") && stderr.contains("task-left-behind"),
        "{stderr}"
    );
}
