//! Kubernetes Events about the node: what they say ([`NodeEvent`]), and the two brakes that keep
//! a flapping node from flooding the API server — folding repeats into the Event already sent
//! ([`DedupCache`], as the kubelet's event correlator does) and a token bucket
//! ([`TokenBucket`], `events_per_minute`).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::ledger::{Change, Transition};

use super::desired::truncate;

/// Event `reason`s nodedrift emits (CamelCase, as Kubernetes reasons are).
pub mod reasons {
    pub const FINDING_OPENED: &str = "FindingOpened";
    pub const FINDING_RESOLVED: &str = "FindingResolved";
    pub const REBOOT_REQUIRED: &str = "RebootRequired";
    pub const SNAPSHOT_READY: &str = "SnapshotReady";
    pub const SNAPSHOT_FAILED: &str = "SnapshotFailed";
    pub const REBOOT_CLEARED: &str = "RebootCleared";
    pub const BASELINE_REJECTED: &str = "BaselineRejected";
}

/// Tokens of the Event rate limit that finding Events leave for the node's own (reboot,
/// snapshot, baseline): a burst of findings opening at once cannot crowd out a reboot notice.
pub(super) const NODE_EVENT_RESERVE: f64 = 2.0;

/// Whether an Event with `reason` is about the node as a whole (and may use the reserve).
pub(super) fn is_node_event(reason: &str) -> bool {
    !matches!(reason, reasons::FINDING_OPENED | reasons::FINDING_RESOLVED)
}

/// `events.k8s.io` caps an Event's note at 1 KiB; core/v1 messages are kept to the same size so
/// they read the same in either API.
const MAX_EVENT_MESSAGE: usize = 1024;
/// How many pending-reboot packages an Event names.
const MAX_PACKAGES_NAMED: usize = 10;

/// Event `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One Event about the node, before it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeEvent {
    pub event_type: EventType,
    /// Short CamelCase reason, e.g. [`reasons::FINDING_OPENED`].
    pub reason: String,
    /// Human-readable; cut to 1 KiB.
    pub message: String,
    /// When it happened (`firstTimestamp`, or `lastTimestamp` of a repeat).
    pub time: SystemTime,
}

impl NodeEvent {
    pub fn new(event_type: EventType, reason: &str, message: String, time: SystemTime) -> Self {
        Self {
            event_type,
            reason: reason.to_owned(),
            message: truncate(message, MAX_EVENT_MESSAGE),
            time,
        }
    }

    /// A finding opened (Warning) or resolved (Normal), from the ledger's transition.
    pub fn from_transition(t: &Transition) -> Self {
        let f = &t.finding;
        match t.change {
            Change::Opened => Self::new(
                EventType::Warning,
                reasons::FINDING_OPENED,
                format!(
                    "{} {} at {}: expected {}, found {} (policy {})",
                    f.severity, f.rule, f.path, f.expected, f.actual, f.policy
                ),
                unix(t.opened_at),
            ),
            Change::Resolved => Self::new(
                EventType::Normal,
                reasons::FINDING_RESOLVED,
                format!(
                    "{} {} at {} is resolved after {} failing evaluation(s)",
                    f.severity, f.rule, f.path, t.occurrences
                ),
                unix(t.resolved_at.unwrap_or(t.opened_at)),
            ),
        }
    }

    /// A reboot became pending.
    pub fn reboot_required(reasons: &[String], packages: &[String], time: SystemTime) -> Self {
        let mut m = String::from("a reboot is required");
        if !reasons.is_empty() {
            m.push_str(&format!(": {}", reasons.join(", ")));
        }
        if !packages.is_empty() {
            let named: Vec<&str> = packages
                .iter()
                .take(MAX_PACKAGES_NAMED)
                .map(String::as_str)
                .collect();
            m.push_str(&format!("; packages: {}", named.join(", ")));
            let more = packages.len().saturating_sub(MAX_PACKAGES_NAMED);
            if more > 0 {
                m.push_str(&format!(" (+{more} more)"));
            }
        }
        Self::new(EventType::Warning, reasons::REBOOT_REQUIRED, m, time)
    }

