//! Processes still mapping shared libraries that were deleted (replaced by a package update):
//! they run the old code until restarted.
//!
//! `/proc/<pid>/maps` is parsed here line by line rather than with `procfs_core`'s
//! `MemoryMaps`: that parser rejects the whole file at the first line it cannot read, and a
//! maps file read under a size bound, or a fixture with junk in it, must still yield every
//! line that is good. The work is bounded: kernel threads (no command line) are skipped, each
//! maps file is read up to [`MAPS_LIMIT`], and the scan stops after [`TOTAL_BUDGET`] bytes.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::host::{HostError, HostRoot};
use crate::inspect::ProcessTable;

/// One maps line is ~100 bytes: this is ~160 000 mappings, far above real daemons.
pub(super) const MAPS_LIMIT: u64 = 16 << 20;

/// Upper bound on maps bytes read in one scan (hundreds of processes at typical sizes).
pub(super) const TOTAL_BUDGET: u64 = 512 << 20;

/// Processes listed among those not scanned (the count is always complete).
const NOT_SCANNED_LISTED: usize = 20;

const DELETED_SUFFIX: &str = " (deleted)";

/// The deleted shared libraries named in a maps text, and how many lines were not maps lines.
pub(crate) fn deleted_libraries(maps: &str) -> (BTreeSet<String>, usize) {
    let mut libs = BTreeSet::new();
    let mut junk = 0;
    for line in maps.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let Some(path) = pathname(line) else {
            junk += 1;
            continue;
        };
        let Some(path) = path.strip_suffix(DELETED_SUFFIX) else {
            continue;
        };
        if is_shared_library(path) {
            libs.insert(path.to_owned());
        }
    }
    (libs, junk)
}

/// The pathname field of a maps line (`address perms offset dev inode pathname`), `""` for
/// anonymous mappings, `None` when the line is not a maps line.
fn pathname(line: &str) -> Option<&str> {
    let mut rest = line;
    let mut fields = [""; 5];
    for f in &mut fields {
        rest = rest.trim_start_matches(' ');
        let end = rest.find(' ').unwrap_or(rest.len());
        *f = &rest[..end];
        rest = &rest[end..];
    }
    let [address, perms, offset, dev, inode] = fields;
    let hex = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit());
    let valid = address
        .split_once('-')
        .is_some_and(|(a, b)| hex(a) && hex(b))
        && perms.len() == 4
        && hex(offset)
        && dev.split_once(':').is_some_and(|(a, b)| hex(a) && hex(b))
        && !inode.is_empty()
        && inode.chars().all(|c| c.is_ascii_digit());
    valid.then(|| rest.trim_start_matches(' '))
}

/// A file-backed path whose name is a shared object (`libssl.so.3`, `libfoo.so`); memfd,
/// SysV shared memory and `/dev/shm` mappings are not libraries.
fn is_shared_library(path: &str) -> bool {
    if !path.starts_with('/')
        || path.starts_with("/memfd:")
        || path.starts_with("/SYSV")
        || path.starts_with("/dev/shm/")
    {
        return false;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with(".so") || name.contains(".so.")
}

/// The scan of every process.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// `{pid, program, libraries, unit}` for each process with deleted libraries.
    pub processes: Vec<Value>,
    /// The systemd units of those processes: what to restart.
    pub services: BTreeSet<String>,
    pub scanned: usize,
    /// Gone between listing and reading.
    pub exited: usize,
    /// `{pid, reason}` for processes that could not be read.
    pub not_scanned: Vec<Value>,
    pub not_scanned_count: usize,
    pub junk_lines: usize,
}

/// `/proc/<pid>/cgroup` is a line per hierarchy.
const CGROUP_LIMIT: u64 = 64 << 10;

/// The systemd unit a process runs in, from `/proc/<pid>/cgroup`: the last `.service` in the
/// unified (`0::`) or `name=systemd` hierarchy's path, else its last `.scope` (a container or
/// a login session). `None` outside systemd's tree.
pub(crate) fn unit(cgroup: &str) -> Option<String> {
    let path = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .or_else(|| {
            cgroup
                .lines()
                .find_map(|l| l.split_once(":name=systemd:").map(|(_, p)| p))
        })?;
    let names: Vec<&str> = path.trim().split('/').collect();
    names
        .iter()
        .rev()
        .find(|n| n.ends_with(".service"))
        .or_else(|| names.iter().rev().find(|n| n.ends_with(".scope")))
        .map(|n| (*n).to_owned())
}

