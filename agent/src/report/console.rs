//! The human-readable table: failures and unknowns in full, passes counted (or listed with
//! `--show-pass`), grouped by component, then one summary line.

use std::fmt::Write as _;

use serde_json::Value;

use crate::check::CheckReport;
use crate::finding::{Finding, Status};

/// Rendering choices.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub color: bool,
    pub show_pass: bool,
}

struct Paint(bool);

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    fn status(&self, s: Status) -> String {
        match s {
            Status::Fail => self.wrap("1;31", "FAIL   "),
            Status::Unknown => self.wrap("1;33", "UNKNOWN"),
            Status::Pass => self.wrap("32", "PASS   "),
        }
    }
    fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }
}

/// Renders the table.
pub fn render(report: &CheckReport, opts: &Options) -> String {
    let p = Paint(opts.color);
    let mut out = String::new();
    let mut components: Vec<&str> = report
        .findings
        .iter()
        .map(|f| f.component.as_str())
        .collect();
    components.dedup();
    for comp in components {
        let of: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| f.component == comp)
            .collect();
        let passed = of.iter().filter(|f| f.status == Status::Pass).count();
        let _ = writeln!(out, "{}", p.bold(comp));
        for f in of
            .iter()
            .filter(|f| opts.show_pass || f.status != Status::Pass)
        {
            line(&mut out, &p, f);
        }
        if !opts.show_pass && passed > 0 {
            let _ = writeln!(out, "  {}", p.dim(&format!("{passed} passed")));
        }
    }
    if let Some(r) = report.reboot.as_ref().filter(|r| r.noteworthy()) {
        let _ = writeln!(out, "{}", p.bold("reboot state"));
        for l in r.lines() {
            let _ = writeln!(out, "  {}", l.trim_start());
        }
    }
    let s = &report.summary;
    let sev: Vec<String> = s
        .fail_by_severity
        .iter()
        .rev()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    let fail = if sev.is_empty() {
        format!("{} fail", s.fail)
    } else {
        format!("{} fail ({})", s.fail, sev.join(", "))
    };
    let _ = writeln!(
        out,
        "\n{}: {} pass, {fail}, {} unknown — profile {} ({}: {}), {} ms",
        p.bold("summary"),
        s.pass,
        s.unknown,
        report.profile.name,
        report.profile.selected_by,
        report.profile.reason,
        report.duration.as_millis()
    );
    for w in &report.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

fn line(out: &mut String, p: &Paint, f: &Finding) {
    let _ = writeln!(
        out,
        "  {} {:<8} {}  {}",
        p.status(f.status),
        f.severity,
        f.rule,
        p.dim(&f.title)
    );
    let detail = match f.status {
        Status::Unknown => format!(
            "{}: unknown — {}",
            f.path,
            f.reason.as_deref().unwrap_or("could not be verified")
        ),
        _ => format!(
            "{} = {}   expected {}",
            f.path,
            show(&f.actual),
            expectation(&f.expected)
        ),
    };
    let _ = writeln!(out, "          {detail}");
    let mut ev = Vec::new();
    if let Some(file) = &f.evidence.file {
        ev.push(file.clone());
    }
    if let Some(pid) = f.evidence.pid {
        ev.push(format!("pid {pid}"));
    }
    if let Some(src) = &f.evidence.source {
        ev.push(format!("from {src}"));
    }
    if !ev.is_empty() {
        let _ = writeln!(
            out,
            "          {}",
            p.dim(&format!("evidence: {}", ev.join(", ")))
        );
    }
    if f.status == Status::Fail
        && let Some(r) = &f.remediation
    {
        let _ = writeln!(out, "          {}", p.dim(&format!("fix: {r}")));
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "(absent)".into(),
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn expectation(e: &Value) -> String {
    match e.as_object().and_then(|m| m.iter().next()) {
        Some((k, v)) => format!("{k} {}", show(v)),
        None => e.to_string(),
    }
}
