//! `nodedrift check` on the fixture hosts: each planted drift fails at its fact path, clean
//! hosts have no failure, profiles are detected, and the JSON schema is stable.

use crate::util::{check_json, prepared_host, with_status};

/// Fails of a report as `(rule, path)` pairs, for readable assertion messages.
fn fails(report: &serde_json::Value) -> Vec<(String, String)> {
    with_status(report, "fail")
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or_default().to_owned(),
                f["path"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn assert_fails_at(report: &serde_json::Value, matches: impl Fn(&str) -> bool, what: &str) {
    let f = fails(report);
    assert!(
        f.iter().any(|(_, p)| matches(p)),
        "planted drift not reported as fail: {what}\nfails: {f:#?}"
    );
}

#[test]
fn drifted_aks_node_fails_each_planted_drift() {
    let (code, report) = check_json(prepared_host("aks-ubuntu-drifted").path(), &[]);
    assert_eq!(code, 1, "drift exits 1");
    assert_eq!(report["profile"]["name"], "aks-ubuntu");
    assert_eq!(report["profile"]["selectedBy"], "detected");
    assert_fails_at(
        &report,
        |p| p.starts_with("kubelet.featureGates.") && p.ends_with(".stage"),
        "alpha feature gate on",
    );
    assert_fails_at(
        &report,
        |p| p == "kubelet.config.readOnlyPort",
        "readOnlyPort 10255",
    );
    assert_fails_at(
        &report,
        |p| p == "kubelet.config.authentication.anonymous.enabled",
        "anonymous auth on",
    );
    assert_fails_at(
        &report,
        |p| p == "containerd.cri.systemdCgroup",
        "SystemdCgroup = false",
    );
    assert_fails_at(
        &report,
        |p| p == "sysctl.runtime[\"net.ipv4.ip_forward\"]",
        "ip_forward 0",
    );
    assert_fails_at(
        &report,
        |p| p.starts_with("sysctl.mismatch") && p.contains("vm.max_map_count"),
        "persisted != runtime sysctl",
    );
    assert_fails_at(
        &report,
        |p| p.starts_with("reboot."),
        "reboot required with packages",
    );
    assert_fails_at(
        &report,
        |p| p == "kube-proxy.config.metricsBindAddress",
        "kube-proxy metrics on 0.0.0.0",
    );
}

#[test]
fn drifted_node_reports_evidence_for_kubelet_findings() {
    let (_, report) = check_json(prepared_host("aks-ubuntu-drifted").path(), &[]);
    let port = with_status(&report, "fail")
        .into_iter()
        .find(|f| f["path"] == "kubelet.config.readOnlyPort")
        .expect("readOnlyPort finding");
    assert_eq!(port["actual"], 10255);
    assert_eq!(port["evidence"]["pid"], 1201);
    assert!(port["policy"].as_str().is_some_and(|p| !p.is_empty()));
}

#[test]
fn clean_aks_node_has_no_failure() {
    let host = prepared_host("aks-ubuntu-clean");
    // A clean node runs a current image: the fixture's own is older than 30 days by now.
    crate::util::set_node_image_age(host.path(), 3);
    let (code, report) = check_json(host.path(), &[]);
    assert_eq!(report["profile"]["name"], "aks-ubuntu");
    assert!(
        fails(&report).is_empty(),
        "clean host fails: {:#?}",
        fails(&report)
    );
    assert!(code == 0 || code == 3, "exit {code}");
}

#[test]
fn kubeadm_node_gets_the_generic_profile_and_passes() {
    let (_, report) = check_json(prepared_host("kubeadm").path(), &[]);
    assert_eq!(report["profile"]["name"], "generic");
    assert!(
        fails(&report).is_empty(),
        "kubeadm host fails: {:#?}",
        fails(&report)
    );
}

#[test]
fn azurelinux_node_reports_the_kernel_mismatch() {
    let (code, report) = check_json(prepared_host("azurelinux-kernel-mismatch").path(), &[]);
    assert_eq!(report["profile"]["name"], "aks-azurelinux");
    assert_eq!(code, 1);
    assert_fails_at(
        &report,
        |p| p.starts_with("reboot.kernel"),
        "running kernel older than installed",
    );
}

#[test]
fn forced_profile_and_user_layer_change_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let overlay = crate::util::baseline_file(
        dir.path(),
        "accept-port.yaml",
        "  - id: kubelet.read-only-port-disabled\n    disabled: true\n",
    );
    let (_, report) = check_json(
        prepared_host("aks-ubuntu-drifted").path(),
        &[
            "--profile",
            "generic",
            "--baseline",
            overlay.to_str().unwrap(),
        ],
    );
    assert_eq!(report["profile"]["selectedBy"], "forced");
    assert!(
        !fails(&report)
            .iter()
            .any(|(_, p)| p == "kubelet.config.readOnlyPort"),
        "a disabled rule does not report"
    );
}

#[test]
fn json_schema_is_stable() {
    let (_, report) = check_json(prepared_host("aks-ubuntu-drifted").path(), &[]);
    // The shape, not the values: keys of the document, of the summary and of every finding.
    let keys = |v: &serde_json::Value| -> Vec<String> {
        v.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut finding_keys: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(keys)
        .collect();
    finding_keys.sort();
    finding_keys.dedup();
    let schema = serde_json::json!({
        "document": keys(&report),
        "summary": keys(&report["summary"]),
        "failBySeverity": keys(&report["summary"]["failBySeverity"]),
        "profile": keys(&report["profile"]),
        "finding": finding_keys,
        "statuses": ["pass", "fail", "unknown"],
    });
    insta::assert_json_snapshot!("check_report_schema", schema);
}
