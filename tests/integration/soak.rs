//! The soak: `nodedrift run` (the real binary) under a synthetic workload of changes,
//! component restarts and outages, for `NODEDRIFT_SOAK_SECS` (60 s by default; the README's
//! figures come from 1800 s). Its resident memory must stay flat, its file descriptors must not
//! grow, and every change must be reported.
//!
//! Each step waits until the agent has seen its change (a hang guard, not a timing assertion),
//! so the number of changes it must report is exact whatever the machine's speed.
//!
//! ```sh
//! NODEDRIFT_SOAK_SECS=1800 NODEDRIFT_SOAK_REPORT=/tmp/soak.json \
//!     cargo nextest run --profile soak --test integration -E 'test(soak)'
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use crate::delivery::accepted;
use crate::http_sink::receiver::{Fault, Receiver};
use crate::node_sink::Sinks;
use crate::util::prepared_host;
use nodedrift::report::cloudevents::types;

const PORT_RULE: &str = "kubelet.read-only-port-disabled";
const PORT_SUBJECT: &str = "kubelet.read-only-port-disabled:kubelet.config.readOnlyPort";

/// One sample of the agent's resources.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: f64,
    rss_kib: u64,
    fds: usize,
}

fn sample(pid: u32, start: Instant) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    Sample {
        at: start.elapsed().as_secs_f64(),
        rss_kib,
        fds,
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Least-squares slope of RSS over time, KiB per minute.
fn slope_kib_per_min(s: &[Sample]) -> f64 {
    let n = s.len() as f64;
    let mx = s.iter().map(|x| x.at).sum::<f64>() / n;
    let my = s.iter().map(|x| x.rss_kib as f64).sum::<f64>() / n;
    let cov: f64 = s
        .iter()
        .map(|x| (x.at - mx) * (x.rss_kib as f64 - my))
        .sum();
    let var: f64 = s.iter().map(|x| (x.at - mx).powi(2)).sum();
    if var == 0.0 { 0.0 } else { cov / var * 60.0 }
}

fn set_port(host: &Path, drifted: bool) {
    let path = host.join("etc/default/kubeletconfig.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let (from, to) = if drifted {
        ("\"readOnlyPort\": 0,", "\"readOnlyPort\": 10255,")
    } else {
        ("\"readOnlyPort\": 10255,", "\"readOnlyPort\": 0,")
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text.replace(from, to)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

/// The distinct finding events of `subject`, in first-arrival order.
fn transitions(r: &Receiver, subject: &str) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    accepted(r)
        .into_iter()
        .filter(|e| e.subject.as_deref() == Some(subject))
        .filter(|e| e.kind == types::FINDING_OPENED || e.kind == types::FINDING_RESOLVED)
        .filter(|e| seen.insert(e.id.clone()))
        .map(|e| e.kind)
        .collect()
}

#[test]
fn soak_memory_and_descriptors_stay_flat_and_every_change_is_reported() {
    let secs: u64 = std::env::var("NODEDRIFT_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut sinks = Sinks::start();
    let config = sinks.dir.path().join("nodedrift.yaml");
    // Faster timers than the defaults, so the soak exercises every path many times.
    std::fs::write(
        &config,
        "intervals:\n  procPoll: 1s\n  sysctlPoll: 2s\n  rescan: 30s\n  heartbeat: 30s\n",
    )
    .unwrap();
    let host = prepared_host("aks-ubuntu-drifted");
    let agent = sinks.start_agent(
        host.path(),
        tempfile::tempdir().unwrap(),
        &["--config", config.to_str().unwrap()],
    );
    let pid = agent.pid().as_raw().unsigned_abs();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut samples = vec![sample(pid, start)];
    let mut drifted = true;
    let mut toggles = 0_usize;
    let mut kubelet_pid = 1201_u32;
    let (mut outages, mut api_outages, mut restarts) = (0, 0, 0_u32);
    let mut step = 0_u64;
    while Instant::now() < deadline {
        step += 1;
        // A configuration change the agent must report, seen before the next one.
        drifted = !drifted;
        set_port(host.path(), drifted);
        toggles += 1;
        let line = format!(
            "nodedrift_rule_status{{rule=\"{PORT_RULE}\",status=\"{}\"}} 1",
            if drifted { "fail" } else { "pass" }
        );
        agent.wait_metrics("the change seen", |m| m.contains(&line));
        // A watched file rewritten.
        std::fs::write(
            host.path().join("etc/sysctl.d/70-soak.conf"),
            format!("# step {step}\n"),
        )
        .unwrap();
        if step % 10 == 0 {
            // The kubelet restarts: a new pid in the process table (above the fixture's pids).
            let next = 100_000 + restarts;
            std::fs::rename(
                host.path().join(format!("proc/{kubelet_pid}")),
                host.path().join(format!("proc/{next}")),
            )
            .unwrap();
            kubelet_pid = next;
            restarts += 1;
        }
        if step % 15 == 0 {
            // A short outage: three refused batches (the sink's backoff then stays at seconds;
            // longer runs of failures back off towards its 5-minute cap).
            sinks
                .receiver
                .push_faults(std::iter::repeat_n(Fault::Status(503, "soak outage"), 3));
            outages += 1;
        }
        if step % 25 == 0 {
            sinks.api_down();
            std::thread::sleep(Duration::from_secs(1));
            sinks.api_up();
            api_outages += 1;
        }
        std::thread::sleep(Duration::from_millis(500));
        samples.push(sample(pid, start));
    }
    let (api, receiver) = (&sinks.api, &sinks.receiver);
    receiver.clear_faults();
    // Up to the sink's backoff cap (5 min) after the last refusal, and then some.
    crate::util::wait_until("every change delivered", Duration::from_secs(420), || {
        transitions(receiver, PORT_SUBJECT).len() > toggles
    });
    agent.wait_metrics("an empty outbox", |m| {
        m.contains("nodedrift_outbox_depth 0")
    });
    let seq = transitions(receiver, PORT_SUBJECT);
    assert_eq!(seq.len(), toggles + 1, "one event per change");
    api.assert_clean();
    assert_eq!(agent.get("/healthz").0, 200);

    // The first fifth is warm-up (caches, the first rescans); then compare the first and the
    // last third of what remains.
    let steady: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.at >= secs as f64 / 5.0)
        .collect();
    assert!(steady.len() >= 9, "{} samples", steady.len());
    let third = steady.len() / 3;
    let early = median(steady[..third].iter().map(|s| s.rss_kib).collect());
    let late = median(
        steady[steady.len() - third..]
            .iter()
            .map(|s| s.rss_kib)
            .collect(),
    );
    let slope = slope_kib_per_min(&steady);
    let fds_early = steady[..third].iter().map(|s| s.fds).max().unwrap();
    let fds_late = steady[steady.len() - third..]
        .iter()
        .map(|s| s.fds)
        .max()
        .unwrap();
    let max_rss = samples.iter().map(|s| s.rss_kib).max().unwrap();
    let report = serde_json::json!({
        "seconds": secs, "steps": step, "changes": toggles, "eventsForChanges": seq.len(),
        "endpointOutages": outages, "apiOutages": api_outages, "kubeletRestarts": restarts,
        "samples": samples.len(), "rssKiB": {"start": samples[0].rss_kib, "steadyEarlyMedian": early,
        "steadyLateMedian": late, "max": max_rss, "slopeKiBPerMin": slope},
        "fds": {"start": samples[0].fds, "steadyEarlyMax": fds_early, "steadyLateMax": fds_late},
        "curve": samples.iter().step_by((samples.len() / 30).max(1))
            .map(|s| [s.at.round(), s.rss_kib as f64]).collect::<Vec<_>>(),
    });
    eprintln!("soak figures: {report}");
    if let Ok(path) = std::env::var("NODEDRIFT_SOAK_REPORT") {
        std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }
    // Flat: growth between the early and late steady medians within noise (4 MiB or 10 %).
    let allowed = (early / 10).max(4096);
    assert!(
        late <= early + allowed,
        "RSS grew from {early} KiB to {late} KiB ({slope:.1} KiB/min)"
    );
    assert!(
        fds_late <= fds_early + 4,
        "file descriptors grew from {fds_early} to {fds_late}"
    );
    assert_eq!(agent.terminate(), Some(0));
}
