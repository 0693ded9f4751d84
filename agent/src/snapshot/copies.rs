//! Redacted copies of the configuration files that matter, under `host/<path>`, indexed in
//! `configs.json`.
//!
//! Which files: those the facts name (the kubelet's config and drop-ins, kubeconfigs, the
//! containerd config and its imports, environment files, and the regular files directly in
//! directories they name, such as the static pod manifests), the kubelet, containerd and
//! kube-proxy systemd units with their drop-ins, and every file the baseline's `config`-preset
//! watch sets govern. Only small text files are copied; each is read line by line and redacted
//! as it is read (the raw line buffer is zeroed), and the index keeps the original's size,
//! mode, owner, modification time and SHA-256, so a copy can be matched with the
//! file-integrity baseline although its secrets are gone. FIFOs and devices named like
//! configuration are reported, never opened.

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::SnapshotRequest;
use super::collect::{Ctx, JsonList, Shared};
use crate::files::{Preset, entry::hex};
use crate::host::{FileKind, HostError};
use crate::redact::Redactor;

/// Files taken from one directory the facts name, at most.
const PER_DIR: usize = 64;
/// Files copied in all, at most.
const MAX_FILES: usize = 5000;
/// The components whose systemd units are copied.
const UNITS: [&str; 3] = ["kubelet", "containerd", "kube-proxy"];
/// Where systemd looks for units, most specific first.
const UNIT_DIRS: [&str; 4] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];
/// Trees whose paths in the facts are not configuration (procfs, sysfs, devices).
const NOT_CONFIG: [&str; 3] = ["/proc/", "/sys/", "/dev/"];

/// Whether a path the facts name can be configuration: absolute, one word, not procfs,
/// sysfs or devices.
fn may_be_config(s: &str) -> bool {
    s.starts_with('/')
        && s.len() > 1
        && s.len() < 4096
        && !s.contains(char::is_whitespace)
        && !NOT_CONFIG
            .iter()
            .any(|p| s.starts_with(p) || s == p.trim_end_matches('/'))
}

/// Absolute paths among the string values of a facts tree.
fn paths_in(v: &Value, out: &mut Vec<PathBuf>) {
    match v {
        Value::String(s) if may_be_config(s) => {
            out.push(PathBuf::from(s));
        }
        Value::Array(a) => a.iter().for_each(|x| paths_in(x, out)),
        Value::Object(m) => {
            for (k, x) in m {
                // Keys can be paths too (`environmentFiles./etc/default/kubelet`).
                if k.starts_with('/') {
                    paths_in(&Value::String(k.clone()), out);
                }
                paths_in(x, out);
            }
        }
        _ => {}
    }
}

/// UTF-8 (a character cut at the end of the sample is fine) without NUL bytes.
fn looks_text(b: &[u8]) -> bool {
    !b.contains(&0)
        && match std::str::from_utf8(b) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none(),
        }
}

pub(super) fn configs(
    ctx: &mut Ctx<'_, '_>,
    shared: &mut Shared,
    req: &SnapshotRequest<'_>,
) -> io::Result<()> {
    const INDEX: &str = "configs.json";
    let host = req.host;
    let mut candidates: Vec<(PathBuf, String)> = Vec::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut push = |p: PathBuf, why: &str, c: &mut Vec<(PathBuf, String)>| {
        if seen.insert(p.clone()) {
            c.push((p, why.to_owned()));
        }
    };
    let mut index_notes: Vec<Value> = Vec::new();

    // 1. Named by the facts.
    let mut named = Vec::new();
    if let Some(f) = &shared.facts {
        for c in f.components.values() {
            paths_in(&c.facts, &mut named);
            for e in c.evidence.values() {
                if let Some(file) = &e.file
                    && may_be_config(file)
                {
                    named.push(PathBuf::from(file));
                }
            }
        }
    }
    named.sort();
    named.dedup();
    for p in named {
        match host.stat(&p) {
            Ok(m) if m.kind == FileKind::File => push(p, "named by the facts", &mut candidates),
            // A directory named by the facts (static pod manifests, CNI configs): its files,
            // but not a whole top-level tree (`/etc`, `/opt`).
            Ok(m) if m.kind == FileKind::Directory && p.components().count() > 2 => {
                if let Ok(entries) = host.read_dir(&p, 10_000) {
                    for e in entries
                        .into_iter()
                        .filter(|e| matches!(e.kind, Some(FileKind::File) | None))
                        .take(PER_DIR)
                    {
                        push(
                            p.join(&e.name),
                            "in a directory the facts name",
                            &mut candidates,
                        );
                    }
                }
            }
            Ok(m)
                if matches!(
                    m.kind,
                    FileKind::Fifo | FileKind::CharDevice | FileKind::BlockDevice
                ) =>
            {
                let path = p.display().to_string();
                ctx.error(
                    Some(&path),
                    format!("{path}: is a {}, not a regular file; not read", m.kind),
                );
                index_notes
                    .push(json!({"path": path, "note": format!("not copied: a {}", m.kind)}));
            }
            Ok(_) | Err(HostError::NotFound { .. }) => {}
            Err(e) => {
                ctx.error(Some(&p.display().to_string()), e.to_string());
            }
        }
    }

    // 2. The components' units and drop-ins.
    for unit in UNITS {
        for dir in UNIT_DIRS {
            let file = PathBuf::from(format!("{dir}/{unit}.service"));
            if host.exists(&file) {
                push(file, "systemd unit", &mut candidates);
            }
            let dropins = PathBuf::from(format!("{dir}/{unit}.service.d"));
            if let Ok(entries) = host.read_dir(&dropins, 1000) {
                for e in entries.into_iter().take(PER_DIR) {
                    push(dropins.join(&e.name), "systemd drop-in", &mut candidates);
                }
            }
        }
    }

    // 3. The `config` watch sets.
    let spec = req.baseline.watch_spec();
    if !spec.is_empty() {
        let mut walked = Vec::new();
        let mut special = Vec::new();
        let walk = crate::files::scan::walk_each(host, &spec, None, &mut |e, set| {
            if spec.sets[set].preset != Preset::Config {
                return;
            }
            match e.meta.kind {
                FileKind::File => walked.push((e.path, spec.sets[set].id.clone())),
                FileKind::Fifo | FileKind::CharDevice | FileKind::BlockDevice => {
                    special.push((e.path, e.meta.kind));
                }
                _ => {}
            }
        });
        for (p, set) in walked {
            push(p, &format!("watch set {set}"), &mut candidates);
        }
        for (p, kind) in special {
            let path = p.display().to_string();
            ctx.error(
                Some(&path),
                format!("{path}: is a {kind}, not a regular file; not read"),
            );
            index_notes.push(json!({"path": path, "note": format!("not copied: a {kind}")}));
        }
        for err in walk.errors.iter().take(100) {
            let path = err.path.display().to_string();
            ctx.error(Some(&path), format!("{path}: {}", err.reason));
        }
    }

    let mut copied = Vec::new();
    let mut left = 0usize;
    for (i, (path, why)) in candidates.iter().enumerate() {
        if ctx.expired() || i >= MAX_FILES {
            left = candidates.len() - i;
            break;
        }
        copied.push(copy_one(ctx, shared, req, path, why)?);
    }
    if left > 0 {
        ctx.out_of_time(INDEX, json!({ "files": left }));
    }
    let mut list = JsonList::new(ctx.room(INDEX), &Map::new(), "files");
    for item in copied.iter().chain(&index_notes) {
        list.push(item);
    }
    let bytes = list.finish(&Map::new());
    ctx.add(INDEX, &bytes)?;
    Ok(())
}

