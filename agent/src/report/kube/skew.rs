//! The version-skew check: the kubelet against the API server it reports to, per the
//! Kubernetes version skew policy.
//!
//! The kubelet must not be newer than kube-apiserver, and may be up to three minor versions
//! older (two for kubelets before 1.25). Both versions come from the API server: the kubelet's
//! from the Node's `status.nodeInfo.kubeletVersion` (what the running kubelet reports of
//! itself), the API server's from `GET /version`. Nothing on the host records the kubelet's
//! version without running the binary, so the check runs only in `nodedrift run` with the
//! Kubernetes sink on.

use serde_json::json;

use crate::baseline::Severity;
use crate::facts::Evidence;
use crate::finding::{Finding, Status};

/// The rule id of the check.
pub const VERSION_SKEW_RULE: &str = "kubelet.version-skew-supported";
/// The clause it protects.
pub const POLICY: &str = "aks/kubernetes-version";
const TITLE: &str =
    "The kubelet's version is within the skew Kubernetes supports against the API server";
const COMPONENT: &str = "kubelet";
const PATH: &str = "node.status.nodeInfo.kubeletVersion";
const REMEDIATION: &str = "Upgrade the node pool to the control plane's version through the platform \
     (`az aks nodepool upgrade --kubernetes-version <version>`); a kubelet newer than the API server \
     was installed by hand and must be replaced by reimaging the node.";

/// The versions the check compares, as last read from the API server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versions {
    /// `status.nodeInfo.kubeletVersion`, e.g. `v1.32.4`.
    pub kubelet: Option<String>,
    /// `gitVersion` of `GET /version`, e.g. `v1.32.4`.
    pub api_server: Option<String>,
}

/// Major and minor of a Kubernetes version string (`v1.32.4`, `1.32`, `v1.30.2-gke.1`,
/// `v1.29.0+k3s1`); `None` for anything else.
pub fn major_minor(v: &str) -> Option<(u64, u64)> {
    let v = v.trim();
    let v = v.strip_prefix('v').unwrap_or(v);
    let mut parts = v.splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor_part = parts.next()?;
    let digits: &str = minor_part
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or("");
    let minor = digits.parse().ok()?;
    Some((major, minor))
}

/// How many minor versions older than the API server a kubelet of minor version `minor` may be.
pub fn allowed_lag(kubelet_minor: u64) -> u64 {
    if kubelet_minor >= 25 { 3 } else { 2 }
}

/// The finding for `versions`; none until both versions are known.
pub fn version_skew_findings(versions: &Versions) -> Vec<Finding> {
    let (Some(kubelet), Some(server)) = (&versions.kubelet, &versions.api_server) else {
        return Vec::new();
    };
    let mut f = Finding {
        rule: VERSION_SKEW_RULE.to_owned(),
        title: TITLE.to_owned(),
        component: COMPONENT.to_owned(),
        path: PATH.to_owned(),
        status: Status::Pass,
        severity: Severity::High,
        expected: json!({
            "apiServer": server,
            "skew": "not newer than the API server; at most 3 minor versions older (2 before 1.25)",
        }),
        actual: json!(kubelet),
        reason: None,
        evidence: Evidence::default().with_source("api"),
        policy: POLICY.to_owned(),
        remediation: None,
        detail: None,
    };
    let (Some((km, kn)), Some((sm, sn))) = (major_minor(kubelet), major_minor(server)) else {
        f.status = Status::Unknown;
        f.reason = Some(format!(
            "cannot read a Kubernetes version from the kubelet's {kubelet:?} or the API server's {server:?}"
        ));
        return vec![f];
    };
    let problem = if km != sm {
        Some(format!(
            "the kubelet ({kubelet}) and the API server ({server}) have different major versions"
        ))
    } else if kn > sn {
        Some(format!(
            "the kubelet ({kubelet}) is newer than the API server ({server}): a kubelet must not be newer than kube-apiserver"
        ))
    } else if sn - kn > allowed_lag(kn) {
        Some(format!(
            "the kubelet ({kubelet}) is {} minor versions older than the API server ({server}); at most {} are supported",
            sn - kn,
            allowed_lag(kn)
        ))
    } else {
        None
    };
    f.detail = Some(json!({"minorVersionsBehind": i128::from(sn) - i128::from(kn)}));
    if let Some(p) = problem {
        f.status = Status::Fail;
        f.reason = Some(p);
        f.remediation = Some(REMEDIATION.to_owned());
    }
    vec![f]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kubelet: &str, server: &str) -> Finding {
        let v = Versions {
            kubelet: Some(kubelet.into()),
            api_server: Some(server.into()),
        };
        let mut f = version_skew_findings(&v);
        assert_eq!(f.len(), 1);
        f.remove(0)
    }

    #[test]
    fn versions_parse() {
        assert_eq!(major_minor("v1.32.4"), Some((1, 32)));
        assert_eq!(major_minor("1.29"), Some((1, 29)));
        assert_eq!(major_minor("v1.30.2-gke.1"), Some((1, 30)));
        assert_eq!(major_minor("v1.29.0+k3s1"), Some((1, 29)));
        assert_eq!(major_minor("v1.28+"), Some((1, 28)));
        assert_eq!(major_minor(""), None);
        assert_eq!(major_minor("v1"), None);
        assert_eq!(major_minor("vX.Y"), None);
        assert_eq!(major_minor("v1.x"), None);
        assert_eq!(major_minor("v99999999999999999999999.1"), None);
    }

    #[test]
    fn skew_policy() {
        assert_eq!(check("v1.32.4", "v1.32.4").status, Status::Pass);
        assert_eq!(check("v1.29.9", "v1.32.4").status, Status::Pass);
        let old = check("v1.28.9", "v1.32.4");
        assert_eq!(old.status, Status::Fail);
        assert!(
            old.reason
                .as_deref()
                .unwrap()
                .contains("4 minor versions older")
        );
        assert_eq!(old.detail.unwrap()["minorVersionsBehind"], 4);
        // Before 1.25 the window was two minor versions.
        assert_eq!(check("v1.22.0", "v1.24.1").status, Status::Pass);
        assert_eq!(check("v1.22.0", "v1.25.1").status, Status::Fail);
        let newer = check("v1.33.0", "v1.32.4");
        assert_eq!(newer.status, Status::Fail);
        assert!(
            newer
                .reason
                .as_deref()
                .unwrap()
                .contains("newer than the API server")
        );
        assert!(newer.remediation.is_some());
        assert_eq!(check("v2.0.0", "v1.32.4").status, Status::Fail);
    }

    #[test]
    fn unreadable_versions_are_unknown_and_missing_ones_give_nothing() {
        let f = check("garbage", "v1.32.4");
        assert_eq!(f.status, Status::Unknown);
        assert!(f.reason.unwrap().contains("\"garbage\""));
        assert!(version_skew_findings(&Versions::default()).is_empty());
        assert!(
            version_skew_findings(&Versions {
                kubelet: Some("v1.32.0".into()),
                api_server: None
            })
            .is_empty()
        );
    }
}
