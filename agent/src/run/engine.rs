//! The evaluation state of the daemon: the profile, the baseline in force, the latest facts of
//! every component and the findings they give.
//!
//! A trigger re-inspects only the components it concerns (a kubelet restart re-reads the
//! kubelet, a sysctl poll re-reads `/proc/sys`); the whole baseline is then evaluated again on
//! the updated facts, which costs about a millisecond and keeps every finding consistent. A
//! full re-check re-detects the profile too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::baseline::{self, Baseline, BaselineError};
use crate::check::{self, ProfileChoice};
use crate::facts::{Evidence, Facts, Lookup};
use crate::finding::Finding;
use crate::host::{HostError, HostRoot};
use crate::inspect;
use crate::ledger::PendingReboot;

/// What the engine needs to evaluate.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub host_root: PathBuf,
    pub profile: Option<String>,
    pub baselines: Vec<PathBuf>,
    pub inspect: inspect::Options,
}

/// An engine that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Baseline(#[from] BaselineError),
}

/// The daemon's evaluation state.
#[derive(Debug)]
pub struct Engine {
    host: HostRoot,
    opts: EngineOptions,
    baseline: Baseline,
    profile: ProfileChoice,
    facts: Facts,
    findings: Vec<Finding>,
    files: Option<super::fim::FileMonitor>,
    /// The pending reboot the ledger holds (its earliest start survives restarts and marker
    /// rewrites that the facts of one inspection do not see).
    recorded_reboot: Option<PendingReboot>,
}

impl Engine {
    /// Opens the host, detects the profile and loads the baseline. Does not inspect yet.
    pub fn new(opts: EngineOptions) -> Result<Self, EngineError> {
        let host = HostRoot::new(&opts.host_root)?;
        if let Some(p) = &opts.profile {
            baseline::profiles::files(p)?;
        }
        let facts = inspect::inspect(&host, &opts.inspect, &[inspect::os::NAME]);
        let profile = check::choose_profile(opts.profile.as_deref(), &facts);
        let baseline = check::load_baseline(&profile.name, &opts.baselines)?;
        Ok(Self {
            host,
            opts,
            baseline,
            profile,
            facts,
            findings: Vec::new(),
            files: None,
            recorded_reboot: None,
        })
    }

    /// Inspects every component, re-detects the profile (reloading the baseline if it changed)
    /// and evaluates. Returns how long it took.
    pub fn full_check(&mut self) -> Duration {
        self.full_check_for("timer")
    }

    /// [`Self::full_check`], naming why the file integrity is re-verified (metrics label).
    pub fn full_check_for(&mut self, files_reason: &'static str) -> Duration {
        let started = Instant::now();
        let os = inspect::inspect(&self.host, &self.opts.inspect, &[inspect::os::NAME]);
        let profile = check::choose_profile(self.opts.profile.as_deref(), &os);
        if profile.name != self.profile.name {
            match check::load_baseline(&profile.name, &self.opts.baselines) {
                Ok(b) => {
                    tracing::info!(from = %self.profile.name, to = %profile.name, "The detected profile changed; its baseline is now in force.");
                    self.baseline = b;
                    self.profile = profile;
                    if let Some(f) = &mut self.files {
                        f.set_spec(self.baseline.watch_spec());
                    }
                }
                Err(e) => {
                    tracing::warn!(profile = %profile.name, error = %e, "The newly detected profile's baseline is invalid; keeping the current one.");
                }
            }
        }
        self.facts = os;
        let others: Vec<&str> = inspect::names()
            .filter(|n| *n != inspect::os::NAME)
            .collect();
        self.reinspect(&others);
        if let Some(f) = &mut self.files {
            f.full(files_reason);
        }
        self.evaluate();
        started.elapsed()
    }

    /// Hands the engine its file-integrity monitor (the daemon; one-shot checks verify files
    /// themselves). Its watch sets follow the baseline from now on.
    pub fn set_files(&mut self, monitor: super::fim::FileMonitor) {
        self.files = Some(monitor);
    }

