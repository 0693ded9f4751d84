//! Change attribution: which process, container or SSH session changed a watched file.
//!
//! The file-integrity watcher notices *that* a file changed; this module says *who* did it.
//! [`Attributor::start`] opens a fanotify group (`fanotify(7)`) that reports, for every change
//! in the directories given to [`Attributor::set_dirs`], the directory, the entry name and the
//! pid of the process that made the change. A reader thread takes each event as it arrives and
//! reads, from the agent's own `/proc`, that process's name, executable, command line (secrets
//! redacted, see [`redact`]), uid, login uid, parent chain (up to pid 1, at most 32 parents)
//! and cgroup (→ container id and pod uid); it finds the SSH session the parent chain belongs
//! to (an `sshd: USER@pts/N` ancestor, joined with the host's wtmp: see [`sessions`]). The
//! result is kept per path for ten minutes (at most 8192 paths); [`Attributor::lookup`] asks
//! for the latest actor of a path, [`Attributor::attribute`] turns the answer into what a
//! finding carries: [`Attribution::Attributed`] or [`Attribution::Unattributed`] with the
//! reason.
//!
//! Nothing degrades silently:
//! * no fanotify (no `CAP_SYS_ADMIN`, a kernel before 5.9, fanotify compiled out): `start`
//!   fails with an [`Unavailable`] whose reason the caller puts into every finding;
//! * a directory that cannot be marked: `set_dirs` returns the error, and `attribute` on a
//!   path in it says so;
//! * a process that exited before `/proc` was read (short-lived commands often do): the actor
//!   still has the pid and whatever was read, with `gone: true`;
//! * a process outside the agent's pid namespace (no `hostPID`): the kernel reports no pid,
//!   and the path is recorded as unattributable, with that reason;
//! * lost events (the kernel's queue overflowed): counted in [`AttribStats::overflows`], and
//!   `attribute` says so for changes after the overflow.
//!
//! Kernel interface: `fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK |
//! FAN_REPORT_DIR_FID | FAN_REPORT_NAME)` (Linux 5.9), inode marks with
//! `FAN_EVENT_ON_CHILD | FAN_ONDIR` for `FAN_MODIFY | FAN_CLOSE_WRITE | FAN_ATTRIB |
//! FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO | FAN_DELETE_SELF | FAN_MOVE_SELF`.
//! In this mode the kernel opens no file for the listener: each event names the directory by
//! file handle, mapped back to the marked path with the handle taken at mark time
//! ([`crate::sys::handle`]).
//!
//! Paths are the agent's view (`/host/etc/kubernetes` in a DaemonSet): `set_dirs`, `lookup`
//! and the recorded paths all use that namespace, spelled the same way.

pub(crate) mod event;
pub(crate) mod procinfo;
pub mod sessions;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
use nix::sys::stat::{Mode, fstat};
use serde::{Deserialize, Serialize};

use crate::host::HostRoot;
use crate::sys::handle::{self, FileHandle};
use procinfo::{Chain, ProcReader};
use sessions::LoginCache;

pub use crate::redact::argv as redact;
pub(crate) use procinfo::cgroup_ids;
pub use sessions::{SessionScan, SshSession, scan_ssh_sessions, ssh_sessions};

/// How long a recorded change is remembered.
pub const HISTORY_TTL: Duration = Duration::from_secs(600);

/// How many paths are remembered at most (the oldest are forgotten first).
pub const HISTORY_CAPACITY: usize = 8192;

/// Size of one read from the fanotify descriptor.
const READ_BUF: usize = 64 << 10;

/// How often (milliseconds) the reader checks its stop flag even without a wake-up.
const STOP_POLL_MS: u16 = 1000;

/// `CAP_SYS_ADMIN`'s bit in `CapEff`.
const CAP_SYS_ADMIN: u32 = 21;

/// The reason given when no event was recorded for a path in the window.
pub const NO_EVENT_REASON: &str = "no fanotify event for this path within the window (change made while the agent was not running, or by a metadata-only path not reported)";

/// The reason recorded for a change by a process the kernel could not name.
pub const NO_PID_REASON: &str = "the kernel reported no pid for this change: the process is outside the agent's pid namespace (run the agent with hostPID) or the agent lacks CAP_SYS_ADMIN in the initial user namespace";

