//! The kubelet's systemd unit, its drop-ins, and the environment files they load.
//!
//! systemd looks for `kubelet.service` in `/etc/systemd/system` first, then `/run/systemd/system`,
//! `/usr/lib/systemd/system` and `/lib/systemd/system`; drop-ins `kubelet.service.d/*.conf`
//! come from all of them, a name in an earlier directory masking the same name in a later one,
//! and apply in name order after the unit. `EnvironmentFile=` lines (a leading `-` makes the file
//! optional; an empty assignment clears the list) name the files whose variables the
//! `ExecStart=` line expands: on AKS `/etc/default/kubelet` carries `KUBELET_FLAGS` with the
//! node labels, on kubeadm nodes `/var/lib/kubelet/kubeadm-flags.env` carries
//! `KUBELET_KUBEADM_ARGS`. Variables holding flags are parsed with the kubelet's flag table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::flags::kubelet_is_bool;
use super::support::{file_fact, shell_words};
use crate::facts::{ComponentFacts, Evidence};
use crate::host::{HostError, HostRoot, display};
use crate::inspect::process::parse_flags;

/// Unit directories in systemd's order of precedence.
pub(crate) const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

const UNIT: &str = "kubelet.service";

/// Upper bound for a unit, drop-in or environment file.
const UNIT_FILE_LIMIT: u64 = 1 << 20;

/// Upper bound on entries of a drop-in directory.
const DROPIN_DIR_LIMIT: usize = 4096;

