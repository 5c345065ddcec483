//! Resource and attribute detection on fake device trees in the real Linux layout.

use std::path::Path;

use agent::detect::{self, AgentConfig};
use proto::{AgentId, Scalar};

fn put(root: &Path, path: &str, text: &str) {
    let full = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, text).unwrap();
}

/// A Jetson-like board: 6 cpus, 8 GiB, an NVIDIA GPU (also seen as a DRM render node), an
/// Intel render node, two cameras, an IIO sensor and two serial ports.
fn edge_board() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    put(r, "/sys/devices/system/cpu/online", "0-3,6-7\n");
    put(r, "/proc/cpuinfo", "processor\t: 0\nprocessor\t: 1\n");
    put(
        r,
        "/proc/meminfo",
        "MemTotal:        8388608 kB\nMemFree:         1000 kB\n",
    );
    put(r, "/proc/sys/kernel/hostname", "jetson-dock3\n");
    put(r, "/proc/sys/kernel/osrelease", "5.15.0-tegra\n");
    put(
        r,
        "/proc/driver/nvidia/gpus/0000:01:00.0/information",
        "Model: \t\t Orin (nvgpu)\nIRQ:   1\nDevice Minor: \t 0\n",
    );
    put(r, "/dev/nvidia0", "");
    put(r, "/dev/nvidiactl", "");
    put(r, "/dev/dri/renderD128", "");
    put(r, "/sys/class/drm/renderD128/device/vendor", "0x10de\n");
    put(r, "/dev/dri/renderD129", "");
    put(r, "/sys/class/drm/renderD129/device/vendor", "0x8086\n");
    put(r, "/dev/video0", "");
    put(r, "/sys/class/video4linux/video0/name", "USB Camera\n");
    put(r, "/dev/video10", "");
    put(r, "/sys/class/video4linux/video10/name", "imx219\n");
    put(r, "/sys/bus/iio/devices/iio:device0/name", "bme280\n");
    put(r, "/dev/ttyUSB0", "");
    put(r, "/dev/ttyACM1", "");
    put(r, "/dev/tty0", "");
    root
}

