//! `wasmos demo`: the README's first command runs a whole cluster and ends with every
//! task finished.

use wasmos_tests::{module, wasmos};

/// `[  1.23s] what      text` → (what, text).
fn event(line: &str) -> Option<(&str, &str)> {
    let rest = line.split_once("] ")?.1;
    let (what, text) = rest.split_once(' ')?;
    Some((what, text.trim_start()))
}

/// "N of M tasks finished" → (N, M).
fn finished_of(text: &str) -> Option<(u32, u32)> {
    let counts = text.split_once(": ")?.1.strip_suffix(" tasks finished")?;
    let (n, m) = counts.split_once(" of ")?;
    Some((n.parse().ok()?, m.parse().ok()?))
}

#[test]
fn demo_runs_two_weighted_frameworks_to_the_end_and_exits_0() {
    let modules_dir = module("p1_sensor").parent().unwrap().to_path_buf();
    let out = wasmos()
        .args(["demo", "--modules"])
        .arg(&modules_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let events: Vec<(&str, &str)> = stdout.lines().filter_map(event).collect();
    let count = |what: &str, prefix: &str| {
        events
            .iter()
            .filter(|(w, t)| *w == what && t.starts_with(prefix))
            .count()
    };

    for framework in ["telemetry", "vision"] {
        let summary = events
            .iter()
            .find(|(w, t)| *w == "summary" && t.starts_with(framework))
            .unwrap_or_else(|| panic!("no summary for {framework}:\n{stdout}"));
        let (finished, launched) = finished_of(summary.1).unwrap();
        assert_eq!(finished, launched, "{summary:?}");
        assert!(launched >= 2, "{summary:?}");
        assert_eq!(
            count("finished", &format!("{framework}: ")),
            launched as usize,
            "one `finished` line per task of {framework}:\n{stdout}"
        );
        assert_eq!(
            count("accept", &format!("{framework} → ")),
            launched as usize,
            "one accept per task of {framework}:\n{stdout}"
        );
        assert!(count("offer", &format!("{framework} ← ")) >= launched as usize);
    }
    // Both frameworks held resources at the same time, and the shares said so.
    assert!(
        events.iter().any(|(w, t)| *w == "shares"
            && t.contains("telemetry 0.")
            && t.contains("(weight 1,")
            && t.contains("vision 0.")
            && t.contains("(weight 3,")),
        "no line with both frameworks' shares:\n{stdout}"
    );
    // While they competed, the framework of weight 3 held more of the fleet.
    let drf = events
        .iter()
        .find(|(w, _)| *w == "drf")
        .unwrap_or_else(|| panic!("no drf line:\n{stdout}"));
    let held = |name: &str| -> u32 {
        let after = drf.1.split_once(&format!("{name} (weight ")).unwrap().1;
        let count = after.split_once(") ").unwrap().1;
        count
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(held("vision") > held("telemetry"), "{drf:?}");

    // Placement: what needs aarch64 or a GPU ran where those are.
    assert!(
        stdout.contains("telemetry → rpi-north: telemetry-arm-hello (needs arch=aarch64)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("vision → gpu-box: vision-gpu-hello (needs has=gpu)"),
        "{stdout}"
    );
    // The sensor tasks read the granted device file.
    assert!(stdout.contains(r#""min":41250,"max":41250"#), "{stdout}");
    assert!(stdout.contains("every task finished"), "{stdout}");
}

#[test]
fn demo_without_modules_says_how_to_build_them_and_exits_1() {
    let empty = tempfile::tempdir().unwrap();
    let out = wasmos()
        .args(["demo", "--modules"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cargo xtask modules"), "{stderr}");
    assert!(stderr.contains("p1_sensor.wasm"), "{stderr}");
}
