//! `nodedrift run`: the continuous agent.
//!
//! One task per trigger source (file watcher, `/proc` poller, sysctl poller, re-check timer,
//! signals), one evaluation loop that coalesces triggers and re-checks, and one task per sink.
//! Every loop takes the same cancellation token; SIGTERM drains within the grace period.

pub mod engine;
pub mod fim;
pub mod publish;
pub mod snapshots;
pub mod systemd;
pub mod triggers;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::engine::{Engine, EngineError, EngineOptions};
use self::publish::{KubeChannels, LedgerOutbox, Publisher};
use self::triggers::{FileWatcher, Trigger, Triggers};
use crate::config::Config;
use crate::host::HostRoot;
use crate::inspect;
use crate::ledger::{Ledger, OutboxLimits};
use crate::report::http::SinkCounters;
use crate::report::http::{EndpointConfig, HttpSink, SinkMetrics};
use crate::report::kube::{
    ANNOTATION_SNAPSHOT_REQUEST, KubeCounters, KubeOptions, KubeSink, KubeSinkError, NodeInputs,
    PatchKind, Versions,
};
use crate::report::metrics::{self, DeliveryLabels, Health, Metrics, ResultLabels, ScopeLabels};

/// How long triggers arriving together are merged into one re-check. Short enough that a
/// change reaches the sinks well within the latency budget, long enough to fold the burst of
/// events one editor save produces (write, chmod, rename).
const DEBOUNCE: Duration = Duration::from_millis(25);

/// Time allowed to drain after SIGTERM (the DaemonSet's grace period is 30 s).
const GRACE: Duration = Duration::from_secs(10);

/// Events waiting for the Kubernetes sink (beyond it they are dropped; conditions still carry
/// the state).
const KUBE_EVENT_QUEUE: usize = 64;

/// How often the Node is read where it cannot be watched.
const LABELS_POLL: Duration = Duration::from_secs(60);
/// First pause before reading the Node again after a failed read or watch (doubling up to
/// [`LABELS_POLL`]).
const NODE_RETRY_MIN: Duration = Duration::from_secs(1);

/// How often the endpoint sink's counters are copied into the Prometheus registry.
const SINK_METRICS_SYNC: Duration = Duration::from_secs(5);

/// The daemon could not start, or a critical task died.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Serve(#[from] metrics::ServeError),
    #[error("starting the file watcher: {0}")]
    Watch(#[from] notify::Error),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("the evaluation loop stopped unexpectedly: {0}")]
    Evaluator(String),
    #[error("opening the state store: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error("central endpoint: {0}")]
    Endpoint(#[from] crate::report::http::SinkError),
}

impl RunError {
    /// Bad input from the operator (exit 64) rather than a failure of the agent.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Engine(EngineError::Baseline(_))
                | Self::Engine(EngineError::Host(crate::host::HostError::Root { .. }))
                | Self::Endpoint(_)
        )
    }
}

