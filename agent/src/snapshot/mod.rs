//! Forensic snapshots: one compressed bundle with what an investigator of a drifted node needs.
//!
//! [`take`] streams a `tar` compressed with gzip to any writer; entries are appended as the
//! collectors produce them, each bounded by its collector's budget, so the bundle is never
//! built whole in memory. [`take_to_file`] writes it under a temporary name and renames it
//! into place with its `<bundle>.sha256` sidecar (sha256sum format), so a failed snapshot
//! (disk full, unwritable directory, cancelled) leaves nothing behind. [`verify`] checks a
//! bundle against its manifest.
//!
//! # Collectors, in order of value
//!
//! | collector | entries |
//! |---|---|
//! | `facts` | `facts.json`: every inspector's facts (`nodedrift inspect`) |
//! | `node` | `node.json`: node name, hostname, machine and boot id, OS and image, kernel, uptime |
//! | `findings` | `findings.json`: the baseline evaluated as `check` does (the `CheckReport` schema), file integrity verified against `files.redb` |
//! | `ledger` | `ledger.json`: open findings (opened, last seen, occurrences), pending reboot, pending outbox events |
//! | `nodedrift` | `nodedrift/config.json`, `nodedrift/baseline.yaml`: the configuration and effective baseline in effect |
//! | `processes` | `processes.json`: pid, ppid, uid, comm, redacted command line, cgroup, unit, container and pod, start time, parent chain |
//! | `sockets` | `sockets.json`: listening and established TCP/UDP (v4, v6) and Unix sockets with their processes |
//! | `mounts` | `mounts/mountinfo` of pid 1 |
//! | `modules` | `kernel/modules` |
//! | `sysctl` | `sysctl.txt`: `/proc/sys/{kernel,net,vm,fs}` |
//! | `files` | `files/manifest.json`: the file-integrity baseline (path, kind, mode, owner, size, SHA-256; no content) |
//! | `configs` | `host/<path>`: redacted copies of the files the facts name, the `config` watch sets and the kubelet, containerd and kube-proxy units; `configs.json` indexes them with each original's size, mode, owner and SHA-256 |
//! | `kernel-log` | `logs/kernel/<source>`: recent kernel messages from `kern.log`, `messages`, `syslog`, `dmesg`; `logs/kernel/journal.log` from the journal |
//! | `logs` | `logs/<component>/<source>`: the last lines of the kubelet, containerd and kube-proxy logs; `logs/<component>/journal.log`: their units' entries in the journal |
//!
//! Then `errors.json` (what a collector could not do) and `manifest.json` (every entry's path,
//! size and SHA-256, the collectors' timings and errors, node identity, request id, version,
//! limits, what was trimmed), last.
//!
//! # Budgets and the size cap
//!
//! Each collector has a time and a size budget ([`Budget`]); running out stops it with what it
//! has, recorded as trimmed. The whole bundle never exceeds [`Limits::max_bundle_bytes`]:
//! collectors run in the order above, each gets what the ones before left, and the last ones
//! (the logs) are cut first: a log keeps its **newest** lines and drops the oldest. Room for
//! `errors.json` and `manifest.json` is reserved as entries are written.
//!
//! # Secrets
//!
//! Everything text is redacted ([`crate::redact`]) as it is read, line by line; JSON entries
//! have secret-named values replaced. The manifest counts the redactions by kind.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::baseline::Baseline;
use crate::check::ProfileChoice;
use crate::host::HostRoot;
use crate::inspect;
use crate::ledger::Ledger;

mod bundle;
mod collect;
mod copies;
mod logs;
mod output;
pub(crate) mod procs;
mod verify;

pub use bundle::{EntryRecord, ErrorRecord, Trimmed};
pub use collect::CollectorReport;
pub use output::{default_file_name, retain, snapshot_dir, take_to_file};
pub use verify::{SidecarCheck, Verification, VerifyError, verify};

