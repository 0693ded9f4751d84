//! The sink against a real HTTP API-server double ([`apiserver`]) in the test process: what is
//! written where, with which patch type, and how it behaves when the API server misbehaves.

mod apiserver;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::baseline::Severity;
use crate::finding::Status;
use crate::report::summary::{NodeState, NodeSummary};
use apiserver::{ApiServer, NODE, NODE_UID, Route, aks_node};

/// A hang guard, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(30);

fn fast() -> KubeOptions {
    KubeOptions {
        heartbeat_interval: Duration::from_secs(3600),
        events_per_minute: 100,
        event_dedup_window: Duration::from_secs(600),
        request_timeout: Duration::from_secs(10),
        backoff: Backoff {
            base: Duration::from_millis(5),
            max: Duration::from_millis(40),
            slow: Duration::from_millis(40),
        },
    }
}

fn update(state: NodeState, checked_at: &str) -> NodeStatusUpdate {
    let mut fail_by_severity: BTreeMap<Severity, usize> =
        Severity::ALL.iter().map(|s| (*s, 0)).collect();
    let (fail, top) = if state == NodeState::Drifted {
        fail_by_severity.insert(Severity::High, 1);
        (
            1,
            vec!["sysctl.ip-forward (sysctl[\"net.ipv4.ip_forward\"])".to_owned()],
        )
    } else {
        (0, vec![])
    };
    NodeStatusUpdate {
        snapshot_status: None,
        summary: NodeSummary {
            state,
            profile: "aks-ubuntu".to_owned(),
            checked_at: checked_at.to_owned(),
            pass: 40,
            fail,
            unknown: usize::from(state == NodeState::Unknown),
            fail_by_severity,
            top,
            reboot_required_since: None,
            reboot_reasons: vec![],
        },
        baseline_version: "sha256:0a1b2c".to_owned(),
        reboot_packages: vec![],
    }
}

fn sink(server: &ApiServer, opts: KubeOptions) -> KubeSink {
    KubeSink::with_client(server.client(), NODE.to_owned(), opts).expect("sink")
}

/// Polls `cond` until it holds (hang-guarded).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let wait = async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if tokio::time::timeout(HANG_GUARD, wait).await.is_err() {
        panic!("never happened: {what}");
    }
}

async fn guarded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, f)
        .await
        .expect("hang guard")
}

/// The run loop on its own task, with its inputs.
struct Running {
    desired: watch::Sender<Option<NodeStatusUpdate>>,
    events: mpsc::Sender<NodeEvent>,
    cancel: CancellationToken,
    metrics: Arc<KubeMetrics>,
    task: tokio::task::JoinHandle<()>,
}

