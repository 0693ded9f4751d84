//! Configuration tests: defaults, the example file, every kind of bad input, env overrides.

use std::collections::HashMap;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| m.get(k).cloned()
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_text("cfg.yaml", text, &no_env)
}

/// The error as `(line, column, key)`, plus its message.
fn invalid(text: &str) -> ((usize, usize, String), String) {
    match load(text) {
        Err(ConfigError::Invalid {
            file,
            line,
            column,
            key,
            message,
        }) => {
            assert_eq!(file, "cfg.yaml");
            ((line, column, key.unwrap_or_default()), message)
        }
        other => panic!("{text:?}: expected an Invalid error, got {other:?}"),
    }
}

fn defaults() -> Config {
    Config {
        source: None,
        host_root: "/".into(),
        state_dir: "/var/lib/nodedrift".into(),
        profile: None,
        baselines: vec![],
        listen: "0.0.0.0:9101".parse().unwrap(),
        intervals: Intervals {
            proc_poll: Duration::from_secs(2),
            sysctl_poll: Duration::from_secs(10),
            rescan: Duration::from_secs(300),
            rescan_jitter: Duration::from_secs(30),
            heartbeat: Duration::from_secs(600),
        },
        endpoint: Endpoint {
            url: None,
            token_file: None,
            ca_file: None,
            client_identity: None,
            timeout: Duration::from_secs(10),
            batch_max_events: 100,
            outbox_max_events: 10_000,
        },
        kubernetes: Kubernetes {
            enabled: false,
            decided_by: "auto: no node name (NODE_NAME unset)".into(),
            node_name: None,
            pod_name: None,
            events_per_minute: 10,
        },
        files: crate::config::Files::default(),
        snapshot: crate::config::Snapshot {
            enabled: true,
            keep: 5,
            max_bytes: 256 << 20,
            min_interval: Duration::from_secs(300),
            on_severity: None,
            upload_url: None,
        },
        egress: super::Egress {
            enabled: false,
            timeout: Duration::from_secs(3),
        },
    }
}

#[test]
fn an_empty_file_means_defaults() {
    for text in ["", "\n", "# nothing\n", "---\n", "{}\n"] {
        assert_eq!(load(text).unwrap(), defaults(), "{text:?}");
    }
    assert_eq!(Config::default_with_env(&no_env).unwrap(), defaults());
    assert_eq!(Config::load(None, &no_env).unwrap(), defaults());
}

#[test]
fn the_example_file_loads_and_states_the_defaults() {
    assert_eq!(load(EXAMPLE).unwrap(), defaults());
    // Its commented examples are valid too.
    let uncommented: String = EXAMPLE
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("# ") && t.contains("# example") {
                let indent = &l[..l.len() - t.len()];
                let body = t.trim_start_matches("# ");
                let body = &body[..body.find("  #").unwrap_or(body.len())];
                format!("{indent}{}\n", body.trim_end())
            } else if t.starts_with("#  - ") {
                let body = t.trim_start_matches('#');
                format!("{}\n", &body[..body.find("  #").unwrap_or(body.len())])
            } else {
                format!("{l}\n")
            }
        })
        .collect::<String>()
        .replace("baselines: []\n", "baselines:\n");
    let c = load(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    assert_eq!(c.profile.as_deref(), Some("aks-ubuntu"));
    assert_eq!(
        c.baselines,
        [PathBuf::from("/etc/nodedrift/baselines/site.yaml")]
    );
    assert_eq!(
        c.endpoint.url.as_ref().map(reqwest::Url::as_str),
        Some("https://events.example.com/nodedrift")
    );
    assert!(c.endpoint.client_identity.is_some());
    assert_eq!(
        c.kubernetes.node_name.as_deref(),
        Some("aks-nodepool1-12345678-vmss000000")
    );
}

