//! CloudEvents 1.0 (structured JSON mode) as nodedrift emits them to the central endpoint.
//!
//! Every event id is *stable*: derived from what happened (node, event type, subject, and the
//! ledger's generation of the finding), never from when it was sent, so a receiver de-duplicates
//! the redeliveries of at-least-once delivery by `id` (and `source`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `type` values, reverse-DNS as the CloudEvents spec recommends.
pub mod types {
    pub const FINDING_OPENED: &str = "dev.nodedrift.finding.opened";
    pub const FINDING_RESOLVED: &str = "dev.nodedrift.finding.resolved";
    pub const NODE_SUMMARY: &str = "dev.nodedrift.node.summary";
    pub const REBOOT_REQUIRED: &str = "dev.nodedrift.reboot.required";
    pub const REBOOT_CLEARED: &str = "dev.nodedrift.reboot.cleared";
    pub const REBOOT_UPDATED: &str = "dev.nodedrift.reboot.updated";
    pub const SNAPSHOT_READY: &str = "dev.nodedrift.snapshot.ready";
    pub const BASELINE_REJECTED: &str = "dev.nodedrift.baseline.rejected";
}

/// The media type of a batch (CloudEvents JSON batch format).
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// One CloudEvent, structured mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    pub id: String,
    /// `nodedrift://<node name>` (a URI-reference, as required).
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// What the event is about: the rule and fact path, or the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// RFC 3339.
    pub time: String,
    pub datacontenttype: String,
    pub data: Value,
}

impl CloudEvent {
    /// A new event; `identity` is everything that makes this occurrence unique (it is hashed
    /// into the id together with source, type and subject).
    pub fn new(
        node: &str,
        kind: &str,
        subject: Option<String>,
        time: String,
        identity: &str,
        data: Value,
    ) -> Self {
        let source = format!("nodedrift://{node}");
        let id = stable_id(&[&source, kind, subject.as_deref().unwrap_or(""), identity]);
        Self {
            specversion: "1.0".into(),
            id,
            source,
            kind: kind.into(),
            subject,
            time,
            datacontenttype: "application/json".into(),
            data,
        }
    }
}

/// A stable 128-bit id (hex) of the parts: FNV-1a over the parts with separators, twice with
/// different offsets. Not cryptographic: ids only need to be stable and collision-free among
/// one node's events.
pub fn stable_id(parts: &[&str]) -> String {
    fn fnv(seed: u64, parts: &[&str]) -> u64 {
        let mut h = seed;
        for p in parts {
            for b in p.bytes().chain(std::iter::once(0xff)) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        h
    }
    format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325, parts),
        fnv(0x6c62_272e_07bb_0142, parts)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = CloudEvent::new(
            "n1",
            types::FINDING_OPENED,
            Some("r/p".into()),
            "t1".into(),
            "gen-1",
            json!({}),
        );
        let b = CloudEvent::new(
            "n1",
            types::FINDING_OPENED,
            Some("r/p".into()),
            "t2".into(),
            "gen-1",
            json!({"x": 1}),
        );
        assert_eq!(a.id, b.id, "time and data do not change the id");
        let c = CloudEvent::new(
            "n1",
            types::FINDING_OPENED,
            Some("r/p".into()),
            "t1".into(),
            "gen-2",
            json!({}),
        );
        assert_ne!(a.id, c.id);
        let d = CloudEvent::new(
            "n2",
            types::FINDING_OPENED,
            Some("r/p".into()),
            "t1".into(),
            "gen-1",
            json!({}),
        );
        assert_ne!(a.id, d.id);
        assert_eq!(a.id.len(), 32);
    }

    #[test]
    fn serializes_as_structured_mode() {
        let e = CloudEvent::new(
            "n1",
            types::NODE_SUMMARY,
            None,
            "2026-01-01T00:00:00Z".into(),
            "1",
            json!({"a": 1}),
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], types::NODE_SUMMARY);
        assert_eq!(v["source"], "nodedrift://n1");
        assert!(v.get("subject").is_none());
    }
}
