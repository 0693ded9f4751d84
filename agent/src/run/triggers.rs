//! Trigger sources: what makes the daemon look again, each its own task.
//!
//! * **Files** — inotify (via `notify`) on the directories holding every file an inspector
//!   read; an event maps to the component that owns the path ([`WatchTargets`]). A queue
//!   overflow (inotify's or ours) forces a full re-check, since events were lost.
//! * **`/proc`** — polled cheaply: one `readdir` of `/proc` per interval, and `comm` read only
//!   for pids not seen before, so a kubelet, containerd or kube-proxy restarted with new flags
//!   is re-inspected within one interval without reading every process's command line.
//! * **sysctls** — `/proc/sys` has no inotify: polled.
//! * **timer** — a full re-check every interval ± jitter (so a fleet does not re-check in step).
//! * **signals** — SIGHUP reloads the baseline; SIGTERM/SIGINT cancel everything.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::Watcher as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::engine::WatchTargets;
use crate::host::HostRoot;
use crate::inspect::{self, Process};
use crate::report::metrics::{Metrics, SourceLabels};

/// Why the daemon should look again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Re-inspect these components.
    Components(BTreeSet<&'static str>),
    /// Re-inspect everything (timer, lost events).
    Full(&'static str),
    /// Re-read the baseline files (SIGHUP).
    Reload,
    /// Queue a node-summary heartbeat event.
    Heartbeat,
    /// Evaluate and publish again without re-inspecting (the Node's labels changed).
    Reevaluate,
    /// Re-verify the file integrity of these host paths.
    Files(BTreeSet<PathBuf>),
    /// Re-verify every watched file (events were lost, or the store was changed by an accept).
    FilesRescan(&'static str),
}

/// Capacity of the trigger queue. Triggers coalesce, so a burst of file events needs little
/// room; when it is full the overflow flag makes the next re-check a full one.
pub const QUEUE: usize = 256;

/// The sending side shared by every trigger source.
#[derive(Debug, Clone)]
pub struct Triggers {
    tx: mpsc::Sender<Trigger>,
    /// Set when a trigger was dropped: the evaluator then does a full re-check.
    pub overflow: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl Triggers {
    pub fn new(metrics: Arc<Metrics>) -> (Self, mpsc::Receiver<Trigger>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            Self {
                tx,
                overflow: Arc::new(AtomicBool::new(false)),
                metrics,
            },
            rx,
        )
    }

    /// Counts an inotify queue overflow.
    pub fn count_overflow(&self) {
        self.metrics.inotify_overflows.inc();
    }

    /// Queues a trigger without waiting (callable from the watcher's own thread).
    pub fn send(&self, t: Trigger, source: &str) {
        self.metrics
            .events_received
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
            })
            .inc();
        if self.tx.try_send(t).is_err() {
            self.metrics.events_dropped.inc();
            self.overflow.store(true, Ordering::Relaxed);
        }
    }
}

/// The file watcher: inotify on the directories of the watch targets.
pub struct FileWatcher {
    watcher: notify::RecommendedWatcher,
    root: PathBuf,
    targets: Arc<RwLock<WatchTargets>>,
    watched: BTreeSet<PathBuf>,
}

impl std::fmt::Debug for FileWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatcher")
            .field("root", &self.root)
            .field("watched", &self.watched)
            .finish()
    }
}

