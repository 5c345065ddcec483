//! The demo's made-up fleet: three agents whose adverts describe devices this machine is
//! not, each a real agent daemon with its own work directory.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use agent_daemon::{AgentDaemon, AgentDaemonConfig, AgentHandle};
use anyhow::Context;
use net::NetConfig;
use proto::{AgentAdvert, AgentId, Attributes, Resources};

use super::Printer;

/// The sensor file the sensor tasks sample, in the granted directory, and its guest path.
pub const SENSOR_FILE: &str = "temp";
pub const SENSOR_GUEST_DIR: &str = "/dev/thermal0";
/// A reading in millidegrees, as sysfs thermal zones give it.
const SENSOR_READING: &str = "41250\n";

/// One device of the fleet.
struct Device {
    name: &'static str,
    arch: &'static str,
    cpus: f64,
    mem_mib: f64,
    gpus: f64,
    /// `has=` attributes.
    has: &'static [&'static str],
}

const DEVICES: [Device; 3] = [
    Device {
        name: "rpi-north",
        arch: "aarch64",
        cpus: 4.0,
        mem_mib: 2048.0,
        gpus: 0.0,
        has: &["camera"],
    },
    Device {
        name: "gpu-box",
        arch: "x86_64",
        cpus: 8.0,
        mem_mib: 4096.0,
        gpus: 1.0,
        has: &["gpu"],
    },
    Device {
        name: "sensor-box",
        arch: "x86_64",
        cpus: 2.0,
        mem_mib: 1024.0,
        gpus: 0.0,
        has: &["thermal"],
    },
];

/// A directory holding the sensor file, to be granted to sensor tasks read-only.
pub fn sensor_device(work: &Path) -> anyhow::Result<PathBuf> {
    let dir = work.join("thermal0");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join(SENSOR_FILE);
    std::fs::write(&file, SENSOR_READING).with_context(|| format!("writing {}", file.display()))?;
    Ok(dir)
}

/// Starts one agent daemon per device, clients of the master at `endpoints`.
/// The devices' names, each also its agent's identity on the demo's secure cluster.
pub fn device_names() -> impl Iterator<Item = &'static str> {
    DEVICES.iter().map(|d| d.name)
}

/// Starts an agent per device, each as its own identity of the cluster in `cluster` when
/// given.
pub async fn start_agents(
    endpoints: &[String],
    work: &Path,
    cluster: Option<&Path>,
    printer: &Printer,
) -> anyhow::Result<Vec<AgentHandle>> {
    let mut agents = Vec::new();
    for device in &DEVICES {
        let advert = advert(device);
        printer.line(
            "agent",
            format!(
                "{} ({}) advertises {}",
                device.name,
                attributes_text(&advert.attributes),
                advert.total
            ),
        );
        let mut net = NetConfig::member(endpoints.to_vec());
        if let Some(dir) = cluster {
            net = net.with_tls(device.name, crate::identity::tls_of(dir, device.name));
        }
        let config = AgentDaemonConfig::new(net, advert, work.join("agents").join(device.name));
        let agent = AgentDaemon::start(config)
            .await
            .with_context(|| format!("starting agent {}", device.name))?;
        agents.push(agent);
    }
    Ok(agents)
}

fn advert(device: &Device) -> AgentAdvert {
    let mut total = Resources::new()
        .with_scalar("cpus", device.cpus)
        .with_scalar("mem", device.mem_mib);
    if device.gpus > 0.0 {
        total = total.with_scalar("gpus", device.gpus);
    }
    let mut attributes = Attributes::new()
        .with("arch", device.arch)
        .with("os", "linux");
    for has in device.has {
        attributes.insert("has", has);
    }
    AgentAdvert {
        agent_id: AgentId::new(device.name),
        hostname: device.name.to_owned(),
        attributes,
        total,
        reserved: Resources::new(),
        seq: 0,
        incarnation: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        tasks: Vec::new(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        last_census: None,
    }
}

/// `arch=aarch64 has=camera`, without `os`.
fn attributes_text(attributes: &Attributes) -> String {
    attributes
        .iter()
        .filter(|(key, _)| *key != "os")
        .flat_map(|(key, values)| values.iter().map(move |v| format!("{key}={v}")))
        .collect::<Vec<_>>()
        .join(" ")
}
