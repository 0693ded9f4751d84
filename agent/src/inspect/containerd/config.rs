//! Loading containerd's configuration the way containerd does, and reducing it to the settings
//! that matter for a Kubernetes node.
//!
//! # Loading and `imports`
//!
//! containerd reads one TOML file (`--config`, default `/etc/containerd/config.toml`) and then
//! the files its `imports` name, breadth first and *transitively*: an imported file's own
//! `imports` are followed too, and a path already loaded is skipped, so `a → b → a` loads `a`
//! and `b` once each. (containerd 1.6, 1.7 and 2.x all do this; it is not limited to one
//! level.) A relative import is relative to the directory of the file that names it. A path
//! containing `*` is a glob (Go's `filepath.Glob`: `*`, `?`, `[...]`, sorted per directory,
//! I/O errors ignored); containerd 2.x resolves a relative glob against the importing file's
//! directory, 1.x against the daemon's working directory. Every path is resolved through
//! [`HostRoot`], so a symlinked import that points outside the root stays inside it.
//! A file that cannot be loaded — missing, unreadable, not a regular file, bad TOML, a key of
//! the wrong type — makes containerd refuse to start with the configuration, so here it makes
//! the whole merged configuration unknown (with the file, line and column), never partial.
//! A missing *main* file is fine when no `--config` flag was given: containerd then runs on
//! its built-in defaults.
//!
//! # Merging
//!
//! Top-level fields follow containerd's `mergeConfig` (mergo with override): a later file's
//! non-zero scalar replaces the earlier one (so `false`, `0` and `""` never override), lists
//! (`disabled_plugins`, `required_plugins`) are appended (2.x drops duplicates; 1.x keeps them,
//! which changes nothing for these sets), the small structs (`[grpc]`, `[ttrpc]`, `[debug]`,
//! ...) merge field by field the same way, and the maps `timeouts`, `proxy_plugins` and `stream_processors` are replaced key by key.
//! The `plugins` table is where the versions differ:
//!
//! * containerd 1.x ([`Strategy::ReplacePlugins`]) replaces a plugin's whole section: an import
//!   that sets only `[plugins."io.containerd.grpc.v1.cri".registry]` throws away everything
//!   the main file said about the CRI plugin (containerd issue #5837);
//! * containerd 2.x ([`Strategy::MergePlugins`], PR #9982) merges plugin sections recursively:
//!   tables merge key by key, any other value (including arrays, `false` and `""`) replaces.
//!
//! The inspector picks the strategy from the daemon's version when its API answers, or from a
//! config `version = 3` (only containerd 2.x accepts it); otherwise it evaluates both and keeps
//! only the settings on which they agree (see the inspector module).
//!
//! # Versions of the file format
//!
//! Version 1 (or no `version`) names plugins by their short id (`[plugins.cri]`); it is
//! migrated to the full URIs (`io.containerd.grpc.v1.cri`) with containerd's own table. Version 2
//! keeps the CRI settings in `io.containerd.grpc.v1.cri`; version 3 (containerd 2.x) splits
//! them between `io.containerd.cri.v1.runtime` and `io.containerd.cri.v1.images`.
//! [`normalize`] maps every version to the same fact names and fills in the defaults that are
//! the same in every containerd release (`SystemdCgroup = false`, snapshotter `overlayfs`, CNI
//! `/opt/cni/bin` and `/etc/cni/net.d`, runtime `runc`); the sandbox image's default changes
//! from release to release, so an unset one is reported unknown rather than guessed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};
use toml::{Table, Value};

use crate::host::{DEFAULT_READ_LIMIT, FileMeta, HostError, HostRoot};

/// containerd's default configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/containerd/config.toml";

/// containerd's default gRPC socket (`defaults.DefaultAddress`).
pub const DEFAULT_ADDRESS: &str = "/run/containerd/containerd.sock";

/// Upper bound on configuration files loaded through `imports` (globs included): far above
/// any real drop-in directory, low enough that a hostile glob costs little.
const MAX_CONFIG_FILES: usize = 256;

/// Upper bound on entries of one directory scanned while expanding a glob.
const GLOB_DIR_LIMIT: usize = 4096;

/// The CRI plugin ids: 1.x and 2.x's gRPC service, and 2.x's runtime and image plugins.
pub const CRI_GRPC: &str = "io.containerd.grpc.v1.cri";
pub const CRI_RUNTIME: &str = "io.containerd.cri.v1.runtime";
pub const CRI_IMAGES: &str = "io.containerd.cri.v1.images";

/// The containerd 2.x server plugin that holds the gRPC address from config version 4 on.
const SERVER_GRPC: &str = "io.containerd.server.v1.grpc";

/// The highest config `version` whose layout this module knows (containerd 2.2's).
const NEWEST_CONFIG_VERSION: i64 = 4;

