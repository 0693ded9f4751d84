//! Integration tests for the CNI inspector and the AKS network-plugin rules, on copies of the
//! AKS fixture with CNI configurations written into them.

use std::fs;
use std::path::Path;

use serde_json::{Value, json};

use crate::util::{check_json, inspect, prepared_host, watch_fifo};

const NET_D: &str = "etc/cni/net.d";

const CALICO: &str = r#"{
  "name": "k8s-pod-network", "cniVersion": "0.3.1",
  "plugins": [
    {"type": "calico", "datastore_type": "kubernetes", "ipam": {"type": "calico-ipam"}},
    {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}},
    {"type": "bandwidth", "capabilities": {"bandwidth": true}}
  ]
}"#;

const FLANNEL: &str = r#"{
  "name": "cbr0", "cniVersion": "0.3.1",
  "plugins": [
    {"type": "flannel", "delegate": {"hairpinMode": true, "isDefaultGateway": true}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}"#;

const CILIUM: &str = r#"{
  "cniVersion": "0.3.1", "name": "cilium",
  "plugins": [{"type": "cilium-cni", "enable-debug": false, "log-file": "/var/run/cilium/cilium-cni.log"}]
}"#;

/// The clean AKS node (Azure CNI's `10-azure.conflist`), with `remove` deleted from
/// /etc/cni/net.d and `files` written there; binaries named in `bins` added to /opt/cni/bin.
fn node(remove: &[&str], files: &[(&str, &str)], bins: &[&str]) -> tempfile::TempDir {
    let host = prepared_host("aks-ubuntu-clean");
    let dir = host.path().join(NET_D);
    for r in remove {
        fs::remove_file(dir.join(r)).unwrap();
    }
    for (name, text) in files {
        fs::write(dir.join(name), text).unwrap();
    }
    for b in bins {
        fs::write(host.path().join("opt/cni/bin").join(b), "").unwrap();
    }
    host
}

fn facts(root: &Path) -> Value {
    inspect("cni", root)["cni"].clone()
}

/// The findings of `rule`, from `nodedrift check` on `root`.
fn findings(root: &Path, rule: &str) -> Vec<Value> {
    let (_, report) = check_json(root, &[]);
    assert_eq!(report["profile"]["name"], "aks-ubuntu");
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == rule)
        .cloned()
        .collect()
}

fn only(root: &Path, rule: &str) -> Value {
    let mut f = findings(root, rule);
    assert_eq!(f.len(), 1, "{rule}: {f:#?}");
    f.remove(0)
}

#[test]
fn azure_cni_passes() {
    let host = prepared_host("aks-ubuntu-clean");
    let out = facts(host.path());
    let f = &out["facts"];
    assert_eq!(f["primaryPlugin"], json!("azure-vnet"));
    assert_eq!(f["confDirPresent"], json!(true));
    assert_eq!(f["errors"], json!([]));
    assert_eq!(
        f["winning"],
        json!({
            "file": "/etc/cni/net.d/10-azure.conflist",
            "name": "azure",
            "cniVersion": "0.3.0",
            "plugins": [
                {"type": "azure-vnet", "binaryPresent": true},
                {"type": "portmap", "binaryPresent": true}
            ]
        })
    );
    assert!(
        f["binaries"]
            .as_array()
            .unwrap()
            .contains(&json!("azure-vnet-ipam"))
    );
    let platform = only(host.path(), "cni.platform-plugin");
    assert_eq!(platform["status"], "pass");
    assert_eq!(platform["policy"], "aks/byocni");
    assert_eq!(
        platform["evidence"]["file"],
        "/etc/cni/net.d/10-azure.conflist"
    );
    for b in findings(host.path(), "cni.chain-binaries-present") {
        assert_eq!(b["status"], "pass", "{b:#}");
    }
    assert_eq!(
        only(host.path(), "cni.no-broken-configurations")["status"],
        "pass"
    );
}

#[test]
fn azure_cni_powered_by_cilium_passes() {
    let host = node(
        &["10-azure.conflist"],
        &[("05-cilium.conflist", CILIUM)],
        &["cilium-cni"],
    );
    let f = only(host.path(), "cni.platform-plugin");
    assert_eq!(f["status"], "pass");
    assert_eq!(f["actual"], "cilium-cni");
}

