//! Integration tests for the containerd inspector: the real binary against the fixture trees
//! and against a real containerd started for the test, plus the containerd baseline rules
//! checked against the fixtures.

// Test code: a panic with the value is the failure report.
#![allow(clippy::unwrap_used)]

#[path = "containerd_harness.rs"]
mod harness;

use std::fs;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{fixture_host, inspect, prepared_host, rule_outcomes, rules_with};

fn facts(root: &Path) -> Value {
    let out = inspect("containerd", root);
    out["containerd"]["facts"].clone()
}

fn unknown(v: &Value) -> Option<&str> {
    v.get("$unknown").and_then(Value::as_str)
}

// ---------------------------------------------------------------------------------------------
// Fixtures

#[test]
fn fixtures_give_the_planted_config() {
    for (name, systemd, sandbox, version) in [
        (
            "aks-ubuntu-clean",
            true,
            "mcr.microsoft.com/oss/kubernetes/pause:3.6",
            2,
        ),
        (
            "aks-ubuntu-drifted",
            false,
            "mcr.microsoft.com/oss/kubernetes/pause:3.6",
            2,
        ),
        ("kubeadm", true, "registry.k8s.io/pause:3.9", 2),
        (
            "azurelinux-kernel-mismatch",
            true,
            "mcr.microsoft.com/oss/kubernetes/pause:3.6",
            3,
        ),
    ] {
        let f = facts(&fixture_host(name));
        assert_eq!(f["running"], json!(true), "{name}");
        assert_eq!(f["process"]["pid"], json!(1101), "{name}");
        assert_eq!(
            f["configPath"],
            json!("/etc/containerd/config.toml"),
            "{name}"
        );
        assert_eq!(f["configVersion"], json!(version), "{name}");
        assert_eq!(f["cri"]["systemdCgroup"], json!(systemd), "{name}");
        assert_eq!(f["cri"]["sandboxImage"], json!(sandbox), "{name}");
        assert_eq!(f["cri"]["snapshotter"], json!("overlayfs"), "{name}");
        assert_eq!(f["cri"]["disabled"], json!(false), "{name}");
        assert_eq!(
            f["grpc"]["address"],
            json!("/run/containerd/containerd.sock"),
            "{name}"
        );
        // No live socket in a fixture tree: nothing to ask, so unknown — naming the socket.
        let why = unknown(&f["version"]).unwrap_or_else(|| panic!("{name}: version not unknown"));
        assert!(
            why.contains("/run/containerd/containerd.sock"),
            "{name}: {why}"
        );
        assert_eq!(f["socket"]["exists"], json!(false), "{name}");
    }
}

#[test]
fn drifted_fixture_imports_a_dropin() {
    let f = facts(&fixture_host("aks-ubuntu-drifted"));
    let files: Vec<&str> = f["configFiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "/etc/containerd/config.toml",
            "/etc/containerd/conf.d/99-debug.toml"
        ]
    );
    assert_eq!(f["config"]["debug"]["level"], json!("debug"));
    // The drop-in does not touch plugins, so 1.x and 2.x merging agree and nothing is unknown.
    assert!(f["configMerge"].as_str().unwrap().starts_with("equivalent"));
    let out = inspect("containerd", &fixture_host("aks-ubuntu-drifted"));
    assert_eq!(
        out["containerd"]["evidence"]["cri.systemdCgroup"],
        json!({"file": "/etc/containerd/config.toml", "pid": 1101, "source": "config"})
    );
}

// ---------------------------------------------------------------------------------------------
// Unix sockets that do not behave

#[test]
fn socket_that_accepts_and_never_answers_gives_unknown_quickly() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("run/containerd")).unwrap();
    let listener = UnixListener::bind(root.path().join("run/containerd/containerd.sock")).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let start = Instant::now();
    let f = facts(root.path());
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(f["api"]["reachable"], json!(false));
    let why = unknown(&f["version"]).expect("version unknown");
    assert!(
        why.contains("/run/containerd/containerd.sock") && why.contains("no answer"),
        "{why}"
    );
}

#[test]
fn socket_path_that_is_a_regular_file_is_not_connected_to() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("run/containerd")).unwrap();
    fs::write(root.path().join("run/containerd/containerd.sock"), "x").unwrap();
    let f = facts(root.path());
    assert_eq!(f["socket"]["kind"], json!("file"));
    assert!(unknown(&f["version"]).unwrap().contains("not a socket"));
}

// ---------------------------------------------------------------------------------------------
// A real containerd

