//! Recent kernel messages and the last lines of the kubelet, containerd and kube-proxy logs,
//! from plain-text files read from their END, and from journald's journal.
//!
//! At most [`super::Limits::log_scan_bytes`] are read from the end of a file (a sparse or
//! runaway multi-gigabyte log costs that much, never more); lines are filtered by program for
//! shared files (`/var/log/syslog`, `/var/log/messages`), redacted as they are read, and the
//! newest [`super::Limits::log_lines`] within [`super::Limits::log_minutes`] are kept. Times
//! are read from RFC 3339 (rsyslog, CRI container logs), traditional syslog and klog prefixes;
//! the last two carry no year or zone, which are taken from the file's modification time.
//!
//! The journal (`/var/log/journal`, `/run/log/journal`) is read by [`crate::journal`] (nothing
//! is run): the entries of `kubelet.service`, `containerd.service` and `kube-proxy.service`
//! (and the kernel's, `_TRANSPORT=kernel`), the newest [`super::Limits::log_lines`] of the
//! last [`super::Limits::log_minutes`], become `logs/<component>/journal.log`, written as
//! `journalctl -o short-iso` does, redacted like the files. Journal files that cannot be read,
//! and messages stored compressed (not read), are in `errors.json`. `/dev/kmsg` is a character
//! device, which the host reader never opens.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use super::SnapshotRequest;
use super::collect::{Ctx, Shared};
use crate::host::HostRoot;
use crate::journal::{self, Journal};
use crate::redact::Redactor;

/// Longest line kept; longer ones are cut.
const MAX_LINE: usize = 16 << 10;
/// Entries looked at in `/var/log/pods`.
const PODS_LIMIT: usize = 100_000;

/// Which lines of a source belong to the collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    All,
    /// Syslog lines of this program (`host prog[pid]: msg`).
    Program(&'static str),
}

#[derive(Debug, Clone)]
struct Source {
    /// `kubelet`, `kernel`, ...
    component: &'static str,
    origin: Origin,
}

/// Where a source's lines come from.
#[derive(Debug, Clone)]
enum Origin {
    File {
        path: PathBuf,
        filter: Filter,
    },
    /// The journal's entries with this field (`_SYSTEMD_UNIT=kubelet.service`).
    Journal {
        matching: String,
    },
}

impl Source {
    fn file(component: &'static str, path: impl Into<PathBuf>, filter: Filter) -> Self {
        Self {
            component,
            origin: Origin::File {
                path: path.into(),
                filter,
            },
        }
    }

    fn journal(component: &'static str, matching: String) -> Self {
        Self {
            component,
            origin: Origin::Journal { matching },
        }
    }

    /// The bundle entry of its lines.
    fn entry(&self) -> String {
        match &self.origin {
            Origin::File { path, .. } => {
                format!("logs/{}{}", self.component, path.to_string_lossy())
            }
            Origin::Journal { .. } => format!("logs/{}/journal.log", self.component),
        }
    }

    /// How the report and errors name it.
    fn name(&self) -> String {
        match &self.origin {
            Origin::File { path, .. } => path.display().to_string(),
            Origin::Journal { matching } => format!("journal: {matching}"),
        }
    }
}

/// What was read from one source (its record in `logs.json`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct SourceReport {
    component: String,
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    entry: Option<String>,
    /// The file's size; for the journal, the sizes of the files that hold the source.
    file_size: u64,
    /// Offset the read started at: everything before it was not read.
    read_from: u64,
    lines_read: u64,
    lines_matched: u64,
    lines_kept: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest_kept: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    newest_kept: Option<String>,
    /// `applied`, or why the minutes window could not be applied.
    time_window: String,
    /// Older lines left out for the size budget or cap (not for the line or minutes window).
    #[serde(skip)]
    trimmed_lines: u64,
    #[serde(skip)]
    trimmed_bytes: u64,
    /// The zone offset taken for times written without one.
    #[serde(skip)]
    zone_offset: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    /// The journal files that hold the source's entries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    journal_files: Vec<String>,
    /// What could not be read (path, error), for `errors.json`.
    #[serde(skip)]
    errors: Vec<(Option<String>, String)>,
}

