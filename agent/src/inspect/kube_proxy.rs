//! The kube-proxy inspector: its flags, its `KubeProxyConfiguration` file, the effective
//! configuration those give, and the mode/owner of its configuration and kubeconfig files.
//!
//! The merge follows `cmd/kube-proxy/app/options.go` (`Complete`), which differs from the
//! kubelet's: **with `--config`, the file replaces the flag-built configuration** — only the
//! logging flags and `--hostname-override` still apply, every other flag is ignored (recorded as
//! `flagsIgnored`, since an operator reading the command line would expect otherwise). Without
//! `--config`, the v1alpha1 defaults are overridden by the flags, and the deprecated
//! `--metrics-port`/`--healthz-port` are folded into the bind addresses. In both cases the
//! defaulting appends the default port to a bind address given without one, and an empty
//! `mode` means `iptables` on Linux: `config.mode` keeps the raw value, `effectiveMode` the one
//! in force.
//!
//! On AKS kube-proxy runs in a pod: its paths are in the container's mount namespace, and are
//! translated to host paths through its mount table (see `support::process_path`).
//!
//! Facts (component `kube-proxy`): `running`, `process`, `flags.<name>`, `flagsRepeated.<name>`,
//! `flagsIgnored`, `configFile`, `config.<field>`, `effectiveMode`, `files.config`,
//! `files.kubeconfig`.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::Context;
use super::kubelet::flags::{FlagSpec, Kind, convert, f, only, parse_gates};
use super::kubelet::support::{
    Merged, Source, cmdline_truncated, file_fact, load_document, parse_document, process_path,
    record_flags, select_oldest, truncated_flag,
};
use super::process::{Flags, parse_flags};
use crate::facts::{ComponentFacts, Evidence};
use crate::host::display;

pub const NAME: &str = "kube-proxy";

/// Defaults of `KubeProxyConfiguration` v1alpha1 on Linux (pkg/proxy/apis/config/v1alpha1).
const DEFAULTS: &str = r#"
bindAddress: 0.0.0.0
healthzBindAddress: 0.0.0.0:10256
metricsBindAddress: 127.0.0.1:10249
mode: ""
clusterCIDR: ""
oomScoreAdj: -999
configSyncPeriod: 15m0s
clientConnection:
  contentType: application/vnd.kubernetes.protobuf
  qps: 5
  burst: 10
conntrack:
  maxPerCore: 32768
  min: 131072
  tcpEstablishedTimeout: 24h0m0s
  tcpCloseWaitTimeout: 1h0m0s
iptables:
  masqueradeBit: 14
  masqueradeAll: false
  syncPeriod: 30s
  minSyncPeriod: 1s
ipvs:
  syncPeriod: 30s
"#;

/// Fields v1alpha1 defaulting fills when they hold Go's zero value (kubeadm writes such zeros).
const ZERO_MEANS_UNSET: &[&str] = &[
    "bindAddress",
    "healthzBindAddress",
    "metricsBindAddress",
    "oomScoreAdj",
    "configSyncPeriod",
    "clientConnection.contentType",
    "clientConnection.qps",
    "clientConnection.burst",
    "conntrack.maxPerCore",
    "conntrack.min",
    "conntrack.tcpEstablishedTimeout",
    "conntrack.tcpCloseWaitTimeout",
    "iptables.masqueradeBit",
    "iptables.syncPeriod",
    "iptables.minSyncPeriod",
    "ipvs.syncPeriod",
];

const DEFAULT_METRICS_PORT: u16 = 10249;
const DEFAULT_HEALTHZ_PORT: u16 = 10256;

