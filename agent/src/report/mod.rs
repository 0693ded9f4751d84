//! Where results go: the console table and JSON of `nodedrift check`, and for `nodedrift run`
//! the CloudEvents model and the node summary the sinks share.

pub mod cloudevents;
pub mod console;
pub mod http;
pub mod kube;
pub mod metrics;
pub mod summary;

use crate::check::CheckReport;

/// Output formats of `nodedrift check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable, grouped by component (coloured on a terminal).
    Table,
    /// The `CheckReport` JSON document (schema in the README).
    Json,
}

/// Renders a report in `format`.
pub fn render(report: &CheckReport, format: Format, opts: &console::Options) -> String {
    match format {
        Format::Table => console::render(report, opts),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(report).unwrap_or_else(|e| {
                // Serializing plain data cannot fail; say so loudly if it ever does.
                format!("{{\"error\": \"serializing the report: {e}\"}}")
            });
            s.push('\n');
            s
        }
    }
}