fn spawn(sink: KubeSink) -> Running {
    let (desired, rx) = watch::channel(None);
    let (events, ev_rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let metrics = sink.metrics();
    let task = tokio::spawn(sink.run(rx, ev_rx, cancel.clone()));
    Running {
        desired,
        events,
        cancel,
        metrics,
        task,
    }
}

impl Running {
    fn set(&self, u: NodeStatusUpdate) {
        self.desired.send_replace(Some(u));
    }

    async fn stop(self) {
        self.cancel.cancel();
        guarded(self.task).await.expect("run loop did not panic");
    }
}

#[tokio::test]
async fn publish_writes_only_nodedrift_annotations_and_owned_conditions() {
    let server = ApiServer::start(Some(aks_node())).await;
    let sink = sink(&server, fast());
    let p = guarded(sink.publish(&update(NodeState::Drifted, "2026-03-01T10:00:00Z")))
        .await
        .expect("publish");
    assert!(p.annotations && p.conditions);
    server.assert_clean();
    {
        let w = server.world();
        assert_eq!(
            w.routes(),
            [
                (Route::GetNode, 200),
                (Route::PatchNode, 200),
                (Route::PatchStatus, 200)
            ]
        );
        let patch = w.last_body(Route::PatchNode).expect("node patch");
        assert_eq!(
            patch["metadata"]["annotations"]["nodedrift.dev/reboot-required-since"],
            Value::Null
        );
        assert_eq!(w.annotation(ANNOTATION_STATE).as_deref(), Some("Drifted"));
        assert_eq!(
            w.annotation(ANNOTATION_SUMMARY).as_deref(),
            Some(
                r#"{"fail":1,"failBySeverity":{"critical":0,"high":1,"info":0,"low":0,"medium":0},"pass":40,"unknown":0}"#
            )
        );
        // Nobody else's annotations, nor a nodedrift.dev/ key this sink does not own, are touched.
        assert_eq!(
            w.annotation("node.alpha.kubernetes.io/ttl").as_deref(),
            Some("0")
        );
        assert_eq!(
            w.annotation("nodedrift.dev/snapshot-request").as_deref(),
            Some("keep-me")
        );
        // The status patch carries only our conditions; the kubelet's survive the merge.
        let status = w.last_body(Route::PatchStatus).expect("status patch");
        let types: Vec<&Value> = status["status"]["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .map(|c| &c["type"])
            .collect();
        assert_eq!(types, [&json!("NodeDrift"), &json!("RebootRequired")]);
        for kubelet in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
            let c = w.condition(kubelet).expect(kubelet);
            assert_eq!(
                c["lastHeartbeatTime"], "2026-03-01T09:59:30Z",
                "{kubelet} untouched"
            );
        }
        assert_eq!(w.condition("Ready").expect("Ready")["status"], "True");
        let drift = w.condition("NodeDrift").expect("NodeDrift");
        assert_eq!(
            (drift["status"].as_str(), drift["reason"].as_str()),
            (Some("True"), Some("DriftDetected"))
        );
        assert!(
            drift["message"]
                .as_str()
                .expect("message")
                .contains("sysctl.ip-forward")
        );
    }

    // The same state again writes nothing.
    let p = guarded(sink.publish(&update(NodeState::Drifted, "2026-03-01T10:00:00Z")))
        .await
        .expect("publish");
    assert_eq!(p, Published::default());
    assert_eq!(server.world().requests.len(), 3);
    let m = sink.metrics().snapshot();
    assert_eq!(
        m.patches_ok,
        [(PatchKind::Annotations, 1), (PatchKind::Conditions, 1)]
    );
    assert_eq!(m.node_reads_ok, 1);
}

#[tokio::test]
async fn a_new_check_time_alone_waits_for_the_heartbeat() {
    let server = ApiServer::start(Some(aks_node())).await;
    let sink = sink(&server, fast());
    guarded(sink.publish(&update(NodeState::Clean, "2026-03-01T10:00:00Z")))
        .await
        .expect("publish");
    let writes = server.world().requests.len();
    let p = guarded(sink.publish(&update(NodeState::Clean, "2026-03-01T10:01:00Z")))
        .await
        .expect("publish");
    assert!(!p.annotations && !p.conditions);
    assert!(p.heartbeat_due.is_some(), "held until the heartbeat");
    assert_eq!(server.world().requests.len(), writes);
    assert_eq!(
        server.world().annotation(ANNOTATION_LAST_CHECK).as_deref(),
        Some("2026-03-01T10:00:00Z")
    );

    // With the heartbeat due, the same change is written, with the condition's transition time
    // kept.
    let mut opts = fast();
    opts.heartbeat_interval = Duration::ZERO;
    let hb = KubeSink::with_client(server.client(), NODE.to_owned(), opts).expect("sink");
    guarded(hb.publish(&update(NodeState::Clean, "2026-03-01T10:00:00Z")))
        .await
        .expect("publish");
    let p = guarded(hb.publish(&update(NodeState::Clean, "2026-03-01T10:02:00Z")))
        .await
        .expect("publish");
    assert!(p.annotations && p.conditions && p.heartbeat_due.is_none());
    let w = server.world();
    assert_eq!(
        w.annotation(ANNOTATION_LAST_CHECK).as_deref(),
        Some("2026-03-01T10:02:00Z")
    );
    assert_eq!(
        w.condition("NodeDrift").expect("NodeDrift")["lastTransitionTime"],
        "2026-01-10T08:05:00Z"
    );
    drop(w);
    server.assert_clean();
}

#[tokio::test]
async fn transition_time_moves_only_when_the_status_does() {
    let server = ApiServer::start(Some(aks_node())).await;
    let sink = sink(&server, fast());
    let ltt = |s: &ApiServer, kind: &str| {
        s.world().condition(kind).expect("condition")["lastTransitionTime"].clone()
    };

    // Still False (as the previous run left it), with another message: transition time kept.
    let mut clean = update(NodeState::Clean, "2026-03-01T10:00:00Z");
    clean.summary.pass = 41;
    guarded(sink.publish(&clean)).await.expect("publish");
    assert_eq!(ltt(&server, "NodeDrift"), "2026-01-10T08:05:00Z");
    let sent = server
        .world()
        .last_body(Route::PatchStatus)
        .cloned()
        .expect("patch");
    assert_eq!(
        sent["status"]["conditions"][0]["lastTransitionTime"],
        "2026-01-10T08:05:00Z"
    );

    // False -> True: it moves.
    guarded(sink.publish(&update(NodeState::Drifted, "2026-03-01T10:01:00Z")))
        .await
        .expect("publish");
    let drifted_since = ltt(&server, "NodeDrift");
    assert_ne!(drifted_since, "2026-01-10T08:05:00Z");
    let reboot_since = ltt(&server, "RebootRequired");

    // Still True, other findings on top: kept again, and RebootRequired untouched too.
    let mut worse = update(NodeState::Drifted, "2026-03-01T10:02:00Z");
    worse.summary.fail = 2;
    worse
        .summary
        .top
        .push("kubelet.no-alpha-gates (kubelet.featureGates[\"Foo\"])".to_owned());
    guarded(sink.publish(&worse)).await.expect("publish");
    assert_eq!(ltt(&server, "NodeDrift"), drifted_since);
    assert_eq!(ltt(&server, "RebootRequired"), reboot_since);
    let drift = server.world().condition("NodeDrift").expect("NodeDrift");
    assert!(
        drift["message"]
            .as_str()
            .expect("message")
            .contains("kubelet.no-alpha-gates")
    );

    // A sink started later reads the Node once and keeps the transition time it finds.
    let again = KubeSink::with_client(server.client(), NODE.to_owned(), fast()).expect("sink");
    let mut worse2 = worse.clone();
    worse2.summary.checked_at = "2026-03-01T10:03:00Z".to_owned();
    worse2.summary.pass = 39;
    guarded(again.publish(&worse2)).await.expect("publish");
    assert_eq!(ltt(&server, "NodeDrift"), drifted_since);
    server.assert_clean();
}

#[tokio::test]
async fn reboot_annotation_is_removed_when_the_reboot_is_done() {
    let server = ApiServer::start(Some(aks_node())).await;
    let sink = sink(&server, fast());
    let mut pending = update(NodeState::Clean, "2026-03-01T10:00:00Z");
    pending.summary.reboot_required_since = Some("2026-02-28T06:00:00Z".to_owned());
    pending.summary.reboot_reasons = vec!["KernelUpdate".to_owned()];
    pending.reboot_packages = vec!["linux-image-5.15.0-1080-azure".to_owned()];
    guarded(sink.publish(&pending)).await.expect("publish");
    {
        let w = server.world();
        assert_eq!(
            w.annotation(ANNOTATION_REBOOT_SINCE).as_deref(),
            Some("2026-02-28T06:00:00Z")
        );
        let c = w.condition("RebootRequired").expect("RebootRequired");
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("True"), Some("KernelUpdate"))
        );
        assert!(
            c["message"]
                .as_str()
                .expect("message")
                .contains("linux-image-5.15.0-1080-azure")
        );
    }

    guarded(sink.publish(&update(NodeState::Clean, "2026-03-01T11:00:00Z")))
        .await
        .expect("publish");
    let w = server.world();
    let patch = w.last_body(Route::PatchNode).expect("patch");
    assert_eq!(
        patch["metadata"]["annotations"].get(ANNOTATION_REBOOT_SINCE),
        Some(&Value::Null),
        "removed with null in the merge patch"
    );
    assert_eq!(w.annotation(ANNOTATION_REBOOT_SINCE), None);
    let c = w.condition("RebootRequired").expect("RebootRequired");
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("False"), Some("NoRebootRequired"))
    );
    drop(w);
    server.assert_clean();
}