/// Runs the daemon until SIGTERM/SIGINT (or `cancel`).
pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let engine = Engine::new(EngineOptions {
        host_root: config.host_root.clone(),
        profile: config.profile.clone(),
        baselines: config.baselines.clone(),
        inspect: inspect::Options {
            egress_probe: config.egress.enabled,
            egress_timeout: config.egress.timeout,
            // The DaemonSet (hostNetwork, NODEDRIFT_HOST_ROOT=/host) and the host install
            // (`--host-root /`) share the node's network namespace: both probe. An agent run on a
            // copied tree would probe this machine's ports instead, and does not.
            health_probe: crate::check::is_live_host(
                &config.host_root,
                std::env::var_os("NODEDRIFT_HOST_ROOT").as_deref(),
            ),
            ..inspect::Options::default()
        },
    })?;
    let node = node_name(&config);
    tracing::info!(node = %node, profile = %engine.profile().name, reason = %engine.profile().reason, host_root = %config.host_root.display(), "Starting.");
    let ledger = Arc::new(Ledger::open_with(
        &config.state_dir,
        OutboxLimits {
            max_events: config.endpoint.outbox_max_events,
        },
    )?);
    health.store_writable.store(true, Ordering::Relaxed);
    let wake = Arc::new(tokio::sync::Notify::new());
    let mut publisher = Publisher::new(
        ledger.clone(),
        node,
        wake.clone(),
        metrics.clone(),
        health.clone(),
    );

    let (addr, server) = metrics::serve(
        &config.listen.to_string(),
        metrics.clone(),
        health.clone(),
        cancel.clone(),
    )
    .await?;
    tracing::info!(%addr, "Serving /metrics, /healthz and /readyz.");

    let (triggers, rx) = Triggers::new(metrics.clone());
    let watcher = FileWatcher::new(&config.host_root, triggers.clone())?;
    let mut engine = engine;
    let fim_watcher = if config.files.enabled && !engine.baseline().watch_spec().is_empty() {
        let mut spec = engine.baseline().watch_spec();
        spec.limits.threads = config.files.hash_threads;
        spec.limits.max_hash_bytes = config.files.max_hash_bytes;
        spec.limits.rehash_interval = config.files.rehash_interval;
        spec.limits.rehash_bytes_per_sec = config.files.rehash_bytes_per_sec;
        let mut monitor = fim::FileMonitor::new(&config.host_root, spec, &config.state_dir)
            .map_err(EngineError::Host)?;
        monitor.set_metrics(metrics.clone());
        monitor.set_attributor(fim::attributor(config.files.attribution, &config.host_root));
        engine.set_files(monitor);
        Some(fim::FimWatcher::new(
            &config.host_root,
            &config.state_dir,
            triggers.clone(),
        )?)
    } else {
        tracing::info!(
            "File integrity is off (files.enabled: false, or no watch sets in the baseline)."
        );
        None
    };
    let proc_host = HostRoot::new(&config.host_root).map_err(EngineError::Host)?;

    let mut tasks = tokio::task::JoinSet::new();
    let iv = &config.intervals;
    tasks.spawn(triggers::poll_proc(
        proc_host,
        iv.proc_poll,
        triggers.clone(),
        cancel.clone(),
    ));
    tasks.spawn(triggers::poll_sysctl(
        iv.sysctl_poll,
        triggers.clone(),
        cancel.clone(),
    ));
    tasks.spawn(triggers::rescan_timer(
        iv.rescan,
        iv.rescan_jitter,
        triggers.clone(),
        cancel.clone(),
    ));
    tasks.spawn(triggers::heartbeat_timer(
        iv.heartbeat,
        triggers.clone(),
        cancel.clone(),
    ));
    match &config.endpoint.url {
        Some(url) => {
            let mut ec = endpoint_config(&config.endpoint, url.as_str());
            ec.batch_max_events = config.endpoint.batch_max_events;
            let sink = HttpSink::new(ec)?;
            let sink_metrics = Arc::new(SinkMetrics::new());
            tracing::info!(url = %sink.url(), "Delivering CloudEvents to the central endpoint.");
            tasks.spawn(sink.run(
                Arc::new(LedgerOutbox {
                    ledger: ledger.clone(),
                    metrics: metrics.clone(),
                }),
                wake.clone(),
                cancel.clone(),
                sink_metrics.clone(),
            ));
            tasks.spawn(sync_counters(
                "http",
                move || sink_metrics.snapshot(),
                http_deltas,
                metrics.clone(),
                cancel.clone(),
            ));
        }
        None => tracing::info!("No central endpoint configured; CloudEvents stay in the outbox."),
    }
    publisher.refresh = config.intervals.heartbeat;
    // Snapshot requests: the latest id asked for (the Node annotation, or a finding of the
    // configured severity).
    let (snapshot_requests, snapshot_rx) = tokio::sync::watch::channel(None::<String>);
    if let Some(severity) = config.snapshot.on_severity {
        publisher.auto_snapshot = Some((severity, snapshot_requests.clone()));
    }
    if config.kubernetes.enabled {
        let opts = KubeOptions {
            heartbeat_interval: config.intervals.heartbeat,
            events_per_minute: config.kubernetes.events_per_minute,
            ..KubeOptions::default()
        };
        let node = publisher.node.clone();
        match (
            KubeSink::connect(node.clone(), opts.clone()).await,
            KubeSink::connect(node.clone(), opts).await,
        ) {
            (Ok(sink), Ok(reader)) => {
                tracing::info!(node = %node, "Reporting to the Node object (annotations, conditions, events).");
                let (status, status_rx) = tokio::sync::watch::channel(None);
                let (events, events_rx) = mpsc::channel(KUBE_EVENT_QUEUE);
                let kube_metrics = sink.metrics();
                tasks.spawn(sync_counters(
                    "kubernetes",
                    move || kube_metrics.snapshot(),
                    kube_deltas,
                    metrics.clone(),
                    cancel.clone(),
                ));
                tasks.spawn(sink.run(status_rx, events_rx, cancel.clone()));
                tasks.spawn(follow_node(
                    reader,
                    publisher.node_labels.clone(),
                    publisher.versions.clone(),
                    snapshot_requests.clone(),
                    triggers.clone(),
                    cancel.clone(),
                ));
                publisher.kube = Some(KubeChannels { status, events });
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "The Kubernetes sink is off; the other sinks work.");
            }
        }
    } else {
        tracing::info!(reason = %config.kubernetes.decided_by, "The Kubernetes sink is off.");
    }
    let upload = match &config.snapshot.upload_url {
        Some(url) => Some(HttpSink::new(endpoint_config(&config.endpoint, url))?),
        None => None,
    };
    tasks.spawn(
        snapshots::SnapshotWorker {
            config: config.clone(),
            ledger: ledger.clone(),
            node: publisher.node.clone(),
            status: publisher.snapshot_status.clone(),
            events: publisher.kube.as_ref().map(|k| k.events.clone()),
            wake: wake.clone(),
            triggers: triggers.clone(),
            upload,
        }
        .run(snapshot_rx, cancel.clone()),
    );
    drop(snapshot_requests);
    {
        let (t, c) = (triggers.clone(), cancel.clone());
        tasks.spawn(async move {
            if let Err(e) = triggers::signals(t, c.clone()).await {
                tracing::error!(error = %e, "Cannot install signal handlers; stopping.");
                c.cancel();
            }
        });
    }
    if let Some(interval) = systemd::watchdog_interval() {
        let c = cancel.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    () = c.cancelled() => return,
                    _ = tick.tick() => { let _ = systemd::notify("WATCHDOG=1"); }
                }
            }
        });
    }

    // The evaluator: its own thread (inspection is blocking I/O, and the containerd inspector
    // runs its own small runtime), waiting on the trigger queue through the runtime handle.
    let handle = tokio::runtime::Handle::current();
    let evaluator = {
        let (metrics, health, cancel, overflow) = (
            metrics.clone(),
            health.clone(),
            cancel.clone(),
            triggers.overflow.clone(),
        );
        std::thread::Builder::new()
            .name("evaluator".into())
            .spawn(move || {
                evaluate_loop(
                    engine,
                    Watchers {
                        files: watcher,
                        fim: fim_watcher,
                    },
                    publisher,
                    rx,
                    overflow,
                    handle,
                    metrics,
                    health,
                    cancel,
                )
            })
            .map_err(|e| RunError::Evaluator(e.to_string()))?
    };
    drop(triggers);

    cancel.cancelled().await;
    let _ = systemd::notify("STOPPING=1");
    let drained = tokio::time::timeout(GRACE, async {
        while tasks.join_next().await.is_some() {}
        let _ = server.await;
    })
    .await;
    tracing::debug!("Trigger and server tasks stopped.");
    if drained.is_err() {
        tracing::warn!(grace = ?GRACE, "Tasks did not stop within the grace period; exiting anyway.");
    }
    // The evaluator finishes the re-check it is in (bounded by the inspectors' own timeouts).
    let joined = tokio::task::spawn_blocking(move || evaluator.join()).await;
    tracing::debug!("Evaluator stopped.");
    match joined {
        Ok(Ok(())) => Ok(()),
        _ => Err(RunError::Evaluator("panicked".into())),
    }
}

