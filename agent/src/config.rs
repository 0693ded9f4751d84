//! The daemon's configuration: one YAML file (`nodedrift run --config FILE`), then environment
//! overrides.
//!
//! Two stages: [`RawConfig`] mirrors the file (every key optional, unknown keys rejected), and
//! [`Config`] is the validated result with every default filled in. Errors name the file, line,
//! column and key (`nodedrift.yaml:4:3: intervals.procPoll: ...`), or the environment variable.
//! An empty file (or no file) means all defaults. Files the configuration names (baselines,
//! token, CA, client certificate) are not required to exist at load: they are read when used,
//! and the token is re-read on rotation.
//!
//! Durations are written as a number and a unit, `ms`, `s`, `m` or `h`, combinable:
//! `500ms`, `30s`, `5m`, `1h30m`.
//!
//! # Environment overrides
//!
//! Applied after the file, so they win. An empty variable is ignored (as if unset).
//!
//! | variable               | overrides                       |
//! |------------------------|---------------------------------|
//! | `NODE_NAME`            | `kubernetes.nodeName`           |
//! | `POD_NAME`             | the agent's pod name (no key; used to attribute Kubernetes Events) |
//! | `NODEDRIFT_ENDPOINT`   | `endpoint.url`                  |
//! | `NODEDRIFT_TOKEN_FILE` | `endpoint.tokenFile`            |
//! | `NODEDRIFT_CA_FILE`    | `endpoint.caFile`               |
//! | `NODEDRIFT_LISTEN`     | `listen`                        |
//! | `NODEDRIFT_STATE_DIR`  | `stateDir`                      |
//! | `NODEDRIFT_HOST_ROOT`  | `hostRoot`                      |
//! | `NODEDRIFT_PROFILE`    | `profile`                       |
//!
//! `KUBERNETES_SERVICE_HOST` and `KUBECONFIG` are read (not overridden) to decide
//! `kubernetes.enabled: auto`.
//!
//! An annotated example with every key is `agent/src/config.example.yaml`
//! ([`EXAMPLE`]).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use crate::baseline::profiles;
use crate::ledger::outbox::DEFAULT_MAX_EVENTS;
use crate::yamlpos;

/// The annotated example configuration (every key, with its default).
pub const EXAMPLE: &str = include_str!("config.example.yaml");

