//! The Kubernetes sink of `nodedrift run`: what the agent says on its **own** Node object and
//! nowhere else.
//!
//! * Annotations `nodedrift.dev/{state,summary,last-check,profile,baseline-version,
//!   reboot-required-since}`: a JSON merge patch of `metadata.annotations` only
//!   (`PATCH /api/v1/nodes/<name>`); `reboot-required-since` is removed (`null`) when no reboot
//!   is pending. Annotations outside `nodedrift.dev/` are never touched.
//! * Conditions `NodeDrift` and `RebootRequired` (`False` = healthy, as node-problem-detector
//!   does): a strategic merge patch of `status.conditions` carrying only those two entries
//!   (`PATCH /api/v1/nodes/<name>/status`); conditions merge by `type`, so the kubelet's
//!   `Ready`, `MemoryPressure`, ... are left alone. `lastTransitionTime` moves only when the
//!   status does.
//! * Events on transitions: core/v1 Events in the `default` namespace about the Node (what the
//!   kubelet and node-problem-detector do for cluster-scoped Nodes), repeats folded into the
//!   Event already sent, and a token bucket (`events_per_minute`) on top.
//!
//! **Write load.** A Node is written only when something the operator would see changed. When
//! only the evaluation time moved, the annotations and the conditions' `lastHeartbeatTime` are
//! refreshed at most once per `heartbeat_interval` (default 5 minutes, as node-problem-detector
//! heartbeats its conditions), so a cluster of 5000 nodes costs about 2 × 5000 / 300 ≈ 33 writes a
//! second at rest, not one per evaluation per node. The heartbeat also restores our annotations
//! if someone deleted them. A heartbeat is only written for a new evaluation: a stuck agent shows
//! as a stale `last-check`, never as a fresh one.
//!
//! **Failures.** Unreachable, 5xx, 429 (honouring the Status' `retryAfterSeconds`) and timeouts
//! back off exponentially with full jitter; 409 re-reads the Node and retries; 403 (RBAC
//! missing) is logged once at ERROR naming the verb and resource, then retried slowly; 404 (the
//! Node not registered yet, or deleted) is retried slowly. Other 4xx are not retried for the same
//! desired state. The run loop always applies the *latest* desired state: states that came and
//! went while the API server was away are never replayed. Nothing here panics or ends the loop
//! except cancellation.
//!
//! kube's own retry layer is turned off (`Config::default_retry = false`): it would sleep inside
//! a request for up to minutes on a stale desired state instead of letting the loop pick up the
//! latest one. (A client handed to [`KubeSink::with_client`] should be built the same way.)
//!
//! Events are best effort: those still waiting for the API server when the loop is cancelled are
//! dropped (the ledger and the central endpoint keep the durable record).
//!
//! **Reading.** The agent watches its own Node (a field selector on its name, never the node
//! list): label changes feed the system-label check and `nodedrift.dev/` requests reach the
//! agent as they happen ([`KubeSink::watch_node`]). The kubelet's version in the Node and the
//! API server's (`GET /version`, [`KubeSink::server_version`]) feed the version-skew check.
//!
//! RBAC the agent needs: `get`, `watch`, `patch` on `nodes` (`list` is granted for kube's watch
//! semantics); `patch` on `nodes/status`; `create`, `patch` on `events` (core group). `/version`
//! is readable by every client (the default `system:public-info-viewer` binding). Nothing else
//! is ever written.

mod desired;
mod events;
mod labels;
mod metrics;
mod skew;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Event, EventSource, Node, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{InClusterError, KubeConfigOptions, KubeconfigError};
use kube::{Api, Client, Config};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::clock;

pub use desired::{
    ANNOTATION_BASELINE_VERSION, ANNOTATION_LAST_CHECK, ANNOTATION_PREFIX, ANNOTATION_PROFILE,
    ANNOTATION_REBOOT_SINCE, ANNOTATION_SNAPSHOT_REQUEST, ANNOTATION_SNAPSHOT_STATUS,
    ANNOTATION_STATE, ANNOTATION_SUMMARY, CONDITION_DRIFT, CONDITION_REBOOT, NodeStatusUpdate,
};
pub use events::{EventType, NodeEvent, reasons};
pub use labels::{
    RESERVED_LABEL_DOMAINS, SYSTEM_LABELS_RULE, is_system_label, system_label_findings,
};
pub use metrics::{KubeCounters, KubeMetrics, PatchKind};
pub use skew::{VERSION_SKEW_RULE, Versions, version_skew_findings};

/// The rules the Kubernetes sink evaluates itself (they need the API server, so `run` only),
/// with the policy clause each protects: for the coverage table.
pub const API_RULES: &[(&str, &str)] = &[
    (SYSTEM_LABELS_RULE, labels::POLICY),
    (VERSION_SKEW_RULE, skew::POLICY),
];

