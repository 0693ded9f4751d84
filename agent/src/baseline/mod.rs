//! The baseline: declarative rules over facts, and the one evaluator that applies them.
//!
//! A baseline is built from layers: the embedded profile (its own layers: `generic`, then `aks`
//! and the distro layer for AKS profiles), then each user file in the order given. A layer may
//! add rules (a new `id` needs `path`, `expect`, `severity` and `policy`) or patch rules of the
//! layers below (any field but `id`; `disabled: true` removes the rule). Every document is
//! checked strictly: unknown keys, invalid paths, regexes, versions and modes are errors that
//! name the file, line, column and key.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde_json::Value;

use crate::facts::FactPath;

mod evaluate;
pub mod expect;
pub mod model;
pub mod policy;
pub mod profiles;

pub use evaluate::evaluate;
pub use expect::Check;
pub use model::{Expectation, RawDocument, RawEgressEndpoint, RawRule, RawWatchSet, Severity};

/// Largest baseline file accepted (far above any real one).
const MAX_BASELINE_BYTES: u64 = 4 << 20;

/// A baseline that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("{file}:{line}:{column}: {key}: {message}", key = key.as_deref().unwrap_or("document"))]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        key: Option<String>,
        message: String,
    },
    #[error("{file}: {message}")]
    Read { file: String, message: String },
    #[error("unknown profile {name:?} (known: {known})")]
    UnknownProfile { name: String, known: String },
}

/// One effective rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub title: String,
    /// The component the path points into (its first segment).
    pub component: String,
    pub path: FactPath,
    /// Conditions on the element the last `*` matched.
    pub when: Vec<(String, Value)>,
    pub expect: Expectation,
    pub check: Check,
    pub severity: Severity,
    pub policy: String,
    pub remediation: Option<String>,
    /// The layers that defined and patched this rule, in order.
    pub sources: Vec<String>,
    /// Severity rising with age, steps sorted by `after` (parsed).
    pub escalate: Option<(model::Escalation, Vec<(std::time::Duration, Severity)>)>,
}

impl Rule {
    /// The rule as a YAML-able raw rule (for `baseline show`).
    pub fn to_raw(&self) -> RawRule {
        RawRule {
            id: self.id.clone(),
            title: Some(self.title.clone()),
            path: Some(self.path.to_string()),
            when: (!self.when.is_empty()).then(|| self.when.iter().cloned().collect()),
            expect: Some(self.expect.clone()),
            severity: Some(self.severity),
            policy: Some(self.policy.clone()),
            remediation: self.remediation.clone(),
            disabled: None,
            escalate: self.escalate.as_ref().map(|(raw, _)| raw.clone()),
        }
    }
}

/// The effective rule set.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    /// Rules in definition order.
    pub rules: Vec<Rule>,
    /// Ids disabled by a layer.
    pub disabled: Vec<String>,
    /// Every layer applied, in order.
    pub layers: Vec<String>,
    /// Non-fatal remarks (a patch of an id no layer below defines).
    pub warnings: Vec<String>,
    /// File-integrity watch sets, in definition order (the last matching set governs a path).
    pub files: Vec<crate::files::WatchSet>,
    /// Required egress endpoints, in definition order.
    pub egress: Vec<EgressEndpoint>,
}

/// One endpoint the node must be able to reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressEndpoint {
    pub id: String,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// The TLS server name, when not `host`.
    pub sni: Option<String>,
    /// The layers that defined or patched it.
    pub sources: Vec<String>,
}

impl Baseline {
    /// Loads an embedded profile.
    pub fn profile(name: &str) -> Result<Self, BaselineError> {
        let mut b = Self::default();
        for file in profiles::files(name)? {
            b.apply_text(&format!("profile:{}", file.name), file.text)?;
        }
        Ok(b)
    }