/// kube-proxy's flags (cmd/kube-proxy/app/options.go `AddFlags`).
const FLAGS: &[FlagSpec] = &[
    only("config", Kind::Str),
    only("master", Kind::Str),
    only("healthz-port", Kind::Int),
    only("metrics-port", Kind::Int),
    only("cleanup", Kind::Bool),
    only("init-only", Kind::Bool),
    only("write-config-to", Kind::Str),
    only("v", Kind::Int),
    only("vmodule", Kind::Str),
    only("help", Kind::Bool),
    only("version", Kind::Str),
    f("kubeconfig", Kind::Str, "clientConnection.kubeconfig"),
    f("kube-api-qps", Kind::Float, "clientConnection.qps"),
    f("kube-api-burst", Kind::Int, "clientConnection.burst"),
    f(
        "kube-api-content-type",
        Kind::Str,
        "clientConnection.contentType",
    ),
    f("bind-address", Kind::Str, "bindAddress"),
    f("bind-address-hard-fail", Kind::Bool, "bindAddressHardFail"),
    f("healthz-bind-address", Kind::Str, "healthzBindAddress"),
    f("metrics-bind-address", Kind::Str, "metricsBindAddress"),
    f("proxy-mode", Kind::Str, "mode"),
    f("cluster-cidr", Kind::Str, "clusterCIDR"),
    f("hostname-override", Kind::Str, "hostnameOverride"),
    f("conntrack-max-per-core", Kind::Int, "conntrack.maxPerCore"),
    f("conntrack-min", Kind::Int, "conntrack.min"),
    f(
        "conntrack-tcp-timeout-established",
        Kind::Duration,
        "conntrack.tcpEstablishedTimeout",
    ),
    f(
        "conntrack-tcp-timeout-close-wait",
        Kind::Duration,
        "conntrack.tcpCloseWaitTimeout",
    ),
    f(
        "conntrack-tcp-be-liberal",
        Kind::Bool,
        "conntrack.tcpBeLiberal",
    ),
    f(
        "conntrack-udp-timeout",
        Kind::Duration,
        "conntrack.udpTimeout",
    ),
    f(
        "conntrack-udp-timeout-stream",
        Kind::Duration,
        "conntrack.udpStreamTimeout",
    ),
    f(
        "iptables-masquerade-bit",
        Kind::Int,
        "iptables.masqueradeBit",
    ),
    f("masquerade-all", Kind::Bool, "iptables.masqueradeAll"),
    f(
        "iptables-sync-period",
        Kind::Duration,
        "iptables.syncPeriod",
    ),
    f(
        "iptables-min-sync-period",
        Kind::Duration,
        "iptables.minSyncPeriod",
    ),
    f(
        "iptables-localhost-nodeports",
        Kind::Bool,
        "iptables.localhostNodePorts",
    ),
    f("ipvs-scheduler", Kind::Str, "ipvs.scheduler"),
    f("ipvs-sync-period", Kind::Duration, "ipvs.syncPeriod"),
    f("ipvs-min-sync-period", Kind::Duration, "ipvs.minSyncPeriod"),
    f("ipvs-strict-arp", Kind::Bool, "ipvs.strictARP"),
    f("ipvs-exclude-cidrs", Kind::List, "ipvs.excludeCIDRs"),
    f("nodeport-addresses", Kind::List, "nodePortAddresses"),
    f("oom-score-adj", Kind::Int, "oomScoreAdj"),
    f("feature-gates", Kind::Gates, "featureGates"),
    f("detect-local-mode", Kind::Str, "detectLocalMode"),
    f(
        "pod-bridge-interface",
        Kind::Str,
        "detectLocal.bridgeInterface",
    ),
    f(
        "pod-interface-name-prefix",
        Kind::Str,
        "detectLocal.interfaceNamePrefix",
    ),
    f("profiling", Kind::Bool, "enableProfiling"),
    f("config-sync-period", Kind::Duration, "configSyncPeriod"),
    f(
        "show-hidden-metrics-for-version",
        Kind::Str,
        "showHiddenMetricsForVersion",
    ),
];

/// Flags that still apply when `--config` is given.
const APPLY_WITH_CONFIG: &[&str] = &["hostname-override"];

fn flag(name: &str) -> Option<&'static FlagSpec> {
    FLAGS.iter().find(|s| s.name == name)
}

fn is_bool(name: &str) -> bool {
    flag(name).is_some_and(|s| s.kind == Kind::Bool)
}

fn accumulates(name: &str) -> bool {
    flag(name).is_some_and(|s| matches!(s.kind, Kind::List | Kind::Map | Kind::Gates))
}

