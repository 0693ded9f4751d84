//! The Kubernetes deployment in `deploy/`, as `kubectl kustomize` renders it:
//! * every document of the base and the AKS overlay validates (strictly) against the oldest and
//!   the newest Kubernetes the manifests support;
//! * the DaemonSet and the RBAC hold exactly the privileges they document;
//! * the admission policy's CEL, evaluated by cel-python (`tests/deploy/vap_eval.py`), lets the
//!   agent change only its own Node and only what it owns there;
//! * the agent accepts the ConfigMap's config and baseline, and works with exactly the
//!   DaemonSet's capabilities (`setpriv`) on a host mounted read-only (`unshare -m`), and each
//!   capability it is given is needed.
//!
//! The tools come from tests/run.sh (kubectl, kubernetes-validate, cel-python; unshare and
//! setpriv are util-linux). A missing tool fails the test with its name: nothing is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::run::Agent;
use crate::util::{clean_env, nodedrift, prepared_host, run_bounded};

/// The oldest Kubernetes deploy/ supports: ValidatingAdmissionPolicy is GA
/// (admissionregistration.k8s.io/v1) and pod-bound tokens carry the node claim from 1.30 on.
const OLDEST: &str = "1.30.0";
/// The newest Kubernetes whose schemas kubernetes-validate (PyPI 1.37.0, tests/run.sh) bundles.
const NEWEST: &str = "1.37.0";

/// Every kustomization in deploy/: the installable base, its reusable copy, the AKS overlay.
const KUSTOMIZATIONS: [&str; 3] = ["deploy", "deploy/base", "deploy/overlays/aks"];

/// The DaemonSet's capabilities, each justified in deploy/base/daemonset.yaml.
const CAPABILITIES: [&str; 3] = ["DAC_READ_SEARCH", "SYS_ADMIN", "SYS_PTRACE"];

/// The agent's service account, as the admission policy and the RBAC binding name it.
const AGENT_USER: &str = "system:serviceaccount:nodedrift:nodedrift";

/// The node-name claim of a pod-bound service-account token, in the request's user info.
const NODE_CLAIM: &str = "authentication.kubernetes.io/node-name";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `name` on PATH; a missing tool fails the test, naming where it comes from.
fn tool(name: &str, from: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not on PATH (it comes from {from}): run the tests through \
                 tests/run.sh, which installs it and puts it on PATH"
            )
        })
}

fn kubectl() -> PathBuf {
    tool("kubectl", "Debian's kubernetes-client")
}

/// python3 with the module `module` (a PyPI package tests/run.sh installs).
fn python_with(module: &str, package: &str) -> PathBuf {
    let python = tool("python3", "Python 3");
    let ok = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import `{module}` (PyPI {package}): run the tests through tests/run.sh, which \
         installs it",
        python.display()
    );
    python
}

/// `kubectl kustomize DIR`: the rendered YAML.
fn render_text(dir: &str) -> String {
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(repo().join(dir))
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 manifests")
}

/// The documents of a multi-document YAML stream.
fn documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

fn render(dir: &str) -> Vec<Value> {
    documents(&render_text(dir))
}

/// The only document of `kind`.
fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "exactly one {kind} expected");
    found[0]
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer}: no string in {v:#}"))
}

/// The agent's container in a rendered DaemonSet.
fn container(ds: &Value) -> &Value {
    let containers = ds["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container, the agent");
    &containers[0]
}

/// The capabilities the DaemonSet adds, sorted.
fn capabilities(ds: &Value) -> Vec<String> {
    let mut caps: Vec<String> = container(ds)["securityContext"]["capabilities"]["add"]
        .as_array()
        .expect("capabilities.add")
        .iter()
        .map(|c| c.as_str().expect("capability name").to_owned())
        .collect();
    caps.sort();
    caps
}

/// The mount path of the volume `name` in the agent's container, and whether it is read-only.
fn mount_of<'a>(ds: &'a Value, volume: &str) -> (&'a str, bool) {
    let m = container(ds)["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"] == volume)
        .unwrap_or_else(|| panic!("no mount of volume {volume}"));
    (
        m["mountPath"].as_str().expect("mountPath"),
        m["readOnly"] == true,
    )
}

fn volume<'a>(ds: &'a Value, name: &str) -> &'a Value {
    ds["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

/// The ConfigMap's files (`key → content`).
fn configmap_files(docs: &[Value]) -> BTreeMap<String, String> {
    one(docs, "ConfigMap")["data"]
        .as_object()
        .expect("ConfigMap data")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("text").to_owned()))
        .collect()
}

/// The agent's config as the ConfigMap ships it, parsed.
fn shipped_config(docs: &[Value]) -> Value {
    let files = configmap_files(docs);
    serde_norway::from_str(&files["nodedrift.yaml"]).expect("config YAML")
}

// ---------------------------------------------------------------------------------------------
// Rendering and schemas.

