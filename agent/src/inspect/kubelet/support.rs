//! Helpers shared by the kubelet and kube-proxy inspectors: choosing among several processes,
//! turning a path a process was given into a host path, loading a component configuration
//! document, describing files (mode/owner), merging documents while remembering where each field
//! came from, and Go's duration syntax.
//!
//! Everything here reads the host through [`HostRoot`] and reports failures as text that names
//! the path, ready to become an `unknown` reason.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use procfs_core::FromRead;
use serde_json::{Map, Value, json};

use crate::facts::{ComponentFacts, Evidence};
use crate::host::{DEFAULT_READ_LIMIT, HostError, HostRoot, display, host_join};
use crate::inspect::Process;
use crate::inspect::process::Flags;

/// Upper bound for `/proc/<pid>/stat` and `/proc/<pid>/mountinfo` reads.
const PROC_FILE_LIMIT: u64 = 1 << 20;

/// How the inspected process was chosen among several candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selection {
    Only,
    /// All start times were readable: the one started first.
    EarliestStart,
    /// Some start time was unreadable (fixture trees, hidepid): the lowest pid.
    LowestPid,
}

impl Selection {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Only => "the only process found",
            Self::EarliestStart => "several processes found: inspecting the one started first",
            Self::LowestPid => {
                "several processes found and their start times are not all readable: inspecting the lowest pid"
            }
        }
    }
}

/// Picks the oldest of `procs` (non-empty): by start time when every start time can be read,
/// else by lowest pid.
pub(crate) fn select_oldest<'p>(
    host: &HostRoot,
    procs: &[&'p Process],
) -> Option<(&'p Process, Selection)> {
    match procs {
        [] => None,
        [only] => Some((only, Selection::Only)),
        _ => {
            let starts: Option<Vec<(u64, &Process)>> = procs
                .iter()
                .map(|p| start_time(host, p).map(|t| (t, *p)))
                .collect();
            match starts {
                Some(mut s) => {
                    s.sort_by_key(|(t, p)| (*t, p.pid));
                    s.first().map(|(_, p)| (*p, Selection::EarliestStart))
                }
                None => procs
                    .iter()
                    .min_by_key(|p| p.pid)
                    .map(|p| (*p, Selection::LowestPid)),
            }
        }
    }
}

fn start_time(host: &HostRoot, p: &Process) -> Option<u64> {
    let raw = host.read(&p.proc_path("stat"), PROC_FILE_LIMIT).ok()?;
    procfs_core::process::Stat::from_read(raw.as_slice())
        .ok()
        .map(|s| s.starttime)
}

/// True when `/proc/<pid>/cmdline` does not end with the NUL the kernel writes after the last
/// argument: the command line was cut (an old kernel's one-page limit, a process rewriting its
/// argv, a fixture written by hand), so the last argument may be incomplete.
pub(crate) fn cmdline_truncated(host: &HostRoot, p: &Process) -> bool {
    match host.read(&p.proc_path("cmdline"), 256 << 10) {
        Ok(raw) => !raw.is_empty() && raw.last() != Some(&0),
        Err(_) => false,
    }
}

/// How a path given to a process maps onto the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcessPath {
    /// The path as the process sees it, made absolute against its working directory.
    pub process_path: PathBuf,
    /// The same file as a host path.
    pub host_path: PathBuf,
    /// Set when the process has its own mount namespace and the path was translated through
    /// its mount table (a containerised kube-proxy).
    pub translated: bool,
}

/// Resolves `arg` (a path from a process's command line or config) to a host path: relative
/// paths are taken from the process's working directory (`/proc/<pid>/cwd`, itself read as
/// text and resolved inside the root again); a process in another mount namespace has its
/// path translated through its `/proc/<pid>/mountinfo` to where the host mounts the same
/// filesystem.
pub(crate) fn process_path(host: &HostRoot, p: &Process, arg: &str) -> Result<ProcessPath, String> {
    let arg_path = Path::new(arg);
    let absolute = if arg_path.is_absolute() {
        arg_path.to_path_buf()
    } else {
        let cwd = p.cwd(host).map_err(|e| {
            if e.is_not_found() {
                format!(
                    "{arg} is relative to the working directory of pid {}, which could not be read \
                     (the process may have exited while being inspected): {e}",
                    p.pid
                )
            } else {
                format!("{arg} is relative to the working directory of pid {}, which could not be read: {e}", p.pid)
            }
        })?;
        host_join(&cwd, arg_path)
    };
    match own_mount_namespace(host, p) {
        Some(true) => translate_through_mounts(host, p, &absolute).map(|host_path| ProcessPath {
            process_path: absolute,
            host_path,
            translated: true,
        }),
        _ => Ok(ProcessPath {
            host_path: absolute.clone(),
            process_path: absolute,
            translated: false,
        }),
    }
}

