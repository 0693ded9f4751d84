//! Faults injected into a live `nodedrift run` (the real binary): SIGKILLs at random moments
//! of its writes, an API server that keeps going away, and a wall clock that jumps.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use nodedrift::report::cloudevents::{CloudEvent, types};

use crate::delivery::accepted;
use crate::http_sink::receiver::{Fault, Mode, Receiver};
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

/// A small deterministic generator (xorshift), so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
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
    let mut rng = Rng(seed);
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
            std::thread::sleep(Duration::from_millis(rng.below(15)));
        } else {
            std::thread::sleep(Duration::from_millis(rng.below(40)));
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