/// Largest configuration file accepted (far above any real one).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Default `hostRoot`: the agent sees the host's file system at `/` (systemd install); a
/// DaemonSet mounts the host elsewhere and sets it.
pub const DEFAULT_HOST_ROOT: &str = "/";
/// Default `stateDir` (a hostPath in the DaemonSet, so the ledger survives pod restarts).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/nodedrift";
/// Default `listen`: all interfaces, port 9101. The agent runs in the host network namespace,
/// so the port must not collide with the node daemons that usually listen there: node-exporter
/// (9100), Calico Felix (9091, 9099), Cilium (9962-9965), kubelet and kube-proxy
/// (10248-10256). 9101 is next to node-exporter, where operators look for node agents; its
/// registration in the Prometheus exporter list (the retired HAProxy exporter) is not a node
/// daemon.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9101";
/// Default `intervals.procPoll`: how often /proc is scanned for restarted components. Cheap
/// (a readdir and a few small reads), and a restart with new flags is noticed within seconds.
pub const DEFAULT_PROC_POLL: Duration = Duration::from_secs(2);
/// Default `intervals.sysctlPoll`: /proc/sys has no inotify, so sysctls are polled.
pub const DEFAULT_SYSCTL_POLL: Duration = Duration::from_secs(10);
/// Default `intervals.rescan`: a full rescan catches whatever events missed.
pub const DEFAULT_RESCAN: Duration = Duration::from_secs(5 * 60);
/// Default `intervals.rescanJitter`: up to 10% of `rescan` added at random, so the nodes of a
/// fleet started together do not rescan (and report) in lockstep.
pub const DEFAULT_RESCAN_JITTER_PERCENT: u32 = 10;
/// Default `intervals.heartbeat`: how often a `dev.nodedrift.node.summary` event is sent even
/// when nothing changed, so the receiver knows the agent is alive.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10 * 60);
/// Default `endpoint.timeout` of one delivery request.
pub const DEFAULT_ENDPOINT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `endpoint.batchMaxEvents`: events per request.
pub const DEFAULT_BATCH_MAX_EVENTS: usize = 100;
/// Largest `endpoint.batchMaxEvents` accepted (a batch is one request body held in memory).
pub const MAX_BATCH_MAX_EVENTS: usize = 10_000;
/// Default `endpoint.outboxMaxEvents` (the ledger's default bound).
pub const DEFAULT_OUTBOX_MAX_EVENTS: usize = DEFAULT_MAX_EVENTS;
/// Default `kubernetes.eventsPerMinute`: Kubernetes Events are for humans; a burst of drift is
/// summarised by the node conditions, not by hundreds of Events.
pub const DEFAULT_EVENTS_PER_MINUTE: u32 = 10;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}:{line}:{column}: {key}: {message}", key = key.as_deref().unwrap_or("document"))]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        key: Option<String>,
        message: String,
    },
    #[error("{file}: {message}")]
    Read { file: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

// ---------------------------------------------------------------------------------------------
// Stage 1: the file as written.

/// The configuration file as written. Every key is optional; absent keys take the defaults
/// documented on [`Config`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConfig {
    /// Where the host's root file system is visible to the agent. Default `/`.
    pub host_root: Option<PathBuf>,
    /// Directory of the ledger (`nodedrift.redb`); created 0700 when missing. Default
    /// `/var/lib/nodedrift`.
    pub state_dir: Option<PathBuf>,
    /// Embedded profile to use instead of detecting one from the host. Default: detect.
    pub profile: Option<RawProfile>,
    /// Baseline files layered over the profile, in order (later files win). Default: none.
    pub baselines: Option<Vec<PathBuf>>,
    /// Address of the `/metrics`, `/healthz` and `/readyz` server. Default `0.0.0.0:9101`.
    pub listen: Option<SocketAddr>,
    /// How often things are looked at.
    pub intervals: Option<RawIntervals>,
    /// The central CloudEvents endpoint.
    pub endpoint: Option<RawEndpoint>,
    /// The Kubernetes sink (annotations, conditions and Events on the agent's own Node).
    pub kubernetes: Option<RawKubernetes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<RawFiles>,
    /// Forensic snapshots the running agent takes on request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<RawSnapshot>,
    /// Probes of the baseline's required egress endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<RawEgress>,
}

/// `egress`: probing the endpoints the baseline's `egress:` list names (and no other).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawEgress {
    /// Probe them on every full re-check. Default false: probing leaves the node, so it is
    /// asked for (the shipped deployment does).
    pub enabled: Option<bool>,
    /// Upper bound of each stage of a probe (resolve, connect, TLS handshake). Default 3s.
    pub timeout: Option<Interval>,
}

/// `snapshot`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSnapshot {
    /// Take snapshots when asked (the `nodedrift.dev/snapshot-request` annotation, or a finding
    /// of `onSeverity`). Default true.
    pub enabled: Option<bool>,
    /// Bundles kept in `<stateDir>/snapshots`; older ones are removed. Default 5.
    pub keep: Option<usize>,
    /// Size cap of one bundle, MiB. Default 256.
    pub max_mib: Option<u64>,
    /// At least this long between two snapshots; a request in between waits. Default `5m`.
    pub min_interval: Option<Interval>,
    /// Take one when a finding of this severity or higher opens. Default: never.
    pub on_severity: Option<crate::baseline::Severity>,
    /// Upload each bundle to `<uploadUrl>/<file name>` (PUT, streamed, retried), with the
    /// endpoint's token and TLS settings. Default: kept on the node only.
    pub upload_url: Option<String>,
}

/// `intervals`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawIntervals {
    /// Scan of /proc for components restarted with new flags. Default `2s`.
    pub proc_poll: Option<Interval>,
    /// Poll of the sysctls the baseline names. Default `10s`.
    pub sysctl_poll: Option<Interval>,
    /// Full rescan of every inspector. Default `5m`.
    pub rescan: Option<Interval>,
    /// Random delay added to each rescan, at most this: a percentage of `rescan` (`10%`) or a
    /// duration (`30s`); `0s` for none. Must be shorter than `rescan`. Default `10%`.
    pub rescan_jitter: Option<Jitter>,
    /// Interval of the node summary heartbeat event. Default `10m`.
    pub heartbeat: Option<Interval>,
}

