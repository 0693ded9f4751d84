//! The sysctl inspector: kernel parameters as the kernel runs them now (`/proc/sys`), as the
//! host persists them for the next boot (`sysctl.d`, `sysctl.conf`), and where the two differ.
//!
//! A runtime value that differs from the persisted one is drift in its own right: somebody ran
//! `sysctl -w` (or wrote to `/proc/sys`) out of band, and the change silently disappears at the
//! next reboot, or the persisted file was edited and never applied.
//!
//! # Which files, in which order
//!
//! Both programs that apply persisted sysctls at boot are modelled:
//!
//! * **systemd-sysctl** reads `*.conf` from `/etc/sysctl.d`, `/run/sysctl.d`,
//!   `/usr/local/lib/sysctl.d`, `/usr/lib/sysctl.d` and `/lib/sysctl.d`. A file name found in
//!   an earlier directory hides the same name in later ones; a file that is a symlink to
//!   `/dev/null` masks the name. The surviving files are applied sorted by file name, later
//!   files overriding earlier assignments. Entries that are not regular files (FIFOs,
//!   directories named `x.conf`, dangling links, link loops) are skipped by systemd and are
//!   listed here under `ignored`.
//! * **procps** `sysctl --system` (which AKS's provisioning runs, and which Debian's
//!   `procps.service` runs at boot) reads the same directories and then `/etc/sysctl.conf`
//!   *last*. systemd itself only reads `/etc/sysctl.conf` through the
//!   `/etc/sysctl.d/99-sysctl.conf` symlink that Debian and Ubuntu ship.
//!
//! The persisted view is therefore: systemd's rule for the directories, then
//! `/etc/sysctl.conf` applied last. A `sysctl.d` entry that *is* `/etc/sysctl.conf` (the
//! Debian symlink) is not read twice: its settings are attributed to `/etc/sysctl.conf`, the
//! file an operator edits, with the same effect on the final values.
//!
//! # Line syntax (sysctl.d(5))
//!
//! `key = value`; blank lines and lines starting with `#` or `;` are comments; a leading `-`
//! means "ignore failure to set"; `-key` without a value excludes a key from glob
//! assignments. Names use `.` or `/` as separator: when the first separator is a dot, dots and
//! slashes are interchanged (`net.ipv4.conf.eth0/100.forwarding` is
//! `/proc/sys/net/ipv4/conf/eth0.100/forwarding`); when it is a slash, dots are literal.
//! Globs (`net.ipv4.conf.*.rp_filter`) are expanded against the entries that exist in
//! `/proc/sys`, and never override a key that some file assigns explicitly. A later assignment
//! of the same name replaces an earlier one unless the value is identical (then the earlier
//! one is kept, as systemd does).
//!
//! Fact keys are the dotted spelling `sysctl -a` prints. A file that cannot be read (permission,
//! over the size bound) makes `persisted` and `mismatch` unknown: any key could be set there.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::facts::{ComponentFacts, Evidence, unknown_value};
use crate::host::{self, DEFAULT_READ_LIMIT, FileKind, HostError, HostRoot};

use super::Context;

pub const NAME: &str = "sysctl";

/// systemd-sysctl's search path, highest priority first.
const SYSCTL_D_DIRS: [&str; 5] = [
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
];

/// Applied last, as procps `sysctl --system` does.
const SYSCTL_CONF: &str = "/etc/sysctl.conf";

/// Entries listed per `sysctl.d` directory; real hosts have a few dozen.
const CONF_DIR_ENTRIES_LIMIT: usize = 4096;

/// Entries listed per `/proc/sys` directory during glob expansion (`net.ipv4.conf.*` has one
/// per interface; a node with thousands of veths stays well below this).
const PROC_SYS_ENTRIES_LIMIT: usize = 1 << 16;

/// Keys one glob may expand to before the expansion is declared unbounded.
const GLOB_MATCHES_LIMIT: usize = 1 << 16;

/// A sysctl value is at most a page or two; anything bigger is not a sysctl.
const RUNTIME_READ_LIMIT: u64 = 64 << 10;

/// Parse errors kept in the facts (a garbage file must not flood the report).
const PARSE_ERRORS_LIMIT: usize = 100;

