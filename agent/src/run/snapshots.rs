//! Snapshots the running agent takes: when someone sets `nodedrift.dev/snapshot-request: <id>`
//! on its own Node (`kubectl annotate node N nodedrift.dev/snapshot-request=$(date +%s)`), or
//! automatically when a finding of `snapshot.onSeverity` opens.
//!
//! * The id is checked ([`snapshot::validate_id`]). An invalid one is answered
//!   `- rejected invalid-id`: it is never echoed into the Node (it may be 10 KB long or carry
//!   anything), only a cut, quoted form into the Event and the log.
//! * The same id is never run twice, across restarts (claimed in the ledger).
//! * One at a time, at least `snapshot.minInterval` apart. Requests that arrive meanwhile wait,
//!   and only the latest is kept: a flood of annotation changes costs one snapshot.
//! * An annotation chooses nothing but the id: where the bundle goes (`<stateDir>/snapshots`,
//!   the oldest beyond `snapshot.keep` removed), what is read and the size cap come from the
//!   agent's configuration.
//! * The outcome goes to the Node annotation `nodedrift.dev/snapshot-status`
//!   (`<id> <state> <sha256|->`, state `waiting`, `running`, `uploading`, `ready`, `uploaded`,
//!   `failed`, `rejected`), an
//!   Event, and, for a bundle, a `dev.nodedrift.snapshot.ready` CloudEvent with its SHA-256, size,
//!   path and location.
//! * With `snapshot.uploadUrl`, the bundle is also uploaded (`PUT <uploadUrl>/<file>`, streamed
//!   from the file, retried with backoff; the endpoint's token and TLS settings): state
//!   `uploaded`, and the CloudEvent's location is the URL. A failed upload leaves the bundle on
//!   the node, says so in a Warning Event and the CloudEvent (`uploadError`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use serde_json::json;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::triggers::{Trigger, Triggers};
use crate::check;
use crate::clock::{rfc3339_secs, unix_now};
use crate::config::Config;
use crate::host::HostRoot;
use crate::ledger::Ledger;
use crate::report::cloudevents::{CloudEvent, types};
use crate::report::http::HttpSink;
use crate::report::kube::NodeEvent;
use crate::snapshot::{self, SnapshotOutcome, SnapshotRequest};

/// What the worker needs from the agent.
#[derive(Debug)]
pub struct SnapshotWorker {
    pub config: Config,
    pub ledger: Arc<Ledger>,
    /// The node's name in event sources.
    pub node: String,
    /// Read by the publisher for the Node annotation.
    pub status: Arc<RwLock<Option<String>>>,
    /// The Kubernetes sink's Event queue, when it is on.
    pub events: Option<mpsc::Sender<NodeEvent>>,
    /// Poked after a CloudEvent is queued.
    pub wake: Arc<Notify>,
    /// To have the new status published.
    pub triggers: Triggers,
    /// Where bundles are uploaded (`snapshot.uploadUrl`), when set.
    pub upload: Option<HttpSink>,
}

