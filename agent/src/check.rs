//! One complete check: inspect the host, pick the profile, build the baseline, evaluate.
//!
//! The `os` inspector runs first because the profile is detected from its facts, and the
//! baseline (which names the sysctl keys to read) must exist before the other inspectors run.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::baseline::{self, Baseline, BaselineError};
use crate::facts::Facts;
use crate::finding::{Finding, Summary};
use crate::host::{HostError, HostRoot};
use crate::inspect::{self, os};

/// What a check needs to know.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub host_root: PathBuf,
    /// Force this profile instead of detecting it.
    pub profile: Option<String>,
    /// User baseline files layered over the profile, in order.
    pub baselines: Vec<PathBuf>,
    pub inspect: inspect::Options,
    /// File integrity: where the store is, and the ad-hoc `--watch` paths.
    pub files: FilesOptions,
}

/// File-integrity options of a check.
#[derive(Debug, Clone, Default)]
pub struct FilesOptions {
    /// The state directory holding `files.redb`; `None` skips file integrity.
    pub state_dir: Option<PathBuf>,
    /// Ad-hoc watch paths: when given, the check covers only file integrity over them.
    pub watch: Vec<PathBuf>,
    /// Attributes of the ad-hoc set (default: the `config` preset's).
    pub attributes: Option<crate::files::AttrSet>,
}

impl FilesOptions {
    /// The watch spec in force: the ad-hoc set, or the baseline's sets.
    pub fn spec(&self, baseline: &Baseline) -> Result<crate::files::WatchSpec, CheckError> {
        if self.watch.is_empty() {
            return Ok(baseline.watch_spec());
        }
        let set = crate::files::WatchSet::ad_hoc(&self.watch, self.attributes)
            .map_err(|e| CheckError::Usage(e.to_string()))?;
        Ok(crate::files::WatchSpec::new(vec![set]))
    }
}

/// The file-integrity part of a report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileIntegrity {
    /// `verified`, `not-captured`, `other-host`, `damaged`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<crate::files::StoreInfo>,
    pub entries: usize,
    pub changed: usize,
    pub hashed: usize,
    pub hashed_bytes: u64,
    /// Files larger than the hashing cap, tracked by metadata only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metadata_only: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_roots: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A check that could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Store(#[from] crate::files::StoreError),
}

impl CheckError {
    /// Bad input from the user (exit 64) rather than an internal failure.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Baseline(_)
                | Self::Host(HostError::Root { .. })
                | Self::Usage(_)
                | Self::Store(crate::files::StoreError::NotCaptured { .. })
        )
    }
}

/// The profile in effect and how it was chosen.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileChoice {
    pub name: String,
    /// `detected` or `forced`.
    pub selected_by: &'static str,
    pub reason: String,
}

/// The result of one check: the stable JSON schema of `nodedrift check --format json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    pub api_version: &'static str,
    pub kind: &'static str,
    /// RFC 3339, UTC.
    pub generated_at: String,
    pub host_root: String,
    pub profile: ProfileChoice,
    /// Baseline layers applied, bottom first.
    pub baselines: Vec<String>,
    pub summary: Summary,
    pub findings: Vec<Finding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_integrity: Option<FileIntegrity>,
    /// Whether a reboot (or a service restart) is pending, since when and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reboot: Option<crate::inspect::reboot::RebootSummary>,
    #[serde(skip)]
    pub facts: Facts,
    #[serde(skip)]
    pub duration: Duration,
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// Loads the baseline for `profile` (or the detected one) plus the user files.
pub fn load_baseline(profile: &str, files: &[PathBuf]) -> Result<Baseline, BaselineError> {
    let mut b = Baseline::profile(profile)?;
    for f in files {
        b.apply_file(f)?;
    }
    Ok(b)
}

/// The profile for `host`: `forced`, or detected (inspecting only the `os` component).
pub fn profile_for(host: &HostRoot, forced: Option<&str>) -> ProfileChoice {
    match forced {
        Some(p) => choose_profile(Some(p), &Facts::default()),
        None => {
            let facts = inspect::inspect(host, &inspect::Options::default(), &[os::NAME]);
            choose_profile(None, &facts)
        }
    }
}

