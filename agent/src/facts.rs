//! Facts: what the inspectors saw, as plain data with no judgement.
//!
//! Each component (kubelet, containerd, ...) yields one [`ComponentFacts`]: a JSON object tree
//! whose keys are the upstream field names (`config.readOnlyPort`,
//! `featureGates.DynamicResourceAllocation`), an evidence map saying where each subtree came
//! from, and *unknown markers*. A subtree the inspector could not see is stored as
//! `{"$unknown": "<reason>"}` in place of its value, so that every lookup through it yields
//! `unknown` with that reason, and the JSON printed by `nodedrift inspect` shows exactly what is
//! unknown and why.
//!
//! Rule paths address facts as `component.seg.seg`. A segment may be quoted with brackets
//! (`sysctl.runtime["net.ipv4.ip_forward"]`); an unquoted dotted path also finds keys that
//! themselves contain dots (`sysctl.runtime.net.ipv4.ip_forward`), the longest key winning, and
//! `*` matches every key of an object (or element of an array).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

/// The key of an unknown marker object.
pub const UNKNOWN_KEY: &str = "$unknown";

/// Where a fact came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// Host file the value was read from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Process the value was read from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// How the value was obtained: `flag`, `config`, `default`, `runtime`, `api`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Evidence {
    pub fn file(path: impl Into<String>) -> Self {
        Self {
            file: Some(path.into()),
            ..Self::default()
        }
    }

    pub fn with_pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self
    }

    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.file.is_none() && self.pid.is_none() && self.source.is_none()
    }
}

/// The facts of one component.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentFacts {
    #[serde(skip)]
    pub name: String,
    pub facts: Value,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub evidence: BTreeMap<String, Evidence>,
}

impl ComponentFacts {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            facts: Value::Object(Map::new()),
            evidence: BTreeMap::new(),
        }
    }

    /// Sets the value at `path` (segments relative to the component), creating objects on the
    /// way and replacing whatever was there.
    pub fn set(&mut self, path: &[&str], value: impl Into<Value>) {
        let value = value.into();
        let Some((last, parents)) = path.split_last() else {
            self.facts = value;
            return;
        };
        let mut cur = &mut self.facts;
        for seg in parents {
            cur = object(cur)
                .entry((*seg).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        object(cur).insert((*last).to_owned(), value);
    }

    /// Marks the subtree at `path` as unknown with `reason`.
    pub fn unknown(&mut self, path: &[&str], reason: impl fmt::Display) {
        self.set(path, unknown_value(reason));
    }

    /// Records where the subtree at `path` came from.
    pub fn evidence(&mut self, path: &[&str], evidence: Evidence) {
        self.evidence
            .insert(format_path(path.iter().copied()), evidence);
    }

    /// The value at `path`, if present (unknown markers are returned as they are).
    pub fn get(&self, path: &[&str]) -> Option<&Value> {
        path.iter().try_fold(&self.facts, |v, seg| v.get(*seg))
    }
}

/// `{"$unknown": reason}`.
pub fn unknown_value(reason: impl fmt::Display) -> Value {
    let mut m = Map::new();
    m.insert(UNKNOWN_KEY.to_owned(), Value::String(reason.to_string()));
    Value::Object(m)
}

/// The reason if `v` is an unknown marker.
pub fn unknown_reason(v: &Value) -> Option<&str> {
    v.as_object()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.get(UNKNOWN_KEY))
        .and_then(Value::as_str)
}

fn object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// Every component's facts, plus when and where they were gathered.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    pub components: BTreeMap<String, ComponentFacts>,
}

/// What a concrete path resolved to.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<'a> {
    Found(&'a Value),
    /// The path does not exist: a definite fact ("not set").
    Absent,
    /// Some prefix of the path is unknown; the reason says why.
    Unknown(String),
}

/// One concrete match of a (possibly wildcard) rule path.
#[derive(Debug, Clone, PartialEq)]
pub struct Match<'a> {
    /// The concrete segments, component first.
    pub segments: Vec<String>,
    /// The concrete segments up to and including the element the last `*` matched.
    pub element: Vec<String>,
    pub value: Lookup<'a>,
}

impl Match<'_> {
    /// The concrete path as a string, e.g. `kubelet.featureGates.Foo.stage`.
    pub fn path(&self) -> String {
        format_path(self.segments.iter().map(String::as_str))
    }
}

/// A parsed rule path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactPath {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Unquoted: may join with following plain segments to match a dotted key.
    Plain(String),
    /// Bracket-quoted: exactly this key.
    Quoted(String),
    Wildcard,
}

/// A rule path that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fact path {path:?}: {reason}")]
pub struct PathError {
    pub path: String,
    pub reason: &'static str,
}