/// A sysctl name in both spellings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SysctlName {
    /// The dotted spelling `sysctl -a` prints: `net.ipv4.conf.eth0/100.forwarding`.
    pub dotted: String,
    /// The path below `/proc/sys`: `net/ipv4/conf/eth0.100/forwarding`.
    pub path: String,
}

impl SysctlName {
    /// Parses a name in either spelling (sysctl.d(5): if the first separator is a dot, dots
    /// and slashes are interchanged; if it is a slash, dots are literal).
    pub fn parse(name: &str) -> Result<Self, String> {
        let name = name.trim();
        if name.is_empty() {
            return Err("empty sysctl name".to_owned());
        }
        if name.contains(|c: char| c.is_whitespace() || c == '\0') {
            return Err(format!("invalid sysctl name {name:?}: contains whitespace"));
        }
        let path = match name.find(['.', '/']) {
            Some(i) if name.as_bytes()[i] == b'.' => swap_separators(name),
            _ => name.to_owned(),
        };
        if path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(format!(
                "invalid sysctl name {name:?}: empty, '.' or '..' path component"
            ));
        }
        Ok(Self::from_path(path))
    }

    fn from_path(path: String) -> Self {
        Self {
            dotted: swap_separators(&path),
            path,
        }
    }

    /// The host path of the runtime value.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/sys/{}", self.path))
    }

    /// True when the name is a glob pattern (systemd's `string_is_glob`).
    pub fn is_glob(&self) -> bool {
        is_glob(&self.path)
    }
}

fn swap_separators(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '.' => '/',
            '/' => '.',
            c => c,
        })
        .collect()
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Collapses whitespace runs (the kernel separates multi-value sysctls with tabs) to single
/// spaces, so runtime and persisted spellings compare equal.
pub fn normalize_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One line of a sysctl configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Assignment {
    name: SysctlName,
    /// `None` for an exclusion (`-key` without a value).
    value: Option<String>,
    file: String,
    line: usize,
}

/// A line that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ParseError {
    file: String,
    line: usize,
    message: String,
}

/// Parses one file's text, appending its assignments and errors.
fn parse_conf(text: &str, file: &str, out: &mut Vec<Assignment>, errors: &mut Vec<ParseError>) {
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with(['#', ';']) {
            continue;
        }
        let (key, value) = match l.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().to_owned())),
            None => (l, None),
        };
        let (key, ignore_failure) = match key.strip_prefix('-') {
            Some(k) => (k.trim_start(), true),
            None => (key, false),
        };
        let err = |message: String| ParseError {
            file: file.to_owned(),
            line,
            message,
        };
        if value.is_none() && !ignore_failure {
            errors.push(err(format!(
                "not an assignment (expected key = value): {l:?}"
            )));
            continue;
        }
        match SysctlName::parse(key) {
            Ok(name) if value.is_none() && name.is_glob() => errors.push(err(format!(
                "an exclusion ('-name' without a value) cannot be a glob: {l:?}"
            ))),
            Ok(name) => out.push(Assignment {
                name,
                value,
                file: file.to_owned(),
                line,
            }),
            Err(e) => errors.push(err(e)),
        }
    }
}

/// Which file answers for one `sysctl.d` file name.
#[derive(Debug)]
enum Choice {
    File(PathBuf),
    /// Symlinked to `/dev/null`.
    Masked,
    /// The entry is `/etc/sysctl.conf` itself (Debian's `99-sysctl.conf` link).
    SysctlConf,
    /// Could not be examined; its contents could change any key.
    Unreadable,
}

/// Everything read from the persisted configuration.
#[derive(Debug, Default)]
struct Persisted {
    /// Files applied, in order.
    files: Vec<String>,
    /// `{file, reason}` for entries the boot-time tools skip.
    ignored: Vec<Value>,
    masked: Vec<String>,
    assignments: Vec<Assignment>,
    errors: Vec<ParseError>,
    /// Why the persisted view is incomplete, one reason per unreadable file or directory.
    unreadable: Vec<String>,
}

