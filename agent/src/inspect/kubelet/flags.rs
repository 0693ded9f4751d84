//! The kubelet's command-line flags: their types and the `KubeletConfiguration` field each one
//! sets, and the conversion of a flag's text into the value that field holds.
//!
//! The table follows `cmd/kubelet/app/options` (`AddKubeletConfigFlags` for flags that map to
//! the configuration, `KubeletFlags.AddFlags` for flag-only settings). A flag the table does not
//! know is still recorded under `kubelet.flags` as given; it just does not feed the merged
//! configuration. The conversion helpers are shared with the kube-proxy inspector.

use serde_json::{Map, Value, json};

use super::support::{canonical_duration, parse_go_bool};

/// How a flag's text is read (pflag's value type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int,
    Float,
    Str,
    /// A Go duration, stored in its canonical form (`"4h0m0s"`).
    Duration,
    /// Comma-separated strings.
    List,
    /// `k=v,k=v` (cliflag.MapStringString).
    Map,
    /// `Gate=true,Other=false` (cliflag.MapStringBool).
    Gates,
    /// `key=value:Effect,key:Effect` (register-with-taints).
    Taints,
    /// `signal<threshold,...` (eviction-hard / eviction-soft), and `signal=value` maps.
    Eviction,
}

/// One flag: its name (without dashes), type, and the configuration field it sets (dotted,
/// upstream names), if any.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlagSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub field: Option<&'static str>,
}

/// A flag that sets the configuration field `field` (dotted, upstream name).
pub(crate) const fn f(name: &'static str, kind: Kind, field: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        kind,
        field: Some(field),
    }
}

/// A flag with no configuration-file field (it exists on the command line only).
pub(crate) const fn only(name: &'static str, kind: Kind) -> FlagSpec {
    FlagSpec {
        name,
        kind,
        field: None,
    }
}

use Kind::*;

