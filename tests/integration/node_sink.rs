//! End to end: `nodedrift run` (the real binary) reporting to its own Node through an
//! API-server double that checks method, path, content type and body of every request.

use std::time::Duration;

#[allow(dead_code)]
#[path = "../../agent/src/report/kube/tests/apiserver.rs"]
pub mod apiserver;

use apiserver::{ApiServer, NODE, Route, aks_node};

use crate::run::Agent;
use crate::util::prepared_host;

const PATIENCE: Duration = Duration::from_secs(60);
/// The kubelet's `--node-labels` in the aks-ubuntu-drifted fixture.
const REGISTERED_LABELS: &str = "kubernetes.azure.com/role=agent,agentpool=nodepool1,kubernetes.azure.com/agentpool=nodepool1,kubernetes.azure.com/cluster=MC_rg-aks_aks-prod_westeurope,kubernetes.azure.com/mode=system,kubernetes.azure.com/node-image-version=AKSUbuntu-2204gen2containerd-202501.12.0,kubernetes.azure.com/os-sku=Ubuntu,kubernetes.azure.com/kubelet-identity-client-id=00000000-0000-0000-0000-000000000000,kubernetes.azure.com/storageprofile=managed,kubernetes.azure.com/storagetier=Premium_LRS";

fn wait_until(what: &str, done: impl FnMut() -> bool) {
    crate::util::wait_until(what, PATIENCE, done);
}

/// A kubeconfig in `dir` for the API-server double (plain HTTP, a bearer token).
fn kubeconfig(api: &ApiServer, dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: http://{}\nusers:\n- name: t\n  user:\n    token: test-token\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: t\ncurrent-context: t\n",
            api.addr
        ),
    )
    .unwrap();
    path
}

/// What a live agent reports to, all in the test process: the API-server double serving its
/// Node, a CloudEvents receiver, and the environment that points the agent at both.
pub struct Sinks {
    /// Serves the double and the receiver; dropped last.
    rt: tokio::runtime::Runtime,
    pub api: ApiServer,
    pub receiver: crate::http_sink::receiver::Receiver,
    /// Holds the kubeconfig (and whatever else a test puts there).
    pub dir: tempfile::TempDir,
    pub env: Vec<(&'static str, String)>,
}

impl Sinks {
    pub fn start() -> Self {
        use crate::http_sink::receiver::{Mode, Receiver};
        let rt = tokio::runtime::Runtime::new().unwrap();
        let api = rt.block_on(ApiServer::start(Some(aks_node())));
        let receiver = rt.block_on(Receiver::start(Mode::Plain));
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = kubeconfig(&api, dir.path());
        let env = vec![
            ("NODE_NAME", NODE.to_owned()),
            ("KUBECONFIG", kubeconfig.to_str().unwrap().to_owned()),
            ("NODEDRIFT_ENDPOINT", receiver.url()),
        ];
        Self {
            rt,
            api,
            receiver,
            dir,
            env,
        }
    }

    /// The environment as the agent helpers take it.
    fn env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    /// Starts `nodedrift run` on `host` with `state` and `extra` arguments, reporting here, and
    /// waits until it is ready.
    pub fn start_agent(
        &self,
        host: &std::path::Path,
        state: tempfile::TempDir,
        extra: &[&str],
    ) -> Agent {
        let agent = Agent::start_with_state(host, state, extra, &self.env());
        agent.wait_ready();
        agent
    }

    /// The `nodedrift run` command [`Sinks::start_agent`] starts, for callers that spawn it
    /// themselves (another log filter, a wrapper).
    pub fn agent_command(
        &self,
        host: &std::path::Path,
        state: &std::path::Path,
        extra: &[&str],
    ) -> std::process::Command {
        Agent::command(host, state, extra, &self.env())
    }

    /// Takes the API-server double down: connections are refused until [`Sinks::api_up`].
    pub fn api_down(&mut self) {
        self.rt.block_on(self.api.down());
    }

    /// Serves the API-server double again, on the same address and with the same state.
    pub fn api_up(&mut self) {
        self.rt.block_on(self.api.up());
    }

    /// Accepted CloudEvents of `kind`, in arrival order.
    pub fn events(&self, kind: &str) -> Vec<nodedrift::report::cloudevents::CloudEvent> {
        crate::delivery::accepted(&self.receiver)
            .into_iter()
            .filter(|e| e.kind == kind)
            .collect()
    }
}

#[test]
fn the_agent_reports_drift_and_reboot_on_its_own_node() {
    let sinks = Sinks::start();
    let api = &sinks.api;
    let host = prepared_host("aks-ubuntu-drifted");
    let agent = sinks.start_agent(host.path(), tempfile::tempdir().unwrap(), &[]);
    wait_until("the NodeDrift condition and annotations", || {
        let w = api.world();
        w.condition("NodeDrift")
            .is_some_and(|c| c["status"] == "True")
            && w.annotation("nodedrift.dev/state").as_deref() == Some("Drifted")
    });
    {
        let w = api.world();
        let reboot = w
            .condition("RebootRequired")
            .expect("RebootRequired condition");
        assert_eq!(reboot["status"], "True", "{reboot:#}");
        assert!(
            w.annotation("nodedrift.dev/reboot-required-since")
                .is_some()
        );
        assert_eq!(
            w.annotation("nodedrift.dev/profile").as_deref(),
            Some("aks-ubuntu")
        );
        // The kubelet's own conditions are still there after the strategic merge patch.
        assert_eq!(w.condition("Ready").expect("Ready kept")["status"], "True");
    }
    wait_until("Events about the transitions", || {
        api.world().count(Route::CreateEvent) > 0
    });
    // The Node's cluster label differs from what the kubelet registered: a system-label finding.
    agent.wait_metrics("the system-label check", |m| {
        m.contains("nodedrift_rule_status{rule=\"node.system-labels-unchanged\",status=\"fail\"} 1")
    });
    // The Node is watched: the label put back by someone else is seen as it happens.
    api.edit_node(|n| {
        // Every system label as the kubelet registered it (--node-labels of the fixture).
        for kv in REGISTERED_LABELS.split(',') {
            let (k, v) = kv.split_once('=').unwrap();
            n["metadata"]["labels"][k] = serde_json::json!(v);
        }
    });
    agent.wait_metrics(
        "the system-label check passing after the label came back",
        |m| {
            m.contains(
                "nodedrift_rule_status{rule=\"node.system-labels-unchanged\",status=\"pass\"} 1",
            )
        },
    );
    assert!(api.world().count(Route::WatchNode) >= 1);
    // Kubelet v1.32.4 against API server v1.32.4: within the skew policy.
    let skew = |status: &str| {
        format!(
            "nodedrift_rule_status{{rule=\"kubelet.version-skew-supported\",status=\"{status}\"}} 1"
        )
    };
    agent.wait_metrics("the version-skew check", |m| m.contains(&skew("pass")));
    // A kubelet newer than the API server (installed by hand) is seen through the watch.
    api.edit_node(|n| {
        n["status"]["nodeInfo"]["kubeletVersion"] = serde_json::json!("v1.33.1");
    });
    agent.wait_metrics("the version-skew check failing", |m| {
        m.contains(&skew("fail"))
    });
    assert!(api.world().count(Route::Version) >= 1);
    api.assert_clean();
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn without_a_node_name_the_node_sink_is_off_and_the_rest_runs() {
    let host = prepared_host("kubeadm");
    let agent = Agent::start(host.path(), &[], &[]);
    agent.wait_ready();
    assert!(!agent.get("/metrics").1.contains("sink=\"kubernetes\""));
    assert_eq!(agent.terminate(), Some(0));
}