#[test]
fn a_full_file_is_read() {
    let c = load(
        "\
hostRoot: /host
stateDir: /var/lib/nd
profile: aks-azurelinux
baselines: [/a.yaml, /b.yaml]
listen: 127.0.0.1:19101
intervals:
  procPoll: 500ms
  sysctlPoll: 1m
  rescan: 1h30m
  rescanJitter: 2m
  heartbeat: 1h
endpoint:
  url: https://collector.example:8443/events
  tokenFile: /run/token
  caFile: /run/ca.pem
  clientCert: /run/tls.crt
  clientKey: /run/tls.key
  timeout: 3s
  batchMaxEvents: 50
  outboxMaxEvents: 500
kubernetes:
  enabled: true
  nodeName: node-1
  eventsPerMinute: 0
",
    )
    .unwrap();
    assert_eq!(c.host_root, PathBuf::from("/host"));
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/nd"));
    assert_eq!(c.profile.as_deref(), Some("aks-azurelinux"));
    assert_eq!(c.baselines.len(), 2);
    assert_eq!(c.listen, "127.0.0.1:19101".parse().unwrap());
    assert_eq!(
        c.intervals,
        Intervals {
            proc_poll: Duration::from_millis(500),
            sysctl_poll: Duration::from_secs(60),
            rescan: Duration::from_secs(5400),
            rescan_jitter: Duration::from_secs(120),
            heartbeat: Duration::from_secs(3600),
        }
    );
    assert_eq!(
        c.endpoint.client_identity,
        Some(ClientIdentity {
            cert: "/run/tls.crt".into(),
            key: "/run/tls.key".into()
        })
    );
    assert_eq!(
        (
            c.endpoint.timeout,
            c.endpoint.batch_max_events,
            c.endpoint.outbox_max_events
        ),
        (Duration::from_secs(3), 50, 500)
    );
    assert!(c.kubernetes.enabled);
    assert_eq!(c.kubernetes.events_per_minute, 0);
}

#[test]
fn unknown_keys_name_file_line_column_and_key() {
    let (at, msg) = invalid("hostRoot: /\nbogus: 1\n");
    assert_eq!(at, (2, 1, "bogus".into()));
    assert!(msg.contains("unknown field `bogus`"), "{msg}");
    let (at, _) = invalid("intervals:\n  procPoll: 2s\n  procpoll: 3s\n");
    assert_eq!(at, (3, 3, "intervals.procpoll".into()));
    let (at, _) = invalid("endpoint:\n  url: https://x\n  token: abc\n");
    assert_eq!(at, (3, 3, "endpoint.token".into()));
    let (at, _) = invalid("snapshot:\n  enabled: true\n  where: /tmp\n");
    assert_eq!(at, (3, 3, "snapshot.where".into()));
    let e = load("kubernetes:\n  enable: true\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("cfg.yaml:2:3: kubernetes.enable: unknown field `enable`"),
        "{e}"
    );
}

#[test]
fn bad_durations_are_rejected() {
    for (text, key) in [
        ("intervals:\n  procPoll: 2\n", "intervals.procPoll"),
        ("intervals:\n  procPoll: 2 s\n", "intervals.procPoll"),
        ("intervals:\n  sysctlPoll: 10sec\n", "intervals.sysctlPoll"),
        ("intervals:\n  rescan: 0s\n", "intervals.rescan"),
        ("intervals:\n  heartbeat: -5m\n", "intervals.heartbeat"),
        ("intervals:\n  heartbeat: m\n", "intervals.heartbeat"),
        ("endpoint:\n  timeout: \"\"\n", "endpoint.timeout"),
        (
            "intervals:\n  rescanJitter: 100%\n",
            "intervals.rescanJitter",
        ),
        (
            "intervals:\n  rescanJitter: ten%\n",
            "intervals.rescanJitter",
        ),
    ] {
        let ((line, _, k), msg) = invalid(text);
        assert_eq!((line, k.as_str()), (2, key), "{text:?}: {msg}");
    }
    // A jitter must be shorter than the rescan.
    let (at, msg) = invalid("intervals:\n  rescan: 1m\n  rescanJitter: 1m\n");
    assert_eq!(at, (3, 3, "intervals.rescanJitter".into()));
    assert!(msg.contains("not shorter than rescan"), "{msg}");
}