/// Runs kubernetes-validate on `file` and requires `passed` documents to pass; any other line
/// (an error, or a warning such as a missing schema) fails, except those `allowed` accepts.
fn validate(file: &Path, version: &str, passed: usize, allowed: &dyn Fn(&str) -> bool) {
    let out = Command::new(tool("kubernetes-validate", "PyPI kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", version])
        .arg(file)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let is_pass = |l: &str| l.starts_with("INFO ") && l.contains(" passed for resource ");
    let passes = text.lines().filter(|l| is_pass(l)).count();
    let others: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !is_pass(l) && !allowed(l))
        .collect();
    assert!(
        out.status.success() && passes == passed && others.is_empty(),
        "{} against Kubernetes {version}: {passes} of {passed} documents passed, exit {}:\n{text}",
        file.display(),
        out.status
    );
}

#[test]
fn every_document_validates_against_the_oldest_and_newest_supported_kubernetes() {
    let dir = tempfile::tempdir().unwrap();
    for k in KUSTOMIZATIONS {
        let text = render_text(k);
        let n = documents(&text).len();
        assert!(n >= 8, "{k} renders {n} documents");
        let file = dir.path().join(format!("{}.yaml", k.replace('/', "-")));
        std::fs::write(&file, &text).unwrap();
        for v in [OLDEST, NEWEST] {
            validate(&file, v, n, &|_| false);
        }
    }
    // Outside the kustomization: the one-shot check pod, and the Prometheus Operator example
    // (whose ServiceMonitor kind has no schema here: its CRD is the operator's).
    for v in [OLDEST, NEWEST] {
        validate(&repo().join("deploy/check-pod.yaml"), v, 1, &|_| false);
        validate(
            &repo().join("deploy/examples/servicemonitor.yaml"),
            v,
            1,
            &|l| l.contains("Couldn't find schema for kind ServiceMonitor"),
        );
    }
}

#[test]
fn the_installable_base_renders_exactly_as_the_base_overlays_build_on() {
    assert_eq!(render_text("deploy"), render_text("deploy/base"));
}

// ---------------------------------------------------------------------------------------------
// What the DaemonSet and the RBAC grant.