/// `endpoint`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawEndpoint {
    /// Where CloudEvents batches are POSTed. `https://`, or `http://` to a loopback address
    /// only. Unset: the central sink is off. Default: unset.
    pub url: Option<EndpointUrl>,
    /// File holding the bearer token (re-read when it changes). Default: no token.
    pub token_file: Option<PathBuf>,
    /// PEM bundle of the CAs that sign the endpoint's certificate; when set, only these are
    /// trusted. Default: the HTTP sink's built-in roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mTLS (with `clientKey`). Default: none.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `clientCert`. Default: none.
    pub client_key: Option<PathBuf>,
    /// Timeout of one delivery request. Default `10s`.
    pub timeout: Option<Interval>,
    /// Most events per request. Default 100; at most 10000.
    pub batch_max_events: Option<usize>,
    /// Most events queued in the ledger's outbox (oldest heartbeats, then oldest events, are
    /// dropped beyond). Default 10000.
    pub outbox_max_events: Option<usize>,
}

/// `kubernetes`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawKubernetes {
    /// `true`, `false` or `auto`: on when the node name is known (`nodeName` or `NODE_NAME`)
    /// and API credentials are (in-cluster `KUBERNETES_SERVICE_HOST`, or `KUBECONFIG`).
    /// Default `auto`.
    pub enabled: Option<Toggle>,
    /// The Node this agent runs on (the only object it writes). Default: `NODE_NAME`.
    pub node_name: Option<String>,
    /// Most Kubernetes Events created per minute; 0 creates none. Default 10.
    pub events_per_minute: Option<u32>,
}

/// `files`: the file-integrity monitor.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawFiles {
    /// Watch the baseline's file sets. Default true.
    pub enabled: Option<bool>,
    /// Full re-hash of every watched file, whatever its timestamps say. Default 24h (±10%).
    pub rehash_interval: Option<Interval>,
    /// Hashing threads. Default: the CPU count, at most 4.
    pub hash_threads: Option<usize>,
    /// Read rate of background re-hashing, MiB/s (0: unlimited). Default 64.
    pub rehash_mib_per_sec: Option<u64>,
    /// Files larger than this many MiB are tracked by metadata only. Default 256.
    pub max_hash_mib: Option<u64>,
    /// Say which process changed a file (fanotify; needs CAP_SYS_ADMIN): `true`, `false` or
    /// `auto` (on when the kernel allows it). Default auto.
    pub attribution: Option<Toggle>,
}

/// A strictly positive duration (`2s`, `5m`, `1h30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(pub Duration);

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        positive(&s).map(Interval).map_err(de::Error::custom)
    }
}

impl Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

/// `rescanJitter`: a percentage of the rescan interval or a fixed duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// Percent of `rescan`, 0 to 99.
    Percent(u32),
    Fixed(Duration),
}

impl<'de> Deserialize<'de> for Jitter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_jitter(&s).map_err(de::Error::custom)
    }
}

impl Serialize for Jitter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Percent(p) => s.serialize_str(&format!("{p}%")),
            Self::Fixed(d) => s.serialize_str(&format_duration(*d)),
        }
    }
}

/// `true`, `false` or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Toggle {
    #[default]
    Auto,
    On,
    Off,
}

impl<'de> Deserialize<'de> for Toggle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Toggle;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or auto")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Toggle, E> {
                Ok(if v { Toggle::On } else { Toggle::Off })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Toggle, E> {
                match v {
                    "auto" => Ok(Toggle::Auto),
                    "true" => Ok(Toggle::On),
                    "false" => Ok(Toggle::Off),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Toggle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::On => s.serialize_bool(true),
            Self::Off => s.serialize_bool(false),
        }
    }
}

/// An endpoint URL that passed [`parse_endpoint_url`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl(pub reqwest::Url);

