//! Ledger tests: lifecycle semantics, reboot tracking, outbox policy, schema and open errors,
//! disk full (on a tiny tmpfs when mounting is allowed), and SIGKILL crash consistency.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;

use super::*;
use crate::baseline::Severity;
use crate::facts::Evidence;
use crate::finding::Status;
use crate::report::cloudevents::{CloudEvent, types};

mod crash;

fn finding(rule: &str, component: &str, path: &str, status: Status) -> Finding {
    Finding {
        rule: rule.into(),
        title: format!("title of {rule}"),
        component: component.into(),
        path: path.into(),
        status,
        severity: Severity::High,
        expected: json!({"equals": 0}),
        actual: json!(1),
        reason: None,
        evidence: Evidence::file("/etc/x"),
        policy: "p".into(),
        remediation: None,
        detail: None,
    }
}

fn fail(rule: &str, component: &str) -> Finding {
    finding(
        rule,
        component,
        &format!("{component}.{rule}"),
        Status::Fail,
    )
}

fn pass(rule: &str, component: &str) -> Finding {
    finding(
        rule,
        component,
        &format!("{component}.{rule}"),
        Status::Pass,
    )
}

fn unknown(rule: &str, component: &str) -> Finding {
    finding(
        rule,
        component,
        &format!("{component}.{rule}"),
        Status::Unknown,
    )
}

/// (change, rule) pairs of transitions, for compact assertions.
fn changes(t: &[Transition]) -> Vec<(Change, String)> {
    t.iter().map(|t| (t.change, t.key.rule.clone())).collect()
}

fn event(id: &str, kind: &str) -> CloudEvent {
    CloudEvent {
        specversion: "1.0".into(),
        id: id.into(),
        source: "nodedrift://n1".into(),
        kind: kind.into(),
        subject: None,
        time: "2026-01-01T00:00:00Z".into(),
        datacontenttype: "application/json".into(),
        data: json!({"id": id}),
    }
}

fn ids(events: &[CloudEvent]) -> Vec<&str> {
    events.iter().map(|e| e.id.as_str()).collect()
}

fn open(dir: &Path) -> Ledger {
    Ledger::open(dir).expect("open ledger")
}

#[test]
fn ledger_is_send_and_sync() {
    fn assert<T: Send + Sync>() {}
    assert::<Ledger>();
}

#[test]
fn open_creates_state_dir_0700_and_file_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/state");
    let l = open(&dir);
    assert_eq!(l.path(), dir.join(FILE_NAME));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(FILE_NAME)), 0o600);
    assert!(l.open_findings().unwrap().is_empty());
}

#[test]
fn fail_opens_once_then_counts_occurrences() {
    let tmp = tempfile::tempdir().unwrap();
    let l = open(tmp.path());
    let t = l.apply(&[fail("r1", "kubelet")], None, 100).unwrap();
    assert_eq!(changes(&t), [(Change::Opened, "r1".into())]);
    assert_eq!(
        (t[0].opened_at, t[0].occurrences, t[0].generation),
        (100, 1, 1)
    );
    assert_eq!(t[0].resolved_at, None);

    let mut again = fail("r1", "kubelet");
    again.actual = json!(7);
    let t = l.apply(&[again], None, 160).unwrap();
    assert!(t.is_empty(), "still failing: no transition, got {t:?}");
    let o = l.open_findings().unwrap();
    assert_eq!(o.len(), 1);
    assert_eq!(
        (
            o[0].opened_at,
            o[0].last_seen,
            o[0].occurrences,
            o[0].generation
        ),
        (100, 160, 2, 1)
    );
    assert_eq!(
        o[0].finding.actual,
        json!(7),
        "the latest failing finding is kept"
    );
}