/// How often an unchanged state is re-written (annotation `last-check`, condition
/// `lastHeartbeatTime`); node-problem-detector's heartbeat period.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Events a minute (and the burst) per node: enough for the transitions of a real incident,
/// while a node whose findings flap costs the API server at most one Event write every 5 s.
pub const DEFAULT_EVENTS_PER_MINUTE: u32 = 12;
/// The same reason and message within this window update the Event already sent (count,
/// lastTimestamp) instead of creating another; the kubelet's correlator uses 10 minutes too.
pub const DEFAULT_EVENT_DEDUP_WINDOW: Duration = Duration::from_secs(10 * 60);
/// One request's bound: connect, send, and the whole answer.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// First retry delay bound after a transient failure (doubles per attempt, full jitter).
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Largest retry delay bound after transient failures.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(2 * 60);
/// Retry period when waiting cannot help soon: RBAC missing (403), the Node absent (404).
pub const DEFAULT_SLOW_RETRY: Duration = Duration::from_secs(5 * 60);

/// The namespace of Events about cluster-scoped objects such as Nodes.
pub const EVENTS_NAMESPACE: &str = "default";
/// `source.component`, `reportingComponent` and the field manager of every write.
pub const COMPONENT: &str = "nodedrift";
/// Events waiting for the API server are kept up to this many; the oldest go first.
const MAX_PENDING_EVENTS: usize = 64;
/// Longest node name (a DNS subdomain).
const MAX_NODE_NAME: usize = 253;
/// `reportingInstance` is limited to 128 characters by the API server's validation.
const MAX_REPORTING_INSTANCE: usize = 128;
/// Largest exponent of the backoff doubling (beyond it the bound is `backoff.max` anyway).
const MAX_BACKOFF_DOUBLINGS: u32 = 20;

/// Retry delays of the run loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Bound of the first delay after a transient failure.
    pub base: Duration,
    /// Largest bound, however many attempts failed.
    pub max: Duration,
    /// Delay when the cause will not go away soon (403, 404).
    pub slow: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: DEFAULT_BACKOFF_BASE,
            max: DEFAULT_BACKOFF_MAX,
            slow: DEFAULT_SLOW_RETRY,
        }
    }
}

impl Backoff {
    /// Full jitter: uniform in `[0, min(max, base × 2^attempt))`, at least `floor`.
    fn delay(&self, attempt: u32, floor: Duration) -> Duration {
        let bound = self
            .base
            .saturating_mul(1 << attempt.min(MAX_BACKOFF_DOUBLINGS))
            .min(self.max);
        bound.mul_f64(fastrand::f64()).max(floor)
    }

    /// The slow period with ±25 % jitter, so a fleet missing the same RBAC rule spreads out.
    fn slow(&self) -> Duration {
        self.slow.mul_f64(0.75 + fastrand::f64() / 2.0)
    }
}

/// Settings of the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeOptions {
    /// See [`DEFAULT_HEARTBEAT_INTERVAL`].
    pub heartbeat_interval: Duration,
    /// See [`DEFAULT_EVENTS_PER_MINUTE`]; 0 turns Events off.
    pub events_per_minute: u32,
    /// See [`DEFAULT_EVENT_DEDUP_WINDOW`].
    pub event_dedup_window: Duration,
    /// See [`DEFAULT_REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    pub backoff: Backoff,
}

impl Default for KubeOptions {
    fn default() -> Self {
        Self {
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            events_per_minute: DEFAULT_EVENTS_PER_MINUTE,
            event_dedup_window: DEFAULT_EVENT_DEDUP_WINDOW,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            backoff: Backoff::default(),
        }
    }
}

/// Errors of the Kubernetes sink. API errors name the verb, resource and object, the way RBAC
/// rules are written.
#[derive(Debug, thiserror::Error)]
pub enum KubeSinkError {
    #[error(
        "node name {name:?} is not a valid Kubernetes node name (a DNS subdomain: lowercase \
         letters, digits, '-' and '.', at most 253 characters)"
    )]
    InvalidNodeName { name: String },
    #[error(
        "no usable kubeconfig (KUBECONFIG or ~/.kube/config) and not running in a pod: {source}"
    )]
    Kubeconfig { source: KubeconfigError },
    #[error("in-cluster Kubernetes credentials are unusable: {source}")]
    InCluster { source: InClusterError },
    #[error("building the Kubernetes client for {url}: {source}")]
    Client { url: String, source: kube::Error },
    #[error(
        "{verb} {resource} {name:?}: forbidden; the nodedrift service account needs RBAC \
         permission to {verb} {resource} ({message})"
    )]
    Forbidden {
        verb: &'static str,
        resource: &'static str,
        name: String,
        message: String,
    },
    #[error("{verb} {resource} {name:?}: not found")]
    NotFound {
        verb: &'static str,
        resource: &'static str,
        name: String,
    },
    #[error("watch nodes {name:?}: the resourceVersion is too old (410 Gone); read the Node again")]
    Gone { name: String },
    #[error("{verb} {resource} {name:?}: conflict ({message})")]
    Conflict {
        verb: &'static str,
        resource: &'static str,
        name: String,
        message: String,
    },
    #[error(
        "{verb} {resource} {name:?}: throttled by the API server (429, retry after {retry_after:?})"
    )]
    Throttled {
        verb: &'static str,
        resource: &'static str,
        name: String,
        retry_after: Option<Duration>,
    },
    #[error("{verb} {resource} {name:?}: API server error {code} ({message})")]
    Server {
        verb: &'static str,
        resource: &'static str,
        name: String,
        code: u16,
        message: String,
    },
    #[error("{verb} {resource} {name:?}: refused by the API server with {code} ({message})")]
    Rejected {
        verb: &'static str,
        resource: &'static str,
        name: String,
        code: u16,
        message: String,
    },
    #[error("{verb} {resource} {name:?}: request failed: {source}")]
    Transport {
        verb: &'static str,
        resource: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("{verb} {resource} {name:?}: no answer within {timeout:?}")]
    Timeout {
        verb: &'static str,
        resource: &'static str,
        name: String,
        timeout: Duration,
    },
}

