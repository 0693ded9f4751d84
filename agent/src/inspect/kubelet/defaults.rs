//! The defaults the kubelet fills in for the configuration fields nodedrift models.
//!
//! Two layers, as in the kubelet itself (the first is the data file `defaults_v1beta1.yaml`):
//! * `SetDefaults_KubeletConfiguration` (pkg/kubelet/apis/config/v1beta1/defaults.go, with the
//!   Linux values of the eviction defaults): applied to every configuration, from a file or not;
//! * `applyLegacyDefaults` (cmd/kubelet/app/options/options.go): applied only when the kubelet
//!   runs WITHOUT `--config`, restoring the insecure flag-era defaults (anonymous auth on,
//!   no webhook authentication, `AlwaysAllow`, read-only port 10255).
//!
//! Fields whose default is Go's zero value (`readOnlyPort: 0`, `rotateCertificates: false`,
//! `protectKernelDefaults: false`, ...) are listed too, so that a rule about them sees the
//! effective value with `default` as its source rather than an absent field.

use serde_json::{Map, Value, json};

/// Top-level fields that are map- or list-valued and defaulted only when unset: a file that
/// sets them replaces the default as a whole instead of merging into it.
pub(crate) const REPLACE_WHOLE: &[&str] = &[
    "evictionHard",
    "enforceNodeAllocatable",
    "featureGates",
    "kubeReserved",
    "systemReserved",
    "clusterDNS",
    "tlsCipherSuites",
    "registerWithTaints",
];

/// Non-pointer fields of the v1beta1 type that `SetDefaults_KubeletConfiguration` fills when
/// they hold Go's zero value: a file saying `streamingConnectionIdleTimeout: 0s` (kubeadm writes
/// such zeros) gets the default, exactly like a file that omits the field. Pointer fields
/// (booleans, `readOnlyPort`-like optional numbers) keep an explicit zero.
pub(crate) const ZERO_MEANS_UNSET: &[&str] = &[
    "syncFrequency",
    "fileCheckFrequency",
    "httpCheckFrequency",
    "address",
    "port",
    "authentication.webhook.cacheTTL",
    "authorization.mode",
    "authorization.webhook.cacheAuthorizedTTL",
    "authorization.webhook.cacheUnauthorizedTTL",
    "registryBurst",
    "eventBurst",
    "healthzBindAddress",
    "streamingConnectionIdleTimeout",
    "nodeStatusReportFrequency",
    "nodeStatusUpdateFrequency",
    "nodeLeaseDurationSeconds",
    "imageMinimumGCAge",
    "volumeStatsAggPeriod",
    "cgroupDriver",
    "cpuManagerPolicy",
    "cpuManagerReconcilePeriod",
    "memoryManagerPolicy",
    "topologyManagerPolicy",
    "topologyManagerScope",
    "runtimeRequestTimeout",
    "hairpinMode",
    "maxPods",
    "maxOpenFiles",
    "kubeAPIBurst",
    "evictionPressureTransitionPeriod",
    "containerLogMaxSize",
    "configMapAndSecretChangeDetectionStrategy",
    "volumePluginDir",
    "containerRuntimeEndpoint",
    "contentType",
];

/// The defaults document, compiled in.
const V1BETA1: &str = include_str!("defaults_v1beta1.yaml");

/// v1beta1 defaults for the modeled fields (parsed once per process).
pub(crate) fn v1beta1() -> Map<String, Value> {
    static DEFAULTS: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    DEFAULTS
        .get_or_init(|| {
            super::support::parse_document(V1BETA1).unwrap_or_else(|e| {
                tracing::error!(error = %e, "the embedded kubelet defaults do not parse; defaults are not applied");
                Map::new()
            })
        })
        .clone()
}

/// The fields `applyLegacyDefaults` overrides when no `--config` is given.
pub(crate) fn legacy() -> Vec<(&'static [&'static str], Value)> {
    vec![
        (&["authentication", "anonymous", "enabled"], json!(true)),
        (&["authentication", "webhook", "enabled"], json!(false)),
        (&["authorization", "mode"], json!("AlwaysAllow")),
        (&["readOnlyPort"], json!(10255)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_parse() {
        let d = v1beta1();
        assert_eq!(d.get("readOnlyPort"), Some(&json!(0)));
        assert_eq!(
            d.get("streamingConnectionIdleTimeout"),
            Some(&json!("4h0m0s"))
        );
        assert_eq!(d["authorization"]["mode"], json!("Webhook"));
        for f in REPLACE_WHOLE {
            assert!(!f.contains('.'), "{f}");
        }
    }
}
