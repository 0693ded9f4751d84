//! Secrets planted where nodedrift reads (command lines, environment files, kubeconfigs,
//! containerd's registry auth, watched files changed while it runs) never appear in anything
//! it writes: its log (at debug level), its metrics, the CloudEvents it delivers, the requests
//! it makes to the API server (annotations, conditions, Events), and `check` and `inspect`.

use std::path::Path;

use crate::delivery::accepted;
use crate::node_sink::Sinks;
use crate::run::Agent;
use crate::util::{nodedrift, prepared_host};

/// Every planted secret; none may appear in any output.
const SECRETS: &[&str] = &[
    "nd-secret-cmdline-1a2b",
    "nd-secret-envfile-3c4d",
    "nd-secret-kubeconfig-5e6f",
    "nd-secret-registry-7a8b",
    "nd-secret-bearer-9c0d",
    "nd-secret-watched-e1f2",
    "nd-secret-flags-a3b4",
    "nd-secret-aad-c5d6",
];

fn append(root: &Path, rel: &str, text: &str) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(root.join(rel))
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn replace(root: &Path, rel: &str, from: &str, to: &str) {
    let p = root.join(rel);
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains(from), "{rel}: {from:?} not found");
    std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
}

/// Plants the secrets the agent finds when it starts.
fn plant(root: &Path) {
    // The kubelet's command line, as /proc shows it.
    append(
        root,
        "proc/1201/cmdline",
        "--token=nd-secret-cmdline-1a2b\0",
    );
    append(
        root,
        "etc/default/kubelet",
        "AZURE_CLIENT_SECRET=nd-secret-envfile-3c4d\n",
    );
    replace(
        root,
        "var/lib/kubelet/kubeconfig",
        "    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem\n",
        "    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem\n    token: nd-secret-kubeconfig-5e6f\n",
    );
    replace(
        root,
        "etc/containerd/config.toml",
        "  [plugins.\"io.containerd.grpc.v1.cri\".registry.headers]\n",
        "  [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"private.example.com\".auth]\n    username = \"puller\"\n    password = \"nd-secret-registry-7a8b\"\n  [plugins.\"io.containerd.grpc.v1.cri\".registry.headers]\n",
    );
    replace(
        root,
        "etc/default/kubeletconfig.json",
        "    \"readOnlyPort\": 10255,\n",
        "    \"readOnlyPort\": 10255,\n    \"staticPodURLHeader\": {\"Authorization\": [\"Bearer nd-secret-bearer-9c0d\"]},\n",
    );
    std::fs::create_dir_all(root.join("etc/kubernetes")).unwrap();
    std::fs::write(
        root.join("etc/kubernetes/azure.json"),
        "{\"cloud\": \"AzurePublicCloud\", \"aadClientId\": \"msi\", \"aadClientSecret\": \"nd-secret-aad-c5d6\"}\n",
    )
    .unwrap();
}

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        if let Some(at) = text.find(s) {
            let from = text[..at]
                .char_indices()
                .rev()
                .nth(200)
                .map_or(0, |(i, _)| i);
            panic!(
                "{what} contains the secret {s}: …{}…",
                &text[from..(at + s.len()).min(text.len())]
            );
        }
    }
}

#[test]
fn planted_secrets_never_reach_any_output() {
    let sinks = Sinks::start();
    let (api, receiver) = (&sinks.api, &sinks.receiver);
    let host = prepared_host("aks-ubuntu-drifted");
    plant(host.path());

    let state = tempfile::tempdir().unwrap();
    let agent_cmd = sinks.agent_command(host.path(), state.path(), &[]);
    // The most talkative log there is.
    let agent = Agent::spawn_logging(agent_cmd, state, "nodedrift=trace");
    agent.wait_ready();
    crate::util::wait_until("a delivery", std::time::Duration::from_secs(60), || {
        !accepted(receiver).is_empty()
    });

    // Changes while it runs: a watched sysctl file gains a secret and a setting, and the
    // kubelet's flags gain a password.
    append(
        host.path(),
        "etc/sysctl.d/99-custom.conf",
        "# password=nd-secret-watched-e1f2\nnet.ipv4.tcp_syncookies = 0\n",
    );
    replace(
        host.path(),
        "etc/default/kubelet",
        "KUBELET_FLAGS=",
        "KUBELET_FLAGS=--password=nd-secret-flags-a3b4 ",
    );
    crate::util::wait_until(
        "the watched changes reported",
        std::time::Duration::from_secs(60),
        || {
            let events = accepted(receiver);
            ["/etc/sysctl.d/99-custom.conf", "/etc/default/kubelet"]
                .iter()
                .all(|p| {
                    events
                        .iter()
                        .any(|e| e.subject.as_deref().is_some_and(|s| s.ends_with(p)))
                })
        },
    );

    let (_, metrics) = agent.get("/metrics");
    assert_clean("/metrics", &metrics);
    let events = serde_json::to_string(&accepted(receiver)).unwrap();
    assert_clean("the CloudEvents", &events);
    {
        let w = api.world();
        let bodies: Vec<&serde_json::Value> = w.requests.iter().map(|r| &r.body).collect();
        assert_clean("the API requests", &serde_json::to_string(&bodies).unwrap());
        assert_clean("the Node", &serde_json::to_string(&w.node).unwrap());
        assert_clean("the Events", &serde_json::to_string(&w.events).unwrap());
        assert!(!w.events.is_empty(), "Events were written");
    }
    let log = agent.log.lock().unwrap().clone();
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "{log}");
    assert_clean("the agent's log", &log);
    drop(agent);

    for args in [
        &["check", "--format", "json"][..],
        &["check"][..],
        &["inspect"][..],
    ] {
        let out = nodedrift()
            .args(args)
            .arg("--host-root")
            .arg(host.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.len() > 100, "{args:?}: {text}");
        assert_clean(&format!("nodedrift {}", args.join(" ")), &text);
    }
}