/// What to do after a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Back off (at least this long) and try again.
    Soon(Duration),
    /// Try again after the slow period.
    Slow,
    /// Trying the same thing again cannot succeed.
    Never,
}

impl KubeSinkError {
    fn retry(&self) -> Retry {
        match self {
            Self::Throttled { retry_after, .. } => Retry::Soon(retry_after.unwrap_or_default()),
            Self::Conflict { .. }
            | Self::Gone { .. }
            | Self::Server { .. }
            | Self::Transport { .. }
            | Self::Timeout { .. } => Retry::Soon(Duration::ZERO),
            Self::Forbidden { .. } | Self::NotFound { .. } => Retry::Slow,
            Self::InvalidNodeName { .. }
            | Self::Kubeconfig { .. }
            | Self::InCluster { .. }
            | Self::Client { .. }
            | Self::Rejected { .. } => Retry::Never,
        }
    }

    /// Whether the Node may have changed under us (or gone), so it must be read again.
    fn stale_node(&self) -> bool {
        matches!(self, Self::Conflict { .. } | Self::NotFound { .. })
    }
}

/// One kind of API request, as an RBAC rule names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Op {
    verb: &'static str,
    resource: &'static str,
}

const GET_NODE: Op = Op {
    verb: "get",
    resource: "nodes",
};
const WATCH_NODE: Op = Op {
    verb: "watch",
    resource: "nodes",
};
const GET_VERSION: Op = Op {
    verb: "get",
    resource: "version",
};
const PATCH_NODE: Op = Op {
    verb: "patch",
    resource: "nodes",
};
const PATCH_NODE_STATUS: Op = Op {
    verb: "patch",
    resource: "nodes/status",
};
const CREATE_EVENT: Op = Op {
    verb: "create",
    resource: "events",
};
const PATCH_EVENT: Op = Op {
    verb: "patch",
    resource: "events",
};

fn classify(op: Op, name: &str, e: kube::Error) -> KubeSinkError {
    let (verb, resource, name) = (op.verb, op.resource, name.to_owned());
    match e {
        kube::Error::Api(s) => {
            let message = s.message.clone();
            match s.code {
                403 => KubeSinkError::Forbidden {
                    verb,
                    resource,
                    name,
                    message,
                },
                404 => KubeSinkError::NotFound {
                    verb,
                    resource,
                    name,
                },
                409 => KubeSinkError::Conflict {
                    verb,
                    resource,
                    name,
                    message,
                },
                429 => KubeSinkError::Throttled {
                    verb,
                    resource,
                    name,
                    retry_after: s
                        .details
                        .as_ref()
                        .map(|d| d.retry_after_seconds)
                        .filter(|s| *s > 0)
                        .map(|s| Duration::from_secs(u64::from(s))),
                },
                // 0: a body that is not a Status (a proxy's page); 408: the request timed out on
                // the way. Both are worth another try.
                code @ (0 | 408 | 500..=599) => KubeSinkError::Server {
                    verb,
                    resource,
                    name,
                    code,
                    message,
                },
                code => KubeSinkError::Rejected {
                    verb,
                    resource,
                    name,
                    code,
                    message,
                },
            }
        }
        source => KubeSinkError::Transport {
            verb,
            resource,
            name,
            source,
        },
    }
}

/// Whether `name` is a valid Node name: an RFC 1123 DNS subdomain. Anything else could not be a
/// Node, and would not be a safe path segment either (kube puts names into URLs verbatim).
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NODE_NAME
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// How long one watch of the Node lasts before the API server ends it and it is renewed.
const WATCH_TIMEOUT_SECS: u32 = 290;

/// What the Node says that the agent acts on (rather than writes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInputs {
    pub labels: BTreeMap<String, String>,
    /// The `nodedrift.dev/` annotations only.
    pub annotations: BTreeMap<String, String>,
    pub resource_version: String,
    /// `status.nodeInfo.kubeletVersion`: what the running kubelet reports of itself.
    pub kubelet_version: Option<String>,
}

impl NodeInputs {
    fn of(node: &Node) -> Self {
        let meta = &node.metadata;
        Self {
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta
                .annotations
                .iter()
                .flatten()
                .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            kubelet_version: node
                .status
                .as_ref()
                .and_then(|s| s.node_info.as_ref())
                .map(|i| i.kubelet_version.clone())
                .filter(|v| !v.is_empty()),
        }
    }
}