/// `Some(true)` when the process's mount namespace differs from that of pid 1 (the host's
/// init). `None` when either link cannot be read (fixture trees, no ptrace access): paths are
/// then taken as host paths.
fn own_mount_namespace(host: &HostRoot, p: &Process) -> Option<bool> {
    let mine = host.read_link(&p.proc_path("ns/mnt")).ok()?;
    let init = host.read_link(Path::new("/proc/1/ns/mnt")).ok()?;
    Some(mine != init)
}

fn read_mountinfo(
    host: &HostRoot,
    path: &Path,
) -> Result<procfs_core::process::MountInfos, String> {
    let raw = host
        .read(path, PROC_FILE_LIMIT)
        .map_err(|e| e.to_string())?;
    procfs_core::process::MountInfos::from_read(raw.as_slice())
        .map_err(|e| format!("{}: cannot parse: {e}", display(path)))
}

/// Maps `path` (in the process's mount namespace) to a host path: find the process's mount
/// holding it (longest mount point), then a host mount of the same filesystem whose root
/// contains that mount's root.
fn translate_through_mounts(host: &HostRoot, p: &Process, path: &Path) -> Result<PathBuf, String> {
    let own = read_mountinfo(host, &p.proc_path("mountinfo"))?;
    let hostm = read_mountinfo(host, Path::new("/proc/1/mountinfo"))?;
    let m = own
        .0
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.components().count())
        .ok_or_else(|| format!("{}: no mount of pid {} holds it", display(path), p.pid))?;
    let rest = path.strip_prefix(&m.mount_point).unwrap_or(path);
    let inner = Path::new(&m.root).join(rest);
    hostm
        .0
        .iter()
        .filter(|h| h.majmin == m.majmin)
        .filter_map(|h| {
            inner
                .strip_prefix(&h.root)
                .ok()
                .map(|tail| (h.root.len(), h.mount_point.join(tail)))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, p)| p)
        .ok_or_else(|| {
            format!(
                "{} is inside pid {}'s own mount namespace (device {}), which the host does not mount",
                display(path),
                p.pid,
                m.majmin
            )
        })
}

/// Reads a YAML or JSON configuration document (JSON is YAML) into a JSON object.
pub(crate) fn load_document(host: &HostRoot, path: &Path) -> Result<Map<String, Value>, String> {
    let text = host
        .read_string(path, DEFAULT_READ_LIMIT)
        .map_err(|e| e.to_string())?;
    parse_document(&text).map_err(|e| format!("{}: {e}", display(path)))
}