    pub fn files(&self) -> Option<&super::fim::FileMonitor> {
        self.files.as_ref()
    }

    pub fn files_mut(&mut self) -> Option<&mut super::fim::FileMonitor> {
        self.files.as_mut()
    }

    /// Re-verifies the file integrity of `paths` (a realtime event), then evaluates.
    pub fn files_paths(&mut self, paths: &BTreeSet<PathBuf>) -> Duration {
        let started = Instant::now();
        if let Some(f) = &mut self.files {
            f.paths(paths);
        }
        self.evaluate();
        started.elapsed()
    }

    /// Re-verifies every watched file, then evaluates.
    pub fn files_full(&mut self, reason: &'static str) -> Duration {
        let started = Instant::now();
        if let Some(f) = &mut self.files {
            f.full(reason);
        }
        self.evaluate();
        started.elapsed()
    }

    /// Re-inspects `components` only, then evaluates the whole baseline.
    pub fn recheck(&mut self, components: &BTreeSet<&'static str>) -> Duration {
        let started = Instant::now();
        // Egress probes reach out of the node: the full re-check only, never a partial one.
        let mut list: Vec<&str> = components
            .iter()
            .copied()
            .filter(|c| *c != inspect::egress::NAME)
            .collect();
        // A component that restarted or changed is probed again (loopback probes only).
        let probed = [
            inspect::kubelet::NAME,
            inspect::kube_proxy::NAME,
            inspect::containerd::NAME,
        ];
        if list.iter().any(|c| probed.contains(c)) && !list.contains(&inspect::health::NAME) {
            list.push(inspect::health::NAME);
        }
        self.reinspect(&list);
        self.evaluate();
        started.elapsed()
    }

    fn reinspect(&mut self, components: &[&str]) {
        let mut opts = self.opts.inspect.clone();
        opts.sysctl_keys.extend(self.baseline.sysctl_keys());
        opts.egress = self.baseline.egress.clone();
        let fresh = inspect::inspect(&self.host, &opts, components);
        self.facts.components.extend(fresh.components);
    }

    /// Tells the engine what the ledger holds about a pending reboot (at start, and after
    /// every recorded evaluation).
    pub fn set_recorded_reboot(&mut self, recorded: Option<PendingReboot>) {
        self.recorded_reboot = recorded;
    }

