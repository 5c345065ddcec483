//! cgroup v1 and v2: which one the machine runs, where a container's cgroup is, and what
//! it says about memory (OOM kills) and cpu use.
//!
//! - v2 (unified, `/sys/fs/cgroup/cgroup.controllers` exists): one directory;
//!   OOM kills are the `oom_kill` line of `memory.events`, cpu time is `usage_usec` of
//!   `cpu.stat`.
//! - v1 (one hierarchy per controller): OOM kills are the `oom_kill` line of
//!   `memory/…/memory.oom_control` (Linux 4.13+); cpu time is `cpuacct/…/cpuacct.usage`
//!   in nanoseconds.
//!
//! Paths come from `/proc/<pid>/cgroup` of the container's init while it runs, so they
//! are right whatever cgroup parent runc chose, and are recorded in the bundle to be
//! read after the container exited (runc keeps the cgroup until `runc delete`).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where cgroup hierarchies are mounted.
pub const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupVersion {
    V1,
    V2,
}

impl CgroupVersion {
    /// The version this machine runs, by the presence of the v2 root's controller list.
    pub fn detect() -> CgroupVersion {
        if Path::new(CGROUP_MOUNT).join("cgroup.controllers").exists() {
            CgroupVersion::V2
        } else {
            CgroupVersion::V1
        }
    }

    /// True when cgroup v1 has swap accounting (`memory.memsw.*`), so a swap limit can be set.
    pub fn has_swap_accounting(self) -> bool {
        match self {
            CgroupVersion::V2 => true,
            CgroupVersion::V1 => Path::new(CGROUP_MOUNT).join("memory/memory.memsw.limit_in_bytes").exists(),
        }
    }
}

/// The cgroup directories of one container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupPaths {
    pub version: CgroupVersion,
    /// v2: the container's directory; v1: its directory in the memory hierarchy.
    pub memory: PathBuf,
    /// v2: the same directory; v1: its directory in the cpuacct hierarchy.
    pub cpu: PathBuf,
}

impl CgroupPaths {
    /// The cgroups of a running process, from `/proc/<pid>/cgroup`.
    pub fn of_pid(pid: i32, version: CgroupVersion) -> Option<CgroupPaths> {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        CgroupPaths::parse(&text, version, Path::new(CGROUP_MOUNT))
    }

    /// Parses `/proc/<pid>/cgroup` content (`ID:CONTROLLERS:PATH` lines).
    pub fn parse(text: &str, version: CgroupVersion, mount: &Path) -> Option<CgroupPaths> {
        let rel = |controller: &str| -> Option<PathBuf> {
            text.lines().find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                let wanted = match version {
                    CgroupVersion::V2 => controllers.is_empty(),
                    CgroupVersion::V1 => controllers.split(',').any(|c| c == controller),
                };
                wanted.then(|| PathBuf::from(path.trim_start_matches('/')))
            })
        };
        match version {
            CgroupVersion::V2 => {
                let dir = mount.join(rel("")?);
                Some(CgroupPaths { version, memory: dir.clone(), cpu: dir })
            }
            CgroupVersion::V1 => Some(CgroupPaths {
                version,
                memory: mount.join("memory").join(rel("memory")?),
                cpu: mount.join("cpuacct").join(rel("cpuacct")?),
            }),
        }
    }

    /// How many processes the OOM killer killed in this cgroup; `None` if unreadable
    /// (the cgroup is gone, or the kernel predates the counter).
    pub fn oom_kills(&self) -> Option<u64> {
        let file = match self.version {
            CgroupVersion::V2 => "memory.events",
            CgroupVersion::V1 => "memory.oom_control",
        };
        let text = fs::read_to_string(self.memory.join(file)).ok()?;
        keyed_value(&text, "oom_kill")
    }

    /// Total cpu time used by the cgroup, in nanoseconds.
    pub fn cpu_usage_ns(&self) -> Option<u64> {
        match self.version {
            CgroupVersion::V2 => {
                let text = fs::read_to_string(self.cpu.join("cpu.stat")).ok()?;
                keyed_value(&text, "usage_usec").map(|us| us.saturating_mul(1000))
            }
            CgroupVersion::V1 => fs::read_to_string(self.cpu.join("cpuacct.usage")).ok()?.trim().parse().ok(),
        }
    }
}

/// The number after `key ` on its own line of a flat-keyed cgroup file.
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_paths_come_from_each_controller_line() {
        let text = "9:name=systemd:/wasmos/t\n4:memory:/wasmos/t\n2:cpu,cpuacct:/wasmos/t\n0::/\n";
        let p = CgroupPaths::parse(text, CgroupVersion::V1, Path::new("/cg")).unwrap();
        assert_eq!(p.memory, Path::new("/cg/memory/wasmos/t"));
        assert_eq!(p.cpu, Path::new("/cg/cpuacct/wasmos/t"));
    }

    #[test]
    fn v2_path_is_the_unified_line() {
        let p = CgroupPaths::parse("0::/wasmos/t\n", CgroupVersion::V2, Path::new("/cg")).unwrap();
        assert_eq!(p.memory, Path::new("/cg/wasmos/t"));
        assert_eq!(p.cpu, p.memory);
    }

    #[test]
    fn oom_kill_is_read_from_its_line_only() {
        let events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(keyed_value(events, "oom_kill"), Some(2));
        assert_eq!(keyed_value("oom_kill_disable 0\nunder_oom 0\n", "oom_kill"), None);
    }
}
