//! The collectors and the loop that runs them in order of value, each inside its budget.
//!
//! A collector never aborts the snapshot: what it cannot read is an error in `errors.json`,
//! what does not fit is trimmed (and recorded), a panic is caught and recorded. Only a failure
//! of the output itself (the writer) ends the snapshot.

use std::collections::BTreeMap;
use std::io;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::bundle::{Bundle, Trimmed};
use super::{Budget, SnapshotError, SnapshotOutcome, SnapshotRequest};
use crate::facts::Facts;
use crate::files::{self, Store, StoreError};
use crate::host::{FileKind, HostError, HostRoot};
use crate::redact;

/// Upper bound for the small `/proc` and `/etc` files read whole.
const SMALL_FILE: u64 = 4 << 20;
/// Outbox events listed in `ledger.json` at most.
const MAX_LEDGER_EVENTS: usize = 2000;
/// Sysctl directories walked below `/proc/sys`.
const SYSCTL_ROOTS: [&str; 4] = ["kernel", "net", "vm", "fs"];
/// One sysctl value read at most.
const SYSCTL_VALUE_LIMIT: u64 = 64 << 10;
/// Directory depth of the sysctl walk, and entries per directory.
const SYSCTL_DEPTH: usize = 8;
const DIR_LIMIT: usize = 100_000;
/// Unreadable sysctl keys named in the error (the rest are counted).
const SYSCTL_NAMED_ERRORS: usize = 20;

/// How one collector went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectorReport {
    pub name: String,
    pub duration_ms: u64,
    pub entries: usize,
    /// Uncompressed bytes of its entries.
    pub bytes: u64,
    pub errors: usize,
    /// `ok`, `partial` (errors or trimmed content) or `failed` (it stopped with an internal
    /// error).
    pub status: String,
    pub budget: Budget,
}

/// What a collector may use: the bundle, its budget, and a place for errors and trims.
pub(super) struct Ctx<'b, 'w> {
    bundle: &'b mut Bundle<'w>,
    pub name: &'static str,
    budget: Budget,
    started: Instant,
    used: u64,
    entries: usize,
    errors: usize,
    trimmed: usize,
}

impl Ctx<'_, '_> {
    /// True once the collector's time budget is spent.
    pub fn expired(&self) -> bool {
        self.started.elapsed() >= self.budget.time
    }

    /// The largest entry at `path` that fits both the collector's size budget and the cap.
    pub fn room(&self, path: &str) -> u64 {
        self.bundle
            .room(path)
            .min(self.budget.bytes.saturating_sub(self.used))
    }

