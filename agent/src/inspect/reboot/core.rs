//! Core libraries and daemons replaced since boot: the criteria of `dnf needs-restarting -r`
//! (glibc, systemd, udev, openssl, gnutls, dbus updated after the kernel booted), read from
//! the files themselves rather than from a package database, so they hold on every
//! distribution and need no package manager on the node.
//!
//! A package update installs a new file (a new inode, written then renamed into place): its
//! change time (`ctime`) is the install time, which `touch` cannot forge and which, unlike the
//! modification time, package managers do not copy from the package. A core file whose ctime
//! is later than the boot time was replaced while the system ran, and the old copy stays
//! mapped by PID 1, every daemon and the D-Bus broker until the node reboots. The kernel
//! itself is the `KernelUpdate` reason; firmware is loaded at boot from many files and is not
//! judged here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::clock::rfc3339_secs;
use crate::host::{self, FileKind, HostRoot};

/// Library directories of the common layouts: RPM (`lib64`), Debian multiarch, merged /usr.
const LIB_DIRS: &[&str] = &[
    "/usr/lib64",
    "/lib64",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib",
    "/lib",
];

/// Shared libraries every process (or every TLS user) maps, by the component they belong to.
const LIBRARIES: &[(&str, &[&str])] = &[
    (
        "glibc",
        &["libc.so.6", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"],
    ),
    (
        "openssl",
        &[
            "libssl.so.3",
            "libcrypto.so.3",
            "libssl.so.1.1",
            "libcrypto.so.1.1",
        ],
    ),
    ("gnutls", &["libgnutls.so.30"]),
];

/// Daemons that cannot be restarted without a reboot in practice, by absolute path.
const DAEMONS: &[(&str, &[&str])] = &[
    (
        "systemd",
        &["/usr/lib/systemd/systemd", "/lib/systemd/systemd"],
    ),
    (
        "udev",
        &[
            "/usr/lib/systemd/systemd-udevd",
            "/lib/systemd/systemd-udevd",
        ],
    ),
    ("dbus", &["/usr/bin/dbus-daemon", "/usr/bin/dbus-broker"]),
];

/// One core file found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CoreFile {
    pub component: &'static str,
    pub path: String,
    /// Change time (Unix seconds): when the file was installed.
    pub ctime: i64,
}

impl CoreFile {
    pub fn to_json(&self) -> Value {
        json!({
            "component": self.component,
            "file": self.path,
            "changed": rfc3339_secs(self.ctime),
            "changedUnix": self.ctime,
        })
    }
}

/// Every path where a core file may be, with its component.
pub(super) fn candidates() -> impl Iterator<Item = (&'static str, PathBuf)> {
    LIBRARIES
        .iter()
        .flat_map(|(component, names)| {
            LIB_DIRS.iter().flat_map(move |dir| {
                names
                    .iter()
                    .map(move |n| (*component, Path::new(dir).join(n)))
            })
        })
        .chain(DAEMONS.iter().flat_map(|(component, paths)| {
            paths.iter().map(move |p| (*component, PathBuf::from(p)))
        }))
}

/// The core files present on the host (each inode once: `/lib` is often a symlink to
/// `/usr/lib`), and errors other than "not found" met while looking.
pub(super) fn core_files(host: &HostRoot) -> (Vec<CoreFile>, Vec<String>) {
    let mut seen = BTreeSet::new();
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for (component, path) in candidates() {
        match host.stat(&path) {
            Ok(m) if m.kind == FileKind::File => {
                if seen.insert((m.dev, m.ino)) {
                    files.push(CoreFile {
                        component,
                        path: host::display(&path),
                        ctime: m.ctime,
                    });
                }
            }
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    (files, errors)
}

/// The files replaced after `boot`, earliest first.
pub(super) fn replaced_since(files: &[CoreFile], boot: i64) -> Vec<&CoreFile> {
    let mut out: Vec<&CoreFile> = files.iter().filter(|f| f.ctime > boot).collect();
    out.sort_by(|a, b| a.ctime.cmp(&b.ctime).then_with(|| a.path.cmp(&b.path)));
    out
}

/// The components of `files`, each once, in order of first appearance.
pub(super) fn components<'a>(files: &[&'a CoreFile]) -> Vec<&'a str> {
    let mut seen = BTreeSet::new();
    files
        .iter()
        .map(|f| f.component)
        .filter(|c| seen.insert(*c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(component: &'static str, path: &str, ctime: i64) -> CoreFile {
        CoreFile {
            component,
            path: path.to_owned(),
            ctime,
        }
    }

    #[test]
    fn only_files_changed_after_boot_count_earliest_first() {
        let files = [
            file("openssl", "/usr/lib64/libssl.so.3", 300),
            file("glibc", "/usr/lib64/libc.so.6", 200),
            file("systemd", "/usr/lib/systemd/systemd", 100),
            file("glibc", "/usr/lib64/ld-linux-x86-64.so.2", 250),
        ];
        let replaced = replaced_since(&files, 100);
        let paths: Vec<&str> = replaced.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/usr/lib64/libc.so.6",
                "/usr/lib64/ld-linux-x86-64.so.2",
                "/usr/lib64/libssl.so.3"
            ]
        );
        assert_eq!(components(&replaced), ["glibc", "openssl"]);
        assert!(replaced_since(&files, 300).is_empty());
    }
}
