//! What the Node should say after an evaluation: the `nodedrift.dev/` annotations and the
//! `NodeDrift` / `RebootRequired` conditions, computed from a [`NodeStatusUpdate`] without
//! touching the API server (pure, so it is tested on its own).

use std::collections::BTreeMap;

use serde_json::json;

use crate::report::summary::{NodeState, NodeSummary};

/// Prefix of every annotation nodedrift writes; keys outside it are never touched.
pub const ANNOTATION_PREFIX: &str = "nodedrift.dev/";
/// `Clean`, `Drifted` or `Unknown`.
pub const ANNOTATION_STATE: &str = "nodedrift.dev/state";
/// Compact JSON: pass/fail/unknown counts and failing findings by severity.
pub const ANNOTATION_SUMMARY: &str = "nodedrift.dev/summary";
/// RFC 3339 time of the evaluation; the heartbeat (written at most once per heartbeat interval
/// when nothing else changed).
pub const ANNOTATION_LAST_CHECK: &str = "nodedrift.dev/last-check";
pub const ANNOTATION_PROFILE: &str = "nodedrift.dev/profile";
/// Identifies the effective rules (the lead passes e.g. a hash of them).
pub const ANNOTATION_BASELINE_VERSION: &str = "nodedrift.dev/baseline-version";
/// RFC 3339 time since which a reboot is pending; removed when none is.
pub const ANNOTATION_REBOOT_SINCE: &str = "nodedrift.dev/reboot-required-since";
/// `<id> <state> <sha256|->` of the latest snapshot request (set by anyone as
/// `nodedrift.dev/snapshot-request`, which nodedrift only reads).
pub const ANNOTATION_SNAPSHOT_STATUS: &str = "nodedrift.dev/snapshot-status";
/// Set by an operator to ask for a snapshot: its value is the request id.
pub const ANNOTATION_SNAPSHOT_REQUEST: &str = "nodedrift.dev/snapshot-request";

/// Condition type saying whether the node drifted from its baseline (`False` = healthy).
pub const CONDITION_DRIFT: &str = "NodeDrift";
/// Condition type saying whether a reboot is pending (`False` = healthy).
pub const CONDITION_REBOOT: &str = "RebootRequired";
/// The condition types nodedrift owns: the only entries its status patches carry.
pub const OWNED_CONDITIONS: [&str; 2] = [CONDITION_DRIFT, CONDITION_REBOOT];

/// Reboot reasons the inspector reports that are used verbatim as the condition reason; any
/// other reason becomes the generic [`REASON_REBOOT_REQUIRED`].
const KNOWN_REBOOT_REASONS: [&str; 3] = ["KernelUpdate", "PackageUpdate", "LibrariesReplaced"];
const REASON_REBOOT_REQUIRED: &str = "RebootRequired";

/// Condition messages are for `kubectl describe node`; longer ones are cut (with an ellipsis)
/// so one noisy evaluation cannot bloat the Node object every heartbeat.
pub(super) const MAX_CONDITION_MESSAGE: usize = 1024;
/// How many pending-reboot packages a condition message names before `(+N more)`.
const MAX_PACKAGES_NAMED: usize = 10;

/// The desired state of the Node after one evaluation: what the lead sends the sink.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatusUpdate {
    /// The evaluation's summary (state, counts, top findings, reboot since/reasons).
    pub summary: NodeSummary,
    /// Identifies the effective rules, e.g. a hash of them.
    pub baseline_version: String,
    /// Packages whose update wants the reboot (named in the `RebootRequired` message).
    pub reboot_packages: Vec<String>,
    /// The latest snapshot request's outcome; `None` leaves the annotation as it is.
    pub snapshot_status: Option<String>,
}

impl NodeStatusUpdate {
    /// Whether a reboot is pending: a `since` time or any reason. Never "no reboot required"
    /// while a reason is known.
    pub fn reboot_pending(&self) -> bool {
        self.summary.reboot_required_since.is_some() || !self.summary.reboot_reasons.is_empty()
    }
}