#[tokio::test]
async fn events_name_the_node_fold_repeats_and_are_rate_limited() {
    let server = ApiServer::start(Some(aks_node())).await;
    let mut opts = fast();
    opts.events_per_minute = 5;
    let sink = sink(&server, opts);
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_772_000_000);
    let opened = NodeEvent::new(
        EventType::Warning,
        reasons::FINDING_OPENED,
        "high x at y".into(),
        t,
    );
    let send = |ev: NodeEvent| async { guarded(sink.event(ev)).await.expect("event") };

    assert_eq!(send(opened.clone()).await, EventOutcome::Created);
    let repeat = NodeEvent {
        time: t + Duration::from_secs(60),
        ..opened.clone()
    };
    assert_eq!(send(repeat).await, EventOutcome::Deduplicated);
    let finding =
        |m: &str| NodeEvent::new(EventType::Warning, reasons::FINDING_OPENED, m.into(), t);
    assert_eq!(send(finding("high z at w")).await, EventOutcome::Created);
    // Two tokens are left: finding Events may not take them...
    assert_eq!(
        send(finding("high q at r")).await,
        EventOutcome::RateLimited
    );
    // ...the node's own Events may.
    let required = NodeEvent::reboot_required(&["KernelUpdate".into()], &[], t);
    assert_eq!(send(required).await, EventOutcome::Created);
    assert_eq!(
        send(NodeEvent::reboot_cleared(t)).await,
        EventOutcome::Created
    );
    assert_eq!(
        send(NodeEvent::reboot_cleared(t + Duration::from_secs(1))).await,
        EventOutcome::RateLimited
    );

    let w = server.world();
    assert_eq!(
        w.routes(),
        [
            (Route::GetNode, 200),
            (Route::CreateEvent, 201),
            (Route::PatchEvent, 200),
            (Route::CreateEvent, 201),
            (Route::CreateEvent, 201),
            (Route::CreateEvent, 201),
        ]
    );
    assert_eq!(w.events.len(), 4);
    let first = w
        .events
        .values()
        .find(|e| e["reason"] == reasons::FINDING_OPENED && e["message"] == "high x at y")
        .expect("opened event");
    assert_eq!(first["involvedObject"]["uid"], NODE_UID);
    assert_eq!(first["type"], "Warning");
    assert_eq!(first["count"], 2);
    assert_eq!(first["firstTimestamp"], "2026-02-25T06:13:20Z");
    assert_eq!(first["lastTimestamp"], "2026-02-25T06:14:20Z");
    drop(w);
    let m = sink.metrics().snapshot();
    assert_eq!(
        (m.events_sent, m.events_deduplicated, m.events_rate_limited),
        (4, 1, 2)
    );
    server.assert_clean();
}