/// What the Node said last time it was read or written (only what the sink needs).
#[derive(Debug, Clone, Default, PartialEq)]
struct NodeView {
    uid: String,
    /// The `nodedrift.dev/` annotations only.
    annotations: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    /// Owned conditions by type.
    conditions: BTreeMap<String, SeenCondition>,
}

#[derive(Debug, Clone, PartialEq)]
struct SeenCondition {
    status: String,
    reason: Option<String>,
    message: Option<String>,
    /// As the API server wrote it (RFC 3339).
    last_transition_time: Option<String>,
}

impl NodeView {
    fn of(node: &Node) -> Self {
        let meta = &node.metadata;
        let annotations = meta
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let conditions = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| desired::OWNED_CONDITIONS.contains(&c.type_.as_str()))
            .map(|c| {
                (
                    c.type_.clone(),
                    SeenCondition {
                        status: c.status.clone(),
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                        last_transition_time: c.last_transition_time.as_ref().and_then(time_string),
                    },
                )
            })
            .collect();
        Self {
            uid: meta.uid.clone().unwrap_or_default(),
            annotations,
            labels: meta.labels.clone().unwrap_or_default(),
            conditions,
        }
    }
}

/// A `Time` as the API server writes it.
fn time_string(t: &Time) -> Option<String> {
    match serde_json::to_value(t) {
        Ok(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// What [`KubeSink::publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    /// The annotations were patched.
    pub annotations: bool,
    /// The conditions were patched.
    pub conditions: bool,
    /// Only the evaluation time moved and the heartbeat is not due yet: publish the latest
    /// state again at this instant to write it.
    pub heartbeat_due: Option<Instant>,
}

/// What became of an Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// A new Event object was created.
    Created,
    /// A repeat within the window: the existing Event's count and lastTimestamp were updated.
    Deduplicated,
    /// Dropped by the rate limit.
    RateLimited,
}

/// Mutable state, behind one lock: requests of one sink are serialized anyway.
#[derive(Debug)]
struct SinkState {
    /// `None` until read, and after a 404/409 (read again before the next write).
    node: Option<NodeView>,
    annotations_written: Option<Instant>,
    conditions_written: Option<Instant>,
    /// `checkedAt` of the evaluation the conditions were last written for.
    conditions_checked_at: Option<String>,
    bucket: events::TokenBucket,
    dedup: events::DedupCache,
    /// Events dropped by the rate limit since the last one that went through (for the log).
    rate_limited_run: u64,
    /// Requests refused with 403 and already logged; cleared when the request succeeds.
    forbidden_logged: HashSet<Op>,
    /// Nanoseconds of the last Event name, so names stay unique within a nanosecond.
    last_event_nanos: u128,
}

/// The Kubernetes sink of one node.
pub struct KubeSink {
    client: Client,
    nodes: Api<Node>,
    events: Api<Event>,
    node_name: String,
    opts: KubeOptions,
    metrics: Arc<KubeMetrics>,
    state: Mutex<SinkState>,
}

impl std::fmt::Debug for KubeSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSink")
            .field("node_name", &self.node_name)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl KubeSink {
    /// A sink writing `node_name` with credentials from the environment: in-cluster (service
    /// account) when `KUBERNETES_SERVICE_HOST` is set, else `KUBECONFIG` or `~/.kube/config`.
    pub async fn connect(node_name: String, opts: KubeOptions) -> Result<Self, KubeSinkError> {
        if !valid_node_name(&node_name) {
            return Err(KubeSinkError::InvalidNodeName { name: node_name });
        }
        // kube builds its TLS config from the process default provider; ring is the only one
        // compiled in. Already installed (by another sink) is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
            Config::incluster().map_err(|source| KubeSinkError::InCluster { source })?
        } else {
            Config::from_kubeconfig(&KubeConfigOptions::default())
                .await
                .map_err(|source| KubeSinkError::Kubeconfig { source })?
        };
        // We retry ourselves, with the latest desired state (see the module docs).
        config.default_retry = false;
        config.read_timeout = Some(opts.request_timeout);
        config.reset_reader_on_write = true;
        let url = config.cluster_url.to_string();
        let client =
            Client::try_from(config).map_err(|source| KubeSinkError::Client { url, source })?;
        Self::with_client(client, node_name, opts)
    }

    /// A sink writing `node_name` through `client` (tests point it at a local API server).
    pub fn with_client(
        client: Client,
        node_name: String,
        opts: KubeOptions,
    ) -> Result<Self, KubeSinkError> {
        if !valid_node_name(&node_name) {
            return Err(KubeSinkError::InvalidNodeName { name: node_name });
        }
        let now = Instant::now();
        Ok(Self {
            nodes: Api::all(client.clone()),
            client: client.clone(),
            events: Api::namespaced(client, EVENTS_NAMESPACE),
            state: Mutex::new(SinkState {
                node: None,
                annotations_written: None,
                conditions_written: None,
                conditions_checked_at: None,
                bucket: events::TokenBucket::new(opts.events_per_minute, now),
                dedup: events::DedupCache::new(opts.event_dedup_window),
                rate_limited_run: 0,
                forbidden_logged: HashSet::new(),
                last_event_nanos: 0,
            }),
            node_name,
            opts,
            metrics: Arc::new(KubeMetrics::new()),
        })
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The sink's counters, for the metrics exporter.
    pub fn metrics(&self) -> Arc<KubeMetrics> {
        Arc::clone(&self.metrics)
    }

    /// What the Node says that the agent acts on, read now: its labels (for
    /// [`system_label_findings`]), its `nodedrift.dev/` annotations (requests such as
    /// `snapshot-request`), and its resourceVersion (to watch from).
    pub async fn node_inputs(&self) -> Result<NodeInputs, KubeSinkError> {
        let mut st = self.state.lock().await;
        let r = self
            .call(GET_NODE, &self.node_name, self.nodes.get(&self.node_name))
            .await;
        self.metrics.node_read(r.is_ok());
        let node = self.settle(&mut st, GET_NODE, r)?;
        st.node = Some(NodeView::of(&node));
        Ok(NodeInputs::of(&node))
    }

    /// The API server's version (`gitVersion` of `GET /version`), for the version-skew check.
    pub async fn server_version(&self) -> Result<String, KubeSinkError> {
        let r = self
            .call(GET_VERSION, "", self.client.apiserver_version())
            .await;
        let mut st = self.state.lock().await;
        Ok(self.settle(&mut st, GET_VERSION, r)?.git_version)
    }

    /// Watches this Node (and no other: a field selector on its name) from `version`, calling
    /// `changed` with each new state, until the API server ends the watch (its timeout, about
    /// five minutes), `cancel` fires, or an error. Returns the last resourceVersion seen, to
    /// watch on from; [`KubeSinkError::Gone`] means it is too old and the Node must be read
    /// again.
    pub async fn watch_node(
        &self,
        version: &str,
        cancel: &tokio_util::sync::CancellationToken,
        mut changed: impl FnMut(NodeInputs),
    ) -> Result<String, KubeSinkError> {
        use futures_util::StreamExt as _;
        let params = kube::api::WatchParams::default()
            .fields(&format!("metadata.name={}", self.node_name))
            .timeout(WATCH_TIMEOUT_SECS);
        let stream = self
            .call(
                WATCH_NODE,
                &self.node_name,
                self.nodes.watch(&params, version),
            )
            .await;
        let stream = {
            let mut st = self.state.lock().await;
            self.settle(&mut st, WATCH_NODE, stream)?
        };
        let mut stream = std::pin::pin!(stream);
        let mut last = version.to_owned();
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => return Ok(last),
                next = stream.next() => next,
            };
            match next {
                None => return Ok(last),
                Some(Ok(
                    kube::api::WatchEvent::Added(node) | kube::api::WatchEvent::Modified(node),
                )) => {
                    let inputs = NodeInputs::of(&node);
                    last.clone_from(&inputs.resource_version);
                    changed(inputs);
                }
                Some(Ok(kube::api::WatchEvent::Bookmark(b))) => {
                    last = b.metadata.resource_version;
                }
                Some(Ok(kube::api::WatchEvent::Deleted(_))) => {
                    return Err(KubeSinkError::NotFound {
                        verb: WATCH_NODE.verb,
                        resource: WATCH_NODE.resource,
                        name: self.node_name.clone(),
                    });
                }
                Some(Ok(kube::api::WatchEvent::Error(e))) if e.code == 410 => {
                    return Err(KubeSinkError::Gone {
                        name: self.node_name.clone(),
                    });
                }
                Some(Ok(kube::api::WatchEvent::Error(e))) => {
                    return Err(classify(WATCH_NODE, &self.node_name, kube::Error::Api(e)));
                }
                Some(Err(e)) => return Err(classify(WATCH_NODE, &self.node_name, e)),
            }
        }
    }

    /// Brings the Node in line with `desired`: patches the annotations and the conditions that
    /// differ (or whose heartbeat is due). One attempt, no retry; the run loop retries.
    pub async fn publish(&self, desired: &NodeStatusUpdate) -> Result<Published, KubeSinkError> {
        let mut st = self.state.lock().await;
        let mut out = Published::default();
        let heartbeat = self.opts.heartbeat_interval;

        // Annotations.
        let view = self.view(&mut st).await?;
        let want = desired::annotations(desired);
        let changed = want
            .iter()
            .any(|(k, v)| *k != ANNOTATION_LAST_CHECK && view.annotations.get(*k) != v.as_ref());
        let check_moved = view.annotations.get(ANNOTATION_LAST_CHECK)
            != want.get(ANNOTATION_LAST_CHECK).and_then(Option::as_ref);
        let now = Instant::now();
        let due = st
            .annotations_written
            .is_none_or(|t| now.saturating_duration_since(t) >= heartbeat);
        if changed || (check_moved && due) {
            let body = json!({"metadata": {"annotations": want}});
            let r = self
                .call(
                    PATCH_NODE,
                    &self.node_name,
                    self.nodes
                        .patch(&self.node_name, &patch_params(), &Patch::Merge(&body)),
                )
                .await;
            let node = self.settle(&mut st, PATCH_NODE, r)?;
            self.metrics.patch_ok(PatchKind::Annotations);
            st.node = Some(NodeView::of(&node));
            st.annotations_written = Some(now);
            out.annotations = true;
        } else if check_moved {
            out.heartbeat_due = st.annotations_written.map(|t| t + heartbeat);
        }

        // Conditions.
        let view = self.view(&mut st).await?;
        let want = desired::conditions(desired);
        let changed = want.iter().any(|c| {
            view.conditions.get(c.kind).is_none_or(|seen| {
                seen.status != c.status
                    || seen.reason.as_deref() != Some(c.reason.as_str())
                    || seen.message.as_deref() != Some(c.message.as_str())
            })
        });
        let check_moved =
            st.conditions_checked_at.as_deref() != Some(desired.summary.checked_at.as_str());
        let now = Instant::now();
        let due = st
            .conditions_written
            .is_none_or(|t| now.saturating_duration_since(t) >= heartbeat);
        if changed || (check_moved && due) {
            let stamp = clock::rfc3339(SystemTime::now());
            let conditions: Vec<Value> = want
                .iter()
                .map(|c| {
                    // The transition time stays while the status does (what the API means by
                    // it, and what `kubectl describe node` shows as "since").
                    let since = match view.conditions.get(c.kind) {
                        Some(seen) if seen.status == c.status => seen
                            .last_transition_time
                            .clone()
                            .unwrap_or_else(|| stamp.clone()),
                        _ => stamp.clone(),
                    };
                    json!({
                        "type": c.kind,
                        "status": c.status,
                        "reason": c.reason,
                        "message": c.message,
                        "lastHeartbeatTime": stamp,
                        "lastTransitionTime": since,
                    })
                })
                .collect();
            let body = json!({"status": {"conditions": conditions}});
            let r = self
                .call(
                    PATCH_NODE_STATUS,
                    &self.node_name,
                    self.nodes.patch_status(
                        &self.node_name,
                        &patch_params(),
                        &Patch::Strategic(&body),
                    ),
                )
                .await;
            let node = self.settle(&mut st, PATCH_NODE_STATUS, r)?;
            self.metrics.patch_ok(PatchKind::Conditions);
            st.node = Some(NodeView::of(&node));
            st.conditions_written = Some(now);
            st.conditions_checked_at = Some(desired.summary.checked_at.clone());
            out.conditions = true;
        } else if check_moved {
            let at = st.conditions_written.map(|t| t + heartbeat);
            out.heartbeat_due = match (out.heartbeat_due, at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(out)
    }

    /// Sends `ev` unless the rate limit says no. One attempt, no retry.
    pub async fn event(&self, ev: NodeEvent) -> Result<EventOutcome, KubeSinkError> {
        if !self.admit(&ev).await {
            return Ok(EventOutcome::RateLimited);
        }
        self.deliver(&ev).await
    }

    /// Applies the latest desired state and sends Events until `cancel`, retrying with backoff.
    /// `desired` holds `None` until the first evaluation. Ends when cancelled, or when both
    /// channels are closed and nothing is left to send.
    pub async fn run(
        self,
        mut desired: watch::Receiver<Option<NodeStatusUpdate>>,
        mut events_rx: mpsc::Receiver<NodeEvent>,
        cancel: CancellationToken,
    ) {
        let mut status = Attempts::default();
        // The first value may already be there.
        let mut dirty = desired.borrow().is_some();
        let mut desired_open = true;
        let mut heartbeat_at: Option<Instant> = None;
        let mut pending: VecDeque<NodeEvent> = VecDeque::new();
        let mut ev = Attempts::default();
        let mut events_open = true;

        loop {
            let now = Instant::now();
            if heartbeat_at.is_some_and(|t| t <= now) {
                heartbeat_at = None;
                dirty = true;
            }
            if dirty && status.ready(now) {
                let latest = desired.borrow_and_update().clone();
                match latest {
                    None => dirty = false,
                    Some(update) => {
                        let r = tokio::select! {
                            _ = cancel.cancelled() => break,
                            r = self.publish(&update) => r,
                        };
                        match r {
                            Ok(p) => {
                                dirty = false;
                                heartbeat_at = p.heartbeat_due;
                                status.succeeded("node status");
                            }
                            Err(e) => {
                                if status.failed(&e, &self.opts.backoff) {
                                    // Not retryable for this state; wait for the next one.
                                    dirty = false;
                                }
                            }
                        }
                    }
                }
            }

            while ev.ready(Instant::now()) {
                let Some(front) = pending.front() else { break };
                let r = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = self.deliver(front) => r,
                };
                match r {
                    Ok(_) => {
                        pending.pop_front();
                        ev.succeeded("events");
                    }
                    Err(e) => {
                        if ev.failed(&e, &self.opts.backoff) {
                            // Refused for good: drop it and go on with the next one.
                            self.metrics.event_dropped();
                            pending.pop_front();
                            continue;
                        }
                        break;
                    }
                }
            }

            if !desired_open
                && !events_open
                && !dirty
                && pending.is_empty()
                && heartbeat_at.is_none()
            {
                break;
            }

            let wake = [
                dirty.then_some(status.retry_at).flatten(),
                heartbeat_at,
                (!pending.is_empty()).then_some(ev.retry_at).flatten(),
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                _ = cancel.cancelled() => break,
                r = desired.changed(), if desired_open => match r {
                    Ok(()) => dirty = true,
                    Err(_) => desired_open = false,
                },
                e = events_rx.recv(), if events_open => match e {
                    Some(e) => {
                        if self.admit(&e).await {
                            if pending.len() >= MAX_PENDING_EVENTS {
                                pending.pop_front();
                                self.metrics.event_dropped();
                                tracing::warn!(
                                    queued = MAX_PENDING_EVENTS,
                                    "Dropped the oldest Event waiting for the API server: the queue is full."
                                );
                            }
                            pending.push_back(e);
                        }
                    }
                    None => events_open = false,
                },
                _ = sleep_until(wake), if wake.is_some() => {}
            }
        }
        tracing::debug!(node = %self.node_name, pending_events = pending.len(), "Kubernetes sink stopped.");
    }

    /// The Node as last seen, read first if unknown.
    async fn view(&self, st: &mut SinkState) -> Result<NodeView, KubeSinkError> {
        match &st.node {
            Some(v) => Ok(v.clone()),
            None => self.read_node(st).await,
        }
    }

    async fn read_node(&self, st: &mut SinkState) -> Result<NodeView, KubeSinkError> {
        let r = self
            .call(GET_NODE, &self.node_name, self.nodes.get(&self.node_name))
            .await;
        self.metrics.node_read(r.is_ok());
        let node = self.settle(st, GET_NODE, r)?;
        let view = NodeView::of(&node);
        st.node = Some(view.clone());
        Ok(view)
    }

    /// Runs one request with the request timeout, mapping errors.
    async fn call<T>(
        &self,
        op: Op,
        name: &str,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, KubeSinkError> {
        match tokio::time::timeout(self.opts.request_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(op, name, e)),
            Err(_) => Err(KubeSinkError::Timeout {
                verb: op.verb,
                resource: op.resource,
                name: name.to_owned(),
                timeout: self.opts.request_timeout,
            }),
        }
    }

    /// Book-keeping common to every request's outcome: 403 logged once, the Node forgotten
    /// after 404/409, failed patches counted.
    fn settle<T>(
        &self,
        st: &mut SinkState,
        op: Op,
        r: Result<T, KubeSinkError>,
    ) -> Result<T, KubeSinkError> {
        match r {
            Ok(v) => {
                st.forbidden_logged.remove(&op);
                Ok(v)
            }
            Err(e) => {
                if op == PATCH_NODE {
                    self.metrics.patch_failed(PatchKind::Annotations);
                } else if op == PATCH_NODE_STATUS {
                    self.metrics.patch_failed(PatchKind::Conditions);
                } else if op == CREATE_EVENT || op == PATCH_EVENT {
                    self.metrics.event_failed();
                }
                if e.stale_node() && (op.resource.starts_with("nodes")) {
                    st.node = None;
                }
                if let KubeSinkError::Forbidden { message, .. } = &e {
                    if st.forbidden_logged.insert(op) {
                        tracing::error!(
                            node = %self.node_name,
                            verb = op.verb,
                            resource = op.resource,
                            api_message = %message,
                            retry_every = ?self.opts.backoff.slow,
                            "The API server forbids nodedrift to {} {}: grant the service account this \
                             permission; retrying slowly, other sinks are unaffected.",
                            op.verb,
                            op.resource,
                        );
                    } else {
                        tracing::debug!(verb = op.verb, resource = op.resource, "Still forbidden.");
                    }
                }
                Err(e)
            }
        }
    }

    /// Takes a token for `ev`, or counts it as rate limited.
    async fn admit(&self, ev: &NodeEvent) -> bool {
        let mut st = self.state.lock().await;
        let reserve = if events::is_node_event(&ev.reason) {
            0.0
        } else {
            events::NODE_EVENT_RESERVE.min(f64::from(self.opts.events_per_minute) - 1.0)
        };
        if st.bucket.try_take_leaving(reserve.max(0.0), Instant::now()) {
            if st.rate_limited_run > 0 {
                tracing::info!(
                    dropped = st.rate_limited_run,
                    "Events flow again after the rate limit dropped some."
                );
                st.rate_limited_run = 0;
            }
            return true;
        }
        self.metrics.event_rate_limited();
        if st.rate_limited_run == 0 {
            tracing::warn!(
                reason = %ev.reason,
                events_per_minute = self.opts.events_per_minute,
                "Event rate limit reached: dropping Events until the bucket refills (counted in the metrics)."
            );
        }
        st.rate_limited_run += 1;
        false
    }

    /// Creates `ev`, or folds it into the Event sent for the same reason and message within the
    /// window. One attempt.
    async fn deliver(&self, ev: &NodeEvent) -> Result<EventOutcome, KubeSinkError> {
        let mut st = self.state.lock().await;
        let now = Instant::now();
        if let Some(sent) = st.dedup.recent(ev, now).cloned() {
            let count = sent.count.saturating_add(1);
            let body = json!({"count": count, "lastTimestamp": clock::rfc3339(ev.time)});
            let r = self
                .call(
                    PATCH_EVENT,
                    &sent.name,
                    self.events
                        .patch(&sent.name, &patch_params(), &Patch::Merge(&body)),
                )
                .await;
            match self.settle(&mut st, PATCH_EVENT, r) {
                Ok(_) => {
                    st.dedup.record(ev, sent.name, count, now);
                    self.metrics.event_deduplicated();
                    return Ok(EventOutcome::Deduplicated);
                }
                // Expired (Events live an hour by default) or deleted: send a new one.
                Err(KubeSinkError::NotFound { .. }) => st.dedup.forget(ev),
                Err(e) => return Err(e),
            }
        }
        let view = self.view(&mut st).await?;
        let name = self.event_name(&mut st, ev.time);
        let event = self.event_object(&name, &view.uid, ev);
        let r = self
            .call(
                CREATE_EVENT,
                &name,
                self.events.create(&post_params(), &event),
            )
            .await;
        self.settle(&mut st, CREATE_EVENT, r)?;
        st.dedup.record(ev, name, 1, now);
        self.metrics.event_sent();
        Ok(EventOutcome::Created)
    }

    /// `<node>.<hex nanoseconds>`, as the kubelet names its Events; unique per sink.
    fn event_name(&self, st: &mut SinkState, time: SystemTime) -> String {
        let nanos = time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .max(st.last_event_nanos + 1);
        st.last_event_nanos = nanos;
        let suffix = format!(".{nanos:x}");
        let mut prefix = self.node_name.as_str();
        if prefix.len() + suffix.len() > MAX_NODE_NAME {
            // Cut on a label-safe character: names are ASCII, and a DNS label may not end in '-'
            // or be empty.
            prefix = prefix[..MAX_NODE_NAME - suffix.len()].trim_end_matches(['-', '.']);
        }
        format!("{prefix}{suffix}")
    }

    fn event_object(&self, name: &str, uid: &str, ev: &NodeEvent) -> Event {
        let time = k8s_openapi::jiff::Timestamp::try_from(ev.time)
            .ok()
            .map(Time);
        let instance_end = self.node_name.len().min(MAX_REPORTING_INSTANCE);
        Event {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(EVENTS_NAMESPACE.to_owned()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Node".to_owned()),
                name: Some(self.node_name.clone()),
                uid: (!uid.is_empty()).then(|| uid.to_owned()),
                ..ObjectReference::default()
            },
            reason: Some(ev.reason.clone()),
            message: Some(ev.message.clone()),
            type_: Some(ev.event_type.as_str().to_owned()),
            source: Some(EventSource {
                component: Some(COMPONENT.to_owned()),
                host: Some(self.node_name.clone()),
            }),
            first_timestamp: time.clone(),
            last_timestamp: time,
            count: Some(1),
            reporting_component: Some(COMPONENT.to_owned()),
            reporting_instance: Some(self.node_name[..instance_end].to_owned()),
            ..Event::default()
        }
    }
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(COMPONENT.to_owned()),
        ..PatchParams::default()
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(COMPONENT.to_owned()),
        ..PostParams::default()
    }
}

