//! What the agent's own `/proc` says about the process behind an event, read the moment the
//! event arrives.
//!
//! The pid fanotify reports is in the agent's pid namespace, so this reads the agent's own
//! `/proc` (with `hostPID` that is the host's), not [`crate::host::HostRoot`]'s. Each process
//! is read through one `/proc/<pid>` directory descriptor: every file read through it belongs
//! to that process instance, even if the pid is reused meanwhile (reads then fail with `ESRCH`
//! instead of describing a stranger). Every read is bounded.
//!
//! A short-lived command (`cp`, `mv`, `sed -i`, `echo > f` in a subshell) may exit before its
//! event is read. Until its parent reaps it, a zombie still shows its name, uid and parent (not
//! its command line or executable); after that only the pid is left. Either way the snapshot
//! says `gone`, and the caller reports what there is rather than nothing.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::{OFlag, openat, readlinkat};
use nix::sys::stat::Mode;

use super::Ancestor;
use crate::inspect::process::split_cmdline;

/// Upper bounds for the `/proc/<pid>` files read.
const CMDLINE_LIMIT: u64 = 64 << 10;
const COMM_LIMIT: u64 = 64;
const STATUS_LIMIT: u64 = 16 << 10;
const CGROUP_LIMIT: u64 = 16 << 10;
const LOGINUID_LIMIT: u64 = 32;

/// How many parents are followed above the acting process.
pub(crate) const MAX_DEPTH: usize = 32;

/// One process as read from `/proc`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProcSnapshot {
    pub pid: i32,
    pub comm: String,
    pub exe: Option<String>,
    /// Unredacted; redact before it leaves the module.
    pub argv: Vec<String>,
    /// Effective uid (`Uid:` second field), as `ps` shows it.
    pub uid: Option<u32>,
    /// `/proc/<pid>/loginuid`: the uid of the login session (set by `pam_loginuid`,
    /// kept across `sudo`); `None` when unset.
    pub login_uid: Option<u32>,
    pub ppid: Option<i32>,
    pub cgroup: Option<String>,
    /// The directory was gone, or the process was a zombie (exited, not yet reaped).
    pub gone: bool,
}

/// The acting process and its ancestors (nearest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Chain {
    pub actor: ProcSnapshot,
    pub parents: Vec<ProcSnapshot>,
}

impl Chain {
    /// The acting process followed by its ancestors.
    pub fn all(&self) -> impl Iterator<Item = &ProcSnapshot> {
        std::iter::once(&self.actor).chain(self.parents.iter())
    }

    /// The ancestors as reported.
    pub fn ancestors(&self) -> Vec<Ancestor> {
        self.parents
            .iter()
            .map(|p| Ancestor {
                pid: p.pid,
                comm: p.comm.clone(),
                exe: p.exe.clone(),
            })
            .collect()
    }
}

/// Reads processes from a procfs mount (normally `/proc`).
#[derive(Debug, Clone)]
pub(crate) struct ProcReader {
    root: PathBuf,
}

impl ProcReader {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Reads `pid` and its parents up to pid 1 (at most [`MAX_DEPTH`] of them).
    pub fn chain(&self, pid: i32) -> Chain {
        let actor = self.snapshot(pid, true);
        let mut parents = Vec::new();
        let mut seen = BTreeSet::from([pid]);
        let mut next = actor.ppid;
        while let Some(ppid) = next {
            if ppid <= 0 || parents.len() >= MAX_DEPTH || !seen.insert(ppid) {
                break;
            }
            let p = self.snapshot(ppid, false);
            next = if ppid == 1 { None } else { p.ppid };
            parents.push(p);
        }
        Chain { actor, parents }
    }

