//! What systemd's journal says about a unit since boot: how often it started, and when it
//! last stopped or failed.
//!
//! systemd (pid 1) logs its job results for a unit with the field `UNIT=<unit>` (not
//! `_SYSTEMD_UNIT`, which marks the unit's own output): `Started <description>.`,
//! `<unit>: Scheduled restart job, restart counter is at N.`, `Stopped ...`,
//! `<unit>: Failed with result '...'.`, `<unit>: Main process exited, ...`. The messages'
//! wording has changed across systemd releases, so only their stable starts are matched.

use std::time::{Duration, Instant};

use crate::host::HostRoot;
use crate::journal::{Journal, Message};

/// Upper bound on the unit's entries read since boot.
const MAX_ENTRIES: usize = 4096;

/// The unit's history since boot, as far as the journal tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// `Started` lines.
    pub starts: u64,
    /// The highest `restart counter is at N`.
    pub restart_counter: Option<u64>,
    /// Unix seconds of the last stop or failure after the last start (or of the last one at
    /// all when none started since).
    pub down_since: Option<i64>,
    /// Unix seconds of the last start.
    pub last_start: Option<i64>,
}

impl History {
    /// Restarts since boot: starts after the first, or systemd's own counter when higher
    /// (it counts automatic restarts even when their `Started` line was rotated away).
    pub fn restarts(&self) -> Option<u64> {
        if self.starts == 0 && self.restart_counter.is_none() {
            return None;
        }
        Some(
            self.starts
                .saturating_sub(1)
                .max(self.restart_counter.unwrap_or(0)),
        )
    }
}

/// Reads the unit's entries since `boot` (Unix seconds). `Err` says why nothing can be known.
pub fn history(
    host: &HostRoot,
    unit: &str,
    boot: i64,
    budget: Duration,
) -> Result<History, String> {
    let journal = Journal::open(host);
    if journal.is_empty() {
        let why = journal
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(format!(
            "no readable journal file under /var/log/journal or /run/log/journal{why}"
        ));
    }
    let deadline = Instant::now() + budget;
    let expired = || Instant::now() >= deadline;
    let since = u64::try_from(boot).unwrap_or(0).saturating_mul(1_000_000);
    let mut h = History::default();
    let report = journal.tail(
        &format!("UNIT={unit}"),
        MAX_ENTRIES,
        since,
        &expired,
        &mut |e| {
            let Message::Text { text, .. } = &e.message else {
                return;
            };
            observe(&mut h, unit, text, e.unix_secs());
        },
    );
    if report.timed_out {
        return Err(format!(
            "reading the journal for {unit} took longer than {budget:?}"
        ));
    }
    Ok(h)
}

/// Folds one message (entries come oldest first).
pub fn observe(h: &mut History, unit: &str, text: &str, at: i64) {
    let text = text.trim();
    let rest = text
        .strip_prefix(unit)
        .and_then(|r| r.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or(text);
    if rest.starts_with("Started ") {
        h.starts += 1;
        h.last_start = Some(at);
        h.down_since = None;
    } else if let Some(n) = rest
        .split_once("restart counter is at ")
        .and_then(|(_, n)| n.trim_end_matches('.').trim().parse::<u64>().ok())
    {
        h.restart_counter = Some(h.restart_counter.map_or(n, |c| c.max(n)));
    } else if (rest.starts_with("Stopped ")
        || rest.starts_with("Failed with result")
        || rest.starts_with("Main process exited")
        || rest.starts_with("Failed to start ")
        || rest.starts_with("Deactivated successfully"))
        && h.down_since.is_none()
    {
        h.down_since = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_starts_and_the_restart_counter() {
        let mut h = History::default();
        let u = "kubelet.service";
        observe(&mut h, u, "Started kubelet.service - Kubelet.", 100);
        observe(
            &mut h,
            u,
            "kubelet.service: Main process exited, code=exited, status=1/FAILURE",
            200,
        );
        observe(
            &mut h,
            u,
            "kubelet.service: Failed with result 'exit-code'.",
            200,
        );
        observe(
            &mut h,
            u,
            "kubelet.service: Scheduled restart job, restart counter is at 1.",
            205,
        );
        observe(&mut h, u, "Started Kubelet.", 205);
        assert_eq!(h.restarts(), Some(1));
        assert_eq!(h.down_since, None);
        observe(&mut h, u, "Stopped kubelet.service - Kubelet.", 300);
        observe(&mut h, u, "kubelet.service: Deactivated successfully.", 301);
        assert_eq!(h.down_since, Some(300));
        assert_eq!(h.last_start, Some(205));
    }

    #[test]
    fn nothing_seen_is_not_zero_restarts() {
        assert_eq!(History::default().restarts(), None);
        let mut h = History::default();
        observe(
            &mut h,
            "containerd.service",
            "containerd.service: Scheduled restart job, restart counter is at 4.",
            10,
        );
        assert_eq!(h.restarts(), Some(4));
    }
}
