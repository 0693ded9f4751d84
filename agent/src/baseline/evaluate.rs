//! The one generic evaluator: every rule of every component goes through [`evaluate`].

use serde_json::Value;

use crate::facts::{Facts, Lookup, Match, format_path};
use crate::finding::{Finding, Status};

use super::expect::{Verdict, loose_eq};
use super::{Baseline, Rule};

/// Applies every rule to the facts. A rule yields one finding per concrete match of its path;
/// a wildcard that matches nothing (or nothing passing `when`) yields a single `pass`.
pub fn evaluate(baseline: &Baseline, facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    for rule in &baseline.rules {
        evaluate_rule(rule, facts, &mut out);
    }
    out
}

fn evaluate_rule(rule: &Rule, facts: &Facts, out: &mut Vec<Finding>) {
    let before = out.len();
    for m in facts.resolve(&rule.path) {
        // A match that is itself unknown cannot be filtered by `when`: it stays unknown.
        let cond = if matches!(m.value, Lookup::Unknown(_)) {
            Condition::Holds
        } else {
            condition(rule, facts, &m)
        };
        match cond {
            Condition::Skip => continue,
            Condition::Unknown(reason) => {
                out.push(finding(
                    rule,
                    facts,
                    &m.segments,
                    Status::Unknown,
                    Value::Null,
                    Some(reason),
                ));
                continue;
            }
            Condition::Holds => {}
        }
        let (status, actual, reason) = match &m.value {
            Lookup::Unknown(reason) => (Status::Unknown, Value::Null, Some(reason.clone())),
            Lookup::Absent => verdict(rule, None),
            Lookup::Found(v) => verdict(rule, Some(v)),
        };
        out.push(finding(rule, facts, &m.segments, status, actual, reason));
    }
    if out.len() == before {
        let reason = if rule.path.has_wildcard() {
            "no element matches"
        } else {
            "nothing to check"
        };
        out.push(Finding {
            reason: Some(reason.into()),
            ..finding(rule, facts, &[], Status::Pass, Value::Null, None)
        });
        if let Some(f) = out.last_mut() {
            f.path = rule.path.to_string();
        }
    }
}

fn verdict(rule: &Rule, v: Option<&Value>) -> (Status, Value, Option<String>) {
    if let Some(reason) = v.and_then(nested_unknown) {
        // The value is an object that is itself partly unknown: the check cannot be trusted.
        return (Status::Unknown, Value::Null, Some(reason));
    }
    let actual = v.cloned().unwrap_or(Value::Null);
    match rule.check.evaluate(v) {
        Verdict::Pass => (Status::Pass, actual, None),
        Verdict::Fail => (Status::Fail, actual, None),
        Verdict::Unknown(reason) => (Status::Unknown, actual, Some(reason)),
    }
}

/// The first unknown marker anywhere inside `v`.
fn nested_unknown(v: &Value) -> Option<String> {
    if let Some(r) = crate::facts::unknown_reason(v) {
        return Some(r.to_owned());
    }
    match v {
        Value::Object(m) => m.values().find_map(nested_unknown),
        Value::Array(a) => a.iter().find_map(nested_unknown),
        _ => None,
    }
}

enum Condition {
    Holds,
    Skip,
    Unknown(String),
}

/// Evaluates `when` relative to the element the last `*` matched.
fn condition(rule: &Rule, facts: &Facts, m: &Match<'_>) -> Condition {
    for (rel, expected) in &rule.when {
        let base = format_path(m.element.iter().map(String::as_str));
        match facts.get(&format!("{base}.{rel}")) {
            Lookup::Unknown(reason) => return Condition::Unknown(reason),
            Lookup::Found(v) if loose_eq(v, expected) => {}
            _ => return Condition::Skip,
        }
    }
    Condition::Holds
}

/// The severity of a failing finding of `rule`: its own, or the last escalation step whose age
/// has passed (age from the `since` fact, a Unix time; an unknown or future time does not
/// escalate).
fn escalated(rule: &Rule, facts: &Facts) -> crate::baseline::Severity {
    let Some((raw, steps)) = &rule.escalate else {
        return rule.severity;
    };
    let since = match facts.get(&raw.since) {
        Lookup::Found(v) => v.as_i64(),
        _ => None,
    };
    let now = crate::clock::unix_now();
    let Some(age) = since
        .and_then(|s| now.checked_sub(s))
        .and_then(|a| u64::try_from(a).ok())
    else {
        return rule.severity;
    };
    steps
        .iter()
        .filter(|(after, _)| age >= after.as_secs())
        .map(|(_, s)| *s)
        .fold(rule.severity, |acc, s| acc.max(s))
}

fn finding(
    rule: &Rule,
    facts: &Facts,
    segments: &[String],
    status: Status,
    actual: Value,
    reason: Option<String>,
) -> Finding {
    Finding {
        rule: rule.id.clone(),
        title: rule.title.clone(),
        component: rule.component.clone(),
        path: format_path(segments.iter().map(String::as_str)),
        severity: if status == Status::Fail {
            escalated(rule, facts)
        } else {
            rule.severity
        },
        status,
        expected: serde_json::to_value(&rule.expect).unwrap_or(Value::Null),
        actual,
        reason,
        evidence: facts.evidence_for(segments).cloned().unwrap_or_default(),
        policy: rule.policy.clone(),
        remediation: rule.remediation.clone(),
        detail: None,
    }
}
