//! The daemon's file-integrity monitor: the first start captures the baseline, every later
//! start verifies it (changes made while the agent was down are found then), inotify events
//! re-verify just the paths they name, the rescan timer re-verifies everything stat-first, and
//! a jittered full re-hash (daily by default) catches forged timestamps.
//!
//! A change stays a finding until the file is back to its baseline state or the change is
//! accepted (`nodedrift baseline accept`, which writes the store; the monitor watches the
//! store file and re-verifies). Who made a change is asked of the attribution source at the
//! moment the change is seen, and kept with the finding.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::Watcher as _;
use serde_json::{Value, json};

use super::triggers::{Trigger, Triggers};
use crate::files::{self, Store, StoreError, VerifyOptions, WatchSpec};
use crate::finding::{Finding, Status};
use crate::host::HostRoot;
use crate::report::metrics::{Metrics, ResultLabels};

/// Who changed a file: the realtime attribution source (fanotify).
pub trait Attribute: Send + Sync + fmt::Debug {
    /// The attribution of the latest change to `path` (a host path) seen since `since`, as
    /// the JSON findings carry: `{"status": "attributed", ...}` or `{"status":
    /// "unattributed", "reason": ...}`.
    fn attribute(&self, path: &Path, since: SystemTime) -> Value;
    /// The host directories whose children to watch.
    fn watch_dirs(&self, dirs: &BTreeSet<PathBuf>);
}

/// How far back an attribution may be for the change it explains.
const ATTRIBUTION_WINDOW: Duration = Duration::from_secs(120);

/// The monitor.
#[derive(Debug)]
pub struct FileMonitor {
    host: HostRoot,
    spec: WatchSpec,
    state_dir: PathBuf,
    /// Failing and unknown findings by path (display form).
    open: BTreeMap<String, Finding>,
    store_problem: Option<Finding>,
    dirs: BTreeSet<PathBuf>,
    rehash_due: Instant,
    attributor: Option<Arc<dyn Attribute>>,
    /// Why there is no attributor.
    unattributed: String,
    metrics: Option<Arc<Metrics>>,
    tracked: usize,
    started: bool,
}

impl FileMonitor {
    pub fn new(
        host_root: &Path,
        spec: WatchSpec,
        state_dir: &Path,
    ) -> Result<Self, crate::host::HostError> {
        let due = jittered(spec.limits.rehash_interval);
        Ok(Self {
            host: HostRoot::new(host_root)?,
            spec,
            state_dir: state_dir.to_path_buf(),
            open: BTreeMap::new(),
            store_problem: None,
            dirs: BTreeSet::new(),
            rehash_due: Instant::now() + due,
            attributor: None,
            unattributed: "attribution is off".into(),
            metrics: None,
            tracked: 0,
            started: false,
        })
    }

    pub fn set_attributor(&mut self, a: Result<Arc<dyn Attribute>, String>) {
        match a {
            Ok(a) => {
                a.watch_dirs(&self.dirs);
                self.attributor = Some(a);
            }
            Err(reason) => {
                self.attributor = None;
                self.unattributed = reason;
            }
        }
    }

    pub fn set_metrics(&mut self, m: Arc<Metrics>) {
        self.metrics = Some(m);
    }

    /// Replaces the watch sets (a reloaded baseline) and re-verifies.
    pub fn set_spec(&mut self, spec: WatchSpec) {
        self.spec = spec;
        self.full("reload");
    }

    /// The first verification: captures the baseline when there is none.
    pub fn start(&mut self) {
        self.started = true;
        // Opened and closed here: the verification opens the store again.
        let captured = match Store::open(&self.state_dir) {
            Err(StoreError::NotCaptured { .. }) => false,
            Ok(s) => !matches!(s.is_captured(), Ok(false)),
            Err(_) => true, // let the verification report it
        };
        if !captured {
            return self.capture();
        }
        self.verify(None, false, "start", &|_| {
            json!({"status": "unattributed", "reason": "changed while the agent was not running (found at start)"})
        });
    }