fn scan_persisted(host: &HostRoot) -> Persisted {
    let mut p = Persisted::default();
    let conf_id = host
        .stat(Path::new(SYSCTL_CONF))
        .ok()
        .filter(|m| m.kind == FileKind::File)
        .map(|m| (m.dev, m.ino));
    let mut chosen: BTreeMap<Vec<u8>, Choice> = BTreeMap::new();
    for dir in SYSCTL_D_DIRS {
        let entries = match host.read_dir(Path::new(dir), CONF_DIR_ENTRIES_LIMIT) {
            Ok(e) => e,
            Err(e) if e.is_not_found() => continue,
            Err(e @ HostError::NotADirectory { .. }) => {
                p.ignored
                    .push(json!({"file": dir, "reason": e.to_string()}));
                continue;
            }
            Err(e) => {
                p.unreadable.push(e.to_string());
                continue;
            }
        };
        for entry in entries {
            let name = entry.name.as_bytes().to_vec();
            if !name.ends_with(b".conf") || chosen.contains_key(&name) {
                continue;
            }
            let path = Path::new(dir).join(&entry.name);
            let shown = host::display(&path);
            if is_dev_null_link(host, &path) {
                p.masked.push(shown);
                chosen.insert(name, Choice::Masked);
                continue;
            }
            let choice = match host.stat(&path) {
                Ok(m) if m.kind == FileKind::File && Some((m.dev, m.ino)) == conf_id => {
                    Choice::SysctlConf
                }
                Ok(m) if m.kind == FileKind::File => Choice::File(path),
                Ok(m) if m.kind == FileKind::CharDevice => {
                    p.masked.push(shown);
                    Choice::Masked
                }
                Ok(m) => {
                    p.ignored.push(json!({
                        "file": shown,
                        "reason": format!("{shown}: is a {}, not a regular file; skipped at boot", m.kind),
                    }));
                    continue;
                }
                Err(e @ (HostError::NotFound { .. } | HostError::SymlinkLoop { .. })) => {
                    p.ignored
                        .push(json!({"file": shown, "reason": format!("{e}; skipped at boot")}));
                    continue;
                }
                Err(e) => {
                    p.unreadable.push(e.to_string());
                    Choice::Unreadable
                }
            };
            chosen.insert(name, choice);
        }
    }
    for choice in chosen.into_values() {
        if let Choice::File(path) = choice {
            read_conf(host, &path, &mut p);
        }
    }
    match host.stat(Path::new(SYSCTL_CONF)) {
        Ok(m) if m.kind == FileKind::File => read_conf(host, Path::new(SYSCTL_CONF), &mut p),
        Ok(m) => p.ignored.push(json!({
            "file": SYSCTL_CONF,
            "reason": format!("{SYSCTL_CONF}: is a {}, not a regular file; not read", m.kind),
        })),
        Err(e) if e.is_not_found() => {}
        Err(e) => p.unreadable.push(e.to_string()),
    }
    p
}

fn is_dev_null_link(host: &HostRoot, path: &Path) -> bool {
    host.lstat(path).is_ok_and(|m| m.kind == FileKind::Symlink)
        && host
            .read_link(path)
            .is_ok_and(|t| t == Path::new("/dev/null"))
}

fn read_conf(host: &HostRoot, path: &Path, p: &mut Persisted) {
    match host.read(path, DEFAULT_READ_LIMIT) {
        Ok(bytes) => {
            let shown = host::display(path);
            // Values are bytes to the kernel; a stray invalid byte must not hide the file.
            let text = String::from_utf8_lossy(&bytes);
            parse_conf(&text, &shown, &mut p.assignments, &mut p.errors);
            p.files.push(shown);
        }
        Err(e) => p.unreadable.push(e.to_string()),
    }
}

/// One persisted key after precedence and glob expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Effective {
    name: SysctlName,
    value: String,
    file: String,
    line: usize,
    /// The glob the value came from, in dotted spelling.
    pattern: Option<String>,
}

/// Applies systemd-sysctl's precedence: one entry per name, the latest assignment winning
/// (and moving to the end) unless it repeats the same value; globs expand against
/// `/proc/sys` and skip every name assigned or excluded explicitly.
fn resolve(
    host: &HostRoot,
    assignments: &[Assignment],
) -> Result<BTreeMap<String, Effective>, String> {
    let mut ordered: Vec<&Assignment> = Vec::new();
    for a in assignments {
        if let Some(i) = ordered.iter().position(|o| o.name.path == a.name.path) {
            if ordered[i].value == a.value {
                continue;
            }
            ordered.remove(i);
        }
        ordered.push(a);
    }
    let explicit: BTreeSet<&str> = ordered
        .iter()
        .filter(|a| !a.name.is_glob())
        .map(|a| a.name.path.as_str())
        .collect();
    let mut out = BTreeMap::new();
    for a in &ordered {
        let Some(value) = &a.value else { continue };
        let effective = |name: SysctlName, pattern: Option<String>| Effective {
            name,
            value: value.clone(),
            file: a.file.clone(),
            line: a.line,
            pattern,
        };
        if a.name.is_glob() {
            let matches = expand_glob(host, &a.name)
                .map_err(|e| format!("{}:{}: glob {}: {e}", a.file, a.line, a.name.dotted))?;
            for m in matches {
                if !explicit.contains(m.path.as_str()) {
                    out.insert(m.dotted.clone(), effective(m, Some(a.name.dotted.clone())));
                }
            }
        } else {
            out.insert(a.name.dotted.clone(), effective(a.name.clone(), None));
        }
    }
    Ok(out)
}