/// Who changed a file: the process, what it was running, where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// In the agent's pid namespace (the host's, with `hostPID`).
    pub pid: i32,
    /// `/proc/<pid>/comm` (empty if it could not be read).
    pub comm: String,
    /// The executable (`/proc/<pid>/exe`), when readable.
    pub exe: Option<String>,
    /// The command line with secrets replaced by `<redacted: kind>` markers (see [`redact`]).
    pub cmdline: Vec<String>,
    /// Effective uid.
    pub uid: Option<u32>,
    /// The login session's uid (`/proc/<pid>/loginuid`): who logged in, across `sudo`.
    pub login_uid: Option<u32>,
    /// Parent, grandparent, ... up to pid 1 (at most 32).
    pub parents: Vec<Ancestor>,
    /// The container (64 hex digits) whose cgroup the process is in.
    pub container_id: Option<String>,
    /// The pod whose cgroup the process is in.
    pub pod_uid: Option<String>,
    /// The SSH session the process belongs to.
    pub session: Option<SshSession>,
    /// When the (latest) event was read (RFC 3339).
    pub at: String,
    /// `modify`, `attrib`, `create`, `delete` or `rename`.
    pub event: String,
    /// The process had exited before it could be read: only what was read is filled.
    pub gone: bool,
}

/// One process in an actor's parent chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ancestor {
    pub pid: i32,
    pub comm: String,
    pub exe: Option<String>,
}

/// What a finding carries about who made a change.
///
/// Serialized with a `status` tag: `{"status": "attributed", "actor": {...}}` or
/// `{"status": "unattributed", "reason": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum Attribution {
    Attributed { actor: Box<Actor> },
    Unattributed { reason: String },
}

impl Attribution {
    /// `Attributed` for an actor, else `Unattributed` with [`NO_EVENT_REASON`].
    pub fn from_lookup(actor: Option<Actor>) -> Self {
        match actor {
            Some(actor) => Self::Attributed {
                actor: Box::new(actor),
            },
            None => Self::no_event(),
        }
    }

    /// `Unattributed` with [`NO_EVENT_REASON`].
    pub fn no_event() -> Self {
        Self::Unattributed {
            reason: NO_EVENT_REASON.to_owned(),
        }
    }

    /// `Unattributed` because attribution could not start at all.
    pub fn unavailable(why: &Unavailable) -> Self {
        Self::Unattributed {
            reason: format!("change attribution unavailable: {}", why.reason),
        }
    }
}

/// Why change attribution is not available on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// For people: names the call and what it needs, e.g.
    /// `fanotify_init: EPERM (needs CAP_SYS_ADMIN)`.
    pub reason: String,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Unavailable {}

/// Counters since [`Attributor::start`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttribStats {
    /// Events read from the kernel (overflow markers included).
    pub events_read: u64,
    /// Queue overflows (`FAN_Q_OVERFLOW`): each means an unknown number of events was dropped.
    pub overflows: u64,
    /// Events whose process had exited before `/proc` could be read (counted once per
    /// process and read).
    pub processes_gone: u64,
    /// Events the kernel reported without a pid (process outside the pid namespace).
    pub no_pid: u64,
    /// Events caused by the agent itself (ignored).
    pub own: u64,
    /// Events in a directory that is no longer marked (ignored).
    pub unmatched: u64,
    /// Events or buffers that could not be parsed.
    pub malformed: u64,
    /// Why the reader thread stopped, if it stopped on its own.
    pub reader_error: Option<String>,
}

/// Records who changes files in a set of directories. Cheap to share (`Arc<Attributor>`);
/// every method takes `&self` and only locks briefly. Dropping it stops the reader thread
/// (within a second) and removes the marks.
pub struct Attributor {
    inner: Arc<Inner>,
    stop_tx: OwnedFd,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Attributor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attributor")
            .field(
                "dirs",
                &lock(&self.inner.marks).by_path.keys().collect::<Vec<_>>(),
            )
            .field("stats", &self.stats())
            .finish()
    }
}

struct Inner {
    fan: Fanotify,
    marks: Mutex<Marks>,
    history: Mutex<History>,
    counters: Counters,
    reader_error: Mutex<Option<String>>,
    last_overflow: Mutex<Option<SystemTime>>,
    stop: AtomicBool,
    own_pid: i32,
    procs: ProcReader,
    host: Arc<HostRoot>,
    logins: Mutex<LoginCache>,
}

