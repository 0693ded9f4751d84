//! Unit tests of the kubelet inspector against small host trees built in temp dirs, including
//! every bad input the inspector must survive with a clear unknown.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use serde_json::{Value, json};

use super::*;
use crate::host::HostRoot;
use crate::inspect::{Options, ProcessTable};

const GOOD: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nreadOnlyPort: 0\nauthentication:\n  anonymous:\n    enabled: false\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\nfeatureGates:\n  KubeletTracing: true\n  EventedPLEG: false\n";

/// A host tree with a kubelet process `pid` whose cwd is `cwd` and args `args`.
fn host_with_kubelet(pid: u32, cwd: &str, args: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_proc(dir.path(), pid, cwd, args, true);
    dir
}

fn write_proc(root: &Path, pid: u32, cwd: &str, args: &[&str], trailing_nul: bool) {
    let p = root.join(format!("proc/{pid}"));
    fs::create_dir_all(&p).unwrap();
    let mut cmdline = args.join("\0");
    if trailing_nul {
        cmdline.push('\0');
    }
    fs::write(p.join("cmdline"), cmdline).unwrap();
    fs::write(p.join("comm"), "kubelet\n").unwrap();
    symlink(cwd, p.join("cwd")).unwrap();
}

fn put(root: &Path, path: &str, text: &str) {
    let p = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn run_with(root: &Path, procs: &ProcessTable) -> Value {
    let host = HostRoot::new(root).unwrap();
    let opts = Options::default();
    let ctx = Context {
        host: &host,
        procs,
        options: &opts,
    };
    serde_json::to_value(inspect(&ctx)).unwrap()
}

fn run(root: &Path) -> Value {
    let host = HostRoot::new(root).unwrap();
    let procs = ProcessTable::scan(&host);
    run_with(root, &procs)
}

fn unknown(v: &Value) -> &str {
    v.get("$unknown")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("expected an unknown marker, got {v}"))
}

#[test]
fn flags_override_the_file_and_gates_merge_per_gate() {
    let dir = host_with_kubelet(
        1201,
        "/var/lib/kubelet",
        &[
            "/usr/local/bin/kubelet",
            "--config=config.yaml",
            "--read-only-port",
            "10255",
            "--feature-gates=EventedPLEG=true,NodeSwap=true",
            "--node-labels=kubernetes.azure.com/role=agent",
            "--kubeconfig",
            "/var/lib/kubelet/kubeconfig",
        ],
    );
    put(dir.path(), "/var/lib/kubelet/config.yaml", GOOD);
    put(
        dir.path(),
        "/var/lib/kubelet/kubeconfig",
        "apiVersion: v1\n",
    );
    let v = run(dir.path());
    let f = &v["facts"];
    assert_eq!(f["running"], true);
    assert_eq!(f["process"]["pid"], 1201);
    assert_eq!(f["configFile"]["path"], "/var/lib/kubelet/config.yaml");
    assert_eq!(f["config"]["readOnlyPort"], 10255);
    assert_eq!(
        v["evidence"]["config.readOnlyPort"],
        json!({"pid": 1201, "source": "flag"})
    );
    assert_eq!(f["config"]["authentication"]["anonymous"]["enabled"], false);
    assert_eq!(
        v["evidence"]["config.authentication.anonymous.enabled"],
        json!({"file": "/var/lib/kubelet/config.yaml", "pid": 1201, "source": "config"})
    );
    // A default the file does not set.
    assert_eq!(f["config"]["authentication"]["webhook"]["enabled"], true);
    assert_eq!(
        v["evidence"]["config.authentication.webhook.enabled"]["source"],
        "default"
    );
    assert_eq!(f["config"]["streamingConnectionIdleTimeout"], "4h0m0s");
    // Gates: the flag overrides EventedPLEG, the file's KubeletTracing stays.
    assert_eq!(
        f["config"]["featureGates"],
        json!({"EventedPLEG": true, "KubeletTracing": true, "NodeSwap": true})
    );
    assert_eq!(
        f["featureGates"]["EventedPLEG"],
        json!({"enabled": true, "source": "flag", "stage": "alpha", "default": false, "lockedToDefault": false})
    );
    assert_eq!(f["featureGates"]["KubeletTracing"]["source"], "config");
    assert_eq!(f["featureGates"]["KubeletTracing"]["stage"], "ga");
    assert_eq!(f["featureGateStages"]["kubernetesVersion"], "1.35");
    assert!(unknown(&f["version"]).contains("not recorded"));
    assert_eq!(f["flags"]["node-labels"], "kubernetes.azure.com/role=agent");
    assert_eq!(f["files"]["config"]["exists"], true);
    assert_eq!(
        f["files"]["kubeconfig"]["path"],
        "/var/lib/kubelet/kubeconfig"
    );
    assert_eq!(
        f["files"]["clientCA"],
        json!({"path": "/etc/kubernetes/pki/ca.crt", "exists": false})
    );
}

