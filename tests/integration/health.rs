//! The health inspector through `nodedrift check --probe` against loopback HTTP servers in
//! this process: a copy of the AKS fixture host whose kubelet configuration, kube-proxy
//! command line and konnectivity agent point at them. Healthy (200), unhealthy (500, 503),
//! refused (a port whose listener was dropped), silent (accepts, never answers: a timeout,
//! not a hang), not probed (a tree is not the live host), and the unit history read from a
//! real journal file.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use serde_json::{Value, json};

use crate::util;

use crate::snapshot_journal::testwriter;

/// A loopback HTTP server answering `routes` (path → status, body); 404 elsewhere.
fn serve(routes: &[(&'static str, u16, &'static str)]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let routes = routes.to_vec();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let routes = routes.clone();
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req);
                let path = text.split(' ').nth(1).unwrap_or("").to_owned();
                let (status, body) = routes
                    .iter()
                    .find(|r| r.0 == path)
                    .map(|r| (r.1, r.2))
                    .unwrap_or((404, "404 page not found\n"));
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

/// A port nothing listens on any more.
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The AKS fixture host with the kubelet's healthz on `kubelet_port` and kube-proxy's
/// healthz and metrics on `proxy_healthz`/`proxy_metrics` (all on 127.0.0.1).
fn host(kubelet_port: u16, proxy_healthz: u16, proxy_metrics: u16) -> tempfile::TempDir {
    let host = util::prepared_host("aks-ubuntu-clean");
    // A current node image, so that only the probes decide.
    util::set_node_image_age(host.path(), 5);
    let cfg = host.path().join("etc/default/kubeletconfig.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    v["healthzBindAddress"] = json!("127.0.0.1");
    v["healthzPort"] = json!(kubelet_port);
    std::fs::write(&cfg, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    set_cmdline(
        host.path(),
        1301,
        &[
            "kube-proxy",
            "--conntrack-max-per-core=0",
            &format!("--metrics-bind-address=127.0.0.1:{proxy_metrics}"),
            &format!("--healthz-bind-address=127.0.0.1:{proxy_healthz}"),
            "--cluster-cidr=10.244.0.0/16",
            "--kubeconfig=/var/lib/kubelet/kubeconfig",
        ],
    );
    host
}

fn set_cmdline(root: &Path, pid: u32, argv: &[&str]) {
    let dir = root.join(format!("proc/{pid}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut raw = Vec::new();
    for a in argv {
        raw.extend_from_slice(a.as_bytes());
        raw.push(0);
    }
    std::fs::write(dir.join("cmdline"), raw).unwrap();
    let comm = argv[0].rsplit('/').next().unwrap();
    std::fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
}

/// `nodedrift check --format json --profile aks-ubuntu` on `root` with `extra` args.
fn check(root: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["--profile", "aks-ubuntu", "--health-timeout", "1s"];
    args.extend_from_slice(extra);
    util::check_json(root, &args)
}

/// The finding of `rule` (the only one, or the one at `path` when given).
fn finding<'a>(report: &'a Value, rule: &str) -> &'a Value {
    let found: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == rule)
        .collect();
    assert_eq!(found.len(), 1, "{rule}: {found:#?}");
    found[0]
}

/// The health facts of `nodedrift inspect health` on `root`, probing or not.
fn facts_of(root: &Path, probe: bool) -> Value {
    let mut cmd = util::nodedrift();
    cmd.args(["inspect", "health", "--health-timeout", "1s", "--host-root"])
        .arg(root)
        .arg(if probe { "--probe" } else { "--no-probe" });
    let out = util::run_bounded(&mut cmd, 60);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["health"]["facts"].clone()
}

fn status(report: &Value, rule: &str) -> String {
    finding(report, rule)["status"].as_str().unwrap().to_owned()
}

fn source(report: &Value, rule: &str) -> String {
    finding(report, rule)["evidence"]["source"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

const PROXY_OK: &[(&str, u16, &str)] = &[
    (
        "/healthz",
        200,
        r#"{"lastUpdated": "2026-11-22 10:00:00 +0000 UTC","currentTime": "2026-11-22 10:00:01 +0000 UTC", "nodeEligible": true}"#,
    ),
    ("/livez", 200, r#"{"lastUpdated": "x","currentTime": "y"}"#),
    ("/proxyMode", 200, "iptables"),
];

#[test]
fn healthy_components_pass() {
    let kubelet = serve(&[("/healthz", 200, "ok")]);
    let proxy = serve(PROXY_OK);
    let root = host(kubelet, proxy, proxy);
    let (_, report) = check(root.path(), &["--probe"]);
    for rule in [
        "health.kubelet-healthy",
        "health.kube-proxy-healthy",
        "health.kube-proxy-live",
        "health.kube-proxy-mode-as-configured",
        "health.kube-proxy-mode-supported",
    ] {
        assert_eq!(status(&report, rule), "pass", "{rule}: {report:#}");
    }
    assert!(
        source(&report, "health.kubelet-healthy").contains(&format!(
            "http://127.0.0.1:{kubelet}/healthz answered HTTP 200"
        )),
        "{}",
        source(&report, "health.kubelet-healthy")
    );
    // No konnectivity agent on this node: nothing to fail.
    let agent = finding(&report, "health.node-agent-healthy");
    assert_eq!(agent["status"], "pass");
    assert_eq!(agent["reason"], "no element matches");
    let facts = &facts_of(root.path(), true);
    assert_eq!(facts["probing"], true);
    assert_eq!(facts["kube-proxy"]["healthz"]["nodeEligible"], true);
    assert_eq!(facts["kube-proxy"]["mode"], "iptables");
    assert_eq!(facts["kubelet"]["down"], false);
}

#[test]
fn an_unhealthy_or_unreachable_kubelet_fails_naming_the_error() {
    let proxy = serve(PROXY_OK);
    let unhealthy = serve(&[("/healthz", 500, "[-]syncloop failed\nhealthz check failed")]);
    let root = host(unhealthy, proxy, proxy);
    let (code, report) = check(root.path(), &["--probe"]);
    assert_eq!(code, 1);
    assert_eq!(status(&report, "health.kubelet-healthy"), "fail");
    assert!(source(&report, "health.kubelet-healthy").contains("answered HTTP 500"));
    let f = finding(&report, "health.kubelet-healthy");
    assert_eq!(f["policy"], "aks/node-ready");
    assert_eq!(f["severity"], "high");

    let dead = dead_port();
    let root = host(dead, proxy, proxy);
    let (_, report) = check(root.path(), &["--probe"]);
    assert_eq!(status(&report, "health.kubelet-healthy"), "fail");
    let how = source(&report, "health.kubelet-healthy");
    assert!(how.contains("failed: connect:"), "{how}");
    assert!(how.contains(&format!("127.0.0.1:{dead}")), "{how}");
}

#[test]
fn a_kubelet_that_never_answers_fails_at_the_timeout_without_hanging() {
    let proxy = serve(PROXY_OK);
    // Accepted by the kernel (backlog), never read or answered.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let root = host(port, proxy, proxy);
    let out = util::run_bounded(
        util::nodedrift()
            .args([
                "check",
                "--format",
                "json",
                "--probe",
                "--profile",
                "aks-ubuntu",
            ])
            .args(["--health-timeout", "500ms", "--host-root"])
            .arg(root.path()),
        60,
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status(&report, "health.kubelet-healthy"), "fail");
    let how = source(&report, "health.kubelet-healthy");
    assert!(how.contains("failed: timeout:"), "{how}");
    drop(silent);
}

#[test]
fn a_tree_is_not_probed_unless_asked() {
    let kubelet = serve(&[("/healthz", 200, "ok")]);
    let proxy = serve(PROXY_OK);
    let root = host(kubelet, proxy, proxy);
    for extra in [&[][..], &["--no-probe"][..]] {
        let (code, report) = check(root.path(), extra);
        assert_eq!(code, 3, "unknowns, no failure: {report:#}");
        for rule in [
            "health.kubelet-healthy",
            "health.kube-proxy-healthy",
            "health.kube-proxy-live",
            "health.kube-proxy-mode-as-configured",
        ] {
            let f = finding(&report, rule);
            assert_eq!(f["status"], "unknown", "{rule}");
            assert!(
                f["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("not probed: probes run on the live host"),
                "{rule}: {f:#}"
            );
        }
        assert_eq!(facts_of(root.path(), false)["probing"], false);
    }
}

#[test]
fn kube_proxy_out_of_sync_or_in_another_mode_fails() {
    let kubelet = serve(&[("/healthz", 200, "ok")]);
    let proxy = serve(&[
        (
            "/healthz",
            503,
            r#"{"lastUpdated": "2026-11-22 09:00:00 +0000 UTC","currentTime": "2026-11-22 10:00:00 +0000 UTC", "nodeEligible": true}"#,
        ),
        ("/livez", 200, "{}"),
    ]);
    let metrics = serve(&[("/proxyMode", 200, "ipvs")]);
    let root = host(kubelet, proxy, metrics);
    let (code, report) = check(root.path(), &["--probe"]);
    assert_eq!(code, 1);
    assert_eq!(status(&report, "health.kube-proxy-healthy"), "fail");
    assert!(source(&report, "health.kube-proxy-healthy").contains("answered HTTP 503"));
    assert_eq!(status(&report, "health.kube-proxy-live"), "pass");
    // Configured iptables (no mode: the Linux default), running ipvs.
    assert_eq!(
        status(&report, "health.kube-proxy-mode-as-configured"),
        "fail"
    );
    assert_eq!(status(&report, "health.kube-proxy-mode-supported"), "pass");
    let facts = &facts_of(root.path(), true)["kube-proxy"];
    assert_eq!(
        facts["healthz"]["lastUpdated"],
        "2026-11-22 09:00:00 +0000 UTC"
    );
    assert_eq!(facts["mode"], "ipvs");
    assert_eq!(facts["configuredMode"], "iptables");
}

#[test]
fn kube_proxy_in_an_unsupported_mode_fails_on_aks() {
    let kubelet = serve(&[("/healthz", 200, "ok")]);
    let proxy = serve(&[
        ("/healthz", 200, "{}"),
        ("/livez", 200, "{}"),
        ("/proxyMode", 200, "nftables"),
    ]);
    let root = host(kubelet, proxy, proxy);
    let (_, report) = check(root.path(), &["--probe"]);
    assert_eq!(status(&report, "health.kube-proxy-mode-supported"), "fail");
}

#[test]
fn a_kubelet_with_healthz_disabled_is_unknown() {
    let proxy = serve(PROXY_OK);
    let root = host(0, proxy, proxy);
    let (_, report) = check(root.path(), &["--probe"]);
    let f = finding(&report, "health.kubelet-healthy");
    assert_eq!(f["status"], "unknown");
    assert!(
        f["reason"].as_str().unwrap().contains("healthzPort is 0"),
        "{f:#}"
    );
}

#[test]
fn the_konnectivity_agent_is_probed_where_present() {
    let kubelet = serve(&[("/healthz", 200, "ok")]);
    let proxy = serve(PROXY_OK);
    let good = serve(&[("/healthz", 200, "ok")]);
    let bad = serve(&[("/healthz", 503, "not connected")]);
    for (port, want) in [(good, "pass"), (bad, "fail"), (dead_port(), "fail")] {
        let root = host(kubelet, proxy, proxy);
        set_cmdline(
            root.path(),
            1501,
            &[
                "/proxy-agent",
                "--logtostderr=true",
                "--ca-cert=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
                "--proxy-server-host=konnectivity.hcp.westeurope.azmk8s.io",
                "--proxy-server-port=443",
                &format!("--health-server-port={port}"),
                "--admin-server-port=8094",
            ],
        );
        let (_, report) = check(root.path(), &["--probe"]);
        let f = finding(&report, "health.node-agent-healthy");
        assert_eq!(f["status"], want, "{f:#}");
        assert_eq!(f["path"], "health.nodeAgents.konnectivity-agent.healthy");
        let facts = &facts_of(root.path(), true)["nodeAgents"];
        assert_eq!(facts["konnectivity-agent"]["present"], true);
        assert_eq!(facts["konnectivity-agent"]["pid"], 1501);
    }
}

/// A kubelet that is not running, whose unit's history since boot is in the journal: three
/// starts (two restarts), then a failure; down since that failure.
#[test]
fn a_stopped_kubelet_is_down_since_its_last_failure_in_the_journal() {
    let root = host(dead_port(), dead_port(), dead_port());
    std::fs::remove_dir_all(root.path().join("proc/1201")).unwrap();
    // The fixture's boot time (btime of proc/stat).
    let boot: u64 = 1_718_000_000;
    let at = |s: u64| (boot + s) * 1_000_000;
    let sys = |usec: u64, msg: &str| testwriter::Entry {
        usec,
        fields: vec![
            ("UNIT", b"kubelet.service".to_vec()),
            ("SYSLOG_IDENTIFIER", b"systemd".to_vec()),
            ("_PID", b"1".to_vec()),
            ("_TRANSPORT", b"journal".to_vec()),
            ("MESSAGE", msg.as_bytes().to_vec()),
        ],
    };
    let entries = vec![
        // Before this boot: not counted.
        sys(at(0) - 5_000_000, "Started kubelet.service - Kubelet."),
        sys(at(10), "Started kubelet.service - Kubelet."),
        sys(
            at(20),
            "kubelet.service: Main process exited, code=exited, status=1/FAILURE",
        ),
        sys(
            at(30),
            "kubelet.service: Scheduled restart job, restart counter is at 1.",
        ),
        sys(at(30), "Started kubelet.service - Kubelet."),
        sys(at(40), "Stopped kubelet.service - Kubelet."),
        sys(at(50), "Started kubelet.service - Kubelet."),
        sys(at(60), "kubelet.service: Failed with result 'exit-code'."),
    ];
    testwriter::write_journal(root.path(), "system.journal", &entries, &[]);
    let (code, report) = check(root.path(), &["--probe"]);
    assert_eq!(code, 1);
    let kubelet = &facts_of(root.path(), true)["kubelet"];
    assert_eq!(kubelet["running"], false);
    assert_eq!(kubelet["healthy"], false);
    assert_eq!(kubelet["down"], true);
    assert_eq!(kubelet["restartsSinceBoot"], 2, "{kubelet:#}");
    assert_eq!(kubelet["downSinceUnix"], boot + 60);
    assert!(kubelet["downSeconds"].as_i64().unwrap() > 0);
    let f = finding(&report, "health.kubelet-healthy");
    assert_eq!(f["status"], "fail");
    // Down for more than 30 days (the fixture booted in 2024): escalated.
    assert_eq!(f["severity"], "critical");
}
