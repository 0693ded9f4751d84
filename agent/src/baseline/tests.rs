use super::*;
use crate::facts::{ComponentFacts, Facts};
use crate::finding::Status;
use serde_json::json;

const BASE: &str = r#"
apiVersion: nodedrift.dev/v1
kind: Baseline
metadata:
  name: test
rules:
  - id: kubelet.read-only-port
    title: read-only port off
    path: kubelet.config.readOnlyPort
    expect: { equals: 0 }
    severity: high
    policy: cis/4.2
  - id: kubelet.no-alpha-gates
    path: kubelet.featureGates.*.stage
    when: { enabled: true }
    expect: { notIn: [alpha] }
    severity: high
    policy: aks/alpha-features
"#;

fn base() -> Baseline {
    let mut b = Baseline::default();
    b.apply_text("base.yaml", BASE).unwrap();
    b
}

fn err(text: &str) -> BaselineError {
    let mut b = base();
    b.apply_text("user.yaml", text).unwrap_err()
}

fn facts(gates: serde_json::Value, port: serde_json::Value) -> Facts {
    let mut k = ComponentFacts::new("kubelet");
    k.set(&["config", "readOnlyPort"], port);
    k.set(&["featureGates"], gates);
    let mut f = Facts::default();
    f.insert(k);
    f
}

#[test]
fn unknown_key_names_file_line_column_and_key() {
    let e = err(
        "apiVersion: nodedrift.dev/v1\nkind: Baseline\nrules:\n  - id: x\n    expct: { equals: 1 }\n",
    );
    let BaselineError::Invalid {
        file, line, key, ..
    } = &e
    else {
        panic!("{e}")
    };
    assert_eq!(file, "user.yaml");
    assert_eq!(*line, 5, "{e}");
    assert_eq!(key.as_deref(), Some("rules[0].expct"));
}

#[test]
fn malformed_yaml_is_located() {
    let e = err("apiVersion: nodedrift.dev/v1\nkind: Baseline\nrules: [\n  - id: x\n");
    assert!(
        matches!(e, BaselineError::Invalid { line, .. } if line >= 3),
        "{e}"
    );
}

#[test]
fn semantic_errors_point_at_the_rule_key() {
    let text = "apiVersion: nodedrift.dev/v1\nkind: Baseline\nrules:\n  - id: a\n    path: os.x\n    expect: { equals: 1 }\n    severity: low\n    policy: p\n  - id: b\n    path: os.y\n    expect: { matches: \"(\" }\n    severity: low\n    policy: p\n";
    let e = err(text);
    let BaselineError::Invalid {
        line,
        column,
        key,
        message,
        ..
    } = &e
    else {
        panic!("{e}")
    };
    assert_eq!((*line, *column), (11, 5), "{e}");
    assert_eq!(key.as_deref(), Some("expect"));
    assert!(message.contains("regular expression"), "{message}");
}

#[test]
fn new_rule_needs_required_fields() {
    let e = err(
        "apiVersion: nodedrift.dev/v1\nkind: Baseline\nrules:\n  - id: new\n    path: os.x\n    expect: { present: true }\n    severity: low\n",
    );
    assert!(e.to_string().contains("policy"), "{e}");
}

#[test]
fn bad_api_version_kind_paths_and_duplicates() {
    assert!(
        err("apiVersion: v2\nkind: Baseline\n")
            .to_string()
            .contains("apiVersion")
    );
    assert!(
        err("apiVersion: nodedrift.dev/v1\nkind: Other\n")
            .to_string()
            .contains("kind")
    );
    let e = err(
        "apiVersion: nodedrift.dev/v1\nkind: Baseline\nrules:\n  - id: kubelet.read-only-port\n    path: a..b\n",
    );
    assert!(e.to_string().contains("path"), "{e}");
    let e = err("apiVersion: nodedrift.dev/v1\nkind: Baseline\nrules:\n  - id: z\n  - id: z\n");
    assert!(e.to_string().contains("twice"), "{e}");
    let e = err(
        "apiVersion: nodedrift.dev/v1\nkind: Baseline\nrules:\n  - id: kubelet.read-only-port\n    severity: huge\n",
    );
    assert!(
        e.to_string().contains("severity") || e.to_string().contains("huge"),
        "{e}"
    );
}

#[test]
fn layers_patch_and_disable() {
    let mut b = base();
    b.apply_text(
        "user.yaml",
        "apiVersion: nodedrift.dev/v1\nkind: Baseline\nrules:\n  - id: kubelet.read-only-port\n    expect: { oneOf: [0, 10255] }\n    severity: low\n  - id: kubelet.no-alpha-gates\n    disabled: true\n  - id: ghost\n    disabled: true\n",
    )
    .unwrap();
    assert_eq!(b.rules.len(), 1);
    assert_eq!(b.rules[0].severity, Severity::Low);
    assert_eq!(b.rules[0].sources, vec!["base.yaml", "user.yaml"]);
    assert_eq!(b.disabled, vec!["kubelet.no-alpha-gates"]);
    assert_eq!(b.warnings.len(), 1);
    let f = evaluate(&b, &facts(json!({}), json!(10255)));
    assert_eq!(f[0].status, Status::Pass);
}

#[test]
fn wildcard_with_when_yields_one_finding_per_enabled_alpha_gate() {
    let gates = json!({
        "A": {"enabled": true, "stage": "alpha"},
        "B": {"enabled": false, "stage": "alpha"},
        "C": {"enabled": true, "stage": "beta"},
    });
    let f = evaluate(&base(), &facts(gates, json!(0)));
    let gates: Vec<_> = f
        .iter()
        .filter(|f| f.rule == "kubelet.no-alpha-gates")
        .collect();
    assert_eq!(gates.len(), 2, "{gates:#?}");
    let a = gates
        .iter()
        .find(|g| g.path == "kubelet.featureGates.A.stage")
        .unwrap();
    assert_eq!(a.status, Status::Fail);
    assert_eq!(a.actual, json!("alpha"));
    assert!(
        gates
            .iter()
            .any(|g| g.path.ends_with("C.stage") && g.status == Status::Pass)
    );
}

