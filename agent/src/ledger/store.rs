//! The ledger's file store: opening `<state dir>/nodedrift.redb`, its schema, and the finding
//! and reboot lifecycles (the outbox is in `outbox.rs`).
//!
//! One redb write transaction per call: a call either commits everything it changed or
//! nothing, so a crash never leaves half an evaluation behind. After an I/O error (a full disk)
//! redb refuses every later transaction on the same handle; the ledger then drops the handle and
//! reopens the file on the next call, which runs redb's recovery, so writing resumes as soon as
//! the disk has room again.

use std::collections::HashSet;
use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use super::outbox::OutboxLimits;
use super::{Change, FindingKey, Transition};
use crate::finding::{Finding, Status};
use crate::report::cloudevents::CloudEvent;

/// The store's file name inside the state directory.
pub const FILE_NAME: &str = "nodedrift.redb";

/// The schema this build writes. Bump it together with a new entry in [`MIGRATIONS`].
pub const SCHEMA_VERSION: u64 = 1;

/// Migrations from version `i + 1` to `i + 2`, applied in order inside the opening transaction.
/// Empty: version 1 is the first schema.
const MIGRATIONS: &[Migration] = &[];

/// One schema migration, run inside the opening write transaction.
type Migration = fn(&WriteTransaction) -> Result<(), redb::Error>;

/// Page cache redb may use. Its default (1 GiB) suits a database server, not a node agent whose
/// store holds at most a few thousand findings and the bounded outbox.
pub(super) const CACHE_BYTES: usize = 8 << 20;

/// `meta`: schema version and counters.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new(META_NAME);
const META_NAME: &str = "meta";
/// `open_findings`: (rule, path) → JSON [`OpenFinding`].
pub(super) const OPEN_FINDINGS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("open_findings");
/// `generations`: (rule, path) → how many times the key has been opened. Kept after a finding
/// resolves, so the next open gets a new generation (and new event ids).
const GENERATIONS: TableDefinition<(&str, &str), u64> = TableDefinition::new("generations");
/// `times`: named Unix times (the reboot-pending start).
pub(super) const TIMES: TableDefinition<&str, i64> = TableDefinition::new("times");

/// `texts`: named strings (the boot id the pending reboot was recorded in).
pub(super) const TEXTS: TableDefinition<&str, &str> = TableDefinition::new("texts");

pub(super) const KEY_SCHEMA_VERSION: &str = "schema_version";
pub(super) const KEY_REBOOT_SINCE: &str = "reboot_pending_since";
pub(super) const KEY_REBOOT_BOOT_ID: &str = "reboot_pending_boot_id";
/// JSON [`RebootDetail`] of the pending reboot.
pub(super) const KEY_REBOOT_DETAIL: &str = "reboot_pending_detail";
/// In `texts`: JSON list of the snapshot request ids already taken, newest last.
const KEY_SNAPSHOT_IDS: &str = "snapshot_ids";
/// How many snapshot request ids are remembered.
pub const SNAPSHOT_IDS_KEPT: usize = 256;
/// In `meta`: the number of the current (or last) pending period.
pub(super) const KEY_REBOOT_GENERATION: &str = "reboot_generation";

/// A ledger that cannot be opened, read or written. Every variant names the store file.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{path}: cannot create the state directory: {source}")]
    StateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: cannot open the ledger: {source}")]
    Open {
        path: String,
        source: redb::DatabaseError,
    },
    #[error(
        "{path}: ledger schema version {found} is newer than this build supports \
         ({supported}); run a newer nodedrift or move the file away"
    )]
    NewerSchema {
        path: String,
        found: u64,
        supported: u64,
    },
    #[error("{path}: not a nodedrift ledger (it has tables {tables} but no schema version)")]
    Foreign { path: String, tables: String },
    #[error("{path}: {source}")]
    Storage { path: String, source: redb::Error },
    #[error("{path}: record {record}: {source}")]
    Record {
        path: String,
        record: String,
        source: serde_json::Error,
    },
    #[error("{path}: the ledger could not be reopened after an earlier I/O error")]
    Closed { path: String },
    #[error(
        "{path}: held open by another process (the running agent); it can be read only through \
         that process's handle"
    )]
    Busy { path: String },
}

