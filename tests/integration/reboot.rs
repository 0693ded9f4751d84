//! Integration tests for the reboot inspector.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::{Value, json};

use crate::util::{fixture_host, inspect, prepared_host};

fn facts(root: &Path) -> Value {
    inspect("reboot", root)["reboot"]["facts"].clone()
}

#[test]
fn clean_fixtures_need_no_reboot() {
    for name in ["aks-ubuntu-clean", "kubeadm"] {
        let f = facts(&fixture_host(name));
        assert_eq!(f["required"], json!(false), "{name}: {f}");
        assert_eq!(f["restartRequired"], json!(false), "{name}");
        assert_eq!(f["reasons"], json!([]), "{name}");
        assert_eq!(f["kernel"]["mismatch"], json!(false), "{name}");
        assert_eq!(f["deletedLibraries"]["count"], json!(0), "{name}");
        assert_eq!(
            f["deletedLibraries"]["scanned"],
            json!(1),
            "{name}: the sshd fixture process"
        );
    }
}

#[test]
fn drifted_fixture_has_the_debian_marker_through_var_run() {
    let root = fixture_host("aks-ubuntu-drifted");
    let f = facts(&root);
    let mtime = std::fs::metadata(root.join("run/reboot-required"))
        .unwrap()
        .mtime();
    let debian = &f["markers"]["debian"];
    assert_eq!(debian["exists"], json!(true));
    assert_eq!(
        debian["packages"],
        json!(["linux-image-5.15.0-1061-azure", "libssl3"])
    );
    assert_eq!(debian["sinceUnix"], json!(mtime));
    assert!(debian["since"].as_str().unwrap().ends_with('Z'));
    assert_eq!(f["required"], json!(true));
    let reasons: Vec<&str> = f["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    // The package list names a new kernel, and that kernel is installed but not running.
    assert_eq!(reasons, vec!["PackageUpdate", "KernelUpdate"]);
    assert_eq!(f["kernel"]["running"], json!("5.15.0-1057-azure"));
    assert_eq!(f["kernel"]["newestInstalled"], json!("5.15.0-1061-azure"));
}

#[test]
fn azure_linux_running_an_older_kernel_needs_a_reboot() {
    let f = facts(&fixture_host("azurelinux-kernel-mismatch"));
    assert_eq!(f["required"], json!(true));
    assert_eq!(
        f["markers"]["debian"],
        json!({"exists": false, "packages": []})
    );
    assert_eq!(
        f["kernel"]["installed"],
        json!(["6.6.57.1-2.azl3", "6.6.47.1-1.azl3"])
    );
    assert_eq!(f["kernel"]["mismatch"], json!(true));
    let r = &f["reasons"][0];
    assert_eq!(r["reason"], json!("KernelUpdate"));
    assert_eq!(r["running"], json!("6.6.47.1-1.azl3"));
    assert_eq!(r["newestInstalled"], json!("6.6.57.1-2.azl3"));
    assert_eq!(f["pendingSince"], r["since"]);
}

#[test]
fn processes_mapping_deleted_libraries_need_a_restart_not_a_reboot() {
    let dir = prepared_host("aks-ubuntu-clean");
    let w = |p: &str, s: &str| {
        let p = dir.path().join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    };
    w(
        "proc/1450/cmdline",
        "/usr/bin/containerd-shim-runc-v2\0-namespace\0k8s.io\0",
    );
    w(
        "proc/1450/maps",
        "7f00-7f01 r-xp 00000000 08:01 5    /usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)\n\
         7f01-7f02 r-xp 00000000 08:01 6    /usr/lib/x86_64-linux-gnu/libcrypto.so.3 (deleted)\n\
         garbage\n",
    );
    w("proc/1450/cgroup", "0::/system.slice/containerd.service\n");
    // Listed in /proc but gone before its maps are read.
    w("proc/1451/cmdline", "/bin/true\0");
    let f = facts(dir.path());
    assert_eq!(
        f["deletedLibraries"]["processes"],
        json!([{"pid": 1450, "program": "containerd-shim-runc-v2", "unit": "containerd.service",
                "libraries": ["/usr/lib/x86_64-linux-gnu/libcrypto.so.3", "/usr/lib/x86_64-linux-gnu/libssl.so.3"]}])
    );
    assert_eq!(f["deletedLibraries"]["count"], json!(1));
    assert_eq!(f["deletedLibraries"]["junkLines"], json!(1));
    assert!(f["deletedLibraries"]["exited"].as_u64().unwrap() >= 1);
    assert_eq!(f["restartRequired"], json!(true));
    assert_eq!(f["required"], json!(false));
    assert_eq!(
        f["reasons"],
        json!([{"reason": "ServicesNeedRestart", "action": "restart", "processes": 1,
                "services": ["containerd.service"]}])
    );
}

/// RPM-based hosts write no marker: glibc and openssl replaced after boot (the
/// `needs-restarting -r` criteria) ask for a reboot, and name the components.
#[test]
fn azure_linux_with_core_libraries_replaced_since_boot_needs_a_reboot() {
    let dir = prepared_host("azurelinux-kernel-mismatch");
    let root = dir.path();
    // Running the newest kernel: only the libraries are a reason.
    std::fs::write(root.join("proc/sys/kernel/osrelease"), "6.6.57.1-2.azl3\n").unwrap();
    for lib in ["usr/lib/libc.so.6", "usr/lib/libssl.so.3"] {
        std::fs::create_dir_all(root.join(lib).parent().unwrap()).unwrap();
        std::fs::write(root.join(lib), "\x7fELF").unwrap();
    }
    let installed = std::fs::metadata(root.join("usr/lib/libc.so.6"))
        .unwrap()
        .ctime();
    let boot =
        |t: i64| std::fs::write(root.join("proc/stat"), format!("cpu 0\nbtime {t}\n")).unwrap();

    boot(installed + 60);
    let f = facts(root);
    assert_eq!(f["required"], json!(false), "{f:#}");
    assert_eq!(f["coreReplaced"]["count"], json!(0));

    boot(installed - 86_400);
    let f = facts(root);
    assert_eq!(f["required"], json!(true), "{f:#}");
    let r = &f["reasons"][0];
    assert_eq!(r["reason"], json!("LibrariesReplaced"));
    assert_eq!(r["packages"], json!(["glibc", "openssl"]));

    // The subcommand orchestrators run says so, with the components.
    let out = crate::util::run(&["reboot-required", "--host-root", root.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("LibrariesReplaced: glibc, openssl"), "{text}");
}

#[test]
fn suse_marker_needs_a_reboot() {
    let dir = prepared_host("kubeadm");
    // var/run is a symlink to /run, resolved inside the host root.
    std::fs::create_dir_all(dir.path().join("run")).unwrap();
    std::fs::write(dir.path().join("run/reboot-needed"), "").unwrap();
    let f = facts(dir.path());
    assert_eq!(f["required"], json!(true), "{f:#}");
    assert_eq!(f["reasons"][0]["reason"], json!("SuseRebootNeeded"));
    assert_eq!(f["markers"]["suse"]["exists"], json!(true));
}

/// The live host, read as it runs: the kernel and every process's maps.
#[test]
fn live_host_is_read() {
    let f = facts(Path::new("/"));
    let running = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(f["kernel"]["running"], json!(running.trim()));
    assert!(f["deletedLibraries"]["scanned"].as_u64().unwrap() >= 1);
}

/// `nodedrift reboot-required` follows kured's sentinel-command convention: exit 0 when a
/// reboot is required, 1 when not, 3 when it cannot tell (which kured treats as "not
/// required"), 64 for a bad host root.
#[test]
fn reboot_required_subcommand_answers_with_its_exit_code() {
    let run = |root: &std::path::Path, extra: &[&str]| {
        let out = crate::util::run_bounded(
            crate::util::nodedrift()
                .arg("reboot-required")
                .arg("--host-root")
                .arg(root)
                .args(extra),
            30,
        );
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = run(&crate::util::fixture_host("aks-ubuntu-drifted"), &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("reboot required since "), "{text}");
    assert!(
        text.contains("PackageUpdate: linux-image-5.15.0-1061-azure, libssl3"),
        "{text}"
    );
    assert!(
        text.contains("KernelUpdate: running 5.15.0-1057-azure"),
        "{text}"
    );

    let (code, text) = run(
        &crate::util::fixture_host("azurelinux-kernel-mismatch"),
        &[],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("KernelUpdate"), "{text}");

    let (code, text) = run(&crate::util::fixture_host("aks-ubuntu-clean"), &[]);
    assert_eq!((code, text.as_str()), (1, "no reboot required\n"));

    let (code, text) = run(
        &crate::util::fixture_host("aks-ubuntu-drifted"),
        &["--quiet"],
    );
    assert_eq!((code, text.as_str()), (0, ""));

    let (code, text) = run(
        &crate::util::fixture_host("aks-ubuntu-drifted"),
        &["--json"],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["facts"]["required"], true, "{v}");

    // No /proc, no /boot: it cannot tell, and says why.
    let empty = tempfile::tempdir().unwrap();
    let (code, text) = run(empty.path(), &[]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.starts_with("cannot tell whether a reboot is required: "),
        "{text}"
    );

    let (code, _) = run(std::path::Path::new("/nonexistent/host"), &[]);
    assert_eq!(code, 64);
}

/// A pending reboot's severity rises with its age (the AKS profile: medium at once, high after
/// 7 days, critical after 30), from `reboot.pendingSinceUnix`.
#[test]
fn pending_reboot_severity_rises_with_age() {
    let host = crate::util::prepared_host("aks-ubuntu-drifted");
    let age = |days: u64| {
        let t = std::time::SystemTime::now() - std::time::Duration::from_secs(days * 86_400 + 60);
        // var/run is a symlink to /run, resolved inside the host root by the agent only.
        for rel in ["run/reboot-required", "run/reboot-required.pkgs"] {
            let f = std::fs::File::options()
                .write(true)
                .open(host.path().join(rel))
                .unwrap();
            f.set_modified(t).unwrap();
        }
        for e in std::fs::read_dir(host.path().join("boot")).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::File::options()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_modified(t)
                    .unwrap();
            }
        }
    };
    let severity = |rule: &str| {
        let (_, report) = crate::util::check_json(host.path(), &[]);
        let f = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["rule"] == rule && f["status"] == "fail")
            .cloned()
            .unwrap_or_else(|| panic!("{rule} fails: {report}"));
        f["severity"].as_str().unwrap().to_owned()
    };
    for (days, expected) in [(0, "medium"), (8, "high"), (31, "critical")] {
        age(days);
        assert_eq!(severity("reboot.not-pending"), expected, "{days} days");
        assert_eq!(
            severity("reboot.running-newest-kernel"),
            expected,
            "{days} days"
        );
    }
}

