//! The health inspector: are the node's components up and answering?
//!
//! * **kubelet**: `GET /healthz` on its healthz address from the effective configuration
//!   (`healthzBindAddress`:`healthzPort`, 127.0.0.1:10248 by default; port 0 disables it);
//! * **kube-proxy**: `GET /healthz` and `GET /livez` on its `healthzBindAddress`
//!   (0.0.0.0:10256 by default) and the active mode from `GET /proxyMode` on its
//!   `metricsBindAddress` (127.0.0.1:10249), compared with the mode its configuration gives;
//! * **containerd**: its process and unit history here; whether its API answers and its CRI
//!   plugin loaded are the containerd inspector's `api.reachable` and `cri.plugin.status`;
//! * **node agents** of the platform, where present: the konnectivity agent of AKS
//!   (`proxy-agent`, health on `--health-server-port`, 8093 by default).
//!
//! The addresses come from the same reading of the kubelet's and kube-proxy's flags and
//! configuration files as their own inspectors (run again here: inspectors run in parallel and
//! never read each other's output). An unspecified bind address (0.0.0.0, ::) is probed on the
//! loopback of its family.
//!
//! Probes are plain HTTP/1.1 over TCP ([`http`]), each bounded by
//! [`Options::health_timeout`](super::Options), all at once. They go out of the network
//! namespace nodedrift runs in, which is the node's only on the live host: they run when
//! [`Options::health_probe`](super::Options) says so (`run` and `check` on the live host, `/`
//! or the pod's `NODEDRIFT_HOST_ROOT`; `check` also with `--probe`); otherwise every probe's
//! result is unknown, [`NOT_PROBED`].
//!
//! Facts (component `health`): `probing`; per component (`kubelet`, `kube-proxy`,
//! `containerd`, `nodeAgents.<name>`): `running`, `pid`, `startedAt`/`startedAtUnix` (the
//! process's start: `/proc/<pid>/stat` starttime plus the boot time), `restartsSinceBoot`
//! (systemd units: the journal's `Started` lines and restart counter since boot), `down`,
//! `downSince`/`downSinceUnix`/`downSeconds` (for a unit that is down: its last stop or
//! failure in the journal), and per probe (`healthz`, `livez`, `proxyMode`): `address`,
//! `path`, `status`, `body` (the first [`BODY_FACT`] characters), `error`, `errorKind`
//! (`connect`, `timeout`, `protocol`). Derived: `kubelet.healthy`, `kube-proxy.healthy`,
//! `kube-proxy.live`, `kube-proxy.mode`, `kube-proxy.configuredMode`,
//! `kube-proxy.modeMatchesConfig`, `nodeAgents.<name>.{present,healthy}`.
//! What cannot be known is an unknown marker with the reason, never a guessed value.

pub mod http;
pub mod units;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use self::http::{Failure, Response};
use super::kubelet::support::select_oldest;
use super::{Context, Process, kube_proxy, kubelet};
use crate::facts::{ComponentFacts, Evidence, unknown_reason};

pub const NAME: &str = "health";

/// The reason of every probe result when probing is off.
pub const NOT_PROBED: &str =
    "not probed: probes run on the live host (run, or check on /; --probe forces them)";

/// Characters of a response body kept in the facts.
pub const BODY_FACT: usize = 512;

/// Why kube-proxy's health is unknown when it is not running.
const NO_KUBE_PROXY: &str = "no kube-proxy process: down, or replaced by the CNI (e.g. Cilium's \
     kube-proxy replacement); nodedrift cannot tell which";

/// Why a pod's restarts are not known here.
const IN_A_POD: &str = "runs in a pod: its restarts are the container's restartCount (the fact \
     restartCount, kubectl get pod), not a systemd unit's, and are not counted per boot";

/// USER_HZ: the unit of `/proc/<pid>/stat` starttime (100 on every Linux architecture).
const USER_HZ: u64 = 100;

/// kubelet's default healthz port (`healthzPort`).
const KUBELET_HEALTHZ_PORT: u16 = 10248;

/// The konnectivity agent's default health port (`--health-server-port`).
const KONNECTIVITY_HEALTH_PORT: u16 = 8093;