#[test]
fn pass_resolves_and_reopening_gets_a_new_generation() {
    let tmp = tempfile::tempdir().unwrap();
    let l = open(tmp.path());
    l.apply(&[fail("r1", "kubelet")], None, 100).unwrap();
    l.apply(&[fail("r1", "kubelet")], None, 110).unwrap();
    let t = l.apply(&[pass("r1", "kubelet")], None, 120).unwrap();
    assert_eq!(changes(&t), [(Change::Resolved, "r1".into())]);
    assert_eq!(
        t[0].finding.status,
        Status::Pass,
        "carries the passing finding"
    );
    assert_eq!(
        (
            t[0].opened_at,
            t[0].resolved_at,
            t[0].occurrences,
            t[0].generation
        ),
        (100, Some(120), 2, 1)
    );
    assert!(l.open_findings().unwrap().is_empty());

    assert!(
        l.apply(&[pass("r1", "kubelet")], None, 130)
            .unwrap()
            .is_empty()
    );
    let t = l.apply(&[fail("r1", "kubelet")], None, 140).unwrap();
    assert_eq!(changes(&t), [(Change::Opened, "r1".into())]);
    assert_eq!(
        (t[0].generation, t[0].occurrences, t[0].opened_at),
        (2, 1, 140)
    );
}

#[test]
fn unknown_never_resolves_an_open_finding() {
    let tmp = tempfile::tempdir().unwrap();
    let l = open(tmp.path());
    l.apply(&[fail("r1", "kubelet")], None, 100).unwrap();
    let t = l.apply(&[unknown("r1", "kubelet")], None, 110).unwrap();
    assert!(t.is_empty());
    let o = l.open_findings().unwrap();
    assert_eq!(o.len(), 1);
    assert_eq!(
        (o[0].last_seen, o[0].occurrences, o[0].finding.status),
        (100, 1, Status::Fail),
        "unknown leaves the open finding as it was"
    );
    // Unknown for a key that is not open opens nothing.
    assert!(
        l.apply(
            &[unknown("r2", "kubelet"), unknown("r1", "kubelet")],
            None,
            120
        )
        .unwrap()
        .is_empty()
    );
    assert_eq!(l.open_findings().unwrap().len(), 1);
}

#[test]
fn absent_keys_resolve_only_within_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let l = open(tmp.path());
    let t = l
        .apply(
            &[
                fail("k1", "kubelet"),
                fail("c1", "containerd"),
                fail("s1", "sysctl"),
            ],
            None,
            100,
        )
        .unwrap();
    assert_eq!(t.len(), 3);

    // A partial re-check of kubelet with no findings: only kubelet keys may resolve.
    let t = l.apply(&[], Some(&["kubelet"]), 110).unwrap();
    assert_eq!(changes(&t), [(Change::Resolved, "k1".into())]);
    assert_eq!(
        t[0].finding.status,
        Status::Fail,
        "the last failing finding"
    );
    assert_eq!(t[0].resolved_at, Some(110));
    let open_rules: Vec<String> = l
        .open_findings()
        .unwrap()
        .into_iter()
        .map(|o| o.key.rule)
        .collect();
    assert_eq!(open_rules, ["c1", "s1"]);

    // A wildcard element gone: same rule, other path still failing.
    let a = finding("w", "containerd", "containerd.plugins[\"a\"]", Status::Fail);
    let b = finding("w", "containerd", "containerd.plugins[\"b\"]", Status::Fail);
    l.apply(
        &[a.clone(), b, fail("c1", "containerd")],
        Some(&["containerd"]),
        120,
    )
    .unwrap();
    let t = l
        .apply(&[a, fail("c1", "containerd")], Some(&["containerd"]), 130)
        .unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].key.path, "containerd.plugins[\"b\"]");
    assert_eq!(t[0].change, Change::Resolved);

    // A full evaluation (scope None) resolves everything absent, in key order, after the
    // transitions of the given findings.
    let t = l.apply(&[fail("n1", "os")], None, 140).unwrap();
    assert_eq!(
        changes(&t),
        [
            (Change::Opened, "n1".into()),
            (Change::Resolved, "c1".into()),
            (Change::Resolved, "s1".into()),
            (Change::Resolved, "w".into()),
        ]
    );
}

#[test]
fn transitions_follow_finding_order() {
    let tmp = tempfile::tempdir().unwrap();
    let l = open(tmp.path());
    l.apply(&[fail("b", "os")], None, 1).unwrap();
    let t = l
        .apply(
            &[fail("z", "os"), pass("b", "os"), fail("a", "os")],
            None,
            2,
        )
        .unwrap();
    assert_eq!(
        changes(&t),
        [
            (Change::Opened, "z".into()),
            (Change::Resolved, "b".into()),
            (Change::Opened, "a".into()),
        ]
    );
}

