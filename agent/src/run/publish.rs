//! From an evaluation to the sinks: the ledger turns findings into lifecycle transitions,
//! transitions become CloudEvents in the durable outbox (and wake the endpoint sink), and the
//! node summary goes to the Kubernetes sink and the metrics.
//!
//! A ledger write that fails (disk full, I/O error) is logged, makes `/readyz` fail, and is
//! retried at the next evaluation: the ledger keeps the last committed lifecycle, so the next
//! successful write yields exactly the transitions that were not recorded.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};

use super::engine::Engine;
use crate::clock::rfc3339_secs;
use crate::facts::Lookup;
use crate::finding::Finding;
use crate::inspect::reboot::RebootSummary;
use crate::ledger::{
    Change, Ledger, LedgerError, PendingReboot, RebootChange, RebootState, Transition,
};
use crate::report::cloudevents::{CloudEvent, stable_id, types};
use crate::report::http::Outbox;
use crate::report::kube::{
    NodeEvent, NodeStatusUpdate, Versions, system_label_findings, version_skew_findings,
};
use crate::report::metrics::{Health, Metrics};
use crate::report::summary::NodeSummary;

/// What the publish step needs.
#[derive(Debug)]
pub struct Publisher {
    pub ledger: Arc<Ledger>,
    /// The node's name in event sources.
    pub node: String,
    /// Poked after events are queued (the endpoint sink waits on it).
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// The latest summary, for heartbeats and the Kubernetes sink.
    pub summary: Option<NodeSummary>,
    /// The Kubernetes sink's inputs, when it is on.
    pub kube: Option<KubeChannels>,
    /// The Node's labels as last read from the API server (for the system-label check).
    pub node_labels: Arc<RwLock<Option<BTreeMap<String, String>>>>,
    /// The kubelet's and the API server's versions as last read (for the version-skew check).
    pub versions: Arc<RwLock<Versions>>,
    /// The last ledger error logged (so a persistent one is logged once).
    last_error: Option<String>,
    /// The findings last recorded (rule, path, status, actual), and when: an evaluation that
    /// changes none of them is recorded only once per `refresh`.
    last_recorded: Option<(u64, std::time::Instant)>,
    /// How long identical evaluations go unrecorded (the heartbeat interval).
    pub refresh: std::time::Duration,
    /// The latest snapshot request's outcome, for the Node annotation (the snapshot worker
    /// writes it).
    pub snapshot_status: Arc<RwLock<Option<String>>>,
    /// Asks the snapshot worker for an automatic snapshot (a finding of the configured
    /// severity opened).
    pub auto_snapshot: Option<(crate::baseline::Severity, watch::Sender<Option<String>>)>,
}

/// The Kubernetes sink's inputs: the latest desired Node state, and Events.
#[derive(Debug)]
pub struct KubeChannels {
    pub status: watch::Sender<Option<NodeStatusUpdate>>,
    pub events: mpsc::Sender<NodeEvent>,
}

/// What one evaluation changed in the ledger.
#[derive(Debug, Default)]
struct Recorded {
    transitions: Vec<Transition>,
    reboot: Option<RebootChange>,
    reasons: Vec<String>,
    packages: Vec<String>,
    /// The pending reboot as the ledger holds it now.
    pending: Option<PendingReboot>,
}

pub use crate::clock::unix_now as now;

