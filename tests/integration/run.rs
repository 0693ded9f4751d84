//! `nodedrift run`, the real binary: health and metrics endpoints, re-checks on file changes,
//! SIGHUP reloads, systemd readiness, SIGTERM. Waits are hang guards, not timing assertions.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::{nodedrift, prepared_host};

/// A running `nodedrift run`, killed on drop.
#[derive(Debug)]
pub struct Agent {
    child: Child,
    pub addr: String,
    pub state: tempfile::TempDir,
    /// Everything the agent wrote to stderr (its log) so far.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Hang guard for anything the agent should do "soon".
const PATIENCE: Duration = Duration::from_secs(30);

impl Agent {
    /// Starts `nodedrift run --host-root ROOT --listen 127.0.0.1:0 extra...` and waits until it
    /// says where it listens.
    pub fn start(root: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_with_state(root, tempfile::tempdir().unwrap(), extra, env)
    }

    /// Like [`Agent::start`], with the given state directory (to restart on the same ledger).
    pub fn start_with_state(
        root: &Path,
        state: tempfile::TempDir,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let cmd = Self::command(root, state.path(), extra, env);
        Self::spawn(cmd, state)
    }

    /// The command [`Agent::start_with_state`] spawns: `nodedrift run --listen 127.0.0.1:0
    /// --state-dir STATE --host-root ROOT extra...` with `env` added.
    pub fn command(
        root: &Path,
        state: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> std::process::Command {
        let mut cmd = nodedrift();
        cmd.args(["run", "--listen", "127.0.0.1:0", "--state-dir"])
            .arg(state)
            .arg("--host-root")
            .arg(root)
            .args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts `cmd`, a command that ends up running `nodedrift run --listen 127.0.0.1:0 ...`
    /// (the binary itself, or a wrapper that execs it), and waits until it says where it
    /// listens.
    pub fn spawn(cmd: std::process::Command, state: tempfile::TempDir) -> Self {
        let filter =
            std::env::var("NODEDRIFT_TEST_AGENT_LOG").unwrap_or_else(|_| "nodedrift=info".into());
        Self::spawn_logging(cmd, state, &filter)
    }

    /// [`Agent::spawn`] with the log filter `filter` (`RUST_LOG` syntax).
    pub fn spawn_logging(
        mut cmd: std::process::Command,
        state: tempfile::TempDir,
        filter: &str,
    ) -> Self {
        cmd.env("RUST_LOG", filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn nodedrift run");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let keep = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("addr=").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                }
                eprintln!("agent: {line}");
                if let Ok(mut l) = keep.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let addr = rx
            .recv_timeout(PATIENCE)
            .expect("the agent reports its listen address");
        Self {
            child,
            addr,
            state,
            log,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid"))
    }

    /// `GET path` → (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        crate::util::http_get(&self.addr, path)
    }

    /// Waits until `/metrics` satisfies `pred`; returns the metrics text.
    pub fn wait_metrics(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (_, body) = self.get("/metrics");
            if pred(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; metrics:\n{body}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + PATIENCE;
        while self.get("/readyz").0 != 200 {
            assert!(Instant::now() < deadline, "never ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and returns the exit code.
    pub fn terminate(self) -> Option<i32> {
        self.stop(Signal::SIGTERM).0
    }

    /// Sends `signal`, waits for the exit, and hands back the state directory.
    pub fn stop(mut self, signal: Signal) -> (Option<i32>, tempfile::TempDir) {
        kill(self.pid(), signal).unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                let state = std::mem::replace(&mut self.state, tempfile::tempdir().unwrap());
                return (s.code(), state);
            }
            assert!(Instant::now() < deadline, "did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn rule_line(rule: &str, status: &str) -> String {
    format!("nodedrift_rule_status{{rule=\"{rule}\",status=\"{status}\"}} 1")
}

#[test]
fn serves_health_and_metrics_then_stops_on_sigterm() {
    let host = prepared_host("aks-ubuntu-drifted");
    let agent = Agent::start(host.path(), &[], &[]);
    agent.wait_ready();
    assert_eq!(agent.get("/healthz").0, 200);
    assert_eq!(agent.get("/nope").0, 404);
    let m = agent.wait_metrics("findings", |m| m.contains("nodedrift_findings_open{"));
    assert!(
        m.contains(&rule_line("kubelet.read-only-port-disabled", "fail")),
        "{m}"
    );
    assert!(m.contains("nodedrift_build_info"), "{m}");
    assert!(!m.contains("/etc/"), "no paths in metrics: {m}");
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn a_changed_config_file_is_rechecked_without_waiting_for_the_timer() {
    let host = prepared_host("aks-ubuntu-drifted");
    let agent = Agent::start(host.path(), &[], &[]);
    agent.wait_ready();
    agent.wait_metrics("the planted drift", |m| {
        m.contains(&rule_line("kubelet.read-only-port-disabled", "fail"))
    });
    // Fix the drift the way an operator would: rewrite the kubelet's config file in place.
    let cfg = host.path().join("etc/default/kubeletconfig.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text.contains("\"readOnlyPort\": 10255"),
        "fixture changed: {text}"
    );
    std::fs::write(
        &cfg,
        text.replace("\"readOnlyPort\": 10255", "\"readOnlyPort\": 0"),
    )
    .unwrap();
    agent.wait_metrics("the re-check after the file change", |m| {
        m.contains(&rule_line("kubelet.read-only-port-disabled", "pass"))
    });
}

#[test]
fn sighup_with_an_invalid_baseline_keeps_the_old_one() {
    let host = prepared_host("aks-ubuntu-drifted");
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site.yaml");
    std::fs::write(
        &site,
        "apiVersion: nodedrift.dev/v1\nkind: Baseline\nrules: []\n",
    )
    .unwrap();
    let agent = Agent::start(host.path(), &["--baseline", site.to_str().unwrap()], &[]);
    agent.wait_ready();
    std::fs::write(
        &site,
        "apiVersion: nodedrift.dev/v1\nkind: Baseline\nrules:\n  - id: x\n    typo: 1\n",
    )
    .unwrap();
    kill(agent.pid(), Signal::SIGHUP).unwrap();
    let m = agent.wait_metrics("the rejected reload", |m| {
        m.contains("nodedrift_baseline_reloads_total{result=\"rejected\"} 1")
    });
    assert!(
        m.contains(&rule_line("kubelet.read-only-port-disabled", "fail")),
        "old rules stay: {m}"
    );
    assert_eq!(agent.get("/healthz").0, 200);
    // A valid change is taken.
    std::fs::write(
        &site,
        "apiVersion: nodedrift.dev/v1\nkind: Baseline\nrules:\n  - id: kubelet.read-only-port-disabled\n    disabled: true\n",
    )
    .unwrap();
    kill(agent.pid(), Signal::SIGHUP).unwrap();
    agent.wait_metrics("the accepted reload", |m| {
        m.contains("nodedrift_baseline_reloads_total{result=\"accepted\"} 1")
            && !m.contains("rule=\"kubelet.read-only-port-disabled\"")
    });
}

#[test]
fn tells_systemd_it_is_ready() {
    let host = prepared_host("kubeadm");
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let agent = Agent::start(
        host.path(),
        &[],
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
    );
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).expect("a notification");
    assert_eq!(&buf[..n], b"READY=1");
    assert_eq!(agent.get("/readyz").0, 200, "ready means ready");
    assert_eq!(agent.terminate(), Some(0));
    let n = sock.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
}

#[test]
fn an_invalid_baseline_at_start_exits_64() {
    let host = prepared_host("kubeadm");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: nodedrift.dev/v1\nkind: Baseline\nrules:\n  - id: x\n    typo: 1\n",
    )
    .unwrap();
    let out = crate::util::run_bounded(
        nodedrift()
            .args(["run", "--listen", "127.0.0.1:0", "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("--host-root")
            .arg(host.path())
            .arg("--baseline")
            .arg(&bad),
        30,
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("typo"));
}

#[test]
fn an_unreadable_endpoint_ca_file_at_start_exits_64_naming_it() {
    let host = prepared_host("kubeadm");
    let dir = tempfile::tempdir().unwrap();
    let out = crate::util::run_bounded(
        nodedrift()
            .args(["run", "--listen", "127.0.0.1:0", "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("--host-root")
            .arg(host.path())
            .env("NODEDRIFT_ENDPOINT", "https://127.0.0.1:1/events")
            .env("NODEDRIFT_CA_FILE", "/nonexistent/ca.pem"),
        30,
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ca.pem"));
}