fn assert_daemonset_privileges(docs: &[Value], k: &str) {
    let ds = one(docs, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    let c = container(ds);
    let sc = &c["securityContext"];
    assert_eq!(pod["hostPID"], true, "{k}: hostPID");
    assert_eq!(pod["hostNetwork"], true, "{k}: hostNetwork");
    assert_eq!(pod["hostIPC"], Value::Null, "{k}: no hostIPC");
    assert!(pod["initContainers"].is_null(), "{k}: no init containers");
    assert_eq!(sc["privileged"], false, "{k}: not privileged");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{k}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{k}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{k}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{k}");
    assert_eq!(capabilities(ds), CAPABILITIES, "{k}: capabilities");
    assert!(
        pod["securityContext"].get("sysctls").is_none()
            && pod["securityContext"].get("seLinuxOptions").is_none(),
        "{k}: no pod-level privilege"
    );

    // Host paths: `/` read-only at the config's hostRoot; the state dir, at the config's
    // stateDir, is the only writable one.
    let config = shipped_config(docs);
    let mut writable = Vec::new();
    for v in pod["volumes"].as_array().expect("volumes") {
        let Some(path) = v["hostPath"]["path"].as_str() else {
            continue;
        };
        let name = v["name"].as_str().expect("volume name");
        let (mount, read_only) = mount_of(ds, name);
        if !read_only {
            writable.push((path.to_owned(), mount.to_owned()));
        }
        if path == "/" {
            assert!(read_only, "{k}: host / must be read-only");
            assert_eq!(
                mount, config["hostRoot"],
                "{k}: host / at the config's hostRoot"
            );
        }
    }
    assert_eq!(
        writable,
        [(
            "/var/lib/nodedrift".to_owned(),
            config["stateDir"].as_str().expect("stateDir").to_owned()
        )],
        "{k}: the only writable hostPath is the state dir"
    );
    let host_mount = container(ds)["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "host")
        .unwrap();
    assert_eq!(host_mount["mountPropagation"], "HostToContainer", "{k}");

    // Probes, metrics port, Prometheus annotations: all the config's listen port.
    let port: u64 = config["listen"]
        .as_str()
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("listen port");
    let ports = c["ports"].as_array().expect("ports");
    assert_eq!(ports.len(), 1, "{k}");
    assert_eq!(ports[0]["containerPort"], port, "{k}");
    let port_name = ports[0]["name"].as_str().expect("port name");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{k}: {probe}");
        assert_eq!(c[probe]["httpGet"]["port"], port_name, "{k}: {probe}");
    }
    let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true", "{k}");
    assert_eq!(annotations["prometheus.io/port"], port.to_string(), "{k}");

    // Identity from the Downward API, the config from the generated ConfigMap.
    let env: BTreeMap<&str, &Value> = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().expect("env name"), e))
        .collect();
    assert_eq!(
        env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    assert_eq!(
        env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    let cm = one(docs, "ConfigMap");
    assert_eq!(
        volume(ds, "config")["configMap"]["name"],
        cm["metadata"]["name"],
        "{k}: the DaemonSet mounts the generated ConfigMap"
    );
    let (config_dir, read_only) = mount_of(ds, "config");
    assert!(read_only, "{k}: config read-only");
    assert_eq!(
        c["args"],
        json!(["run", "--config", format!("{config_dir}/nodedrift.yaml")]),
        "{k}"
    );
    let files = configmap_files(docs);
    for b in config["baselines"].as_array().expect("baselines") {
        let b = b.as_str().expect("baseline path");
        let key = b
            .strip_prefix(&format!("{config_dir}/"))
            .unwrap_or_else(|| panic!("{k}: baseline {b} is not in the ConfigMap mount"));
        assert!(files.contains_key(key), "{k}: {key} not in the ConfigMap");
    }

    // Scheduling and lifecycle.
    assert_eq!(pod["priorityClassName"], "system-node-critical", "{k}");
    assert!(
        pod["tolerations"]
            .as_array()
            .expect("tolerations")
            .iter()
            .any(|t| t["operator"] == "Exists"
                && t.get("key").is_none()
                && t.get("effect").is_none()),
        "{k}: tolerates every taint"
    );
    assert_eq!(ds["spec"]["updateStrategy"]["type"], "RollingUpdate", "{k}");
    assert!(
        !ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"].is_null(),
        "{k}: maxUnavailable"
    );
    assert_eq!(
        c["terminationMessagePolicy"], "FallbackToLogsOnError",
        "{k}"
    );
    for (what, key) in [
        ("requests", "cpu"),
        ("requests", "memory"),
        ("limits", "memory"),
    ] {
        assert!(
            c["resources"][what][key].is_string(),
            "{k}: resources.{what}.{key}"
        );
    }
}

#[test]
fn the_daemonset_holds_exactly_the_documented_privileges() {
    for k in ["deploy", "deploy/overlays/aks"] {
        assert_daemonset_privileges(&render(k), k);
    }
}

#[test]
fn rbac_grants_exactly_the_verbs_the_agent_needs() {
    for k in ["deploy", "deploy/overlays/aks"] {
        let docs = render(k);
        assert!(
            !docs
                .iter()
                .any(|d| d["kind"] == "Role" || d["kind"] == "RoleBinding"),
            "{k}: no namespaced roles"
        );
        let role = one(&docs, "ClusterRole");
        let mut rules = BTreeMap::new();
        for r in role["rules"].as_array().expect("rules") {
            assert_eq!(r["apiGroups"], json!([""]), "{k}: core group only");
            assert!(r.get("resourceNames").is_none() && r.get("nonResourceURLs").is_none());
            for res in r["resources"].as_array().expect("resources") {
                let mut verbs: Vec<&str> = r["verbs"]
                    .as_array()
                    .expect("verbs")
                    .iter()
                    .map(|v| v.as_str().expect("verb"))
                    .collect();
                verbs.sort_unstable();
                rules.insert(res.as_str().expect("resource").to_owned(), verbs);
            }
        }
        let expected: BTreeMap<String, Vec<&str>> = [
            ("nodes", vec!["get", "list", "patch", "watch"]),
            ("nodes/status", vec!["patch"]),
            ("events", vec!["create", "patch"]),
        ]
        .into_iter()
        .map(|(r, v)| (r.to_owned(), v))
        .collect();
        assert_eq!(rules, expected, "{k}");

        let binding = one(&docs, "ClusterRoleBinding");
        assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
        let sa = one(&docs, "ServiceAccount");
        let subject = format!(
            "system:serviceaccount:{}:{}",
            str_at(sa, "/metadata/namespace"),
            str_at(sa, "/metadata/name")
        );
        assert_eq!(subject, AGENT_USER, "{k}");
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "nodedrift", "namespace": "nodedrift"}]),
            "{k}"
        );
        let ds = one(&docs, "DaemonSet");
        assert_eq!(
            ds["spec"]["template"]["spec"]["serviceAccountName"],
            sa["metadata"]["name"]
        );
        // The admission policy matches the same identity.
        let policy = one(&docs, "ValidatingAdmissionPolicy");
        let condition = str_at(policy, "/spec/matchConditions/0/expression");
        assert!(
            condition.contains(&format!("'{AGENT_USER}'")),
            "{condition}"
        );
        let binding = one(&docs, "ValidatingAdmissionPolicyBinding");
        assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
        assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    }
}

#[test]
fn the_aks_overlay_changes_only_the_virtual_node_exclusion() {
    let base = render("deploy");
    let aks = render("deploy/overlays/aks");
    let mut ds = one(&aks, "DaemonSet").clone();
    let affinity = ds["spec"]["template"]["spec"]
        .as_object_mut()
        .expect("pod spec")
        .remove("affinity")
        .expect("the overlay adds an affinity");
    assert_eq!(
        affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"],
        json!([{"matchExpressions": [
            {"key": "type", "operator": "NotIn", "values": ["virtual-kubelet"]}
        ]}])
    );
    assert_eq!(&ds, one(&base, "DaemonSet"));
    let others = |docs: &[Value]| -> Vec<Value> {
        docs.iter()
            .filter(|d| d["kind"] != "DaemonSet")
            .cloned()
            .collect()
    };
    assert_eq!(others(&aks), others(&base));
}

// ---------------------------------------------------------------------------------------------
// The ConfigMap: the agent's config and the example baseline layer.

/// The config with every commented-out setting (`# key: value`, any indentation after the
/// `# `) turned back on.
fn uncommented(config: &str) -> String {
    config
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if is_setting(rest) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_setting(line: &str) -> bool {
    let t = line.trim_start();
    let Some((key, rest)) = t.split_once(':') else {
        return false;
    };
    !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric())
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && (rest.is_empty() || rest.starts_with(' '))
}