/// Picks the profile: forced, or detected from the `os` facts.
pub fn choose_profile(forced: Option<&str>, facts: &Facts) -> ProfileChoice {
    match forced {
        Some(p) => ProfileChoice {
            name: p.to_owned(),
            selected_by: "forced",
            reason: "--profile".into(),
        },
        None => {
            let d = baseline::profiles::detect(facts);
            ProfileChoice {
                name: d.profile.to_owned(),
                selected_by: "detected",
                reason: d.reason,
            }
        }
    }
}

/// Whether `root` is the live host, whose network namespace nodedrift shares: `/`, or the
/// host root the pod's environment names (`NODEDRIFT_HOST_ROOT=/host`, the DaemonSet's
/// hostNetwork pod). Probes default to on there only: on a copied tree they would reach this
/// machine's daemons, not the node's.
pub fn is_live_host(root: &std::path::Path, env_root: Option<&std::ffi::OsStr>) -> bool {
    let norm = |p: &std::path::Path| p.components().collect::<PathBuf>();
    norm(root) == std::path::Path::new("/")
        || env_root.is_some_and(|e| !e.is_empty() && norm(std::path::Path::new(e)) == norm(root))
}

/// Runs every inspector once and evaluates the baseline.
pub fn run(opts: &CheckOptions) -> Result<CheckReport, CheckError> {
    let started = Instant::now();
    let host = HostRoot::new(&opts.host_root)?;
    if let Some(p) = &opts.profile {
        // Validate a forced profile before spending time on the host.
        baseline::profiles::files(p)?;
    }
    let ad_hoc = !opts.files.watch.is_empty();
    let (mut facts, profile, baseline) = if ad_hoc {
        // `--watch`: file integrity over the given trees only, no profile.
        let profile = ProfileChoice {
            name: "none".into(),
            selected_by: "forced",
            reason: "--watch checks file integrity only".into(),
        };
        (
            Facts::default(),
            profile,
            load_baseline("none", &opts.baselines)?,
        )
    } else {
        let facts = inspect::inspect(&host, &opts.inspect, &[os::NAME]);
        let profile = choose_profile(opts.profile.as_deref(), &facts);
        let baseline = load_baseline(&profile.name, &opts.baselines)?;
        (facts, profile, baseline)
    };
    let mut findings = Vec::new();
    if !ad_hoc {
        let mut inspect_opts = opts.inspect.clone();
        inspect_opts.sysctl_keys.extend(baseline.sysctl_keys());
        inspect_opts.egress = baseline.egress.clone();
        let others: Vec<&str> = inspect::names().filter(|n| *n != os::NAME).collect();
        let rest = inspect::inspect(&host, &inspect_opts, &others);
        facts.components.extend(rest.components);
        findings = baseline::evaluate(&baseline, &facts);
    }
    let spec = opts.files.spec(&baseline)?;
    let file_integrity = match &opts.files.state_dir {
        Some(dir) if !spec.is_empty() => {
            Some(check_files(&host, &spec, dir, ad_hoc, &mut findings)?)
        }
        _ => None,
    };
    sort_findings(&mut findings);
    Ok(CheckReport {
        api_version: "nodedrift.dev/v1",
        kind: "CheckReport",
        generated_at: crate::clock::rfc3339(SystemTime::now()),
        host_root: opts.host_root.to_string_lossy().into_owned(),
        profile,
        baselines: baseline.layers.clone(),
        summary: Summary::of(&findings),
        findings,
        file_integrity,
        reboot: crate::inspect::reboot::RebootSummary::of(&facts),
        facts,
        duration: started.elapsed(),
        warnings: baseline.warnings,
    })
}

/// Orders findings as the report does: grouped by component in registry order; within one,
/// failures first, most severe first.
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| report_order(a).cmp(&report_order(b)));
}

/// Verifies the file baseline in `state_dir` and appends its findings. A store captured for
/// another host root is left alone (a check of a fixture tree must not compare it with the
/// node's own baseline); a damaged or tampered store is a critical finding, not a re-capture.
fn check_files(
    host: &HostRoot,
    spec: &crate::files::WatchSpec,
    state_dir: &std::path::Path,
    ad_hoc: bool,
    findings: &mut Vec<Finding>,
) -> Result<FileIntegrity, CheckError> {
    use crate::files::{Store, StoreError};
    // The read-write open also verifies every page; where the state directory is read-only
    // (nodedrift-check.service's is), the store is read without writing to it.
    let store = match Store::open(state_dir) {
        Err(StoreError::NotWritable { .. }) => Store::open_read_only(state_dir),
        other => other,
    };
    file_integrity(host, spec, state_dir, store, ad_hoc, findings)
}