/// How `plugins` sections of imported files combine with earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// containerd 1.x: a plugin's section is replaced as a whole.
    ReplacePlugins,
    /// containerd 2.x: plugin sections are merged recursively.
    MergePlugins,
}

impl Strategy {
    /// The fact value naming this strategy.
    pub fn name(self) -> &'static str {
        match self {
            Self::ReplacePlugins => "replace-plugin-sections",
            Self::MergePlugins => "merge-plugin-sections",
        }
    }
}

/// Why the configuration could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("{path}: invalid TOML at line {line}, column {column}: {message}")]
    Toml {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: invalid TOML: {message}")]
    TomlNoPosition { path: String, message: String },
    #[error("{path}: key `{key}` must be {expected}; containerd would refuse this file")]
    Type {
        path: String,
        key: String,
        expected: &'static str,
    },
    #[error("{path}: imports pattern {pattern:?} is malformed")]
    BadPattern { path: String, pattern: String },
    #[error(
        "{path}: config version {version} is newer than this inspector understands (up to {NEWEST_CONFIG_VERSION})"
    )]
    UnknownVersion { path: String, version: i64 },
    #[error(
        "{path}: {key} entry {name:?} is not a plugin URI (io.containerd.<type>.<id>); containerd would refuse this configuration"
    )]
    PluginUri {
        path: String,
        key: &'static str,
        name: String,
    },
    #[error("{path}: imports name more than {MAX_CONFIG_FILES} files; not loaded")]
    TooManyFiles { path: String },
}

/// One configuration file that was loaded.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// The host path, as containerd would name it (cleaned, absolute).
    pub path: String,
    pub meta: FileMeta,
    /// The file's own `version`, 0 when it has none.
    pub version: i64,
    /// The file's table after plugin-name migration (used to tell which file set a value).
    pub table: Table,
}

/// The result of loading a configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The main file's path (whether or not it exists).
    pub main: String,
    /// Files in load order; empty when the main file does not exist.
    pub files: Vec<ConfigFile>,
    /// The merged configuration, plugin names migrated to full URIs.
    pub merged: Table,
    /// The merged `version`, 1 when no file gives one (containerd's own default).
    pub version: i64,
}

/// Loads `main` and its imports. `explicit` says the path came from `--config` (then a missing
/// file is an error, as it is for containerd); `cwd` is the daemon's working directory, used by
/// containerd 1.x for relative globs.
pub fn load(
    host: &HostRoot,
    main: &Path,
    explicit: bool,
    cwd: &Path,
    strategy: Strategy,
) -> Result<Loaded, ConfigError> {
    let main_path = clean(&cwd.join(main).to_string_lossy());
    let mut loaded: BTreeSet<String> = BTreeSet::new();
    let mut pending: std::collections::VecDeque<String> = [main_path.clone()].into();
    let mut raw_files: Vec<(String, FileMeta, Table)> = Vec::new();
    while let Some(path) = pending.pop_front() {
        if loaded.contains(&path) {
            continue;
        }
        if loaded.len() == MAX_CONFIG_FILES {
            return Err(ConfigError::TooManyFiles { path: main_path });
        }
        let (meta, table) = match read_toml(host, Path::new(&path)) {
            Ok(r) => r,
            Err(ConfigError::Host(e)) if e.is_not_found() && raw_files.is_empty() && !explicit => {
                return Ok(Loaded {
                    main: main_path,
                    files: Vec::new(),
                    merged: Table::new(),
                    version: 1,
                });
            }
            Err(e) => return Err(e),
        };
        check_types(&path, &table)?;
        for import in strings(&table, "imports") {
            pending.extend(resolve_import(host, &path, &import, cwd, strategy)?);
        }
        loaded.insert(path.clone());
        raw_files.push((path, meta, table));
    }

    if let Some((path, version)) = raw_files
        .iter()
        .map(|(p, _, t)| (p, int(t, "version")))
        .find(|(_, v)| *v > NEWEST_CONFIG_VERSION)
    {
        return Err(ConfigError::UnknownVersion {
            path: path.clone(),
            version,
        });
    }
    // The merged `version`: 1.x keeps the last non-zero one (mergo's override rule); 2.x
    // first migrates every lower-version import up to the running version, so the highest
    // wins. None at all means 1.
    let mut versions = raw_files.iter().map(|(_, _, t)| int(t, "version"));
    let merged_version = match strategy {
        Strategy::ReplacePlugins => versions.rfind(|v| *v != 0),
        Strategy::MergePlugins => versions.max().filter(|v| *v != 0),
    }
    .unwrap_or(1);
    let mut files = Vec::with_capacity(raw_files.len());
    for (path, meta, mut table) in raw_files {
        let version = int(&table, "version");
        // containerd 1.x looks plugins up by short id when the merged version is 1 and by URI
        // otherwise; 2.x migrates each version-1 file's short names to URIs. Either way the
        // result is keyed by URI here.
        let v1 = match strategy {
            Strategy::ReplacePlugins => merged_version <= 1,
            Strategy::MergePlugins => version <= 1,
        };
        migrate_plugin_names(&mut table, v1, strategy);
        files.push(ConfigFile {
            path,
            meta,
            version,
            table,
        });
    }
    let mut merged = Table::new();
    for f in &files {
        merge_file(&mut merged, &f.table, strategy);
    }
    check_plugin_lists(&main_path, &merged, merged_version)?;
    // Like containerd, the merged result does not keep the import patterns: the files they
    // named are listed in `files` instead.
    merged.remove("imports");
    Ok(Loaded {
        main: main_path,
        files,
        merged,
        version: merged_version,
    })
}

