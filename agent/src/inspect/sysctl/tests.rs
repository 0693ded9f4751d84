use super::*;
use crate::inspect::{Options, ProcessTable};
use std::os::unix::fs::symlink;

use crate::inspect::test_root::TestRoot as Root;

trait Inspect {
    fn inspect(&self, keys: &[&str]) -> ComponentFacts;
}

impl Inspect for Root {
    fn inspect(&self, keys: &[&str]) -> ComponentFacts {
        let options = Options {
            sysctl_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            ..Options::default()
        };
        self.run(inspect, false, &options)
    }
}

fn get<'a>(cf: &'a ComponentFacts, path: &[&str]) -> Option<&'a Value> {
    cf.get(path)
}

fn unknown_reason(v: Option<&Value>) -> Option<&str> {
    v.and_then(crate::facts::unknown_reason)
}

#[test]
fn names_in_both_spellings() {
    let n = SysctlName::parse("net.ipv4.ip_forward").unwrap();
    assert_eq!(n.path, "net/ipv4/ip_forward");
    assert_eq!(n.dotted, "net.ipv4.ip_forward");
    let v = SysctlName::parse("net/ipv4/conf/eth0.100/forwarding").unwrap();
    assert_eq!(v.path, "net/ipv4/conf/eth0.100/forwarding");
    assert_eq!(v.dotted, "net.ipv4.conf.eth0/100.forwarding");
    assert_eq!(
        SysctlName::parse("net.ipv4.conf.eth0/100.forwarding").unwrap(),
        v
    );
    assert_eq!(
        v.proc_path(),
        Path::new("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
    );
    for bad in [
        "",
        "net..ipv4",
        "net/../../etc/shadow",
        "a.b c",
        ".net",
        "net/",
    ] {
        assert!(SysctlName::parse(bad).is_err(), "{bad:?}");
    }
    assert!(
        SysctlName::parse("net.ipv4.conf.*.rp_filter")
            .unwrap()
            .is_glob()
    );
}

#[test]
fn line_syntax() {
    let text = "# comment\n; also\n\n  net.ipv4.ip_forward = 1  \n-net.bridge.bridge-nf-call-iptables=1\n\
                -net.ipv4.conf.all.rp_filter\nkernel.printk = 4\t4  1 7\nno equals sign\n= 5\nnet.ipv4.conf.*.rp_filter = 2\n-net.*.x\n";
    let (mut a, mut e) = (Vec::new(), Vec::new());
    parse_conf(text, "/etc/sysctl.d/x.conf", &mut a, &mut e);
    let got: Vec<(&str, Option<&str>, usize)> = a
        .iter()
        .map(|a| (a.name.dotted.as_str(), a.value.as_deref(), a.line))
        .collect();
    assert_eq!(
        got,
        vec![
            ("net.ipv4.ip_forward", Some("1"), 4),
            ("net.bridge.bridge-nf-call-iptables", Some("1"), 5),
            ("net.ipv4.conf.all.rp_filter", None, 6),
            ("kernel.printk", Some("4\t4  1 7"), 7),
            ("net.ipv4.conf.*.rp_filter", Some("2"), 10),
        ]
    );
    let lines: Vec<usize> = e.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![8, 9, 11]);
    assert!(e[0].message.contains("not an assignment"), "{:?}", e[0]);
}

#[test]
fn glob_matching() {
    assert!(glob_match("*", "eth0"));
    assert!(glob_match("eth*", "eth0"));
    assert!(!glob_match("eth*", "lo"));
    assert!(glob_match("e?h[0-9]", "eth7"));
    assert!(!glob_match("eth[!0-9]", "eth7"));
    assert!(glob_match("eth[^0-9]", "ethx"));
    assert!(glob_match("*a*b", "xxaxxb"));
    assert!(!glob_match("*a*b", "xxaxxbc"));
    assert!(glob_match("[]]", "]"));
    assert!(glob_match("a[", "a["));
    assert!(glob_match("", ""));
    assert!(!glob_match("", "a"));
}