/// A kept line with its time as written (no zone applied yet).
struct Line {
    text: String,
    /// Unix seconds as written, and whether the writer gave the zone (UTC or an offset).
    at: Option<(i64, bool)>,
}

fn month(s: &str) -> Option<u32> {
    const M: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    M.iter().position(|m| *m == s).map(|i| i as u32 + 1)
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `HH:MM:SS` at the start of `s`.
fn hms(s: &str) -> Option<(u32, u32, u32)> {
    let b = s.get(..8)?;
    let mut it = b.split(':');
    let (h, m, sec) = (num(it.next()?)?, num(it.next()?)?, num(it.next()?)?);
    (h < 24 && m < 60 && sec < 61).then_some((h, m, sec))
}

/// The time a log line starts with, and whether its zone is known. `year` fills in formats
/// without one.
fn line_time(line: &str, year: i64) -> Option<(i64, bool)> {
    let b = line.as_bytes();
    // RFC 3339: 2026-11-22T08:01:02[.frac](Z|±hh:mm)
    if b.len() >= 19 && b[4] == b'-' && b[7] == b'-' && (b[10] == b'T' || b[10] == b' ') {
        let y = i64::from(num(line.get(..4)?)?);
        let mo = num(line.get(5..7)?)?;
        let d = num(line.get(8..10)?)?;
        let (h, mi, s) = hms(line.get(11..)?)?;
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
            return None;
        }
        let mut t = crate::clock::unix_of(y, mo, d, h, mi, s);
        let rest = line.get(19..).unwrap_or("");
        let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
        let zoned = if rest.starts_with('Z') {
            true
        } else if let Some(sign) = rest.chars().next().filter(|c| *c == '+' || *c == '-') {
            let oh = num(rest.get(1..3)?)?;
            let om = num(rest.get(4..6).or(rest.get(3..5))?)?;
            let off = i64::from(oh * 3600 + om * 60);
            t -= if sign == '+' { off } else { -off };
            true
        } else {
            false
        };
        return Some((t, zoned));
    }
    // Syslog: "Nov 22 08:01:02 host prog[pid]: msg" (day space-padded).
    if let Some(mo) = line.get(..3).and_then(month) {
        let d = num(line.get(4..6)?.trim_start())?;
        let (h, mi, s) = hms(line.get(7..)?)?;
        return Some((crate::clock::unix_of(year, mo, d, h, mi, s), false));
    }
    // klog: "I1122 08:01:02.123456 1234 file.go:12] msg"
    if matches!(b.first(), Some(b'I' | b'W' | b'E' | b'F')) && b.len() > 14 && b[5] == b' ' {
        let mo = num(line.get(1..3)?)?;
        let d = num(line.get(3..5)?)?;
        let (h, mi, s) = hms(line.get(6..)?)?;
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
            return None;
        }
        return Some((crate::clock::unix_of(year, mo, d, h, mi, s), false));
    }
    None
}

/// The program of a syslog line (`Nov 22 08:01:02 host kubelet[1201]: msg` or with an
/// RFC 3339 stamp): the word after the host name, up to `[` or `:`.
fn program(line: &str) -> Option<&str> {
    let rest = if line.len() > 15 && line.get(..3).and_then(month).is_some() {
        line.get(16..)?
    } else {
        line.split_once(' ')?.1
    };
    let (_, rest) = rest.split_once(' ')?; // the host
    let end = rest.find(['[', ':', ' '])?;
    Some(&rest[..end])
}

/// The newest lines within a line count and a byte budget. Lines the budget pushes out are
/// counted as trimmed (those the line count pushes out are simply not among the newest).
struct Kept {
    lines: VecDeque<Line>,
    bytes: u64,
    max_lines: usize,
    budget: u64,
    /// The newest line left out for bytes, to tell trimming from the minutes window later.
    trimmed_newest: Option<Option<(i64, bool)>>,
}

impl Kept {
    fn new(max_lines: usize, budget: u64) -> Self {
        Self {
            lines: VecDeque::new(),
            bytes: 0,
            max_lines,
            budget,
            trimmed_newest: None,
        }
    }

