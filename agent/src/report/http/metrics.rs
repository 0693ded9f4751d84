//! Counters of the endpoint sink, kept in atomics so the delivery task updates them without
//! locks and the metrics exporter reads them whenever it is scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why an attempt to deliver a batch failed: a bounded set, fit for a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// No response within the timeout (connect, TLS handshake, headers or body).
    Timeout,
    /// Connection refused, reset or closed before a complete response.
    Connection,
    /// TLS handshake failed: untrusted or mismatched server certificate, client cert refused.
    Tls,
    /// HTTP 408.
    RequestTimeout,
    /// HTTP 429.
    RateLimited,
    /// HTTP 5xx.
    ServerError,
    /// HTTP 413 (the batch is split; one event still too large is dead-lettered).
    TooLarge,
    /// Any other non-2xx status (other 4xx, 3xx: redirects are not followed): dead-lettered.
    Rejected,
    /// The token file is missing, empty or unreadable: nothing was sent.
    TokenUnavailable,
}

impl FailureReason {
    pub const ALL: [FailureReason; 9] = [
        FailureReason::Timeout,
        FailureReason::Connection,
        FailureReason::Tls,
        FailureReason::RequestTimeout,
        FailureReason::RateLimited,
        FailureReason::ServerError,
        FailureReason::TooLarge,
        FailureReason::Rejected,
        FailureReason::TokenUnavailable,
    ];

    /// The label value, e.g. for `nodedrift_endpoint_failures_total{reason="timeout"}`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Connection => "connection",
            FailureReason::Tls => "tls",
            FailureReason::RequestTimeout => "request_timeout",
            FailureReason::RateLimited => "rate_limited",
            FailureReason::ServerError => "server_error",
            FailureReason::TooLarge => "too_large",
            FailureReason::Rejected => "rejected",
            FailureReason::TokenUnavailable => "token_unavailable",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Live counters of one sink; share it (`Arc`) between the sink's task and the exporter.
#[derive(Debug, Default)]
pub struct SinkMetrics {
    delivered_events: AtomicU64,
    delivered_batches: AtomicU64,
    dead_lettered_events: AtomicU64,
    retries: AtomicU64,
    splits: AtomicU64,
    outbox_errors: AtomicU64,
    failures: [AtomicU64; FailureReason::ALL.len()],
    last_success_unix_ms: AtomicU64,
}

/// A consistent-enough copy of the counters (each read atomically, not all at one instant).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SinkCounters {
    /// Events acknowledged by the endpoint (2xx) and removed from the outbox.
    pub delivered_events: u64,
    /// Requests answered with 2xx.
    pub delivered_batches: u64,
    /// Events the endpoint refused for good (non-retryable status, or 413 for one event).
    pub dead_lettered_events: u64,
    /// Times the sink backed off and tried again.
    pub retries: u64,
    /// Batches split in halves after a 413.
    pub splits: u64,
    /// Failed peek/ack/dead-letter calls on the outbox.
    pub outbox_errors: u64,
    /// Failed attempts by reason, in the order of [`FailureReason::ALL`].
    pub failures: Vec<(FailureReason, u64)>,
    /// Wall-clock time of the last 2xx, milliseconds since the Unix epoch; `None` before the first.
    pub last_success_unix_ms: Option<u64>,
}

impl SinkMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn snapshot(&self) -> SinkCounters {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let last = load(&self.last_success_unix_ms);
        SinkCounters {
            delivered_events: load(&self.delivered_events),
            delivered_batches: load(&self.delivered_batches),
            dead_lettered_events: load(&self.dead_lettered_events),
            retries: load(&self.retries),
            splits: load(&self.splits),
            outbox_errors: load(&self.outbox_errors),
            failures: FailureReason::ALL
                .iter()
                .map(|r| (*r, load(&self.failures[r.index()])))
                .collect(),
            last_success_unix_ms: (last != 0).then_some(last),
        }
    }

    /// Failed attempts for one reason so far.
    pub fn failures(&self, reason: FailureReason) -> u64 {
        self.failures[reason.index()].load(Ordering::Relaxed)
    }

    pub(super) fn delivered(&self, events: usize) {
        self.delivered_events
            .fetch_add(events as u64, Ordering::Relaxed);
        self.delivered_batches.fetch_add(1, Ordering::Relaxed);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.last_success_unix_ms.store(now_ms, Ordering::Relaxed);
    }

    pub(super) fn dead_lettered(&self, events: usize) {
        self.dead_lettered_events
            .fetch_add(events as u64, Ordering::Relaxed);
    }

    pub(super) fn failed(&self, reason: FailureReason) {
        self.failures[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn split(&self) {
        self.splits.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn outbox_error(&self) {
        self.outbox_errors.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_index_their_own_slot() {
        for (i, r) in FailureReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let m = SinkMetrics::new();
        m.failed(FailureReason::Tls);
        m.failed(FailureReason::Tls);
        m.delivered(3);
        let s = m.snapshot();
        assert_eq!(m.failures(FailureReason::Tls), 2);
        assert_eq!(
            s.failures[FailureReason::Tls.index()],
            (FailureReason::Tls, 2)
        );
        assert_eq!(s.delivered_events, 3);
        assert!(s.last_success_unix_ms.is_some());
        assert_eq!(SinkMetrics::new().snapshot().last_success_unix_ms, None);
    }
}
