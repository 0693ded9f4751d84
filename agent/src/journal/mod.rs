//! A bounded, read-only reader of systemd's journal files, for the snapshot's logs on nodes
//! where journald is the only log (Azure Linux, Ubuntu without rsyslog).
//!
//! It reads the on-disk format systemd documents (<https://systemd.io/JOURNAL_FILE_FORMAT/>):
//! a header, then objects at 8-byte-aligned offsets. To find the entries of one unit it looks
//! up the DATA object `_SYSTEMD_UNIT=<unit>` in the file's data hash table (SipHash-2-4 keyed
//! by the file id, or Jenkins lookup3 in files without `KEYED_HASH`: [`hash`]) and walks that
//! object's entry-array chain **from its end**, newest entry first, until it has enough
//! entries or they are older than the window. Only then are the chosen entries read, oldest
//! first, so a caller can redact them in the order they were written.
//!
//! What keeps it bounded on any file, including one journald is writing and one that is
//! damaged or hostile:
//!
//! * files are opened through [`HostRoot`] without following a final symlink, regular files
//!   only, and never read whole: every read is a `pread` of one object (or one chunk of an
//!   array) at an offset checked against the file size first;
//! * every chain (hash collisions, entry arrays) must move forward in the file, as journald
//!   only ever appends: an offset that goes backwards (a cycle) is corruption, and every walk
//!   also has a step limit;
//! * a file that cannot be read is an error naming it and the offset, and the other files are
//!   still read; a truncated file (the header promises more than the file holds) is read as
//!   far as it goes and said to be truncated;
//! * entries, fields and messages have size caps ([`MAX_ENTRY_ITEMS`], [`MAX_MESSAGE`]).
//!
//! Compression: journald compresses DATA objects larger than a threshold (512 bytes by
//! default) with zstd, lz4 or xz. No decompressor is linked in, so such objects are not read:
//! a compressed MESSAGE is replaced by a marker and counted ([`TailReport::compressed`]).
//! Ordinary log lines are shorter than the threshold and stored as they are.
//!
//! Format versions: the `KEYED_HASH` and `COMPACT` (systemd 252 and later: 32-bit offsets in
//! entries and entry arrays) incompatible flags are understood, the compression flags are
//! accepted; a file with any other incompatible flag is refused with an error saying so.

pub mod hash;

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::host::{FileKind, HostError, HostRoot, display};

/// Where journald keeps its files: persistent, then volatile; `<dir>/<machine-id>/*.journal`.
pub const JOURNAL_DIRS: [&str; 2] = ["/var/log/journal", "/run/log/journal"];

/// Journal files opened at most (the most recently modified); older ones are counted.
pub const MAX_FILES: usize = 64;
/// Entries listed in a journal directory, and machine-id directories, at most.
const MAX_DIR_ENTRIES: usize = 10_000;
/// Data objects (fields) of one entry read at most.
pub const MAX_ENTRY_ITEMS: u64 = 1024;
/// Bytes of one MESSAGE read at most; the rest is cut.
pub const MAX_MESSAGE: usize = 16 << 10;
/// Bytes of the other fields read (identifier, pid).
const MAX_FIELD: usize = 256;
/// Steps of one hash-collision chain or entry-array chain.
const MAX_CHAIN: usize = 1 << 16;
/// Entry-array items read per `pread`.
const ARRAY_CHUNK: u64 = 4096;
/// Unreadable entries tolerated in one file before it is given up.
const MAX_BAD_ENTRIES: u64 = 64;
/// Empty (not yet written) entry-array slots skipped in one file before it is given up.
const MAX_EMPTY_SLOTS: u64 = 1 << 20;
/// Errors listed per file; further ones are counted.
const MAX_ERRORS_PER_FILE: usize = 3;
/// Data objects remembered between entries (shared fields: identifier, pid, unit, host).
const CACHE_LIMIT: usize = 16_384;

const SIGNATURE: &[u8; 8] = b"LPKSHHRH";
/// Every header holds the fields up to `tail_entry_monotonic` (the first format).
const HEADER_MIN: u64 = 208;
/// Compact files (systemd 252) always have the 252 header fields.
const HEADER_MIN_COMPACT: u64 = 264;
/// Bytes of the header this reader looks at.
const HEADER_READ: u64 = 272;
const OBJECT_HEADER: u64 = 16;
const MESSAGE: &[u8] = b"MESSAGE=";

const INCOMPATIBLE_XZ: u32 = 1 << 0;
const INCOMPATIBLE_LZ4: u32 = 1 << 1;
const INCOMPATIBLE_KEYED_HASH: u32 = 1 << 2;
const INCOMPATIBLE_ZSTD: u32 = 1 << 3;
const INCOMPATIBLE_COMPACT: u32 = 1 << 4;
const INCOMPATIBLE_KNOWN: u32 = INCOMPATIBLE_XZ
    | INCOMPATIBLE_LZ4
    | INCOMPATIBLE_KEYED_HASH
    | INCOMPATIBLE_ZSTD
    | INCOMPATIBLE_COMPACT;

