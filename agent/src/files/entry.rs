//! One tracked path as recorded in the store and seen by a scan, and its compact encoding.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::FileStat;
use serde_json::{Value, json};

use crate::host::FileKind;

/// The `stat` fields the monitor records. Timestamps keep nanoseconds: a rewrite within the
/// same second must still be noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: FileKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    pub ino: u64,
    pub dev: u64,
    pub nlink: u64,
}

impl Meta {
    pub fn from_stat(st: &FileStat) -> Self {
        let ns = |v: i64| u32::try_from(v).unwrap_or(0);
        Self {
            kind: FileKind::from_mode(st.st_mode),
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: (st.st_mtime, ns(st.st_mtime_nsec)),
            ctime: (st.st_ctime, ns(st.st_ctime_nsec)),
            ino: st.st_ino,
            dev: st.st_dev,
            nlink: st.st_nlink,
        }
    }

    /// Whether a stored digest can be trusted for this file without reading it again: the
    /// stat-first rule (size, mtime, ctime, inode and type unchanged).
    pub fn same_content_stamp(&self, other: &Meta) -> bool {
        self.kind == other.kind
            && self.size == other.size
            && self.mtime == other.mtime
            && self.ctime == other.ctime
            && self.ino == other.ino
    }
}

/// The content digest of an entry, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Digest {
    Sha256([u8; 32]),
    /// Not a regular file (directories, symlinks, FIFOs, sockets, devices are never opened).
    NotRegular,
    /// Larger than the hashing cap: tracked by metadata only.
    TooLarge,
    /// The set does not track content.
    NotTracked,
    /// Could not be read; the reason names the error.
    Unread(String),
}

impl Digest {
    pub fn hex(&self) -> Option<String> {
        match self {
            Digest::Sha256(d) => Some(hex(d)),
            _ => None,
        }
    }

    /// The JSON form in findings: the hex digest, or a note.
    pub fn to_json(&self) -> Value {
        match self {
            Digest::Sha256(d) => Value::String(hex(d)),
            Digest::NotRegular => Value::Null,
            Digest::TooLarge => json!({"$metadataOnly": "larger than the hashing cap"}),
            Digest::NotTracked => Value::Null,
            Digest::Unread(r) => json!({"$unknown": r}),
        }
    }
}

pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// One path with everything the monitor tracks about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The host path (absolute, not necessarily UTF-8).
    pub path: PathBuf,
    pub meta: Meta,
    pub digest: Digest,
    /// Symlink target, raw.
    pub target: Option<Vec<u8>>,
    /// SHA-256 over the sorted `name\0value\0` pairs; `None` when not read.
    pub xattrs: Option<[u8; 32]>,
    /// When the stored content digest was last computed from the file (Unix seconds).
    pub hashed_at: i64,
}

/// The store key of a path: its bytes with `/` mapped to NUL, so that byte order is the
/// component-wise order (`a/b` sorts before `a.c`, as a depth-first walk visits them).
pub fn key(path: &Path) -> Vec<u8> {
    path.as_os_str()
        .as_bytes()
        .iter()
        .map(|b| if *b == b'/' { 0 } else { *b })
        .collect()
}

/// Compares two paths in store-key order without building the keys.
pub fn cmp_paths(a: &Path, b: &Path) -> std::cmp::Ordering {
    let f = |c: &u8| if *c == b'/' { 0 } else { *c };
    a.as_os_str()
        .as_bytes()
        .iter()
        .map(f)
        .cmp(b.as_os_str().as_bytes().iter().map(f))
}

/// The inverse of [`key`].
pub fn path_of(key: &[u8]) -> PathBuf {
    let bytes: Vec<u8> = key
        .iter()
        .map(|b| if *b == 0 { b'/' } else { *b })
        .collect();
    PathBuf::from(OsStr::from_bytes(&bytes))
}

const ENCODING_V1: u8 = 1;

fn kind_code(k: FileKind) -> u8 {
    match k {
        FileKind::File => 0,
        FileKind::Directory => 1,
        FileKind::Symlink => 2,
        FileKind::Fifo => 3,
        FileKind::Socket => 4,
        FileKind::CharDevice => 5,
        FileKind::BlockDevice => 6,
    }
}

fn kind_of(c: u8) -> Option<FileKind> {
    Some(match c {
        0 => FileKind::File,
        1 => FileKind::Directory,
        2 => FileKind::Symlink,
        3 => FileKind::Fifo,
        4 => FileKind::Socket,
        5 => FileKind::CharDevice,
        6 => FileKind::BlockDevice,
        _ => return None,
    })
}