#[test]
fn parse_duration_forms() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("1m500ms"), Ok(Duration::from_millis(60_500)));
    assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
    for bad in [
        "",
        "5",
        "s",
        "1.5s",
        "5 m",
        "5w",
        "99999999999999999999s",
        "1h-1m",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
    for d in ["500ms", "30s", "5m", "1h30m", "2h", "1h1m1s"] {
        assert_eq!(format_duration(parse_duration(d).unwrap()), d);
    }
}

/// Milliseconds beyond `u64` (durations near `Duration::MAX`) used to be written as one `ms`
/// part, which `parse_duration` (u64 parts) refused; found by the `values` fuzz target.
#[test]
fn format_duration_reads_back_beyond_u64_millis() {
    for d in [
        Duration::new(u64::MAX, 999_000_000),
        Duration::new(720_000_000_108_079_001, 724_000_000),
        Duration::from_millis(u64::MAX),
    ] {
        let text = format_duration(d);
        assert_eq!(parse_duration(&text), Ok(d), "{text}");
    }
    assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
}

#[test]
fn bad_urls_are_rejected() {
    for (url, why) in [
        ("ftp://x.example/", "is not http or https"),
        ("http://collector.example/", "loopback"),
        ("http://10.0.0.1:8080/", "loopback"),
        ("not a url", "is not a URL"),
        ("https://user:pw@x.example/", "credentials"),
        ("https://", "is not a URL"),
    ] {
        let ((line, _, key), msg) = invalid(&format!("endpoint:\n  url: \"{url}\"\n"));
        assert_eq!((line, key.as_str()), (2, "endpoint.url"), "{url}");
        assert!(msg.contains(why), "{url}: {msg}");
    }
    for ok in [
        "https://x.example/events",
        "http://127.0.0.1:8080/",
        "http://localhost/",
        "http://[::1]:9000/",
    ] {
        let c = load(&format!("endpoint:\n  url: \"{ok}\"\n")).unwrap();
        assert!(c.endpoint.url.is_some(), "{ok}");
    }
}

#[test]
fn wrong_types_are_rejected() {
    for (text, at) in [
        ("hostRoot: [1]\n", (1, 11, "hostRoot")),
        ("baselines: /one.yaml\n", (1, 12, "baselines")),
        ("baselines: [/a.yaml, {x: 1}]\n", (1, 22, "baselines[1]")),
        ("listen: 9101\n", (1, 9, "listen")),
        ("listen: localhost:9101\n", (1, 9, "listen")),
        ("intervals: 5m\n", (1, 12, "intervals")),
        (
            "endpoint:\n  batchMaxEvents: many\n",
            (2, 19, "endpoint.batchMaxEvents"),
        ),
        (
            "endpoint:\n  outboxMaxEvents: -1\n",
            (2, 20, "endpoint.outboxMaxEvents"),
        ),
        (
            "kubernetes:\n  enabled: yes\n",
            (2, 12, "kubernetes.enabled"),
        ),
        (
            "kubernetes:\n  eventsPerMinute: 1.5\n",
            (2, 20, "kubernetes.eventsPerMinute"),
        ),
        ("- hostRoot: /\n", (1, 1, "document")),
    ] {
        let ((line, column, key), msg) = invalid(text);
        assert_eq!(
            (line, column, key.as_str()),
            (at.0, at.1, if at.2 == "document" { "" } else { at.2 }),
            "{text:?}: {msg}"
        );
    }
}

#[test]
fn semantic_errors_point_at_their_key() {
    let (at, _) = invalid("endpoint:\n  url: https://x.example\n  clientCert: /c.pem\n");
    assert_eq!(at, (3, 3, "endpoint.clientCert".into()));
    let (at, _) = invalid("endpoint:\n  clientKey: /k.pem\n");
    assert_eq!(at, (2, 3, "endpoint.clientKey".into()));
    let (at, _) = invalid("endpoint:\n  batchMaxEvents: 0\n");
    assert_eq!(at, (2, 3, "endpoint.batchMaxEvents".into()));
    let (at, _) = invalid("endpoint:\n  batchMaxEvents: 200\n  outboxMaxEvents: 100\n");
    assert_eq!(at, (3, 3, "endpoint.outboxMaxEvents".into()));
    let (at, msg) = invalid("profile: aks-ubunt\n");
    assert_eq!((at.0, at.2.as_str()), (1, "profile"));
    assert!(msg.contains("known: generic"), "{msg}");
    let (at, msg) = invalid("kubernetes:\n  enabled: true\n");
    assert_eq!(at, (2, 3, "kubernetes.enabled".into()));
    assert!(msg.contains("NODE_NAME"), "{msg}");
}