/// Parses one YAML/JSON document that must be a mapping.
pub(crate) fn parse_document(text: &str) -> Result<Map<String, Value>, String> {
    let v: Value = serde_norway::from_str(text).map_err(|e| format!("malformed YAML: {e}"))?;
    match v {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        other => Err(format!(
            "expected a mapping at the top level, found {}",
            json_kind(&other)
        )),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

/// Records `files.<role...>` as `{path, exists, kind, mode, uid, gid}` for a host file;
/// `exists: false` when it is missing, an unknown marker when it cannot be examined.
pub(crate) fn file_fact(cf: &mut ComponentFacts, role: &[&str], host: &HostRoot, path: &Path) {
    let mut at = vec!["files"];
    at.extend_from_slice(role);
    match host.stat(path) {
        Ok(meta) => cf.set(
            &at,
            json!({
                "path": display(path),
                "exists": true,
                "kind": meta.kind,
                "mode": meta.mode_octal(),
                "uid": meta.uid,
                "gid": meta.gid,
            }),
        ),
        Err(HostError::NotFound { .. }) => {
            cf.set(&at, json!({"path": display(path), "exists": false}))
        }
        Err(e) => cf.unknown(&at, e),
    }
    cf.evidence(&at, Evidence::file(display(path)).with_source("stat"));
}

/// Where one field of a merged configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Default,
    Config(String),
    Flag(u32),
}

impl Source {
    /// Evidence for a field of the effective configuration of process `pid`: every source
    /// names the process, a file source also the file.
    pub(crate) fn evidence(&self, pid: u32) -> Evidence {
        match self {
            Self::Default => Evidence::default().with_pid(pid).with_source("default"),
            Self::Config(file) => Evidence::file(file.clone())
                .with_pid(pid)
                .with_source("config"),
            Self::Flag(flag_pid) => Evidence::default().with_pid(*flag_pid).with_source("flag"),
        }
    }
}

/// A configuration document being assembled from defaults, files and flags, with the source
/// of every leaf field.
#[derive(Debug, Clone, Default)]
pub(crate) struct Merged {
    pub doc: Map<String, Value>,
    pub sources: BTreeMap<Vec<String>, Source>,
}

impl Merged {
    /// Sets the field at `path`, replacing whatever was there (and its sources).
    pub(crate) fn set(&mut self, path: &[&str], value: Value, source: Source) {
        let key: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
        self.push_down_ancestor_source(&key);
        self.remove_sources_under(&key);
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut cur = &mut self.doc;
        for seg in parents {
            let entry = cur
                .entry((*seg).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            let Value::Object(m) = entry else { return };
            cur = m;
        }
        cur.insert((*last).to_owned(), value);
        self.sources.insert(key, source);
    }

    /// Drops the sources of `key` and of every field under it. Those are one contiguous run
    /// of the map, starting at `key` (a path sorts after its prefixes and before any sibling
    /// that sorts after it), so this costs the run, not the map: a command line setting
    /// thousands of map entries (feature gates, labels) stays linear, not quadratic.
    fn remove_sources_under(&mut self, key: &[String]) {
        let under: Vec<Vec<String>> = self
            .sources
            .range::<[String], _>((Bound::Included(key), Bound::Unbounded))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(key))
            .cloned()
            .collect();
        for k in under {
            self.sources.remove(&k);
        }
    }

    /// The outermost field enclosing `key` (not `key` itself) that has a source of its own,
    /// and that source: what a path-ordered scan would find first, looked up prefix by prefix.
    fn outermost_sourced_ancestor(&self, key: &[String]) -> Option<(Vec<String>, Source)> {
        (0..key.len()).find_map(|n| {
            self.sources
                .get(&key[..n])
                .map(|s| (key[..n].to_vec(), s.clone()))
        })
    }

    /// An enclosing field recorded with one source (a whole map from a file) is about to have
    /// one member replaced: its other members keep that source, each on its own.
    fn push_down_ancestor_source(&mut self, key: &[String]) {
        let Some((anc, src)) = self.outermost_sourced_ancestor(key) else {
            return;
        };
        self.sources.remove(&anc);
        let mut at = anc;
        for seg in &key[at.len()..] {
            let refs: Vec<&str> = at.iter().map(String::as_str).collect();
            if let Some(Value::Object(m)) = self.get(&refs) {
                let siblings: Vec<String> = m.keys().filter(|k| *k != seg).cloned().collect();
                for sib in siblings {
                    let mut p = at.clone();
                    p.push(sib);
                    self.sources.insert(p, src.clone());
                }
            }
            at.push(seg.clone());
        }
    }

    /// The field at `path`, if set.
    pub(crate) fn get(&self, path: &[&str]) -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        rest.iter()
            .try_fold(self.doc.get(*first)?, |v, seg| v.get(*seg))
    }

    /// The source of the field at `path` (or of the closest enclosing field).
    pub(crate) fn source(&self, path: &[&str]) -> Option<&Source> {
        (0..=path.len()).rev().find_map(|n| {
            let key: Vec<String> = path[..n].iter().map(|s| (*s).to_owned()).collect();
            self.sources.get(&key)
        })
    }

    /// Overlays a document: objects merge key by key (recursively), anything else replaces.
    /// Fields under `replace_whole` (top-level names) replace the previous value as a whole,
    /// like maps the component defaults only when they are unset.
    pub(crate) fn overlay(
        &mut self,
        doc: &Map<String, Value>,
        source: &Source,
        replace_whole: &[&str],
    ) {
        for (k, v) in doc {
            if replace_whole.contains(&k.as_str()) {
                self.set_tree(std::slice::from_ref(k), v, source);
            } else {
                self.overlay_at(vec![k.clone()], v, source);
            }
        }
    }

    fn overlay_at(&mut self, path: Vec<String>, v: &Value, source: &Source) {
        match v {
            // `null` decodes to a nil pointer in Go: the field stays unset (defaulted).
            Value::Null => {}
            Value::Object(m) if !m.is_empty() => {
                let refs: Vec<&str> = path.iter().map(String::as_str).collect();
                if !matches!(self.get(&refs), Some(Value::Object(_))) {
                    self.set(&refs, Value::Object(Map::new()), source.clone());
                    let key: Vec<String> = path.clone();
                    self.sources.remove(&key);
                }
                for (k, child) in m {
                    let mut p = path.clone();
                    p.push(k.clone());
                    self.overlay_at(p, child, source);
                }
            }
            _ => {
                let refs: Vec<&str> = path.iter().map(String::as_str).collect();
                self.set(&refs, v.clone(), source.clone());
            }
        }
    }

    fn set_tree(&mut self, path: &[String], v: &Value, source: &Source) {
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        self.set(&refs, v.clone(), source.clone());
    }

    /// Go's defaulting treats the zero value of a non-pointer field as unset: for each dotted
    /// field in `fields` whose value is zero (`""`, `0`, a zero duration, `null`), the default
    /// from `defaults` is put back, with `default` as its source.
    pub(crate) fn default_zero_values(&mut self, defaults: &Map<String, Value>, fields: &[&str]) {
        for field in fields {
            let path: Vec<&str> = field.split('.').collect();
            let Some(first) = path.first() else { continue };
            let Some(default) = path[1..]
                .iter()
                .try_fold(defaults.get(*first), |v, seg| {
                    Ok::<_, ()>(v.and_then(|v| v.get(*seg)))
                })
                .ok()
                .flatten()
            else {
                continue;
            };
            if self.get(&path).is_some_and(is_zero) && self.source(&path) != Some(&Source::Default)
            {
                self.set(&path, default.clone(), Source::Default);
            }
        }
    }

    /// Writes the document under `root` and one evidence entry per sourced field (the
    /// effective configuration of process `pid`).
    pub(crate) fn record(&self, cf: &mut ComponentFacts, root: &str, pid: u32) {
        cf.set(&[root], Value::Object(self.doc.clone()));
        for (path, source) in &self.sources {
            let mut at: Vec<&str> = vec![root];
            at.extend(path.iter().map(String::as_str));
            cf.evidence(&at, source.evidence(pid));
        }
    }
}