    /// Layers a user file over this baseline.
    pub fn apply_file(&mut self, path: &Path) -> Result<(), BaselineError> {
        let text = read_user_file(path)?;
        self.apply_text(&path.to_string_lossy(), &text)
    }

    /// Layers one document, named `file` in errors.
    pub fn apply_text(&mut self, file: &str, text: &str) -> Result<(), BaselineError> {
        let doc: RawDocument = serde_norway::from_str(text).map_err(|e| {
            let at = crate::yamlpos::describe(text, &e);
            BaselineError::Invalid {
                file: file.to_owned(),
                line: at.line,
                column: at.column,
                key: at.key,
                message: at.message,
            }
        })?;
        let invalid = |rule: Option<&str>, key: &str, message: String| {
            let (line, column) = locate(text, rule, key);
            BaselineError::Invalid {
                file: file.to_owned(),
                line,
                column,
                key: Some(key.to_owned()),
                message,
            }
        };
        if doc.api_version != model::API_VERSION {
            return Err(invalid(
                None,
                "apiVersion",
                format!(
                    "{:?} is not supported; use {:?}",
                    doc.api_version,
                    model::API_VERSION
                ),
            ));
        }
        if doc.kind != model::KIND {
            return Err(invalid(
                None,
                "kind",
                format!("{:?} is not {:?}", doc.kind, model::KIND),
            ));
        }
        let mut seen = HashSet::new();
        for raw in &doc.rules {
            if raw.id.trim().is_empty() {
                return Err(invalid(None, "id", "a rule id must not be empty".into()));
            }
            if !seen.insert(raw.id.as_str()) {
                return Err(invalid(
                    Some(&raw.id),
                    "id",
                    format!("rule {:?} appears twice in this document", raw.id),
                ));
            }
        }
        for raw in &doc.rules {
            self.apply_rule(file, raw)
                .map_err(|(key, message)| invalid(Some(&raw.id), key, message))?;
        }
        let mut seen = HashSet::new();
        for raw in &doc.files {
            if raw.id.trim().is_empty() || !seen.insert(raw.id.as_str()) {
                return Err(invalid(
                    Some(&raw.id),
                    "id",
                    format!(
                        "watch set id {:?} is empty or appears twice in this document",
                        raw.id
                    ),
                ));
            }
            self.apply_watch_set(file, raw)
                .map_err(|(key, message)| invalid(Some(&raw.id), key, message))?;
        }
        let mut seen = HashSet::new();
        for raw in &doc.egress {
            if raw.id.trim().is_empty() || !seen.insert(raw.id.as_str()) {
                return Err(invalid(
                    Some(&raw.id),
                    "id",
                    format!(
                        "egress endpoint id {:?} is empty or appears twice in this document",
                        raw.id
                    ),
                ));
            }
            self.apply_egress(file, raw)
                .map_err(|(key, message)| invalid(Some(&raw.id), key, message))?;
        }
        self.layers.push(file.to_owned());
        Ok(())
    }