const OBJECT_DATA: u8 = 1;
const OBJECT_ENTRY: u8 = 3;
const OBJECT_DATA_HASH_TABLE: u8 = 4;
const OBJECT_ENTRY_ARRAY: u8 = 6;

const OBJECT_COMPRESSED_XZ: u8 = 1 << 0;
const OBJECT_COMPRESSED_LZ4: u8 = 1 << 1;
const OBJECT_COMPRESSED_ZSTD: u8 = 1 << 2;
const OBJECT_COMPRESSED_MASK: u8 =
    OBJECT_COMPRESSED_XZ | OBJECT_COMPRESSED_LZ4 | OBJECT_COMPRESSED_ZSTD;

/// DATA object: header, hash, next hash, next field, entry, entry array, n entries.
const DATA_HEAD: u64 = OBJECT_HEADER + 6 * 8;
/// ENTRY object: header, seqnum, realtime, monotonic, boot id (16), xor hash.
const ENTRY_HEAD: u64 = OBJECT_HEADER + 3 * 8 + 16 + 8;
/// ENTRY_ARRAY object: header, next array.
const ARRAY_HEAD: u64 = OBJECT_HEADER + 8;

/// Why a journal file (or part of it) could not be read. Every variant names the host path.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("{path}: not a journal file: {what}")]
    NotJournal { path: String, what: String },
    #[error(
        "{path}: journal format not supported: incompatible flags {flags:#x} include unknown \
         ones ({unknown:#x}; known: xz, lz4, keyed hash, zstd, compact), written by a newer \
         systemd; not read"
    )]
    Unsupported {
        path: String,
        flags: u32,
        unknown: u32,
    },
    #[error("{path}: corrupt at offset {offset}: {what}")]
    Corrupt {
        path: String,
        offset: u64,
        what: String,
    },
    #[error("{path}: read at offset {offset}: {source}")]
    Io {
        path: String,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
}

impl JournalError {
    /// The host path of the file, where the error has one of its own.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Host(_) => None,
            Self::NotJournal { path, .. }
            | Self::Unsupported { path, .. }
            | Self::Corrupt { path, .. }
            | Self::Io { path, .. } => Some(path),
        }
    }
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        x.copy_from_slice(s);
    }
    u64::from_le_bytes(x)
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        x.copy_from_slice(s);
    }
    u32::from_le_bytes(x)
}

/// The header fields this reader uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub compatible_flags: u32,
    pub incompatible_flags: u32,
    /// 0 offline (closed cleanly), 1 online (being written), 2 archived.
    pub state: u8,
    pub file_id: [u8; 16],
    pub header_size: u64,
    pub arena_size: u64,
    data_hash_table_offset: u64,
    data_hash_table_size: u64,
    pub n_entries: u64,
    pub head_entry_realtime: u64,
    pub tail_entry_realtime: u64,
}

impl Header {
    fn compact(&self) -> bool {
        self.incompatible_flags & INCOMPATIBLE_COMPACT != 0
    }

    fn keyed(&self) -> bool {
        self.incompatible_flags & INCOMPATIBLE_KEYED_HASH != 0
    }

    /// `online`, `offline`, `archived`.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            0 => "offline",
            1 => "online",
            2 => "archived",
            _ => "unknown",
        }
    }
}

/// An object's type, flags and size, read at an offset.
#[derive(Debug, Clone, Copy)]
struct ObjectHead {
    flags: u8,
    size: u64,
}

/// A DATA object found by its payload.
#[derive(Debug, Clone, Copy)]
struct DataRef {
    offset: u64,
    entry_offset: u64,
    entry_array_offset: u64,
    n_entries: u64,
}

/// One open journal file.
#[derive(Debug)]
pub struct JournalFile {
    path: PathBuf,
    file: File,
    /// The file's size when the header was read: nothing at or past it is read.
    size: u64,
    header: Header,
}

