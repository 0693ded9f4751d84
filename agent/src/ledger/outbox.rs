//! The delivery outbox: CloudEvents waiting for the central endpoint, durable across restarts.
//!
//! Events are queued in push order and read oldest first. The HTTP sink peeks a batch, sends it,
//! then acknowledges what the receiver took (`outbox_ack`) or dead-letters what it rejected for
//! good (`outbox_dead_letter`); anything else stays queued and is sent again (at-least-once; the
//! stable ids let the receiver de-duplicate). An id already queued is not queued twice.
//!
//! **Overflow policy.** The outbox holds at most [`OutboxLimits::max_events`] events. When a
//! push makes it exceed that, events are dropped until it fits: first the oldest
//! `dev.nodedrift.node.summary` heartbeats (each is superseded by the next one), then the oldest
//! events of any type. Every dropped event counts in `dropped_total` and is returned in
//! [`PushOutcome::dropped`], so the daemon can log and count what the endpoint will never see.

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::store::{Ledger, LedgerError, META};
use crate::report::cloudevents::{CloudEvent, types};

/// Default bound of the outbox, in events: at the default heartbeat interval (10 min) and a few
/// transitions an hour this covers days of endpoint outage, and stays a few tens of MB at most.
pub const DEFAULT_MAX_EVENTS: usize = 10_000;

/// `outbox`: sequence number → JSON [`Queued`], in push order.
pub(super) const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// `outbox_ids`: event id → sequence number (de-duplication, ack by id).
const OUTBOX_IDS: TableDefinition<&str, u64> = TableDefinition::new("outbox_ids");
/// `outbox_heartbeats`: sequence numbers of queued summary events (dropped first on overflow).
const OUTBOX_HEARTBEATS: TableDefinition<u64, ()> = TableDefinition::new("outbox_heartbeats");

const KEY_NEXT_SEQ: &str = "outbox_next_seq";
pub(super) const KEY_DROPPED: &str = "outbox_dropped_total";
pub(super) const KEY_DEAD_LETTERED: &str = "outbox_dead_lettered_total";
pub(super) const KEY_DELIVERED: &str = "outbox_delivered_total";

/// Bounds of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Most events queued at once (at least 1; 0 is taken as 1).
    pub max_events: usize,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        Self {
            max_events: DEFAULT_MAX_EVENTS,
        }
    }
}

/// An event dropped by the overflow policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedEvent {
    pub id: String,
    /// The CloudEvent `type`.
    pub kind: String,
}

/// What [`Ledger::outbox_push`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// Events queued by this push (an accepted event may also appear in `dropped` when the
    /// overflow policy removed it at once, e.g. a heartbeat pushed into a full outbox).
    pub accepted: usize,
    /// Events skipped because their id was already queued.
    pub duplicates: usize,
    /// Events removed by the overflow policy, oldest first.
    pub dropped: Vec<DroppedEvent>,
}

/// Outbox figures for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxStats {
    /// Events queued now.
    pub depth: u64,
    /// Unix seconds the oldest queued event was pushed.
    pub oldest_enqueued_at: Option<i64>,
    /// Events dropped by the overflow policy, ever.
    pub dropped_total: u64,
    /// Events the endpoint rejected for good, ever.
    pub dead_lettered_total: u64,
    /// Events acknowledged as delivered, ever.
    pub delivered_total: u64,
}

/// One queued event as stored.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Queued {
    pub(super) enqueued_at: i64,
    pub(super) event: CloudEvent,
}

/// Creates the outbox tables (called when the store is opened).
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(OUTBOX)?;
    txn.open_table(OUTBOX_IDS)?;
    txn.open_table(OUTBOX_HEARTBEATS)?;
    Ok(())
}

impl Ledger {
    /// Queues `events` (pushed at `now`, Unix seconds) in one transaction, applying the
    /// overflow policy (see the module doc).
    pub fn outbox_push(&self, events: &[CloudEvent], now: i64) -> Result<PushOutcome, LedgerError> {
        self.write(|txn| self.push_txn(txn, events, now))
    }

    /// The body of [`Ledger::outbox_push`], inside a caller's write transaction.
    pub(super) fn push_txn(
        &self,
        txn: &WriteTransaction,
        events: &[CloudEvent],
        now: i64,
    ) -> Result<PushOutcome, LedgerError> {
        let max = self.limits.max_events.max(1) as u64;
        let mut outbox = txn.open_table(OUTBOX)?;
        let mut ids = txn.open_table(OUTBOX_IDS)?;
        let mut heartbeats = txn.open_table(OUTBOX_HEARTBEATS)?;
        let mut meta = txn.open_table(META)?;
        let mut next = meta.get(KEY_NEXT_SEQ)?.map(|v| v.value()).unwrap_or(0);
        let mut outcome = PushOutcome::default();
        for event in events {
            if ids.get(event.id.as_str())?.is_some() {
                outcome.duplicates += 1;
                continue;
            }
            let seq = next;
            next += 1;
            let bytes = self.encode_queued(&Queued {
                enqueued_at: now,
                event: event.clone(),
            })?;
            outbox.insert(seq, bytes.as_slice())?;
            ids.insert(event.id.as_str(), seq)?;
            if event.kind == types::NODE_SUMMARY {
                heartbeats.insert(seq, ())?;
            }
            outcome.accepted += 1;
            while outbox.len()? > max {
                let victim = match heartbeats.pop_first()? {
                    Some((s, _)) => s.value(),
                    None => match outbox.first()? {
                        Some((s, _)) => s.value(),
                        None => break,
                    },
                };
                let Some(q) = remove(self, &mut outbox, &mut heartbeats, victim)? else {
                    break;
                };
                ids.remove(q.event.id.as_str())?;
                outcome.dropped.push(DroppedEvent {
                    id: q.event.id,
                    kind: q.event.kind,
                });
            }
        }
        meta.insert(KEY_NEXT_SEQ, next)?;
        if !outcome.dropped.is_empty() {
            add(&mut meta, KEY_DROPPED, outcome.dropped.len() as u64)?;
        }
        Ok(outcome)
    }