#[test]
fn without_config_the_legacy_flag_defaults_apply() {
    let dir = host_with_kubelet(1201, "/", &["kubelet", "--authorization-mode=Webhook"]);
    let v = run(dir.path());
    let c = &v["facts"]["config"];
    assert_eq!(c["readOnlyPort"], 10255);
    assert_eq!(c["authentication"]["anonymous"]["enabled"], true);
    assert_eq!(c["authentication"]["webhook"]["enabled"], false);
    assert_eq!(c["authorization"]["mode"], "Webhook");
    assert_eq!(v["evidence"]["config.readOnlyPort"]["source"], "default");
    assert_eq!(v["facts"]["configFile"]["path"], Value::Null);
}

#[test]
fn unknown_gates_and_gates_of_other_releases_are_unknown_never_guessed() {
    let dir = host_with_kubelet(
        1201,
        "/",
        &["kubelet", "--feature-gates=MadeUpGate=true,AppArmor=true"],
    );
    let v = run(dir.path());
    let g = &v["facts"]["featureGates"];
    assert_eq!(g["MadeUpGate"]["stage"], "unknown");
    assert_eq!(g["AppArmor"]["stage"], "unknown");
    assert!(g["AppArmor"]["note"].as_str().unwrap().contains("1.33"));
}

#[test]
fn repeated_flags_keep_the_last_scalar_and_accumulate_lists() {
    let dir = host_with_kubelet(
        1201,
        "/",
        &[
            "kubelet",
            "--read-only-port=0",
            "--read-only-port=10255",
            "--cluster-dns=10.0.0.10",
            "--cluster-dns=10.0.0.11",
        ],
    );
    let v = run(dir.path());
    let f = &v["facts"];
    assert_eq!(f["flags"]["read-only-port"], "10255");
    assert_eq!(f["flagsRepeated"]["read-only-port"], json!(["0", "10255"]));
    assert!(
        v["evidence"]["flagsRepeated.read-only-port"]["source"]
            .as_str()
            .unwrap()
            .contains("last value")
    );
    assert_eq!(f["config"]["readOnlyPort"], 10255);
    assert_eq!(f["config"]["clusterDNS"], json!(["10.0.0.10", "10.0.0.11"]));
}

#[test]
fn a_bad_flag_value_makes_only_its_field_unknown() {
    let dir = host_with_kubelet(
        1201,
        "/",
        &["kubelet", "--read-only-port=abc", "--anonymous-auth=false"],
    );
    let v = run(dir.path());
    assert!(unknown(&v["facts"]["config"]["readOnlyPort"]).contains("--read-only-port=abc"));
    assert_eq!(
        v["facts"]["config"]["authentication"]["anonymous"]["enabled"],
        false
    );
}