    /// Which limit `room` is bound by.
    pub fn limit_reason(&self, path: &str) -> &'static str {
        if self.bundle.room(path) <= self.budget.bytes.saturating_sub(self.used) {
            "bundle size cap"
        } else {
            "collector size budget"
        }
    }

    /// Appends an entry; when it does not fit, nothing is written and the entry is recorded
    /// as trimmed. `Err` only when the output failed.
    pub fn add(&mut self, path: &str, data: &[u8]) -> io::Result<bool> {
        if data.len() as u64 > self.room(path) {
            let reason = self.limit_reason(path);
            self.trim(path, reason, json!({ "bytes": data.len() }));
            return Ok(false);
        }
        match self.bundle.append(path, data)? {
            Ok(()) => {
                self.used += data.len() as u64;
                self.entries += 1;
                Ok(true)
            }
            Err(_) => {
                let reason = self.limit_reason(path);
                self.trim(path, reason, json!({ "bytes": data.len() }));
                Ok(false)
            }
        }
    }

    /// Appends an entry made of lines (each followed by a newline) without joining them.
    pub fn add_lines<'l>(
        &mut self,
        path: &str,
        lines: impl Iterator<Item = &'l str> + Clone,
    ) -> io::Result<bool> {
        let size: u64 = lines.clone().map(|l| l.len() as u64 + 1).sum();
        if size > self.room(path) {
            let reason = self.limit_reason(path);
            self.trim(path, reason, json!({ "bytes": size }));
            return Ok(false);
        }
        let chunks = lines.flat_map(|l| [l.as_bytes(), b"\n".as_slice()]);
        match self.bundle.append_chunks(path, size, chunks)? {
            Ok(()) => {
                self.used += size;
                self.entries += 1;
                Ok(true)
            }
            Err(_) => {
                let reason = self.limit_reason(path);
                self.trim(path, reason, json!({ "bytes": size }));
                Ok(false)
            }
        }
    }

    /// Appends a JSON entry (pretty-printed).
    pub fn add_json(&mut self, path: &str, v: &impl Serialize) -> io::Result<bool> {
        match serde_json::to_vec_pretty(v) {
            Ok(mut b) => {
                b.push(b'\n');
                self.add(path, &b)
            }
            Err(e) => {
                self.error(Some(path), format!("cannot serialize: {e}"));
                Ok(false)
            }
        }
    }

    pub fn error(&mut self, path: Option<&str>, error: impl Into<String>) {
        self.errors += 1;
        self.bundle
            .error(self.name, path.map(str::to_owned), error.into());
    }

    pub fn trim(&mut self, entry: &str, reason: &str, dropped: Value) {
        self.trimmed += 1;
        self.bundle.trimmed(Trimmed {
            collector: self.name.to_owned(),
            entry: entry.to_owned(),
            reason: reason.to_owned(),
            dropped,
        });
    }

    /// Records that the time budget stopped the collector at `entry`.
    pub fn out_of_time(&mut self, entry: &str, dropped: Value) {
        let reason = format!(
            "collector time budget ({} ms)",
            self.budget.time.as_millis()
        );
        self.trim(entry, &reason, dropped);
    }

    fn report(&self, failed: bool) -> CollectorReport {
        let status = if failed {
            "failed"
        } else if self.errors > 0 || self.trimmed > 0 {
            "partial"
        } else {
            "ok"
        };
        CollectorReport {
            name: self.name.to_owned(),
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            entries: self.entries,
            bytes: self.used,
            errors: self.errors,
            status: status.to_owned(),
            budget: self.budget,
        }
    }
}

/// What collectors hand on to later ones.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub facts: Option<Facts>,
    /// (pid, comm) of every process the process collector listed, for the socket owners.
    pub pids: Vec<(u32, String)>,
    /// Secrets replaced, by kind (`json value` for values under secret keys).
    pub redactions: BTreeMap<String, u64>,
    pub now: i64,
}

impl Shared {
    pub fn count(&mut self, r: &redact::Redactor) {
        for (k, n) in r.counts() {
            *self.redactions.entry(k.to_owned()).or_default() += n;
        }
    }

    /// Redacts a JSON value and counts it.
    pub fn redact_json(&mut self, v: &mut Value) {
        let n = redact::json(v);
        if n > 0 {
            *self.redactions.entry("json value".into()).or_default() += n;
        }
    }
}

type Collector = fn(&mut Ctx<'_, '_>, &mut Shared, &SnapshotRequest<'_>) -> io::Result<()>;

/// Every collector, in order of value: when the cap bites, the last ones are cut.
const COLLECTORS: &[(&str, Collector)] = &[
    ("facts", facts),
    ("node", node),
    ("findings", findings),
    ("ledger", ledger),
    ("nodedrift", nodedrift),
    ("processes", super::procs::processes),
    ("sockets", super::procs::sockets),
    ("mounts", mounts),
    ("modules", modules),
    ("sysctl", sysctl),
    ("files", files_manifest),
    ("configs", super::copies::configs),
    ("kernel-log", super::logs::kernel),
    ("logs", super::logs::components),
];

/// The node as the manifest names it.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeIdentity {
    name: Option<String>,
    hostname: Option<String>,
    machine_id: Option<String>,
    boot_id: Option<String>,
    os: Option<String>,
    kernel: Option<String>,
}