pub fn inspect(ctx: &Context<'_>) -> ComponentFacts {
    let mut cf = ComponentFacts::new(NAME);
    if let Some(err) = &ctx.procs.error {
        let reason =
            format!("/proc could not be listed ({err}), so the kube-proxy process is unknown");
        for k in [
            "running",
            "process",
            "flags",
            "configFile",
            "config",
            "effectiveMode",
            "files",
        ] {
            cf.unknown(&[k], &reason);
        }
        return cf;
    }
    let found = ctx.procs.find(NAME);
    let Some((proc, selection)) = select_oldest(ctx.host, &found) else {
        cf.set(&["running"], false);
        cf.evidence(
            &["running"],
            Evidence::file("/proc").with_source("process table"),
        );
        let reason = "no kube-proxy process found in /proc";
        for k in [
            "process",
            "flags",
            "configFile",
            "config",
            "effectiveMode",
            "files",
        ] {
            cf.unknown(&[k], reason);
        }
        return cf;
    };
    cf.set(&["running"], true);
    let truncated = cmdline_truncated(ctx.host, proc);
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
    let cmdline = proc.proc_path("cmdline");
    cf.evidence(
        &["process"],
        Evidence::file(display(&cmdline)).with_pid(proc.pid),
    );
    let args = proc.args_for(NAME);
    let flags = parse_flags(args, is_bool);
    let suspect = if truncated {
        truncated_flag(args, is_bool)
    } else {
        None
    };
    record_flags(
        &mut cf,
        &flags,
        proc.pid,
        suspect.as_deref(),
        &cmdline,
        accumulates,
    );

    let mut merged = Merged::default();
    static PARSED: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    let defaults = PARSED.get_or_init(|| {
        parse_document(DEFAULTS).unwrap_or_else(|e| {
            tracing::error!(error = %e, "the embedded kube-proxy defaults do not parse");
            Map::new()
        })
    });
    merged.overlay(defaults, &Source::Default, &[]);
    let config_arg = flags.get("config");
    if let Some(arg) = config_arg {
        let loaded = if suspect.as_deref() == Some("config") {
            Err(format!(
                "{}: the command line is truncated inside --config",
                display(&cmdline)
            ))
        } else {
            process_path(ctx.host, proc, arg).and_then(|pp| {
                file_fact(&mut cf, &["config"], ctx.host, &pp.host_path);
                let doc = load_document(ctx.host, &pp.host_path)?;
                check_kind(&doc, &pp.host_path)?;
                Ok((pp, doc))
            })
        };
        match loaded {
            Ok((pp, mut doc)) => {
                cf.set(
                    &["configFile"],
                    json!({
                        "path": display(&pp.process_path),
                        "hostPath": display(&pp.host_path),
                        "apiVersion": doc.get("apiVersion"),
                        "kind": doc.get("kind"),
                    }),
                );
                cf.evidence(
                    &["configFile"],
                    Evidence::file(display(&pp.host_path))
                        .with_pid(proc.pid)
                        .with_source("--config"),
                );
                doc.remove("apiVersion");
                doc.remove("kind");
                merged.overlay(
                    &doc,
                    &Source::Config(display(&pp.process_path)),
                    &["featureGates", "nodePortAddresses"],
                );
                merged.default_zero_values(defaults, ZERO_MEANS_UNSET);
            }
            Err(reason) => {
                for k in ["configFile", "config", "effectiveMode", "files"] {
                    cf.unknown(&[k], &reason);
                }
                return cf;
            }
        }
    } else {
        cf.set(&["configFile"], json!({"path": null}));
        cf.set(&["files", "config"], json!({"path": null, "exists": false}));
    }

    let mut errors: Vec<(String, String)> = Vec::new();
    let mut ignored: Vec<String> = Vec::new();
    for (name, values) in &flags.values {
        let Some(spec) = flag(name) else { continue };
        let Some(field) = spec.field else { continue };
        if config_arg.is_some() && !APPLY_WITH_CONFIG.contains(&name.as_str()) {
            ignored.push(name.clone());
            continue;
        }
        if suspect.as_deref() == Some(name.as_str()) {
            errors.push((
                field.to_owned(),
                format!(
                    "{}: the command line is truncated inside --{name}",
                    display(&cmdline)
                ),
            ));
            continue;
        }
        apply_flag(&mut merged, spec, field, values, proc.pid, &mut errors);
    }
    if config_arg.is_none() {
        fold_deprecated_port(
            &mut merged,
            &flags,
            "metricsBindAddress",
            "metrics-port",
            DEFAULT_METRICS_PORT,
            proc.pid,
        );
        fold_deprecated_port(
            &mut merged,
            &flags,
            "healthzBindAddress",
            "healthz-port",
            DEFAULT_HEALTHZ_PORT,
            proc.pid,
        );
    }
    append_default_port(&mut merged, "metricsBindAddress", DEFAULT_METRICS_PORT);
    append_default_port(&mut merged, "healthzBindAddress", DEFAULT_HEALTHZ_PORT);

    merged.record(&mut cf, "config", proc.pid);
    for (field, reason) in errors {
        let mut at = vec!["config"];
        at.extend(field.split('.'));
        cf.unknown(&at, reason);
    }
    if config_arg.is_some() {
        cf.set(
            &["flagsIgnored"],
            Value::Array(ignored.into_iter().map(Value::String).collect()),
        );
        cf.evidence(
            &["flagsIgnored"],
            Evidence::default()
                .with_pid(proc.pid)
                .with_source("with --config, kube-proxy ignores every flag but the logging flags and --hostname-override"),
        );
    }
    let raw_mode = merged.get(&["mode"]).and_then(Value::as_str).unwrap_or("");
    let effective = if raw_mode.is_empty() {
        "iptables"
    } else {
        raw_mode
    };
    cf.set(&["effectiveMode"], effective);
    cf.evidence(
        &["effectiveMode"],
        merged
            .source(&["mode"])
            .map(|s| s.evidence(proc.pid))
            .unwrap_or_default()
            .with_source(if raw_mode.is_empty() {
                "default (empty mode means iptables on Linux)"
            } else {
                "mode"
            }),
    );

    match merged
        .get(&["clientConnection", "kubeconfig"])
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        Some(kc) => match process_path(ctx.host, proc, kc) {
            Ok(pp) => file_fact(&mut cf, &["kubeconfig"], ctx.host, &pp.host_path),
            Err(reason) => cf.unknown(&["files", "kubeconfig"], reason),
        },
        None => cf.set(
            &["files", "kubeconfig"],
            json!({"path": null, "exists": false}),
        ),
    }
    cf
}

