//! Integration tests for the patches inspector and its rules: `nodedrift check` on copies of
//! the fixture hosts given package logs, dpkg databases and apt lists dated relative to the
//! time the test runs (fixed dates would rot).

use std::path::Path;

use serde_json::{Value, json};

use crate::util::{check_json, prepared_host, run_bounded, set_node_image_age};

const DAY: i64 = 86_400;
const SECURITY: &str = "var/lib/apt/lists/azure.archive.ubuntu.com_ubuntu_dists_jammy-security_main_binary-amd64_Packages";
const SECURITY_RELEASE: &str =
    "var/lib/apt/lists/azure.archive.ubuntu.com_ubuntu_dists_jammy-security_InRelease";

fn write(root: &Path, rel: &str, bytes: impl AsRef<[u8]>) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// `2026-11-22 02:42:51` for `days_ago` days before now.
fn stamp(days_ago: i64) -> String {
    let t = nodedrift::clock::unix_now() - days_ago * DAY;
    nodedrift::clock::rfc3339_secs(t)
        .trim_end_matches('Z')
        .replace('T', " ")
}

/// A Release file's `Date:` for `days_ago` days before now.
fn release_date(days_ago: i64) -> String {
    let s = stamp(days_ago); // 2026-11-22 02:42:51
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m: usize = s[5..7].parse().unwrap();
    format!(
        "Date: Mon, {} {} {} {} UTC\n",
        &s[8..10],
        months[m - 1],
        &s[..4],
        &s[11..]
    )
}

/// Gives the host a dpkg database with libc6 installed at `installed`, a dpkg.log entry
/// `log_days` ago, and a security list offering `offered`, fetched `lists_days` ago.
fn dpkg_host(root: &Path, installed: &str, offered: &str, log_days: i64, lists_days: i64) {
    write(
        root,
        "var/lib/dpkg/status",
        format!(
            "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: {installed}\n\n\
             Package: openssl\nStatus: install ok installed\nArchitecture: amd64\nVersion: 3.0.2-0ubuntu1.15\n"
        ),
    );
    write(
        root,
        "var/log/dpkg.log",
        format!(
            "{} status installed libc6:amd64 {installed}\n",
            stamp(log_days)
        ),
    );
    write(
        root,
        SECURITY,
        format!(
            "Package: libc6\nArchitecture: amd64\nVersion: {offered}\n\n\
             Package: openssl\nArchitecture: amd64\nVersion: 3.0.2-0ubuntu1.10\n"
        ),
    );
    write(
        root,
        SECURITY_RELEASE,
        format!(
            "Origin: Ubuntu\nSuite: jammy-security\n{}",
            release_date(lists_days)
        ),
    );
}

/// `rule → (status, finding)` of the patches findings of `check --profile <profile>`.
fn outcomes(root: &Path, profile: &str) -> std::collections::BTreeMap<String, (String, Value)> {
    let (_, report) = check_json(root, &["--profile", profile]);
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["component"] == "patches")
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_owned(),
                (f["status"].as_str().unwrap().to_owned(), f.clone()),
            )
        })
        .collect()
}

fn status(o: &std::collections::BTreeMap<String, (String, Value)>, rule: &str) -> String {
    o.get(rule)
        .unwrap_or_else(|| panic!("no {rule} finding in {o:#?}"))
        .0
        .clone()
}

/// The four rules an Ubuntu node is held to.
const UBUNTU_RULES: [&str; 4] = [
    "patches.node-image-recent",
    "patches.last-transaction-recent",
    "patches.no-pending-security-updates",
    "patches.security-metadata-fresh",
];

/// Asserts every one of [`UBUNTU_RULES`] has the status `want`.
fn assert_all(o: &std::collections::BTreeMap<String, (String, Value)>, want: &str) {
    for rule in UBUNTU_RULES {
        assert_eq!(status(o, rule), want, "{rule}: {:#}", o[rule].1);
    }
}

#[test]
fn patched_ubuntu_node_passes() {
    let host = prepared_host("aks-ubuntu-clean");
    set_node_image_age(host.path(), 5);
    dpkg_host(host.path(), "2.35-0ubuntu3.8", "2.35-0ubuntu3.8", 2, 1);
    let o = outcomes(host.path(), "aks-ubuntu");
    assert_all(&o, "pass");
    let image = &o["patches.node-image-recent"].1;
    assert_eq!(image["actual"], json!(5));
    assert_eq!(image["evidence"]["pid"], json!(1201));
}