/// Default [`Limits::max_bundle_bytes`]: 256 MiB.
pub const DEFAULT_MAX_BUNDLE_BYTES: u64 = 256 << 20;
/// Smallest cap accepted: room for the manifest and a few small entries.
pub const MIN_BUNDLE_BYTES: u64 = 256 << 10;
/// Default time budget of one collector.
pub const DEFAULT_COLLECTOR_TIME: Duration = Duration::from_secs(10);
/// Default size budget of one collector (bytes of the entries it writes, uncompressed). It
/// also bounds the memory a collector holds: an entry is built whole before it is appended.
pub const DEFAULT_COLLECTOR_BYTES: u64 = 16 << 20;
/// Default number of log lines kept per source (the newest).
pub const DEFAULT_LOG_LINES: usize = 5000;
/// Default age of the oldest log line kept, in minutes (when its time can be read).
pub const DEFAULT_LOG_MINUTES: u64 = 60;
/// Default bytes read from the end of each log file.
pub const DEFAULT_LOG_SCAN_BYTES: u64 = 32 << 20;
/// Default largest configuration file copied.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 256 << 10;
/// Longest request id.
pub const MAX_ID_LEN: usize = 63;
/// Snapshots kept by default in `<state dir>/snapshots`.
pub const DEFAULT_KEEP: usize = 5;

/// A time and size budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    #[serde(serialize_with = "millis")]
    pub time: Duration,
    pub bytes: u64,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The bounds of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// The compressed bundle is never larger than this. Default 256 MiB.
    pub max_bundle_bytes: u64,
    /// Budget of every collector not named in `budgets`. Default 10 s and 16 MiB.
    pub collector: Budget,
    /// Budgets of named collectors (`logs`, `processes`, ...).
    pub budgets: BTreeMap<String, Budget>,
    /// Log lines kept per source, the newest. Default 5000.
    pub log_lines: usize,
    /// Only log lines of the last this many minutes, when their time can be read. Default 60.
    pub log_minutes: u64,
    /// Bytes read from the end of each log file (the rest of a huge log is never read).
    /// Default 32 MiB.
    pub log_scan_bytes: u64,
    /// Largest configuration file copied. Default 256 KiB.
    pub max_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bundle_bytes: DEFAULT_MAX_BUNDLE_BYTES,
            collector: Budget {
                time: DEFAULT_COLLECTOR_TIME,
                bytes: DEFAULT_COLLECTOR_BYTES,
            },
            budgets: BTreeMap::new(),
            log_lines: DEFAULT_LOG_LINES,
            log_minutes: DEFAULT_LOG_MINUTES,
            log_scan_bytes: DEFAULT_LOG_SCAN_BYTES,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

impl Limits {
    /// The budget of collector `name`.
    pub fn budget(&self, name: &str) -> Budget {
        self.budgets.get(name).copied().unwrap_or(self.collector)
    }

    fn validate(&self) -> Result<(), SnapshotError> {
        if self.max_bundle_bytes < MIN_BUNDLE_BYTES {
            return Err(SnapshotError::Limits(format!(
                "the bundle cap ({} bytes) is below the minimum of {MIN_BUNDLE_BYTES} bytes",
                self.max_bundle_bytes
            )));
        }
        Ok(())
    }
}

