//! The ledger: nodedrift's embedded ACID store in the state directory.
//!
//! It holds each finding's lifecycle (opened, last seen, resolved, occurrences), the time since
//! which a reboot is pending, and the delivery outbox of CloudEvents. Sinks consume the
//! [`Transition`]s it returns, never raw scans: an open finding is reported once.
//!
//! The store is one redb file, `<state dir>/nodedrift.redb` (directory created 0700, file 0600),
//! opened with [`Ledger::open`]. Every call is one transaction: the file never holds half an
//! evaluation or half a push, whatever kills the process. The file carries a schema version;
//! a newer one than this build knows is refused, an older one is migrated on open. A file that
//! cannot be opened (corrupt, not a redb file, locked by another process) is an error naming
//! it, never silently recreated: the daemon decides.
//!
//! # Finding lifecycle ([`Ledger::apply`])
//!
//! A finding is identified by its [`FindingKey`] (rule id and concrete fact path).
//!
//! | status in this evaluation | key not open                      | key open                                         |
//! |---------------------------|-----------------------------------|--------------------------------------------------|
//! | `fail`                    | **Opened**: generation + 1, occurrences 1, opened_at = now | no transition; last_seen = now, occurrences + 1, finding updated |
//! | `pass`                    | nothing                           | **Resolved** (with the passing finding)           |
//! | `unknown`                 | nothing                           | no transition; stays open unchanged (unknown is not healthy) |
//! | absent, component in scope| —                                 | **Resolved** (rule removed, wildcard element gone; with the last failing finding) |
//! | absent, component out of scope | —                            | untouched (partial re-check of other components) |
//!
//! The generation survives resolution, so a key that opens again gets a new generation (and
//! new event ids). State survives restarts: re-applying the same failing findings after
//! reopening yields no `Opened`; a finding that passes at the first evaluation after a restart
//! is `Resolved`.
//!
//! # Reboot pending ([`Ledger::set_reboot_pending`])
//!
//! The first `pending = true` records its start (`Started`) and the boot id; while it stays
//! pending within that boot the earliest trustworthy start is kept (a start in the future is
//! not trusted), across agent restarts. `pending = false` (no reason remains: the marker was
//! removed, or the node rebooted into what was installed) clears it (`Cleared`). Still pending
//! under another boot id means the reboot did not apply the updates (the old kernel was
//! booted, or new updates arrived since): the start is re-dated from the current evidence
//! (`Restarted`).
//!
//! # Outbox
//!
//! See [`outbox`] for the queue and its overflow policy.
//!
//! # Errors and the disk
//!
//! A write that fails (disk full, I/O error) returns a [`LedgerError`] and commits nothing; the
//! last committed state stays intact. The handle is then reopened on the next call (redb
//! refuses further use of a handle after an I/O error), so writes resume when space returns.

use serde::{Deserialize, Serialize};

use crate::finding::Finding;

mod dump;
pub mod outbox;
mod store;

pub use dump::{LedgerDump, QueuedEvent, RebootDump, dump_read_only};
pub use outbox::{DroppedEvent, OutboxLimits, OutboxStats, PushOutcome};
pub use store::{
    FILE_NAME, Ledger, LedgerError, OpenFinding, PendingReboot, RebootChange, RebootDetail,
    RebootState, Recorded, SCHEMA_VERSION, SNAPSHOT_IDS_KEPT,
};

/// What identifies a finding across scans: its rule and concrete fact path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FindingKey {
    pub rule: String,
    pub path: String,
}

impl FindingKey {
    pub fn of(f: &Finding) -> Self {
        Self {
            rule: f.rule.clone(),
            path: f.path.clone(),
        }
    }
}

/// A change in a finding's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// The finding started failing (first time, or again after it was resolved).
    Opened,
    /// A failing finding passes again, or its rule/fact disappeared.
    Resolved,
}

/// One lifecycle transition, as the sinks receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    pub change: Change,
    pub key: FindingKey,
    /// The finding as last evaluated (for `Resolved`: the passing one, or the last failing one
    /// when the rule or fact disappeared).
    pub finding: Finding,
    /// Unix seconds the current (or just resolved) open period began.
    pub opened_at: i64,
    /// Unix seconds it was resolved, for `Resolved`.
    pub resolved_at: Option<i64>,
    /// How many evaluations saw it failing in this open period.
    pub occurrences: u64,
    /// How many times this key has been opened, this one included: part of the stable event id,
    /// so a finding that opens, resolves and opens again yields distinct events.
    pub generation: u64,
}

#[cfg(test)]
mod tests;
