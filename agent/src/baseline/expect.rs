//! Expectations compiled for evaluation (regexes built, versions and modes parsed once), and
//! the comparison rules they share: scalars compare loosely across JSON types (`"1"` equals
//! `1`, `"true"` equals `true`) because host files carry numbers as text.

use std::cmp::Ordering;

use regex::Regex;
use serde_json::Value;

use super::model::Expectation;

/// An expectation ready to evaluate.
#[derive(Debug, Clone)]
pub enum Check {
    Equals(Value),
    OneOf(Vec<Value>),
    NotIn(Vec<Value>),
    Absent,
    Present,
    Matches(Regex),
    NotMatches(Regex),
    AtLeast(f64),
    AtMost(f64),
    Version(Vec<(Op, Version)>),
    ModeAtMost(u32),
    Contains(Value),
    NotContains(Value),
}

/// The result of applying a check to a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// The value exists but the check cannot judge it (e.g. not a version at all).
    Unknown(String),
}

impl Check {
    /// Compiles an expectation, or says what is wrong with it.
    pub fn compile(e: &Expectation) -> Result<Self, String> {
        let mut found: Vec<Self> = Vec::new();
        if let Some(v) = &e.equals {
            found.push(Self::Equals(v.clone()));
        }
        if let Some(v) = &e.one_of {
            if v.is_empty() {
                return Err("oneOf: empty list".into());
            }
            found.push(Self::OneOf(v.clone()));
        }
        if let Some(v) = &e.not_in {
            found.push(Self::NotIn(v.clone()));
        }
        for (flag, check) in [(e.absent, Self::Absent), (e.present, Self::Present)] {
            match flag {
                Some(true) => found.push(check),
                Some(false) => {
                    return Err(
                        "absent/present take `true`; use the other one instead of `false`".into(),
                    );
                }
                None => {}
            }
        }
        if let Some(r) = &e.matches {
            found.push(Self::Matches(regex(r)?));
        }
        if let Some(r) = &e.not_matches {
            found.push(Self::NotMatches(regex(r)?));
        }
        if let Some(n) = e.at_least {
            found.push(Self::AtLeast(n));
        }
        if let Some(n) = e.at_most {
            found.push(Self::AtMost(n));
        }
        if let Some(c) = &e.version {
            found.push(Self::Version(parse_constraints(c)?));
        }
        if let Some(m) = &e.mode_at_most {
            found.push(Self::ModeAtMost(parse_mode(m).ok_or_else(|| {
                format!("modeAtMost: {m:?} is not an octal mode like \"0644\"")
            })?));
        }
        if let Some(v) = &e.contains {
            found.push(Self::Contains(v.clone()));
        }
        if let Some(v) = &e.not_contains {
            found.push(Self::NotContains(v.clone()));
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err("give one expectation (equals, oneOf, notIn, absent, present, matches, notMatches, atLeast, atMost, version, modeAtMost, contains, notContains)".into()),
            _ => Err("give exactly one expectation per rule".into()),
        }
    }

    /// Applies the check. `actual` is `None` when the fact is absent (or `null`).
    pub fn evaluate(&self, actual: Option<&Value>) -> Verdict {
        let actual = actual.filter(|v| !v.is_null());
        let ok = |b: bool| if b { Verdict::Pass } else { Verdict::Fail };
        match (self, actual) {
            (Self::Absent, a) => ok(a.is_none()),
            (Self::Present, a) => ok(a.is_some()),
            (Self::NotIn(_) | Self::NotMatches(_) | Self::NotContains(_), None) => Verdict::Pass,
            (_, None) => Verdict::Fail,
            (Self::Equals(e), Some(a)) => ok(loose_eq(a, e)),
            (Self::OneOf(list), Some(a)) => ok(list.iter().any(|e| loose_eq(a, e))),
            (Self::NotIn(list), Some(a)) => ok(!list.iter().any(|e| loose_eq(a, e))),
            (Self::Matches(r), Some(a)) => match scalar_text(a) {
                Some(s) => ok(r.is_match(&s)),
                None => Verdict::Unknown("value is not a scalar; cannot match a pattern".into()),
            },
            (Self::NotMatches(r), Some(a)) => match scalar_text(a) {
                Some(s) => ok(!r.is_match(&s)),
                None => Verdict::Unknown("value is not a scalar; cannot match a pattern".into()),
            },
            (Self::AtLeast(n), Some(a)) => number(a, |x| x >= *n),
            (Self::AtMost(n), Some(a)) => number(a, |x| x <= *n),
            (Self::Version(cs), Some(a)) => {
                let Some(v) = scalar_text(a).as_deref().and_then(Version::parse) else {
                    return Verdict::Unknown(format!("{a} is not a version"));
                };
                ok(cs.iter().all(|(op, c)| op.holds(v.cmp(c))))
            }
            (Self::ModeAtMost(mask), Some(a)) => {
                let mode = match a {
                    Value::String(s) => parse_mode(s),
                    Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                    _ => None,
                };
                match mode {
                    Some(m) => ok(m & !mask & 0o7777 == 0),
                    None => Verdict::Unknown(format!("{a} is not a file mode")),
                }
            }
            (Self::Contains(e), Some(a)) => ok(contains(a, e)),
            (Self::NotContains(e), Some(a)) => ok(!contains(a, e)),
        }
    }
}