/// Reads and parses one file, bounded.
fn read_toml(host: &HostRoot, path: &Path) -> Result<(FileMeta, Table), ConfigError> {
    let meta = host.stat(path)?;
    let text = host.read_string(path, DEFAULT_READ_LIMIT)?;
    let table = toml::from_str::<Table>(&text).map_err(|e| {
        let display = path.to_string_lossy().into_owned();
        match e.span() {
            Some(span) => {
                let (line, column) = line_column(&text, span.start);
                ConfigError::Toml {
                    path: display,
                    line,
                    column,
                    message: e.message().to_owned(),
                }
            }
            None => ConfigError::TomlNoPosition {
                path: display,
                message: e.message().to_owned(),
            },
        }
    })?;
    Ok((meta, table))
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// containerd decodes the top level into a typed struct: a wrong type there is fatal for it.
fn check_types(path: &str, t: &Table) -> Result<(), ConfigError> {
    let bad = |key: &str, expected| ConfigError::Type {
        path: path.to_owned(),
        key: key.to_owned(),
        expected,
    };
    for (key, expected) in [
        ("version", "an integer"),
        ("root", "a string"),
        ("state", "a string"),
        ("temp", "a string"),
        ("oom_score", "an integer"),
    ] {
        match (t.get(key), expected) {
            (None, _)
            | (Some(Value::Integer(_)), "an integer")
            | (Some(Value::String(_)), "a string") => {}
            _ => return Err(bad(key, expected)),
        }
    }
    for key in ["imports", "disabled_plugins", "required_plugins"] {
        match t.get(key) {
            None => {}
            Some(Value::Array(a)) if a.iter().all(Value::is_str) => {}
            Some(_) => return Err(bad(key, "an array of strings")),
        }
    }
    for key in [
        "plugins",
        "grpc",
        "ttrpc",
        "debug",
        "metrics",
        "cgroup",
        "timeouts",
        "proxy_plugins",
        "stream_processors",
    ] {
        if t.get(key).is_some_and(|v| !v.is_table()) {
            return Err(bad(key, "a table"));
        }
    }
    if let Some(Value::Table(g)) = t.get("grpc")
        && g.get("address").is_some_and(|v| !v.is_str())
    {
        return Err(bad("grpc.address", "a string"));
    }
    Ok(())
}

/// The host paths one `imports` entry names.
fn resolve_import(
    host: &HostRoot,
    parent: &str,
    import: &str,
    cwd: &Path,
    strategy: Strategy,
) -> Result<Vec<String>, ConfigError> {
    let parent_dir = Path::new(parent).parent().unwrap_or(Path::new("/"));
    let joined = |p: &str, base: &Path| clean(&base.join(p).to_string_lossy());
    if import.contains('*') {
        let pattern = match strategy {
            Strategy::MergePlugins => joined(&clean(import), parent_dir),
            Strategy::ReplacePlugins => joined(import, cwd),
        };
        glob(host, &pattern).map_err(|()| ConfigError::BadPattern {
            path: parent.to_owned(),
            pattern: import.to_owned(),
        })
    } else {
        Ok(vec![joined(&clean(import), parent_dir)])
    }
}

/// Go's `filepath.Clean` for absolute and relative slash paths.
pub fn clean(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|p| *p != "..") {
                    out.pop();
                } else if !absolute {
                    out.push("..");
                }
            }
            p => out.push(p),
        }
    }
    let body = out.join("/");
    match (absolute, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_owned(),
        (false, false) => body,
    }
}

