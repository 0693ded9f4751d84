use super::*;
use crate::clock::rfc3339_secs as rfc3339;
use crate::inspect::{Options, ProcessTable};
use std::os::unix::fs::symlink;

use crate::inspect::test_root::TestRoot as Root;

/// A root with `/run`, and `/var/run` an absolute symlink to it that must resolve inside the
/// root, as on Debian.
fn new_root() -> Root {
    let r = Root::new();
    std::fs::create_dir_all(r.path("/run")).unwrap();
    std::fs::create_dir_all(r.path("/var")).unwrap();
    symlink("/run", r.path("/var/run")).unwrap();
    r
}

trait Inspect {
    fn touch(&self, p: &str, mtime: i64) -> &Self;
    fn ctime(&self, p: &str) -> i64;
    fn inspect(&self) -> ComponentFacts;
}

impl Inspect for Root {
    fn touch(&self, p: &str, mtime: i64) -> &Self {
        self.write(p, "").set_mtime(p, mtime)
    }
    fn ctime(&self, p: &str) -> i64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.path(p)).unwrap().ctime()
    }
    fn inspect(&self) -> ComponentFacts {
        self.run(inspect, true, &Options::default())
    }
}

fn reason(cf: &ComponentFacts, path: &[&str]) -> String {
    crate::facts::unknown_reason(cf.get(path).unwrap())
        .unwrap()
        .to_owned()
}

#[test]
fn debian_marker_through_var_run_symlink_with_packages() {
    let r = new_root();
    r.write("/proc/sys/kernel/osrelease", "5.15.0-1061-azure\n")
        .touch("/boot/vmlinuz-5.15.0-1061-azure", 1_700_000_000)
        .write("/run/reboot-required", "*** System restart required ***\n")
        .write(
            "/run/reboot-required.pkgs",
            "linux-image-5.15.0-1061-azure\nlibssl3\nlibssl3\n\n",
        );
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_718_000_000);
    std::fs::File::options()
        .write(true)
        .open(r.path("/run/reboot-required"))
        .unwrap()
        .set_modified(t)
        .unwrap();
    let cf = r.inspect();
    assert_eq!(
        cf.get(&["markers", "debian"]).unwrap(),
        &json!({"exists": true, "file": "/var/run/reboot-required",
                "packages": ["linux-image-5.15.0-1061-azure", "libssl3"],
                "since": "2024-06-10T06:13:20Z", "sinceUnix": 1_718_000_000})
    );
    assert_eq!(cf.get(&["required"]).unwrap(), &json!(true));
    assert_eq!(cf.get(&["pendingSince"]).unwrap(), "2024-06-10T06:13:20Z");
    assert_eq!(
        cf.get(&["reasons", "0", "reason"]),
        None,
        "reasons is an array"
    );
    assert_eq!(
        cf.get(&["reasons"]).unwrap()[0]["reason"],
        json!("PackageUpdate")
    );
    assert_eq!(cf.get(&["kernel", "mismatch"]).unwrap(), &json!(false));
    assert_eq!(
        cf.get(&["markers", "suse"]).unwrap(),
        &json!({"exists": false})
    );
    assert_eq!(cf.get(&["restartRequired"]).unwrap(), &json!(false));
}

#[test]
fn newer_installed_kernel_is_a_kernel_update() {
    let r = new_root();
    r.write("/proc/sys/kernel/osrelease", "6.6.47.1-1.azl3\n")
        .touch("/lib/modules/6.6.47.1-1.azl3/modules.dep", 1_700_000_000)
        .touch("/lib/modules/6.6.57.1-2.azl3/modules.dep", 1_710_000_000)
        .touch("/boot/vmlinuz-6.6.57.1-2.azl3", 1_710_000_000)
        // A leftover module directory without modules.dep is not an installed kernel.
        .write("/lib/modules/6.9.0-1.azl3/extra/x.ko", "")
        .touch("/boot/vmlinuz-0-rescue-0123456789abcdef", 1);
    let cf = r.inspect();
    // Since when: the install time (change time), not the modification time that package
    // managers copy from the package.
    let installed = r.ctime("/boot/vmlinuz-6.6.57.1-2.azl3");
    assert_eq!(
        cf.get(&["kernel"]).unwrap(),
        &json!({"running": "6.6.47.1-1.azl3", "installed": ["6.6.57.1-2.azl3", "6.6.47.1-1.azl3"],
                "newestInstalled": "6.6.57.1-2.azl3", "mismatch": true,
                "newestInstalledSince": rfc3339(installed)})
    );
    let reasons = cf.get(&["reasons"]).unwrap();
    assert_eq!(
        reasons,
        &json!([{"reason": "KernelUpdate", "action": "reboot", "running": "6.6.47.1-1.azl3",
                 "newestInstalled": "6.6.57.1-2.azl3", "file": "/boot/vmlinuz-6.6.57.1-2.azl3",
                 "since": rfc3339(installed), "sinceUnix": installed}])
    );
    assert_eq!(cf.get(&["required"]).unwrap(), &json!(true));
    assert_eq!(
        cf.evidence["kernel.newestInstalled"].file.as_deref(),
        Some("/boot/vmlinuz-6.6.57.1-2.azl3")
    );
}

