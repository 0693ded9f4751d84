//! Walking the watched trees and hashing what they hold.
//!
//! The walk starts at each watch root, resolved inside the host root, and descends with
//! `openat(O_NOFOLLOW | O_DIRECTORY)` from the parent's fd only: symlinks are recorded, never
//! followed, so neither a loop nor a link pointing out of the root can take the walk anywhere.
//! It stays on the root's filesystem (like `find -xdev`) and below `max_depth`. FIFOs, sockets
//! and devices are recorded by type from `fstatat` and never opened. Hashing happens after the
//! walk, in parallel, and only for the files that need it (see `verify.rs`).

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{Mode, fstat, fstatat};

use super::entry::{Digest, Entry, Meta};
use super::spec::{Attr, WatchSpec};
use crate::host::{FileKind, HostError, HostRoot};

/// Read buffer per hashing thread.
pub const HASH_BUF: usize = 256 << 10;

/// A path that could not be examined, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    pub path: PathBuf,
    pub reason: String,
}

/// What one walk found.
#[derive(Debug, Default)]
pub struct Walk {
    /// Every tracked entry, sorted by store key; content digests not computed yet
    /// (`Digest::NotTracked` until [`hash`] fills them).
    pub entries: Vec<Entry>,
    /// The set governing each entry (index into the spec's sets), parallel to `entries`.
    pub sets: Vec<usize>,
    pub errors: Vec<ScanError>,
    /// Directories the walk descended into (what realtime watching must cover).
    pub dirs: Vec<PathBuf>,
    /// Watch roots that do not exist (yet).
    pub missing_roots: Vec<PathBuf>,
    /// Set when `max_entries` stopped the walk.
    pub truncated: bool,
    /// The first entry the limit left out.
    pub truncated_at: Option<PathBuf>,
    /// Entries handed out.
    pub count: usize,
}

/// Walks every root of `spec` (or only `only`, host paths and everything below them, when
/// given: a realtime event or `baseline accept` names the paths it concerns) and collects the
/// entries, in store-key order.
pub fn walk(host: &HostRoot, spec: &WatchSpec, only: Option<&[PathBuf]>) -> Walk {
    let mut entries = Vec::new();
    let mut sets = Vec::new();
    let mut w = walk_each(host, spec, only, &mut |e, set| {
        entries.push(e);
        sets.push(set);
    });
    w.entries = entries;
    w.sets = sets;
    w
}

/// Walks like [`walk`] but hands each entry (and its governing set) to `sink` as it is found,
/// in store-key order (roots in key order, each directory's names sorted, depth first), so
/// that a caller can merge it with the store's own ordered entries without holding either
/// whole. The returned [`Walk`] has no entries, only the rest.
pub fn walk_each(
    host: &HostRoot,
    spec: &WatchSpec,
    only: Option<&[PathBuf]>,
    sink: &mut dyn FnMut(Entry, usize),
) -> Walk {
    let mut w = Walk::default();
    let mut roots = match only {
        Some(paths) => paths.to_vec(),
        None => spec.roots(),
    };
    roots.sort_by(|a, b| super::entry::cmp_paths(a, b));
    roots.dedup();
    let mut kept: Vec<PathBuf> = Vec::with_capacity(roots.len());
    for r in roots {
        if !kept.iter().any(|k| r.starts_with(k)) {
            kept.push(r);
        }
    }
    for root in kept {
        if w.truncated {
            break;
        }
        walk_root(host, spec, &root, only.is_some(), &mut w, sink);
    }
    w.dirs.sort();
    w.dirs.dedup();
    w
}

