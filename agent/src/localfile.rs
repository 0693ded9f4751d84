//! The operator's own files (the run config, baseline files): read from the agent's
//! filesystem, not the host's. Regular files only, so a FIFO named like a config cannot block
//! the agent, and bounded in size.

use std::io::Read;
use std::path::Path;

/// Reads `path` as text, failing with a message when it is not a regular file, cannot be read,
/// or is larger than `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit + 1).read_to_string(&mut text))
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > limit {
        return Err(format!("larger than {limit} bytes"));
    }
    Ok(text)
}
