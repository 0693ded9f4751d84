//! Comparing what a walk sees with the stored baseline.
//!
//! The stored entries stream from the store in key order and are merged with the walk's
//! (sorted the same way), so the baseline is never held in memory twice. Stat-first: a file
//! whose size, mtime, ctime, inode and type are unchanged keeps its stored digest without being
//! read, unless a full re-hash is due.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

use super::entry::{self, Digest, Entry, kind_name};
use super::scan::{self, HashOptions, ScanError};
use super::spec::{Attr, Preset, WatchSpec};
use super::store::{Store, StoreError, StoreInfo};
use crate::host::{FileKind, HostRoot};

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Modified,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Modified => "modified",
        }
    }
}

/// One changed attribute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttrChange {
    pub attribute: Attr,
    pub before: Value,
    pub after: Value,
}

/// One path that differs from the baseline.
#[derive(Debug, Clone)]
pub struct Change {
    pub path: PathBuf,
    pub kind: ChangeKind,
    /// The governing set (index into the spec).
    pub set: usize,
    pub attributes: Vec<AttrChange>,
    pub before: Option<Entry>,
    pub after: Option<Entry>,
}

/// Options of a verification.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Re-hash every file whatever its timestamps say.
    pub rehash_all: bool,
    /// Verify only these host paths (and below, for directories): a realtime event.
    pub only: Option<Vec<PathBuf>>,
    /// Read-rate cap for the hashing (0 = none).
    pub bytes_per_sec: u64,
}

/// The outcome of a verification.
#[derive(Debug, Default)]
pub struct Verification {
    pub changes: Vec<Change>,
    pub errors: Vec<ScanError>,
    /// Regular files tracked by metadata only (larger than the hashing cap).
    pub metadata_only: Vec<PathBuf>,
    pub store: Option<StoreInfo>,
    pub entries: usize,
    pub hashed: usize,
    pub hashed_bytes: u64,
    /// Directories to watch in realtime.
    pub dirs: Vec<PathBuf>,
    pub missing_roots: Vec<PathBuf>,
    pub truncated: bool,
    /// The first entry the limit left out.
    pub truncated_at: Option<PathBuf>,
    /// Set when the store's watch-set fingerprint differs from the spec's.
    pub spec_changed: bool,
}

