//! The reboot inspector: is a reboot (or a service restart) pending, why, and since when.
//!
//! OS patches reach AKS nodes automatically, but they only take effect once the node reboots
//! (kernel, libc) or the affected services restart (other libraries); AKS leaves that to the
//! customer. The signals read here:
//!
//! * **PackageUpdate**: Debian/Ubuntu's `/var/run/reboot-required` marker (written by package
//!   post-install hooks) with the packages listed in `reboot-required.pkgs`. `/var/run` is a
//!   symlink to `/run` there; [`HostRoot`] resolves it inside the host root.
//! * **SuseRebootNeeded**: zypper's `/var/run/reboot-needed`.
//! * **KernelUpdate**: the running kernel (`/proc/sys/kernel/osrelease`) is older than the
//!   newest installed one (`/boot/vmlinuz-<release>`, or `/lib/modules/<release>` holding a
//!   kernel image or `modules.dep`; bare leftover module directories do not count). RPM-based
//!   distributions (Azure Linux, RHEL, Fedora) write no marker, so this and the next signal
//!   are theirs; on Debian-family hosts it agrees with the marker. Releases compare with
//!   `rpmvercmp`.
//! * **LibrariesReplaced**: core libraries and daemons (glibc, systemd, udev, openssl, gnutls,
//!   dbus) replaced since boot, the `needs-restarting -r` criteria (see [`core`]).
//!
//! Those four make `required` true (each reason has `"action": "reboot"`). Two more signals
//! are reported as reasons without requiring a reboot:
//!
//! * **ServicesNeedRestart** (`"action": "restart"`): processes still mapping deleted shared
//!   libraries, with their systemd units: restarting those services applies the update. It
//!   sets `restartRequired`.
//! * **LivePatchPending** (`"action": "wait"`): a kernel live patch still in transition (see
//!   [`livepatch`]); `livePatch.pending`.
//!
//! `since` is when each reason's evidence appeared: a marker's modification time (markers
//! are written when the need arises), an installed file's change time (its install time:
//! package managers copy modification times from the package, not change times). Times in
//! the future are not trusted. `pendingSince` is the earliest of the reboot reasons'; the
//! daemon's ledger keeps the earliest it has seen across restarts.

mod core;
mod livepatch;
mod maps;
mod summary;
mod version;

pub(crate) use maps::deleted_libraries as maps_deleted_libraries;
/// The systemd unit of a `/proc/<pid>/cgroup` text (its last `.service`, else `.scope`).
pub(crate) use maps::unit as cgroup_unit;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

pub use summary::RebootSummary;
pub use version::rpmvercmp;

use crate::facts::{ComponentFacts, Evidence};
use crate::host::{self, FileKind, HostError, HostRoot};

use super::Context;
use super::os::{self, running_kernel};
use crate::clock::rfc3339_secs as rfc3339;

pub const NAME: &str = "reboot";

const DEBIAN_MARKER: &str = "/var/run/reboot-required";
const DEBIAN_PACKAGES: &str = "/var/run/reboot-required.pkgs";
const SUSE_MARKER: &str = "/var/run/reboot-needed";
const BOOT: &str = "/boot";
/// What a reason asks of the operator (`action`).
const REBOOT: &str = "reboot";
const RESTART: &str = "restart";
const WAIT: &str = "wait";
const MODULES: &str = "/lib/modules";

/// The package list is a line per package.
const PACKAGES_LIMIT: u64 = 1 << 20;
/// Entries in /boot or /lib/modules.
const KERNEL_DIR_LIMIT: usize = 4096;

/// A marker file's state.
#[derive(Debug)]
struct Marker {
    exists: bool,
    mtime: Option<i64>,
}

fn marker(host: &HostRoot, path: &str) -> Result<Marker, HostError> {
    match host.stat(Path::new(path)) {
        Ok(m) => Ok(Marker {
            exists: true,
            mtime: Some(m.mtime),
        }),
        Err(e) if e.is_not_found() => Ok(Marker {
            exists: false,
            mtime: None,
        }),
        Err(e) => Err(e),
    }
}