/// `check` shows the reboot state in its table (a `reboot state` block) and its JSON (`reboot`).
#[test]
fn check_reports_the_reboot_state_in_table_and_json() {
    let root = fixture_host("aks-ubuntu-drifted");
    let (_, report) = crate::util::check_json(&root, &[]);
    let r = &report["reboot"];
    assert_eq!(r["required"], json!(true), "{r:#}");
    assert_eq!(
        r["packages"],
        json!(["linux-image-5.15.0-1061-azure", "libssl3"])
    );
    let kinds: Vec<&str> = r["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["reason"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["PackageUpdate", "KernelUpdate"]);
    assert!(r["pendingSince"].as_str().unwrap().ends_with('Z'));

    let out = crate::util::run(&["check", "--host-root", root.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let block = text
        .split("\nreboot state\n")
        .nth(1)
        .unwrap_or_else(|| panic!("a reboot block: {text}"));
    assert!(block.starts_with("  reboot required since "), "{block}");
    assert!(
        block.contains("PackageUpdate: linux-image-5.15.0-1061-azure, libssl3"),
        "{block}"
    );

    // A clean node's table has no reboot block; its JSON says "not required".
    let clean = fixture_host("aks-ubuntu-clean");
    let (_, report) = crate::util::check_json(&clean, &[]);
    assert_eq!(report["reboot"]["required"], json!(false));
    let out = crate::util::run(&["check", "--host-root", clean.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("reboot state"));
}

/// A live patch still switching tasks over is its own reason and rule, and no reboot.
#[test]
fn a_live_patch_in_transition_is_reported_not_a_reboot() {
    let dir = prepared_host("aks-ubuntu-clean");
    let patch = dir
        .path()
        .join("sys/kernel/livepatch/livepatch_cve_2026_1234");
    std::fs::create_dir_all(&patch).unwrap();
    std::fs::write(patch.join("enabled"), "1\n").unwrap();
    std::fs::write(patch.join("transition"), "1\n").unwrap();
    let f = facts(dir.path());
    assert_eq!(f["required"], json!(false), "{f:#}");
    assert_eq!(f["livePatch"]["pending"], json!(true));
    assert_eq!(f["reasons"][0]["reason"], json!("LivePatchPending"));
    let (_, report) = crate::util::check_json(dir.path(), &[]);
    let rule = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "reboot.live-patch-settled")
        .unwrap();
    assert_eq!(rule["status"], json!("fail"));

    std::fs::write(patch.join("transition"), "0\n").unwrap();
    assert_eq!(facts(dir.path())["livePatch"]["pending"], json!(false));
}

/// In the pod, the image sets NODEDRIFT_HOST_ROOT=/host: `kubectl exec ... nodedrift
/// reboot-required` needs no flag.
#[test]
fn reboot_required_takes_the_host_root_from_the_environment() {
    let root = fixture_host("aks-ubuntu-drifted");
    let out = crate::util::run_bounded(
        crate::util::nodedrift()
            .arg("reboot-required")
            .env("NODEDRIFT_HOST_ROOT", &root),
        30,
    );
    assert_eq!(out.status.code(), Some(0));
    let out = crate::util::run_bounded(
        crate::util::nodedrift()
            .args(["reboot-required", "--quiet"])
            .env("NODEDRIFT_HOST_ROOT", fixture_host("aks-ubuntu-clean")),
        30,
    );
    assert_eq!(out.status.code(), Some(1));
}