impl LedgerError {
    /// Whether the error came from the file system (disk full, I/O error): the store handle must
    /// be reopened before it can be used again.
    fn is_io(&self) -> bool {
        matches!(
            self,
            Self::Storage {
                source: redb::Error::Io(_) | redb::Error::PreviousIo,
                ..
            }
        )
    }
}

/// A finding that is currently open (failing), as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenFinding {
    pub key: FindingKey,
    /// The finding as last seen failing.
    pub finding: Finding,
    /// Unix seconds this open period began.
    pub opened_at: i64,
    /// Unix seconds of the last evaluation that saw it failing.
    pub last_seen: i64,
    /// Evaluations that saw it failing in this open period.
    pub occurrences: u64,
    /// How many times the key has been opened, this period included.
    pub generation: u64,
}

/// What [`Ledger::record`] committed.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub transitions: Vec<Transition>,
    /// The reboot change, when a reboot state was given.
    pub reboot: Option<RebootChange>,
    pub pushed: super::PushOutcome,
}

/// Whether a reboot is pending, as one evaluation observed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebootState {
    pub pending: bool,
    /// When the evidence says the need started (a marker's mtime, a file's install time).
    pub since: Option<i64>,
    /// The running boot (`/proc/sys/kernel/random/boot_id`), when known.
    pub boot_id: Option<String>,
    /// Why (`PackageUpdate`, `KernelUpdate`, ...) and the packages named, while pending.
    pub reasons: Vec<String>,
    pub packages: Vec<String>,
}

/// The reasons and packages of a pending reboot, as last recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootDetail {
    pub reasons: Vec<String>,
    pub packages: Vec<String>,
}

/// A pending reboot as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReboot {
    /// Unix seconds.
    pub since: i64,
    /// The boot it was recorded in, when known.
    pub boot_id: Option<String>,
}

/// What [`Ledger::set_reboot_pending`] changed. `generation` numbers the pending periods
/// (1, 2, ...), so the events of each have their own ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebootChange {
    /// A reboot became pending (it was not before); `since` is the time recorded.
    Started { since: i64, generation: u64 },
    /// The node rebooted, yet a reboot is still required (booted into the old kernel, or new
    /// updates arrived): the start is re-dated from the current evidence. `previous` was the
    /// start before the reboot.
    Restarted {
        since: i64,
        previous: i64,
        generation: u64,
    },
    /// Still pending, but the reasons or packages changed (say, `.pkgs` grew during an
    /// upgrade, or a kernel reason joined the marker).
    Updated { since: i64, generation: u64 },
    /// The pending reboot happened (or its marker disappeared); `since` was its start, and
    /// `detail` what was last recorded as pending.
    Cleared {
        since: i64,
        generation: u64,
        detail: RebootDetail,
    },
    /// Nothing changed state (an earlier trustworthy `since` may still have been recorded).
    Unchanged,
}

/// The embedded store. `Send + Sync`: share it with an `Arc`; calls serialize on redb's single
/// writer and never block readers.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    pub(super) limits: OutboxLimits,
    db: RwLock<Option<Database>>,
    /// Set after an I/O error: the next call reopens the file first.
    needs_reopen: AtomicBool,
}

impl Ledger {
    /// Opens (or creates) `<state_dir>/nodedrift.redb` with the default outbox limits.
    pub fn open(state_dir: &Path) -> Result<Self, LedgerError> {
        Self::open_with(state_dir, OutboxLimits::default())
    }