#[test]
fn precedence_across_directories_and_sysctl_conf_last() {
    let r = Root::new();
    r.write("/proc/sys/net/ipv4/ip_forward", "1\n")
        .write("/proc/sys/vm/max_map_count", "65530\n")
        .write("/proc/sys/kernel/panic", "10\n")
        .write("/proc/sys/kernel/printk", "4\t4\t1\t7\n")
        // Same name in /usr/lib is hidden by /etc.
        .write("/usr/lib/sysctl.d/50-x.conf", "kernel.panic = 0\n")
        .write("/etc/sysctl.d/50-x.conf", "kernel.panic = 10\n")
        // Later file names override earlier ones, wherever they live.
        .write(
            "/etc/sysctl.d/10-a.conf",
            "vm.max_map_count = 1\nkernel.printk = 4 4 1 7\n",
        )
        .write("/usr/lib/sysctl.d/90-b.conf", "vm.max_map_count = 262144\n")
        .write("/run/sysctl.d/20-c.conf", "net.ipv4.ip_forward = 0\n")
        // ...and sysctl.conf is applied last.
        .write("/etc/sysctl.conf", "# procps\nnet.ipv4.ip_forward = 1\n");
    // Debian's link to sysctl.conf is not read twice.
    symlink("../sysctl.conf", r.path("/etc/sysctl.d/99-sysctl.conf")).unwrap();
    let cf = r.inspect(&[]);
    assert_eq!(
        get(&cf, &["persisted", "kernel.panic"]),
        Some(&json!({"value": "10", "file": "/etc/sysctl.d/50-x.conf", "line": 1}))
    );
    assert_eq!(
        get(&cf, &["persisted", "net.ipv4.ip_forward"]),
        Some(&json!({"value": "1", "file": "/etc/sysctl.conf", "line": 2}))
    );
    assert_eq!(
        get(&cf, &["mismatch"]),
        Some(
            &json!({"vm.max_map_count": {"runtime": "65530", "persisted": "262144",
            "file": "/usr/lib/sysctl.d/90-b.conf", "line": 1}})
        )
    );
    assert_eq!(
        get(&cf, &["runtime", "kernel.printk"]),
        Some(&json!("4 4 1 7"))
    );
    assert_eq!(
        get(&cf, &["files"]),
        Some(&json!([
            "/etc/sysctl.d/10-a.conf",
            "/run/sysctl.d/20-c.conf",
            "/etc/sysctl.d/50-x.conf",
            "/usr/lib/sysctl.d/90-b.conf",
            "/etc/sysctl.conf"
        ]))
    );
    let ev = cf.evidence.get("runtime[\"vm.max_map_count\"]").unwrap();
    assert_eq!(ev.file.as_deref(), Some("/proc/sys/vm/max_map_count"));
    assert_eq!(ev.source.as_deref(), Some("runtime"));
}

#[test]
fn same_value_keeps_the_first_assignment_and_masking_hides_a_name() {
    let r = Root::new();
    r.write("/proc/sys/kernel/panic", "10")
        .write("/etc/sysctl.d/10-a.conf", "kernel.panic = 10\n")
        .write("/etc/sysctl.d/20-b.conf", "kernel.panic=10\n")
        .write("/usr/lib/sysctl.d/30-vendor.conf", "kernel.panic = 99\n");
    symlink("/dev/null", r.path("/etc/sysctl.d/30-vendor.conf")).unwrap();
    let cf = r.inspect(&[]);
    assert_eq!(
        get(&cf, &["persisted", "kernel.panic", "file"]),
        Some(&json!("/etc/sysctl.d/10-a.conf"))
    );
    assert_eq!(
        get(&cf, &["masked"]),
        Some(&json!(["/etc/sysctl.d/30-vendor.conf"]))
    );
    assert_eq!(get(&cf, &["mismatch"]), Some(&json!({})));
}

#[test]
fn globs_expand_against_proc_sys_and_yield_to_explicit_keys() {
    let r = Root::new();
    for (i, v) in [("all", "0"), ("default", "2"), ("eth0", "2"), ("lo", "0")] {
        r.write(&format!("/proc/sys/net/ipv4/conf/{i}/rp_filter"), v);
    }
    r.write("/proc/sys/net/ipv4/conf/eth0.100/forwarding", "1");
    r.write(
        "/usr/lib/sysctl.d/50-default.conf",
        "net.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.all.rp_filter\n",
    )
    .write(
        "/etc/sysctl.d/60-lo.conf",
        "net.ipv4.conf.lo.rp_filter = 0\n",
    )
    .write(
        "/etc/sysctl.d/70-vlan.conf",
        "net/ipv4/conf/eth0.100/forwarding = 1\n",
    );
    let cf = r.inspect(&[]);
    let persisted = get(&cf, &["persisted"]).unwrap().as_object().unwrap();
    let keys: Vec<&str> = persisted.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec![
            "net.ipv4.conf.default.rp_filter",
            "net.ipv4.conf.eth0.rp_filter",
            "net.ipv4.conf.eth0/100.forwarding",
            "net.ipv4.conf.lo.rp_filter",
        ]
    );
    assert_eq!(
        persisted["net.ipv4.conf.eth0.rp_filter"]["pattern"],
        json!("net.ipv4.conf.*.rp_filter")
    );
    assert_eq!(persisted["net.ipv4.conf.lo.rp_filter"]["value"], json!("0"));
    assert_eq!(
        get(&cf, &["runtime", "net.ipv4.conf.eth0/100.forwarding"]),
        Some(&json!("1"))
    );
    assert_eq!(get(&cf, &["mismatch"]), Some(&json!({})));
}

