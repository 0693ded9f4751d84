//! A real containerd for tests: started from the installed binary in a temporary directory with
//! its own root, state, sockets and CNI directories, so it touches nothing of the host's, and
//! killed and reaped when dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long containerd gets to create its socket (it usually needs well under a second).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Plugins disabled in the test daemon: snapshotters that need a special filesystem, and
/// `opt`, which would write to /opt/containerd on the host.
const DISABLED_PLUGINS: &[&str] = &[
    "io.containerd.internal.v1.opt",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
];

/// The installed containerd binary: `/usr/bin/containerd`, else the first on `PATH`.
pub fn binary() -> PathBuf {
    let candidates = std::iter::once(PathBuf::from("/usr/bin/containerd")).chain(
        std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("containerd"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
    );
    for c in candidates {
        if c.is_file() {
            return c;
        }
    }
    panic!(
        "containerd is not installed: this test needs a real containerd. Install the `containerd` \
         package (Debian/Ubuntu: apt-get install containerd); CI installs it."
    );
}

/// `containerd --version`: "containerd github.com/containerd/containerd <version> <revision>".
pub fn installed_version(bin: &Path) -> (String, String) {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .expect("run containerd --version");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert!(
        fields.len() >= 4,
        "unexpected `containerd --version` output: {text:?}"
    );
    (fields[2].to_owned(), fields[3].to_owned())
}

/// A running containerd.
#[derive(Debug)]
pub struct Containerd {
    child: Child,
    /// Removed (after the daemon is killed) when this is dropped.
    _dir: tempfile::TempDir,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Containerd {
    /// Starts containerd and waits (bounded) for its socket to accept connections.
    pub fn start() -> Self {
        let bin = binary();
        let dir = tempfile::Builder::new()
            .prefix("ndctd")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        let socket = d.join("containerd.sock");
        let config = d.join("config.toml");
        for sub in ["root", "state", "cni/bin", "cni/net.d"] {
            fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        let disabled: Vec<String> = DISABLED_PLUGINS.iter().map(|p| format!("{p:?}")).collect();
        fs::write(
            &config,
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [{disabled}]

[grpc]
  address = "{socket}"
  uid = {uid}
  gid = {gid}

[ttrpc]
  address = "{socket}.ttrpc"
  uid = {uid}
  gid = {gid}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.6"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni}/bin"
    conf_dir = "{cni}/net.d"
"#,
                root = d.join("root").display(),
                state = d.join("state").display(),
                socket = socket.display(),
                cni = d.join("cni").display(),
                disabled = disabled.join(", "),
                // containerd chowns its sockets to these (default root): the test's own ids
                // let it run without root too.
                uid = nix::unistd::getuid(),
                gid = nix::unistd::getgid(),
            ),
        )
        .expect("write config");
        let log = d.join("containerd.log");
        let log_file = fs::File::create(&log).expect("log file");
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log fd"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut c = Self {
            child,
            _dir: dir,
            config,
            socket,
            log,
        };
        c.wait_ready();
        c
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "containerd exited ({status}) before serving its socket; log:\n{}",
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if start.elapsed() > START_TIMEOUT {
                panic!(
                    "containerd did not serve {} within {START_TIMEOUT:?}; log:\n{}",
                    self.socket.display(),
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // SIGKILL is enough: no containers run, and the temporary directory goes with it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
