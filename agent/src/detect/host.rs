//! The host itself: cpus, memory, hostname, kernel, and the disk of the work directory.

use std::path::Path;

use super::devices::read_small;

const KIB: u64 = 1024;
const MIB: u64 = 1 << 20;
/// CPU numbers accepted in `/sys/devices/system/cpu/online` (a larger range is a broken
/// file, not a machine).
pub const CPUS_MAX: u64 = 1 << 16;

/// Online cpus from `/sys/devices/system/cpu/online` (`0-3,6`), else the `processor`
/// lines of `/proc/cpuinfo`, else 1.
pub fn cpus(root: &Path) -> u64 {
    if let Some(online) = read_small(root, "/sys/devices/system/cpu/online")
        && let Some(n) = count_cpu_list(&online)
    {
        return n;
    }
    let cpuinfo =
        std::fs::read_to_string(super::devices::under(root, "/proc/cpuinfo")).unwrap_or_default();
    let n = cpuinfo
        .lines()
        .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
        .count() as u64;
    n.max(1)
}

/// Counts a kernel cpu list such as `0-3,6,8-9`; `None` when malformed.
pub fn count_cpu_list(list: &str) -> Option<u64> {
    let mut n: u64 = 0;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?),
            None => {
                let a = part.trim().parse::<u64>().ok()?;
                (a, a)
            }
        };
        if a > b || b >= CPUS_MAX {
            return None;
        }
        n += b - a + 1;
    }
    (n > 0).then_some(n)
}

/// `MemTotal` of `/proc/meminfo` in MiB; `None` when absent.
pub fn mem_mib(root: &Path) -> Option<u64> {
    let meminfo = std::fs::read_to_string(super::devices::under(root, "/proc/meminfo")).ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * KIB / MIB)
}

/// `/proc/sys/kernel/hostname`, else `/etc/hostname`, under root; else the running kernel's
/// node name.
pub fn hostname(root: &Path) -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .into_iter()
        .find_map(|p| read_small(root, p).filter(|h| !h.is_empty()))
        .unwrap_or_else(|| uname().0)
}

/// `/proc/sys/kernel/osrelease` under root, else the running kernel's release.
pub fn kernel(root: &Path) -> String {
    read_small(root, "/proc/sys/kernel/osrelease")
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| uname().1)
}

/// (node name, release) of the running kernel.
fn uname() -> (String, String) {
    // SAFETY: utsname is plain bytes; uname fills it and NUL-terminates every field.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return ("unknown".into(), "unknown".into());
    }
    let text = |field: &[libc::c_char]| {
        let bytes: Vec<u8> = field
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (text(&u.nodename), text(&u.release))
}

/// Free space for unprivileged users and total size of the filesystem of `dir`, in MiB.
pub fn disk_mib(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path holds a NUL byte")
    })?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = s.f_frsize as u64;
    Ok((
        (s.f_bavail as u64).saturating_mul(frsize) / MIB,
        (s.f_blocks as u64).saturating_mul(frsize) / MIB,
    ))
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count_like_the_kernel_means() {
        assert_eq!(count_cpu_list("0-3\n"), Some(4));
        assert_eq!(count_cpu_list("0,2-3,8"), Some(4));
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("x"), None);
        assert_eq!(count_cpu_list(""), None);
    }
}