/// Records `files.unit`, `files.dropIns.<name>`, `environmentFiles.<path>` and
/// `unitEnvironment.<KEY>`.
pub(crate) fn inspect(host: &HostRoot, cf: &mut ComponentFacts) {
    let unit = find_unit(host, cf);
    let dropins = find_dropins(host, cf);
    let mut texts: Vec<(PathBuf, String)> = Vec::new();
    for path in unit.iter().chain(dropins.values()) {
        match host.read_string(path, UNIT_FILE_LIMIT) {
            Ok(t) => texts.push((path.clone(), t)),
            Err(e) => {
                let reason = format!(
                    "a unit file could not be read, so the environment it sets is unknown: {e}"
                );
                cf.unknown(&["environmentFiles"], &reason);
                cf.unknown(&["unitEnvironment"], &reason);
                return;
            }
        }
    }
    let mut env_files: Vec<(String, bool, PathBuf)> = Vec::new();
    let mut env: BTreeMap<String, (String, PathBuf)> = BTreeMap::new();
    for (path, text) in &texts {
        for (key, value) in service_directives(text) {
            match key.as_str() {
                "EnvironmentFile" if value.is_empty() => env_files.clear(),
                "EnvironmentFile" => {
                    let (optional, file) = match value.strip_prefix('-') {
                        Some(rest) => (true, rest.trim().to_owned()),
                        None => (false, value.clone()),
                    };
                    env_files.retain(|(f, _, _)| *f != file);
                    env_files.push((file, optional, path.clone()));
                }
                "Environment" if value.is_empty() => env.clear(),
                "Environment" => {
                    for word in shell_words(&value) {
                        if let Some((k, v)) = word.split_once('=') {
                            env.insert(k.to_owned(), (v.to_owned(), path.clone()));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    cf.set(&["environmentFiles"], Value::Object(Map::new()));
    for (file, optional, declared_in) in env_files {
        environment_file(host, cf, &file, optional, &declared_in);
    }
    cf.set(&["unitEnvironment"], Value::Object(Map::new()));
    for (k, (v, declared_in)) in env {
        cf.set(&["unitEnvironment", &k], v);
        cf.evidence(
            &["unitEnvironment", &k],
            Evidence::file(display(&declared_in)).with_source("unit"),
        );
    }
}

fn find_unit(host: &HostRoot, cf: &mut ComponentFacts) -> Option<PathBuf> {
    for dir in UNIT_DIRS {
        let path = Path::new(dir).join(UNIT);
        match host.stat(&path) {
            Err(HostError::NotFound { .. }) => continue,
            Err(HostError::NotADirectory { .. }) => continue,
            Ok(_) => {
                file_fact(cf, &["unit"], host, &path);
                return Some(path);
            }
            Err(e) => {
                cf.unknown(&["files", "unit"], e);
                return None;
            }
        }
    }
    cf.set(
        &["files", "unit"],
        json!({"exists": false, "searched": UNIT_DIRS.iter().map(|d| format!("{d}/{UNIT}")).collect::<Vec<_>>()}),
    );
    None
}

fn find_dropins(host: &HostRoot, cf: &mut ComponentFacts) -> BTreeMap<String, PathBuf> {
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    cf.set(&["files", "dropIns"], Value::Object(Map::new()));
    for dir in UNIT_DIRS {
        let d = Path::new(dir).join(format!("{UNIT}.d"));
        let entries = match host.read_dir(&d, DROPIN_DIR_LIMIT) {
            Ok(e) => e,
            Err(HostError::NotFound { .. } | HostError::NotADirectory { .. }) => continue,
            Err(e) => {
                cf.unknown(&["files", "dropIns"], e);
                return BTreeMap::new();
            }
        };
        for e in entries {
            let Some(name) = e.name.to_str() else {
                continue;
            };
            if name.ends_with(".conf") && !found.contains_key(name) {
                found.insert(name.to_owned(), d.join(name));
            }
        }
    }
    for (name, path) in &found {
        file_fact(cf, &["dropIns", name], host, path);
    }
    found
}

/// `(key, value)` of every directive in `[Service]` sections, continuation lines joined.
fn service_directives(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim_end();
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        let full = full.trim();
        if full.is_empty() || full.starts_with('#') || full.starts_with(';') {
            continue;
        }
        if full.starts_with('[') && full.ends_with(']') {
            section = full[1..full.len() - 1].to_owned();
            continue;
        }
        if section != "Service" {
            continue;
        }
        if let Some((k, v)) = full.split_once('=') {
            out.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

fn environment_file(
    host: &HostRoot,
    cf: &mut ComponentFacts,
    file: &str,
    optional: bool,
    declared_in: &Path,
) {
    let at = ["environmentFiles", file];
    cf.evidence(
        &at,
        Evidence::file(file).with_source(format!("EnvironmentFile= in {}", display(declared_in))),
    );
    let text = match host.read_string(Path::new(file), UNIT_FILE_LIMIT) {
        Ok(t) => t,
        Err(HostError::NotFound { .. }) => {
            cf.set(&at, json!({"optional": optional, "exists": false}));
            return;
        }
        Err(e) => {
            cf.unknown(&at, e);
            return;
        }
    };
    let vars = parse_env_file(&text);
    let mut flags = Map::new();
    for (k, v) in &vars {
        let words = shell_words(v);
        if words.iter().any(|w| w.starts_with("--")) {
            let parsed = parse_flags(&words, kubelet_is_bool);
            let m: Map<String, Value> = parsed
                .values
                .iter()
                .filter_map(|(n, vals)| vals.last().map(|l| (n.clone(), Value::String(l.clone()))))
                .collect();
            flags.insert(k.clone(), Value::Object(m));
        }
    }
    cf.set(
        &at,
        json!({
            "optional": optional,
            "exists": true,
            "variables": vars.into_iter().map(|(k, v)| (k, Value::String(v))).collect::<Map<_, _>>(),
            "flags": flags,
        }),
    );
}

/// Parses an environment file as systemd does: `KEY=VALUE` lines, `#`/`;` comments, values
/// optionally quoted (double quotes honour backslash escapes), trailing backslash continues.
pub(crate) fn parse_env_file(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut pending = String::new();
    for raw in text.lines() {
        if let Some(cont) = raw.strip_suffix('\\') {
            pending.push_str(cont);
            continue;
        }
        pending.push_str(raw);
        let line = std::mem::take(&mut pending);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim();
        if k.is_empty() || k.contains(char::is_whitespace) {
            continue;
        }
        let v = v.trim();
        let value = if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
            unescape_double(&v[1..v.len() - 1])
        } else if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
            v[1..v.len() - 1].to_owned()
        } else {
            v.to_owned()
        };
        out.retain(|(ok, _)| ok != k);
        out.push((k.to_owned(), value));
    }
    out
}

fn unescape_double(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_section_directives_with_continuations() {
        let unit = "[Unit]\nEnvironmentFile=/not/service\n[Service]\nEnvironment=\"A=1 2\" B=3\nEnvironmentFile=-/etc/default/kubelet\nExecStart=/usr/bin/kubelet \\\n  --v=2\n";
        let d = service_directives(unit);
        assert_eq!(
            d,
            vec![
                ("Environment".into(), "\"A=1 2\" B=3".into()),
                ("EnvironmentFile".into(), "-/etc/default/kubelet".into()),
                ("ExecStart".into(), "/usr/bin/kubelet    --v=2".into()),
            ]
        );
    }

    #[test]
    fn env_file_parsing() {
        let text = "# comment\nKUBELET_FLAGS=--node-labels=a=b,c=d --max-pods=30\nQ=\"x \\\"y\\\"\"\nS='lit $x'\nbad line\nKUBELET_FLAGS=--v=2\n";
        let v = parse_env_file(text);
        assert_eq!(
            v,
            vec![
                ("Q".to_owned(), "x \"y\"".to_owned()),
                ("S".to_owned(), "lit $x".to_owned()),
                ("KUBELET_FLAGS".to_owned(), "--v=2".to_owned()),
            ]
        );
    }
}