impl FactPath {
    /// Parses `a.b["c.d"].*.e`.
    pub fn parse(s: &str) -> Result<Self, PathError> {
        let err = |reason| PathError {
            path: s.to_owned(),
            reason,
        };
        let mut segments = Vec::new();
        let mut rest = s;
        let mut expect_segment = true;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('[') {
                let r = r
                    .strip_prefix('"')
                    .ok_or_else(|| err("expected '\"' after '['"))?;
                let end = r.find("\"]").ok_or_else(|| err("unterminated [\"...\"]"))?;
                segments.push(Segment::Quoted(r[..end].to_owned()));
                rest = &r[end + 2..];
                expect_segment = false;
            } else if let Some(r) = rest.strip_prefix('.') {
                if expect_segment {
                    return Err(err("empty segment"));
                }
                rest = r;
                expect_segment = true;
            } else {
                if !expect_segment {
                    return Err(err("expected '.' or '[' between segments"));
                }
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                let seg = &rest[..end];
                segments.push(if seg == "*" {
                    Segment::Wildcard
                } else {
                    Segment::Plain(seg.to_owned())
                });
                rest = &rest[end..];
                expect_segment = false;
            }
        }
        if segments.is_empty() || expect_segment && !s.is_empty() && s.ends_with('.') {
            return Err(err("empty path or trailing '.'"));
        }
        if !matches!(segments.first(), Some(Segment::Plain(_))) {
            return Err(err("must start with a component name"));
        }
        Ok(Self { segments })
    }

    /// The component this path points into (its first segment).
    pub fn component(&self) -> &str {
        match self.segments.first() {
            Some(Segment::Plain(c)) => c,
            _ => "",
        }
    }

    pub fn has_wildcard(&self) -> bool {
        self.segments.contains(&Segment::Wildcard)
    }
}

impl fmt::Display for FactPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.segments.iter().enumerate() {
            match s {
                Segment::Quoted(q) => write!(f, "[\"{q}\"]")?,
                Segment::Plain(p) if i == 0 => f.write_str(p)?,
                Segment::Plain(p) => write!(f, ".{p}")?,
                Segment::Wildcard => f.write_str(".*")?,
            }
        }
        Ok(())
    }
}

/// Formats concrete segments as a path, bracket-quoting any that contain `.`, `[` or `]`.
pub fn format_path<'a>(segments: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, s) in segments.into_iter().enumerate() {
        if s.contains(['.', '[', ']', '"']) || s == "*" {
            out.push_str("[\"");
            out.push_str(s);
            out.push_str("\"]");
        } else {
            if i > 0 {
                out.push('.');
            }
            out.push_str(s);
        }
    }
    out
}

impl Facts {
    pub fn insert(&mut self, c: ComponentFacts) {
        self.components.insert(c.name.clone(), c);
    }

    pub fn component(&self, name: &str) -> Option<&ComponentFacts> {
        self.components.get(name)
    }

    /// Resolves a rule path into every concrete match. A path without wildcards yields exactly
    /// one match; a wildcard over an absent or empty collection yields none.
    pub fn resolve<'a>(&'a self, path: &FactPath) -> Vec<Match<'a>> {
        let comp_name = path.component();
        let Some(comp) = self.components.get(comp_name) else {
            return vec![Match {
                segments: vec![comp_name.to_owned()],
                element: vec![comp_name.to_owned()],
                value: Lookup::Unknown(format!("component {comp_name:?} was not inspected")),
            }];
        };
        let mut out = Vec::new();
        let start = vec![comp_name.to_owned()];
        walk(
            &comp.facts,
            &path.segments[1..],
            start.clone(),
            start,
            &mut out,
        );
        out
    }

    /// The value at a concrete path string, for profile detection and tests.
    pub fn get(&self, path: &str) -> Lookup<'_> {
        match FactPath::parse(path) {
            Ok(p) => self
                .resolve(&p)
                .into_iter()
                .next()
                .map(|m| m.value)
                .unwrap_or(Lookup::Absent),
            Err(e) => Lookup::Unknown(e.to_string()),
        }
    }

    /// The evidence recorded for the longest prefix of `segments` (component first).
    pub fn evidence_for(&self, segments: &[String]) -> Option<&Evidence> {
        let (comp, rest) = segments.split_first()?;
        let c = self.components.get(comp)?;
        (0..=rest.len()).rev().find_map(|n| {
            c.evidence
                .get(&format_path(rest[..n].iter().map(String::as_str)))
        })
    }
}