impl JournalFile {
    /// Opens a journal file inside the host root (a final symlink is not followed; regular
    /// files only) and checks its header.
    pub fn open(host: &HostRoot, path: &Path) -> Result<Self, JournalError> {
        let fd = host.open_read_nofollow(path)?;
        let file = File::from(fd);
        let io = |offset, source| JournalError::Io {
            path: display(path),
            offset,
            source,
        };
        let meta = file.metadata().map_err(|e| io(0, e))?;
        if !meta.file_type().is_file() {
            return Err(HostError::NotRegular {
                path: display(path),
                kind: FileKind::from_mode(std::os::unix::fs::MetadataExt::mode(&meta)),
            }
            .into());
        }
        let mut head = vec![0u8; HEADER_READ.min(meta.len()) as usize];
        file.read_exact_at(&mut head, 0).map_err(|e| io(0, e))?;
        // journald grows the file before it links anything into it: the size taken after the
        // header covers every object the header can reach.
        let size = file.metadata().map_err(|e| io(0, e))?.len();
        let header = parse_header(path, &head, size)?;
        let f = Self {
            path: path.to_path_buf(),
            file,
            size,
            header,
        };
        // The data hash table is an object like the others: its header precedes the payload
        // the file header points at.
        let table = f.header.data_hash_table_offset - OBJECT_HEADER;
        let min = OBJECT_HEADER + f.header.data_hash_table_size;
        f.object(table, OBJECT_DATA_HASH_TABLE, min, &mut Vec::new(), 16)?;
        Ok(f)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// True when the header describes more bytes than the file holds (a cut copy, a full
    /// disk): what lies past the end is not read.
    pub fn truncated(&self) -> bool {
        self.header
            .header_size
            .saturating_add(self.header.arena_size)
            > self.size
    }

    fn corrupt(&self, offset: u64, what: impl Into<String>) -> JournalError {
        JournalError::Corrupt {
            path: display(&self.path),
            offset,
            what: what.into(),
        }
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), JournalError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| JournalError::Io {
                path: display(&self.path),
                offset,
                source,
            })
    }

    /// Reads the object at `offset`, which must be of type `ty` and at least `min` bytes:
    /// its header and up to `want` bytes of it into `buf`. Offsets and sizes are checked
    /// against the file before anything is read.
    fn object(
        &self,
        offset: u64,
        ty: u8,
        min: u64,
        buf: &mut Vec<u8>,
        want: u64,
    ) -> Result<ObjectHead, JournalError> {
        if offset % 8 != 0
            || offset < self.header.header_size
            || offset.saturating_add(OBJECT_HEADER) > self.size
        {
            return Err(self.corrupt(
                offset,
                format!(
                    "object offset outside the file ({} bytes) or misaligned",
                    self.size
                ),
            ));
        }
        let n = want.max(OBJECT_HEADER).min(self.size - offset);
        buf.clear();
        buf.resize(n as usize, 0);
        self.read_at(offset, buf)?;
        let (found, flags, size) = (buf[0], buf[1], le64(buf, 8));
        if found != ty {
            return Err(self.corrupt(
                offset,
                format!("expected a {} object, found type {found}", type_name(ty)),
            ));
        }
        if size < min || size > self.size - offset {
            return Err(self.corrupt(
                offset,
                format!(
                    "{} object of {size} bytes (at least {min}, and inside the {}-byte file)",
                    type_name(ty),
                    self.size
                ),
            ));
        }
        buf.truncate(size.min(n) as usize);
        Ok(ObjectHead { flags, size })
    }

    fn data_payload_offset(&self) -> u64 {
        if self.header.compact() {
            DATA_HEAD + 8
        } else {
            DATA_HEAD
        }
    }

    fn hash(&self, payload: &[u8]) -> u64 {
        if self.header.keyed() {
            hash::siphash24(payload, &self.header.file_id)
        } else {
            hash::jenkins_hash64(payload)
        }
    }

    /// The DATA object whose payload is `payload` (`FIELD=value`), through the hash table.
    fn find_data(&self, payload: &[u8]) -> Result<Option<DataRef>, JournalError> {
        let h = self.hash(payload);
        let buckets = self.header.data_hash_table_size / 16;
        let cell = self.header.data_hash_table_offset + (h % buckets) * 16;
        let mut item = [0u8; 16];
        self.read_at(cell, &mut item)?;
        let mut offset = le64(&item, 0);
        let mut prev = 0;
        let payload_at = self.data_payload_offset();
        let mut buf = Vec::new();
        for _ in 0..MAX_CHAIN {
            if offset == 0 {
                return Ok(None);
            }
            if offset <= prev {
                return Err(self.corrupt(
                    offset,
                    format!("data hash chain goes back from {prev} (a cycle?)"),
                ));
            }
            let head = self.object(
                offset,
                OBJECT_DATA,
                payload_at,
                &mut buf,
                payload_at + payload.len() as u64,
            )?;
            if le64(&buf, 16) == h
                && head.flags & OBJECT_COMPRESSED_MASK == 0
                && head.size - payload_at == payload.len() as u64
                && buf.get(payload_at as usize..) == Some(payload)
            {
                return Ok(Some(DataRef {
                    offset,
                    entry_offset: le64(&buf, 40),
                    entry_array_offset: le64(&buf, 48),
                    n_entries: le64(&buf, 56),
                }));
            }
            prev = offset;
            offset = le64(&buf, 24);
        }
        Err(self.corrupt(
            cell,
            format!("data hash chain longer than {MAX_CHAIN} objects"),
        ))
    }

    fn item_size(&self) -> u64 {
        if self.header.compact() { 4 } else { 8 }
    }

    /// The entry arrays of a DATA object's chain, in file order, each with the number of its
    /// items in use. Stops early (with the error) where the chain leaves the file.
    fn entry_arrays(
        &self,
        data: &DataRef,
        bad: &mut Vec<JournalError>,
    ) -> Result<Vec<(u64, u64)>, JournalError> {
        let mut arrays = Vec::new();
        // The first entry is stored in the DATA object itself.
        let mut remaining = data.n_entries.saturating_sub(1);
        let mut offset = data.entry_array_offset;
        let mut prev = 0;
        let mut buf = Vec::new();
        let item = self.item_size();
        while offset != 0 && remaining > 0 {
            if arrays.len() == MAX_CHAIN {
                return Err(self.corrupt(
                    data.offset,
                    format!("entry-array chain longer than {MAX_CHAIN} arrays"),
                ));
            }
            if offset <= prev {
                return Err(self.corrupt(
                    offset,
                    format!("entry-array chain goes back from {prev} (a cycle?)"),
                ));
            }
            let head = match self.object(offset, OBJECT_ENTRY_ARRAY, ARRAY_HEAD, &mut buf, 24) {
                Ok(h) => h,
                Err(e) => {
                    // A torn tail: what was linked before it is still good.
                    bad.push(e);
                    break;
                }
            };
            let n = ((head.size - ARRAY_HEAD) / item).min(remaining);
            arrays.push((offset, n));
            remaining -= n;
            prev = offset;
            offset = le64(&buf, 16);
        }
        Ok(arrays)
    }

    /// Calls `visit` with the entries of `data`, newest first, until it returns false.
    fn entries_newest_first(
        &self,
        data: &DataRef,
        errors: &mut Vec<JournalError>,
        expired: &dyn Fn() -> bool,
        mut visit: impl FnMut(u64) -> Result<bool, JournalError>,
    ) -> Result<(), JournalError> {
        let arrays = self.entry_arrays(data, errors)?;
        let item = self.item_size();
        let mut empty = 0u64;
        let mut chunk = Vec::new();
        for &(array, n) in arrays.iter().rev() {
            let mut end = n;
            while end > 0 {
                if expired() {
                    return Ok(());
                }
                let start = end.saturating_sub(ARRAY_CHUNK);
                chunk.clear();
                chunk.resize(((end - start) * item) as usize, 0);
                self.read_at(array + ARRAY_HEAD + start * item, &mut chunk)?;
                for i in (0..(end - start) as usize).rev() {
                    let entry = if item == 4 {
                        u64::from(le32(&chunk, i * 4))
                    } else {
                        le64(&chunk, i * 8)
                    };
                    if entry == 0 {
                        // A slot not written yet (journald is appending) or never used.
                        empty += 1;
                        if empty > MAX_EMPTY_SLOTS {
                            return Err(self.corrupt(
                                array,
                                format!("more than {MAX_EMPTY_SLOTS} empty entry-array slots"),
                            ));
                        }
                        continue;
                    }
                    if !visit(entry)? {
                        return Ok(());
                    }
                }
                end = start;
            }
        }
        if data.entry_offset != 0 {
            visit(data.entry_offset)?;
        }
        Ok(())
    }

    /// The sequence number and realtime of the entry at `offset`.
    fn entry_time(&self, offset: u64, buf: &mut Vec<u8>) -> Result<(u64, u64), JournalError> {
        self.object(offset, OBJECT_ENTRY, ENTRY_HEAD, buf, ENTRY_HEAD)?;
        Ok((le64(buf, 16), le64(buf, 24)))
    }

    /// Reads the fields of the entry at `offset` that make its line.
    fn entry(&self, offset: u64, cache: &mut FieldCache) -> Result<Entry, JournalError> {
        let mut buf = Vec::new();
        let head = self.object(offset, OBJECT_ENTRY, ENTRY_HEAD, &mut buf, ENTRY_HEAD)?;
        let realtime = le64(&buf, 24);
        let item = if self.header.compact() { 4 } else { 16 };
        let n = ((head.size - ENTRY_HEAD) / item).min(MAX_ENTRY_ITEMS);
        let mut items = vec![0u8; (n * item) as usize];
        self.read_at(offset + ENTRY_HEAD, &mut items)?;
        let mut e = Entry {
            realtime_usec: realtime,
            identifier: None,
            comm: None,
            pid: None,
            message: Message::Missing,
        };
        let mut compressed: Option<(&'static str, u64)> = None;
        let payload_at = self.data_payload_offset();
        for i in 0..n as usize {
            let data = if item == 4 {
                u64::from(le32(&items, i * 4))
            } else {
                le64(&items, i * 16)
            };
            if data == 0 {
                continue;
            }
            let field = match cache.get(data) {
                Some(f) => f.clone(),
                None => {
                    let obj = self.object(
                        data,
                        OBJECT_DATA,
                        payload_at,
                        &mut buf,
                        payload_at + MAX_FIELD as u64,
                    )?;
                    let len = obj.size - payload_at;
                    let f = if obj.flags & OBJECT_COMPRESSED_MASK != 0 {
                        Field::Compressed(compression_name(obj.flags), len)
                    } else {
                        let p = buf.get(payload_at as usize..).unwrap_or_default();
                        classify(p, len)
                    };
                    if !matches!(f, Field::Message(_)) {
                        cache.put(data, f.clone());
                    }
                    f
                }
            };
            match field {
                Field::Other => {}
                Field::Compressed(algo, len) => compressed = compressed.or(Some((algo, len))),
                Field::Identifier(s) => e.identifier = e.identifier.or(Some(s)),
                Field::Comm(s) => e.comm = e.comm.or(Some(s)),
                Field::Pid(s) => e.pid = e.pid.or(Some(s)),
                Field::Message(len) if matches!(e.message, Message::Missing) => {
                    let total = len.saturating_sub(MESSAGE.len() as u64);
                    let mut text = vec![0u8; total.min(MAX_MESSAGE as u64) as usize];
                    self.read_at(data + payload_at + MESSAGE.len() as u64, &mut text)?;
                    e.message = message(text, total);
                }
                Field::Message(_) => {}
            }
        }
        // A compressed object's field name is compressed too; in an entry without a plain
        // MESSAGE it is the message (the one field of a log entry that grows that large).
        if let (Message::Missing, Some((algorithm, bytes))) = (&e.message, compressed) {
            e.message = Message::Compressed { algorithm, bytes };
        }
        Ok(e)
    }
}