/// The flag whose value is the last argument of a truncated command line (it may have been cut):
/// `--name=val...` or `--name val...` (a non-boolean flag followed by its value).
pub(crate) fn truncated_flag(args: &[String], is_bool: impl Fn(&str) -> bool) -> Option<String> {
    let last = args.last()?;
    let name_of = |a: &str| {
        a.strip_prefix("--")
            .or_else(|| a.strip_prefix('-'))
            .map(|b| b.split_once('=').map_or(b, |(n, _)| n).to_owned())
    };
    if last.starts_with('-') {
        return name_of(last);
    }
    let prev = args.len().checked_sub(2).and_then(|i| args.get(i))?;
    let name = name_of(prev)?;
    (!prev.contains('=') && !is_bool(&name)).then_some(name)
}

/// Records `flags.<name>` (the effective raw value: the last occurrence), `flagsRepeated.<name>`
/// (every value, for flags given more than once) and the evidence of each. `accumulates` says
/// which flags pflag accumulates (list and map flags) rather than overwrites.
pub(crate) fn record_flags(
    cf: &mut ComponentFacts,
    flags: &Flags,
    pid: u32,
    suspect: Option<&str>,
    cmdline: &Path,
    accumulates: impl Fn(&str) -> bool,
) {
    cf.set(&["flags"], Value::Object(Map::new()));
    for (name, values) in &flags.values {
        if suspect == Some(name.as_str()) {
            cf.unknown(
                &["flags", name],
                format!(
                    "{}: the command line is truncated and --{name} is its last argument; its value may be incomplete",
                    display(cmdline)
                ),
            );
        } else if let Some(last) = values.last() {
            cf.set(&["flags", name], last.clone());
        }
        cf.evidence(
            &["flags", name],
            Evidence::file(display(cmdline))
                .with_pid(pid)
                .with_source("flag"),
        );
        if values.len() > 1 {
            cf.set(
                &["flagsRepeated", name],
                Value::Array(values.iter().cloned().map(Value::String).collect()),
            );
            let how = if accumulates(name) {
                "flag given more than once: pflag accumulates the values of this list/map flag"
            } else {
                "flag given more than once: pflag keeps the last value"
            };
            cf.evidence(
                &["flagsRepeated", name],
                Evidence::file(display(cmdline))
                    .with_pid(pid)
                    .with_source(how),
            );
        }
    }
    if !flags.positional.is_empty() {
        cf.set(
            &["positionalArgs"],
            Value::Array(
                flags
                    .positional
                    .iter()
                    .cloned()
                    .map(Value::String)
                    .collect(),
            ),
        );
    }
}