#[derive(Default)]
struct Counters {
    events_read: AtomicU64,
    overflows: AtomicU64,
    processes_gone: AtomicU64,
    no_pid: AtomicU64,
    own: AtomicU64,
    unmatched: AtomicU64,
    malformed: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Locks, recovering from a poisoned mutex (the data are counters and caches: still usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One marked directory. No descriptor is kept open: an open directory would delay the
/// kernel's `DELETE_SELF` and block unmounting its filesystem.
struct Marked {
    dev: u64,
    ino: u64,
    fsid: [i32; 2],
    handle: FileHandle,
}

/// A marked directory as found by handle.
struct Indexed {
    fsid: [i32; 2],
    /// (dev, ino)
    inode: (u64, u64),
    path: PathBuf,
}

#[derive(Default)]
struct Marks {
    by_path: BTreeMap<PathBuf, Marked>,
    /// Handle → every marked directory with that handle.
    by_handle: HashMap<FileHandle, Vec<Indexed>>,
    /// Directories the last `set_dirs` could not mark, and why.
    failed: BTreeMap<PathBuf, String>,
}

impl Marks {
    fn rebuild_index(&mut self) {
        self.by_handle.clear();
        for (path, m) in &self.by_path {
            self.by_handle
                .entry(m.handle.clone())
                .or_default()
                .push(Indexed {
                    fsid: m.fsid,
                    inode: (m.dev, m.ino),
                    path: path.clone(),
                });
        }
    }

    /// The marked directories a reported (fsid, handle) names. The fsid must match, except
    /// when every directory with that handle is one inode (some kernels report a different
    /// fsid than `statfs` for filesystems without one).
    fn dirs_for(&self, fsid: [i32; 2], handle: FileHandle) -> Vec<&Path> {
        let Some(cands) = self.by_handle.get(&handle) else {
            return Vec::new();
        };
        let exact: Vec<&Path> = cands
            .iter()
            .filter(|c| c.fsid == fsid)
            .map(|c| c.path.as_path())
            .collect();
        if !exact.is_empty() {
            return exact;
        }
        let first = cands.first().map(|c| c.inode);
        if cands.iter().all(|c| Some(c.inode) == first) {
            cands.iter().map(|c| c.path.as_path()).collect()
        } else {
            Vec::new()
        }
    }
}

/// The fanotify event mask every directory is marked with.
fn mark_mask() -> MaskFlags {
    MaskFlags::FAN_MODIFY
        | MaskFlags::FAN_CLOSE_WRITE
        | MaskFlags::FAN_ATTRIB
        | MaskFlags::FAN_CREATE
        | MaskFlags::FAN_DELETE
        | MaskFlags::FAN_MOVED_FROM
        | MaskFlags::FAN_MOVED_TO
        | MaskFlags::FAN_DELETE_SELF
        | MaskFlags::FAN_MOVE_SELF
        | MaskFlags::FAN_EVENT_ON_CHILD
        | MaskFlags::FAN_ONDIR
}

impl Attributor {
    /// Starts a fanotify group (`FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK |
    /// FAN_REPORT_DFID_NAME`) and its reader thread. No directory is marked yet: call
    /// [`Attributor::set_dirs`].
    ///
    /// `host` is where wtmp and `/etc/passwd` are read for SSH sessions (`/` on a systemd
    /// install, `/host` in the DaemonSet); processes are read from the agent's own `/proc`.
    ///
    /// Fails, with a reason for people, when the kernel does not allow it:
    /// `CAP_SYS_ADMIN` missing (unprivileged fanotify does not report other processes' pids),
    /// `fanotify_init: EPERM (needs CAP_SYS_ADMIN)`, `kernel lacks FAN_REPORT_DFID_NAME (needs
    /// Linux 5.9)`, fanotify compiled out, too many groups, or no thread.
    pub fn start(host: Arc<HostRoot>) -> Result<Attributor, Unavailable> {
        Self::start_with_proc(host, Path::new("/proc"))
    }

    fn start_with_proc(host: Arc<HostRoot>, proc: &Path) -> Result<Attributor, Unavailable> {
        let unavailable = |reason: String| Unavailable { reason };
        if let Some(false) = has_capability(proc, CAP_SYS_ADMIN) {
            return Err(unavailable(
                "CAP_SYS_ADMIN is missing: without it fanotify does not report which process made a change".to_owned(),
            ));
        }
        let flags = InitFlags::FAN_CLASS_NOTIF
            | InitFlags::FAN_CLOEXEC
            | InitFlags::FAN_NONBLOCK
            | InitFlags::from_bits_retain(libc::FAN_REPORT_DFID_NAME);
        let fan = Fanotify::init(
            flags,
            EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC | EventFFlags::O_LARGEFILE,
        )
        .map_err(|e| {
            unavailable(match e {
                Errno::EPERM => "fanotify_init: EPERM (needs CAP_SYS_ADMIN)".to_owned(),
                Errno::EINVAL => {
                    "fanotify_init: EINVAL: kernel lacks FAN_REPORT_DFID_NAME (needs Linux 5.9)"
                        .to_owned()
                }
                Errno::ENOSYS => {
                    "fanotify_init: ENOSYS: kernel built without fanotify (CONFIG_FANOTIFY)"
                        .to_owned()
                }
                Errno::EMFILE => "fanotify_init: EMFILE: too many fanotify groups (fs.fanotify.max_user_groups) or open files".to_owned(),
                e => format!("fanotify_init: {e:?} ({})", e.desc()),
            })
        })?;
        let (stop_rx, stop_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(|e| unavailable(format!("pipe2: {e:?} ({})", e.desc())))?;
        let inner = Arc::new(Inner {
            fan,
            marks: Mutex::default(),
            history: Mutex::new(History::new(HISTORY_CAPACITY, HISTORY_TTL)),
            counters: Counters::default(),
            reader_error: Mutex::default(),
            last_overflow: Mutex::default(),
            stop: AtomicBool::new(false),
            own_pid: std::process::id() as i32,
            procs: ProcReader::new(proc),
            host,
            logins: Mutex::default(),
        });
        let thread_inner = Arc::clone(&inner);
        let reader = std::thread::Builder::new()
            .name("nodedrift-attrib".to_owned())
            .spawn(move || thread_inner.run(stop_rx))
            .map_err(|e| unavailable(format!("cannot start the reader thread: {e}")))?;
        Ok(Attributor {
            inner,
            stop_tx,
            reader: Mutex::new(Some(reader)),
        })
    }

    /// Replaces the set of marked directories (absolute paths, the agent's view). A directory
    /// already marked stays marked (no gap); one that was replaced by a new inode at the same
    /// path is re-marked; directories left out are unmarked. Returns the directories that
    /// could not be marked and why (`open: ENOENT (No such file or directory)`, ...): the
    /// others are marked regardless.
    pub fn set_dirs(&self, dirs: &BTreeSet<PathBuf>) -> Vec<(PathBuf, String)> {
        let mut marks = lock(&self.inner.marks);
        let mut old = std::mem::take(&mut marks.by_path);
        let mut next: BTreeMap<PathBuf, Marked> = BTreeMap::new();
        let mut errors = Vec::new();
        for dir in dirs {
            match self.mark_one(dir, old.remove(dir)) {
                Ok(m) => {
                    next.insert(dir.clone(), m);
                }
                Err(why) => errors.push((dir.clone(), why)),
            }
        }
        // Unmark directories no longer wanted, unless another wanted path is the same inode.
        // A directory that was deleted took its mark with it; one that was moved elsewhere
        // keeps it (its events are then counted as unmatched).
        let kept: BTreeSet<(u64, &FileHandle)> =
            next.values().map(|m| (m.dev, &m.handle)).collect();
        for (path, m) in &old {
            if kept.contains(&(m.dev, &m.handle)) {
                continue;
            }
            let Ok(fd) = open_dir(path) else { continue };
            let same = fstat(fd.as_fd()).is_ok_and(|st| st.st_dev == m.dev && st.st_ino == m.ino)
                && handle::handle_of(fd.as_fd()).is_ok_and(|h| h == m.handle);
            if same {
                let _ = self.inner.fan.mark(
                    MarkFlags::FAN_MARK_REMOVE,
                    mark_mask(),
                    fd.as_fd(),
                    None::<&Path>,
                );
            }
        }
        marks.by_path = next;
        marks.failed = errors.iter().cloned().collect();
        marks.rebuild_index();
        errors
    }

    /// Marks one directory (through one descriptor, so the handle and the mark are the same
    /// inode), or keeps `previous` when the path is still that inode and so still marked.
    /// A previous inode no longer at the path was deleted (its mark is gone) or moved away.
    fn mark_one(&self, dir: &Path, previous: Option<Marked>) -> Result<Marked, String> {
        let err = |call: &str, e: Errno| format!("{call}: {e:?} ({})", e.desc());
        if !dir.is_absolute() {
            return Err("not an absolute path".to_owned());
        }
        let fd = open_dir(dir).map_err(|e| err("open", e))?;
        let st = fstat(fd.as_fd()).map_err(|e| err("fstat", e))?;
        let handle = handle::handle_of(fd.as_fd()).map_err(|e| {
            format!(
                "{} (the filesystem cannot name files for fanotify)",
                err("name_to_handle_at", e)
            )
        })?;
        // The handle tells a re-created directory from the old one even when the filesystem
        // reused the inode number (it carries the generation).
        if let Some(p) = previous
            && p.dev == st.st_dev
            && p.ino == st.st_ino
            && p.handle == handle
        {
            return Ok(p);
        }
        let fsid = handle::fsid(fd.as_fd()).map_err(|e| err("fstatfs", e))?;
        if let Err(e) = self.inner.fan.mark(
            MarkFlags::FAN_MARK_ADD,
            mark_mask(),
            fd.as_fd(),
            None::<&Path>,
        ) {
            let why = match e {
                Errno::ENOSPC => format!(
                    "{} (too many marks: fs.fanotify.max_user_marks)",
                    err("fanotify_mark", e)
                ),
                Errno::EXDEV | Errno::ENODEV | Errno::EOPNOTSUPP => format!(
                    "{} (this filesystem does not support fanotify with file handles)",
                    err("fanotify_mark", e)
                ),
                e => err("fanotify_mark", e),
            };
            return Err(why);
        }
        Ok(Marked {
            dev: st.st_dev,
            ino: st.st_ino,
            fsid,
            handle,
        })
    }

    /// The most recent actor recorded for `path` (the same spelling as the marked directory
    /// joined with the entry name) at or after `since`, and at most [`HISTORY_TTL`] ago.
    /// `None` when there is none, or when the change was recorded as unattributable (see
    /// [`Attributor::attribute`] for why).
    pub fn lookup(&self, path: &Path, since: SystemTime) -> Option<Actor> {
        match lock(&self.inner.history).get(path, since, SystemTime::now())? {
            (_, Recorded::Actor(a)) => Some(*a),
            (_, Recorded::Unattributable(_)) => None,
        }
    }

    /// What a finding for a change of `path` at or after `since` should carry: the actor, or
    /// why there is none (the change's process was not visible, the directory is not marked or
    /// could not be, events were lost, the reader stopped, or simply no event).
    pub fn attribute(&self, path: &Path, since: SystemTime) -> Attribution {
        let now = SystemTime::now();
        match lock(&self.inner.history).get(path, since, now) {
            Some((_, Recorded::Actor(actor))) => return Attribution::Attributed { actor },
            Some((_, Recorded::Unattributable(reason))) => {
                return Attribution::Unattributed { reason };
            }
            None => {}
        }
        let unattributed = |reason: String| Attribution::Unattributed { reason };
        if let Some(e) = lock(&self.inner.reader_error).clone() {
            return unattributed(format!("the fanotify reader stopped: {e}"));
        }
        {
            let marks = lock(&self.inner.marks);
            let dir = path.parent().unwrap_or(path);
            let marked = |p: &Path| marks.by_path.contains_key(p);
            if let Some(why) = marks.failed.get(dir).or_else(|| marks.failed.get(path)) {
                return unattributed(format!(
                    "directory {} could not be watched: {why}",
                    dir.display()
                ));
            }
            if !marked(dir) && !marked(path) {
                return unattributed(format!(
                    "directory {} is not watched for attribution",
                    dir.display()
                ));
            }
        }
        if let Some(t) = *lock(&self.inner.last_overflow)
            && t >= since
        {
            return unattributed(format!(
                "the kernel's fanotify queue overflowed at {}: events were lost",
                crate::clock::rfc3339(t)
            ));
        }
        Attribution::no_event()
    }

    /// Counters since start.
    pub fn stats(&self) -> AttribStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AttribStats {
            events_read: get(&c.events_read),
            overflows: get(&c.overflows),
            processes_gone: get(&c.processes_gone),
            no_pid: get(&c.no_pid),
            own: get(&c.own),
            unmatched: get(&c.unmatched),
            malformed: get(&c.malformed),
            reader_error: lock(&self.inner.reader_error).clone(),
        }
    }

    /// The directories currently marked.
    pub fn dirs(&self) -> BTreeSet<PathBuf> {
        lock(&self.inner.marks).by_path.keys().cloned().collect()
    }
}

impl Drop for Attributor {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        // Wakes the reader at once; if this fails it still sees the flag within STOP_POLL_MS.
        let _ = nix::unistd::write(&self.stop_tx, &[1]);
        if let Some(t) = lock(&self.reader).take() {
            let _ = t.join();
        }
    }
}

/// Opens a directory for marking (not `O_PATH`: fanotify_mark needs a real descriptor).
fn open_dir(path: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Whether `/proc/self/status` of this process has capability `bit` in `CapEff`
/// (`None` when that cannot be read).
fn has_capability(proc: &Path, bit: u32) -> Option<bool> {
    let status = std::fs::read_to_string(proc.join("self/status")).ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let caps = u64::from_str_radix(hex, 16).ok()?;
    Some(caps & 1u64.checked_shl(bit).unwrap_or(0) != 0)
}

/// The kind of change an event mask describes, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Delete,
    Rename,
    Create,
    Modify,
    Attrib,
    /// A file opened for writing was closed (reported as `modify`, but weaker than a write).
    CloseWrite,
}

impl Kind {
    fn from_mask(mask: u64) -> Option<Self> {
        let has = |bits: u64| mask & bits != 0;
        Some(if has(libc::FAN_DELETE | libc::FAN_DELETE_SELF) {
            Self::Delete
        } else if has(libc::FAN_MOVED_FROM | libc::FAN_MOVED_TO | libc::FAN_MOVE_SELF) {
            Self::Rename
        } else if has(libc::FAN_CREATE) {
            Self::Create
        } else if has(libc::FAN_MODIFY) {
            Self::Modify
        } else if has(libc::FAN_ATTRIB) {
            Self::Attrib
        } else if has(libc::FAN_CLOSE_WRITE) {
            Self::CloseWrite
        } else {
            return None;
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Rename => "rename",
            Self::Create => "create",
            Self::Modify | Self::CloseWrite => "modify",
            Self::Attrib => "attrib",
        }
    }

    fn weight(self) -> u8 {
        match self {
            Self::CloseWrite => 0,
            Self::Attrib => 1,
            Self::Modify => 2,
            Self::Create | Self::Rename => 3,
            Self::Delete => 4,
        }
    }

    /// The kind to report when the same process caused `self` and then `next` on one path:
    /// `touch new` is create + attrib + close-write → `create`; `echo >> f` is modify +
    /// close-write → `modify`; a delete, or anything after a delete, is reported as it is.
    fn then(self, next: Self) -> Self {
        if next == Self::Delete || self == Self::Delete || next.weight() >= self.weight() {
            next
        } else {
            self
        }
    }
}

/// At most this many bytes of an actor's command line are kept (its first arguments).
pub const CMDLINE_KEPT: usize = 2048;

/// Keeps the first arguments up to [`CMDLINE_KEPT`] bytes; a cut is marked by a last element
/// `<truncated: N more bytes>`, so history memory stays bounded whatever a process's argv.
fn bounded_cmdline(args: Vec<String>) -> Vec<String> {
    let total: usize = args.iter().map(String::len).sum();
    if total <= CMDLINE_KEPT {
        return args;
    }
    let mut kept = Vec::new();
    let mut used = 0;
    for a in args {
        if used + a.len() > CMDLINE_KEPT {
            let room = CMDLINE_KEPT - used;
            let mut cut = room.min(a.len());
            while !a.is_char_boundary(cut) {
                cut -= 1;
            }
            if cut > 0 {
                kept.push(a[..cut].to_owned());
                used += cut;
            }
            break;
        }
        used += a.len();
        kept.push(a);
    }
    kept.push(format!("<truncated: {} more bytes>", total - used));
    kept
}

/// The last record stored per pid: an identical new snapshot reuses it instead of storing a
/// copy. Bounded: cleared when it holds [`Interner::LIMIT`] pids.
#[derive(Default)]
struct Interner {
    last: HashMap<i32, Arc<Recorded>>,
}

impl Interner {
    const LIMIT: usize = 1024;