/// The inotify watchers the evaluator keeps current.
struct Watchers {
    files: FileWatcher,
    fim: Option<fim::FimWatcher>,
}

impl Watchers {
    fn update(&mut self, engine: &Engine) {
        self.files.update(engine.watch_targets());
        self.update_fim(engine);
    }

    fn update_fim(&mut self, engine: &Engine) {
        if let (Some(w), Some(m)) = (&mut self.fim, engine.files()) {
            w.update(&m.watch_dirs(), m.state_dir());
        }
    }
}

/// How soon an evaluation that could not be recorded is recorded again.
const STORE_RETRY: Duration = Duration::from_secs(10);

#[allow(clippy::too_many_arguments)]
fn evaluate_loop(
    mut engine: Engine,
    mut watcher: Watchers,
    mut publisher: Publisher,
    mut rx: mpsc::Receiver<Trigger>,
    overflow: Arc<std::sync::atomic::AtomicBool>,
    handle: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    cancel: CancellationToken,
) {
    // However this loop ends (cancellation, or a panic), the daemon stops with it: serving
    // stale findings as if all were well is worse than exiting and being restarted.
    let _stop_all = CancelOnDrop(cancel.clone());
    // The earliest start of a pending reboot survives restarts in the ledger.
    match publisher.ledger.reboot_pending() {
        Ok(p) => engine.set_recorded_reboot(p),
        Err(e) => tracing::warn!(error = %e, "Cannot read the pending reboot from the ledger."),
    }
    // The first check is a full one; readiness follows it.
    let took = engine.full_check();
    watcher.update(&engine);
    after_check(&metrics, "full", took);
    publisher.publish(&mut engine);
    publisher.heartbeat();
    health.first_check_done.store(true, Ordering::Relaxed);
    let _ = systemd::notify("READY=1");
    tracing::info!(
        findings = engine.findings().len(),
        took_ms = took.as_millis() as u64,
        "First check done; ready."
    );

    loop {
        // While the store cannot be written (disk full), the evaluation is recorded again every
        // STORE_RETRY even when nothing else happens, so the transitions held back reach the
        // ledger and the sinks soon after space returns.
        let retry = !health.store_writable.load(Ordering::Relaxed);
        let first = handle.block_on(async {
            tokio::select! {
                () = cancel.cancelled() => None,
                t = rx.recv() => t,
                () = tokio::time::sleep(STORE_RETRY), if retry => Some(Trigger::Reevaluate),
            }
        });
        let Some(first) = first else { return };
        // Coalesce whatever arrives within the debounce window.
        handle.block_on(async { tokio::time::sleep(DEBOUNCE).await });
        let mut pending = vec![first];
        while let Ok(t) = rx.try_recv() {
            metrics.events_coalesced.inc();
            pending.push(t);
        }
        let mut lost = overflow.swap(false, Ordering::Relaxed);
        let mut full = lost;
        let mut components: BTreeSet<&'static str> = BTreeSet::new();
        let mut heartbeat = false;
        let mut reevaluate = false;
        let mut file_paths: BTreeSet<std::path::PathBuf> = BTreeSet::new();
        let mut files_rescan: Option<&'static str> = None;
        for t in pending {
            match t {
                Trigger::Files(p) => file_paths.extend(p),
                Trigger::FilesRescan(r) => files_rescan = Some(r),
                Trigger::Full(why) => {
                    full = true;
                    lost |= why.contains("overflow");
                }
                Trigger::Heartbeat => heartbeat = true,
                Trigger::Reevaluate => reevaluate = true,
                Trigger::Components(c) => components.extend(c),
                Trigger::Reload => match engine.reload() {
                    Ok(()) => {
                        metrics
                            .baseline_reloads
                            .get_or_create(&ResultLabels {
                                result: "accepted".into(),
                            })
                            .inc();
                        tracing::info!(version = %engine.baseline_version(), "Baseline reloaded.");
                        full = true;
                    }
                    Err(e) => {
                        metrics
                            .baseline_reloads
                            .get_or_create(&ResultLabels {
                                result: "rejected".into(),
                            })
                            .inc();
                        tracing::error!(error = %e, "The new baseline is invalid and was rejected; the previous one stays in force.");
                        publisher.baseline_rejected(&e.to_string());
                    }
                },
            }
        }
        if full {
            let reason = files_rescan.unwrap_or(if lost { "overflow" } else { "timer" });
            let took = engine.full_check_for(reason);
            watcher.update(&engine);
            after_check(&metrics, "full", took);
            publisher.publish(&mut engine);
        } else if let Some(reason) = files_rescan {
            let took = engine.files_full(reason);
            watcher.update_fim(&engine);
            after_check(&metrics, "files", took);
            if !components.is_empty() {
                engine.recheck(&components);
            }
            publisher.publish(&mut engine);
        } else if !file_paths.is_empty() {
            let took = engine.files_paths(&file_paths);
            watcher.update_fim(&engine);
            after_check(&metrics, "files", took);
            if !components.is_empty() {
                engine.recheck(&components);
            }
            publisher.publish(&mut engine);
        } else if !components.is_empty() {
            let took = engine.recheck(&components);
            let scope = components.iter().copied().collect::<Vec<_>>().join(",");
            after_check(&metrics, &scope, took);
            publisher.publish(&mut engine);
        } else if reevaluate {
            publisher.publish(&mut engine);
        }
        if heartbeat {
            publisher.heartbeat();
        }
    }
}

