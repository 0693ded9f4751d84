//! `nodedrift snapshot verify`: a bundle checked against its own manifest and sidecar.
//!
//! Every entry is read and hashed (streaming) and compared with `manifest.json` (missing,
//! extra, size or SHA-256 mismatch); the manifest must be the last entry; the gzip stream must
//! end cleanly (its CRC and length are checked) with nothing after it; and when
//! `<bundle>.sha256` exists, the SHA-256 of the whole file must match it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::bundle::EntryRecord;
use super::output::sidecar_path;
use crate::files::entry::hex;

/// Largest manifest read.
const MAX_MANIFEST: u64 = 256 << 20;

/// What the sidecar said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum SidecarCheck {
    Absent,
    Matches,
    Mismatch { recorded: String },
    Unreadable { error: String },
}

/// The result of a verification.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// SHA-256 of the whole file as read.
    pub sha256: String,
    pub size: u64,
    /// The request id the manifest names.
    pub id: Option<String>,
    /// Entries read from the archive (the manifest included).
    pub entries: usize,
    /// Everything wrong; empty when the bundle is intact.
    pub problems: Vec<String>,
    pub sidecar: SidecarCheck,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
            && matches!(self.sidecar, SidecarCheck::Absent | SidecarCheck::Matches)
    }
}

/// A bundle that could not be opened at all.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct VerifyError {
    pub path: String,
    #[source]
    pub source: io::Error,
}

#[derive(Deserialize)]
struct Manifest {
    id: Option<String>,
    entries: Vec<EntryRecord>,
}

/// Hashes and counts what is read through it.
struct Hashing<R> {
    inner: R,
    ctx: ring::digest::Context,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ctx.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Verifies the bundle at `path`.
pub fn verify(path: &Path) -> Result<Verification, VerifyError> {
    let file = File::open(path).map_err(|source| VerifyError {
        path: path.display().to_string(),
        source,
    })?;
    let hashing = Hashing {
        inner: file,
        ctx: ring::digest::Context::new(&ring::digest::SHA256),
        bytes: 0,
    };
    let mut problems = Vec::new();
    let mut gz = flate2::bufread::GzDecoder::new(BufReader::with_capacity(64 << 10, hashing));
    let mut seen: Vec<EntryRecord> = Vec::new();
    let mut manifest_bytes: Option<Vec<u8>> = None;
    let mut after_manifest = Vec::new();
    let read_archive = (|| -> io::Result<()> {
        let mut archive = tar::Archive::new(&mut gz);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let name = entry.path_bytes();
            let name = String::from_utf8_lossy(&name).into_owned();
            if manifest_bytes.is_some() {
                after_manifest.push(name.clone());
            }
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            let mut size = 0u64;
            let mut keep = (name == "manifest.json").then(Vec::new);
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = entry.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                ctx.update(&buf[..n]);
                size += n as u64;
                if let Some(k) = keep.as_mut()
                    && size <= MAX_MANIFEST
                {
                    k.extend_from_slice(&buf[..n]);
                }
            }
            if let Some(k) = keep {
                manifest_bytes = Some(k);
            }
            seen.push(EntryRecord {
                path: name,
                size,
                sha256: hex(ctx.finish().as_ref()),
            });
        }
        Ok(())
    })();
    if let Err(e) = read_archive {
        problems.push(format!("the archive is corrupt or truncated: {e}"));
    }
    // The rest of the gzip stream (tar padding), which checks its CRC and length, then
    // anything after it.
    if problems.is_empty() {
        match io::copy(&mut gz, &mut io::sink()) {
            Ok(_) => {}
            Err(e) => problems.push(format!(
                "the compressed stream is corrupt or truncated: {e}"
            )),
        }
    }
    let mut rest = gz.into_inner();
    let trailing = io::copy(&mut rest, &mut io::sink()).unwrap_or(0);
    if trailing > 0 && problems.is_empty() {
        problems.push(format!(
            "{trailing} bytes of trailing data after the compressed stream"
        ));
    }
    let hashing = rest.into_inner();
    let sha256 = hex(hashing.ctx.finish().as_ref());
    let size = hashing.bytes;

    let mut id = None;
    match manifest_bytes {
        None if problems.is_empty() => problems.push("no manifest.json in the archive".into()),
        None => {}
        Some(bytes) => match serde_json::from_slice::<Manifest>(&bytes) {
            Err(e) => problems.push(format!("manifest.json is not a valid manifest: {e}")),
            Ok(m) => {
                id = m.id;
                compare(&m.entries, &seen, &mut problems);
            }
        },
    }
    for name in after_manifest {
        problems.push(format!("{name}: entry after manifest.json (added later?)"));
    }
    let sidecar = check_sidecar(path, &sha256);
    Ok(Verification {
        sha256,
        size,
        id,
        entries: seen.len(),
        problems,
        sidecar,
    })
}

fn compare(listed: &[EntryRecord], seen: &[EntryRecord], problems: &mut Vec<String>) {
    let mut archive: BTreeMap<&str, Vec<&EntryRecord>> = BTreeMap::new();
    for e in seen {
        archive.entry(e.path.as_str()).or_default().push(e);
    }
    let mut in_manifest = std::collections::HashSet::new();
    for m in listed {
        in_manifest.insert(m.path.as_str());
        match archive.get(m.path.as_str()).and_then(|v| v.first()) {
            None => problems.push(format!(
                "{}: listed in the manifest, missing from the archive",
                m.path
            )),
            Some(a) if a.size != m.size => problems.push(format!(
                "{}: size {} in the archive, {} in the manifest",
                m.path, a.size, m.size
            )),
            Some(a) if a.sha256 != m.sha256 => problems.push(format!(
                "{}: SHA-256 {} in the archive, {} in the manifest",
                m.path, a.sha256, m.sha256
            )),
            Some(_) => {}
        }
    }
    for (path, v) in &archive {
        if *path == "manifest.json" {
            if v.len() > 1 {
                problems.push("manifest.json appears more than once".into());
            }
            continue;
        }
        if !in_manifest.contains(path) {
            problems.push(format!(
                "{path}: in the archive, not in the manifest (extra entry)"
            ));
        } else if v.len() > 1 {
            problems.push(format!("{path}: appears {} times in the archive", v.len()));
        }
    }
}

fn check_sidecar(bundle: &Path, sha256: &str) -> SidecarCheck {
    let path = sidecar_path(bundle);
    match std::fs::read_to_string(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => SidecarCheck::Absent,
        Err(e) => SidecarCheck::Unreadable {
            error: format!("{}: {e}", path.display()),
        },
        Ok(text) => {
            let recorded = text
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            if recorded == sha256 {
                SidecarCheck::Matches
            } else {
                SidecarCheck::Mismatch { recorded }
            }
        }
    }
}
