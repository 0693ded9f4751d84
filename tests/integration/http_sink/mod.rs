//! The endpoint sink (`report::http`) against a real HTTPS CloudEvents receiver in the test
//! process: delivery, at-least-once across faults, dead-lettering, 413 splitting, token
//! rotation, mTLS and TLS failures. The outbox is an in-memory implementation of the `Outbox`
//! trait, the contract the ledger fulfils.

pub mod receiver;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nodedrift::report::cloudevents::{BATCH_CONTENT_TYPE, CloudEvent, types};
use nodedrift::report::http::{
    Backoff, EndpointConfig, FailureReason, HttpSink, Outbox, Outcome, SinkError, SinkMetrics,
};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use receiver::{Answer, Fault, HANG_GUARD, Mode, Pki, Receiver};

/// Backoff short enough that retries do not slow the suite.
const FAST: Backoff = Backoff {
    base: Duration::from_millis(1),
    cap: Duration::from_millis(20),
};

fn event(n: usize) -> CloudEvent {
    CloudEvent::new(
        "node-a",
        types::FINDING_OPENED,
        Some(format!("kubelet.config/rule-{n}")),
        "2026-01-01T00:00:00Z".into(),
        &format!("gen-{n}"),
        json!({"rule": format!("rule-{n}"), "status": "fail"}),
    )
}

fn events(n: usize) -> Vec<CloudEvent> {
    (0..n).map(event).collect()
}

fn ids(events: &[CloudEvent]) -> Vec<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

/// The outbox contract in memory: a queue, what was acked and what was dead-lettered. Each ack
/// is checked against the receiver: an event may only be acked once the receiver has accepted
/// (2xx) a request holding it.
struct MemOutbox {
    queue: Mutex<Vec<CloudEvent>>,
    acked: Mutex<Vec<String>>,
    dead: Mutex<Vec<(String, String)>>,
    accepted_by_receiver: Box<dyn Fn(&str) -> bool + Send + Sync>,
    premature_acks: Mutex<Vec<String>>,
    changes: watch::Sender<u64>,
}

impl MemOutbox {
    fn new(receiver: &Receiver) -> Arc<MemOutbox> {
        let records = receiver.records();
        Arc::new(MemOutbox {
            queue: Mutex::new(Vec::new()),
            acked: Mutex::new(Vec::new()),
            dead: Mutex::new(Vec::new()),
            accepted_by_receiver: Box::new(move |id| {
                records
                    .requests()
                    .iter()
                    .any(|r| r.accepted() && r.ids().iter().any(|i| i == id))
            }),
            premature_acks: Mutex::new(Vec::new()),
            changes: watch::channel(0).0,
        })
    }

    fn push(&self, events: Vec<CloudEvent>) {
        self.queue.lock().unwrap().extend(events);
    }

    fn pending(&self) -> usize {
        self.queue.lock().unwrap().len()
    }

    fn acked(&self) -> Vec<String> {
        self.acked.lock().unwrap().clone()
    }

    fn dead(&self) -> Vec<(String, String)> {
        self.dead.lock().unwrap().clone()
    }

    fn remove(&self, ids: &[String]) {
        self.queue.lock().unwrap().retain(|e| !ids.contains(&e.id));
        self.changes.send_modify(|v| *v += 1);
    }

    /// Waits (at most the hang guard) until the queue is empty.
    async fn wait_drained(&self) {
        let mut rx = self.changes.subscribe();
        tokio::time::timeout(HANG_GUARD, async {
            while self.pending() > 0 {
                rx.changed().await.unwrap();
            }
        })
        .await
        .expect("outbox drained within the hang guard");
    }
}

impl Outbox for MemOutbox {
    fn peek(&self, max: usize) -> Result<Vec<CloudEvent>, String> {
        Ok(self
            .queue
            .lock()
            .unwrap()
            .iter()
            .take(max)
            .cloned()
            .collect())
    }

    fn ack(&self, ids: &[String]) -> Result<(), String> {
        for id in ids {
            if !(self.accepted_by_receiver)(id) {
                self.premature_acks.lock().unwrap().push(id.clone());
            }
        }
        self.acked.lock().unwrap().extend_from_slice(ids);
        self.remove(ids);
        Ok(())
    }

