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
}

/// A check that could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    #[error(transparent)]
    Host(#[from] HostError),
}

impl CheckError {
    /// Bad input from the user (exit 64) rather than an internal failure.
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::Baseline(_) | Self::Host(HostError::Root { .. }))
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

/// Runs every inspector once and evaluates the baseline.
pub fn run(opts: &CheckOptions) -> Result<CheckReport, CheckError> {
    let started = Instant::now();
    let host = HostRoot::new(&opts.host_root)?;
    if let Some(p) = &opts.profile {
        // Validate a forced profile before spending time on the host.
        baseline::profiles::files(p)?;
    }
    let mut facts = inspect::inspect(&host, &opts.inspect, &[os::NAME]);
    let profile = choose_profile(opts.profile.as_deref(), &facts);
    let baseline = load_baseline(&profile.name, &opts.baselines)?;
    let mut inspect_opts = opts.inspect.clone();
    inspect_opts.sysctl_keys.extend(baseline.sysctl_keys());
    let others: Vec<&str> = inspect::names().filter(|n| *n != os::NAME).collect();
    let rest = inspect::inspect(&host, &inspect_opts, &others);
    facts.components.extend(rest.components);
    let mut findings = baseline::evaluate(&baseline, &facts);
    // Grouped by component in registry order; within one, failures first, most severe first.
    findings.sort_by(|a, b| report_order(a).cmp(&report_order(b)));
    Ok(CheckReport {
        api_version: "nodedrift.dev/v1",
        kind: "CheckReport",
        generated_at: crate::clock::rfc3339(SystemTime::now()),
        host_root: opts.host_root.to_string_lossy().into_owned(),
        profile,
        baselines: baseline.layers.clone(),
        summary: Summary::of(&findings),
        findings,
        facts,
        duration: started.elapsed(),
        warnings: baseline.warnings,
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