fn type_name(ty: u8) -> &'static str {
    match ty {
        OBJECT_DATA => "DATA",
        OBJECT_ENTRY => "ENTRY",
        OBJECT_DATA_HASH_TABLE => "DATA_HASH_TABLE",
        OBJECT_ENTRY_ARRAY => "ENTRY_ARRAY",
        _ => "unknown",
    }
}

fn compression_name(flags: u8) -> &'static str {
    if flags & OBJECT_COMPRESSED_ZSTD != 0 {
        "zstd"
    } else if flags & OBJECT_COMPRESSED_LZ4 != 0 {
        "lz4"
    } else {
        "xz"
    }
}

fn parse_header(path: &Path, b: &[u8], size: u64) -> Result<Header, JournalError> {
    let not = |what: String| JournalError::NotJournal {
        path: display(path),
        what,
    };
    let corrupt = |offset, what: String| JournalError::Corrupt {
        path: display(path),
        offset,
        what,
    };
    if b.len() < SIGNATURE.len() || &b[..8] != SIGNATURE {
        return Err(not("no LPKSHHRH signature".into()));
    }
    if (b.len() as u64) < HEADER_MIN {
        return Err(not(format!(
            "{size} bytes, too short for a journal header ({HEADER_MIN})"
        )));
    }
    let incompatible = le32(b, 12);
    let unknown = incompatible & !INCOMPATIBLE_KNOWN;
    if unknown != 0 {
        return Err(JournalError::Unsupported {
            path: display(path),
            flags: incompatible,
            unknown,
        });
    }
    let mut file_id = [0u8; 16];
    file_id.copy_from_slice(&b[24..40]);
    let h = Header {
        compatible_flags: le32(b, 8),
        incompatible_flags: incompatible,
        state: b[16],
        file_id,
        header_size: le64(b, 88),
        arena_size: le64(b, 96),
        data_hash_table_offset: le64(b, 104),
        data_hash_table_size: le64(b, 112),
        n_entries: le64(b, 152),
        head_entry_realtime: le64(b, 184),
        tail_entry_realtime: le64(b, 192),
    };
    let min = if h.compact() {
        HEADER_MIN_COMPACT
    } else {
        HEADER_MIN
    };
    if h.header_size < min || h.header_size % 8 != 0 || h.header_size > size {
        return Err(corrupt(
            88,
            format!(
                "header size {} (at least {min}, a multiple of 8, within the {size}-byte file)",
                h.header_size
            ),
        ));
    }
    let table_end = h.data_hash_table_offset.checked_add(h.data_hash_table_size);
    if h.data_hash_table_size < 16
        || h.data_hash_table_size % 16 != 0
        || h.data_hash_table_offset % 8 != 0
        || h.data_hash_table_offset < h.header_size + OBJECT_HEADER
        || table_end.is_none_or(|end| end > size)
    {
        return Err(corrupt(
            104,
            format!(
                "data hash table of {} bytes at {} is not inside the {size}-byte file",
                h.data_hash_table_size, h.data_hash_table_offset
            ),
        ));
    }
    Ok(h)
}