/// The kubelet's flags (Kubernetes 1.27–1.35; deprecated config flags are still accepted).
pub(crate) const KUBELET_FLAGS: &[FlagSpec] = &[
    // Flag-only settings (KubeletFlags).
    only("config", Str),
    only("config-dir", Str),
    only("kubeconfig", Str),
    only("bootstrap-kubeconfig", Str),
    only("cert-dir", Str),
    only("root-dir", Str),
    only("hostname-override", Str),
    only("node-ip", Str),
    only("node-labels", Map),
    only("cloud-provider", Str),
    only("cloud-config", Str),
    only("image-credential-provider-config", Str),
    only("image-credential-provider-bin-dir", Str),
    only("pod-infra-container-image", Str),
    only("lock-file", Str),
    only("exit-on-lock-contention", Bool),
    only("seccomp-profile-root", Str),
    only("runonce", Bool),
    only("experimental-mounter-path", Str),
    only("minimum-container-ttl-duration", Duration),
    only("maximum-dead-containers-per-container", Int),
    only("maximum-dead-containers", Int),
    only("register-schedulable", Bool),
    only("keep-terminated-pod-volumes", Bool),
    only("v", Int),
    only("vmodule", Str),
    only("help", Bool),
    only("version", Str),
    // Settings of the KubeletConfiguration (AddKubeletConfigFlags).
    f("address", Str, "address"),
    f("port", Int, "port"),
    f("read-only-port", Int, "readOnlyPort"),
    f("healthz-port", Int, "healthzPort"),
    f("healthz-bind-address", Str, "healthzBindAddress"),
    f("anonymous-auth", Bool, "authentication.anonymous.enabled"),
    f(
        "authentication-token-webhook",
        Bool,
        "authentication.webhook.enabled",
    ),
    f(
        "authentication-token-webhook-cache-ttl",
        Duration,
        "authentication.webhook.cacheTTL",
    ),
    f("client-ca-file", Str, "authentication.x509.clientCAFile"),
    f("authorization-mode", Str, "authorization.mode"),
    f(
        "authorization-webhook-cache-authorized-ttl",
        Duration,
        "authorization.webhook.cacheAuthorizedTTL",
    ),
    f(
        "authorization-webhook-cache-unauthorized-ttl",
        Duration,
        "authorization.webhook.cacheUnauthorizedTTL",
    ),
    f("tls-cert-file", Str, "tlsCertFile"),
    f("tls-private-key-file", Str, "tlsPrivateKeyFile"),
    f("tls-cipher-suites", List, "tlsCipherSuites"),
    f("tls-min-version", Str, "tlsMinVersion"),
    f("rotate-certificates", Bool, "rotateCertificates"),
    f("rotate-server-certificates", Bool, "serverTLSBootstrap"),
    f("protect-kernel-defaults", Bool, "protectKernelDefaults"),
    f("feature-gates", Gates, "featureGates"),
    f("cgroup-driver", Str, "cgroupDriver"),
    f("cgroup-root", Str, "cgroupRoot"),
    f("cgroups-per-qos", Bool, "cgroupsPerQOS"),
    f("kubelet-cgroups", Str, "kubeletCgroups"),
    f("system-cgroups", Str, "systemCgroups"),
    f("runtime-cgroups", Str, "runtimeCgroups"),
    f("kube-reserved", Map, "kubeReserved"),
    f("system-reserved", Map, "systemReserved"),
    f("kube-reserved-cgroup", Str, "kubeReservedCgroup"),
    f("system-reserved-cgroup", Str, "systemReservedCgroup"),
    f("enforce-node-allocatable", List, "enforceNodeAllocatable"),
    f("reserved-cpus", Str, "reservedSystemCPUs"),
    f("make-iptables-util-chains", Bool, "makeIPTablesUtilChains"),
    f("iptables-masquerade-bit", Int, "iptablesMasqueradeBit"),
    f("iptables-drop-bit", Int, "iptablesDropBit"),
    f("event-qps", Int, "eventRecordQPS"),
    f("event-burst", Int, "eventBurst"),
    f("kube-api-qps", Int, "kubeAPIQPS"),
    f("kube-api-burst", Int, "kubeAPIBurst"),
    f("kube-api-content-type", Str, "contentType"),
    f("registry-qps", Int, "registryPullQPS"),
    f("registry-burst", Int, "registryBurst"),
    f(
        "streaming-connection-idle-timeout",
        Duration,
        "streamingConnectionIdleTimeout",
    ),
    f(
        "container-runtime-endpoint",
        Str,
        "containerRuntimeEndpoint",
    ),
    f("image-service-endpoint", Str, "imageServiceEndpoint"),
    f("runtime-request-timeout", Duration, "runtimeRequestTimeout"),
    f("max-pods", Int, "maxPods"),
    f("pods-per-core", Int, "podsPerCore"),
    f("pod-max-pids", Int, "podPidsLimit"),
    f("pod-cidr", Str, "podCIDR"),
    f("pod-manifest-path", Str, "staticPodPath"),
    f("manifest-url", Str, "staticPodURL"),
    f("cluster-dns", List, "clusterDNS"),
    f("cluster-domain", Str, "clusterDomain"),
    f("resolv-conf", Str, "resolvConf"),
    f("hairpin-mode", Str, "hairpinMode"),
    f("fail-swap-on", Bool, "failSwapOn"),
    f("eviction-hard", Eviction, "evictionHard"),
    f("eviction-soft", Eviction, "evictionSoft"),
    f("eviction-soft-grace-period", Map, "evictionSoftGracePeriod"),
    f("eviction-minimum-reclaim", Map, "evictionMinimumReclaim"),
    f(
        "eviction-max-pod-grace-period",
        Int,
        "evictionMaxPodGracePeriod",
    ),
    f(
        "eviction-pressure-transition-period",
        Duration,
        "evictionPressureTransitionPeriod",
    ),
    f("register-node", Bool, "registerNode"),
    f("register-with-taints", Taints, "registerWithTaints"),
    f(
        "node-status-update-frequency",
        Duration,
        "nodeStatusUpdateFrequency",
    ),
    f("node-status-max-images", Int, "nodeStatusMaxImages"),
    f("sync-frequency", Duration, "syncFrequency"),
    f("file-check-frequency", Duration, "fileCheckFrequency"),
    f("http-check-frequency", Duration, "httpCheckFrequency"),
    f(
        "image-gc-high-threshold",
        Int,
        "imageGCHighThresholdPercent",
    ),
    f("image-gc-low-threshold", Int, "imageGCLowThresholdPercent"),
    f("image-minimum-gc-age", Duration, "imageMinimumGCAge"),
    f("image-maximum-gc-age", Duration, "imageMaximumGCAge"),
    f("serialize-image-pulls", Bool, "serializeImagePulls"),
    f("max-parallel-image-pulls", Int, "maxParallelImagePulls"),
    f("seccomp-default", Bool, "seccompDefault"),
    f("volume-plugin-dir", Str, "volumePluginDir"),
    f("volume-stats-agg-period", Duration, "volumeStatsAggPeriod"),
    f("cpu-manager-policy", Str, "cpuManagerPolicy"),
    f("cpu-manager-policy-options", Map, "cpuManagerPolicyOptions"),
    f(
        "cpu-manager-reconcile-period",
        Duration,
        "cpuManagerReconcilePeriod",
    ),
    f("memory-manager-policy", Str, "memoryManagerPolicy"),
    f("topology-manager-policy", Str, "topologyManagerPolicy"),
    f("topology-manager-scope", Str, "topologyManagerScope"),
    f(
        "topology-manager-policy-options",
        Map,
        "topologyManagerPolicyOptions",
    ),
    f("qos-reserved", Map, "qosReserved"),
    f("cpu-cfs-quota", Bool, "cpuCFSQuota"),
    f("cpu-cfs-quota-period", Duration, "cpuCFSQuotaPeriod"),
    f("max-open-files", Int, "maxOpenFiles"),
    f("oom-score-adj", Int, "oomScoreAdj"),
    f("container-log-max-size", Str, "containerLogMaxSize"),
    f("container-log-max-files", Int, "containerLogMaxFiles"),
    f("enable-server", Bool, "enableServer"),
    f("enable-debugging-handlers", Bool, "enableDebuggingHandlers"),
    f(
        "enable-controller-attach-detach",
        Bool,
        "enableControllerAttachDetach",
    ),
    f("allowed-unsafe-sysctls", List, "allowedUnsafeSysctls"),
    f(
        "local-storage-capacity-isolation",
        Bool,
        "localStorageCapacityIsolation",
    ),
    f("kernel-memcg-notification", Bool, "kernelMemcgNotification"),
    f(
        "node-status-report-frequency",
        Duration,
        "nodeStatusReportFrequency",
    ),
    f(
        "node-lease-duration-seconds",
        Int,
        "nodeLeaseDurationSeconds",
    ),
    f("shutdown-grace-period", Duration, "shutdownGracePeriod"),
    f(
        "shutdown-grace-period-critical-pods",
        Duration,
        "shutdownGracePeriodCriticalPods",
    ),
    f("provider-id", Str, "providerID"),
];