fn identity(req: &SnapshotRequest<'_>) -> NodeIdentity {
    let read = |p: &str| {
        req.host
            .read_string(Path::new(p), 4096)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let os = read("/etc/os-release")
        .or_else(|| read("/usr/lib/os-release"))
        .and_then(|t| {
            let (vars, _) = crate::inspect::os::parse_os_release(&t);
            vars.get("PRETTY_NAME").cloned()
        });
    let hostname = read("/proc/sys/kernel/hostname").or_else(|| read("/etc/hostname"));
    NodeIdentity {
        name: req
            .node_name
            .map(str::to_owned)
            .or_else(|| hostname.clone()),
        hostname,
        machine_id: read("/etc/machine-id"),
        boot_id: read("/proc/sys/kernel/random/boot_id"),
        os,
        kernel: read("/proc/sys/kernel/osrelease"),
    }
}

/// Runs every collector into one bundle written to `out`.
pub(super) fn run(
    req: &SnapshotRequest<'_>,
    out: &mut dyn io::Write,
    started_at: SystemTime,
) -> Result<SnapshotOutcome, SnapshotError> {
    let started = Instant::now();
    let mtime = started_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let created_at = crate::clock::rfc3339(started_at);
    let node = identity(req);
    let mut bundle = Bundle::new(out, req.limits.max_bundle_bytes, mtime);
    let mut shared = Shared {
        now: i64::try_from(mtime).unwrap_or(i64::MAX),
        ..Shared::default()
    };
    let mut reports = Vec::new();
    for (name, collect) in COLLECTORS {
        if req.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(SnapshotError::Cancelled);
        }
        let mut ctx = Ctx {
            bundle: &mut bundle,
            name,
            budget: req.limits.budget(name),
            started: Instant::now(),
            used: 0,
            entries: 0,
            errors: 0,
            trimmed: 0,
        };
        let result =
            std::panic::catch_unwind(AssertUnwindSafe(|| collect(&mut ctx, &mut shared, req)));
        let failed = match result {
            Ok(Ok(())) => false,
            Ok(Err(e)) => return Err(SnapshotError::Write(e)),
            Err(_) => {
                ctx.error(None, "the collector failed internally (panic); see the log");
                true
            }
        };
        if ctx.expired() {
            let budget = ctx.budget.time.as_millis();
            ctx.error(
                None,
                format!("took longer than its time budget ({budget} ms); what it read is kept"),
            );
        }
        let report = ctx.report(failed);
        tracing::debug!(collector = name, duration_ms = report.duration_ms, bytes = report.bytes, status = %report.status, "Snapshot collector done.");
        reports.push(report);
    }

    let errors_json = serde_json::to_vec_pretty(&json!({
        "errors": bundle.errors,
        "notRecorded": bundle.errors_not_recorded,
    }))
    .unwrap_or_default();
    let completed_at = crate::clock::rfc3339(SystemTime::now());
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let errors = bundle.errors.clone();
    let trimmed = bundle.trimmed.clone();
    let not_recorded = bundle.errors_not_recorded;
    let manifest = |entries: &[super::EntryRecord]| {
        let mut b = serde_json::to_vec_pretty(&json!({
            "apiVersion": "nodedrift.dev/v1",
            "kind": "SnapshotManifest",
            "id": req.id,
            "nodedriftVersion": env!("CARGO_PKG_VERSION"),
            "createdAt": created_at,
            "completedAt": completed_at,
            "durationMs": duration_ms,
            "node": node,
            "hostRoot": req.host.root().display().to_string(),
            "limits": req.limits,
            "collectors": reports,
            "errors": errors,
            "errorsNotRecorded": not_recorded,
            "trimmed": trimmed,
            "redactions": shared.redactions,
            "entries": entries,
        }))
        .unwrap_or_default();
        b.push(b'\n');
        b
    };
    let (sha256, size, entries) = bundle
        .finish(&errors_json, manifest)
        .map_err(SnapshotError::Write)?;
    Ok(SnapshotOutcome {
        id: req.id.to_owned(),
        sha256,
        size,
        entries,
        collectors: reports,
        errors: errors.len(),
        trimmed,
        path: None,
        created_at,
    })
}

/// A JSON document `{head fields..., "<key>": [items, one per line], "notListed": n}` written
/// item by item within a byte limit, so a long list never exists as a `Value` tree.
pub(super) struct JsonList {
    buf: Vec<u8>,
    limit: u64,
    items: u64,
    pub dropped: u64,
}

/// Room kept for the closing fields of a [`JsonList`].
const LIST_TAIL: u64 = 4096;

impl JsonList {
    pub fn new(limit: u64, head: &Map<String, Value>, key: &str) -> Self {
        let mut buf = b"{\n".to_vec();
        for (k, v) in head {
            buf.extend_from_slice(
                format!(
                    "  {}: {},\n",
                    Value::String(k.clone()),
                    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
                )
                .as_bytes(),
            );
        }
        buf.extend_from_slice(format!("  {}: [", Value::String(key.to_owned())).as_bytes());
        Self {
            buf,
            limit,
            items: 0,
            dropped: 0,
        }
    }