#[tokio::test]
async fn run_loop_converges_after_server_errors() {
    let server = ApiServer::start(Some(aks_node())).await;
    server.fail_next(Route::GetNode, 503);
    server.fail_next(Route::PatchNode, 500);
    server.fail_next(Route::PatchNode, 500);
    server.fail_next(Route::PatchStatus, 503);
    server.fail_next(Route::CreateEvent, 500);
    let run = spawn(sink(&server, fast()));
    run.set(update(NodeState::Drifted, "2026-03-01T10:00:00Z"));
    run.events
        .send(NodeEvent::baseline_rejected(
            "rule x: unknown expectation",
            SystemTime::now(),
        ))
        .await
        .expect("send");
    eventually("drift written and event sent", || {
        let w = server.world();
        w.annotation(ANNOTATION_STATE).as_deref() == Some("Drifted")
            && w.condition("NodeDrift")
                .is_some_and(|c| c["status"] == "True")
            && w.events.len() == 1
    })
    .await;
    let m = run.metrics.snapshot();
    assert_eq!(
        m.patches_failed,
        [(PatchKind::Annotations, 2), (PatchKind::Conditions, 1)]
    );
    assert_eq!((m.events_failed, m.events_sent), (1, 1));
    assert!(server.world().faults.is_empty());
    run.stop().await;
    server.assert_clean();
}