impl FileWatcher {
    /// Starts the watcher; events are mapped through `targets` (updated by [`Self::update`]).
    pub fn new(root: &Path, triggers: Triggers) -> Result<Self, notify::Error> {
        let targets = Arc::new(RwLock::new(WatchTargets::default()));
        let (t, r) = (targets.clone(), root.to_path_buf());
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let event = match res {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "File watch error; forcing a full re-check.");
                    triggers.send(Trigger::Full("watch error"), "inotify");
                    return;
                }
            };
            // Only changes matter. inotify also reports opens and reads (IN_OPEN,
            // IN_CLOSE_NOWRITE), and the inspectors' own reads of the watched files would then
            // trigger re-checks that read them again, forever.
            if !changes_content(&event.kind) {
                return;
            }
            if event.need_rescan() {
                triggers.metrics.inotify_overflows.inc();
                triggers.send(Trigger::Full("inotify overflow"), "inotify");
                return;
            }
            let Ok(targets) = t.read() else { return };
            let components: BTreeSet<&'static str> = event
                .paths
                .iter()
                .filter_map(|p| p.strip_prefix(&r).ok())
                .filter_map(|rel| targets.component_of(&Path::new("/").join(rel)))
                .collect();
            if !components.is_empty() {
                triggers.send(Trigger::Components(components), "inotify");
            }
        })?;
        Ok(Self {
            watcher,
            root: root.to_path_buf(),
            targets,
            watched: BTreeSet::new(),
        })
    }

    /// Watches the directories `targets` needs and stops watching the others. A directory that
    /// does not exist is skipped (the periodic full re-check covers what appears later).
    pub fn update(&mut self, targets: WatchTargets) {
        let wanted = targets.watch_dirs();
        if let Ok(mut t) = self.targets.write() {
            *t = targets;
        }
        for gone in self
            .watched
            .difference(&wanted)
            .cloned()
            .collect::<Vec<_>>()
        {
            let _ = self.watcher.unwatch(&self.real(&gone));
            self.watched.remove(&gone);
        }
        for dir in wanted
            .difference(&self.watched)
            .cloned()
            .collect::<Vec<_>>()
        {
            let real = self.real(&dir);
            // Watch only what resolves inside the root: a symlinked directory pointing outside
            // it is not followed (reads go through HostRoot anyway; this keeps watches honest).
            let inside = real
                .canonicalize()
                .map(|c| {
                    c.starts_with(
                        self.root
                            .canonicalize()
                            .unwrap_or_else(|_| self.root.clone()),
                    )
                })
                .unwrap_or(false);
            if !inside {
                continue;
            }
            match self
                .watcher
                .watch(&real, notify::RecursiveMode::NonRecursive)
            {
                Ok(()) => {
                    self.watched.insert(dir);
                }
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), error = %e, "Not watching a directory.")
                }
            }
        }
    }

    /// The directories watched now (host paths).
    pub fn watched(&self) -> &BTreeSet<PathBuf> {
        &self.watched
    }

    fn real(&self, host_path: &Path) -> PathBuf {
        self.root
            .join(host_path.strip_prefix("/").unwrap_or(host_path))
    }
}

/// Whether an event can mean that a file's content, metadata or existence changed.
pub(super) fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};
    match kind {
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any => true,
        // A writer closing the file: the write is complete.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        // Rescan requests and the like: let the caller decide.
        EventKind::Other => true,
    }
}

/// The component a process is, by its `comm` (and `hyperkube`'s subcommand).
fn component_of_process(host: &HostRoot, pid: u32, comm: &str) -> Option<&'static str> {
    let direct = [
        inspect::kubelet::NAME,
        inspect::containerd::NAME,
        inspect::kube_proxy::NAME,
    ];
    if let Some(c) = direct.iter().find(|c| **c == comm) {
        return Some(c);
    }
    if comm != "hyperkube" {
        return None;
    }
    let argv = host
        .read(Path::new(&format!("/proc/{pid}/cmdline")), 4096)
        .map(|b| inspect::process::split_cmdline(&b))
        .ok()?;
    let p = Process {
        pid,
        argv,
        comm: comm.to_owned(),
    };
    direct.into_iter().find(|c| p.is(c))
}

/// What one `/proc` poll saw: pid → the component it is (None: not one of ours).
#[derive(Debug, Default)]
pub struct ProcState {
    known: HashMap<u32, Option<&'static str>>,
}

impl ProcState {
    /// Lists `/proc` and returns the components whose processes appeared or disappeared since
    /// the previous poll (nothing on the first one).
    pub fn poll(&mut self, host: &HostRoot) -> BTreeSet<&'static str> {
        let Ok(entries) = host.read_dir(Path::new("/proc"), 1 << 22) else {
            return BTreeSet::new();
        };
        let first = self.known.is_empty();
        let pids: BTreeSet<u32> = entries
            .iter()
            .filter_map(|e| e.name.to_str()?.parse().ok())
            .collect();
        let mut changed = BTreeSet::new();
        self.known.retain(|pid, c| {
            let alive = pids.contains(pid);
            if !alive && let Some(c) = c {
                changed.insert(*c);
            }
            alive
        });
        for pid in pids {
            if self.known.contains_key(&pid) {
                continue;
            }
            let comm = host
                .read(Path::new(&format!("/proc/{pid}/comm")), 64)
                .map(|b| String::from_utf8_lossy(&b).trim_end().to_owned())
                .unwrap_or_default();
            let c = component_of_process(host, pid, &comm);
            if let Some(c) = c {
                changed.insert(c);
            }
            self.known.insert(pid, c);
        }
        if first { BTreeSet::new() } else { changed }
    }
}