/// Program names of the konnectivity agent (`proxy-agent` in the AKS image).
const KONNECTIVITY_PROGRAMS: &[&str] = &["proxy-agent", "konnectivity-agent"];

/// Older AKS tunnel agents: reported when present, with no health endpoint to probe.
const LEGACY_TUNNELS: &[&str] = &["tunnelfront", "aks-link"];

/// One probe to make.
struct Planned {
    /// Facts path of the probe's result.
    at: Vec<&'static str>,
    path: &'static str,
    /// The address, or why there is none.
    target: Result<SocketAddr, String>,
}

pub fn inspect(ctx: &Context<'_>) -> ComponentFacts {
    let mut cf = ComponentFacts::new(NAME);
    let probing = ctx.options.health_probe;
    cf.set(&["probing"], probing);
    if let Some(err) = &ctx.procs.error {
        let reason = format!("/proc could not be listed ({err}), so no component is known");
        for k in ["kubelet", "kube-proxy", "containerd", "nodeAgents"] {
            cf.unknown(&[k], &reason);
        }
        return cf;
    }
    let boot = super::os::boot_time(ctx.host);
    let budget = ctx.options.health_timeout;

    let kubelet_proc = process(ctx, &mut cf, "kubelet", kubelet::NAME, boot.as_ref().ok());
    let proxy_proc = process(
        ctx,
        &mut cf,
        "kube-proxy",
        kube_proxy::NAME,
        boot.as_ref().ok(),
    );
    let containerd_proc = process(
        ctx,
        &mut cf,
        "containerd",
        super::containerd::NAME,
        boot.as_ref().ok(),
    );

    let mut plans = Vec::new();
    let mut configured_mode: Result<String, String> = Err("kube-proxy is not running".into());
    if kubelet_proc.is_some() {
        let k = kubelet::inspect(ctx);
        plans.push(Planned {
            at: vec!["kubelet", "healthz"],
            path: "/healthz",
            target: kubelet_target(&k),
        });
    }
    if proxy_proc.is_some() {
        let p = kube_proxy::inspect(ctx);
        let healthz = bind_target(&p, "healthzBindAddress");
        plans.push(Planned {
            at: vec!["kube-proxy", "healthz"],
            path: "/healthz",
            target: healthz.clone(),
        });
        plans.push(Planned {
            at: vec!["kube-proxy", "livez"],
            path: "/livez",
            target: healthz,
        });
        plans.push(Planned {
            at: vec!["kube-proxy", "proxyMode"],
            path: "/proxyMode",
            target: bind_target(&p, "metricsBindAddress"),
        });
        configured_mode = match p.get(&["effectiveMode"]) {
            Some(Value::String(m)) => Ok(m.clone()),
            Some(v) => Err(unknown_reason(v)
                .unwrap_or("kube-proxy's configured mode is not a string")
                .to_owned()),
            None => Err("kube-proxy's configured mode is unknown".into()),
        };
    }
    let agents = node_agents(ctx, &mut cf, boot.as_ref().ok(), &mut plans);

    let results = run_probes(&plans, probing, budget);
    for (plan, result) in plans.iter().zip(&results) {
        record_probe(&mut cf, plan, result);
    }
    let outcome = |at: &[&str]| -> Option<&Result<Result<Response, Failure>, String>> {
        plans
            .iter()
            .position(|p| p.at == at)
            .and_then(|i| results.get(i))
    };

    // kubelet
    let kubelet_ok = match kubelet_proc {
        None => Ok(false),
        Some(_) => verdict(outcome(&["kubelet", "healthz"])),
    };
    set_result(&mut cf, &["kubelet", "healthy"], &kubelet_ok);
    copy_evidence(&mut cf, &["kubelet", "healthz"], &["kubelet", "healthy"]);
    downtime(
        ctx,
        &mut cf,
        "kubelet",
        Some("kubelet.service"),
        kubelet_proc.is_some(),
        &kubelet_ok,
        &boot,
        budget,
    );

    // kube-proxy
    // A node may have no kube-proxy at all (a CNI that replaces it, e.g. Cilium): absent is
    // unknown, not down.
    let (healthy, live) = match proxy_proc {
        None => (Err(NO_KUBE_PROXY.to_owned()), Err(NO_KUBE_PROXY.to_owned())),
        Some(_) => (
            verdict(outcome(&["kube-proxy", "healthz"])),
            live_verdict(outcome(&["kube-proxy", "livez"])),
        ),
    };
    set_result(&mut cf, &["kube-proxy", "healthy"], &healthy);
    set_result(&mut cf, &["kube-proxy", "live"], &live);
    copy_evidence(
        &mut cf,
        &["kube-proxy", "healthz"],
        &["kube-proxy", "healthy"],
    );
    copy_evidence(&mut cf, &["kube-proxy", "livez"], &["kube-proxy", "live"]);
    if proxy_proc.is_some() {
        let mode = match outcome(&["kube-proxy", "proxyMode"]) {
            Some(Ok(Ok(r))) if r.status == 200 => Ok(r.body.trim().to_owned()),
            Some(Ok(Ok(r))) => Err(format!("/proxyMode answered HTTP {}", r.status)),
            Some(Ok(Err(f))) => Err(format!("/proxyMode: {f}")),
            Some(Err(reason)) => Err(reason.clone()),
            None => Err("not probed".into()),
        };
        set_result(&mut cf, &["kube-proxy", "mode"], &mode);
        copy_evidence(
            &mut cf,
            &["kube-proxy", "proxyMode"],
            &["kube-proxy", "mode"],
        );
        copy_evidence(
            &mut cf,
            &["kube-proxy", "proxyMode"],
            &["kube-proxy", "modeMatchesConfig"],
        );
        set_result(&mut cf, &["kube-proxy", "configuredMode"], &configured_mode);
        let matches = match (&mode, &configured_mode) {
            (Ok(m), Ok(c)) => Ok(m == c),
            (Err(e), _) | (_, Err(e)) => Err(e.clone()),
        };
        set_result(&mut cf, &["kube-proxy", "modeMatchesConfig"], &matches);
    } else {
        for k in ["mode", "configuredMode", "modeMatchesConfig"] {
            cf.unknown(&["kube-proxy", k], NO_KUBE_PROXY);
        }
    }
    let both = match (&healthy, &live) {
        (Ok(a), Ok(b)) => Ok(*a && *b),
        (Ok(false), _) | (_, Ok(false)) => Ok(false),
        (Err(e), _) | (_, Err(e)) => Err(e.clone()),
    };
    downtime(
        ctx,
        &mut cf,
        "kube-proxy",
        None,
        proxy_proc.is_some(),
        &both,
        &boot,
        budget,
    );
    if proxy_proc.is_some() {
        restart_count(ctx, &mut cf, &["kube-proxy"], "kube-proxy");
    }

    // containerd: whether its API answers is the containerd inspector's.
    downtime(
        ctx,
        &mut cf,
        "containerd",
        Some("containerd.service"),
        containerd_proc.is_some(),
        &Ok(containerd_proc.is_some()),
        &boot,
        budget,
    );
    cf.set(
        &["containerd", "api"],
        "see containerd.api.reachable and containerd.cri.plugin.status",
    );

    for (name, has_probe) in agents {
        let at = ["nodeAgents", name, "healthz"];
        let healthy = if has_probe {
            verdict(outcome(&at))
        } else {
            Err(format!("{name} has no health endpoint nodedrift knows"))
        };
        set_result(&mut cf, &["nodeAgents", name, "healthy"], &healthy);
        copy_evidence(&mut cf, &at, &["nodeAgents", name, "healthy"]);
    }
    cf
}