/// Verifies the host against the store.
///
/// The walk and the store are merged as two ordered streams: only entries that differ, must be
/// read, or were added or removed are kept, so memory does not grow with the tree.
pub fn verify(
    host: &HostRoot,
    spec: &WatchSpec,
    store: &Store,
    opts: &VerifyOptions,
) -> Result<Verification, StoreError> {
    let in_scope = |p: &Path| match &opts.only {
        None => true,
        Some(only) => only.iter().any(|o| p.starts_with(o)),
    };
    let tracks_content = |set: usize| spec.sets[set].attributes.has(Attr::Sha256);
    let mut stored = match &opts.only {
        None => Stored::All(Box::new(store.iter()?)),
        Some(only) => {
            let mut v = Vec::new();
            for p in only {
                v.extend(store.under(p)?);
            }
            v.sort_by(|a, b| entry::cmp_paths(&a.path, &b.path));
            v.dedup_by(|a, b| a.path == b.path);
            Stored::Some(v.into_iter())
        }
    };
    let mut head = stored.pull()?;
    let mut failed: Option<StoreError> = None;
    // (current, set, stored): to hash, then compare.
    let mut pending: Vec<(Entry, usize, Option<Entry>)> = Vec::new();
    let mut modified: Vec<(Entry, usize, Entry)> = Vec::new();
    let mut added: Vec<(Entry, usize)> = Vec::new();
    let mut removed: Vec<(usize, Entry)> = Vec::new();
    let mut metadata_only: Vec<PathBuf> = Vec::new();
    let gone = |e: Entry, removed: &mut Vec<(usize, Entry)>| {
        if in_scope(&e.path)
            && let Some(set) = spec.govern(&e.path)
        {
            removed.push((set, e));
        }
    };
    let walk = scan::walk_each(host, spec, opts.only.as_deref(), &mut |mut cur, set| {
        if failed.is_some() {
            return;
        }
        // Stored entries before this one are gone from the host.
        while head
            .as_ref()
            .is_some_and(|h| entry::cmp_paths(&h.path, &cur.path).is_lt())
        {
            if let Some(h) = head.take() {
                gone(h, &mut removed);
            }
            match stored.pull() {
                Ok(n) => head = n,
                Err(e) => {
                    failed = Some(e);
                    return;
                }
            }
        }
        let same = head.as_ref().is_some_and(|h| h.path == cur.path);
        let content = tracks_content(set) && cur.meta.kind == FileKind::File;
        if !same {
            if content {
                pending.push((cur, set, None));
            } else {
                added.push((cur, set));
            }
            return;
        }
        let Some(old) = head.take() else { return };
        match stored.pull() {
            Ok(n) => head = n,
            Err(e) => {
                failed = Some(e);
                return;
            }
        }
        let stamp_same = cur.meta.same_content_stamp(&old.meta);
        if content && (opts.rehash_all || !stamp_same || !matches!(old.digest, Digest::Sha256(_))) {
            pending.push((cur, set, Some(old)));
            return;
        }
        if content {
            cur.digest = old.digest.clone();
            cur.hashed_at = old.hashed_at;
            cur.xattrs = old.xattrs;
            if cur.digest == Digest::TooLarge {
                metadata_only.push(cur.path.clone());
            }
        }
        let set_ = &spec.sets[set];
        if !differences(set_.preset, set_.attributes, &old, &cur).is_empty() {
            modified.push((cur, set, old));
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    while let Some(h) = head.take() {
        gone(h, &mut removed);
        head = stored.pull()?;
    }
    let info = match stored {
        Stored::All(it) => it.finish()?,
        Stored::Some(_) => store.info()?,
    };

    // Read what must be read, on the hashing threads.
    let mut currents: Vec<Entry> = Vec::with_capacity(pending.len());
    let mut rest: Vec<(usize, Option<Entry>)> = Vec::with_capacity(pending.len());
    for (c, set, old) in pending {
        currents.push(c);
        rest.push((set, old));
    }
    let which: Vec<usize> = (0..currents.len()).collect();
    let budget = (opts.bytes_per_sec > 0).then(|| scan::Budget::new(opts.bytes_per_sec));
    let want_xattrs = spec.sets.iter().any(|s| s.attributes.has(Attr::Xattrs));
    scan::hash(
        host,
        &mut currents,
        &which,
        HashOptions {
            threads: spec.limits.threads,
            max_bytes: spec.limits.max_hash_bytes,
            want_xattrs,
            keep_text_below: 0,
        },
        budget.as_ref(),
        None,
    );
    // Bytes actually read: files over the hashing cap, or unreadable, are not.
    let hashed_bytes: u64 = currents
        .iter()
        .filter(|e| matches!(e.digest, Digest::Sha256(_)))
        .map(|e| e.meta.size)
        .sum();
    let now = crate::clock::unix_now();
    let mut out = Verification {
        store: Some(info.clone()),
        entries: walk.count,
        hashed: currents.len(),
        hashed_bytes,
        spec_changed: !info.spec.is_empty() && info.spec != spec.fingerprint(),
        ..Verification::default()
    };
    for (mut cur, (set, old)) in currents.into_iter().zip(rest) {
        cur.hashed_at = now;
        match &cur.digest {
            Digest::TooLarge => metadata_only.push(cur.path.clone()),
            Digest::Unread(r) => out.errors.push(ScanError {
                path: cur.path.clone(),
                reason: r.clone(),
            }),
            _ => {}
        }
        match old {
            Some(old) => modified.push((cur, set, old)),
            None => added.push((cur, set)),
        }
    }
    for (cur, set, old) in modified {
        let s = &spec.sets[set];
        let diffs = differences(s.preset, s.attributes, &old, &cur);
        if !diffs.is_empty() {
            out.changes.push(Change {
                path: cur.path.clone(),
                kind: ChangeKind::Modified,
                set,
                attributes: diffs,
                before: Some(old),
                after: Some(cur),
            });
        }
    }
    for (cur, set) in added {
        out.changes.push(Change {
            path: cur.path.clone(),
            kind: ChangeKind::Added,
            set,
            attributes: Vec::new(),
            before: None,
            after: Some(cur),
        });
    }
    for (set, old) in removed {
        if walk.truncated || walk.errors.iter().any(|e| old.path.starts_with(&e.path)) {
            continue; // not seen because the walk could not look, not because it is gone
        }
        out.changes.push(Change {
            path: old.path.clone(),
            kind: ChangeKind::Removed,
            set,
            attributes: Vec::new(),
            before: Some(old),
            after: None,
        });
    }
    out.changes
        .sort_by(|a, b| entry::cmp_paths(&a.path, &b.path));
    metadata_only.sort();
    out.metadata_only = metadata_only;
    out.errors.extend(walk.errors);
    out.dirs = walk.dirs;
    out.missing_roots = walk.missing_roots;
    out.truncated = walk.truncated;
    out.truncated_at = walk.truncated_at;
    Ok(out)
}

/// The stored side of a verification.
enum Stored {
    All(Box<super::store::StoredIter>),
    Some(std::vec::IntoIter<Entry>),
}

impl Stored {
    fn pull(&mut self) -> Result<Option<Entry>, StoreError> {
        match self {
            Stored::All(it) => it.next_entry(),
            Stored::Some(it) => Ok(it.next()),
        }
    }
}

/// The tracked attributes that differ between the stored and the current entry.
pub fn differences(
    preset: Preset,
    attrs: super::spec::AttrSet,
    old: &Entry,
    new: &Entry,
) -> Vec<AttrChange> {
    let mut v = Vec::new();
    let mut push = |a: Attr, before: Value, after: Value| {
        v.push(AttrChange {
            attribute: a,
            before,
            after,
        })
    };
    let (o, n) = (&old.meta, &new.meta);
    if attrs.has(Attr::Type) && o.kind != n.kind {
        push(
            Attr::Type,
            json!(kind_name(o.kind)),
            json!(kind_name(n.kind)),
        );
    }
    if attrs.has(Attr::Mode) && o.mode != n.mode {
        push(
            Attr::Mode,
            json!(format!("{:04o}", o.mode)),
            json!(format!("{:04o}", n.mode)),
        );
    }
    if attrs.has(Attr::Uid) && o.uid != n.uid {
        push(Attr::Uid, json!(o.uid), json!(n.uid));
    }
    if attrs.has(Attr::Gid) && o.gid != n.gid {
        push(Attr::Gid, json!(o.gid), json!(n.gid));
    }
    let is_file = o.kind == FileKind::File && n.kind == FileKind::File;
    if preset == Preset::Log {
        if is_file && n.size < o.size {
            push(Attr::Size, json!(o.size), json!(n.size));
        }
    } else if attrs.has(Attr::Size) && is_file && o.size != n.size {
        push(Attr::Size, json!(o.size), json!(n.size));
    }
    // A file that could not be read now has an unknown content, not a changed one (the
    // verification reports it as an error).
    if attrs.has(Attr::Sha256)
        && is_file
        && old.digest != new.digest
        && !matches!(new.digest, Digest::Unread(_))
    {
        push(Attr::Sha256, old.digest.to_json(), new.digest.to_json());
    }
    if attrs.has(Attr::Target) && old.target != new.target {
        let t = |x: &Option<Vec<u8>>| x.as_ref().map(|t| String::from_utf8_lossy(t).into_owned());
        push(Attr::Target, json!(t(&old.target)), json!(t(&new.target)));
    }
    if attrs.has(Attr::Xattrs)
        && old.xattrs.is_some()
        && new.xattrs.is_some()
        && old.xattrs != new.xattrs
    {
        let h = |x: &Option<[u8; 32]>| x.map(|x| entry::hex(&x[..8]));
        push(Attr::Xattrs, json!(h(&old.xattrs)), json!(h(&new.xattrs)));
    }
    if attrs.has(Attr::Mtime) && o.mtime != n.mtime {
        let t = |m: (i64, u32)| crate::clock::rfc3339_ns(m.0, m.1);
        push(Attr::Mtime, json!(t(o.mtime)), json!(t(n.mtime)));
    }
    if attrs.has(Attr::Ctime) && o.ctime != n.ctime {
        let t = |m: (i64, u32)| crate::clock::rfc3339_ns(m.0, m.1);
        push(Attr::Ctime, json!(t(o.ctime)), json!(t(n.ctime)));
    }
    if attrs.has(Attr::Inode) && o.ino != n.ino {
        push(Attr::Inode, json!(o.ino), json!(n.ino));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::entry::Meta;
    use crate::files::spec::{WatchSet, WatchSpec};

    fn file(size: u64, digest: Digest) -> Entry {
        Entry {
            path: PathBuf::from("/etc/x"),
            meta: Meta {
                kind: FileKind::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size,
                mtime: (1, 0),
                ctime: (1, 0),
                ino: 7,
                dev: 0,
                nlink: 1,
            },
            digest,
            target: None,
            xattrs: None,
            hashed_at: 0,
        }
    }

    fn names(v: &[AttrChange]) -> Vec<Attr> {
        v.iter().map(|c| c.attribute).collect()
    }

    #[test]
    fn an_unreadable_file_has_an_unknown_content_not_a_changed_one() {
        let attrs = Preset::Config.attributes();
        let old = file(3, Digest::Sha256([1; 32]));
        let unread = |size| file(size, Digest::Unread("permission denied".into()));
        assert!(differences(Preset::Config, attrs, &old, &unread(3)).is_empty());
        assert_eq!(
            names(&differences(Preset::Config, attrs, &old, &unread(4))),
            [Attr::Size]
        );
        let other = file(3, Digest::Sha256([2; 32]));
        assert_eq!(
            names(&differences(Preset::Config, attrs, &old, &other)),
            [Attr::Sha256]
        );
    }

    #[test]
    fn the_log_preset_allows_growth_only() {
        let attrs = Preset::Log.attributes();
        let old = file(10, Digest::NotTracked);
        assert!(differences(Preset::Log, attrs, &old, &file(20, Digest::NotTracked)).is_empty());
        assert_eq!(
            names(&differences(
                Preset::Log,
                attrs,
                &old,
                &file(5, Digest::NotTracked)
            )),
            [Attr::Size]
        );
    }

    #[test]
    fn verifying_a_directory_covers_everything_below_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("host");
        std::fs::create_dir_all(root.join("d/sub")).unwrap();
        std::fs::write(root.join("d/a"), b"a").unwrap();
        std::fs::write(root.join("d/sub/b"), b"b").unwrap();
        let host = HostRoot::new(&root).unwrap();
        let spec = WatchSpec::new(vec![
            WatchSet::ad_hoc(&[PathBuf::from("/d")], None).unwrap(),
        ]);
        let store = Store::create(&tmp.path().join("state")).unwrap();
        crate::files::capture(&host, &spec, &store, None).unwrap();
        std::fs::write(root.join("d/sub/b"), b"B").unwrap();
        std::fs::write(root.join("d/sub/c"), b"c").unwrap();
        std::fs::write(root.join("d/a"), b"A").unwrap();
        let v = verify(
            &host,
            &spec,
            &store,
            &VerifyOptions {
                only: Some(vec![PathBuf::from("/d/sub")]),
                ..VerifyOptions::default()
            },
        )
        .unwrap();
        let got: Vec<(String, ChangeKind)> = v
            .changes
            .iter()
            .map(|c| (c.path.display().to_string(), c.kind))
            .collect();
        assert_eq!(
            got,
            [
                ("/d/sub/b".to_owned(), ChangeKind::Modified),
                ("/d/sub/c".to_owned(), ChangeKind::Added),
            ]
        );
    }
}