/// `a`, `a.b` for every key of a config document (two levels: sections and their keys).
fn key_paths(v: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (k, x) in v.as_object().expect("mapping") {
        out.insert(k.clone());
        if let Some(m) = x.as_object() {
            out.extend(m.keys().map(|s| format!("{k}.{s}")));
        }
    }
    out
}

/// Every key `nodedrift run --config` understands, from the config types themselves.
fn understood_keys() -> BTreeSet<String> {
    use nodedrift::config::{
        RawConfig, RawEgress, RawEndpoint, RawFiles, RawIntervals, RawKubernetes, RawSnapshot,
    };
    let mut top = serde_json::to_value(RawConfig::default()).unwrap();
    let sections = [
        ("intervals", serde_json::to_value(RawIntervals::default())),
        ("endpoint", serde_json::to_value(RawEndpoint::default())),
        ("kubernetes", serde_json::to_value(RawKubernetes::default())),
        ("files", serde_json::to_value(RawFiles::default())),
        ("snapshot", serde_json::to_value(RawSnapshot::default())),
        ("egress", serde_json::to_value(RawEgress::default())),
    ];
    for (name, section) in sections {
        top[name] = section.unwrap();
    }
    key_paths(&top)
}

#[test]
fn the_configmap_holds_every_config_key_and_the_agent_accepts_it_and_the_baseline() {
    let docs = render("deploy");
    let files = configmap_files(&docs);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let config = write("nodedrift.yaml", &files["nodedrift.yaml"]);
    let full = write("all-keys.yaml", &uncommented(&files["nodedrift.yaml"]));
    let baseline = write("site-baseline.yaml", &files["site-baseline.yaml"]);
    for (what, args) in [
        ("config", vec!["config", "validate", path_str(&config)]),
        ("every key on", vec!["config", "validate", path_str(&full)]),
        (
            "baseline",
            vec!["baseline", "validate", path_str(&baseline)],
        ),
    ] {
        let out = run_bounded(nodedrift().args(&args), 60);
        assert!(
            out.status.success(),
            "nodedrift rejects the ConfigMap's {what}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let all: Value = serde_norway::from_str(&std::fs::read_to_string(&full).unwrap()).unwrap();
    assert_eq!(
        key_paths(&all),
        understood_keys(),
        "the ConfigMap's config names every key the agent understands (commented out at its \
         default, or set)"
    );
    // The example layer does something visible: it adds a rule and patches one.
    let layer: Value = serde_norway::from_str(&files["site-baseline.yaml"]).unwrap();
    assert_eq!(layer["kind"], "Baseline");
    assert!(layer["rules"].as_array().is_some_and(|r| r.len() >= 2));
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

// ---------------------------------------------------------------------------------------------
// The admission policy, evaluated.

/// A Node as the API server stores it: labels, annotations, taints, the kubelet's conditions
/// and the agent's, capacity, addresses.
fn node(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": "8d1b6c52-5c8e-4c33-9b5a-0b7f2a1c9e11",
            "resourceVersion": "1200",
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.azure.com/mode": "system"
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "nodedrift.dev/state": "Clean",
                "nodedrift.dev/reboot-required-since": "2026-11-01T00:00:00Z"
            },
            "managedFields": [{"manager": "kubelet", "operation": "Update"}]
        },
        "spec": {
            "podCIDR": "10.244.0.0/24",
            "providerID": "azure:///subscriptions/x/vmss/0",
            "taints": [{"key": "CriticalAddonsOnly", "value": "true", "effect": "NoSchedule"}]
        },
        "status": {
            "capacity": {"cpu": "2", "memory": "8145300Ki", "pods": "110"},
            "allocatable": {"cpu": "1900m", "memory": "5493140Ki", "pods": "110"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "lastHeartbeatTime": "2026-11-22T08:00:00Z"},
                {"type": "NodeDrift", "status": "False", "reason": "NoDrift"},
                {"type": "RebootRequired", "status": "True", "reason": "PackageUpdate"}
            ],
            "addresses": [{"type": "InternalIP", "address": "10.224.0.4"}],
            "nodeInfo": {"kubeletVersion": "v1.31.2", "osImage": "Ubuntu 22.04.5 LTS"}
        }
    })
}

/// `node` with `change` applied, and what every write changes anyway (resourceVersion and the
/// managed fields), so those are shown not to matter.
fn changed(node: &Value, change: impl FnOnce(&mut Value)) -> Value {
    let mut n = node.clone();
    change(&mut n);
    n["metadata"]["resourceVersion"] = json!("1201");
    n["metadata"]["managedFields"] = json!([{"manager": "nodedrift", "operation": "Update"}]);
    n
}

