//! The archive being written: tar entries into gzip into the caller's writer, with the
//! SHA-256 of every entry and of the compressed stream, and the size cap.
//!
//! **The cap.** Everything is budgeted in uncompressed tar bytes (headers, content, padding),
//! which bound the compressed size from above: deflate falls back to stored blocks when
//! compression does not pay, at five bytes per 64 KiB block, and gzip adds 18 bytes. So
//! [`Bundle::new`] allows `cap - cap/1024 - 8 KiB` tar bytes in all. Room for `errors.json`
//! and `manifest.json` is reserved as each entry, error or trim is recorded (its manifest
//! line, computed exactly, plus margins), so they can always be written last.

use std::collections::HashSet;
use std::io::{self, Write};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;

/// Compression overhead allowed for: a fraction of the cap and a constant.
const GZIP_OVERHEAD_DIVISOR: u64 = 1024;
const GZIP_OVERHEAD_FIXED: u64 = 8 << 10;
/// What the tail always needs whatever was recorded: two entries' headers and padding, the
/// end-of-archive blocks, the manifest's fixed fields (node identity, limits, one record per
/// collector) and errors.json's frame.
const TAIL_FIXED: u64 = 48 << 10;
/// Margin per manifest line for indentation and field names.
const LINE_MARGIN: u64 = 96;
/// Longest error message kept.
const MAX_MESSAGE: usize = 600;

/// One entry of the archive as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct EntryRecord {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// Something a collector could not do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorRecord {
    pub collector: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub error: String,
}

/// Content left out to respect a budget or the cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trimmed {
    pub collector: String,
    /// The entry cut (or the source left out).
    pub entry: String,
    /// `bundle size cap`, `collector size budget` or `collector time budget`.
    pub reason: String,
    /// What was left out: `{"lines": 1200}`, `{"items": 40}`, `{"bytes": 10485760}`.
    pub dropped: serde_json::Value,
}

/// Counts bytes going through (the uncompressed tar stream).
struct Counter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes and counts what reaches the caller's writer (the compressed bundle).
struct Hasher<'w> {
    out: &'w mut dyn Write,
    ctx: ring::digest::Context,
    bytes: u64,
}

impl Write for Hasher<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.ctx.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Reads a sequence of byte slices as one stream, hashing it, and never more than `left`.
struct Chunks<'c, I: Iterator<Item = &'c [u8]>> {
    chunks: I,
    cur: &'c [u8],
    ctx: ring::digest::Context,
    left: u64,
}

impl<'c, I: Iterator<Item = &'c [u8]>> Chunks<'c, I> {
    /// Moves to the next non-empty chunk; false at the end.
    fn next_chunk(&mut self) -> bool {
        while self.cur.is_empty() {
            match self.chunks.next() {
                Some(c) => self.cur = c,
                None => return false,
            }
        }
        true
    }
}

impl<'c, I: Iterator<Item = &'c [u8]>> io::Read for Chunks<'c, I> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || !self.next_chunk() {
            return Ok(0);
        }
        let n = self
            .cur
            .len()
            .min(buf.len())
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.ctx.update(&self.cur[..n]);
        self.cur = &self.cur[n..];
        self.left -= n as u64;
        Ok(n)
    }
}

/// Entry content that does not fit.
#[derive(Debug)]
pub struct NoRoom;

/// The archive being written.
pub struct Bundle<'w> {
    tar: tar::Builder<Counter<GzEncoder<Hasher<'w>>>>,
    mtime: u64,
    /// Tar bytes allowed in all.
    cap: u64,
    /// Tar bytes promised to `errors.json` and `manifest.json`.
    reserved: u64,
    pub entries: Vec<EntryRecord>,
    pub errors: Vec<ErrorRecord>,
    pub errors_not_recorded: u64,
    pub trimmed: Vec<Trimmed>,
    paths: HashSet<String>,
}

