//! File integrity in `nodedrift run` (the real binary) with a CloudEvents receiver in the test
//! process: capture at first start, realtime changes, atomic replace, changes made while the
//! agent was down, accept, and an inotify overflow forcing a full re-verification.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use nodedrift::report::cloudevents::{CloudEvent, types};
use serde_json::Value;

use crate::delivery::accepted;
use crate::http_sink::receiver::{Mode, Receiver};
use crate::run::Agent;
use crate::util::{nodedrift, prepared_host};

const PATIENCE: Duration = Duration::from_secs(60);

/// The first `kind` event for `subject`, waiting for it.
fn wait_event(r: &Receiver, kind: &str, subject: &str) -> CloudEvent {
    let mut found = None;
    crate::util::wait_until(&format!("{kind} for {subject}"), PATIENCE, || {
        found = accepted(r)
            .into_iter()
            .find(|e| e.kind == kind && e.subject.as_deref() == Some(subject));
        found.is_some()
    });
    found.unwrap()
}

fn summary_seen(r: &Receiver) {
    crate::util::wait_until("a node summary", PATIENCE, || {
        accepted(r).iter().any(|e| e.kind == types::NODE_SUMMARY)
    });
}

fn detail(e: &CloudEvent) -> &Value {
    &e.data["finding"]["detail"]
}

#[test]
fn realtime_changes_replace_and_accept_flow_to_the_endpoint() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = rt.block_on(Receiver::start(Mode::Plain));
    let host = prepared_host("aks-ubuntu-clean");
    let agent = Agent::start(host.path(), &[], &[("NODEDRIFT_ENDPOINT", &receiver.url())]);
    summary_seen(&receiver);
    assert!(
        agent.state.path().join("files.redb").is_file(),
        "the first start captures the file baseline"
    );
    assert!(
        !accepted(&receiver)
            .iter()
            .any(|e| e.kind == types::FINDING_OPENED
                && e.subject.as_deref().unwrap_or("").starts_with("files.")),
        "a fresh capture has no file findings"
    );

    // An in-place edit.
    let conf = host.path().join("etc/containerd/config.toml");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("\n# edited by hand\n");
    std::fs::write(&conf, &text).unwrap();
    let e = wait_event(
        &receiver,
        types::FINDING_OPENED,
        "files.container-runtime:/etc/containerd/config.toml",
    );
    let d = detail(&e);
    assert_eq!(d["change"], "modified");
    let attrs: Vec<&str> = d["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["attribute"].as_str().unwrap())
        .collect();
    assert!(attrs.contains(&"sha256") && attrs.contains(&"size"), "{d}");
    assert!(
        d["diff"]
            .as_str()
            .unwrap_or("")
            .contains("+# edited by hand"),
        "a redacted diff of the text file: {d}"
    );
    assert!(
        d["attribution"]["status"].is_string(),
        "attributed, or unattributed with a reason: {d}"
    );
    assert!(d["detectedAt"].is_string());

    // An atomic replace: write a temporary file, rename it over the watched one.
    let kubeconfig = host.path().join("var/lib/kubelet/kubeconfig");
    let tmp = host.path().join("var/lib/kubelet/.kubeconfig.tmp");
    std::fs::write(&tmp, "apiVersion: v1\nkind: Config\n").unwrap();
    std::fs::rename(&tmp, &kubeconfig).unwrap();
    let e = wait_event(
        &receiver,
        types::FINDING_OPENED,
        "files.kubelet-state:/var/lib/kubelet/kubeconfig",
    );
    assert_eq!(detail(&e)["change"], "modified");

    // A file added to a watched directory.
    std::fs::write(
        host.path().join("etc/sysctl.d/50-hand.conf"),
        "vm.swappiness = 1\n",
    )
    .unwrap();
    let e = wait_event(
        &receiver,
        types::FINDING_OPENED,
        "files.kernel-tuning:/etc/sysctl.d/50-hand.conf",
    );
    assert_eq!(detail(&e)["change"], "added");

    // Accepting the edit resolves its finding (the store changes under the running agent).
    let out = nodedrift()
        .args([
            "baseline",
            "accept",
            "/etc/containerd/config.toml",
            "--reason",
            "approved in CHG-1",
        ])
        .arg("--host-root")
        .arg(host.path())
        .arg("--state-dir")
        .arg(agent.state.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_event(
        &receiver,
        types::FINDING_RESOLVED,
        "files.container-runtime:/etc/containerd/config.toml",
    );
    // The other two stay open.
    let resolved: Vec<String> = accepted(&receiver)
        .iter()
        .filter(|e| e.kind == types::FINDING_RESOLVED)
        .filter_map(|e| e.subject.clone())
        .filter(|s| s.starts_with("files."))
        .collect();
    assert_eq!(
        resolved,
        ["files.container-runtime:/etc/containerd/config.toml"]
    );
}

#[test]
fn changes_made_while_the_agent_was_down_are_found_at_start() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = rt.block_on(Receiver::start(Mode::Plain));
    let host = prepared_host("aks-ubuntu-clean");
    let agent = Agent::start(host.path(), &[], &[("NODEDRIFT_ENDPOINT", &receiver.url())]);
    summary_seen(&receiver);
    let (_, state) = agent.stop(Signal::SIGTERM);

    let ca = host.path().join("etc/kubernetes/certs/ca.crt");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nforged\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::remove_file(host.path().join("etc/sysctl.d/10-network-security.conf")).unwrap();

    let _agent = Agent::start_with_state(
        host.path(),
        state,
        &[],
        &[("NODEDRIFT_ENDPOINT", &receiver.url())],
    );
    let e = wait_event(
        &receiver,
        types::FINDING_OPENED,
        "files.kubernetes-config:/etc/kubernetes/certs/ca.crt",
    );
    let d = detail(&e);
    assert_eq!(d["attribution"]["status"], "unattributed");
    assert!(
        d["attribution"]["reason"]
            .as_str()
            .unwrap()
            .contains("not running"),
        "{d}"
    );
    let e = wait_event(
        &receiver,
        types::FINDING_OPENED,
        "files.kernel-tuning:/etc/sysctl.d/10-network-security.conf",
    );
    assert_eq!(detail(&e)["change"], "removed");
}