impl<'de> Deserialize<'de> for EndpointUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_endpoint_url(&s)
            .map(EndpointUrl)
            .map_err(de::Error::custom)
    }
}

impl Serialize for EndpointUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

/// A profile name that is one of the embedded profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawProfile(pub String);

impl<'de> Deserialize<'de> for RawProfile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        check_profile(&s).map_err(de::Error::custom)?;
        Ok(RawProfile(s))
    }
}

impl Serialize for RawProfile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Stage 2: the validated configuration.

/// The validated configuration, defaults filled in and environment overrides applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was loaded from (`None`: defaults and environment only).
    pub source: Option<PathBuf>,
    /// Default `/`.
    pub host_root: PathBuf,
    /// Default `/var/lib/nodedrift`.
    pub state_dir: PathBuf,
    /// Forced profile; `None` detects it from the host.
    pub profile: Option<String>,
    /// User baseline files, in order.
    pub baselines: Vec<PathBuf>,
    /// Metrics and health address. Default `0.0.0.0:9101` ([`DEFAULT_LISTEN`]).
    pub listen: SocketAddr,
    /// Poll, rescan and heartbeat intervals.
    pub intervals: Intervals,
    /// The central CloudEvents sink and the outbox bound.
    pub endpoint: Endpoint,
    /// The Kubernetes sink.
    pub kubernetes: Kubernetes,
    pub files: Files,
    pub snapshot: Snapshot,
    pub egress: Egress,
}

/// Validated `egress`.
#[derive(Debug, Clone, PartialEq)]
pub struct Egress {
    pub enabled: bool,
    pub timeout: Duration,
}

impl Default for Egress {
    fn default() -> Self {
        Self {
            enabled: false,
            timeout: crate::inspect::DEFAULT_EGRESS_TIMEOUT,
        }
    }
}

/// Default `snapshot.minInterval`.
pub const DEFAULT_SNAPSHOT_MIN_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// Snapshots on request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub enabled: bool,
    pub keep: usize,
    pub max_bytes: u64,
    pub min_interval: Duration,
    pub on_severity: Option<crate::baseline::Severity>,
    pub upload_url: Option<String>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            enabled: true,
            keep: crate::snapshot::DEFAULT_KEEP,
            max_bytes: crate::snapshot::DEFAULT_MAX_BUNDLE_BYTES,
            min_interval: DEFAULT_SNAPSHOT_MIN_INTERVAL,
            on_severity: None,
            upload_url: None,
        }
    }
}

/// The file-integrity monitor's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub enabled: bool,
    pub rehash_interval: Duration,
    pub hash_threads: usize,
    pub rehash_bytes_per_sec: u64,
    pub max_hash_bytes: u64,
    pub attribution: Toggle,
}

impl Default for Files {
    fn default() -> Self {
        let l = crate::files::spec::Limits::default();
        Self {
            enabled: true,
            rehash_interval: l.rehash_interval,
            hash_threads: l.threads,
            rehash_bytes_per_sec: l.rehash_bytes_per_sec,
            max_hash_bytes: l.max_hash_bytes,
            attribution: Toggle::Auto,
        }
    }
}

/// Validated `intervals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    /// Default 2 s.
    pub proc_poll: Duration,
    /// Default 10 s.
    pub sysctl_poll: Duration,
    /// Default 5 min.
    pub rescan: Duration,
    /// The largest random delay added to a rescan (a percentage already applied to
    /// `rescan`); shorter than `rescan`. Default 10% of `rescan` (30 s).
    pub rescan_jitter: Duration,
    /// Default 10 min.
    pub heartbeat: Duration,
}

/// Validated `endpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `None`: the central sink is off.
    pub url: Option<reqwest::Url>,
    /// Bearer token file, read at use time and re-read on rotation.
    pub token_file: Option<PathBuf>,
    /// Trusted CAs (PEM); `None`: the sink's built-in roots.
    pub ca_file: Option<PathBuf>,
    /// mTLS client certificate and key, both or neither.
    pub client_identity: Option<ClientIdentity>,
    /// Default 10 s.
    pub timeout: Duration,
    /// Default 100.
    pub batch_max_events: usize,
    /// Default 10000.
    pub outbox_max_events: usize,
}

