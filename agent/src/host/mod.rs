//! `HostRoot`: the one door to the host's filesystem.
//!
//! Every read of a host file — configs, systemd units, `/proc`, `/sys` — goes through a
//! [`HostRoot`] rooted at `/` (systemd service) or `/host` (DaemonSet), or at a fixture tree in
//! tests. Paths handed to it are *host* paths (`/etc/kubernetes/kubelet.conf`); it never lets a
//! path or a symlink resolve outside the root:
//!
//! * resolution uses `openat2(2)` with `RESOLVE_IN_ROOT`, so `..` and absolute symlinks are
//!   clamped to the root exactly as if the process had `chroot`ed; kernels without `openat2`
//!   (before 5.6, or seccomp profiles that block it) get an equivalent component-by-component
//!   walk that holds a directory fd at every step and never follows a symlink it has not
//!   re-rooted itself;
//! * "magic" links (`/proc/<pid>/cwd`, `/proc/<pid>/exe`) are never traversed; callers read
//!   their text with [`HostRoot::read_link`] and resolve it again inside the root;
//! * only regular files are opened for reading: FIFOs, sockets and devices are reported as
//!   [`HostError::NotRegular`] after an `O_PATH` open, which has no side effect on them;
//! * reads are bounded: a file bigger than the limit is [`HostError::TooLarge`], never read
//!   whole (the size from `fstat` is not trusted: procfs reports 0).
//!
//! Errors name the host path, so an inspector can turn them straight into an `unknown` reason.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat};
use serde::Serialize;

/// Default upper bound for one file read: larger than any configuration file the agent parses,
/// small enough that a hostile multi-gigabyte file costs nothing.
pub const DEFAULT_READ_LIMIT: u64 = 4 << 20;

/// Symlinks followed in one resolution before it is declared a loop (Linux's own limit).
const MAX_SYMLINK_HOPS: usize = 40;

/// How often a resolution that raced with a rename (`EAGAIN` from `openat2`) is retried.
const OPENAT2_RETRIES: usize = 8;

/// What kind of file a path names, from `fstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileKind {
    pub fn from_mode(mode: u32) -> Self {
        match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFDIR => Self::Directory,
            SFlag::S_IFLNK => Self::Symlink,
            SFlag::S_IFIFO => Self::Fifo,
            SFlag::S_IFSOCK => Self::Socket,
            SFlag::S_IFCHR => Self::CharDevice,
            SFlag::S_IFBLK => Self::BlockDevice,
            _ => Self::File,
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::File => "regular file",
            Self::Directory => "directory",
            Self::Symlink => "symbolic link",
            Self::Fifo => "FIFO",
            Self::Socket => "socket",
            Self::CharDevice => "character device",
            Self::BlockDevice => "block device",
        })
    }
}

/// The attributes of a host file that inspectors and the file-integrity baseline care about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileMeta {
    pub kind: FileKind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
    pub ctime: i64,
    pub ino: u64,
    pub dev: u64,
    pub nlink: u64,
}

impl FileMeta {
    pub fn from_stat(st: &FileStat) -> Self {
        Self {
            kind: FileKind::from_mode(st.st_mode),
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: st.st_mtime,
            ctime: st.st_ctime,
            ino: st.st_ino,
            dev: st.st_dev,
            nlink: st.st_nlink,
        }
    }

    /// The mode as the conventional four-digit octal string, e.g. `"0600"`.
    pub fn mode_octal(&self) -> String {
        format!("{:04o}", self.mode)
    }
}

/// One entry of a host directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The raw name: not necessarily UTF-8.
    pub name: OsString,
    /// From `d_type`; `None` where the filesystem does not report it.
    pub kind: Option<FileKind>,
}

/// Why a host path could not be read. Every variant names the host path.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{path}: not found")]
    NotFound { path: String },
    #[error("{path}: permission denied")]
    PermissionDenied { path: String },
    #[error("{path}: too many levels of symbolic links (a loop?)")]
    SymlinkLoop { path: String },
    #[error("{path}: is a {kind}, not a regular file; not read")]
    NotRegular { path: String, kind: FileKind },
    #[error("{path}: a path component is not a directory")]
    NotADirectory { path: String },
    #[error("{path}: larger than the {limit}-byte read limit; not read")]
    TooLarge { path: String, limit: u64 },
    #[error("{path}: more than {limit} directory entries; not listed")]
    TooManyEntries { path: String, limit: usize },
    #[error("{path}: not valid UTF-8 text")]
    NotUtf8 { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("host root {root}: {source}")]
    Root {
        root: String,
        #[source]
        source: std::io::Error,
    },
}