#[test]
fn a_key_given_twice_counts_once() {
    let tmp = tempfile::tempdir().unwrap();
    let l = open(tmp.path());
    let t = l
        .apply(
            &[fail("r", "os"), pass("r", "os"), fail("r", "os")],
            None,
            1,
        )
        .unwrap();
    assert_eq!(changes(&t), [(Change::Opened, "r".into())]);
    assert_eq!(l.open_findings().unwrap()[0].occurrences, 1);
}

#[test]
fn a_restart_resumes_the_lifecycle() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let l = open(tmp.path());
        l.apply(&[fail("r1", "os"), fail("r2", "os")], None, 100)
            .unwrap();
    }
    let l = open(tmp.path());
    let t = l
        .apply(&[fail("r1", "os"), pass("r2", "os")], None, 200)
        .unwrap();
    assert_eq!(
        changes(&t),
        [(Change::Resolved, "r2".into())],
        "no Opened for a finding that was already open before the restart"
    );
    assert_eq!((t[0].opened_at, t[0].resolved_at), (100, Some(200)));
    let o = l.open_findings().unwrap();
    assert_eq!((o[0].opened_at, o[0].occurrences), (100, 2));
    drop(l);
    // The generation survives too: r2 opens again as generation 2.
    let l = open(tmp.path());
    let t = l
        .apply(&[fail("r1", "os"), fail("r2", "os")], None, 300)
        .unwrap();
    assert_eq!(changes(&t), [(Change::Opened, "r2".into())]);
    assert_eq!(t[0].generation, 2);
}

#[test]
fn reboot_pending_keeps_the_earliest_trustworthy_start() {
    let tmp = tempfile::tempdir().unwrap();
    let l = open(tmp.path());
    assert_eq!(l.reboot_pending_since().unwrap(), None);
    assert_eq!(
        l.set_reboot_pending(&pending(false, None), 50).unwrap(),
        RebootChange::Unchanged
    );
    assert_eq!(
        l.set_reboot_pending(&pending(true, Some(90)), 100).unwrap(),
        RebootChange::Started {
            since: 90,
            generation: 1
        }
    );
    // A later start (the marker rewritten) does not move it forward.
    assert_eq!(
        l.set_reboot_pending(&pending(true, Some(95)), 110).unwrap(),
        RebootChange::Unchanged
    );
    assert_eq!(l.reboot_pending_since().unwrap(), Some(90));
    // An earlier one is kept.
    l.set_reboot_pending(&pending(true, Some(80)), 120).unwrap();
    assert_eq!(l.reboot_pending_since().unwrap(), Some(80));
    // A start in the future is not trustworthy.
    l.set_reboot_pending(&pending(true, Some(10_000)), 130)
        .unwrap();
    l.set_reboot_pending(&pending(true, None), 140).unwrap();
    assert_eq!(l.reboot_pending_since().unwrap(), Some(80));
    drop(l);
    let l = open(tmp.path());
    assert_eq!(
        l.reboot_pending_since().unwrap(),
        Some(80),
        "survives a restart"
    );
    assert_eq!(
        l.set_reboot_pending(&pending(false, None), 150).unwrap(),
        RebootChange::Cleared {
            since: 80,
            generation: 1,
            detail: RebootDetail::default()
        }
    );
    assert_eq!(l.reboot_pending_since().unwrap(), None);
    assert_eq!(
        l.set_reboot_pending(&pending(true, Some(10_000)), 160)
            .unwrap(),
        RebootChange::Started {
            since: 160,
            generation: 2
        },
        "an untrustworthy start falls back to now"
    );
}

/// A reboot state without a boot id.
fn pending(pending: bool, since: Option<i64>) -> RebootState {
    RebootState {
        pending,
        since,
        ..RebootState::default()
    }
}

fn in_boot(pending: bool, since: Option<i64>, boot: &str) -> RebootState {
    RebootState {
        pending,
        since,
        boot_id: Some(boot.to_owned()),
        ..RebootState::default()
    }
}