impl Publisher {
    pub fn new(
        ledger: Arc<Ledger>,
        node: String,
        wake: Arc<Notify>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Self {
        Self {
            ledger,
            node,
            wake,
            metrics,
            health,
            summary: None,
            kube: None,
            node_labels: Arc::new(RwLock::new(None)),
            versions: Arc::new(RwLock::new(Versions::default())),
            last_error: None,
            last_recorded: None,
            refresh: std::time::Duration::from_secs(600),
            snapshot_status: Arc::new(RwLock::new(None)),
            auto_snapshot: None,
        }
    }

    /// The findings of an evaluation: the engine's, plus the system-label check when the
    /// Node's labels are known (the kubelet's `--node-labels` against the Node object).
    pub fn findings(&self, engine: &Engine) -> Vec<Finding> {
        let mut findings = engine.findings().to_vec();
        let labels = self.node_labels.read().ok().and_then(|l| l.clone());
        if let Some(node_labels) = labels {
            let registered = match engine.facts().get("kubelet.flags.node-labels") {
                Lookup::Found(Value::String(s)) => parse_labels(s),
                _ => BTreeMap::new(),
            };
            findings.extend(system_label_findings(&node_labels, &registered));
        }
        if let Ok(v) = self.versions.read() {
            findings.extend(version_skew_findings(&v));
        }
        findings
    }

    /// Records one evaluation, queues what changed, and hands the Node's state and Events to
    /// the Kubernetes sink. Returns the findings it published.
    ///
    /// An evaluation whose findings (rule, path, status, actual value) and reboot state are
    /// identical to the last recorded one is not recorded again until `refresh` has passed:
    /// the polls of an idle node then cost no store write. The ledger's `last_seen` and
    /// `occurrences` therefore count recorded evaluations: every change, and at least one per
    /// `refresh`.
    pub fn publish(&mut self, engine: &mut Engine) -> Vec<Finding> {
        let now = now();
        let findings = self.findings(engine);
        let snapshot_status = self.snapshot_status.read().ok().and_then(|s| s.clone());
        let print = fingerprint(&findings, engine, snapshot_status.as_deref());
        if let Some((last, at)) = self.last_recorded
            && last == print
            && at.elapsed() < self.refresh
            && self.last_error.is_none()
        {
            return findings;
        }
        self.metrics.record_findings(&findings);
        let mut summary = NodeSummary::of(&findings, &engine.profile().name, rfc3339_secs(now));
        let recorded = match self.record(engine, &findings, now, &mut summary) {
            Ok(r) => {
                self.ok();
                self.last_recorded = Some((print, std::time::Instant::now()));
                engine.set_recorded_reboot(r.pending.clone());
                r
            }
            Err(e) => {
                self.failed(&e);
                Recorded::default()
            }
        };
        if let Some(k) = &self.kube {
            let update = NodeStatusUpdate {
                summary: summary.clone(),
                baseline_version: engine.baseline_version(),
                reboot_packages: recorded.packages.clone(),
                snapshot_status,
            };
            let _ = k.status.send(Some(update));
            let time = SystemTime::now();
            let mut events: Vec<NodeEvent> = recorded
                .transitions
                .iter()
                .map(NodeEvent::from_transition)
                .collect();
            match recorded.reboot {
                Some(RebootChange::Started { .. } | RebootChange::Restarted { .. }) => {
                    events.push(NodeEvent::reboot_required(
                        &recorded.reasons,
                        &recorded.packages,
                        time,
                    ));
                }
                Some(RebootChange::Cleared { .. }) => events.push(NodeEvent::reboot_cleared(time)),
                _ => {}
            }
            for e in events {
                // The queue is bounded; Events are a courtesy on top of the conditions, so a
                // full queue drops rather than blocks the evaluation.
                let _ = k.events.try_send(e);
            }
        }
        self.summary = Some(summary);
        findings
    }

    fn record(
        &self,
        engine: &Engine,
        findings: &[Finding],
        now: i64,
        summary: &mut NodeSummary,
    ) -> Result<Recorded, LedgerError> {
        let version = engine.baseline_version();
        let profile = engine.profile().name.clone();
        // Reboot: pending or not, since when, why, and in which boot, from the facts.
        let view = RebootSummary::of(engine.facts());
        let view = view.unwrap_or_default();
        let reasons = view.reboot_reasons();
        let packages = view.packages.clone();
        let state = view.required.map(|pending| RebootState {
            pending,
            since: view.pending_since_unix,
            boot_id: view.boot_id.clone(),
            reasons: if pending { reasons.clone() } else { Vec::new() },
            packages: if pending {
                packages.clone()
            } else {
                Vec::new()
            },
        });
        let required_data = |since: i64| {
            json!({"since": rfc3339_secs(since), "reasons": reasons, "packages": packages,
                   "details": view.reboot_details(), "bootId": view.boot_id})
        };
        // Lifecycle, reboot state and the events they cause: one transaction.
        let rec = self.ledger.record(
            findings,
            None,
            state.as_ref(),
            now,
            |transitions, reboot| {
                let mut events: Vec<CloudEvent> = transitions
                    .iter()
                    .map(|t| self.finding_event(t, &profile, &version, now))
                    .collect();
                match reboot {
                    Some(RebootChange::Started { since, generation }) => events.push(self.event(
                        types::REBOOT_REQUIRED,
                        None,
                        &generation.to_string(),
                        required_data(*since),
                        now,
                    )),
                    Some(RebootChange::Restarted {
                        since,
                        previous,
                        generation,
                    }) => {
                        let mut data = required_data(*since);
                        data["afterReboot"] = json!(true);
                        data["previousSince"] = json!(rfc3339_secs(*previous));
                        events.push(self.event(
                            types::REBOOT_REQUIRED,
                            None,
                            &generation.to_string(),
                            data,
                            now,
                        ));
                    }
                    Some(RebootChange::Updated { since, generation }) => {
                        // Several updates per pending period: each its own occurrence.
                        let identity = format!(
                            "{generation}:{now}:{}",
                            stable_id(&[&reasons.join(","), &packages.join(",")])
                        );
                        events.push(self.event(
                            types::REBOOT_UPDATED,
                            None,
                            &identity,
                            required_data(*since),
                            now,
                        ));
                    }
                    Some(RebootChange::Cleared {
                        since,
                        generation,
                        detail,
                    }) => events.push(self.event(
                        types::REBOOT_CLEARED,
                        None,
                        &generation.to_string(),
                        json!({"since": rfc3339_secs(*since), "pendingSince": rfc3339_secs(*since),
                               "reasons": detail.reasons, "packages": detail.packages,
                               "bootId": view.boot_id}),
                        now,
                    )),
                    Some(RebootChange::Unchanged) | None => {}
                }
                events
            },
        )?;
        self.queued(&rec.pushed);
        if let Some((threshold, ask)) = &self.auto_snapshot
            && let Some(t) = rec
                .transitions
                .iter()
                .find(|t| t.change == Change::Opened && t.finding.severity >= *threshold)
        {
            tracing::info!(rule = %t.key.rule, severity = %t.finding.severity, "A finding of the snapshot severity opened; asking for a snapshot.");
            let _ = ask.send(Some(format!("auto-{now}")));
        }
        let pending = self.ledger.reboot_pending()?;
        if let Some(since) = pending.as_ref().map(|p| p.since) {
            summary.reboot_required_since = Some(rfc3339_secs(since));
            summary.reboot_reasons = reasons.clone();
            self.metrics.reboot_required.set(1);
            self.metrics
                .reboot_required_seconds
                .set((now - since).max(0));
        } else {
            self.metrics.reboot_required.set(0);
            self.metrics.reboot_required_seconds.set(0);
        }
        Ok(Recorded {
            transitions: rec.transitions,
            reboot: rec.reboot,
            reasons,
            packages,
            pending,
        })
    }

    /// Queues a node-summary heartbeat (the periodic "still here, still like this").
    pub fn heartbeat(&mut self) {
        let Some(summary) = &self.summary else { return };
        let now = now();
        let data = serde_json::to_value(summary).unwrap_or(Value::Null);
        // Each heartbeat is its own occurrence (its id must differ from the previous one's even
        // when no evaluation was recorded in between).
        let e = self.event(types::NODE_SUMMARY, None, &now.to_string(), data, now);
        if let Err(err) = self.push(&[e], now) {
            self.failed(&err);
        }
    }

    /// Queues a "baseline rejected" event (SIGHUP with an invalid baseline).
    pub fn baseline_rejected(&mut self, error: &str) {
        if let Some(k) = &self.kube {
            let _ = k
                .events
                .try_send(NodeEvent::baseline_rejected(error, SystemTime::now()));
        }
        let now = now();
        let e = self.event(
            types::BASELINE_REJECTED,
            None,
            &format!("{now}:{error}"),
            json!({"error": error}),
            now,
        );
        if let Err(err) = self.push(&[e], now) {
            self.failed(&err);
        }
    }

    fn push(&self, events: &[CloudEvent], now: i64) -> Result<(), LedgerError> {
        if events.is_empty() {
            return Ok(());
        }
        let outcome = self.ledger.outbox_push(events, now)?;
        self.queued(&outcome);
        Ok(())
    }

    /// After events were queued: count what the overflow policy dropped, wake the sink.
    fn queued(&self, outcome: &crate::ledger::PushOutcome) {
        if !outcome.dropped.is_empty() {
            self.metrics
                .outbox_dropped
                .inc_by(outcome.dropped.len() as u64);
            tracing::warn!(
                dropped = outcome.dropped.len(),
                "The outbox is full; the oldest events were dropped (heartbeats first)."
            );
        }
        if outcome.accepted > 0 {
            self.wake.notify_one();
        }
    }

    fn finding_event(&self, t: &Transition, profile: &str, version: &str, now: i64) -> CloudEvent {
        let (kind, mut data) = match t.change {
            Change::Opened => (
                types::FINDING_OPENED,
                json!({"openedAt": rfc3339_secs(t.opened_at)}),
            ),
            Change::Resolved => (
                types::FINDING_RESOLVED,
                json!({
                    "openedAt": rfc3339_secs(t.opened_at),
                    "resolvedAt": t.resolved_at.map(rfc3339_secs),
                }),
            ),
        };
        data["finding"] = serde_json::to_value(&t.finding).unwrap_or(Value::Null);
        data["occurrences"] = json!(t.occurrences);
        data["profile"] = json!(profile);
        data["baselineVersion"] = json!(version);
        let subject = format!("{}:{}", t.key.rule, t.key.path);
        self.event(kind, Some(subject), &t.generation.to_string(), data, now)
    }

    fn event(
        &self,
        kind: &str,
        subject: Option<String>,
        identity: &str,
        data: Value,
        now: i64,
    ) -> CloudEvent {
        CloudEvent::new(&self.node, kind, subject, rfc3339_secs(now), identity, data)
    }

    fn ok(&mut self) {
        if self.last_error.take().is_some() {
            tracing::info!(path = %self.ledger.path().display(), "The state store is writable again.");
        }
        self.health.store_writable.store(true, Ordering::Relaxed);
        outbox_gauges(&self.ledger, &self.metrics);
    }

    fn failed(&mut self, e: &LedgerError) {
        self.health.store_writable.store(false, Ordering::Relaxed);
        let msg = e.to_string();
        if self.last_error.as_deref() != Some(msg.as_str()) {
            tracing::error!(error = %msg, "Cannot write the state store; findings are kept and delivery resumes when it is writable again.");
            self.last_error = Some(msg);
        }
    }
}

/// A hash of what a recorded evaluation depends on: each finding's rule, path, status and
/// actual value, and the reboot facts.
fn fingerprint(findings: &[Finding], engine: &Engine, snapshot_status: Option<&str>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in findings {
        (&f.rule, &f.path, f.status).hash(&mut h);
        f.actual.to_string().hash(&mut h);
    }
    if let Some(r) = engine.facts().component("reboot") {
        r.facts.to_string().hash(&mut h);
    }
    snapshot_status.hash(&mut h);
    h.finish()
}

/// `k=v,k2=v2` (the kubelet's `--node-labels`) as a map; malformed entries are skipped.
pub fn parse_labels(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// Sets the outbox gauges (depth, age of the oldest event) from the ledger.
fn outbox_gauges(ledger: &Ledger, metrics: &Metrics) {
    if let Ok(s) = ledger.outbox_stats() {
        metrics
            .outbox_depth
            .set(i64::try_from(s.depth).unwrap_or(i64::MAX));
        let age = s
            .oldest_enqueued_at
            .map(|t| (now() - t).max(0))
            .unwrap_or(0);
        metrics.outbox_oldest_age_seconds.set(age);
    }
}

/// The ledger as the endpoint sink's outbox. What leaves it (delivered or dead-lettered)
/// updates the outbox gauges at once, not at the next evaluation.
#[derive(Debug, Clone)]
pub struct LedgerOutbox {
    pub ledger: Arc<Ledger>,
    pub metrics: Arc<Metrics>,
}

impl Outbox for LedgerOutbox {
    fn peek(&self, max: usize) -> Result<Vec<CloudEvent>, String> {
        self.ledger.outbox_peek(max).map_err(|e| e.to_string())
    }
    fn ack(&self, ids: &[String]) -> Result<(), String> {
        let r = self.ledger.outbox_ack(ids).map_err(|e| e.to_string());
        outbox_gauges(&self.ledger, &self.metrics);
        r
    }
    fn dead_letter(&self, ids: &[String], reason: &str) -> Result<(), String> {
        let r = self
            .ledger
            .outbox_dead_letter(ids, reason)
            .map_err(|e| e.to_string());
        outbox_gauges(&self.ledger, &self.metrics);
        r
    }
}