    /// Reads one process. `full` also reads what only the acting process reports (login uid,
    /// cgroup) and checks it did not exit meanwhile; ancestors get name, exe, argv, uid, ppid.
    pub fn snapshot(&self, pid: i32, full: bool) -> ProcSnapshot {
        let mut s = ProcSnapshot {
            pid,
            ..Default::default()
        };
        let dir = match nix::fcntl::open(
            &self.root.join(pid.to_string()),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(d) => d,
            Err(_) => {
                s.gone = true;
                return s;
            }
        };
        let dir = ProcDir(dir);
        s.comm = dir
            .read("comm", COMM_LIMIT)
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .trim_end_matches('\n')
                    .to_owned()
            })
            .unwrap_or_default();
        if let Some(status) = dir.read("status", STATUS_LIMIT) {
            let status = String::from_utf8_lossy(&status);
            let st = parse_status(&status);
            s.uid = st.uid;
            s.ppid = st.ppid;
            if st.zombie {
                s.gone = true;
            }
        } else {
            s.gone = true;
        }
        s.argv = dir
            .read("cmdline", CMDLINE_LIMIT)
            .map(|b| split_cmdline(&b))
            .unwrap_or_default();
        s.exe = dir.exe();
        if full {
            s.login_uid = dir
                .read("loginuid", LOGINUID_LIMIT)
                .and_then(|b| String::from_utf8_lossy(&b).trim().parse::<u32>().ok())
                .filter(|u| *u != u32::MAX);
            s.cgroup = dir
                .read("cgroup", CGROUP_LIMIT)
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            // Exited while being read: what was read before stays, marked gone.
            if !s.gone && dir.read("stat", 1).is_none() {
                s.gone = true;
            }
        }
        s
    }
}

struct ProcDir(OwnedFd);

impl ProcDir {
    fn read(&self, name: &str, limit: u64) -> Option<Vec<u8>> {
        let fd = openat(
            self.0.as_fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .ok()?;
        let mut buf = Vec::new();
        File::from(fd).take(limit).read_to_end(&mut buf).ok()?;
        Some(buf)
    }

    fn exe(&self) -> Option<String> {
        // Kernel threads and zombies have none; without ptrace access it is not readable.
        readlinkat(self.0.as_fd(), "exe")
            .ok()
            .map(|t| t.to_string_lossy().into_owned())
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Status {
    uid: Option<u32>,
    ppid: Option<i32>,
    zombie: bool,
}

pub(crate) fn parse_status(text: &str) -> Status {
    let mut st = Status::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let mut fields = value.split_whitespace();
        match key {
            // Real, effective, saved, filesystem.
            "Uid" => st.uid = fields.nth(1).and_then(|v| v.parse().ok()),
            "PPid" => st.ppid = fields.next().and_then(|v| v.parse().ok()),
            "State" => st.zombie = matches!(fields.next(), Some("Z" | "X")),
            _ => {}
        }
    }
    st
}

/// Container id and pod uid read from a `/proc/<pid>/cgroup` text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CgroupIds {
    /// 64 hex digits, without the runtime's prefix.
    pub container_id: Option<String>,
    /// The pod's UID in its canonical dashed form (static pods: the 32-hex config hash).
    pub pod_uid: Option<String>,
}

/// Finds the container id and pod uid in a `/proc/<pid>/cgroup` text. Handles cgroup v2
/// (`0::/path`) and v1 (`N:controllers:/path`) lines, the systemd driver
/// (`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice/
/// cri-containerd-<id>.scope`), the cgroupfs driver (`/kubepods/burstable/pod<uid>/<id>`),
/// runtime prefixes (`cri-containerd-`, `crio-`, `docker-`, `libpod-`), containerd's
/// `slice:prefix:id` form, and paths relative to another cgroup namespace (`/../..`).
pub(crate) fn cgroup_ids(text: &str) -> CgroupIds {
    let mut paths: Vec<&str> = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(h), Some(_), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        // The unified hierarchy first: it is the one the runtime manages on current nodes.
        if h == "0" {
            paths.insert(0, path);
        } else {
            paths.push(path);
        }
    }
    for path in paths {
        let ids = path_ids(path);
        if ids.container_id.is_some() || ids.pod_uid.is_some() {
            return ids;
        }
    }
    CgroupIds::default()
}

fn path_ids(path: &str) -> CgroupIds {
    let mut ids = CgroupIds::default();
    for token in path.split(['/', ':']) {
        if let Some(uid) = pod_uid(token) {
            ids.pod_uid = Some(uid);
        }
        if let Some(id) = container_id(token) {
            // The deepest one wins (a nested cgroup below the container's is still it).
            ids.container_id = Some(id);
        }
    }
    ids
}

