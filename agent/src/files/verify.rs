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
use super::scan::{self, HashOptions, ScanError, Walk};
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
    /// Set when the store's watch-set fingerprint differs from the spec's.
    pub spec_changed: bool,
}

/// Verifies the host against the store.
pub fn verify(
    host: &HostRoot,
    spec: &WatchSpec,
    store: &Store,
    opts: &VerifyOptions,
) -> Result<Verification, StoreError> {
    let mut walk = scan::walk(host, spec, opts.only.as_deref());
    let in_scope = |p: &Path| match &opts.only {
        None => true,
        Some(only) => only.iter().any(|o| p.starts_with(o)),
    };
    let under_error =
        |p: &Path, errors: &[ScanError]| errors.iter().any(|e| p.starts_with(&e.path));
    let tracks_content = |set: usize| spec.sets[set].attributes.has(Attr::Sha256);

    // Merge: `prev[i]` is the stored entry of walk entry `i` when it must be compared after
    // hashing; `removed` holds stored entries the walk no longer sees.
    let mut prev: Vec<(usize, Entry)> = Vec::new();
    let mut removed: Vec<(usize, Entry)> = Vec::new();
    let mut need_hash: Vec<usize> = Vec::new();
    let mut seen = vec![false; walk.entries.len()];
    let keys: Vec<Vec<u8>> = walk.entries.iter().map(|e| entry::key(&e.path)).collect();
    let mut cursor = 0usize;
    let mut visit = |stored: Entry, walk: &mut Walk| {
        let k = entry::key(&stored.path);
        while cursor < keys.len() && keys[cursor] < k {
            cursor += 1;
        }
        if cursor < keys.len() && keys[cursor] == k {
            let i = cursor;
            seen[i] = true;
            let cur = &mut walk.entries[i];
            let set = walk.sets[i];
            let content = tracks_content(set) && cur.meta.kind == FileKind::File;
            let stamp_same = cur.meta.same_content_stamp(&stored.meta);
            if content
                && (opts.rehash_all || !stamp_same || !matches!(stored.digest, Digest::Sha256(_)))
            {
                need_hash.push(i);
                prev.push((i, stored));
                return;
            }
            if content {
                cur.digest = stored.digest.clone();
                cur.hashed_at = stored.hashed_at;
                if cur.meta.kind == FileKind::File {
                    cur.xattrs = stored.xattrs;
                }
            }
            if !differences(
                spec.sets[set].preset,
                spec.sets[set].attributes,
                &stored,
                cur,
            )
            .is_empty()
            {
                prev.push((i, stored));
            }
            return;
        }
        let p = stored.path.clone();
        if !in_scope(&p) {
            return;
        }
        if let Some(set) = spec.govern(&p) {
            removed.push((set, stored));
        }
    };
    let info = match &opts.only {
        None => store.scan(|e| visit(e, &mut walk))?,
        Some(only) => {
            let mut stored = Vec::new();
            for p in only {
                stored.extend(store.under(p)?);
            }
            stored.sort_by_key(|e| entry::key(&e.path));
            stored.dedup_by(|a, b| a.path == b.path);
            for e in stored {
                visit(e, &mut walk);
            }
            store.info()?
        }
    };
    // Added entries get hashed too, so the finding can show their digest.
    let added: Vec<usize> = (0..walk.entries.len()).filter(|i| !seen[*i]).collect();
    for &i in &added {
        if tracks_content(walk.sets[i]) && walk.entries[i].meta.kind == FileKind::File {
            need_hash.push(i);
        }
    }
    need_hash.sort_unstable();
    let hashed_bytes: u64 = need_hash.iter().map(|i| walk.entries[*i].meta.size).sum();
    let budget = (opts.bytes_per_sec > 0).then(|| scan::Budget::new(opts.bytes_per_sec));
    let want_xattrs = spec.sets.iter().any(|s| s.attributes.has(Attr::Xattrs));
    let now = crate::run::publish::now();
    scan::hash(
        host,
        &mut walk.entries,
        &need_hash,
        HashOptions {
            threads: spec.limits.threads,
            max_bytes: spec.limits.max_hash_bytes,
            want_xattrs,
            keep_text_below: 0,
        },
        budget.as_ref(),
        None,
    );
    for &i in &need_hash {
        walk.entries[i].hashed_at = now;
    }

    let mut out = Verification {
        store: Some(info.clone()),
        entries: walk.entries.len(),
        hashed: need_hash.len(),
        hashed_bytes,
        spec_changed: !info.spec.is_empty() && info.spec != spec.fingerprint(),
        ..Verification::default()
    };
    for (i, stored) in prev {
        let set = walk.sets[i];
        let cur = &walk.entries[i];
        let diffs = differences(
            spec.sets[set].preset,
            spec.sets[set].attributes,
            &stored,
            cur,
        );
        if !diffs.is_empty() {
            out.changes.push(Change {
                path: cur.path.clone(),
                kind: ChangeKind::Modified,
                set,
                attributes: diffs,
                before: Some(stored),
                after: Some(cur.clone()),
            });
        }
    }
    for i in added {
        out.changes.push(Change {
            path: walk.entries[i].path.clone(),
            kind: ChangeKind::Added,
            set: walk.sets[i],
            attributes: Vec::new(),
            before: None,
            after: Some(walk.entries[i].clone()),
        });
    }
    for (set, stored) in removed {
        if walk.truncated || under_error(&stored.path, &walk.errors) {
            continue; // not seen because the walk could not look, not because it is gone
        }
        out.changes.push(Change {
            path: stored.path.clone(),
            kind: ChangeKind::Removed,
            set,
            attributes: Vec::new(),
            before: Some(stored),
            after: None,
        });
    }
    out.changes.sort_by_key(|c| entry::key(&c.path));
    out.metadata_only = walk
        .entries
        .iter()
        .filter(|e| e.digest == Digest::TooLarge)
        .map(|e| e.path.clone())
        .collect();
    for e in &walk.entries {
        if let Digest::Unread(r) = &e.digest {
            out.errors.push(ScanError {
                path: e.path.clone(),
                reason: r.clone(),
            });
        }
    }
    out.errors.extend(walk.errors);
    out.dirs = walk.dirs;
    out.missing_roots = walk.missing_roots;
    out.truncated = walk.truncated;
    Ok(out)
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