/// Adds `since` (RFC 3339) and `sinceUnix` to an object.
fn with_since(mut v: Value, mtime: Option<i64>) -> Value {
    if let (Some(t), Some(obj)) = (mtime, v.as_object_mut()) {
        obj.insert("since".to_owned(), Value::String(rfc3339(t)));
        obj.insert("sinceUnix".to_owned(), t.into());
    }
    v
}

/// `reboot-required.pkgs`: one package per line, often repeated.
fn parse_packages(text: &str) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| seen.insert((*l).to_owned()))
        .map(str::to_owned)
        .collect()
}

/// One installed kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kernel {
    release: String,
    /// The file that shows it is installed.
    file: String,
    /// Its change time: when it was installed.
    installed: i64,
}

/// Kernels installed under /boot and /lib/modules, newest first. Errors other than a missing
/// directory are returned alongside whatever could be listed.
fn installed_kernels(host: &HostRoot) -> (Vec<Kernel>, Vec<String>) {
    let mut found: BTreeMap<String, Kernel> = BTreeMap::new();
    let mut errors = Vec::new();
    let is_file = |p: &Path| host.stat(p).map(|m| (m.kind == FileKind::File, m.ctime));
    match host.read_dir(Path::new(BOOT), KERNEL_DIR_LIMIT) {
        Ok(entries) => {
            for e in entries {
                let Some(release) = e.name.to_str().and_then(|n| n.strip_prefix("vmlinuz-")) else {
                    continue;
                };
                // RHEL's rescue image is not a kernel anyone boots into by default.
                if release.is_empty() || release.contains("rescue") {
                    continue;
                }
                let path = Path::new(BOOT).join(&e.name);
                if let Ok((true, installed)) = is_file(&path) {
                    found.insert(
                        release.to_owned(),
                        Kernel {
                            release: release.to_owned(),
                            file: host::display(&path),
                            installed,
                        },
                    );
                }
            }
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => errors.push(e.to_string()),
    }
    match host.read_dir(Path::new(MODULES), KERNEL_DIR_LIMIT) {
        Ok(entries) => {
            for e in entries {
                let Some(release) = e.name.to_str() else {
                    continue;
                };
                if found.contains_key(release) {
                    continue;
                }
                let dir = Path::new(MODULES).join(release);
                let evidence = ["vmlinuz", "modules.dep"]
                    .iter()
                    .map(|f| dir.join(f))
                    .find_map(|p| match is_file(&p) {
                        Ok((true, installed)) => Some((p, installed)),
                        _ => None,
                    });
                if let Some((path, installed)) = evidence {
                    found.insert(
                        release.to_owned(),
                        Kernel {
                            release: release.to_owned(),
                            file: host::display(&path),
                            installed,
                        },
                    );
                }
            }
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => errors.push(e.to_string()),
    }
    let mut kernels: Vec<Kernel> = found.into_values().collect();
    kernels.sort_by(|a, b| rpmvercmp(&b.release, &a.release));
    (kernels, errors)
}

/// A reboot signal's outcome.
enum Signal {
    Present { reason: Value, since: Option<i64> },
    Absent,
    Unknown(String),
}

/// Host files whose replacement concerns this inspector even when the facts do not name them
/// (the core libraries and daemons, before any was replaced): the daemon watches them.
pub fn watched_files() -> impl Iterator<Item = std::path::PathBuf> {
    core::candidates().map(|(_, p)| p)
}

pub fn inspect(ctx: &Context<'_>) -> ComponentFacts {
    let host = ctx.host;
    let mut cf = ComponentFacts::new(NAME);
    let signals = [
        debian(host, &mut cf),
        suse(host, &mut cf),
        kernel(host, &mut cf),
        core_libraries(host, &mut cf),
    ];

    let mut reasons: Vec<Value> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut earliest: Option<i64> = None;
    for s in signals {
        match s {
            Signal::Present { reason, since } => {
                reasons.push(reason);
                earliest = match (earliest, since) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Signal::Absent => {}
            Signal::Unknown(r) => unknown.push(r),
        }
    }
    if !reasons.is_empty() {
        cf.set(&["required"], true);
        if let Some(file) = reasons[0]["file"]
            .as_str()
            .or_else(|| reasons[0]["files"][0]["file"].as_str())
        {
            cf.evidence(&["required"], Evidence::file(file).with_source("marker"));
        }
    } else if unknown.is_empty() {
        cf.set(&["required"], false);
    } else {
        cf.unknown(&["required"], unknown.join("; "));
    }
    if let Some(t) = earliest {
        cf.set(&["pendingSince"], rfc3339(t));
        cf.set(&["pendingSinceUnix"], t);
    }

    match deleted_libraries(ctx, &mut cf) {
        Signal::Present { reason, .. } => {
            cf.set(&["restartRequired"], true);
            reasons.push(reason);
        }
        Signal::Absent => cf.set(&["restartRequired"], false),
        Signal::Unknown(r) => cf.unknown(&["restartRequired"], r),
    }
    if let Signal::Present { reason, .. } = live_patch(host, &mut cf) {
        reasons.push(reason);
    }
    cf.set(&["reasons"], Value::Array(reasons));
    cf
}

fn debian(host: &HostRoot, cf: &mut ComponentFacts) -> Signal {
    let m = match marker(host, DEBIAN_MARKER) {
        Ok(m) => m,
        Err(e) => {
            cf.unknown(&["markers", "debian"], &e);
            return Signal::Unknown(e.to_string());
        }
    };
    cf.evidence(
        &["markers", "debian"],
        Evidence::file(DEBIAN_MARKER).with_source("marker"),
    );
    if !m.exists {
        cf.set(
            &["markers", "debian"],
            json!({"exists": false, "packages": []}),
        );
        return Signal::Absent;
    }
    let packages = match host.read(Path::new(DEBIAN_PACKAGES), PACKAGES_LIMIT) {
        Ok(b) => json!(parse_packages(&String::from_utf8_lossy(&b))),
        Err(e) if e.is_not_found() => json!([]),
        Err(e) => crate::facts::unknown_value(e),
    };
    cf.set(
        &["markers", "debian"],
        with_since(
            json!({"exists": true, "file": DEBIAN_MARKER, "packages": packages}),
            m.mtime,
        ),
    );
    Signal::Present {
        reason: with_since(
            json!({"reason": "PackageUpdate", "action": REBOOT, "file": DEBIAN_MARKER, "packages": packages}),
            m.mtime,
        ),
        since: m.mtime,
    }
}

fn suse(host: &HostRoot, cf: &mut ComponentFacts) -> Signal {
    match marker(host, SUSE_MARKER) {
        Ok(m) if m.exists => {
            cf.set(
                &["markers", "suse"],
                with_since(json!({"exists": true, "file": SUSE_MARKER}), m.mtime),
            );
            cf.evidence(
                &["markers", "suse"],
                Evidence::file(SUSE_MARKER).with_source("marker"),
            );
            Signal::Present {
                reason: with_since(
                    json!({"reason": "SuseRebootNeeded", "action": REBOOT, "file": SUSE_MARKER}),
                    m.mtime,
                ),
                since: m.mtime,
            }
        }
        Ok(_) => {
            cf.set(&["markers", "suse"], json!({"exists": false}));
            Signal::Absent
        }
        Err(e) => {
            cf.unknown(&["markers", "suse"], &e);
            Signal::Unknown(e.to_string())
        }
    }
}

fn kernel(host: &HostRoot, cf: &mut ComponentFacts) -> Signal {
    let running = running_kernel(host);
    match &running {
        Ok((release, file)) => {
            cf.set(&["kernel", "running"], release.as_str());
            cf.evidence(
                &["kernel", "running"],
                Evidence::file(*file).with_source("runtime"),
            );
        }
        Err(reason) => cf.unknown(&["kernel", "running"], reason),
    }
    let (kernels, errors) = installed_kernels(host);
    let installed: Vec<&str> = kernels.iter().map(|k| k.release.as_str()).collect();
    if errors.is_empty() {
        cf.set(&["kernel", "installed"], json!(installed));
    } else {
        cf.unknown(&["kernel", "installed"], errors.join("; "));
    }
    let newest = match (kernels.first(), errors.is_empty()) {
        (Some(k), true) => {
            cf.set(&["kernel", "newestInstalled"], k.release.as_str());
            cf.evidence(
                &["kernel", "newestInstalled"],
                Evidence::file(&k.file).with_source("installed"),
            );
            Ok(k)
        }
        (None, true) => {
            let reason = format!("no installed kernel found under {BOOT} or {MODULES}");
            cf.unknown(&["kernel", "newestInstalled"], &reason);
            Err(reason)
        }
        (_, false) => {
            let reason = errors.join("; ");
            cf.unknown(&["kernel", "newestInstalled"], &reason);
            Err(reason)
        }
    };
    match (running, newest) {
        (Ok((running, file)), Ok(newest)) => {
            let mismatch = rpmvercmp(&newest.release, &running).is_gt();
            cf.set(&["kernel", "mismatch"], mismatch);
            cf.evidence(
                &["kernel", "mismatch"],
                Evidence::file(file).with_source("runtime"),
            );
            if mismatch {
                cf.set(
                    &["kernel", "newestInstalledSince"],
                    rfc3339(newest.installed),
                );
                Signal::Present {
                    reason: with_since(
                        json!({"reason": "KernelUpdate", "action": REBOOT, "running": running,
                               "newestInstalled": newest.release, "file": newest.file}),
                        Some(newest.installed),
                    ),
                    since: Some(newest.installed),
                }
            } else {
                Signal::Absent
            }
        }
        (Err(r), _) | (_, Err(r)) => {
            cf.unknown(&["kernel", "mismatch"], &r);
            Signal::Unknown(r)
        }
    }
}

fn core_libraries(host: &HostRoot, cf: &mut ComponentFacts) -> Signal {
    let (files, errors) = core::core_files(host);
    cf.set(&["coreReplaced", "checked"], files.len());
    if files.is_empty() && errors.is_empty() {
        // Nothing to compare (a minimal or unusual root): no evidence of a replacement.
        cf.set(&["coreReplaced", "files"], json!([]));
        cf.set(&["coreReplaced", "count"], 0);
        return Signal::Absent;
    }
    let boot = match os::boot_time(host) {
        Ok(t) => t,
        Err(r) => {
            let r = format!("boot time unknown: {r}");
            cf.unknown(&["coreReplaced", "count"], &r);
            return Signal::Unknown(r);
        }
    };
    cf.set(&["coreReplaced", "bootTime"], rfc3339(boot));
    cf.evidence(
        &["coreReplaced", "bootTime"],
        Evidence::file(os::PROC_STAT).with_source("runtime"),
    );
    let replaced = core::replaced_since(&files, boot);
    let listed: Vec<Value> = replaced.iter().map(|f| f.to_json()).collect();
    cf.set(&["coreReplaced", "files"], Value::Array(listed.clone()));
    if let Some(first) = replaced.first() {
        cf.set(&["coreReplaced", "count"], replaced.len());
        cf.evidence(
            &["coreReplaced", "count"],
            Evidence::file(&first.path).with_source("stat"),
        );
        return Signal::Present {
            reason: with_since(
                json!({"reason": "LibrariesReplaced", "action": REBOOT,
                       "packages": core::components(&replaced), "files": listed,
                       "bootTime": rfc3339(boot)}),
                Some(first.ctime),
            ),
            since: Some(first.ctime),
        };
    }
    if errors.is_empty() {
        cf.set(&["coreReplaced", "count"], 0);
        Signal::Absent
    } else {
        // A core file we could not stat might be the replaced one.
        let r = errors.join("; ");
        cf.unknown(&["coreReplaced", "count"], &r);
        Signal::Unknown(r)
    }
}

fn live_patch(host: &HostRoot, cf: &mut ComponentFacts) -> Signal {
    cf.evidence(
        &["livePatch"],
        Evidence::file(livepatch::DIR).with_source("runtime"),
    );
    match livepatch::patches(host) {
        Ok(None) => {
            cf.set(&["livePatch"], json!({"patches": [], "pending": false}));
            Signal::Absent
        }
        Ok(Some(patches)) => {
            let pending: Vec<&str> = patches
                .iter()
                .filter(|p| p.transition == Some(true))
                .map(|p| p.name.as_str())
                .collect();
            let unreadable: Vec<&str> = patches.iter().filter_map(|p| p.error.as_deref()).collect();
            let listed: Vec<Value> = patches.iter().map(livepatch::Patch::to_json).collect();
            cf.set(&["livePatch", "patches"], Value::Array(listed));
            if !pending.is_empty() {
                cf.set(&["livePatch", "pending"], true);
                Signal::Present {
                    reason: json!({"reason": "LivePatchPending", "action": WAIT,
                                   "patches": pending, "file": livepatch::DIR}),
                    since: None,
                }
            } else if unreadable.is_empty() {
                cf.set(&["livePatch", "pending"], false);
                Signal::Absent
            } else {
                let r = unreadable.join("; ");
                cf.unknown(&["livePatch", "pending"], &r);
                Signal::Unknown(r)
            }
        }
        Err(r) => {
            cf.unknown(&["livePatch"], &r);
            Signal::Unknown(r)
        }
    }
}

fn deleted_libraries(ctx: &Context<'_>, cf: &mut ComponentFacts) -> Signal {
    if let Some(e) = &ctx.procs.error {
        cf.unknown(&["deletedLibraries"], e);
        return Signal::Unknown(e.clone());
    }
    let scan = maps::scan(ctx.host, ctx.procs);
    let count = scan.processes.len();
    cf.evidence(
        &["deletedLibraries"],
        Evidence::file("/proc").with_source("runtime"),
    );
    cf.set(
        &["deletedLibraries", "processes"],
        Value::Array(scan.processes),
    );
    cf.set(&["deletedLibraries", "services"], json!(scan.services));
    cf.set(&["deletedLibraries", "scanned"], scan.scanned);
    cf.set(&["deletedLibraries", "exited"], scan.exited);
    cf.set(
        &["deletedLibraries", "notScanned"],
        Value::Array(scan.not_scanned.clone()),
    );
    cf.set(
        &["deletedLibraries", "notScannedCount"],
        scan.not_scanned_count,
    );
    cf.set(&["deletedLibraries", "junkLines"], scan.junk_lines);
    if count > 0 {
        cf.set(&["deletedLibraries", "count"], count);
        Signal::Present {
            reason: json!({"reason": "ServicesNeedRestart", "action": RESTART,
                           "processes": count, "services": scan.services}),
            since: None,
        }
    } else if scan.not_scanned_count > 0 {
        // Processes we could not read might map deleted libraries: zero is not known.
        let first = scan.not_scanned[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let reason = format!(
            "{} processes could not be scanned (first: {first})",
            scan.not_scanned_count
        );
        cf.unknown(&["deletedLibraries", "count"], &reason);
        Signal::Unknown(reason)
    } else {
        cf.set(&["deletedLibraries", "count"], 0);
        Signal::Absent
    }
}

#[cfg(test)]
mod tests;