/// Expands a glob name against the entries that exist under `/proc/sys`, component by
/// component (a `*` never crosses a `/`, as with glob(3)).
fn expand_glob(host: &HostRoot, name: &SysctlName) -> Result<Vec<SysctlName>, String> {
    let comps: Vec<&str> = name.path.split('/').collect();
    let mut frontier: Vec<String> = vec![String::new()];
    for (i, comp) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let mut next = Vec::new();
        for prefix in &frontier {
            let join = |n: &str| {
                if prefix.is_empty() {
                    n.to_owned()
                } else {
                    format!("{prefix}/{n}")
                }
            };
            if !is_glob(comp) {
                next.push(join(comp));
                continue;
            }
            let dir = PathBuf::from(format!("/proc/sys/{prefix}"));
            let entries = match host.read_dir(&dir, PROC_SYS_ENTRIES_LIMIT) {
                Ok(e) => e,
                Err(e) if e.is_not_found() || matches!(e, HostError::NotADirectory { .. }) => {
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            };
            for e in entries {
                let Some(n) = e.name.to_str() else { continue };
                let wrong_kind = match e.kind {
                    Some(FileKind::File) => !last,
                    Some(FileKind::Directory) => last,
                    _ => false,
                };
                if !wrong_kind && glob_match(comp, n) {
                    next.push(join(n));
                }
            }
            if next.len() > GLOB_MATCHES_LIMIT {
                return Err(format!("matches more than {GLOB_MATCHES_LIMIT} keys"));
            }
        }
        frontier = next;
    }
    Ok(frontier
        .into_iter()
        .map(SysctlName::from_path)
        .filter(|n| {
            host.stat(&n.proc_path())
                .is_ok_and(|m| m.kind == FileKind::File)
        })
        .collect())
}

/// fnmatch(3) without flags: `*`, `?`, and bracket expressions with ranges and `!`/`^`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was and which name position it currently swallows up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => match match_bracket(&p[pi..], n[ni]) {
                Some((true, len)) => Some(pi + len),
                Some((false, _)) => None,
                // An unterminated bracket is a literal '['.
                None => (n[ni] == '[').then_some(pi + 1),
            },
            Some(c) => (*c == n[ni]).then_some(pi + 1),
            None => None,
        };
        match step {
            Some(next) => {
                pi = next;
                ni += 1;
            }
            None => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Matches `c` against the bracket expression at the start of `p`; returns whether it matched
/// and the expression's length, or `None` when the bracket is not closed.
fn match_bracket(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|h| *h != ']') {
            let hi = p[i + 2];
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
}

/// A runtime value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Runtime {
    Value(String),
    /// The kernel has no such key (module not loaded, interface gone, older kernel).
    Absent,
    Unknown(String),
}