/// The spec of a kubelet flag.
pub(crate) fn kubelet_flag(name: &str) -> Option<&'static FlagSpec> {
    KUBELET_FLAGS.iter().find(|s| s.name == name)
}

/// True for kubelet flags that take no separate value (`--anonymous-auth` alone means true).
pub(crate) fn kubelet_is_bool(name: &str) -> bool {
    kubelet_flag(name).is_some_and(|s| s.kind == Bool)
}

/// Converts a flag's text to the configuration value it sets.
pub(crate) fn convert(kind: Kind, raw: &str) -> Result<Value, String> {
    match kind {
        Bool => parse_go_bool(raw)
            .map(Value::Bool)
            .ok_or_else(|| "not a boolean".to_owned()),
        Int => raw
            .trim()
            .parse::<i64>()
            .map(|n| json!(n))
            .map_err(|_| "not an integer".to_owned()),
        Float => raw
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number))
            .ok_or_else(|| "not a number".to_owned()),
        Str => Ok(Value::String(raw.to_owned())),
        Duration => canonical_duration(raw.trim())
            .map(Value::String)
            .ok_or_else(|| "not a Go duration".to_owned()),
        List => Ok(Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        )),
        Map => parse_map(raw, '=').map(Value::Object),
        Eviction => parse_map(raw, '<').map(Value::Object),
        Gates => parse_gates(raw)
            .map(|g| Value::Object(g.into_iter().map(|(k, v)| (k, Value::Bool(v))).collect())),
        Taints => parse_taints(raw),
    }
}

fn parse_map(raw: &str, sep: char) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once(sep)
            .ok_or_else(|| format!("{item:?} is not of the form key{sep}value"))?;
        out.insert(k.trim().to_owned(), Value::String(v.trim().to_owned()));
    }
    Ok(out)
}

