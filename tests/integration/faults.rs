//! Faults injected into a live `nodedrift run` (the real binary): SIGKILLs at random moments
//! of its writes, an API server that keeps going away, and a wall clock that jumps.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use nodedrift::report::cloudevents::{CloudEvent, types};

use crate::delivery::accepted;
use crate::http_sink::receiver::{Fault, Mode, Receiver};
use crate::node_sink::Sinks;
use crate::node_sink::apiserver::ApiServer;
use crate::run::Agent;
use crate::util::prepared_host;

const PATIENCE: Duration = Duration::from_secs(60);
const PORT_RULE: &str = "kubelet.read-only-port-disabled";
const PORT_SUBJECT: &str = "kubelet.read-only-port-disabled:kubelet.config.readOnlyPort";
const KUBELET_CONFIG: &str = "etc/default/kubeletconfig.json";

fn wait_until(what: &str, done: impl FnMut() -> bool) {
    crate::util::wait_until(what, PATIENCE, done);
}

/// Sets the fixture kubelet's `readOnlyPort` (10255 fails the rule, 0 passes it), replacing the
/// file atomically as configuration management does: the agent never sees half a file.
fn set_read_only_port(host: &Path, drifted: bool) {
    let path = host.join(KUBELET_CONFIG);
    let text = std::fs::read_to_string(&path).unwrap();
    let (from, to) = if drifted {
        ("\"readOnlyPort\": 0,", "\"readOnlyPort\": 10255,")
    } else {
        ("\"readOnlyPort\": 10255,", "\"readOnlyPort\": 0,")
    };
    assert!(text.contains(from), "{text}");
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text.replace(from, to)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The finding events of `subject`, each id once, in the order they first arrived.
fn transitions(events: &[CloudEvent], subject: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    events
        .iter()
        .filter(|e| e.subject.as_deref() == Some(subject))
        .filter(|e| e.kind == types::FINDING_OPENED || e.kind == types::FINDING_RESOLVED)
        .filter(|e| seen.insert(e.id.clone()))
        .map(|e| e.kind.clone())
        .collect()
}

/// 100 SIGKILLs, each at a random moment after a configuration change: half of them once the
/// agent has committed the change's event to its outbox (acknowledged), half within 40 ms of
/// the write, while it is re-checking and writing its store. The endpoint is down meanwhile, so
/// everything stays in the outbox. Every restart must open the store, and after recovery every
/// change must have been delivered exactly as the sequence of states it went through: one event
/// per change, alternating, ending in the file's final state.
#[test]
fn a_hundred_sigkills_during_writes_lose_nothing_acknowledged() {
    const ROUNDS: usize = 100;
    let seed = 0x5eed_2026_u64;
    eprintln!("seed {seed:#x}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = rt.block_on(Receiver::start(Mode::Plain));
    receiver.push_faults(std::iter::repeat_n(Fault::Status(503, "down"), 10_000_000));
    let host = prepared_host("aks-ubuntu-drifted");
    let env = [("NODEDRIFT_ENDPOINT", receiver.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut state = tempfile::tempdir().unwrap();
    // The fixture starts drifted (10255): the first run opens the finding.
    let mut drifted = true;
    let mut acknowledged = 0;
    for round in 0..ROUNDS {
        let agent = Agent::start_with_state(host.path(), state, &[], &env);
        // Ready means the store opened and the first full check was recorded.
        agent.wait_ready();
        let depth = metric(&agent.get("/metrics").1, "nodedrift_outbox_depth").unwrap_or(0.0);
        drifted = !drifted;
        set_read_only_port(host.path(), drifted);
        if round % 2 == 0 {
            let status = if drifted { "fail" } else { "pass" };
            let line =
                format!("nodedrift_rule_status{{rule=\"{PORT_RULE}\",status=\"{status}\"}} 1");
            agent.wait_metrics("the change committed to the outbox", |m| {
                m.contains(&line) && metric(m, "nodedrift_outbox_depth").is_some_and(|d| d > depth)
            });
            acknowledged += 1;
            std::thread::sleep(Duration::from_millis(rng.u64(0..15)));
        } else {
            std::thread::sleep(Duration::from_millis(rng.u64(0..40)));
        }
        let (_, s) = agent.stop(Signal::SIGKILL);
        state = s;
    }
    assert_eq!(acknowledged, ROUNDS / 2);
    assert!(
        accepted(&receiver).is_empty(),
        "nothing was accepted during the outage"
    );

    receiver.clear_faults();
    let agent = Agent::start_with_state(host.path(), state, &[], &env);
    agent.wait_ready();
    // One event per state the file went through: the opening, then one per change.
    wait_until("every change delivered", || {
        transitions(&accepted(&receiver), PORT_SUBJECT).len() > ROUNDS
    });
    agent.wait_metrics("an empty outbox", |m| {
        m.contains("nodedrift_outbox_depth 0")
    });
    let seq = transitions(&accepted(&receiver), PORT_SUBJECT);
    assert_eq!(seq.len(), ROUNDS + 1, "{seq:#?}");
    for (i, kind) in seq.iter().enumerate() {
        let want = if i % 2 == 0 {
            types::FINDING_OPENED
        } else {
            types::FINDING_RESOLVED
        };
        assert_eq!(kind, want, "event {i} of {seq:#?}");
    }
    let last = if drifted {
        types::FINDING_OPENED
    } else {
        types::FINDING_RESOLVED
    };
    assert_eq!(seq.last().map(String::as_str), Some(last));
    assert_eq!(agent.terminate(), Some(0));
}

/// The failing count in the Node's `nodedrift.dev/summary` annotation.
fn summary_fails(api: &ApiServer) -> Option<u64> {
    let s = api.world().annotation("nodedrift.dev/summary")?;
    let v: serde_json::Value = serde_json::from_str(&s).ok()?;
    v["fail"].as_u64()
}

/// The API server goes away and comes back 20 times while the node's state changes; the agent
/// keeps running, stays within what it may send, does not hammer the server, and the Node ends
/// up showing the final state.
#[test]
fn a_flapping_api_server_ends_with_the_node_in_its_final_state() {
    let mut rng = fastrand::Rng::with_seed(0xf1a9_f1a9);
    let mut sinks = Sinks::start();
    let host = prepared_host("aks-ubuntu-drifted");
    let agent = sinks.start_agent(host.path(), tempfile::tempdir().unwrap(), &[]);
    wait_until("the first summary on the Node", || {
        summary_fails(&sinks.api).is_some()
    });
    let drifted_fails = summary_fails(&sinks.api).unwrap();
    let mut drifted = true;
    for _ in 0..20 {
        sinks.api_down();
        drifted = !drifted;
        set_read_only_port(host.path(), drifted);
        std::thread::sleep(Duration::from_millis(rng.u64(0..300)));
        sinks.api_up();
        std::thread::sleep(Duration::from_millis(rng.u64(0..300)));
    }
    let api = &sinks.api;
    let want = if drifted {
        drifted_fails
    } else {
        drifted_fails - 1
    };
    wait_until("the Node showing the final state", || {
        summary_fails(api) == Some(want)
    });
    let (code, _) = agent.get("/healthz");
    assert_eq!(code, 200);
    api.assert_clean();
    // Backoff, not a hot loop: a few requests per flap, not thousands.
    let requests = api.world().requests.len();
    eprintln!("figures: {requests} API requests over 20 flaps");
    assert!(requests < 1000, "{requests} requests for 20 flaps");
    assert_eq!(agent.terminate(), Some(0));
}

/// Where Debian's `faketime` package puts the preload library.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The wall clock jumps three days ahead, then two days behind the real time, while the agent
/// runs (libfaketime, re-reading its offset file; the monotonic clock is left alone, as in a
/// real jump). The agent carries on: changes after each jump are reported with the jumped
/// clock's time, no gauge goes negative, and it exits cleanly.
#[test]
fn the_agent_survives_wall_clock_jumps_both_ways() {
    assert!(
        Path::new(LIBFAKETIME).is_file(),
        "{LIBFAKETIME} missing: install Debian's faketime package (tests/run.sh does)"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = rt.block_on(Receiver::start(Mode::Plain));
    let host = prepared_host("aks-ubuntu-drifted");
    let dir = tempfile::tempdir().unwrap();
    let offset = dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let env = [
        ("NODEDRIFT_ENDPOINT", receiver.url()),
        ("LD_PRELOAD", LIBFAKETIME.to_owned()),
        (
            "FAKETIME_TIMESTAMP_FILE",
            offset.to_str().unwrap().to_owned(),
        ),
        ("FAKETIME_NO_CACHE", "1".to_owned()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
        ("FAKETIME_DONT_RESET", "1".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let agent = Agent::start(host.path(), &[], &env);
    agent.wait_ready();
    wait_until("the opening of the port finding", || {
        transitions(&accepted(&receiver), PORT_SUBJECT).len() == 1
    });
    let real_now = nodedrift::clock::unix_now();
    let mut drifted = true;
    for (jump, days) in [("+3d", 3_i64), ("-2d", -2)] {
        std::fs::write(&offset, format!("{jump}\n")).unwrap();
        drifted = !drifted;
        set_read_only_port(host.path(), drifted);
        let n = transitions(&accepted(&receiver), PORT_SUBJECT).len();
        wait_until(&format!("the change after the {jump} jump"), || {
            transitions(&accepted(&receiver), PORT_SUBJECT).len() == n + 1
        });
        let e = accepted(&receiver)
            .into_iter()
            .rev()
            .find(|e| e.subject.as_deref() == Some(PORT_SUBJECT))
            .unwrap();
        let t = parse_rfc3339(&e.time);
        let expected = real_now + days * 86_400;
        assert!(
            (t - expected).abs() < 3600,
            "event time {} is not about {jump} from the real clock",
            e.time
        );
        let (_, m) = agent.get("/metrics");
        for line in m.lines().filter(|l| !l.starts_with('#')) {
            let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            assert!(v >= 0.0, "negative after the {jump} jump: {line}");
        }
    }
    assert_eq!(agent.terminate(), Some(0));
}

/// Seconds of `YYYY-MM-DDTHH:MM:SSZ` (what the agent writes), by the days-from-civil formula.
fn parse_rfc3339(s: &str) -> i64 {
    let n = |a: usize, b: usize| -> i64 { s[a..b].parse().unwrap() };
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19)
}

/// Peak resident memory of `pid` in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// 100 000 changes to 1 000 files of a watched directory in a few seconds, then all but ten of
/// the files removed: the agent's memory stays bounded, the changes are coalesced (a few events
/// per file, not one per write), and the final state is exact: ten added files, nothing else.
#[test]
fn an_event_storm_is_coalesced_and_ends_in_the_exact_final_state() {
    const FILES: usize = 1000;
    const WRITES: usize = 100_000;
    const KEPT: usize = 10;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = rt.block_on(Receiver::start(Mode::Plain));
    let host = prepared_host("aks-ubuntu-clean");
    let agent = Agent::start(host.path(), &[], &[("NODEDRIFT_ENDPOINT", &receiver.url())]);
    agent.wait_ready();
    let dir = host.path().join("etc/sysctl.d");
    std::thread::scope(|s| {
        for t in 0..4 {
            let dir = &dir;
            s.spawn(move || {
                for w in (t..WRITES).step_by(4) {
                    let i = w % FILES;
                    std::fs::write(
                        dir.join(format!("60-storm-{i}.conf")),
                        format!("# write {w}\n"),
                    )
                    .unwrap();
                }
            });
        }
    });
    for i in KEPT..FILES {
        std::fs::remove_file(dir.join(format!("60-storm-{i}.conf"))).unwrap();
    }
    let files_changed = |m: &str| metric(m, "nodedrift_files_changed");
    agent.wait_metrics("exactly the kept files changed", |m| {
        files_changed(m) == Some(KEPT as f64)
    });
    let peak = peak_rss_kib(agent.pid().as_raw().unsigned_abs());
    assert!(
        peak < 256 * 1024,
        "peak RSS {peak} KiB during the storm: memory is not bounded"
    );
    let events = accepted(&receiver);
    let storm: Vec<&CloudEvent> = events
        .iter()
        .filter(|e| {
            e.subject
                .as_deref()
                .is_some_and(|s| s.contains("/etc/sysctl.d/60-storm-"))
        })
        .collect();
    eprintln!(
        "figures: peak RSS {peak} KiB, {} events for {WRITES} writes to {FILES} files",
        storm.len()
    );
    assert!(
        storm.len() < 4 * FILES,
        "{} events for {WRITES} writes: not coalesced",
        storm.len()
    );
    crate::util::wait_until("the kept files reported as opened", PATIENCE, || {
        let events = accepted(&receiver);
        (0..KEPT).all(|i| {
            let subject = format!("files.kernel-tuning:/etc/sysctl.d/60-storm-{i}.conf");
            let mut open = false;
            for e in events
                .iter()
                .filter(|e| e.subject.as_deref() == Some(&subject))
            {
                open = e.kind == types::FINDING_OPENED;
            }
            open
        })
    });
    assert_eq!(agent.terminate(), Some(0));
}

/// The state directory's disk fills up while the agent runs and a finding resolves: the agent
/// stays alive, says it is not ready, and once space returns it records and delivers the
/// resolution on its own (within its 10 s store retry), with nothing lost.
#[test]
fn a_full_state_disk_holds_back_nothing_once_space_returns() {
    use std::io::Write as _;
    let disk = crate::util::Tmpfs::mount("size=64m,mode=0700")
        .expect("mounting a tmpfs (run the tests as root: tests/run.sh)");
    let state = tempfile::tempdir_in(disk.0.path()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = rt.block_on(Receiver::start(Mode::Plain));
    let host = prepared_host("aks-ubuntu-drifted");
    let agent = Agent::start_with_state(
        host.path(),
        state,
        &[],
        &[("NODEDRIFT_ENDPOINT", &receiver.url())],
    );
    agent.wait_ready();
    wait_until("the opening of the port finding", || {
        transitions(&accepted(&receiver), PORT_SUBJECT).len() == 1
    });

    // Fill the disk.
    let filler = disk.0.path().join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0x5a_u8; 1 << 20];
    while f.write_all(&chunk).and_then(|()| f.flush()).is_ok() {}
    while f.write_all(&[0]).is_ok() {}
    drop(f);

    set_read_only_port(host.path(), false);
    wait_until("not ready while the store cannot be written", || {
        agent.get("/readyz").0 == 503
    });
    assert_eq!(agent.get("/healthz").0, 200, "alive all the same");
    assert_eq!(
        transitions(&accepted(&receiver), PORT_SUBJECT).len(),
        1,
        "the resolution is not reported before it is recorded"
    );

    std::fs::remove_file(&filler).unwrap();
    wait_until("ready again", || agent.get("/readyz").0 == 200);
    wait_until("the resolution delivered", || {
        transitions(&accepted(&receiver), PORT_SUBJECT)
            == [types::FINDING_OPENED, types::FINDING_RESOLVED]
    });
    assert_eq!(agent.terminate(), Some(0));
}