#[tokio::test]
async fn conflict_rereads_the_node_and_retries() {
    let server = ApiServer::start(Some(aks_node())).await;
    server.fail_next(Route::PatchStatus, 409);
    let run = spawn(sink(&server, fast()));
    run.set(update(NodeState::Drifted, "2026-03-01T10:00:00Z"));
    eventually("conditions written", || {
        server
            .world()
            .condition("NodeDrift")
            .is_some_and(|c| c["status"] == "True")
    })
    .await;
    run.stop().await;
    assert_eq!(
        server.world().routes(),
        [
            (Route::GetNode, 200),
            (Route::PatchNode, 200),
            (Route::PatchStatus, 409),
            (Route::GetNode, 200),
            (Route::PatchStatus, 200),
        ]
    );
    server.assert_clean();
}

#[tokio::test]
async fn throttling_backs_off_and_retries() {
    let server = ApiServer::start(Some(aks_node())).await;
    server.fail_next(Route::PatchNode, 429);
    server.fail_next(Route::PatchNode, 429);
    let run = spawn(sink(&server, fast()));
    run.set(update(NodeState::Clean, "2026-03-01T10:00:00Z"));
    eventually("annotations written", || {
        server.world().annotation(ANNOTATION_STATE).as_deref() == Some("Clean")
    })
    .await;
    assert_eq!(run.metrics.patches_failed(PatchKind::Annotations), 2);
    run.stop().await;
    server.assert_clean();
}

#[tokio::test]
async fn refused_writes_are_not_retried_and_do_not_hold_up_the_rest() {
    let server = ApiServer::start(Some(aks_node())).await;
    server.fail_next(Route::CreateEvent, 422);
    server.fail_next(Route::PatchNode, 422);
    let run = spawn(sink(&server, fast()));
    let t = SystemTime::now();
    run.events
        .send(NodeEvent::baseline_rejected("first", t))
        .await
        .expect("send");
    run.events
        .send(NodeEvent::baseline_rejected("second", t))
        .await
        .expect("send");
    eventually("the second event sent after the first was refused", || {
        server.world().events.len() == 1
    })
    .await;
    assert!(
        server
            .world()
            .events
            .values()
            .all(|e| e["message"].as_str().is_some_and(|m| m.ends_with("second")))
    );

    run.set(update(NodeState::Drifted, "2026-03-01T10:00:00Z"));
    eventually("the refused patch counted", || {
        run.metrics.patches_failed(PatchKind::Annotations) == 1
    })
    .await;
    // The next state is written.
    run.set(update(NodeState::Clean, "2026-03-01T10:01:00Z"));
    eventually("the next state written", || {
        server.world().annotation(ANNOTATION_STATE).as_deref() == Some("Clean")
    })
    .await;
    let m = run.metrics.snapshot();
    assert_eq!((m.events_dropped, m.events_sent), (1, 1));
    run.stop().await;
    server.assert_clean();
}

#[test]
fn throttling_honours_the_servers_retry_after() {
    let status: kube::core::Status = serde_json::from_value(json!({
        "status": "Failure", "code": 429, "reason": "TooManyRequests", "message": "slow down",
        "details": {"retryAfterSeconds": 7},
    }))
    .expect("status");
    let e = classify(PATCH_NODE, NODE, kube::Error::Api(Box::new(status)));
    assert_eq!(e.retry(), Retry::Soon(Duration::from_secs(7)));
    // And the backoff never goes below it.
    let b = Backoff::default();
    assert!(b.delay(0, Duration::from_secs(7)) >= Duration::from_secs(7));
    assert!(b.delay(30, Duration::ZERO) <= b.max);
}

