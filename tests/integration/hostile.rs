//! The hostile host tree: every bad input the foundation must survive, built at run time
//! (git cannot hold FIFOs, device nodes, loops, paths longer than PATH_MAX or 2 GB files).
//! `check`, `inspect` and `run` must finish (or stay up), name each bad path in an `unknown`
//! reason, and never read outside the root. Device nodes need root: these tests fail, not
//! skip, without it (tests/run.sh runs the suite as root).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use crate::run::Agent;
use crate::util::{check_json, nodedrift, run_bounded, with_status};

/// Planted outside the root; no output may ever contain it.
const OUTSIDE_MARKER: &str = "OUTSIDE-THE-ROOT-7f3a";

struct Hostile {
    _outer: tempfile::TempDir,
    root: PathBuf,
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn fifo(root: &Path, rel: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

fn link(root: &Path, rel: &str, target: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, p).unwrap();
}

/// A character or block device node at `rel` (never opened by the agent: a `/dev/zero` copy
/// read to the end would never end).
fn device(root: &Path, rel: &str, kind: SFlag, major: u64, minor: u64) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    mknod(
        &p,
        kind,
        Mode::from_bits_truncate(0o644),
        makedev(major, minor),
    )
    .unwrap_or_else(|e| panic!("mknod {} (the hostile tests need root): {e}", p.display()));
}