fn walk_root(
    host: &HostRoot,
    spec: &WatchSpec,
    root: &Path,
    single: bool,
    w: &mut Walk,
    sink: &mut dyn FnMut(Entry, usize),
) {
    let meta = match host.lstat(root) {
        Ok(_) => match stat_nofollow(host, root) {
            Ok(m) => m,
            Err(e) => return push_err(w, root, e),
        },
        Err(e) if e.is_not_found() => {
            if !single {
                w.missing_roots.push(root.to_path_buf());
            }
            return;
        }
        Err(e) => return push_err(w, root, host_reason(&e)),
    };
    let mut dirfd = None;
    // A directory named by `only` is walked with everything below it, as a root is: the
    // verification compares every stored entry below it.
    if meta.kind == FileKind::Directory && spec.descend(root) {
        match host.open_dir(root) {
            Ok(fd) => dirfd = Some(fd),
            Err(e) => push_err(w, root, host_reason(&e)),
        }
    }
    if let Some(set) = spec.govern(root) {
        let target = (meta.kind == FileKind::Symlink)
            .then(|| host.read_link(root).ok())
            .flatten()
            .map(|t| t.into_os_string().into_vec_bytes());
        let xattrs =
            if meta.kind == FileKind::Directory && spec.sets[set].attributes.has(Attr::Xattrs) {
                dirfd.as_ref().and_then(|fd| xattr_digest(fd.as_fd()).ok())
            } else {
                None
            };
        push_entry(w, sink, spec, root.to_path_buf(), meta, target, xattrs, set);
    }
    if let Some(fd) = dirfd {
        descend(spec, fd, root, 0, meta.dev, w, sink);
    }
}

trait IntoVecBytes {
    fn into_vec_bytes(self) -> Vec<u8>;
}

impl IntoVecBytes for std::ffi::OsString {
    fn into_vec_bytes(self) -> Vec<u8> {
        use std::os::unix::ffi::OsStringExt;
        self.into_vec()
    }
}

/// `lstat` with nanoseconds, through the host root.
fn stat_nofollow(host: &HostRoot, path: &Path) -> Result<Meta, String> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (p, n),
        _ => {
            // The host root itself.
            let fd = host.open_dir(path).map_err(|e| host_reason(&e))?;
            return fstat(fd.as_fd())
                .map(|st| Meta::from_stat(&st))
                .map_err(|e| e.desc().to_owned());
        }
    };
    let dir = host.open_dir(parent).map_err(|e| host_reason(&e))?;
    fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map(|st| Meta::from_stat(&st))
        .map_err(errno_reason)
}