/// Collects log lines of the current thread (the tests run on a current-thread runtime).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().expect("logs"))
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test]
async fn forbidden_is_logged_once_retried_and_does_not_block_other_writes() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = ApiServer::start(Some(aks_node())).await;
    for _ in 0..3 {
        server.fail_next(Route::PatchStatus, 403);
    }
    for _ in 0..2 {
        server.fail_next(Route::CreateEvent, 403);
    }
    let run = spawn(sink(&server, fast()));
    run.set(update(NodeState::Drifted, "2026-03-01T10:00:00Z"));
    run.events
        .send(NodeEvent::reboot_cleared(SystemTime::now()))
        .await
        .expect("send");
    eventually("annotations written while status is forbidden", || {
        server.world().annotation(ANNOTATION_STATE).as_deref() == Some("Drifted")
    })
    .await;
    eventually("conditions and the event written once allowed", || {
        let w = server.world();
        w.condition("NodeDrift")
            .is_some_and(|c| c["status"] == "True")
            && w.events.len() == 1
    })
    .await;
    run.stop().await;
    assert_eq!(server.world().count(Route::PatchStatus), 4);
    assert_eq!(server.world().count(Route::CreateEvent), 3);

    let errors: Vec<String> = logs
        .lines()
        .into_iter()
        .filter(|l| l.split_whitespace().nth(1) == Some("ERROR"))
        .collect();
    assert_eq!(
        errors.len(),
        2,
        "one ERROR per missing permission: {errors:#?}"
    );
    assert!(errors.iter().any(|l| l.contains("patch nodes/status")));
    assert!(errors.iter().any(|l| l.contains("create events")));
    server.assert_clean();
}

#[tokio::test]
async fn converges_to_the_latest_state_when_the_api_server_comes_back() {
    let mut server = ApiServer::reserve(Some(aks_node())).await;
    let run = spawn(sink(&server, fast()));
    let mut first = update(NodeState::Drifted, "2026-03-01T10:00:00Z");
    first.baseline_version = "stale-A".to_owned();
    run.set(first);
    eventually("a refused connection", || {
        run.metrics.snapshot().node_reads_failed >= 1
    })
    .await;
    let mut second = update(NodeState::Clean, "2026-03-01T10:05:00Z");
    second.baseline_version = "latest-B".to_owned();
    run.set(second);
    let failed = run.metrics.snapshot().node_reads_failed;
    eventually("another refused connection", || {
        run.metrics.snapshot().node_reads_failed > failed
    })
    .await;

    server.up().await;
    eventually("latest state written", || {
        let w = server.world();
        w.annotation(ANNOTATION_BASELINE_VERSION).as_deref() == Some("latest-B")
            && w.condition("NodeDrift")
                .is_some_and(|c| c["status"] == "False")
    })
    .await;
    {
        let w = server.world();
        assert_eq!(w.annotation(ANNOTATION_STATE).as_deref(), Some("Clean"));
        assert!(
            !w.requests
                .iter()
                .any(|r| r.body.to_string().contains("stale-A")),
            "a stale state was replayed"
        );
        assert_eq!(w.count(Route::PatchNode), 1);
    }

    // Down again mid-life (pooled connections die with it), a new state, back up.
    server.down().await;
    let mut third = update(NodeState::Drifted, "2026-03-01T10:10:00Z");
    third.baseline_version = "latest-C".to_owned();
    run.set(third);
    let failed = run.metrics.patches_failed(PatchKind::Annotations);
    eventually("a failed patch while down", || {
        run.metrics.patches_failed(PatchKind::Annotations) > failed
    })
    .await;
    server.up().await;
    eventually("converged again", || {
        server
            .world()
            .annotation(ANNOTATION_BASELINE_VERSION)
            .as_deref()
            == Some("latest-C")
    })
    .await;
    run.stop().await;
    server.assert_clean();
}