/// 255-byte directory names, `levels` deep below `rel`, with a file at the bottom: the whole
/// path is longer than PATH_MAX, so it is built with `*at` calls from directory fds. Returns
/// the host path of the file.
fn deep_path(root: &Path, rel: &str, levels: usize) -> PathBuf {
    use nix::fcntl::{OFlag, openat};
    std::fs::create_dir_all(root.join(rel)).unwrap();
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut fd = nix::fcntl::open(&root.join(rel), dir_flags, Mode::empty()).unwrap();
    let mut host = PathBuf::from("/").join(rel);
    for i in 0..levels {
        let name = format!("{i:02}{}", "d".repeat(253));
        nix::sys::stat::mkdirat(&fd, name.as_str(), Mode::from_bits_truncate(0o755)).unwrap();
        fd = openat(&fd, name.as_str(), dir_flags, Mode::empty()).unwrap();
        host.push(name);
    }
    let file = format!("{}.conf", "f".repeat(250));
    let fd = openat(
        &fd,
        file.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    std::io::Write::write_all(&mut std::fs::File::from(fd), b"deep: true\n").unwrap();
    host.push(file);
    assert!(host.as_os_str().len() > 4096);
    host
}

fn hostile() -> Hostile {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("host");
    let outside = outer.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    for name in [
        "config.yaml",
        "kubelet.conf",
        "secret",
        "config.toml",
        "sysctl.conf",
    ] {
        std::fs::write(outside.join(name), format!("{OUTSIDE_MARKER}: 1\n")).unwrap();
    }
    let out = outside.to_str().unwrap();

    // kubelet: config is a directory, kubeconfig an absolute symlink pointing outside the root,
    // a repeated flag, and a 2 GB environment file.
    write(
        &root,
        "proc/1201/cmdline",
        b"/usr/bin/kubelet\0--config=/var/lib/kubelet/config.yaml\0--kubeconfig=/etc/kubernetes/kubelet.conf\0--read-only-port=0\0--read-only-port=10255\0",
    );
    write(&root, "proc/1201/comm", b"kubelet\n");
    link(&root, "proc/1201/cwd", "/");
    std::fs::create_dir_all(root.join("var/lib/kubelet/config.yaml")).unwrap();
    link(
        &root,
        "etc/kubernetes/kubelet.conf",
        &format!("{out}/kubelet.conf"),
    );
    write(
        &root,
        "etc/systemd/system/kubelet.service",
        b"[Service]\nEnvironmentFile=/etc/default/kubelet\nExecStart=/usr/bin/kubelet $KUBELET_FLAGS\n",
    );
    std::fs::create_dir_all(root.join("etc/default")).unwrap();
    std::fs::File::create(root.join("etc/default/kubelet"))
        .unwrap()
        .set_len(2 << 30)
        .unwrap();

    // containerd: a FIFO named config.toml (a blocking open would hang forever).
    write(
        &root,
        "proc/1101/cmdline",
        b"/usr/bin/containerd\0--config\0/etc/containerd/config.toml\0",
    );
    write(&root, "proc/1101/comm", b"containerd\n");
    link(&root, "proc/1101/cwd", "/");
    fifo(&root, "etc/containerd/config.toml");

    // kube-proxy: its config is a symlink loop; its kubeconfig escapes with `..`.
    write(
        &root,
        "proc/1301/cmdline",
        b"kube-proxy\0--config=/var/lib/kube-proxy/config.conf\0--kubeconfig=/../../../../outside/kubelet.conf\0",
    );
    link(&root, "proc/1301/cwd", "/");
    link(&root, "var/lib/kube-proxy/config.conf", "loop-b");
    link(&root, "var/lib/kube-proxy/loop-b", "config.conf");

    // A process with a truncated command line and no comm; a pid directory with nothing in it
    // (a process that exited mid-scan); garbage in the files /proc always has.
    write(&root, "proc/1402/cmdline", b"/usr/bin/kube");
    std::fs::create_dir_all(root.join("proc/1403")).unwrap();
    write(&root, "proc/uptime", b"garbage\n");
    write(&root, "proc/stat", b"\xff\xfe not a stat file\n");
    write(&root, "proc/sys/kernel/random/boot_id", b"");
    write(&root, "proc/sys/net/ipv4/ip_forward", b"1\n");
    write(
        &root,
        "etc/os-release",
        b"ID=\"unterminated\nVERSION_ID=\xff\xfe\n",
    );

    // sysctl.d: a FIFO, a loop, a directory, a non-UTF-8 name, a 2 GB file, an escape.
    fifo(&root, "etc/sysctl.d/10-fifo.conf");
    link(&root, "etc/sysctl.d/20-loop.conf", "20-loop.conf");
    std::fs::create_dir_all(root.join("etc/sysctl.d/30-dir.conf")).unwrap();
    std::fs::write(
        root.join("etc/sysctl.d")
            .join(OsStr::from_bytes(b"40-caf\xe9.conf")),
        "net.ipv4.ip_forward = 1\n",
    )
    .unwrap();
    std::fs::File::create(root.join("etc/sysctl.d/50-huge.conf"))
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    link(&root, "etc/sysctl.conf", &format!("{out}/sysctl.conf"));

    // Reboot markers behind an absolute /var/run -> /run symlink; the package list is a FIFO.
    link(&root, "var/run", "/run");
    write(
        &root,
        "run/reboot-required",
        b"*** System restart required ***\n",
    );
    fifo(&root, "run/reboot-required.pkgs");

    // Device nodes with config names: copies of /dev/zero (1:5) and /dev/urandom (1:9), whose
    // reads never end, and a block device (loop0, 7:0) where a file is expected.
    device(&root, "etc/sysctl.d/60-zero.conf", SFlag::S_IFCHR, 1, 5);
    device(&root, "etc/sysctl.d/65-loop0.conf", SFlag::S_IFBLK, 7, 0);
    device(&root, "etc/kubernetes/azure.json", SFlag::S_IFCHR, 1, 9);
    write(
        &root,
        "var/lib/dpkg/status",
        b"Package: kubelet\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.31.2\n\n",
    );
    device(&root, "var/log/dpkg.log", SFlag::S_IFCHR, 1, 5);
    device(
        &root,
        "etc/containerd/certs.d/docker.io/hosts.toml",
        SFlag::S_IFCHR,
        1,
        9,
    );

    // Long names: a 255-byte sysctl.d name, and a file below twenty 255-byte directories in a
    // watched tree (the path is over 5 KB, beyond PATH_MAX).
    write(
        &root,
        &format!("etc/sysctl.d/{}.conf", "n".repeat(250)),
        b"net.ipv4.ip_forward = 1\n",
    );
    deep_path(&root, "etc/kubernetes/deep", 20);

    Hostile {
        _outer: outer,
        root,
    }
}

#[test]
fn check_completes_and_reports_each_bad_input_as_unknown() {
    let h = hostile();
    let (code, report) = check_json(&h.root, &["--profile", "generic"]);
    assert!(code == 1 || code == 3, "exit {code}: {report:#}");
    let text = report.to_string();
    assert!(
        !text.contains(OUTSIDE_MARKER),
        "read outside the root: {text}"
    );
    let all = unknown_reasons(&report);
    for needle in [
        "/var/lib/kubelet/config.yaml",
        "/etc/containerd/config.toml",
        "/var/lib/kube-proxy/config.conf",
    ] {
        assert!(all.contains(needle), "no unknown names {needle}:\n{all}");
    }
}

#[test]
fn inspect_names_every_bad_path_and_never_reads_outside() {
    let h = hostile();
    let out = run_bounded(
        nodedrift().arg("inspect").arg("--host-root").arg(&h.root),
        60,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains(OUTSIDE_MARKER), "read outside the root");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kubelet = facts["kubelet"].to_string();
    assert!(kubelet.contains("is a directory"), "{kubelet}");
    assert!(
        kubelet.contains("read-only-port"),
        "repeated flag is reported: {kubelet}"
    );
    let containerd = facts["containerd"].to_string();
    assert!(containerd.contains("FIFO"), "{containerd}");
    let proxy = facts["kube-proxy"].to_string();
    assert!(proxy.contains("symbolic links"), "{proxy}");
    let sysctl = facts["sysctl"].to_string();
    for needle in [
        "10-fifo.conf",
        "20-loop.conf",
        "30-dir.conf",
        "50-huge.conf",
        "60-zero.conf",
        "65-loop0.conf",
        "block device",
    ] {
        assert!(
            sysctl.contains(needle),
            "sysctl facts do not mention {needle}: {sysctl}"
        );
    }
}

/// Every output of a command run on a hostile tree: no panic, nothing from outside the root.
fn assert_clean(what: &str, out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{what} panicked: {stderr}");
    assert!(
        !stdout.contains(OUTSIDE_MARKER) && !stderr.contains(OUTSIDE_MARKER),
        "{what} read outside the root"
    );
}

/// The unknown reasons of a report, one per line.
fn unknown_reasons(report: &serde_json::Value) -> String {
    with_status(report, "unknown")
        .iter()
        .map(|f| f["reason"].as_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// What `check --format json` (its output `out`) made of a hostile tree: the output is clean,
/// the exit is 1 (failures) or 3 (unknowns), never an error; returns the report and its
/// unknown reasons, one per line.
fn checked(what: &str, out: &std::process::Output) -> (serde_json::Value, String) {
    assert_clean(what, out);
    let code = out.status.code();
    assert!(
        matches!(code, Some(1 | 3)),
        "{what}: exit {code:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reasons = unknown_reasons(&report);
    (report, reasons)
}

#[test]
fn hostile_device_nodes_and_long_names_are_never_read() {
    let h = hostile();
    let out = run_bounded(
        nodedrift().arg("inspect").arg("--host-root").arg(&h.root),
        60,
    );
    assert_clean("inspect", &out);
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sysctl = facts["sysctl"].to_string();
    for needle in ["60-zero.conf", "65-loop0.conf", &"n".repeat(250)] {
        assert!(
            sysctl.contains(needle),
            "sysctl facts miss {needle}: {sysctl}"
        );
    }
    let patches = facts["patches"].to_string();
    assert!(
        patches.contains("/var/log/dpkg.log") && patches.contains("character device"),
        "the dpkg.log device is named: {patches}"
    );
    // File integrity over the whole tree: the deep path, the devices and FIFOs in watched
    // directories are recorded (by type) or reported, never opened.
    let state = tempfile::tempdir().unwrap();
    let out = run_bounded(
        nodedrift()
            .args(["baseline", "capture", "--profile", "generic", "--json"])
            .arg("--host-root")
            .arg(&h.root)
            .arg("--state-dir")
            .arg(state.path()),
        120,
    );
    assert_clean("baseline capture", &out);
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "capture exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    // The file below the 5 KB path cannot be opened by its host path (ENAMETOOLONG): the
    // capture names it instead of failing or skipping it silently.
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The two 2 GB sparse files are tracked by metadata only: never read, so not counted as
    // hashed bytes either.
    let metadata_only = summary["metadataOnly"].to_string();
    assert!(metadata_only.contains("50-huge.conf"), "{summary:#}");
    assert!(
        summary["hashedBytes"].as_u64().unwrap() < 1 << 20,
        "{summary:#}"
    );
    let errors = summary["errors"].to_string();
    assert!(
        errors.contains("/etc/kubernetes/deep/00") && errors.contains("File name too long"),
        "{errors}"
    );
    let (code, report) = check_json(
        &h.root,
        &[
            "--profile",
            "generic",
            "--state-dir",
            state.path().to_str().unwrap(),
        ],
    );
    assert!(code == 1 || code == 3, "exit {code}: {report:#}");
    assert!(!report.to_string().contains(OUTSIDE_MARKER));
    assert_eq!(
        report["fileIntegrity"]["state"], "verified",
        "{:#}",
        report["fileIntegrity"]
    );
}

/// Appends to a file until it is larger than the agent's 4 MiB read limit, truncates it,
/// and again, until `stop`.
fn grow(path: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        use std::io::Write;
        let chunk = "net.ipv4.ip_forward = 1\n".repeat(1024);
        let mut rounds = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap();
            while f.metadata().unwrap().len() < 6 << 20 && !stop.load(Ordering::Relaxed) {
                f.write_all(chunk.as_bytes()).unwrap();
            }
            f.set_len(0).unwrap();
            rounds += 1;
        }
        rounds
    })
}

/// Deletes and recreates each of `paths` (write a temporary file, rename it over the path,
/// remove it) until `stop`.
fn churn(paths: Vec<PathBuf>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut rounds = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for p in &paths {
                let tmp = p.with_extension("tmp~");
                std::fs::write(&tmp, format!("net.ipv4.ip_forward = {}\n", rounds % 2)).unwrap();
                std::fs::rename(&tmp, p).unwrap();
                std::thread::yield_now();
                std::fs::remove_file(p).unwrap();
            }
            rounds += 1;
        }
        rounds
    })
}