    fn push(&mut self, line: Line, rep: &mut SourceReport) {
        self.bytes += line.text.len() as u64 + 1;
        self.lines.push_back(line);
        while self.lines.len() > self.max_lines || self.bytes > self.budget {
            let over_lines = self.lines.len() > self.max_lines;
            let Some(l) = self.lines.pop_front() else {
                break;
            };
            self.bytes -= l.text.len() as u64 + 1;
            if !over_lines {
                rep.trimmed_lines += 1;
                rep.trimmed_bytes += l.text.len() as u64 + 1;
                self.trimmed_newest = Some(l.at);
            }
        }
    }

    /// Applies the minutes window and finishes the report.
    fn finish(
        self,
        rep: &mut SourceReport,
        req: &SnapshotRequest<'_>,
        mtime: i64,
        now: i64,
    ) -> VecDeque<Line> {
        let mut kept = self.lines;
        let cutoff = apply_window(&mut kept, rep, req, mtime, now);
        // Lines cut for bytes that the minutes window would have dropped anyway were not
        // trimmed.
        if let (Some(Some((t, _))), Some((cutoff, offset))) = (self.trimmed_newest, cutoff)
            && t - offset < cutoff
        {
            rep.trimmed_lines = 0;
            rep.trimmed_bytes = 0;
        }
        kept
    }
}

/// Reads a source: the newest lines, redacted.
fn read_source(
    src: &Source,
    journal: Option<&Journal>,
    req: &SnapshotRequest<'_>,
    byte_budget: u64,
    shared: &mut Shared,
    ctx: &Ctx<'_, '_>,
) -> Result<(VecDeque<Line>, SourceReport), String> {
    match (&src.origin, journal) {
        (Origin::File { path, filter }, _) => {
            read_file(src, path, *filter, req, byte_budget, shared, ctx)
        }
        (Origin::Journal { matching }, Some(j)) => Ok(read_journal(
            j,
            src,
            matching,
            req,
            byte_budget,
            shared,
            ctx,
        )),
        (Origin::Journal { .. }, None) => Err("the journal was not opened".into()),
    }
}

/// Reads a file from its end: the newest lines that pass the filter, redacted.
fn read_file(
    src: &Source,
    path: &Path,
    filter: Filter,
    req: &SnapshotRequest<'_>,
    byte_budget: u64,
    shared: &mut Shared,
    ctx: &Ctx<'_, '_>,
) -> Result<(VecDeque<Line>, SourceReport), String> {
    let (file, meta) = req.host.open_file(path).map_err(|e| e.to_string())?;
    let mut rep = SourceReport {
        component: src.component.to_owned(),
        source: src.name(),
        file_size: meta.size,
        ..Default::default()
    };
    let start = meta.size.saturating_sub(req.limits.log_scan_bytes);
    rep.read_from = start;
    let mut file = file;
    file.seek(SeekFrom::Start(start))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = BufReader::with_capacity(64 << 10, file.take(req.limits.log_scan_bytes));
    let year = crate::clock::year_of(meta.mtime);
    let mut redactor = Redactor::new();
    let mut kept = Kept::new(req.limits.log_lines, byte_budget);
    let mut raw = Vec::new();
    let mut first = start > 0;
    loop {
        raw.clear();
        let (n, nul) =
            read_line(&mut reader, &mut raw).map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        // Started mid-line: that part is not a line (unless a NUL showed where it began).
        if std::mem::take(&mut first) && !nul {
            raw.fill(0);
            continue;
        }
        rep.lines_read += 1;
        if rep.lines_read % 4096 == 0 && ctx.expired() {
            rep.note = Some("the time budget stopped the read".into());
            break;
        }
        let body = raw.strip_suffix(b"\n").unwrap_or(&raw);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.is_empty() && nul {
            // Only a hole of a sparse file, or a zero-filled tail.
            continue;
        }
        let text = String::from_utf8_lossy(body);
        let matches = match filter {
            Filter::All => true,
            Filter::Program(p) => program(&text) == Some(p),
        };
        if matches {
            rep.lines_matched += 1;
            if let Some(red) = redactor.line(&text) {
                let red = red.into_owned();
                let line = Line {
                    at: line_time(&red, year),
                    text: red,
                };
                kept.push(line, &mut rep);
            }
        }
        drop(text);
        raw.fill(0);
    }
    shared.count(&redactor);
    let kept = kept.finish(&mut rep, req, meta.mtime, shared.now);
    Ok((kept, rep))
}