    fn intern(&mut self, pid: i32, r: Recorded) -> Arc<Recorded> {
        if let Some(prev) = self.last.get(&pid)
            && **prev == r
        {
            return Arc::clone(prev);
        }
        if self.last.len() >= Self::LIMIT {
            self.last.clear();
        }
        let r = Arc::new(r);
        self.last.insert(pid, Arc::clone(&r));
        r
    }
}

/// What was recorded for a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Recorded {
    /// `event` and `at` are filled in when it is read back.
    Actor(Box<Actor>),
    Unattributable(String),
}

struct Entry {
    at: SystemTime,
    seq: u64,
    pid: i32,
    kind: Kind,
    what: Arc<Recorded>,
}

/// Path → latest change, bounded in size and age.
struct History {
    map: HashMap<PathBuf, Entry>,
    /// Insertion order for eviction; entries whose `seq` no longer matches the map are stale.
    order: VecDeque<(u64, PathBuf)>,
    seq: u64,
    capacity: usize,
    ttl: Duration,
}

impl History {
    fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
            capacity,
            ttl,
        }
    }

    fn record(&mut self, path: PathBuf, at: SystemTime, pid: i32, kind: Kind, what: Arc<Recorded>) {
        self.evict(at);
        self.seq += 1;
        let kind = match self.map.get(&path) {
            Some(prev) if prev.pid == pid && pid > 0 => prev.kind.then(kind),
            _ => kind,
        };
        self.order.push_back((self.seq, path.clone()));
        self.map.insert(
            path,
            Entry {
                at,
                seq: self.seq,
                pid,
                kind,
                what,
            },
        );
        while self.map.len() > self.capacity {
            let Some((seq, p)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&p).is_some_and(|e| e.seq == seq) {
                self.map.remove(&p);
            }
        }
        // Stale order entries (paths updated since) are dropped once they dominate.
        if self.order.len() > 2 * self.capacity.max(self.map.len()) {
            let map = &self.map;
            self.order
                .retain(|(seq, p)| map.get(p).is_some_and(|e| e.seq == *seq));
        }
    }

    fn evict(&mut self, now: SystemTime) {
        while let Some((seq, p)) = self.order.front() {
            let expired = match self.map.get(p) {
                Some(e) if e.seq == *seq => now.duration_since(e.at).unwrap_or_default() > self.ttl,
                _ => true, // stale
            };
            if !expired {
                break;
            }
            if let Some((seq, p)) = self.order.pop_front()
                && self.map.get(&p).is_some_and(|e| e.seq == seq)
            {
                self.map.remove(&p);
            }
        }
    }

    /// The record for `path` at or after `since` and not older than the ttl.
    fn get(
        &self,
        path: &Path,
        since: SystemTime,
        now: SystemTime,
    ) -> Option<(SystemTime, Recorded)> {
        let e = self.map.get(path)?;
        if e.at < since || now.duration_since(e.at).unwrap_or_default() > self.ttl {
            return None;
        }
        let what = match &*e.what {
            Recorded::Actor(a) => Recorded::Actor(Box::new(Actor {
                event: e.kind.as_str().to_owned(),
                at: crate::clock::rfc3339(e.at),
                ..(**a).clone()
            })),
            other => other.clone(),
        };
        Some((e.at, what))
    }
}