#[test]
fn hostile_files_that_grow_or_vanish_while_read() {
    let h = hostile();
    let stop = Arc::new(AtomicBool::new(false));
    let growing = [
        h.root.join("etc/sysctl.d/80-grow.conf"),
        h.root.join("var/log/apt/history.log"),
    ];
    std::fs::create_dir_all(h.root.join("var/log/apt")).unwrap();
    let mut threads: Vec<_> = growing
        .iter()
        .map(|p| grow(p.clone(), stop.clone()))
        .collect();
    threads.push(churn(
        vec![
            h.root.join("etc/sysctl.d/90-vanish.conf"),
            h.root.join("etc/kubernetes/manifests/etcd.yaml"),
            h.root.join("etc/os-release"),
        ],
        {
            std::fs::create_dir_all(h.root.join("etc/kubernetes/manifests")).unwrap();
            stop.clone()
        },
    ));
    for i in 0..5 {
        let out = run_bounded(
            nodedrift()
                .args(["check", "--format", "json", "--profile", "generic"])
                .arg("--host-root")
                .arg(&h.root),
            120,
        );
        let (report, reasons) = checked(&format!("check {i}"), &out);
        assert!(!reasons.is_empty(), "{report:#}");
        // The growing file is read (a value) or named as unknown (too large, changed).
        let out = run_bounded(
            nodedrift()
                .args(["inspect", "sysctl", "--host-root"])
                .arg(&h.root),
            60,
        );
        assert_clean("inspect", &out);
        assert_eq!(out.status.code(), Some(0));
        let sysctl = String::from_utf8_lossy(&out.stdout);
        assert!(sysctl.contains("80-grow.conf"), "{sysctl}");
    }
    // The agent, with the writers still at it (every change is a realtime event).
    let agent = Agent::start(&h.root, &["--profile", "generic"], &[]);
    agent.wait_ready();
    for _ in 0..20 {
        assert_eq!(agent.get("/healthz").0, 200);
        let (status, body) = agent.get("/metrics");
        assert_eq!(status, 200);
        assert!(body.contains("nodedrift_rule_status{"), "{body}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let rounds: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    eprintln!("writer rounds: {rounds:?}");
    let log = agent.log.lock().unwrap().clone();
    assert_eq!(agent.terminate(), Some(0));
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains(OUTSIDE_MARKER), "read outside the root");
}

#[test]
fn hostile_tree_under_run_with_mutations_in_watched_directories() {
    let h = hostile();
    let outside = h.root.parent().unwrap().join("outside");
    let agent = Agent::start(&h.root, &["--profile", "generic"], &[]);
    agent.wait_ready();
    let m = agent.wait_metrics("findings", |m| m.contains("status=\"unknown\"} 1"));
    assert!(!m.contains(OUTSIDE_MARKER), "read outside the root: {m}");
    // Hostile changes while it runs, in watched directories.
    fifo(&h.root, "etc/kubernetes/new-fifo.yaml");
    link(&h.root, "etc/kubernetes/loop.yaml", "loop.yaml");
    link(
        &h.root,
        "etc/kubernetes/escape.yaml",
        outside.join("config.yaml").to_str().unwrap(),
    );
    device(&h.root, "etc/kubernetes/zero.yaml", SFlag::S_IFCHR, 1, 5);
    device(&h.root, "etc/sysctl.d/99-zero.conf", SFlag::S_IFCHR, 1, 5);
    deep_path(&h.root, "etc/kubernetes/deeper", 24);
    // A watched directory replaced by a symlink to outside the root.
    std::fs::rename(
        h.root.join("etc/containerd"),
        h.root.join("containerd-moved"),
    )
    .unwrap();
    symlink(&outside, h.root.join("etc/containerd")).unwrap();
    std::fs::remove_dir_all(h.root.join("etc/kubernetes/deep")).unwrap();
    // Each change is a realtime event and a re-check; the agent stays up through them.
    let before = agent.wait_metrics("the changes found", |m| {
        m.lines()
            .filter(|l| l.starts_with("nodedrift_files_changed"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .any(|n| n > 0.0)
    });
    for _ in 0..30 {
        assert_eq!(agent.get("/healthz").0, 200);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (status, after) = agent.get("/metrics");
    assert_eq!(status, 200);
    for text in [&before, &after] {
        assert!(!text.contains(OUTSIDE_MARKER), "read outside the root");
    }
    let log = agent.log.lock().unwrap().clone();
    assert_eq!(agent.terminate(), Some(0));
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        !log.contains(OUTSIDE_MARKER),
        "read outside the root: {log}"
    );
    // inotify cannot watch the directories beyond PATH_MAX: said once for each, not again at
    // every re-walk.
    let mut unwatchable: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Cannot watch a directory"))
        .filter_map(|l| l.split(" dir=").nth(1)?.split(' ').next())
        .collect();
    assert!(!unwatchable.is_empty(), "{log}");
    let n = unwatchable.len();
    unwatchable.sort_unstable();
    unwatchable.dedup();
    assert_eq!(unwatchable.len(), n, "a directory warned about twice");
}

#[test]
fn hostile_permission_denied_subtrees_are_unknown_naming_the_path() {
    use std::os::unix::fs::PermissionsExt;
    let h = hostile();
    let perm = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    // The tree is readable by nobody, except two root-owned 0700 subtrees.
    perm(h.root.parent().unwrap(), 0o755);
    perm(&h.root, 0o755);
    perm(&h.root.join("var/lib/kubelet"), 0o700);
    perm(&h.root.join("etc/containerd"), 0o700);
    let mut cmd = std::process::Command::new("setpriv");
    crate::util::clean_env(&mut cmd)
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_nodedrift"),
            "check",
            "--format",
            "json",
            "--profile",
            "generic",
            "--host-root",
        ])
        .arg(&h.root);
    let out = run_bounded(&mut cmd, 120);
    let (_, all) = checked("check as nobody", &out);
    for needle in [
        "/var/lib/kubelet/config.yaml: permission denied",
        "/etc/containerd/config.toml: permission denied",
    ] {
        assert!(all.contains(needle), "no unknown says {needle:?}:\n{all}");
    }
}

/// `check` on a tree whose sysctl.d holds a million entries: bounded by the listing cap, in
/// time and memory. Prints the wall time and peak RSS (the README quotes them).
#[test]
fn hostile_million_entry_directory_is_bounded() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("host");
    write(&root, "proc/sys/net/ipv4/ip_forward", b"1\n");
    let dir = root.join("etc/sysctl.d");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..1_000_000u32 {
        std::fs::File::create(dir.join(format!("{i:07}.conf"))).unwrap();
    }
    // GNU time measures the peak RSS (tests/run.sh installs it).
    let time = Path::new("/usr/bin/time");
    assert!(
        time.exists(),
        "/usr/bin/time missing: install Debian's time package"
    );
    let mut cmd = std::process::Command::new(time);
    crate::util::clean_env(&mut cmd).args(["-v", env!("CARGO_BIN_EXE_nodedrift")]);
    cmd.args([
        "check",
        "--format",
        "json",
        "--profile",
        "aks-ubuntu",
        "--host-root",
    ])
    .arg(&root);
    let started = std::time::Instant::now();
    let out = run_bounded(&mut cmd, 240);
    let wall = started.elapsed();
    let (_, all) = checked("check", &out);
    assert!(
        all.contains("/etc/sysctl.d: more than"),
        "the cap names the directory: {all}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let k: u64 = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS from GNU time: {stderr}"));
    eprintln!(
        "figures: check on a 1,000,000-entry /etc/sysctl.d: wall {:.2} s, peak RSS {} MiB",
        wall.as_secs_f64(),
        k / 1024
    );
    assert!(k < 512 * 1024, "peak RSS {k} KiB");
}

