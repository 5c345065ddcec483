//! Resource and attribute detection: what one device has, as the [`AgentAdvert`] the agent
//! publishes.
//!
//! Every path is read under a root directory (`/` on a device; a fake tree in tests), in
//! the real Linux layout. What is found:
//!
//! | resource (in `total`) | from |
//! |---|---|
//! | `cpus` scalar | `/sys/devices/system/cpu/online`, else `/proc/cpuinfo` |
//! | `mem` scalar (MiB) | `MemTotal` of `/proc/meminfo` |
//! | `disk` scalar (MiB) | space available in the work directory (statvfs) |
//! | `gpus` scalar, `gpu_ids` set | `/proc/driver/nvidia/gpus/*/information`, `/dev/nvidiaN`, `/dev/dri/renderD*` with `/sys/class/drm/renderD*/device/vendor` |
//! | `cameras` set | `/dev/videoN` (name from `/sys/class/video4linux/videoN/name`) |
//! | `sensors` set | `/sys/bus/iio/devices/iio:deviceN` (name from its `name`) |
//! | `serial_ports` set | `/dev/ttyUSBN`, `/dev/ttyACMN` |
//!
//! Attributes: `arch`, `os`, `hostname`, `kernel`, `has=gpu|camera|sensor|serial`,
//! `gpu_vendor`, `gpu_model`, `camera` (device names), `sensor` (IIO names), then those of
//! the [`config::AgentConfig`].

pub mod config;
pub mod devices;
pub mod host;

use std::path::{Path, PathBuf};

use proto::{AgentAdvert, AgentId, Attributes, Resources, Scalar};

pub use config::{AgentConfig, ConfigError, ParseError, ResourceConfig, ResourceConfigError};

/// File in the work directory that keeps a generated agent id.
pub const AGENT_ID_FILE: &str = "agent_id";

/// What detection found on one device, before configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Detected {
    pub hostname: String,
    pub attributes: Attributes,
    pub resources: Resources,
}

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    // `error`, not `source`: see `ConfigError::Read`.
    #[error("work directory {path}: {error}")]
    WorkDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("invalid agent id {0:?}: {1}")]
    AgentId(String, String),
}

/// Detects the device under `root`; `disk` is measured on `work_dir`.
pub fn detect(root: &Path, work_dir: &Path) -> Detected {
    let hostname = host::hostname(root);
    let mut attributes = Attributes::new()
        .with("arch", std::env::consts::ARCH)
        .with("os", std::env::consts::OS)
        .with("hostname", &hostname)
        .with("kernel", &host::kernel(root));
    let mut resources = Resources::new().with_scalar("cpus", host::cpus(root) as f64);
    if let Some(mem) = host::mem_mib(root) {
        resources = resources.with_scalar("mem", mem as f64);
    }
    match host::disk_mib(work_dir) {
        Ok((available, _total)) => resources = resources.with_scalar("disk", available as f64),
        Err(e) => tracing::warn!(work_dir = %work_dir.display(), error = %e, "cannot measure disk"),
    }
    add_devices(&devices::detect(root), &mut attributes, &mut resources);
    Detected {
        hostname,
        attributes,
        resources,
    }
}

fn add_devices(found: &devices::Devices, attributes: &mut Attributes, resources: &mut Resources) {
    if !found.gpus.is_empty() {
        attributes.insert("has", "gpu");
        resources.set_scalar("gpus", Scalar::from_whole(found.gpus.len() as u64));
    }
    for gpu in &found.gpus {
        resources
            .sets
            .entry("gpu_ids".into())
            .or_default()
            .insert(gpu.id.clone());
        attributes.insert("gpu_vendor", &gpu.vendor);
        if let Some(model) = &gpu.model {
            attributes.insert("gpu_model", model);
        }
    }
    let kinds = [
        ("cameras", "camera", &found.cameras),
        ("sensors", "sensor", &found.iio),
        ("serial_ports", "serial", &found.serial),
    ];
    for (set, has, sensors) in kinds {
        for sensor in sensors {
            attributes.insert("has", has);
            resources
                .sets
                .entry(set.into())
                .or_default()
                .insert(sensor.id.clone());
            if let Some(name) = sensor.name.as_deref().filter(|n| !n.is_empty()) {
                attributes.insert(has, name);
            }
        }
    }
}