/// Go's `filepath.Glob` over the host: components are matched against directory listings from
/// the first one with a metacharacter on; unreadable directories match nothing, as in Go.
/// `Err(())` for a malformed pattern.
fn glob(host: &HostRoot, pattern: &str) -> Result<Vec<String>, ()> {
    let parts: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
    for p in &parts {
        validate_pattern(p)?;
    }
    let Some(first_meta) = parts.iter().position(|p| has_meta(p)) else {
        return Ok(if host.lstat(Path::new(pattern)).is_ok() {
            vec![pattern.to_owned()]
        } else {
            Vec::new()
        });
    };
    let mut current = vec![format!("/{}", parts[..first_meta].join("/"))];
    for part in &parts[first_meta..] {
        let mut next = Vec::new();
        for dir in &current {
            let Ok(entries) = host.read_dir(Path::new(dir), GLOB_DIR_LIMIT) else {
                continue;
            };
            for e in entries {
                let name = e.name.to_string_lossy();
                if match_component(part, &name)? {
                    next.push(clean(&format!("{dir}/{name}")));
                }
            }
        }
        current = next;
    }
    Ok(current)
}

fn has_meta(p: &str) -> bool {
    p.contains(['*', '?', '[', '\\'])
}

/// Rejects what Go's `filepath.Match` calls `ErrBadPattern`: an unclosed or empty `[...]`, a bad
/// range, a trailing `\`.
fn validate_pattern(p: &str) -> Result<(), ()> {
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                if i + 1 >= chars.len() {
                    return Err(());
                }
                i += 2;
            }
            '[' => i = class_end(&chars, i)?,
            _ => i += 1,
        }
    }
    Ok(())
}

/// The index after the `]` closing the class that opens at `start`.
fn class_end(p: &[char], start: usize) -> Result<usize, ()> {
    let mut i = start + 1;
    if p.get(i) == Some(&'^') {
        i += 1;
    }
    let mut items = 0;
    loop {
        match p.get(i) {
            None => return Err(()),
            Some(']') if items > 0 => return Ok(i + 1),
            Some(_) => {
                let lo = class_char(p, &mut i)?;
                if p.get(i) == Some(&'-') {
                    i += 1;
                    let hi = class_char(p, &mut i)?;
                    if hi < lo {
                        return Err(());
                    }
                }
                items += 1;
            }
        }
    }
}

fn class_char(p: &[char], i: &mut usize) -> Result<char, ()> {
    match p.get(*i) {
        None | Some('-' | ']') => Err(()),
        Some('\\') => {
            let c = *p.get(*i + 1).ok_or(())?;
            *i += 2;
            Ok(c)
        }
        Some(c) => {
            *i += 1;
            Ok(*c)
        }
    }
}

/// Whether `c` is in the class that opens at `start`; returns the index after the class.
fn class_matches(p: &[char], start: usize, c: char) -> Result<(bool, usize), ()> {
    let mut i = start + 1;
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut items = 0;
    loop {
        match p.get(i) {
            None => return Err(()),
            Some(']') if items > 0 => return Ok((matched != negated, i + 1)),
            Some(_) => {
                let lo = class_char(p, &mut i)?;
                let hi = if p.get(i) == Some(&'-') {
                    i += 1;
                    class_char(p, &mut i)?
                } else {
                    lo
                };
                if lo <= c && c <= hi {
                    matched = true;
                }
                items += 1;
            }
        }
    }
}

/// `filepath.Match` for one path component: `*`, `?`, `[...]`/`[^...]` with ranges, `\` escapes.
fn match_component(pattern: &str, name: &str) -> Result<bool, ()> {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = name.chars().collect();
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                '?' if si < s.len() => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                '[' if si < s.len() => {
                    let (ok, next) = class_matches(&p, pi, s[si])?;
                    if ok {
                        pi = next;
                        si += 1;
                        continue;
                    }
                }
                '\\' if si < s.len() && p.get(pi + 1) == Some(&s[si]) => {
                    pi += 2;
                    si += 1;
                    continue;
                }
                c if si < s.len() && !matches!(c, '?' | '[' | '\\') && c == s[si] => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                _ => {}
            }
        } else if si == s.len() {
            return Ok(true);
        }
        match star {
            Some((sp, ss)) if ss < s.len() => {
                star = Some((sp, ss + 1));
                pi = sp + 1;
                si = ss + 1;
            }
            _ => return Ok(false),
        }
    }
}

/// containerd's table of version-1 plugin names (`v1MigratePluginName`).
fn v1_plugin_uri(name: &str) -> String {
    let core = match name {
        "cri" => "io.containerd.grpc.v1.cri",
        "cgroups" => "io.containerd.monitor.v1.cgroups",
        "linux" => "io.containerd.runtime.v1.linux",
        "scheduler" => "io.containerd.gc.v1.scheduler",
        "bolt" => "io.containerd.metadata.v1.bolt",
        "task" => "io.containerd.runtime.v2.task",
        "opt" => "io.containerd.internal.v1.opt",
        "restart" => "io.containerd.internal.v1.restart",
        "tracing" => "io.containerd.internal.v1.tracing",
        "otlp" => "io.containerd.tracing.processor.v1.otlp",
        "aufs" => "io.containerd.snapshotter.v1.aufs",
        "btrfs" => "io.containerd.snapshotter.v1.btrfs",
        "devmapper" => "io.containerd.snapshotter.v1.devmapper",
        "native" => "io.containerd.snapshotter.v1.native",
        "overlayfs" => "io.containerd.snapshotter.v1.overlayfs",
        "zfs" => "io.containerd.snapshotter.v1.zfs",
        _ if name.contains('.') => return name.to_owned(),
        _ if name.ends_with("-service") => return format!("io.containerd.service.v1.{name}"),
        "windows" | "windows-lcow" => return format!("io.containerd.snapshotter.v1.{name}"),
        _ => return format!("io.containerd.grpc.v1.{name}"),
    };
    core.to_owned()
}