impl std::fmt::Debug for Bundle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("written", &self.written())
            .field("reserved", &self.reserved)
            .field("cap", &self.cap)
            .field("entries", &self.entries.len())
            .finish()
    }
}

/// Tar bytes of a header for `path` (with a GNU long-name entry when it needs one).
fn header_cost(path: &str) -> u64 {
    let long = if path.len() >= 100 {
        512 + pad(path.len() as u64 + 1)
    } else {
        0
    };
    512 + long
}

fn pad(n: u64) -> u64 {
    n.div_ceil(512) * 512
}

/// Manifest bytes of the line for an entry at `path`.
fn manifest_line_cost(path: &str) -> u64 {
    let escaped = serde_json::to_string(path).map_or(path.len() * 6, |s| s.len());
    // "size" up to 20 digits, the 64-digit hash, keys and indentation.
    escaped as u64 + 20 + 64 + LINE_MARGIN
}

impl<'w> Bundle<'w> {
    pub fn new(out: &'w mut dyn Write, max_bundle_bytes: u64, mtime: u64) -> Self {
        let hasher = Hasher {
            out,
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            bytes: 0,
        };
        let gz = GzEncoder::new(hasher, Compression::default());
        let mut tar = tar::Builder::new(Counter {
            inner: gz,
            bytes: 0,
        });
        tar.mode(tar::HeaderMode::Deterministic);
        let cap = max_bundle_bytes
            .saturating_sub(max_bundle_bytes / GZIP_OVERHEAD_DIVISOR)
            .saturating_sub(GZIP_OVERHEAD_FIXED);
        Self {
            tar,
            mtime,
            cap,
            reserved: TAIL_FIXED,
            entries: Vec::new(),
            errors: Vec::new(),
            errors_not_recorded: 0,
            trimmed: Vec::new(),
            paths: HashSet::new(),
        }
    }

    /// Uncompressed tar bytes written so far.
    pub fn written(&self) -> u64 {
        self.tar.get_ref().bytes
    }

    /// Bytes not yet written nor reserved.
    fn free(&self) -> u64 {
        self.cap
            .saturating_sub(self.written())
            .saturating_sub(self.reserved)
    }

    /// The largest content an entry at `path` may have now.
    pub fn room(&self, path: &str) -> u64 {
        self.free()
            .saturating_sub(header_cost(path))
            .saturating_sub(manifest_line_cost(path))
            .saturating_sub(511)
    }

    /// Appends an entry, or [`NoRoom`] when it would break the cap (nothing is written then).
    /// `Err(Ok(io))`-style: the outer error is the writer's and ends the snapshot.
    pub fn append(&mut self, path: &str, data: &[u8]) -> io::Result<Result<(), NoRoom>> {
        self.append_chunks(path, data.len() as u64, std::iter::once(data))
    }