/// The annotations nodedrift owns, as a merge patch wants them: `None` removes the key.
pub(super) fn annotations(u: &NodeStatusUpdate) -> BTreeMap<&'static str, Option<String>> {
    let s = &u.summary;
    let summary = json!({
        "pass": s.pass,
        "fail": s.fail,
        "unknown": s.unknown,
        "failBySeverity": s.fail_by_severity,
    });
    // A pending reboot without a known start (reasons only) is dated by this evaluation, so the
    // annotation and the condition never disagree.
    let since = if u.reboot_pending() {
        Some(
            s.reboot_required_since
                .clone()
                .unwrap_or_else(|| s.checked_at.clone()),
        )
    } else {
        None
    };
    let mut out = BTreeMap::from([
        (ANNOTATION_STATE, Some(state_word(s.state).to_owned())),
        (ANNOTATION_SUMMARY, Some(summary.to_string())),
        (ANNOTATION_LAST_CHECK, Some(s.checked_at.clone())),
        (ANNOTATION_PROFILE, Some(s.profile.clone())),
        (
            ANNOTATION_BASELINE_VERSION,
            Some(u.baseline_version.clone()),
        ),
        (ANNOTATION_REBOOT_SINCE, since),
    ]);
    if let Some(status) = &u.snapshot_status {
        out.insert(ANNOTATION_SNAPSHOT_STATUS, Some(status.clone()));
    }
    out
}

fn state_word(s: NodeState) -> &'static str {
    match s {
        NodeState::Clean => "Clean",
        NodeState::Drifted => "Drifted",
        NodeState::Unknown => "Unknown",
    }
}

/// One condition as nodedrift wants it, without its times (those depend on what the Node
/// already says and on when it is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DesiredCondition {
    pub kind: &'static str,
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

/// Both owned conditions for an update, `NodeDrift` first.
pub(super) fn conditions(u: &NodeStatusUpdate) -> [DesiredCondition; 2] {
    [drift_condition(&u.summary), reboot_condition(u)]
}

fn drift_condition(s: &NodeSummary) -> DesiredCondition {
    let total = s.pass + s.fail + s.unknown;
    let (status, reason, message) = match s.state {
        NodeState::Clean => (
            "False",
            "NoDrift",
            format!("all {total} checks of profile {} pass", s.profile),
        ),
        NodeState::Unknown => (
            "Unknown",
            "DriftUnknown",
            format!(
                "no check of profile {} fails, but {} of {total} could not be verified",
                s.profile, s.unknown
            ),
        ),
        NodeState::Drifted => {
            let by_severity: Vec<String> = s
                .fail_by_severity
                .iter()
                .rev()
                .filter(|(_, n)| **n > 0)
                .map(|(sev, n)| format!("{sev} {n}"))
                .collect();
            let mut m = format!(
                "{} of {total} checks of profile {} fail ({})",
                s.fail,
                s.profile,
                by_severity.join(", ")
            );
            if s.unknown > 0 {
                m.push_str(&format!(", {} unknown", s.unknown));
            }
            if !s.top.is_empty() {
                m.push_str("; top: ");
                m.push_str(&s.top.join("; "));
            }
            ("True", "DriftDetected", m)
        }
    };
    DesiredCondition {
        kind: CONDITION_DRIFT,
        status,
        reason: reason.to_owned(),
        message: truncate(message, MAX_CONDITION_MESSAGE),
    }
}

fn reboot_condition(u: &NodeStatusUpdate) -> DesiredCondition {
    let s = &u.summary;
    if !u.reboot_pending() {
        return DesiredCondition {
            kind: CONDITION_REBOOT,
            status: "False",
            reason: "NoRebootRequired".to_owned(),
            message: "no reboot is pending".to_owned(),
        };
    }
    let reason = match s.reboot_reasons.first() {
        Some(r) if KNOWN_REBOOT_REASONS.contains(&r.as_str()) => r.clone(),
        _ => REASON_REBOOT_REQUIRED.to_owned(),
    };
    let mut m = String::from("reboot required");
    if let Some(since) = &s.reboot_required_since {
        m.push_str(&format!(" since {since}"));
    }
    if !s.reboot_reasons.is_empty() {
        m.push_str(&format!(": {}", s.reboot_reasons.join(", ")));
    }
    if !u.reboot_packages.is_empty() {
        let named: Vec<&str> = u
            .reboot_packages
            .iter()
            .take(MAX_PACKAGES_NAMED)
            .map(String::as_str)
            .collect();
        m.push_str(&format!("; packages: {}", named.join(", ")));
        let more = u.reboot_packages.len().saturating_sub(MAX_PACKAGES_NAMED);
        if more > 0 {
            m.push_str(&format!(" (+{more} more)"));
        }
    }
    DesiredCondition {
        kind: CONDITION_REBOOT,
        status: "True",
        reason,
        message: truncate(m, MAX_CONDITION_MESSAGE),
    }
}