/// Keys plugin sections and plugin lists by URI. With `v1`, short names are renamed. For
/// containerd 1.x the other form of a plugin *section* name is inert (1.x looks sections up by
/// id in version 1 and by URI otherwise), so it is dropped rather than reported as if it
/// applied; plugin *lists* keep every name (see [`check_plugin_lists`]).
fn migrate_plugin_names(t: &mut Table, v1: bool, strategy: Strategy) {
    if let Some(Value::Table(plugins)) = t.get_mut("plugins") {
        let old = std::mem::take(plugins);
        for (name, section) in old {
            if strategy == Strategy::ReplacePlugins && name.contains('.') == v1 {
                continue;
            }
            let key = if v1 { v1_plugin_uri(&name) } else { name };
            plugins.insert(key, section);
        }
    }
    if v1 {
        for list in ["disabled_plugins", "required_plugins"] {
            if let Some(Value::Array(a)) = t.get_mut(list) {
                for v in a.iter_mut() {
                    if let Value::String(name) = v {
                        *name = v1_plugin_uri(name);
                    }
                }
            }
        }
    }
}

/// containerd's `ValidateVersion`: in a version-2+ config, `disabled_plugins` and
/// `required_plugins` must name plugins by URI, or the daemon refuses to start.
fn check_plugin_lists(main: &str, merged: &Table, version: i64) -> Result<(), ConfigError> {
    if version < 2 {
        return Ok(());
    }
    for list in ["disabled_plugins", "required_plugins"] {
        if let Some(name) = strings(merged, list).into_iter().find(|n| !n.contains('.')) {
            return Err(ConfigError::PluginUri {
                path: main.to_owned(),
                key: list,
                name,
            });
        }
    }
    Ok(())
}

/// Merges one file into the result, as containerd's `mergeConfig` does.
fn merge_file(to: &mut Table, from: &Table, strategy: Strategy) {
    for (key, value) in from {
        match key.as_str() {
            "plugins" => {
                let Value::Table(src) = value else { continue };
                let dst = table_entry(to, key);
                for (id, section) in src {
                    match (strategy, dst.get_mut(id)) {
                        (Strategy::MergePlugins, Some(existing)) => merge_deep(existing, section),
                        _ => {
                            dst.insert(id.clone(), section.clone());
                        }
                    }
                }
            }
            "timeouts" | "proxy_plugins" | "stream_processors" => {
                let Value::Table(src) = value else { continue };
                let dst = table_entry(to, key);
                for (k, v) in src {
                    dst.insert(k.clone(), v.clone());
                }
            }
            "disabled_plugins" | "required_plugins" => {
                let Value::Array(src) = value else { continue };
                let dst = match to
                    .entry(key.clone())
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    Value::Array(a) => a,
                    other => {
                        *other = Value::Array(Vec::new());
                        let Value::Array(a) = other else { continue };
                        a
                    }
                };
                for v in src {
                    if !dst.contains(v) {
                        dst.push(v.clone());
                    }
                }
            }
            _ => merge_struct(to, key, value),
        }
    }
}

/// mergo's override rule for struct fields: a zero value in `from` leaves `to` alone.
fn merge_struct(to: &mut Table, key: &str, value: &Value) {
    match value {
        Value::Table(src) => {
            let dst = table_entry(to, key);
            for (k, v) in src {
                merge_struct(dst, k, v);
            }
        }
        v if is_zero(v) => {}
        v => {
            to.insert(key.to_owned(), v.clone());
        }
    }
}