/// The reasons and packages travel with the pending period: a change is an update, and the
/// clearing names what was pending.
#[test]
fn reboot_detail_changes_are_updates_and_the_clearing_names_them() {
    let tmp = tempfile::tempdir().unwrap();
    let l = open(tmp.path());
    let with = |reasons: &[&str], packages: &[&str]| RebootState {
        pending: true,
        since: Some(100),
        boot_id: Some("b".into()),
        reasons: reasons.iter().map(|s| s.to_string()).collect(),
        packages: packages.iter().map(|s| s.to_string()).collect(),
    };
    assert_eq!(
        l.set_reboot_pending(&with(&["PackageUpdate"], &["libssl3"]), 200)
            .unwrap(),
        RebootChange::Started {
            since: 100,
            generation: 1
        }
    );
    assert_eq!(
        l.set_reboot_pending(&with(&["PackageUpdate"], &["libssl3"]), 210)
            .unwrap(),
        RebootChange::Unchanged
    );
    // `.pkgs` grew after the marker was written.
    assert_eq!(
        l.set_reboot_pending(&with(&["PackageUpdate"], &["libssl3", "libc6"]), 220)
            .unwrap(),
        RebootChange::Updated {
            since: 100,
            generation: 1
        }
    );
    drop(l);
    let l = open(tmp.path());
    assert_eq!(
        l.set_reboot_pending(&in_boot(false, None, "b"), 300)
            .unwrap(),
        RebootChange::Cleared {
            since: 100,
            generation: 1,
            detail: RebootDetail {
                reasons: vec!["PackageUpdate".into()],
                packages: vec!["libssl3".into(), "libc6".into()],
            }
        }
    );
}

/// A reboot that did not apply the updates (the old kernel booted, or new ones arrived since)
/// re-dates the start from the current evidence; a reboot that did clears it.
#[test]
fn reboot_pending_is_re_dated_when_still_pending_after_a_reboot() {
    let tmp = tempfile::tempdir().unwrap();
    let l = open(tmp.path());
    assert_eq!(
        l.set_reboot_pending(&in_boot(true, Some(100), "boot-a"), 200)
            .unwrap(),
        RebootChange::Started {
            since: 100,
            generation: 1
        }
    );
    // Same boot, agent restarted, newer evidence: the earliest start stays.
    drop(l);
    let l = open(tmp.path());
    assert_eq!(
        l.set_reboot_pending(&in_boot(true, Some(150), "boot-a"), 300)
            .unwrap(),
        RebootChange::Unchanged
    );
    assert_eq!(l.reboot_pending_since().unwrap(), Some(100));
    // Rebooted, still pending, evidence newer than the old start: re-dated, even forward.
    assert_eq!(
        l.set_reboot_pending(&in_boot(true, Some(250), "boot-b"), 400)
            .unwrap(),
        RebootChange::Restarted {
            since: 250,
            previous: 100,
            generation: 2
        }
    );
    assert_eq!(l.reboot_pending_since().unwrap(), Some(250));
    // An unknown boot id (the os facts missing) never counts as a reboot.
    assert_eq!(
        l.set_reboot_pending(&pending(true, Some(260)), 410)
            .unwrap(),
        RebootChange::Unchanged
    );
    assert_eq!(
        l.set_reboot_pending(&in_boot(true, None, "boot-b"), 420)
            .unwrap(),
        RebootChange::Unchanged
    );
    // Rebooted into what was installed: cleared.
    assert_eq!(
        l.set_reboot_pending(&in_boot(false, None, "boot-c"), 500)
            .unwrap(),
        RebootChange::Cleared {
            since: 250,
            generation: 2,
            detail: RebootDetail::default()
        }
    );
    // The next need starts afresh in the current boot.
    assert_eq!(
        l.set_reboot_pending(&in_boot(true, None, "boot-c"), 600)
            .unwrap(),
        RebootChange::Started {
            since: 600,
            generation: 3
        }
    );
}

