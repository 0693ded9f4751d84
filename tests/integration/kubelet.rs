//! Integration tests for the kubelet inspector: the real binary against the fixture hosts (with
//! the file modes git cannot keep applied from `<fixture>.modes`), the kubelet and kube-proxy
//! rules checked against those facts, and one live test reading a real process's `/proc`.
//!

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{inspect, prepared_host, rule_outcomes, rules_with};

#[test]
fn clean_fixtures_pass_every_kubelet_and_kube_proxy_rule() {
    for host in ["aks-ubuntu-clean", "azurelinux-kernel-mismatch", "kubeadm"] {
        let root = prepared_host(host);
        let outcomes = rule_outcomes(root.path(), &["kubelet", "kube-proxy"]);
        assert!(outcomes.len() >= 20, "{host}: {outcomes:#?}");
        let bad: Vec<_> = outcomes.iter().filter(|o| o.2 != "pass").collect();
        assert!(bad.is_empty(), "{host}: {bad:#?}");
    }
}

#[test]
fn drifted_fixture_fails_exactly_the_planted_drift() {
    let root = prepared_host("aks-ubuntu-drifted");
    let outcomes = rule_outcomes(root.path(), &["kubelet", "kube-proxy"]);
    assert_eq!(
        rules_with(&outcomes, "fail"),
        vec![
            "kube-proxy.metrics-bind-loopback",
            "kubelet.anonymous-auth-disabled",
            "kubelet.no-alpha-feature-gates",
            "kubelet.read-only-port-disabled",
        ],
        "{outcomes:#?}"
    );
    assert!(rules_with(&outcomes, "unknown").is_empty(), "{outcomes:#?}");
}

#[test]
fn aks_fixture_facts() {
    let root = prepared_host("aks-ubuntu-drifted");
    let v = inspect("kubelet", root.path());
    let f = &v["kubelet"]["facts"];
    assert_eq!(f["process"]["pid"], 1201);
    assert_eq!(f["configFile"]["path"], "/etc/default/kubeletconfig.json");
    assert_eq!(f["config"]["readOnlyPort"], 10255);
    assert_eq!(f["config"]["authentication"]["anonymous"]["enabled"], true);
    assert_eq!(f["featureGates"]["EventedPLEG"]["stage"], "alpha");
    assert_eq!(f["featureGates"]["EventedPLEG"]["source"], "flag");
    assert_eq!(
        f["featureGates"]["RotateKubeletServerCertificate"]["source"],
        "config"
    );
    assert_eq!(f["files"]["config"]["mode"], "0600");
    assert!(
        f["flags"]["node-labels"]
            .as_str()
            .is_some_and(|l| l.contains("kubernetes.azure.com/mode=system"))
    );
    let env = &f["environmentFiles"]["/etc/default/kubelet"];
    assert_eq!(env["optional"], false);
    assert_eq!(
        env["flags"]["KUBELET_FLAGS"]["feature-gates"],
        "EventedPLEG=true"
    );
    assert!(
        env["variables"]["KUBELET_NODE_LABELS"]
            .as_str()
            .is_some_and(|l| l.contains("kubernetes.azure.com/agentpool=nodepool1"))
    );
    assert_eq!(
        v["kubelet"]["evidence"]["config.readOnlyPort"]["file"],
        "/etc/default/kubeletconfig.json"
    );
}

#[test]
fn kubeadm_fixture_facts() {
    let root = prepared_host("kubeadm");
    let v = inspect("kubelet", root.path());
    let f = &v["kubelet"]["facts"];
    assert_eq!(
        f["files"]["unit"]["path"],
        "/lib/systemd/system/kubelet.service"
    );
    assert_eq!(f["files"]["dropIns"]["10-kubeadm.conf"]["mode"], "0600");
    assert_eq!(
        f["files"]["kubeconfig"]["path"],
        "/etc/kubernetes/kubelet.conf"
    );
    assert_eq!(f["files"]["clientCA"]["path"], "/etc/kubernetes/pki/ca.crt");
    // kubeadm writes `streamingConnectionIdleTimeout: 0s`; the kubelet defaults it.
    assert_eq!(f["config"]["streamingConnectionIdleTimeout"], "4h0m0s");
    assert_eq!(f["config"]["authorization"]["mode"], "Webhook");
    assert_eq!(
        f["environmentFiles"]["/var/lib/kubelet/kubeadm-flags.env"]["flags"]["KUBELET_KUBEADM_ARGS"]
            ["pod-infra-container-image"],
        "registry.k8s.io/pause:3.10"
    );
    assert_eq!(
        f["unitEnvironment"]["KUBELET_CONFIG_ARGS"],
        "--config=/var/lib/kubelet/config.yaml"
    );
}

/// Kills and reaps the fake kubelet however the test ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn live_process_is_read_from_proc() {
    // A copy of /bin/sh named `kubelet`, blocked in the `read` builtin (no child process to
    // leak), with kubelet flags after its script: argv is
    // [.../kubelet, -c, "read x", --config=config.yaml, ...], which the kubelet flag parser
    // reads as an unknown `-c` flag followed by the real ones.
    let tmp = tempfile::Builder::new()
        .prefix("live-kubelet")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir");
    let bin = tmp.path().join("kubelet");
    fs::copy("/bin/sh", &bin).expect("copy /bin/sh");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod");
    let cwd = tmp.path().join("work");
    fs::create_dir(&cwd).expect("mkdir");
    fs::write(
        cwd.join("config.yaml"),
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nreadOnlyPort: 10255\nfeatureGates:\n  KubeletTracing: true\n",
    )
    .expect("config");
    let child = Command::new(&bin)
        .args([
            "-c",
            "read x",
            "--config=config.yaml",
            "--read-only-port=0",
            "--feature-gates=EventedPLEG=true",
        ])
        .current_dir(&cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fake kubelet");
    let mut guard = Guard(child);
    let pid = guard.0.id();
    // Wait for the exec to show in /proc.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("--feature-gates"))
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "the fake kubelet did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    let v = inspect("kubelet", Path::new("/"));
    let f = &v["kubelet"]["facts"];
    let pids: Vec<u64> = f["process"]["pids"]
        .as_array()
        .expect("pids")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert!(pids.contains(&u64::from(pid)), "{pids:?} lacks {pid}");
    if f["process"]["pid"] != pid {
        // Another kubelet (a real one) started earlier and is the one inspected.
        eprintln!(
            "another kubelet is inspected ({}); skipping the merge checks",
            f["process"]["pid"]
        );
    } else {
        let config_path = cwd.join("config.yaml");
        assert_eq!(
            f["configFile"]["path"],
            config_path.to_str().expect("utf-8")
        );
        assert_eq!(
            f["config"]["readOnlyPort"], 0,
            "the flag overrides the file"
        );
        assert_eq!(
            v["kubelet"]["evidence"]["config.readOnlyPort"]["source"],
            "flag"
        );
        assert_eq!(f["featureGates"]["EventedPLEG"]["source"], "flag");
        assert_eq!(f["featureGates"]["KubeletTracing"]["source"], "config");
        assert_eq!(f["files"]["config"]["exists"], true);
    }
    if let Some(stdin) = guard.0.stdin.as_mut() {
        let _ = stdin.write_all(b"\n");
    }
    drop(guard);
}
