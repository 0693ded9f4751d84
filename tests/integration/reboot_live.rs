//! End to end: a pending reboot appearing, going and surviving a restart while `nodedrift run`
//! (the real binary) reports to its own Node through the API-server double and to a
//! CloudEvents receiver, both in the test process.
//!
//! The host is a copy of `aks-ubuntu-clean` (no marker, running the newest installed kernel:
//! no reboot pending) with a `/run` directory, where Debian's `/var/run` symlink points. The
//! package list is written before the marker, and the marker is moved into place with its
//! modification time already set, so each change is one observation: the time and packages
//! the agent sees are the ones the test chose.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use nodedrift::clock::{rfc3339_secs, unix_now};
use nodedrift::report::cloudevents::{CloudEvent, types};
use serde_json::{Value, json};

use crate::node_sink::Sinks;
use crate::run::Agent;
use crate::util::prepared_host;

const PATIENCE: Duration = Duration::from_secs(60);
const SINCE_ANNOTATION: &str = "nodedrift.dev/reboot-required-since";
const PACKAGES: [&str; 2] = ["linux-image-5.15.0-1062-azure", "libssl3"];

fn wait_until(what: &str, done: impl FnMut() -> bool) {
    crate::util::wait_until(what, PATIENCE, done);
}

/// The sinks and the host an agent runs against.
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
    fn new() -> Self {
        let host = prepared_host("aks-ubuntu-clean");
        // A clean node runs a current image (the fixture's own is older than 30 days by now):
        // one more failing finding would spend the Event budget the transitions need.
        crate::util::set_node_image_age(host.path(), 3);
        std::fs::create_dir_all(host.path().join("run")).unwrap();
        std::fs::create_dir_all(host.path().join("staging")).unwrap();
        Self {
            sinks: Sinks::start(),
            host,
        }
    }

    /// Starts the agent on `state` and waits until its file watches are in place.
    fn start(&self, state: tempfile::TempDir) -> Agent {
        self.sinks.start_agent(self.host.path(), state, &[])
    }

    fn marker(&self) -> PathBuf {
        self.host.path().join("run/reboot-required")
    }

    /// Writes the package list, then moves a marker modified at `mtime` (Unix seconds) into
    /// place, as one change.
    fn require_reboot(&self, packages: &[&str], mtime: i64) {
        let list: String = packages.iter().map(|p| format!("{p}\n")).collect();
        std::fs::write(self.host.path().join("run/reboot-required.pkgs"), list).unwrap();
        let staged = self.host.path().join("staging/reboot-required");
        std::fs::write(&staged, "*** System restart required ***\n").unwrap();
        set_mtime(&staged, at(mtime));
        std::fs::rename(&staged, self.marker()).unwrap();
    }

    fn annotation(&self) -> Option<String> {
        self.api.world().annotation(SINCE_ANNOTATION)
    }

    fn reboot_condition(&self) -> Option<Value> {
        self.api.world().condition("RebootRequired")
    }

    /// Whether a Kubernetes Event with `reason` and a message containing every one of
    /// `words` was created.
    fn k8s_event(&self, reason: &str, words: &[&str]) -> Option<Value> {
        self.api
            .world()
            .events
            .values()
            .find(|e| {
                e["reason"] == reason
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| words.iter().all(|w| m.contains(w)))
            })
            .cloned()
    }

    /// Waits for the state a running agent reports about a node with no pending reboot, so
    /// what follows is a transition.
    fn wait_no_reboot_reported(&self) {
        wait_until("RebootRequired=False and a node summary", || {
            self.reboot_condition()
                .is_some_and(|c| c["status"] == "False")
                && !self.events(types::NODE_SUMMARY).is_empty()
        });
        assert_eq!(self.annotation(), None);
    }
}

fn at(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap())
}

fn set_mtime(path: &Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_modified(t))
        .unwrap();
}

