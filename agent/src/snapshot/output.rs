//! Writing a bundle to a file: under a temporary name in the target directory, synced, then
//! renamed into place with its `.sha256` sidecar. A snapshot that fails (disk full, an
//! unwritable directory, cancellation) leaves no file behind. And the retention of old ones.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{SnapshotError, SnapshotOutcome, SnapshotRequest, take};

/// Temporary files left by a crashed snapshot are removed by [`retain`] after this long.
const STALE_PARTIAL: Duration = Duration::from_secs(3600);
/// The suffix of bundles.
const SUFFIX: &str = ".tar.gz";
const PARTIAL: &str = ".partial-";

/// Where snapshots live: `<state dir>/snapshots`.
pub fn snapshot_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("snapshots")
}

/// `20261122T080102Z-<id>.tar.gz`: sorts by time, names the request.
pub fn default_file_name(id: &str, at: SystemTime) -> String {
    let stamp = crate::clock::rfc3339(at).replace(['-', ':'], "");
    format!("{stamp}-{id}{SUFFIX}")
}

fn output_err(path: &Path, source: std::io::Error) -> SnapshotError {
    SnapshotError::Output {
        path: path.display().to_string(),
        source,
    }
}

/// Takes a snapshot into `path` (its directory is created 0700 when missing; the file is
/// 0600): written to a temporary file beside it, synced, moved into place (an existing file is
/// never replaced: that is an error), then `<path>.sha256` written the same way. On any
/// failure nothing is left at `path` nor beside it. The outcome's `path` is set.
pub fn take_to_file(
    req: &SnapshotRequest<'_>,
    path: &Path,
) -> Result<SnapshotOutcome, SnapshotError> {
    super::validate_id(req.id)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| output_err(path, std::io::Error::other("not a file name")))?
        .to_string_lossy()
        .into_owned();
    if !dir.is_dir() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| output_err(&dir, e))?;
    }
    let tmp = dir.join(format!(".{name}{PARTIAL}{}", std::process::id()));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| output_err(&tmp, e))?;
    let result = write_bundle(req, file, &tmp);
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = publish(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(output_err(path, e));
    }
    let sidecar = sidecar_path(path);
    if let Err(e) = write_sidecar(&sidecar, &outcome.sha256, &name) {
        let _ = fs::remove_file(path);
        return Err(e);
    }
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(SnapshotOutcome {
        path: Some(path.to_path_buf()),
        ..outcome
    })
}

/// Moves the finished temporary file to `path`, never replacing an existing file (evidence is
/// not overwritten): a hard link, which fails when `path` exists, then the temporary name is
/// removed. Where hard links are not supported, a rename after checking `path` is free.
fn publish(tmp: &Path, path: &Path) -> std::io::Result<()> {
    match fs::hard_link(tmp, path) {
        Ok(()) => fs::remove_file(tmp),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
        Err(_) if !path.exists() => fs::rename(tmp, path),
        Err(e) => Err(e),
    }
}

fn write_bundle(
    req: &SnapshotRequest<'_>,
    file: File,
    tmp: &Path,
) -> Result<SnapshotOutcome, SnapshotError> {
    let mut w = BufWriter::with_capacity(256 << 10, file);
    let outcome = take(req, &mut w).map_err(|e| match e {
        SnapshotError::Write(source) => output_err(tmp, source),
        e => e,
    })?;
    let file = w
        .into_inner()
        .map_err(|e| output_err(tmp, e.into_error()))?;
    file.sync_all().map_err(|e| output_err(tmp, e))?;
    Ok(outcome)
}

/// `<bundle>.sha256`.
pub(super) fn sidecar_path(bundle: &Path) -> PathBuf {
    let mut s = bundle.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

/// `<hex>  <name>\n` (sha256sum's format), written atomically.
fn write_sidecar(path: &Path, sha256: &str, name: &str) -> Result<(), SnapshotError> {
    let tmp = {
        let mut s = path.as_os_str().to_owned();
        s.push(format!("{PARTIAL}{}", std::process::id()));
        PathBuf::from(s)
    };
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(format!("{sha256}  {name}\n").as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        output_err(path, e)
    })
}

/// Keeps the newest `keep` bundles named by [`default_file_name`] in `dir` and removes the
/// rest with their sidecars, and temporary files of snapshots that died over an hour ago.
/// Returns what was removed.
pub fn retain(dir: &Path, keep: usize) -> Result<Vec<PathBuf>, SnapshotError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(output_err(dir, e)),
    };
    let mut bundles = Vec::new();
    let mut removed = Vec::new();
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') && name.contains(PARTIAL) {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_PARTIAL);
            if old && fs::remove_file(&path).is_ok() {
                removed.push(path);
            }
            continue;
        }
        if is_bundle_name(&name) {
            bundles.push((name, path));
        }
    }
    bundles.sort();
    let excess = bundles.len().saturating_sub(keep);
    for (_, path) in bundles.into_iter().take(excess) {
        fs::remove_file(&path).map_err(|e| output_err(&path, e))?;
        let _ = fs::remove_file(sidecar_path(&path));
        removed.push(path);
    }
    Ok(removed)
}

/// `YYYYMMDDTHHMMSSZ-<id>.tar.gz`.
fn is_bundle_name(name: &str) -> bool {
    let b = name.as_bytes();
    name.ends_with(SUFFIX)
        && b.len() > 17 + SUFFIX.len()
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
        && b[16] == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_retention_keeps_the_newest() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_315_371);
        assert_eq!(default_file_name("abc", t), "20261122T024251Z-abc.tar.gz");
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5u64 {
            let n = default_file_name("r", t + Duration::from_secs(i));
            fs::write(dir.path().join(&n), b"x").unwrap();
            fs::write(sidecar_path(&dir.path().join(&n)), b"y").unwrap();
        }
        fs::write(dir.path().join("notes.txt"), b"kept").unwrap();
        let removed = retain(dir.path(), 2).unwrap();
        assert_eq!(removed.len(), 3);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                "20261122T024254Z-r.tar.gz",
                "20261122T024254Z-r.tar.gz.sha256",
                "20261122T024255Z-r.tar.gz",
                "20261122T024255Z-r.tar.gz.sha256",
                "notes.txt"
            ]
        );
        assert!(retain(&dir.path().join("missing"), 1).unwrap().is_empty());
    }
}
