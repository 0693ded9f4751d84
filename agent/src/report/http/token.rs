//! The bearer token of the endpoint sink, read from a file that rotates under us (a projected
//! service-account token is replaced by the kubelet well before it expires).
//!
//! Before each send the file is `stat`ed; it is read again only when its identity or size or
//! mtime changed (the kubelet's atomic writer swaps a symlink, so a rotation is a new inode) or
//! when the cached copy is older than [`REREAD_INTERVAL`] (an in-place rewrite of the same size
//! within one timestamp tick would otherwise go unnoticed). A missing, unreadable, empty or
//! malformed file means "no token": the sink sends nothing and tries later, and says so once per
//! change of the problem rather than once per attempt. The token itself is never logged, and
//! the header value is marked sensitive so `Debug` output hides it too.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;

/// Longest time a cached token is used without reading the file again, whatever its metadata.
pub const REREAD_INTERVAL: Duration = Duration::from_secs(60);

/// Why there is no token to send with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenProblem {
    #[error("token file {path} does not exist")]
    Missing { path: PathBuf },
    #[error("token file {path} cannot be read: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("token file {path} is empty")]
    Empty { path: PathBuf },
    #[error("token file {path} holds characters not allowed in an HTTP header")]
    Malformed { path: PathBuf },
}

/// What identifies one version of the file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

#[derive(Debug)]
struct Cached {
    stamp: Stamp,
    read_at: Instant,
    value: Result<HeaderValue, TokenProblem>,
}

#[derive(Debug, Default)]
struct State {
    cached: Option<Cached>,
    /// The last problem logged, so a persisting problem is logged once.
    reported: Option<TokenProblem>,
}

/// A token file and its cached content.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    state: Mutex<State>,
}

impl TokenFile {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            state: Mutex::new(State::default()),
        }
    }

    /// The `Authorization` header value (`Bearer <token>`), re-reading the file if it changed.
    pub async fn header(&self) -> Result<HeaderValue, TokenProblem> {
        let result = self.load().await;
        self.report(&result);
        result
    }

    /// Forgets the cached token so the next send reads the file (after the endpoint said 401).
    pub fn invalidate(&self) {
        self.lock().cached = None;
    }

    async fn load(&self) -> Result<HeaderValue, TokenProblem> {
        let meta = match tokio::fs::metadata(&self.path).await {
            Ok(m) => m,
            Err(e) => {
                self.lock().cached = None;
                return Err(self.io_problem(&e));
            }
        };
        let stamp = Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        };
        if let Some(c) = &self.lock().cached {
            if c.stamp == stamp && c.read_at.elapsed() < REREAD_INTERVAL {
                return c.value.clone();
            }
        }
        let value = match tokio::fs::read(&self.path).await {
            Ok(bytes) => self.parse(&bytes),
            Err(e) => Err(self.io_problem(&e)),
        };
        self.lock().cached = Some(Cached {
            stamp,
            read_at: Instant::now(),
            value: value.clone(),
        });
        value
    }

    fn parse(&self, bytes: &[u8]) -> Result<HeaderValue, TokenProblem> {
        let token = String::from_utf8_lossy(bytes);
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenProblem::Empty {
                path: self.path.clone(),
            });
        }
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            TokenProblem::Malformed {
                path: self.path.clone(),
            }
        })?;
        value.set_sensitive(true);
        Ok(value)
    }

    fn io_problem(&self, e: &std::io::Error) -> TokenProblem {
        if e.kind() == std::io::ErrorKind::NotFound {
            TokenProblem::Missing {
                path: self.path.clone(),
            }
        } else {
            TokenProblem::Unreadable {
                path: self.path.clone(),
                reason: e.to_string(),
            }
        }
    }

    /// Logs a new problem once, and the recovery from one.
    fn report(&self, result: &Result<HeaderValue, TokenProblem>) {
        let mut state = self.lock();
        match result {
            Err(problem) if state.reported.as_ref() != Some(problem) => {
                tracing::warn!(
                    path = %self.path.display(),
                    problem = %problem,
                    "No bearer token: nothing is sent to the endpoint until the token file holds one."
                );
                state.reported = Some(problem.clone());
            }
            Ok(_) if state.reported.is_some() => {
                tracing::info!(path = %self.path.display(), "Token file readable again.");
                state.reported = None;
            }
            _ => {}
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a cache: after a panic elsewhere it is still a valid cache.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn bearer(v: &HeaderValue) -> String {
        v.to_str().unwrap().to_owned()
    }

    /// Replaces the file the way the kubelet's atomic writer does: a new file renamed over it.
    fn rotate(path: &Path, content: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[tokio::test]
    async fn reads_trims_and_follows_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let t = TokenFile::new(path.clone());
        assert_eq!(
            t.header().await,
            Err(TokenProblem::Missing { path: path.clone() })
        );
        rotate(&path, "");
        assert_eq!(
            t.header().await,
            Err(TokenProblem::Empty { path: path.clone() })
        );
        rotate(&path, "abc\n");
        let v = t.header().await.unwrap();
        assert_eq!(bearer(&v), "Bearer abc");
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("abc"), "Debug hides the token");
        rotate(&path, "xyz\n");
        assert_eq!(bearer(&t.header().await.unwrap()), "Bearer xyz");
        rotate(&path, "bad\ntoken");
        assert_eq!(
            t.header().await,
            Err(TokenProblem::Malformed { path: path.clone() })
        );
    }

    #[tokio::test]
    async fn unchanged_file_is_served_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "one").unwrap();
        let t = TokenFile::new(path.clone());
        assert_eq!(bearer(&t.header().await.unwrap()), "Bearer one");
        // Same size, same inode, mtime forced back: indistinguishable by metadata, so the
        // cached token is served; invalidate() forces the read.
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::write(&path, "two").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(bearer(&t.header().await.unwrap()), "Bearer one");
        t.invalidate();
        assert_eq!(bearer(&t.header().await.unwrap()), "Bearer two");
    }
}