/// What to snapshot and how. The daemon fills it from its running state (its ledger handle,
/// the configuration and baseline in effect); the CLI from its flags.
#[derive(Debug)]
pub struct SnapshotRequest<'a> {
    /// The host, as every inspector sees it.
    pub host: &'a HostRoot,
    /// The request id, already checked with [`validate_id`] (it is checked again).
    pub id: &'a str,
    /// The Kubernetes node name, when known.
    pub node_name: Option<&'a str>,
    /// The nodedrift configuration in effect ([`crate::config::Config::to_json`]); redacted
    /// again before it is written.
    pub config: serde_json::Value,
    /// The profile in effect and how it was chosen.
    pub profile: ProfileChoice,
    /// The effective baseline: evaluated for the findings, written as a document.
    pub baseline: &'a Baseline,
    /// The state directory (`files.redb` is opened read-only; the ledger too when `ledger` is
    /// `None`). `None`: no ledger, no file baseline.
    pub state_dir: Option<&'a Path>,
    /// The daemon's open ledger. A running agent holds `nodedrift.redb` exclusively, so its
    /// snapshots must read through this handle.
    pub ledger: Option<&'a Ledger>,
    /// How the inspectors reach local daemons (containerd's socket, timeouts).
    pub inspect: inspect::Options,
    pub limits: Limits,
    /// Set to stop the snapshot between collectors (agent shutdown): [`SnapshotError::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
}

impl<'a> SnapshotRequest<'a> {
    /// A request with default limits, no state dir and an empty configuration.
    pub fn new(
        host: &'a HostRoot,
        id: &'a str,
        profile: ProfileChoice,
        baseline: &'a Baseline,
    ) -> Self {
        Self {
            host,
            id,
            node_name: None,
            config: serde_json::Value::Null,
            profile,
            baseline,
            state_dir: None,
            ledger: None,
            inspect: inspect::Options::default(),
            limits: Limits::default(),
            cancel: None,
        }
    }
}

/// What a snapshot produced.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotOutcome {
    pub id: String,
    /// SHA-256 of the compressed bytes written (what `sha256sum` of the file prints).
    pub sha256: String,
    /// Compressed bytes written.
    pub size: u64,
    /// Entries in the archive, `errors.json` and `manifest.json` included.
    pub entries: usize,
    pub collectors: Vec<CollectorReport>,
    pub trimmed: Vec<Trimmed>,
    /// Errors recorded in `errors.json`.
    pub errors: usize,
    /// Where it was written ([`take_to_file`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// When it was started, RFC 3339.
    pub created_at: String,
}

/// A snapshot that could not be written. Collector failures are not errors: they are
/// recorded in the bundle's `errors.json`.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("invalid snapshot id {shown}: {reason}")]
    InvalidId { shown: String, reason: String },
    #[error("invalid snapshot limits: {0}")]
    Limits(String),
    #[error("writing the snapshot: {0}")]
    Write(#[source] std::io::Error),
    #[error("{path}: {source}")]
    Output {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the snapshot was cancelled")]
    Cancelled,
}

/// Checks a request id: 1 to 63 characters of `A-Z a-z 0-9 . _ -`, not starting with `.` or
/// `-`. It becomes part of a file name, so path separators, `..`, control characters and
/// anything long are refused.
pub fn validate_id(id: &str) -> Result<&str, SnapshotError> {
    let err = |reason: String| {
        let head: String = id.chars().take(40).collect();
        let shown = if id.chars().count() > 40 {
            format!("{head:?}… ({} bytes)", id.len())
        } else {
            format!("{head:?}")
        };
        Err(SnapshotError::InvalidId { shown, reason })
    };
    if id.is_empty() {
        return err("empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return err(format!("longer than {MAX_ID_LEN} characters"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return err(format!(
            "{c:?} is not allowed (only A-Z, a-z, 0-9, '.', '_', '-')"
        ));
    }
    if id.starts_with(['.', '-']) {
        return err("must not start with '.' or '-'".into());
    }
    Ok(id)
}

/// Takes a snapshot, streaming the compressed bundle to `out`. Blocking: run it on a thread of
/// its own (`spawn_blocking`) in an async caller.
pub fn take(
    req: &SnapshotRequest<'_>,
    out: &mut dyn Write,
) -> Result<SnapshotOutcome, SnapshotError> {
    validate_id(req.id)?;
    req.limits.validate()?;
    collect::run(req, out, SystemTime::now())
}

#[cfg(test)]
mod tests;