#[test]
fn real_containerd_is_found_and_asked_for_its_version() {
    let bin = harness::binary();
    let (version, revision) = harness::installed_version(&bin);
    let ctd = harness::Containerd::start();
    let config = ctd.config.to_str().unwrap().to_owned();
    let socket = ctd.socket.to_str().unwrap().to_owned();

    let out = inspect("containerd", Path::new("/"));
    let f = &out["containerd"]["facts"];
    assert_eq!(f["running"], json!(true));
    let ours = f["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == json!(ctd.pid()))
        .unwrap_or_else(|| panic!("pid {} not among {}", ctd.pid(), f["processes"]));
    assert_eq!(ours["configPath"], json!(config));
    assert_eq!(ours["address"], json!(socket));

    // The binary inspects the daemon on the default socket when there is one (a host daemon):
    // then ask for ours explicitly through the library.
    let f = if f["process"]["pid"] == json!(ctd.pid()) {
        f.clone()
    } else {
        let host = nodedrift::host::HostRoot::new("/").unwrap();
        let options = nodedrift::inspect::Options {
            containerd_socket: Some(ctd.socket.clone()),
            ..Default::default()
        };
        let facts = nodedrift::inspect::inspect(&host, &options, &["containerd"]);
        facts.component("containerd").unwrap().facts.clone()
    };
    assert_eq!(f["process"]["pid"], json!(ctd.pid()));
    assert_eq!(f["configPath"], json!(config));
    assert_eq!(f["grpc"]["address"], json!(socket));
    assert_eq!(f["version"], json!(version), "facts: {f}");
    assert_eq!(f["revision"], json!(revision));
    assert_eq!(f["api"]["reachable"], json!(true));
    if f["api"]["pid"] != Value::Null {
        // containerd 1.7+ reports its pid.
        assert_eq!(f["api"]["pid"], json!(ctd.pid()));
    }
    assert_eq!(f["socket"]["kind"], json!("socket"));
    assert_eq!(f["socket"]["mode"], json!("0660"));
    assert_eq!(f["cri"]["systemdCgroup"], json!(true));
    assert_eq!(f["cri"]["sandboxImage"], json!("registry.k8s.io/pause:3.6"));
    assert!(f["configMerge"].as_str().unwrap() == "single-file");
    // The CRI plugin is loaded and healthy in this daemon; the disabled ones are not listed.
    assert_eq!(
        f["cri"]["plugin"]["status"],
        json!("ok"),
        "plugins: {}",
        f["plugins"]
    );
    assert_eq!(
        f["plugins"]["io.containerd.grpc.v1"]["cri"]["status"],
        json!("ok")
    );
    // The CRI's own status: the runtime is ready; the network is not (no CNI configuration
    // in this test's setup), with the runtime's reason.
    let status = &f["cri"]["runtimeStatus"];
    assert_eq!(status["RuntimeReady"]["status"], json!(true), "{status:#}");
    assert_eq!(status["NetworkReady"]["status"], json!(false), "{status:#}");
    assert!(
        !status["NetworkReady"]["reason"]
            .as_str()
            .unwrap()
            .is_empty(),
        "{status:#}"
    );
    assert!(
        f["plugins"]["io.containerd.internal.v1"]
            .get("opt")
            .is_none()
    );
}

/// The health inspector on the live host sees the real daemon's process and its start time
/// (`/proc/<pid>/stat` starttime plus the boot time); its API health is the containerd
/// inspector's, which the test above checks.
#[test]
fn real_containerd_has_a_start_time_in_the_health_facts() {
    let before = nodedrift::clock::unix_now();
    let ctd = harness::Containerd::start();
    let host = nodedrift::host::HostRoot::new("/").unwrap();
    let facts =
        nodedrift::inspect::inspect(&host, &nodedrift::inspect::Options::default(), &["health"]);
    let f = &facts.component("health").unwrap().facts["containerd"];
    assert_eq!(f["running"], json!(true), "{f:#}");
    let started = f["startedAtUnix"]
        .as_i64()
        .unwrap_or_else(|| panic!("{f:#}"));
    let now = nodedrift::clock::unix_now();
    assert!(started <= now + 1, "{f:#}");
    if f["pid"] == json!(ctd.pid()) {
        // Ours (no older daemon on this machine): started while this test ran, to the
        // second the tick and boot-time roundings allow.
        assert!(
            started >= before - 2,
            "started {started}, test began {before}: {f:#}"
        );
    }
    assert_eq!(f["down"], json!(false));
    assert_eq!(f["downSince"], Value::Null);
}

// ---------------------------------------------------------------------------------------------
// The baseline rules, through the real `check`, on the fixtures.

#[test]
fn rules_on_fixtures_fail_only_the_planted_drift() {
    for name in [
        "aks-ubuntu-clean",
        "aks-ubuntu-drifted",
        "kubeadm",
        "azurelinux-kernel-mismatch",
    ] {
        let root = prepared_host(name);
        let outcomes = rule_outcomes(root.path(), &["containerd"]);
        let expected: Vec<String> = if name == "aks-ubuntu-drifted" {
            vec!["containerd.cri-systemd-cgroup".into()]
        } else {
            vec![]
        };
        assert_eq!(
            rules_with(&outcomes, "fail"),
            expected,
            "{name}: {outcomes:#?}"
        );
        let status = |id: &str| {
            outcomes
                .iter()
                .find(|o| o.0 == id)
                .map(|o| o.2.clone())
                .unwrap_or_else(|| panic!("{name}: no finding of {id}"))
        };
        // What only the live daemon can say is unknown in a fixture tree, never a failure.
        for id in [
            "containerd.api-reachable",
            "containerd.version-supported",
            "containerd.cri-plugin-healthy",
            "containerd.socket-permissions",
            "containerd.socket-owner",
        ] {
            assert_eq!(status(id), "unknown", "{name}: {id}");
        }
        for id in [
            "containerd.running",
            "containerd.sandbox-image-set",
            "containerd.config-file-permissions",
        ] {
            assert_eq!(status(id), "pass", "{name}: {id}");
        }
    }
}