fn descend(
    spec: &WatchSpec,
    dirfd: OwnedFd,
    dir: &Path,
    depth: usize,
    dev: u64,
    w: &mut Walk,
    sink: &mut dyn FnMut(Entry, usize),
) {
    w.dirs.push(dir.to_path_buf());
    let mut listing = match nix::dir::Dir::from_fd(dirfd) {
        Ok(d) => d,
        Err(e) => return push_err(w, dir, errno_reason(e)),
    };
    // The fd for fstatat/openat, kept after the listing is closed.
    let parent = match nix::unistd::dup(listing.as_fd()) {
        Ok(fd) => fd,
        Err(e) => return push_err(w, dir, errno_reason(e)),
    };
    // Names first, sorted: depth first over sorted names is store-key order. Only names some
    // set could want are kept, so a huge directory outside the watch sets costs no memory.
    let mut names: Vec<(Vec<u8>, Option<nix::dir::Type>)> = Vec::new();
    for item in listing.iter() {
        let item = match item {
            Ok(i) => i,
            Err(e) => {
                push_err(
                    w,
                    dir,
                    format!("reading the directory: {}", errno_reason(e)),
                );
                break;
            }
        };
        let name = item.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let child = dir.join(OsStr::from_bytes(name));
        let maybe_dir = matches!(item.file_type(), Some(nix::dir::Type::Directory) | None);
        if spec.govern(&child).is_none() && !(maybe_dir && spec.descend(&child)) {
            continue;
        }
        names.push((name.to_vec(), item.file_type()));
        if names.len() > spec.limits.max_entries {
            break;
        }
    }
    drop(listing);
    names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (raw, file_type) in names {
        if w.truncated {
            return;
        }
        let name = OsStr::from_bytes(&raw);
        let child = dir.join(name);
        let governed = spec.govern(&child);
        let maybe_dir = matches!(file_type, Some(nix::dir::Type::Directory) | None);
        let enter = maybe_dir && spec.descend(&child);
        if governed.is_none() && !enter {
            continue;
        }
        let meta = match fstatat(parent.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Meta::from_stat(&st),
            Err(Errno::ENOENT) => continue, // vanished since the listing
            Err(e) => {
                push_err(w, &child, errno_reason(e));
                continue;
            }
        };
        let is_dir = meta.kind == FileKind::Directory;
        let mut childfd = None;
        if is_dir && enter {
            if depth + 1 > spec.limits.max_depth {
                push_err(
                    w,
                    &child,
                    format!(
                        "deeper than {} levels below the watch root; not descended",
                        spec.limits.max_depth
                    ),
                );
            } else if meta.dev != dev {
                push_err(
                    w,
                    &child,
                    "another filesystem is mounted here; not descended".into(),
                );
            } else {
                match openat(
                    parent.as_fd(),
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => childfd = Some(fd),
                    Err(Errno::ENOENT) => continue,
                    Err(e) => push_err(w, &child, errno_reason(e)),
                }
            }
        }
        if let Some(set) = governed {
            let target = if meta.kind == FileKind::Symlink {
                match readlinkat(parent.as_fd(), name) {
                    Ok(t) => Some(t.into_vec_bytes()),
                    Err(Errno::ENOENT) => continue,
                    Err(e) => {
                        push_err(w, &child, errno_reason(e));
                        None
                    }
                }
            } else {
                None
            };
            let xattrs = if is_dir && spec.sets[set].attributes.has(Attr::Xattrs) {
                match &childfd {
                    Some(fd) => xattr_digest(fd.as_fd()).ok(),
                    None => openat(
                        parent.as_fd(),
                        name,
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .ok()
                    .and_then(|fd| xattr_digest(fd.as_fd()).ok()),
                }
            } else {
                None
            };
            push_entry(w, sink, spec, child.clone(), meta, target, xattrs, set);
        }
        if let Some(fd) = childfd {
            descend(spec, fd, &child, depth + 1, dev, w, sink);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn push_entry(
    w: &mut Walk,
    sink: &mut dyn FnMut(Entry, usize),
    spec: &WatchSpec,
    path: PathBuf,
    meta: Meta,
    target: Option<Vec<u8>>,
    xattrs: Option<[u8; 32]>,
    set: usize,
) {
    if w.count >= spec.limits.max_entries {
        w.truncated = true;
        w.truncated_at.get_or_insert(path);
        return;
    }
    w.count += 1;
    let digest = if meta.kind != FileKind::File {
        Digest::NotRegular
    } else {
        Digest::NotTracked
    };
    sink(
        Entry {
            path,
            meta,
            digest,
            target,
            xattrs,
            hashed_at: 0,
        },
        set,
    );
}

fn push_err(w: &mut Walk, path: &Path, reason: String) {
    w.errors.push(ScanError {
        path: path.to_path_buf(),
        reason,
    });
}

pub fn errno_reason(e: Errno) -> String {
    match e {
        Errno::EACCES | Errno::EPERM => "permission denied".into(),
        Errno::ELOOP => "too many levels of symbolic links".into(),
        Errno::ENAMETOOLONG => "name too long".into(),
        e => format!("{} ({e})", e.desc()),
    }
}

fn host_reason(e: &HostError) -> String {
    e.to_string()
}

/// SHA-256 over an fd's sorted extended attributes.
pub fn xattr_digest(fd: std::os::fd::BorrowedFd<'_>) -> Result<[u8; 32], Errno> {
    let pairs = crate::sys::xattr::list(fd)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (n, v) in pairs {
        ctx.update(&n);
        ctx.update(&[0]);
        ctx.update(&v);
        ctx.update(&[0]);
    }
    let d = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    Ok(out)
}

/// Throughput cap shared by the hashing threads (background re-hashing).
#[derive(Debug)]
pub struct Budget {
    bytes_per_sec: u64,
    started: Instant,
    used: AtomicU64,
}

impl Budget {
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec,
            started: Instant::now(),
            used: AtomicU64::new(0),
        }
    }

    fn spend(&self, n: u64) {
        if self.bytes_per_sec == 0 {
            return;
        }
        let used = self.used.fetch_add(n, Ordering::Relaxed) + n;
        let due = Duration::from_secs_f64(used as f64 / self.bytes_per_sec as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait.min(Duration::from_secs(1)));
        }
    }
}

/// Progress of a hashing pass, readable while it runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub files_done: AtomicUsize,
    pub bytes_done: AtomicU64,
}

