//! File integrity: which files matter ([`spec`]), what they looked like when the baseline was
//! captured ([`store`]), and how they differ now ([`verify`]).
//!
//! A change is a finding of component `files` whose `path` is the file, until the file is back
//! to its baseline state or the change is accepted (`nodedrift baseline accept`). A burst of
//! changes to one file is one finding.

pub mod diff;
pub mod entry;
pub mod glob;
pub mod scan;
pub mod spec;
pub mod store;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::facts::Evidence;
use crate::finding::{Finding, Status};
use crate::host::{FileKind, HostRoot};
use entry::Entry;
pub use spec::{Attr, AttrSet, Preset, WatchSet, WatchSpec};
pub use store::{AcceptRecord, Store, StoreError, StoreInfo};
pub use verify::{Change, ChangeKind, Verification, VerifyOptions};

/// The component name of file-integrity findings.
pub const COMPONENT: &str = "files";

/// What a capture recorded.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaptureReport {
    pub store: StoreInfo,
    pub entries: usize,
    pub hashed: usize,
    pub hashed_bytes: u64,
    pub metadata_only: Vec<String>,
    pub errors: Vec<String>,
    pub missing_roots: Vec<String>,
    pub truncated: bool,
    #[serde(skip)]
    pub duration: Duration,
}

/// Chunks in flight between the walk, the hashing threads and the writer of a capture.
const QUEUE: usize = 8;
/// Entries per chunk of a capture.
const CHUNK_ENTRIES: usize = 128;
/// Bytes of file content per chunk of a capture (large files get a chunk of their own).
const CHUNK_BYTES: u64 = 8 << 20;

/// Progress callback of a long capture: (files hashed, of files (0 while unknown), bytes hashed).
pub type ProgressFn<'a> = &'a (dyn Fn(usize, usize, u64) + Sync);