#[test]
fn outbox_queues_in_order_and_acks_by_id() {
    let tmp = tempfile::tempdir().unwrap();
    let l = open(tmp.path());
    let out = l
        .outbox_push(
            &[
                event("a", types::FINDING_OPENED),
                event("b", types::NODE_SUMMARY),
                event("c", types::FINDING_RESOLVED),
            ],
            10,
        )
        .unwrap();
    assert_eq!((out.accepted, out.duplicates), (3, 0));
    assert!(out.dropped.is_empty());
    l.outbox_push(&[event("d", types::REBOOT_REQUIRED)], 20)
        .unwrap();
    assert_eq!(ids(&l.outbox_peek(2).unwrap()), ["a", "b"]);
    assert_eq!(ids(&l.outbox_peek(100).unwrap()), ["a", "b", "c", "d"]);
    assert_eq!(
        l.outbox_peek(1).unwrap()[0],
        event("a", types::FINDING_OPENED)
    );

    l.outbox_ack(&["a".into(), "c".into(), "not-queued".into()])
        .unwrap();
    l.outbox_dead_letter(&["b".into()], "400 Bad Request")
        .unwrap();
    assert_eq!(ids(&l.outbox_peek(100).unwrap()), ["d"]);
    assert_eq!(
        l.outbox_stats().unwrap(),
        OutboxStats {
            depth: 1,
            oldest_enqueued_at: Some(20),
            dropped_total: 0,
            dead_lettered_total: 1,
            delivered_total: 2,
        }
    );
    // Acknowledged ids may be queued again (a new occurrence with the same id is the
    // receiver's to de-duplicate).
    let out = l
        .outbox_push(&[event("a", types::FINDING_OPENED)], 30)
        .unwrap();
    assert_eq!(out.accepted, 1);
    drop(l);
    let l = open(tmp.path());
    assert_eq!(
        ids(&l.outbox_peek(100).unwrap()),
        ["d", "a"],
        "survives a restart"
    );
    assert_eq!(l.outbox_stats().unwrap().delivered_total, 2);
}

#[test]
fn outbox_does_not_queue_an_id_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let l = open(tmp.path());
    l.outbox_push(&[event("a", types::FINDING_OPENED)], 1)
        .unwrap();
    let out = l
        .outbox_push(
            &[
                event("a", types::FINDING_OPENED),
                event("b", types::FINDING_OPENED),
                event("b", types::FINDING_OPENED),
            ],
            2,
        )
        .unwrap();
    assert_eq!((out.accepted, out.duplicates), (1, 2));
    assert_eq!(ids(&l.outbox_peek(10).unwrap()), ["a", "b"]);
}

#[test]
fn outbox_overflow_drops_heartbeats_first_then_the_oldest() {
    let tmp = tempfile::tempdir().unwrap();
    let l = Ledger::open_with(tmp.path(), OutboxLimits { max_events: 4 }).unwrap();
    l.outbox_push(
        &[
            event("o1", types::FINDING_OPENED),
            event("h1", types::NODE_SUMMARY),
            event("o2", types::FINDING_OPENED),
            event("h2", types::NODE_SUMMARY),
        ],
        1,
    )
    .unwrap();
    let out = l
        .outbox_push(&[event("o3", types::FINDING_OPENED)], 2)
        .unwrap();
    assert_eq!(
        out.dropped,
        [DroppedEvent {
            id: "h1".into(),
            kind: types::NODE_SUMMARY.into()
        }]
    );
    let out = l
        .outbox_push(&[event("o4", types::FINDING_OPENED)], 3)
        .unwrap();
    assert_eq!(ids_of(&out.dropped), ["h2"]);
    assert_eq!(ids(&l.outbox_peek(10).unwrap()), ["o1", "o2", "o3", "o4"]);

    // No heartbeat left: the oldest event goes.
    let out = l
        .outbox_push(&[event("o5", types::FINDING_RESOLVED)], 4)
        .unwrap();
    assert_eq!(ids_of(&out.dropped), ["o1"]);
    // A heartbeat pushed into a full outbox of other events is itself the one dropped.
    let out = l
        .outbox_push(&[event("h3", types::NODE_SUMMARY)], 5)
        .unwrap();
    assert_eq!((out.accepted, ids_of(&out.dropped)), (1, vec!["h3"]));
    assert_eq!(ids(&l.outbox_peek(10).unwrap()), ["o2", "o3", "o4", "o5"]);

    // A batch larger than the bound keeps its newest events.
    let batch: Vec<CloudEvent> = (6..12)
        .map(|i| event(&format!("o{i}"), types::FINDING_OPENED))
        .collect();
    let out = l.outbox_push(&batch, 6).unwrap();
    assert_eq!(out.accepted, 6);
    assert_eq!(ids_of(&out.dropped), ["o2", "o3", "o4", "o5", "o6", "o7"]);
    assert_eq!(ids(&l.outbox_peek(10).unwrap()), ["o8", "o9", "o10", "o11"]);
    let s = l.outbox_stats().unwrap();
    assert_eq!(
        (s.depth, s.dropped_total, s.oldest_enqueued_at),
        (4, 10, Some(6))
    );
    // Dropped ids are forgotten: they may be queued again.
    assert_eq!(
        l.outbox_push(&[event("o2", types::FINDING_OPENED)], 7)
            .unwrap()
            .duplicates,
        0
    );
}

