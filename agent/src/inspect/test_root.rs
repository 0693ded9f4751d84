//! Test support for inspector unit tests: a temporary host root written file by file, and an
//! inspector run over it.

use std::path::{Path, PathBuf};

use super::{Context, Options, ProcessTable};
use crate::facts::ComponentFacts;
use crate::host::HostRoot;

/// A temporary host root; paths are relative to it (a leading `/` is ignored).
pub(crate) struct TestRoot(tempfile::TempDir);

impl TestRoot {
    pub(crate) fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    pub(crate) fn dir(&self) -> &Path {
        self.0.path()
    }

    pub(crate) fn path(&self, p: &str) -> PathBuf {
        self.0.path().join(p.trim_start_matches('/'))
    }

    /// Writes `text` at `p`, creating its directories.
    pub(crate) fn write(&self, p: &str, text: impl AsRef<[u8]>) -> &Self {
        let path = self.path(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    /// Sets the modification time of `p` to `secs` after the epoch.
    pub(crate) fn set_mtime(&self, p: &str, secs: i64) -> &Self {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.unsigned_abs());
        std::fs::File::options()
            .write(true)
            .open(self.path(p))
            .unwrap()
            .set_modified(t)
            .unwrap();
        self
    }

    /// Runs `inspect` over this root with `options`, the process table scanned from the root's
    /// `/proc` (`scan`) or empty.
    pub(crate) fn run(
        &self,
        inspect: impl Fn(&Context<'_>) -> ComponentFacts,
        scan: bool,
        options: &Options,
    ) -> ComponentFacts {
        let host = HostRoot::new(self.0.path()).unwrap();
        let procs = if scan {
            ProcessTable::scan(&host)
        } else {
            ProcessTable::default()
        };
        self.run_with(inspect, &procs, options)
    }

    /// [`Self::run`] with a given process table.
    pub(crate) fn run_with(
        &self,
        inspect: impl Fn(&Context<'_>) -> ComponentFacts,
        procs: &ProcessTable,
        options: &Options,
    ) -> ComponentFacts {
        let host = HostRoot::new(self.0.path()).unwrap();
        inspect(&Context {
            host: &host,
            procs,
            options,
        })
    }
}