    /// Appends an entry of `size` bytes made of `chunks` (log lines and their newlines),
    /// streamed into the archive without joining them first.
    pub fn append_chunks<'c>(
        &mut self,
        path: &str,
        size: u64,
        chunks: impl Iterator<Item = &'c [u8]>,
    ) -> io::Result<Result<(), NoRoom>> {
        let path = self.unique(path);
        if size > self.room(&path) {
            return Ok(Err(NoRoom));
        }
        self.write_entry(&path, size, chunks)?;
        self.reserved += manifest_line_cost(&path);
        Ok(Ok(()))
    }

    fn write_entry<'c>(
        &mut self,
        path: &str,
        size: u64,
        chunks: impl Iterator<Item = &'c [u8]>,
    ) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(size);
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.mtime);
        let mut reader = Chunks {
            chunks,
            cur: &[],
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            left: size,
        };
        self.tar.append_data(&mut h, path, &mut reader)?;
        if reader.left != 0 || reader.next_chunk() {
            // The chunks did not add up to `size`: the archive is now inconsistent.
            return Err(io::Error::other(format!("{path}: entry size mismatch")));
        }
        self.entries.push(EntryRecord {
            path: path.to_owned(),
            size,
            sha256: crate::files::entry::hex(reader.ctx.finish().as_ref()),
        });
        self.paths.insert(path.to_owned());
        Ok(())
    }

    /// `path`, or `path.N` when an entry of that name exists already.
    fn unique(&self, path: &str) -> String {
        if !self.paths.contains(path) {
            return path.to_owned();
        }
        (1..)
            .map(|n| format!("{path}.{n}"))
            .find(|p| !self.paths.contains(p))
            .unwrap_or_else(|| path.to_owned())
    }

    /// Records an error (kept when there is room in the tail; counted otherwise).
    pub fn error(&mut self, collector: &str, path: Option<String>, error: String) {
        let mut error = error;
        if error.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !error.is_char_boundary(cut) {
                cut -= 1;
            }
            error.truncate(cut);
            error.push('…');
        }
        let rec = ErrorRecord {
            collector: collector.to_owned(),
            path,
            error,
        };
        // Listed twice: in errors.json and in the manifest.
        let cost = 2 * (serde_json::to_string(&rec).map_or(2048, |s| s.len() as u64) + LINE_MARGIN);
        if cost > self.free() {
            self.errors_not_recorded += 1;
            return;
        }
        self.reserved += cost;
        self.errors.push(rec);
    }

    /// Records trimmed content.
    pub fn trimmed(&mut self, t: Trimmed) {
        let cost = serde_json::to_string(&t).map_or(2048, |s| s.len() as u64) + LINE_MARGIN;
        if cost > self.free() {
            self.errors_not_recorded += 1;
            return;
        }
        self.reserved += cost;
        self.trimmed.push(t);
    }

    /// Writes `errors.json` and the manifest `manifest(entries)` builds, ends the archive and
    /// the gzip stream; returns the SHA-256 and size of the compressed bytes.
    pub fn finish(
        mut self,
        errors_json: &[u8],
        manifest: impl FnOnce(&[EntryRecord]) -> Vec<u8>,
    ) -> io::Result<(String, u64, usize)> {
        self.write_entry(
            "errors.json",
            errors_json.len() as u64,
            std::iter::once(errors_json),
        )?;
        let m = manifest(&self.entries);
        self.write_entry(
            "manifest.json",
            m.len() as u64,
            std::iter::once(m.as_slice()),
        )?;
        let entries = self.entries.len();
        let counter = self.tar.into_inner()?;
        let mut hasher = counter.inner.finish()?;
        hasher.flush()?;
        let digest = hasher.ctx.finish();
        Ok((
            crate::files::entry::hex(digest.as_ref()),
            hasher.bytes,
            entries,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_hex(data: &[u8]) -> String {
        crate::files::entry::hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
    }

    #[test]
    fn an_entry_that_does_not_fit_is_refused_and_nothing_is_written() {
        let mut out = Vec::new();
        let mut b = Bundle::new(&mut out, 256 << 10, 0);
        let room = b.room("a");
        assert!(room > 100 << 10, "{room}");
        assert!(
            b.append("a", &vec![b'x'; room as usize + 1])
                .unwrap()
                .is_err()
        );
        assert_eq!(b.written(), 0);
        assert!(b.append("a", &vec![b'x'; room as usize]).unwrap().is_ok());
        assert!(b.room("b") < 1024);
        // Same path twice: the second gets a suffix.
        assert!(b.append("a", b"").unwrap().is_ok());
        assert_eq!(b.entries[1].path, "a.1");
        let (sha, size, n) = b.finish(b"[]", |_| b"{}".to_vec()).unwrap();
        assert_eq!(n, 4);
        assert_eq!(size, out.len() as u64);
        assert_eq!(sha, sha256_hex(&out));
        assert!(size <= 256 << 10);
    }
}