/// An mTLS client certificate and its key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// Validated `kubernetes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kubernetes {
    /// Whether the Kubernetes sink runs.
    pub enabled: bool,
    /// Why it is on or off (for the startup log), e.g. `auto: NODE_NAME and in-cluster`.
    pub decided_by: String,
    /// The agent's Node; always `Some` when `enabled`.
    pub node_name: Option<String>,
    /// The agent's pod (`POD_NAME`), to attribute Events.
    pub pod_name: Option<String>,
    /// 0: no Events. Default 10.
    pub events_per_minute: u32,
}

/// Reads the process environment (for [`Config::load`] in the daemon).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// The configuration in effect as JSON, keys as in the file (for a forensic snapshot).
    /// Files are named, never read; the endpoint URL cannot carry credentials (refused at load).
    pub fn to_json(&self) -> serde_json::Value {
        let d = |d: Duration| format_duration(d);
        let p = |p: &Path| p.display().to_string();
        let toggle = |t: Toggle| match t {
            Toggle::Auto => serde_json::json!("auto"),
            Toggle::On => serde_json::json!(true),
            Toggle::Off => serde_json::json!(false),
        };
        serde_json::json!({
            "source": self.source.as_deref().map(p),
            "hostRoot": p(&self.host_root),
            "stateDir": p(&self.state_dir),
            "profile": self.profile,
            "baselines": self.baselines.iter().map(|b| p(b)).collect::<Vec<_>>(),
            "listen": self.listen.to_string(),
            "intervals": {
                "procPoll": d(self.intervals.proc_poll),
                "sysctlPoll": d(self.intervals.sysctl_poll),
                "rescan": d(self.intervals.rescan),
                "rescanJitter": d(self.intervals.rescan_jitter),
                "heartbeat": d(self.intervals.heartbeat),
            },
            "endpoint": {
                "url": self.endpoint.url.as_ref().map(|u| u.as_str().to_owned()),
                "tokenFile": self.endpoint.token_file.as_deref().map(p),
                "caFile": self.endpoint.ca_file.as_deref().map(p),
                "clientCert": self.endpoint.client_identity.as_ref().map(|c| p(&c.cert)),
                "clientKey": self.endpoint.client_identity.as_ref().map(|c| p(&c.key)),
                "timeout": d(self.endpoint.timeout),
                "batchMaxEvents": self.endpoint.batch_max_events,
                "outboxMaxEvents": self.endpoint.outbox_max_events,
            },
            "kubernetes": {
                "enabled": self.kubernetes.enabled,
                "decidedBy": self.kubernetes.decided_by,
                "nodeName": self.kubernetes.node_name,
                "podName": self.kubernetes.pod_name,
                "eventsPerMinute": self.kubernetes.events_per_minute,
            },
            "files": {
                "enabled": self.files.enabled,
                "rehashInterval": d(self.files.rehash_interval),
                "hashThreads": self.files.hash_threads,
                "rehashMibPerSec": self.files.rehash_bytes_per_sec >> 20,
                "maxHashMib": self.files.max_hash_bytes >> 20,
                "attribution": toggle(self.files.attribution),
            },
            "egress": {
                "enabled": self.egress.enabled,
                "timeout": d(self.egress.timeout),
            },
            "snapshot": {
                "enabled": self.snapshot.enabled,
                "keep": self.snapshot.keep,
                "maxMib": self.snapshot.max_bytes >> 20,
                "minInterval": d(self.snapshot.min_interval),
                "onSeverity": self.snapshot.on_severity,
                "uploadUrl": self.snapshot.upload_url,
            },
        })
    }

    /// Loads `path` (or only defaults when `None`), then applies the environment overrides
    /// read through `env` (injected so tests do not touch the process environment).
    pub fn load(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        match path {
            None => Self::default_with_env(env),
            Some(p) => {
                let text = read_file(p)?;
                let mut c = Self::from_text(&p.display().to_string(), &text, env)?;
                c.source = Some(p.to_owned());
                Ok(c)
            }
        }
    }

    /// Defaults plus environment overrides (no file).
    pub fn default_with_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_text("(defaults)", "", env)
    }

    /// Parses and validates configuration text; `file` names it in errors.
    pub fn from_text(
        file: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_norway::from_str::<Option<RawConfig>>(text)
            .map_err(|e| {
                let d = yamlpos::describe(text, &e);
                ConfigError::Invalid {
                    file: file.to_owned(),
                    line: d.line,
                    column: d.column,
                    key: d.key,
                    message: d.message,
                }
            })?
            .unwrap_or_default();
        let invalid = |key: &[&str], message: String| {
            let (line, column) = yamlpos::locate(text, key);
            ConfigError::Invalid {
                file: file.to_owned(),
                line,
                column,
                key: Some(key.join(".")),
                message,
            }
        };
        Self::validate(raw, env, &invalid)
    }

    fn validate(
        raw: RawConfig,
        env: &dyn Fn(&str) -> Option<String>,
        invalid: &dyn Fn(&[&str], String) -> ConfigError,
    ) -> Result<Self, ConfigError> {
        // Empty variables count as unset: a Downward API field or a Secret key that is missing
        // shows up as "".
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        let env_err = |var: &str, message: String| ConfigError::Env {
            var: var.to_owned(),
            message,
        };

        let iv = raw.intervals.unwrap_or_default();
        let rescan = iv.rescan.map_or(DEFAULT_RESCAN, |i| i.0);
        let rescan_jitter = match iv
            .rescan_jitter
            .unwrap_or(Jitter::Percent(DEFAULT_RESCAN_JITTER_PERCENT))
        {
            Jitter::Percent(p) => rescan * p / 100,
            Jitter::Fixed(d) => d,
        };
        if rescan_jitter >= rescan {
            return Err(invalid(
                &["intervals", "rescanJitter"],
                format!(
                    "{} is not shorter than rescan ({})",
                    format_duration(rescan_jitter),
                    format_duration(rescan)
                ),
            ));
        }
        let intervals = Intervals {
            proc_poll: iv.proc_poll.map_or(DEFAULT_PROC_POLL, |i| i.0),
            sysctl_poll: iv.sysctl_poll.map_or(DEFAULT_SYSCTL_POLL, |i| i.0),
            rescan,
            rescan_jitter,
            heartbeat: iv.heartbeat.map_or(DEFAULT_HEARTBEAT, |i| i.0),
        };

        let ep = raw.endpoint.unwrap_or_default();
        let client_identity = match (ep.client_cert, ep.client_key) {
            (Some(cert), Some(key)) => Some(ClientIdentity { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    &["endpoint", "clientCert"],
                    "needs endpoint.clientKey too".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    &["endpoint", "clientKey"],
                    "needs endpoint.clientCert too".into(),
                ));
            }
        };
        let batch_max_events = ep.batch_max_events.unwrap_or(DEFAULT_BATCH_MAX_EVENTS);
        if !(1..=MAX_BATCH_MAX_EVENTS).contains(&batch_max_events) {
            return Err(invalid(
                &["endpoint", "batchMaxEvents"],
                format!("{batch_max_events} is not between 1 and {MAX_BATCH_MAX_EVENTS}"),
            ));
        }
        let outbox_max_events = ep.outbox_max_events.unwrap_or(DEFAULT_OUTBOX_MAX_EVENTS);
        if outbox_max_events < batch_max_events {
            return Err(invalid(
                &["endpoint", "outboxMaxEvents"],
                format!("{outbox_max_events} is smaller than batchMaxEvents ({batch_max_events})"),
            ));
        }
        let url = match var("NODEDRIFT_ENDPOINT") {
            Some(v) => Some(parse_endpoint_url(&v).map_err(|m| env_err("NODEDRIFT_ENDPOINT", m))?),
            None => ep.url.map(|u| u.0),
        };
        let endpoint = Endpoint {
            url,
            token_file: var("NODEDRIFT_TOKEN_FILE")
                .map(PathBuf::from)
                .or(ep.token_file),
            ca_file: var("NODEDRIFT_CA_FILE").map(PathBuf::from).or(ep.ca_file),
            client_identity,
            timeout: ep.timeout.map_or(DEFAULT_ENDPOINT_TIMEOUT, |i| i.0),
            batch_max_events,
            outbox_max_events,
        };

        let k = raw.kubernetes.unwrap_or_default();
        let node_name = var("NODE_NAME").or(k.node_name.filter(|n| !n.is_empty()));
        let in_cluster = var("KUBERNETES_SERVICE_HOST").is_some();
        let kubeconfig = var("KUBECONFIG").is_some();
        let (enabled, decided_by) = match k.enabled.unwrap_or_default() {
            Toggle::On => {
                if node_name.is_none() {
                    return Err(invalid(
                        &["kubernetes", "enabled"],
                        "the Kubernetes sink needs the node name: set kubernetes.nodeName or NODE_NAME".into(),
                    ));
                }
                (true, "kubernetes.enabled: true".to_owned())
            }
            Toggle::Off => (false, "kubernetes.enabled: false".to_owned()),
            Toggle::Auto => match (&node_name, in_cluster, kubeconfig) {
                (None, _, _) => (false, "auto: no node name (NODE_NAME unset)".to_owned()),
                (Some(_), true, _) => (true, "auto: node name and in-cluster".to_owned()),
                (Some(_), false, true) => (true, "auto: node name and KUBECONFIG".to_owned()),
                (Some(_), false, false) => (
                    false,
                    "auto: no API credentials (neither in-cluster nor KUBECONFIG)".to_owned(),
                ),
            },
        };
        let kubernetes = Kubernetes {
            enabled,
            decided_by,
            node_name,
            pod_name: var("POD_NAME"),
            events_per_minute: k.events_per_minute.unwrap_or(DEFAULT_EVENTS_PER_MINUTE),
        };

        let f = raw.files.unwrap_or_default();
        let d = Files::default();
        if f.hash_threads == Some(0) || f.hash_threads.is_some_and(|n| n > 64) {
            return Err(invalid(&["files", "hashThreads"], "must be 1 to 64".into()));
        }
        if f.max_hash_mib == Some(0) {
            return Err(invalid(
                &["files", "maxHashMib"],
                "must be at least 1".into(),
            ));
        }
        let files = Files {
            enabled: f.enabled.unwrap_or(d.enabled),
            rehash_interval: f.rehash_interval.map_or(d.rehash_interval, |i| i.0),
            hash_threads: f.hash_threads.unwrap_or(d.hash_threads),
            rehash_bytes_per_sec: f
                .rehash_mib_per_sec
                .map_or(d.rehash_bytes_per_sec, |m| m.saturating_mul(1 << 20)),
            max_hash_bytes: f
                .max_hash_mib
                .map_or(d.max_hash_bytes, |m| m.saturating_mul(1 << 20)),
            attribution: f.attribution.unwrap_or(d.attribution),
        };

        let eg = raw.egress.unwrap_or_default();
        let d = Egress::default();
        let egress = Egress {
            enabled: eg.enabled.unwrap_or(d.enabled),
            timeout: eg.timeout.map_or(d.timeout, |i| i.0),
        };

        let sn = raw.snapshot.unwrap_or_default();
        let d = Snapshot::default();
        if sn.keep == Some(0) {
            return Err(invalid(&["snapshot", "keep"], "must be at least 1".into()));
        }
        let min_mib = crate::snapshot::MIN_BUNDLE_BYTES.div_ceil(1 << 20);
        if sn.max_mib.is_some_and(|m| m < min_mib) {
            return Err(invalid(
                &["snapshot", "maxMib"],
                format!("must be at least {min_mib}"),
            ));
        }
        let snapshot = Snapshot {
            enabled: sn.enabled.unwrap_or(d.enabled),
            keep: sn.keep.unwrap_or(d.keep),
            max_bytes: sn
                .max_mib
                .map_or(d.max_bytes, |m| m.saturating_mul(1 << 20)),
            min_interval: sn.min_interval.map_or(d.min_interval, |i| i.0),
            on_severity: sn.on_severity,
            upload_url: sn.upload_url.filter(|u| !u.is_empty()),
        };

        let profile = match var("NODEDRIFT_PROFILE") {
            Some(p) => {
                check_profile(&p).map_err(|m| env_err("NODEDRIFT_PROFILE", m))?;
                Some(p)
            }
            None => raw.profile.map(|p| p.0),
        };
        let listen = match var("NODEDRIFT_LISTEN") {
            Some(v) => v.parse().map_err(|e| {
                env_err(
                    "NODEDRIFT_LISTEN",
                    format!("{v:?} is not an address like 0.0.0.0:9101: {e}"),
                )
            })?,
            None => match raw.listen {
                Some(l) => l,
                None => DEFAULT_LISTEN
                    .parse()
                    .map_err(|e| invalid(&["listen"], format!("built-in default: {e}")))?,
            },
        };
        Ok(Self {
            source: None,
            host_root: var("NODEDRIFT_HOST_ROOT")
                .map(PathBuf::from)
                .or(raw.host_root)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_HOST_ROOT)),
            state_dir: var("NODEDRIFT_STATE_DIR")
                .map(PathBuf::from)
                .or(raw.state_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            profile,
            baselines: raw.baselines.unwrap_or_default(),
            listen,
            intervals,
            endpoint,
            kubernetes,
            files,
            snapshot,
            egress,
        })
    }
}

