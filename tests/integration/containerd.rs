//! Integration tests for the containerd inspector: the real binary against the fixture trees
//! and against a real containerd started for the test, plus the containerd baseline rules
//! checked against the fixtures.

// Test code: a panic with the value is the failure report.
#![allow(clippy::unwrap_used)]

#[path = "containerd_harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{fixture_host, inspect};

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
    assert!(
        f["plugins"]["io.containerd.internal.v1"]
            .get("opt")
            .is_none()
    );
}

// ---------------------------------------------------------------------------------------------
// The baseline rules, checked against the fixtures with a small evaluator of the expectations
// they use (the real evaluator lives in the baseline module).

fn profile(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("agent/src/baseline/profiles")
        .join(name)
        .join("containerd.yaml");
    let doc: Value = serde_norway::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(doc["apiVersion"], json!("nodedrift.dev/v1"));
    assert_eq!(doc["kind"], json!("Baseline"));
    doc["rules"].as_array().unwrap().clone()
}

/// Generic rules with the AKS layer's patches applied (and its new rules added).
fn layered(aks: bool) -> Vec<Value> {
    let mut rules = profile("generic");
    if aks {
        for patch in profile("aks") {
            match rules.iter_mut().find(|r| r["id"] == patch["id"]) {
                Some(rule) => {
                    let has_expect = patch.get("expect").is_some();
                    let rule = rule.as_object_mut().unwrap();
                    if has_expect {
                        rule.remove("expect");
                    }
                    for (k, v) in patch.as_object().unwrap() {
                        rule.insert(k.clone(), v.clone());
                    }
                }
                None => rules.push(patch),
            }
        }
    }
    rules
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Status {
    Pass,
    Fail,
    Unknown,
}

fn lookup<'a>(v: &'a Value, segs: &[&str], out: &mut Vec<Option<&'a Value>>) {
    if unknown(v).is_some() {
        out.push(Some(v));
        return;
    }
    let Some((first, rest)) = segs.split_first() else {
        out.push(Some(v));
        return;
    };
    if *first == "*" {
        let children: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            Value::Object(m) => m.values().collect(),
            _ => Vec::new(),
        };
        if children.is_empty() {
            out.push(None);
        }
        for c in children {
            lookup(c, rest, out);
        }
    } else {
        match v.get(*first) {
            Some(c) => lookup(c, rest, out),
            None => out.push(None),
        }
    }
}

fn version_parts(v: &str) -> Vec<u64> {
    v.trim_start_matches('v')
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()
        .unwrap_or("")
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn check(expect: &Value, actual: Option<&Value>) -> Status {
    let (kind, want) = expect.as_object().unwrap().iter().next().unwrap();
    let ok = match (kind.as_str(), actual) {
        ("present", a) => a.is_some_and(|a| !a.is_null()) == want.as_bool().unwrap(),
        (_, None) => false,
        ("equals", Some(a)) => {
            a == want || a.to_string().trim_matches('"') == want.to_string().trim_matches('"')
        }
        ("matches", Some(a)) => regex::Regex::new(want.as_str().unwrap())
            .unwrap()
            .is_match(a.as_str().unwrap_or("")),
        ("version", Some(a)) => {
            let have = version_parts(a.as_str().unwrap());
            want.as_str().unwrap().split(',').all(|c| {
                let c = c.trim();
                let (op, v) = c.split_at(c.find(|ch: char| ch.is_ascii_digit()).unwrap());
                let v = version_parts(v);
                match op.trim() {
                    ">=" => have >= v,
                    "<" => have < v,
                    other => panic!("operator {other}"),
                }
            })
        }
        ("modeAtMost", Some(a)) => {
            let have = u32::from_str_radix(a.as_str().unwrap(), 8).unwrap();
            let max = u32::from_str_radix(want.as_str().unwrap(), 8).unwrap();
            have & !max == 0
        }
        (other, _) => panic!("expectation {other} not covered by this test"),
    };
    if ok { Status::Pass } else { Status::Fail }
}

fn evaluate(rules: &[Value], facts: &Value) -> Vec<(String, Status)> {
    rules
        .iter()
        .map(|r| {
            let path = r["path"].as_str().unwrap();
            let segs: Vec<&str> = path.split('.').collect();
            assert_eq!(segs[0], "containerd", "{path}");
            let mut found = Vec::new();
            lookup(facts, &segs[1..], &mut found);
            let statuses: Vec<Status> = found
                .into_iter()
                .map(|v| match v {
                    Some(v) if unknown(v).is_some() => Status::Unknown,
                    None if path.contains('*') => Status::Pass,
                    v => check(&r["expect"], v),
                })
                .collect();
            let status = if statuses.contains(&Status::Fail) {
                Status::Fail
            } else if statuses.contains(&Status::Unknown) {
                Status::Unknown
            } else {
                Status::Pass
            };
            (r["id"].as_str().unwrap().to_owned(), status)
        })
        .collect()
}

#[test]
fn rules_are_well_formed() {
    let policy: Value = serde_norway::from_str(
        &fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("agent/src/baseline/policy.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let clauses: BTreeSet<&str> = policy["clauses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let generic = profile("generic");
    let ids: BTreeSet<&str> = generic.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), generic.len(), "duplicate ids");
    for rule in layered(true).iter().chain(generic.iter()) {
        let id = rule["id"].as_str().unwrap();
        assert!(
            id.starts_with("containerd.") && id == id.to_lowercase(),
            "{id}"
        );
        for key in [
            "title",
            "path",
            "severity",
            "policy",
            "expect",
            "remediation",
        ] {
            assert!(rule.get(key).is_some(), "{id}: no {key}");
        }
        assert!(
            ["info", "low", "medium", "high", "critical"]
                .contains(&rule["severity"].as_str().unwrap()),
            "{id}"
        );
        assert!(
            clauses.contains(rule["policy"].as_str().unwrap()),
            "{id}: unknown policy"
        );
        assert_eq!(
            rule["expect"].as_object().unwrap().len(),
            1,
            "{id}: one expectation"
        );
    }
}

#[test]
fn rules_on_fixtures_fail_only_the_planted_drift() {
    for (name, aks) in [
        ("aks-ubuntu-clean", true),
        ("aks-ubuntu-drifted", true),
        ("kubeadm", false),
        ("azurelinux-kernel-mismatch", true),
    ] {
        let results = evaluate(&layered(aks), &facts(&fixture_host(name)));
        let failed: Vec<&str> = results
            .iter()
            .filter(|(_, s)| *s == Status::Fail)
            .map(|(id, _)| id.as_str())
            .collect();
        let expected: &[&str] = if name == "aks-ubuntu-drifted" {
            &["containerd.cri-systemd-cgroup"]
        } else {
            &[]
        };
        assert_eq!(failed, expected, "{name}: {results:?}");
        // What only the live daemon can say is unknown in a fixture tree, never a failure.
        for id in [
            "containerd.api-reachable",
            "containerd.version-supported",
            "containerd.cri-plugin-healthy",
            "containerd.socket-permissions",
            "containerd.socket-owner",
        ] {
            let status = results.iter().find(|(r, _)| r == id).unwrap().1;
            assert_eq!(status, Status::Unknown, "{name}: {id}");
        }
        for id in [
            "containerd.running",
            "containerd.sandbox-image-set",
            "containerd.config-file-permissions",
        ] {
            let status = results.iter().find(|(r, _)| r == id).unwrap().1;
            assert_eq!(status, Status::Pass, "{name}: {id}");
        }
    }
}