fn apply_flag(
    merged: &mut Merged,
    spec: &FlagSpec,
    field: &str,
    values: &[String],
    pid: u32,
    errors: &mut Vec<(String, String)>,
) {
    let src = Source::Flag(pid);
    let path: Vec<&str> = field.split('.').collect();
    if spec.kind == Kind::Gates {
        for raw in values {
            match parse_gates(raw) {
                Ok(gs) => {
                    for (g, on) in gs {
                        merged.set(&["featureGates", &g], Value::Bool(on), src.clone());
                    }
                }
                Err(e) => errors.push((field.to_owned(), format!("--{}={raw}: {e}", spec.name))),
            }
        }
        return;
    }
    let mut value: Option<Value> = None;
    for raw in values {
        match convert(spec.kind, raw) {
            Ok(Value::Array(b)) if accumulates(spec.name) => {
                let mut a = match value.take() {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                };
                a.extend(b);
                value = Some(Value::Array(a));
            }
            Ok(v) => value = Some(v),
            Err(e) => {
                errors.push((field.to_owned(), format!("--{}={raw}: {e}", spec.name)));
                return;
            }
        }
    }
    if let Some(v) = value {
        merged.set(&path, v, src);
    }
}

/// `addressFromDeprecatedFlags`: without `--config`, a `--metrics-port`/`--healthz-port`
/// (default the standard port) is appended to an address given without one, and port 0 turns
/// the server off (empty address).
fn fold_deprecated_port(
    merged: &mut Merged,
    flags: &Flags,
    field: &str,
    port_flag: &str,
    default: u16,
    pid: u32,
) {
    let port: i64 = flags
        .get(port_flag)
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(i64::from(default));
    let addr = merged
        .get(&[field])
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let src = if flags.get(port_flag).is_some() {
        Source::Flag(pid)
    } else {
        merged.source(&[field]).cloned().unwrap_or(Source::Default)
    };
    let new = if port == 0 {
        String::new()
    } else {
        append_port_if_needed(&addr, port)
    };
    if new != addr {
        merged.set(&[field], Value::String(new), src);
    }
}