#[test]
fn env_overrides_win() {
    let text = "\
hostRoot: /file
stateDir: /file-state
profile: generic
listen: 0.0.0.0:1
endpoint:
  url: https://file.example/
  tokenFile: /file-token
  caFile: /file-ca
kubernetes:
  nodeName: file-node
";
    let env = env_of(&[
        ("NODE_NAME", "env-node"),
        ("POD_NAME", "nodedrift-abcde"),
        ("NODEDRIFT_ENDPOINT", "https://env.example/in"),
        ("NODEDRIFT_TOKEN_FILE", "/env-token"),
        ("NODEDRIFT_CA_FILE", "/env-ca"),
        ("NODEDRIFT_LISTEN", "[::]:9200"),
        ("NODEDRIFT_STATE_DIR", "/env-state"),
        ("NODEDRIFT_HOST_ROOT", "/env-host"),
        ("NODEDRIFT_PROFILE", "aks-ubuntu"),
        ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
    ]);
    let c = Config::from_text("cfg.yaml", text, &env).unwrap();
    assert_eq!(c.host_root, PathBuf::from("/env-host"));
    assert_eq!(c.state_dir, PathBuf::from("/env-state"));
    assert_eq!(c.profile.as_deref(), Some("aks-ubuntu"));
    assert_eq!(c.listen, "[::]:9200".parse().unwrap());
    assert_eq!(c.endpoint.url.unwrap().as_str(), "https://env.example/in");
    assert_eq!(c.endpoint.token_file, Some("/env-token".into()));
    assert_eq!(c.endpoint.ca_file, Some("/env-ca".into()));
    assert_eq!(c.kubernetes.node_name.as_deref(), Some("env-node"));
    assert_eq!(c.kubernetes.pod_name.as_deref(), Some("nodedrift-abcde"));
    assert!(c.kubernetes.enabled, "{}", c.kubernetes.decided_by);

    // Empty variables are ignored: the file's values stand.
    let blank = env_of(&[("NODEDRIFT_ENDPOINT", ""), ("NODEDRIFT_HOST_ROOT", "")]);
    let c = Config::from_text("cfg.yaml", text, &blank).unwrap();
    assert_eq!(c.host_root, PathBuf::from("/file"));
    assert_eq!(c.endpoint.url.unwrap().as_str(), "https://file.example/");

    // Without a file, too.
    let c = Config::default_with_env(&env_of(&[("NODEDRIFT_ENDPOINT", "http://127.0.0.1:1/")]))
        .unwrap();
    assert_eq!(c.endpoint.url.unwrap().as_str(), "http://127.0.0.1:1/");
}

#[test]
fn bad_env_values_name_the_variable() {
    for (var, value, why) in [
        (
            "NODEDRIFT_ENDPOINT",
            "http://collector.example/",
            "loopback",
        ),
        ("NODEDRIFT_LISTEN", "9101", "not an address"),
        ("NODEDRIFT_PROFILE", "eks", "unknown profile"),
    ] {
        let e = Config::default_with_env(&env_of(&[(var, value)])).unwrap_err();
        let s = e.to_string();
        assert!(
            matches!(&e, ConfigError::Env { var: v, .. } if v == var),
            "{e:?}"
        );
        assert!(
            s.starts_with(&format!("environment variable {var}: ")),
            "{s}"
        );
        assert!(s.contains(why), "{s}");
    }
}

