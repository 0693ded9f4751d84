//! Integration tests for the os inspector.

use std::path::Path;

use serde_json::{Value, json};

use crate::util::{fixture_host, inspect};

fn facts(root: &Path) -> Value {
    inspect("os", root)["os"]["facts"].clone()
}

#[test]
fn profile_detection_inputs_per_fixture() {
    for (name, id, aks) in [
        ("aks-ubuntu-clean", "ubuntu", true),
        ("aks-ubuntu-drifted", "ubuntu", true),
        ("azurelinux-kernel-mismatch", "azurelinux", true),
        ("kubeadm", "debian", false),
    ] {
        let f = facts(&fixture_host(name));
        assert_eq!(f["release"]["ID"], json!(id), "{name}");
        let markers = f["aks"]["markers"].as_array().unwrap();
        assert_eq!(!markers.is_empty(), aks, "{name}: {markers:?}");
    }
}

#[test]
fn ubuntu_fixture_facts() {
    let out = inspect("os", &fixture_host("aks-ubuntu-clean"));
    let f = &out["os"]["facts"];
    // /etc/os-release is Ubuntu's relative symlink into /usr/lib.
    assert_eq!(f["release"]["PRETTY_NAME"], json!("Ubuntu 22.04.4 LTS"));
    assert_eq!(f["release"]["VERSION_ID"], json!("22.04"));
    assert_eq!(
        out["os"]["evidence"]["release"]["file"],
        json!("/etc/os-release")
    );
    assert_eq!(f["kernel"]["release"], json!("5.15.0-1061-azure"));
    assert!(
        f["kernel"]["version"]
            .as_str()
            .unwrap()
            .starts_with("Linux version 5.15.0-1061-azure ")
    );
    assert_eq!(f["bootId"], json!("3f0c6f4e-8a51-4a3b-9d0e-2b7c1a9e6d41"));
    assert_eq!(f["uptimeSeconds"], json!(86412.37));
    assert_eq!(f["bootTime"], json!("2024-06-10T06:13:20Z"));
    assert_eq!(f["bootTimeUnix"], json!(1_718_000_000));
    assert_eq!(
        f["aks"]["markers"],
        json!([
            "/opt/azure/vhd-install.complete",
            "/opt/azure/containers",
            "/etc/default/kubelet",
            "/proc/1201/cmdline"
        ])
    );
    assert_eq!(f["azure"]["markers"], json!(["/var/lib/waagent"]));
    // The running kubelet's node labels carry the image version AKS stamped on the node.
    assert_eq!(
        f["nodeImage"]["version"],
        json!("AKSUbuntu-2204gen2containerd-202501.12.0")
    );
    assert_eq!(f["nodeImage"]["buildDate"], json!("2025-01-12"));
}

#[test]
fn azure_linux_release() {
    let f = facts(&fixture_host("azurelinux-kernel-mismatch"));
    assert_eq!(
        f["release"]["PRETTY_NAME"],
        json!("Microsoft Azure Linux 3.0")
    );
    assert_eq!(f["release"]["VERSION"], json!("3.0.20240824"));
    assert_eq!(f["kernel"]["release"], json!("6.6.47.1-1.azl3"));
}

#[test]
fn node_image_from_kubelet_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("etc/default/kubelet");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(
        &p,
        "KUBELET_FLAGS=--node-ip=10.224.0.5\nKUBELET_NODE_LABELS=agentpool=np1,kubernetes.azure.com/node-image-version=AKSUbuntu-2204gen2containerd-202509.23.0\n",
    )
    .unwrap();
    let out = inspect("os", dir.path());
    assert_eq!(
        out["os"]["facts"]["nodeImage"],
        json!({"version": "AKSUbuntu-2204gen2containerd-202509.23.0", "buildDate": "2025-09-23",
               "label": "kubernetes.azure.com/node-image-version"})
    );
    assert_eq!(
        out["os"]["evidence"]["nodeImage"],
        json!({"file": "/etc/default/kubelet", "source": "config"})
    );
    assert_eq!(
        out["os"]["facts"]["aks"]["markers"],
        json!(["/etc/default/kubelet"])
    );
}

#[test]
fn garbage_proc_files_give_unknowns_with_paths() {
    let dir = tempfile::tempdir().unwrap();
    let w = |p: &str, s: &str| {
        let p = dir.path().join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    };
    w("proc/uptime", "garbage");
    w("proc/sys/kernel/random/boot_id", "");
    w("proc/stat", "cpu 1 2\n");
    w("etc/os-release", "ID=\"unterminated\n");
    let f = facts(dir.path());
    assert!(
        f["uptimeSeconds"]["$unknown"]
            .as_str()
            .unwrap()
            .contains("/proc/uptime")
    );
    assert_eq!(
        f["bootId"]["$unknown"],
        json!("/proc/sys/kernel/random/boot_id: empty")
    );
    assert_eq!(
        f["bootTime"]["$unknown"],
        json!("/proc/stat: no btime line")
    );
    assert_eq!(f["release"], json!({}));
    assert_eq!(f["parseErrors"][0]["file"], json!("/etc/os-release"));
}

#[test]
fn live_host_boot_id_matches_proc() {
    let f = facts(Path::new("/"));
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(f["bootId"], json!(boot_id.trim()));
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(f["kernel"]["release"], json!(release.trim()));
}

/// An interactive SSH session on the node (sshd session processes in /proc) fails
/// `os.no-interactive-ssh-sessions` and is listed with its user and terminal.
#[test]
fn an_ssh_session_on_the_node_is_a_finding() {
    let host = crate::util::prepared_host("aks-ubuntu-clean");
    let proc = |pid: u32, ppid: u32, uid: u32, comm: &str, argv: &str| {
        let d = host.path().join(format!("proc/{pid}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("cmdline"), format!("{argv}\0")).unwrap();
        std::fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
        std::fs::write(
            d.join("status"),
            format!("Name:\t{comm}\nState:\tS (sleeping)\nPPid:\t{ppid}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"),
        )
        .unwrap();
    };
    let (_, before) = crate::util::check_json(host.path(), &[]);
    let rule = |r: &serde_json::Value| {
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["rule"] == "os.no-interactive-ssh-sessions")
            .cloned()
            .unwrap()
    };
    assert_eq!(rule(&before)["status"], "pass");
    proc(2500, 1, 0, "sshd", "sshd: alice [priv]");
    proc(2501, 2500, 1000, "sshd", "sshd: alice@pts/3");
    proc(2502, 2501, 1000, "bash", "-bash");
    let (code, after) = crate::util::check_json(host.path(), &[]);
    let f = rule(&after);
    assert_eq!(f["status"], "fail", "{f}");
    assert_eq!(code, 1);
    let sessions = f["actual"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{f}");
    assert_eq!(sessions[0]["user"], "alice");
    assert_eq!(sessions[0]["tty"], "pts/3");
}