/// An admission request (`request` in CEL): PATCH arrives as UPDATE.
fn request(user: &str, claim: Option<&str>, op: &str, resource: &str, name: &str) -> Value {
    let (group, resource, sub) = match resource.split_once('/') {
        Some(("events.k8s.io", r)) => ("events.k8s.io", r, ""),
        Some((r, s)) => ("", r, s),
        None => ("", resource, ""),
    };
    let mut user_info = json!({"username": user, "groups": ["system:serviceaccounts"]});
    if let Some(node) = claim {
        user_info["extra"] = json!({
            NODE_CLAIM: [node],
            "authentication.kubernetes.io/pod-name": ["nodedrift-x7k2p"]
        });
    }
    json!({
        "operation": op,
        "name": name,
        "namespace": if resource == "events" { "default" } else { "" },
        "resource": {"group": group, "version": "v1", "resource": resource},
        "subResource": sub,
        "userInfo": user_info
    })
}

/// The agent on node-a.
fn agent(op: &str, resource: &str, name: &str) -> Value {
    request(AGENT_USER, Some("node-a"), op, resource, name)
}

#[derive(Debug, Deserialize)]
struct Verdict {
    name: String,
    matched: bool,
    allowed: bool,
    denials: Vec<String>,
    errors: Vec<String>,
}

/// Runs every case through tests/deploy/vap_eval.py with the policy as deploy/ renders it.
fn evaluate(policy: &Value, cases: &[Value]) -> BTreeMap<String, Verdict> {
    let python = python_with("celpy", "cel-python");
    let mut child = Command::new(python)
        .arg(repo().join("tests/deploy/vap_eval.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vap_eval.py");
    let input = json!({"policy": policy, "cases": cases}).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "vap_eval.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Verdict = serde_json::from_str(l).expect("verdict JSON");
            (v.name.clone(), v)
        })
        .collect()
}