/// What a DATA object holds, as far as a log line cares.
#[derive(Debug, Clone)]
enum Field {
    /// A MESSAGE, with the payload's size.
    Message(u64),
    Identifier(String),
    Comm(String),
    Pid(String),
    Compressed(&'static str, u64),
    Other,
}

/// The field of a payload from its first bytes (`len`: the whole payload's size).
fn classify(p: &[u8], len: u64) -> Field {
    let value = |name: &[u8]| {
        let v = &p[name.len()..];
        let cut = len > p.len() as u64;
        let mut s: String = String::from_utf8_lossy(v)
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        if cut {
            s.push('…');
        }
        s
    };
    if p.starts_with(MESSAGE) {
        Field::Message(len)
    } else if p.starts_with(b"SYSLOG_IDENTIFIER=") {
        Field::Identifier(value(b"SYSLOG_IDENTIFIER="))
    } else if p.starts_with(b"_COMM=") {
        Field::Comm(value(b"_COMM="))
    } else if p.starts_with(b"_PID=") {
        Field::Pid(value(b"_PID="))
    } else {
        Field::Other
    }
}

/// Recently read data objects of one file, by offset (fields many entries share).
#[derive(Debug, Default)]
struct FieldCache {
    map: HashMap<u64, Field>,
}

impl FieldCache {
    fn get(&self, offset: u64) -> Option<&Field> {
        self.map.get(&offset)
    }