    fn capture(&mut self) {
        let result = Store::create(&self.state_dir)
            .and_then(|s| files::capture(&self.host, &self.spec, &s, None));
        match result {
            Ok(r) => {
                tracing::info!(entries = r.entries, hashed = r.hashed, digest = %r.store.digest, took_ms = r.duration.as_millis() as u64, "Captured the file-integrity baseline (first start).");
                for m in &r.metadata_only {
                    tracing::warn!(path = %m, "Larger than the hashing cap: tracked by metadata only.");
                }
                self.count("capture");
                self.verify(None, false, "start", &|_| json!(null));
            }
            Err(e) => self.store_failed(e),
        }
    }

    /// Re-verifies everything, stat-first (or re-hashing everything when the re-hash is due).
    pub fn full(&mut self, reason: &'static str) {
        if !self.started {
            return self.start();
        }
        let rehash = Instant::now() >= self.rehash_due;
        if rehash {
            self.rehash_due = Instant::now() + jittered(self.spec.limits.rehash_interval);
        }
        let reason = if rehash { "rehash" } else { reason };
        self.verify(None, rehash, reason, &|_| Value::Null);
    }

    /// Re-verifies the given host paths (a realtime event).
    pub fn paths(&mut self, paths: &BTreeSet<PathBuf>) {
        let relevant: Vec<PathBuf> = paths
            .iter()
            .filter(|p| {
                self.spec.govern(p).is_some()
                    || self.spec.descend(p)
                    || self.open.contains_key(&crate::host::display(p))
            })
            .cloned()
            .collect();
        if relevant.is_empty() {
            return;
        }
        self.verify(Some(relevant), false, "event", &|_| Value::Null);
    }

    fn verify(
        &mut self,
        only: Option<Vec<PathBuf>>,
        rehash: bool,
        reason: &'static str,
        fixed: &dyn Fn(&Path) -> Value,
    ) {
        // The first verification and each full re-hash open the store read-write, which checks
        // redb's page checksums; the others read it without writing to it.
        let opened = if reason == "start" || rehash {
            Store::open(&self.state_dir)
        } else {
            Store::open_read_only(&self.state_dir)
        };
        let store = match opened {
            Ok(s) => s,
            Err(e) => return self.store_failed(e),
        };
        let opts = VerifyOptions {
            rehash_all: rehash,
            only: only.clone(),
            bytes_per_sec: if rehash {
                self.spec.limits.rehash_bytes_per_sec
            } else {
                0
            },
        };
        let v = match files::verify::verify(&self.host, &self.spec, &store, &opts) {
            Ok(v) => v,
            Err(e) => return self.store_failed(e),
        };
        self.store_problem = None;
        if only.is_none() {
            self.count(reason);
            self.tracked = v.entries;
            let mut dirs: BTreeSet<PathBuf> = v.dirs.iter().cloned().collect();
            for root in self.spec.roots() {
                // The parent of every root, so a root that is a file (or is replaced) is seen.
                let mut anc = root.parent().map(Path::to_path_buf);
                while let Some(a) = anc {
                    if self.host.open_dir(&a).is_ok() {
                        dirs.insert(a);
                        break;
                    }
                    anc = a.parent().map(Path::to_path_buf);
                }
            }
            self.dirs = dirs;
            if let Some(a) = &self.attributor {
                a.watch_dirs(&self.dirs);
            }
        } else {
            // A new directory appeared below a watched one: watch it too.
            for d in &v.dirs {
                self.dirs.insert(d.clone());
            }
        }
        if let Some(m) = &self.metrics {
            m.files_hashed_bytes.inc_by(v.hashed_bytes);
        }
        let attributor = self.attributor.clone();
        let unattributed = self.unattributed.clone();
        let realtime = |p: &Path| -> Value {
            let f = fixed(p);
            if !f.is_null() {
                return f;
            }
            match &attributor {
                Some(a) => a.attribute(p, SystemTime::now() - ATTRIBUTION_WINDOW),
                None => json!({"status": "unattributed", "reason": unattributed}),
            }
        };
        let fresh = files::findings(&self.spec, &v, Some(&store), Some(&self.host), &realtime);
        drop(store);
        // Take out what this verification covered; keep the rest.
        let mut covered = BTreeMap::new();
        match &only {
            None => covered = std::mem::take(&mut self.open),
            Some(paths) => {
                let keys: Vec<String> = self
                    .open
                    .keys()
                    .filter(|k| paths.iter().any(|p| Path::new(k).starts_with(p)))
                    .cloned()
                    .collect();
                for k in keys {
                    if let Some(f) = self.open.remove(&k) {
                        covered.insert(k, f);
                    }
                }
            }
        }
        let detected = crate::clock::rfc3339(SystemTime::now());
        for mut f in fresh.into_iter().filter(|f| f.status != Status::Pass) {
            if let Some(old) = covered.remove(&f.path)
                && old.actual == f.actual
                && old.status == f.status
            {
                // The same change seen again: keep when and by whom it was first seen.
                self.open.insert(f.path.clone(), old);
                continue;
            }
            if let Some(d) = f.detail.as_mut() {
                d["detectedAt"] = json!(detected);
            }
            self.open.insert(f.path.clone(), f);
        }
        if let Some(m) = &self.metrics {
            m.files_tracked
                .set(i64::try_from(self.tracked).unwrap_or(i64::MAX));
            let changed = self
                .open
                .values()
                .filter(|f| f.status == Status::Fail)
                .count();
            m.files_changed
                .set(i64::try_from(changed).unwrap_or(i64::MAX));
        }
    }