impl SnapshotWorker {
    /// Answers requests (the latest id in `requests`) until `cancel`.
    pub async fn run(
        self,
        mut requests: watch::Receiver<Option<String>>,
        cancel: CancellationToken,
    ) {
        let mut last_start: Option<Instant> = None;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = requests.changed() => if changed.is_err() { return },
            }
            let mut next = requests.borrow_and_update().clone();
            // A request that arrives while one waits replaces it (the latest wins).
            while let Some(id) = next {
                next = self
                    .handle(&id, &mut requests, &mut last_start, &cancel)
                    .await;
            }
        }
    }

    /// Answers one request; returns a newer request that superseded it while it waited.
    async fn handle(
        &self,
        id: &str,
        requests: &mut watch::Receiver<Option<String>>,
        last_start: &mut Option<Instant>,
        cancel: &CancellationToken,
    ) -> Option<String> {
        if let Err(e) = snapshot::validate_id(id) {
            tracing::warn!(error = %e, "Snapshot request refused.");
            self.answer("-", "rejected", "invalid-id");
            self.event(&shown(id), false, &format!("invalid-id: {e}"));
            return None;
        }
        if !self.config.snapshot.enabled {
            self.answer(id, "rejected", "disabled");
            self.event(
                id,
                false,
                "snapshots are disabled (snapshot.enabled: false)",
            );
            return None;
        }
        let wait = last_start
            .map(|t| {
                self.config
                    .snapshot
                    .min_interval
                    .saturating_sub(t.elapsed())
            })
            .unwrap_or_default();
        if !wait.is_zero() {
            self.answer(id, "waiting", "-");
            tracing::info!(
                id,
                wait_s = wait.as_secs(),
                "Snapshot request waits for the minimum interval."
            );
            tokio::select! {
                () = cancel.cancelled() => return None,
                () = tokio::time::sleep(wait) => {}
                changed = requests.changed() => {
                    if changed.is_ok() {
                        let newer = requests.borrow_and_update().clone();
                        if newer.as_deref() != Some(id) {
                            return newer;
                        }
                    }
                }
            }
        }
        match self.ledger.snapshot_claim(id) {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(id, "Snapshot request already answered; not taken again.");
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "Cannot record the snapshot request.");
                self.answer(id, "failed", "-");
                self.event(id, false, &format!("cannot record the request: {e}"));
                return None;
            }
        }
        *last_start = Some(Instant::now());
        self.answer(id, "running", "-");
        tracing::info!(id, "Taking a snapshot.");
        let stop = Arc::new(AtomicBool::new(false));
        let guard = {
            let (stop, cancel) = (Arc::clone(&stop), cancel.clone());
            tokio::spawn(async move {
                cancel.cancelled().await;
                stop.store(true, Ordering::Relaxed);
            })
        };
        let job = {
            let (config, ledger, node, id, stop) = (
                self.config.clone(),
                Arc::clone(&self.ledger),
                self.node.clone(),
                id.to_owned(),
                Arc::clone(&stop),
            );
            tokio::task::spawn_blocking(move || take(&config, &ledger, &node, &id, &stop))
        };
        let result = job.await;
        guard.abort();
        match result {
            Ok(Ok(o)) => self.ready(id, &o, cancel).await,
            Ok(Err(e)) => {
                tracing::error!(id, error = %e, "Snapshot failed.");
                self.answer(id, "failed", "-");
                self.event(id, false, &e);
            }
            Err(e) => {
                tracing::error!(id, error = %e, "Snapshot task failed.");
                self.answer(id, "failed", "-");
                self.event(id, false, &e.to_string());
            }
        }
        None
    }

    async fn ready(&self, id: &str, o: &SnapshotOutcome, cancel: &CancellationToken) {
        let path = o.path.clone().unwrap_or_default();
        tracing::info!(id, sha256 = %o.sha256, size = o.size, path = %path.display(), errors = o.errors, "Snapshot ready.");
        let dir = snapshot::snapshot_dir(&self.config.state_dir);
        if let Err(e) = snapshot::retain(&dir, self.config.snapshot.keep) {
            tracing::warn!(error = %e, "Cannot remove old snapshots.");
        }
        let mut location = format!("node://{}{}", self.node, path.display());
        let mut upload_error = None;
        if let Some(sink) = &self.upload {
            self.answer(id, "uploading", &o.sha256);
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("{id}.tar.gz"));
            match sink.upload(&path, &name, &o.sha256, cancel).await {
                Ok(url) => location = url,
                Err(e) => {
                    tracing::error!(id, error = %e, "Snapshot upload failed; the bundle stays on the node.");
                    self.event(
                        id,
                        false,
                        &format!("upload failed, the bundle stays at {}: {e}", path.display()),
                    );
                    upload_error = Some(e.to_string());
                }
            }
        }
        let now = unix_now();
        let event = CloudEvent::new(
            &self.node,
            types::SNAPSHOT_READY,
            Some(id.to_owned()),
            rfc3339_secs(now),
            &format!("{id}:{}", o.sha256),
            json!({
                "id": id,
                "sha256": o.sha256,
                "size": o.size,
                "entries": o.entries,
                "errors": o.errors,
                "trimmed": o.trimmed.len(),
                "location": location,
                "path": path,
                "uploadError": upload_error,
                "createdAt": o.created_at,
            }),
        );
        match self.ledger.outbox_push(&[event], now) {
            Ok(_) => self.wake.notify_one(),
            Err(e) => tracing::error!(error = %e, "Cannot queue the snapshot.ready event."),
        }
        let uploaded = self.upload.is_some() && upload_error.is_none();
        self.answer(id, if uploaded { "uploaded" } else { "ready" }, &o.sha256);
        let detail = format!("{location} ({} bytes, sha256 {})", o.size, o.sha256);
        self.event(id, true, &detail);
    }

    /// Sets the status annotation and has it published.
    fn answer(&self, id: &str, state: &str, detail: &str) {
        if let Ok(mut s) = self.status.write() {
            *s = Some(format!("{id} {state} {detail}"));
        }
        self.triggers.send(Trigger::Reevaluate, "snapshot");
    }

    fn event(&self, id: &str, ok: bool, detail: &str) {
        if let Some(events) = &self.events {
            let _ = events.try_send(NodeEvent::snapshot(id, ok, detail, SystemTime::now()));
        }
    }
}

/// A request id as it may appear in a message: quoted, cut to 40 characters.
fn shown(id: &str) -> String {
    let head: String = id.chars().take(40).collect();
    if id.chars().count() > 40 {
        format!("{head:?}…")
    } else {
        format!("{head:?}")
    }
}

/// Takes the snapshot (blocking) with the configuration and baseline in effect, through the
/// agent's own ledger handle.
fn take(
    config: &Config,
    ledger: &Ledger,
    node: &str,
    id: &str,
    stop: &AtomicBool,
) -> Result<SnapshotOutcome, String> {
    let host = HostRoot::new(&config.host_root).map_err(|e| e.to_string())?;
    let profile = check::profile_for(&host, config.profile.as_deref());
    let baseline =
        check::load_baseline(&profile.name, &config.baselines).map_err(|e| e.to_string())?;
    let mut req = SnapshotRequest::new(&host, id, profile, &baseline);
    req.node_name = Some(node);
    req.config = config.to_json();
    req.state_dir = Some(&config.state_dir);
    req.ledger = Some(ledger);
    req.limits.max_bundle_bytes = config.snapshot.max_bytes;
    req.cancel = Some(stop);
    let path: PathBuf = snapshot::snapshot_dir(&config.state_dir)
        .join(snapshot::default_file_name(id, SystemTime::now()));
    snapshot::take_to_file(&req, &path).map_err(|e| e.to_string())
}