/// containerd 2.x's merge of one plugin section: tables recursively, anything else replaced.
fn merge_deep(to: &mut Value, from: &Value) {
    match (to, from) {
        (Value::Table(dst), Value::Table(src)) => {
            for (k, v) in src {
                match dst.get_mut(k) {
                    Some(existing) => merge_deep(existing, v),
                    None => {
                        dst.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (to, from) => *to = from.clone(),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Integer(i) => *i == 0,
        Value::Float(f) => *f == 0.0,
        Value::Boolean(b) => !b,
        Value::Array(a) => a.is_empty(),
        Value::Table(_) | Value::Datetime(_) => false,
    }
}

fn table_entry<'a>(t: &'a mut Table, key: &str) -> &'a mut Table {
    let slot = t
        .entry(key.to_owned())
        .or_insert_with(|| Value::Table(Table::new()));
    if !slot.is_table() {
        *slot = Value::Table(Table::new());
    }
    match slot {
        Value::Table(t) => t,
        _ => unreachable!("just made a table"),
    }
}

fn int(t: &Table, key: &str) -> i64 {
    t.get(key).and_then(Value::as_integer).unwrap_or(0)
}

fn strings(t: &Table, key: &str) -> Vec<String> {
    match t.get(key) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// A TOML value as JSON (datetimes as their TOML text, non-finite floats as strings).
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::String(s) => Json::String(s.clone()),
        Value::Integer(i) => Json::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .unwrap_or_else(|| Json::String(f.to_string())),
        Value::Boolean(b) => Json::Bool(*b),
        Value::Datetime(d) => Json::String(d.to_string()),
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Table(t) => table_to_json(t),
    }
}

pub fn table_to_json(t: &Table) -> Json {
    Json::Object(
        t.iter()
            .map(|(k, v)| (k.clone(), to_json(v)))
            .collect::<Map<_, _>>(),
    )
}

/// Keys whose string values are credentials: the CRI registry `auth` settings (`configs.<host>.auth`
/// and the older `auths.<host>`) take `password`, `auth` (base64 user:password) and
/// `identitytoken`. Facts leave the node, so these never appear in them.
const SECRET_KEYS: [&str; 4] = ["password", "auth", "identitytoken", "identity_token"];

/// The placeholder for a redacted credential.
pub const REDACTED: &str = "[redacted]";

/// [`table_to_json`] with credentials replaced by [`REDACTED`] (non-empty ones only, so that
/// "no password set" stays visible).
pub fn redacted_json(t: &Table) -> Json {
    fn redact(v: &mut Json) {
        match v {
            Json::Object(m) => {
                for (k, v) in m.iter_mut() {
                    match v {
                        Json::String(s)
                            if !s.is_empty()
                                && SECRET_KEYS.contains(&k.to_lowercase().as_str()) =>
                        {
                            *s = REDACTED.to_owned();
                        }
                        other => redact(other),
                    }
                }
            }
            Json::Array(a) => a.iter_mut().for_each(redact),
            _ => {}
        }
    }
    let mut j = table_to_json(t);
    redact(&mut j);
    j
}

/// Looks up a key path in a table.
pub fn lookup<'a>(t: &'a Table, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(t.get(*first)?, |v, k| v.as_table()?.get(*k))
}

/// Where a normalized setting came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Set in this file.
    File(String),
    /// containerd's built-in default.
    Default,
    /// Not set, and containerd has no value for it (e.g. no registry `config_path`).
    Unset,
}

/// One normalized setting: its fact path below `containerd`, and its value or why unknown.
/// `Ok(Json::Null)` means "not set, no default": the fact is left absent.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub path: &'static [&'static str],
    pub value: Result<Json, String>,
    pub source: Source,
}

/// The CRI fact paths [`normalize`] produces.
pub const CRI_PATHS: [&[&str]; 9] = [
    &["cri", "defaultRuntimeName"],
    &["cri", "runtimeType"],
    &["cri", "systemdCgroup"],
    &["cri", "sandboxImage"],
    &["cri", "snapshotter"],
    &["cri", "registry", "configPath"],
    &["cri", "registry", "mirrors"],
    &["cri", "cni", "binDir"],
    &["cri", "cni", "confDir"],
];

/// Reduces a loaded configuration to the settings nodes are judged on, whatever its version.
pub fn normalize(l: &Loaded) -> Vec<Setting> {
    let mut out = Vec::new();
    let v3 = l.version >= 3;
    // A lower-version drop-in under a version-3 main file is migrated by containerd 2.x's CRI
    // plugin (its keys move between plugins). That migration is not modelled: say so rather
    // than report the version-3 keys alone.
    let unmigrated = l
        .files
        .iter()
        .skip(1)
        .find(|f| v3 && f.version < 3 && lookup(&f.table, &["plugins", CRI_GRPC]).is_some());
    if let Some(f) = unmigrated {
        let reason = format!(
            "{}: a version-{} file configures {CRI_GRPC} under a version-{} main config; \
             containerd 2.x migrates such settings between plugins and this inspector does not \
             model that migration",
            f.path,
            f.version.max(1),
            l.version
        );
        out.extend(CRI_PATHS.iter().map(|path| Setting {
            path,
            value: Err(reason.clone()),
            source: Source::Unset,
        }));
    } else {
        let cri = Cri {
            l,
            rt: if v3 { CRI_RUNTIME } else { CRI_GRPC },
            img: if v3 { CRI_IMAGES } else { CRI_GRPC },
            v3,
        };
        cri.settings(&mut out);
    }

    let disabled = strings(&l.merged, "disabled_plugins");
    let source = source_of(l, &["disabled_plugins"]).unwrap_or(Source::Default);
    out.push(Setting {
        path: &["cri", "disabled"],
        value: Ok(Json::Bool(disabled.iter().any(|p| {
            [CRI_GRPC, CRI_RUNTIME, CRI_IMAGES].contains(&p.as_str())
        }))),
        source: source.clone(),
    });
    out.push(Setting {
        path: &["disabledPlugins"],
        value: Ok(Json::Array(
            disabled.into_iter().map(Json::String).collect(),
        )),
        source,
    });
    out
}

