//! The containerd inspector: the daemon's process, its merged configuration reduced to the
//! settings a Kubernetes node depends on, its socket, and what the running daemon itself
//! reports over its API.
//!
//! Facts (below `containerd`):
//!
//! * `running`, `process` {pid, argv, flags}, `processes` [{pid, configPath, address}];
//! * `configPath`, `configFiles` [{path, kind, mode, uid, gid, version}] in load order,
//!   `config` (the merged TOML as JSON, plugins keyed by URI, registry credentials redacted),
//!   `configVersion`, `configMerge` (how imports were combined; see [`config`]);
//! * `cri.{defaultRuntimeName, runtimeType, systemdCgroup, sandboxImage, snapshotter,
//!   registry.configPath, registry.mirrors, cni.binDir, cni.confDir, disabled, plugin,
//!   runtimeStatus.{RuntimeReady,NetworkReady}}` (the last from the CRI's Status call) and
//!   `disabledPlugins`, the same names whatever the config version;
//! * `grpc.address`, `socket` {path, exists, kind, mode, uid, gid};
//! * `version`, `revision`, `api` {reachable, error, uuid, pid}, `plugins.<type>.<id>`
//!   {status: ok|skip|error, error} — asked of the daemon over the socket (see [`api`]).
//!
//! Which daemon: every `containerd` process (not the shims) is listed; the one inspected is the
//! one serving [`Options::containerd_socket`] when that is set, else the one serving the default
//! socket, else the only one, else the lowest pid. With no daemon running, the default config and
//! socket are still inspected (the files are what the next start will use).
//!
//! How imports combine depends on the daemon's major version (see [`config`]). It is taken from
//! the API's answer, else from a config `version = 3` (2.x only); when neither is available both
//! merges are computed and a setting on which they disagree is reported unknown, never guessed.
//!
//! [`Options::containerd_socket`]: super::Options::containerd_socket

pub mod api;
pub mod config;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json, json};

use crate::facts::{ComponentFacts, Evidence, unknown_value};
use crate::host::{FileKind, HostRoot};

use self::api::Answers;
use self::config::{ConfigError, Loaded, Setting, Source, Strategy};
use super::process::parse_flags;
use super::{Context, Process};

pub const NAME: &str = "containerd";

/// A `containerd` daemon found in the process table.
#[derive(Debug, Clone)]
struct Daemon {
    pid: u32,
    argv: Vec<String>,
    /// `--config`/`-c`, as given.
    config_flag: Option<String>,
    /// `--address`/`-a`, as given.
    address_flag: Option<String>,
    /// The working directory (relative paths in flags and 1.x globs resolve against it).
    cwd: PathBuf,
}

impl Daemon {
    fn new(p: &Process, host: &HostRoot) -> Self {
        let args = p.args_for("containerd");
        Self {
            pid: p.pid,
            argv: p.argv.clone(),
            config_flag: flag_value(args, &["config", "c"]),
            address_flag: flag_value(args, &["address", "a"]),
            cwd: p.cwd(host).unwrap_or_else(|_| PathBuf::from("/")),
        }
    }

    /// The daemon's configuration, loaded both ways (1.x and 2.x merging).
    fn configs(&self, host: &HostRoot) -> Configs {
        Configs::load(host, self.config_flag.as_deref(), &self.cwd)
    }
}

/// The value of the last occurrence of any of `names` (urfave/cli aliases): `-c x`, `--c=x`,
/// `--config x`, `-config=x`. Parsing stops at `--`.
fn flag_value(args: &[String], names: &[&str]) -> Option<String> {
    let mut found = None;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            break;
        }
        if let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) {
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (body, None),
            };
            if names.contains(&name) {
                match value {
                    Some(v) => found = Some(v),
                    None => {
                        found = args.get(i + 1).cloned();
                        i += 1;
                    }
                }
            }
        }
        i += 1;
    }
    found
}

/// One configuration loaded with both merge strategies.
#[derive(Debug)]
struct Configs {
    path: PathBuf,
    explicit: bool,
    replace: Result<Loaded, ConfigError>,
    merge: Result<Loaded, ConfigError>,
}

