//! Integration tests for the kubelet inspector: the real binary against the fixture hosts (with
//! the file modes git cannot keep applied from `<fixture>.modes`), the kubelet and kube-proxy
//! rules checked against those facts, and one live test reading a real process's `/proc`.
//!
//! `fixture_with_modes` and `check_rules` are shared with `kube_proxy.rs`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nodedrift::facts::{ComponentFacts, Evidence, FactPath, Facts, Lookup};
use serde_json::Value;

use crate::util::{fixture_host, inspect};

/// Copies the fixture host `name` into a temp dir (symlinks kept as links) and applies
/// `tests/fixtures/hosts/<name>.modes` (`MODE PATH` lines, `#` comments).
pub fn fixture_with_modes(name: &str) -> tempfile::TempDir {
    let src = fixture_host(name);
    let dst = tempfile::tempdir().expect("temp dir");
    copy_tree(&src, dst.path());
    let modes = src.with_extension("modes");
    if let Ok(text) = fs::read_to_string(&modes) {
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (mode, path) = line.split_once(' ').expect("MODE PATH");
            let mode = u32::from_str_radix(mode, 8).expect("octal mode");
            let p = dst.path().join(path.trim().trim_start_matches('/'));
            fs::set_permissions(&p, fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        }
    }
    dst
}

fn copy_tree(src: &Path, dst: &Path) {
    for entry in fs::read_dir(src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let entry = entry.expect("dir entry");
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let ft = entry.file_type().expect("file type");
        if ft.is_symlink() {
            symlink(fs::read_link(&from).expect("link"), &to).expect("symlink");
        } else if ft.is_dir() {
            fs::create_dir_all(&to).expect("mkdir");
            copy_tree(&from, &to);
        } else {
            fs::copy(&from, &to).expect("copy");
        }
    }
}

/// The facts the binary printed for `component`, as the library's model.
fn facts_of(json: &Value, component: &str) -> ComponentFacts {
    let c = &json[component];
    let mut cf = ComponentFacts::new(component);
    cf.facts = c["facts"].clone();
    if let Some(ev) = c.get("evidence") {
        cf.evidence =
            serde_json::from_value::<std::collections::BTreeMap<String, Evidence>>(ev.clone())
                .expect("evidence");
    }
    cf
}

/// The rules of `files` (profile-relative paths), later files patching earlier ones by id.
fn load_rules(files: &[&str]) -> Vec<serde_json::Map<String, Value>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("agent/src/baseline/profiles");
    let mut rules: Vec<serde_json::Map<String, Value>> = Vec::new();
    for f in files {
        let text = fs::read_to_string(dir.join(f)).expect("profile file");
        let doc: Value = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{f}: {e}"));
        for r in doc["rules"].as_array().expect("rules") {
            let r = r.as_object().expect("rule object").clone();
            let id = r["id"].as_str().expect("id").to_owned();
            match rules.iter_mut().find(|x| x["id"] == id.as_str()) {
                Some(existing) => existing.extend(r),
                None => rules.push(r),
            }
        }
    }
    rules
}

const GENERIC: &[&str] = &["generic/kubelet.yaml", "generic/kube-proxy.yaml"];
const AKS: &[&str] = &[
    "generic/kubelet.yaml",
    "generic/kube-proxy.yaml",
    "aks/kubelet.yaml",
    "aks/kube-proxy.yaml",
];

#[derive(Debug, PartialEq)]
enum Status {
    Pass,
    Fail(String),
    Unknown(String),
}

fn scalar_eq(a: &Value, b: &Value) -> bool {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    a == b || (!a.is_object() && !a.is_array() && !a.is_null() && s(a) == s(b))
}

/// A minimal checker for the expectations these rules use (the real evaluator lives in the
/// baseline module): equals, notIn, matches, modeAtMost, with `when` and wildcards.
fn check(rule: &serde_json::Map<String, Value>, facts: &Facts) -> Vec<(String, Status)> {
    let path = FactPath::parse(rule["path"].as_str().expect("path")).expect("rule path parses");
    let mut out = Vec::new();
    let matches = facts.resolve(&path);
    for m in matches {
        if let Some(Value::Object(when)) = rule.get("when") {
            let elem = m.element.join(".");
            let skip = when
                .iter()
                .any(|(k, want)| match facts.get(&format!("{elem}.{k}")) {
                    Lookup::Found(v) => !scalar_eq(v, want),
                    _ => true,
                });
            if skip {
                continue;
            }
        }
        let expect = rule["expect"].as_object().expect("expect");
        let (kind, want) = expect.iter().next().expect("one expectation");
        let status = match &m.value {
            Lookup::Unknown(r) => Status::Unknown(r.clone()),
            value => {
                let v = match value {
                    Lookup::Found(v) => (*v).clone(),
                    _ => Value::Null,
                };
                let ok = match kind.as_str() {
                    "equals" => scalar_eq(&v, want),
                    "notIn" => !want
                        .as_array()
                        .expect("list")
                        .iter()
                        .any(|w| scalar_eq(&v, w)),
                    "matches" => v.as_str().is_some_and(|s| {
                        regex::Regex::new(want.as_str().expect("regex"))
                            .expect("regex")
                            .is_match(s)
                    }),
                    "modeAtMost" => {
                        let m = |x: &Value| x.as_str().and_then(|s| u32::from_str_radix(s, 8).ok());
                        matches!((m(&v), m(want)), (Some(a), Some(b)) if a & !b == 0)
                    }
                    other => panic!("expectation {other} not handled by this checker"),
                };
                if ok {
                    Status::Pass
                } else {
                    Status::Fail(format!("{} = {v}", m.path()))
                }
            }
        };
        out.push((m.path(), status));
    }
    out
}

