//! The inspector as a whole: daemon selection, socket handling (regular file, stale socket, a
//! server that never answers) and the merge-strategy decision.

use std::fs;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::facts::unknown_reason;
use crate::inspect::{Options, ProcessTable};

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, host_path: &str) -> PathBuf {
        self.dir.path().join(host_path.trim_start_matches('/'))
    }

    fn write(&self, host_path: &str, text: &str) {
        let p = self.path(host_path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn mkdir(&self, host_path: &str) {
        fs::create_dir_all(self.path(host_path)).unwrap();
    }

    fn inspect(&self, procs: &ProcessTable, options: &Options) -> Json {
        let host = HostRoot::new(self.dir.path()).unwrap();
        let ctx = Context {
            host: &host,
            procs,
            options,
        };
        inspect(&ctx).facts
    }
}

fn daemon(pid: u32, argv: &[&str]) -> Process {
    Process {
        pid,
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        comm: "containerd".into(),
    }
}

fn table(processes: Vec<Process>) -> ProcessTable {
    ProcessTable {
        processes,
        error: None,
    }
}

fn fast() -> Options {
    Options {
        api_timeout: Duration::from_millis(500),
        ..Options::default()
    }
}

fn reason(v: &Json) -> &str {
    unknown_reason(v).unwrap_or_else(|| panic!("not unknown: {v}"))
}

#[test]
fn flags_in_every_form() {
    let a = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        flag_value(&a(&["-c", "/x.toml"]), &["config", "c"]).as_deref(),
        Some("/x.toml")
    );
    assert_eq!(
        flag_value(&a(&["--config=/y.toml"]), &["config", "c"]).as_deref(),
        Some("/y.toml")
    );
    assert_eq!(
        flag_value(
            &a(&["--config", "/a", "-l", "debug", "-c=/b"]),
            &["config", "c"]
        )
        .as_deref(),
        Some("/b"),
        "the last alias wins"
    );
    assert_eq!(flag_value(&a(&["--", "-c", "/z"]), &["config", "c"]), None);
    assert_eq!(flag_value(&a(&["--address"]), &["address", "a"]), None);
}

#[test]
fn shims_and_subcommands_are_not_the_daemon() {
    let h = Host::new();
    let procs = table(vec![
        daemon(
            10,
            &["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io"],
        ),
        daemon(11, &["containerd", "config", "dump"]),
    ]);
    let f = h.inspect(&procs, &fast());
    assert_eq!(f["running"], json!(false));
    assert_eq!(f["processes"], json!([]));
}

#[test]
fn selects_the_daemon_serving_the_default_socket() {
    let h = Host::new();
    h.write(
        "/etc/k3s/containerd.toml",
        "version = 2\n[grpc]\naddress = \"/run/k3s/containerd.sock\"\n",
    );
    h.write("/etc/containerd/config.toml", "version = 2\n");
    let procs = table(vec![
        daemon(100, &["containerd", "-c", "/etc/k3s/containerd.toml"]),
        daemon(200, &["/usr/bin/containerd"]),
        daemon(300, &["containerd", "--address", "/run/other.sock"]),
    ]);
    let f = h.inspect(&procs, &fast());
    assert_eq!(f["process"]["pid"], json!(200));
    assert_eq!(
        f["processes"][0]["address"],
        json!("/run/k3s/containerd.sock")
    );
    assert_eq!(f["processes"][2]["address"], json!("/run/other.sock"));
    // With an explicit socket, the daemon serving it.
    let options = Options {
        containerd_socket: Some("/run/k3s/containerd.sock".into()),
        ..fast()
    };
    let f = h.inspect(&procs, &options);
    assert_eq!(f["process"]["pid"], json!(100));
    assert_eq!(f["configPath"], json!("/etc/k3s/containerd.toml"));
    assert_eq!(f["grpc"]["address"], json!("/run/k3s/containerd.sock"));
}

