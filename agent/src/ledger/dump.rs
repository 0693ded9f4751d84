//! Everything the ledger holds, read in one consistent transaction, for forensic snapshots.
//!
//! Two ways in: [`Ledger::dump`] through the handle the daemon holds open, and
//! [`dump_read_only`] for a process that does not own the store (`nodedrift snapshot` on the
//! command line). redb's default `ExclusiveWriter` mode lets a read-only handle in only while
//! no writer has the file open, so while the agent runs the read-only open fails with
//! [`LedgerError::Busy`] and the snapshot must come from the agent's own handle.

use std::path::Path;

use redb::{ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::Serialize;

use super::outbox::{KEY_DEAD_LETTERED, KEY_DELIVERED, KEY_DROPPED, OUTBOX, Queued};
use super::store::{
    CACHE_BYTES, FILE_NAME, KEY_REBOOT_BOOT_ID, KEY_REBOOT_DETAIL, KEY_REBOOT_GENERATION,
    KEY_REBOOT_SINCE, KEY_SCHEMA_VERSION, META, OPEN_FINDINGS, TEXTS, TIMES,
};
use super::{Ledger, LedgerError, OpenFinding, OutboxStats, RebootDetail};
use crate::report::cloudevents::CloudEvent;

/// The ledger's content.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerDump {
    pub path: String,
    pub schema_version: Option<u64>,
    /// Every open finding with its lifecycle (opened, last seen, occurrences, generation).
    pub open_findings: Vec<OpenFinding>,
    /// The pending reboot, when one is recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reboot: Option<RebootDump>,
    pub outbox: OutboxStats,
    /// Queued events, oldest first, at most the `max_events` asked for.
    pub pending_events: Vec<QueuedEvent>,
    /// Queued events beyond `max_events`, not listed.
    pub pending_not_listed: u64,
}

/// A pending reboot as recorded.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RebootDump {
    pub since: i64,
    pub boot_id: Option<String>,
    pub generation: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<RebootDetail>,
}

/// One event waiting in the outbox.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedEvent {
    pub enqueued_at: i64,
    pub event: CloudEvent,
}

impl Ledger {
    /// Everything the store holds, in one read transaction (writers are not blocked).
    pub fn dump(&self, max_events: usize) -> Result<LedgerDump, LedgerError> {
        let path = self.path_str();
        self.read(|txn| dump_txn(&path, txn, max_events))
    }
}

/// Reads the ledger of `state_dir` without opening it for writing (nothing is created,
/// migrated or repaired). [`LedgerError::Busy`] while another process holds it.
pub fn dump_read_only(state_dir: &Path, max_events: usize) -> Result<LedgerDump, LedgerError> {
    let path = state_dir.join(FILE_NAME);
    let name = path.display().to_string();
    let db = redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .open_read_only(&path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => LedgerError::Busy { path: name.clone() },
            source => LedgerError::Open {
                path: name.clone(),
                source,
            },
        })?;
    let txn = db.begin_read().map_err(|e| storage(&name, e))?;
    dump_txn(&name, &txn, max_events)
}

fn storage(path: &str, e: impl Into<redb::Error>) -> LedgerError {
    LedgerError::Storage {
        path: path.to_owned(),
        source: e.into(),
    }
}

fn record(path: &str, record: String, source: serde_json::Error) -> LedgerError {
    LedgerError::Record {
        path: path.to_owned(),
        record,
        source,
    }
}