#[test]
fn kubernetes_auto_needs_a_node_name_and_credentials() {
    let on = |pairs: &[(&str, &str)]| Config::default_with_env(&env_of(pairs)).unwrap().kubernetes;
    assert!(!on(&[]).enabled);
    assert!(!on(&[("KUBERNETES_SERVICE_HOST", "10.0.0.1")]).enabled);
    let k = on(&[("NODE_NAME", "n1")]);
    assert!(!k.enabled);
    assert!(
        k.decided_by.contains("no API credentials"),
        "{}",
        k.decided_by
    );
    assert!(on(&[("NODE_NAME", "n1"), ("KUBERNETES_SERVICE_HOST", "10.0.0.1")]).enabled);
    assert!(on(&[("NODE_NAME", "n1"), ("KUBECONFIG", "/root/.kube/config")]).enabled);
    // Explicit false wins over everything; explicit true with NODE_NAME needs no credentials
    // check at load (the client reports missing ones when it starts).
    let env = env_of(&[("NODE_NAME", "n1"), ("KUBERNETES_SERVICE_HOST", "10.0.0.1")]);
    let c = Config::from_text("cfg.yaml", "kubernetes:\n  enabled: false\n", &env).unwrap();
    assert!(!c.kubernetes.enabled);
    let env = env_of(&[("NODE_NAME", "n1")]);
    let c = Config::from_text("cfg.yaml", "kubernetes:\n  enabled: true\n", &env).unwrap();
    assert!(c.kubernetes.enabled);
    let c = Config::from_text("cfg.yaml", "kubernetes:\n  enabled: auto\n", &env).unwrap();
    assert!(!c.kubernetes.enabled);
}

#[test]
fn load_reads_a_file_and_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("nodedrift.yaml");
    std::fs::write(&path, "stateDir: /x\n").unwrap();
    let c = Config::load(Some(&path), &no_env).unwrap();
    assert_eq!(c.state_dir, PathBuf::from("/x"));
    assert_eq!(c.source.as_deref(), Some(path.as_path()));

    std::fs::write(&path, "stateDir: /x\nextra: 1\n").unwrap();
    let e = Config::load(Some(&path), &no_env).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}:2:1: extra: ", path.display())),
        "{e}"
    );

    let missing = tmp.path().join("missing.yaml");
    let e = Config::load(Some(&missing), &no_env).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    assert!(e.to_string().starts_with(&missing.display().to_string()));
    let e = Config::load(Some(tmp.path()), &no_env).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
}

#[test]
fn named_files_need_not_exist_at_load() {
    let c = load(
        "baselines: [/does/not/exist.yaml]\nendpoint:\n  url: https://x.example\n  tokenFile: /nope\n  caFile: /nope\n",
    )
    .unwrap();
    assert_eq!(c.baselines, [PathBuf::from("/does/not/exist.yaml")]);
}

#[test]
fn the_raw_config_round_trips() {
    let raw: RawConfig = serde_norway::from_str(EXAMPLE).unwrap();
    let text = serde_norway::to_string(&raw).unwrap();
    let again: RawConfig = serde_norway::from_str(&text).unwrap();
    assert_eq!(raw, again);
}

#[test]
fn snapshot_settings_and_their_bounds() {
    let c = load("snapshot:\n  keep: 2\n  maxMib: 1\n  minInterval: 30s\n  onSeverity: critical\n")
        .unwrap();
    assert_eq!(c.snapshot.keep, 2);
    assert_eq!(c.snapshot.max_bytes, 1 << 20);
    assert_eq!(c.snapshot.min_interval, Duration::from_secs(30));
    assert_eq!(
        c.snapshot.on_severity,
        Some(crate::baseline::Severity::Critical)
    );
    for (text, key) in [
        ("snapshot:\n  keep: 0\n", "snapshot.keep"),
        ("snapshot:\n  maxMib: 0\n", "snapshot.maxMib"),
        ("snapshot:\n  onSeverity: dire\n", "snapshot.onSeverity"),
    ] {
        let ((_, _, k), msg) = invalid(text);
        assert_eq!(k, key, "{text}: {msg}");
    }
}