impl HostError {
    /// True when the path simply does not exist (as opposed to existing but unreadable).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    fn from_errno(path: &Path, errno: Errno) -> Self {
        let path = display(path);
        match errno {
            Errno::ENOENT => Self::NotFound { path },
            Errno::EACCES | Errno::EPERM => Self::PermissionDenied { path },
            Errno::ELOOP => Self::SymlinkLoop { path },
            Errno::ENOTDIR => Self::NotADirectory { path },
            other => Self::Io {
                path,
                source: std::io::Error::from_raw_os_error(other as i32),
            },
        }
    }
}

/// A host path for messages and JSON: lossy where the name is not UTF-8.
pub fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// How paths are resolved inside the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: one syscall, kernel-enforced.
    Openat2,
    /// Component-by-component walk with `O_PATH | O_NOFOLLOW` and re-rooted symlinks.
    Walk,
}

/// The host filesystem, seen from a root directory.
#[derive(Debug)]
pub struct HostRoot {
    root: PathBuf,
    dir: OwnedFd,
    resolver: Resolver,
}

impl HostRoot {
    /// Opens `root` (normally `/` or `/host`). Uses `openat2` where the kernel has it.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, HostError> {
        let host = Self::with_resolver(root, Resolver::Openat2)?;
        let probe = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT);
        match openat2(host.dir.as_fd(), ".", probe) {
            Ok(_) => Ok(host),
            Err(Errno::ENOSYS | Errno::EPERM | Errno::EINVAL | Errno::E2BIG) => {
                tracing::debug!(
                    "openat2 is unavailable; resolving host paths component by component"
                );
                Ok(Self {
                    resolver: Resolver::Walk,
                    ..host
                })
            }
            Err(e) => Err(HostError::Root {
                root: display(&host.root),
                source: e.into(),
            }),
        }
    }

    /// Opens `root` with an explicit resolver (tests run the same cases through both).
    pub fn with_resolver(root: impl Into<PathBuf>, resolver: Resolver) -> Result<Self, HostError> {
        let root = root.into();
        let dir = nix::fcntl::open(
            &root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| HostError::Root {
            root: display(&root),
            source: e.into(),
        })?;
        Ok(Self {
            root,
            dir,
            resolver,
        })
    }

    /// The directory this host is rooted at, as given.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Which resolver is in use.
    pub fn resolver(&self) -> Resolver {
        self.resolver
    }

    /// Reads a regular file, failing with [`HostError::TooLarge`] beyond `limit` bytes.
    pub fn read(&self, path: &Path, limit: u64) -> Result<Vec<u8>, HostError> {
        let (fd, st) = self.open_regular(path)?;
        if st.size > limit {
            return Err(HostError::TooLarge {
                path: display(path),
                limit,
            });
        }
        let mut buf = Vec::new();
        File::from(fd)
            .take(limit.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|source| HostError::Io {
                path: display(path),
                source,
            })?;
        if buf.len() as u64 > limit {
            return Err(HostError::TooLarge {
                path: display(path),
                limit,
            });
        }
        Ok(buf)
    }

    /// Opens a regular file for reading: the type is checked on an `O_PATH` fd first (so a
    /// FIFO or device is never opened), and the file opened must be the one checked.
    fn open_regular(&self, path: &Path) -> Result<(OwnedFd, FileMeta), HostError> {
        let (pathfd, st) = self.open_path(path)?;
        if st.kind != FileKind::File {
            return Err(HostError::NotRegular {
                path: display(path),
                kind: st.kind,
            });
        }
        drop(pathfd);
        let fd = self.resolve(
            path,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
            true,
        )?;
        let again = fstat(fd.as_fd()).map_err(|e| HostError::from_errno(path, e))?;
        if again.st_ino != st.ino || again.st_dev != st.dev {
            return Err(HostError::Io {
                path: display(path),
                source: std::io::Error::other("replaced while being opened"),
            });
        }
        Ok((fd, st))
    }

    /// Opens a regular file for a streaming read (same checks as [`HostRoot::read`]: regular
    /// files only, resolved inside the root). The caller bounds what it reads (`take`), so a
    /// file can be processed line by line without holding it whole.
    pub fn open_file(&self, path: &Path) -> Result<(File, FileMeta), HostError> {
        let (fd, st) = self.open_regular(path)?;
        Ok((File::from(fd), st))
    }

    /// Reads at most the last `max` bytes of a regular file of any size (logs such as
    /// `/var/log/wtmp` grow without bound). Returns the file offset the bytes start at, so a
    /// caller parsing fixed-size records can realign. Same checks as [`HostRoot::read`]:
    /// regular files only, resolved inside the root.
    pub fn read_tail(&self, path: &Path, max: u64) -> Result<(u64, Vec<u8>), HostError> {
        let (fd, st) = self.open_regular(path)?;
        let io = |source| HostError::Io {
            path: display(path),
            source,
        };
        let start = st.size.saturating_sub(max);
        let mut file = File::from(fd);
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut buf = Vec::new();
        file.take(max).read_to_end(&mut buf).map_err(io)?;
        Ok((start, buf))
    }

    /// Reads a regular file as UTF-8 text.
    pub fn read_string(&self, path: &Path, limit: u64) -> Result<String, HostError> {
        String::from_utf8(self.read(path, limit)?).map_err(|_| HostError::NotUtf8 {
            path: display(path),
        })
    }

    /// Attributes of the file `path` names, following symlinks inside the root.
    pub fn stat(&self, path: &Path) -> Result<FileMeta, HostError> {
        self.open_path(path).map(|(_, meta)| meta)
    }

    /// Attributes of `path` itself: a final symlink is described, not followed.
    pub fn lstat(&self, path: &Path) -> Result<FileMeta, HostError> {
        let fd = self.resolve(path, OFlag::O_PATH | OFlag::O_NOFOLLOW, false)?;
        let st = fstat(fd.as_fd()).map_err(|e| HostError::from_errno(path, e))?;
        Ok(FileMeta::from_stat(&st))
    }

    /// True when `path` resolves to something (of any kind).
    pub fn exists(&self, path: &Path) -> bool {
        self.stat(path).is_ok()
    }

    /// Opens `path` with `O_PATH` (no read access, no side effects) and returns its attributes.
    /// Used to reach sockets (via `/proc/self/fd/N`) without resolving outside the root.
    pub fn open_path(&self, path: &Path) -> Result<(OwnedFd, FileMeta), HostError> {
        let fd = self.resolve(path, OFlag::O_PATH, true)?;
        let st = fstat(fd.as_fd()).map_err(|e| HostError::from_errno(path, e))?;
        Ok((fd, FileMeta::from_stat(&st)))
    }

    /// Opens the directory `path` for listing; a final symlink is not followed (`ELOOP`).
    /// The file-integrity walk descends from this fd with `O_NOFOLLOW` opens only, so it can
    /// never leave the root.
    pub fn open_dir(&self, path: &Path) -> Result<OwnedFd, HostError> {
        self.resolve(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, false)
    }

    /// Opens `path` for reading without following a final symlink and without blocking on a
    /// FIFO; the caller checks the type with `fstat` before reading.
    pub fn open_read_nofollow(&self, path: &Path) -> Result<OwnedFd, HostError> {
        self.resolve(
            path,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
            false,
        )
    }

    /// The raw target of the symlink at `path` (the final component is not followed).
    /// Works on procfs magic links such as `/proc/<pid>/cwd`, whose text is a host path.
    pub fn read_link(&self, path: &Path) -> Result<PathBuf, HostError> {
        let (parent, name) = split_parent(path);
        let dir = self.resolve(&parent, OFlag::O_PATH | OFlag::O_DIRECTORY, true)?;
        readlinkat(dir.as_fd(), name.as_os_str())
            .map(PathBuf::from)
            .map_err(|e| match e {
                Errno::EINVAL => HostError::Io {
                    path: display(path),
                    source: std::io::Error::other("not a symbolic link"),
                },
                e => HostError::from_errno(path, e),
            })
    }

    /// Lists a directory (without `.` and `..`), failing beyond `limit` entries.
    pub fn read_dir(&self, path: &Path, limit: usize) -> Result<Vec<DirEntry>, HostError> {
        let fd = self.resolve(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, true)?;
        let mut dir = nix::dir::Dir::from_fd(fd).map_err(|e| HostError::from_errno(path, e))?;
        let mut out = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| HostError::from_errno(path, e))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            if out.len() == limit {
                return Err(HostError::TooManyEntries {
                    path: display(path),
                    limit,
                });
            }
            out.push(DirEntry {
                name: std::ffi::OsStr::from_bytes(name).to_os_string(),
                kind: entry.file_type().map(|t| match t {
                    nix::dir::Type::Directory => FileKind::Directory,
                    nix::dir::Type::Symlink => FileKind::Symlink,
                    nix::dir::Type::Fifo => FileKind::Fifo,
                    nix::dir::Type::Socket => FileKind::Socket,
                    nix::dir::Type::CharacterDevice => FileKind::CharDevice,
                    nix::dir::Type::BlockDevice => FileKind::BlockDevice,
                    nix::dir::Type::File => FileKind::File,
                }),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The link texts of the symlinks in directory `path` (`/proc/<pid>/fd`: `socket:[1234]`,
    /// `/var/log/x.log`), read through one directory fd; nothing is followed. Entries that are
    /// not links, or vanish meanwhile (a file descriptor closed), are skipped.
    pub fn read_links(
        &self,
        path: &Path,
        limit: usize,
    ) -> Result<Vec<(OsString, PathBuf)>, HostError> {
        let names: Vec<OsString> = self
            .read_dir(path, limit)?
            .into_iter()
            .map(|e| e.name)
            .collect();
        let dir = self.resolve(path, OFlag::O_PATH | OFlag::O_DIRECTORY, true)?;
        Ok(names
            .into_iter()
            .filter_map(|n| {
                let target = readlinkat(dir.as_fd(), n.as_os_str()).ok()?;
                Some((n, PathBuf::from(target)))
            })
            .collect())
    }

    /// Resolves `path` inside the root and opens it with `flags`.
    fn resolve(&self, path: &Path, flags: OFlag, follow_last: bool) -> Result<OwnedFd, HostError> {
        let rel = relative(path);
        let flags = flags | OFlag::O_CLOEXEC;
        match self.resolver {
            Resolver::Openat2 => {
                let flags = if follow_last {
                    flags
                } else {
                    flags | OFlag::O_NOFOLLOW
                };
                let how = || {
                    OpenHow::new()
                        .flags(flags)
                        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
                };
                let mut attempt = 0;
                loop {
                    match openat2(self.dir.as_fd(), rel.as_path(), how()) {
                        Err(Errno::EAGAIN) if attempt < OPENAT2_RETRIES => attempt += 1,
                        other => return other.map_err(|e| HostError::from_errno(path, e)),
                    }
                }
            }
            Resolver::Walk => self.walk(path, &rel, flags, follow_last),
        }
    }

    /// The `openat2`-less resolver: one component at a time, each opened `O_NOFOLLOW`
    /// relative to the directory fd of the previous one; symlinks are read and their
    /// components spliced in, absolute ones restarting from the root; `..` never climbs
    /// above the root.
    fn walk(
        &self,
        path: &Path,
        rel: &Path,
        flags: OFlag,
        follow_last: bool,
    ) -> Result<OwnedFd, HostError> {
        let err = |e: Errno| HostError::from_errno(path, e);
        let mut pending: Vec<OsString> = components(rel);
        pending.reverse(); // a stack: next component last
        let mut dirs: Vec<OwnedFd> = vec![
            openat(
                self.dir.as_fd(),
                ".",
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(err)?,
        ];
        let mut hops = 0;
        loop {
            let Some(name) = pending.pop() else {
                // The path named a directory (or the root itself): reopen it with `flags`.
                let cur = dirs.last().ok_or(Errno::ENOENT).map_err(err)?;
                return openat(cur.as_fd(), ".", flags, Mode::empty()).map_err(err);
            };
            if name == ".." {
                if dirs.len() > 1 {
                    dirs.pop();
                }
                continue;
            }
            let last = pending.is_empty();
            let cur = dirs.last().ok_or(Errno::ENOENT).map_err(err)?;
            let fd = openat(
                cur.as_fd(),
                name.as_os_str(),
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(err)?;
            let st = fstat(fd.as_fd()).map_err(err)?;
            let kind = FileKind::from_mode(st.st_mode);
            if kind == FileKind::Symlink && (!last || follow_last) {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(err(Errno::ELOOP));
                }
                let target = PathBuf::from(readlinkat(cur.as_fd(), name.as_os_str()).map_err(err)?);
                if target.is_absolute() {
                    dirs.truncate(1);
                }
                pending.extend(components(&target).into_iter().rev());
                continue;
            }
            if last {
                if flags.contains(OFlag::O_PATH) && !flags.contains(OFlag::O_DIRECTORY) {
                    return Ok(fd);
                }
                return openat(
                    cur.as_fd(),
                    name.as_os_str(),
                    flags | OFlag::O_NOFOLLOW,
                    Mode::empty(),
                )
                .map_err(err);
            }
            if kind != FileKind::Directory {
                return Err(err(Errno::ENOTDIR));
            }
            dirs.push(fd);
        }
    }
}

/// `/a/b` → `a/b`; `/` → `.`. Host paths are absolute; a relative one is taken from the root.
fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// The normal and `..` components of a path (`.` and roots dropped).
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Splits a host path into its parent directory and final name (`/` for a bare name).
fn split_parent(path: &Path) -> (PathBuf, OsString) {
    let parent = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| OsString::from("."));
    (parent, name)
}

/// Joins a symlink target read from the host (e.g. a `/proc/<pid>/cwd` text) with a relative
/// path, lexically: the result is again a host path to hand to [`HostRoot`].
pub fn host_join(base: &Path, rel: &Path) -> PathBuf {
    if rel.is_absolute() {
        rel.to_path_buf()
    } else {
        base.join(rel)
    }
}

#[cfg(test)]
mod tests;