impl Configs {
    fn load(host: &HostRoot, flag: Option<&str>, cwd: &Path) -> Self {
        let path = config::absolute(cwd, flag.unwrap_or(config::DEFAULT_CONFIG_PATH));
        let explicit = flag.is_some();
        Self {
            replace: config::load(host, &path, explicit, cwd, Strategy::ReplacePlugins),
            merge: config::load(host, &path, explicit, cwd, Strategy::MergePlugins),
            path,
            explicit,
        }
    }

    /// The gRPC address the configuration sets, `Ok(None)` when it sets none.
    fn grpc_address(&self) -> Result<Option<(String, String)>, String> {
        match (&self.replace, &self.merge) {
            (Ok(a), Ok(b)) => {
                let (a, b) = (config::grpc_address(a), config::grpc_address(b));
                if a.as_ref().map(|x| &x.0) == b.as_ref().map(|x| &x.0) {
                    Ok(b)
                } else {
                    Err(format!(
                        "the configuration gives the gRPC address {:?} under containerd 1.x's \
                         merging of imports and {:?} under 2.x's, and the daemon's version is unknown",
                        a.map(|x| x.0),
                        b.map(|x| x.0)
                    ))
                }
            }
            (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
        }
    }
}

/// The running containerd daemons with their configurations and gRPC addresses.
fn daemons(ctx: &Context<'_>) -> Vec<(Daemon, Configs, Result<String, String>)> {
    let host = ctx.host;
    ctx.procs
        .find("containerd")
        .into_iter()
        // `containerd config dump` and friends are commands, not the daemon.
        .filter(|p| {
            p.args_for("containerd")
                .first()
                .is_none_or(|a| a.starts_with('-'))
        })
        .map(|p| {
            let d = Daemon::new(p, host);
            let configs = d.configs(host);
            let address = effective_address(&d, &configs).map(|(a, _)| a);
            (d, configs, address)
        })
        .collect()
}

/// The CNI configuration and binary directories (`conf_dir`, `bin_dir`) in the configuration
/// of the daemon this inspector reports on (or of the default configuration when none runs;
/// containerd's own defaults when it sets none). `None` when the configuration cannot be read or containerd
/// 1.x's and 2.x's merging of imports disagree on them: the caller keeps the defaults.
pub fn cni_dirs(ctx: &Context<'_>) -> Option<(String, String)> {
    let all = daemons(ctx);
    let fallback;
    let configs = match select(&all, ctx.options.containerd_socket.as_deref()) {
        Some(i) => &all[i].1,
        None => {
            fallback = Configs::load(ctx.host, None, Path::new("/"));
            &fallback
        }
    };
    let dirs = |l: &Loaded| {
        let settings = config::normalize(l);
        let get = |path: &[&str]| {
            settings
                .iter()
                .find(|s| s.path == path)
                .and_then(|s| s.value.as_ref().ok()?.as_str().map(str::to_owned))
        };
        Some((
            get(&["cri", "cni", "confDir"])?,
            get(&["cri", "cni", "binDir"])?,
        ))
    };
    match (&configs.replace, &configs.merge) {
        (Ok(a), Ok(b)) => dirs(a).filter(|d| dirs(b).as_ref() == Some(d)),
        _ => None,
    }
}

pub fn inspect(ctx: &Context<'_>) -> ComponentFacts {
    let mut cf = ComponentFacts::new(NAME);
    let host = ctx.host;

    // The daemon(s).
    let all = daemons(ctx);
    let primary = select(&all, ctx.options.containerd_socket.as_deref());

    if let Some(err) = &ctx.procs.error {
        cf.unknown(
            &["running"],
            format!("the process table is unreadable: {err}"),
        );
        cf.unknown(
            &["process"],
            format!("the process table is unreadable: {err}"),
        );
    } else {
        cf.set(&["running"], !all.is_empty());
        cf.set(
            &["processes"],
            Json::Array(
                all.iter()
                    .map(|(d, c, a)| {
                        json!({
                            "pid": d.pid,
                            "configPath": crate::host::display(&c.path),
                            "address": a.as_ref().map_or_else(unknown_value, |a| json!(a)),
                        })
                    })
                    .collect(),
            ),
        );
    }
    let pid = primary.map(|i| all[i].0.pid);
    let with_pid = |e: Evidence| with_pid(e, pid);
    if let Some(i) = primary {
        let d = &all[i].0;
        let flags = parse_flags(d.argv.get(1..).unwrap_or_default(), |_| false);
        let flags: Map<String, Json> = flags
            .values
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), Json::String(v.last()?.clone()))))
            .collect();
        cf.set(
            &["process"],
            json!({ "pid": d.pid, "argv": d.argv, "flags": flags }),
        );
        cf.evidence(
            &["process"],
            Evidence::file(format!("/proc/{}/cmdline", d.pid))
                .with_pid(d.pid)
                .with_source("process"),
        );
    }

    // The configuration of the selected daemon (or the default one when none runs).
    let fallback;
    let (daemon, configs) = match primary {
        Some(i) => (Some(&all[i].0), &all[i].1),
        None => {
            fallback = Configs::load(host, None, Path::new("/"));
            (None, &fallback)
        }
    };
    cf.set(&["configPath"], crate::host::display(&configs.path));
    cf.evidence(
        &["configPath"],
        with_pid(Evidence::default().with_source(if configs.explicit {
            "flag"
        } else {
            "default"
        })),
    );

    // The socket: an explicit override, the daemon's flag, its config, or the default.
    let socket: Result<(String, Evidence), String> = match (&ctx.options.containerd_socket, daemon)
    {
        (Some(s), _) => Ok((
            crate::host::display(s),
            Evidence::default().with_source("option"),
        )),
        (None, Some(d)) => effective_address(d, configs),
        (None, None) => effective_address_of(None, configs),
    };
    match &socket {
        Ok((path, ev)) => {
            cf.set(&["grpc", "address"], path.as_str());
            cf.evidence(&["grpc", "address"], with_pid(ev.clone()));
        }
        Err(reason) => cf.unknown(&["grpc", "address"], reason),
    }

    // Ask the daemon.
    let answers = match &socket {
        Ok((path, _)) => ask(&mut cf, host, path, ctx.options.api_timeout, pid),
        Err(reason) => {
            let reason = format!("the socket address is unknown: {reason}");
            for key in ["socket", "version", "revision", "api", "plugins"] {
                cf.unknown(&[key], &reason);
            }
            cf.unknown(&["cri", "plugin"], &reason);
            cf.unknown(&["cri", "runtimeStatus"], &reason);
            None
        }
    };

    // How imports merge: from the daemon's version, else the config version, else both.
    let major = answers
        .as_ref()
        .and_then(|a| a.version.as_ref().ok())
        .and_then(|v| major_version(&v.version));
    let root_v3 = configs
        .merge
        .as_ref()
        .ok()
        .and_then(|l| l.files.first())
        .is_some_and(|f| f.version >= 3);
    let (strategy, basis) = match major {
        Some(m) if m < 2 => (Some(Strategy::ReplacePlugins), "daemon version"),
        Some(_) => (Some(Strategy::MergePlugins), "daemon version"),
        None if root_v3 => (
            Some(Strategy::MergePlugins),
            "config version 3 (containerd 2.x)",
        ),
        None => (None, "daemon version unknown"),
    };
    config_facts(&mut cf, configs, strategy, basis, pid);
    cf
}