    /// Dates a pending reboot from the ledger when the ledger knows an earlier start in this
    /// boot, so severity escalation and every sink use the same since-time as the annotation.
    fn date_reboot_from_ledger(&mut self) {
        let Some(rec) = &self.recorded_reboot else {
            return;
        };
        let boot_id = match self.facts.get("os.bootId") {
            Lookup::Found(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        // Another boot: the reboot happened, and the ledger's start no longer applies.
        if rec.boot_id.is_some() && rec.boot_id != boot_id {
            return;
        }
        let Some(cf) = self.facts.components.get_mut(inspect::reboot::NAME) else {
            return;
        };
        if cf.get(&["required"]) != Some(&Value::Bool(true)) {
            return;
        }
        let observed = cf.get(&["pendingSinceUnix"]).and_then(Value::as_i64);
        if observed.is_none_or(|t| rec.since < t) {
            cf.set(&["pendingSinceUnix"], rec.since);
            cf.set(&["pendingSince"], crate::clock::rfc3339_secs(rec.since));
            for key in ["pendingSinceUnix", "pendingSince"] {
                cf.evidence(&[key], Evidence::default().with_source("ledger"));
            }
        }
    }

    fn evaluate(&mut self) {
        self.date_reboot_from_ledger();
        self.findings = baseline::evaluate(&self.baseline, &self.facts);
        if let Some(f) = &self.files {
            self.findings.extend(f.findings());
        }
    }

    /// Re-reads the user's baseline files over the profile. On error the baseline in force
    /// stays, and the error is returned for the caller to make visible.
    pub fn reload(&mut self) -> Result<(), BaselineError> {
        let b = check::load_baseline(&self.profile.name, &self.opts.baselines)?;
        self.baseline = b;
        if let Some(f) = &mut self.files {
            f.set_spec(self.baseline.watch_spec());
        }
        self.evaluate();
        Ok(())
    }

    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    pub fn profile(&self) -> &ProfileChoice {
        &self.profile
    }

    pub fn baseline(&self) -> &Baseline {
        &self.baseline
    }

    pub fn host_root(&self) -> &Path {
        self.host.root()
    }

    /// A short fingerprint of the rules in force (for the Node annotation and events).
    pub fn baseline_version(&self) -> String {
        let doc = self.baseline.to_document(&self.profile.name);
        let text = serde_json::to_string(&doc.rules).unwrap_or_default();
        crate::report::cloudevents::stable_id(&[&text])[..12].to_owned()
    }

    /// The host files and directories whose changes concern each component, from the facts:
    /// every `path` the inspectors reported, plus the fixed locations each inspector reads.
    pub fn watch_targets(&self) -> WatchTargets {
        let mut t = WatchTargets::default();
        for (name, cf) in &self.facts.components {
            let Some(component) = inspect::names().find(|n| n == name) else {
                continue;
            };
            collect_paths(&cf.facts, &mut |p| {
                // procfs and sysfs send no inotify events: they are polled.
                if !(p.starts_with("/proc/") || p.starts_with("/sys/")) {
                    t.files.insert(PathBuf::from(p), component);
                }
            });
        }
        for (component, files, dirs) in FIXED_TARGETS {
            for f in *files {
                t.files.insert(PathBuf::from(f), component);
            }
            for d in *dirs {
                t.dirs.insert(PathBuf::from(d), component);
            }
        }
        for f in inspect::reboot::watched_files() {
            t.files.insert(f, inspect::reboot::NAME);
        }
        t
    }
}

/// Locations an inspector reads whatever the facts say (a marker that does not exist yet has
/// no path in the facts, but its appearance must be noticed).
const FIXED_TARGETS: &[(&str, &[&str], &[&str])] = &[
    (
        inspect::reboot::NAME,
        &[
            "/run/reboot-required",
            "/run/reboot-required.pkgs",
            "/run/reboot-needed",
        ],
        &["/boot", "/lib/modules"],
    ),
    (
        inspect::sysctl::NAME,
        &["/etc/sysctl.conf"],
        &[
            "/etc/sysctl.d",
            "/run/sysctl.d",
            "/usr/local/lib/sysctl.d",
            "/usr/lib/sysctl.d",
            "/lib/sysctl.d",
        ],
    ),
    (
        inspect::os::NAME,
        &["/etc/os-release", "/usr/lib/os-release"],
        &[],
    ),
    (
        inspect::patches::NAME,
        &[
            "/var/lib/dpkg/status",
            "/var/log/dpkg.log",
            "/var/log/apt/history.log",
            "/var/log/dnf.rpm.log",
        ],
        &[],
    ),
    (
        inspect::kubelet::NAME,
        &["/etc/default/kubelet"],
        &[
            "/etc/systemd/system/kubelet.service.d",
            "/lib/systemd/system/kubelet.service.d",
            "/usr/lib/systemd/system/kubelet.service.d",
        ],
    ),
    (
        inspect::containerd::NAME,
        &["/etc/containerd/config.toml"],
        &[],
    ),
    (
        inspect::cni::NAME,
        &[],
        &[inspect::cni::CONF_DIR, inspect::cni::BIN_DIR],
    ),
];

/// Which component owns which host path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchTargets {
    /// Files: a change to exactly this path concerns the component.
    pub files: BTreeMap<PathBuf, &'static str>,
    /// Directories: a change to any entry concerns the component.
    pub dirs: BTreeMap<PathBuf, &'static str>,
}

impl WatchTargets {
    /// The component a changed host path concerns, if any.
    pub fn component_of(&self, path: &Path) -> Option<&'static str> {
        if let Some(c) = self.files.get(path) {
            return Some(c);
        }
        path.parent().and_then(|d| self.dirs.get(d)).copied()
    }