#[test]
fn unreadable_process_table_is_unknown() {
    let h = Host::new();
    let procs = ProcessTable {
        processes: Vec::new(),
        error: Some("/proc: permission denied".into()),
    };
    let f = h.inspect(&procs, &fast());
    assert!(reason(&f["running"]).contains("/proc: permission denied"));
}

#[test]
fn socket_that_is_a_regular_file_is_not_connected_to() {
    let h = Host::new();
    h.write("/run/containerd/containerd.sock", "not a socket");
    let f = h.inspect(&table(vec![]), &fast());
    assert_eq!(f["socket"]["kind"], json!("file"));
    assert_eq!(f["socket"]["exists"], json!(true));
    assert!(
        reason(&f["version"]).contains("is a regular file, not a socket"),
        "{f}"
    );
    assert!(reason(&f["api"]).contains("not a socket"));
}

#[test]
fn absent_socket_gives_unknown_version_naming_it() {
    let h = Host::new();
    let f = h.inspect(&table(vec![daemon(7, &["containerd"])]), &fast());
    assert_eq!(f["socket"]["exists"], json!(false));
    assert_eq!(
        f["socket"]["path"],
        json!("/run/containerd/containerd.sock")
    );
    assert!(reason(&f["socket"]["mode"]).contains("no socket at /run/containerd/containerd.sock"));
    assert!(reason(&f["version"]).contains("no socket at /run/containerd/containerd.sock"));
    assert!(reason(&f["api"]).contains("no socket"));
    assert!(reason(&f["cri"]["plugin"]).contains("no socket"));
}

#[test]
fn stale_socket_is_unreachable() {
    let h = Host::new();
    h.mkdir("/run/containerd");
    // Bound, then closed: the inode stays, nobody listens.
    drop(UnixListener::bind(h.path("/run/containerd/containerd.sock")).unwrap());
    let f = h.inspect(&table(vec![]), &fast());
    assert_eq!(f["socket"]["kind"], json!("socket"));
    assert_eq!(f["api"]["reachable"], json!(false));
    assert!(
        f["api"]["error"].as_str().unwrap().contains("refused"),
        "{f}"
    );
    assert!(reason(&f["version"]).contains("/run/containerd/containerd.sock"));
}

#[test]
fn server_that_never_answers_times_out_quickly() {
    let h = Host::new();
    h.mkdir("/run/containerd");
    let listener = UnixListener::bind(h.path("/run/containerd/containerd.sock")).unwrap();
    // Accepts and holds connections without ever writing a byte.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let start = Instant::now();
    let f = h.inspect(&table(vec![]), &fast());
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(f["api"]["reachable"], json!(false));
    assert!(
        f["api"]["error"]
            .as_str()
            .unwrap()
            .contains("no answer within"),
        "{f}"
    );
    let r = reason(&f["version"]);
    assert!(
        r.contains("/run/containerd/containerd.sock") && r.contains("no answer"),
        "{r}"
    );
}

#[test]
fn socket_symlink_out_of_root_is_resolved_inside() {
    let h = Host::new();
    let outside = tempfile::tempdir().unwrap();
    let real = outside.path().join("real.sock");
    let _listener = UnixListener::bind(&real).unwrap();
    h.mkdir("/run/containerd");
    std::os::unix::fs::symlink(&real, h.path("/run/containerd/containerd.sock")).unwrap();
    let f = h.inspect(&table(vec![]), &fast());
    assert_eq!(f["socket"]["exists"], json!(false), "{f}");
}