    fn apply_rule(&mut self, file: &str, raw: &RawRule) -> Result<(), (&'static str, String)> {
        let path = raw
            .path
            .as_deref()
            .map(|p| FactPath::parse(p).map_err(|e| ("path", e.to_string())))
            .transpose()?;
        let check = raw
            .expect
            .as_ref()
            .map(|e| Check::compile(e).map_err(|m| ("expect", m)))
            .transpose()?;
        let when = raw
            .when
            .as_ref()
            .map(|w| {
                w.iter()
                    .map(|(k, v)| {
                        FactPath::parse(&format!("x.{k}"))
                            .map_err(|e| ("when", e.to_string()))
                            .map(|_| (k.clone(), v.clone()))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        if let Some(p) = &raw.policy
            && p.trim().is_empty()
        {
            return Err((
                "policy",
                "must name the support-policy clause the rule protects".into(),
            ));
        }
        let escalate = raw
            .escalate
            .as_ref()
            .map(|e| {
                FactPath::parse(&e.since).map_err(|err| ("escalate", format!("since: {err}")))?;
                let mut steps = e
                    .steps
                    .iter()
                    .map(|st| {
                        crate::config::parse_duration(&st.after)
                            .map(|d| (d, st.severity))
                            .map_err(|m| ("escalate", format!("after: {m}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if steps.is_empty() {
                    return Err(("escalate", "needs at least one step".to_owned()));
                }
                steps.sort_by_key(|(d, _)| *d);
                Ok((e.clone(), steps))
            })
            .transpose()?;
        if let Some(i) = self.rules.iter().position(|r| r.id == raw.id) {
            if raw.disabled == Some(true) {
                self.rules.remove(i);
                self.disabled.push(raw.id.clone());
                return Ok(());
            }
            let r = &mut self.rules[i];
            if let Some(p) = path {
                r.component = p.component().to_owned();
                r.path = p;
            }
            if let (Some(e), Some(c)) = (&raw.expect, check) {
                r.expect = e.clone();
                r.check = c;
            }
            if let Some(w) = when {
                r.when = w;
            }
            if let Some(t) = &raw.title {
                r.title = t.clone();
            }
            if let Some(s) = raw.severity {
                r.severity = s;
            }
            if let Some(p) = &raw.policy {
                r.policy = p.clone();
            }
            if let Some(m) = &raw.remediation {
                r.remediation = Some(m.clone());
            }
            if let Some(e) = escalate {
                r.escalate = Some(e);
            }
            r.sources.push(file.to_owned());
            return Ok(());
        }
        if raw.disabled == Some(true) {
            if self.disabled.contains(&raw.id) {
                return Ok(());
            }
            self.warnings.push(format!(
                "{file}: rule {:?} is disabled but no layer below defines it",
                raw.id
            ));
            return Ok(());
        }
        let missing = |k: &'static str| (k, format!("a new rule needs `{k}`"));
        let path = path.ok_or_else(|| missing("path"))?;
        let (expect, check) = raw
            .expect
            .clone()
            .zip(check)
            .ok_or_else(|| missing("expect"))?;
        self.rules.push(Rule {
            id: raw.id.clone(),
            title: raw.title.clone().unwrap_or_else(|| raw.id.clone()),
            component: path.component().to_owned(),
            path,
            when: when.unwrap_or_default(),
            expect,
            check,
            severity: raw.severity.ok_or_else(|| missing("severity"))?,
            policy: raw.policy.clone().ok_or_else(|| missing("policy"))?,
            remediation: raw.remediation.clone(),
            sources: vec![file.to_owned()],
            escalate,
        });
        Ok(())
    }

    fn apply_watch_set(
        &mut self,
        file: &str,
        raw: &RawWatchSet,
    ) -> Result<(), (&'static str, String)> {
        use crate::files::{AttrSet, WatchSet, glob::Pattern};
        let patterns = raw
            .paths
            .as_ref()
            .map(|ps| {
                if ps.is_empty() {
                    return Err(("paths", "must list at least one pattern".to_owned()));
                }
                ps.iter()
                    .map(|p| Pattern::new(p).map_err(|e| ("paths", e.to_string())))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let attributes = raw.attributes.as_ref().map(|a| AttrSet::of(a));
        if let Some(p) = &raw.policy
            && p.trim().is_empty()
        {
            return Err((
                "policy",
                "must name the support-policy clause the set protects".into(),
            ));
        }
        if let Some(i) = self.files.iter().position(|s| s.id == raw.id) {
            if raw.disabled == Some(true) {
                self.files.remove(i);
                return Ok(());
            }
            let s = &mut self.files[i];
            if let Some(p) = patterns {
                s.patterns = p;
            }
            if let Some(p) = raw.preset {
                s.preset = p;
                if attributes.is_none() {
                    s.attributes = p.attributes();
                }
            }
            if let Some(a) = attributes {
                s.attributes = a;
            }
            if let Some(t) = &raw.title {
                s.title = t.clone();
            }
            if let Some(v) = raw.severity {
                s.severity = v;
            }
            if let Some(p) = &raw.policy {
                s.policy = p.clone();
            }
            if let Some(m) = &raw.remediation {
                s.remediation = Some(m.clone());
            }
            s.sources.push(file.to_owned());
            return Ok(());
        }
        if raw.disabled == Some(true) {
            self.warnings.push(format!(
                "{file}: watch set {:?} is disabled but no layer below defines it",
                raw.id
            ));
            return Ok(());
        }
        let missing = |k: &'static str| (k, format!("a new watch set needs `{k}`"));
        let patterns = patterns.ok_or_else(|| missing("paths"))?;
        let preset = raw.preset.unwrap_or(crate::files::Preset::Config);
        let ignore = preset == crate::files::Preset::Ignore;
        self.files.push(WatchSet {
            id: raw.id.clone(),
            title: raw.title.clone().unwrap_or_else(|| raw.id.clone()),
            patterns,
            preset,
            attributes: attributes.unwrap_or(preset.attributes()),
            severity: match raw.severity {
                Some(s) => s,
                None if ignore => Severity::Info,
                None => return Err(missing("severity")),
            },
            policy: match &raw.policy {
                Some(p) => p.clone(),
                None if ignore => String::new(),
                None => return Err(missing("policy")),
            },
            remediation: raw.remediation.clone(),
            sources: vec![file.to_owned()],
        });
        Ok(())
    }

    fn apply_egress(
        &mut self,
        file: &str,
        raw: &RawEgressEndpoint,
    ) -> Result<(), (&'static str, String)> {
        if let Some(h) = &raw.host
            && (h.trim().is_empty() || h.contains('*') || h.chars().any(char::is_whitespace))
        {
            return Err((
                "host",
                format!("{h:?} cannot be probed: give one DNS name or IP address, no wildcard"),
            ));
        }
        if raw.port == Some(0) {
            return Err(("port", "must be 1 to 65535".into()));
        }
        if let Some(i) = self.egress.iter().position(|e| e.id == raw.id) {
            if raw.disabled == Some(true) {
                self.egress.remove(i);
                return Ok(());
            }
            let e = &mut self.egress[i];
            if let Some(h) = &raw.host {
                e.host = h.clone();
            }
            if let Some(p) = raw.port {
                e.port = p;
            }
            if let Some(t) = raw.tls {
                e.tls = t;
            }
            if let Some(s) = &raw.sni {
                e.sni = Some(s.clone());
            }
            e.sources.push(file.to_owned());
            return Ok(());
        }
        if raw.disabled == Some(true) {
            self.warnings.push(format!(
                "{file}: egress endpoint {:?} is disabled but no layer below defines it",
                raw.id
            ));
            return Ok(());
        }
        let missing = |k: &'static str| (k, format!("a new egress endpoint needs `{k}`"));
        self.egress.push(EgressEndpoint {
            id: raw.id.clone(),
            host: raw.host.clone().ok_or_else(|| missing("host"))?,
            port: raw.port.ok_or_else(|| missing("port"))?,
            tls: raw.tls.unwrap_or(true),
            sni: raw.sni.clone(),
            sources: vec![file.to_owned()],
        });
        Ok(())
    }

    /// The file-integrity watch spec of this baseline.
    pub fn watch_spec(&self) -> crate::files::WatchSpec {
        crate::files::WatchSpec::new(self.files.clone())
    }

    /// Sysctl keys named by `sysctl.runtime.<key>` rule paths (the sysctl inspector reads them
    /// even when no file persists them).
    pub fn sysctl_keys(&self) -> std::collections::BTreeSet<String> {
        self.rules
            .iter()
            .filter(|r| !r.path.has_wildcard())
            .filter_map(|r| {
                let p = r.path.to_string();
                let rest = p.strip_prefix("sysctl.runtime")?;
                let key = rest
                    .strip_prefix("[\"")
                    .and_then(|k| k.strip_suffix("\"]"))
                    .or_else(|| rest.strip_prefix('.'))?;
                Some(key.to_owned())
            })
            .collect()
    }

    /// Rules grouped by policy clause id.
    pub fn by_policy(&self) -> BTreeMap<&str, Vec<&Rule>> {
        let mut m: BTreeMap<&str, Vec<&Rule>> = BTreeMap::new();
        for r in &self.rules {
            m.entry(r.policy.as_str()).or_default().push(r);
        }
        m
    }

    /// The effective rules as one YAML baseline document.
    pub fn to_document(&self, name: &str) -> RawDocument {
        RawDocument {
            api_version: model::API_VERSION.into(),
            kind: model::KIND.into(),
            metadata: model::RawMetadata {
                name: Some(name.to_owned()),
                description: Some(format!("effective rules from: {}", self.layers.join(", "))),
            },
            rules: self.rules.iter().map(Rule::to_raw).collect(),
            files: self
                .files
                .iter()
                .map(|s| RawWatchSet {
                    id: s.id.clone(),
                    title: Some(s.title.clone()),
                    paths: Some(s.patterns.iter().map(|p| p.as_str().to_owned()).collect()),
                    preset: Some(s.preset),
                    attributes: (s.attributes != s.preset.attributes())
                        .then(|| s.attributes.iter().collect()),
                    severity: Some(s.severity),
                    policy: (!s.policy.is_empty()).then(|| s.policy.clone()),
                    remediation: s.remediation.clone(),
                    disabled: None,
                })
                .collect(),
            egress: self
                .egress
                .iter()
                .map(|e| RawEgressEndpoint {
                    id: e.id.clone(),
                    host: Some(e.host.clone()),
                    port: Some(e.port),
                    tls: Some(e.tls),
                    sni: e.sni.clone(),
                    disabled: None,
                })
                .collect(),
        }
    }
}

/// Reads a user-supplied baseline file: a regular file, bounded in size.
fn read_user_file(path: &Path) -> Result<String, BaselineError> {
    crate::localfile::read_bounded(path, MAX_BASELINE_BYTES).map_err(|message| {
        BaselineError::Read {
            file: path.to_string_lossy().into_owned(),
            message,
        }
    })
}

/// Line and column (1-based) of `key:` inside the rule with `id` (or anywhere when `id` is
/// `None`). Serde does not keep spans for values it accepted, so semantic errors are placed by
/// finding the rule's `id:` line and then the key below it.
fn locate(text: &str, id: Option<&str>, key: &str) -> (usize, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let key_col = |l: &str| {
        let t = l.trim_start_matches([' ', '-']);
        t.strip_prefix(key)
            .filter(|r| r.trim_start().starts_with(':'))
            .map(|_| l.len() - t.len() + 1)
    };
    let start = match id {
        Some(id) => lines.iter().position(|l| {
            let t = l.trim_start_matches([' ', '-']);
            t.strip_prefix("id:")
                .map(|v| v.trim().trim_matches(['"', '\'']) == id)
                .unwrap_or(false)
        }),
        None => Some(0),
    };
    let Some(start) = start else { return (1, 1) };
    // Search from the rule's id line to the next rule (`- ` at the id's indentation or less).
    let indent = lines[start].len() - lines[start].trim_start_matches([' ', '-']).len();
    for (i, l) in lines.iter().enumerate().skip(start) {
        if i > start && id.is_some() {
            let t = l.trim_start();
            if t.starts_with("- ") && l.len() - t.len() < indent {
                break;
            }
        }
        if let Some(c) = key_col(l) {
            return (i + 1, c);
        }
    }
    (start + 1, 1)
}

#[cfg(test)]
mod tests;