/// Looks the component up in the process table and records `running`, `pid`, `startedAt`.
fn process<'p>(
    ctx: &'p Context<'_>,
    cf: &mut ComponentFacts,
    key: &'static str,
    program: &str,
    boot: Option<&i64>,
) -> Option<&'p Process> {
    let found = ctx.procs.find(program);
    let Some((proc, _)) = select_oldest(ctx.host, &found) else {
        cf.set(&[key, "running"], false);
        cf.evidence(
            &[key, "running"],
            Evidence::file("/proc").with_source("process table"),
        );
        return None;
    };
    record_process(ctx, cf, &[key], proc, boot);
    Some(proc)
}

fn record_process(
    ctx: &Context<'_>,
    cf: &mut ComponentFacts,
    base: &[&str],
    proc: &Process,
    boot: Option<&i64>,
) {
    let at = |k: &'static str| -> Vec<&str> {
        let mut v = base.to_vec();
        v.push(k);
        v
    };
    cf.set(&at("running"), true);
    cf.set(&at("pid"), proc.pid);
    cf.evidence(
        &at("pid"),
        Evidence::file(format!("/proc/{}", proc.pid)).with_pid(proc.pid),
    );
    match started_at(ctx, proc, boot) {
        Ok(t) => {
            cf.set(&at("startedAt"), crate::clock::rfc3339_secs(t));
            cf.set(&at("startedAtUnix"), t);
        }
        Err(reason) => {
            cf.unknown(&at("startedAt"), &reason);
            cf.unknown(&at("startedAtUnix"), &reason);
        }
    }
}