    fn store_failed(&mut self, e: StoreError) {
        if e.is_integrity() {
            tracing::error!(error = %e, "The file-integrity store cannot be trusted; file changes are not verified until it is re-captured.");
            self.store_problem = Some(files::store_finding(&e));
        } else {
            tracing::warn!(error = %e, "File integrity could not be verified this time.");
        }
    }

    fn count(&self, reason: &str) {
        if let Some(m) = &self.metrics {
            m.file_rescans
                .get_or_create(&ResultLabels {
                    result: reason.to_owned(),
                })
                .inc();
        }
    }

    /// The findings now: one per changed or unreadable path, a pass per quiet watch set, or
    /// the store problem.
    pub fn findings(&self) -> Vec<Finding> {
        if let Some(p) = &self.store_problem {
            return vec![p.clone()];
        }
        let mut out: Vec<Finding> = self.open.values().cloned().collect();
        let busy: BTreeSet<String> = out.iter().map(|f| f.rule.clone()).collect();
        out.extend(
            files::pass_findings(&self.spec)
                .into_iter()
                .filter(|f| !busy.contains(&f.rule)),
        );
        out
    }

    /// Host directories realtime watching must cover, plus the state directory (an accept
    /// writes the store there).
    pub fn watch_dirs(&self) -> BTreeSet<PathBuf> {
        self.dirs.clone()
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

/// `d` plus up to 10% at random.
fn jittered(d: Duration) -> Duration {
    d + d.mul_f64(fastrand::f64() * 0.1)
}

/// inotify on the watched directories (non-recursive each: `/var/lib/kubelet/pods` and the
/// like are never watched) and on the state directory.
pub struct FimWatcher {
    watcher: notify::RecommendedWatcher,
    root: PathBuf,
    watched: BTreeSet<PathBuf>,
    /// Directories inotify refused (a path beyond PATH_MAX, the watch limit): retried on every
    /// update, warned about once.
    unwatchable: BTreeSet<PathBuf>,
}

impl fmt::Debug for FimWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FimWatcher")
            .field("root", &self.root)
            .field("watched", &self.watched.len())
            .finish()
    }
}

