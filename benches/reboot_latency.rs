//! Latency of a pending reboot through `nodedrift run` (the release binary), end to end: the
//! Debian marker `/run/reboot-required` appears (or goes) on a copy of the clean AKS fixture
//! host, and the time is measured until BOTH the Node's `RebootRequired` condition says so on
//! the API-server double AND the `dev.nodedrift.reboot.required` (`.cleared`) CloudEvent has
//! reached a receiver, both in this process on loopback.
//!
//! The agent runs with the defaults an operator gets; only what a deployment must say is set:
//! the node name (`NODE_NAME`), the API credentials (`KUBECONFIG`, to the double), the endpoint
//! (`NODEDRIFT_ENDPOINT`), the host root, the state directory and a free listen port. The path
//! measured has no timer of its own: inotify, the 25 ms debounce of the evaluation loop, the
//! ledger, then the endpoint sink (woken at once, no batching delay) and the Kubernetes sink
//! (patches as soon as the desired state changes).
//!
//! Each trial moves a marker with its own modification time into place (a distinct second per
//! trial, in the past: each trial is its own pending period, with its own event ids), waits for
//! both effects, pauses 50 ms, removes the marker and waits again. The CloudEvent's time is its
//! arrival at the receiver; the condition is polled every millisecond.
//!
//! Run: `cargo bench --bench reboot_latency [-- TRIALS]` (default 50). Cargo builds the release
//! binary (`target/release/nodedrift`) for the benchmark. Prints n, p50, p99 and max.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::net::TcpListener;

#[allow(dead_code, clippy::unwrap_used)]
#[path = "../agent/src/report/kube/tests/apiserver.rs"]
mod apiserver;

use apiserver::{ApiServer, NODE, aks_node};

const TRIALS: usize = 50;
const TARGET: Duration = Duration::from_secs(1);
/// How long any one wait may take before the run is declared hung.
const HANG_GUARD: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(1);
const SETTLE: Duration = Duration::from_millis(50);
const REQUIRED: &str = "dev.nodedrift.reboot.required";
const CLEARED: &str = "dev.nodedrift.reboot.cleared";
const SUMMARY: &str = "dev.nodedrift.node.summary";

/// One CloudEvent as it arrived: when, its type and data.
#[derive(Debug, Clone)]
struct Arrival {
    at: Instant,
    kind: String,
    data: Value,
}

type Arrivals = Arc<Mutex<Vec<Arrival>>>;

/// A CloudEvents batch receiver on 127.0.0.1 answering 200 to every POST.
async fn receiver() -> Result<(SocketAddr, Arrivals)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let arrivals: Arrivals = Arc::default();
    let shared = arrivals.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let arrivals = shared.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let arrivals = arrivals.clone();
                    async move {
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let at = Instant::now();
                        let events: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
                        if let Ok(mut a) = arrivals.lock() {
                            a.extend(events.into_iter().map(|e| Arrival {
                                at,
                                kind: e["type"].as_str().unwrap_or_default().to_owned(),
                                data: e["data"].clone(),
                            }));
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok((addr, arrivals))
}

/// A copy of the fixture host `name` with the modes git cannot record applied.
fn copy_host(name: &str, dst: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hosts");
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.join(name).display()))
        .arg(dst)
        .status()
        .context("running cp")?;
    if !status.success() {
        bail!("cp -a {name}: {status}");
    }
    let modes = std::fs::read_to_string(src.join(format!("{name}.modes"))).unwrap_or_default();
    for line in modes
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let Some((mode, path)) = line.split_once(' ') else {
            bail!("{name}.modes: not MODE PATH: {line}");
        };
        let mode = u32::from_str_radix(mode, 8).with_context(|| format!("mode {mode}"))?;
        let p = dst.join(path.trim().trim_start_matches('/'));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .with_context(|| p.display().to_string())?;
    }
    Ok(())
}

/// The agent, stopped with SIGTERM when dropped.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

struct Bench {
    api: ApiServer,
    arrivals: Arrivals,
    agent: Agent,
    log: PathBuf,
    host: PathBuf,
}

impl Bench {
    fn condition_is(&self, status: &str) -> bool {
        self.api
            .world()
            .condition("RebootRequired")
            .is_some_and(|c| c["status"] == status)
    }

    /// The first event of `kind` that arrived at or after `t0` and satisfies `pred`.
    fn arrived(&self, kind: &str, t0: Instant, pred: impl Fn(&Value) -> bool) -> Option<Instant> {
        let a = self.arrivals.lock().ok()?;
        a.iter()
            .find(|e| e.at >= t0 && e.kind == kind && pred(&e.data))
            .map(|e| e.at)
    }