/// Unix seconds the process started: its starttime (ticks since boot) plus the boot time.
fn started_at(ctx: &Context<'_>, proc: &Process, boot: Option<&i64>) -> Result<i64, String> {
    let boot = boot.ok_or("the boot time (btime of /proc/stat) is unknown")?;
    let path = proc.proc_path("stat");
    let raw = ctx
        .host
        .read(&path, 4096)
        .map_err(|e| format!("cannot read the process's start time: {e}"))?;
    use procfs_core::FromRead;
    let ticks = procfs_core::process::Stat::from_read(raw.as_slice())
        .map(|s| s.starttime)
        .map_err(|e| format!("/proc/{}/stat does not parse: {e}", proc.pid))?;
    Ok(boot.saturating_add(i64::try_from(ticks / USER_HZ).unwrap_or(i64::MAX)))
}

/// Records `restartsSinceBoot`, `down` and the downtime facts of a component.
#[allow(clippy::too_many_arguments)]
fn downtime(
    ctx: &Context<'_>,
    cf: &mut ComponentFacts,
    key: &'static str,
    unit: Option<&str>,
    running: bool,
    healthy: &Result<bool, String>,
    boot: &Result<i64, String>,
    budget: Duration,
) {
    let history = match (unit, boot) {
        (None, _) => Err(format!("{key} {IN_A_POD}")),
        (Some(_), Err(e)) => Err(format!("the boot time is unknown: {e}")),
        (Some(u), Ok(b)) => units::history(ctx.host, u, *b, budget),
    };
    match &history {
        Ok(h) => match h.restarts() {
            Some(n) => {
                cf.set(&[key, "restartsSinceBoot"], n);
                cf.evidence(
                    &[key, "restartsSinceBoot"],
                    Evidence::default()
                        .with_source(format!("journal: UNIT={} since boot", unit.unwrap_or(key))),
                );
            }
            None => cf.unknown(
                &[key, "restartsSinceBoot"],
                format!(
                    "the journal holds no start of {} since boot (rotated away, or not kept)",
                    unit.unwrap_or(key)
                ),
            ),
        },
        Err(reason) => cf.unknown(&[key, "restartsSinceBoot"], reason),
    }
    let down = match (running, healthy) {
        (false, Err(e)) if unit.is_none() => Err(e.clone()),
        (false, _) => Ok(true),
        (true, Ok(h)) => Ok(!h),
        (true, Err(e)) => Err(e.clone()),
    };
    set_result(cf, &[key, "down"], &down);
    if down != Ok(true) {
        for k in ["downSince", "downSinceUnix", "downSeconds"] {
            match &down {
                Ok(_) => cf.set(&[key, k], Value::Null),
                Err(e) => cf.unknown(&[key, k], e),
            }
        }
        return;
    }
    let since = match (&history, running) {
        (_, true) => Err(format!(
            "{key} is running but fails its health check; when it started failing is not recorded"
        )),
        (Ok(h), false) => h.down_since.ok_or_else(|| {
            format!(
                "the journal holds no stop or failure of {} since boot",
                unit.unwrap_or(key)
            )
        }),
        (Err(e), false) => Err(e.clone()),
    };
    match since {
        Ok(t) => {
            cf.set(&[key, "downSince"], crate::clock::rfc3339_secs(t));
            cf.set(&[key, "downSinceUnix"], t);
            cf.set(
                &[key, "downSeconds"],
                crate::clock::unix_now().saturating_sub(t).max(0),
            );
        }
        Err(reason) => {
            for k in ["downSince", "downSinceUnix", "downSeconds"] {
                cf.unknown(&[key, k], &reason);
            }
        }
    }
}

