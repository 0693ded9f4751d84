use super::*;
use crate::clock::unix_of;
use crate::inspect::Options;
use std::os::unix::fs::symlink;

/// 2026-11-22T02:42:51Z: the clock of these tests (fixed, so no date rots).
const NOW: i64 = 1_795_315_371;

use crate::inspect::test_root::TestRoot as Root;

trait Inspect {
    fn mtime(&self, p: &str, mtime: i64) -> &Self;
    fn inspect(&self) -> ComponentFacts;
}

impl Inspect for Root {
    fn mtime(&self, p: &str, mtime: i64) -> &Self {
        self.set_mtime(p, mtime)
    }
    fn inspect(&self) -> ComponentFacts {
        self.run(|ctx| inspect_at(ctx, NOW), true, &Options::default())
    }
}

fn reason(cf: &ComponentFacts, path: &[&str]) -> String {
    crate::facts::unknown_reason(cf.get(path).unwrap_or_else(|| panic!("{path:?}: {cf:#?}")))
        .unwrap_or_else(|| panic!("{path:?} is known: {:?}", cf.get(path)))
        .to_owned()
}

const SECURITY: &str = "/var/lib/apt/lists/azure.archive.ubuntu.com_ubuntu_dists_jammy-security_main_binary-amd64_Packages";
const SECURITY_RELEASE: &str =
    "/var/lib/apt/lists/azure.archive.ubuntu.com_ubuntu_dists_jammy-security_InRelease";

const STATUS: &str = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\n\
Version: 2.35-0ubuntu3.6\n\n\
Package: openssl\nStatus: install ok installed\nArchitecture: amd64\nVersion: 3.0.2-0ubuntu1.15\n\n\
Package: tzdata\nStatus: install ok installed\nArchitecture: all\nVersion: 2024a-0ubuntu0.22.04\n\n\
Package: removed-one\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1.0-1\n";

const LIST: &str = "Package: libc6\nArchitecture: amd64\nVersion: 2.35-0ubuntu3.8\n\
Description: GNU C Library\n continuation\n\n\
Package: libc6\nArchitecture: amd64\nVersion: 2.35-0ubuntu3.7\n\n\
Package: openssl\nArchitecture: amd64\nVersion: 3.0.2-0ubuntu1.10\n\n\
Package: tzdata\nArchitecture: all\nVersion: 2024a-0ubuntu0.22.04\n\n\
Package: removed-one\nArchitecture: amd64\nVersion: 2.0-1\n\n\
Package: not-installed\nArchitecture: amd64\nVersion: 9.9\n";

fn ubuntu() -> Root {
    let r = Root::new();
    r.write("/var/lib/dpkg/status", STATUS)
        .write(
            "/var/log/dpkg.log",
            "2026-11-01 06:25:13 upgrade libc6:amd64 2.35-0ubuntu3.5 2.35-0ubuntu3.6\n\
             2026-11-01 06:25:14 status installed libc6:amd64 2.35-0ubuntu3.6\n",
        )
        .write(SECURITY, LIST)
        .write(
            SECURITY_RELEASE,
            "Origin: Ubuntu\nSuite: jammy-security\nDate: Fri, 20 Nov 2026 10:00:00 UTC\n",
        )
        .write(
            "/etc/cloud/build.info",
            "build_name: server\nserial: 20261015.1\n",
        );
    r
}

#[test]
fn ubuntu_pending_update_and_ages() {
    let cf = ubuntu().inspect();
    assert_eq!(cf.get(&["packageManager"]), Some(&json!("dpkg")));
    let t = cf.get(&["lastTransaction"]).unwrap();
    assert_eq!(t["at"], json!("2026-11-01T06:25:14Z"));
    assert_eq!(t["source"], json!("/var/log/dpkg.log"));
    assert_eq!(t["ageDays"], json!(20));
    let s = cf.get(&["securityUpdates"]).unwrap();
    assert_eq!(s["pending"], json!(1), "{s:#}");
    assert_eq!(
        s["packages"],
        json!([{"name": "libc6", "architecture": "amd64", "installed": "2.35-0ubuntu3.6",
                "available": "2.35-0ubuntu3.8", "suite": "jammy-security"}])
    );
    assert_eq!(s["metadataDate"], json!("2026-11-20T10:00:00Z"));
    assert_eq!(s["metadataAgeDays"], json!(1));
    let i = cf.get(&["image"]).unwrap();
    assert_eq!(i["version"], json!("server-20261015.1"));
    assert_eq!(i["buildDate"], json!("2026-10-15"));
    assert_eq!(i["source"], json!("cloud-build-info"));
    assert_eq!(i["ageDays"], json!(38));
}