/// What hashing one entry found.
#[derive(Debug)]
pub struct Hashed {
    pub digest: Digest,
    pub xattrs: Option<[u8; 32]>,
    /// The stat after hashing, when it differs from the walk's (the file changed meanwhile).
    pub meta: Option<Meta>,
    /// The file's bytes when it is small text worth keeping for diffs.
    pub text: Option<Vec<u8>>,
}

/// Options of a hashing pass.
#[derive(Debug, Clone, Copy)]
pub struct HashOptions {
    pub threads: usize,
    pub max_bytes: u64,
    pub want_xattrs: bool,
    /// Keep the bytes of text files up to this size that are world-readable (0 = never).
    pub keep_text_below: u64,
}

/// Hashes `entries[i]` for each `i` in `which`, on `threads` threads; fills digests (and
/// fresh metadata where the file changed under the walk) in place.
pub fn hash(
    host: &HostRoot,
    entries: &mut [Entry],
    which: &[usize],
    opts: HashOptions,
    budget: Option<&Budget>,
    progress: Option<&Progress>,
) -> Vec<(usize, Vec<u8>)> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Hashed)>> = Mutex::new(Vec::with_capacity(which.len()));
    let threads = opts.threads.clamp(1, 64).min(which.len().max(1));
    let snapshot: Vec<(PathBuf, Meta)> = which
        .iter()
        .map(|i| (entries[*i].path.clone(), entries[*i].meta))
        .collect();
    let snapshot = Arc::new(snapshot);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = vec![0u8; HASH_BUF];
                let mut local = Vec::new();
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some((path, meta)) = snapshot.get(j) else {
                        break;
                    };
                    let h = hash_one(host, path, meta, opts, &mut buf, budget);
                    if let Some(p) = progress {
                        p.files_done.fetch_add(1, Ordering::Relaxed);
                        p.bytes_done.fetch_add(meta.size, Ordering::Relaxed);
                    }
                    local.push((which[j], h));
                }
                if let Ok(mut r) = results.lock() {
                    r.extend(local);
                }
            });
        }
    });
    let mut texts = Vec::new();
    for (i, h) in results.into_inner().unwrap_or_default() {
        let e = &mut entries[i];
        e.digest = h.digest;
        if opts.want_xattrs {
            e.xattrs = h.xattrs;
        }
        if let Some(m) = h.meta {
            e.meta = m;
        }
        if let Some(t) = h.text {
            texts.push((i, t));
        }
    }
    texts
}