/// Polls `/proc` every `interval` until cancelled.
pub async fn poll_proc(
    host: HostRoot,
    interval: Duration,
    triggers: Triggers,
    cancel: CancellationToken,
) {
    let mut state = ProcState::default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let changed = state.poll(&host);
        if !changed.is_empty() {
            tracing::info!(components = ?changed, "A component process started or stopped; re-inspecting it.");
            triggers.send(Trigger::Components(changed), "proc");
        }
    }
}

/// Asks for a sysctl re-check every `interval` until cancelled.
pub async fn poll_sysctl(interval: Duration, triggers: Triggers, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: the initial full check covers it
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        triggers.send(
            Trigger::Components(BTreeSet::from([inspect::sysctl::NAME])),
            "sysctl",
        );
    }
}

/// Asks for a full re-check every `interval` ± `jitter` until cancelled.
pub async fn rescan_timer(
    interval: Duration,
    jitter: Duration,
    triggers: Triggers,
    cancel: CancellationToken,
) {
    loop {
        let j = jitter.as_millis() as u64;
        let offset = if j == 0 { 0 } else { fastrand::u64(0..=2 * j) };
        let wait = (interval + Duration::from_millis(offset)).saturating_sub(jitter);
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        triggers.send(Trigger::Full("timer"), "timer");
    }
}

/// Asks for a summary heartbeat every `interval` until cancelled.
pub async fn heartbeat_timer(interval: Duration, triggers: Triggers, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first one is sent after the first check
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        triggers.send(Trigger::Heartbeat, "timer");
    }
}

/// SIGHUP → reload; SIGTERM or SIGINT → cancel.
pub async fn signals(triggers: Triggers, cancel: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            _ = hup.recv() => triggers.send(Trigger::Reload, "signal"),
            _ = term.recv() => { tracing::info!("SIGTERM received; shutting down."); cancel.cancel(); }
            _ = int.recv() => { tracing::info!("SIGINT received; shutting down."); cancel.cancel(); }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: reading a watched file (as every inspection does) must not trigger a
    /// re-check, or the agent re-checks in a loop.
    #[test]
    fn reading_watched_files_triggers_nothing_but_writing_does() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/sysctl.d")).unwrap();
        let conf = dir.path().join("etc/sysctl.d/10-a.conf");
        std::fs::write(&conf, "net.ipv4.ip_forward = 1\n").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let metrics = Arc::new(Metrics::new());
        let (triggers, mut rx) = Triggers::new(metrics);
        let mut w = FileWatcher::new(dir.path(), triggers).unwrap();
        let mut t = WatchTargets::default();
        t.dirs.insert(PathBuf::from("/etc/sysctl.d"), "sysctl");
        w.update(t);
        for _ in 0..20 {
            let _ = std::fs::read_to_string(&conf).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(rx.try_recv().is_err(), "reads triggered a re-check");
        std::fs::write(&conf, "net.ipv4.ip_forward = 0\n").unwrap();
        let got =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), rx.recv()).await });
        assert_eq!(
            got.ok().flatten(),
            Some(Trigger::Components(BTreeSet::from(["sysctl"])))
        );
    }

    #[test]
    fn proc_poll_notices_a_component_starting_and_stopping() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mk = |pid: u32, comm: &str| {
            let p = root.join(format!("proc/{pid}"));
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("comm"), format!("{comm}\n")).unwrap();
        };
        mk(1, "systemd");
        mk(100, "kubelet");
        let host = HostRoot::new(root).unwrap();
        let mut s = ProcState::default();
        assert!(s.poll(&host).is_empty(), "first poll only learns");
        assert!(s.poll(&host).is_empty(), "nothing changed");
        // kubelet restarted: old pid gone, new pid present; a hyperkube kube-proxy appears.
        std::fs::remove_dir_all(root.join("proc/100")).unwrap();
        mk(101, "kubelet");
        mk(102, "hyperkube");
        std::fs::write(
            root.join("proc/102/cmdline"),
            b"/hyperkube\0kube-proxy\0--v=2\0",
        )
        .unwrap();
        mk(103, "sshd");
        let changed = s.poll(&host);
        assert_eq!(changed, BTreeSet::from(["kubelet", "kube-proxy"]));
        assert!(s.poll(&host).is_empty());
    }
}
