//! Integration tests for the sysctl inspector.

use std::os::unix::fs::symlink;
use std::path::Path;

use serde_json::{Value, json};

use crate::util::{fixture_host, inspect};

fn facts(root: &Path) -> Value {
    inspect("sysctl", root)["sysctl"]["facts"].clone()
}

#[test]
fn clean_fixtures_have_no_mismatch_and_no_parse_errors() {
    for name in ["aks-ubuntu-clean", "kubeadm", "azurelinux-kernel-mismatch"] {
        let f = facts(&fixture_host(name));
        assert_eq!(f["mismatch"], json!({}), "{name}");
        assert_eq!(f["parseErrors"], json!([]), "{name}");
        assert_eq!(f["ignored"], json!([]), "{name}");
        assert_eq!(f["runtime"]["net.ipv4.ip_forward"], json!("1"), "{name}");
        assert_eq!(
            f["persisted"]["net.ipv4.ip_forward"]["value"],
            json!("1"),
            "{name}"
        );
    }
}

#[test]
fn ubuntu_layout_is_resolved_like_systemd_sysctl() {
    let f = facts(&fixture_host("aks-ubuntu-clean"));
    // 99-sysctl.conf is Debian's link to /etc/sysctl.conf, which is read last instead.
    assert_eq!(
        f["files"],
        json!([
            "/etc/sysctl.d/10-network-security.conf",
            "/usr/lib/sysctl.d/50-default.conf",
            "/etc/sysctl.d/99-force-bridge-forward.conf",
            "/etc/sysctl.conf"
        ])
    );
    // The glob in systemd's 50-default.conf reaches every interface but the excluded "all".
    assert_eq!(
        f["persisted"]["net.ipv4.conf.eth0.rp_filter"]["pattern"],
        json!("net.ipv4.conf.*.rp_filter")
    );
    assert_eq!(f["persisted"]["net.ipv4.conf.all.rp_filter"], Value::Null);
    assert_eq!(
        f["persisted"]["net.ipv4.conf.default.rp_filter"],
        json!({"value": "2", "file": "/etc/sysctl.d/10-network-security.conf", "line": 3})
    );
}

#[test]
fn drifted_fixture_reports_exactly_the_planted_mismatches() {
    let out = inspect("sysctl", &fixture_host("aks-ubuntu-drifted"));
    let f = &out["sysctl"]["facts"];
    assert_eq!(f["runtime"]["net.ipv4.ip_forward"], json!("0"));
    assert_eq!(
        f["mismatch"],
        json!({
            "net.ipv4.ip_forward": {"runtime": "0", "persisted": "1",
                "file": "/etc/sysctl.d/99-force-bridge-forward.conf", "line": 1},
            "vm.max_map_count": {"runtime": "65530", "persisted": "262144",
                "file": "/etc/sysctl.d/99-custom.conf", "line": 2}
        })
    );
    assert_eq!(
        out["sysctl"]["evidence"]["mismatch[\"vm.max_map_count\"]"],
        json!({"file": "/proc/sys/vm/max_map_count", "source": "runtime"})
    );
}

#[test]
fn azure_linux_indented_lines_are_parsed() {
    let f = facts(&fixture_host("azurelinux-kernel-mismatch"));
    assert_eq!(
        f["persisted"]["net.bridge.bridge-nf-call-iptables"],
        json!({"value": "1", "file": "/etc/sysctl.d/99-force-bridge-forward.conf", "line": 4})
    );
}

#[test]
fn hostile_configuration_completes_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let w = |p: &str, s: &[u8]| {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    };
    w("proc/sys/vm/swappiness", b"60\n");
    w(
        "etc/sysctl.d/10-ok.conf",
        b"vm.swappiness = 10\nthis is not valid\n",
    );
    {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"20-caf\xe9.conf");
        std::fs::write(root.join("etc/sysctl.d").join(name), "vm.swappiness = 60\n").unwrap();
    }
    nix::unistd::mkfifo(
        &root.join("etc/sysctl.d/30-fifo.conf"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("etc/sysctl.d/40-dir.conf")).unwrap();
    symlink("50-loop.conf", root.join("etc/sysctl.d/50-loop.conf")).unwrap();
    let f = facts(root);
    assert_eq!(f["parseErrors"][0]["line"], json!(2));
    assert_eq!(
        f["parseErrors"][0]["file"],
        json!("/etc/sysctl.d/10-ok.conf")
    );
    assert_eq!(
        f["ignored"].as_array().unwrap().len(),
        3,
        "{}",
        f["ignored"]
    );
    // The non-UTF-8 name sorts after 10-ok.conf and wins.
    assert_eq!(f["persisted"]["vm.swappiness"]["value"], json!("60"));
    assert_eq!(f["mismatch"], json!({}));

    // A 2 GB sparse sysctl.conf: refused unread, and the persisted view is unknown, naming it.
    let conf = std::fs::File::create(root.join("etc/sysctl.conf")).unwrap();
    conf.set_len(2 << 30).unwrap();
    let f = facts(root);
    let why = f["persisted"]["$unknown"].as_str().unwrap();
    assert!(
        why.contains("/etc/sysctl.conf") && why.contains("read limit"),
        "{why}"
    );
}

#[test]
fn live_host_completes_and_reads_proc_sys() {
    let f = facts(Path::new("/"));
    for (key, value) in f["runtime"].as_object().unwrap() {
        let Some(v) = value.as_str() else { continue };
        let path = format!(
            "/proc/sys/{}",
            key.replace('.', "\u{0}")
                .replace('/', ".")
                .replace('\u{0}', "/")
        );
        if let Ok(raw) = std::fs::read_to_string(&path) {
            assert_eq!(
                raw.split_whitespace().collect::<Vec<_>>().join(" "),
                v,
                "{key}"
            );
        }
    }
}