    /// The pending reboot happened (or its cause went away).
    pub fn reboot_cleared(time: SystemTime) -> Self {
        Self::new(
            EventType::Normal,
            reasons::REBOOT_CLEARED,
            "no reboot is pending any more".to_owned(),
            time,
        )
    }

    /// A snapshot request was answered: `ok` when the bundle was written (`detail` names it and
    /// its SHA-256), else why not.
    pub fn snapshot(id: &str, ok: bool, detail: &str, time: SystemTime) -> Self {
        if ok {
            Self::new(
                EventType::Normal,
                reasons::SNAPSHOT_READY,
                format!("snapshot {id} ready: {detail}"),
                time,
            )
        } else {
            Self::new(
                EventType::Warning,
                reasons::SNAPSHOT_FAILED,
                format!("snapshot {id} not taken: {detail}"),
                time,
            )
        }
    }

    /// A new baseline was refused; nodedrift keeps evaluating against the previous one.
    pub fn baseline_rejected(detail: &str, time: SystemTime) -> Self {
        Self::new(
            EventType::Warning,
            reasons::BASELINE_REJECTED,
            format!("baseline rejected, the previous one stays in force: {detail}"),
            time,
        )
    }
}

fn unix(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// A token bucket: `per_minute` tokens of burst, refilled continuously at `per_minute` a
/// minute. Zero disables Events altogether.
#[derive(Debug)]
pub(super) struct TokenBucket {
    capacity: f64,
    tokens: f64,
    per_second: f64,
    refilled: Instant,
}

impl TokenBucket {
    pub fn new(per_minute: u32, now: Instant) -> Self {
        let capacity = f64::from(per_minute);
        Self {
            capacity,
            tokens: capacity,
            per_second: capacity / 60.0,
            refilled: now,
        }
    }

    /// Takes a token if `reserve` tokens are still there afterwards: what ordinary Events may
    /// not use, kept for those that must get through.
    pub fn try_take_leaving(&mut self, reserve: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.refilled = now;
        if self.tokens >= 1.0 + reserve {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// An Event already created, that repeats within the window are folded into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SentEvent {
    /// `metadata.name` of the Event object.
    pub name: String,
    pub count: i32,
    /// When it was created or last updated (the window counts from here).
    pub touched: Instant,
}

/// Recent Events by (reason, message), bounded; older than the window means "send a new one".
#[derive(Debug)]
pub(super) struct DedupCache {
    window: Duration,
    entries: HashMap<(String, String), SentEvent>,
}

/// At most this many distinct recent Events are remembered; the oldest is forgotten first
/// (the kubelet's correlator keeps 4096 across all objects; one node needs far fewer).
const MAX_DEDUP_ENTRIES: usize = 256;

impl DedupCache {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            entries: HashMap::new(),
        }
    }

    /// The Event a repeat of `ev` should update, if one was sent within the window.
    pub fn recent(&self, ev: &NodeEvent, now: Instant) -> Option<&SentEvent> {
        self.entries
            .get(&(ev.reason.clone(), ev.message.clone()))
            .filter(|s| now.saturating_duration_since(s.touched) < self.window)
    }

    /// Remembers that `ev` is now the Event `name` with `count`.
    pub fn record(&mut self, ev: &NodeEvent, name: String, count: i32, now: Instant) {
        self.entries
            .retain(|_, s| now.saturating_duration_since(s.touched) < self.window);
        if self.entries.len() >= MAX_DEDUP_ENTRIES
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, s)| s.touched)
                .map(|(k, _)| k.clone())
        {
            self.entries.remove(&oldest);
        }
        self.entries.insert(
            (ev.reason.clone(), ev.message.clone()),
            SentEvent {
                name,
                count,
                touched: now,
            },
        );
    }

    /// Forgets `ev` (its Event is gone from the API server).
    pub fn forget(&mut self, ev: &NodeEvent) {
        self.entries
            .remove(&(ev.reason.clone(), ev.message.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(msg: &str) -> NodeEvent {
        NodeEvent::new(
            EventType::Warning,
            "R",
            msg.to_owned(),
            SystemTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn finding_events_leave_the_reserve_to_node_events() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, t0);
        let findings = (0..20)
            .filter(|_| b.try_take_leaving(NODE_EVENT_RESERVE, t0))
            .count();
        assert_eq!(findings, 8);
        assert!(
            b.try_take_leaving(0.0, t0),
            "a reboot Event still gets through"
        );
        assert!(b.try_take_leaving(0.0, t0));
        assert!(!b.try_take_leaving(0.0, t0));
        assert!(is_node_event(reasons::REBOOT_CLEARED));
        assert!(is_node_event(reasons::SNAPSHOT_READY));
        assert!(!is_node_event(reasons::FINDING_OPENED));
    }

    #[test]
    fn bucket_allows_a_burst_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(6, t0);
        assert_eq!((0..8).filter(|_| b.try_take_leaving(0.0, t0)).count(), 6);
        // 6 a minute is one per 10 s.
        assert!(!b.try_take_leaving(0.0, t0 + Duration::from_secs(9)));
        assert!(b.try_take_leaving(0.0, t0 + Duration::from_secs(11)));
        // Never above the burst, however long it rested.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(
            (0..10).filter(|_| b.try_take_leaving(0.0, later)).count(),
            6
        );
        assert!(!TokenBucket::new(0, t0).try_take_leaving(0.0, later));
    }

    #[test]
    fn repeats_fold_within_the_window_only() {
        let t0 = Instant::now();
        let mut c = DedupCache::new(Duration::from_secs(600));
        assert!(c.recent(&ev("a"), t0).is_none());
        c.record(&ev("a"), "n.1".into(), 1, t0);
        assert_eq!(
            c.recent(&ev("a"), t0 + Duration::from_secs(599))
                .map(|s| s.count),
            Some(1)
        );
        assert!(c.recent(&ev("b"), t0).is_none());
        assert!(c.recent(&ev("a"), t0 + Duration::from_secs(600)).is_none());
        c.forget(&ev("a"));
        assert!(c.recent(&ev("a"), t0).is_none());
    }

    #[test]
    fn cache_is_bounded() {
        let t0 = Instant::now();
        let mut c = DedupCache::new(Duration::from_secs(600));
        for i in 0..(MAX_DEDUP_ENTRIES + 10) {
            c.record(
                &ev(&i.to_string()),
                format!("n.{i}"),
                1,
                t0 + Duration::from_millis(i as u64),
            );
        }
        assert_eq!(c.entries.len(), MAX_DEDUP_ENTRIES);
        assert!(c.recent(&ev("0"), t0).is_none());
    }

    #[test]
    fn transition_messages() {
        use crate::facts::Evidence;
        use crate::finding::{Finding, Status};
        use crate::ledger::FindingKey;
        let finding = Finding {
            rule: "sysctl.ip-forward".into(),
            title: "t".into(),
            component: "sysctl".into(),
            path: "sysctl[\"net.ipv4.ip_forward\"]".into(),
            status: Status::Fail,
            severity: crate::baseline::Severity::High,
            expected: serde_json::json!({"equals": 1}),
            actual: serde_json::json!(0),
            reason: None,
            evidence: Evidence::default(),
            policy: "aks/out-of-band-changes".into(),
            remediation: None,
            detail: None,
        };
        let mut t = Transition {
            change: Change::Opened,
            key: FindingKey::of(&finding),
            finding,
            opened_at: 1_772_000_000,
            resolved_at: None,
            occurrences: 1,
            generation: 1,
        };
        let opened = NodeEvent::from_transition(&t);
        assert_eq!(opened.event_type, EventType::Warning);
        assert_eq!(
            opened.message,
            "high sysctl.ip-forward at sysctl[\"net.ipv4.ip_forward\"]: expected {\"equals\":1}, found 0 (policy aks/out-of-band-changes)"
        );
        assert_eq!(opened.time, unix(1_772_000_000));
        t.change = Change::Resolved;
        t.resolved_at = Some(1_772_000_600);
        t.occurrences = 4;
        let resolved = NodeEvent::from_transition(&t);
        assert_eq!(
            (resolved.event_type, resolved.reason.as_str()),
            (EventType::Normal, reasons::FINDING_RESOLVED)
        );
        assert_eq!(resolved.time, unix(1_772_000_600));
    }
}