#[test]
fn baseline_keys_absent_present_and_unreadable() {
    let r = Root::new();
    r.write("/proc/sys/net/ipv4/ip_forward", "0\n");
    let cf = r.inspect(&[
        "net.ipv4.ip_forward",
        "net.bridge.bridge-nf-call-iptables",
        "bad..key",
    ]);
    assert_eq!(
        get(&cf, &["runtime", "net.ipv4.ip_forward"]),
        Some(&json!("0"))
    );
    // The kernel does not have it: absent, not unknown.
    assert_eq!(
        get(&cf, &["runtime", "net.bridge.bridge-nf-call-iptables"]),
        None
    );
    assert!(
        unknown_reason(get(&cf, &["runtime", "bad..key"]))
            .unwrap()
            .contains("bad..key")
    );
}

#[test]
fn write_only_key_on_the_live_host_is_unknown_with_the_path() {
    // vm.compact_memory is mode 0200: even root gets EACCES reading it.
    let host = HostRoot::new("/").unwrap();
    let name = SysctlName::parse("vm.compact_memory").unwrap();
    if host.stat(&name.proc_path()).is_err() {
        return;
    }
    match read_runtime(&host, &name) {
        Runtime::Unknown(r) => assert!(r.contains("/proc/sys/vm/compact_memory"), "{r}"),
        other => panic!("expected unknown, got {other:?}"),
    }
}

#[test]
fn unreadable_runtime_makes_the_mismatch_unknown() {
    let r = Root::new();
    r.write("/etc/sysctl.d/10.conf", "net.ipv4.ip_forward = 1\n");
    // A directory where the value should be: exists but cannot be read as a value.
    std::fs::create_dir_all(r.path("/proc/sys/net/ipv4/ip_forward")).unwrap();
    let cf = r.inspect(&[]);
    let reason = unknown_reason(get(&cf, &["mismatch", "net.ipv4.ip_forward"])).unwrap();
    assert!(reason.contains("/proc/sys/net/ipv4/ip_forward"), "{reason}");
}