fn container_id(token: &str) -> Option<String> {
    let t = token.strip_suffix(".scope").unwrap_or(token);
    let t = ["cri-containerd-", "crio-", "docker-", "libpod-"]
        .iter()
        .find_map(|p| t.strip_prefix(p))
        .unwrap_or(t);
    (t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())).then(|| t.to_ascii_lowercase())
}

fn pod_uid(token: &str) -> Option<String> {
    let t = token.strip_suffix(".slice").unwrap_or(token);
    // `pod<uid>` (cgroupfs) or `kubepods[-<class>]-pod<uid>` (systemd).
    let mut from = 0;
    while let Some(i) = t.get(from..)?.find("pod") {
        let at = from + i;
        let prefix = t.get(..at)?;
        let cand = t.get(at + 3..)?;
        if (prefix.is_empty() || prefix.ends_with('-')) && is_uid(cand) {
            return Some(cand.replace('_', "-").to_ascii_lowercase());
        }
        from = at + 3;
    }
    None
}

fn is_uid(s: &str) -> bool {
    let b = s.as_bytes();
    match b.len() {
        32 => b.iter().all(u8::is_ascii_hexdigit),
        36 => b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-' || *c == b'_',
            _ => c.is_ascii_hexdigit(),
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_driver_containerd_v2() {
        let text = "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0.slice/cri-containerd-3f4e5d6c7b8a99887766554433221100ffeeddccbbaa99887766554433221100.scope\n";
        let ids = cgroup_ids(text);
        assert_eq!(
            ids.pod_uid.as_deref(),
            Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
        );
        assert_eq!(
            ids.container_id.as_deref(),
            Some("3f4e5d6c7b8a99887766554433221100ffeeddccbbaa99887766554433221100")
        );
    }

    #[test]
    fn guaranteed_and_besteffort_classes_and_crio_docker_prefixes() {
        let id = "a".repeat(64);
        for (path, uid) in [
            (
                format!(
                    "0::/kubepods.slice/kubepods-pod11111111_2222_3333_4444_555555555555.slice/crio-{id}.scope"
                ),
                "11111111-2222-3333-4444-555555555555",
            ),
            (
                format!(
                    "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod11111111_2222_3333_4444_555555555555.slice/docker-{id}.scope"
                ),
                "11111111-2222-3333-4444-555555555555",
            ),
        ] {
            let ids = cgroup_ids(&path);
            assert_eq!(ids.pod_uid.as_deref(), Some(uid), "{path}");
            assert_eq!(ids.container_id.as_deref(), Some(id.as_str()), "{path}");
        }
    }

    #[test]
    fn cgroupfs_driver_v1_lines() {
        let id = "0123456789abcdef".repeat(4);
        let text = format!(
            "12:pids:/kubepods/burstable/pod5c0e6a2f-3b1d-4e8a-9f7c-2d6b8a1e4c3f/{id}\n\
             11:memory:/kubepods/burstable/pod5c0e6a2f-3b1d-4e8a-9f7c-2d6b8a1e4c3f/{id}\n\
             1:name=systemd:/kubepods/burstable/pod5c0e6a2f-3b1d-4e8a-9f7c-2d6b8a1e4c3f/{id}\n\
             0::/\n"
        );
        let ids = cgroup_ids(&text);
        assert_eq!(
            ids.pod_uid.as_deref(),
            Some("5c0e6a2f-3b1d-4e8a-9f7c-2d6b8a1e4c3f")
        );
        assert_eq!(ids.container_id.as_deref(), Some(id.as_str()));
    }

    #[test]
    fn kind_style_slice_prefix_id_and_foreign_cgroup_namespace() {
        let id = "b".repeat(64);
        let ids = cgroup_ids(&format!(
            "0::/system.slice/containerd.service/kubepods-besteffort-pod6a2b7c3d_1e4f_4a5b_8c9d_0e1f2a3b4c5d.slice:cri-containerd:{id}\n"
        ));
        assert_eq!(
            ids.pod_uid.as_deref(),
            Some("6a2b7c3d-1e4f-4a5b-8c9d-0e1f2a3b4c5d")
        );
        assert_eq!(ids.container_id.as_deref(), Some(id.as_str()));
        // Seen from inside another cgroup namespace the path starts with `..`.
        let ids = cgroup_ids(&format!(
            "0::/../../kubepods-burstable-pod6a2b7c3d_1e4f_4a5b_8c9d_0e1f2a3b4c5d.slice/cri-containerd-{id}.scope\n"
        ));
        assert_eq!(ids.container_id.as_deref(), Some(id.as_str()));
        assert!(ids.pod_uid.is_some());
    }

    #[test]
    fn static_pod_hash_uid_and_host_processes() {
        let ids = cgroup_ids(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podd41d8cd98f00b204e9800998ecf8427e.slice\n",
        );
        assert_eq!(
            ids.pod_uid.as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(ids.container_id, None);
        for host in [
            "0::/system.slice/ssh.service\n",
            "0::/user.slice/user-1000.slice/session-3.scope\n",
            "0::/init.scope\n",
            "",
            "garbage\n::\n0:\n",
            // conmon is the runtime's monitor, not the container.
            &format!("0::/system.slice/crio-conmon-{}.scope\n", "c".repeat(64)),
            // look-alikes: a 63-digit id, a uid with a bad separator, `pod` inside a word.
            &format!("0::/x/cri-containerd-{}.scope\n", "d".repeat(63)),
            "0::/kubepods/ipod11111111-2222-3333-4444-555555555555/\n",
            "0::/kubepods/pod11111111-2222-3333-4444+555555555555/\n",
        ] {
            assert_eq!(cgroup_ids(host), CgroupIds::default(), "{host}");
        }
    }

    #[test]
    fn status_fields() {
        let st = parse_status(
            "Name:\tbash\nState:\tS (sleeping)\nPPid:\t812\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n",
        );
        assert_eq!(
            st,
            Status {
                uid: Some(0),
                ppid: Some(812),
                zombie: false
            }
        );
        assert!(parse_status("State:\tZ (zombie)\n").zombie);
        assert_eq!(parse_status("Uid:\nPPid: x\n"), Status::default());
    }

    #[test]
    fn live_self_and_parent_chain() {
        let r = ProcReader::new("/proc");
        let me = std::process::id() as i32;
        let chain = r.chain(me);
        assert_eq!(chain.actor.pid, me);
        assert!(!chain.actor.gone);
        assert_eq!(chain.actor.uid, Some(nix::unistd::geteuid().as_raw()));
        assert_eq!(
            chain.actor.exe.as_deref(),
            std::env::current_exe()
                .ok()
                .and_then(|p| p.to_str().map(str::to_owned))
                .as_deref()
        );
        assert!(chain.actor.cgroup.is_some());
        assert!(!chain.actor.argv.is_empty());
        assert_eq!(
            chain.parents.first().map(|p| p.pid),
            Some(nix::unistd::getppid().as_raw())
        );
        assert!(chain.parents.len() <= MAX_DEPTH);
        // The chain ends at pid 1 (or where the pid namespace's view ends).
        let last = chain.parents.last().map(|p| p.pid);
        assert!(last == Some(1) || chain.parents.last().is_some_and(|p| p.ppid == Some(0)));
    }

    #[test]
    fn a_reaped_process_is_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        let s = ProcReader::new("/proc").snapshot(pid, true);
        // (If the pid was reused in between, it is some other live process: accept that.)
        if s.gone {
            assert_eq!(s.pid, pid);
            assert!(s.argv.is_empty());
        }
        let missing = ProcReader::new("/nonexistent-proc").chain(pid);
        assert!(missing.actor.gone);
        assert!(missing.parents.is_empty());
    }

    #[test]
    fn a_zombie_is_gone_but_named() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exit 0"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let r = ProcReader::new("/proc");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut snap = r.snapshot(pid, true);
        while !snap.gone && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
            snap = r.snapshot(pid, true);
        }
        assert!(snap.gone, "{snap:?}");
        assert_eq!(snap.comm, "sh");
        assert!(snap.uid.is_some());
        child.wait().unwrap();
    }
}
