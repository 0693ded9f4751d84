//! The CNI inspector: which network configuration the container runtime uses for pods, which
//! plugins it chains, and which plugin binaries the node has.
//!
//! # Which file wins
//!
//! The runtime's CNI loader (libcni's `ConfFiles`, used by containerd's go-cni and CRI-O's
//! ocicni) lists `*.conf`, `*.conflist` and `*.json` in `/etc/cni/net.d`, sorts the names
//! lexicographically and takes the first network configuration as the pod network. Here the
//! first *valid* file wins; every file that cannot be read or parsed is listed in `errors`
//! with its reason. (containerd refuses to load any configuration while a broken file sorts
//! before the first valid one, and keeps the one it had; CRI-O skips the broken file. Either
//! way the broken file is drift worth seeing, and the valid file is what pods get or will get.)
//!
//! A `.conflist` is `{name, cniVersion, plugins: [{type, ...}, ...]}`; a `.conf` or `.json`
//! is one plugin `{name, cniVersion, type, ...}`. A file is valid when it is a JSON object,
//! a list has a `name` and a non-empty `plugins` array whose every element has a `type`, and a
//! single configuration has a `type` (as libcni and go-cni require). The first plugin of the
//! chain is the primary one (the one that gives the pod its interface and address; the rest
//! are chained helpers such as `portmap` or `bandwidth`).
//!
//! Only regular files are read ([`HostRoot::read`] refuses FIFOs, sockets and devices without
//! opening them); symlinks are followed inside the host root, as the loader follows them.
//!
//! # Which directories
//!
//! `/etc/cni/net.d` and `/opt/cni/bin`, unless containerd's configuration (of the daemon the
//! containerd inspector reports on) names other ones in its CRI plugin's `conf_dir` and
//! `bin_dir`; then those are read, and the evidence of `confDir` and `binDir` says
//! `containerd`. When its configuration cannot be read, or containerd 1.x's and 2.x's merging
//! of imports disagree on them, the defaults are read. (The agent watches the default
//! directories for changes; custom ones are re-read at each full re-check.)
//!
//! # What an operator sees
//!
//! * `confDir`, `confDirPresent`: whether `/etc/cni/net.d` exists. A missing or empty
//!   directory is a fact, not an error: the network plugin has not been installed yet (a node
//!   still joining, or a cluster without a CNI), so `primaryPlugin` is unknown with that
//!   reason (and so is `winning`): which plugin the node will use cannot be told, so the rules
//!   on it are `unknown`, not failed.
//! * `files`: every candidate, in load order, with `name`, `cniVersion` and `plugins` (types)
//!   or `error`.
//! * `winning`: the file pods get, with its plugin chain and, per plugin, whether
//!   `/opt/cni/bin` holds its binary.
//! * `binaries`: the names in `/opt/cni/bin` (bounded).
//!
//! An unreadable `/etc/cni/net.d` makes `confDirPresent`, `files`, `errors`, `winning` and
//! `primaryPlugin` unknown with the path in the reason; an unreadable `/opt/cni/bin` makes
//! `binaries` and each plugin's `binaryPresent` unknown.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde_json::{Value, json};

use crate::facts::{ComponentFacts, Evidence, unknown_value};
use crate::host::{self, HostError, HostRoot};

use super::Context;

pub const NAME: &str = "cni";

/// Where the runtime reads network configurations (containerd's and CRI-O's default; a
/// containerd configuration may name another, which is then read instead).
pub const CONF_DIR: &str = "/etc/cni/net.d";

/// Where the runtime looks for plugin binaries (containerd's and CRI-O's default).
pub const BIN_DIR: &str = "/opt/cni/bin";

/// The extensions libcni's `ConfFiles` accepts.
const EXTENSIONS: [&str; 3] = [".conf", ".conflist", ".json"];

/// Entries listed in the configuration directory; real nodes have a handful.
const CONF_DIR_ENTRIES_LIMIT: usize = 1024;

/// Configuration files parsed; beyond this the rest are listed as not read.
const CONF_FILES_LIMIT: usize = 64;