/// Walks, hashes and records the whole baseline, replacing what the store held.
pub fn capture(
    host: &HostRoot,
    spec: &WatchSpec,
    store: &Store,
    progress: Option<ProgressFn<'_>>,
) -> Result<CaptureReport, StoreError> {
    let started = Instant::now();
    let counters = scan::Progress::default();
    let want_xattrs = spec.sets.iter().any(|s| s.attributes.has(Attr::Xattrs));
    let opts = scan::HashOptions {
        threads: spec.limits.threads,
        max_bytes: spec.limits.max_hash_bytes,
        want_xattrs,
        keep_text_below: spec.limits.max_diff_bytes,
    };
    let now = crate::clock::unix_now();
    let root = host.root().to_string_lossy().into_owned();
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut report = CaptureReport {
        store: StoreInfo {
            path: String::new(),
            entries: 0,
            digest: String::new(),
            captured_at: String::new(),
            spec: String::new(),
        },
        entries: 0,
        hashed: 0,
        hashed_bytes: 0,
        metadata_only: Vec::new(),
        errors: Vec::new(),
        missing_roots: Vec::new(),
        truncated: false,
        duration: Duration::ZERO,
    };
    let info = std::thread::scope(|s| {
        if let Some(p) = progress {
            let (c, d) = (&counters, &done);
            s.spawn(move || {
                while !d.load(Ordering::Relaxed) {
                    p(
                        c.files_done.load(Ordering::Relaxed),
                        0,
                        c.bytes_done.load(Ordering::Relaxed),
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
        }
        let r = store.capture_with(&spec.fingerprint(), &root, now, |w| {
            // A pipeline: one thread walks (in store-key order), `threads` threads hash, and
            // this thread writes into the open transaction. Bounded queues keep memory flat
            // whatever the size of the tree, and the walk and the writes overlap the hashing.
            let (to_hash, hash_rx) = std::sync::mpsc::sync_channel::<Vec<(Entry, usize)>>(QUEUE);
            let (to_write, write_rx) =
                std::sync::mpsc::sync_channel::<Vec<(Entry, Option<Vec<u8>>)>>(QUEUE);
            let hash_rx = std::sync::Arc::new(std::sync::Mutex::new(hash_rx));
            let walker = s.spawn(move || {
                // Chunks, not single entries: one hand-off per chunk keeps the threads from
                // switching once per file.
                let mut chunk = Vec::with_capacity(CHUNK_ENTRIES);
                let mut bytes = 0u64;
                let w = scan::walk_each(host, spec, None, &mut |e, set| {
                    bytes += e.meta.size;
                    chunk.push((e, set));
                    if chunk.len() >= CHUNK_ENTRIES || bytes >= CHUNK_BYTES {
                        bytes = 0;
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_ENTRIES));
                        let _ = to_hash.send(full);
                    }
                });
                if !chunk.is_empty() {
                    let _ = to_hash.send(chunk);
                }
                w
            });
            for _ in 0..opts.threads.clamp(1, 64) {
                let (rx, tx, counters) = (hash_rx.clone(), to_write.clone(), &counters);
                s.spawn(move || {
                    let mut buf = vec![0u8; scan::HASH_BUF];
                    loop {
                        let next = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok(chunk) = next else { return };
                        let mut out = Vec::with_capacity(chunk.len());
                        for (mut e, set) in chunk {
                            let mut text = None;
                            if e.meta.kind == FileKind::File
                                && spec.sets[set].attributes.has(Attr::Sha256)
                            {
                                let h =
                                    scan::hash_one(host, &e.path, &e.meta, opts, &mut buf, None);
                                e.digest = h.digest;
                                if opts.want_xattrs {
                                    e.xattrs = h.xattrs;
                                }
                                if let Some(m) = h.meta {
                                    e.meta = m;
                                }
                                text = h.text;
                                e.hashed_at = now;
                                counters.files_done.fetch_add(1, Ordering::Relaxed);
                                counters
                                    .bytes_done
                                    .fetch_add(e.meta.size, Ordering::Relaxed);
                            }
                            out.push((e, text));
                        }
                        if tx.send(out).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(to_write);
            let mut failed = None;
            for (e, text) in write_rx.into_iter().flatten() {
                if failed.is_some() {
                    continue; // drain, so that the other threads finish
                }
                if e.meta.kind == FileKind::File && e.hashed_at == now {
                    report.hashed += 1;
                    // Bytes actually read: files over the hashing cap, or unreadable, are not.
                    if matches!(e.digest, entry::Digest::Sha256(_)) {
                        report.hashed_bytes += e.meta.size;
                    }
                }
                match &e.digest {
                    entry::Digest::TooLarge => {
                        report.metadata_only.push(crate::host::display(&e.path));
                    }
                    entry::Digest::Unread(r) => report
                        .errors
                        .push(format!("{}: {r}", crate::host::display(&e.path))),
                    _ => {}
                }
                let r = w.put(&e).and_then(|()| match &text {
                    Some(t) => w.put_content(&e.path, t),
                    None => Ok(()),
                });
                if let Err(err) = r {
                    failed = Some(err);
                }
            }
            let walk = walker.join().map_err(|_| StoreError::Damaged {
                path: String::new(),
                detail: "the walk panicked".into(),
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            report.metadata_only.sort();
            report.entries = walk.count;
            report.truncated = walk.truncated;
            report.errors.extend(
                walk.errors
                    .iter()
                    .map(|e| format!("{}: {}", crate::host::display(&e.path), e.reason)),
            );
            report.missing_roots = walk
                .missing_roots
                .iter()
                .map(|p| crate::host::display(p))
                .collect();
            Ok(())
        });
        done.store(true, Ordering::Relaxed);
        r
    })?;
    if let Some(p) = progress {
        p(report.hashed, report.hashed, report.hashed_bytes);
    }
    report.store = info;
    report.duration = started.elapsed();
    Ok(report)
}

/// What `baseline accept` did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptReport {
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub record: AcceptRecord,
    pub store: StoreInfo,
}

/// Re-baselines `paths` (files, or directories with everything below them) to their current
/// state, recording who and why. Paths outside every watch set are an error: accepting them
/// would silently track nothing.
pub fn accept(
    host: &HostRoot,
    spec: &WatchSpec,
    store: &Store,
    paths: &[PathBuf],
    reason: &str,
    by: (String, u32),
) -> Result<AcceptReport, AcceptError> {
    if reason.trim().is_empty() {
        return Err(AcceptError::NoReason);
    }
    for p in paths {
        if !p.is_absolute() {
            return Err(AcceptError::NotWatched(crate::host::display(p)));
        }
        if spec.govern(p).is_none() && !spec.descend(p) && store.get(p)?.is_none() {
            return Err(AcceptError::NotWatched(crate::host::display(p)));
        }
    }
    let v = verify::verify(
        host,
        spec,
        store,
        &VerifyOptions {
            only: Some(paths.to_vec()),
            rehash_all: true,
            ..VerifyOptions::default()
        },
    )?;
    if let Some(e) = v.errors.first() {
        return Err(AcceptError::Unreadable(format!(
            "{}: {}",
            crate::host::display(&e.path),
            e.reason
        )));
    }
    let mut update = store::Update::default();
    let mut updated = Vec::new();
    let mut removed = Vec::new();
    let mut fresh: Vec<entry::Entry> = Vec::new();
    for c in &v.changes {
        match &c.after {
            Some(e) => {
                fresh.push(e.clone());
                updated.push(crate::host::display(&c.path));
                let text = (e.meta.kind == FileKind::File
                    && e.meta.mode & 0o004 != 0
                    && e.meta.size <= spec.limits.max_diff_bytes)
                    .then(|| host.read(&c.path, spec.limits.max_diff_bytes).ok())
                    .flatten()
                    .filter(|t| scan::is_text(t));
                update.content.push((c.path.clone(), text));
            }
            None => {
                update.remove.push(c.path.clone());
                update.content.push((c.path.clone(), None));
                removed.push(crate::host::display(&c.path));
            }
        }
    }
    update.upsert = fresh.iter().collect();
    let record = AcceptRecord {
        at: crate::clock::rfc3339(std::time::SystemTime::now()),
        paths: paths.iter().map(|p| crate::host::display(p)).collect(),
        reason: reason.trim().to_owned(),
        by: by.0,
        uid: by.1,
    };
    update.accept = Some(record.clone());
    store.update(&update)?;
    Ok(AcceptReport {
        updated,
        removed,
        record,
        store: store.info()?,
    })
}

/// Why an accept was refused.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("--reason must say why the change is approved")]
    NoReason,
    #[error("{0}: not in any file-integrity watch set (nothing to accept)")]
    NotWatched(String),
    #[error("{0}; nothing was accepted")]
    Unreadable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who did a change, as findings carry it.
pub type AttributionFn<'a> = &'a dyn Fn(&Path) -> Value;

/// The findings of a verification: one `fail` per changed path, one `unknown` per path that
/// could not be examined, and one `pass` per watch set without either.
pub fn findings(
    spec: &WatchSpec,
    v: &Verification,
    store: Option<&Store>,
    host: Option<&HostRoot>,
    attribution: AttributionFn<'_>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut failing = vec![false; spec.sets.len()];
    for c in &v.changes {
        let set = &spec.sets[c.set];
        failing[c.set] = true;
        let path = crate::host::display(&c.path);
        let what: Vec<String> = c
            .attributes
            .iter()
            .map(|a| format!("{} {} → {}", a.attribute, short(&a.before), short(&a.after)))
            .collect();
        let reason = match c.kind {
            ChangeKind::Modified => format!("modified: {}", what.join(", ")),
            ChangeKind::Added => "added since the baseline".to_owned(),
            ChangeKind::Removed => "removed since the baseline".to_owned(),
        };
        let diff = match (c.kind, store, host, &c.after) {
            (ChangeKind::Modified, Some(store), Some(host), Some(after))
                if after.meta.kind == FileKind::File
                    && c.attributes.iter().any(|a| a.attribute == Attr::Sha256) =>
            {
                text_diff(store, host, &c.path, spec.limits.max_diff_bytes)
            }
            _ => None,
        };
        let mut detail = json!({
            "change": c.kind.as_str(),
            "attributes": c.attributes,
            "set": set.id,
            "preset": set.preset.as_str(),
            "attribution": attribution(&c.path),
        });
        if let Some(d) = diff {
            detail["diff"] = json!(d);
        }
        out.push(Finding {
            rule: set.rule_id(),
            title: set.title.clone(),
            component: COMPONENT.into(),
            path,
            status: Status::Fail,
            severity: set.severity,
            expected: c
                .before
                .as_ref()
                .map(|e| e.attributes_json())
                .unwrap_or(json!({"absent": true})),
            actual: c
                .after
                .as_ref()
                .map(|e| e.attributes_json())
                .unwrap_or(Value::Null),
            reason: Some(reason),
            evidence: Evidence {
                file: Some(crate::host::display(&c.path)),
                pid: None,
                source: Some("file-integrity".into()),
            },
            policy: set.policy.clone(),
            remediation: set.remediation.clone(),
            detail: Some(detail),
        });
    }
    let mut unknown = vec![false; spec.sets.len()];
    for e in &v.errors {
        let Some(i) = spec.govern(&e.path).or_else(|| {
            spec.sets.iter().rposition(|s| {
                s.preset != Preset::Ignore
                    && s.patterns
                        .iter()
                        .any(|p| p.may_match_below(&e.path) || p.matches(&e.path))
            })
        }) else {
            continue;
        };
        unknown[i] = true;
        let set = &spec.sets[i];
        out.push(Finding {
            rule: set.rule_id(),
            title: set.title.clone(),
            component: COMPONENT.into(),
            path: crate::host::display(&e.path),
            status: Status::Unknown,
            severity: set.severity,
            expected: json!({"unchanged": true}),
            actual: Value::Null,
            reason: Some(e.reason.clone()),
            evidence: Evidence::file(crate::host::display(&e.path)),
            policy: set.policy.clone(),
            remediation: set.remediation.clone(),
            detail: None,
        });
    }
    if v.truncated {
        // The set governing the first entry left out (whose directory the reason names), else
        // the first set reported.
        let set = v
            .truncated_at
            .as_deref()
            .and_then(|p| spec.govern(p))
            .or_else(|| spec.sets.iter().position(|s| s.preset != Preset::Ignore))
            .unwrap_or(0);
        let stopped = v
            .truncated_at
            .as_deref()
            .and_then(Path::parent)
            .map(|d| format!(" in {}", crate::host::display(d)))
            .unwrap_or_default();
        if let Some(s) = spec.sets.get(set) {
            unknown[set] = true;
            out.push(Finding {
                rule: s.rule_id(),
                title: s.title.clone(),
                component: COMPONENT.into(),
                path: "(all)".into(),
                status: Status::Unknown,
                severity: s.severity,
                expected: json!({"entriesAtMost": spec.limits.max_entries}),
                actual: Value::Null,
                reason: Some(format!(
                    "the watched trees hold more than {} entries; the walk stopped there{stopped} and removals are not reported",
                    spec.limits.max_entries
                )),
                evidence: Evidence::default(),
                policy: s.policy.clone(),
                remediation: s.remediation.clone(),
                detail: None,
            });
        }
    }
    let quiet: std::collections::BTreeSet<String> = spec
        .sets
        .iter()
        .enumerate()
        .filter(|(i, _)| !failing[*i] && !unknown[*i])
        .map(|(_, s)| s.rule_id())
        .collect();
    out.extend(
        pass_findings(spec)
            .into_iter()
            .filter(|f| quiet.contains(&f.rule)),
    );
    out
}

/// One `pass` finding per tracked watch set (the daemon adds them for sets without a change).
pub fn pass_findings(spec: &WatchSpec) -> Vec<Finding> {
    spec.sets
        .iter()
        .filter(|s| s.preset != Preset::Ignore)
        .map(|set| Finding {
            rule: set.rule_id(),
            title: set.title.clone(),
            component: COMPONENT.into(),
            path: set
                .patterns
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            status: Status::Pass,
            severity: set.severity,
            expected: json!({"unchanged": true}),
            actual: json!({"unchanged": true}),
            reason: None,
            evidence: Evidence {
                file: None,
                pid: None,
                source: Some("file-integrity".into()),
            },
            policy: set.policy.clone(),
            remediation: set.remediation.clone(),
            detail: None,
        })
        .collect()
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            format!("{}…", &s[..12])
        }
        Value::String(s) => s.clone(),
        Value::Null => "none".into(),
        other => other.to_string(),
    }
}

/// A redacted diff of a text file against the content kept at capture time.
fn text_diff(store: &Store, host: &HostRoot, path: &Path, max: u64) -> Option<String> {
    let old = store.content(path).ok()??;
    let new = host.read(path, max).ok()?;
    if !scan::is_text(&new) {
        return None;
    }
    let (old, new) = (String::from_utf8(old).ok()?, String::from_utf8(new).ok()?);
    diff::unified(&old, &new, &crate::host::display(path))
}

/// The finding for a store that cannot be trusted.
pub fn store_finding(e: &StoreError) -> Finding {
    let path = match e {
        StoreError::Damaged { path, .. } | StoreError::Tampered { path, .. } => path.clone(),
        _ => String::new(),
    };
    Finding {
        rule: "files.store-integrity".into(),
        title: "The file-integrity baseline store is intact".into(),
        component: COMPONENT.into(),
        path: path.clone(),
        status: Status::Fail,
        severity: crate::baseline::Severity::Critical,
        expected: json!({"intact": true}),
        actual: json!({"intact": false}),
        reason: Some(e.to_string()),
        evidence: Evidence::file(path),
        policy: "aks/out-of-band-changes".into(),
        remediation: Some(
            "The store that holds the node's file baseline was modified or damaged outside \
             nodedrift, which hides file changes. Keep the file as evidence, investigate who \
             changed it, then re-capture on a known-good node (`nodedrift baseline capture --force`)."
                .into(),
        ),
        detail: None,
    }
}

/// The reason a one-shot check gives for not knowing who made a change.
pub fn unattributed_oneshot(_: &Path) -> Value {
    json!({
        "status": "unattributed",
        "reason": "found by a one-shot check: only the running agent (with fanotify) sees who writes a file"
    })
}
