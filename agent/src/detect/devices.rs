//! Devices: GPUs, cameras, IIO sensors and serial ports, found in the Linux layout under a
//! root directory.

use std::path::{Path, PathBuf};

/// Entries of one directory listed, at most; a stranger tree is cut off, not walked.
pub const DIR_ENTRIES_MAX: usize = 4096;
/// Bytes read of one small system file (`name`, `vendor`, `information`).
pub const SYS_FILE_BYTES_MAX: u64 = 16 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gpu {
    /// Resource id: `gpu:<device path>` (`gpu:/dev/nvidia0`, `gpu:/dev/dri/renderD128`).
    pub id: String,
    /// `nvidia`, `amd`, `intel`, `arm`, `broadcom`, `qualcomm`, ... or the PCI vendor id.
    pub vendor: String,
    /// As the driver names it, when it does (NVIDIA's `Model:` line).
    pub model: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sensor {
    /// Resource id: `camera:/dev/video0`, `iio:iio:device0`, `serial:/dev/ttyUSB0`.
    pub id: String,
    /// The kernel's name for it (`/sys/.../name`), when it has one.
    pub name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Devices {
    pub gpus: Vec<Gpu>,
    pub cameras: Vec<Sensor>,
    pub iio: Vec<Sensor>,
    pub serial: Vec<Sensor>,
}

/// `root` joined with an absolute Linux path.
pub fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// A small text file under `root`, trimmed; `None` when missing or unreadable.
pub fn read_small(root: &Path, path: &str) -> Option<String> {
    use std::io::Read;
    let file = std::fs::File::open(under(root, path)).ok()?;
    let mut text = String::new();
    file.take(SYS_FILE_BYTES_MAX)
        .read_to_string(&mut text)
        .ok()?;
    Some(text.trim().to_owned())
}

/// Names in directory `path` under `root` that start with `prefix` and continue with the
/// rest accepted by `rest_ok`, sorted naturally (`video2` before `video10`).
fn names_in(root: &Path, path: &str, prefix: &str, rest_ok: fn(&str) -> bool) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(under(root, path)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .take(DIR_ENTRIES_MAX)
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.strip_prefix(prefix).is_some_and(rest_ok))
        .collect();
    names.sort_by_key(|n| natural_key(n));
    names
}

fn natural_key(name: &str) -> (String, u64) {
    let digits_at = name
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(name.len());
    (
        name[..digits_at].to_owned(),
        name[digits_at..].parse().unwrap_or(u64::MAX),
    )
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn anything(_: &str) -> bool {
    true
}

pub fn detect(root: &Path) -> Devices {
    Devices {
        gpus: gpus(root),
        cameras: cameras(root),
        iio: iio(root),
        serial: serial(root),
    }
}

/// NVIDIA GPUs (driver information files and `/dev/nvidiaN`), then DRM render nodes of
/// other vendors. An NVIDIA render node is the same GPU again and is skipped when NVIDIA
/// GPUs were found through the driver.
fn gpus(root: &Path) -> Vec<Gpu> {
    let mut found = nvidia_gpus(root);
    let have_nvidia = !found.is_empty();
    for node in names_in(root, "/dev/dri", "renderD", all_digits) {
        let vendor_id =
            read_small(root, &format!("/sys/class/drm/{node}/device/vendor")).unwrap_or_default();
        let vendor = vendor_name(&vendor_id);
        if have_nvidia && vendor == "nvidia" {
            continue;
        }
        found.push(Gpu {
            id: format!("gpu:/dev/dri/{node}"),
            vendor,
            model: None,
        });
    }
    found
}

fn nvidia_gpus(root: &Path) -> Vec<Gpu> {
    let mut gpus: Vec<Gpu> = Vec::new();
    for bus in names_in(root, "/proc/driver/nvidia/gpus", "", anything) {
        let info = read_small(root, &format!("/proc/driver/nvidia/gpus/{bus}/information"))
            .unwrap_or_default();
        let field = |key: &str| {
            info.lines().find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.trim() == key)
                    .map(|(_, v)| v.trim().to_owned())
            })
        };
        let minor = field("Device Minor").filter(|m| all_digits(m));
        let id = match minor {
            Some(m) => format!("gpu:/dev/nvidia{m}"),
            None => format!("gpu:nvidia:{bus}"),
        };
        gpus.push(Gpu {
            id,
            vendor: "nvidia".into(),
            model: field("Model"),
        });
    }
    // Device nodes name the GPUs the driver listed without a minor number (in order);
    // without a driver listing, each node is a GPU. A node left over when every listed GPU
    // already has one is stale, not one more GPU.
    let driver_listed = !gpus.is_empty();
    for node in names_in(root, "/dev", "nvidia", all_digits) {
        let id = format!("gpu:/dev/{node}");
        if gpus.iter().any(|g| g.id == id) {
            continue;
        }
        match gpus.iter_mut().find(|g| !g.id.starts_with("gpu:/dev/")) {
            Some(unnamed) => unnamed.id = id,
            None if !driver_listed => gpus.push(Gpu {
                id,
                vendor: "nvidia".into(),
                model: None,
            }),
            None => {}
        }
    }
    gpus
}

/// PCI vendor ids of GPU makers; others are reported as the id itself.
fn vendor_name(vendor_id: &str) -> String {
    let name = match vendor_id.trim().to_ascii_lowercase().as_str() {
        "0x10de" => "nvidia",
        "0x1002" | "0x1022" => "amd",
        "0x8086" => "intel",
        "0x13b5" => "arm",
        "0x14e4" => "broadcom",
        "0x5143" => "qualcomm",
        "0x1010" => "imagination",
        "" => "unknown",
        other => return other.to_owned(),
    };
    name.to_owned()
}

fn cameras(root: &Path) -> Vec<Sensor> {
    names_in(root, "/dev", "video", all_digits)
        .into_iter()
        .map(|node| Sensor {
            name: read_small(root, &format!("/sys/class/video4linux/{node}/name")),
            id: format!("camera:/dev/{node}"),
        })
        .collect()
}

fn iio(root: &Path) -> Vec<Sensor> {
    names_in(root, "/sys/bus/iio/devices", "iio:device", all_digits)
        .into_iter()
        .map(|dev| Sensor {
            name: read_small(root, &format!("/sys/bus/iio/devices/{dev}/name")),
            id: format!("iio:{dev}"),
        })
        .collect()
}

fn serial(root: &Path) -> Vec<Sensor> {
    let mut ports = names_in(root, "/dev", "ttyUSB", all_digits);
    ports.extend(names_in(root, "/dev", "ttyACM", all_digits));
    ports
        .into_iter()
        .map(|p| Sensor {
            id: format!("serial:/dev/{p}"),
            name: None,
        })
        .collect()
}