/// Where the CRI settings live for one config version.
struct Cri<'a> {
    l: &'a Loaded,
    /// The plugin holding runtimes and CNI settings.
    rt: &'static str,
    /// The plugin holding image settings (sandbox image, snapshotter, registry).
    img: &'static str,
    v3: bool,
}

impl Cri<'_> {
    fn get(&self, plugin: &str, keys: &[&str]) -> Option<(Value, Source)> {
        let mut path = vec!["plugins", plugin];
        path.extend_from_slice(keys);
        let v = lookup(&self.l.merged, &path)?.clone();
        Some((v, source_of(self.l, &path).unwrap_or(Source::Unset)))
    }

    /// A string setting: set and non-empty, else `default` (or absent), or unknown if it has
    /// the wrong type (the CRI plugin would then fail to load its config).
    fn string(
        &self,
        path: &'static [&'static str],
        plugin: &str,
        keys: &[&str],
        default: Option<&str>,
    ) -> Setting {
        match self.get(plugin, keys) {
            Some((Value::String(s), source)) if !s.is_empty() => Setting {
                path,
                value: Ok(Json::String(s)),
                source,
            },
            Some((Value::String(_), _)) | None => match default {
                Some(d) => Setting {
                    path,
                    value: Ok(Json::String(d.to_owned())),
                    source: Source::Default,
                },
                None => Setting {
                    path,
                    value: Ok(Json::Null),
                    source: Source::Unset,
                },
            },
            Some((other, source)) => Setting {
                path,
                value: Err(wrong_type(plugin, keys, &other, &source, "a string")),
                source,
            },
        }
    }

    fn settings(&self, out: &mut Vec<Setting>) {
        let (rt, img) = (self.rt, self.img);
        let name = self.string(
            &["cri", "defaultRuntimeName"],
            rt,
            &["containerd", "default_runtime_name"],
            Some("runc"),
        );
        let runtime_name = name
            .value
            .as_ref()
            .ok()
            .and_then(Json::as_str)
            .map(str::to_owned);
        out.push(name);
        self.runtime(runtime_name.as_deref(), out);

        // The pause image's built-in default differs between releases: unset stays unknown.
        let sandbox_keys: &[&str] = if self.v3 {
            &["pinned_images", "sandbox"]
        } else {
            &["sandbox_image"]
        };
        let sandbox = self.string(&["cri", "sandboxImage"], img, sandbox_keys, None);
        out.push(if sandbox.value == Ok(Json::Null) {
            Setting {
                value: Err(format!(
                    "{} is not set; containerd's built-in pause image differs between releases",
                    key_name(img, sandbox_keys)
                )),
                ..sandbox
            }
        } else {
            sandbox
        });

        let snap_keys: &[&str] = if self.v3 {
            &["snapshotter"]
        } else {
            &["containerd", "snapshotter"]
        };
        out.push(self.string(&["cri", "snapshotter"], img, snap_keys, Some("overlayfs")));
        out.push(self.string(
            &["cri", "registry", "configPath"],
            img,
            &["registry", "config_path"],
            None,
        ));
        out.push(self.mirrors());

        // containerd 2.1 adds the list `bin_dirs`; `bin_dir` still wins when both are set.
        out.push(
            match (
                self.get(rt, &["cni", "bin_dir"]),
                self.get(rt, &["cni", "bin_dirs"]),
            ) {
                (None, Some((Value::Array(a), source))) if a.first().is_some_and(Value::is_str) => {
                    Setting {
                        path: &["cri", "cni", "binDir"],
                        value: Ok(to_json(&a[0])),
                        source,
                    }
                }
                _ => self.string(
                    &["cri", "cni", "binDir"],
                    rt,
                    &["cni", "bin_dir"],
                    Some("/opt/cni/bin"),
                ),
            },
        );
        out.push(self.string(
            &["cri", "cni", "confDir"],
            rt,
            &["cni", "conf_dir"],
            Some("/etc/cni/net.d"),
        ));
    }

    /// The default runtime's type and cgroup driver.
    fn runtime(&self, name: Option<&str>, out: &mut Vec<Setting>) {
        let rt = self.rt;
        let unknown = |reason: String, out: &mut Vec<Setting>| {
            for path in [&["cri", "runtimeType"][..], &["cri", "systemdCgroup"]] {
                out.push(Setting {
                    path,
                    value: Err(reason.clone()),
                    source: Source::Unset,
                });
            }
        };
        let Some(name) = name else {
            return unknown("the default runtime's name is unknown".to_owned(), out);
        };
        let base = ["containerd", "runtimes", name];
        let defined = self.get(rt, &base).is_some();
        if !defined && name != "runc" {
            return unknown(
                format!(
                    "default runtime {name:?} is not defined under {}; the CRI plugin would fail to start",
                    key_name(rt, &base)
                ),
                out,
            );
        }
        // containerd's built-in `runc` runtime is the v2 shim; a runtime the config defines
        // without a type has none.
        let rtype = self.string(
            &["cri", "runtimeType"],
            rt,
            &[&base[..], &["runtime_type"]].concat(),
            (!defined).then_some("io.containerd.runc.v2"),
        );
        // The v1 linux runtime (1.x only) takes the cgroup driver from the plugin-wide
        // `systemd_cgroup`; the runc shims from the runtime's options.
        let legacy = rtype.value.as_ref().ok().and_then(Json::as_str)
            == Some("io.containerd.runtime.v1.linux");
        out.push(rtype);
        let keys: Vec<&str> = if legacy {
            vec!["systemd_cgroup"]
        } else {
            [&base[..], &["options", "SystemdCgroup"]].concat()
        };
        let path: &'static [&'static str] = &["cri", "systemdCgroup"];
        out.push(match self.get(rt, &keys) {
            Some((Value::Boolean(b), source)) => Setting {
                path,
                value: Ok(Json::Bool(b)),
                source,
            },
            None => Setting {
                path,
                value: Ok(Json::Bool(false)),
                source: Source::Default,
            },
            Some((other, source)) => Setting {
                path,
                value: Err(wrong_type(rt, &keys, &other, &source, "a boolean")),
                source,
            },
        });
    }

    /// Legacy registry mirrors as `{ host: [endpoints] }`.
    fn mirrors(&self) -> Setting {
        let path: &'static [&'static str] = &["cri", "registry", "mirrors"];
        let keys = ["registry", "mirrors"];
        match self.get(self.img, &keys) {
            Some((Value::Table(t), source)) => Setting {
                path,
                value: Ok(Json::Object(
                    t.iter()
                        .map(|(host, m)| {
                            let endpoints =
                                m.get("endpoint").map_or(Json::Array(Vec::new()), to_json);
                            (host.clone(), endpoints)
                        })
                        .collect(),
                )),
                source,
            },
            Some((other, source)) => Setting {
                path,
                value: Err(wrong_type(self.img, &keys, &other, &source, "a table")),
                source,
            },
            None => Setting {
                path,
                value: Ok(Json::Object(Map::new())),
                source: Source::Default,
            },
        }
    }
}

