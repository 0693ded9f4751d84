//! Test support, shared by the unit tests and the integration tests: real journal files,
//! written by systemd's own `systemd-journal-remote` (Debian package `systemd-journal-remote`)
//! from the journal export format.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The machine id the files are written under (`var/log/journal/<machine>/`).
pub const MACHINE: &str = "0123456789abcdef0123456789abcdef";

/// The tool, or a failure that names it and its package.
pub fn journal_remote() -> PathBuf {
    [
        "/lib/systemd/systemd-journal-remote",
        "/usr/lib/systemd/systemd-journal-remote",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .unwrap_or_else(|| {
        panic!(
            "systemd-journal-remote is not installed: these tests write real journal files \
             with it. Install the Debian package `systemd-journal-remote` (tests/run.sh does)"
        )
    })
}

/// One entry: its realtime (µs) and fields.
#[derive(Debug, Clone)]
pub struct Entry {
    pub usec: u64,
    pub fields: Vec<(&'static str, Vec<u8>)>,
}

/// An entry of a systemd unit's output: `_SYSTEMD_UNIT=<unit>.service`, its identifier, pid
/// and message.
pub fn unit_entry(usec: u64, unit: &str, pid: u32, message: impl Into<Vec<u8>>) -> Entry {
    Entry {
        usec,
        fields: vec![
            ("_SYSTEMD_UNIT", format!("{unit}.service").into_bytes()),
            ("SYSLOG_IDENTIFIER", unit.as_bytes().to_vec()),
            ("_PID", pid.to_string().into_bytes()),
            ("_TRANSPORT", b"stdout".to_vec()),
            ("MESSAGE", message.into()),
        ],
    }
}

/// The journal export format of `entries`; a value with a newline or that is not UTF-8 is
/// written in the format's binary-safe form.
pub fn export(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        out.extend_from_slice(
            format!(
                "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID={MACHINE}\n",
                e.usec,
                1000 + i
            )
            .as_bytes(),
        );
        for (k, v) in &e.fields {
            out.extend_from_slice(k.as_bytes());
            if v.contains(&b'\n') || std::str::from_utf8(v).is_err() {
                out.push(b'\n');
                out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            } else {
                out.push(b'=');
            }
            out.extend_from_slice(v);
            out.push(b'\n');
        }
        out.push(b'\n');
    }
    out
}

/// Writes `entries` into `<root>/var/log/journal/<machine>/<name>` with systemd's writer;
/// `env` chooses the format (`SYSTEMD_JOURNAL_COMPACT`, `SYSTEMD_JOURNAL_KEYED_HASH`).
pub fn write_journal(root: &Path, name: &str, entries: &[Entry], env: &[(&str, &str)]) -> PathBuf {
    let dir = root.join("var/log/journal").join(MACHINE);
    std::fs::create_dir_all(&dir).expect("journal directory");
    let path = dir.join(name);
    let mut child = Command::new(journal_remote())
        .arg(format!("--output={}", path.display()))
        .arg("-")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-journal-remote starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&export(entries))
        .expect("export written");
    let out = child
        .wait_with_output()
        .expect("systemd-journal-remote ends");
    assert!(
        out.status.success(),
        "systemd-journal-remote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}