#[test]
fn fifo_directory_loop_and_dangling_entries_are_ignored_like_systemd_does() {
    let r = Root::new();
    r.write("/proc/sys/kernel/panic", "10")
        .write("/etc/sysctl.d/10-good.conf", "kernel.panic = 10\n");
    nix::unistd::mkfifo(
        &r.path("/etc/sysctl.d/20-fifo.conf"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    std::fs::create_dir_all(r.path("/etc/sysctl.d/30-dir.conf")).unwrap();
    symlink("40-loop.conf", r.path("/etc/sysctl.d/40-loop.conf")).unwrap();
    symlink("/nowhere", r.path("/etc/sysctl.d/50-dangling.conf")).unwrap();
    // The directory named like a config must not hide the real file of that name below.
    r.write("/usr/lib/sysctl.d/30-dir.conf", "vm.swappiness = 10\n");
    // Must not block on the FIFO (a blocked open would hang the test).
    let cf = r.inspect(&[]);
    let ignored = get(&cf, &["ignored"]).unwrap().as_array().unwrap();
    let files: Vec<&str> = ignored
        .iter()
        .map(|i| i["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        vec![
            "/etc/sysctl.d/20-fifo.conf",
            "/etc/sysctl.d/30-dir.conf",
            "/etc/sysctl.d/40-loop.conf",
            "/etc/sysctl.d/50-dangling.conf"
        ]
    );
    let reasons: Vec<&str> = ignored
        .iter()
        .map(|i| i["reason"].as_str().unwrap())
        .collect();
    assert!(reasons[0].contains("FIFO"), "{}", reasons[0]);
    assert!(reasons[1].contains("directory"), "{}", reasons[1]);
    assert!(reasons[2].contains("symbolic links"), "{}", reasons[2]);
    assert_eq!(
        get(&cf, &["persisted", "kernel.panic", "value"]),
        Some(&json!("10"))
    );
    assert_eq!(
        get(&cf, &["persisted", "vm.swappiness", "file"]),
        Some(&json!("/usr/lib/sysctl.d/30-dir.conf"))
    );
}

#[test]
fn huge_sparse_sysctl_conf_makes_persisted_unknown_naming_it() {
    let r = Root::new();
    r.write("/proc/sys/net/ipv4/ip_forward", "1")
        .write("/etc/sysctl.d/10.conf", "net.ipv4.ip_forward = 1\n");
    let f = std::fs::File::create(r.path("/etc/sysctl.conf")).unwrap();
    f.set_len(2 << 30).unwrap();
    let cf = r.inspect(&[]);
    for part in ["persisted", "mismatch"] {
        let reason = unknown_reason(get(&cf, &[part])).unwrap();
        assert!(
            reason.contains("/etc/sysctl.conf") && reason.contains("read limit"),
            "{reason}"
        );
    }
    // The keys readable files name are still read at runtime.
    assert_eq!(
        get(&cf, &["runtime", "net.ipv4.ip_forward"]),
        Some(&json!("1"))
    );
}

#[test]
fn malformed_lines_are_reported_with_file_and_line_not_fatal() {
    let r = Root::new();
    r.write("/proc/sys/kernel/panic", "10").write(
        "/etc/sysctl.d/10.conf",
        b"kernel.panic = 10\ngarbage line\n\xff\xfe = 1\nnet/../../etc/shadow = x\n".as_slice(),
    );
    let cf = r.inspect(&[]);
    let errs = get(&cf, &["parseErrors"]).unwrap().as_array().unwrap();
    let at: Vec<(String, u64)> = errs
        .iter()
        .map(|e| {
            (
                e["file"].as_str().unwrap().to_owned(),
                e["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        at,
        vec![
            ("/etc/sysctl.d/10.conf".to_owned(), 2),
            ("/etc/sysctl.d/10.conf".to_owned(), 4)
        ]
    );
    // The invalid-UTF-8 key is kept (lossily) as a name the kernel does not have.
    assert_eq!(
        get(&cf, &["persisted", "kernel.panic", "value"]),
        Some(&json!("10"))
    );
}

#[test]
fn non_utf8_file_names_in_sysctl_d_are_read() {
    use std::os::unix::ffi::OsStringExt;
    let r = Root::new();
    r.write("/proc/sys/vm/swappiness", "60");
    std::fs::create_dir_all(r.path("/etc/sysctl.d")).unwrap();
    let name = std::ffi::OsString::from_vec(b"10-caf\xe9.conf".to_vec());
    std::fs::write(r.path("/etc/sysctl.d").join(name), "vm.swappiness = 10\n").unwrap();
    let cf = r.inspect(&[]);
    let m = get(&cf, &["mismatch", "vm.swappiness"]).unwrap();
    assert_eq!(m["runtime"], json!("60"));
    assert!(
        m["file"]
            .as_str()
            .unwrap()
            .starts_with("/etc/sysctl.d/10-caf"),
        "{m}"
    );
}

#[test]
fn sysctl_d_that_is_a_file_is_ignored() {
    let r = Root::new();
    // Nothing can be read from it at boot either.
    r.write("/etc/sysctl.d", "oops");
    let cf = r.inspect(&[]);
    assert_eq!(get(&cf, &["persisted"]), Some(&json!({})));
    let ignored = get(&cf, &["ignored"]).unwrap().as_array().unwrap();
    assert_eq!(ignored[0]["file"], json!("/etc/sysctl.d"));
}

#[test]
fn live_host_completes() {
    let host = HostRoot::new("/").unwrap();
    let procs = ProcessTable::default();
    let options = Options {
        sysctl_keys: [
            "net.ipv4.ip_forward".to_owned(),
            "kernel.osrelease".to_owned(),
        ]
        .into(),
        ..Options::default()
    };
    let cf = inspect(&Context {
        host: &host,
        procs: &procs,
        options: &options,
    });
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(
        get(&cf, &["runtime", "kernel.osrelease"]),
        Some(&json!(release.trim()))
    );
}