    fn dead_letter(&self, ids: &[String], reason: &str) -> Result<(), String> {
        self.dead
            .lock()
            .unwrap()
            .extend(ids.iter().map(|id| (id.clone(), reason.to_owned())));
        self.remove(ids);
        Ok(())
    }
}

/// A sink task and what it needs.
struct Running {
    wake: Arc<Notify>,
    cancel: CancellationToken,
    metrics: Arc<SinkMetrics>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(sink: HttpSink, outbox: Arc<MemOutbox>) -> Running {
        let wake = Arc::new(Notify::new());
        let cancel = CancellationToken::new();
        let metrics = Arc::new(SinkMetrics::new());
        let task = tokio::spawn(sink.run(outbox, wake.clone(), cancel.clone(), metrics.clone()));
        Running {
            wake,
            cancel,
            metrics,
            task,
        }
    }

    /// Waits (at most the hang guard) until `cond` holds on the metrics. The sink has no event
    /// for every counter, so this looks every few milliseconds.
    async fn wait_metrics(&self, cond: impl Fn(&SinkMetrics) -> bool) {
        tokio::time::timeout(HANG_GUARD, async {
            while !cond(&self.metrics) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("metrics condition within the hang guard");
    }

    /// Cancels and waits for the task to end (it must, within the hang guard).
    async fn stop(self) -> Arc<SinkMetrics> {
        self.cancel.cancel();
        tokio::time::timeout(HANG_GUARD, self.task)
            .await
            .expect("the sink stops when cancelled")
            .expect("the sink task does not panic");
        self.metrics
    }
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// Replaces a file the way the kubelet's atomic writer does: a new file renamed over it.
fn rotate(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A config for the receiver, trusting its CA, with fast retries and a short timeout.
fn config(receiver: &Receiver, pki: &Pki, dir: &Path) -> EndpointConfig {
    let mut cfg = EndpointConfig::new(receiver.url());
    cfg.ca_file = Some(write(dir, "ca.pem", &pki.ca_pem));
    cfg.backoff = FAST;
    cfg.timeout = Duration::from_secs(2);
    cfg
}

#[tokio::test]
async fn delivers_a_batch_as_cloudevents_json() {
    let pki = Pki::new("deliver");
    let receiver = Receiver::start(Mode::Tls(&pki)).await;
    let dir = tempfile::tempdir().unwrap();
    let sink = HttpSink::new(config(&receiver, &pki, dir.path())).unwrap();

    let batch = events(3);
    assert_eq!(sink.send(&batch).await, Outcome::Delivered);

    let reqs = receiver.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/events");
    assert_eq!(r.header("content-type"), Some(BATCH_CONTENT_TYPE));
    assert!(r.header("user-agent").unwrap().starts_with("nodedrift/"));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(
        r.events(),
        batch,
        "the body is the batch, events parse back"
    );
    let raw: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(raw[0]["specversion"], "1.0");
    assert_eq!(raw[0]["type"], types::FINDING_OPENED);

    // A 2xx with a body that is not JSON is still a delivery: the status decides.
    receiver.push_faults([Fault::Garbage200]);
    assert_eq!(sink.send(&batch[..1]).await, Outcome::Delivered);
}

#[tokio::test]
async fn run_delivers_at_least_once_across_faults() {
    let pki = Pki::new("faults");
    let receiver = Receiver::start(Mode::Tls(&pki)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&receiver, &pki, dir.path());
    cfg.timeout = Duration::from_millis(500);
    receiver.push_faults([
        Fault::Status(500, "internal error"),
        Fault::RetryAfter(429, "1"),
        Fault::Reset,
        Fault::Slow(Duration::from_secs(2)),
        Fault::Status(503, "unavailable"),
        Fault::Garbage200,
    ]);
    let outbox = MemOutbox::new(&receiver);
    let batch = events(3);
    outbox.push(batch.clone());

    let running = Running::start(HttpSink::new(cfg).unwrap(), outbox.clone());
    running.wake.notify_one();
    outbox.wait_drained().await;
    let metrics = running.stop().await;

    let reqs = receiver.requests();
    let answers: Vec<Answer> = reqs.iter().map(|r| r.answer.clone()).collect();
    assert_eq!(
        answers,
        [
            Answer::Status(500),
            Answer::Status(429),
            Answer::Reset,
            Answer::Slow,
            Answer::Status(503),
            Answer::Status(200),
        ]
    );
    for r in &reqs {
        assert_eq!(
            r.ids(),
            ids(&batch),
            "every retry carries the same events, same ids"
        );
    }
    assert!(
        reqs[2].at.duration_since(reqs[1].at) >= Duration::from_secs(1),
        "Retry-After: 1 is honoured (the backoff alone is at most 20 ms)"
    );
    assert_eq!(outbox.acked(), ids(&batch));
    assert!(
        outbox.premature_acks.lock().unwrap().is_empty(),
        "acked only after the receiver answered 2xx"
    );
    assert!(outbox.dead().is_empty());

    let c = metrics.snapshot();
    assert_eq!(c.delivered_events, 3);
    assert_eq!(c.delivered_batches, 1);
    assert_eq!(c.retries, 5);
    assert_eq!(metrics.failures(FailureReason::ServerError), 2);
    assert_eq!(metrics.failures(FailureReason::RateLimited), 1);
    assert_eq!(metrics.failures(FailureReason::Connection), 1);
    assert_eq!(metrics.failures(FailureReason::Timeout), 1);
    assert!(c.last_success_unix_ms.is_some());
}

#[tokio::test]
async fn refused_batch_is_dead_lettered_once_and_the_sink_moves_on() {
    let pki = Pki::new("reject");
    let receiver = Receiver::start(Mode::Tls(&pki)).await;
    let dir = tempfile::tempdir().unwrap();
    receiver.push_faults([Fault::Status(
        400,
        "event 1: field \"time\" is not RFC 3339",
    )]);
    let outbox = MemOutbox::new(&receiver);
    let refused = events(2);
    outbox.push(refused.clone());

    let running = Running::start(
        HttpSink::new(config(&receiver, &pki, dir.path())).unwrap(),
        outbox.clone(),
    );
    outbox.wait_drained().await;
    let dead = outbox.dead();
    assert_eq!(
        dead.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        ids(&refused)
    );
    assert!(dead[0].1.contains("400"), "{}", dead[0].1);
    assert!(dead[0].1.contains("is not RFC 3339"), "{}", dead[0].1);

    // The next event goes through: the refusal did not stall or loop.
    let next = vec![event(7)];
    outbox.push(next.clone());
    running.wake.notify_one();
    outbox.wait_drained().await;
    let metrics = running.stop().await;

    let reqs = receiver.requests();
    assert_eq!(
        reqs.len(),
        2,
        "one refused request, one accepted; no retry of the refusal"
    );
    assert_eq!(reqs[1].ids(), ids(&next));
    assert_eq!(outbox.acked(), ids(&next));
    let c = metrics.snapshot();
    assert_eq!(c.dead_lettered_events, 2);
    assert_eq!(c.retries, 0);
    assert_eq!(metrics.failures(FailureReason::Rejected), 1);
}

#[tokio::test]
async fn too_large_batches_are_split_until_they_fit() {
    let pki = Pki::new("split");
    let receiver = Receiver::start(Mode::Tls(&pki)).await;
    let dir = tempfile::tempdir().unwrap();
    receiver.limit_events(1);
    let outbox = MemOutbox::new(&receiver);
    let batch = events(5);
    outbox.push(batch.clone());

    let running = Running::start(
        HttpSink::new(config(&receiver, &pki, dir.path())).unwrap(),
        outbox.clone(),
    );
    outbox.wait_drained().await;
    let metrics = running.stop().await;

    let reqs = receiver.requests();
    let delivered: Vec<String> = reqs
        .iter()
        .filter(|r| r.accepted())
        .flat_map(|r| r.ids())
        .collect();
    assert_eq!(
        delivered,
        ids(&batch),
        "each event delivered once, in order"
    );
    assert!(
        reqs.iter()
            .filter(|r| r.accepted())
            .all(|r| r.ids().len() == 1)
    );
    assert_eq!(outbox.acked(), ids(&batch));
    assert!(outbox.dead().is_empty());
    // 5 → 2 + 3, 2 → 1 + 1, 3 → 1 + 2, 2 → 1 + 1.
    assert_eq!(metrics.snapshot().splits, 4);
    assert_eq!(metrics.snapshot().retries, 0);
}

#[tokio::test]
async fn a_single_event_still_too_large_is_dead_lettered() {
    let pki = Pki::new("toolarge");
    let receiver = Receiver::start(Mode::Tls(&pki)).await;
    let dir = tempfile::tempdir().unwrap();
    receiver.push_faults([
        Fault::Status(413, "too large"),
        Fault::Status(413, "still too large"),
    ]);
    let outbox = MemOutbox::new(&receiver);
    outbox.push(vec![event(1), event(2)]);

    let running = Running::start(
        HttpSink::new(config(&receiver, &pki, dir.path())).unwrap(),
        outbox.clone(),
    );
    outbox.wait_drained().await;
    running.stop().await;
    // The pair is refused and split; the first event alone is refused again; the second fits.
    let reqs = receiver.requests();
    assert_eq!(
        reqs.len(),
        3,
        "{:?}",
        reqs.iter().map(|r| &r.answer).collect::<Vec<_>>()
    );
    assert_eq!(
        outbox
            .dead()
            .iter()
            .map(|(id, _)| id.clone())
            .collect::<Vec<_>>(),
        vec![event(1).id]
    );
    assert!(outbox.dead()[0].1.contains("413"));
    assert_eq!(outbox.acked(), vec![event(2).id]);
}

#[tokio::test]
async fn bearer_token_follows_rotation_of_the_file() {
    let pki = Pki::new("token");
    let receiver = Receiver::start(Mode::Tls(&pki)).await;
    let dir = tempfile::tempdir().unwrap();
    let token = write(dir.path(), "token", "first-token\n");
    let mut cfg = config(&receiver, &pki, dir.path());
    cfg.token_file = Some(token.clone());
    let sink = HttpSink::new(cfg).unwrap();

    assert_eq!(sink.send(&events(1)).await, Outcome::Delivered);
    assert_eq!(sink.send(&events(1)).await, Outcome::Delivered);
    rotate(&token, "second-token");
    assert_eq!(sink.send(&events(1)).await, Outcome::Delivered);

    let seen: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_owned())
        .collect();
    assert_eq!(
        seen,
        [
            "Bearer first-token",
            "Bearer first-token",
            "Bearer second-token"
        ]
    );
}

#[tokio::test]
async fn no_request_without_a_token_then_delivery_once_it_appears() {
    let pki = Pki::new("notoken");
    let receiver = Receiver::start(Mode::Tls(&pki)).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let mut cfg = config(&receiver, &pki, dir.path());
    cfg.token_file = Some(token.clone());
    let outbox = MemOutbox::new(&receiver);
    let batch = events(2);
    outbox.push(batch.clone());

    let running = Running::start(HttpSink::new(cfg).unwrap(), outbox.clone());
    running
        .wait_metrics(|m| m.failures(FailureReason::TokenUnavailable) >= 3)
        .await;
    rotate(&token, "");
    let seen = running.metrics.failures(FailureReason::TokenUnavailable);
    running
        .wait_metrics(|m| m.failures(FailureReason::TokenUnavailable) >= seen + 3)
        .await;
    assert!(
        receiver.requests().is_empty(),
        "nothing sent without a token"
    );
    assert_eq!(outbox.pending(), 2);

    rotate(&token, "late-token");
    outbox.wait_drained().await;
    running.stop().await;
    let reqs = receiver.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("authorization"), Some("Bearer late-token"));
    assert_eq!(reqs[0].ids(), ids(&batch));
}

#[tokio::test]
async fn mutual_tls_works_with_the_client_certificate_and_fails_without() {
    let pki = Pki::new("mtls");
    let receiver = Receiver::start(Mode::MutualTls(&pki)).await;
    let dir = tempfile::tempdir().unwrap();

    let mut cfg = config(&receiver, &pki, dir.path());
    cfg.client_cert = Some(write(dir.path(), "client.pem", &pki.client_cert_pem));
    cfg.client_key = Some(write(dir.path(), "client.key", &pki.client_key_pem));
    let with_cert = HttpSink::new(cfg).unwrap();
    assert_eq!(with_cert.send(&events(1)).await, Outcome::Delivered);
    assert_eq!(receiver.requests().len(), 1);

    let without = HttpSink::new(config(&receiver, &pki, dir.path())).unwrap();
    match without.send(&events(1)).await {
        Outcome::Retry { reason, .. } => assert_eq!(reason, FailureReason::Tls),
        other => panic!("expected a retryable TLS failure, got {other:?}"),
    }
    receiver.wait_handshake_failures(1).await;
    assert_eq!(
        receiver.requests().len(),
        1,
        "no request got through without a certificate"
    );
}

#[tokio::test]
async fn untrusted_server_certificate_is_retried_not_fatal() {
    let pki = Pki::new("server");
    let other = Pki::new("other");
    let receiver = Receiver::start(Mode::Tls(&pki)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&receiver, &other, dir.path());

    let sink = HttpSink::new(cfg.clone()).unwrap();
    match sink.send(&events(1)).await {
        Outcome::Retry { reason, detail, .. } => {
            assert_eq!(reason, FailureReason::Tls, "{detail}");
        }
        other => panic!("expected a retryable TLS failure, got {other:?}"),
    }

    // In the run loop: the event stays in the outbox, the loop keeps going, and cancellation
    // ends even a long backoff.
    cfg.backoff = Backoff {
        base: Duration::from_secs(3600),
        cap: Duration::from_secs(3600),
    };
    let outbox = MemOutbox::new(&receiver);
    outbox.push(events(1));
    let running = Running::start(HttpSink::new(cfg).unwrap(), outbox.clone());
    running
        .wait_metrics(|m| m.failures(FailureReason::Tls) >= 1)
        .await;
    let metrics = running.stop().await;
    assert_eq!(outbox.pending(), 1);
    assert!(outbox.acked().is_empty() && outbox.dead().is_empty());
    assert_eq!(metrics.snapshot().delivered_events, 0);
    assert!(receiver.requests().is_empty());
}

#[tokio::test]
async fn without_a_ca_file_the_system_trust_store_is_used() {
    // Builds offline from the machine's CA bundle; a private test CA is not in it.
    let pki = Pki::new("private");
    let receiver = Receiver::start(Mode::Tls(&pki)).await;
    let mut cfg = EndpointConfig::new(receiver.url());
    cfg.backoff = FAST;
    let sink = HttpSink::new(cfg).expect("the system trust store loads");
    match sink.send(&events(1)).await {
        Outcome::Retry { reason, detail, .. } => {
            assert_eq!(reason, FailureReason::Tls, "{detail}");
        }
        other => panic!("expected a retryable TLS failure, got {other:?}"),
    }
    assert!(receiver.requests().is_empty());
}

#[tokio::test]
async fn wake_drives_delivery_without_waiting_for_the_poll() {
    let receiver = Receiver::start(Mode::Plain).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EndpointConfig::new(receiver.url());
    // A token to a loopback collector over plain http is allowed.
    cfg.token_file = Some(write(dir.path(), "token", "t"));
    cfg.backoff = FAST;
    // The poll would never come in this test: only the wake can start the delivery.
    cfg.poll_interval = Duration::from_secs(3600);
    let outbox = MemOutbox::new(&receiver);
    let running = Running::start(HttpSink::new(cfg).unwrap(), outbox.clone());

    for round in 0..3 {
        let batch = vec![event(round)];
        outbox.push(batch.clone());
        running.wake.notify_one();
        outbox.wait_drained().await;
        assert_eq!(receiver.requests()[round].ids(), ids(&batch));
    }
    running.stop().await;
    assert_eq!(receiver.requests().len(), 3);
    assert_eq!(
        receiver.requests()[0].header("authorization"),
        Some("Bearer t")
    );
}

#[tokio::test]
async fn plain_http_with_a_token_to_a_remote_host_is_refused() {
    let mut cfg = EndpointConfig::new("http://192.0.2.10:8080/events");
    cfg.token_file = Some("/var/run/secrets/tokens/nodedrift".into());
    match HttpSink::new(cfg.clone()) {
        Err(e @ SinkError::TokenOverPlainHttp { .. }) => {
            assert!(
                e.to_string().contains("http://192.0.2.10:8080/events"),
                "{e}"
            );
        }
        other => panic!("expected TokenOverPlainHttp, got {other:?}"),
    }
    // Without a token, plain http is allowed (with a warning at startup).
    cfg.token_file = None;
    assert!(HttpSink::new(cfg).is_ok());
}
