//! The embedded profiles and their auto-detection.
//!
//! `generic` is a kubeadm-style worker held to the CIS worker-node section and what Kubernetes
//! itself requires. `aks-ubuntu` and `aks-azurelinux` layer the AKS support policy (the `aks/`
//! files) and their distro's specifics over it. Profiles are compiled into the binary, so the
//! agent works with no file on disk.

use crate::facts::{Facts, Lookup};

use super::BaselineError;

/// One embedded baseline document.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedFile {
    pub name: &'static str,
    pub text: &'static str,
}

macro_rules! embed {
    ($($name:literal),* $(,)?) => {
        &[$(EmbeddedFile { name: $name, text: include_str!(concat!("profiles/", $name)) }),*]
    };
}

const GENERIC: &[EmbeddedFile] = embed!(
    "generic/kubelet.yaml",
    "generic/containerd.yaml",
    "generic/cni.yaml",
    "generic/kube-proxy.yaml",
    "generic/sysctl.yaml",
    "generic/reboot.yaml",
    "generic/os.yaml",
    "generic/patches.yaml",
    "generic/files.yaml",
    "generic/health.yaml",
);

const AKS: &[EmbeddedFile] = embed!(
    "aks/kubelet.yaml",
    "aks/containerd.yaml",
    "aks/cni.yaml",
    "aks/kube-proxy.yaml",
    "aks/sysctl.yaml",
    "aks/reboot.yaml",
    "aks/os.yaml",
    "aks/patches.yaml",
    "aks/files.yaml",
    "aks/egress.yaml",
    "aks/health.yaml",
);

const AKS_UBUNTU: &[EmbeddedFile] = embed!("aks-ubuntu.yaml");
const AKS_AZURELINUX: &[EmbeddedFile] = embed!("aks-azurelinux.yaml");

/// The profile names. `none` has no rules: only the user's files apply.
pub const NAMES: &[&str] = &["generic", "aks-ubuntu", "aks-azurelinux", "none"];

/// The documents of a profile, bottom layer first.
pub fn files(name: &str) -> Result<Vec<EmbeddedFile>, BaselineError> {
    let layers: &[&[EmbeddedFile]] = match name {
        "none" => &[],
        "generic" => &[GENERIC],
        "aks-ubuntu" => &[GENERIC, AKS, AKS_UBUNTU],
        "aks-azurelinux" => &[GENERIC, AKS, AKS_AZURELINUX],
        _ => {
            return Err(BaselineError::UnknownProfile {
                name: name.to_owned(),
                known: NAMES.join(", "),
            });
        }
    };
    Ok(layers.iter().flat_map(|l| l.iter().copied()).collect())
}

/// Which profile fits a host, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub profile: &'static str,
    pub reason: String,
}

/// Picks the profile from the `os` facts: an AKS node (AKS markers present) gets the AKS
/// profile of its distro; anything else is `generic`.
pub fn detect(facts: &Facts) -> Detection {
    let id = match facts.get("os.release.ID") {
        Lookup::Found(v) => v.as_str().unwrap_or_default().to_ascii_lowercase(),
        _ => String::new(),
    };
    let markers: Vec<String> = match facts.get("os.aks.markers") {
        Lookup::Found(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|m| m.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let shown = if id.is_empty() {
        "unknown".to_owned()
    } else {
        id.clone()
    };
    if markers.is_empty() {
        return Detection {
            profile: "generic",
            reason: format!("os {shown}, no AKS markers found"),
        };
    }
    let profile = match id.as_str() {
        "ubuntu" => "aks-ubuntu",
        "azurelinux" | "mariner" => "aks-azurelinux",
        _ => {
            return Detection {
                profile: "generic",
                reason: format!(
                    "AKS markers ({}) on os {shown}, which has no AKS profile",
                    markers.join(", ")
                ),
            };
        }
    };
    Detection {
        profile,
        reason: format!("os {shown} with AKS markers: {}", markers.join(", ")),
    }
}
