//! Integration tests for the kube-proxy inspector: the real binary against the fixture hosts.

use std::fs;

use crate::util::inspect;
use crate::util::prepared_host;

#[test]
fn aks_kube_proxy_without_config_uses_its_flags() {
    let root = prepared_host("aks-ubuntu-clean");
    let v = inspect("kube-proxy", root.path());
    let f = &v["kube-proxy"]["facts"];
    assert_eq!(f["running"], true);
    assert_eq!(f["process"]["pid"], 1301);
    assert_eq!(f["config"]["metricsBindAddress"], "127.0.0.1:10249");
    assert_eq!(f["config"]["conntrack"]["maxPerCore"], 0);
    assert_eq!(f["config"]["mode"], "");
    assert_eq!(f["effectiveMode"], "iptables");
    assert_eq!(
        f["files"]["kubeconfig"]["path"],
        "/var/lib/kubelet/kubeconfig"
    );
    assert_eq!(f["files"]["kubeconfig"]["mode"], "0600");
    assert_eq!(
        v["kube-proxy"]["evidence"]["config.metricsBindAddress"]["source"],
        "flag"
    );

    let root = prepared_host("aks-ubuntu-drifted");
    let v = inspect("kube-proxy", root.path());
    assert_eq!(
        v["kube-proxy"]["facts"]["config"]["metricsBindAddress"],
        "0.0.0.0:10249"
    );
}

#[test]
fn kubeadm_kube_proxy_reads_its_config_file_and_defaults_zero_values() {
    let root = prepared_host("kubeadm");
    let v = inspect("kube-proxy", root.path());
    let f = &v["kube-proxy"]["facts"];
    assert_eq!(f["configFile"]["path"], "/var/lib/kube-proxy/config.conf");
    // kubeadm writes "" and 0s for unset fields: the v1alpha1 defaults apply.
    assert_eq!(f["config"]["metricsBindAddress"], "127.0.0.1:10249");
    assert_eq!(f["config"]["iptables"]["syncPeriod"], "30s");
    assert_eq!(f["config"]["conntrack"]["maxPerCore"], 32768);
    assert_eq!(f["config"]["hostnameOverride"], "kubeadm-worker-1");
    assert_eq!(f["flagsIgnored"], serde_json::json!([]));
    assert_eq!(
        f["files"]["kubeconfig"]["path"],
        "/var/lib/kube-proxy/kubeconfig.conf"
    );
    assert_eq!(f["files"]["kubeconfig"]["mode"], "0600");
}

#[test]
fn kube_proxy_config_that_is_a_fifo_is_unknown() {
    let root = prepared_host("kubeadm");
    let conf = root.path().join("var/lib/kube-proxy/config.conf");
    fs::remove_file(&conf).expect("rm");
    nix::unistd::mkfifo(&conf, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let v = inspect("kube-proxy", root.path());
    let r = v["kube-proxy"]["facts"]["config"]["$unknown"]
        .as_str()
        .expect("unknown");
    assert!(
        r.contains("/var/lib/kube-proxy/config.conf") && r.contains("FIFO"),
        "{r}"
    );
}