    /// The directories to watch (non-recursively): every directory target and the parent of
    /// every file target (so replace-by-rename is seen).
    pub fn watch_dirs(&self) -> BTreeSet<PathBuf> {
        self.dirs
            .keys()
            .cloned()
            .chain(
                self.files
                    .keys()
                    .filter_map(|f| f.parent().map(Path::to_path_buf)),
            )
            .collect()
    }
}

/// Calls `f` with every absolute path in the facts: string values under a `path` key, and the
/// keys of `environmentFiles` objects.
fn collect_paths(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                match child {
                    Value::String(s) if k == "path" && s.starts_with('/') => f(s),
                    _ => {}
                }
                if k == "environmentFiles"
                    && let Value::Object(files) = child
                {
                    files
                        .keys()
                        .filter(|p| p.starts_with('/'))
                        .for_each(|p| f(p));
                }
                collect_paths(child, f);
            }
        }
        Value::Array(a) => a.iter().for_each(|c| collect_paths(c, f)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hosts")
            .join(name)
    }

    fn engine(host: &str) -> Engine {
        Engine::new(EngineOptions {
            host_root: fixture(host),
            profile: None,
            baselines: Vec::new(),
            inspect: inspect::Options::default(),
        })
        .unwrap()
    }

    /// Egress probes leave the node: a partial re-check never runs them, even when asked to.
    #[test]
    fn egress_is_probed_by_the_full_check_only() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let layer = dir.path().join("egress.yaml");
        let mut text = String::from("apiVersion: nodedrift.dev/v1\nkind: Baseline\negress:\n");
        for id in ["mcr", "management", "login", "packages", "acs-mirror"] {
            text.push_str(&format!("  - {{ id: {id}, disabled: true }}\n"));
        }
        text.push_str(&format!(
            "  - {{ id: local, host: 127.0.0.1, port: {port}, tls: false }}\n"
        ));
        std::fs::write(&layer, text).unwrap();
        let mut e = Engine::new(EngineOptions {
            host_root: fixture("aks-ubuntu-clean"),
            profile: Some("aks-ubuntu".into()),
            baselines: vec![layer],
            inspect: inspect::Options {
                egress_probe: true,
                ..inspect::Options::default()
            },
        })
        .unwrap();
        e.full_check();
        // The probe's connection is complete (in the backlog) before full_check returns.
        listener.accept().unwrap();
        listener.set_nonblocking(true).unwrap();
        e.recheck(&BTreeSet::from([
            inspect::egress::NAME,
            inspect::kubelet::NAME,
        ]));
        let again = listener.accept();
        assert!(
            again
                .as_ref()
                .is_err_and(|err| err.kind() == std::io::ErrorKind::WouldBlock),
            "a partial re-check probed: {again:?}"
        );
        assert!(
            e.findings()
                .iter()
                .any(|f| f.path == "egress.endpoints.local.reachable"
                    && f.status == crate::finding::Status::Pass)
        );
    }

    #[test]
    fn full_check_matches_one_shot_check() {
        let mut e = engine("aks-ubuntu-drifted");
        e.full_check();
        let report = check::run(&check::CheckOptions {
            host_root: fixture("aks-ubuntu-drifted"),
            ..Default::default()
        })
        .unwrap();
        let key = |f: &Finding| (f.rule.clone(), f.path.clone(), f.status);
        let mut a: Vec<_> = e.findings().iter().map(key).collect();
        let mut b: Vec<_> = report.findings.iter().map(key).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        assert_eq!(e.profile().name, "aks-ubuntu");
    }

    #[test]
    fn watch_targets_map_paths_to_components() {
        let mut e = engine("aks-ubuntu-drifted");
        e.full_check();
        let t = e.watch_targets();
        assert_eq!(
            t.component_of(Path::new("/etc/default/kubeletconfig.json")),
            Some("kubelet")
        );
        assert_eq!(
            t.component_of(Path::new("/etc/containerd/config.toml")),
            Some("containerd")
        );
        assert_eq!(
            t.component_of(Path::new("/etc/sysctl.d/99-new.conf")),
            Some("sysctl")
        );
        assert_eq!(
            t.component_of(Path::new("/run/reboot-required")),
            Some("reboot")
        );
        assert_eq!(t.component_of(Path::new("/run/unrelated.pid")), None);
        // Core libraries replaced by an update (renamed into place) are noticed at once.
        assert_eq!(
            t.component_of(Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6")),
            Some("reboot")
        );
        assert_eq!(
            t.component_of(Path::new("/usr/lib/x86_64-linux-gnu/libfoo.so.1")),
            None
        );
        assert!(t.watch_dirs().contains(Path::new("/etc/default")));
        assert!(
            t.watch_dirs()
                .iter()
                .all(|d| !d.starts_with("/proc") && !d.starts_with("/sys")),
            "procfs and sysfs are polled, not watched"
        );
    }

    /// The ledger's earlier start of a pending reboot (same boot) dates the facts, so the
    /// severity escalates from it; a start recorded in another boot does not.
    #[test]
    fn a_recorded_reboot_start_in_this_boot_dates_the_facts() {
        let mut e = engine("aks-ubuntu-drifted");
        e.full_check();
        let observed = e.facts().get("reboot.pendingSinceUnix");
        let Lookup::Found(observed) = observed else {
            panic!("pendingSinceUnix: {observed:?}")
        };
        let observed = observed.as_i64().unwrap();
        let Lookup::Found(Value::String(boot)) = e.facts().get("os.bootId") else {
            panic!("the fixture has a boot id")
        };
        let boot = boot.clone();
        let severity = |e: &Engine| {
            e.findings()
                .iter()
                .find(|f| f.rule == "reboot.not-pending")
                .map(|f| f.severity.to_string())
                .unwrap()
        };
        assert_eq!(severity(&e), "medium");

        let old = observed - 40 * 86_400;
        e.set_recorded_reboot(Some(PendingReboot {
            since: old,
            boot_id: Some(boot),
        }));
        e.full_check();
        assert_eq!(
            e.facts().get("reboot.pendingSinceUnix"),
            Lookup::Found(&Value::from(old))
        );
        assert_eq!(severity(&e), "critical");

        e.set_recorded_reboot(Some(PendingReboot {
            since: old,
            boot_id: Some("another-boot".to_owned()),
        }));
        e.full_check();
        assert_eq!(
            e.facts().get("reboot.pendingSinceUnix"),
            Lookup::Found(&Value::from(observed))
        );
        assert_eq!(severity(&e), "medium");
    }

    #[test]
    fn invalid_reload_keeps_the_baseline_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("site.yaml");
        std::fs::write(
            &file,
            "apiVersion: nodedrift.dev/v1\nkind: Baseline\nrules: []\n",
        )
        .unwrap();
        let mut e = Engine::new(EngineOptions {
            host_root: fixture("kubeadm"),
            profile: None,
            baselines: vec![file.clone()],
            inspect: inspect::Options::default(),
        })
        .unwrap();
        e.full_check();
        let before = e.baseline_version();
        std::fs::write(
            &file,
            "apiVersion: nodedrift.dev/v1\nkind: Baseline\nrules:\n  - id: x\n    bogus: 1\n",
        )
        .unwrap();
        let err = e.reload().unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        assert_eq!(e.baseline_version(), before);
    }
}