/// The zero value of a Go field as it appears in a document.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty() || parse_go_duration(s) == Some(0),
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Parses a Go duration (`"4h"`, `"1m30s"`, `"1.5s"`, `"0"`) into nanoseconds.
pub(crate) fn parse_go_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_end);
        if num.is_empty() || num == "." {
            return None;
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut value = int.checked_mul(scale)?;
        if !frac.is_empty() {
            let digits: i128 = frac.parse().ok()?;
            let denom = 10i128.checked_pow(u32::try_from(frac.len()).ok()?)?;
            value = value.checked_add(digits.checked_mul(scale)? / denom)?;
        }
        total = total.checked_add(value)?;
        rest = next;
    }
    Some(if neg { -total } else { total })
}

/// Formats nanoseconds the way Go's `time.Duration.String` does (`"4h0m0s"`, `"1.5s"`,
/// `"100ms"`, `"0s"`), which is how the component itself prints its effective configuration.
pub(crate) fn format_go_duration(ns: i128) -> String {
    if ns == 0 {
        return "0s".to_owned();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    if u < 1_000_000_000 {
        let (scale, unit) = if u < 1_000 {
            (1, "ns")
        } else if u < 1_000_000 {
            (1_000, "µs")
        } else {
            (1_000_000, "ms")
        };
        return format!("{sign}{}{unit}", decimal(u, scale));
    }
    let hours = u / 3_600_000_000_000;
    let minutes = (u / 60_000_000_000) % 60;
    let secs = decimal(u % 60_000_000_000, 1_000_000_000);
    if hours > 0 {
        format!("{sign}{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{sign}{minutes}m{secs}s")
    } else {
        format!("{sign}{secs}s")
    }
}

/// `value / scale` with the fraction's trailing zeros trimmed (`1500, 1000` → `"1.5"`).
fn decimal(value: u128, scale: u128) -> String {
    let int = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return int.to_string();
    }
    let width = scale.to_string().len() - 1;
    let f = format!("{frac:0width$}");
    format!("{int}.{}", f.trim_end_matches('0'))
}

/// A Go duration in its canonical form, or `None` if it does not parse.
pub(crate) fn canonical_duration(s: &str) -> Option<String> {
    parse_go_duration(s).map(format_go_duration)
}