/// `e` with the daemon's pid, when there is a daemon.
fn with_pid(e: Evidence, pid: Option<u32>) -> Evidence {
    match pid {
        Some(p) => e.with_pid(p),
        None => e,
    }
}

/// Index of the daemon to inspect (see the module docs).
fn select(
    all: &[(Daemon, Configs, Result<String, String>)],
    wanted: Option<&Path>,
) -> Option<usize> {
    let serving = |sock: &str| {
        all.iter().position(|(_, _, a)| {
            a.as_deref()
                .is_ok_and(|a| config::clean(a) == config::clean(sock))
        })
    };
    match wanted {
        Some(w) => serving(&w.to_string_lossy()),
        None => serving(config::DEFAULT_ADDRESS).or(if all.is_empty() { None } else { Some(0) }),
    }
}

/// The gRPC socket a daemon serves: `--address`, else its config, else the default.
fn effective_address(d: &Daemon, c: &Configs) -> Result<(String, Evidence), String> {
    match &d.address_flag {
        Some(a) => Ok((
            config::absolute(&d.cwd, a).to_string_lossy().into_owned(),
            Evidence::default().with_source("flag"),
        )),
        None => effective_address_of(Some(d), c),
    }
}

fn effective_address_of(d: Option<&Daemon>, c: &Configs) -> Result<(String, Evidence), String> {
    let cwd = d.map_or(Path::new("/"), |d| d.cwd.as_path());
    match c.grpc_address()? {
        Some((a, file)) => Ok((
            config::absolute(cwd, &a).to_string_lossy().into_owned(),
            Evidence::file(file).with_source("config"),
        )),
        None => Ok((
            config::DEFAULT_ADDRESS.to_owned(),
            Evidence::default().with_source("default"),
        )),
    }
}