/// Cancels the token when dropped, including during a panic's unwinding.
struct CancelOnDrop(CancellationToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("The evaluation loop panicked; stopping the agent.");
        }
        self.0.cancel();
    }
}

fn after_check(metrics: &Metrics, scope: &str, took: Duration) {
    metrics
        .scan_duration
        .get_or_create(&ScopeLabels {
            scope: scope.to_owned(),
        })
        .observe(took.as_secs_f64());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    metrics
        .last_check_timestamp
        .set(i64::try_from(now).unwrap_or(i64::MAX));
}

/// The node's name: `NODE_NAME` (the Kubernetes Node) or else this host's name.
fn node_name(config: &Config) -> String {
    config
        .kubernetes
        .node_name
        .clone()
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Follows the agent's own Node: reads it, then watches it (renewed when the API server ends a
/// watch; read again after a 410 Gone or an error, with a backoff). A label change asks for a
/// re-evaluation (the system-label check) at once. Where watching is forbidden (RBAC without
/// `watch` on nodes), the Node is read every [`LABELS_POLL`] instead.
///
/// The kubelet's version (from the Node) and the API server's (`GET /version`, asked again
/// whenever a watch is renewed, so an upgraded control plane is seen within minutes) feed the
/// version-skew check; a change asks for a re-evaluation too.
async fn follow_node(
    reader: KubeSink,
    labels: Arc<std::sync::RwLock<Option<std::collections::BTreeMap<String, String>>>>,
    versions: Arc<std::sync::RwLock<Versions>>,
    snapshot_requests: tokio::sync::watch::Sender<Option<String>>,
    triggers: Triggers,
    cancel: CancellationToken,
) {
    let mut last_request: Option<String> = None;
    let mut seen = |inputs: NodeInputs| {
        // A request made while the agent was down is seen at the first read; the ledger
        // knows whether it was answered already.
        let request = inputs.annotations.get(ANNOTATION_SNAPSHOT_REQUEST).cloned();
        if request.is_some() && request != last_request {
            last_request.clone_from(&request);
            snapshot_requests.send_replace(request);
        }
        let mut changed = labels
            .read()
            .map(|l| l.as_ref() != Some(&inputs.labels))
            .unwrap_or(false);
        if changed && let Ok(mut l) = labels.write() {
            *l = Some(inputs.labels);
        }
        if let Ok(mut v) = versions.write()
            && v.kubelet != inputs.kubelet_version
        {
            v.kubelet = inputs.kubelet_version;
            changed = true;
        }
        if changed {
            triggers.send(Trigger::Reevaluate, "kubernetes");
        }
    };
    let server_version = async || match reader.server_version().await {
        Ok(server) => {
            if let Ok(mut v) = versions.write()
                && v.api_server.as_ref() != Some(&server)
            {
                v.api_server = Some(server);
                triggers.send(Trigger::Reevaluate, "kubernetes");
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "Cannot read the API server's version; the version-skew check waits.")
        }
    };
    let mut backoff = NODE_RETRY_MIN;
    loop {
        let pause = match reader.node_inputs().await {
            Ok(inputs) => {
                let mut version = inputs.resource_version.clone();
                seen(inputs);
                server_version().await;
                loop {
                    match reader.watch_node(&version, &cancel, &mut seen).await {
                        Ok(v) => {
                            if cancel.is_cancelled() {
                                return;
                            }
                            version = v;
                            backoff = NODE_RETRY_MIN;
                            server_version().await;
                        }
                        Err(KubeSinkError::Forbidden { .. }) => break LABELS_POLL,
                        Err(e) => {
                            tracing::debug!(error = %e, "The watch of the Node ended; reading it again.");
                            backoff = (backoff * 2).min(LABELS_POLL);
                            break backoff;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "Cannot read the Node; the system-label check waits.");
                backoff = (backoff * 2).min(LABELS_POLL);
                backoff
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// A client for `url` with the endpoint's token, CA, client identity and timeout (the
/// CloudEvents sink, and snapshot uploads).
fn endpoint_config(e: &crate::config::Endpoint, url: &str) -> EndpointConfig {
    let mut ec = EndpointConfig::new(url);
    ec.token_file = e.token_file.clone();
    ec.ca_file = e.ca_file.clone();
    ec.client_cert = e.client_identity.as_ref().map(|c| c.cert.clone());
    ec.client_key = e.client_identity.as_ref().map(|c| c.key.clone());
    ec.timeout = e.timeout;
    ec
}

/// Copies a sink's counters into Prometheus every few seconds: `deltas` turns two snapshots
/// into `(outcome, increase)` pairs for `nodedrift_deliveries_total{sink, outcome}`.
async fn sync_counters<C>(
    sink: &'static str,
    snapshot: impl Fn() -> C,
    deltas: fn(&C, &C) -> Vec<(&'static str, u64)>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let mut last = snapshot();
    let mut tick = tokio::time::interval(SINK_METRICS_SYNC);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = snapshot();
        for (outcome, delta) in deltas(&last, &now) {
            if delta > 0 {
                metrics
                    .deliveries
                    .get_or_create(&DeliveryLabels {
                        sink: sink.into(),
                        outcome: outcome.into(),
                    })
                    .inc_by(delta);
            }
        }
        last = now;
    }
}

/// Increases of the endpoint sink's counters, by outcome.
fn http_deltas(a: &SinkCounters, b: &SinkCounters) -> Vec<(&'static str, u64)> {
    let mut out = vec![
        (
            "delivered",
            b.delivered_events.saturating_sub(a.delivered_events),
        ),
        (
            "dead_lettered",
            b.dead_lettered_events
                .saturating_sub(a.dead_lettered_events),
        ),
    ];
    for (reason, n) in &b.failures {
        let before = a
            .failures
            .iter()
            .find(|(r, _)| r == reason)
            .map(|(_, n)| *n)
            .unwrap_or(0);
        out.push((reason.as_str(), n.saturating_sub(before)));
    }
    out
}

/// Increases of the Kubernetes sink's counters, by outcome.
fn kube_deltas(a: &KubeCounters, b: &KubeCounters) -> Vec<(&'static str, u64)> {
    let sum = |v: &[(PatchKind, u64)]| v.iter().map(|(_, n)| *n).sum::<u64>();
    vec![
        (
            "patched",
            sum(&b.patches_ok).saturating_sub(sum(&a.patches_ok)),
        ),
        (
            "patch_failed",
            sum(&b.patches_failed).saturating_sub(sum(&a.patches_failed)),
        ),
        ("event_sent", b.events_sent.saturating_sub(a.events_sent)),
        (
            "event_deduplicated",
            b.events_deduplicated.saturating_sub(a.events_deduplicated),
        ),
        (
            "event_rate_limited",
            b.events_rate_limited.saturating_sub(a.events_rate_limited),
        ),
    ]
}