/// Reads a configuration file: a regular file, bounded in size.
fn read_file(path: &Path) -> Result<String, ConfigError> {
    crate::localfile::read_bounded(path, MAX_CONFIG_BYTES).map_err(|message| ConfigError::Read {
        file: path.display().to_string(),
        message,
    })
}

/// Parses a duration: one or more `<integer><unit>` parts, units `ms`, `s`, `m`, `h`, `d`
/// (`500ms`, `30s`, `5m`, `1h30m`, `7d`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 30s, 5m, 1h30m, 7d (units ms, s, m, h, d)");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
            "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
            "d" => Duration::from_secs(n.checked_mul(86_400).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// A duration that must be longer than zero.
fn positive(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("{s:?} must be longer than zero"));
    }
    Ok(d)
}

/// `10%` (0 to 99) or a duration (`30s`, `0s` for none).
fn parse_jitter(s: &str) -> Result<Jitter, String> {
    match s.trim().strip_suffix('%') {
        Some(p) => {
            let p: u32 = p
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a percentage like 10%"))?;
            if p >= 100 {
                return Err(format!("{s:?}: a jitter must be less than 100% of rescan"));
            }
            Ok(Jitter::Percent(p))
        }
        None => parse_duration(s)
            .map(Jitter::Fixed)
            .map_err(|e| format!("{e}, or a percentage like 10%")),
    }
}

