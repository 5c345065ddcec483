//! The runtime spec (`config.json`) of one container, built with `oci-spec` from the
//! image's run configuration and the task. Pure: no I/O.
//!
//! What every container gets:
//! - the image's cached rootfs, mounted **read-only**, and the task's sandbox directory
//!   mounted read-write at [`SANDBOX_GUEST`] (the working directory unless the image sets
//!   one), plus a small private `/tmp` (tmpfs of [`TMP_BYTES_MAX`]);
//! - its own pid, mount, ipc, uts and network namespaces (the host network only when the
//!   task is granted it: then the network namespace is simply not created);
//! - `no_new_privileges`, and no capabilities except those the task was granted;
//! - cgroup limits: cpu quota = `cpus` × [`CPU_PERIOD_US`], memory (and memory+swap, so
//!   the limit cannot be dodged by swapping) = `mem` MiB, at most [`PIDS_MAX`] processes,
//!   devices denied except runc's defaults (null, zero, full, random, urandom, tty, ptmx).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, Linux, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, Process, ProcessBuilder,
    RootBuilder, Spec, UserBuilder, get_default_maskedpaths, get_default_mounts,
    get_default_readonly_paths,
};
use proto::OciTask;

use super::image::ImageRunConfig;

/// Where the sandbox directory appears in the container.
pub const SANDBOX_GUEST: &str = "/sandbox";
/// The cfs period the cpu quota is expressed in.
pub const CPU_PERIOD_US: u64 = 100_000;
/// Smallest cpu quota runc and the kernel accept.
pub const CPU_QUOTA_MIN_US: i64 = 1_000;
/// Most processes (and threads) in one container.
pub const PIDS_MAX: i64 = 1024;
/// Size of the container's `/tmp`.
pub const TMP_BYTES_MAX: u64 = 64 << 20;
/// Open files per process.
pub const OPEN_FILES_MAX: u64 = 1024;
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("the image has no entrypoint or cmd and the task gives no command")]
    NoCommand,
    #[error("unknown capability {0:?} (expected a name such as CAP_NET_BIND_SERVICE)")]
    UnknownCapability(String),
    #[error("image user {0:?} is not numeric (uid[:gid]); user names are not resolved")]
    NamedUser(String),
    #[error("runtime spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
}

/// Everything the spec depends on besides the image.
#[derive(Clone, Debug)]
pub struct ContainerLimits {
    /// Cpu share; `0` means no cpu quota.
    pub cpus_millis: u64,
    /// Memory limit in MiB; `0` means no memory limit.
    pub mem_mib: u64,
    /// Set the memory+swap limit too (cgroup v1 only has it with swap accounting on).
    pub limit_swap: bool,
}

/// Builds the runtime spec of one container.
pub fn runtime_spec(
    image: &ImageRunConfig,
    task: &OciTask,
    limits: &ContainerLimits,
    rootfs: &Path,
    sandbox: &Path,
    cgroups_path: &str,
) -> Result<Spec, BundleError> {
    let mut spec = Spec::default();
    spec.set_process(Some(process(image, task)?));
    spec.set_root(Some(
        RootBuilder::default().path(rootfs).readonly(true).build()?,
    ));
    spec.set_hostname(Some("wasmos".to_owned()));
    spec.set_mounts(Some(mounts(sandbox)?));
    spec.set_linux(Some(linux(task, limits, cgroups_path)?));
    spec.set_annotations(None);
    Ok(spec)
}

/// The container's process: the task's command (else the image's), its user, no new
/// privileges, only the capabilities granted, and a bound on open files.
fn process(image: &ImageRunConfig, task: &OciTask) -> Result<Process, BundleError> {
    let args = if task.command.is_empty() {
        image
            .entrypoint
            .iter()
            .chain(&image.cmd)
            .cloned()
            .collect::<Vec<_>>()
    } else {
        task.command.clone()
    };
    if args.is_empty() {
        return Err(BundleError::NoCommand);
    }
    let (uid, gid) = parse_user(image.user.as_deref())?;
    let caps = capabilities(&task.capabilities)?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(args)
        .env(merge_env(&image.env, &task.env))
        .cwd(
            image
                .working_dir
                .clone()
                .unwrap_or_else(|| SANDBOX_GUEST.to_owned()),
        )
        .user(UserBuilder::default().uid(uid).gid(gid).build()?)
        .no_new_privileges(true)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps.clone())
                .inheritable(HashSet::new())
                .ambient(HashSet::new())
                .build()?,
        )
        .rlimits(vec![
            oci_spec::runtime::PosixRlimitBuilder::default()
                .typ(oci_spec::runtime::PosixRlimitType::RlimitNofile)
                .hard(OPEN_FILES_MAX)
                .soft(OPEN_FILES_MAX)
                .build()?,
        ])
        .build()?;
    Ok(process)
}