    /// Up to `max` queued events, oldest first. They stay queued until acknowledged.
    pub fn outbox_peek(&self, max: usize) -> Result<Vec<CloudEvent>, LedgerError> {
        self.read(|txn| {
            let outbox = txn.open_table(OUTBOX)?;
            let mut out = Vec::new();
            for entry in outbox.iter()?.take(max) {
                let (seq, v) = entry?;
                out.push(self.decode_queued(seq.value(), v.value())?.event);
            }
            Ok(out)
        })
    }

    /// Removes delivered events (ids not queued are ignored) and counts them as delivered.
    pub fn outbox_ack(&self, ids: &[String]) -> Result<(), LedgerError> {
        let n = self.outbox_remove(ids, KEY_DELIVERED)?;
        tracing::debug!(events = n, "Outbox events delivered.");
        Ok(())
    }

    /// Removes events the endpoint rejected for good (they would never be accepted) and counts
    /// them as dead-lettered.
    pub fn outbox_dead_letter(&self, ids: &[String], reason: &str) -> Result<(), LedgerError> {
        let n = self.outbox_remove(ids, KEY_DEAD_LETTERED)?;
        if n > 0 {
            tracing::warn!(
                events = n,
                reason,
                "Outbox events rejected by the endpoint were dead-lettered."
            );
        }
        Ok(())
    }

    /// Queue depth, age and lifetime counters.
    pub fn outbox_stats(&self) -> Result<OutboxStats, LedgerError> {
        self.read(|txn| {
            let outbox = txn.open_table(OUTBOX)?;
            let meta = txn.open_table(META)?;
            let counter = |k: &str| -> Result<u64, LedgerError> {
                Ok(meta.get(k)?.map(|v| v.value()).unwrap_or(0))
            };
            let oldest_enqueued_at = match outbox.first()? {
                Some((seq, v)) => Some(self.decode_queued(seq.value(), v.value())?.enqueued_at),
                None => None,
            };
            Ok(OutboxStats {
                depth: outbox.len()?,
                oldest_enqueued_at,
                dropped_total: counter(KEY_DROPPED)?,
                dead_lettered_total: counter(KEY_DEAD_LETTERED)?,
                delivered_total: counter(KEY_DELIVERED)?,
            })
        })
    }

    /// Removes the queued events with `ids`, adds how many to the counter `counter`.
    fn outbox_remove(&self, ids: &[String], counter: &str) -> Result<u64, LedgerError> {
        self.write(|txn| {
            let mut outbox = txn.open_table(OUTBOX)?;
            let mut id_table = txn.open_table(OUTBOX_IDS)?;
            let mut heartbeats = txn.open_table(OUTBOX_HEARTBEATS)?;
            let mut meta = txn.open_table(META)?;
            let mut n = 0;
            for id in ids {
                let seq = id_table.remove(id.as_str())?.map(|s| s.value());
                if let Some(seq) = seq
                    && remove(self, &mut outbox, &mut heartbeats, seq)?.is_some()
                {
                    n += 1;
                }
            }
            if n > 0 {
                add(&mut meta, counter, n)?;
            }
            Ok(n)
        })
    }

    fn encode_queued(&self, q: &Queued) -> Result<Vec<u8>, LedgerError> {
        serde_json::to_vec(q).map_err(|source| LedgerError::Record {
            path: self.path_str(),
            record: format!("outbox[{}]", q.event.id),
            source,
        })
    }

    fn decode_queued(&self, seq: u64, bytes: &[u8]) -> Result<Queued, LedgerError> {
        serde_json::from_slice(bytes).map_err(|source| LedgerError::Record {
            path: self.path_str(),
            record: format!("outbox[#{seq}]"),
            source,
        })
    }
}

/// Removes the event at `seq` from the outbox and the heartbeat index (not from the id index).
fn remove(
    ledger: &Ledger,
    outbox: &mut redb::Table<'_, u64, &'static [u8]>,
    heartbeats: &mut redb::Table<'_, u64, ()>,
    seq: u64,
) -> Result<Option<Queued>, LedgerError> {
    heartbeats.remove(seq)?;
    let removed = outbox.remove(seq)?;
    removed
        .map(|v| ledger.decode_queued(seq, v.value()))
        .transpose()
}

/// Adds `n` to the counter `key` in `meta`.
fn add(
    meta: &mut redb::Table<'_, &'static str, u64>,
    key: &str,
    n: u64,
) -> Result<(), LedgerError> {
    let v = meta.get(key)?.map(|v| v.value()).unwrap_or(0);
    meta.insert(key, v.saturating_add(n))?;
    Ok(())
}