/// `A=true,B=false` → [(A, true), (B, false)] in order (a repeated gate: the last wins).
pub(crate) fn parse_gates(raw: &str) -> Result<Vec<(String, bool)>, String> {
    let mut out: Vec<(String, bool)> = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not of the form Gate=true|false"))?;
        let b =
            parse_go_bool(v.trim()).ok_or_else(|| format!("{item:?}: {v:?} is not a boolean"))?;
        let k = k.trim().to_owned();
        out.retain(|(g, _)| *g != k);
        out.push((k, b));
    }
    Ok(out)
}

/// `key=value:Effect` or `key:Effect`, comma-separated → `[{key, value, effect}]`.
fn parse_taints(raw: &str) -> Result<Value, String> {
    let mut out = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (kv, effect) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("taint {item:?} has no :Effect"))?;
        let mut t = Map::new();
        match kv.split_once('=') {
            Some((k, v)) => {
                t.insert("key".into(), json!(k));
                t.insert("value".into(), json!(v));
            }
            None => {
                t.insert("key".into(), json!(kv));
            }
        }
        t.insert("effect".into(), json!(effect));
        out.push(Value::Object(t));
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_no_duplicate_config_flags() {
        let mut names: Vec<&str> = KUBELET_FLAGS
            .iter()
            .filter(|s| s.field.is_some())
            .map(|s| s.name)
            .collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
        for required in [
            "read-only-port",
            "anonymous-auth",
            "authorization-mode",
            "client-ca-file",
            "authentication-token-webhook",
            "feature-gates",
            "protect-kernel-defaults",
            "rotate-certificates",
            "rotate-server-certificates",
            "tls-cert-file",
            "tls-private-key-file",
            "tls-cipher-suites",
            "tls-min-version",
            "cgroup-driver",
            "make-iptables-util-chains",
            "event-qps",
            "streaming-connection-idle-timeout",
            "container-runtime-endpoint",
            "max-pods",
            "pod-max-pids",
            "cluster-dns",
            "cluster-domain",
            "address",
            "port",
            "healthz-port",
            "healthz-bind-address",
            "fail-swap-on",
            "eviction-hard",
            "kube-reserved",
            "system-reserved",
            "register-with-taints",
            "cgroup-root",
            "image-gc-high-threshold",
            "image-gc-low-threshold",
            "serialize-image-pulls",
            "resolv-conf",
            "seccomp-default",
        ] {
            assert!(
                kubelet_flag(required).and_then(|s| s.field).is_some(),
                "{required}"
            );
        }
        for flag_only in ["node-labels", "kubeconfig", "hostname-override", "config"] {
            assert!(
                kubelet_flag(flag_only).is_some_and(|s| s.field.is_none()),
                "{flag_only}"
            );
        }
    }

    #[test]
    fn conversions() {
        assert_eq!(convert(Bool, "false").unwrap(), json!(false));
        assert!(convert(Bool, "nope").is_err());
        assert_eq!(convert(Int, "0").unwrap(), json!(0));
        assert_eq!(convert(Duration, "5m").unwrap(), json!("5m0s"));
        assert_eq!(
            convert(List, "10.0.0.10, 10.0.0.11").unwrap(),
            json!(["10.0.0.10", "10.0.0.11"])
        );
        assert_eq!(
            convert(Map, "cpu=100m,memory=1Gi").unwrap(),
            json!({"cpu": "100m", "memory": "1Gi"})
        );
        assert_eq!(
            convert(Eviction, "memory.available<750Mi,nodefs.available<10%").unwrap(),
            json!({"memory.available": "750Mi", "nodefs.available": "10%"})
        );
        assert_eq!(
            convert(Gates, "A=true,B=false,A=false").unwrap(),
            json!({"A": false, "B": false})
        );
        assert!(convert(Gates, "A").is_err());
        assert_eq!(
            convert(
                Taints,
                "CriticalAddonsOnly=true:NoSchedule,dedicated:NoExecute"
            )
            .unwrap(),
            json!([
                {"key": "CriticalAddonsOnly", "value": "true", "effect": "NoSchedule"},
                {"key": "dedicated", "effect": "NoExecute"}
            ])
        );
    }
}