    /// Adds an item; `false` (and counted as dropped) when the limit is reached.
    pub fn push(&mut self, item: &impl Serialize) -> bool {
        let Ok(s) = serde_json::to_vec(item) else {
            self.dropped += 1;
            return false;
        };
        let need = self.buf.len() as u64 + s.len() as u64 + 8 + LIST_TAIL;
        if self.dropped > 0 || need > self.limit {
            self.dropped += 1;
            return false;
        }
        self.buf.extend_from_slice(if self.items == 0 {
            b"\n    "
        } else {
            b",\n    "
        });
        self.buf.extend_from_slice(&s);
        self.items += 1;
        true
    }

    pub fn items(&self) -> u64 {
        self.items
    }

    pub fn finish(mut self, tail: &Map<String, Value>) -> Vec<u8> {
        self.buf.extend_from_slice(if self.items == 0 {
            b"],\n".as_slice()
        } else {
            b"\n  ],\n".as_slice()
        });
        for (k, v) in tail {
            self.buf.extend_from_slice(
                format!(
                    "  {}: {},\n",
                    Value::String(k.clone()),
                    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
                )
                .as_bytes(),
            );
        }
        self.buf
            .extend_from_slice(format!("  \"notListed\": {}\n}}\n", self.dropped).as_bytes());
        self.buf
    }
}

// ---------------------------------------------------------------------------------------------
// The collectors.

fn facts(ctx: &mut Ctx<'_, '_>, shared: &mut Shared, req: &SnapshotRequest<'_>) -> io::Result<()> {
    let mut opts = req.inspect.clone();
    opts.sysctl_keys.extend(req.baseline.sysctl_keys());
    let facts = crate::inspect::inspect(req.host, &opts, &[]);
    let mut v = serde_json::to_value(&facts.components).unwrap_or(Value::Null);
    shared.redact_json(&mut v);
    ctx.add_json("facts.json", &v)?;
    shared.facts = Some(facts);
    Ok(())
}

fn node(ctx: &mut Ctx<'_, '_>, shared: &mut Shared, req: &SnapshotRequest<'_>) -> io::Result<()> {
    let id = identity(req);
    let os = shared
        .facts
        .as_ref()
        .and_then(|f| f.components.get(crate::inspect::os::NAME))
        .map(|c| c.facts.clone())
        .unwrap_or(Value::Null);
    let pick = |k: &str| os.get(k).cloned().unwrap_or(Value::Null);
    let version = |c: &str| {
        shared
            .facts
            .as_ref()
            .and_then(|f| f.components.get(c))
            .and_then(|c| c.facts.get("version").cloned())
            .unwrap_or(Value::Null)
    };
    let mut v = json!({
        "name": id.name,
        "hostname": id.hostname,
        "machineId": id.machine_id,
        "bootId": id.boot_id,
        "bootTime": pick("bootTime"),
        "uptimeSeconds": pick("uptimeSeconds"),
        "os": pick("release"),
        "kernel": pick("kernel"),
        "nodeImage": pick("nodeImage"),
        "aks": pick("aks"),
        "azure": pick("azure"),
        "versions": {
            "kubelet": version(crate::inspect::kubelet::NAME),
            "containerd": version(crate::inspect::containerd::NAME),
            "kubeProxy": version(crate::inspect::kube_proxy::NAME),
            "nodedrift": env!("CARGO_PKG_VERSION"),
        },
        "hostRoot": req.host.root().display().to_string(),
        "takenAt": crate::clock::rfc3339_secs(shared.now),
    });
    shared.redact_json(&mut v);
    ctx.add_json("node.json", &v)?;
    Ok(())
}

