//! The file baseline: `<state dir>/files.redb`, an embedded ACID store (redb).
//!
//! Tables: `entries` (store key → encoded [`Entry`]), `content` (store key → the bytes of small
//! world-readable text files, for diffs), `accepts` (sequence → JSON [`AcceptRecord`]: who
//! re-baselined what and why) and `meta`.
//!
//! **Its own digest.** `meta.digest` is the sum, modulo 2²⁵⁶, of SHA-256 over every entry's key
//! and value (an incremental multiset hash: an update subtracts the old term and adds the new
//! one, so writes stay O(changed)). Every full read recomputes it; a mismatch means the file was
//! changed by something other than nodedrift, and it is reported as such, never silently
//! re-captured. A truncated or overwritten file fails redb's own checksums on open and is
//! reported the same way. The digest also appears in every report, so a copy lives off the
//! node.
//!
//! The store is opened per operation and closed after it, so that `nodedrift baseline accept`
//! can run while the daemon is running (redb allows one process at a time; the other waits).

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::entry::{self, Entry, hex};

/// The store's file name inside the state directory.
pub const FILE_NAME: &str = "files.redb";

const SCHEMA_VERSION: u64 = 1;
const CACHE_BYTES: usize = 4 << 20;
/// How long an operation waits for another process holding the store.
const LOCK_WAIT: Duration = Duration::from_secs(10);

const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
const CONTENT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("content");
const ACCEPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("accepts");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const K_SCHEMA: &str = "schema_version";
const K_DIGEST: &str = "digest";
const K_COUNT: &str = "count";
const K_CAPTURED: &str = "captured_at";
const K_SPEC: &str = "spec";
const K_HOST: &str = "host_root";

/// A store that cannot be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: cannot create the state directory: {source}")]
    StateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: no file baseline has been captured yet (run `nodedrift baseline capture`)")]
    NotCaptured { path: String },
    #[error(
        "{path}: the file-integrity store is damaged (truncated or overwritten outside nodedrift): \
         {detail}; move it away and run `nodedrift baseline capture` once the node is known good"
    )]
    Damaged { path: String, detail: String },
    #[error(
        "{path}: the file-integrity store was modified outside nodedrift: its recorded digest is \
         {recorded} but its entries hash to {computed}; keep it as evidence, then re-capture \
         with `nodedrift baseline capture --force` once the node is known good"
    )]
    Tampered {
        path: String,
        recorded: String,
        computed: String,
    },
    #[error(
        "{path}: store schema version {found} is newer than this build supports ({SCHEMA_VERSION})"
    )]
    NewerSchema { path: String, found: u64 },
    #[error("{path}: another process holds the store (waited {LOCK_WAIT:?})")]
    Busy { path: String },
    /// The file cannot be opened for writing (a read-only state directory, as `check` has in
    /// its unit): nothing is wrong with the store itself.
    #[error("{path}: cannot be opened for writing: {source}")]
    NotWritable {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Storage { path: String, source: redb::Error },
}

impl StoreError {
    /// A store that exists but cannot be trusted (as opposed to one not captured or busy).
    pub fn is_integrity(&self) -> bool {
        matches!(self, Self::Damaged { .. } | Self::Tampered { .. })
    }
}

/// One `baseline accept`: who re-baselined which paths, when and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptRecord {
    pub at: String,
    pub paths: Vec<String>,
    pub reason: String,
    /// The invoking user (`SUDO_USER`, else the login name, else the uid).
    pub by: String,
    pub uid: u32,
}

/// What the store holds, in one line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreInfo {
    pub path: String,
    pub entries: u64,
    pub digest: String,
    pub captured_at: String,
    /// Fingerprint of the watch sets the baseline was captured with.
    pub spec: String,
}

/// The order-independent running digest (four 64-bit limbs, little-endian, mod 2²⁵⁶).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetDigest([u64; 4]);