/// Runs the kubelet and kube-proxy inspectors on `root` and checks the rules of `profile`:
/// returns the ids of failing rules and of unknown ones.
pub fn check_rules(root: &Path, profile: &[&str]) -> (Vec<String>, Vec<String>) {
    let mut facts = Facts::default();
    for c in ["kubelet", "kube-proxy"] {
        facts.insert(facts_of(&inspect(c, root), c));
    }
    let mut failed = Vec::new();
    let mut unknown = Vec::new();
    for rule in load_rules(profile) {
        if rule.get("disabled").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let id = rule["id"].as_str().expect("id").to_owned();
        for (path, st) in check(&rule, &facts) {
            match st {
                Status::Pass => {}
                Status::Fail(why) => failed.push(format!("{id} ({why})")),
                Status::Unknown(why) => unknown.push(format!("{id} ({path}: {why})")),
            }
        }
    }
    (failed, unknown)
}

fn ids(v: &[String]) -> Vec<&str> {
    let mut ids: Vec<&str> = v
        .iter()
        .map(|s| s.split(' ').next().unwrap_or(""))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[test]
fn rule_files_are_valid() {
    let policy: Value = serde_norway::from_str(
        &fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("agent/src/baseline/policy.yaml"),
        )
        .expect("policy.yaml"),
    )
    .expect("policy parses");
    let clauses: Vec<&str> = policy["clauses"]
        .as_array()
        .expect("clauses")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    for profile in [GENERIC, AKS] {
        let rules = load_rules(profile);
        assert!(rules.len() >= 20, "{}", rules.len());
        for r in &rules {
            let id = r["id"].as_str().expect("id");
            for field in [
                "title",
                "path",
                "expect",
                "severity",
                "policy",
                "remediation",
            ] {
                assert!(r.contains_key(field), "{id}: no {field}");
            }
            assert!(
                FactPath::parse(r["path"].as_str().expect("path")).is_ok(),
                "{id}"
            );
            assert!(
                clauses.contains(&r["policy"].as_str().expect("policy")),
                "{id}: unknown policy"
            );
            assert!(
                ["info", "low", "medium", "high", "critical"]
                    .contains(&r["severity"].as_str().expect("severity")),
                "{id}"
            );
            assert_eq!(r["expect"].as_object().map(|e| e.len()), Some(1), "{id}");
        }
    }
    // The AKS layer only patches ids the generic layer defines, or adds new ones with a path.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("agent/src/baseline/profiles");
    for f in ["aks/kubelet.yaml", "aks/kube-proxy.yaml"] {
        let doc: Value =
            serde_norway::from_str(&fs::read_to_string(dir.join(f)).expect("read")).expect("parse");
        for r in doc["rules"].as_array().expect("rules") {
            let known = load_rules(GENERIC).iter().any(|g| g["id"] == r["id"]);
            assert!(
                known || r.get("path").is_some(),
                "{f}: {} patches nothing",
                r["id"]
            );
        }
    }
}

#[test]
fn clean_fixtures_pass_every_kubelet_and_kube_proxy_rule() {
    for (host, profile) in [
        ("aks-ubuntu-clean", AKS),
        ("azurelinux-kernel-mismatch", AKS),
        ("kubeadm", GENERIC),
    ] {
        let root = fixture_with_modes(host);
        let (failed, unknown) = check_rules(root.path(), profile);
        // Owners are whoever checked the tree out: only root-owned checkouts can pass them.
        let failed: Vec<&String> = if nix::unistd::Uid::effective().is_root() {
            failed.iter().collect()
        } else {
            failed.iter().filter(|f| !f.contains("-owner ")).collect()
        };
        assert!(failed.is_empty(), "{host}: {failed:#?}");
        assert!(unknown.is_empty(), "{host}: {unknown:#?}");
    }
}

#[test]
fn drifted_fixture_fails_exactly_the_planted_drift() {
    let root = fixture_with_modes("aks-ubuntu-drifted");
    let (failed, unknown) = check_rules(root.path(), AKS);
    let failed: Vec<String> = failed
        .into_iter()
        .filter(|f| !f.contains("-owner "))
        .collect();
    assert_eq!(
        ids(&failed),
        vec![
            "kube-proxy.metrics-bind-loopback",
            "kubelet.anonymous-auth-disabled",
            "kubelet.no-alpha-feature-gates",
            "kubelet.read-only-port-disabled",
        ],
        "{failed:#?}"
    );
    assert!(unknown.is_empty(), "{unknown:#?}");
}

#[test]
fn aks_fixture_facts() {
    let root = fixture_with_modes("aks-ubuntu-drifted");
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
    let root = fixture_with_modes("kubeadm");
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