/// Copies one file, redacted; returns its index record.
fn copy_one(
    ctx: &mut Ctx<'_, '_>,
    shared: &mut Shared,
    req: &SnapshotRequest<'_>,
    path: &Path,
    why: &str,
) -> io::Result<Value> {
    let shown = path.display().to_string();
    let mut rec = json!({ "path": shown, "why": why });
    let (file, meta) = match req.host.open_file(path) {
        Ok(f) => f,
        Err(e) => {
            ctx.error(Some(&shown), e.to_string());
            rec["note"] = json!(format!("not copied: {e}"));
            return Ok(rec);
        }
    };
    rec["size"] = json!(meta.size);
    rec["mode"] = json!(meta.mode_octal());
    rec["uid"] = json!(meta.uid);
    rec["gid"] = json!(meta.gid);
    rec["mtime"] = json!(crate::clock::rfc3339_secs(meta.mtime));
    let max = req.limits.max_file_bytes;
    if meta.size > max {
        rec["note"] = json!(format!("not copied: larger than {max} bytes"));
        return Ok(rec);
    }
    let mut reader = BufReader::with_capacity(16 << 10, file.take(max + 1));
    let head = match reader.fill_buf() {
        Ok(h) => h,
        Err(e) => {
            ctx.error(Some(&shown), format!("{shown}: {e}"));
            rec["note"] = json!(format!("not copied: {e}"));
            return Ok(rec);
        }
    };
    if !looks_text(head) {
        rec["note"] = json!("not copied: not text");
        return Ok(rec);
    }
    let mut redactor = Redactor::for_path(path);
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut raw = Vec::new();
    let mut out = String::new();
    let mut read = 0u64;
    loop {
        raw.clear();
        let n = match reader.read_until(b'\n', &mut raw) {
            Ok(n) => n,
            Err(e) => {
                ctx.error(Some(&shown), format!("{shown}: {e}"));
                break;
            }
        };
        if n == 0 {
            break;
        }
        read += n as u64;
        digest.update(&raw);
        {
            let body = raw.strip_suffix(b"\n").unwrap_or(&raw);
            let nl = raw.len() > body.len();
            let text = String::from_utf8_lossy(body);
            if let Some(l) = redactor.line(&text) {
                out.push_str(&l);
                if nl {
                    out.push('\n');
                }
            }
        }
        // The raw line (a secret, perhaps) does not outlive its redaction.
        raw.fill(0);
    }
    if read > max {
        rec["note"] = json!(format!(
            "grew while read: only the first {max} bytes copied"
        ));
    } else {
        rec["sha256"] = json!(hex(digest.finish().as_ref()));
    }
    rec["redactions"] = json!(redactor.total());
    shared.count(&redactor);
    let entry = format!("host{}", path.to_string_lossy());
    if ctx.add(&entry, out.as_bytes())? {
        rec["entry"] = json!(entry);
    } else {
        rec["note"] = json!("not copied: no room left (trimmed)");
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_facts_skip_proc_and_words() {
        let v = json!({"a": "/etc/x", "b": ["/proc/1/cmdline", "not a /path"],
                       "environmentFiles": {"/etc/default/kubelet": {"k": "v"}}});
        let mut out = Vec::new();
        paths_in(&v, &mut out);
        assert_eq!(
            out,
            vec![
                PathBuf::from("/etc/x"),
                PathBuf::from("/etc/default/kubelet")
            ]
        );
        assert!(looks_text("é".as_bytes()));
        assert!(looks_text(&"é".as_bytes()[..1]));
        assert!(!looks_text(b"a\0b"));
    }
}