impl SetDigest {
    fn term(key: &[u8], value: &[u8]) -> [u64; 4] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&(key.len() as u64).to_le_bytes());
        ctx.update(key);
        ctx.update(value);
        let d = ctx.finish();
        let mut t = [0u64; 4];
        for (i, c) in d.as_ref().chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            t[i] = u64::from_le_bytes(b);
        }
        t
    }

    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        let t = Self::term(key, value);
        let mut carry = 0u64;
        for (a, b) in self.0.iter_mut().zip(t) {
            let (s1, c1) = a.overflowing_add(b);
            let (s2, c2) = s1.overflowing_add(carry);
            *a = s2;
            carry = u64::from(c1) + u64::from(c2);
        }
    }

    pub fn remove(&mut self, key: &[u8], value: &[u8]) {
        let t = Self::term(key, value);
        let mut borrow = 0u64;
        for (a, b) in self.0.iter_mut().zip(t) {
            let (s1, b1) = a.overflowing_sub(b);
            let (s2, b2) = s1.overflowing_sub(borrow);
            *a = s2;
            borrow = u64::from(b1) + u64::from(b2);
        }
    }

    pub fn to_bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, l) in self.0.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&l.to_le_bytes());
        }
        out
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 32 {
            return None;
        }
        let mut l = [0u64; 4];
        for (i, c) in b.chunks_exact(8).enumerate() {
            let mut x = [0u8; 8];
            x.copy_from_slice(c);
            l[i] = u64::from_le_bytes(x);
        }
        Some(Self(l))
    }

    pub fn hex(self) -> String {
        hex(&self.to_bytes())
    }
}

/// An open store.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    db: Db,
}

/// A read-write handle (capture, accept, integrity-checked opens) or a read-only one (the
/// daemon's verifications, which must not modify the file it watches for accepts).
enum Db {
    Rw(Database),
    Ro(redb::ReadOnlyDatabase),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Db::Rw(_) => "Db::Rw",
            Db::Ro(_) => "Db::Ro",
        })
    }
}

impl Db {
    fn read(&self) -> Result<redb::ReadTransaction, redb::TransactionError> {
        match self {
            Db::Rw(d) => d.begin_read(),
            Db::Ro(d) => d.begin_read(),
        }
    }

    fn write(&self) -> Result<Result<redb::WriteTransaction, redb::TransactionError>, redb::Error> {
        match self {
            Db::Rw(d) => Ok(d.begin_write()),
            Db::Ro(_) => Err(redb::Error::DatabaseAlreadyOpen),
        }
    }
}

/// Writes the entries of a capture; see [`Store::capture_with`].
pub struct CaptureWriter<'t> {
    name: String,
    entries: redb::Table<'t, &'static [u8], &'static [u8]>,
    content: redb::Table<'t, &'static [u8], &'static [u8]>,
    digest: SetDigest,
    count: u64,
}

impl std::fmt::Debug for CaptureWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureWriter")
            .field("store", &self.name)
            .field("count", &self.count)
            .finish()
    }
}

impl CaptureWriter<'_> {
    fn err(name: &str, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Storage {
            path: name.to_owned(),
            source: e.into(),
        }
    }

    /// Records one entry.
    pub fn put(&mut self, e: &Entry) -> Result<(), StoreError> {
        let k = entry::key(&e.path);
        let v = e.encode();
        let name = &self.name;
        let old = self
            .entries
            .insert(k.as_slice(), v.as_slice())
            .map_err(|e| Self::err(name, e))?
            .map(|o| o.value().to_vec());
        match old {
            Some(o) => self.digest.remove(&k, &o),
            None => self.count += 1,
        }
        self.digest.add(&k, &v);
        Ok(())
    }

    /// Keeps the content of a small text file for diffs.
    pub fn put_content(&mut self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let name = &self.name;
        self.content
            .insert(entry::key(path).as_slice(), bytes)
            .map_err(|e| Self::err(name, e))?;
        Ok(())
    }
}

/// Opens with `open`, waiting up to [`LOCK_WAIT`] while another process holds the file; any
/// other failure means the file is not a usable store.
fn with_lock_wait<T>(
    name: &str,
    mut open: impl FnMut() -> Result<T, redb::DatabaseError>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    loop {
        match open() {
            Ok(db) => return Ok(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Busy {
                    path: name.to_owned(),
                });
            }
            Err(redb::DatabaseError::Storage(redb::StorageError::Io(source)))
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                return Err(StoreError::NotWritable {
                    path: name.to_owned(),
                    source,
                });
            }
            Err(e) => {
                return Err(StoreError::Damaged {
                    path: name.to_owned(),
                    detail: e.to_string(),
                });
            }
        }
    }
}