#[test]
fn detects_resources_and_attributes_of_a_fake_board() {
    let root = edge_board();
    let work = tempfile::tempdir().unwrap();
    let d = detect::detect(root.path(), work.path());
    let r = &d.resources;
    assert_eq!(
        r.scalar("cpus"),
        Scalar::from_whole(6),
        "online list wins over cpuinfo"
    );
    assert_eq!(r.scalar("mem"), Scalar::from_whole(8192));
    assert!(
        r.scalar("disk") > Scalar::ZERO,
        "disk of the work directory"
    );
    assert_eq!(
        r.scalar("gpus"),
        Scalar::from_whole(2),
        "nvidia0 once (not again as renderD128) + intel"
    );
    let set = |name: &str| {
        r.sets
            .get(name)
            .map(|s| s.iter().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(
        set("gpu_ids"),
        ["gpu:/dev/dri/renderD129", "gpu:/dev/nvidia0"]
    );
    assert_eq!(
        set("cameras"),
        ["camera:/dev/video0", "camera:/dev/video10"]
    );
    assert_eq!(set("sensors"), ["iio:iio:device0"]);
    assert_eq!(
        set("serial_ports"),
        ["serial:/dev/ttyACM1", "serial:/dev/ttyUSB0"]
    );
    let a = &d.attributes;
    assert_eq!(d.hostname, "jetson-dock3");
    assert_eq!(a.get("hostname"), Some("jetson-dock3"));
    assert_eq!(a.get("kernel"), Some("5.15.0-tegra"));
    assert_eq!(a.get("arch"), Some(std::env::consts::ARCH));
    assert_eq!(a.get("os"), Some("linux"));
    for has in ["gpu", "camera", "sensor", "serial"] {
        assert!(a.has("has", has), "has={has}");
    }
    assert!(a.has("gpu_vendor", "nvidia") && a.has("gpu_vendor", "intel"));
    assert!(a.has("gpu_model", "Orin (nvgpu)"));
    assert!(a.has("camera", "imx219") && a.has("sensor", "bme280"));
}

/// Regression: a driver listing without a `Device Minor` line and the `/dev/nvidia0`
/// node of the same GPU counted as two GPUs.
#[test]
fn nvidia_gpu_listed_without_a_minor_is_counted_once() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    put(
        r,
        "/proc/driver/nvidia/gpus/0000:01:00.0/information",
        "Model: \t\t Tesla T4\n",
    );
    put(r, "/dev/nvidia0", "");
    put(r, "/dev/nvidiactl", "");
    put(r, "/dev/dri/renderD128", "");
    put(r, "/sys/class/drm/renderD128/device/vendor", "0x1002\n");
    let work = tempfile::tempdir().unwrap();
    let d = detect::detect(r, work.path());
    assert_eq!(d.resources.scalar("gpus"), Scalar::from_whole(2));
    let ids: Vec<&String> = d.resources.sets.get("gpu_ids").unwrap().iter().collect();
    assert_eq!(ids, ["gpu:/dev/dri/renderD128", "gpu:/dev/nvidia0"]);
    assert!(d.attributes.has("gpu_model", "Tesla T4"));
    assert!(d.attributes.has("gpu_vendor", "amd") && d.attributes.has("gpu_vendor", "nvidia"));
}

#[test]
fn empty_tree_has_no_devices_and_falls_back_for_cpus() {
    let root = tempfile::tempdir().unwrap();
    put(
        root.path(),
        "/proc/cpuinfo",
        "processor : 0\nmodel name : x\nprocessor : 1\nprocessor : 2\n",
    );
    let work = tempfile::tempdir().unwrap();
    let d = detect::detect(root.path(), work.path());
    assert_eq!(d.resources.scalar("cpus"), Scalar::from_whole(3));
    assert_eq!(d.resources.scalar("gpus"), Scalar::ZERO);
    assert!(d.resources.sets.is_empty());
    assert!(!d.attributes.contains_key("has"));
    assert!(
        !d.hostname.is_empty(),
        "hostname falls back to the running kernel's"
    );
}

#[test]
fn config_overrides_adds_reserves_and_labels() {
    let root = edge_board();
    let work = tempfile::tempdir().unwrap();
    let config = AgentConfig::parse(
        r#"
        [attributes]
        zone = "dock-3"
        [labels]
        owner = "team-a"
        [resources.scalars]
        mem = 4096
        npu = 1
        [resources.sets]
        relays = ["relay:1"]
        [resources.ranges]
        ports = [[31000, 31999]]
        [reserved.scalars]
        cpus = 1
        mem = 512
        "#,
    )
    .unwrap();
    let detected = detect::detect(root.path(), work.path());
    let advert = detect::advert(detected, &config, AgentId::new("a1"), 7).unwrap();
    assert_eq!(
        advert.total.scalar("mem"),
        Scalar::from_whole(4096 - 512),
        "override, then reserve"
    );
    assert_eq!(advert.total.scalar("cpus"), Scalar::from_whole(5));
    assert_eq!(advert.total.scalar("npu"), Scalar::from_whole(1));
    assert_eq!(advert.reserved.scalar("mem"), Scalar::from_whole(512));
    assert!(advert.total.sets.get("relays").unwrap().contains("relay:1"));
    assert!(
        advert
            .total
            .sets
            .get("cameras")
            .unwrap()
            .contains("camera:/dev/video0"),
        "detected sets stay"
    );
    assert_eq!(advert.total.ranges.get("ports").unwrap().count(), 1000);
    assert_eq!(advert.attributes.get("zone"), Some("dock-3"));
    assert_eq!(advert.attributes.get("label.owner"), Some("team-a"));
    assert!(advert.attributes.has("has", "camera"));
}

#[test]
fn agent_id_is_generated_once_per_work_dir_unless_configured() {
    let work = tempfile::tempdir().unwrap();
    let none = AgentConfig::default();
    let first = detect::agent_id(&none, work.path(), "Jetson Dock_3").unwrap();
    assert!(first.as_str().starts_with("jetson-dock-3-"), "{first}");
    assert_eq!(
        detect::agent_id(&none, work.path(), "other").unwrap(),
        first,
        "kept in the work dir"
    );
    // A work directory named relative to the current one (`--work-dir a`) keeps its id
    // too; it was once looked for under `/`.
    let cwd = std::env::current_dir().unwrap();
    let here = tempfile::Builder::new()
        .prefix(".agent-id-test-")
        .tempdir_in(&cwd)
        .unwrap();
    let relative = here.path().strip_prefix(&cwd).unwrap();
    let kept = detect::agent_id(&none, relative, "Jetson Dock_3").unwrap();
    assert_eq!(detect::agent_id(&none, relative, "other").unwrap(), kept);
    assert_eq!(detect::agent_id(&none, here.path(), "other").unwrap(), kept);
    let other_work = tempfile::tempdir().unwrap();
    assert_ne!(
        detect::agent_id(&none, other_work.path(), "Jetson Dock_3").unwrap(),
        first
    );
    let configured = AgentConfig {
        agent_id: Some("pinned".into()),
        ..AgentConfig::default()
    };
    assert_eq!(
        detect::agent_id(&configured, work.path(), "x").unwrap(),
        AgentId::new("pinned")
    );
    let bad = AgentConfig {
        agent_id: Some("a/b".into()),
        ..AgentConfig::default()
    };
    assert!(detect::agent_id(&bad, work.path(), "x").is_err());
}