pub(super) fn scan(host: &HostRoot, procs: &ProcessTable) -> Scan {
    let mut s = Scan::default();
    let mut budget = TOTAL_BUDGET;
    for p in &procs.processes {
        // Kernel threads have no command line and map no files; zombies neither.
        if p.argv.is_empty() {
            continue;
        }
        let path = p.proc_path("maps");
        let limit = MAPS_LIMIT.min(budget);
        let not_scanned = |s: &mut Scan, reason: String| {
            s.not_scanned_count += 1;
            if s.not_scanned.len() < NOT_SCANNED_LISTED {
                s.not_scanned.push(json!({"pid": p.pid, "reason": reason}));
            }
        };
        if limit == 0 {
            not_scanned(
                &mut s,
                format!(
                    "{}: the scan's {TOTAL_BUDGET}-byte budget is spent",
                    path.display()
                ),
            );
            continue;
        }
        match host.read(&path, limit) {
            Ok(bytes) => {
                budget = budget.saturating_sub(bytes.len() as u64);
                s.scanned += 1;
                let (libs, junk) = deleted_libraries(&String::from_utf8_lossy(&bytes));
                s.junk_lines += junk;
                if !libs.is_empty() {
                    let mut entry =
                        json!({"pid": p.pid, "program": p.program(), "libraries": libs});
                    let cgroup = host.read_string(&p.proc_path("cgroup"), CGROUP_LIMIT);
                    if let Some(unit) = cgroup.ok().and_then(|c| unit(&c)) {
                        s.services.insert(unit.clone());
                        entry["unit"] = json!(unit);
                    }
                    s.processes.push(entry);
                }
            }
            Err(HostError::NotFound { .. }) => s.exited += 1,
            Err(e) => not_scanned(&mut s, e.to_string()),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a2a000 r--p 00000000 08:01 1310744                    /usr/sbin/sshd
7f1c2a3b4000-7f1c2a3d6000 r--p 00000000 08:01 1835023                    /usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)
7f1c2a3d6000-7f1c2a4d6000 r-xp 00022000 08:01 1835023                    /usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)
7f1c2a500000-7f1c2a600000 r-xp 00000000 08:01 1835100                    /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f1c2a600000-7f1c2a700000 rw-s 00000000 00:01 2048                       /memfd:wayland-shm (deleted)
7f1c2a700000-7f1c2a800000 rw-s 00000000 00:05 4                          /SYSV00000000 (deleted)
7f1c2a800000-7f1c2a900000 r--p 00000000 08:01 99                         /var/lib/app/data.db (deleted)
7f1c2a900000-7f1c2aa00000 r-xp 00000000 08:01 98                         /opt/app/lib/libplugin.so (deleted)
7f1c2aa00000-7f1c2ab00000 rw-p 00000000 00:00 0 
7ffd1c3e0000-7ffd1c401000 rw-p 00000000 00:00 0                          [stack]
this is not a maps line
7f1c2ab00000 r-xp 00000000 08:01 98 /usr/lib/libtrunc.so (deleted)
7f1c2ac00000-7f1c2ad00000 r-xp 00000000 08:01 97                         /usr/lib/x86_64-linux-gnu/libz.so.1.2.13 (deleted)
7f1c2ad00000-7f1c2ae0";

    #[test]
    fn finds_deleted_shared_objects_only() {
        let (libs, junk) = deleted_libraries(MAPS);
        let libs: Vec<&str> = libs.iter().map(String::as_str).collect();
        assert_eq!(
            libs,
            vec![
                "/opt/app/lib/libplugin.so",
                "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
            ]
        );
        // The prose line, the line without an address range, and the truncated last line.
        assert_eq!(junk, 3);
    }

    #[test]
    fn unit_from_cgroup_v2_v1_and_containers() {
        assert_eq!(
            unit("0::/system.slice/ssh.service\n").as_deref(),
            Some("ssh.service")
        );
        let v1 = "12:memory:/system.slice/containerd.service\n1:name=systemd:/system.slice/containerd.service\n";
        assert_eq!(unit(v1).as_deref(), Some("containerd.service"));
        let pod = "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope\n";
        assert_eq!(unit(pod).as_deref(), Some("cri-containerd-abc.scope"));
        assert_eq!(
            unit("0::/user.slice/user-1000.slice/session-4.scope/../x.service").as_deref(),
            Some("x.service")
        );
        assert_eq!(unit("0::/\n"), None);
        assert_eq!(unit("garbage"), None);
        assert_eq!(unit(""), None);
    }

    #[test]
    fn path_with_spaces_is_kept_whole() {
        let line = "7f00-7f01 r-xp 00000000 08:01 5     /opt/my app/libx.so.1 (deleted)";
        assert_eq!(pathname(line), Some("/opt/my app/libx.so.1 (deleted)"));
        assert_eq!(pathname("7f00-7f01 r-xp 00000000 08:01 0"), Some(""));
    }
}