#[test]
fn truncated_cmdline_makes_the_last_flag_unknown() {
    let dir = tempfile::tempdir().unwrap();
    write_proc(
        dir.path(),
        1201,
        "/",
        &["kubelet", "--anonymous-auth=false", "--read-only-port=10"],
        false,
    );
    let v = run(dir.path());
    let f = &v["facts"];
    assert_eq!(f["process"]["cmdlineTruncated"], true);
    assert!(unknown(&f["flags"]["read-only-port"]).contains("/proc/1201/cmdline"));
    assert!(unknown(&f["config"]["readOnlyPort"]).contains("truncated"));
    assert_eq!(f["config"]["authentication"]["anonymous"]["enabled"], false);

    let dir = tempfile::tempdir().unwrap();
    write_proc(
        dir.path(),
        1201,
        "/",
        &["kubelet", "--config=/var/lib/kub"],
        false,
    );
    let v = run(dir.path());
    assert!(unknown(&v["facts"]["config"]).contains("truncated inside --config"));
}

#[test]
fn process_that_exits_mid_read_gives_unknown_not_panic() {
    // The table lists pid 4242, but its /proc directory is gone when the inspector reads it.
    let dir = tempfile::tempdir().unwrap();
    let procs = ProcessTable {
        processes: vec![crate::inspect::Process {
            pid: 4242,
            argv: vec!["kubelet".into(), "--config=config.yaml".into()],
            comm: "kubelet".into(),
        }],
        error: None,
    };
    let v = run_with(dir.path(), &procs);
    let r = unknown(&v["facts"]["config"]);
    assert!(r.contains("pid 4242") && r.contains("exited"), "{r}");
    assert!(unknown(&v["facts"]["files"]["config"]).contains("/proc/4242"));
}

#[test]
fn malformed_yaml_is_unknown_naming_the_file() {
    let dir = host_with_kubelet(
        1201,
        "/",
        &["kubelet", "--config=/var/lib/kubelet/config.yaml"],
    );
    put(
        dir.path(),
        "/var/lib/kubelet/config.yaml",
        "kind: KubeletConfiguration\nreadOnlyPort: [\n",
    );
    let v = run(dir.path());
    let r = unknown(&v["facts"]["config"]);
    assert!(
        r.contains("/var/lib/kubelet/config.yaml") && r.contains("malformed YAML"),
        "{r}"
    );
    assert_eq!(v["facts"]["files"]["config"]["exists"], true);
}

#[test]
fn wrong_kind_is_unknown() {
    let dir = host_with_kubelet(1201, "/", &["kubelet", "--config=/c.yaml"]);
    put(dir.path(), "/c.yaml", "apiVersion: v1\nkind: ConfigMap\n");
    let v = run(dir.path());
    assert!(unknown(&v["facts"]["config"]).contains("not KubeletConfiguration"));
}

#[test]
fn config_that_is_a_directory_is_unknown() {
    let dir = host_with_kubelet(
        1201,
        "/",
        &["kubelet", "--config=/var/lib/kubelet/config.yaml"],
    );
    fs::create_dir_all(dir.path().join("var/lib/kubelet/config.yaml")).unwrap();
    let v = run(dir.path());
    let r = unknown(&v["facts"]["config"]);
    assert!(
        r.contains("/var/lib/kubelet/config.yaml") && r.contains("directory"),
        "{r}"
    );
    assert_eq!(v["facts"]["files"]["config"]["kind"], "directory");
}

#[test]
fn symlink_loop_as_config_is_unknown() {
    let dir = host_with_kubelet(1201, "/", &["kubelet", "--config=/etc/a.yaml"]);
    fs::create_dir_all(dir.path().join("etc")).unwrap();
    symlink("/etc/b.yaml", dir.path().join("etc/a.yaml")).unwrap();
    symlink("/etc/a.yaml", dir.path().join("etc/b.yaml")).unwrap();
    let v = run(dir.path());
    let r = unknown(&v["facts"]["config"]);
    assert!(
        r.contains("/etc/a.yaml") && r.contains("symbolic links"),
        "{r}"
    );
    assert!(unknown(&v["facts"]["files"]["config"]).contains("/etc/a.yaml"));
}