/// Records the socket's facts and, when it is a socket, asks the daemon.
fn ask(
    cf: &mut ComponentFacts,
    host: &HostRoot,
    path: &str,
    timeout: std::time::Duration,
    pid: Option<u32>,
) -> Option<Answers> {
    let ev = |source: &str| with_pid(Evidence::file(path).with_source(source), pid);
    let opened = host.open_path(Path::new(path));
    let no_answer = |cf: &mut ComponentFacts, reason: String| {
        for key in ["version", "revision", "api", "plugins"] {
            cf.unknown(&[key], &reason);
        }
        cf.unknown(&["cri", "plugin"], &reason);
        cf.unknown(&["cri", "runtimeStatus"], &reason);
    };
    let (fd, meta) = match opened {
        Ok(o) => o,
        Err(e) if e.is_not_found() => {
            let reason = format!(
                "no socket at {path}: nothing to ask (containerd not running, or serving elsewhere)"
            );
            cf.set(&["socket"], json!({ "path": path, "exists": false }));
            // A socket that does not exist has no mode or owner to judge: unknown, not absent.
            for key in ["kind", "mode", "uid", "gid"] {
                cf.unknown(&["socket", key], &reason);
            }
            cf.evidence(&["socket"], ev("stat"));
            no_answer(cf, reason);
            return None;
        }
        Err(e) => {
            cf.unknown(&["socket"], &e);
            no_answer(cf, format!("containerd API: {e}"));
            return None;
        }
    };
    cf.set(
        &["socket"],
        json!({
            "path": path,
            "exists": true,
            "kind": meta.kind,
            "mode": meta.mode_octal(),
            "uid": meta.uid,
            "gid": meta.gid,
        }),
    );
    cf.evidence(&["socket"], ev("stat"));
    if meta.kind != FileKind::Socket {
        no_answer(
            cf,
            format!("{path} is a {}, not a socket; not connected to", meta.kind),
        );
        return None;
    }
    let answers = match api::query(&fd, path, timeout) {
        Ok(a) => a,
        Err(e) => {
            let reason = format!("containerd API: {e}");
            if e.daemon_unresponsive() {
                cf.set(
                    &["api"],
                    json!({ "reachable": false, "error": e.to_string() }),
                );
                cf.evidence(&["api"], ev("api"));
                for key in ["version", "revision", "plugins"] {
                    cf.unknown(&[key], &reason);
                }
                cf.unknown(&["cri", "plugin"], &reason);
                cf.unknown(&["cri", "runtimeStatus"], &reason);
            } else {
                no_answer(cf, reason);
            }
            return None;
        }
    };
    cf.set(&["api", "reachable"], true);
    cf.evidence(&["api"], ev("api"));
    match &answers.server {
        Ok(s) => {
            cf.set(&["api", "uuid"], s.uuid.as_str());
            if s.pid != 0 {
                cf.set(&["api", "pid"], s.pid);
            }
        }
        Err(e) => cf.unknown(&["api", "uuid"], e),
    }
    match &answers.version {
        Ok(v) => {
            cf.set(&["version"], v.version.as_str());
            cf.set(&["revision"], v.revision.as_str());
            cf.evidence(&["version"], ev("api"));
            cf.evidence(&["revision"], ev("api"));
        }
        Err(e) => {
            cf.unknown(&["version"], format!("containerd API: {e}"));
            cf.unknown(&["revision"], format!("containerd API: {e}"));
        }
    }
    match &answers.plugins {
        Ok(plugins) => {
            let mut by_type: Map<String, Json> = Map::new();
            for p in plugins {
                let entry = by_type
                    .entry(p.r#type.clone())
                    .or_insert_with(|| Json::Object(Map::new()));
                if let Json::Object(ids) = entry {
                    ids.insert(p.id.clone(), plugin_status(p));
                }
            }
            cf.set(&["plugins"], Json::Object(by_type));
            cf.evidence(&["plugins"], ev("api"));
            cf.set(&["cri", "plugin"], cri_plugin_status(plugins));
            cf.evidence(&["cri", "plugin"], ev("api"));
        }
        Err(e) => {
            cf.unknown(&["plugins"], format!("containerd API: {e}"));
            cf.unknown(&["cri", "plugin"], format!("containerd API: {e}"));
        }
    }
    match &answers.cri_status {
        Ok(conditions) => {
            let mut by_type = Map::new();
            for c in conditions {
                by_type.insert(
                    c.r#type.clone(),
                    json!({"status": c.status, "reason": c.reason, "message": c.message}),
                );
            }
            // The conditions the kubelet needs: one the runtime does not report is unknown.
            for t in ["RuntimeReady", "NetworkReady"] {
                by_type.entry(t.to_owned()).or_insert_with(|| {
                    unknown_value(format!("the CRI status has no {t} condition"))
                });
            }
            cf.set(&["cri", "runtimeStatus"], Json::Object(by_type));
            cf.evidence(
                &["cri", "runtimeStatus"],
                ev("api: runtime.v1.RuntimeService/Status"),
            );
        }
        Err(e) => cf.unknown(&["cri", "runtimeStatus"], format!("CRI status: {e}")),
    }
    Some(answers)
}

/// `ok`, `skip` (the plugin declined to load on this host, `ctr plugins ls`'s word) or `error`.
fn plugin_status(p: &api::Plugin) -> Json {
    match &p.init_err {
        None => json!({ "status": "ok" }),
        Some(e) if e.message.contains("skip plugin") => {
            json!({ "status": "skip", "error": e.message })
        }
        Some(e) => json!({ "status": "error", "error": e.message }),
    }
}

/// The CRI plugins' combined status: `absent` (not registered: disabled, or not built in),
/// `ok`, or the first failure.
fn cri_plugin_status(plugins: &[api::Plugin]) -> Json {
    let cri: Vec<&api::Plugin> = plugins
        .iter()
        .filter(|p| {
            (p.r#type == "io.containerd.grpc.v1" && p.id == "cri")
                || (p.r#type == "io.containerd.cri.v1" && (p.id == "runtime" || p.id == "images"))
        })
        .collect();
    if cri.is_empty() {
        return json!({ "status": "absent" });
    }
    match cri.iter().find(|p| p.init_err.is_some()) {
        None => json!({ "status": "ok" }),
        Some(p) => {
            let mut s = plugin_status(p);
            if let Json::Object(m) = &mut s {
                m.insert("plugin".into(), json!(format!("{}.{}", p.r#type, p.id)));
            }
            s
        }
    }
}

/// `1` from "1.6.20~ds1", `2` from "v2.0.0".
fn major_version(v: &str) -> Option<u64> {
    let v = v.strip_prefix('v').unwrap_or(v);
    let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Records the configuration facts, resolving or exposing the merge-strategy question.
fn config_facts(
    cf: &mut ComponentFacts,
    c: &Configs,
    strategy: Option<Strategy>,
    basis: &str,
    pid: Option<u32>,
) {
    let (replace, merge) = match (&c.replace, &c.merge) {
        (Err(e), _) | (_, Err(e)) => {
            let reason = format!("containerd configuration: {e}");
            for path in [
                &["configFiles"][..],
                &["config"],
                &["configVersion"],
                &["configMerge"],
                &["disabledPlugins"],
            ] {
                cf.unknown(path, &reason);
            }
            for path in config::CRI_PATHS {
                cf.unknown(path, &reason);
            }
            cf.unknown(&["cri", "disabled"], &reason);
            return;
        }
        (Ok(a), Ok(b)) => (a, b),
    };
    let ev = |source: &Source| -> Option<Evidence> {
        let e = match source {
            Source::File(f) => Evidence::file(f.clone()).with_source("config"),
            Source::Default => Evidence::default().with_source("default"),
            Source::Unset => return None,
        };
        Some(with_pid(e, pid))
    };
    let files_json = |l: &Loaded| {
        Json::Array(
            l.files
                .iter()
                .map(|f| {
                    json!({
                        "path": f.path,
                        "kind": f.meta.kind,
                        "mode": f.meta.mode_octal(),
                        "uid": f.meta.uid,
                        "gid": f.meta.gid,
                        "version": f.version,
                    })
                })
                .collect(),
        )
    };
    let single = merge.files.len() <= 1;
    let chosen = match strategy {
        Some(Strategy::ReplacePlugins) => Some(replace),
        Some(Strategy::MergePlugins) => Some(merge),
        None if single || replace.merged == merge.merged && same_files(replace, merge) => {
            Some(merge)
        }
        None => None,
    };
    let merge_name = match (strategy, single) {
        (_, true) => "single-file".to_owned(),
        (Some(s), false) => format!("{} ({basis})", s.name()),
        (None, false) if chosen.is_some() => {
            "equivalent (containerd 1.x and 2.x merge these files alike)".to_owned()
        }
        (None, false) => format!(
            "undetermined ({basis}); settings on which 1.x and 2.x merging disagree are unknown"
        ),
    };
    cf.set(&["configMerge"], merge_name);

    if let Some(l) = chosen {
        cf.set(&["configFiles"], files_json(l));
        cf.set(&["config"], config::redacted_json(&l.merged));
        cf.set(&["configVersion"], l.version);
        if let Some(f) = l.files.first() {
            let e = Evidence::file(f.path.clone()).with_source("config");
            cf.evidence(&["config"], with_pid(e, pid));
        }
        for s in config::normalize(l) {
            set_setting(cf, &s, ev(&s.source));
        }
        return;
    }

    // Undetermined and the two merges differ: keep what they agree on.
    let why = |what: &str| {
        format!(
            "{what} differs between containerd 1.x's merging of imports (plugin sections replaced) \
             and 2.x's (merged), and the daemon's version is unknown"
        )
    };
    if same_files(replace, merge) {
        cf.set(&["configFiles"], files_json(merge));
    } else {
        cf.unknown(&["configFiles"], why("the set of imported files"));
    }
    cf.set(
        &["configVersion"],
        if replace.version == merge.version {
            json!(merge.version)
        } else {
            unknown_value(why("the config version"))
        },
    );
    let (a, b) = (
        config::redacted_json(&replace.merged),
        config::redacted_json(&merge.merged),
    );
    cf.set(&["config"], agreeing(&a, &b, "config", &why));
    for (x, y) in config::normalize(replace)
        .iter()
        .zip(config::normalize(merge).iter())
    {
        if x == y {
            set_setting(cf, y, ev(&y.source));
        } else {
            cf.unknown(y.path, why(&y.path.join(".")));
        }
    }
}

fn same_files(a: &Loaded, b: &Loaded) -> bool {
    a.files
        .iter()
        .map(|f| &f.path)
        .eq(b.files.iter().map(|f| &f.path))
}

/// `a` where it equals `b`, recursing into objects; unknown markers where they differ.
fn agreeing(a: &Json, b: &Json, at: &str, why: &dyn Fn(&str) -> String) -> Json {
    match (a, b) {
        _ if a == b => b.clone(),
        (Json::Object(x), Json::Object(y)) => {
            let mut out = Map::new();
            for key in x.keys().chain(y.keys()) {
                if out.contains_key(key) {
                    continue;
                }
                let here = format!("{at}.{key}");
                let v = match (x.get(key), y.get(key)) {
                    (Some(p), Some(q)) => agreeing(p, q, &here, why),
                    _ => unknown_value(why(&here)),
                };
                out.insert(key.clone(), v);
            }
            Json::Object(out)
        }
        _ => unknown_value(why(at)),
    }
}

fn set_setting(cf: &mut ComponentFacts, s: &Setting, evidence: Option<Evidence>) {
    match &s.value {
        // Not set and no default: the fact is absent.
        Ok(Json::Null) => {}
        Ok(v) => {
            cf.set(s.path, v.clone());
            if let Some(e) = evidence {
                cf.evidence(s.path, e);
            }
        }
        Err(reason) => cf.unknown(s.path, reason),
    }
}

#[cfg(test)]
mod tests;