#[test]
fn third_party_plugins_fail_the_byocni_rule() {
    for (file, text, plugin) in [
        ("10-calico.conflist", CALICO, "calico"),
        ("10-flannel.conflist", FLANNEL, "flannel"),
        (
            "10-custom.conf",
            r#"{"cniVersion": "1.0.0", "name": "mynet", "type": "acme-net"}"#,
            "acme-net",
        ),
    ] {
        let host = node(&["10-azure.conflist"], &[(file, text)], &[]);
        let f = only(host.path(), "cni.platform-plugin");
        assert_eq!(f["status"], "fail", "{file}");
        assert_eq!(f["actual"], plugin, "{file}");
        assert_eq!(f["severity"], "high");
        assert_eq!(f["policy"], "aks/byocni");
        assert_eq!(
            f["evidence"]["file"],
            format!("/etc/cni/net.d/{file}"),
            "{file}"
        );
        assert!(f["remediation"].as_str().unwrap().contains("BYOCNI"));
        // The third-party binary is not in the fixture's /opt/cni/bin; portmap is.
        let bins: Vec<(String, String)> = findings(host.path(), "cni.chain-binaries-present")
            .iter()
            .map(|b| {
                (
                    b["path"].as_str().unwrap().to_owned(),
                    b["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert!(
            bins.contains(&(
                "cni.winning.plugins.0.binaryPresent".to_owned(),
                "fail".to_owned()
            )),
            "{file}: {bins:?}"
        );
        if plugin != "acme-net" {
            assert!(
                bins.contains(&(
                    "cni.winning.plugins.1.binaryPresent".to_owned(),
                    "pass".to_owned()
                )),
                "{file}: {bins:?}"
            );
        }
    }
}

#[test]
fn a_plugin_installed_over_azure_cni_wins_by_sorting_first() {
    let host = node(&[], &[("00-flannel.conflist", FLANNEL)], &["flannel"]);
    let f = facts(host.path());
    assert_eq!(
        f["facts"]["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["file"].clone())
            .collect::<Vec<_>>(),
        [
            json!("/etc/cni/net.d/00-flannel.conflist"),
            json!("/etc/cni/net.d/10-azure.conflist")
        ]
    );
    let p = only(host.path(), "cni.platform-plugin");
    assert_eq!(p["status"], "fail");
    assert_eq!(p["actual"], "flannel");
}

#[test]
fn broken_files_are_listed_and_the_first_valid_one_wins() {
    let host = node(
        &[],
        &[
            ("00-broken.conflist", "{\"name\": \"x\", \"plugins\": [\n"),
            ("05-garbage.json", "not json at all"),
            ("99-calico.conflist", CALICO),
        ],
        &[],
    );
    let f = facts(host.path());
    let facts = &f["facts"];
    assert_eq!(facts["primaryPlugin"], "azure-vnet");
    assert_eq!(facts["winning"]["file"], "/etc/cni/net.d/10-azure.conflist");
    let errors = facts["errors"].as_array().unwrap();
    let files: Vec<&str> = errors.iter().map(|e| e["file"].as_str().unwrap()).collect();
    assert_eq!(
        files,
        [
            "/etc/cni/net.d/00-broken.conflist",
            "/etc/cni/net.d/05-garbage.json"
        ]
    );
    assert!(
        errors
            .iter()
            .all(|e| e["error"].as_str().unwrap().contains("invalid JSON")),
        "{errors:?}"
    );
    // The Calico file sorts after Azure CNI's: listed, parsed, not used.
    assert_eq!(facts["files"][3]["plugins"][0], "calico");
    assert_eq!(only(host.path(), "cni.platform-plugin")["status"], "pass");
    let broken = only(host.path(), "cni.no-broken-configurations");
    assert_eq!(broken["status"], "fail");
    assert_eq!(broken["severity"], "info");
}

#[test]
fn no_cni_configuration_leaves_the_platform_rule_unknown() {
    let host = prepared_host("aks-ubuntu-clean");
    fs::remove_dir_all(host.path().join(NET_D)).unwrap();
    let f = facts(host.path());
    assert_eq!(f["facts"]["confDirPresent"], json!(false));
    assert_eq!(f["facts"]["files"], json!([]));
    let p = only(host.path(), "cni.platform-plugin");
    assert_eq!(p["status"], "unknown", "{p:#}");
    assert!(
        p["reason"].as_str().unwrap().contains("not installed"),
        "{p:#}"
    );
    let b = only(host.path(), "cni.chain-binaries-present");
    assert_eq!(b["status"], "unknown", "{b:#}");
}

#[test]
fn a_fifo_named_like_a_configuration_is_never_opened() {
    let host = prepared_host("aks-ubuntu-clean");
    let fifo = host.path().join(NET_D).join("00-fifo.conflist");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let (f, opened) = watch_fifo(&fifo, || facts(host.path()));
    assert!(!opened, "the FIFO was opened");
    let facts = &f["facts"];
    assert_eq!(facts["primaryPlugin"], "azure-vnet");
    assert_eq!(
        facts["errors"][0]["file"],
        "/etc/cni/net.d/00-fifo.conflist"
    );
    assert!(
        facts["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("FIFO, not a regular file"),
        "{facts:#}"
    );
    let ((_, report), opened) = watch_fifo(&fifo, || check_json(host.path(), &[]));
    assert!(!opened, "check opened the FIFO");
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "cni.platform-plugin" && f["status"] == "pass")
    );
}

#[test]
fn an_operator_can_extend_the_platform_list() {
    let host = node(
        &["10-azure.conflist"],
        &[("10-calico.conflist", CALICO)],
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let overlay = crate::util::baseline_file(
        dir.path(),
        "kubenet-calico.yaml",
        "  - id: cni.platform-plugin\n    expect: { oneOf: [azure-vnet, cilium-cni, bridge, calico] }\n",
    );
    let (_, report) = check_json(host.path(), &["--baseline", overlay.to_str().unwrap()]);
    let f = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "cni.platform-plugin")
        .unwrap();
    assert_eq!(f["status"], "pass");
}

#[test]
fn policy_coverage_lists_the_rule_under_byocni() {
    let out = crate::util::run(&["baseline", "show", "--profile", "aks-ubuntu", "--policy"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with("| aks/byocni |"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.ends_with("| `cni.platform-plugin` |"), "{row}");
    // The generic profile has no BYOCNI rule: the clause is AKS's.
    let out = crate::util::run(&["baseline", "show", "--profile", "generic", "--policy"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!table.contains("`cni.platform-plugin`"), "{table}");
}