#[test]
fn absolute_symlink_resolves_inside_the_root_never_outside() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("config.yaml");
    fs::write(
        &target,
        GOOD.replace("readOnlyPort: 0", "readOnlyPort: 4242"),
    )
    .unwrap();
    let dir = host_with_kubelet(
        1201,
        "/",
        &["kubelet", "--config=/var/lib/kubelet/config.yaml"],
    );
    fs::create_dir_all(dir.path().join("var/lib/kubelet")).unwrap();
    symlink(&target, dir.path().join("var/lib/kubelet/config.yaml")).unwrap();
    // Nothing at that path inside the root: not found, naming the path.
    let v = run(dir.path());
    let r = unknown(&v["facts"]["config"]);
    assert!(
        r.contains("/var/lib/kubelet/config.yaml") && r.contains("not found"),
        "{r}"
    );
    assert!(!v.to_string().contains("4242"));
    // The same path inside the root is what gets read.
    put(dir.path(), target.to_str().unwrap(), GOOD);
    let v = run(dir.path());
    assert_eq!(v["facts"]["config"]["readOnlyPort"], 0);
}

#[test]
fn two_gigabyte_sparse_config_is_not_read() {
    let dir = host_with_kubelet(1201, "/", &["kubelet", "--config=/big.yaml"]);
    let f = fs::File::create(dir.path().join("big.yaml")).unwrap();
    f.set_len(2 << 30).unwrap();
    let v = run(dir.path());
    let r = unknown(&v["facts"]["config"]);
    assert!(r.contains("/big.yaml") && r.contains("read limit"), "{r}");
}

#[test]
fn fifo_named_config_yaml_is_not_opened() {
    let dir = host_with_kubelet(
        1201,
        "/var/lib/kubelet",
        &["kubelet", "--config=config.yaml"],
    );
    fs::create_dir_all(dir.path().join("var/lib/kubelet")).unwrap();
    nix::unistd::mkfifo(
        &dir.path().join("var/lib/kubelet/config.yaml"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    let v = run(dir.path());
    let r = unknown(&v["facts"]["config"]);
    assert!(
        r.contains("/var/lib/kubelet/config.yaml") && r.contains("FIFO"),
        "{r}"
    );
    assert_eq!(v["facts"]["files"]["config"]["kind"], "fifo");
}

#[test]
fn several_kubelets_report_all_and_inspect_the_lowest_pid() {
    let dir = tempfile::tempdir().unwrap();
    write_proc(
        dir.path(),
        1300,
        "/",
        &["/usr/bin/kubelet", "--read-only-port=1"],
        true,
    );
    write_proc(
        dir.path(),
        1201,
        "/",
        &["/hyperkube", "kubelet", "--read-only-port=0"],
        true,
    );
    let v = run(dir.path());
    let p = &v["facts"]["process"];
    assert_eq!(p["pids"], json!([1201, 1300]));
    assert_eq!(p["pid"], 1201);
    assert!(p["selection"].as_str().unwrap().contains("lowest pid"));
    assert_eq!(v["facts"]["config"]["readOnlyPort"], 0);
}

#[test]
fn no_kubelet_process() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("proc")).unwrap();
    let v = run(dir.path());
    assert_eq!(v["facts"]["running"], false);
    assert!(unknown(&v["facts"]["config"]).contains("no kubelet process"));
}

