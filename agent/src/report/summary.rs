//! The node summary every sink shares: the state of the node in one word, counts, and the top
//! findings, computed from one evaluation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::baseline::Severity;
use crate::finding::{Finding, Status};

/// The node's state as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// Every rule passes.
    Clean,
    /// At least one rule fails.
    Drifted,
    /// Nothing fails, but something could not be verified.
    Unknown,
}

/// What the sinks say about the node after an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSummary {
    pub state: NodeState,
    pub profile: String,
    /// RFC 3339 time of the evaluation.
    pub checked_at: String,
    pub pass: usize,
    pub fail: usize,
    pub unknown: usize,
    /// Failing findings per severity (all severities present).
    pub fail_by_severity: BTreeMap<Severity, usize>,
    /// The most severe failing findings, at most [`TOP`], as `rule (path)`.
    pub top: Vec<String>,
    /// RFC 3339 time since when a reboot is pending, if one is.
    pub reboot_required_since: Option<String>,
    /// Reasons for the pending reboot (`KernelUpdate`, `PackageUpdate`, ...).
    pub reboot_reasons: Vec<String>,
}

/// How many failing findings a summary names.
pub const TOP: usize = 3;

impl NodeSummary {
    /// Summarises `findings` (any order).
    pub fn of(findings: &[Finding], profile: &str, checked_at: String) -> Self {
        let s = crate::finding::Summary::of(findings);
        let mut failing: Vec<&Finding> = findings
            .iter()
            .filter(|f| f.status == Status::Fail)
            .collect();
        failing.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.rule.cmp(&b.rule))
        });
        let state = if s.fail > 0 {
            NodeState::Drifted
        } else if s.unknown > 0 {
            NodeState::Unknown
        } else {
            NodeState::Clean
        };
        Self {
            state,
            profile: profile.to_owned(),
            checked_at,
            pass: s.pass,
            fail: s.fail,
            unknown: s.unknown,
            fail_by_severity: s.fail_by_severity,
            top: failing
                .iter()
                .take(TOP)
                .map(|f| format!("{} ({})", f.rule, f.path))
                .collect(),
            reboot_required_since: None,
            reboot_reasons: Vec::new(),
        }
    }
}