/// Reads the journal's entries with the field `matching`: the newest, oldest first, each
/// entry as `journalctl -o short-iso` writes it, redacted line by line in the order written.
fn read_journal(
    j: &Journal,
    src: &Source,
    matching: &str,
    req: &SnapshotRequest<'_>,
    byte_budget: u64,
    shared: &mut Shared,
    ctx: &Ctx<'_, '_>,
) -> (VecDeque<Line>, SourceReport) {
    let mut rep = SourceReport {
        component: src.component.to_owned(),
        source: src.name(),
        ..Default::default()
    };
    let window = i64::try_from(req.limits.log_minutes.saturating_mul(60)).unwrap_or(i64::MAX);
    let since = u64::try_from(shared.now.saturating_sub(window))
        .unwrap_or(0)
        .saturating_mul(1_000_000);
    let mut redactor = Redactor::new();
    let mut kept = Kept::new(req.limits.log_lines, byte_budget);
    let mut lines = 0u64;
    let tail = j.tail(
        matching,
        req.limits.log_lines,
        since,
        &|| ctx.expired(),
        &mut |e| {
            let at = Some((e.unix_secs(), true));
            // The message is redacted on its own, line by line across entries (a private key
            // printed to stdout is one entry per line), then prefixed.
            let prefix = e.prefix();
            let mut first = true;
            for l in e.message_lines() {
                lines += 1;
                if let Some(red) = redactor.line(&l) {
                    let text = if std::mem::take(&mut first) {
                        format!("{prefix}{red}")
                    } else {
                        format!("{}{red}", " ".repeat(prefix.chars().count()))
                    };
                    kept.push(Line { text, at }, &mut rep);
                }
                l.into_bytes().fill(0);
            }
        },
    );
    rep.lines_read = lines;
    rep.lines_matched = lines;
    rep.file_size = j
        .files()
        .iter()
        .filter(|f| tail.files_matched.contains(&f.path))
        .map(|f| f.size)
        .sum();
    rep.journal_files = tail.files_matched.clone();
    shared.count(&redactor);
    if tail.timed_out {
        rep.note = Some("the time budget stopped the read".into());
    }
    for e in &tail.errors {
        rep.errors
            .push((e.path().map(str::to_owned), e.to_string()));
    }
    if tail.errors_not_listed > 0 {
        rep.errors.push((
            None,
            format!(
                "{}: {} more journal errors not listed",
                src.name(),
                tail.errors_not_listed
            ),
        ));
    }
    if tail.compressed > 0 {
        rep.errors.push((
            Some(src.entry()),
            format!(
                "{}: {} entries with a compressed MESSAGE ({}), not read: nodedrift has no \
                 decompressor (journald compresses fields above its threshold, 512 bytes by \
                 default); they appear as <compressed message ...>",
                src.name(),
                tail.compressed,
                tail.compression.join(", ")
            ),
        ));
    }
    let kept = kept.finish(&mut rep, req, 0, shared.now);
    (kept, rep)
}

/// One line (with its `\n`), at most [`MAX_LINE`] bytes kept of it. NUL bytes (the holes of a
/// sparse file, a zero-filled tail after a crash) are not text: what follows the last one
/// starts the line afresh. Returns the bytes consumed (0 at the end) and whether a NUL was
/// seen.
fn read_line(r: &mut impl BufRead, out: &mut Vec<u8>) -> io::Result<(usize, bool)> {
    let mut total = 0;
    let mut nul = false;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok((total, nul));
        }
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let n = chunk.len();
        let text = match chunk.iter().rposition(|b| *b == 0) {
            Some(i) => {
                nul = true;
                out.fill(0);
                out.clear();
                &chunk[i + 1..]
            }
            None => chunk,
        };
        let room = MAX_LINE.saturating_sub(out.len());
        out.extend_from_slice(&text[..text.len().min(room)]);
        r.consume(n);
        total += n;
        if done {
            return Ok((total, nul));
        }
    }
}