    /// Opens (or creates) the store. The state directory is created with mode 0700 when
    /// missing, the file with 0600. A file that is not a redb database, is corrupt, is locked by
    /// another process, or carries a newer schema is an error naming it: it is never recreated.
    pub fn open_with(state_dir: &Path, limits: OutboxLimits) -> Result<Self, LedgerError> {
        let path = state_dir.join(FILE_NAME);
        if !state_dir.is_dir() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(state_dir)
                .map_err(|source| LedgerError::StateDir {
                    path: state_dir.display().to_string(),
                    source,
                })?;
        }
        let db = open_database(&path)?;
        Ok(Self {
            path,
            limits,
            db: RwLock::new(Some(db)),
            needs_reopen: AtomicBool::new(false),
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies one evaluation and returns the lifecycle transitions, in order: first those of
    /// `findings` (in their order), then the keys resolved because they disappeared (by key).
    ///
    /// `scope` names the components that were evaluated (`None`: all of them). Open findings
    /// of other components are left untouched, so a partial re-check of one component does not
    /// resolve the others. A key given twice counts once (its first occurrence).
    pub fn apply(
        &self,
        findings: &[Finding],
        scope: Option<&[&str]>,
        now: i64,
    ) -> Result<Vec<Transition>, LedgerError> {
        self.write(|txn| self.apply_txn(txn, findings, scope, now))
    }

    /// Every open finding, by key.
    pub fn open_findings(&self) -> Result<Vec<OpenFinding>, LedgerError> {
        self.read(|txn| {
            let open = txn.open_table(OPEN_FINDINGS)?;
            let mut out = Vec::new();
            for entry in open.iter()? {
                let (k, v) = entry?;
                let (rule, path) = k.value();
                out.push(self.decode(rule, path, v.value())?);
            }
            Ok(out)
        })
    }

    /// Unix seconds since when a reboot is pending, if one is.
    pub fn reboot_pending_since(&self) -> Result<Option<i64>, LedgerError> {
        Ok(self.reboot_pending()?.map(|p| p.since))
    }

    /// Claims a snapshot request id: true the first time, false when it was taken before (a
    /// request id is never run twice, across restarts; the last [`SNAPSHOT_IDS_KEPT`] ids are
    /// remembered).
    pub fn snapshot_claim(&self, id: &str) -> Result<bool, LedgerError> {
        self.write(|txn| {
            let mut texts = txn.open_table(TEXTS)?;
            let mut ids: Vec<String> = texts
                .get(KEY_SNAPSHOT_IDS)?
                .and_then(|v| serde_json::from_str(v.value()).ok())
                .unwrap_or_default();
            if ids.iter().any(|i| i == id) {
                return Ok(false);
            }
            ids.push(id.to_owned());
            let extra = ids.len().saturating_sub(SNAPSHOT_IDS_KEPT);
            ids.drain(..extra);
            let json = serde_json::to_string(&ids).map_err(|source| LedgerError::Record {
                path: self.path_str(),
                record: format!("texts[{KEY_SNAPSHOT_IDS}]"),
                source,
            })?;
            texts.insert(KEY_SNAPSHOT_IDS, json.as_str())?;
            Ok(true)
        })
    }

    /// The pending reboot as recorded: its start and the boot id it was recorded in.
    pub fn reboot_pending(&self) -> Result<Option<PendingReboot>, LedgerError> {
        self.read(|txn| {
            let times = txn.open_table(TIMES)?;
            let Some(since) = times.get(KEY_REBOOT_SINCE)?.map(|v| v.value()) else {
                return Ok(None);
            };
            let texts = txn.open_table(TEXTS)?;
            let boot_id = texts.get(KEY_REBOOT_BOOT_ID)?.map(|v| v.value().to_owned());
            Ok(Some(PendingReboot { since, boot_id }))
        })
    }

    /// Records whether a reboot is pending. `since` is the start the evidence shows (for
    /// instance the marker file's mtime); it is trusted only when it is not in the future
    /// (`since <= now`), else `now` (first seen) is used. While a reboot stays pending within
    /// one boot, the earliest trusted start is kept: a later marker rewrite does not move it
    /// forward, and an agent restart does not either. It is cleared when no reason remains (the
    /// marker removed, the reboot done). When the boot id changed but a reboot is still
    /// pending, the start is re-dated from the current evidence ([`RebootChange::Restarted`]).
    pub fn set_reboot_pending(
        &self,
        state: &RebootState,
        now: i64,
    ) -> Result<RebootChange, LedgerError> {
        self.write(|txn| self.reboot_txn(txn, state, now))
    }

    /// Applies one evaluation (as [`Ledger::apply`]) and the reboot state (as
    /// [`Ledger::set_reboot_pending`], when given), and queues the events `events` derives from
    /// what changed, all in ONE transaction: a transition is never committed without its
    /// events, so a crash at any moment loses no event (at-least-once), and a transition that
    /// was not committed is found again by the next evaluation.
    pub fn record(
        &self,
        findings: &[Finding],
        scope: Option<&[&str]>,
        reboot: Option<&RebootState>,
        now: i64,
        events: impl FnOnce(&[Transition], Option<&RebootChange>) -> Vec<CloudEvent>,
    ) -> Result<Recorded, LedgerError> {
        self.write(|txn| {
            let transitions = self.apply_txn(txn, findings, scope, now)?;
            let reboot = reboot
                .map(|state| self.reboot_txn(txn, state, now))
                .transpose()?;
            let queued = events(&transitions, reboot.as_ref());
            let pushed = self.push_txn(txn, &queued, now)?;
            Ok(Recorded {
                transitions,
                reboot,
                pushed,
            })
        })
    }

    /// The body of [`Ledger::apply`], inside a caller's write transaction.
    pub(super) fn apply_txn(
        &self,
        txn: &WriteTransaction,
        findings: &[Finding],
        scope: Option<&[&str]>,
        now: i64,
    ) -> Result<Vec<Transition>, LedgerError> {
        let mut open = txn.open_table(OPEN_FINDINGS)?;
        let mut generations = txn.open_table(GENERATIONS)?;
        let mut transitions = Vec::new();
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        for f in findings {
            let k = (f.rule.as_str(), f.path.as_str());
            if !seen.insert(k) {
                continue;
            }
            let current: Option<OpenFinding> = match open.get(k)? {
                Some(v) => Some(self.decode(&f.rule, &f.path, v.value())?),
                None => None,
            };
            match (f.status, current) {
                (Status::Fail, Some(mut rec)) => {
                    rec.finding = f.clone();
                    rec.last_seen = now;
                    rec.occurrences += 1;
                    open.insert(k, self.encode(&rec)?.as_slice())?;
                }
                (Status::Fail, None) => {
                    let generation = generations.get(k)?.map(|g| g.value()).unwrap_or(0) + 1;
                    generations.insert(k, generation)?;
                    let rec = OpenFinding {
                        key: FindingKey::of(f),
                        finding: f.clone(),
                        opened_at: now,
                        last_seen: now,
                        occurrences: 1,
                        generation,
                    };
                    open.insert(k, self.encode(&rec)?.as_slice())?;
                    transitions.push(transition(Change::Opened, rec, None));
                }
                (Status::Pass, Some(rec)) => {
                    open.remove(k)?;
                    let rec = OpenFinding {
                        finding: f.clone(),
                        ..rec
                    };
                    transitions.push(transition(Change::Resolved, rec, Some(now)));
                }
                // Unknown is not healthy: an open finding stays open, unchanged. Passing or
                // unknown findings that are not open have no lifecycle.
                (Status::Unknown, _) | (Status::Pass, None) => {}
            }
        }
        let mut gone = Vec::new();
        for entry in open.iter()? {
            let (k, v) = entry?;
            let (rule, path) = k.value();
            if seen.contains(&(rule, path)) {
                continue;
            }
            let rec = self.decode(rule, path, v.value())?;
            let in_scope = scope.is_none_or(|s| s.contains(&rec.finding.component.as_str()));
            if in_scope {
                gone.push(rec);
            }
        }
        for rec in gone {
            open.remove((rec.key.rule.as_str(), rec.key.path.as_str()))?;
            transitions.push(transition(Change::Resolved, rec, Some(now)));
        }
        Ok(transitions)
    }

    /// The body of [`Ledger::set_reboot_pending`], inside a caller's write transaction.
    pub(super) fn reboot_txn(
        &self,
        txn: &WriteTransaction,
        state: &RebootState,
        now: i64,
    ) -> Result<RebootChange, LedgerError> {
        let observed = state.since.filter(|s| *s <= now);
        let mut times = txn.open_table(TIMES)?;
        let mut texts = txn.open_table(TEXTS)?;
        let mut meta = txn.open_table(META)?;
        let stored = times.get(KEY_REBOOT_SINCE)?.map(|v| v.value());
        let stored_boot = texts.get(KEY_REBOOT_BOOT_ID)?.map(|v| v.value().to_owned());
        // A detail that does not decode (written by a future build) is treated as absent.
        let stored_detail: Option<RebootDetail> = texts
            .get(KEY_REBOOT_DETAIL)?
            .and_then(|v| serde_json::from_str(v.value()).ok());
        let generation = meta.get(KEY_REBOOT_GENERATION)?.map_or(0, |v| v.value());
        let rebooted = matches!((&stored_boot, &state.boot_id), (Some(a), Some(b)) if a != b);
        let detail = RebootDetail {
            reasons: state.reasons.clone(),
            packages: state.packages.clone(),
        };
        let change = match (state.pending, stored) {
            (true, None) => {
                let since = observed.unwrap_or(now);
                times.insert(KEY_REBOOT_SINCE, since)?;
                meta.insert(KEY_REBOOT_GENERATION, generation + 1)?;
                RebootChange::Started {
                    since,
                    generation: generation + 1,
                }
            }
            (true, Some(previous)) if rebooted => {
                let since = observed.unwrap_or(now);
                times.insert(KEY_REBOOT_SINCE, since)?;
                meta.insert(KEY_REBOOT_GENERATION, generation + 1)?;
                RebootChange::Restarted {
                    since,
                    previous,
                    generation: generation + 1,
                }
            }
            (true, Some(old)) => {
                let since = match observed.filter(|s| *s < old) {
                    Some(s) => {
                        times.insert(KEY_REBOOT_SINCE, s)?;
                        s
                    }
                    None => old,
                };
                match &stored_detail {
                    Some(d) if *d != detail => RebootChange::Updated { since, generation },
                    _ => RebootChange::Unchanged,
                }
            }
            (false, Some(since)) => {
                times.remove(KEY_REBOOT_SINCE)?;
                texts.remove(KEY_REBOOT_BOOT_ID)?;
                texts.remove(KEY_REBOOT_DETAIL)?;
                RebootChange::Cleared {
                    since,
                    generation,
                    detail: stored_detail.clone().unwrap_or_default(),
                }
            }
            (false, None) => RebootChange::Unchanged,
        };
        if state.pending {
            if let Some(id) = &state.boot_id
                && stored_boot.as_deref() != Some(id.as_str())
            {
                texts.insert(KEY_REBOOT_BOOT_ID, id.as_str())?;
            }
            if stored_detail.as_ref() != Some(&detail) {
                let json =
                    serde_json::to_string(&detail).map_err(|source| LedgerError::Record {
                        path: self.path_str(),
                        record: format!("texts[{KEY_REBOOT_DETAIL}]"),
                        source,
                    })?;
                texts.insert(KEY_REBOOT_DETAIL, json.as_str())?;
            }
        }
        Ok(change)
    }

    /// Runs `f` in one write transaction and commits it; on any error nothing is committed.
    pub(super) fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        self.with_db(|db| {
            let txn = db.begin_write().map_err(|e| self.storage(e))?;
            let out = f(&txn)?;
            txn.commit().map_err(|e| self.storage(e))?;
            Ok(out)
        })
    }

    /// Runs `f` in one read transaction (a consistent snapshot).
    pub(super) fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| self.storage(e))?;
            f(&txn)
        })
    }

    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        if self.needs_reopen.load(Ordering::Acquire) {
            self.reopen()?;
        }
        let guard = self.db_read();
        let db = guard.as_ref().ok_or_else(|| LedgerError::Closed {
            path: self.path_str(),
        })?;
        let out = f(db).map_err(|e| self.context(e));
        if let Err(e) = &out
            && e.is_io()
        {
            tracing::warn!(path = %self.path.display(), error = %e, "Ledger I/O failed; the store is reopened before the next call.");
            self.needs_reopen.store(true, Ordering::Release);
        }
        out
    }

    /// Drops the failed handle and opens the file again (redb recovers the last commit).
    fn reopen(&self) -> Result<(), LedgerError> {
        let mut guard = self.db.write().unwrap_or_else(|p| p.into_inner());
        if !self.needs_reopen.load(Ordering::Acquire) {
            return Ok(());
        }
        // The old handle holds the file lock: it must be gone before the file is opened again.
        drop(guard.take());
        let db = open_database(&self.path)?;
        *guard = Some(db);
        self.needs_reopen.store(false, Ordering::Release);
        tracing::info!(path = %self.path.display(), "Ledger reopened after an I/O error.");
        Ok(())
    }

    fn db_read(&self) -> RwLockReadGuard<'_, Option<Database>> {
        // A panic while holding the lock cannot leave the Database inconsistent (redb's own
        // transactions guard that), so a poisoned lock is still usable.
        self.db.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn path_str(&self) -> String {
        self.path.display().to_string()
    }

    pub(super) fn storage(&self, e: impl Into<redb::Error>) -> LedgerError {
        LedgerError::Storage {
            path: self.path_str(),
            source: e.into(),
        }
    }

    /// Fills in the path of errors raised by `?` on redb calls inside transactions.
    fn context(&self, e: LedgerError) -> LedgerError {
        match e {
            LedgerError::Storage { path, source } if path.is_empty() => self.storage(source),
            e => e,
        }
    }

    fn decode(&self, rule: &str, path: &str, bytes: &[u8]) -> Result<OpenFinding, LedgerError> {
        serde_json::from_slice(bytes).map_err(|source| LedgerError::Record {
            path: self.path_str(),
            record: format!("open_findings[{rule} {path}]"),
            source,
        })
    }

    fn encode(&self, rec: &OpenFinding) -> Result<Vec<u8>, LedgerError> {
        serde_json::to_vec(rec).map_err(|source| LedgerError::Record {
            path: self.path_str(),
            record: format!("open_findings[{} {}]", rec.key.rule, rec.key.path),
            source,
        })
    }
}

