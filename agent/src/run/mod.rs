//! `nodedrift run`: the continuous agent.
//!
//! One task per trigger source (file watcher, `/proc` poller, sysctl poller, re-check timer,
//! signals), one evaluation loop that coalesces triggers and re-checks, and one task per sink.
//! Every loop takes the same cancellation token; SIGTERM drains within the grace period.

pub mod engine;
pub mod systemd;
pub mod triggers;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::engine::{Engine, EngineError, EngineOptions};
use self::triggers::{FileWatcher, Trigger, Triggers};
use crate::host::HostRoot;
use crate::inspect;
use crate::report::metrics::{self, Health, Metrics, ResultLabels, ScopeLabels};

/// How long triggers arriving together are merged into one re-check. Short enough that a
/// change reaches the sinks well within the latency budget, long enough to fold the burst of
/// events one editor save produces (write, chmod, rename).
const DEBOUNCE: Duration = Duration::from_millis(25);

/// What `nodedrift run` needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub engine: EngineOptions,
    /// Metrics and health listen address.
    pub listen: String,
    pub proc_poll: Duration,
    pub sysctl_poll: Duration,
    pub rescan: Duration,
    pub rescan_jitter: Duration,
    /// Time allowed to drain after SIGTERM.
    pub grace: Duration,
}

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
}

impl RunError {
    /// Bad input from the operator (exit 64) rather than a failure of the agent.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Engine(EngineError::Baseline(_))
                | Self::Engine(EngineError::Host(crate::host::HostError::Root { .. }))
        )
    }
}

/// Runs the daemon until SIGTERM/SIGINT (or `cancel`).
pub async fn run(settings: Settings, cancel: CancellationToken) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    health.store_writable.store(true, Ordering::Relaxed);
    let engine = Engine::new(settings.engine.clone())?;
    tracing::info!(profile = %engine.profile().name, reason = %engine.profile().reason, host_root = %settings.engine.host_root.display(), "Starting.");

    let (addr, server) = metrics::serve(
        &settings.listen,
        metrics.clone(),
        health.clone(),
        cancel.clone(),
    )
    .await?;
    tracing::info!(%addr, "Serving /metrics, /healthz and /readyz.");

    let (triggers, rx) = Triggers::new(metrics.clone());
    let watcher = FileWatcher::new(&settings.engine.host_root, triggers.clone())?;
    let proc_host = HostRoot::new(&settings.engine.host_root).map_err(EngineError::Host)?;

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(triggers::poll_proc(
        proc_host,
        settings.proc_poll,
        triggers.clone(),
        cancel.clone(),
    ));
    tasks.spawn(triggers::poll_sysctl(
        settings.sysctl_poll,
        triggers.clone(),
        cancel.clone(),
    ));
    tasks.spawn(triggers::rescan_timer(
        settings.rescan,
        settings.rescan_jitter,
        triggers.clone(),
        cancel.clone(),
    ));
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
                    engine, watcher, rx, overflow, handle, metrics, health, cancel,
                )
            })
            .map_err(|e| RunError::Evaluator(e.to_string()))?
    };
    drop(triggers);

    cancel.cancelled().await;
    let _ = systemd::notify("STOPPING=1");
    let drained = tokio::time::timeout(settings.grace, async {
        while tasks.join_next().await.is_some() {}
        let _ = server.await;
    })
    .await;
    tracing::debug!("Trigger and server tasks stopped.");
    if drained.is_err() {
        tracing::warn!(grace = ?settings.grace, "Tasks did not stop within the grace period; exiting anyway.");
    }
    // The evaluator finishes the re-check it is in (bounded by the inspectors' own timeouts).
    let joined = tokio::task::spawn_blocking(move || evaluator.join()).await;
    tracing::debug!("Evaluator stopped.");
    match joined {
        Ok(Ok(())) => Ok(()),
        _ => Err(RunError::Evaluator("panicked".into())),
    }
}

#[allow(clippy::too_many_arguments)]
fn evaluate_loop(
    mut engine: Engine,
    mut watcher: FileWatcher,
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
    // The first check is a full one; readiness follows it.
    let took = engine.full_check();
    watcher.update(engine.watch_targets());
    after_check(&engine, &metrics, "full", took);
    health.first_check_done.store(true, Ordering::Relaxed);
    let _ = systemd::notify("READY=1");
    tracing::info!(
        findings = engine.findings().len(),
        took_ms = took.as_millis() as u64,
        "First check done; ready."
    );

    loop {
        let first = handle.block_on(async {
            tokio::select! {
                () = cancel.cancelled() => None,
                t = rx.recv() => t,
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
        let mut full = overflow.swap(false, Ordering::Relaxed);
        let mut components: BTreeSet<&'static str> = BTreeSet::new();
        for t in pending {
            match t {
                Trigger::Full(_) => full = true,
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
                    }
                },
            }
        }
        if full {
            let took = engine.full_check();
            watcher.update(engine.watch_targets());
            after_check(&engine, &metrics, "full", took);
        } else if !components.is_empty() {
            let took = engine.recheck(&components);
            let scope = components.iter().copied().collect::<Vec<_>>().join(",");
            after_check(&engine, &metrics, &scope, took);
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

fn after_check(engine: &Engine, metrics: &Metrics, scope: &str, took: Duration) {
    metrics
        .scan_duration
        .get_or_create(&ScopeLabels {
            scope: scope.to_owned(),
        })
        .observe(took.as_secs_f64());
    metrics.record_findings(engine.findings());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    metrics
        .last_check_timestamp
        .set(i64::try_from(now).unwrap_or(i64::MAX));
}

/// Defaults for the intervals (documented in the config reference).
pub fn default_settings(host_root: PathBuf) -> Settings {
    Settings {
        engine: EngineOptions {
            host_root,
            profile: None,
            baselines: Vec::new(),
            inspect: inspect::Options::default(),
        },
        listen: "0.0.0.0:9101".into(),
        proc_poll: Duration::from_secs(2),
        sysctl_poll: Duration::from_secs(10),
        rescan: Duration::from_secs(300),
        rescan_jitter: Duration::from_secs(30),
        grace: Duration::from_secs(10),
    }
}
