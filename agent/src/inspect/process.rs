//! The process table, read from `/proc` through [`HostRoot`], and command-line flag parsing.
//!
//! `/proc` is scanned once per check and shared by every inspector. Entries that vanish while
//! being read (a process exiting) are skipped; files that are truncated or garbage give a
//! process with what could be read, never a panic. Parsing of the files themselves uses
//! `procfs-core`'s parsers fed from bounded reads, so fixture trees with `proc/<pid>/...` work
//! exactly like the live `/proc`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::host::{HostError, HostRoot};

/// Upper bound for `/proc/<pid>/cmdline` (Linux caps arguments far above what daemons use).
const CMDLINE_LIMIT: u64 = 256 << 10;

/// Upper bound on `/proc` entries listed (pid_max is 4 194 304 on 64-bit).
const PROC_ENTRIES_LIMIT: usize = 1 << 22;

/// One process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    /// The arguments, lossily decoded where not UTF-8.
    pub argv: Vec<String>,
    /// `/proc/<pid>/comm`, empty if unreadable.
    pub comm: String,
}

impl Process {
    /// The base name of `argv[0]` (or `comm` when the command line is empty: kernel threads).
    pub fn program(&self) -> &str {
        match self.argv.first() {
            Some(a) => a.rsplit('/').next().unwrap_or(a),
            None => &self.comm,
        }
    }

    /// The arguments after the program (and after the subcommand for `hyperkube <name>`).
    pub fn args_for(&self, name: &str) -> &[String] {
        if self.program() == "hyperkube" && self.argv.get(1).is_some_and(|a| a == name) {
            &self.argv[2..]
        } else {
            self.argv.get(1..).unwrap_or(&[])
        }
    }

    /// True for `name` itself or `hyperkube name`.
    pub fn is(&self, name: &str) -> bool {
        self.program() == name
            || (self.program() == "hyperkube" && self.argv.get(1).is_some_and(|a| a == name))
    }

    /// The process's working directory as a host path (the text of `/proc/<pid>/cwd`).
    pub fn cwd(&self, host: &HostRoot) -> Result<PathBuf, HostError> {
        host.read_link(&self.proc_path("cwd"))
    }

    /// `/proc/<pid>/<file>`.
    pub fn proc_path(&self, file: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{file}", self.pid))
    }
}

/// Every process visible in `/proc`.
#[derive(Debug, Clone, Default)]
pub struct ProcessTable {
    pub processes: Vec<Process>,
    /// Why `/proc` could not be listed, if it could not.
    pub error: Option<String>,
}

impl ProcessTable {
    /// Scans `/proc` under `host`.
    pub fn scan(host: &HostRoot) -> Self {
        let entries = match host.read_dir(Path::new("/proc"), PROC_ENTRIES_LIMIT) {
            Ok(e) => e,
            Err(e) => {
                return Self {
                    processes: Vec::new(),
                    error: Some(e.to_string()),
                };
            }
        };
        let mut processes: Vec<Process> = entries
            .iter()
            .filter_map(|e| e.name.to_str()?.parse::<u32>().ok())
            .filter_map(|pid| read_process(host, pid))
            .collect();
        processes.sort_by_key(|p| p.pid);
        Self {
            processes,
            error: None,
        }
    }

    /// Processes that are `name` (or `hyperkube name`), oldest pid first.
    pub fn find(&self, name: &str) -> Vec<&Process> {
        self.processes.iter().filter(|p| p.is(name)).collect()
    }
}

fn read_process(host: &HostRoot, pid: u32) -> Option<Process> {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let cmdline = match host.read(&base.join("cmdline"), CMDLINE_LIMIT) {
        Ok(b) => b,
        // Exited between listing and reading: not a process any more.
        Err(HostError::NotFound { .. }) => return None,
        Err(e) => {
            tracing::debug!(pid, error = %e, "unreadable cmdline");
            Vec::new()
        }
    };
    let comm = host
        .read(&base.join("comm"), 64)
        .map(|b| String::from_utf8_lossy(&b).trim_end().to_owned())
        .unwrap_or_default();
    Some(Process {
        pid,
        argv: split_cmdline(&cmdline),
        comm,
    })
}