/// The shortest `h`/`m`/`s` form of a duration (`5m`, `1h30m`), or `ms` when it has a
/// fraction of a second (`1500ms`). What [`parse_duration`] reads back: milliseconds beyond
/// `u64` (parts are `u64`) are written as the `h`/`m`/`s` form followed by the milliseconds.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() != 0 {
        if let Ok(ms) = u64::try_from(d.as_millis()) {
            return format!("{ms}ms");
        }
    }
    let s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (n, unit) in [(s / 3600, "h"), (s / 60 % 60, "m"), (s % 60, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if d.subsec_nanos() != 0 {
        out.push_str(&format!("{}ms", d.subsec_millis()));
    }
    out
}

/// Validates an endpoint URL: `https`, or `http` to a loopback host only (a collector on the
/// node itself). Plain HTTP across the network would expose the bearer token and the node's
/// findings. Credentials in the URL are refused: the token belongs in `tokenFile`.
pub fn parse_endpoint_url(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("{s:?} has no host"))?
        .to_owned();
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{s:?} carries credentials; put the token in endpoint.tokenFile"
        ));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" => {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = bare.eq_ignore_ascii_case("localhost")
                || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(url)
            } else {
                Err(format!(
                    "{s:?}: http is allowed only to a loopback address (localhost, 127.0.0.1, \
                     [::1]); use https"
                ))
            }
        }
        other => Err(format!("{s:?}: scheme {other:?} is not http or https")),
    }
}

fn check_profile(name: &str) -> Result<(), String> {
    if profiles::NAMES.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "unknown profile {name:?} (known: {})",
            profiles::NAMES.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests;
