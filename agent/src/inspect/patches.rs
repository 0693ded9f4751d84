//! The patches inspector: how old the node image is, when packages last changed, and which
//! security updates the package manager's cached metadata offers that are not installed.
//!
//! Nothing is run and nothing is fetched: every fact comes from files the image or the package
//! manager wrote, read through [`HostRoot`]. Ages (`ageDays`, whole days) are relative to the
//! agent's clock when it inspects; a time more than a day in the future (the tolerance covers
//! logs written in local time) is not trusted and is ignored, and counted, where it appears.
//!
//! * **image** (`patches.image`): the AKS `kubernetes.azure.com/node-image-version` node label
//!   (see the os inspector; `AKSUbuntu-2204gen2containerd-202501.12.0` was built 2025-01-12),
//!   else the AKS VHD build log `/opt/azure/vhd-install.complete` (the date its build
//!   completed, or started, and its build number), else Ubuntu cloud images' `/etc/cloud/build.info` (`serial: 20240110.1`), else
//!   os-release's `IMAGE_VERSION`/`BUILD_ID`, else Azure Linux's `/etc/azurelinux-release` /
//!   CBL-Mariner's `/etc/mariner-release` (`3.0.20240824`). The build date is the date the
//!   version carries.
//! * **lastTransaction** (`patches.lastTransaction`): Debian/Ubuntu: the newest entry of
//!   `/var/log/dpkg.log` (its rotated `dpkg.log.1` when the current one has none) and apt's
//!   `/var/log/apt/history.log` `End-Date:`; else the modification time of
//!   `/var/lib/dpkg/status`. RPM distributions: `SUBDEBUG` entries of dnf's
//!   `/var/log/dnf.rpm.log`; else the modification time of the rpm database (`rpmdb.sqlite`,
//!   `Packages`), which every transaction rewrites (tdnf, Azure Linux's package manager,
//!   keeps its history in a database only). Logs are read from their tail only.
//! * **securityUpdates** (`patches.securityUpdates`): Debian/Ubuntu: the `Packages` lists of
//!   security suites in `/var/lib/apt/lists` (`*_dists_<codename>-security_*_Packages`,
//!   Debian's `debian-security`) against the installed versions of `/var/lib/dpkg/status`,
//!   compared as dpkg does; a package is pending when its installed version is older than the
//!   suite's. `metadataDate` is the oldest `Date:` of those suites' `InRelease`/`Release` (how
//!   stale apt's view is; the lists' modification time when there is no Release file).
//!   Compressed lists (`Acquire::GzipIndexes`) are not read. RPM distributions: unknown (the
//!   installed versions are only in the rpm database, a SQLite or Berkeley DB file this agent
//!   does not read).

mod debver;
mod parse;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufReader;
use std::path::Path;

use serde_json::{Value, json};

pub use debver::debvercmp;

use crate::clock::rfc3339_secs;
use crate::facts::{ComponentFacts, Evidence};
use crate::host::{HostError, HostRoot};

use super::Context;
use super::os;
use parse::{FUTURE_TOLERANCE, LogScan};

pub const NAME: &str = "patches";

const VHD_LOG: &str = "/opt/azure/vhd-install.complete";
const BUILD_INFO: &str = "/etc/cloud/build.info";
const RELEASE_FILES: [&str; 2] = ["/etc/azurelinux-release", "/etc/mariner-release"];
const DPKG_STATUS: &str = "/var/lib/dpkg/status";
const DPKG_LOGS: [&str; 2] = ["/var/log/dpkg.log", "/var/log/dpkg.log.1"];
const APT_HISTORY: &str = "/var/log/apt/history.log";
const APT_LISTS: &str = "/var/lib/apt/lists";
const DNF_RPM_LOG: &str = "/var/log/dnf.rpm.log";
const RPM_DBS: [&str; 4] = [
    "/var/lib/rpm/rpmdb.sqlite",
    "/var/lib/rpm/Packages",
    "/usr/lib/sysimage/rpm/rpmdb.sqlite",
    "/usr/lib/sysimage/rpm/Packages",
];

/// Small files (build.info, release files, Release).
const SMALL_LIMIT: u64 = 1 << 20;
/// The tail of a log read for its newest entries.
const LOG_TAIL: u64 = 1 << 20;
/// A deb822 line (a `Description` or `Depends` line is a few KiB at most).
const MAX_LINE: usize = 64 << 10;
/// dpkg's status file (a few MiB on a server).
const STATUS_LIMIT: u64 = 64 << 20;
/// One Packages list (a release pocket's main amd64 list is about 100 MiB uncompressed;
/// security pockets are smaller).
const LIST_LIMIT: u64 = 512 << 20;
/// Entries of /var/lib/apt/lists.
const LISTS_DIR_LIMIT: usize = 4096;
/// Pending packages listed by name (the count is always complete).
const LISTED: usize = 50;