#[test]
fn apt_history_newer_than_dpkg_log_wins_and_rotated_log_is_a_fallback() {
    let r = ubuntu();
    r.write(
        "/var/log/apt/history.log",
        "Start-Date: 2026-11-21  06:00:00\nEnd-Date: 2026-11-21  06:01:00\n",
    );
    let cf = r.inspect();
    assert_eq!(
        cf.get(&["lastTransaction", "source"]),
        Some(&json!("/var/log/apt/history.log"))
    );
    assert_eq!(cf.get(&["lastTransaction", "ageDays"]), Some(&json!(0)));

    let r = ubuntu();
    r.write("/var/log/dpkg.log", "").write(
        "/var/log/dpkg.log.1",
        "2026-09-01 00:00:00 status installed x:amd64 1\n",
    );
    let cf = r.inspect();
    assert_eq!(
        cf.get(&["lastTransaction", "source"]),
        Some(&json!("/var/log/dpkg.log.1"))
    );
    assert_eq!(cf.get(&["lastTransaction", "ageDays"]), Some(&json!(82)));
}

#[test]
fn no_logs_fall_back_to_the_status_file_mtime() {
    let r = ubuntu();
    std::fs::remove_file(r.path("/var/log/dpkg.log")).unwrap();
    r.mtime("/var/lib/dpkg/status", unix_of(2026, 8, 1, 0, 0, 0));
    let cf = r.inspect();
    let t = cf.get(&["lastTransaction"]).unwrap();
    assert_eq!(t["source"], json!("/var/lib/dpkg/status"));
    assert_eq!(t["kind"], json!("mtime"));
    assert_eq!(t["ageDays"], json!(113));
}

#[test]
fn future_entries_are_ignored_and_an_only_future_time_is_unknown() {
    let r = ubuntu();
    r.write(
        "/var/log/dpkg.log",
        "2026-11-01 06:25:14 status installed libc6:amd64 2.35-0ubuntu3.6\n\
         2030-01-01 00:00:00 status installed skewed:amd64 1\n",
    );
    let cf = r.inspect();
    assert_eq!(cf.get(&["lastTransaction", "ageDays"]), Some(&json!(20)));
    assert_eq!(
        cf.get(&["lastTransaction", "futureEntriesIgnored"]),
        Some(&json!(1))
    );

    let r = ubuntu();
    std::fs::remove_file(r.path("/var/log/dpkg.log")).unwrap();
    r.mtime("/var/lib/dpkg/status", unix_of(2030, 1, 1, 0, 0, 0));
    let cf = r.inspect();
    assert!(
        reason(&cf, &["lastTransaction", "ageDays"]).contains("in the future"),
        "{cf:#?}"
    );
}

#[test]
fn security_metadata_missing_or_compressed_is_unknown() {
    let r = ubuntu();
    std::fs::remove_file(r.path(SECURITY)).unwrap();
    let cf = r.inspect();
    assert!(reason(&cf, &["securityUpdates"]).contains("no Packages list of a security suite"));

    r.write(&format!("{SECURITY}.lz4"), "lz4 bytes");
    let cf = r.inspect();
    assert!(reason(&cf, &["securityUpdates"]).contains("compressed"));

    let r = ubuntu();
    std::fs::remove_dir_all(r.path("/var/lib/apt/lists")).unwrap();
    let cf = r.inspect();
    assert!(reason(&cf, &["securityUpdates"]).starts_with("no apt package lists: "));
}

#[test]
fn a_huge_line_in_a_list_makes_the_count_unknown() {
    let r = ubuntu();
    let mut list = LIST.as_bytes().to_vec();
    list.extend(b"\nDescription: ");
    list.extend(std::iter::repeat_n(b'x', 1 << 20));
    list.extend(b"\n");
    r.write(SECURITY, list);
    let cf = r.inspect();
    let why = reason(&cf, &["securityUpdates"]);
    assert!(why.contains("longer than"), "{why}");
    assert!(why.contains("jammy-security"), "{why}");
}

#[test]
fn truncated_and_non_utf8_status_files_do_not_fail() {
    let r = ubuntu();
    let mut status = STATUS.as_bytes()[..STATUS.len() - 40].to_vec();
    status.extend(b"\n\xff\xfe\xfd garbage\n");
    r.write("/var/lib/dpkg/status", status);
    let cf = r.inspect();
    assert_eq!(cf.get(&["securityUpdates", "pending"]), Some(&json!(1)));
}