/// The advert: detected resources with the configuration's overrides, less the reserved.
pub fn advert(
    detected: Detected,
    config: &AgentConfig,
    agent_id: AgentId,
    incarnation: u64,
) -> Result<AgentAdvert, ResourceConfigError> {
    let mut total = detected.resources;
    let configured = config.resources.to_resources()?;
    for (name, amount) in &configured.scalars {
        total.set_scalar(name, *amount);
    }
    for (name, items) in &configured.sets {
        total
            .sets
            .entry(name.clone())
            .or_default()
            .extend(items.iter().cloned());
    }
    for (name, ranges) in &configured.ranges {
        let merged = total
            .ranges
            .get(name)
            .map_or(ranges.clone(), |r| r.union(ranges));
        total.ranges.insert(name.clone(), merged);
    }
    let reserved = config.reserved.to_resources()?;
    total.subtract_saturating(&reserved);
    let mut attributes = detected.attributes;
    for (key, values) in config.attributes.iter() {
        attributes.set_all(key, values);
    }
    for (key, value) in &config.labels {
        attributes.set(&format!("label.{key}"), value);
    }
    Ok(AgentAdvert {
        agent_id,
        hostname: detected.hostname,
        attributes,
        total,
        reserved,
        seq: 0,
        incarnation,
        tasks: Vec::new(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        last_census: None,
    })
}

/// The agent's work directory: the configured one, else `$WASMOS_WORK_DIR`, else
/// `/var/lib/wasmos/agent` when it can be created, else `$HOME/.local/share/wasmos/agent`.
pub fn work_dir(config: &AgentConfig) -> PathBuf {
    if let Some(dir) = &config.work_dir {
        return dir.clone();
    }
    if let Some(dir) = std::env::var_os("WASMOS_WORK_DIR") {
        return PathBuf::from(dir);
    }
    let system = PathBuf::from("/var/lib/wasmos/agent");
    if std::fs::create_dir_all(&system).is_ok() {
        return system;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".local/share/wasmos/agent")
}

/// The configured id, else the one kept in `work_dir`, else a new one written there:
/// stable across restarts of an agent on the same work directory.
pub fn agent_id(
    config: &AgentConfig,
    work_dir: &Path,
    hostname: &str,
) -> Result<AgentId, DetectError> {
    if let Some(id) = &config.agent_id {
        return checked_id(id.trim());
    }
    let io_err = |error| DetectError::WorkDir {
        path: work_dir.to_owned(),
        error,
    };
    std::fs::create_dir_all(work_dir).map_err(io_err)?;
    // Absolute: `read_small` reads under a root, where a relative work directory would
    // be looked for under `/` and a new id made at each start.
    let file = std::path::absolute(work_dir.join(AGENT_ID_FILE)).map_err(io_err)?;
    if let Some(kept) = devices::read_small(Path::new("/"), &file.to_string_lossy()) {
        return checked_id(&kept);
    }
    let id = checked_id(&new_agent_id(hostname))?;
    let temp = work_dir.join(format!(".{AGENT_ID_FILE}.{}.tmp", std::process::id()));
    std::fs::write(&temp, format!("{id}\n"))
        .and_then(|()| std::fs::rename(&temp, &file))
        .map_err(io_err)?;
    Ok(id)
}

fn checked_id(id: &str) -> Result<AgentId, DetectError> {
    proto::keys::valid_chunk("agent id", id)
        .map_err(|e| DetectError::AgentId(id.to_owned(), e.to_string()))?;
    Ok(AgentId::new(id))
}

/// `<hostname>-<8 hex digits>`, the hostname reduced to `[a-z0-9-]`.
fn new_agent_id(hostname: &str) -> String {
    let host: String = hostname
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    let host = host.trim_matches('-');
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    if host.is_empty() {
        format!("agent-{suffix}")
    } else {
        format!("{host}-{suffix}")
    }
}