/// The platform's node agents found in the process table; plans their probes. Returns each
/// present agent's name and whether it has a probe.
fn node_agents(
    ctx: &Context<'_>,
    cf: &mut ComponentFacts,
    boot: Option<&i64>,
    plans: &mut Vec<Planned>,
) -> Vec<(&'static str, bool)> {
    let mut present = Vec::new();
    let konnectivity: Vec<&Process> = ctx
        .procs
        .processes
        .iter()
        .filter(|p| KONNECTIVITY_PROGRAMS.contains(&p.program()))
        .collect();
    let name = "konnectivity-agent";
    match select_oldest(ctx.host, &konnectivity) {
        None => cf.set(&["nodeAgents", name], json!({"present": false})),
        Some((proc, _)) => {
            cf.set(&["nodeAgents", name, "present"], true);
            record_process(ctx, cf, &["nodeAgents", name], proc, boot);
            cf.unknown(&["nodeAgents", name, "restartsSinceBoot"], IN_A_POD);
            restart_count(ctx, cf, &["nodeAgents", name], name);
            let flags = super::process::parse_flags(proc.args_for(name), |_| false);
            let port = match flags.get("health-server-port") {
                None => Ok(KONNECTIVITY_HEALTH_PORT),
                Some(p) => p
                    .parse::<u16>()
                    .map_err(|_| format!("--health-server-port={p:?} is not a port")),
            };
            let host = flags.get("health-server-host").unwrap_or("127.0.0.1");
            let target = port.and_then(|p| {
                if p == 0 {
                    return Err("--health-server-port is 0: no health server".into());
                }
                own_netns(ctx, proc)?;
                http::target(host, Some(p))
            });
            plans.push(Planned {
                at: vec!["nodeAgents", name, "healthz"],
                path: "/healthz",
                target,
            });
            present.push((name, true));
        }
    }
    for legacy in LEGACY_TUNNELS {
        let found: Vec<&Process> = ctx
            .procs
            .processes
            .iter()
            .filter(|p| p.program() == *legacy)
            .collect();
        if let Some((proc, _)) = select_oldest(ctx.host, &found) {
            cf.set(&["nodeAgents", legacy, "present"], true);
            record_process(ctx, cf, &["nodeAgents", legacy], proc, boot);
            cf.unknown(&["nodeAgents", legacy, "restartsSinceBoot"], IN_A_POD);
            present.push((legacy, false));
        }
    }
    present
}

/// Where the kubelet keeps containers' logs: `<namespace>_<pod>_<uid>/<container>/<N>.log`,
/// one file per start of the container, `N` its restart count.
const POD_LOGS: &str = "/var/log/pods";

/// Pods and containers looked at in [`POD_LOGS`], at most.
const POD_LOG_ENTRIES: usize = 4096;

/// Records `restartCount` of the kube-system container `container` (the kubelet's count, as
/// `kubectl get pod` shows it): the highest `N` of its `N.log` files in the newest pod
/// directory that has the container. Unknown when no pod log directory has it.
fn restart_count(ctx: &Context<'_>, cf: &mut ComponentFacts, base: &[&str], container: &str) {
    let mut at = base.to_vec();
    at.push("restartCount");
    match pod_restart_count(ctx.host, container) {
        Ok((n, dir)) => {
            cf.set(&at, n);
            cf.evidence(
                &at,
                Evidence::file(dir).with_source("the kubelet's log files, one per container start"),
            );
        }
        Err(reason) => cf.unknown(&at, reason),
    }
}