fn read_runtime(host: &HostRoot, name: &SysctlName) -> Runtime {
    match host.read(&name.proc_path(), RUNTIME_READ_LIMIT) {
        Ok(bytes) => Runtime::Value(normalize_value(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.is_not_found() || matches!(e, HostError::NotADirectory { .. }) => {
            Runtime::Absent
        }
        Err(e) => Runtime::Unknown(e.to_string()),
    }
}

pub fn inspect(ctx: &Context<'_>) -> ComponentFacts {
    let host = ctx.host;
    let mut cf = ComponentFacts::new(NAME);
    let persisted = scan_persisted(host);
    let mut errors = persisted.errors.clone();

    // The keys to read at runtime: those the baseline names, and those persisted.
    let mut runtime_names: BTreeMap<String, SysctlName> = BTreeMap::new();
    let mut runtime = Map::new();
    for key in &ctx.options.sysctl_keys {
        match SysctlName::parse(key) {
            Ok(n) if n.is_glob() => match expand_glob(host, &n) {
                Ok(ms) => runtime_names.extend(ms.into_iter().map(|m| (m.dotted.clone(), m))),
                Err(e) => {
                    runtime.insert(
                        n.dotted.clone(),
                        unknown_value(format!("glob {}: {e}", n.dotted)),
                    );
                }
            },
            Ok(n) => {
                runtime_names.insert(n.dotted.clone(), n);
            }
            Err(e) => {
                runtime.insert(key.clone(), unknown_value(format!("baseline key: {e}")));
            }
        }
    }
    let effective = if persisted.unreadable.is_empty() {
        resolve(host, &persisted.assignments)
    } else {
        Err(format!(
            "{}; the persisted sysctls cannot be known while a configuration file is unreadable",
            persisted.unreadable.join("; ")
        ))
    };
    // Keys persisted in readable files are still worth reading at runtime, even when another
    // file makes the persisted view as a whole unknown.
    let persisted_names: Vec<SysctlName> = match &effective {
        Ok(eff) => eff.values().map(|e| e.name.clone()).collect(),
        Err(_) => persisted
            .assignments
            .iter()
            .filter(|a| !a.name.is_glob() && a.value.is_some())
            .map(|a| a.name.clone())
            .collect(),
    };
    runtime_names.extend(persisted_names.into_iter().map(|n| (n.dotted.clone(), n)));

    let mut values: BTreeMap<String, Runtime> = BTreeMap::new();
    for (dotted, name) in &runtime_names {
        let r = read_runtime(host, name);
        let file = host::display(&name.proc_path());
        match &r {
            Runtime::Value(v) => {
                runtime.insert(dotted.clone(), Value::String(v.clone()));
                cf.evidence(
                    &["runtime", dotted],
                    Evidence::file(file).with_source("runtime"),
                );
            }
            Runtime::Unknown(reason) => {
                runtime.insert(dotted.clone(), unknown_value(reason));
                cf.evidence(
                    &["runtime", dotted],
                    Evidence::file(file).with_source("runtime"),
                );
            }
            Runtime::Absent => {}
        }
        values.insert(dotted.clone(), r);
    }
    cf.set(&["runtime"], Value::Object(runtime));

    match effective {
        Ok(eff) => {
            let mut persisted_facts = Map::new();
            let mut mismatch = Map::new();
            for (dotted, e) in &eff {
                let mut entry = json!({"value": e.value, "file": e.file, "line": e.line});
                if let Some(p) = &e.pattern {
                    entry["pattern"] = Value::String(p.clone());
                }
                persisted_facts.insert(dotted.clone(), entry);
                cf.evidence(
                    &["persisted", dotted],
                    Evidence::file(&e.file).with_source("config"),
                );
                match values.get(dotted) {
                    Some(Runtime::Value(v)) if *v != normalize_value(&e.value) => {
                        mismatch.insert(
                            dotted.clone(),
                            json!({"runtime": v, "persisted": e.value, "file": e.file, "line": e.line}),
                        );
                        cf.evidence(
                            &["mismatch", dotted],
                            Evidence::file(host::display(&e.name.proc_path()))
                                .with_source("runtime"),
                        );
                    }
                    Some(Runtime::Unknown(reason)) => {
                        mismatch.insert(dotted.clone(), unknown_value(reason));
                    }
                    _ => {}
                }
            }
            cf.set(&["persisted"], Value::Object(persisted_facts));
            cf.set(&["mismatch"], Value::Object(mismatch));
        }
        Err(reason) => {
            cf.unknown(&["persisted"], &reason);
            cf.unknown(&["mismatch"], &reason);
        }
    }

    errors.truncate(PARSE_ERRORS_LIMIT);
    let errors: Vec<Value> = errors
        .iter()
        .map(|e| json!({"file": e.file, "line": e.line, "message": e.message}))
        .collect();
    cf.set(&["parseErrors"], Value::Array(errors));
    cf.set(&["files"], json!(persisted.files));
    cf.set(&["masked"], json!(persisted.masked));
    cf.set(&["ignored"], Value::Array(persisted.ignored));
    cf
}

#[cfg(test)]
mod tests;
