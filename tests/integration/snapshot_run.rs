//! End to end: snapshots asked of the running agent through its own Node's
//! `nodedrift.dev/snapshot-request` annotation (set on the API-server double), answered in
//! `nodedrift.dev/snapshot-status`, an Event and a `dev.nodedrift.snapshot.ready` CloudEvent
//! received by an endpoint in the test process; the bundle on the node verifies.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use nodedrift::report::cloudevents::{CloudEvent, types};
use serde_json::json;

use crate::http_sink::receiver::{Fault, Mode, Receiver};
use crate::node_sink::Sinks;
use crate::run::Agent;
use crate::util::{nodedrift, prepared_host, run_bounded};

const PATIENCE: Duration = Duration::from_secs(60);
const REQUEST: &str = "nodedrift.dev/snapshot-request";
const STATUS: &str = "nodedrift.dev/snapshot-status";

fn wait_until(what: &str, done: impl FnMut() -> bool) {
    crate::util::wait_until(what, PATIENCE, done);
}

struct Setup {
    sinks: Sinks,
    host: tempfile::TempDir,
}

impl std::ops::Deref for Setup {
    type Target = Sinks;
    fn deref(&self) -> &Sinks {
        &self.sinks
    }
}

impl Setup {
    /// The double's Node already carries a request (`keep-me`), as if made while the agent was
    /// down.
    fn new() -> Self {
        Self::with_snapshot_config("")
    }

    /// `extra`: more `snapshot:` keys, indented.
    fn with_snapshot_config(extra: &str) -> Self {
        let sinks = Sinks::start();
        // One second between snapshots, so the test does not wait the default five minutes;
        // Events not rate-limited (the drifted host's first findings would use up the budget).
        std::fs::write(
            sinks.dir.path().join("config.yaml"),
            format!(
                "snapshot:\n  minInterval: 1s\n  keep: 10\n{extra}kubernetes:\n  eventsPerMinute: 1000\n"
            ),
        )
        .unwrap();
        Self {
            sinks,
            host: prepared_host("aks-ubuntu-drifted"),
        }
    }

    fn start(&self, state: tempfile::TempDir) -> Agent {
        let config = self.sinks.dir.path().join("config.yaml");
        self.sinks.start_agent(
            self.host.path(),
            state,
            &["--config", config.to_str().unwrap()],
        )
    }

    fn status(&self) -> Option<String> {
        self.api.world().annotation(STATUS)
    }

    fn request(&self, id: &str) {
        self.api
            .edit_node(|n| n["metadata"]["annotations"][REQUEST] = json!(id));
    }

    fn ready_events(&self) -> Vec<CloudEvent> {
        self.events(types::SNAPSHOT_READY)
    }

    /// Waits for `<id> ready <sha256>` and returns the SHA-256.
    fn wait_ready(&self, id: &str) -> String {
        let prefix = format!("{id} ready ");
        wait_until(&format!("{id} ready"), || {
            self.status().is_some_and(|s| s.starts_with(&prefix))
        });
        self.status().unwrap()[prefix.len()..].to_owned()
    }
}

fn bundles(state: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(state.join("snapshots"))
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn a_request_on_the_node_is_answered_once_with_a_verified_bundle() {
    let s = Setup::new();
    let agent = s.start(tempfile::tempdir().unwrap());

    // The request already on the Node at start is answered.
    let sha = s.wait_ready("keep-me");
    let files = bundles(agent.state.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let out = run_bounded(nodedrift().args(["snapshot", "verify"]).arg(&files[0]), 60);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&sha));
    wait_until("snapshot.ready delivered", || !s.ready_events().is_empty());
    let ready = &s.ready_events()[0];
    assert_eq!(ready.data["sha256"], json!(sha), "{:#}", ready.data);
    assert_eq!(ready.data["id"], json!("keep-me"));
    wait_until("a SnapshotReady Event naming the hash", || {
        s.api.world().events.values().any(|e| {
            e["reason"] == "SnapshotReady" && e["message"].as_str().unwrap_or("").contains(&sha)
        })
    });

    // Ids that could name a path, or are 10 KB long: refused, nothing written, never echoed.
    for (round, bad) in ["../../etc/passwd".to_owned(), "x".repeat(10 * 1024)]
        .iter()
        .enumerate()
    {
        s.request(bad);
        wait_until("the request refused", || {
            s.status().as_deref() == Some("- rejected invalid-id")
        });
        // A valid request in between, so the next refusal is a new status.
        let neutral = format!("neutral-{round}");
        s.request(&neutral);
        s.wait_ready(&neutral);
        std::fs::remove_file(bundles(agent.state.path()).pop().unwrap()).unwrap();
    }
    assert_eq!(bundles(agent.state.path()).len(), 1);

    // A restart with the same request still on the Node does not take it again; the next
    // request is a barrier that shows what was taken.
    let (code, state) = agent.stop(Signal::SIGTERM);
    assert_eq!(code, Some(0));
    s.request("keep-me");
    let agent = s.start(state);
    wait_until("the restarted agent watching its Node", || {
        s.api
            .world()
            .count(crate::node_sink::apiserver::Route::WatchNode)
            >= 2
    });
    s.request("after-restart");
    s.wait_ready("after-restart");
    let files = bundles(agent.state.path());
    assert_eq!(
        files.len(),
        2,
        "keep-me once, after-restart once: {files:?}"
    );

    s.api.assert_clean();
    assert_eq!(agent.terminate(), Some(0));
}