/// The restart count of `container` in kube-system and the directory it was read from.
fn pod_restart_count(
    host: &crate::host::HostRoot,
    container: &str,
) -> Result<(u64, String), String> {
    use std::path::Path;
    let pods = host
        .read_dir(Path::new(POD_LOGS), POD_LOG_ENTRIES)
        .map_err(|e| format!("the kubelet's pod logs cannot be listed: {e}"))?;
    let mut newest: Option<(i64, String)> = None;
    for pod in pods {
        let Some(name) = pod.name.to_str() else {
            continue;
        };
        if !name.starts_with("kube-system_") {
            continue;
        }
        let dir = format!("{POD_LOGS}/{name}/{container}");
        let Ok(meta) = host.stat(Path::new(&dir)) else {
            continue;
        };
        if meta.kind == crate::host::FileKind::Directory
            && newest.as_ref().is_none_or(|(t, _)| meta.mtime > *t)
        {
            newest = Some((meta.mtime, dir));
        }
    }
    let Some((_, dir)) = newest else {
        return Err(format!(
            "no kube-system pod with a {container} container in {POD_LOGS}"
        ));
    };
    let files = host
        .read_dir(Path::new(&dir), POD_LOG_ENTRIES)
        .map_err(|e| format!("{dir}: {e}"))?;
    files
        .iter()
        .filter_map(|f| {
            let name = f.name.to_str()?;
            // `3.log`, and rotated `3.log.20260101-120000` (or `.gz`).
            let (n, _) = name.split_once(".log")?;
            n.parse::<u64>().ok()
        })
        .max()
        .map(|n| (n, dir.clone()))
        .ok_or_else(|| format!("{dir} has no <N>.log file"))
}

/// `Err` when the process is known to run in a network namespace other than the node's
/// (pid 1's): its loopback is not ours, a probe of it would test the wrong thing.
fn own_netns(ctx: &Context<'_>, proc: &Process) -> Result<(), String> {
    let ns = |pid: u32| {
        ctx.host
            .read_link(std::path::Path::new(&format!("/proc/{pid}/ns/net")))
            .ok()
    };
    match (ns(proc.pid), ns(1)) {
        (Some(a), Some(b)) if a != b => Err(format!(
            "pid {} runs in a network namespace of its own (not hostNetwork): its health port \
             is not on the node's addresses",
            proc.pid
        )),
        _ => Ok(()),
    }
}

/// The kubelet's healthz address from its effective configuration.
fn kubelet_target(k: &ComponentFacts) -> Result<SocketAddr, String> {
    let bind = k.get(&["config", "healthzBindAddress"]);
    let port = k.get(&["config", "healthzPort"]);
    if let Some(r) = bind
        .and_then(unknown_reason)
        .or(port.and_then(unknown_reason))
    {
        return Err(format!("the kubelet's configuration is unknown: {r}"));
    }
    if let Some(r) = k.get(&["config"]).and_then(unknown_reason) {
        return Err(format!("the kubelet's configuration is unknown: {r}"));
    }
    let port = match port {
        None => KUBELET_HEALTHZ_PORT,
        Some(v) => v
            .as_i64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("healthzPort {v} is not a port"))?,
    };
    if port == 0 {
        return Err("healthzPort is 0: the kubelet serves no healthz endpoint".into());
    }
    let bind = bind.and_then(Value::as_str).unwrap_or("127.0.0.1");
    http::target(bind, Some(port))
}

/// A kube-proxy bind address (`host:port`) from its effective configuration; empty disables.
fn bind_target(p: &ComponentFacts, field: &str) -> Result<SocketAddr, String> {
    match p.get(&["config", field]) {
        Some(Value::String(s)) if s.is_empty() => {
            Err(format!("{field} is empty: kube-proxy serves nothing there"))
        }
        Some(Value::String(s)) => http::target(s, None),
        Some(v) => Err(unknown_reason(v)
            .map(|r| format!("kube-proxy's {field} is unknown: {r}"))
            .unwrap_or_else(|| format!("kube-proxy's {field} is not a string"))),
        None => match p.get(&["config"]).and_then(unknown_reason) {
            Some(r) => Err(format!("kube-proxy's configuration is unknown: {r}")),
            None => Err(format!("kube-proxy's {field} is not set")),
        },
    }
}

/// Runs every planned probe at once. `Err` is a probe not made (and why); `Ok` holds the
/// probe's own outcome.
fn run_probes(
    plans: &[Planned],
    probing: bool,
    timeout: Duration,
) -> Vec<Result<Result<Response, Failure>, String>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = plans
            .iter()
            .map(|p| {
                let target = p.target.clone();
                s.spawn(move || match target {
                    Err(reason) => Err(reason),
                    Ok(_) if !probing => Err(NOT_PROBED.to_owned()),
                    Ok(addr) => Ok(http::get(addr, p.path, timeout)),
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("the probe failed internally (panic)".to_owned()))
            })
            .collect()
    })
}

