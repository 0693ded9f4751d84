//! Shared helpers: run the binary, locate fixtures.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The fixture host tree `tests/fixtures/hosts/<name>`.
pub fn fixture_host(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hosts")
        .join(name)
}

/// A command running the real `nodedrift` binary, with a clean environment for its knobs.
pub fn nodedrift() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nodedrift"));
    clean_env(&mut c);
    c
}

/// Removes the variables `nodedrift` reads from `c`'s environment (and turns colour off), for a
/// command that runs the binary itself or through a wrapper.
pub fn clean_env(c: &mut Command) -> &mut Command {
    c.env_remove("NODEDRIFT_HOST_ROOT")
        .env_remove("NODEDRIFT_PROFILE")
        .env_remove("NODEDRIFT_STATE_DIR")
        .env_remove("NODEDRIFT_ENDPOINT")
        .env_remove("NODEDRIFT_TOKEN_FILE")
        .env_remove("NODEDRIFT_CA_FILE")
        .env_remove("NODEDRIFT_LISTEN")
        .env_remove("NODE_NAME")
        .env_remove("POD_NAME")
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn")
}

/// Runs `nodedrift args...` and returns its output.
pub fn run(args: &[&str]) -> Output {
    nodedrift().args(args).output().expect("run nodedrift")
}

/// Runs `nodedrift inspect <component> --host-root <root>` and parses the JSON it prints.
pub fn inspect(component: &str, root: &std::path::Path) -> serde_json::Value {
    let out = run(&[
        "inspect",
        component,
        "--host-root",
        root.to_str().expect("utf-8 root"),
    ]);
    assert!(
        out.status.success(),
        "inspect failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("inspect prints JSON")
}

/// Runs the command, killing it and failing the test if it takes longer than `secs` (a hang
/// is a bug this suite must catch, not wait for).
pub fn run_bounded(cmd: &mut Command, secs: u64) -> Output {
    use std::time::{Duration, Instant};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn nodedrift");
    let deadline = Instant::now() + Duration::from_secs(secs);
    // Drain the pipes on threads so a large output cannot block the child.
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut so, &mut b).ok();
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut se, &mut b).ok();
        b
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("nodedrift did not finish within {secs} s (hang)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().expect("stdout thread"),
        stderr: t_err.join().expect("stderr thread"),
    }
}

/// `nodedrift check --format json` on `root` with extra args; returns (exit code, report).
pub fn check_json(root: &std::path::Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = run_bounded(
        nodedrift()
            .args(["check", "--format", "json", "--host-root"])
            .arg(root)
            .args(extra),
        60,
    );
    let code = out.status.code().expect("exit code");
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}); exit {code}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, v)
}

/// Findings of a report with the given status.
pub fn with_status<'a>(report: &'a serde_json::Value, status: &str) -> Vec<&'a serde_json::Value> {
    report["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .filter(|f| f["status"] == status)
        .collect()
}

/// Writes a baseline document with the given rules YAML (indented list items).
pub fn baseline_file(dir: &std::path::Path, name: &str, rules: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!("apiVersion: nodedrift.dev/v1\nkind: Baseline\nmetadata:\n  name: {name}\nrules:\n{rules}"),
    )
    .expect("write baseline");
    p
}

/// A writable copy of the fixture host `name` (symlinks kept as links) with the permissions git
/// cannot record applied from `tests/fixtures/hosts/<name>.modes` (`MODE PATH` lines).
pub fn prepared_host(name: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let src = fixture_host(name);
    let dst = tempfile::tempdir().expect("temp dir");
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(dst.path())
        .status()
        .expect("run cp");
    assert!(status.success(), "cp -a {name}");
    if let Ok(text) = std::fs::read_to_string(src.with_extension("modes")) {
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (mode, path) = line.split_once(' ').expect("MODE PATH");
            let mode = u32::from_str_radix(mode, 8).expect("octal mode");
            let p = dst.path().join(path.trim().trim_start_matches('/'));
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        }
    }
    dst
}

/// `(rule, path, status, reason)` of every finding of `components`, from the real
/// `nodedrift check --format json` on `root`.
pub fn rule_outcomes(
    root: &std::path::Path,
    components: &[&str],
) -> Vec<(String, String, String, String)> {
    let (_, report) = check_json(root, &[]);
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| components.iter().any(|c| f["component"] == *c))
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            (s("rule"), s("path"), s("status"), s("reason"))
        })
        .collect()
}

/// The distinct rule ids among `outcomes` with `status`.
pub fn rules_with(outcomes: &[(String, String, String, String)], status: &str) -> Vec<String> {
    let mut ids: Vec<String> = outcomes
        .iter()
        .filter(|o| o.2 == status)
        .map(|o| o.0.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Polls `done` until it holds, failing the test after `patience` (a hang guard, not a timing
/// assertion).
pub fn wait_until(what: &str, patience: std::time::Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + patience;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `GET path` on a plain-HTTP server at `addr` → (status, body), with a read timeout so a
/// server that never answers fails the test instead of hanging it.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("read timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("response");
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Whether anything opens the FIFO for reading while `f` runs (a writer's non-blocking open
/// succeeds only while a reader has it open).
pub fn watch_fifo<T>(fifo: &std::path::Path, f: impl FnOnce() -> T) -> (T, bool) {
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicBool::new(false));
    let t = {
        let (stop, opened, fifo) = (stop.clone(), opened.clone(), fifo.to_path_buf());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(nix::libc::O_NONBLOCK)
                    .open(&fifo)
                    .is_ok()
                {
                    opened.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        })
    };
    let r = f();
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    (r, opened.load(Ordering::Relaxed))
}

/// A tmpfs mounted for one test and unmounted when dropped.
pub struct Tmpfs(pub tempfile::TempDir);

impl Tmpfs {
    pub fn mount(opts: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

/// The fixture hosts' node image (`...-202501.12.0` in the kubelet's node labels) is fixed, so
/// it grows older than the baseline's 30 days as time passes: rewrites the label in a prepared
/// copy to an image built `age_days` ago (`YYYYMM.DD.0`), in `/etc/default/kubelet` and in
/// the kubelet's command line under `/proc`.
pub fn set_node_image_age(root: &std::path::Path, age_days: i64) {
    let t = nodedrift::clock::unix_now() - age_days * 86_400;
    let date = nodedrift::clock::rfc3339_secs(t); // 2026-11-22T...
    let version = format!("{}{}.{}.0", &date[..4], &date[5..7], &date[8..10]);
    let mut changed = 0;
    for rel in ["etc/default/kubelet", "proc/1201/cmdline"] {
        let p = root.join(rel);
        let Ok(text) = std::fs::read(&p) else {
            continue;
        };
        let text = String::from_utf8(text).expect("utf-8");
        if text.contains("202501.12.0") {
            std::fs::write(&p, text.replace("202501.12.0", &version)).expect("write");
            changed += 1;
        }
    }
    assert!(changed > 0, "no node image label under {}", root.display());
}
