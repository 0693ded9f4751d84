//! Prometheus metrics (OpenMetrics text) and the `/metrics`, `/healthz`, `/readyz` endpoints.
//!
//! Labels come from bounded sets only: rule ids, components, severities, triggers, sinks and
//! outcomes — never paths, values or anything read from a file. No endpoint serves a secret or
//! file content.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::finding::{Finding, Status};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityComponent {
    pub severity: String,
    pub component: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
    pub component: String,
    pub severity: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleStatusLabels {
    pub rule: String,
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabels {
    /// `full` or the component re-inspected.
    pub scope: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// `inotify`, `proc`, `sysctl`, `timer`, `signal`.
    pub source: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// `http`, `kubernetes`.
    pub sink: String,
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// Every metric nodedrift exports.
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub findings_open: Family<SeverityComponent, Gauge>,
    pub rule_status: Family<RuleStatusLabels, Gauge>,
    pub reboot_required: Gauge,
    pub reboot_required_seconds: Gauge,
    pub scan_duration: Family<ScopeLabels, Histogram>,
    pub events_received: Family<SourceLabels, Counter>,
    pub events_coalesced: Counter,
    pub events_dropped: Counter,
    pub inotify_overflows: Counter,
    pub outbox_depth: Gauge,
    pub outbox_oldest_age_seconds: Gauge,
    pub outbox_dropped: Counter,
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub baseline_reloads: Family<ResultLabels, Counter>,
    pub last_check_timestamp: Gauge,
    pub files_tracked: Gauge,
    pub files_changed: Gauge,
    pub file_rescans: Family<ResultLabels, Counter>,
    pub files_hashed_bytes: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("nodedrift");
        let m = Self {
            findings_open: Family::default(),
            rule_status: Family::default(),
            reboot_required: Gauge::default(),
            reboot_required_seconds: Gauge::default(),
            scan_duration: Family::new_with_constructor(|| {
                // 1 ms .. ~4 s: a partial re-check takes milliseconds, a full one on a busy
                // node with a slow containerd up to its API timeout.
                Histogram::new(exponential_buckets(0.001, 2.0, 13))
            }),
            events_received: Family::default(),
            events_coalesced: Counter::default(),
            events_dropped: Counter::default(),
            inotify_overflows: Counter::default(),
            outbox_depth: Gauge::default(),
            outbox_oldest_age_seconds: Gauge::default(),
            outbox_dropped: Counter::default(),
            deliveries: Family::default(),
            baseline_reloads: Family::default(),
            last_check_timestamp: Gauge::default(),
            files_tracked: Gauge::default(),
            files_changed: Gauge::default(),
            file_rescans: Family::default(),
            files_hashed_bytes: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "findings_open",
            "Failing findings by severity and component",
            m.findings_open.clone(),
        );
        registry.register(
            "rule_status",
            "1 for the status each rule currently has (pass, fail, unknown)",
            m.rule_status.clone(),
        );
        registry.register(
            "reboot_required",
            "1 when the node needs a reboot",
            m.reboot_required.clone(),
        );
        registry.register(
            "reboot_required_seconds",
            "Seconds since the reboot became necessary (0 when none is pending)",
            m.reboot_required_seconds.clone(),
        );
        registry.register(
            "scan_duration_seconds",
            "Duration of one inspection and evaluation",
            m.scan_duration.clone(),
        );
        registry.register(
            "trigger_events_received",
            "Triggers received, by source",
            m.events_received.clone(),
        );
        registry.register(
            "trigger_events_coalesced",
            "Triggers merged into an already pending re-check",
            m.events_coalesced.clone(),
        );
        registry.register(
            "trigger_events_dropped",
            "Triggers dropped because the queue was full (a full re-check follows)",
            m.events_dropped.clone(),
        );
        registry.register(
            "files_tracked",
            "Paths in the file-integrity baseline",
            m.files_tracked.clone(),
        );
        registry.register(
            "files_changed",
            "Watched paths that differ from the file-integrity baseline now",
            m.files_changed.clone(),
        );
        registry.register(
            "file_rescans",
            "Full file-integrity verifications, by reason (start, timer, rehash, overflow, accept)",
            m.file_rescans.clone(),
        );
        registry.register(
            "files_hashed_bytes",
            "Bytes read to hash watched files",
            m.files_hashed_bytes.clone(),
        );
        registry.register(
            "inotify_overflows",
            "inotify queue overflows (each forces a full re-check)",
            m.inotify_overflows.clone(),
        );
        registry.register(
            "outbox_depth",
            "Events waiting for delivery to the central endpoint",
            m.outbox_depth.clone(),
        );
        registry.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest undelivered event",
            m.outbox_oldest_age_seconds.clone(),
        );
        registry.register(
            "outbox_dropped",
            "Events dropped because the outbox was full",
            m.outbox_dropped.clone(),
        );
        registry.register(
            "deliveries",
            "Deliveries by sink and outcome",
            m.deliveries.clone(),
        );
        registry.register(
            "baseline_reloads",
            "Baseline reloads by result (accepted, rejected)",
            m.baseline_reloads.clone(),
        );
        registry.register(
            "last_check_timestamp_seconds",
            "Unix time of the last completed evaluation",
            m.last_check_timestamp.clone(),
        );
        let info = Family::<Vec<(String, String)>, Gauge>::default();
        info.get_or_create(&vec![(
            "version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        )])
        .set(1);
        registry.register("build_info", "Build information", info);
        Self { registry, ..m }
    }

    /// Sets the finding gauges from a complete evaluation.
    pub fn record_findings(&self, findings: &[Finding]) {
        self.findings_open.clear();
        self.rule_status.clear();
        for f in findings {
            if f.status == Status::Fail {
                self.findings_open
                    .get_or_create(&SeverityComponent {
                        severity: f.severity.to_string(),
                        component: f.component.clone(),
                    })
                    .inc();
            }
        }
        // One series per rule: its worst status over all its findings.
        let mut worst: std::collections::BTreeMap<&str, Status> = std::collections::BTreeMap::new();
        for f in findings {
            let e = worst.entry(f.rule.as_str()).or_insert(f.status);
            *e = (*e).min(f.status);
        }
        for (rule, status) in worst {
            self.rule_status
                .get_or_create(&RuleStatusLabels {
                    rule: rule.to_owned(),
                    status: status.to_string(),
                })
                .set(1);
        }
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What `/readyz` reports: ready once the first full check is done and the state store is
/// writable.
#[derive(Debug, Default)]
pub struct Health {
    pub first_check_done: AtomicBool,
    pub store_writable: AtomicBool,
}

impl Health {
    pub fn ready(&self) -> bool {
        self.first_check_done.load(Ordering::Relaxed) && self.store_writable.load(Ordering::Relaxed)
    }
}

/// An error starting the HTTP server.
#[derive(Debug, thiserror::Error)]
#[error("listening on {addr}: {source}")]
pub struct ServeError {
    pub addr: String,
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr` and serves `/metrics`, `/healthz`, `/readyz` until `cancel` fires. Returns the
/// bound address (port 0 picks a free one) and the server task.
pub async fn serve(
    addr: &str,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    cancel: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    let err = |source| ServeError {
        addr: addr.to_owned(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = cancel.cancelled() => break,
                a = listener.accept() => a,
            };
            let Ok((stream, _)) = accepted else { continue };
            let (metrics, health) = (metrics.clone(), health.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let (metrics, health) = (metrics.clone(), health.clone());
                    async move { Ok::<_, Infallible>(route(&req, &metrics, &health)) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok((local, task))
}

fn route<B>(req: &Request<B>, metrics: &Metrics, health: &Health) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET", "/metrics") => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        ("GET", "/healthz") => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        ("GET", "/readyz") if health.ready() => {
            (StatusCode::OK, "text/plain", "ready\n".to_owned())
        }
        ("GET", "/readyz") => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            if health.first_check_done.load(Ordering::Relaxed) {
                "state store not writable\n".to_owned()
            } else {
                "first check not done\n".to_owned()
            },
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}