impl FimWatcher {
    pub fn new(root: &Path, state_dir: &Path, triggers: Triggers) -> Result<Self, notify::Error> {
        let r = root.to_path_buf();
        let store_file = Store::file(state_dir);
        let state = state_dir.to_path_buf();
        // Overflow re-verifications at most once a second: a re-verification opens the
        // watched directories, and inotify queues those opens too, so with a tiny queue
        // (fs.inotify.max_queued_events) one re-verification could overflow it again. A
        // throttled overflow marks the next re-check as a full one instead.
        let last_overflow = std::sync::Mutex::new(None::<Instant>);
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let event = match res {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "File-integrity watch error; re-verifying everything.");
                    triggers.send(Trigger::FilesRescan("watch error"), "inotify-files");
                    return;
                }
            };
            if event.need_rescan() {
                triggers.count_overflow();
                let Ok(mut last) = last_overflow.lock() else {
                    return;
                };
                if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                    triggers
                        .overflow
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                *last = Some(Instant::now());
                tracing::warn!(
                    "inotify queue overflow: events were lost; re-verifying every watched file."
                );
                triggers.send(Trigger::FilesRescan("overflow"), "inotify-files");
                return;
            }
            if !super::triggers::changes_content(&event.kind) {
                return;
            }
            if event.paths.iter().any(|p| p.starts_with(&store_file)) {
                triggers.send(Trigger::FilesRescan("accept"), "inotify-files");
                return;
            }
            let paths: BTreeSet<PathBuf> = event
                .paths
                .iter()
                // The state directory is watched for the store only (the ledger beside it is
                // written on every evaluation).
                .filter(|p| p.parent() != Some(state.as_path()))
                .filter_map(|p| p.strip_prefix(&r).ok())
                .map(|rel| Path::new("/").join(rel))
                .collect();
            if !paths.is_empty() {
                triggers.send(Trigger::Files(paths), "inotify-files");
            }
        })?;
        Ok(Self {
            watcher,
            root: root.to_path_buf(),
            watched: BTreeSet::new(),
            unwatchable: BTreeSet::new(),
        })
    }

    /// Watches `dirs` (host paths) and the state directory (a real path), unwatching others.
    pub fn update(&mut self, dirs: &BTreeSet<PathBuf>, state_dir: &Path) {
        let mut wanted: BTreeSet<PathBuf> = dirs
            .iter()
            .map(|d| self.root.join(d.strip_prefix("/").unwrap_or(d)))
            .collect();
        wanted.insert(state_dir.to_path_buf());
        self.unwatchable.retain(|d| wanted.contains(d));
        for gone in self
            .watched
            .difference(&wanted)
            .cloned()
            .collect::<Vec<_>>()
        {
            let _ = self.watcher.unwatch(&gone);
            self.watched.remove(&gone);
        }
        for dir in wanted
            .difference(&self.watched)
            .cloned()
            .collect::<Vec<_>>()
        {
            match self
                .watcher
                .watch(&dir, notify::RecursiveMode::NonRecursive)
            {
                Ok(()) => {
                    self.unwatchable.remove(&dir);
                    self.watched.insert(dir);
                }
                Err(e) => {
                    if !self.unwatchable.contains(&dir) {
                        tracing::warn!(dir = %dir.display(), error = %e, "Cannot watch a directory: its changes are found by the periodic re-verification only.");
                        self.unwatchable.insert(dir);
                    }
                }
            }
        }
    }

    pub fn watched(&self) -> usize {
        self.watched.len()
    }
}

/// The attribution source the config asks for: fanotify where the kernel allows it.
pub fn attributor(
    toggle: crate::config::Toggle,
    host_root: &Path,
) -> Result<Arc<dyn Attribute>, String> {
    use crate::config::Toggle;
    if toggle == Toggle::Off {
        return Err("attribution is off (files.attribution: false)".into());
    }
    let host = HostRoot::new(host_root).map_err(|e| e.to_string())?;
    match crate::attrib::Attributor::start(Arc::new(host)) {
        Ok(a) => {
            tracing::info!("Attributing file changes to processes (fanotify).");
            Ok(Arc::new(Fanotify {
                inner: a,
                root: host_root.to_path_buf(),
            }))
        }
        Err(e) => {
            if toggle == Toggle::On {
                tracing::warn!(reason = %e, "files.attribution is true but fanotify is unavailable; changes are reported unattributed.");
            } else {
                tracing::info!(reason = %e, "fanotify is unavailable; file changes are reported unattributed.");
            }
            Err(format!("fanotify unavailable: {e}"))
        }
    }
}

/// [`crate::attrib::Attributor`] seen through host paths.
#[derive(Debug)]
struct Fanotify {
    inner: crate::attrib::Attributor,
    root: PathBuf,
}

impl Fanotify {
    fn real(&self, host_path: &Path) -> PathBuf {
        self.root
            .join(host_path.strip_prefix("/").unwrap_or(host_path))
    }
}

impl Attribute for Fanotify {
    fn attribute(&self, path: &Path, since: SystemTime) -> Value {
        serde_json::to_value(self.inner.attribute(&self.real(path), since)).unwrap_or(Value::Null)
    }

    fn watch_dirs(&self, dirs: &BTreeSet<PathBuf>) {
        let real: BTreeSet<PathBuf> = dirs.iter().map(|d| self.real(d)).collect();
        for (dir, error) in self.inner.set_dirs(&real) {
            tracing::debug!(dir = %dir.display(), %error, "Cannot mark a directory for attribution.");
        }
    }
}