    fn put(&mut self, offset: u64, f: Field) {
        if self.map.len() >= CACHE_LIMIT {
            self.map.clear();
        }
        self.map.insert(offset, f);
    }
}

/// An entry's MESSAGE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Printable text (tabs and newlines allowed), cut at [`MAX_MESSAGE`] bytes.
    Text { text: String, cut: bool },
    /// Not UTF-8, or with control characters: not shown (as `journalctl` does).
    Binary { bytes: u64 },
    /// Stored compressed (`bytes`: the compressed size): not read.
    Compressed { algorithm: &'static str, bytes: u64 },
    /// The entry has no MESSAGE field.
    Missing,
}

fn message(mut raw: Vec<u8>, total: u64) -> Message {
    let cut = total > raw.len() as u64;
    if cut {
        // A character split by the cut is not binary.
        if let Err(e) = std::str::from_utf8(&raw)
            && e.error_len().is_none()
        {
            raw.truncate(e.valid_up_to());
        }
    }
    while raw.last() == Some(&b'\n') {
        raw.pop();
    }
    match String::from_utf8(raw) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && c != '\t' && c != '\n') =>
        {
            Message::Text { text, cut }
        }
        _ => Message::Binary { bytes: total },
    }
}

/// The fields of one entry that make its log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Microseconds since the Unix epoch.
    pub realtime_usec: u64,
    pub identifier: Option<String>,
    pub comm: Option<String>,
    pub pid: Option<String>,
    pub message: Message,
}

impl Entry {
    /// Unix seconds of the entry.
    pub fn unix_secs(&self) -> i64 {
        i64::try_from(self.realtime_usec / 1_000_000).unwrap_or(i64::MAX)
    }

    /// The start of the entry's line, as `journalctl -o short-iso` prints it but with an
    /// RFC 3339 time in UTC to the microsecond: `2026-11-22T08:01:02.123456Z kubelet[1201]: `.
    pub fn prefix(&self) -> String {
        let stamp = crate::clock::rfc3339_secs(self.unix_secs());
        let stamp = format!(
            "{}.{:06}Z",
            stamp.trim_end_matches('Z'),
            self.realtime_usec % 1_000_000
        );
        let ident = self
            .identifier
            .as_deref()
            .or(self.comm.as_deref())
            .unwrap_or("unknown");
        match &self.pid {
            Some(pid) => format!("{stamp} {ident}[{pid}]: "),
            None => format!("{stamp} {ident}: "),
        }
    }

    /// The message's lines; a marker for a message that is not shown.
    pub fn message_lines(&self) -> Vec<String> {
        match &self.message {
            Message::Text { text, cut } => {
                let mut out: Vec<String> = text.split('\n').map(str::to_owned).collect();
                if *cut && let Some(last) = out.last_mut() {
                    last.push_str(" <cut>");
                }
                out
            }
            Message::Binary { bytes } => {
                vec![format!("<binary message: {bytes} bytes, not shown>")]
            }
            Message::Compressed { algorithm, bytes } => vec![format!(
                "<compressed message ({algorithm}, {bytes} bytes stored): not read>"
            )],
            Message::Missing => vec!["<no message>".to_owned()],
        }
    }