    /// Waits until the condition has `status` and an event of `kind` (matching `pred`) arrived
    /// after `t0`; returns (condition seen, event arrived), both since `t0`.
    fn wait(
        &mut self,
        what: &str,
        t0: Instant,
        status: &str,
        kind: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<(Duration, Duration)> {
        let mut condition = None;
        let mut event = None;
        loop {
            if condition.is_none() && self.condition_is(status) {
                condition = Some(Instant::now());
            }
            if event.is_none() {
                event = self.arrived(kind, t0, &pred);
            }
            if let (Some(c), Some(e)) = (condition, event) {
                return Ok((c - t0, e - t0));
            }
            if t0.elapsed() > HANG_GUARD {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                bail!(
                    "{what}: not within {HANG_GUARD:?} (condition {status}: {}, {kind}: {})\nagent log:\n{log}",
                    condition.is_some(),
                    event.is_some()
                );
            }
            if let Some(status) = self.agent.0.try_wait()? {
                bail!("the agent exited: {status}");
            }
            std::thread::sleep(POLL);
        }
    }
}

/// `xs` sorted; the p-th percentile by nearest rank (as `benches/latency.py`).
fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, xs: &[Duration], target: Option<Duration>) {
    let mut s = xs.to_vec();
    s.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut line = format!(
        "{name}: n={} p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        s.len(),
        ms(pct(&s, 50.0)),
        ms(pct(&s, 99.0)),
        ms(pct(&s, 100.0))
    );
    if let Some(t) = target {
        line.push_str(&format!(" (target p99 <= {:.0} ms)", ms(t)));
    }
    println!("{line}");
}

fn unix_now() -> Result<i64> {
    Ok(i64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
    )?)
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; a number is the trial count.
    let trials = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(TRIALS);
    let rt = tokio::runtime::Runtime::new()?;
    let api = rt.block_on(ApiServer::start(Some(aks_node())));
    let (receiver_addr, arrivals) = rt.block_on(receiver())?;

    let work = tempfile::tempdir()?;
    let host = work.path().join("host");
    std::fs::create_dir(&host)?;
    copy_host("aks-ubuntu-clean", &host)?;
    // /var/run points to /run, which the fixture leaves out.
    std::fs::create_dir_all(host.join("run"))?;
    std::fs::create_dir_all(host.join("staging"))?;
    std::fs::write(
        host.join("run/reboot-required.pkgs"),
        "linux-image-5.15.0-1062-azure\nlibssl3\n",
    )?;
    let kubeconfig = work.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: b\n  cluster:\n    server: http://{}\nusers:\n- name: b\n  user:\n    token: bench-token\ncontexts:\n- name: b\n  context:\n    cluster: b\n    user: b\ncurrent-context: b\n",
            api.addr
        ),
    )?;
    let log = work.path().join("agent.log");
    let child = Command::new(env!("CARGO_BIN_EXE_nodedrift"))
        .args(["run", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(work.path().join("state"))
        .arg("--host-root")
        .arg(&host)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NODE_NAME", NODE)
        .env("KUBECONFIG", &kubeconfig)
        .env(
            "NODEDRIFT_ENDPOINT",
            format!("http://{receiver_addr}/events"),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting the agent")?;
    let mut bench = Bench {
        api,
        arrivals,
        agent: Agent(child),
        log,
        host,
    };

    // Started: the first check is published on both sides (the file watches are in place).
    let t0 = Instant::now();
    bench.wait("the first check", t0, "False", SUMMARY, |_| true)?;

    let marker = bench.host.join("run/reboot-required");
    let staged = bench.host.join("staging/reboot-required");
    // Distinct past seconds: each trial is its own pending period.
    let base = unix_now()? - 3600;
    let (mut up, mut up_cond, mut up_event) = (vec![], vec![], vec![]);
    let (mut down, mut down_cond, mut down_event) = (vec![], vec![], vec![]);
    for i in 0..trials {
        let since = base + i64::try_from(i)?;
        std::fs::write(&staged, "*** System restart required ***\n")?;
        std::fs::File::options()
            .write(true)
            .open(&staged)?
            .set_times(
                std::fs::FileTimes::new()
                    .set_modified(UNIX_EPOCH + Duration::from_secs(u64::try_from(since)?)),
            )?;
        let since_text = nodedrift::clock::rfc3339_secs(since);

        let t0 = Instant::now();
        std::fs::rename(&staged, &marker)?;
        let (c, e) = bench.wait("reboot required", t0, "True", REQUIRED, |d| {
            d["since"] == since_text.as_str()
        })?;
        up.push(c.max(e));
        up_cond.push(c);
        up_event.push(e);
        std::thread::sleep(SETTLE);

        let t0 = Instant::now();
        std::fs::remove_file(&marker)?;
        let (c, e) = bench.wait("reboot cleared", t0, "False", CLEARED, |_| true)?;
        down.push(c.max(e));
        down_cond.push(c);
        down_event.push(e);
        std::thread::sleep(SETTLE);
    }

    report(
        "marker created -> RebootRequired=True on the Node and reboot.required delivered",
        &up,
        Some(TARGET),
    );
    report("  condition True on the Node", &up_cond, None);
    report("  reboot.required delivered", &up_event, None);
    report(
        "marker removed -> RebootRequired=False on the Node and reboot.cleared delivered",
        &down,
        Some(TARGET),
    );
    report("  condition False on the Node", &down_cond, None);
    report("  reboot.cleared delivered", &down_event, None);
    let violations = bench.api.world().violations.clone();
    if !violations.is_empty() {
        bail!("the API-server double saw requests nodedrift may not make: {violations:#?}");
    }
    Ok(())
}