/// Lets `?` turn redb errors inside transactions into [`LedgerError::Storage`];
/// [`Ledger::with_db`] fills in the path.
macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for LedgerError {
            fn from(e: $t) -> Self {
                Self::Storage { path: String::new(), source: e.into() }
            }
        }
    )*};
}
storage_from!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError
);

fn transition(change: Change, rec: OpenFinding, resolved_at: Option<i64>) -> Transition {
    Transition {
        change,
        key: rec.key,
        finding: rec.finding,
        opened_at: rec.opened_at,
        resolved_at,
        occurrences: rec.occurrences,
        generation: rec.generation,
    }
}

/// Opens or creates the redb file and brings its schema to [`SCHEMA_VERSION`].
fn open_database(path: &Path) -> Result<Database, LedgerError> {
    let name = || path.display().to_string();
    if !path.exists() {
        // Create it ourselves so it gets 0600: it holds the node's findings.
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| LedgerError::Open {
                path: name(),
                source: redb::DatabaseError::Storage(redb::StorageError::Io(e)),
            })?;
    }
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        // A plain open trusts a cleanly closed file and may panic on one damaged outside redb;
        // the check turns that into an error. The store is small, so reading it whole is cheap.
        .set_check_integrity_on_open(true)
        .create(path)
        .map_err(|source| LedgerError::Open {
            path: name(),
            source,
        })?;
    match init_schema(&db) {
        Ok(Schema::Ready) => Ok(db),
        Ok(Schema::Newer(found)) => Err(LedgerError::NewerSchema {
            path: name(),
            found,
            supported: SCHEMA_VERSION,
        }),
        Ok(Schema::Foreign(tables)) => Err(LedgerError::Foreign {
            path: name(),
            tables,
        }),
        Err(source) => Err(LedgerError::Storage {
            path: name(),
            source,
        }),
    }
}

