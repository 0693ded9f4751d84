//! The kubelet inspector: the running kubelet's flags, its configuration file (and drop-in
//! directory), the effective configuration those give when merged the way the kubelet merges
//! them, its feature gates with their maturity, and the files CIS section 4.1 cares about.
//!
//! Facts (component `kubelet`):
//! * `running`, `process` (`pid`, `argv`, `pids`, `selection`, `cmdlineTruncated`);
//! * `flags.<name>` (the raw effective value), `flagsRepeated.<name>` (every value of a flag
//!   given more than once), `positionalArgs`;
//! * `configFile` (`path`, `apiVersion`, `kind`, `dropIns`), and `config.<field>`: the
//!   effective `KubeletConfiguration` with upstream field names (every field of the file is
//!   kept, modeled or not), evidence per field saying `default`, `config` (file) or `flag` (pid);
//! * `featureGates.<Gate>`: `{enabled, stage, source, default, lockedToDefault}`, and
//!   `featureGateStages` (which Kubernetes minor's stages were used, and why);
//! * `version` (unknown: see [`version_reason`]);
//! * `files.{config,kubeconfig,clientCA,unit}`, `files.dropIns.<name>`:
//!   `{path, exists, kind, mode, uid, gid}`;
//! * `environmentFiles.<path>` (variables and the flags inside them) and `unitEnvironment`.
//!
//! The merge follows `cmd/kubelet/app/server.go`: with `--config`, the file (defaulted by
//! v1beta1 for unset fields, then the `--config-dir` drop-ins in name order) is the base and
//! every flag given explicitly overrides it (feature gates per gate); without `--config` the
//! base is the v1beta1 defaults plus the legacy flag-era defaults.

mod defaults;
pub(crate) mod flags;
mod gates;
pub(crate) mod support;
mod units;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use self::flags::{Kind, kubelet_flag, kubelet_is_bool};
use self::gates::GateInfo;
use self::support::{Merged, Source, file_fact, process_path, record_flags, select_oldest};
use super::Context;
use super::process::{Flags, parse_flags};
use crate::facts::{ComponentFacts, Evidence};
use crate::host::{HostRoot, display};
use crate::inspect::Process;

pub const NAME: &str = "kubelet";

/// Upper bound on entries of a `--config-dir` directory.
const CONFIG_DIR_LIMIT: usize = 4096;

/// The API groups/versions a `KubeletConfiguration` file may declare.
const CONFIG_API_VERSIONS: &[&str] = &["kubelet.config.k8s.io/v1beta1", "kubelet.config.k8s.io/v1"];

pub fn inspect(ctx: &Context<'_>) -> ComponentFacts {
    let mut cf = ComponentFacts::new(NAME);
    units::inspect(ctx.host, &mut cf);
    cf.unknown(&["version"], version_reason());

    if let Some(err) = &ctx.procs.error {
        not_inspectable(
            &mut cf,
            &format!("/proc could not be listed ({err}), so the kubelet process is unknown"),
        );
        cf.unknown(&["running"], format!("/proc could not be listed: {err}"));
        return cf;
    }
    let found = ctx.procs.find(NAME);
    let Some((proc, selection)) = select_oldest(ctx.host, &found) else {
        cf.set(&["running"], false);
        cf.evidence(
            &["running"],
            Evidence::file("/proc").with_source("process table"),
        );
        not_inspectable(&mut cf, "no kubelet process found in /proc");
        return cf;
    };
    cf.set(&["running"], true);
    let truncated = support::cmdline_truncated(ctx.host, proc);
    cf.set(
        &["process"],
        json!({
            "pid": proc.pid,
            "argv": proc.argv,
            "pids": found.iter().map(|p| p.pid).collect::<Vec<_>>(),
            "selection": selection.describe(),
            "cmdlineTruncated": truncated,
        }),
    );
    cf.evidence(
        &["process"],
        Evidence::file(display(&proc.proc_path("cmdline"))).with_pid(proc.pid),
    );

    let args = proc.args_for(NAME);
    let flags = parse_flags(args, kubelet_is_bool);
    let suspect = if truncated {
        support::truncated_flag(args, kubelet_is_bool)
    } else {
        None
    };
    record_flags(
        &mut cf,
        &flags,
        proc.pid,
        suspect.as_deref(),
        &proc.proc_path("cmdline"),
        accumulates,
    );

    let k = Kubelet {
        host: ctx.host,
        proc,
        flags: &flags,
        suspect: suspect.as_deref(),
    };
    k.inspect(&mut cf);
    cf
}

