//! The reboot facts in one place for the commands and sinks that report them: `check` (table
//! and JSON), `reboot-required`, and the daemon's ledger, Node and CloudEvents.

use serde::Serialize;
use serde_json::Value;

use crate::facts::{Facts, Lookup};

use super::{REBOOT, RESTART};

/// A node's reboot state, from the reboot inspector's facts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RebootSummary {
    /// `None`: cannot tell (`unknown` says why).
    pub required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown: Option<String>,
    /// RFC 3339 start of the earliest reboot reason, from its evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_since: Option<String>,
    #[serde(skip)]
    pub pending_since_unix: Option<i64>,
    /// Every reason with its evidence (`action`: `reboot`, `restart` or `wait`).
    pub reasons: Vec<Value>,
    /// Packages (or core components) the reboot reasons name, each once.
    pub packages: Vec<String>,
    /// Processes run deleted libraries: restart `services`.
    pub restart_required: Option<bool>,
    pub services: Vec<String>,
    /// The running boot, when the `os` facts are there.
    #[serde(skip)]
    pub boot_id: Option<String>,
}

impl RebootSummary {
    /// `None` when the reboot component was not inspected.
    pub fn of(facts: &Facts) -> Option<Self> {
        facts.component(super::NAME)?;
        let string = |path: &str| match facts.get(path) {
            Lookup::Found(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let strings = |path: &str| -> Vec<String> {
            match facts.get(path) {
                Lookup::Found(Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let (required, unknown) = match facts.get("reboot.required") {
            Lookup::Found(Value::Bool(b)) => (Some(*b), None),
            Lookup::Unknown(r) => (None, Some(r)),
            _ => (None, Some("no reboot.required fact".to_owned())),
        };
        let reasons = match facts.get("reboot.reasons") {
            Lookup::Found(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        let mut packages: Vec<String> = Vec::new();
        for r in reasons.iter().filter(|r| r["action"] == REBOOT) {
            for p in r["packages"].as_array().into_iter().flatten() {
                if let Some(p) = p.as_str()
                    && !packages.iter().any(|q| q == p)
                {
                    packages.push(p.to_owned());
                }
            }
        }
        Some(Self {
            required,
            unknown,
            pending_since: string("reboot.pendingSince"),
            pending_since_unix: match facts.get("reboot.pendingSinceUnix") {
                Lookup::Found(v) => v.as_i64(),
                _ => None,
            },
            restart_required: match facts.get("reboot.restartRequired") {
                Lookup::Found(Value::Bool(b)) => Some(*b),
                _ => None,
            },
            services: strings("reboot.deletedLibraries.services"),
            boot_id: string("os.bootId"),
            reasons,
            packages,
        })
    }

    /// The names of the reasons that require a reboot, in the inspector's order.
    pub fn reboot_reasons(&self) -> Vec<String> {
        self.names(REBOOT)
    }

    /// The reasons that require a reboot, with their evidence.
    pub fn reboot_details(&self) -> Vec<Value> {
        self.reasons
            .iter()
            .filter(|r| r["action"] == REBOOT)
            .cloned()
            .collect()
    }

    fn names(&self, action: &str) -> Vec<String> {
        self.reasons
            .iter()
            .filter(|r| r["action"] == action)
            .filter_map(|r| r["reason"].as_str().map(str::to_owned))
            .collect()
    }

    /// Lines for a terminal: the verdict, then one line per reason.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![match (self.required, &self.pending_since) {
            (Some(true), Some(since)) => format!("reboot required since {since}"),
            (Some(true), None) => "reboot required".to_owned(),
            (Some(false), _) => "no reboot required".to_owned(),
            (None, _) => format!(
                "cannot tell whether a reboot is required: {}",
                self.unknown.as_deref().unwrap_or("unknown")
            ),
        }];
        out.extend(self.reasons.iter().map(reason_line));
        if self.restart_required == Some(true) && !self.services.is_empty() {
            out.push(format!("restart: {}", self.services.join(", ")));
        }
        out
    }

    /// Whether anything is worth showing beyond "no reboot required".
    pub fn noteworthy(&self) -> bool {
        self.required != Some(false) || !self.reasons.is_empty()
    }
}

/// One reason as a line: its kind, what the evidence says, and what to do when that is not a
/// reboot.
fn reason_line(r: &Value) -> String {
    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
    let list = |k: &str| -> Vec<&str> {
        r.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let mut line = s("reason").to_owned();
    if !s("running").is_empty() {
        line.push_str(&format!(
            ": running {}, newest installed {}",
            s("running"),
            s("newestInstalled")
        ));
    }
    for key in ["packages", "services", "patches"] {
        let names = list(key);
        if !names.is_empty() {
            line.push_str(&format!(": {}", names.join(", ")));
        }
    }
    if !s("file").is_empty() {
        line.push_str(&format!(" ({})", s("file")));
    } else if let Some(f) = r["files"][0]["file"].as_str() {
        line.push_str(&format!(" ({f}…)"));
    }
    if !s("since").is_empty() {
        line.push_str(&format!(" since {}", s("since")));
    }
    match s("action") {
        RESTART => line.push_str(" — restart these services; no reboot needed"),
        super::WAIT => line.push_str(" — live patch still switching tasks over"),
        _ => {}
    }
    format!("  {line}")
}