/// Splits a shell-like word list (`--a=b --c "d e"`): single and double quotes group, a
/// backslash escapes the next character. Used for flag variables in environment files.
pub(crate) fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    in_word = true;
                }
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_round_trip_like_go() {
        for (input, canonical) in [
            ("0", "0s"),
            ("0s", "0s"),
            ("4h", "4h0m0s"),
            ("4h0m0s", "4h0m0s"),
            ("5m", "5m0s"),
            ("90s", "1m30s"),
            ("1.5s", "1.5s"),
            ("100ms", "100ms"),
            ("1500us", "1.5ms"),
            ("-2m", "-2m0s"),
            ("1h30m", "1h30m0s"),
        ] {
            assert_eq!(
                canonical_duration(input).as_deref(),
                Some(canonical),
                "{input}"
            );
        }
        for bad in ["", "5", "4x", "h", "1..5s", "--1s"] {
            assert_eq!(canonical_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn go_bools() {
        assert_eq!(parse_go_bool("True"), Some(true));
        assert_eq!(parse_go_bool("0"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
    }

    #[test]
    fn shell_word_splitting() {
        assert_eq!(
            shell_words(r#"--a=b  --c "d e" --f='g h' x\ y"#),
            vec!["--a=b", "--c", "d e", "--f=g h", "x y"]
        );
        assert!(shell_words("   ").is_empty());
    }

    #[test]
    fn documents_must_be_mappings() {
        assert!(parse_document("a: 1").is_ok());
        assert!(parse_document("").unwrap().is_empty());
        assert!(parse_document("- a").unwrap_err().contains("sequence"));
        assert!(
            parse_document("a: [")
                .unwrap_err()
                .contains("malformed YAML")
        );
    }

    #[test]
    fn merge_tracks_sources_per_leaf() {
        let mut m = Merged::default();
        m.set(
            &["authentication", "webhook", "enabled"],
            json!(true),
            Source::Default,
        );
        m.set(
            &["evictionHard", "memory.available"],
            json!("100Mi"),
            Source::Default,
        );
        let file = parse_document(
            "authentication:\n  anonymous:\n    enabled: false\nevictionHard:\n  nodefs.available: 5%\n",
        )
        .unwrap();
        m.overlay(&file, &Source::Config("/c.yaml".into()), &["evictionHard"]);
        assert_eq!(
            m.get(&["authentication", "webhook", "enabled"]),
            Some(&json!(true))
        );
        assert_eq!(
            m.get(&["authentication", "anonymous", "enabled"]),
            Some(&json!(false))
        );
        assert_eq!(
            m.get(&["evictionHard"]),
            Some(&json!({"nodefs.available": "5%"}))
        );
        assert_eq!(
            m.source(&["authentication", "webhook", "enabled"]),
            Some(&Source::Default)
        );
        assert_eq!(
            m.source(&["authentication", "anonymous", "enabled"]),
            Some(&Source::Config("/c.yaml".into()))
        );
        m.set(
            &["authentication", "anonymous", "enabled"],
            json!(true),
            Source::Flag(7),
        );
        assert_eq!(
            m.source(&["authentication", "anonymous", "enabled"]),
            Some(&Source::Flag(7))
        );
    }

    /// The range lookups `set` uses agree with plain scans of the whole map (what they
    /// replaced) on random path sets, including paths that are prefixes of others.
    #[test]
    fn source_lookups_agree_with_full_scans() {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let segs = ["a", "b", "ab", "c", ""];
        let path = |rng: &mut fastrand::Rng| -> Vec<String> {
            (0..rng.usize(0..5))
                .map(|_| segs[rng.usize(0..segs.len())].to_owned())
                .collect()
        };
        for round in 0..200 {
            let mut m = Merged::default();
            for i in 0..rng.u32(0..40) {
                m.sources.insert(path(&mut rng), Source::Flag(i));
            }
            for _ in 0..20 {
                let key = path(&mut rng);
                let scanned = m
                    .sources
                    .iter()
                    .find(|(k, _)| k.len() < key.len() && key.starts_with(k))
                    .map(|(k, s)| (k.clone(), s.clone()));
                assert_eq!(
                    m.outermost_sourced_ancestor(&key),
                    scanned,
                    "{round} {key:?}"
                );
                let mut ranged = m.clone();
                ranged.remove_sources_under(&key);
                let mut retained = m.sources.clone();
                retained.retain(|k, _| !k.starts_with(&key));
                assert_eq!(ranged.sources, retained, "{round} {key:?}");
            }
        }
    }
}