fn append_default_port(merged: &mut Merged, field: &str, port: u16) {
    let Some(addr) = merged
        .get(&[field])
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return;
    };
    if addr.is_empty() {
        return;
    }
    let new = append_port_if_needed(&addr, i64::from(port));
    if new != addr {
        let src = merged.source(&[field]).cloned().unwrap_or(Source::Default);
        merged.set(&[field], Value::String(new), src);
    }
}

/// Go's `proxyutil.AppendPortIfNeeded`: an address that already has a port, or is not an IP,
/// is kept; a bare IPv4 gets `:port`, a bare IPv6 `[ip]:port`.
fn append_port_if_needed(addr: &str, port: i64) -> String {
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return addr.to_owned();
    }
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => format!("{addr}:{port}"),
        Ok(std::net::IpAddr::V6(_)) => format!("[{addr}]:{port}"),
        Err(_) => addr.to_owned(),
    }
}

fn check_kind(doc: &Map<String, Value>, path: &Path) -> Result<(), String> {
    match (
        doc.get("apiVersion").and_then(Value::as_str),
        doc.get("kind").and_then(Value::as_str),
    ) {
        (Some("kubeproxy.config.k8s.io/v1alpha1"), Some("KubeProxyConfiguration")) => Ok(()),
        (api, kind) => Err(format!(
            "{}: apiVersion {:?} kind {:?} is not a kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration",
            display(path),
            api.unwrap_or("missing"),
            kind.unwrap_or("missing")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostRoot;
    use crate::inspect::{Options, Process, ProcessTable};
    use std::fs;

    fn proc_table(pid: u32, argv: &[&str]) -> ProcessTable {
        ProcessTable {
            processes: vec![Process {
                pid,
                argv: argv.iter().map(|s| (*s).to_owned()).collect(),
                comm: "kube-proxy".into(),
            }],
            error: None,
        }
    }

    fn run(root: &Path, procs: &ProcessTable) -> serde_json::Value {
        let host = HostRoot::new(root).unwrap();
        let opts = Options::default();
        let ctx = Context {
            host: &host,
            procs,
            options: &opts,
        };
        serde_json::to_value(inspect(&ctx)).unwrap()
    }

    #[test]
    fn config_file_wins_over_flags_except_hostname_override() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("var/lib/kube-proxy")).unwrap();
        fs::write(
            dir.path().join("var/lib/kube-proxy/config.yaml"),
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmetricsBindAddress: 0.0.0.0\nclientConnection:\n  kubeconfig: /var/lib/kube-proxy/kubeconfig\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("var/lib/kube-proxy/kubeconfig"),
            "apiVersion: v1\n",
        )
        .unwrap();
        let t = proc_table(
            1301,
            &[
                "kube-proxy",
                "--config=/var/lib/kube-proxy/config.yaml",
                "--metrics-bind-address=127.0.0.1:10249",
                "--hostname-override=node-1",
            ],
        );
        let v = run(dir.path(), &t);
        let f = &v["facts"];
        assert_eq!(f["config"]["metricsBindAddress"], "0.0.0.0:10249");
        assert_eq!(f["config"]["hostnameOverride"], "node-1");
        assert_eq!(f["flagsIgnored"], json!(["metrics-bind-address"]));
        assert_eq!(f["config"]["mode"], "");
        assert_eq!(f["effectiveMode"], "iptables");
        assert_eq!(f["files"]["kubeconfig"]["exists"], true);
        assert_eq!(
            v["evidence"]["config.metricsBindAddress"]["source"],
            "config"
        );
        assert_eq!(v["evidence"]["config.hostnameOverride"]["source"], "flag");
    }

    #[test]
    fn flags_apply_without_config() {
        let dir = tempfile::tempdir().unwrap();
        let t = proc_table(
            1301,
            &[
                "kube-proxy",
                "--proxy-mode=ipvs",
                "--metrics-bind-address=0.0.0.0",
                "--kubeconfig=/nope",
            ],
        );
        let v = run(dir.path(), &t);
        let f = &v["facts"];
        assert_eq!(f["config"]["metricsBindAddress"], "0.0.0.0:10249");
        assert_eq!(f["config"]["healthzBindAddress"], "0.0.0.0:10256");
        assert_eq!(f["effectiveMode"], "ipvs");
        assert_eq!(f["files"]["kubeconfig"]["exists"], false);
        assert!(f.get("flagsIgnored").is_none());
    }

    #[test]
    fn metrics_port_zero_disables_without_config() {
        let dir = tempfile::tempdir().unwrap();
        let t = proc_table(1301, &["kube-proxy", "--metrics-port=0"]);
        let v = run(dir.path(), &t);
        assert_eq!(v["facts"]["config"]["metricsBindAddress"], "");
    }

    #[test]
    fn malformed_config_is_unknown_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/kp.yaml"), "mode: [\n").unwrap();
        let t = proc_table(1301, &["kube-proxy", "--config", "/etc/kp.yaml"]);
        let v = run(dir.path(), &t);
        let r = v["facts"]["config"]["$unknown"].as_str().unwrap();
        assert!(
            r.contains("/etc/kp.yaml") && r.contains("malformed YAML"),
            "{r}"
        );
    }

    #[test]
    fn not_running() {
        let dir = tempfile::tempdir().unwrap();
        let v = run(dir.path(), &ProcessTable::default());
        assert_eq!(v["facts"]["running"], false);
        assert!(
            v["facts"]["config"]["$unknown"]
                .as_str()
                .unwrap()
                .contains("no kube-proxy process")
        );
    }

    #[test]
    fn paths_of_a_containerised_kube_proxy_are_translated_through_its_mounts() {
        // kube-proxy in a pod: its own mount namespace, /var/lib/kube-proxy a ConfigMap volume
        // bind-mounted from the kubelet's pod directory on the host's root filesystem (8:1).
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let vol = "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~configmap/kube-proxy";
        fs::create_dir_all(r.join("proc/1/ns")).unwrap();
        fs::create_dir_all(r.join("proc/1301/ns")).unwrap();
        std::os::unix::fs::symlink("mnt:[4026531841]", r.join("proc/1/ns/mnt")).unwrap();
        std::os::unix::fs::symlink("mnt:[4026532500]", r.join("proc/1301/ns/mnt")).unwrap();
        std::os::unix::fs::symlink("/", r.join("proc/1301/cwd")).unwrap();
        fs::write(
            r.join("proc/1/mountinfo"),
            "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n",
        )
        .unwrap();
        fs::write(
            r.join("proc/1301/mountinfo"),
            format!(
                "500 400 0:60 / / rw,relatime - overlay overlay rw\n510 500 8:1 {vol} /var/lib/kube-proxy ro,relatime - ext4 /dev/sda1 rw\n"
            ),
        )
        .unwrap();
        let host_conf = r.join(vol.trim_start_matches('/')).join("config.conf");
        fs::create_dir_all(host_conf.parent().unwrap()).unwrap();
        fs::write(
            &host_conf,
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\n",
        )
        .unwrap();
        let t = proc_table(
            1301,
            &["kube-proxy", "--config=/var/lib/kube-proxy/config.conf"],
        );
        let v = run(r, &t);
        let f = &v["facts"];
        assert_eq!(f["configFile"]["path"], "/var/lib/kube-proxy/config.conf");
        assert_eq!(f["configFile"]["hostPath"], format!("{vol}/config.conf"));
        assert_eq!(f["effectiveMode"], "ipvs");

        // A path on a filesystem the host does not mount (the container's overlay) is unknown.
        let t = proc_table(1301, &["kube-proxy", "--config=/etc/kube-proxy.yaml"]);
        let v = run(r, &t);
        let reason = v["facts"]["config"]["$unknown"].as_str().unwrap();
        assert!(
            reason.contains("/etc/kube-proxy.yaml") && reason.contains("own mount namespace"),
            "{reason}"
        );
    }

    #[test]
    fn port_appending_like_go() {
        assert_eq!(append_port_if_needed("0.0.0.0", 10249), "0.0.0.0:10249");
        assert_eq!(append_port_if_needed("::1", 10249), "[::1]:10249");
        assert_eq!(
            append_port_if_needed("127.0.0.1:9999", 10249),
            "127.0.0.1:9999"
        );
        assert_eq!(append_port_if_needed("[::1]:9999", 10249), "[::1]:9999");
        assert_eq!(append_port_if_needed("localhost", 10249), "localhost");
    }
}