#[tokio::test]
async fn an_unregistered_node_is_retried_until_it_appears() {
    let server = ApiServer::start(None).await;
    let run = spawn(sink(&server, fast()));
    run.set(update(NodeState::Clean, "2026-03-01T10:00:00Z"));
    eventually("two 404s", || run.metrics.snapshot().node_reads_failed >= 2).await;
    assert_eq!(server.world().count(Route::PatchNode), 0);
    server.world().node = Some(aks_node());
    eventually("written once registered", || {
        server.world().annotation(ANNOTATION_STATE).as_deref() == Some("Clean")
    })
    .await;
    run.stop().await;
    server.assert_clean();
}

#[tokio::test]
async fn a_held_heartbeat_is_written_when_due() {
    let server = ApiServer::start(Some(aks_node())).await;
    let mut opts = fast();
    opts.heartbeat_interval = Duration::from_millis(200);
    let run = spawn(sink(&server, opts));
    run.set(update(NodeState::Clean, "2026-03-01T10:00:00Z"));
    eventually("first write", || {
        server.world().count(Route::PatchStatus) == 1
    })
    .await;
    run.set(update(NodeState::Clean, "2026-03-01T10:00:30Z"));
    eventually("heartbeat written", || {
        server.world().annotation(ANNOTATION_LAST_CHECK).as_deref() == Some("2026-03-01T10:00:30Z")
            && server.world().count(Route::PatchStatus) == 2
    })
    .await;
    run.stop().await;
    server.assert_clean();
}

#[tokio::test]
async fn node_labels_feed_the_system_label_check() {
    let server = ApiServer::start(Some(aks_node())).await;
    let sink = sink(&server, fast());
    let registered: BTreeMap<String, String> = [
        ("kubernetes.azure.com/agentpool", "nodepool1"),
        ("kubernetes.azure.com/mode", "system"),
        ("kubernetes.azure.com/role", "agent"),
        ("agentpool", "nodepool1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let labels = guarded(sink.node_inputs()).await.expect("labels").labels;
    let f = system_label_findings(&labels, &registered);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].status, Status::Pass);

    server.world().node.as_mut().expect("node")["metadata"]["labels"]["kubernetes.azure.com/mode"] =
        json!("user");
    let labels = guarded(sink.node_inputs()).await.expect("labels").labels;
    let f = system_label_findings(&labels, &registered);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].status, Status::Fail);
    assert_eq!(f[0].path, "node.labels[\"kubernetes.azure.com/mode\"]");
    assert_eq!(f[0].actual, "user");
    assert_eq!(
        server.world().count(Route::PatchNode),
        0,
        "reading writes nothing"
    );
    server.assert_clean();
}

#[tokio::test]
async fn kubelet_and_api_server_versions_feed_the_skew_check() {
    let server = ApiServer::start(Some(aks_node())).await;
    let sink = sink(&server, fast());
    let kubelet = guarded(sink.node_inputs())
        .await
        .expect("node")
        .kubelet_version;
    assert_eq!(kubelet.as_deref(), Some("v1.32.4"));
    let api_server = guarded(sink.server_version()).await.expect("version");
    assert_eq!(api_server, "v1.32.4");
    let versions = Versions {
        kubelet: kubelet.clone(),
        api_server: Some(api_server),
    };
    let f = version_skew_findings(&versions);
    assert_eq!(f[0].status, Status::Pass);

    // The control plane is upgraded past the kubelet's window.
    server.world().server_version = Some("v1.36.0".into());
    let api_server = guarded(sink.server_version()).await.expect("version");
    let f = version_skew_findings(&Versions {
        kubelet,
        api_server: Some(api_server),
    });
    assert_eq!(f[0].status, Status::Fail);
    assert_eq!(f[0].rule, VERSION_SKEW_RULE);

    // A Node without nodeInfo (not yet posted by the kubelet) has no kubelet version.
    server.edit_node(|n| {
        n["status"]
            .as_object_mut()
            .expect("status")
            .remove("nodeInfo");
    });
    let inputs = guarded(sink.node_inputs()).await.expect("node");
    assert_eq!(inputs.kubelet_version, None);

    server.fail_next(Route::Version, 503);
    assert!(guarded(sink.server_version()).await.is_err());
    assert_eq!(server.world().count(Route::Version), 3);
    server.assert_clean();
}