/// The inotify queue size is read when an inotify instance is created: the agent started while
/// it is tiny gets a queue that overflows at once, and must re-verify everything. (A burst can
/// also fill the agent's own trigger queue first; that loss forces the same re-verification.)
#[test]
fn an_inotify_overflow_forces_a_full_reverification() {
    let knob = Path::new("/proc/sys/fs/inotify/max_queued_events");
    let Ok(original) = std::fs::read_to_string(knob) else {
        panic!("cannot read {}: this test needs it", knob.display());
    };
    let host = prepared_host("aks-ubuntu-clean");
    if std::fs::write(knob, "1").is_err() {
        panic!(
            "cannot lower {} (needs root): cannot force an overflow",
            knob.display()
        );
    }
    let agent = Agent::start(host.path(), &[], &[]);
    // The agent's instances exist once it listens; restore the system's value at once.
    std::fs::write(knob, original.trim()).unwrap();
    crate::util::wait_until("the first check", PATIENCE, || {
        agent.get("/readyz").0 == 200
    });
    let dir = host.path().join("etc/sysctl.d");
    // Four writers at once, so the burst outruns the agent's reader whatever the load.
    std::thread::scope(|s| {
        for t in 0..4 {
            let dir = &dir;
            s.spawn(move || {
                for i in (t..200).step_by(4) {
                    std::fs::write(dir.join(format!("60-burst-{i}.conf")), format!("# {i}\n"))
                        .unwrap();
                }
            });
        }
    });
    let metric = |name: &str| -> f64 {
        let (_, body) = agent.get("/metrics");
        body.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let deadline = std::time::Instant::now() + PATIENCE;
    // Events are lost in the kernel's queue (an inotify overflow) or, when the agent's reader
    // keeps up with it, in the agent's own bounded trigger queue; either way the loss is
    // counted and forces a full re-verification.
    while !((metric("nodedrift_inotify_overflows_total") >= 1.0
        || metric("nodedrift_trigger_events_dropped_total") >= 1.0)
        && metric("nodedrift_file_rescans_total{result=\"overflow\"}") >= 1.0)
    {
        if std::time::Instant::now() > deadline {
            let (_, body) = agent.get("/metrics");
            panic!("no overflow-driven re-verification; metrics:\n{body}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    crate::util::wait_until("all 200 new files reported", PATIENCE, || {
        metric("nodedrift_files_changed") >= 200.0
    });
}

/// A process that changes a watched file is named in the finding (fanotify, CAP_SYS_ADMIN).
#[test]
fn the_finding_names_the_process_that_changed_the_file() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = rt.block_on(Receiver::start(Mode::Plain));
    let host = prepared_host("aks-ubuntu-clean");
    let _agent = Agent::start(host.path(), &[], &[("NODEDRIFT_ENDPOINT", &receiver.url())]);
    summary_seen(&receiver);
    let target = host.path().join("etc/sysctl.d/10-network-security.conf");
    // The writer stays alive until the finding arrives, so its /proc entry is read live.
    let mut writer = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys,time\nwith open(sys.argv[1],'a') as f: f.write('net.ipv4.ip_forward = 0\\n')\ntime.sleep(30)",
        ])
        .arg(&target)
        .spawn()
        .unwrap();
    let e = wait_event(
        &receiver,
        types::FINDING_OPENED,
        "files.kernel-tuning:/etc/sysctl.d/10-network-security.conf",
    );
    let _ = writer.kill();
    let _ = writer.wait();
    let a = &detail(&e)["attribution"];
    if a["status"] == "unattributed"
        && a["reason"]
            .as_str()
            .unwrap_or("")
            .contains("fanotify unavailable")
    {
        let why = a["reason"].as_str().unwrap_or("");
        if std::env::var_os("NODEDRIFT_TEST_ALLOW_NO_FANOTIFY").is_some() {
            eprintln!("SKIPPED: this machine cannot run fanotify: {why}");
            return;
        }
        panic!(
            "fanotify attribution could not run here ({why}); set NODEDRIFT_TEST_ALLOW_NO_FANOTIFY=1 to accept that"
        );
    }
    assert_eq!(a["status"], "attributed", "{a}");
    let actor = &a["actor"];
    assert_eq!(actor["pid"], writer.id(), "{actor}");
    assert!(
        actor["comm"].as_str().unwrap().starts_with("python3"),
        "{actor}"
    );
    assert!(
        actor["cmdline"]
            .to_string()
            .contains("10-network-security.conf"),
        "{actor}"
    );
    assert_eq!(actor["uid"], nix::unistd::getuid().as_raw(), "{actor}");
    let parents = actor["parents"].as_array().unwrap();
    assert!(
        parents.iter().any(|p| p["pid"] == std::process::id()),
        "the test process is in the parent chain: {actor}"
    );
}