    /// The entry as lines: the prefix, then the message; a message of several lines goes on
    /// on lines indented under the first.
    pub fn lines(&self) -> Vec<String> {
        let prefix = self.prefix();
        let indent = " ".repeat(prefix.chars().count());
        self.message_lines()
            .into_iter()
            .enumerate()
            .map(|(i, l)| format!("{}{l}", if i == 0 { &prefix } else { &indent }))
            .collect()
    }
}

/// A file of the journal, as listed in reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    pub path: String,
    pub size: u64,
    pub state: &'static str,
    pub compact: bool,
    pub keyed_hash: bool,
    pub truncated: bool,
}

/// The journal files of a host.
#[derive(Debug, Default)]
pub struct Journal {
    files: Vec<JournalFile>,
    /// The journal directories that exist.
    pub dirs: Vec<String>,
    /// Files and directories that could not be read, or are not valid journal files.
    pub errors: Vec<JournalError>,
    /// Older files beyond [`MAX_FILES`], not read.
    pub not_opened: usize,
}

impl Journal {
    /// Opens the `*.journal` files under [`JOURNAL_DIRS`]`/<machine-id>/`, the most recently
    /// modified first, at most [`MAX_FILES`]. Never fails: what cannot be read is in `errors`.
    pub fn open(host: &HostRoot) -> Self {
        let mut j = Self::default();
        let mut found: Vec<(i64, PathBuf)> = Vec::new();
        for dir in JOURNAL_DIRS {
            let subdirs = match host.read_dir(Path::new(dir), MAX_DIR_ENTRIES) {
                Ok(s) => s,
                Err(e) if e.is_not_found() => continue,
                Err(HostError::NotADirectory { .. }) => continue,
                Err(e) => {
                    j.dirs.push(dir.to_owned());
                    j.errors.push(e.into());
                    continue;
                }
            };
            j.dirs.push(dir.to_owned());
            for sub in subdirs {
                if !matches!(sub.kind, Some(FileKind::Directory) | None) {
                    continue;
                }
                let sub = Path::new(dir).join(&sub.name);
                let names = match host.read_dir(&sub, MAX_DIR_ENTRIES) {
                    Ok(n) => n,
                    Err(HostError::NotADirectory { .. }) => continue,
                    Err(e) => {
                        j.errors.push(e.into());
                        continue;
                    }
                };
                for n in names {
                    let is_journal = n.name.to_str().is_some_and(|s| s.ends_with(".journal"));
                    if !is_journal || !matches!(n.kind, Some(FileKind::File) | None) {
                        continue;
                    }
                    let path = sub.join(&n.name);
                    match host.lstat(&path) {
                        Ok(m) if m.kind == FileKind::File => found.push((m.mtime, path)),
                        Ok(_) => {}
                        Err(e) => j.errors.push(e.into()),
                    }
                }
            }
        }
        found.sort_by(|a, b| b.cmp(a));
        j.not_opened = found.len().saturating_sub(MAX_FILES);
        for (_, path) in found.into_iter().take(MAX_FILES) {
            match JournalFile::open(host, &path) {
                Ok(f) => {
                    if f.truncated() {
                        j.errors.push(f.corrupt(
                            f.size,
                            format!(
                                "truncated: the header describes {} bytes; what lies past the \
                                 end is not read",
                                f.header.header_size.saturating_add(f.header.arena_size)
                            ),
                        ));
                    }
                    j.files.push(f);
                }
                Err(e) => j.errors.push(e),
            }
        }
        j
    }

    /// True when no journal file could be opened.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The files opened.
    pub fn files(&self) -> Vec<FileInfo> {
        self.files
            .iter()
            .map(|f| FileInfo {
                path: display(&f.path),
                size: f.size,
                state: f.header.state_name(),
                compact: f.header.compact(),
                keyed_hash: f.header.keyed(),
                truncated: f.truncated(),
            })
            .collect()
    }