#[tokio::test]
async fn node_names_that_are_not_dns_subdomains_are_refused() {
    let server = ApiServer::start(Some(aks_node())).await;
    let long = "a".repeat(254);
    for bad in [
        "",
        "Node1",
        "a/b",
        "../nodes",
        "a b",
        "a..b",
        "-a",
        "a-",
        ".a",
        "node%2F1",
        "a_b",
        "a?x=1",
        long.as_str(),
    ] {
        let r = KubeSink::with_client(server.client(), bad.to_owned(), fast());
        assert!(
            matches!(r, Err(KubeSinkError::InvalidNodeName { .. })),
            "{bad:?} accepted"
        );
    }
    assert!(server.world().requests.is_empty());

    // The longest valid name still yields valid Event names.
    let label = "b".repeat(63);
    let longest = format!("{label}.{label}.{label}.{}", "c".repeat(61));
    assert_eq!(longest.len(), 253);
    let sink = KubeSink::with_client(server.client(), longest, fast()).expect("valid");
    let mut st = sink.state.lock().await;
    for _ in 0..3 {
        let name = sink.event_name(&mut st, SystemTime::now());
        assert!(valid_node_name(&name), "{name}");
    }
}

/// The Node is watched (one request, this node only), so a label or a `nodedrift.dev/`
/// annotation set by someone else reaches the agent as it happens; a deleted Node ends the
/// watch with "not found".
#[tokio::test]
async fn the_own_node_is_watched() {
    let server = ApiServer::start(Some(aks_node())).await;
    let sink = Arc::new(sink(&server, fast()));
    let first = guarded(sink.node_inputs()).await.expect("read");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let task = {
        let (sink, cancel, version) = (Arc::clone(&sink), cancel.clone(), first.resource_version);
        tokio::spawn(async move {
            sink.watch_node(&version, &cancel, |i| {
                let _ = tx.send(i);
            })
            .await
        })
    };
    server.edit_node(|n| {
        n["metadata"]["annotations"]["nodedrift.dev/snapshot-request"] = json!("r1");
        n["metadata"]["annotations"]["team.example/owner"] = json!("ops");
    });
    let got = guarded(rx.recv()).await.expect("a change");
    assert_eq!(
        got.annotations.get("nodedrift.dev/snapshot-request"),
        Some(&"r1".to_owned())
    );
    assert!(
        got.annotations
            .keys()
            .all(|k| k.starts_with("nodedrift.dev/")),
        "only our annotations are passed on: {got:?}"
    );
    server.edit_node(|n| n["metadata"]["labels"]["kubernetes.azure.com/mode"] = json!("user"));
    let got = guarded(rx.recv()).await.expect("another change");
    assert_eq!(got.labels["kubernetes.azure.com/mode"], "user");
    cancel.cancel();
    let last = guarded(task).await.expect("task").expect("ended cleanly");
    assert_eq!(last, got.resource_version, "where to watch on from");

    // Deleted while watched: the watch ends with "not found".
    let cancel = CancellationToken::new();
    let task = {
        let (sink, cancel) = (Arc::clone(&sink), cancel.clone());
        tokio::spawn(async move { sink.watch_node(&last, &cancel, |_| {}).await })
    };
    server.world().node = None;
    let ended = guarded(task).await.expect("task");
    assert!(
        matches!(ended, Err(KubeSinkError::NotFound { .. })),
        "{ended:?}"
    );
    assert_eq!(server.world().count(Route::WatchNode), 2);
    server.assert_clean();
}