impl Entry {
    /// Encodes everything but the path (the key) in a fixed little-endian layout, version 1.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(120);
        v.push(ENCODING_V1);
        v.push(kind_code(self.meta.kind));
        v.extend_from_slice(&self.meta.mode.to_le_bytes());
        v.extend_from_slice(&self.meta.uid.to_le_bytes());
        v.extend_from_slice(&self.meta.gid.to_le_bytes());
        v.extend_from_slice(&self.meta.size.to_le_bytes());
        v.extend_from_slice(&self.meta.mtime.0.to_le_bytes());
        v.extend_from_slice(&self.meta.mtime.1.to_le_bytes());
        v.extend_from_slice(&self.meta.ctime.0.to_le_bytes());
        v.extend_from_slice(&self.meta.ctime.1.to_le_bytes());
        v.extend_from_slice(&self.meta.ino.to_le_bytes());
        v.extend_from_slice(&self.meta.nlink.to_le_bytes());
        v.extend_from_slice(&self.hashed_at.to_le_bytes());
        match &self.digest {
            Digest::Sha256(d) => {
                v.push(1);
                v.extend_from_slice(d);
            }
            Digest::NotRegular => v.push(2),
            Digest::TooLarge => v.push(3),
            Digest::NotTracked => v.push(4),
            Digest::Unread(r) => {
                v.push(5);
                put_bytes(&mut v, r.as_bytes());
            }
        }
        match &self.xattrs {
            Some(x) => {
                v.push(1);
                v.extend_from_slice(x);
            }
            None => v.push(0),
        }
        match &self.target {
            Some(t) => {
                v.push(1);
                put_bytes(&mut v, t);
            }
            None => v.push(0),
        }
        v
    }

    /// Decodes a stored value; `None` for anything malformed (a damaged store is reported by
    /// the caller, never trusted).
    pub fn decode(path: PathBuf, b: &[u8]) -> Option<Entry> {
        let mut r = Reader(b);
        if r.u8()? != ENCODING_V1 {
            return None;
        }
        let kind = kind_of(r.u8()?)?;
        let mode = r.u32()?;
        let uid = r.u32()?;
        let gid = r.u32()?;
        let size = r.u64()?;
        let mtime = (r.i64()?, r.u32()?);
        let ctime = (r.i64()?, r.u32()?);
        let ino = r.u64()?;
        let nlink = r.u64()?;
        let hashed_at = r.i64()?;
        let digest = match r.u8()? {
            1 => Digest::Sha256(r.array()?),
            2 => Digest::NotRegular,
            3 => Digest::TooLarge,
            4 => Digest::NotTracked,
            5 => Digest::Unread(String::from_utf8_lossy(r.bytes()?).into_owned()),
            _ => return None,
        };
        let xattrs = match r.u8()? {
            0 => None,
            1 => Some(r.array()?),
            _ => return None,
        };
        let target = match r.u8()? {
            0 => None,
            1 => Some(r.bytes()?.to_vec()),
            _ => return None,
        };
        if !r.0.is_empty() {
            return None;
        }
        Some(Entry {
            path,
            meta: Meta {
                kind,
                mode,
                uid,
                gid,
                size,
                mtime,
                ctime,
                ino,
                dev: 0,
                nlink,
            },
            digest,
            target,
            xattrs,
            hashed_at,
        })
    }

    /// The tracked attributes as JSON, for findings and `baseline` listings.
    pub fn attributes_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("type".into(), json!(kind_name(self.meta.kind)));
        m.insert("mode".into(), json!(format!("{:04o}", self.meta.mode)));
        m.insert("uid".into(), json!(self.meta.uid));
        m.insert("gid".into(), json!(self.meta.gid));
        m.insert("size".into(), json!(self.meta.size));
        if self.meta.kind == FileKind::File {
            m.insert("sha256".into(), self.digest.to_json());
        }
        if let Some(t) = &self.target {
            m.insert("target".into(), json!(String::from_utf8_lossy(t)));
        }
        if let Some(x) = &self.xattrs {
            m.insert("xattrs".into(), json!(hex(&x[..8])));
        }
        m.insert(
            "mtime".into(),
            json!(crate::clock::rfc3339_ns(
                self.meta.mtime.0,
                self.meta.mtime.1
            )),
        );
        m.insert("inode".into(), json!(self.meta.ino));
        Value::Object(m)
    }
}

/// The short name of a file type, as in findings.
pub fn kind_name(k: FileKind) -> &'static str {
    match k {
        FileKind::File => "file",
        FileKind::Directory => "directory",
        FileKind::Symlink => "symlink",
        FileKind::Fifo => "fifo",
        FileKind::Socket => "socket",
        FileKind::CharDevice => "char-device",
        FileKind::BlockDevice => "block-device",
    }
}

fn put_bytes(v: &mut Vec<u8>, b: &[u8]) {
    let n = u32::try_from(b.len()).unwrap_or(u32::MAX);
    v.extend_from_slice(&n.to_le_bytes());
    v.extend_from_slice(&b[..n as usize]);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.array()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(digest: Digest, target: Option<Vec<u8>>) -> Entry {
        Entry {
            path: PathBuf::from("/etc/x"),
            meta: Meta {
                kind: FileKind::File,
                mode: 0o644,
                uid: 1,
                gid: 2,
                size: 3,
                mtime: (4, 5),
                ctime: (6, 7),
                ino: 8,
                dev: 0,
                nlink: 1,
            },
            digest,
            target,
            xattrs: Some([9; 32]),
            hashed_at: 10,
        }
    }

    #[test]
    fn encoding_round_trips_and_rejects_damage() {
        for e in [
            sample(Digest::Sha256([7; 32]), None),
            sample(Digest::Unread("EACCES".into()), Some(b"/t\xff".to_vec())),
            sample(Digest::TooLarge, None),
        ] {
            let b = e.encode();
            assert_eq!(Entry::decode(e.path.clone(), &b), Some(e.clone()));
            for cut in 0..b.len() {
                assert_eq!(Entry::decode(e.path.clone(), &b[..cut]), None);
            }
            let mut longer = b.clone();
            longer.push(0);
            assert_eq!(Entry::decode(e.path.clone(), &longer), None);
        }
        assert_eq!(Entry::decode(PathBuf::new(), &[9, 9, 9]), None);
    }

    #[test]
    fn keys_sort_like_a_depth_first_walk() {
        let mut paths = ["/a.c", "/a/b", "/a", "/a/b/c", "/a-b"];
        paths.sort_by_key(|p| key(Path::new(p)));
        assert_eq!(paths, ["/a", "/a/b", "/a/b/c", "/a-b", "/a.c"]);
        assert_eq!(path_of(&key(Path::new("/x/y"))), PathBuf::from("/x/y"));
    }
}