#[test]
fn suse_marker() {
    let r = new_root();
    r.touch("/run/reboot-needed", 1_700_000_000)
        .write("/proc/sys/kernel/osrelease", "6.4.0-150600.23.25-default")
        .touch("/boot/vmlinuz-6.4.0-150600.23.25-default", 1);
    let cf = r.inspect();
    assert_eq!(
        cf.get(&["markers", "suse", "since"]).unwrap(),
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(
        cf.get(&["reasons"]).unwrap()[0]["reason"],
        json!("SuseRebootNeeded")
    );
}

#[test]
fn nothing_installed_or_running_known_is_unknown_not_false() {
    let r = new_root();
    let cf = r.inspect();
    assert!(reason(&cf, &["kernel", "mismatch"]).contains("osrelease: not found"));
    assert!(reason(&cf, &["required"]).contains("not found"));
    assert_eq!(cf.get(&["reasons"]).unwrap(), &json!([]));

    r.write("/proc/sys/kernel/osrelease", "6.1.0-25-amd64");
    let cf = r.inspect();
    assert_eq!(
        reason(&cf, &["kernel", "mismatch"]),
        "no installed kernel found under /boot or /lib/modules"
    );
}

#[test]
fn deleted_libraries_per_process_with_exits_and_junk() {
    let r = new_root();
    r.write("/proc/sys/kernel/osrelease", "6.1.0-25-amd64")
        .touch("/boot/vmlinuz-6.1.0-25-amd64", 1)
        .write("/proc/1401/cmdline", "/usr/sbin/sshd\0-D\0")
        .write("/proc/1401/cgroup", "0::/system.slice/ssh.service\n")
        .write(
            "/proc/1401/maps",
            "7f00-7f01 r-xp 00000000 08:01 5    /usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)\n\
             junk junk\n\
             7f01-7f02 r-xp 00000000 08:01 6    /usr/lib/x86_64-linux-gnu/libc.so.6\n",
        )
        // Exited between the /proc listing and the maps read.
        .write("/proc/1402/cmdline", "/usr/bin/sleep\x001\0")
        // A kernel thread: no command line, never scanned.
        .write("/proc/1403/cmdline", "")
        .write(
            "/proc/1403/maps",
            "7f00-7f01 r-xp 00000000 08:01 5 /lib/libz.so.1 (deleted)\n",
        );
    let cf = r.inspect();
    assert_eq!(
        cf.get(&["deletedLibraries"]).unwrap(),
        &json!({"processes": [{"pid": 1401, "program": "sshd", "unit": "ssh.service",
                               "libraries": ["/usr/lib/x86_64-linux-gnu/libssl.so.3"]}],
                "services": ["ssh.service"],
                "count": 1, "scanned": 1, "exited": 1, "notScanned": [], "notScannedCount": 0, "junkLines": 1})
    );
    assert_eq!(cf.get(&["restartRequired"]).unwrap(), &json!(true));
    // A library restart is not a reboot.
    assert_eq!(cf.get(&["required"]).unwrap(), &json!(false));
    assert_eq!(
        cf.get(&["reasons"]).unwrap(),
        &json!([{"reason": "ServicesNeedRestart", "action": "restart", "processes": 1,
                 "services": ["ssh.service"]}])
    );
}

#[test]
fn unreadable_maps_make_a_zero_count_unknown() {
    let r = new_root();
    r.write("/proc/1410/cmdline", "/usr/bin/x\0");
    // A FIFO where maps should be: never opened, reported with its path.
    nix::unistd::mkfifo(
        &r.path("/proc/1410/maps"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let cf = r.inspect();
    let why = reason(&cf, &["deletedLibraries", "count"]);
    assert!(
        why.contains("1 processes could not be scanned") && why.contains("/proc/1410/maps"),
        "{why}"
    );
}

#[test]
fn live_host_is_read() {
    let host = HostRoot::new("/").unwrap();
    let procs = ProcessTable::scan(&host);
    let cf = inspect(&Context {
        host: &host,
        procs: &procs,
        options: &Options::default(),
    });
    let scanned = cf
        .get(&["deletedLibraries", "scanned"])
        .unwrap()
        .as_u64()
        .unwrap();
    assert!(scanned >= 1, "at least this test process is scanned");
    let running = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(cf.get(&["kernel", "running"]).unwrap(), running.trim());
}

/// The `needs-restarting -r` criteria: a core library or daemon whose file changed after the
/// boot time asks for a reboot, dated by its install (change) time.
#[test]
fn core_libraries_replaced_since_boot() {
    let r = new_root();
    r.write("/proc/sys/kernel/osrelease", "6.6.57.1-2.azl3")
        .touch("/boot/vmlinuz-6.6.57.1-2.azl3", 1)
        .write("/usr/lib64/libc.so.6", "elf")
        .write("/usr/lib64/libssl.so.3", "elf")
        .write("/usr/lib/systemd/systemd", "elf");
    // /lib64 is the same directory: each file is judged once.
    symlink("usr/lib64", r.path("/lib64")).unwrap();
    let libc = r.ctime("/usr/lib64/libc.so.6");

    // Booted after the files were installed: nothing replaced.
    r.write("/proc/stat", format!("cpu 1 2 3\nbtime {}\n", libc + 100));
    let cf = r.inspect();
    assert_eq!(cf.get(&["required"]).unwrap(), &json!(false));
    assert_eq!(cf.get(&["coreReplaced", "count"]).unwrap(), &json!(0));
    assert_eq!(cf.get(&["coreReplaced", "checked"]).unwrap(), &json!(3));

    // Booted before: all three were replaced while the node ran.
    r.write("/proc/stat", format!("btime {}\n", libc - 3600));
    let cf = r.inspect();
    assert_eq!(cf.get(&["required"]).unwrap(), &json!(true));
    let first = &cf.get(&["reasons"]).unwrap()[0];
    assert_eq!(first["reason"], json!("LibrariesReplaced"));
    assert_eq!(first["action"], json!("reboot"));
    let mut packages: Vec<&str> = first["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    packages.sort();
    assert_eq!(packages, ["glibc", "openssl", "systemd"]);
    assert_eq!(first["files"].as_array().unwrap().len(), 3);
    assert!(first["sinceUnix"].as_i64().unwrap() >= libc - 1);
    assert_eq!(cf.get(&["pendingSinceUnix"]).unwrap(), &first["sinceUnix"]);

    // Core files but no boot time: cannot tell, never "no reboot".
    std::fs::remove_file(r.path("/proc/stat")).unwrap();
    let cf = r.inspect();
    assert!(reason(&cf, &["required"]).contains("boot time unknown"));
    r.write("/proc/stat", "btime yesterday\n");
    let cf = r.inspect();
    assert!(reason(&cf, &["coreReplaced", "count"]).contains("btime is not a time"));
}

#[test]
fn live_patch_in_transition_is_pending_without_requiring_a_reboot() {
    let r = new_root();
    r.write("/proc/sys/kernel/osrelease", "5.15.0-1061-azure")
        .touch("/boot/vmlinuz-5.15.0-1061-azure", 1);
    let cf = r.inspect();
    assert_eq!(
        cf.get(&["livePatch"]).unwrap(),
        &json!({"patches": [], "pending": false})
    );

    r.write("/sys/kernel/livepatch/lp_5_15_0_1061_1/enabled", "1\n")
        .write("/sys/kernel/livepatch/lp_5_15_0_1061_1/transition", "0\n")
        .write("/sys/kernel/livepatch/kpatch_cve/enabled", "1\n")
        .write("/sys/kernel/livepatch/kpatch_cve/transition", "1\n");
    let cf = r.inspect();
    assert_eq!(cf.get(&["livePatch", "pending"]).unwrap(), &json!(true));
    assert_eq!(
        cf.get(&["livePatch", "patches"]).unwrap(),
        &json!([{"name": "kpatch_cve", "enabled": true, "transition": true},
                {"name": "lp_5_15_0_1061_1", "enabled": true, "transition": false}])
    );
    assert_eq!(
        cf.get(&["reasons"]).unwrap(),
        &json!([{"reason": "LivePatchPending", "action": "wait", "patches": ["kpatch_cve"],
                 "file": "/sys/kernel/livepatch"}])
    );
    assert_eq!(cf.get(&["required"]).unwrap(), &json!(false));

    // Garbage in an attribute: that patch's state is unknown, and so is "pending".
    r.write("/sys/kernel/livepatch/kpatch_cve/transition", "maybe");
    let cf = r.inspect();
    assert!(reason(&cf, &["livePatch", "pending"]).contains("not 0 or 1"));
}