/// Splits a NUL-separated command line. A trailing NUL ends the last argument; an empty
/// command line (kernel threads, zombies) gives no arguments.
pub fn split_cmdline(raw: &[u8]) -> Vec<String> {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Command-line flags as Go's pflag parses them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// Every occurrence of every flag, in order (name without dashes).
    pub values: BTreeMap<String, Vec<String>>,
    /// Arguments that are not flags.
    pub positional: Vec<String>,
}

impl Flags {
    /// The effective value: the last occurrence, as pflag keeps for scalar flags.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name)?.last().map(String::as_str)
    }

    /// Flags given more than once.
    pub fn repeated(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.values
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

/// Parses `--a=b`, `--a b`, `-a=b` and boolean `--a`. `is_bool` says which flags take no
/// separate value (`--a b` then leaves `b` positional); for a flag `is_bool` does not know,
/// a following argument that does not start with `-` is taken as its value. `--` ends flags.
pub fn parse_flags(args: &[String], is_bool: impl Fn(&str) -> bool) -> Flags {
    let mut flags = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            flags.positional.extend(args[i..].iter().cloned());
            break;
        }
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            flags.positional.push(arg.clone());
            continue;
        };
        if body.is_empty() {
            flags.positional.push(arg.clone());
            continue;
        }
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None if is_bool(body) => (body.to_owned(), "true".to_owned()),
            None => match args.get(i) {
                Some(next) if !next.starts_with('-') => {
                    i += 1;
                    (body.to_owned(), next.clone())
                }
                _ => (body.to_owned(), "true".to_owned()),
            },
        };
        flags.values.entry(name).or_default().push(value);
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn flag_forms() {
        let f = parse_flags(
            &args(&[
                "--config=/var/lib/kubelet/config.yaml",
                "--kubeconfig",
                "/etc/kubernetes/kubelet.conf",
                "--anonymous-auth",
                "pos",
                "-v=2",
                "--read-only-port=0",
                "--read-only-port=10255",
                "--",
                "--not-a-flag",
            ]),
            |n| n == "anonymous-auth",
        );
        assert_eq!(f.get("config"), Some("/var/lib/kubelet/config.yaml"));
        assert_eq!(f.get("kubeconfig"), Some("/etc/kubernetes/kubelet.conf"));
        assert_eq!(f.get("anonymous-auth"), Some("true"));
        assert_eq!(f.get("v"), Some("2"));
        assert_eq!(f.get("read-only-port"), Some("10255"));
        assert_eq!(f.repeated().count(), 1);
        assert_eq!(f.positional, args(&["pos", "--not-a-flag"]));
    }

    #[test]
    fn cmdline_splitting() {
        assert_eq!(
            split_cmdline(b"/usr/bin/kubelet\0--v=2\0"),
            args(&["/usr/bin/kubelet", "--v=2"])
        );
        assert_eq!(split_cmdline(b""), Vec::<String>::new());
        assert_eq!(split_cmdline(b"trunc"), args(&["trunc"]));
        assert_eq!(split_cmdline(b"a\0\xff\0"), args(&["a", "\u{fffd}"]));
    }

    #[test]
    fn hyperkube_subcommand() {
        let p = Process {
            pid: 1,
            argv: args(&["/hyperkube", "kubelet", "--v=2"]),
            comm: "hyperkube".into(),
        };
        assert!(p.is("kubelet"));
        assert!(!p.is("kube-proxy"));
        assert_eq!(p.args_for("kubelet"), &args(&["--v=2"])[..]);
    }

    #[test]
    fn processes_exiting_during_the_scan_are_skipped_not_fatal() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = std::process::Command::new("true").status();
                }
            })
        };
        let host = HostRoot::new("/").unwrap();
        for _ in 0..50 {
            let t = ProcessTable::scan(&host);
            assert!(t.error.is_none());
            assert!(t.processes.iter().any(|p| p.pid == std::process::id()));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        churn.join().unwrap();
    }

    #[test]
    fn live_proc_lists_this_process() {
        let host = HostRoot::new("/").unwrap();
        let t = ProcessTable::scan(&host);
        let me = std::process::id();
        let p = t.processes.iter().find(|p| p.pid == me).expect("own pid");
        assert!(!p.argv.is_empty());
        assert_eq!(p.cwd(&host).unwrap(), std::env::current_dir().unwrap());
    }
}