#[test]
fn the_admission_policy_lets_the_agent_change_only_what_it_owns_on_its_own_node() {
    let docs = render("deploy");
    let policy = one(&docs, "ValidatingAdmissionPolicy");
    let a = node("node-a");
    let b = node("node-b");
    let bare = {
        let mut n = a.clone();
        let meta = n["metadata"].as_object_mut().unwrap();
        meta.remove("annotations");
        meta.remove("labels");
        n["status"].as_object_mut().unwrap().remove("conditions");
        n
    };
    let event = |about: &str| {
        json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "node-a.nodedrift.1", "namespace": "default"},
            "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": about},
            "reason": "DriftDetected", "type": "Warning"
        })
    };
    let own_condition = json!({"type": "NodeDrift", "status": "True", "reason": "Drifted"});

    // (name, request, object, oldObject, allowed?)
    let cases: Vec<(&str, Value, Value, Value, bool)> = vec![
        (
            "own node: a nodedrift.dev annotation changes",
            agent("UPDATE", "nodes", "node-a"),
            changed(&a, |n| {
                n["metadata"]["annotations"]["nodedrift.dev/state"] = json!("Drifted")
            }),
            a.clone(),
            true,
        ),
        (
            "own node: nodedrift.dev annotations added and removed",
            agent("UPDATE", "nodes", "node-a"),
            changed(&a, |n| {
                let ann = n["metadata"]["annotations"].as_object_mut().unwrap();
                ann.remove("nodedrift.dev/reboot-required-since");
                ann.insert("nodedrift.dev/summary".into(), json!("3 failing"));
            }),
            a.clone(),
            true,
        ),
        (
            "another node",
            agent("UPDATE", "nodes", "node-b"),
            changed(&b, |n| {
                n["metadata"]["annotations"]["nodedrift.dev/state"] = json!("Drifted")
            }),
            b.clone(),
            false,
        ),
        (
            "a foreign annotation changes",
            agent("UPDATE", "nodes", "node-a"),
            changed(&a, |n| {
                n["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"] = json!("30")
            }),
            a.clone(),
            false,
        ),
        (
            "a foreign annotation is added",
            agent("UPDATE", "nodes", "node-a"),
            changed(&a, |n| {
                n["metadata"]["annotations"]["example.com/owner"] = json!("me")
            }),
            a.clone(),
            false,
        ),
        (
            "a foreign annotation is removed",
            agent("UPDATE", "nodes", "node-a"),
            changed(&a, |n| {
                n["metadata"]["annotations"]
                    .as_object_mut()
                    .unwrap()
                    .remove("volumes.kubernetes.io/controller-managed-attach-detach");
            }),
            a.clone(),
            false,
        ),
        (
            "a label changes",
            agent("UPDATE", "nodes", "node-a"),
            changed(&a, |n| {
                n["metadata"]["labels"]["kubernetes.azure.com/mode"] = json!("user")
            }),
            a.clone(),
            false,
        ),
        (
            "a taint is removed",
            agent("UPDATE", "nodes", "node-a"),
            changed(&a, |n| n["spec"]["taints"] = json!([])),
            a.clone(),
            false,
        ),
        (
            "the node is cordoned",
            agent("UPDATE", "nodes", "node-a"),
            changed(&a, |n| n["spec"]["unschedulable"] = json!(true)),
            a.clone(),
            false,
        ),
        (
            "a finalizer is added",
            agent("UPDATE", "nodes", "node-a"),
            changed(&a, |n| {
                n["metadata"]["finalizers"] = json!(["example.com/keep"])
            }),
            a.clone(),
            false,
        ),
        (
            "no annotations or labels at all: the agent adds its own",
            agent("UPDATE", "nodes", "node-a"),
            changed(&bare, |n| {
                n["metadata"]["annotations"] = json!({"nodedrift.dev/state": "Clean"});
            }),
            bare.clone(),
            true,
        ),
        (
            "no annotations at all: a foreign one appears",
            agent("UPDATE", "nodes", "node-a"),
            changed(&bare, |n| {
                n["metadata"]["annotations"] = json!({"example.com/x": "1"})
            }),
            bare.clone(),
            false,
        ),
        (
            "status: NodeDrift changes",
            agent("UPDATE", "nodes/status", "node-a"),
            changed(&a, |n| n["status"]["conditions"][2] = own_condition.clone()),
            a.clone(),
            true,
        ),
        (
            "status: RebootRequired clears",
            agent("UPDATE", "nodes/status", "node-a"),
            changed(&a, |n| {
                n["status"]["conditions"][3] =
                    json!({"type": "RebootRequired", "status": "False", "reason": "NoReboot"});
            }),
            a.clone(),
            true,
        ),
        (
            "status: the agent's first conditions on a node with none",
            agent("UPDATE", "nodes/status", "node-a"),
            changed(&bare, |n| {
                n["status"]["conditions"] = json!([own_condition.clone()])
            }),
            bare.clone(),
            true,
        ),
        (
            "status: Ready changes",
            agent("UPDATE", "nodes/status", "node-a"),
            changed(&a, |n| {
                n["status"]["conditions"][1]["status"] = json!("False")
            }),
            a.clone(),
            false,
        ),
        (
            "status: Ready is removed",
            agent("UPDATE", "nodes/status", "node-a"),
            changed(&a, |n| {
                n["status"]["conditions"].as_array_mut().unwrap().remove(1);
            }),
            a.clone(),
            false,
        ),
        (
            "status: a foreign condition is added",
            agent("UPDATE", "nodes/status", "node-a"),
            changed(&a, |n| {
                n["status"]["conditions"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "KernelDeadlock", "status": "False"}));
            }),
            a.clone(),
            false,
        ),
        (
            "status: capacity changes",
            agent("UPDATE", "nodes/status", "node-a"),
            changed(&a, |n| n["status"]["capacity"]["pods"] = json!("250")),
            a.clone(),
            false,
        ),
        (
            "status: an address is added",
            agent("UPDATE", "nodes/status", "node-a"),
            changed(&a, |n| {
                n["status"]["addresses"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "ExternalIP", "address": "203.0.113.9"}));
            }),
            a.clone(),
            false,
        ),
        (
            "status of another node",
            agent("UPDATE", "nodes/status", "node-b"),
            changed(&b, |n| n["status"]["conditions"][2] = own_condition.clone()),
            b.clone(),
            false,
        ),
        (
            "a token without the node claim",
            request(AGENT_USER, None, "UPDATE", "nodes", "node-a"),
            changed(&a, |n| {
                n["metadata"]["annotations"]["nodedrift.dev/state"] = json!("Drifted")
            }),
            a.clone(),
            false,
        ),
        (
            "deleting its own node",
            agent("DELETE", "nodes", "node-a"),
            Value::Null,
            a.clone(),
            false,
        ),
        (
            "creating a node",
            agent("CREATE", "nodes", "node-a"),
            a.clone(),
            Value::Null,
            false,
        ),
        (
            "an Event about its own node",
            agent("CREATE", "events", "node-a.nodedrift.1"),
            event("node-a"),
            Value::Null,
            true,
        ),
        (
            "an Event it sent, updated",
            agent("UPDATE", "events", "node-a.nodedrift.1"),
            changed(&event("node-a"), |e| e["count"] = json!(2)),
            event("node-a"),
            true,
        ),
        (
            "an Event about another node",
            agent("CREATE", "events", "node-b.nodedrift.1"),
            event("node-b"),
            Value::Null,
            false,
        ),
        (
            "an events.k8s.io Event",
            agent("CREATE", "events.k8s.io/events", "node-a.nodedrift.1"),
            event("node-a"),
            Value::Null,
            false,
        ),
        (
            "deleting an Event",
            agent("DELETE", "events", "node-a.nodedrift.1"),
            Value::Null,
            event("node-a"),
            false,
        ),
    ];
    // Not the agent: the policy does not apply.
    let kubelet = request("system:node:node-a", None, "UPDATE", "nodes", "node-a");
    let other_sa = request(
        "system:serviceaccount:kube-system:node-labeller",
        Some("node-a"),
        "UPDATE",
        "nodes",
        "node-a",
    );
    let relabel = changed(&a, |n| {
        n["metadata"]["labels"]["example.com/x"] = json!("1")
    });

    let mut input: Vec<Value> = cases
        .iter()
        .map(|(name, req, obj, old, _)| {
            json!({"name": name, "request": req, "object": obj, "oldObject": old})
        })
        .collect();
    input.push(json!({"name": "kubelet", "request": kubelet, "object": relabel, "oldObject": a}));
    input.push(json!({"name": "other sa", "request": other_sa, "object": relabel, "oldObject": a}));
    let verdicts = evaluate(policy, &input);
    assert_eq!(verdicts.len(), input.len());

    let mut wrong = Vec::new();
    for (name, _, _, _, allowed) in &cases {
        let v = &verdicts[*name];
        if !v.matched || v.allowed != *allowed || !v.errors.is_empty() {
            wrong.push(format!("{name}: expected allowed={allowed}, got {v:?}"));
        } else if !v.allowed && v.denials.iter().all(|d| !d.starts_with("nodedrift: ")) {
            wrong.push(format!(
                "{name}: denied without the policy's message: {v:?}"
            ));
        }
    }
    for name in ["kubelet", "other sa"] {
        let v = &verdicts[name];
        if v.matched || !v.allowed {
            wrong.push(format!("{name}: the policy must not apply: {v:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_admission_policy_compares_every_node_status_field_but_conditions() {
    let docs = render("deploy");
    let policy = one(&docs, "ValidatingAdmissionPolicy");
    let expr = policy["spec"]["validations"]
        .as_array()
        .expect("validations")
        .iter()
        .filter_map(|v| v["expression"].as_str())
        .find(|e| e.contains("'addresses'"))
        .expect("the validation listing the status fields");
    let list = expr
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(l, _)| l)
        .expect("a list literal");
    let listed: BTreeSet<String> = list
        .split(',')
        .map(|s| s.trim().trim_matches('\'').to_owned())
        .collect();

    // The newest NodeStatus schema kubernetes-validate bundles.
    let python = python_with("kubernetes_validate", "kubernetes-validate");
    let out = Command::new(python)
        .args([
            "-c",
            "import kubernetes_validate, os; print(os.path.dirname(kubernetes_validate.__file__))",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let pkg = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let schema = pkg.join(format!(
        "kubernetes-json-schema/v{NEWEST}-local-strict/nodestatus-v1.json"
    ));
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(&schema).unwrap_or_else(|e| panic!("{}: {e}", schema.display())),
    )
    .unwrap();
    let fields: BTreeSet<String> = schema["properties"]
        .as_object()
        .expect("NodeStatus properties")
        .keys()
        .filter(|k| *k != "conditions")
        .cloned()
        .collect();
    assert_eq!(listed, fields, "NodeStatus fields in Kubernetes {NEWEST}");
}

// ---------------------------------------------------------------------------------------------
// The agent with exactly the DaemonSet's privileges.

/// Capability names in the order of their numbers (linux/capability.h).
#[rustfmt::skip]
const CAPABILITY_NAMES: [&str; 41] = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
];

/// The bit of capability `name` (as a pod spec spells it) in /proc/<pid>/status's sets.
fn capability_bit(name: &str) -> u64 {
    let n = CAPABILITY_NAMES
        .iter()
        .position(|c| *c == name)
        .unwrap_or_else(|| panic!("unknown capability {name}"));
    1 << n
}

/// A copy of the drifted AKS fixture with one file only DAC_READ_SEARCH lets uid 0 read: a
/// user's SSH key (watched by the `access` file set), in a 0700 directory the user owns.
fn host_with_a_users_private_file() -> tempfile::TempDir {
    use std::os::unix::fs::{PermissionsExt, chown};
    let host = prepared_host("aks-ubuntu-drifted");
    let home = host.path().join("home/azureuser");
    let ssh = home.join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let key = ssh.join("authorized_keys");
    std::fs::write(
        &key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDeploy alice@laptop\n",
    )
    .unwrap();
    for (p, mode) in [(&home, 0o700), (&ssh, 0o700), (&key, 0o600)] {
        chown(p, Some(1000), Some(1000)).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    host
}

/// What the DaemonSet runs, with its config and baseline from the ConfigMap: the config's
/// files, written where the test can mount them, its mount path mapped to theirs.
struct Deployment {
    capabilities: Vec<String>,
    args: Vec<String>,
    config_dir: tempfile::TempDir,
}

fn deployment() -> Deployment {
    let docs = render("deploy");
    let ds = one(&docs, "DaemonSet");
    let (mount, _) = mount_of(ds, "config");
    let config_dir = tempfile::tempdir().unwrap();
    let here = format!("{}/", path_str(config_dir.path()));
    for (name, text) in configmap_files(&docs) {
        let text = text.replace(&format!("{mount}/"), &here);
        std::fs::write(config_dir.path().join(name), text).unwrap();
    }
    let args = container(ds)["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| {
            a.as_str()
                .expect("arg")
                .replace(&format!("{mount}/"), &here)
        })
        .collect();
    Deployment {
        capabilities: capabilities(ds),
        args,
        config_dir,
    }
}

/// `setpriv` arguments giving a process what a container with `capabilities: {drop: [ALL],
/// add: caps}`, `runAsUser: 0` and `allowPrivilegeEscalation: false` gets from containerd and
/// runc: uid/gid 0, no supplementary groups, bounding = permitted = effective = `caps`,
/// inheritable and ambient empty, no_new_privs.
fn setpriv_args(caps: &[String]) -> Vec<String> {
    let list: String = caps
        .iter()
        .map(|c| format!(",+{}", c.to_lowercase()))
        .collect();
    [
        "--reuid=0",
        "--regid=0",
        "--clear-groups",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        &format!("--bounding-set=-all{list}"),
        "--no-new-privs",
        "--",
    ]
    .map(String::from)
    .to_vec()
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test reproduces the DaemonSet's uid 0 and capabilities: run it as root (CI does)"
    );
}

/// Starts the DaemonSet's command under `caps` only, in a mount namespace where `host` and the
/// config are bind-mounted read-only over themselves; the agent listens on loopback.
fn start_agent(d: &Deployment, caps: &[String], host: &Path) -> Agent {
    require_root();
    let state = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(tool("unshare", "util-linux"));
    clean_env(&mut cmd);
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(
            "for d in \"$1\" \"$2\"; do \
               mount --bind \"$d\" \"$d\" && mount -o remount,bind,ro \"$d\" || exit 1; \
             done; shift 2; exec \"$@\"",
        )
        .arg("sh")
        .arg(host)
        .arg(d.config_dir.path())
        .arg(tool("setpriv", "util-linux"))
        .args(setpriv_args(caps))
        .arg(env!("CARGO_BIN_EXE_nodedrift"))
        .args(&d.args)
        // Where the test has the host, the state dir and a free port, instead of /host,
        // /var/lib/nodedrift and 0.0.0.0:9101 (flags win over the config file).
        .arg("--host-root")
        .arg(host)
        .arg("--state-dir")
        .arg(state.path())
        .args(["--listen", "127.0.0.1:0"])
        // The Downward API's values.
        .env("NODE_NAME", "aks-nodepool1-12345678-vmss000000")
        .env("POD_NAME", "nodedrift-x7k2p");
    Agent::spawn(cmd, state)
}

/// `CapXxx` of `/proc/<pid>/status` as a bit set.
fn cap_set(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:\t")))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or_else(|| panic!("{field} in {status}"))
}

fn rule_line(rule: &str, status: &str) -> String {
    format!("nodedrift_rule_status{{rule=\"{rule}\",status=\"{status}\"}} 1")
}

#[test]
fn the_agent_works_with_exactly_the_daemonsets_privileges_on_a_read_only_host() {
    let d = deployment();
    assert_eq!(d.capabilities, CAPABILITIES);
    let host = host_with_a_users_private_file();
    let agent = start_agent(&d, &d.capabilities, host.path());

    // The sandbox is what the DaemonSet describes.
    let pid = agent.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let want: u64 = d
        .capabilities
        .iter()
        .map(|c| capability_bit(c))
        .fold(0, |a, b| a | b);
    for set in ["CapPrm", "CapEff", "CapBnd"] {
        assert_eq!(cap_set(&status, set), want, "{set}:\n{status}");
    }
    assert_eq!(cap_set(&status, "CapInh"), 0);
    assert_eq!(cap_set(&status, "CapAmb"), 0);
    assert!(status.contains("\nNoNewPrivs:\t1\n"), "{status}");
    assert!(status.contains("\nUid:\t0\t0\t0\t0\n"), "{status}");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let host_mount = mounts
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .rfind(|f| f.len() > 5 && f[4] == path_str(host.path()))
        .unwrap_or_else(|| panic!("no mount of the host in\n{mounts}"));
    assert!(
        host_mount[5].split(',').any(|o| o == "ro"),
        "the host is mounted read-only: {host_mount:?}"
    );

    // Ready, and reporting: the fixture's drift, at the severity the ConfigMap's site layer
    // gives it (critical, from high), and the user's private key captured.
    agent.wait_ready();
    let metrics = agent.wait_metrics("the findings of the first check", |m| {
        m.contains(&rule_line("kubelet.read-only-port-disabled", "fail"))
            && m.contains(&rule_line("files.access", "pass"))
    });
    assert!(
        metrics.contains("nodedrift_findings_open{severity=\"critical\",component=\"kubelet\"} 1"),
        "the site baseline from the ConfigMap is applied:\n{metrics}"
    );
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn without_dac_read_search_a_users_private_file_is_unknown() {
    let d = deployment();
    let host = host_with_a_users_private_file();
    let fewer: Vec<String> = d
        .capabilities
        .iter()
        .filter(|c| *c != "DAC_READ_SEARCH")
        .cloned()
        .collect();
    assert_eq!(
        fewer.len(),
        d.capabilities.len() - 1,
        "the DaemonSet lists it"
    );
    let agent = start_agent(&d, &fewer, host.path());
    agent.wait_ready();
    agent.wait_metrics("the access watch set unknown", |m| {
        m.contains(&rule_line("files.access", "unknown"))
    });
    assert_eq!(agent.terminate(), Some(0));

    // Which path, and why: the capture under the same privileges names it; with the
    // DaemonSet's full list nothing is left out.
    let capture = |caps: &[String]| {
        let state = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(tool("setpriv", "util-linux"));
        clean_env(&mut cmd);
        cmd.args(setpriv_args(caps))
            .arg(env!("CARGO_BIN_EXE_nodedrift"))
            .args(["baseline", "capture", "--json", "--host-root"])
            .arg(host.path())
            .arg("--state-dir")
            .arg(state.path());
        let out = run_bounded(&mut cmd, 60);
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("capture: {e}\n{}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), report["errors"].clone())
    };
    assert_eq!(
        capture(&fewer),
        (Some(3), json!(["/home/azureuser: permission denied"]))
    );
    assert_eq!(capture(&d.capabilities), (Some(0), json!([])));
}
