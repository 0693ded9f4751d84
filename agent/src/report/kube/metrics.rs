//! Counters of the Kubernetes sink, kept in atomics so the sink's task updates them without
//! locks and the metrics exporter reads them whenever it is scraped.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a write to the Node changes: a bounded set, fit for a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchKind {
    /// The merge patch of `metadata.annotations` (`nodedrift.dev/*`).
    Annotations,
    /// The strategic merge patch of `status.conditions` (`NodeDrift`, `RebootRequired`).
    Conditions,
}

impl PatchKind {
    pub const ALL: [PatchKind; 2] = [PatchKind::Annotations, PatchKind::Conditions];

    /// The label value, e.g. for `nodedrift_kube_patches_total{kind="annotations"}`.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchKind::Annotations => "annotations",
            PatchKind::Conditions => "conditions",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for PatchKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Live counters of the sink; share it (`Arc`) between the sink's task and the exporter.
#[derive(Debug, Default)]
pub struct KubeMetrics {
    patches_ok: [AtomicU64; PatchKind::ALL.len()],
    patches_failed: [AtomicU64; PatchKind::ALL.len()],
    node_reads_ok: AtomicU64,
    node_reads_failed: AtomicU64,
    events_sent: AtomicU64,
    events_deduplicated: AtomicU64,
    events_rate_limited: AtomicU64,
    events_failed: AtomicU64,
    events_dropped: AtomicU64,
}

/// A consistent-enough copy of the counters (each read atomically, not all at one instant).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KubeCounters {
    /// Successful patches by kind, in the order of [`PatchKind::ALL`].
    pub patches_ok: Vec<(PatchKind, u64)>,
    /// Failed patch attempts by kind (each retry counts), in the order of [`PatchKind::ALL`].
    pub patches_failed: Vec<(PatchKind, u64)>,
    /// `GET` of the Node answered with the Node.
    pub node_reads_ok: u64,
    /// `GET` of the Node that failed (unreachable, 403, 404, ...).
    pub node_reads_failed: u64,
    /// Events created (`POST`).
    pub events_sent: u64,
    /// Repeats of a recent Event folded into it (`PATCH` of its count and lastTimestamp).
    pub events_deduplicated: u64,
    /// Events dropped by the rate limit (`events_per_minute`).
    pub events_rate_limited: u64,
    /// Failed attempts to create or update an Event (each retry counts).
    pub events_failed: u64,
    /// Events given up: refused by the API server for good, or pushed out of the full retry
    /// queue while the API server was unavailable.
    pub events_dropped: u64,
}

impl KubeMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn snapshot(&self) -> KubeCounters {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let by_kind = |a: &[AtomicU64; 2]| {
            PatchKind::ALL
                .iter()
                .map(|k| (*k, load(&a[k.index()])))
                .collect()
        };
        KubeCounters {
            patches_ok: by_kind(&self.patches_ok),
            patches_failed: by_kind(&self.patches_failed),
            node_reads_ok: load(&self.node_reads_ok),
            node_reads_failed: load(&self.node_reads_failed),
            events_sent: load(&self.events_sent),
            events_deduplicated: load(&self.events_deduplicated),
            events_rate_limited: load(&self.events_rate_limited),
            events_failed: load(&self.events_failed),
            events_dropped: load(&self.events_dropped),
        }
    }

    /// Successful patches of one kind so far.
    pub fn patches_ok(&self, kind: PatchKind) -> u64 {
        self.patches_ok[kind.index()].load(Ordering::Relaxed)
    }

    /// Failed patch attempts of one kind so far.
    pub fn patches_failed(&self, kind: PatchKind) -> u64 {
        self.patches_failed[kind.index()].load(Ordering::Relaxed)
    }

    pub(super) fn patch_ok(&self, kind: PatchKind) {
        self.patches_ok[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn patch_failed(&self, kind: PatchKind) {
        self.patches_failed[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn node_read(&self, ok: bool) {
        let c = if ok {
            &self.node_reads_ok
        } else {
            &self.node_reads_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn event_sent(&self) {
        self.events_sent.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn event_deduplicated(&self) {
        self.events_deduplicated.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn event_rate_limited(&self) {
        self.events_rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn event_failed(&self) {
        self.events_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn event_dropped(&self) {
        self.events_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_index_their_own_slot() {
        for (i, k) in PatchKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
        let m = KubeMetrics::new();
        m.patch_ok(PatchKind::Conditions);
        m.patch_failed(PatchKind::Annotations);
        m.patch_failed(PatchKind::Annotations);
        m.event_rate_limited();
        let s = m.snapshot();
        assert_eq!(
            s.patches_ok,
            vec![(PatchKind::Annotations, 0), (PatchKind::Conditions, 1)]
        );
        assert_eq!(m.patches_failed(PatchKind::Annotations), 2);
        assert_eq!(s.events_rate_limited, 1);
    }
}