fn findings(
    ctx: &mut Ctx<'_, '_>,
    shared: &mut Shared,
    req: &SnapshotRequest<'_>,
) -> io::Result<()> {
    let Some(facts) = shared.facts.as_ref() else {
        ctx.error(
            None,
            "no facts (the facts collector failed): nothing to evaluate",
        );
        return Ok(());
    };
    let mut findings = crate::baseline::evaluate(req.baseline, facts);
    let spec = req.baseline.watch_spec();
    let file_integrity = match req.state_dir {
        Some(dir) if !spec.is_empty() => {
            match crate::check::file_integrity(
                req.host,
                &spec,
                dir,
                Store::open_read_only(dir),
                false,
                &mut findings,
            ) {
                Ok(fi) => Some(fi),
                Err(e) => {
                    ctx.error(
                        Some("findings.json"),
                        format!("file integrity not verified: {e}"),
                    );
                    None
                }
            }
        }
        _ => None,
    };
    crate::check::sort_findings(&mut findings);
    let report = crate::check::CheckReport {
        api_version: "nodedrift.dev/v1",
        kind: "CheckReport",
        generated_at: crate::clock::rfc3339(SystemTime::now()),
        host_root: req.host.root().display().to_string(),
        profile: req.profile.clone(),
        baselines: req.baseline.layers.clone(),
        summary: crate::finding::Summary::of(&findings),
        findings,
        file_integrity,
        reboot: crate::inspect::reboot::RebootSummary::of(facts),
        facts: Facts::default(),
        duration: std::time::Duration::ZERO,
        warnings: Vec::new(),
    };
    let mut v = serde_json::to_value(&report).unwrap_or(Value::Null);
    shared.redact_json(&mut v);
    ctx.add_json("findings.json", &v)?;
    Ok(())
}

fn ledger(ctx: &mut Ctx<'_, '_>, shared: &mut Shared, req: &SnapshotRequest<'_>) -> io::Result<()> {
    let dump = match (req.ledger, req.state_dir) {
        (Some(l), _) => l.dump(MAX_LEDGER_EVENTS),
        (None, Some(dir)) => {
            if !dir.join(crate::ledger::FILE_NAME).exists() {
                ctx.error(
                    None,
                    format!(
                        "{}: no ledger (the agent has not run with this state directory)",
                        dir.join(crate::ledger::FILE_NAME).display()
                    ),
                );
                return Ok(());
            }
            crate::ledger::dump_read_only(dir, MAX_LEDGER_EVENTS)
        }
        (None, None) => {
            ctx.error(None, "no state directory given: no ledger history");
            return Ok(());
        }
    };
    let mut dump = match dump {
        Ok(d) => d,
        Err(e @ crate::ledger::LedgerError::Busy { .. }) => {
            ctx.error(
                None,
                format!("{e}: ask the agent for the snapshot to include the finding history"),
            );
            return Ok(());
        }
        Err(e) => {
            ctx.error(None, e.to_string());
            return Ok(());
        }
    };
    // Too big: the newest pending events go first (the oldest explain the backlog).
    let room = ctx.room("ledger.json");
    let mut dropped = 0u64;
    loop {
        let mut v = serde_json::to_value(&dump).unwrap_or(Value::Null);
        shared.redact_json(&mut v);
        let bytes = serde_json::to_vec_pretty(&v).unwrap_or_default();
        if bytes.len() as u64 <= room || dump.pending_events.is_empty() {
            if dropped > 0 {
                let reason = ctx.limit_reason("ledger.json");
                ctx.trim("ledger.json", reason, json!({ "items": dropped }));
            }
            ctx.add("ledger.json", &bytes)?;
            return Ok(());
        }
        let keep = dump.pending_events.len() / 2;
        dropped += (dump.pending_events.len() - keep) as u64;
        dump.pending_not_listed += (dump.pending_events.len() - keep) as u64;
        dump.pending_events.truncate(keep);
    }
}

fn nodedrift(
    ctx: &mut Ctx<'_, '_>,
    shared: &mut Shared,
    req: &SnapshotRequest<'_>,
) -> io::Result<()> {
    let mut config = json!({ "profile": req.profile, "config": req.config });
    shared.redact_json(&mut config);
    ctx.add_json("nodedrift/config.json", &config)?;
    let doc = req.baseline.to_document(&req.profile.name);
    match serde_norway::to_string(&doc) {
        Ok(text) => {
            let mut r = redact::Redactor::new();
            let red = redact_text(&mut r, &text);
            shared.count(&r);
            ctx.add("nodedrift/baseline.yaml", red.as_bytes())?;
        }
        Err(e) => ctx.error(Some("nodedrift/baseline.yaml"), e.to_string()),
    }
    Ok(())
}