#[test]
fn a_fifo_log_is_not_opened_and_a_symlink_stays_inside_the_root() {
    let r = ubuntu();
    std::fs::remove_file(r.path("/var/log/dpkg.log")).unwrap();
    nix::unistd::mkfifo(
        &r.path("/var/log/dpkg.log"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    r.mtime("/var/lib/dpkg/status", unix_of(2026, 11, 10, 0, 0, 0));
    let cf = r.inspect();
    let t = cf.get(&["lastTransaction"]).unwrap();
    assert_eq!(t["source"], json!("/var/lib/dpkg/status"), "{t:#}");
    assert!(
        t["unreadable"][0].as_str().unwrap().contains("FIFO"),
        "{t:#}"
    );

    // An absolute symlink resolves inside the root: /etc/passwd of the tree, not the host's.
    let r = ubuntu();
    std::fs::remove_file(r.path("/etc/cloud/build.info")).unwrap();
    symlink("/etc/passwd", r.path("/etc/cloud/build.info")).unwrap();
    let cf = r.inspect();
    assert!(reason(&cf, &["image"]).contains("/etc/cloud/build.info: not found"));
}

#[test]
fn a_sparse_multi_gigabyte_log_is_read_from_its_tail() {
    let r = ubuntu();
    let f = std::fs::File::create(r.path("/var/log/dpkg.log")).unwrap();
    f.set_len(6 << 30).unwrap();
    drop(f);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(r.path("/var/log/dpkg.log"))
        .unwrap();
    std::io::Write::write_all(
        &mut f,
        b"\n2026-11-21 00:00:00 status installed x:amd64 1\n",
    )
    .unwrap();
    let cf = r.inspect();
    assert_eq!(cf.get(&["lastTransaction", "ageDays"]), Some(&json!(1)));
}

#[test]
fn rpm_family_without_metadata() {
    let r = Root::new();
    r.write("/var/lib/rpm/rpmdb.sqlite", "SQLite format 3\0")
        .mtime("/var/lib/rpm/rpmdb.sqlite", unix_of(2026, 11, 2, 0, 0, 0))
        .write(
            "/etc/azurelinux-release",
            "Microsoft Azure Linux 3.0.20241005\nAZURELINUX_BUILD_NUMBER=ab12\n",
        );
    let cf = r.inspect();
    assert_eq!(cf.get(&["packageManager"]), Some(&json!("rpm")));
    let t = cf.get(&["lastTransaction"]).unwrap();
    assert_eq!(t["source"], json!("/var/lib/rpm/rpmdb.sqlite"));
    assert_eq!(t["ageDays"], json!(20));
    assert!(reason(&cf, &["securityUpdates"]).contains("not assessed on RPM distributions"));
    let i = cf.get(&["image"]).unwrap();
    assert_eq!(i["version"], json!("3.0.20241005"));
    assert_eq!(i["source"], json!("release-file"));
    assert_eq!(i["buildDate"], json!("2024-10-05"));

    r.write(
        "/var/log/dnf.rpm.log",
        "2026-11-20T06:25:13+0000 SUBDEBUG Upgrade: openssl-3.3.2-1.azl3.x86_64\n",
    );
    let cf = r.inspect();
    assert_eq!(
        cf.get(&["lastTransaction", "source"]),
        Some(&json!("/var/log/dnf.rpm.log"))
    );
    assert_eq!(cf.get(&["lastTransaction", "ageDays"]), Some(&json!(1)));
}

#[test]
fn nothing_at_all_is_unknown_with_reasons() {
    let cf = Root::new().inspect();
    for p in ["packageManager", "lastTransaction", "securityUpdates"] {
        assert!(reason(&cf, &[p]).starts_with("no package database"), "{p}");
    }
    let why = reason(&cf, &["image"]);
    assert!(why.starts_with("no node image record: "), "{why}");
    assert!(why.contains("/etc/cloud/build.info: not found"), "{why}");
}

#[test]
fn os_release_image_fields() {
    let r = Root::new();
    r.write(
        "/etc/os-release",
        "ID=flatcar\nIMAGE_ID=flatcar\nIMAGE_VERSION=\"20260301.0\"\n",
    );
    let cf = r.inspect();
    assert_eq!(
        cf.get(&["image", "version"]),
        Some(&json!("flatcar-20260301.0"))
    );
    assert_eq!(cf.get(&["image", "ageDays"]), Some(&json!(266)));
    r.write("/etc/os-release", "ID=x\nBUILD_ID=rolling\n");
    let cf = r.inspect();
    assert_eq!(cf.get(&["image", "version"]), Some(&json!("rolling")));
    assert!(reason(&cf, &["image", "ageDays"]).contains("carries no build date"));
}

#[test]
fn aks_vhd_build_log_dates_the_image_without_a_label() {
    let r = Root::new();
    r.write(
        "/opt/azure/vhd-install.complete",
        "Starting build on  Fri May  3 00:12:45 UTC 2024\nComponents downloaded in this VHD build:\n",
    )
    .write(
        "/etc/cloud/build.info",
        "build_name: server\nserial: 20240401\n",
    );
    let cf = r.inspect();
    let i = cf.get(&["image"]).unwrap();
    assert_eq!(i["source"], json!("aks-vhd-build-log"));
    assert_eq!(i["buildDate"], json!("2024-05-03"));
    assert_eq!(
        i["ageDays"],
        json!((NOW - unix_of(2024, 5, 3, 0, 0, 0)) / 86_400)
    );
    assert!(reason(&cf, &["image", "version"]).contains("records no version"));
}