/// Drops the lines older than the minutes window. Times without a zone (syslog, klog) are
/// local: the zone offset is estimated from the newest line against the file's modification
/// time (rounded to 15 minutes); when that is not plausible, UTC.
/// Returns the cutoff and the zone offset applied, when the window could be applied.
fn apply_window(
    kept: &mut VecDeque<Line>,
    rep: &mut SourceReport,
    req: &SnapshotRequest<'_>,
    mtime: i64,
    now: i64,
) -> Option<(i64, i64)> {
    let newest = kept.iter().rev().find_map(|l| l.at);
    let Some((newest_t, zoned)) = newest else {
        rep.time_window = "not applied: no timestamps".into();
        finish_report(kept, rep, 0);
        return None;
    };
    let offset = if zoned {
        0
    } else {
        let off = ((newest_t - mtime) as f64 / 900.0).round() as i64 * 900;
        if off.abs() <= 14 * 3600 { off } else { 0 }
    };
    let cutoff = now - i64::try_from(req.limits.log_minutes.saturating_mul(60)).unwrap_or(i64::MAX);
    let year_fix = |t: i64| {
        // A yearless stamp from December read in January belongs to the year before.
        if !zoned && t - offset > now + 86_400 {
            t - 365 * 86_400
        } else {
            t
        }
    };
    // A line without a time before the first kept one belongs to an older entry.
    while let Some(front) = kept.front() {
        if let Some((t, z)) = front.at {
            let utc = if z { t } else { year_fix(t) - offset };
            if utc >= cutoff {
                break;
            }
        }
        kept.pop_front();
    }
    rep.time_window = "applied".into();
    rep.zone_offset = offset;
    finish_report(kept, rep, offset);
    Some((cutoff, offset))
}

fn finish_report(kept: &VecDeque<Line>, rep: &mut SourceReport, offset: i64) {
    rep.lines_kept = kept.len() as u64;
    let stamp = |l: &Line| {
        l.at.map(|(t, z)| crate::clock::rfc3339_secs(if z { t } else { t - offset }))
    };
    rep.oldest_kept = kept.iter().find_map(stamp);
    rep.newest_kept = kept.iter().rev().find_map(stamp);
}

/// Writes the sources' lines as entries, sharing the room left fairly, and `<index>`.
fn write_sources(
    ctx: &mut Ctx<'_, '_>,
    shared: &mut Shared,
    req: &SnapshotRequest<'_>,
    sources: &[Source],
    journal: Option<&Journal>,
    index: &str,
) -> io::Result<Vec<SourceReport>> {
    let mut reports = Vec::new();
    for (i, src) in sources.iter().enumerate() {
        let entry = src.entry();
        // Fair share of what is left for this and the sources after it (the index's room
        // kept aside).
        let share = ctx.room(&entry).saturating_sub(64 << 10) / (sources.len() - i) as u64;
        if ctx.expired() {
            ctx.out_of_time(&entry, json!({ "sources": sources.len() - i }));
            break;
        }
        let (mut lines, mut rep) = match read_source(src, journal, req, share.max(1), shared, ctx) {
            Ok(x) => x,
            Err(e) => {
                ctx.error(Some(&src.name()), e);
                continue;
            }
        };
        for (path, e) in std::mem::take(&mut rep.errors) {
            ctx.error(path.as_deref(), e);
        }
        // What the cap and budgets leave: the oldest lines go first.
        let room = ctx.room(&entry);
        let mut total: u64 = lines.iter().map(|l| l.text.len() as u64 + 1).sum();
        let (mut dropped_lines, mut dropped_bytes) = (rep.trimmed_lines, rep.trimmed_bytes);
        while total > room {
            let Some(l) = lines.pop_front() else { break };
            total -= l.text.len() as u64 + 1;
            dropped_lines += 1;
            dropped_bytes += l.text.len() as u64 + 1;
        }
        if dropped_lines > 0 {
            let reason = ctx.limit_reason(&entry);
            ctx.trim(
                &entry,
                reason,
                json!({ "lines": dropped_lines, "bytes": dropped_bytes, "kept": "newest" }),
            );
            let offset = rep.zone_offset;
            finish_report(&lines, &mut rep, offset);
        }
        if !lines.is_empty() && ctx.add_lines(&entry, lines.iter().map(|l| l.text.as_str()))? {
            rep.entry = Some(entry);
        }
        reports.push(rep);
    }
    let v = json!({ "sources": reports });
    ctx.add_json(index, &v)?;
    Ok(reports)
}