/// Why `kubelet.version` is unknown: nothing on the host records it reliably without running
/// the binary, which nodedrift never does.
fn version_reason() -> String {
    format!(
        "the kubelet's version is not recorded anywhere nodedrift can read without executing the binary; \
         feature-gate stages use the newest table column (1.{})",
        gates::NEWEST_MINOR
    )
}

/// Marks everything that needs the process as unknown for `reason`.
fn not_inspectable(cf: &mut ComponentFacts, reason: &str) {
    for k in ["process", "flags", "configFile", "config", "featureGates"] {
        cf.unknown(&[k], reason);
    }
    for role in ["config", "kubeconfig", "clientCA"] {
        cf.unknown(&["files", role], reason);
    }
}

/// pflag accumulates repeated list and map flags instead of keeping the last.
fn accumulates(name: &str) -> bool {
    kubelet_flag(name).is_some_and(|s| {
        matches!(
            s.kind,
            Kind::List | Kind::Map | Kind::Eviction | Kind::Gates
        )
    })
}

struct Kubelet<'a> {
    host: &'a HostRoot,
    proc: &'a Process,
    flags: &'a Flags,
    /// A flag whose value may be cut off by a truncated command line.
    suspect: Option<&'a str>,
}

/// The configuration file as loaded.
struct LoadedConfig {
    /// The path as the kubelet sees it (absolute).
    process_path: PathBuf,
    doc: Map<String, Value>,
    /// Drop-ins applied after the file, in order.
    drop_ins: Vec<(PathBuf, Map<String, Value>)>,
}

