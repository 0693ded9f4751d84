//! The ledger: nodedrift's embedded ACID store in the state directory.
//!
//! It holds each finding's lifecycle (opened, last seen, resolved, occurrences), the time since
//! which a reboot is pending, and the delivery outbox of CloudEvents. Sinks consume the
//! [`Transition`]s it returns, never raw scans: an open finding is reported once.

use serde::{Deserialize, Serialize};

use crate::finding::Finding;

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