/// The journal, when a journal directory holds files: what cannot be opened goes to
/// `errors.json`.
fn open_journal(ctx: &mut Ctx<'_, '_>, host: &HostRoot) -> Option<Journal> {
    let j = Journal::open(host);
    for e in &j.errors {
        ctx.error(e.path(), e.to_string());
    }
    if j.not_opened > 0 {
        ctx.error(
            None,
            format!(
                "{} older journal files not read (the {} most recently modified were)",
                j.not_opened,
                journal::MAX_FILES
            ),
        );
    }
    (!j.is_empty()).then_some(j)
}

pub(super) fn kernel(
    ctx: &mut Ctx<'_, '_>,
    shared: &mut Shared,
    req: &SnapshotRequest<'_>,
) -> io::Result<()> {
    let host = req.host;
    // The first of these that exists: they hold the same kernel lines on most systems.
    let candidates = [
        ("/var/log/kern.log", Filter::All),
        ("/var/log/messages", Filter::Program("kernel")),
        ("/var/log/syslog", Filter::Program("kernel")),
    ];
    let mut sources: Vec<Source> = candidates
        .iter()
        .find(|(p, _)| host.exists(Path::new(p)))
        .map(|(p, f)| Source::file("kernel", *p, *f))
        .into_iter()
        .collect();
    if host.exists(Path::new("/var/log/dmesg")) {
        sources.push(Source::file("kernel", "/var/log/dmesg", Filter::All));
    }
    let journal = open_journal(ctx, host);
    if journal.is_some() {
        sources.push(Source::journal("kernel", "_TRANSPORT=kernel".into()));
    }
    if sources.is_empty() {
        ctx.error(
            None,
            "no kernel log found (/var/log/kern.log, /var/log/messages, /var/log/syslog, \
             /var/log/dmesg, no journal files in /var/log/journal or /run/log/journal); \
             /dev/kmsg is a character device, which is never opened",
        );
    }
    write_sources(
        ctx,
        shared,
        req,
        &sources,
        journal.as_ref(),
        "logs/kernel.json",
    )?;
    Ok(())
}

/// The newest `N.log` of kube-proxy's pod logs (`/var/log/pods/kube-system_kube-proxy-*`), or
/// its `/var/log/containers` link.
fn kube_proxy_pod_logs(host: &HostRoot) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(pods) = host.read_dir(Path::new("/var/log/pods"), PODS_LIMIT) {
        for pod in pods {
            let name = pod.name.to_string_lossy();
            if !name.starts_with("kube-system_kube-proxy-") {
                continue;
            }
            let dir = Path::new("/var/log/pods")
                .join(&pod.name)
                .join("kube-proxy");
            let Ok(files) = host.read_dir(&dir, 1000) else {
                continue;
            };
            let newest = files
                .iter()
                .filter_map(|f| {
                    let n = f.name.to_str()?;
                    n.strip_suffix(".log")?.parse::<u32>().ok().map(|k| (k, n))
                })
                .max()
                .map(|(_, n)| dir.join(n));
            out.extend(newest);
        }
    }
    if out.is_empty()
        && let Ok(links) = host.read_dir(Path::new("/var/log/containers"), PODS_LIMIT)
    {
        out.extend(
            links
                .iter()
                .filter(|e| {
                    let n = e.name.to_string_lossy();
                    n.starts_with("kube-proxy-") && n.contains("_kube-system_kube-proxy-")
                })
                .map(|e| Path::new("/var/log/containers").join(&e.name)),
        );
    }
    out
}