pub fn hash_one(
    host: &HostRoot,
    path: &Path,
    walked: &Meta,
    opts: HashOptions,
    buf: &mut [u8],
    budget: Option<&Budget>,
) -> Hashed {
    let unread = |r: String| Hashed {
        digest: Digest::Unread(r),
        xattrs: None,
        meta: None,
        text: None,
    };
    if walked.size > opts.max_bytes {
        return Hashed {
            digest: Digest::TooLarge,
            xattrs: None,
            meta: None,
            text: None,
        };
    }
    let fd = match host.open_read_nofollow(path) {
        Ok(fd) => fd,
        Err(e) => return unread(e.to_string()),
    };
    let mut file = std::fs::File::from(fd);
    for attempt in 0..2 {
        let before = match fstat(file.as_fd()) {
            Ok(st) => Meta::from_stat(&st),
            Err(e) => return unread(errno_reason(e)),
        };
        if before.kind != FileKind::File {
            // Replaced by something else between walk and open: never read it.
            return Hashed {
                digest: Digest::NotRegular,
                xattrs: None,
                meta: Some(before),
                text: None,
            };
        }
        if attempt > 0 {
            use std::io::Seek;
            if file.rewind().is_err() {
                return unread("cannot rewind".into());
            }
        }
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut total: u64 = 0;
        let keep = opts.keep_text_below > 0
            && before.size <= opts.keep_text_below
            && before.mode & 0o004 != 0;
        let mut text: Option<Vec<u8>> = keep.then(Vec::new);
        loop {
            match file.read(buf) {
                Ok(0) => break,
                Ok(n) => {
                    ctx.update(&buf[..n]);
                    total += n as u64;
                    if let Some(t) = &mut text {
                        // A NUL byte means binary: stop keeping at once (no copy of content
                        // that is never diffed).
                        if total <= opts.keep_text_below && !buf[..n].contains(&0) {
                            t.extend_from_slice(&buf[..n]);
                        } else {
                            text = None;
                        }
                    }
                    if total > opts.max_bytes {
                        return Hashed {
                            digest: Digest::TooLarge,
                            xattrs: None,
                            meta: Some(before),
                            text: None,
                        };
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return unread(format!("read: {e}")),
            }
        }
        if let Some(b) = budget {
            b.spend(total);
        }
        let after = match fstat(file.as_fd()) {
            Ok(st) => Meta::from_stat(&st),
            Err(e) => return unread(errno_reason(e)),
        };
        if after.size != total || after.mtime != before.mtime {
            // Written to while being hashed: once more, then give up for this pass (the
            // writer's own events bring the file back).
            continue;
        }
        let mut d = [0u8; 32];
        d.copy_from_slice(ctx.finish().as_ref());
        let xattrs = if opts.want_xattrs {
            xattr_digest(file.as_fd()).ok()
        } else {
            None
        };
        let text = text.filter(|t| is_text(t));
        return Hashed {
            digest: Digest::Sha256(d),
            xattrs,
            meta: (after.ino != walked.ino
                || !after.same_content_stamp(walked)
                || after.mode != walked.mode
                || after.uid != walked.uid
                || after.gid != walked.gid)
                .then_some(after),
            text,
        };
    }
    unread("changed while being hashed".into())
}

/// UTF-8 without NUL bytes: worth a line diff.
pub fn is_text(b: &[u8]) -> bool {
    !b.contains(&0) && std::str::from_utf8(b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::spec::WatchSet;

    #[test]
    fn a_fifo_is_recorded_by_type_and_a_file_gone_before_hashing_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("gone"), b"x").unwrap();
        nix::unistd::mkfifo(&d.join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        let host = HostRoot::new(tmp.path()).unwrap();
        let spec = WatchSpec::new(vec![
            WatchSet::ad_hoc(&[PathBuf::from("/d")], None).unwrap(),
        ]);
        let mut w = walk(&host, &spec, None);
        assert!(w.errors.is_empty(), "{:?}", w.errors);
        let paths: Vec<&Path> = w.entries.iter().map(|e| e.path.as_path()).collect();
        assert_eq!(
            paths,
            [Path::new("/d"), Path::new("/d/fifo"), Path::new("/d/gone")]
        );
        assert_eq!(w.entries[1].meta.kind, FileKind::Fifo);
        assert_eq!(w.entries[1].digest, Digest::NotRegular);
        std::fs::remove_file(d.join("gone")).unwrap();
        let opts = HashOptions {
            threads: 1,
            max_bytes: 1 << 20,
            want_xattrs: false,
            keep_text_below: 0,
        };
        hash(&host, &mut w.entries, &[2], opts, None, None);
        match &w.entries[2].digest {
            Digest::Unread(r) => assert!(r.contains("/d/gone"), "{r}"),
            other => panic!("{other:?}"),
        }
    }
}