/// Past the walk's entry limit (a million by default; ten here), the `unknown` finding is the
/// one of the set governing the directory the walk stopped in, and names that directory.
#[test]
fn hostile_entry_limit_names_the_directory_the_walk_stopped_in() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "etc/kubernetes/admin.conf", b"x: 1\n");
    for i in 0..30 {
        write(tmp.path(), &format!("etc/sysctl.d/{i:02}.conf"), b"");
    }
    let host = nodedrift::host::HostRoot::new(tmp.path()).unwrap();
    let mut spec = nodedrift::check::load_baseline("generic", &[])
        .unwrap()
        .watch_spec();
    spec.limits.max_entries = 10;
    let w = nodedrift::files::scan::walk(&host, &spec, None);
    assert!(w.truncated);
    let at = w.truncated_at.clone().expect("where the walk stopped");
    assert!(at.starts_with("/etc/sysctl.d"), "{}", at.display());
    let v = nodedrift::files::Verification {
        truncated: true,
        truncated_at: w.truncated_at,
        ..Default::default()
    };
    let found = nodedrift::files::findings(
        &spec,
        &v,
        None,
        None,
        &nodedrift::files::unattributed_oneshot,
    );
    let unknown: Vec<_> = found
        .iter()
        .filter(|f| f.status == nodedrift::finding::Status::Unknown)
        .collect();
    assert_eq!(unknown.len(), 1, "{unknown:#?}");
    assert!(unknown[0].rule.contains("kernel-tuning"), "{unknown:#?}");
    let reason = unknown[0].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("more than 10 entries") && reason.contains("in /etc/sysctl.d"),
        "{reason}"
    );
}