/// Redacts a text held in memory (small generated documents).
pub(super) fn redact_text(r: &mut redact::Redactor, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if let Some(l) = r.line(line) {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

/// Reads a small host text file whole, redacted line by line; the raw bytes are zeroed.
pub(super) fn read_redacted(
    host: &HostRoot,
    path: &Path,
    limit: u64,
    shared: &mut Shared,
) -> Result<String, HostError> {
    let mut raw = host.read(path, limit)?;
    let mut r = redact::Redactor::for_path(path);
    let out = redact_text(&mut r, &String::from_utf8_lossy(&raw));
    raw.fill(0);
    shared.count(&r);
    Ok(out)
}

/// The first of `paths` that reads, with the errors of those that did not.
fn first_readable(
    host: &HostRoot,
    paths: &[&str],
    shared: &mut Shared,
) -> Result<(String, String), Vec<String>> {
    let mut errs = Vec::new();
    for p in paths {
        match read_redacted(host, Path::new(p), SMALL_FILE, shared) {
            Ok(t) => return Ok(((*p).to_owned(), t)),
            Err(e) => errs.push(e.to_string()),
        }
    }
    Err(errs)
}

fn mounts(ctx: &mut Ctx<'_, '_>, shared: &mut Shared, req: &SnapshotRequest<'_>) -> io::Result<()> {
    match first_readable(
        req.host,
        &["/proc/1/mountinfo", "/proc/self/mountinfo"],
        shared,
    ) {
        Ok((_, text)) => {
            ctx.add("mounts/mountinfo", text.as_bytes())?;
        }
        Err(errs) => ctx.error(Some("mounts/mountinfo"), errs.join("; ")),
    }
    Ok(())
}

fn modules(
    ctx: &mut Ctx<'_, '_>,
    shared: &mut Shared,
    req: &SnapshotRequest<'_>,
) -> io::Result<()> {
    match first_readable(req.host, &["/proc/modules"], shared) {
        Ok((_, text)) => {
            ctx.add("kernel/modules", text.as_bytes())?;
        }
        Err(errs) => ctx.error(Some("kernel/modules"), errs.join("; ")),
    }
    Ok(())
}

/// `/proc/sys/{kernel,net,vm,fs}` as `key = value` lines (what `sysctl -a` prints).
fn sysctl(ctx: &mut Ctx<'_, '_>, shared: &mut Shared, req: &SnapshotRequest<'_>) -> io::Result<()> {
    const ENTRY: &str = "sysctl.txt";
    let limit = ctx.room(ENTRY);
    let mut out = String::new();
    let mut unreadable: Vec<String> = Vec::new();
    let mut unreadable_count = 0usize;
    let mut keys = 0usize;
    let mut left_out = 0usize;
    let mut r = redact::Redactor::new();
    let mut stack: Vec<(PathBuf, usize)> = SYSCTL_ROOTS
        .iter()
        .rev()
        .map(|d| (PathBuf::from("/proc/sys").join(d), 0))
        .collect();
    let mut timed_out = false;
    while let Some((dir, depth)) = stack.pop() {
        if ctx.expired() {
            timed_out = true;
            break;
        }
        let entries = match req.host.read_dir(&dir, DIR_LIMIT) {
            Ok(e) => e,
            Err(e) if e.is_not_found() && depth == 0 => continue,
            Err(e) => {
                unreadable_count += 1;
                if unreadable.len() < SYSCTL_NAMED_ERRORS {
                    unreadable.push(e.to_string());
                }
                continue;
            }
        };
        let mut subdirs = Vec::new();
        for e in entries {
            let path = dir.join(&e.name);
            match e.kind {
                Some(FileKind::Directory) => {
                    if depth + 1 < SYSCTL_DEPTH {
                        subdirs.push((path, depth + 1));
                    }
                    continue;
                }
                Some(FileKind::File) | None => {}
                Some(_) => continue,
            }
            let value = match req.host.read(&path, SYSCTL_VALUE_LIMIT) {
                Ok(v) => v,
                Err(HostError::NotRegular {
                    kind: FileKind::Directory,
                    ..
                }) => {
                    subdirs.push((path, depth + 1));
                    continue;
                }
                Err(e) => {
                    unreadable_count += 1;
                    if unreadable.len() < SYSCTL_NAMED_ERRORS {
                        unreadable.push(e.to_string());
                    }
                    continue;
                }
            };
            let key = path
                .strip_prefix("/proc/sys")
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('/', ".");
            let text = String::from_utf8_lossy(&value);
            let text = text.trim_end().replace(['\n', '\t'], " ");
            let line = format!("{key} = {text}");
            let line = r.line(&line).map(|l| l.into_owned()).unwrap_or_default();
            if (out.len() + line.len() + 1) as u64 > limit {
                left_out += 1;
                continue;
            }
            out.push_str(&line);
            out.push('\n');
            keys += 1;
        }
        subdirs.reverse();
        stack.extend(subdirs);
    }
    shared.count(&r);
    if timed_out {
        ctx.out_of_time(ENTRY, json!({ "directories": stack.len() }));
    }
    if left_out > 0 {
        let reason = ctx.limit_reason(ENTRY);
        ctx.trim(ENTRY, reason, json!({ "keys": left_out }));
    }
    if unreadable_count > 0 {
        ctx.error(
            Some(ENTRY),
            format!(
                "{unreadable_count} keys not readable (write-only or denied): {}",
                unreadable.join("; ")
            ),
        );
    }
    if keys > 0 {
        ctx.add(ENTRY, out.as_bytes())?;
    }
    Ok(())
}

/// The file-integrity baseline: one line per path, no content.
fn files_manifest(
    ctx: &mut Ctx<'_, '_>,
    _shared: &mut Shared,
    req: &SnapshotRequest<'_>,
) -> io::Result<()> {
    const ENTRY: &str = "files/manifest.json";
    let Some(dir) = req.state_dir else {
        ctx.error(None, "no state directory given: no file-integrity baseline");
        return Ok(());
    };
    let store = match Store::open_read_only(dir) {
        Ok(s) => s,
        Err(e @ StoreError::NotCaptured { .. }) => {
            ctx.error(None, e.to_string());
            return Ok(());
        }
        Err(e) => {
            ctx.error(
                None,
                format!("the file-integrity store cannot be read: {e}"),
            );
            return Ok(());
        }
    };
    let mut head = Map::new();
    match store.info() {
        Ok(i) => {
            head.insert("store".into(), serde_json::to_value(i).unwrap_or_default());
        }
        Err(e) => ctx.error(Some(ENTRY), e.to_string()),
    }
    if let Ok(h) = store.host_root() {
        head.insert("hostRoot".into(), json!(h));
    }
    match store.accepts() {
        Ok(a) => {
            head.insert(
                "accepts".into(),
                serde_json::to_value(a).unwrap_or_default(),
            );
        }
        Err(e) => ctx.error(Some(ENTRY), e.to_string()),
    }
    let mut list = JsonList::new(ctx.room(ENTRY), &head, "entries");
    let mut it = match store.iter() {
        Ok(it) => it,
        Err(e) => {
            ctx.error(Some(ENTRY), e.to_string());
            return Ok(());
        }
    };
    let mut integrity = "verified".to_owned();
    let mut timed_out = false;
    loop {
        if ctx.expired() {
            timed_out = true;
            break;
        }
        match it.next_entry() {
            Ok(Some(e)) => {
                let mut item = json!({
                    "path": e.path.to_string_lossy(),
                    "kind": files::entry::kind_name(e.meta.kind),
                    "mode": format!("{:04o}", e.meta.mode),
                    "uid": e.meta.uid,
                    "gid": e.meta.gid,
                    "size": e.meta.size,
                });
                if e.meta.kind == FileKind::File {
                    item["sha256"] = e.digest.to_json();
                }
                if let Some(t) = &e.target {
                    item["target"] = json!(String::from_utf8_lossy(t));
                }
                list.push(&item);
            }
            Ok(None) => break,
            Err(e) => {
                integrity = format!("damaged: {e}");
                ctx.error(Some(ENTRY), e.to_string());
                break;
            }
        }
    }
    if timed_out {
        integrity = "not verified (time budget)".into();
        ctx.out_of_time(ENTRY, json!({ "items": list.dropped }));
    } else if integrity == "verified"
        && let Err(e) = it.finish()
    {
        integrity = format!("FAILED: {e}");
        ctx.error(Some(ENTRY), e.to_string());
    }
    let dropped = list.dropped;
    if dropped > 0 && !timed_out {
        let reason = ctx.limit_reason(ENTRY);
        ctx.trim(ENTRY, reason, json!({ "items": dropped }));
    }
    let mut tail = Map::new();
    tail.insert("integrity".into(), json!(integrity));
    let bytes = list.finish(&tail);
    ctx.add(ENTRY, &bytes)?;
    Ok(())
}