async fn sleep_until(t: Option<Instant>) {
    if let Some(t) = t {
        tokio::time::sleep_until(t.into()).await;
    }
}

/// Failure streak of one kind of work in the run loop: when to try again, and what was logged.
#[derive(Debug, Default)]
struct Attempts {
    failures: u32,
    retry_at: Option<Instant>,
}

impl Attempts {
    fn ready(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| t <= now)
    }

    fn succeeded(&mut self, what: &str) {
        if self.failures > 0 {
            tracing::info!(
                failed_attempts = self.failures,
                "Kubernetes {what} written again after failures."
            );
        }
        *self = Self::default();
    }

    /// Schedules the next attempt; true when the failure is final for this piece of work.
    fn failed(&mut self, e: &KubeSinkError, backoff: &Backoff) -> bool {
        let now = Instant::now();
        match e.retry() {
            Retry::Never => {
                tracing::warn!(error = %e, "The API server refused a write; not retrying it.");
                *self = Self::default();
                return true;
            }
            Retry::Soon(floor) => {
                self.retry_at = Some(now + backoff.delay(self.failures, floor));
            }
            Retry::Slow => self.retry_at = Some(now + backoff.slow()),
        }
        // 403 has its own one-time ERROR line; everything else warns on the first failure of a
        // streak only.
        if self.failures == 0 && !matches!(e, KubeSinkError::Forbidden { .. }) {
            tracing::warn!(error = %e, "Kubernetes API request failed; retrying with backoff.");
        } else {
            tracing::debug!(error = %e, attempt = self.failures + 1, "Kubernetes API request failed again.");
        }
        self.failures = self.failures.saturating_add(1);
        false
    }
}