fn record_probe(
    cf: &mut ComponentFacts,
    plan: &Planned,
    result: &Result<Result<Response, Failure>, String>,
) {
    let at = &plan.at;
    let mut obj = serde_json::Map::new();
    if let Ok(a) = &plan.target {
        obj.insert("address".into(), json!(a.to_string()));
    }
    obj.insert("path".into(), json!(plan.path));
    match result {
        Err(reason) => {
            cf.unknown(at, reason);
            return;
        }
        Ok(Ok(r)) => {
            obj.insert("status".into(), json!(r.status));
            let body: String = r.body.chars().take(BODY_FACT).collect();
            obj.insert("body".into(), json!(body));
            obj.insert(
                "bodyCut".into(),
                json!(r.cut || r.body.chars().count() > BODY_FACT),
            );
            if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(r.body.trim()) {
                for k in ["lastUpdated", "currentTime", "nodeEligible"] {
                    if let Some(v) = m.get(k) {
                        obj.insert(k.into(), v.clone());
                    }
                }
            }
            obj.insert("error".into(), Value::Null);
            obj.insert("errorKind".into(), Value::Null);
        }
        Ok(Err(f)) => {
            obj.insert("status".into(), Value::Null);
            obj.insert("error".into(), json!(f.message()));
            obj.insert("errorKind".into(), json!(f.kind()));
        }
    }
    cf.set(at, Value::Object(obj));
    let url = match &plan.target {
        Ok(a) => format!("http://{a}{}", plan.path),
        Err(_) => plan.path.to_owned(),
    };
    let how = match result {
        Ok(Ok(r)) => format!("GET {url} answered HTTP {}", r.status),
        Ok(Err(f)) => format!("GET {url} failed: {f}"),
        Err(_) => return,
    };
    cf.evidence(at, Evidence::default().with_source(how));
}

/// Gives the fact at `to` the evidence of the probe at `from` (a finding shows the evidence
/// of its own path: the probe's outcome travels with the verdict).
fn copy_evidence(cf: &mut ComponentFacts, from: &[&str], to: &[&str]) {
    let key = crate::facts::format_path(from.iter().copied());
    if let Some(ev) = cf.evidence.get(&key).cloned() {
        cf.evidence(to, ev);
    }
}

/// Healthy when the probe answered 200; a failed probe (refused, timed out, garbage, other
/// status) is unhealthy; no probe is unknown.
fn verdict(r: Option<&Result<Result<Response, Failure>, String>>) -> Result<bool, String> {
    match r {
        None => Err("no probe was planned".into()),
        Some(Err(reason)) => Err(reason.clone()),
        Some(Ok(Ok(resp))) => Ok(resp.status == 200),
        Some(Ok(Err(_))) => Ok(false),
    }
}

/// As [`verdict`], but a kube-proxy older than 1.28 has no `/livez` (404): unknown.
fn live_verdict(r: Option<&Result<Result<Response, Failure>, String>>) -> Result<bool, String> {
    match r {
        Some(Ok(Ok(resp))) if resp.status == 404 => {
            Err("kube-proxy serves no /livez (HTTP 404: older than Kubernetes 1.28)".into())
        }
        _ => verdict(r),
    }
}