/// A pull iterator over the stored entries; see [`Store::iter`].
pub struct StoredIter {
    name: String,
    range: redb::Range<'static, &'static [u8], &'static [u8]>,
    _table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    _tx: redb::ReadTransaction,
    digest: SetDigest,
    count: u64,
    info: StoreInfo,
}

impl std::fmt::Debug for StoredIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredIter")
            .field("store", &self.name)
            .field("count", &self.count)
            .finish()
    }
}

impl StoredIter {
    /// The next entry, `None` at the end; a damaged entry is an error.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, StoreError> {
        let Some(item) = self.range.next() else {
            return Ok(None);
        };
        let (k, v) = item.map_err(|e| StoreError::Storage {
            path: self.name.clone(),
            source: e.into(),
        })?;
        let (k, v) = (k.value(), v.value());
        self.digest.add(k, v);
        self.count += 1;
        match Entry::decode(entry::path_of(k), v) {
            Some(e) => Ok(Some(e)),
            None => Err(StoreError::Damaged {
                path: self.name.clone(),
                detail: format!("entry {} cannot be decoded", entry::path_of(k).display()),
            }),
        }
    }

    /// After the last entry: the store's info, or [`StoreError::Tampered`] when the entries do
    /// not hash to the recorded digest.
    pub fn finish(mut self) -> Result<StoreInfo, StoreError> {
        while self.next_entry()?.is_some() {}
        if self.info.digest != self.digest.hex() || self.info.entries != self.count {
            return Err(StoreError::Tampered {
                path: self.name.clone(),
                recorded: self.info.digest.clone(),
                computed: self.digest.hex(),
            });
        }
        Ok(self.info)
    }
}

/// Changes to write in one transaction.
#[derive(Debug, Default)]
pub struct Update<'a> {
    pub upsert: Vec<&'a Entry>,
    pub remove: Vec<PathBuf>,
    /// Text content to keep (`None` clears what was kept).
    pub content: Vec<(PathBuf, Option<Vec<u8>>)>,
    pub accept: Option<AcceptRecord>,
}