fn walk<'a>(
    v: &'a Value,
    rest: &[Segment],
    at: Vec<String>,
    element: Vec<String>,
    out: &mut Vec<Match<'a>>,
) {
    if let Some(reason) = unknown_reason(v) {
        out.push(Match {
            segments: concrete(at, rest),
            element,
            value: Lookup::Unknown(reason.to_owned()),
        });
        return;
    }
    let Some(first) = rest.first() else {
        out.push(Match {
            segments: at,
            element,
            value: Lookup::Found(v),
        });
        return;
    };
    match first {
        Segment::Wildcard => {
            let children: Vec<(String, &Value)> = match v {
                Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
                Value::Array(a) => a
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i.to_string(), v))
                    .collect(),
                _ => Vec::new(),
            };
            for (k, child) in children {
                let mut next = at.clone();
                next.push(k);
                walk(child, &rest[1..], next.clone(), next, out);
            }
        }
        Segment::Quoted(key) => match child(v, key) {
            Some(c) => {
                let mut next = at;
                next.push(key.clone());
                walk(c, &rest[1..], next, element, out);
            }
            None => out.push(Match {
                segments: concrete(at, rest),
                element,
                value: Lookup::Absent,
            }),
        },
        Segment::Plain(_) => {
            // Longest run of plain segments that names a key wins ("net.ipv4.ip_forward").
            let run = rest
                .iter()
                .take_while(|s| matches!(s, Segment::Plain(_)))
                .count();
            for n in (1..=run).rev() {
                let key = rest[..n]
                    .iter()
                    .map(|s| match s {
                        Segment::Plain(p) => p.as_str(),
                        _ => "",
                    })
                    .collect::<Vec<_>>()
                    .join(".");
                if let Some(c) = child(v, &key) {
                    let mut next = at;
                    next.push(key);
                    walk(c, &rest[n..], next, element, out);
                    return;
                }
            }
            out.push(Match {
                segments: concrete(at, rest),
                element,
                value: Lookup::Absent,
            });
        }
    }
}

fn child<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m.get(key),
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    }
}

fn concrete(mut at: Vec<String>, rest: &[Segment]) -> Vec<String> {
    at.extend(rest.iter().map(|s| match s {
        Segment::Plain(p) | Segment::Quoted(p) => p.clone(),
        Segment::Wildcard => "*".to_owned(),
    }));
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts() -> Facts {
        let mut f = Facts::default();
        let mut k = ComponentFacts::new("kubelet");
        k.set(&["config", "readOnlyPort"], 10255);
        k.set(&["featureGates", "Alpha1", "stage"], "alpha");
        k.set(&["featureGates", "Alpha1", "enabled"], true);
        k.set(&["featureGates", "Ga1", "stage"], "ga");
        k.unknown(
            &["files", "kubeconfig"],
            "/etc/kubernetes/kubelet.conf: permission denied",
        );
        k.evidence(
            &["config"],
            Evidence::file("/var/lib/kubelet/config.yaml").with_pid(7),
        );
        f.insert(k);
        let mut s = ComponentFacts::new("sysctl");
        s.set(&["runtime", "net.ipv4.ip_forward"], "1");
        f.insert(s);
        f
    }

    #[test]
    fn plain_lookup() {
        assert_eq!(
            f_get("kubelet.config.readOnlyPort"),
            Lookup::Found(&json!(10255))
        );
        assert_eq!(f_get("kubelet.config.address"), Lookup::Absent);
    }

    fn f_get(p: &str) -> Lookup<'static> {
        let f: &'static Facts = Box::leak(Box::new(facts()));
        f.get(p)
    }

    #[test]
    fn dotted_keys_match_longest_first_and_quoted() {
        assert_eq!(
            f_get("sysctl.runtime.net.ipv4.ip_forward"),
            Lookup::Found(&json!("1"))
        );
        assert_eq!(
            f_get("sysctl.runtime[\"net.ipv4.ip_forward\"]"),
            Lookup::Found(&json!("1"))
        );
        assert_eq!(
            f_get("sysctl.runtime.net.ipv4.tcp_syncookies"),
            Lookup::Absent
        );
    }

    #[test]
    fn unknown_propagates_to_every_path_below() {
        assert!(
            matches!(f_get("kubelet.files.kubeconfig.mode"), Lookup::Unknown(r) if r.contains("permission denied"))
        );
        assert!(
            matches!(f_get("containerd.version"), Lookup::Unknown(r) if r.contains("not inspected"))
        );
    }

    #[test]
    fn wildcard_expands_each_element() {
        let f = facts();
        let p = FactPath::parse("kubelet.featureGates.*.stage").unwrap();
        let m = f.resolve(&p);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].path(), "kubelet.featureGates.Alpha1.stage");
        assert_eq!(m[0].element, vec!["kubelet", "featureGates", "Alpha1"]);
    }

    #[test]
    fn evidence_uses_the_longest_prefix() {
        let f = facts();
        let segs: Vec<String> = ["kubelet", "config", "readOnlyPort"]
            .map(String::from)
            .into();
        assert_eq!(f.evidence_for(&segs).unwrap().pid, Some(7));
    }

    #[test]
    fn bad_paths_are_rejected() {
        for p in ["", ".a", "a..b", "a.", "a[\"b", "[\"a\"].b", "a[b]", "*.x"] {
            assert!(FactPath::parse(p).is_err(), "{p}");
        }
        let p = FactPath::parse("sysctl.runtime[\"net.ipv4.ip_forward\"]").unwrap();
        assert_eq!(p.to_string(), "sysctl.runtime[\"net.ipv4.ip_forward\"]");
        assert_eq!(
            format_path(["sysctl", "runtime", "a.b"]),
            "sysctl.runtime[\"a.b\"]"
        );
    }
}