#[test]
fn config_dir_drop_ins_apply_in_name_order() {
    let dir = host_with_kubelet(
        1201,
        "/",
        &[
            "kubelet",
            "--config=/var/lib/kubelet/config.yaml",
            "--config-dir=/etc/kubernetes/kubelet.conf.d",
        ],
    );
    put(dir.path(), "/var/lib/kubelet/config.yaml", GOOD);
    let head = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";
    put(
        dir.path(),
        "/etc/kubernetes/kubelet.conf.d/20-b.conf",
        &format!("{head}maxPods: 50\n"),
    );
    put(
        dir.path(),
        "/etc/kubernetes/kubelet.conf.d/10-a.conf",
        &format!("{head}maxPods: 30\nreadOnlyPort: 10255\n"),
    );
    put(
        dir.path(),
        "/etc/kubernetes/kubelet.conf.d/ignored.yaml",
        "not: read\n",
    );
    let v = run(dir.path());
    let c = &v["facts"]["config"];
    assert_eq!(c["maxPods"], 50);
    assert_eq!(c["readOnlyPort"], 10255);
    assert_eq!(
        v["evidence"]["config.maxPods"]["file"],
        "/etc/kubernetes/kubelet.conf.d/20-b.conf"
    );
}

#[test]
fn unit_drop_ins_and_environment_files() {
    let dir = host_with_kubelet(1201, "/", &["kubelet"]);
    put(
        dir.path(),
        "/lib/systemd/system/kubelet.service",
        "[Service]\nEnvironmentFile=/etc/default/ignored\nExecStart=/usr/bin/kubelet\n",
    );
    put(
        dir.path(),
        "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
        "[Service]\nEnvironment=\"KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml\"\nEnvironmentFile=\nEnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env\nEnvironmentFile=-/etc/default/kubelet\n",
    );
    put(
        dir.path(),
        "/var/lib/kubelet/kubeadm-flags.env",
        "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.10\"\n",
    );
    let v = run(dir.path());
    let f = &v["facts"];
    assert_eq!(
        f["files"]["unit"]["path"],
        "/lib/systemd/system/kubelet.service"
    );
    assert_eq!(f["files"]["dropIns"]["10-kubeadm.conf"]["exists"], true);
    let env = &f["environmentFiles"];
    assert!(
        env.get("/etc/default/ignored").is_none(),
        "reset by the empty assignment: {env}"
    );
    assert_eq!(
        env["/var/lib/kubelet/kubeadm-flags.env"]["flags"]["KUBELET_KUBEADM_ARGS"]["container-runtime-endpoint"],
        "unix:///var/run/containerd/containerd.sock"
    );
    assert_eq!(
        env["/etc/default/kubelet"],
        json!({"optional": true, "exists": false})
    );
    assert_eq!(
        f["unitEnvironment"]["KUBELET_CONFIG_ARGS"],
        "--config=/var/lib/kubelet/config.yaml"
    );
}

#[test]
fn zero_values_of_defaulted_fields_get_the_default_like_the_kubelet() {
    // kubeadm writes `0s` for durations it leaves unset; the kubelet defaults them.
    let dir = host_with_kubelet(1201, "/", &["kubelet", "--config=/c.yaml"]);
    put(
        dir.path(),
        "/c.yaml",
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstreamingConnectionIdleTimeout: 0s\ncgroupDriver: \"\"\nreadOnlyPort: 0\neventRecordQPS: 0\nmaxPods: null\n",
    );
    let v = run(dir.path());
    let c = &v["facts"]["config"];
    assert_eq!(c["streamingConnectionIdleTimeout"], "4h0m0s");
    assert_eq!(
        v["evidence"]["config.streamingConnectionIdleTimeout"]["source"],
        "default"
    );
    assert_eq!(c["cgroupDriver"], "cgroupfs");
    assert_eq!(c["maxPods"], 110);
    // Pointer fields keep an explicit zero.
    assert_eq!(c["eventRecordQPS"], 0);
    assert_eq!(v["evidence"]["config.eventRecordQPS"]["source"], "config");
    // A flag is applied after defaulting: 0 stays 0.
    let dir = host_with_kubelet(
        1201,
        "/",
        &[
            "kubelet",
            "--config=/c.yaml",
            "--streaming-connection-idle-timeout=0",
        ],
    );
    put(
        dir.path(),
        "/c.yaml",
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n",
    );
    let v = run(dir.path());
    assert_eq!(v["facts"]["config"]["streamingConnectionIdleTimeout"], "0s");
}
