//! End to end: `nodedrift run` (the real binary) delivering CloudEvents to a receiver in the
//! test process, through outages and SIGKILLs of the agent.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nix::sys::signal::Signal;
use nodedrift::report::cloudevents::{CloudEvent, types};

use crate::http_sink::receiver::{Fault, Mode, Receiver};
use crate::run::Agent;
use crate::util::{check_json, prepared_host, with_status};

/// Hang guard.
const PATIENCE: Duration = Duration::from_secs(60);

/// Events the receiver accepted (answered 2xx), in arrival order.
pub fn accepted(r: &Receiver) -> Vec<CloudEvent> {
    r.requests()
        .iter()
        .filter(|q| q.accepted())
        .flat_map(|q| q.events())
        .collect()
}

fn wait_until(what: &str, done: impl FnMut() -> bool) {
    crate::util::wait_until(what, PATIENCE, done);
}

/// `rule:path` of every failing finding of a one-shot check of `root`.
fn failing_subjects(root: &std::path::Path) -> BTreeSet<String> {
    let (_, report) = check_json(root, &[]);
    with_status(&report, "fail")
        .iter()
        .map(|f| {
            format!(
                "{}:{}",
                f["rule"].as_str().unwrap(),
                f["path"].as_str().unwrap()
            )
        })
        .collect()
}

/// Distinct event ids per (type, subject).
fn ids_by_subject(events: &[CloudEvent]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut m: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for e in events {
        m.entry((e.kind.clone(), e.subject.clone().unwrap_or_default()))
            .or_default()
            .insert(e.id.clone());
    }
    m
}

#[test]
fn every_failing_finding_reaches_the_endpoint_once_and_resolves() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = rt.block_on(Receiver::start(Mode::Plain));
    let host = prepared_host("aks-ubuntu-drifted");
    let expected = failing_subjects(host.path());
    let agent = Agent::start(host.path(), &[], &[("NODEDRIFT_ENDPOINT", &receiver.url())]);
    // The opened findings, the reboot and the summary are separate pushes to the outbox, so
    // they may arrive in separate batches: wait for all of them.
    wait_until("every opened finding, the reboot and a summary", || {
        let events = accepted(&receiver);
        let got: BTreeSet<String> = events
            .iter()
            .filter(|e| e.kind == types::FINDING_OPENED)
            .filter_map(|e| e.subject.clone())
            .collect();
        expected.is_subset(&got)
            && events.iter().any(|e| e.kind == types::REBOOT_REQUIRED)
            && events.iter().any(|e| e.kind == types::NODE_SUMMARY)
    });
    let events = accepted(&receiver);
    assert!(
        events.iter().any(|e| e.kind == types::REBOOT_REQUIRED),
        "reboot.required sent"
    );
    assert!(
        events.iter().any(|e| e.kind == types::NODE_SUMMARY),
        "a summary heartbeat sent"
    );
    let first = &receiver.requests()[0];
    assert_eq!(
        first.header("content-type"),
        Some("application/cloudevents-batch+json")
    );
    let opened = events
        .iter()
        .find(|e| e.kind == types::FINDING_OPENED)
        .unwrap();
    assert_eq!(opened.specversion, "1.0");
    assert!(opened.source.starts_with("nodedrift://"));
    assert!(
        opened.data["finding"]["rule"].is_string(),
        "{:#}",
        opened.data
    );

    // Fix one drift: its finding resolves, and that reaches the endpoint too.
    let cfg = host.path().join("etc/default/kubeletconfig.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("\"readOnlyPort\": 10255", "\"readOnlyPort\": 0"),
    )
    .unwrap();
    let subject = "kubelet.read-only-port-disabled:kubelet.config.readOnlyPort";
    wait_until("the resolved event", || {
        accepted(&receiver)
            .iter()
            .any(|e| e.kind == types::FINDING_RESOLVED && e.subject.as_deref() == Some(subject))
    });
    // Nothing was opened twice.
    for ((kind, subject), ids) in ids_by_subject(&accepted(&receiver)) {
        if kind == types::FINDING_OPENED {
            assert_eq!(ids.len(), 1, "{subject} opened {} times", ids.len());
        }
    }
    drop(agent);
}

#[test]
fn outage_and_three_sigkills_lose_nothing_and_duplicate_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = rt.block_on(Receiver::start(Mode::Plain));
    // The endpoint is down (503) for as long as the agent is killed and restarted.
    receiver.push_faults(std::iter::repeat_n(Fault::Status(503, "down"), 100_000));
    let host = prepared_host("aks-ubuntu-drifted");
    let expected = failing_subjects(host.path());
    let env = [("NODEDRIFT_ENDPOINT", receiver.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut state = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let before = receiver.requests().len();
        let agent = Agent::start_with_state(host.path(), state, &[], &env);
        // Ready: the first full check is done and the file watches are in place (the sink may
        // already be re-sending what the previous run left in the outbox).
        agent.wait_ready();
        wait_until("a delivery attempt", || receiver.requests().len() > before);
        if round == 1 {
            // A change while the endpoint is down: this finding resolves during the outage.
            let cfg = host.path().join("etc/default/kubeletconfig.json");
            let text = std::fs::read_to_string(&cfg).unwrap();
            std::fs::write(
                &cfg,
                text.replace("\"readOnlyPort\": 10255", "\"readOnlyPort\": 0"),
            )
            .unwrap();
            agent.wait_metrics("the re-check", |m| {
                m.contains("nodedrift_rule_status{rule=\"kubelet.read-only-port-disabled\",status=\"pass\"} 1")
            });
        }
        let (_, s) = agent.stop(Signal::SIGKILL);
        state = s;
    }
    assert!(
        accepted(&receiver).is_empty(),
        "nothing was accepted during the outage"
    );

    // Recovery.
    receiver.clear_faults();
    let agent = Agent::start_with_state(host.path(), state, &[], &env);
    let resolved = "kubelet.read-only-port-disabled:kubelet.config.readOnlyPort";
    wait_until("every event delivered", || {
        let got = ids_by_subject(&accepted(&receiver));
        let opened: BTreeSet<&String> = got
            .keys()
            .filter(|(k, _)| k == types::FINDING_OPENED)
            .map(|(_, s)| s)
            .collect();
        expected.iter().all(|s| opened.contains(s))
            && got.contains_key(&(types::FINDING_RESOLVED.to_owned(), resolved.to_owned()))
    });
    agent.wait_metrics("an empty outbox", |m| {
        m.contains("nodedrift_outbox_depth 0")
    });
    let got = ids_by_subject(&accepted(&receiver));
    for ((kind, subject), ids) in &got {
        if kind == types::FINDING_OPENED || kind == types::FINDING_RESOLVED {
            assert_eq!(
                ids.len(),
                1,
                "{kind} {subject}: {} distinct events",
                ids.len()
            );
        }
    }
    drop(agent);
}