/// Which package manager owns the host's packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Dpkg,
    Rpm(&'static str),
}

pub fn inspect(ctx: &Context<'_>) -> ComponentFacts {
    inspect_at(ctx, crate::clock::unix_now())
}

/// [`inspect`] with the clock given (tests).
pub(crate) fn inspect_at(ctx: &Context<'_>, now: i64) -> ComponentFacts {
    let host = ctx.host;
    let mut cf = ComponentFacts::new(NAME);
    image(ctx, now, &mut cf);
    let family = match family(host) {
        Ok(f) => {
            cf.set(
                &["packageManager"],
                match f {
                    Family::Dpkg => "dpkg",
                    Family::Rpm(_) => "rpm",
                },
            );
            Some(f)
        }
        Err(r) => {
            cf.unknown(&["packageManager"], &r);
            cf.unknown(&["lastTransaction"], &r);
            cf.unknown(&["securityUpdates"], &r);
            None
        }
    };
    match family {
        Some(Family::Dpkg) => {
            last_transaction_dpkg(host, now, &mut cf);
            security_dpkg(host, now, &mut cf);
        }
        Some(Family::Rpm(db)) => {
            last_transaction_rpm(host, db, now, &mut cf);
            cf.unknown(
                &["securityUpdates"],
                format!(
                    "not assessed on RPM distributions: the installed versions are only in the \
                     rpm database ({db}), which this agent does not read"
                ),
            );
        }
        None => {}
    }
    cf
}

/// Whole days from `t` to `now`; `Err` for a time in the future beyond the tolerance.
fn age_days(t: i64, now: i64) -> Result<i64, String> {
    if t > now + FUTURE_TOLERANCE {
        return Err(format!(
            "{} is in the future (now {}): the clock is not trusted",
            rfc3339_secs(t),
            rfc3339_secs(now)
        ));
    }
    Ok(now.saturating_sub(t).max(0) / 86_400)
}