fn ids_of(d: &[DroppedEvent]) -> Vec<&str> {
    d.iter().map(|d| d.id.as_str()).collect()
}

#[test]
fn a_newer_schema_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(FILE_NAME);
    open(tmp.path()).apply(&[fail("r", "os")], None, 1).unwrap();
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(store::META)
            .unwrap()
            .insert("schema_version", SCHEMA_VERSION + 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Ledger::open(tmp.path()).unwrap_err();
    assert!(matches!(err, LedgerError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1));
    let msg = err.to_string();
    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
    assert!(msg.contains("newer"), "{msg}");
}

#[test]
fn the_current_schema_version_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    drop(open(tmp.path()));
    let db = redb::Database::create(tmp.path().join(FILE_NAME)).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let v = txn.open_table(store::META).unwrap();
    let v = redb::ReadableTable::get(&v, "schema_version")
        .unwrap()
        .unwrap()
        .value();
    assert_eq!(v, SCHEMA_VERSION);
}

#[test]
fn a_foreign_redb_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(FILE_NAME);
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let def: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("something_else");
        txn.open_table(def).unwrap().insert(1, 2).unwrap();
        txn.commit().unwrap();
    }
    let err = Ledger::open(tmp.path()).unwrap_err();
    assert!(matches!(err, LedgerError::Foreign { .. }), "{err:?}");
    assert!(err.to_string().contains("something_else"), "{err}");
}

#[test]
fn a_file_that_is_not_a_store_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(FILE_NAME);
    let garbage = b"this is not a redb file\n".repeat(200);
    std::fs::write(&path, &garbage).unwrap();
    let err = Ledger::open(tmp.path()).unwrap_err();
    assert!(matches!(err, LedgerError::Open { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), garbage, "never recreated");
}

