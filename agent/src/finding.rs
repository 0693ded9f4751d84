//! Findings: the verdict of one rule on one fact, three-state.
//!
//! `unknown` means the fact could not be verified; it is never counted as healthy.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::baseline::Severity;
use crate::facts::Evidence;

/// The outcome of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Fail,
    Unknown,
    Pass,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One rule applied to one concrete fact path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The rule id.
    pub rule: String,
    pub title: String,
    pub component: String,
    /// The concrete fact path (wildcards expanded).
    pub path: String,
    pub status: Status,
    pub severity: Severity,
    /// The expectation, e.g. `{"equals": 0}`.
    pub expected: Value,
    /// The value seen; `null` when absent or unknown.
    pub actual: Value,
    /// Why the status is `unknown`, or a note on the comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub evidence: Evidence,
    /// The support-policy clause the rule protects.
    pub policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<String>,
    /// Component-specific detail (a file change: the attributes, diff and who made it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

/// Counts of findings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub total: usize,
    pub pass: usize,
    pub fail: usize,
    pub unknown: usize,
    /// Failing findings per severity (every severity present, zero included).
    pub fail_by_severity: BTreeMap<Severity, usize>,
}

impl Summary {
    pub fn of(findings: &[Finding]) -> Self {
        let mut s = Self {
            fail_by_severity: Severity::ALL.iter().map(|s| (*s, 0)).collect(),
            ..Self::default()
        };
        for f in findings {
            s.total += 1;
            match f.status {
                Status::Pass => s.pass += 1,
                Status::Fail => {
                    s.fail += 1;
                    *s.fail_by_severity.entry(f.severity).or_default() += 1;
                }
                Status::Unknown => s.unknown += 1,
            }
        }
        s
    }
}