fn dump_txn(
    path: &str,
    txn: &ReadTransaction,
    max_events: usize,
) -> Result<LedgerDump, LedgerError> {
    let st = |e: redb::Error| storage(path, e);
    let meta = txn.open_table(META).map_err(|e| st(e.into()))?;
    let counter = |k: &str| -> Result<Option<u64>, LedgerError> {
        Ok(meta.get(k).map_err(|e| st(e.into()))?.map(|v| v.value()))
    };
    let schema_version = counter(KEY_SCHEMA_VERSION)?;

    let mut open_findings = Vec::new();
    let open = txn.open_table(OPEN_FINDINGS).map_err(|e| st(e.into()))?;
    for entry in open.iter().map_err(|e| st(e.into()))? {
        let (k, v) = entry.map_err(|e| st(e.into()))?;
        let (rule, fact) = k.value();
        let rec: OpenFinding = serde_json::from_slice(v.value())
            .map_err(|e| record(path, format!("open_findings[{rule} {fact}]"), e))?;
        open_findings.push(rec);
    }

    let times = txn.open_table(TIMES).map_err(|e| st(e.into()))?;
    let texts = txn.open_table(TEXTS).map_err(|e| st(e.into()))?;
    let reboot = match times
        .get(KEY_REBOOT_SINCE)
        .map_err(|e| st(e.into()))?
        .map(|v| v.value())
    {
        None => None,
        Some(since) => Some(RebootDump {
            since,
            boot_id: texts
                .get(KEY_REBOOT_BOOT_ID)
                .map_err(|e| st(e.into()))?
                .map(|v| v.value().to_owned()),
            generation: counter(KEY_REBOOT_GENERATION)?.unwrap_or(0),
            detail: texts
                .get(KEY_REBOOT_DETAIL)
                .map_err(|e| st(e.into()))?
                .and_then(|v| serde_json::from_str(v.value()).ok()),
        }),
    };

    let outbox = txn.open_table(OUTBOX).map_err(|e| st(e.into()))?;
    let depth = outbox.len().map_err(|e| st(e.into()))?;
    let mut pending_events = Vec::new();
    let mut oldest = None;
    for entry in outbox.iter().map_err(|e| st(e.into()))?.take(max_events) {
        let (seq, v) = entry.map_err(|e| st(e.into()))?;
        let q: Queued = serde_json::from_slice(v.value())
            .map_err(|e| record(path, format!("outbox[#{}]", seq.value()), e))?;
        oldest.get_or_insert(q.enqueued_at);
        pending_events.push(QueuedEvent {
            enqueued_at: q.enqueued_at,
            event: q.event,
        });
    }
    Ok(LedgerDump {
        path: path.to_owned(),
        schema_version,
        open_findings,
        reboot,
        outbox: OutboxStats {
            depth,
            oldest_enqueued_at: oldest,
            dropped_total: counter(KEY_DROPPED)?.unwrap_or(0),
            dead_lettered_total: counter(KEY_DEAD_LETTERED)?.unwrap_or(0),
            delivered_total: counter(KEY_DELIVERED)?.unwrap_or(0),
        },
        pending_not_listed: depth.saturating_sub(pending_events.len() as u64),
        pending_events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{Finding, Status};
    use crate::report::cloudevents::types;

    fn failing(rule: &str) -> Finding {
        Finding {
            rule: rule.into(),
            title: "t".into(),
            component: "kubelet".into(),
            path: format!("{rule}.p"),
            status: Status::Fail,
            severity: crate::baseline::Severity::High,
            expected: serde_json::json!({"equals": 0}),
            actual: serde_json::json!(1),
            reason: None,
            evidence: Default::default(),
            policy: "p".into(),
            remediation: None,
            detail: None,
        }
    }

    #[test]
    fn the_handle_and_a_read_only_open_see_the_same_content() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path()).unwrap();
        l.apply(&[failing("a"), failing("b")], None, 100).unwrap();
        l.apply(&[failing("a"), failing("b")], None, 160).unwrap();
        let e = CloudEvent::new(
            "n",
            types::FINDING_OPENED,
            None,
            "t".into(),
            "x",
            serde_json::json!({}),
        );
        l.outbox_push(&[e], 150).unwrap();
        let d = l.dump(10).unwrap();
        assert_eq!(d.open_findings.len(), 2);
        assert_eq!(d.open_findings[0].occurrences, 2);
        assert_eq!(d.open_findings[0].last_seen, 160);
        assert_eq!(d.pending_events.len(), 1);
        assert_eq!(d.outbox.depth, 1);
        assert_eq!(d.outbox.oldest_enqueued_at, Some(150));

        // While the writer holds the file, a read-only open is refused, not blocked.
        assert!(matches!(
            dump_read_only(dir.path(), 10),
            Err(LedgerError::Busy { .. })
        ));
        drop(l);
        let ro = dump_read_only(dir.path(), 0).unwrap();
        assert_eq!(ro.open_findings.len(), 2);
        assert!(ro.pending_events.is_empty());
        assert_eq!(ro.pending_not_listed, 1);
        // The read-only open left the store usable for the writer.
        Ledger::open(dir.path()).unwrap();
    }

    #[test]
    fn a_missing_ledger_is_an_error_and_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        assert!(dump_read_only(dir.path(), 1).is_err());
        assert!(!dir.path().join(FILE_NAME).exists());
    }
}