/// Namespaces (the host's network only when asked), cgroup limits and masked paths.
fn linux(
    task: &OciTask,
    limits: &ContainerLimits,
    cgroups_path: &str,
) -> Result<Linux, BundleError> {
    let mut namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
    ];
    if !task.host_network {
        namespaces.push(LinuxNamespaceType::Network);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
        .collect::<Result<Vec<_>, _>>()?;
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources(limits)?)
        .cgroups_path(PathBuf::from(cgroups_path))
        .masked_paths(get_default_maskedpaths())
        .readonly_paths(get_default_readonly_paths())
        .build()?;
    Ok(linux)
}

fn resources(limits: &ContainerLimits) -> Result<oci_spec::runtime::LinuxResources, BundleError> {
    let mut builder = LinuxResourcesBuilder::default()
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()?,
        ])
        .pids(LinuxPidsBuilder::default().limit(PIDS_MAX).build()?);
    if limits.cpus_millis > 0 {
        let quota = (limits.cpus_millis * CPU_PERIOD_US / 1000) as i64;
        builder = builder.cpu(
            LinuxCpuBuilder::default()
                .quota(quota.max(CPU_QUOTA_MIN_US))
                .period(CPU_PERIOD_US)
                .build()?,
        );
    }
    if limits.mem_mib > 0 {
        let bytes = (limits.mem_mib as i64).saturating_mul(1 << 20);
        let mut memory = LinuxMemoryBuilder::default().limit(bytes);
        if limits.limit_swap {
            memory = memory.swap(bytes);
        }
        builder = builder.memory(memory.build()?);
    }
    Ok(builder.build()?)
}

fn mounts(sandbox: &Path) -> Result<Vec<Mount>, BundleError> {
    let mut mounts = get_default_mounts();
    mounts.push(
        MountBuilder::default()
            .destination(SANDBOX_GUEST)
            .typ("bind")
            .source(sandbox)
            .options(vec![
                "rbind".to_owned(),
                "rw".to_owned(),
                "nosuid".to_owned(),
                "nodev".to_owned(),
            ])
            .build()?,
    );
    mounts.push(
        MountBuilder::default()
            .destination("/tmp")
            .typ("tmpfs")
            .source("tmpfs")
            .options(vec![
                "nosuid".to_owned(),
                "nodev".to_owned(),
                "mode=1777".to_owned(),
                format!("size={}k", TMP_BYTES_MAX / 1024),
            ])
            .build()?,
    );
    Ok(mounts)
}