/// A flood of requests costs a snapshot or two, not one each: the latest waits for the minimum
/// interval and replaces the ones before it.
#[test]
fn a_flood_of_requests_is_coalesced() {
    let s = Setup::new();
    let agent = s.start(tempfile::tempdir().unwrap());
    s.wait_ready("keep-me");
    for i in 0..30 {
        s.request(&format!("flood-{i}"));
    }
    s.wait_ready("flood-29");
    let files = bundles(agent.state.path());
    assert!(
        files.len() <= 3,
        "keep-me, at most one flood request taken before the interval, and the last: {files:?}"
    );
    s.api.assert_clean();
    assert_eq!(agent.terminate(), Some(0));
}

/// With `snapshot.uploadUrl`, the bundle is uploaded (PUT, the file's bytes, retried after a
/// 503) and the CloudEvent points at it; an upload refused for good leaves the bundle on the
/// node and says so.
#[test]
fn bundles_are_uploaded_and_a_refused_upload_is_reported() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(Receiver::start(Mode::Plain));
    store.push_faults([Fault::Status(503, "busy")]);
    let url = format!("{}/snapshots", store.url().trim_end_matches('/'));
    let s = Setup::with_snapshot_config(&format!("  uploadUrl: {url}\n"));
    let agent = s.start(tempfile::tempdir().unwrap());
    let prefix = "keep-me uploaded ";
    wait_until("keep-me uploaded", || {
        s.status().is_some_and(|st| st.starts_with(prefix))
    });
    let sha = s.status().unwrap()[prefix.len()..].to_owned();
    let puts: Vec<_> = store
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 2, "a 503, then the upload");
    let file = bundles(agent.state.path()).pop().unwrap();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let base_path = url.split_once("//").unwrap().1.split_once('/').unwrap().1;
    assert_eq!(puts[1].path, format!("/{base_path}/{name}"));
    assert_eq!(
        puts[1].body,
        std::fs::read(&file).unwrap(),
        "the file's bytes"
    );
    assert_eq!(puts[1].header("x-checksum-sha256"), Some(sha.as_str()));
    assert_eq!(puts[1].header("content-type"), Some("application/gzip"));
    wait_until("snapshot.ready delivered", || !s.ready_events().is_empty());
    let ready = &s.ready_events()[0];
    assert_eq!(ready.data["location"], json!(format!("{url}/{name}")));
    assert_eq!(ready.data["uploadError"], json!(null));

    // Refused for good (403): the bundle stays on the node, the status says ready.
    store.push_faults([Fault::Status(403, "no")]);
    s.request("refused");
    s.wait_ready("refused");
    wait_until("the refusal in the CloudEvent", || {
        s.ready_events().len() >= 2
    });
    let ready = &s.ready_events()[1];
    assert!(
        ready.data["uploadError"]
            .as_str()
            .is_some_and(|e| e.contains("403")),
        "{:#}",
        ready.data
    );
    assert!(
        ready.data["location"]
            .as_str()
            .unwrap()
            .starts_with("node://")
    );
    s.api.assert_clean();
    assert_eq!(agent.terminate(), Some(0));
}