impl Kubelet<'_> {
    fn inspect(&self, cf: &mut ComponentFacts) {
        let mut merged = Merged::default();
        merged.overlay(&defaults::v1beta1(), &Source::Default, &[]);

        let loaded = match self.flags.get("config") {
            Some(_) if self.suspect == Some("config") => Err(format!(
                "{}: the command line is truncated inside --config; the configuration file is unknown",
                display(&self.proc.proc_path("cmdline"))
            )),
            Some(arg) => self.load_config(cf, arg).map(Some),
            None => Ok(None),
        };
        let loaded = match loaded {
            Ok(l) => l,
            Err(reason) => {
                cf.unknown(&["config"], &reason);
                cf.unknown(&["configFile"], &reason);
                cf.unknown(&["featureGates"], &reason);
                self.record_file_roles(cf, None);
                return;
            }
        };
        match &loaded {
            Some(l) => {
                let src = Source::Config(display(&l.process_path));
                let mut doc = l.doc.clone();
                doc.remove("apiVersion");
                doc.remove("kind");
                merged.overlay(&doc, &src, defaults::REPLACE_WHOLE);
                for (path, d) in &l.drop_ins {
                    let mut d = d.clone();
                    d.remove("apiVersion");
                    d.remove("kind");
                    merged.overlay(&d, &Source::Config(display(path)), defaults::REPLACE_WHOLE);
                }
                merged.default_zero_values(&defaults::v1beta1(), defaults::ZERO_MEANS_UNSET);
            }
            None => {
                cf.set(&["files", "config"], json!({"path": null, "exists": false}));
                for (path, v) in defaults::legacy() {
                    merged.set(path, v, Source::Default);
                }
                cf.set(&["configFile"], json!({"path": null}));
                cf.evidence(
                    &["configFile"],
                    Evidence::default()
                        .with_pid(self.proc.pid)
                        .with_source("no --config flag: legacy flag defaults apply"),
                );
            }
        }
        let mut flag_errors: Vec<(String, String)> = Vec::new();
        self.apply_flags(&mut merged, &mut flag_errors);
        merged.record(cf, "config", self.proc.pid);
        for (field, reason) in flag_errors {
            let path: Vec<&str> = field.split('.').collect();
            let mut at = vec!["config"];
            at.extend(path);
            cf.unknown(&at, reason);
        }
        self.record_gates(cf, &merged);
        self.record_file_roles(cf, Some((&merged, loaded.as_ref())));
    }

    /// Resolves, reads and parses `--config` (and `--config-dir`); records `files.config` and
    /// `configFile`.
    fn load_config(&self, cf: &mut ComponentFacts, arg: &str) -> Result<LoadedConfig, String> {
        let pp = match process_path(self.host, self.proc, arg) {
            Ok(pp) => pp,
            Err(reason) => {
                cf.unknown(&["files", "config"], &reason);
                return Err(reason);
            }
        };
        file_fact(cf, &["config"], self.host, &pp.host_path);
        let doc = support::load_document(self.host, &pp.host_path).map_err(|e| {
            if pp.translated {
                format!(
                    "{e} (the kubelet's {} seen from the host)",
                    display(&pp.process_path)
                )
            } else {
                e
            }
        })?;
        check_kind(&doc, &pp.host_path)?;
        let mut drop_ins = Vec::new();
        if let Some(dir) = self.flags.get("config-dir") {
            let dpp = process_path(self.host, self.proc, dir)?;
            let entries = self
                .host
                .read_dir(&dpp.host_path, CONFIG_DIR_LIMIT)
                .map_err(|e| format!("--config-dir: {e}"))?;
            let mut names: Vec<String> = entries
                .iter()
                .filter_map(|e| e.name.to_str().map(str::to_owned))
                .filter(|n| n.ends_with(".conf"))
                .collect();
            names.sort();
            for n in names {
                let p = dpp.host_path.join(&n);
                let d = support::load_document(self.host, &p)?;
                check_kind(&d, &p)?;
                drop_ins.push((dpp.process_path.join(&n), d));
            }
        }
        cf.set(
            &["configFile"],
            json!({
                "path": display(&pp.process_path),
                "hostPath": display(&pp.host_path),
                "apiVersion": doc.get("apiVersion"),
                "kind": doc.get("kind"),
                "dropIns": drop_ins.iter().map(|(p, _)| display(p)).collect::<Vec<_>>(),
            }),
        );
        cf.evidence(
            &["configFile"],
            Evidence::file(display(&pp.host_path))
                .with_pid(self.proc.pid)
                .with_source("--config"),
        );
        Ok(LoadedConfig {
            process_path: pp.process_path,
            doc,
            drop_ins,
        })
    }

    /// Overrides the merged configuration with every flag given explicitly.
    fn apply_flags(&self, merged: &mut Merged, errors: &mut Vec<(String, String)>) {
        let src = Source::Flag(self.proc.pid);
        for (name, values) in &self.flags.values {
            let Some(spec) = kubelet_flag(name) else {
                continue;
            };
            let Some(field) = spec.field else { continue };
            let path: Vec<&str> = field.split('.').collect();
            if self.suspect == Some(name.as_str()) {
                errors.push((
                    field.to_owned(),
                    format!(
                        "{}: the command line is truncated inside --{name}; the effective value is unknown",
                        display(&self.proc.proc_path("cmdline"))
                    ),
                ));
                continue;
            }
            if spec.kind == Kind::Gates {
                // Flag gates override the file's gate by gate; repeated flags accumulate.
                for raw in values {
                    match flags::parse_gates(raw) {
                        Ok(gs) => {
                            for (g, on) in gs {
                                merged.set(&["featureGates", &g], Value::Bool(on), src.clone());
                            }
                        }
                        Err(e) => errors.push((field.to_owned(), format!("--{name}={raw}: {e}"))),
                    }
                }
                continue;
            }
            let accumulate = accumulates(name);
            let mut value: Option<Value> = None;
            for raw in values {
                match flags::convert(spec.kind, raw) {
                    Ok(v) => {
                        value = Some(match (accumulate, value.take(), v) {
                            (true, Some(Value::Array(mut a)), Value::Array(b)) => {
                                a.extend(b);
                                Value::Array(a)
                            }
                            (true, Some(Value::Object(mut a)), Value::Object(b)) => {
                                a.extend(b);
                                Value::Object(a)
                            }
                            (_, _, v) => v,
                        });
                    }
                    Err(e) => {
                        errors.push((
                            field.to_owned(),
                            format!("--{name}={raw}: {e} (the kubelet would have refused it)"),
                        ));
                        value = None;
                        break;
                    }
                }
            }
            if let Some(v) = value {
                merged.set(&path, v, src.clone());
            }
        }
    }

    /// `featureGates.<Gate>` for every gate set in the file or on the command line.
    fn record_gates(&self, cf: &mut ComponentFacts, merged: &Merged) {
        let minor = gates::NEWEST_MINOR;
        cf.set(
            &["featureGateStages"],
            json!({
                "kubernetesVersion": format!("1.{minor}"),
                "basis": "the kubelet's version is unknown: the newest column of the embedded table is used",
                "tableCovers": format!("1.{}-1.{}", gates::OLDEST_MINOR, gates::NEWEST_MINOR),
                "tableGates": gates::gate_count(),
            }),
        );
        cf.set(&["featureGates"], Value::Object(Map::new()));
        let Some(Value::Object(set)) = merged.get(&["featureGates"]) else {
            return;
        };
        for (gate, enabled) in set {
            let source = merged
                .source(&["featureGates", gate])
                .cloned()
                .unwrap_or(Source::Default);
            let mut fact = Map::new();
            match enabled {
                Value::Bool(b) => fact.insert("enabled".into(), Value::Bool(*b)),
                other => fact.insert("enabled".into(), other.clone()),
            };
            fact.insert(
                "source".into(),
                json!(match source {
                    Source::Flag(_) => "flag",
                    Source::Config(_) => "config",
                    Source::Default => "default",
                }),
            );
            match gates::lookup(gate, minor) {
                GateInfo::Known {
                    stage,
                    default,
                    locked,
                } => {
                    fact.insert("stage".into(), json!(stage.as_str()));
                    fact.insert("default".into(), json!(default));
                    fact.insert("lockedToDefault".into(), json!(locked));
                }
                GateInfo::NotYet { introduced } => {
                    fact.insert("stage".into(), json!("unknown"));
                    fact.insert(
                        "note".into(),
                        json!(format!("not a feature gate of Kubernetes 1.{minor} (introduced in {introduced})")),
                    );
                }
                GateInfo::Removed { removed } => {
                    fact.insert("stage".into(), json!("unknown"));
                    fact.insert(
                        "note".into(),
                        json!(format!(
                            "no longer a feature gate in Kubernetes {removed} and later"
                        )),
                    );
                }
                GateInfo::Unknown => {
                    fact.insert("stage".into(), json!("unknown"));
                    fact.insert(
                        "note".into(),
                        json!("not in nodedrift's feature-gate table"),
                    );
                }
            }
            cf.set(&["featureGates", gate], Value::Object(fact));
            cf.evidence(&["featureGates", gate], source.evidence(self.proc.pid));
        }
    }

    /// `files.kubeconfig` and `files.clientCA` (`files.config` is recorded while loading).
    fn record_file_roles(
        &self,
        cf: &mut ComponentFacts,
        merged: Option<(&Merged, Option<&LoadedConfig>)>,
    ) {
        match self.flags.get("kubeconfig") {
            Some(_) if self.suspect == Some("kubeconfig") => cf.unknown(
                &["files", "kubeconfig"],
                format!(
                    "{}: the command line is truncated inside --kubeconfig",
                    display(&self.proc.proc_path("cmdline"))
                ),
            ),
            Some(arg) => self.role(cf, "kubeconfig", arg),
            None => cf.set(
                &["files", "kubeconfig"],
                json!({"path": null, "exists": false}),
            ),
        }
        let Some((merged, loaded)) = merged else {
            cf.unknown(
                &["files", "clientCA"],
                "the kubelet configuration is unknown",
            );
            return;
        };
        let ca = ["authentication", "x509", "clientCAFile"];
        match merged
            .get(&ca)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(file) => {
                // Relative paths in the config file are relative to the file's directory;
                // relative flag values to the working directory.
                let arg = match (merged.source(&ca), loaded) {
                    (Some(Source::Config(_)), Some(l)) if Path::new(file).is_relative() => {
                        let dir = l.process_path.parent().unwrap_or(Path::new("/"));
                        display(&dir.join(file))
                    }
                    _ => file.to_owned(),
                };
                self.role(cf, "clientCA", &arg);
            }
            None => cf.set(
                &["files", "clientCA"],
                json!({"path": null, "exists": false}),
            ),
        }
    }

    fn role(&self, cf: &mut ComponentFacts, role: &str, arg: &str) {
        match process_path(self.host, self.proc, arg) {
            Ok(pp) => file_fact(cf, &[role], self.host, &pp.host_path),
            Err(reason) => cf.unknown(&["files", role], reason),
        }
    }
}

/// A configuration file must declare `kind: KubeletConfiguration` of a known API version, or
/// the kubelet refuses it.
fn check_kind(doc: &Map<String, Value>, path: &Path) -> Result<(), String> {
    let kind = doc.get("kind").and_then(Value::as_str);
    let api = doc.get("apiVersion").and_then(Value::as_str);
    if kind != Some("KubeletConfiguration") {
        return Err(format!(
            "{}: kind is {}, not KubeletConfiguration",
            display(path),
            kind.map_or_else(|| "missing".to_owned(), |k| format!("{k:?}"))
        ));
    }
    match api {
        Some(a) if CONFIG_API_VERSIONS.contains(&a) => Ok(()),
        other => Err(format!(
            "{}: apiVersion {} is not one the kubelet reads ({})",
            display(path),
            other.map_or_else(|| "missing".to_owned(), |a| format!("{a:?}")),
            CONFIG_API_VERSIONS.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests;