fn set_result<T: Into<Value> + Clone>(cf: &mut ComponentFacts, at: &[&str], r: &Result<T, String>) {
    match r {
        Ok(v) => cf.set(at, v.clone()),
        Err(e) => cf.unknown(at, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(config: Value) -> ComponentFacts {
        let mut cf = ComponentFacts::new("x");
        cf.set(&["config"], config);
        cf
    }

    #[test]
    fn a_pods_restart_count_is_its_newest_log_file_number() {
        let r = crate::inspect::test_root::TestRoot::new();
        let host =
            |r: &crate::inspect::test_root::TestRoot| crate::host::HostRoot::new(r.dir()).unwrap();
        assert!(
            pod_restart_count(&host(&r), "kube-proxy")
                .unwrap_err()
                .contains("cannot be listed")
        );
        let old = "/var/log/pods/kube-system_kube-proxy-aaaaa_1111/kube-proxy";
        let new = "/var/log/pods/kube-system_kube-proxy-bbbbb_2222/kube-proxy";
        r.write(&format!("{old}/9.log"), "")
            .write(&format!("{new}/0.log"), "")
            .write(&format!("{new}/2.log.20261122-101500.gz"), "")
            .write(&format!("{new}/3.log"), "")
            .write(&format!("{new}/notes.txt"), "")
            .write(
                "/var/log/pods/default_kube-proxy-ccccc_3333/kube-proxy/7.log",
                "",
            )
            .write(
                "/var/log/pods/kube-system_coredns-ddddd_4444/coredns/5.log",
                "",
            );
        // The newest pod directory wins: the replaced pod's count is history.
        let t = crate::clock::unix_now();
        std::fs::File::open(r.path(old))
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + Duration::from_secs((t - 3600) as u64))
            .unwrap();
        let (n, dir) = pod_restart_count(&host(&r), "kube-proxy").unwrap();
        assert_eq!((n, dir.as_str()), (3, new));
        assert!(
            pod_restart_count(&host(&r), "konnectivity-agent")
                .unwrap_err()
                .contains("no kube-system pod with a konnectivity-agent container")
        );
        r.write(
            "/var/log/pods/kube-system_konnectivity-agent-x_5/konnectivity-agent/junk",
            "",
        );
        assert!(
            pod_restart_count(&host(&r), "konnectivity-agent")
                .unwrap_err()
                .contains("has no <N>.log file")
        );
    }

    #[test]
    fn the_kubelet_healthz_address_comes_from_its_configuration() {
        let k = facts(json!({"healthzBindAddress": "127.0.0.1", "healthzPort": 10248}));
        assert_eq!(
            kubelet_target(&k).unwrap(),
            "127.0.0.1:10248".parse().unwrap()
        );
        let k = facts(json!({"healthzBindAddress": "0.0.0.0", "healthzPort": 12345}));
        assert_eq!(
            kubelet_target(&k).unwrap(),
            "127.0.0.1:12345".parse().unwrap()
        );
        let k = facts(json!({"healthzBindAddress": "127.0.0.1", "healthzPort": 0}));
        assert!(kubelet_target(&k).unwrap_err().contains("healthzPort is 0"));
        let k = facts(json!({"healthzPort": 70000}));
        assert!(kubelet_target(&k).unwrap_err().contains("not a port"));
        let k = facts(crate::facts::unknown_value("config.yaml: bad YAML"));
        assert!(kubelet_target(&k).unwrap_err().contains("bad YAML"));
    }

    #[test]
    fn kube_proxy_addresses_come_from_its_configuration() {
        let p = facts(json!({"healthzBindAddress": "0.0.0.0:10256", "metricsBindAddress": ""}));
        assert_eq!(
            bind_target(&p, "healthzBindAddress").unwrap(),
            "127.0.0.1:10256".parse().unwrap()
        );
        assert!(
            bind_target(&p, "metricsBindAddress")
                .unwrap_err()
                .contains("is empty")
        );
        let p = facts(json!({"healthzBindAddress": {"$unknown": "truncated flag"}}));
        assert!(
            bind_target(&p, "healthzBindAddress")
                .unwrap_err()
                .contains("truncated flag")
        );
    }

    #[test]
    fn verdicts() {
        let ok = Ok(Ok(Response {
            status: 200,
            body: "ok".into(),
            cut: false,
        }));
        let bad = Ok(Ok(Response {
            status: 503,
            body: String::new(),
            cut: false,
        }));
        let missing = Ok(Ok(Response {
            status: 404,
            body: String::new(),
            cut: false,
        }));
        let refused = Ok(Err(Failure::Connect("refused".into())));
        let skipped: Result<Result<Response, Failure>, String> = Err(NOT_PROBED.into());
        assert_eq!(verdict(Some(&ok)), Ok(true));
        assert_eq!(verdict(Some(&bad)), Ok(false));
        assert_eq!(verdict(Some(&refused)), Ok(false));
        assert_eq!(verdict(Some(&skipped)), Err(NOT_PROBED.into()));
        assert_eq!(verdict(Some(&missing)), Ok(false));
        assert!(live_verdict(Some(&missing)).is_err());
    }
}