/// A CNI configuration is a few kilobytes; a bigger file is not one.
const CONF_READ_LIMIT: u64 = 1 << 20;

/// Entries listed in the binary directory (a node has a few dozen plugins).
const BIN_DIR_ENTRIES_LIMIT: usize = 4096;

/// A parsed network configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConf {
    pub name: Option<String>,
    pub cni_version: Option<String>,
    /// The `type` of each plugin in chain order; never empty.
    pub plugins: Vec<String>,
}

/// Parses one configuration file's bytes; `list` says whether it is a `.conflist`.
pub fn parse(bytes: &[u8], list: bool) -> Result<NetConf, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(obj) = &v else {
        return Err("not a JSON object".to_owned());
    };
    let text = |key: &str| -> Result<Option<String>, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("'{key}' is not a string: {other}")),
        }
    };
    let name = text("name")?;
    let cni_version = text("cniVersion")?;
    let plugins = if list {
        if name.as_deref().is_none_or(str::is_empty) {
            return Err("a configuration list needs a 'name'".to_owned());
        }
        let Some(plugins) = obj.get("plugins") else {
            return Err("no 'plugins' key".to_owned());
        };
        let Value::Array(plugins) = plugins else {
            return Err("'plugins' is not an array".to_owned());
        };
        if plugins.is_empty() {
            return Err("'plugins' is empty".to_owned());
        }
        plugins
            .iter()
            .enumerate()
            .map(|(i, p)| plugin_type(p).map_err(|e| format!("plugins[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![plugin_type(&v)?]
    };
    Ok(NetConf {
        name,
        cni_version,
        plugins,
    })
}

fn plugin_type(p: &Value) -> Result<String, String> {
    match p.get("type") {
        Some(Value::String(t)) if !t.is_empty() => Ok(t.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err("missing 'type' (the plugin to run)".to_owned())
        }
        Some(other) => Err(format!("'type' is not a string: {other}")),
    }
}

/// One candidate file and what became of it.
#[derive(Debug)]
struct Candidate {
    /// The host path as shown.
    file: String,
    conf: Result<NetConf, String>,
}

/// The configuration file names the loader considers, sorted as it sorts them (bytewise).
fn candidates(host: &HostRoot, dir: &Path) -> Result<Option<Vec<Vec<u8>>>, HostError> {
    let entries = match host.read_dir(dir, CONF_DIR_ENTRIES_LIMIT) {
        Ok(e) => e,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut names: Vec<Vec<u8>> = entries
        .into_iter()
        .map(|e| e.name.as_bytes().to_vec())
        .filter(|n| EXTENSIONS.iter().any(|x| n.ends_with(x.as_bytes())))
        .collect();
    names.sort();
    Ok(Some(names))
}

fn read_candidate(host: &HostRoot, dir: &Path, name: &[u8]) -> Candidate {
    let path = dir.join(std::ffi::OsStr::from_bytes(name));
    let file = host::display(&path);
    let conf = host
        .read(&path, CONF_READ_LIMIT)
        .map_err(|e| e.to_string())
        .and_then(|bytes| parse(&bytes, name.ends_with(b".conflist")));
    Candidate { file, conf }
}

/// The binary names in `/opt/cni/bin` (none when the directory does not exist).
fn binaries(host: &HostRoot, dir: &Path) -> Result<Vec<String>, HostError> {
    match host.read_dir(dir, BIN_DIR_ENTRIES_LIMIT) {
        Ok(entries) => Ok(entries
            .into_iter()
            .map(|e| e.name.to_string_lossy().into_owned())
            .collect()),
        Err(e) if e.is_not_found() => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

pub fn inspect(ctx: &Context<'_>) -> ComponentFacts {
    let host = ctx.host;
    let mut cf = ComponentFacts::new(NAME);
    let (conf_dir, bin_dir, source) = match super::containerd::cni_dirs(ctx) {
        Some((c, b)) if c != CONF_DIR || b != BIN_DIR => (c, b, "containerd"),
        Some(_) | None => (CONF_DIR.to_owned(), BIN_DIR.to_owned(), "default"),
    };
    cf.set(&["confDir"], conf_dir.as_str());
    cf.set(&["binDir"], bin_dir.as_str());
    cf.evidence(&["confDir"], Evidence::default().with_source(source));
    cf.evidence(&["binDir"], Evidence::default().with_source(source));
    let (conf_dir, bin_dir) = (Path::new(&conf_dir), Path::new(&bin_dir));

    let bins = binaries(host, bin_dir);
    match &bins {
        Ok(b) => cf.set(&["binaries"], json!(b)),
        Err(e) => cf.unknown(&["binaries"], e),
    }
    cf.evidence(
        &["binaries"],
        Evidence::file(host::display(bin_dir)).with_source("runtime"),
    );

    let names = match candidates(host, conf_dir) {
        Ok(n) => n,
        Err(e) => {
            for key in [
                "confDirPresent",
                "files",
                "errors",
                "winning",
                "primaryPlugin",
            ] {
                cf.unknown(&[key], &e);
            }
            return cf;
        }
    };
    cf.set(&["confDirPresent"], names.is_some());
    let mut names = names.unwrap_or_default();
    let mut errors: Vec<Value> = Vec::new();
    if names.len() > CONF_FILES_LIMIT {
        for n in names.drain(CONF_FILES_LIMIT..) {
            let shown = host::display(&conf_dir.join(std::ffi::OsStr::from_bytes(&n)));
            errors.push(json!({
                "file": shown,
                "error": format!("more than {CONF_FILES_LIMIT} configuration files; not read"),
            }));
        }
    }
    let read: Vec<Candidate> = names
        .iter()
        .map(|n| read_candidate(host, conf_dir, n))
        .collect();

    let mut files = Vec::new();
    for c in &read {
        match &c.conf {
            Ok(conf) => files.push(json!({
                "file": c.file,
                "name": conf.name,
                "cniVersion": conf.cni_version,
                "plugins": conf.plugins,
            })),
            Err(e) => {
                files.push(json!({"file": c.file, "error": e}));
                errors.push(json!({"file": c.file, "error": e}));
            }
        }
    }
    // Errors in load order: the truncated names sort after every file read.
    errors.sort_by(|a, b| a["file"].as_str().cmp(&b["file"].as_str()));
    cf.set(&["files"], Value::Array(files));
    cf.set(&["errors"], Value::Array(errors));

    let winner = read
        .iter()
        .find_map(|c| c.conf.as_ref().ok().map(|n| (c, n)));
    let Some((c, conf)) = winner else {
        let reason = if read.is_empty() {
            format!(
                "no CNI network configuration in {}: the network plugin is not installed \
                 (yet), so which one the node uses cannot be told",
                host::display(conf_dir)
            )
        } else {
            format!(
                "no valid CNI network configuration in {} (see cni.errors), so which \
                 plugin the node uses cannot be told",
                host::display(conf_dir)
            )
        };
        // `winning` too: a wildcard rule over its plugins must not read "absent" as "fails".
        cf.unknown(&["winning"], &reason);
        cf.unknown(&["primaryPlugin"], reason);
        return cf;
    };
    let plugins: Vec<Value> = conf
        .plugins
        .iter()
        .map(|t| {
            let present = match &bins {
                Ok(b) => Value::Bool(b.iter().any(|n| n == t)),
                Err(e) => unknown_value(e),
            };
            json!({"type": t, "binaryPresent": present})
        })
        .collect();
    cf.set(
        &["winning"],
        json!({
            "file": c.file,
            "name": conf.name,
            "cniVersion": conf.cni_version,
            "plugins": plugins,
        }),
    );
    if let Some(primary) = conf.plugins.first() {
        cf.set(&["primaryPlugin"], primary.as_str());
    }
    let evidence = Evidence::file(&c.file).with_source("config");
    cf.evidence(&["winning"], evidence.clone());
    cf.evidence(&["primaryPlugin"], evidence);
    for i in 0..conf.plugins.len() {
        cf.evidence(
            &["winning", "plugins", &i.to_string(), "binaryPresent"],
            Evidence::file(host::display(bin_dir)).with_source("runtime"),
        );
    }
    cf
}

#[cfg(test)]
mod tests;