#[test]
fn undetermined_merge_keeps_only_what_both_agree_on() {
    let h = Host::new();
    h.write(
        "/etc/containerd/config.toml",
        r#"version = 2
imports = ["/etc/containerd/conf.d/*.toml"]
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "mcr.microsoft.com/oss/kubernetes/pause:3.6"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = true
"#,
    );
    h.write(
        "/etc/containerd/conf.d/registry.toml",
        "[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/containerd/certs.d\"\n",
    );
    let f = h.inspect(&table(vec![daemon(5, &["containerd"])]), &fast());
    assert!(
        f["configMerge"]
            .as_str()
            .unwrap()
            .starts_with("undetermined")
    );
    assert!(reason(&f["cri"]["systemdCgroup"]).contains("differs between containerd 1.x"));
    assert!(reason(&f["cri"]["sandboxImage"]).contains("differs"));
    assert_eq!(
        f["cri"]["registry"]["configPath"],
        json!("/etc/containerd/certs.d")
    );
    assert_eq!(f["cri"]["snapshotter"], json!("overlayfs"));
    assert_eq!(f["configFiles"].as_array().unwrap().len(), 2);
    assert!(
        reason(&f["config"]["plugins"]["io.containerd.grpc.v1.cri"]["containerd"])
            .contains("differs")
    );
}

#[test]
fn imports_that_do_not_overlap_are_equivalent() {
    let h = Host::new();
    h.write(
        "/etc/containerd/config.toml",
        "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n",
    );
    h.write(
        "/etc/containerd/conf.d/debug.toml",
        "[debug]\nlevel = \"debug\"\n",
    );
    let f = h.inspect(&table(vec![]), &fast());
    assert!(
        f["configMerge"].as_str().unwrap().starts_with("equivalent"),
        "{}",
        f["configMerge"]
    );
    assert_eq!(f["cri"]["systemdCgroup"], json!(true));
    assert_eq!(f["config"]["debug"]["level"], json!("debug"));
}

#[test]
fn version_3_config_decides_for_2x_merging() {
    let h = Host::new();
    h.write(
        "/etc/containerd/config.toml",
        "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n",
    );
    h.write(
        "/etc/containerd/conf.d/cni.toml",
        "version = 3\n[plugins.\"io.containerd.cri.v1.runtime\".cni]\nconf_dir = \"/etc/cni/custom.d\"\n",
    );
    let f = h.inspect(&table(vec![]), &fast());
    assert!(
        f["configMerge"]
            .as_str()
            .unwrap()
            .starts_with("merge-plugin-sections (config version 3")
    );
    assert_eq!(f["cri"]["systemdCgroup"], json!(true));
    assert_eq!(f["cri"]["cni"]["confDir"], json!("/etc/cni/custom.d"));
}

#[test]
fn broken_config_makes_config_facts_unknown_and_socket_unknown() {
    let h = Host::new();
    h.write("/etc/containerd/config.toml", "version = 2\n[grpc\n");
    let f = h.inspect(&table(vec![daemon(9, &["containerd"])]), &fast());
    let r = reason(&f["cri"]["systemdCgroup"]);
    assert!(
        r.contains("/etc/containerd/config.toml: invalid TOML at line 2"),
        "{r}"
    );
    assert!(reason(&f["config"]).contains("line 2"));
    // The address could be set in the broken file: the socket is not guessed.
    assert!(reason(&f["grpc"]["address"]).contains("invalid TOML"));
    assert!(reason(&f["version"]).contains("socket address is unknown"));
    assert_eq!(f["process"]["pid"], json!(9));
}

#[test]
fn relative_config_flag_resolves_against_the_daemon_cwd() {
    let h = Host::new();
    h.write(
        "/srv/ctd/cfg.toml",
        "version = 2\n[grpc]\naddress = \"run/c.sock\"\n",
    );
    h.mkdir("/proc/42");
    std::os::unix::fs::symlink("/srv/ctd", h.path("/proc/42/cwd")).unwrap();
    let procs = table(vec![daemon(42, &["containerd", "--config", "cfg.toml"])]);
    let f = h.inspect(&procs, &fast());
    assert_eq!(f["configPath"], json!("/srv/ctd/cfg.toml"));
    assert_eq!(f["grpc"]["address"], json!("/srv/ctd/run/c.sock"));
}

#[test]
fn version_parsing() {
    assert_eq!(major_version("1.6.20~ds1"), Some(1));
    assert_eq!(major_version("v2.0.0"), Some(2));
    assert_eq!(major_version("garbage"), None);
}