/// What [`init_schema`] found.
enum Schema {
    /// At [`SCHEMA_VERSION`] (created or migrated) and every table exists.
    Ready,
    /// Written by a newer build.
    Newer(u64),
    /// A redb file of something else (its table names).
    Foreign(String),
}

/// Checks the schema version, migrates an older store, creates missing tables; one
/// transaction, committed only when the store is ready.
fn init_schema(db: &Database) -> Result<Schema, redb::Error> {
    let txn = db.begin_write()?;
    let found = txn
        .open_table(META)?
        .get(KEY_SCHEMA_VERSION)?
        .map(|v| v.value());
    match found {
        Some(v) if v > SCHEMA_VERSION => return Ok(Schema::Newer(v)),
        Some(v) => {
            let from = usize::try_from(v.saturating_sub(1)).unwrap_or(usize::MAX);
            for (i, migrate) in MIGRATIONS.iter().enumerate().skip(from) {
                migrate(&txn)?;
                tracing::info!(from = i + 1, to = i + 2, "Ledger schema migrated.");
            }
        }
        None => {
            let tables: Vec<String> = txn
                .list_tables()?
                .map(|t| redb::TableHandle::name(&t).to_owned())
                .filter(|n| n != META_NAME)
                .collect();
            if !tables.is_empty() {
                return Ok(Schema::Foreign(tables.join(", ")));
            }
        }
    }
    txn.open_table(META)?
        .insert(KEY_SCHEMA_VERSION, SCHEMA_VERSION)?;
    // Create every table so readers never meet a missing one.
    txn.open_table(OPEN_FINDINGS)?;
    txn.open_table(GENERATIONS)?;
    txn.open_table(TIMES)?;
    txn.open_table(TEXTS)?;
    super::outbox::create_tables(&txn)?;
    txn.commit()?;
    Ok(Schema::Ready)
}
