//! The system-label check: labels the kubelet registered under reserved prefixes must still be
//! on the Node with the registered value.
//!
//! Which labels are "system" labels: those whose key prefix (the part before `/`) is one of
//! [`RESERVED_LABEL_DOMAINS`] or a subdomain of one — `kubernetes.io/` and `k8s.io/` with all of
//! their subdomains (`node.kubernetes.io/`, `node-role.kubernetes.io/`,
//! `topology.kubernetes.io/`, `kubelet.kubernetes.io/`, `beta.kubernetes.io/`), and the
//! platform's `kubernetes.azure.com/` (AKS registers its node pool metadata there). Labels the
//! kubelet sets on its own (`kubernetes.io/hostname`, `kubernetes.io/os`, ...) are not in
//! `--node-labels`; they are checked only when the caller adds them to the registered map.
//! Custom labels (`team=payments`, unprefixed `agentpool=`) are the owner's to change and
//! are not checked.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::baseline::Severity;
use crate::facts::Evidence;
use crate::finding::{Finding, Status};

/// The rule id of the check.
pub const SYSTEM_LABELS_RULE: &str = "node.system-labels-unchanged";
/// Label key domains reserved for Kubernetes and the platform (subdomains included).
pub const RESERVED_LABEL_DOMAINS: [&str; 3] = ["kubernetes.io", "k8s.io", "kubernetes.azure.com"];
const TITLE: &str = "System labels registered by the kubelet are unchanged";
const COMPONENT: &str = "node";
pub(super) const POLICY: &str = "aks/system-metadata";
const REMEDIATION: &str = "Restore the label to the value the kubelet registered (`kubectl label node <node> \
     <key>=<value> --overwrite`) or reimage the node through the platform; change node pool \
     labels through the platform's API, never on the Node object.";

/// Whether `key` is under a reserved domain.
pub fn is_system_label(key: &str) -> bool {
    let Some((domain, _)) = key.split_once('/') else {
        return false;
    };
    RESERVED_LABEL_DOMAINS
        .iter()
        .any(|d| domain == *d || domain.strip_suffix(d).is_some_and(|sub| sub.ends_with('.')))
}

/// Findings comparing the Node's labels with the system labels in `registered` (the kubelet's
/// `--node-labels`, parsed): a fail for each registered system label missing from the Node or
/// holding another value, or one pass when all match (also when none is registered).
pub fn system_label_findings(
    node_labels: &BTreeMap<String, String>,
    registered: &BTreeMap<String, String>,
) -> Vec<Finding> {
    let evidence = Evidence::default().with_source("api");
    let system: BTreeMap<&String, &String> = registered
        .iter()
        .filter(|(k, _)| is_system_label(k))
        .collect();
    let failing: Vec<Finding> = system
        .iter()
        .filter(|(k, v)| node_labels.get(k.as_str()) != Some(v))
        .map(|(k, v)| {
            let actual = node_labels.get(k.as_str());
            Finding {
                rule: SYSTEM_LABELS_RULE.to_owned(),
                title: TITLE.to_owned(),
                component: COMPONENT.to_owned(),
                path: format!("node.labels[{}]", Value::from(k.as_str())),
                status: Status::Fail,
                severity: Severity::Medium,
                expected: json!({ "equals": v }),
                actual: actual.map_or(Value::Null, |a| Value::from(a.as_str())),
                reason: Some(
                    if actual.is_some() {
                        "the Node's label differs from the value the kubelet registered with --node-labels"
                    } else {
                        "the label the kubelet registered with --node-labels is missing from the Node"
                    }
                    .to_owned(),
                ),
                evidence: evidence.clone(),
                policy: POLICY.to_owned(),
                remediation: Some(REMEDIATION.to_owned()),
                detail: None,
            }
        })
        .collect();
    if !failing.is_empty() {
        return failing;
    }
    vec![Finding {
        rule: SYSTEM_LABELS_RULE.to_owned(),
        title: TITLE.to_owned(),
        component: COMPONENT.to_owned(),
        path: "node.labels".to_owned(),
        status: Status::Pass,
        severity: Severity::Medium,
        expected: json!({ "equals": system }),
        actual: json!(system),
        reason: system.is_empty().then(|| {
            "the kubelet registered no label under a reserved prefix with --node-labels".to_owned()
        }),
        evidence,
        policy: POLICY.to_owned(),
        remediation: None,
        detail: None,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reserved_domains_and_their_subdomains() {
        for k in [
            "kubernetes.azure.com/agentpool",
            "node.kubernetes.io/exclude-from-external-load-balancers",
            "node-role.kubernetes.io/agent",
            "kubernetes.io/role",
            "topology.kubernetes.io/zone",
            "x.k8s.io/y",
        ] {
            assert!(is_system_label(k), "{k}");
        }
        for k in [
            "agentpool",
            "team/x",
            "example.com/kubernetes.io",
            "evilkubernetes.io/x",
            "kubernetes.io.evil.com/x",
        ] {
            assert!(!is_system_label(k), "{k}");
        }
    }

    #[test]
    fn changed_and_missing_system_labels_fail_custom_ones_are_ignored() {
        let registered = map(&[
            ("kubernetes.azure.com/mode", "user"),
            ("kubernetes.azure.com/role", "agent"),
            ("node-role.kubernetes.io/agent", ""),
            ("agentpool", "nodepool1"),
        ]);
        let node = map(&[
            ("kubernetes.azure.com/mode", "system"),
            ("node-role.kubernetes.io/agent", ""),
            ("agentpool", "renamed"),
        ]);
        let f = system_label_findings(&node, &registered);
        insta::assert_json_snapshot!(f);
        assert!(f.iter().all(|f| f.status == Status::Fail));
    }

    #[test]
    fn all_matching_gives_one_pass() {
        let registered = map(&[("kubernetes.azure.com/role", "agent"), ("team", "a")]);
        let node = map(&[
            ("kubernetes.azure.com/role", "agent"),
            ("kubernetes.io/os", "linux"),
        ]);
        let f = system_label_findings(&node, &registered);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].status, Status::Pass);
        assert_eq!(f[0].path, "node.labels");
        assert_eq!(f[0].actual, json!({"kubernetes.azure.com/role": "agent"}));
        assert_eq!(f[0].reason, None);

        let none = system_label_findings(&node, &BTreeMap::new());
        assert_eq!(none[0].status, Status::Pass);
        assert!(none[0].reason.is_some());
    }
}