#[test]
fn stale_ubuntu_node_fails_with_the_pending_update() {
    let host = prepared_host("aks-ubuntu-clean");
    // The fixture's own image label (January 2025) is older than 30 days, and stays so.
    dpkg_host(host.path(), "2.35-0ubuntu3.6", "2.35-0ubuntu3.8", 45, 40);
    let o = outcomes(host.path(), "aks-ubuntu");
    assert_all(&o, "fail");
    let image = &o["patches.node-image-recent"].1;
    // Escalated: the image is more than 90 days old.
    assert_eq!(image["severity"], json!("high"));
    assert!(
        image["remediation"]
            .as_str()
            .unwrap()
            .contains("az aks nodepool upgrade --node-image-only"),
    );
    assert_eq!(image["policy"], json!("aks/node-image-updates"));
    assert_eq!(o["patches.last-transaction-recent"].1["actual"], json!(45));
    assert_eq!(
        o["patches.no-pending-security-updates"].1["actual"],
        json!(1)
    );
    assert_eq!(
        o["patches.last-transaction-recent"].1["policy"],
        json!("aks/vendor-fixes-30-days")
    );

    // The facts name the package, both versions and the suite.
    let facts = crate::util::inspect("patches", host.path());
    assert_eq!(
        facts["patches"]["facts"]["securityUpdates"]["packages"],
        json!([{"name": "libc6", "architecture": "amd64", "installed": "2.35-0ubuntu3.6",
                "available": "2.35-0ubuntu3.8", "suite": "jammy-security"}])
    );
}

#[test]
fn no_package_database_or_rpm_metadata_is_unknown() {
    // No package database at all: unknown with the reason, never a pass.
    let host = prepared_host("aks-ubuntu-clean");
    set_node_image_age(host.path(), 5);
    let o = outcomes(host.path(), "aks-ubuntu");
    for rule in [
        "patches.last-transaction-recent",
        "patches.no-pending-security-updates",
    ] {
        assert_eq!(status(&o, rule), "unknown", "{rule}");
        assert!(
            o[rule].1["reason"]
                .as_str()
                .unwrap()
                .starts_with("no package database"),
            "{:#}",
            o[rule].1
        );
    }

    // Azure Linux: the rpm database dates the last transaction; pending security updates are
    // not assessed.
    let host = prepared_host("azurelinux-kernel-mismatch");
    write(host.path(), "var/lib/rpm/rpmdb.sqlite", "SQLite format 3\0");
    let o = outcomes(host.path(), "aks-azurelinux");
    assert_eq!(status(&o, "patches.last-transaction-recent"), "pass");
    assert_eq!(
        o["patches.last-transaction-recent"].1["evidence"]["file"],
        json!("/var/lib/rpm/rpmdb.sqlite")
    );
    assert_eq!(status(&o, "patches.no-pending-security-updates"), "unknown");
    assert!(
        o["patches.no-pending-security-updates"].1["reason"]
            .as_str()
            .unwrap()
            .contains("not assessed on RPM distributions")
    );
}

#[test]
fn hostile_package_files_give_unknowns_without_hanging() {
    let host = prepared_host("aks-ubuntu-clean");
    set_node_image_age(host.path(), 5);
    dpkg_host(host.path(), "2.35-0ubuntu3.6", "2.35-0ubuntu3.8", 2, 1);
    // A FIFO named dpkg.log (reading it would block forever), a list with a 1 MiB line, and
    // an apt history that is a symlink out of the root.
    std::fs::remove_file(host.path().join("var/log/dpkg.log")).unwrap();
    nix::unistd::mkfifo(
        &host.path().join("var/log/dpkg.log"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let mut list =
        b"Package: libc6\nArchitecture: amd64\nVersion: 2.35-0ubuntu3.8\nDescription: ".to_vec();
    list.extend(std::iter::repeat_n(b'x', 1 << 20));
    write(host.path(), SECURITY, list);
    std::fs::create_dir_all(host.path().join("var/log/apt")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../../../etc/hostname",
        host.path().join("var/log/apt/history.log"),
    )
    .unwrap();

    let out = run_bounded(
        crate::util::nodedrift()
            .args(["inspect", "patches", "--host-root"])
            .arg(host.path()),
        60,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &v["patches"]["facts"];
    // dpkg.log is not read; the status file's mtime (just written) dates the transaction.
    assert_eq!(
        f["lastTransaction"]["source"],
        json!("/var/lib/dpkg/status"),
        "{f:#}"
    );
    assert!(
        f["lastTransaction"]["unreadable"][0]
            .as_str()
            .unwrap()
            .contains("FIFO"),
        "{f:#}"
    );
    let why = f["securityUpdates"]["$unknown"].as_str().unwrap();
    assert!(why.contains("longer than"), "{why}");
}
