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
//! Paths follow from the absolute `cgroupsPath` the executor puts in every spec, and are
//! recorded in the bundle to be read after the container exited (runc keeps the cgroup
//! until `runc delete`).

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
            CgroupVersion::V1 => Path::new(CGROUP_MOUNT)
                .join("memory/memory.memsw.limit_in_bytes")
                .exists(),
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
    /// The directories runc creates for the absolute `cgroups_path` of a container's
    /// spec (`/wasmos/<id>`), under the hierarchies mounted at `mount`.
    ///
    /// Derived rather than read from `/proc/<init>/cgroup`: a container can be OOM-killed
    /// before the agent gets to read that file, and the OOM verdict needs the path.
    pub fn for_spec_path(cgroups_path: &str, version: CgroupVersion, mount: &Path) -> CgroupPaths {
        let rel = cgroups_path.trim_start_matches('/');
        match version {
            CgroupVersion::V2 => CgroupPaths {
                version,
                memory: mount.join(rel),
                cpu: mount.join(rel),
            },
            CgroupVersion::V1 => CgroupPaths {
                version,
                memory: mount.join("memory").join(rel),
                cpu: mount.join("cpuacct").join(rel),
            },
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

    /// Memory the cgroup uses now, bytes (v2 `memory.current`, v1
    /// `memory.usage_in_bytes`); `None` if unreadable.
    pub fn memory_bytes(&self) -> Option<u64> {
        let file = match self.version {
            CgroupVersion::V2 => "memory.current",
            CgroupVersion::V1 => "memory.usage_in_bytes",
        };
        fs::read_to_string(self.memory.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Total cpu time used by the cgroup, in nanoseconds.
    pub fn cpu_usage_ns(&self) -> Option<u64> {
        match self.version {
            CgroupVersion::V2 => {
                let text = fs::read_to_string(self.cpu.join("cpu.stat")).ok()?;
                keyed_value(&text, "usage_usec").map(|us| us.saturating_mul(1000))
            }
            CgroupVersion::V1 => fs::read_to_string(self.cpu.join("cpuacct.usage"))
                .ok()?
                .trim()
                .parse()
                .ok(),
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
#[allow(clippy::too_many_lines)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_spec_path_per_version() {
        let v1 = CgroupPaths::for_spec_path("/wasmos/t", CgroupVersion::V1, Path::new("/cg"));
        assert_eq!(v1.memory, Path::new("/cg/memory/wasmos/t"));
        assert_eq!(v1.cpu, Path::new("/cg/cpuacct/wasmos/t"));
        let v2 = CgroupPaths::for_spec_path("/wasmos/t", CgroupVersion::V2, Path::new("/cg"));
        assert_eq!(v2.memory, Path::new("/cg/wasmos/t"));
        assert_eq!(v2.cpu, v2.memory);
    }

    #[test]
    fn oom_kill_is_read_from_its_line_only() {
        let events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(keyed_value(events, "oom_kill"), Some(2));
        assert_eq!(
            keyed_value("oom_kill_disable 0\nunder_oom 0\n", "oom_kill"),
            None
        );
    }
}