/// `plugins."<plugin>".a.b` for messages.
fn key_name(plugin: &str, keys: &[&str]) -> String {
    format!("plugins.\"{plugin}\".{}", keys.join("."))
}

fn wrong_type(plugin: &str, keys: &[&str], v: &Value, source: &Source, expected: &str) -> String {
    let file = match source {
        Source::File(f) => f.as_str(),
        _ => "the configuration",
    };
    format!(
        "{} is a {} in {file}, not {expected}; the CRI plugin would not load this configuration",
        key_name(plugin, keys),
        v.type_str()
    )
}

/// The last file (in load order) that sets the key path: the one whose value survives.
fn source_of(l: &Loaded, path: &[&str]) -> Option<Source> {
    l.files
        .iter()
        .rev()
        .find(|f| lookup(&f.table, path).is_some())
        .map(|f| Source::File(f.path.clone()))
}

/// The gRPC address the configuration sets, with the file that sets it (`None`: not set).
/// Top-level `[grpc] address` in every version; config version 4 moves it to the server plugin.
pub fn grpc_address(l: &Loaded) -> Option<(String, String)> {
    for path in [
        &["grpc", "address"][..],
        &["plugins", SERVER_GRPC, "address"],
    ] {
        if let Some(Value::String(a)) = lookup(&l.merged, path)
            && !a.is_empty()
        {
            let file = match source_of(l, path) {
                Some(Source::File(f)) => f,
                _ => l.main.clone(),
            };
            return Some((a.clone(), file));
        }
    }
    None
}

/// `p` (absolute, or relative to `cwd`) as a clean absolute host path.
pub fn absolute(cwd: &Path, p: &str) -> PathBuf {
    PathBuf::from(clean(&cwd.join(p).to_string_lossy()))
}

#[cfg(test)]
mod tests;
