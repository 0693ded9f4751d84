//! The hostile host tree: every bad input the foundation must survive, built at run time
//! (git cannot hold FIFOs, sockets, loops or 2 GB files). `check` and `inspect` must finish,
//! name each bad path in an `unknown` reason, and never read outside the root.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::util::{check_json, nodedrift, run_bounded, with_status};

/// Planted outside the root; no output may ever contain it.
const OUTSIDE_MARKER: &str = "OUTSIDE-THE-ROOT-7f3a";

struct Hostile {
    _outer: tempfile::TempDir,
    root: PathBuf,
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn fifo(root: &Path, rel: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

fn link(root: &Path, rel: &str, target: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, p).unwrap();
}

fn hostile() -> Hostile {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("host");
    let outside = outer.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    for name in [
        "config.yaml",
        "kubelet.conf",
        "secret",
        "config.toml",
        "sysctl.conf",
    ] {
        std::fs::write(outside.join(name), format!("{OUTSIDE_MARKER}: 1\n")).unwrap();
    }
    let out = outside.to_str().unwrap();

    // kubelet: config is a directory, kubeconfig an absolute symlink pointing outside the root,
    // a repeated flag, and a 2 GB environment file.
    write(
        &root,
        "proc/1201/cmdline",
        b"/usr/bin/kubelet\0--config=/var/lib/kubelet/config.yaml\0--kubeconfig=/etc/kubernetes/kubelet.conf\0--read-only-port=0\0--read-only-port=10255\0",
    );
    write(&root, "proc/1201/comm", b"kubelet\n");
    link(&root, "proc/1201/cwd", "/");
    std::fs::create_dir_all(root.join("var/lib/kubelet/config.yaml")).unwrap();
    link(
        &root,
        "etc/kubernetes/kubelet.conf",
        &format!("{out}/kubelet.conf"),
    );
    write(
        &root,
        "etc/systemd/system/kubelet.service",
        b"[Service]\nEnvironmentFile=/etc/default/kubelet\nExecStart=/usr/bin/kubelet $KUBELET_FLAGS\n",
    );
    std::fs::create_dir_all(root.join("etc/default")).unwrap();
    std::fs::File::create(root.join("etc/default/kubelet"))
        .unwrap()
        .set_len(2 << 30)
        .unwrap();

    // containerd: a FIFO named config.toml (a blocking open would hang forever).
    write(
        &root,
        "proc/1101/cmdline",
        b"/usr/bin/containerd\0--config\0/etc/containerd/config.toml\0",
    );
    write(&root, "proc/1101/comm", b"containerd\n");
    link(&root, "proc/1101/cwd", "/");
    fifo(&root, "etc/containerd/config.toml");

    // kube-proxy: its config is a symlink loop; its kubeconfig escapes with `..`.
    write(
        &root,
        "proc/1301/cmdline",
        b"kube-proxy\0--config=/var/lib/kube-proxy/config.conf\0--kubeconfig=/../../../../outside/kubelet.conf\0",
    );
    link(&root, "proc/1301/cwd", "/");
    link(&root, "var/lib/kube-proxy/config.conf", "loop-b");
    link(&root, "var/lib/kube-proxy/loop-b", "config.conf");

    // A process with a truncated command line and no comm; a pid directory with nothing in it
    // (a process that exited mid-scan); garbage in the files /proc always has.
    write(&root, "proc/1402/cmdline", b"/usr/bin/kube");
    std::fs::create_dir_all(root.join("proc/1403")).unwrap();
    write(&root, "proc/uptime", b"garbage\n");
    write(&root, "proc/stat", b"\xff\xfe not a stat file\n");
    write(&root, "proc/sys/kernel/random/boot_id", b"");
    write(&root, "proc/sys/net/ipv4/ip_forward", b"1\n");
    write(
        &root,
        "etc/os-release",
        b"ID=\"unterminated\nVERSION_ID=\xff\xfe\n",
    );

    // sysctl.d: a FIFO, a loop, a directory, a non-UTF-8 name, a 2 GB file, an escape.
    fifo(&root, "etc/sysctl.d/10-fifo.conf");
    link(&root, "etc/sysctl.d/20-loop.conf", "20-loop.conf");
    std::fs::create_dir_all(root.join("etc/sysctl.d/30-dir.conf")).unwrap();
    std::fs::write(
        root.join("etc/sysctl.d")
            .join(OsStr::from_bytes(b"40-caf\xe9.conf")),
        "net.ipv4.ip_forward = 1\n",
    )
    .unwrap();
    std::fs::File::create(root.join("etc/sysctl.d/50-huge.conf"))
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    link(&root, "etc/sysctl.conf", &format!("{out}/sysctl.conf"));

    // Reboot markers behind an absolute /var/run -> /run symlink; the package list is a FIFO.
    link(&root, "var/run", "/run");
    write(
        &root,
        "run/reboot-required",
        b"*** System restart required ***\n",
    );
    fifo(&root, "run/reboot-required.pkgs");

    Hostile {
        _outer: outer,
        root,
    }
}

#[test]
fn check_completes_and_reports_each_bad_input_as_unknown() {
    let h = hostile();
    let (code, report) = check_json(&h.root, &["--profile", "generic"]);
    assert!(code == 1 || code == 3, "exit {code}: {report:#}");
    let text = report.to_string();
    assert!(
        !text.contains(OUTSIDE_MARKER),
        "read outside the root: {text}"
    );
    let reasons: Vec<String> = with_status(&report, "unknown")
        .iter()
        .map(|f| f["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    let all = reasons.join("\n");
    for needle in [
        "/var/lib/kubelet/config.yaml",
        "/etc/containerd/config.toml",
        "/var/lib/kube-proxy/config.conf",
    ] {
        assert!(all.contains(needle), "no unknown names {needle}:\n{all}");
    }
}

#[test]
fn inspect_names_every_bad_path_and_never_reads_outside() {
    let h = hostile();
    let out = run_bounded(
        nodedrift().arg("inspect").arg("--host-root").arg(&h.root),
        60,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains(OUTSIDE_MARKER), "read outside the root");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kubelet = facts["kubelet"].to_string();
    assert!(kubelet.contains("is a directory"), "{kubelet}");
    assert!(
        kubelet.contains("read-only-port"),
        "repeated flag is reported: {kubelet}"
    );
    let containerd = facts["containerd"].to_string();
    assert!(containerd.contains("FIFO"), "{containerd}");
    let proxy = facts["kube-proxy"].to_string();
    assert!(proxy.contains("symbolic links"), "{proxy}");
    let sysctl = facts["sysctl"].to_string();
    for needle in [
        "10-fifo.conf",
        "20-loop.conf",
        "30-dir.conf",
        "50-huge.conf",
    ] {
        assert!(
            sysctl.contains(needle),
            "sysctl facts do not mention {needle}: {sysctl}"
        );
    }
}