/// `s` cut to at most `max` bytes on a character boundary, ending in `…` when cut.
pub(super) fn truncate(mut s: String, max: usize) -> String {
    const ELLIPSIS: &str = "…";
    if s.len() <= max {
        return s;
    }
    let mut end = max.saturating_sub(ELLIPSIS.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(ELLIPSIS);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::Severity;

    pub(crate) fn summary(state: NodeState) -> NodeSummary {
        let mut fail_by_severity: BTreeMap<Severity, usize> =
            Severity::ALL.iter().map(|s| (*s, 0)).collect();
        let (fail, unknown, top) = match state {
            NodeState::Clean => (0, 0, vec![]),
            NodeState::Unknown => (0, 2, vec![]),
            NodeState::Drifted => {
                fail_by_severity.insert(Severity::Critical, 1);
                fail_by_severity.insert(Severity::High, 2);
                (
                    3,
                    1,
                    vec![
                        "kubelet.anonymous-auth-disabled (kubelet.config.authentication.anonymous.enabled)".to_owned(),
                        "sysctl.ip-forward (sysctl[\"net.ipv4.ip_forward\"])".to_owned(),
                        "kubelet.no-alpha-gates (kubelet.featureGates[\"Foo\"])".to_owned(),
                    ],
                )
            }
        };
        NodeSummary {
            state,
            profile: "aks-ubuntu".to_owned(),
            checked_at: "2026-03-01T10:00:00Z".to_owned(),
            pass: 40,
            fail,
            unknown,
            fail_by_severity,
            top,
            reboot_required_since: None,
            reboot_reasons: vec![],
        }
    }

    fn update(state: NodeState) -> NodeStatusUpdate {
        NodeStatusUpdate {
            snapshot_status: None,
            summary: summary(state),
            baseline_version: "sha256:0a1b2c".to_owned(),
            reboot_packages: vec![],
        }
    }

    fn as_json(conds: &[DesiredCondition]) -> serde_json::Value {
        conds
            .iter()
            .map(|c| json!({"type": c.kind, "status": c.status, "reason": c.reason, "message": c.message}))
            .collect()
    }

    #[test]
    fn drifted_node_annotations() {
        insta::assert_json_snapshot!(annotations(&update(NodeState::Drifted)));
    }

    #[test]
    fn clean_node_annotations_remove_the_reboot_time() {
        let a = annotations(&update(NodeState::Clean));
        assert_eq!(a[ANNOTATION_STATE].as_deref(), Some("Clean"));
        assert_eq!(a[ANNOTATION_REBOOT_SINCE], None);
        assert!(a.keys().all(|k| k.starts_with(ANNOTATION_PREFIX)));
    }

    #[test]
    fn conditions_per_state() {
        let all: Vec<DesiredCondition> = [NodeState::Clean, NodeState::Unknown, NodeState::Drifted]
            .into_iter()
            .flat_map(|s| conditions(&update(s)))
            .collect();
        insta::assert_json_snapshot!(as_json(&all));
    }

    #[test]
    fn pending_reboot_names_first_reason_and_packages() {
        let mut u = update(NodeState::Clean);
        u.summary.reboot_required_since = Some("2026-02-27T08:00:00Z".to_owned());
        u.summary.reboot_reasons = vec!["KernelUpdate".to_owned(), "PackageUpdate".to_owned()];
        u.reboot_packages = (0..12).map(|i| format!("pkg{i}")).collect();
        let [_, reboot] = conditions(&u);
        insta::assert_json_snapshot!(as_json(&[reboot]));
        assert_eq!(
            annotations(&u)[ANNOTATION_REBOOT_SINCE].as_deref(),
            Some("2026-02-27T08:00:00Z")
        );
    }

    #[test]
    fn reboot_reason_without_since_is_dated_by_the_check_and_unknown_reasons_are_generic() {
        let mut u = update(NodeState::Clean);
        u.summary.reboot_reasons = vec!["FirmwareUpdate".to_owned()];
        let [_, reboot] = conditions(&u);
        assert_eq!(
            (reboot.status, reboot.reason.as_str()),
            ("True", "RebootRequired")
        );
        assert_eq!(
            annotations(&u)[ANNOTATION_REBOOT_SINCE].as_deref(),
            Some("2026-03-01T10:00:00Z")
        );
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let s = truncate("é".repeat(600), MAX_CONDITION_MESSAGE);
        assert!(s.len() <= MAX_CONDITION_MESSAGE);
        assert!(s.ends_with('…'));
        assert_eq!(truncate("short".to_owned(), 10), "short");
    }
}