/// Distinct ids among `events`, sorted.
fn ids(events: &[CloudEvent]) -> Vec<String> {
    let mut ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

#[test]
fn a_marker_appearing_then_going_is_reported_on_the_node_and_to_the_endpoint() {
    let s = Setup::new();
    let agent = s.start(tempfile::tempdir().unwrap());
    s.wait_no_reboot_reported();

    // (a) The marker appears with its package list.
    let mtime = unix_now();
    let since = rfc3339_secs(mtime);
    s.require_reboot(&PACKAGES, mtime);
    wait_until(
        "RebootRequired=True, the since annotation, reboot.required and an Event",
        || {
            s.reboot_condition().is_some_and(|c| c["status"] == "True")
                && s.annotation().is_some()
                && !s.events(types::REBOOT_REQUIRED).is_empty()
                && s.k8s_event("RebootRequired", &[]).is_some()
        },
    );
    let cond = s.reboot_condition().unwrap();
    assert_eq!(cond["reason"], "PackageUpdate", "{cond:#}");
    let message = cond["message"].as_str().unwrap();
    for p in PACKAGES {
        assert!(message.contains(p), "condition names {p}: {message}");
    }
    assert!(message.contains(&since), "condition dates it: {message}");
    assert_eq!(
        s.annotation().as_deref(),
        Some(since.as_str()),
        "the since annotation is the marker's time"
    );
    let required = s.events(types::REBOOT_REQUIRED);
    assert_eq!(
        ids(&required).len(),
        1,
        "one reboot.required: {required:#?}"
    );
    let data = &required[0].data;
    assert_eq!(data["since"], json!(since), "{data:#}");
    assert_eq!(data["reasons"], json!(["PackageUpdate"]), "{data:#}");
    assert_eq!(data["packages"], json!(PACKAGES), "{data:#}");
    assert_eq!(
        data["details"][0]["file"],
        json!("/var/run/reboot-required"),
        "each reason's evidence: {data:#}"
    );
    let event = s.k8s_event("RebootRequired", &[]).unwrap();
    assert_eq!(event["type"], "Warning", "{event:#}");
    for p in PACKAGES {
        assert!(
            event["message"].as_str().unwrap().contains(p),
            "the Event names {p}: {event:#}"
        );
    }

    // (b) The marker goes (the reboot happened).
    std::fs::remove_file(s.marker()).unwrap();
    wait_until(
        "RebootRequired=False, no since annotation, reboot.cleared and an Event",
        || {
            s.reboot_condition().is_some_and(|c| c["status"] == "False")
                && s.annotation().is_none()
                && !s.events(types::REBOOT_CLEARED).is_empty()
                && s.k8s_event("RebootCleared", &[]).is_some()
        },
    );
    let cond = s.reboot_condition().unwrap();
    assert_eq!(cond["reason"], "NoRebootRequired", "{cond:#}");
    let cleared = s.events(types::REBOOT_CLEARED);
    assert_eq!(ids(&cleared).len(), 1, "one reboot.cleared: {cleared:#?}");
    // The README's data of reboot.cleared: `since`, `reasons`, `packages`; `since` is the start
    // of the pending period that ended.
    // It names what was pending.
    let data = &cleared[0].data;
    assert_eq!(data["since"], json!(since), "reboot.cleared data: {data}");
    assert_eq!(data["reasons"], json!(["PackageUpdate"]), "{data:#}");
    assert_eq!(data["packages"], json!(PACKAGES), "{data:#}");
    assert_ne!(
        cleared[0].id, required[0].id,
        "each event of the period has its own id"
    );
    assert_eq!(
        ids(&s.events(types::REBOOT_REQUIRED)).len(),
        1,
        "no other reboot.required"
    );

    s.api.assert_clean();
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn a_restart_keeps_the_earliest_since_and_sends_no_second_reboot_required() {
    let s = Setup::new();
    let agent = s.start(tempfile::tempdir().unwrap());
    s.wait_no_reboot_reported();

    let three_days_ago = unix_now() - 3 * 86_400;
    let since = rfc3339_secs(three_days_ago);
    s.require_reboot(&PACKAGES, three_days_ago);
    wait_until("the since annotation and reboot.required", || {
        s.annotation().is_some() && !s.events(types::REBOOT_REQUIRED).is_empty()
    });
    assert_eq!(s.annotation().as_deref(), Some(since.as_str()));
    let first = s.events(types::REBOOT_REQUIRED);
    assert_eq!(first[0].data["since"], json!(since), "{:#}", first[0].data);

    let (code, state) = agent.stop(Signal::SIGTERM);
    assert_eq!(code, Some(0));
    // While the agent is down the marker is rewritten (another package wanting the reboot):
    // its time is now newer than the start of the pending period.
    set_mtime(&s.marker(), SystemTime::now());
    // The restarted agent finds the Node without the annotation, so what it writes is seen.
    s.api
        .world()
        .node
        .as_mut()
        .unwrap()
        .pointer_mut("/metadata/annotations")
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(SINCE_ANNOTATION);
    let summaries = s.events(types::NODE_SUMMARY).len();

    let agent = s.start(state);
    // The restarted agent's first evaluation queues its reboot events (if any) before its
    // summary, and the outbox is delivered in order: once its summary has arrived, so has
    // anything it sent about the reboot.
    wait_until("the restarted agent's annotation and summary", || {
        s.annotation().is_some() && s.events(types::NODE_SUMMARY).len() > summaries
    });
    assert_eq!(
        s.annotation().as_deref(),
        Some(since.as_str()),
        "the annotation keeps the start of the pending period"
    );
    let cond = s.reboot_condition().unwrap();
    assert_eq!(cond["status"], "True", "{cond:#}");
    assert!(
        cond["message"].as_str().unwrap().contains(&since),
        "{cond:#}"
    );
    let summary = s.events(types::NODE_SUMMARY)[summaries].clone();
    assert_eq!(
        summary.data["rebootRequiredSince"],
        json!(since),
        "{:#}",
        summary.data
    );
    let required = s.events(types::REBOOT_REQUIRED);
    assert_eq!(
        ids(&required),
        ids(&first),
        "no second reboot.required for the same pending period (a redelivery keeps its id): {required:#?}"
    );
    let metrics = agent.wait_metrics("the reboot gauges", |m| {
        m.contains("\nnodedrift_reboot_required 1\n")
    });
    let age: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("nodedrift_reboot_required_seconds "))
        .unwrap_or_else(|| panic!("no reboot age in the metrics:\n{metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(age >= 3 * 86_400, "pending for {age} s");

    s.api.assert_clean();
    assert_eq!(agent.terminate(), Some(0));
}

/// A package list that grows while the reboot is pending is sent as `reboot.updated`; a reboot
/// that did not apply the updates (another boot id, a marker still there) sends
/// `reboot.required` again, dated from the new evidence, with `afterReboot`.
#[test]
fn updates_while_pending_and_a_reboot_that_did_not_apply_them() {
    let s = Setup::new();
    let agent = s.start(tempfile::tempdir().unwrap());
    s.wait_no_reboot_reported();
    let week_ago = unix_now() - 7 * 86_400;
    s.require_reboot(&PACKAGES, week_ago);
    wait_until("reboot.required", || {
        !s.events(types::REBOOT_REQUIRED).is_empty()
    });

    // Debian appends to .pkgs as each package's hook runs.
    let mut grown = PACKAGES.to_vec();
    grown.push("libc6");
    let list: String = grown.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(s.host.path().join("run/reboot-required.pkgs"), list).unwrap();
    wait_until("reboot.updated and the condition naming libc6", || {
        !s.events(types::REBOOT_UPDATED).is_empty()
            && s.reboot_condition()
                .is_some_and(|c| c["message"].as_str().unwrap_or("").contains("libc6"))
    });
    let updated = &s.events(types::REBOOT_UPDATED)[0];
    assert_eq!(updated.data["packages"], json!(grown), "{:#}", updated.data);
    assert_eq!(updated.data["since"], json!(rfc3339_secs(week_ago)));

    // The node reboots (a new boot id), but the updates are still not applied: the marker is
    // there again, written an hour ago.
    let (code, state) = agent.stop(Signal::SIGTERM);
    assert_eq!(code, Some(0));
    std::fs::write(
        s.host.path().join("proc/sys/kernel/random/boot_id"),
        "0b3a7f1e-5c2d-4e8f-9a6b-1d2c3e4f5a6b\n",
    )
    .unwrap();
    let hour_ago = unix_now() - 3600;
    set_mtime(&s.marker(), at(hour_ago));
    let agent = s.start(state);
    wait_until("a second reboot.required", || {
        s.events(types::REBOOT_REQUIRED).len() >= 2
    });
    let again = s.events(types::REBOOT_REQUIRED)[1].clone();
    assert_eq!(again.data["afterReboot"], json!(true), "{:#}", again.data);
    assert_eq!(again.data["since"], json!(rfc3339_secs(hour_ago)));
    assert_eq!(again.data["previousSince"], json!(rfc3339_secs(week_ago)));
    assert_eq!(
        again.data["bootId"],
        json!("0b3a7f1e-5c2d-4e8f-9a6b-1d2c3e4f5a6b")
    );
    assert_eq!(ids(&s.events(types::REBOOT_REQUIRED)).len(), 2);
    wait_until("the annotation re-dated", || {
        s.annotation().as_deref() == Some(rfc3339_secs(hour_ago).as_str())
    });

    s.api.assert_clean();
    assert_eq!(agent.terminate(), Some(0));
}