fn regex(r: &str) -> Result<Regex, String> {
    Regex::new(r).map_err(|e| format!("invalid regular expression {r:?}: {e}"))
}

fn number(a: &Value, f: impl Fn(f64) -> bool) -> Verdict {
    match as_f64(a) {
        Some(x) => {
            if f(x) {
                Verdict::Pass
            } else {
                Verdict::Fail
            }
        }
        None => Verdict::Unknown(format!("{a} is not a number")),
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Text of a scalar (`"x"` → `x`, `1` → `1`, `true` → `true`).
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Equality that forgives the JSON type of scalars: `"1" == 1`, `"true" == true`, `1.0 == 1`.
pub fn loose_eq(a: &Value, e: &Value) -> bool {
    if a == e {
        return true;
    }
    match (a, e) {
        (Value::Number(_), Value::Number(_)) => as_f64(a) == as_f64(e),
        (Value::String(s), Value::Number(_)) | (Value::Number(_), Value::String(s)) => {
            let n = if a.is_number() { a } else { e };
            s.trim().parse::<f64>().ok() == as_f64(n)
        }
        (Value::String(s), Value::Bool(b)) | (Value::Bool(b), Value::String(s)) => s
            .trim()
            .eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        _ => false,
    }
}

fn contains(a: &Value, e: &Value) -> bool {
    match a {
        Value::Array(items) => items.iter().any(|i| loose_eq(i, e)),
        Value::String(s) => scalar_text(e).is_some_and(|t| s.contains(&t)),
        Value::Object(m) => e.as_str().is_some_and(|k| m.contains_key(k)),
        _ => false,
    }
}

/// `"0644"`, `"644"` or `"0o644"` → 0o644.
pub fn parse_mode(s: &str) -> Option<u32> {
    let s = s.trim();
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 5 {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
}

/// A comparison operator of a version constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

impl Op {
    fn holds(self, o: Ordering) -> bool {
        match self {
            Self::Ge => o != Ordering::Less,
            Self::Gt => o == Ordering::Greater,
            Self::Le => o != Ordering::Greater,
            Self::Lt => o == Ordering::Less,
            Self::Eq => o == Ordering::Equal,
            Self::Ne => o != Ordering::Equal,
        }
    }
}

/// A dotted numeric version as found on nodes: `v1.30.4`, `1.6.20~ds1`, `5.15.0-1057-azure`.
/// Only the leading dotted numbers are compared (missing ones count as 0); the rest is kept
/// for display. `1.30` therefore equals `1.30.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    parts: Vec<u64>,
}

impl Version {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
        let numeric: &str = &s[..s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len())];
        let parts: Vec<u64> = numeric
            .split('.')
            .take_while(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        if parts.is_empty() {
            return None;
        }
        Some(Self { parts })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.parts.len().max(other.parts.len());
        (0..n)
            .map(|i| {
                let a = self.parts.get(i).copied().unwrap_or(0);
                let b = other.parts.get(i).copied().unwrap_or(0);
                a.cmp(&b)
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Parses `>=1.28, <1.35` (a bare version means `==`).
pub fn parse_constraints(s: &str) -> Result<Vec<(Op, Version)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let (op, rest) = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("!=", Op::Ne),
            ("==", Op::Eq),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("=", Op::Eq),
        ]
        .iter()
        .find_map(|(p, op)| part.strip_prefix(p).map(|r| (*op, r)))
        .unwrap_or((Op::Eq, part));
        let v = Version::parse(rest)
            .ok_or_else(|| format!("version: {part:?} is not a constraint like \">=1.28\""))?;
        out.push((op, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(e: Expectation) -> Check {
        Check::compile(&e).unwrap()
    }

    #[test]
    fn loose_equality() {
        assert!(loose_eq(&json!("1"), &json!(1)));
        assert!(loose_eq(&json!(1), &json!("1")));
        assert!(loose_eq(&json!("True"), &json!(true)));
        assert!(loose_eq(&json!(1.0), &json!(1)));
        assert!(!loose_eq(&json!("10255"), &json!(0)));
        assert!(!loose_eq(&json!("yes"), &json!(true)));
    }

    #[test]
    fn absence_semantics() {
        assert_eq!(
            check(Expectation {
                equals: Some(json!(0)),
                ..Default::default()
            })
            .evaluate(None),
            Verdict::Fail
        );
        assert_eq!(
            check(Expectation {
                absent: Some(true),
                ..Default::default()
            })
            .evaluate(None),
            Verdict::Pass
        );
        assert_eq!(
            check(Expectation {
                absent: Some(true),
                ..Default::default()
            })
            .evaluate(Some(&json!(null))),
            Verdict::Pass
        );
        assert_eq!(
            check(Expectation {
                not_in: Some(vec![json!("alpha")]),
                ..Default::default()
            })
            .evaluate(None),
            Verdict::Pass
        );
        assert_eq!(
            check(Expectation {
                present: Some(true),
                ..Default::default()
            })
            .evaluate(Some(&json!(""))),
            Verdict::Pass
        );
    }

    #[test]
    fn versions() {
        let c = check(Expectation {
            version: Some(">=1.28, <1.35".into()),
            ..Default::default()
        });
        assert_eq!(c.evaluate(Some(&json!("v1.30.4"))), Verdict::Pass);
        assert_eq!(c.evaluate(Some(&json!("1.35.0"))), Verdict::Fail);
        assert_eq!(c.evaluate(Some(&json!("1.27.9"))), Verdict::Fail);
        assert!(matches!(
            c.evaluate(Some(&json!("garbage"))),
            Verdict::Unknown(_)
        ));
        let c = check(Expectation {
            version: Some(">=1.6".into()),
            ..Default::default()
        });
        assert_eq!(c.evaluate(Some(&json!("1.6.20~ds1"))), Verdict::Pass);
        assert!(
            Check::compile(&Expectation {
                version: Some(">=x".into()),
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn modes() {
        let c = check(Expectation {
            mode_at_most: Some("0644".into()),
            ..Default::default()
        });
        assert_eq!(c.evaluate(Some(&json!("0600"))), Verdict::Pass);
        assert_eq!(c.evaluate(Some(&json!("0644"))), Verdict::Pass);
        assert_eq!(c.evaluate(Some(&json!("0664"))), Verdict::Fail);
        assert_eq!(c.evaluate(Some(&json!("4644"))), Verdict::Fail);
        assert!(
            Check::compile(&Expectation {
                mode_at_most: Some("rw-r--r--".into()),
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn patterns_numbers_contains() {
        let c = check(Expectation {
            matches: Some("^127\\.0\\.0\\.1:".into()),
            ..Default::default()
        });
        assert_eq!(c.evaluate(Some(&json!("127.0.0.1:10249"))), Verdict::Pass);
        assert_eq!(c.evaluate(Some(&json!("0.0.0.0:10249"))), Verdict::Fail);
        assert!(
            Check::compile(&Expectation {
                matches: Some("(".into()),
                ..Default::default()
            })
            .is_err()
        );
        let c = check(Expectation {
            at_least: Some(10.0),
            ..Default::default()
        });
        assert_eq!(c.evaluate(Some(&json!("12"))), Verdict::Pass);
        assert!(matches!(c.evaluate(Some(&json!("x"))), Verdict::Unknown(_)));
        let c = check(Expectation {
            contains: Some(json!("b")),
            ..Default::default()
        });
        assert_eq!(c.evaluate(Some(&json!(["a", "b"]))), Verdict::Pass);
        assert_eq!(c.evaluate(Some(&json!("abc"))), Verdict::Pass);
        assert_eq!(c.evaluate(Some(&json!([]))), Verdict::Fail);
    }
}
