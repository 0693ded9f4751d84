//! Inspectors: read the host through [`HostRoot`] and return [`ComponentFacts`].
//!
//! One module per component. An inspector never judges (that is the baseline's job) and never
//! fails the run: whatever it cannot see becomes an `unknown` marker with the reason, and a
//! panicking inspector is caught and reported as unknown as a whole.
//! Every component's facts are redacted ([`crate::redact::json`]) before anyone sees them.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::facts::{ComponentFacts, Facts};
use crate::host::HostRoot;

pub mod cni;
pub mod containerd;
pub mod egress;
pub mod health;
pub mod kube_proxy;
pub mod kubelet;
pub mod os;
pub mod patches;
pub mod process;
pub mod reboot;
pub mod sysctl;
#[cfg(test)]
pub(crate) mod test_root;

pub use process::{Process, ProcessTable};

/// What an inspector may use.
#[derive(Debug)]
pub struct Context<'a> {
    pub host: &'a HostRoot,
    pub procs: &'a ProcessTable,
    pub options: &'a Options,
}

/// Settings that shape inspection (not judgement).
#[derive(Debug, Clone)]
pub struct Options {
    /// Upper bound for talking to a local daemon (containerd's API).
    pub api_timeout: Duration,
    /// Sysctl keys the baseline names, read from /proc/sys even when nothing persists them.
    pub sysctl_keys: BTreeSet<String>,
    /// Override for the containerd socket (host path); default from its config or
    /// /run/containerd/containerd.sock.
    pub containerd_socket: Option<std::path::PathBuf>,
    /// The baseline's required egress endpoints: the only ones the egress inspector contacts.
    pub egress: Vec<crate::baseline::EgressEndpoint>,
    /// Probe them at all. Off by default: `check` probes on the live host (`/`), with
    /// `--probe` or `--egress`, never with `--no-probe`; `run` unless the config says
    /// `egress.enabled: false`. Not probed, each endpoint's reachability is unknown.
    pub egress_probe: bool,
    /// Upper bound of each probe stage (resolve, connect, handshake).
    pub egress_timeout: Duration,
    /// Probe the components' health endpoints (kubelet, kube-proxy, node agents). The probes
    /// go out of nodedrift's own network namespace, the node's only on the live host: `run`
    /// and `check` probe when the host root is the live one (`/`, or the pod's
    /// `NODEDRIFT_HOST_ROOT`), `check` also with `--probe`; off by default.
    pub health_probe: bool,
    /// Upper bound of one health probe (connect, request and response together).
    pub health_timeout: Duration,
}

/// Default [`Options::health_timeout`].
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Default [`Options::egress_timeout`].
pub const DEFAULT_EGRESS_TIMEOUT: Duration = Duration::from_secs(3);

impl Default for Options {
    fn default() -> Self {
        Self {
            api_timeout: Duration::from_secs(2),
            sysctl_keys: BTreeSet::new(),
            containerd_socket: None,
            egress: Vec::new(),
            egress_probe: false,
            egress_timeout: DEFAULT_EGRESS_TIMEOUT,
            health_probe: false,
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
        }
    }
}

/// One inspectable component.
#[derive(Debug, Clone, Copy)]
pub struct Component {
    pub name: &'static str,
    pub inspect: fn(&Context<'_>) -> ComponentFacts,
}

/// Every component, in report order.
pub const COMPONENTS: &[Component] = &[
    Component {
        name: kubelet::NAME,
        inspect: kubelet::inspect,
    },
    Component {
        name: containerd::NAME,
        inspect: containerd::inspect,
    },
    Component {
        name: cni::NAME,
        inspect: cni::inspect,
    },
    Component {
        name: kube_proxy::NAME,
        inspect: kube_proxy::inspect,
    },
    Component {
        name: sysctl::NAME,
        inspect: sysctl::inspect,
    },
    Component {
        name: reboot::NAME,
        inspect: reboot::inspect,
    },
    Component {
        name: os::NAME,
        inspect: os::inspect,
    },
    Component {
        name: patches::NAME,
        inspect: patches::inspect,
    },
    Component {
        name: egress::NAME,
        inspect: egress::inspect,
    },
    Component {
        name: health::NAME,
        inspect: health::inspect,
    },
];

/// Names of all components.
pub fn names() -> impl Iterator<Item = &'static str> {
    COMPONENTS.iter().map(|c| c.name)
}

/// Runs the selected inspectors (all when `only` is empty) concurrently, one thread each:
/// a slow one (a daemon that does not answer) costs its own timeout, not the sum.
pub fn inspect(host: &HostRoot, options: &Options, only: &[&str]) -> Facts {
    let procs = ProcessTable::scan(host);
    let ctx = Context {
        host,
        procs: &procs,
        options,
    };
    let selected: Vec<&Component> = COMPONENTS
        .iter()
        .filter(|c| only.is_empty() || only.contains(&c.name))
        .collect();
    let mut facts = Facts::default();
    std::thread::scope(|s| {
        let handles: Vec<_> = selected
            .iter()
            .map(|c| (c.name, s.spawn(|| (c.inspect)(&ctx))))
            .collect();
        for (name, h) in handles {
            let mut cf = h.join().unwrap_or_else(|_| {
                tracing::error!(
                    component = name,
                    "inspector panicked; its facts are unknown"
                );
                let mut cf = ComponentFacts::new(name);
                cf.unknown(&[], "the inspector failed internally (panic); see the log");
                cf
            });
            // Facts reach every output (check, the sinks, snapshots): secrets an inspector
            // read (a `--token` flag, a kubeconfig token, an env file's password) are replaced
            // here, once, whatever the inspector did.
            crate::redact::json(&mut cf.facts);
            facts.insert(cf);
        }
    });
    facts
}