    /// The newest entries with the field `matching` (`_SYSTEMD_UNIT=kubelet.service`) across
    /// the files: at most `max_entries`, none older than `since_usec` (the walk of a file
    /// stops at its first older entry), handed to `on_entry` oldest first. `expired` is asked
    /// between steps; when it says so, what was found so far is handed on.
    pub fn tail(
        &self,
        matching: &str,
        max_entries: usize,
        since_usec: u64,
        expired: &dyn Fn() -> bool,
        on_entry: &mut dyn FnMut(Entry),
    ) -> TailReport {
        let mut rep = TailReport::default();
        // (realtime, seqnum, file, offset) of the newest entries found so far.
        let mut chosen: Vec<(u64, u64, usize, u64)> = Vec::new();
        let mut order: Vec<usize> = (0..self.files.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.files[i].header.tail_entry_realtime));
        for i in order {
            let f = &self.files[i];
            let tail = f.header.tail_entry_realtime;
            if tail != 0 && tail < since_usec {
                continue;
            }
            if chosen.len() >= max_entries && chosen.first().is_some_and(|c| tail < c.0) {
                continue;
            }
            if expired() {
                rep.timed_out = true;
                break;
            }
            let mut errors = Vec::new();
            let data = match f.find_data(matching.as_bytes()) {
                Ok(Some(d)) => d,
                Ok(None) => {
                    rep.push_errors(errors);
                    continue;
                }
                Err(e) => {
                    errors.push(e);
                    rep.push_errors(errors);
                    continue;
                }
            };
            rep.files_matched.push(display(&f.path));
            let mut buf = Vec::new();
            let mut found = 0usize;
            let mut bad = 0u64;
            let mut bad_first: Option<JournalError> = None;
            let walk = f.entries_newest_first(&data, &mut errors, expired, |offset| {
                match f.entry_time(offset, &mut buf) {
                    Ok((seqnum, realtime)) => {
                        if realtime < since_usec {
                            return Ok(false);
                        }
                        chosen.push((realtime, seqnum, i, offset));
                        found += 1;
                        Ok(found < max_entries)
                    }
                    Err(e) => {
                        bad += 1;
                        bad_first.get_or_insert(e);
                        if bad > MAX_BAD_ENTRIES {
                            return Err(f.corrupt(
                                offset,
                                format!("more than {MAX_BAD_ENTRIES} unreadable entries; the rest of the file is not read"),
                            ));
                        }
                        Ok(true)
                    }
                }
            });
            if let Some(e) = bad_first {
                errors.push(f.corrupt(0, format!("{bad} entries not readable, the first: {e}")));
            }
            if let Err(e) = walk {
                errors.push(e);
            }
            rep.push_errors(errors);
            chosen.sort_unstable();
            let excess = chosen.len().saturating_sub(max_entries);
            chosen.drain(..excess);
        }
        // The chosen entries, oldest first.
        let mut caches: HashMap<usize, FieldCache> = HashMap::new();
        let mut failed: HashMap<usize, (u64, Option<JournalError>)> = HashMap::new();
        for (n, &(_, _, i, offset)) in chosen.iter().enumerate() {
            if n % 256 == 255 && expired() {
                rep.timed_out = true;
                break;
            }
            let f = &self.files[i];
            match f.entry(offset, caches.entry(i).or_default()) {
                Ok(e) => {
                    rep.entries += 1;
                    match &e.message {
                        Message::Compressed { algorithm, .. } => {
                            rep.compressed += 1;
                            if !rep.compression.contains(algorithm) {
                                rep.compression.push(algorithm);
                            }
                        }
                        Message::Binary { .. } => rep.binary += 1,
                        _ => {}
                    }
                    on_entry(e);
                }
                Err(e) => {
                    let slot = failed.entry(i).or_default();
                    slot.0 += 1;
                    slot.1.get_or_insert(e);
                }
            }
        }
        let mut failed: Vec<_> = failed.into_iter().collect();
        failed.sort_by_key(|(i, _)| *i);
        for (i, (count, first)) in failed {
            let f = &self.files[i];
            let what = match first {
                Some(e) => format!("{count} entries not readable, the first: {e}"),
                None => format!("{count} entries not readable"),
            };
            rep.push_errors(vec![f.corrupt(0, what)]);
        }
        rep
    }
}

/// What [`Journal::tail`] did.
#[derive(Debug, Default)]
pub struct TailReport {
    /// Entries handed on.
    pub entries: u64,
    /// Files that hold the field at all.
    pub files_matched: Vec<String>,
    /// Entries whose MESSAGE is compressed (not read), and the algorithms seen.
    pub compressed: u64,
    pub compression: Vec<&'static str>,
    /// Entries whose MESSAGE is binary (not shown).
    pub binary: u64,
    /// Files (or parts of them) that could not be read.
    pub errors: Vec<JournalError>,
    /// Errors not listed (beyond a few per file).
    pub errors_not_listed: usize,
    /// The time budget stopped the walk.
    pub timed_out: bool,
}

impl TailReport {
    fn push_errors(&mut self, errors: Vec<JournalError>) {
        let n = errors.len();
        self.errors
            .extend(errors.into_iter().take(MAX_ERRORS_PER_FILE));
        self.errors_not_listed += n.saturating_sub(MAX_ERRORS_PER_FILE);
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testwriter;