impl Inner {
    /// The reader thread: waits for events or the stop signal; never panics, and records why
    /// it stopped if it was not asked to.
    fn run(&self, stop_rx: OwnedFd) {
        let mut buf = vec![0u8; READ_BUF];
        let mut interner = Interner::default();
        while !self.stop.load(Ordering::Relaxed) {
            let (ready, stopping) = {
                let mut fds = [
                    PollFd::new(self.fan.as_fd(), PollFlags::POLLIN),
                    PollFd::new(stop_rx.as_fd(), PollFlags::POLLIN),
                ];
                match poll(&mut fds, PollTimeout::from(STOP_POLL_MS)) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => return self.fail(format!("poll: {e:?} ({})", e.desc())),
                }
                (fds[0].any().unwrap_or(false), fds[1].any().unwrap_or(false))
            };
            if stopping || self.stop.load(Ordering::Relaxed) {
                return;
            }
            if !ready {
                continue;
            }
            loop {
                match nix::unistd::read(&self.fan, &mut buf) {
                    Ok(0) | Err(Errno::EAGAIN) => break,
                    Ok(n) => self.handle_with(buf.get(..n).unwrap_or(&[]), &mut interner),
                    Err(Errno::EINTR) => continue,
                    Err(e) => return self.fail(format!("read: {e:?} ({})", e.desc())),
                }
            }
        }
    }

    fn fail(&self, why: String) {
        tracing::warn!(error = %why, "change attribution stopped");
        *lock(&self.reader_error) = Some(why);
    }

    /// Handles one buffer of events (tests feed crafted buffers through this).
    #[cfg(test)]
    fn handle(&self, buf: &[u8]) {
        self.handle_with(buf, &mut Interner::default());
    }

    /// Handles one buffer of events: each process is read once per buffer, and the reader's
    /// interner lets a process that keeps writing share one stored actor across buffers as
    /// long as what was read is unchanged.
    fn handle_with(&self, buf: &[u8], interner: &mut Interner) {
        let (events, problems) = event::parse(buf);
        if !problems.is_empty() {
            tracing::debug!(?problems, "malformed fanotify events");
            bump(&self.counters.malformed, problems.len() as u64);
        }
        let now = SystemTime::now();
        let mut seen: HashMap<i32, Arc<Recorded>> = HashMap::new();
        for ev in events {
            bump(&self.counters.events_read, 1);
            if ev.mask & libc::FAN_Q_OVERFLOW != 0 {
                bump(&self.counters.overflows, 1);
                *lock(&self.last_overflow) = Some(now);
                tracing::warn!("fanotify queue overflow: change events were lost");
                continue;
            }
            if ev.pid == self.own_pid {
                bump(&self.counters.own, 1);
                continue;
            }
            let Some(kind) = Kind::from_mask(ev.mask) else {
                continue;
            };
            let paths = self.paths_of(&ev);
            if paths.is_empty() {
                bump(&self.counters.unmatched, 1);
                continue;
            }
            let what = if ev.pid <= 0 {
                bump(&self.counters.no_pid, 1);
                Arc::new(Recorded::Unattributable(NO_PID_REASON.to_owned()))
            } else {
                Arc::clone(seen.entry(ev.pid).or_insert_with(|| {
                    interner.intern(ev.pid, Recorded::Actor(Box::new(self.actor(ev.pid))))
                }))
            };
            let mut history = lock(&self.history);
            for path in paths {
                history.record(path, now, ev.pid, kind, Arc::clone(&what));
            }
        }
    }

    /// The paths an event names: marked directory + entry name (the directory itself for
    /// `.` or no name).
    fn paths_of(&self, ev: &event::RawEvent<'_>) -> Vec<PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        let marks = lock(&self.marks);
        let mut out = Vec::new();
        for fid in &ev.fids {
            let handle = FileHandle {
                handle_type: fid.handle_type,
                bytes: fid.handle.to_vec(),
            };
            for dir in marks.dirs_for(fid.fsid, handle) {
                let path = match fid.name {
                    Some(n) if !n.is_empty() && n != b"." => {
                        dir.join(std::ffi::OsStr::from_bytes(n))
                    }
                    _ => dir.to_path_buf(),
                };
                if !out.contains(&path) {
                    out.push(path);
                }
            }
        }
        out
    }

    /// Reads the process behind an event (and its session) from `/proc`.
    fn actor(&self, pid: i32) -> Actor {
        let chain = self.procs.chain(pid);
        if chain.actor.gone {
            bump(&self.counters.processes_gone, 1);
        }
        let ids = chain
            .actor
            .cgroup
            .as_deref()
            .map(procinfo::cgroup_ids)
            .unwrap_or_default();
        let session = self.session(&chain);
        let a = &chain.actor;
        Actor {
            pid,
            comm: a.comm.clone(),
            exe: a.exe.clone(),
            cmdline: bounded_cmdline(redact(&a.argv)),
            uid: a.uid,
            login_uid: a.login_uid,
            parents: chain.ancestors(),
            container_id: ids.container_id,
            pod_uid: ids.pod_uid,
            session,
            at: String::new(),
            event: String::new(),
            gone: a.gone,
        }
    }

    fn session(&self, chain: &Chain) -> Option<SshSession> {
        let found = sessions::session_in_chain(chain)?;
        let pids: BTreeSet<i32> = chain.all().map(|p| p.pid).collect();
        let mut cache = lock(&self.logins);
        Some(sessions::finish(found, &pids, &mut cache, &self.host))
    }
}