/// The image's environment with the task's on top (same key: the task wins); `PATH` is
/// set when neither gives one.
pub fn merge_env(image: &[String], task: &BTreeMap<String, String>) -> Vec<String> {
    let mut merged: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match merged.iter_mut().find(|(key, _)| key == k) {
        Some(slot) => slot.1 = v.to_owned(),
        None => merged.push((k.to_owned(), v.to_owned())),
    };
    for kv in image {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(k, v);
    }
    for (k, v) in task {
        set(k, v);
    }
    if !merged.iter().any(|(k, _)| k == "PATH") {
        let (k, v) = DEFAULT_PATH.split_once('=').unwrap_or_default();
        merged.insert(0, (k.to_owned(), v.to_owned()));
    }
    merged
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// `uid[:gid]` from the image config; root when unset.
fn parse_user(user: Option<&str>) -> Result<(u32, u32), BundleError> {
    let Some(user) = user else { return Ok((0, 0)) };
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let uid: u32 = u
        .parse()
        .map_err(|_| BundleError::NamedUser(user.to_owned()))?;
    let gid: u32 = if g.is_empty() {
        uid
    } else {
        g.parse()
            .map_err(|_| BundleError::NamedUser(user.to_owned()))?
    };
    Ok((uid, gid))
}

/// Granted capability names (`CAP_X` or `X`, any case) as a set.
fn capabilities(names: &[String]) -> Result<HashSet<Capability>, BundleError> {
    names
        .iter()
        .map(|name| {
            let upper = name.to_ascii_uppercase();
            let full = if upper.starts_with("CAP_") {
                upper
            } else {
                format!("CAP_{upper}")
            };
            serde_json::from_value(serde_json::Value::String(full))
                .map_err(|_| BundleError::UnknownCapability(name.clone()))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use super::*;

    fn image() -> ImageRunConfig {
        ImageRunConfig {
            entrypoint: vec!["/bin/sh".into()],
            cmd: vec!["-c".into(), "echo hi".into()],
            env: vec!["PATH=/bin".into(), "A=1".into()],
            working_dir: None,
            user: None,
        }
    }

    fn limits() -> ContainerLimits {
        ContainerLimits {
            cpus_millis: 500,
            mem_mib: 64,
            limit_swap: true,
        }
    }

    fn spec(task: &OciTask) -> Spec {
        runtime_spec(
            &image(),
            task,
            &limits(),
            Path::new("/r"),
            Path::new("/s"),
            "/wasmos/x",
        )
        .unwrap()
    }

    #[test]
    fn task_env_overrides_image_env_and_command_replaces_entrypoint() {
        let task = OciTask {
            command: vec!["/bin/true".into()],
            env: [("A".to_owned(), "2".to_owned())].into(),
            ..OciTask::default()
        };
        let spec = spec(&task);
        let process = spec.process().as_ref().unwrap();
        assert_eq!(
            process.args().as_ref().unwrap(),
            &vec!["/bin/true".to_owned()]
        );
        assert_eq!(
            process.env().as_ref().unwrap(),
            &vec!["PATH=/bin".to_owned(), "A=2".to_owned()]
        );
        assert_eq!(process.cwd(), Path::new(SANDBOX_GUEST));
        assert_eq!(process.no_new_privileges(), Some(true));
    }

    #[test]
    fn no_capabilities_unless_granted() {
        let spec = spec(&OciTask::default());
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        assert!(caps.bounding().as_ref().unwrap().is_empty());
        let spec = spec_with_caps(&["net_bind_service"]);
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        assert!(
            caps.effective()
                .as_ref()
                .unwrap()
                .contains(&Capability::NetBindService)
        );
        assert_eq!(caps.effective().as_ref().unwrap().len(), 1);
    }

    fn spec_with_caps(caps: &[&str]) -> Spec {
        spec(&OciTask {
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            ..OciTask::default()
        })
    }

    #[test]
    fn network_namespace_only_without_host_network() {
        let has_net = |s: &Spec| {
            s.linux()
                .as_ref()
                .unwrap()
                .namespaces()
                .as_ref()
                .unwrap()
                .iter()
                .any(|n| n.typ() == LinuxNamespaceType::Network)
        };
        assert!(has_net(&spec(&OciTask::default())));
        assert!(!has_net(&spec(&OciTask {
            host_network: true,
            ..OciTask::default()
        })));
    }

    #[test]
    fn limits_become_cgroup_resources_and_rootfs_is_read_only() {
        let spec = spec(&OciTask::default());
        let res = spec.linux().as_ref().unwrap().resources().as_ref().unwrap();
        let cpu = res.cpu().as_ref().unwrap();
        assert_eq!(
            (cpu.quota(), cpu.period()),
            (Some(50_000), Some(CPU_PERIOD_US))
        );
        assert_eq!(res.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(res.pids().as_ref().unwrap().limit(), PIDS_MAX);
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    }

    #[test]
    fn unknown_capability_and_named_user_are_refused() {
        let task = OciTask {
            capabilities: vec!["CAP_FLY".into()],
            ..OciTask::default()
        };
        assert!(matches!(
            runtime_spec(
                &image(),
                &task,
                &limits(),
                Path::new("/r"),
                Path::new("/s"),
                "/w"
            ),
            Err(BundleError::UnknownCapability(_))
        ));
        let named = ImageRunConfig {
            user: Some("nobody".into()),
            ..image()
        };
        assert!(matches!(
            runtime_spec(
                &named,
                &OciTask::default(),
                &limits(),
                Path::new("/r"),
                Path::new("/s"),
                "/w"
            ),
            Err(BundleError::NamedUser(_))
        ));
    }
}