#[test]
fn a_corrupted_store_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(FILE_NAME);
    {
        let l = open(tmp.path());
        for i in 0..50 {
            l.apply(&[fail(&format!("r{i}"), "os")], Some(&[]), i)
                .unwrap();
            l.outbox_push(&[event(&format!("e{i}"), types::FINDING_OPENED)], i)
                .unwrap();
        }
    }
    // Overwrite every page after the header with noise: whatever redb reads is damaged.
    let mut bytes = std::fs::read(&path).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    for b in bytes.iter_mut().skip(4096) {
        *b = rng.u8(..);
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = Ledger::open(tmp.path()).unwrap_err();
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_state_dir_that_is_a_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    std::fs::write(&dir, "x").unwrap();
    let err = Ledger::open(&dir).unwrap_err();
    assert!(matches!(err, LedgerError::StateDir { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&dir.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_store_open_elsewhere_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let _first = open(tmp.path());
    let err = Ledger::open(tmp.path()).unwrap_err();
    assert!(matches!(err, LedgerError::Open { .. }), "{err:?}");
}

#[test]
fn concurrent_callers_share_one_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let l = std::sync::Arc::new(open(tmp.path()));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let l = l.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    l.outbox_push(&[event(&format!("t{t}-{i}"), types::FINDING_OPENED)], i)
                        .unwrap();
                    l.outbox_stats().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(l.outbox_stats().unwrap().depth, 100);
}

/// A tmpfs mounted for one test and unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` when this process may not mount (not root, or no CAP_SYS_ADMIN).
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills a tiny tmpfs until the ledger's writes fail, checks the failure is an error that
/// commits nothing, then frees space and checks the next write succeeds on the same `Ledger`.
#[test]
fn disk_full_fails_cleanly_and_recovers_when_space_returns() {
    let fs = Tmpfs::mount("4m").expect("mounting a tmpfs (run the tests as root: tests/run.sh)");
    let root = fs.dir.path();
    let l = open(&root.join("state"));
    // Leave the ledger a little room: the filler takes most of the file system.
    let filler = root.join("filler");
    let mut size = 2 << 20;
    let big = "x".repeat(16 << 10);
    let mut committed = Vec::new();
    let mut failures = 0;
    loop {
        std::fs::write(&filler, vec![0u8; size]).unwrap_or_default();
        let mut e = event(&format!("e{}", committed.len()), types::FINDING_OPENED);
        e.data = json!({ "pad": big });
        match l.outbox_push(&[e], 1) {
            Ok(_) => committed.push(format!("e{}", committed.len())),
            Err(err) => {
                eprintln!("after {} events: {err}", committed.len());
                assert!(
                    err.to_string().starts_with(&l.path().display().to_string()),
                    "{err}"
                );
                failures += 1;
                break;
            }
        }
        // Grow the filler as the ledger grows, to reach "full" quickly.
        size += 64 << 10;
        assert!(committed.len() < 10_000, "the disk never filled");
    }
    assert_eq!(failures, 1);
    assert!(
        !committed.is_empty(),
        "some writes must fit before the disk fills"
    );

    std::fs::remove_file(&filler).unwrap();
    // Same Ledger: it reopens the store itself.
    let out = l
        .outbox_push(&[event("after", types::FINDING_OPENED)], 3)
        .unwrap();
    assert_eq!(out.accepted, 1);
    let queued = l.outbox_peek(100_000).unwrap();
    let mut expected: Vec<&str> = committed.iter().map(String::as_str).collect();
    expected.push("after");
    assert_eq!(
        ids(&queued),
        expected,
        "every committed event and nothing half-written"
    );
    drop(l);
    let l = open(&root.join("state"));
    assert_eq!(ids(&l.outbox_peek(100_000).unwrap()), expected);
}

/// A store the process may not write (here: on a read-only mount, which binds root too) is an
/// error naming the file, and the file is untouched.
#[test]
fn an_unwritable_store_is_an_error_naming_it() {
    let fs = Tmpfs::mount("4m").expect("mounting a tmpfs (run the tests as root: tests/run.sh)");
    let dir = fs.dir.path().join("state");
    open(&dir).apply(&[fail("r", "os")], None, 1).unwrap();
    let before = std::fs::read(dir.join(FILE_NAME)).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(fs.dir.path())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "remount read-only");
    let err = Ledger::open(&dir).unwrap_err();
    assert!(matches!(err, LedgerError::Open { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&dir.join(FILE_NAME).display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.join(FILE_NAME)).unwrap(), before);
}

#[test]
fn record_commits_transitions_reboot_and_their_events_together() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    let f = crate::finding::Finding {
        rule: "r".into(),
        title: "t".into(),
        component: "kubelet".into(),
        path: "kubelet.config.x".into(),
        status: crate::finding::Status::Fail,
        severity: crate::baseline::Severity::High,
        expected: serde_json::json!({"equals": 0}),
        actual: serde_json::json!(1),
        reason: None,
        evidence: crate::facts::Evidence::default(),
        policy: "cis/4.2".into(),
        remediation: None,
        detail: None,
    };
    let rec = ledger
        .record(
            &[f],
            None,
            Some(&pending(true, Some(50))),
            100,
            |transitions, reboot| {
                assert_eq!(transitions.len(), 1);
                assert_eq!(
                    reboot,
                    Some(&RebootChange::Started {
                        since: 50,
                        generation: 1
                    })
                );
                vec![crate::report::cloudevents::CloudEvent::new(
                    "n",
                    crate::report::cloudevents::types::FINDING_OPENED,
                    Some("r:kubelet.config.x".into()),
                    "t".into(),
                    "1",
                    serde_json::json!({}),
                )]
            },
        )
        .unwrap();
    assert_eq!(rec.pushed.accepted, 1);
    assert_eq!(ledger.outbox_peek(10).unwrap().len(), 1);
    assert_eq!(ledger.open_findings().unwrap().len(), 1);
    assert_eq!(ledger.reboot_pending_since().unwrap(), Some(50));
}

/// A snapshot request id is taken once, even after a restart; the memory is bounded.
#[test]
fn snapshot_ids_are_claimed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let l = open(tmp.path());
    assert!(l.snapshot_claim("req-1").unwrap());
    assert!(!l.snapshot_claim("req-1").unwrap());
    assert!(l.snapshot_claim("req-2").unwrap());
    drop(l);
    let l = open(tmp.path());
    assert!(!l.snapshot_claim("req-1").unwrap(), "survives a restart");
    for i in 0..SNAPSHOT_IDS_KEPT {
        assert!(l.snapshot_claim(&format!("flood-{i}")).unwrap());
    }
    assert!(
        l.snapshot_claim("req-1").unwrap(),
        "the oldest ids are forgotten beyond the bound"
    );
}