fn family(host: &HostRoot) -> Result<Family, String> {
    let mut errors = Vec::new();
    match host.stat(Path::new(DPKG_STATUS)) {
        Ok(_) => return Ok(Family::Dpkg),
        Err(e) if e.is_not_found() => {}
        Err(e) => errors.push(e.to_string()),
    }
    for db in RPM_DBS {
        match host.stat(Path::new(db)) {
            Ok(_) => return Ok(Family::Rpm(db)),
            Err(e) if e.is_not_found() => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Err(format!(
            "no package database: neither {DPKG_STATUS} nor an rpm database ({}) exists",
            RPM_DBS.join(", ")
        ))
    } else {
        Err(errors.join("; "))
    }
}

// ---------------------------------------------------------------------------------------------
// The image.

/// A version and the file (or label) it came from.
struct ImageRecord {
    /// None when the record dates the image but names no version.
    version: Option<String>,
    build_date: Option<String>,
    source: &'static str,
    evidence: Evidence,
}

fn image(ctx: &Context<'_>, now: i64, cf: &mut ComponentFacts) {
    let mut tried = Vec::new();
    let Some(rec) = image_record(ctx, &mut tried) else {
        cf.unknown(
            &["image"],
            format!("no node image record: {}", tried.join("; ")),
        );
        return;
    };
    match &rec.version {
        Some(v) => cf.set(&["image", "version"], v.as_str()),
        None => cf.unknown(
            &["image", "version"],
            format!("{} records no version", rec.source),
        ),
    }
    cf.set(&["image", "source"], rec.source);
    cf.evidence(&["image"], rec.evidence);
    let Some(date) = rec.build_date else {
        let r = format!(
            "the image version {:?} carries no build date",
            rec.version.unwrap_or_default()
        );
        cf.unknown(&["image", "buildDate"], &r);
        cf.unknown(&["image", "ageDays"], &r);
        return;
    };
    let Some(t) = parse::parse_date(&date) else {
        cf.unknown(&["image", "ageDays"], format!("not a date: {date:?}"));
        return;
    };
    cf.set(&["image", "buildDate"], date.as_str());
    cf.set(&["image", "buildDateUnix"], t);
    match age_days(t, now) {
        Ok(d) => cf.set(&["image", "ageDays"], d),
        Err(r) => cf.unknown(&["image", "ageDays"], r),
    }
}

fn image_record(ctx: &Context<'_>, tried: &mut Vec<String>) -> Option<ImageRecord> {
    let host = ctx.host;
    if let Some((version, evidence)) = os::node_image_record(ctx) {
        return Some(ImageRecord {
            build_date: os::image_build_date(&version),
            version: Some(version),
            source: "aks-node-image-label",
            evidence,
        });
    }
    tried.push("no kubernetes.azure.com/node-image-version node label".to_owned());
    match host.read(Path::new(VHD_LOG), SMALL_LIMIT) {
        Ok(b) => {
            let (number, date) = parse::vhd_install_log(&String::from_utf8_lossy(&b));
            if date.is_some() {
                return Some(ImageRecord {
                    version: number,
                    build_date: date,
                    source: "aks-vhd-build-log",
                    evidence: Evidence::file(VHD_LOG).with_source("config"),
                });
            }
            tried.push(format!("{VHD_LOG}: no build date"));
        }
        Err(e) => tried.push(e.to_string()),
    }
    match host.read(Path::new(BUILD_INFO), SMALL_LIMIT) {
        Ok(b) => {
            let (name, serial) = parse::build_info(&String::from_utf8_lossy(&b));
            if let Some(serial) = serial {
                let version = match name {
                    Some(n) => format!("{n}-{serial}"),
                    None => serial.clone(),
                };
                return Some(ImageRecord {
                    build_date: parse::embedded_date(&serial),
                    version: Some(version),
                    source: "cloud-build-info",
                    evidence: Evidence::file(BUILD_INFO).with_source("config"),
                });
            }
            tried.push(format!("{BUILD_INFO}: no serial"));
        }
        Err(e) => tried.push(e.to_string()),
    }
    for path in os::OS_RELEASE_PATHS {
        match host.read(Path::new(path), SMALL_LIMIT) {
            Ok(b) => {
                let (vars, _) = os::parse_os_release(&String::from_utf8_lossy(&b));
                let found = ["IMAGE_VERSION", "BUILD_ID"]
                    .iter()
                    .find_map(|k| vars.get(*k).filter(|v| !v.is_empty()).map(|v| (*k, v)));
                if let Some((key, v)) = found {
                    let version = match vars.get("IMAGE_ID") {
                        Some(id) if key == "IMAGE_VERSION" && !id.is_empty() => {
                            format!("{id}-{v}")
                        }
                        _ => v.clone(),
                    };
                    return Some(ImageRecord {
                        build_date: parse::embedded_date(v),
                        version: Some(version),
                        source: "os-release",
                        evidence: Evidence::file(path).with_source("config"),
                    });
                }
                tried.push(format!("{path}: no IMAGE_VERSION or BUILD_ID"));
                break;
            }
            Err(e) if e.is_not_found() => tried.push(e.to_string()),
            Err(e) => {
                tried.push(e.to_string());
                break;
            }
        }
    }
    for path in RELEASE_FILES {
        match host.read(Path::new(path), SMALL_LIMIT) {
            Ok(b) => {
                let text = String::from_utf8_lossy(&b);
                let first = text.lines().next().unwrap_or_default().trim();
                if let Some(version) = first.split_whitespace().last() {
                    return Some(ImageRecord {
                        build_date: parse::embedded_date(version),
                        version: Some(version.to_owned()),
                        source: "release-file",
                        evidence: Evidence::file(path).with_source("config"),
                    });
                }
                tried.push(format!("{path}: empty"));
            }
            Err(e) => tried.push(e.to_string()),
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The last package transaction.

/// A log parser: the tail's bytes, the offset they start at, now.
type LogParser = fn(&[u8], u64, i64) -> LogScan;

/// The newest entry of one log, or why there is none.
fn scan_log(host: &HostRoot, path: &str, now: i64, scan: LogParser) -> Result<LogScan, HostError> {
    let (start, bytes) = host.read_tail(Path::new(path), LOG_TAIL)?;
    Ok(scan(&bytes, start, now))
}

/// Sets `lastTransaction` from the newest of the logs' entries, else from the fallback file's
/// modification time.
fn last_transaction(
    host: &HostRoot,
    logs: &[(&str, LogParser)],
    fallback: &str,
    now: i64,
    cf: &mut ComponentFacts,
) {
    let mut best: Option<(i64, &str)> = None;
    let mut notes: Vec<String> = Vec::new();
    let mut future = 0;
    let mut junk = 0;
    for (path, scan) in logs {
        // The rotated dpkg.log.1 is only consulted when dpkg.log has no entry.
        if path.ends_with(".1") && best.is_some() {
            continue;
        }
        match scan_log(host, path, now, *scan) {
            Ok(s) => {
                future += s.future;
                junk += s.junk;
                if let Some(t) = s.newest
                    && best.is_none_or(|(b, _)| t > b)
                {
                    best = Some((t, path));
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => notes.push(e.to_string()),
        }
    }
    let (t, source, kind) = match best {
        Some((t, path)) => (t, path.to_owned(), "log"),
        None => match host.stat(Path::new(fallback)) {
            Ok(m) => (m.mtime, fallback.to_owned(), "mtime"),
            Err(e) => {
                notes.push(e.to_string());
                cf.unknown(
                    &["lastTransaction"],
                    format!("no package log entry and no database: {}", notes.join("; ")),
                );
                return;
            }
        },
    };
    cf.set(&["lastTransaction", "source"], source.as_str());
    cf.set(&["lastTransaction", "kind"], kind);
    cf.set(&["lastTransaction", "futureEntriesIgnored"], future);
    cf.set(&["lastTransaction", "junkLines"], junk);
    if !notes.is_empty() {
        cf.set(&["lastTransaction", "unreadable"], json!(notes));
    }
    cf.evidence(
        &["lastTransaction"],
        Evidence::file(source.as_str()).with_source(kind),
    );
    match age_days(t, now) {
        Ok(d) => {
            cf.set(&["lastTransaction", "at"], rfc3339_secs(t));
            cf.set(&["lastTransaction", "atUnix"], t);
            cf.set(&["lastTransaction", "ageDays"], d);
        }
        Err(r) => {
            cf.unknown(&["lastTransaction", "at"], &r);
            cf.unknown(&["lastTransaction", "ageDays"], format!("{source}: {r}"));
        }
    }
}

fn last_transaction_dpkg(host: &HostRoot, now: i64, cf: &mut ComponentFacts) {
    last_transaction(
        host,
        &[
            (DPKG_LOGS[0], parse::scan_dpkg_log),
            (APT_HISTORY, parse::scan_apt_history),
            (DPKG_LOGS[1], parse::scan_dpkg_log),
        ],
        DPKG_STATUS,
        now,
        cf,
    );
}

fn last_transaction_rpm(host: &HostRoot, db: &str, now: i64, cf: &mut ComponentFacts) {
    last_transaction(host, &[(DNF_RPM_LOG, parse::scan_dnf_rpm_log)], db, now, cf);
}

// ---------------------------------------------------------------------------------------------
// Pending security updates (Debian family).

/// `(package, architecture)` → installed version.
type Installed = HashMap<(String, String), String>;

/// Installed packages from dpkg's status file, streamed.
fn installed_dpkg(host: &HostRoot) -> Result<Installed, String> {
    let (file, _) = host
        .open_file(Path::new(DPKG_STATUS))
        .map_err(|e| e.to_string())?;
    let mut out = Installed::new();
    let mut reader = parse::StanzaReader::default();
    let mut add = |s: parse::Stanza| {
        if let (true, Some(p), Some(v), Some(a)) =
            (s.installed(), s.package, s.version, s.architecture)
        {
            out.insert((p, a), v);
        }
    };
    parse::each_line(BufReader::new(file), MAX_LINE, STATUS_LIMIT, |l| {
        if let Some(s) = reader.line(l) {
            add(s);
        }
    })
    .map_err(|e| format!("{DPKG_STATUS}: {e}"))?;
    if let Some(s) = reader.finish() {
        add(s);
    }
    Ok(out)
}

/// One pending update.
#[derive(Debug, Clone)]
struct Pending {
    installed: String,
    available: String,
    suite: String,
}

fn security_dpkg(host: &HostRoot, now: i64, cf: &mut ComponentFacts) {
    let installed = match installed_dpkg(host) {
        Ok(i) => i,
        Err(r) => {
            cf.unknown(&["securityUpdates"], r);
            return;
        }
    };
    let entries = match host.read_dir(Path::new(APT_LISTS), LISTS_DIR_LIMIT) {
        Ok(e) => e,
        Err(e) => {
            cf.unknown(&["securityUpdates"], format!("no apt package lists: {e}"));
            return;
        }
    };
    let names: BTreeSet<String> = entries
        .iter()
        .filter_map(|e| e.name.to_str().map(str::to_owned))
        .collect();
    let lists: Vec<(String, String, String)> = names
        .iter()
        .filter_map(|n| {
            parse::security_packages_file(n).map(|(suite, prefix)| (n.clone(), suite, prefix))
        })
        .collect();
    if lists.is_empty() {
        let compressed = names
            .iter()
            .any(|n| n.contains("-security_") && n.contains("_Packages."));
        cf.unknown(
            &["securityUpdates"],
            if compressed {
                format!("the security suites' lists in {APT_LISTS} are compressed; not read")
            } else {
                format!(
                    "{APT_LISTS} holds no Packages list of a security suite (apt never fetched one, or the lists were cleaned)"
                )
            },
        );
        return;
    }
    let mut pending: BTreeMap<(String, String), Pending> = BTreeMap::new();
    let mut suites: BTreeMap<String, Option<i64>> = BTreeMap::new();
    let mut errors: Vec<String> = Vec::new();
    let mut read = Vec::new();
    for (name, suite, prefix) in &lists {
        let path = Path::new(APT_LISTS).join(name);
        match scan_list(host, &path, suite, &installed, &mut pending) {
            Ok(mtime) => {
                read.push(crate::host::display(&path));
                let date = release_date(host, &names, prefix).or(Some(mtime));
                let slot = suites.entry(suite.clone()).or_insert(date);
                *slot = match (*slot, date) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        // A list that could not be read might hold the update: the count is not known.
        cf.unknown(&["securityUpdates"], errors.join("; "));
        return;
    }
    let listed: Vec<Value> = pending
        .iter()
        .take(LISTED)
        .map(|((name, arch), p)| {
            json!({"name": name, "architecture": arch, "installed": p.installed,
                   "available": p.available, "suite": p.suite})
        })
        .collect();
    cf.set(&["securityUpdates", "pending"], pending.len());
    cf.set(&["securityUpdates", "packages"], Value::Array(listed));
    cf.set(
        &["securityUpdates", "suites"],
        json!(suites.keys().collect::<Vec<_>>()),
    );
    cf.set(&["securityUpdates", "lists"], json!(read));
    cf.evidence(
        &["securityUpdates"],
        Evidence::file(APT_LISTS).with_source("apt-lists"),
    );
    let oldest = suites.values().flatten().min().copied();
    match oldest {
        Some(t) => {
            cf.set(&["securityUpdates", "metadataDate"], rfc3339_secs(t));
            cf.set(&["securityUpdates", "metadataDateUnix"], t);
            match age_days(t, now) {
                Ok(d) => cf.set(&["securityUpdates", "metadataAgeDays"], d),
                Err(r) => cf.unknown(&["securityUpdates", "metadataAgeDays"], r),
            }
        }
        None => cf.unknown(
            &["securityUpdates", "metadataAgeDays"],
            "no Release date for the security suites",
        ),
    }
}

/// The `Date:` of the suite's `InRelease` (else `Release`) list file.
fn release_date(host: &HostRoot, names: &BTreeSet<String>, prefix: &str) -> Option<i64> {
    ["InRelease", "Release"].iter().find_map(|f| {
        let name = format!("{prefix}{f}");
        if !names.contains(&name) {
            return None;
        }
        let b = host.read(&Path::new(APT_LISTS).join(name), 16 << 20).ok()?;
        parse::release_date(&String::from_utf8_lossy(&b))
    })
}

/// Streams one Packages list, recording installed packages older than its versions. Returns
/// the list's modification time.
fn scan_list(
    host: &HostRoot,
    path: &Path,
    suite: &str,
    installed: &Installed,
    pending: &mut BTreeMap<(String, String), Pending>,
) -> Result<i64, String> {
    let shown = crate::host::display(path);
    let (file, meta) = host.open_file(path).map_err(|e| e.to_string())?;
    let mut reader = parse::StanzaReader::default();
    let mut consider = |s: parse::Stanza| {
        let (Some(p), Some(v), Some(a)) = (s.package, s.version, s.architecture) else {
            return;
        };
        let key = (p, a);
        let Some(have) = installed.get(&key) else {
            return;
        };
        if debvercmp(have, &v).is_lt() {
            let newer = pending
                .get(&key)
                .is_none_or(|old| debvercmp(&old.available, &v).is_lt());
            if newer {
                pending.insert(
                    key,
                    Pending {
                        installed: have.clone(),
                        available: v,
                        suite: suite.to_owned(),
                    },
                );
            }
        }
    };
    parse::each_line(BufReader::new(file), MAX_LINE, LIST_LIMIT, |l| {
        if let Some(s) = reader.line(l) {
            consider(s);
        }
    })
    .map_err(|e| format!("{shown}: {e}"))?;
    if let Some(s) = reader.finish() {
        consider(s);
    }
    Ok(meta.mtime)
}

#[cfg(test)]
mod tests;