pub(super) fn components(
    ctx: &mut Ctx<'_, '_>,
    shared: &mut Shared,
    req: &SnapshotRequest<'_>,
) -> io::Result<()> {
    let host = req.host;
    let journal = open_journal(ctx, host);
    let mut sources = Vec::new();
    for component in ["kubelet", "containerd", "kube-proxy"] {
        let mut found = Vec::new();
        for (p, f) in [
            (format!("/var/log/{component}.log"), Filter::All),
            ("/var/log/syslog".to_owned(), Filter::Program(component)),
            ("/var/log/messages".to_owned(), Filter::Program(component)),
        ] {
            if host.exists(Path::new(&p)) {
                found.push(Source::file(component, p, f));
            }
        }
        if component == "kube-proxy" {
            for p in kube_proxy_pod_logs(host) {
                found.push(Source::file(component, p, Filter::All));
            }
        }
        if journal.is_some() {
            found.push(Source::journal(
                component,
                format!("_SYSTEMD_UNIT={component}.service"),
            ));
        }
        if found.is_empty() {
            ctx.error(
                None,
                format!(
                    "no {component} log found (/var/log/{component}.log, \
                     /var/log/syslog, /var/log/messages{}; no journal files in \
                     /var/log/journal or /run/log/journal)",
                    if component == "kube-proxy" {
                        ", /var/log/pods/kube-system_kube-proxy-*, /var/log/containers"
                    } else {
                        ""
                    }
                ),
            );
        }
        sources.extend(found);
    }
    let reports = write_sources(
        ctx,
        shared,
        req,
        &sources,
        journal.as_ref(),
        "logs/components.json",
    )?;
    // A component whose shared-file sources matched nothing: say so.
    for component in ["kubelet", "containerd", "kube-proxy"] {
        let reps: Vec<&SourceReport> = reports
            .iter()
            .filter(|r| r.component == component)
            .collect();
        if !reps.is_empty() && reps.iter().all(|r| r.lines_matched == 0) {
            ctx.error(
                None,
                format!(
                    "no {component} lines in {} (within the last {} bytes of each file{})",
                    reps.iter()
                        .map(|r| r.source.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    req.limits.log_scan_bytes,
                    if journal.is_some() {
                        format!(
                            ", the last {} minutes of the journal",
                            req.limits.log_minutes
                        )
                    } else {
                        String::new()
                    }
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_times_in_the_formats_nodes_write() {
        let t = crate::clock::unix_of(2026, 11, 22, 8, 1, 2);
        assert_eq!(
            line_time("2026-11-22T08:01:02.123456+00:00 node kubelet[1]: x", 0),
            Some((t, true))
        );
        assert_eq!(
            line_time("2026-11-22T09:01:02+01:00 node kubelet[1]: x", 0),
            Some((t, true))
        );
        assert_eq!(
            line_time("2026-11-22T08:01:02.123456789Z stdout F msg", 0),
            Some((t, true))
        );
        assert_eq!(
            line_time("Nov 22 08:01:02 node kubelet[1]: x", 2026),
            Some((t, false))
        );
        assert_eq!(
            line_time("Nov  2 08:01:02 node kernel: x", 2026).map(|x| x.1),
            Some(false)
        );
        assert_eq!(
            line_time("I1122 08:01:02.123456    1201 x.go:1] m", 2026),
            Some((t, false))
        );
        assert_eq!(line_time("[    1.234567] Linux version", 2026), None);
        assert_eq!(line_time("", 2026), None);
    }

    #[test]
    fn syslog_programs() {
        assert_eq!(
            program("Nov 22 08:01:02 node kubelet[1201]: x"),
            Some("kubelet")
        );
        assert_eq!(
            program("Nov  2 08:01:02 node kernel: [1.2] y"),
            Some("kernel")
        );
        assert_eq!(
            program("2026-11-22T08:01:02.1+00:00 node containerd[9]: z"),
            Some("containerd")
        );
        assert_eq!(program("garbage"), None);
    }
}