/// [`check_files`] on a store the caller opened (read-write for `check`, read-only for a
/// snapshot taken beside the running agent).
pub fn file_integrity(
    host: &HostRoot,
    spec: &crate::files::WatchSpec,
    state_dir: &std::path::Path,
    store: Result<crate::files::Store, crate::files::StoreError>,
    ad_hoc: bool,
    findings: &mut Vec<Finding>,
) -> Result<FileIntegrity, CheckError> {
    use crate::files::{self, StoreError};
    let empty = |state, note: String| FileIntegrity {
        state,
        store: None,
        entries: 0,
        changed: 0,
        hashed: 0,
        hashed_bytes: 0,
        metadata_only: Vec::new(),
        missing_roots: Vec::new(),
        note: Some(note),
    };
    let store = match store {
        Ok(s) => s,
        Err(e @ StoreError::NotCaptured { .. }) if ad_hoc => return Err(e.into()),
        Err(e @ StoreError::NotCaptured { .. }) => return Ok(empty("not-captured", e.to_string())),
        Err(e) if e.is_integrity() => {
            findings.push(files::store_finding(&e));
            return Ok(empty("damaged", e.to_string()));
        }
        Err(e) => return Err(e.into()),
    };
    let root = host.root().to_string_lossy().into_owned();
    match store.host_root() {
        Ok(Some(r)) if r != root => {
            return Ok(empty(
                "other-host",
                format!(
                    "the file baseline in {} was captured for host root {r}, not {root}",
                    state_dir.display()
                ),
            ));
        }
        Ok(_) => {}
        Err(e) => return Err(e.into()),
    }
    let v = match files::verify::verify(host, spec, &store, &files::VerifyOptions::default()) {
        Ok(v) => v,
        Err(e) if e.is_integrity() => {
            findings.push(files::store_finding(&e));
            return Ok(empty("damaged", e.to_string()));
        }
        Err(e) => return Err(e.into()),
    };
    findings.extend(files::findings(
        spec,
        &v,
        Some(&store),
        Some(host),
        &files::unattributed_oneshot,
    ));
    Ok(FileIntegrity {
        state: "verified",
        store: v.store.clone(),
        entries: v.entries,
        changed: v.changes.len(),
        hashed: v.hashed,
        hashed_bytes: v.hashed_bytes,
        metadata_only: v.metadata_only.iter().map(|p| crate::host::display(p)).collect(),
        missing_roots: v.missing_roots.iter().map(|p| crate::host::display(p)).collect(),
        note: v.spec_changed.then(|| {
            "the watch sets changed since the capture: newly watched files show as added; accept them or re-capture".to_owned()
        }),
    })
}

/// The sort key of a finding in the report.
fn report_order(
    f: &Finding,
) -> (
    usize,
    &str,
    crate::finding::Status,
    std::cmp::Reverse<baseline::Severity>,
    &str,
    &str,
) {
    (
        component_rank(&f.component),
        &f.component,
        f.status,
        std::cmp::Reverse(f.severity),
        &f.rule,
        &f.path,
    )
}

/// Components in the registry's order, unknown ones last.
fn component_rank(c: &str) -> usize {
    inspect::names().position(|n| n == c).unwrap_or(usize::MAX)
}

/// The process exit code for a report: 0 all pass, 1 any fail, 3 unknowns but no fail.
pub fn exit_code(s: &Summary) -> u8 {
    if s.fail > 0 {
        1
    } else if s.unknown > 0 {
        3
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::is_live_host;
    use std::ffi::OsStr;
    use std::path::Path;

    #[test]
    fn health_probe_default_is_the_live_host_only() {
        assert!(is_live_host(Path::new("/"), None));
        assert!(is_live_host(Path::new("//"), None));
        assert!(is_live_host(Path::new("/host"), Some(OsStr::new("/host"))));
        assert!(is_live_host(Path::new("/host/"), Some(OsStr::new("/host"))));
        assert!(!is_live_host(Path::new("/tmp/tree"), None));
        assert!(!is_live_host(
            Path::new("/tmp/tree"),
            Some(OsStr::new("/host"))
        ));
        assert!(!is_live_host(Path::new("/tmp/tree"), Some(OsStr::new(""))));
    }
}