#[test]
fn empty_wildcard_is_one_pass_and_unknown_is_never_pass() {
    let f = evaluate(&base(), &facts(json!({}), json!(0)));
    assert_eq!(f.len(), 2);
    assert!(f.iter().all(|f| f.status == Status::Pass));

    let mut k = ComponentFacts::new("kubelet");
    k.unknown(&["config"], "/var/lib/kubelet/config.yaml: is a directory");
    k.unknown(&["featureGates"], "kubelet not running");
    let mut facts = Facts::default();
    facts.insert(k);
    let f = evaluate(&base(), &facts);
    assert!(f.iter().all(|f| f.status == Status::Unknown), "{f:#?}");
    assert!(f[0].reason.as_deref().unwrap().contains("is a directory"));
}

#[test]
fn every_embedded_profile_loads_and_cites_known_clauses() {
    let known: Vec<String> = policy::clauses().into_iter().map(|c| c.id).collect();
    for name in profiles::NAMES {
        let b = Baseline::profile(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(b.warnings.is_empty(), "{name}: {:?}", b.warnings);
        for r in &b.rules {
            assert!(
                known.contains(&r.policy),
                "{name}: rule {} cites unknown clause {}",
                r.id,
                r.policy
            );
            assert!(
                r.remediation.is_some(),
                "{name}: rule {} has no remediation",
                r.id
            );
        }
    }
    assert!(Baseline::profile("nope").is_err());
}

#[test]
fn sysctl_keys_come_from_plain_and_quoted_paths() {
    let mut b = Baseline::default();
    b.apply_text(
        "s.yaml",
        "apiVersion: nodedrift.dev/v1\nkind: Baseline\nrules:\n  - id: a\n    path: sysctl.runtime.net.ipv4.ip_forward\n    expect: { equals: 1 }\n    severity: high\n    policy: p\n  - id: b\n    path: sysctl.runtime[\"net/ipv4/conf/eth0.100/forwarding\"]\n    expect: { equals: 1 }\n    severity: high\n    policy: p\n",
    )
    .unwrap();
    let keys: Vec<_> = b.sysctl_keys().into_iter().collect();
    assert_eq!(
        keys,
        vec!["net.ipv4.ip_forward", "net/ipv4/conf/eth0.100/forwarding"]
    );
}

#[test]
fn escalation_steps_are_checked() {
    let doc = |after: &str, since: &str| {
        format!(
            "apiVersion: nodedrift.dev/v1\nkind: Baseline\nrules:\n  - id: x.y\n    path: kubelet.config.readOnlyPort\n    expect: {{ equals: 0 }}\n    severity: low\n    policy: p\n    escalate:\n      since: {since}\n      steps:\n        - {{ after: {after}, severity: high }}\n"
        )
    };
    let e = err(&doc("7w", "reboot.pendingSinceUnix")).to_string();
    assert!(e.contains("escalate") && e.contains("7w"), "{e}");
    let e = err(&doc("7d", "reboot..x")).to_string();
    assert!(e.contains("escalate") && e.contains("since"), "{e}");
    let mut b = base();
    b.apply_text("ok.yaml", &doc("1d12h", "reboot.pendingSinceUnix"))
        .unwrap();
    let r = b.rules.iter().find(|r| r.id == "x.y").unwrap();
    let steps = &r.escalate.as_ref().unwrap().1;
    assert_eq!(steps[0].0, std::time::Duration::from_secs(36 * 3600));
}

#[test]
fn egress_endpoints_layer_by_id_and_wildcards_are_refused() {
    let mut b = Baseline::profile("aks-ubuntu").unwrap();
    assert!(
        b.egress
            .iter()
            .any(|e| e.host == "mcr.microsoft.com" && e.tls)
    );
    assert!(Baseline::profile("generic").unwrap().egress.is_empty());
    b.apply_text(
        "user.yaml",
        "apiVersion: nodedrift.dev/v1\nkind: Baseline\negress:\n  - { id: mcr, port: 8443, sni: mcr.example }\n  - { id: login, disabled: true }\n  - { id: proxy, host: proxy.corp, port: 3128, tls: false }\n  - { id: ghost, disabled: true }\n",
    )
    .unwrap();
    let mcr = b.egress.iter().find(|e| e.id == "mcr").unwrap();
    assert_eq!((mcr.host.as_str(), mcr.port), ("mcr.microsoft.com", 8443));
    assert_eq!(mcr.sni.as_deref(), Some("mcr.example"));
    assert_eq!(mcr.sources.len(), 2);
    assert!(b.egress.iter().all(|e| e.id != "login"));
    assert_eq!(b.egress.last().map(|e| e.id.as_str()), Some("proxy"));
    assert!(b.warnings.iter().any(|w| w.contains("ghost")));
    let back = b.to_document("x");
    assert_eq!(back.egress.len(), b.egress.len());

    let e = err(
        "apiVersion: nodedrift.dev/v1\nkind: Baseline\negress:\n  - id: hcp\n    host: \"*.hcp.westeurope.azmk8s.io\"\n    port: 443\n",
    );
    assert!(e.to_string().contains("no wildcard"), "{e}");
    let e = err(
        "apiVersion: nodedrift.dev/v1\nkind: Baseline\negress:\n  - id: x\n    host: a.example\n",
    );
    assert!(e.to_string().contains("port"), "{e}");
}