impl Store {
    /// The store file of a state directory.
    pub fn file(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE_NAME)
    }

    /// Opens an existing store; [`StoreError::NotCaptured`] when there is none.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let path = Self::file(state_dir);
        if !path.exists() {
            return Err(StoreError::NotCaptured {
                path: path.display().to_string(),
            });
        }
        Self::open_db(path)
    }

    /// Creates (or opens) the store for a capture.
    pub fn create(state_dir: &Path) -> Result<Self, StoreError> {
        let path = Self::file(state_dir);
        if !state_dir.is_dir() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(state_dir)
                .map_err(|source| StoreError::StateDir {
                    path: state_dir.display().to_string(),
                    source,
                })?;
        }
        if !path.exists() {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|source| StoreError::StateDir {
                    path: path.display().to_string(),
                    source,
                })?;
        }
        Self::open_db(path)
    }

    /// Opens an existing store read-only: no write reaches the file, so watching it for
    /// changes made by `baseline accept` does not see the daemon's own reads. A file that needs
    /// recovery is reported as damaged rather than repaired.
    pub fn open_read_only(state_dir: &Path) -> Result<Self, StoreError> {
        let path = Self::file(state_dir);
        let name = path.display().to_string();
        if !path.exists() {
            return Err(StoreError::NotCaptured { path: name });
        }
        let db = with_lock_wait(&name, || {
            Database::builder()
                .set_cache_size(CACHE_BYTES)
                .open_read_only(&path)
        })?;
        Ok(Self {
            path,
            db: Db::Ro(db),
        })
    }

    fn open_db(path: PathBuf) -> Result<Self, StoreError> {
        let name = path.display().to_string();
        let db = with_lock_wait(&name, || {
            Database::builder()
                .set_cache_size(CACHE_BYTES)
                .set_check_integrity_on_open(true)
                .create(&path)
        })?;
        let s = Self {
            path,
            db: Db::Rw(db),
        };
        s.init()?;
        Ok(s)
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn storage(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Storage {
            path: self.name(),
            source: e.into(),
        }
    }

    fn init(&self) -> Result<(), StoreError> {
        // Read first: a store already at this schema is not written to by merely opening it
        // (the daemon watches the file for changes made by `baseline accept`).
        {
            let tx = self.db.read().map_err(|e| self.storage(e))?;
            if let Ok(meta) = tx.open_table(META)
                && let Some(v) = meta.get(K_SCHEMA).map_err(|e| self.storage(e))?
                && let Ok(b) = <[u8; 8]>::try_from(v.value())
            {
                let found = u64::from_le_bytes(b);
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        path: self.name(),
                        found,
                    });
                }
                if tx.open_table(ENTRIES).is_ok()
                    && tx.open_table(CONTENT).is_ok()
                    && tx.open_table(ACCEPTS).is_ok()
                {
                    return Ok(());
                }
            }
        }
        let tx = self
            .db
            .write()
            .map_err(|e| self.storage(e))?
            .map_err(|e| self.storage(e))?;
        {
            let mut meta = tx.open_table(META).map_err(|e| self.storage(e))?;
            let found = meta
                .get(K_SCHEMA)
                .map_err(|e| self.storage(e))?
                .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
                .map(u64::from_le_bytes);
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::NewerSchema {
                        path: self.name(),
                        found: v,
                    });
                }
                Some(_) => {}
                None => {
                    meta.insert(K_SCHEMA, SCHEMA_VERSION.to_le_bytes().as_slice())
                        .map_err(|e| self.storage(e))?;
                    meta.insert(K_DIGEST, SetDigest::default().to_bytes().as_slice())
                        .map_err(|e| self.storage(e))?;
                }
            }
            tx.open_table(ENTRIES).map_err(|e| self.storage(e))?;
            tx.open_table(CONTENT).map_err(|e| self.storage(e))?;
            tx.open_table(ACCEPTS).map_err(|e| self.storage(e))?;
        }
        tx.commit().map_err(|e| self.storage(e))
    }

    /// Replaces the whole baseline with what `fill` writes, in one transaction: a crash or an
    /// error leaves the previous baseline as it was.
    pub fn capture_with(
        &self,
        spec: &str,
        host_root: &str,
        now: i64,
        fill: impl FnOnce(&mut CaptureWriter<'_>) -> Result<(), StoreError>,
    ) -> Result<StoreInfo, StoreError> {
        let mut tx = self
            .db
            .write()
            .map_err(|e| self.storage(e))?
            .map_err(|e| self.storage(e))?;
        tx.set_durability(redb::Durability::Immediate)
            .map_err(|e| self.storage(e))?;
        {
            tx.delete_table(ENTRIES).map_err(|e| self.storage(e))?;
            tx.delete_table(CONTENT).map_err(|e| self.storage(e))?;
            let mut w = CaptureWriter {
                name: self.name(),
                entries: tx.open_table(ENTRIES).map_err(|e| self.storage(e))?,
                content: tx.open_table(CONTENT).map_err(|e| self.storage(e))?,
                digest: SetDigest::default(),
                count: 0,
            };
            fill(&mut w)?;
            let mut m = tx.open_table(META).map_err(|e| self.storage(e))?;
            let put =
                |m: &mut redb::Table<&str, &[u8]>, k: &str, v: &[u8]| m.insert(k, v).map(|_| ());
            put(&mut m, K_DIGEST, &w.digest.to_bytes()).map_err(|e| self.storage(e))?;
            put(&mut m, K_COUNT, &w.count.to_le_bytes()).map_err(|e| self.storage(e))?;
            put(&mut m, K_CAPTURED, &now.to_le_bytes()).map_err(|e| self.storage(e))?;
            put(&mut m, K_SPEC, spec.as_bytes()).map_err(|e| self.storage(e))?;
            put(&mut m, K_HOST, host_root.as_bytes()).map_err(|e| self.storage(e))?;
        }
        tx.commit().map_err(|e| self.storage(e))?;
        self.info()
    }

    /// Applies an update (realtime re-baseline of accepted paths) in one transaction, keeping
    /// the digest current.
    pub fn update(&self, u: &Update<'_>) -> Result<(), StoreError> {
        let tx = self
            .db
            .write()
            .map_err(|e| self.storage(e))?
            .map_err(|e| self.storage(e))?;
        {
            let mut m = tx.open_table(META).map_err(|e| self.storage(e))?;
            let mut digest = m
                .get(K_DIGEST)
                .map_err(|e| self.storage(e))?
                .and_then(|v| SetDigest::from_bytes(v.value()))
                .unwrap_or_default();
            let mut count = m
                .get(K_COUNT)
                .map_err(|e| self.storage(e))?
                .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
                .map(u64::from_le_bytes)
                .unwrap_or(0);
            let mut t = tx.open_table(ENTRIES).map_err(|e| self.storage(e))?;
            for p in &u.remove {
                let k = entry::key(p);
                if let Some(old) = t.remove(k.as_slice()).map_err(|e| self.storage(e))? {
                    digest.remove(&k, old.value());
                    count = count.saturating_sub(1);
                }
            }
            for e in &u.upsert {
                let k = entry::key(&e.path);
                let v = e.encode();
                match t
                    .insert(k.as_slice(), v.as_slice())
                    .map_err(|e| self.storage(e))?
                {
                    Some(old) => digest.remove(&k, old.value()),
                    None => count += 1,
                }
                digest.add(&k, &v);
            }
            let mut c = tx.open_table(CONTENT).map_err(|e| self.storage(e))?;
            for (p, bytes) in &u.content {
                let k = entry::key(p);
                match bytes {
                    Some(b) => {
                        c.insert(k.as_slice(), b.as_slice())
                            .map_err(|e| self.storage(e))?;
                    }
                    None => {
                        c.remove(k.as_slice()).map_err(|e| self.storage(e))?;
                    }
                }
            }
            m.insert(K_DIGEST, digest.to_bytes().as_slice())
                .map_err(|e| self.storage(e))?;
            m.insert(K_COUNT, count.to_le_bytes().as_slice())
                .map_err(|e| self.storage(e))?;
            if let Some(a) = &u.accept {
                let mut acc = tx.open_table(ACCEPTS).map_err(|e| self.storage(e))?;
                let next = acc
                    .last()
                    .map_err(|e| self.storage(e))?
                    .map(|(k, _)| k.value() + 1)
                    .unwrap_or(1);
                let json = serde_json::to_vec(a).unwrap_or_default();
                acc.insert(next, json.as_slice())
                    .map_err(|e| self.storage(e))?;
            }
        }
        tx.commit().map_err(|e| self.storage(e))
    }

    /// Streams every entry in key order to `f`, recomputing the digest on the way; fails with
    /// [`StoreError::Tampered`] (after the stream) when it does not match the recorded one, and
    /// with [`StoreError::Damaged`] on an undecodable entry.
    pub fn scan(&self, mut f: impl FnMut(Entry)) -> Result<StoreInfo, StoreError> {
        let mut it = self.iter()?;
        while let Some(e) = it.next_entry()? {
            f(e);
        }
        it.finish()
    }

    /// Every stored entry in key order, pulled one at a time (the verification merges them
    /// with a walk), recomputing the digest as it goes: see [`StoredIter::finish`].
    pub fn iter(&self) -> Result<StoredIter, StoreError> {
        let tx = self.db.read().map_err(|e| self.storage(e))?;
        let table = tx.open_table(ENTRIES).map_err(|e| self.storage(e))?;
        let range = table.range::<&[u8]>(..).map_err(|e| self.storage(e))?;
        let info = self.info_in(&tx)?;
        Ok(StoredIter {
            name: self.name(),
            range,
            _table: table,
            _tx: tx,
            digest: SetDigest::default(),
            count: 0,
            info,
        })
    }

    /// The stored entry for one path.
    pub fn get(&self, path: &Path) -> Result<Option<Entry>, StoreError> {
        let tx = self.db.read().map_err(|e| self.storage(e))?;
        let t = tx.open_table(ENTRIES).map_err(|e| self.storage(e))?;
        let k = entry::key(path);
        let Some(v) = t.get(k.as_slice()).map_err(|e| self.storage(e))? else {
            return Ok(None);
        };
        Entry::decode(path.to_path_buf(), v.value())
            .map(Some)
            .ok_or_else(|| StoreError::Damaged {
                path: self.name(),
                detail: format!("entry {} cannot be decoded", path.display()),
            })
    }

    /// Stored entries below `dir` (inclusive), in key order.
    pub fn under(&self, dir: &Path) -> Result<Vec<Entry>, StoreError> {
        let tx = self.db.read().map_err(|e| self.storage(e))?;
        let t = tx.open_table(ENTRIES).map_err(|e| self.storage(e))?;
        let k = entry::key(dir);
        let mut out = Vec::new();
        for item in t.range(k.as_slice()..).map_err(|e| self.storage(e))? {
            let (kk, v) = item.map_err(|e| self.storage(e))?;
            let kk = kk.value();
            if !(kk == k.as_slice() || (kk.starts_with(&k) && kk.get(k.len()) == Some(&0))) {
                break;
            }
            if let Some(e) = Entry::decode(entry::path_of(kk), v.value()) {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// The kept content of a text file.
    pub fn content(&self, path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.read().map_err(|e| self.storage(e))?;
        let t = tx.open_table(CONTENT).map_err(|e| self.storage(e))?;
        Ok(t.get(entry::key(path).as_slice())
            .map_err(|e| self.storage(e))?
            .map(|v| v.value().to_vec()))
    }

    /// Every `baseline accept`, oldest first.
    pub fn accepts(&self) -> Result<Vec<AcceptRecord>, StoreError> {
        let tx = self.db.read().map_err(|e| self.storage(e))?;
        let t = tx.open_table(ACCEPTS).map_err(|e| self.storage(e))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| self.storage(e))? {
            let (_, v) = item.map_err(|e| self.storage(e))?;
            if let Ok(a) = serde_json::from_slice(v.value()) {
                out.push(a);
            }
        }
        Ok(out)
    }

    pub fn info(&self) -> Result<StoreInfo, StoreError> {
        let tx = self.db.read().map_err(|e| self.storage(e))?;
        self.info_in(&tx)
    }

    fn info_in(&self, tx: &redb::ReadTransaction) -> Result<StoreInfo, StoreError> {
        let m = tx.open_table(META).map_err(|e| self.storage(e))?;
        let get = |k: &str| -> Result<Option<Vec<u8>>, StoreError> {
            Ok(m.get(k)
                .map_err(|e| self.storage(e))?
                .map(|v| v.value().to_vec()))
        };
        let int = |b: Option<Vec<u8>>| {
            b.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .map(u64::from_le_bytes)
        };
        let digest = get(K_DIGEST)?
            .and_then(|b| SetDigest::from_bytes(&b))
            .unwrap_or_default();
        let entries = int(get(K_COUNT)?).unwrap_or(0);
        let captured = int(get(K_CAPTURED)?).map(|v| v as i64);
        let spec = get(K_SPEC)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let _ = tx
            .open_table(ENTRIES)
            .map_err(|e| self.storage(e))?
            .len()
            .map_err(|e| self.storage(e))?;
        Ok(StoreInfo {
            path: self.name(),
            entries,
            digest: digest.hex(),
            captured_at: captured.map(crate::clock::rfc3339_secs).unwrap_or_default(),
            spec,
        })
    }

    /// The host root the baseline was captured for.
    pub fn host_root(&self) -> Result<Option<String>, StoreError> {
        let tx = self.db.read().map_err(|e| self.storage(e))?;
        let m = tx.open_table(META).map_err(|e| self.storage(e))?;
        Ok(m.get(K_HOST)
            .map_err(|e| self.storage(e))?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }

    /// Whether a capture was ever recorded.
    pub fn is_captured(&self) -> Result<bool, StoreError> {
        Ok(!self.info()?.captured_at.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_digest_is_order_independent_and_reversible() {
        let mut a = SetDigest::default();
        a.add(b"k1", b"v1");
        a.add(b"k2", b"v2");
        let mut b = SetDigest::default();
        b.add(b"k2", b"v2");
        b.add(b"k1", b"v1");
        assert_eq!(a, b);
        b.remove(b"k1", b"v1");
        let mut c = SetDigest::default();
        c.add(b"k2", b"v2");
        assert_eq!(b, c);
        c.remove(b"k2", b"v2");
        assert_eq!(c, SetDigest::default());
        assert_eq!(SetDigest::from_bytes(&a.to_bytes()), Some(a));
    }
}
