//! The egress inspector through `nodedrift check --egress` (or `--probe`) against loopback
//! servers only: a plain TCP listener, a closed port, a listener that never answers, TLS
//! servers with a test CA the node trusts and one it does not, and a name under `.invalid`
//! (which never resolves, RFC 6761). The AKS profile's real endpoints are disabled by the test's baseline layer, and a
//! listener that is not in the list must see no connection.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::http_sink::receiver::Pki;
use crate::util;

/// A loopback listener that accepts in a thread and counts connections. With `tls`, it
/// completes a TLS handshake with the given certificate on each.
struct Server {
    port: u16,
    /// Peers of the accepted connections, in order.
    accepted: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Server {
    fn plain() -> Server {
        Self::start(None)
    }

    fn tls(pki: &Pki) -> Server {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = CertificateDer::pem_slice_iter(pki.server_cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        Self::start(Some(Arc::new(config)))
    }

    fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let peers = accepted.clone();
        std::thread::spawn(move || {
            loop {
                let Ok((mut stream, peer)) = listener.accept() else {
                    continue;
                };
                peers.lock().unwrap().push(peer);
                if let Some(config) = &tls {
                    let config = config.clone();
                    std::thread::spawn(move || {
                        let Ok(mut conn) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        while conn.is_handshaking() {
                            if conn.complete_io(&mut stream).is_err() {
                                return;
                            }
                        }
                        let _ = conn.complete_io(&mut stream);
                        let mut sink = [0u8; 64];
                        let _ = stream.read(&mut sink);
                    });
                }
            }
        });
        Server { port, accepted }
    }

    /// Connections accepted before one of our own: the listener accepts in order, so once
    /// ours is accepted every connection made before it has been too.
    fn connections_before_ours(&self) -> usize {
        let ours = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let me = ours.local_addr().unwrap();
        let mut at = None;
        util::wait_until(
            "the listener accepts our connection",
            std::time::Duration::from_secs(30),
            || {
                at = self.accepted.lock().unwrap().iter().position(|p| *p == me);
                at.is_some()
            },
        );
        at.unwrap()
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A host tree whose CA bundle holds `ca_pem`.
fn host_trusting(ca_pem: &str) -> tempfile::TempDir {
    let host = util::prepared_host("aks-ubuntu-clean");
    let certs = host.path().join("etc/ssl/certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("ca-certificates.crt"), ca_pem).unwrap();
    host
}

/// A baseline layer over the AKS profile: its real endpoints disabled or patched onto
/// loopback, then `extra` endpoints (YAML list items).
fn egress_layer(dir: &Path, patched_port: u16, extra: &str) -> std::path::PathBuf {
    let p = dir.join("egress.yaml");
    std::fs::write(
        &p,
        format!(
            "apiVersion: nodedrift.dev/v1\nkind: Baseline\nmetadata:\n  name: loopback\negress:\n\
             \x20 - {{ id: mcr, host: 127.0.0.1, port: {patched_port}, tls: false }}\n\
             \x20 - {{ id: management, disabled: true }}\n\
             \x20 - {{ id: login, disabled: true }}\n\
             \x20 - {{ id: packages, disabled: true }}\n\
             \x20 - {{ id: acs-mirror, disabled: true }}\n{extra}"
        ),
    )
    .unwrap();
    p
}

/// The JSON report of `check --profile aks-ubuntu --baseline LAYER extra...` on `host`.
fn check_with(host: &Path, layer: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "--profile",
        "aks-ubuntu",
        "--baseline",
        layer.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    util::check_json(host, &args).1
}

/// The egress findings of a report.
fn egress_findings(report: &serde_json::Value) -> Vec<&serde_json::Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["component"] == "egress")
        .collect()
}

/// `(status, evidence source)` of the egress finding of endpoint `id`.
fn outcome(report: &serde_json::Value, id: &str) -> (String, String) {
    let path = format!("egress.endpoints.{id}.reachable");
    let f = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path.as_str())
        .unwrap_or_else(|| panic!("no finding at {path}: {report:#}"));
    (
        f["status"].as_str().unwrap().to_owned(),
        f["evidence"]["source"].as_str().unwrap_or("").to_owned(),
    )
}

#[test]
fn probes_each_listed_endpoint_and_names_the_failing_stage() {
    let pki = Pki::new("egress");
    let other = Pki::new("stranger");
    let host = host_trusting(&pki.ca_pem);
    let dir = tempfile::tempdir().unwrap();

    let patched = Server::plain();
    let plain = Server::plain();
    let trusted = Server::tls(&pki);
    let untrusted = Server::tls(&other);
    let unlisted = Server::plain();
    // Accepted by the kernel, never read: the handshake waits for an answer that never comes.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let closed = closed_port();

    let extra = format!(
        "  - {{ id: plain, host: 127.0.0.1, port: {}, tls: false }}\n\
         \x20 - {{ id: trusted, host: localhost, port: {}, sni: localhost }}\n\
         \x20 - {{ id: untrusted, host: 127.0.0.1, port: {} }}\n\
         \x20 - {{ id: closed, host: 127.0.0.1, port: {closed}, tls: false }}\n\
         \x20 - {{ id: silent, host: 127.0.0.1, port: {silent_port}, tls: true }}\n\
         \x20 - {{ id: unresolvable, host: name.invalid, port: 443 }}\n",
        plain.port, trusted.port, untrusted.port,
    );
    let layer = egress_layer(dir.path(), patched.port, &extra);
    let report = check_with(host.path(), &layer, &["--egress", "--egress-timeout", "1s"]);

    let (status, how) = outcome(&report, "mcr");
    assert_eq!(status, "pass", "the patched AKS endpoint: {how}");
    assert_eq!(outcome(&report, "plain").0, "pass");
    let (status, how) = outcome(&report, "trusted");
    assert_eq!(status, "pass", "{how}");

    for (id, stage) in [
        ("closed", "connect"),
        ("silent", "timeout"),
        ("untrusted", "tls"),
        ("unresolvable", "dns"),
    ] {
        let (status, how) = outcome(&report, id);
        assert_eq!(status, "fail", "{id}: {how}");
        assert!(
            how.starts_with(&format!("probe failed at {stage}:")),
            "{id}: {how}"
        );
    }
    let egress = egress_findings(&report);
    assert_eq!(
        egress.len(),
        7,
        "one finding per listed endpoint: {egress:#?}"
    );
    assert!(egress.iter().all(|f| f["policy"] == "aks/egress"));
    assert!(
        egress
            .iter()
            .all(|f| !f["path"].as_str().unwrap().contains("management")),
        "a disabled endpoint is not probed"
    );

    assert_eq!(
        unlisted.connections_before_ours(),
        0,
        "an unlisted endpoint was contacted"
    );
    assert_eq!(patched.connections_before_ours(), 1);
    assert_eq!(plain.connections_before_ours(), 1);
    drop(silent);
}

/// A tree that is not the live host is not probed unless asked: nothing is contacted, and
/// the endpoints' reachability is unknown (it used to pass vacuously).
#[test]
fn without_the_egress_flag_nothing_is_contacted() {
    let host = util::prepared_host("aks-ubuntu-clean");
    let dir = tempfile::tempdir().unwrap();
    let listed = Server::plain();
    let layer = egress_layer(dir.path(), listed.port, "");
    let report = check_with(host.path(), &layer, &[]);
    let egress = egress_findings(&report);
    assert_eq!(egress.len(), 1, "{egress:#?}");
    assert_eq!(egress[0]["path"], "egress.endpoints.mcr.reachable");
    assert_eq!(egress[0]["status"], "unknown");
    assert!(
        egress[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("not probed: probes run on the live host"),
        "{egress:#?}"
    );
    assert_eq!(listed.connections_before_ours(), 0);
}

#[test]
fn probe_forces_egress_probes_and_no_probe_turns_them_off() {
    let host = util::prepared_host("aks-ubuntu-clean");
    let dir = tempfile::tempdir().unwrap();
    let listed = Server::plain();
    let layer = egress_layer(dir.path(), listed.port, "");
    let report = check_with(host.path(), &layer, &["--no-probe"]);
    assert_eq!(outcome(&report, "mcr").0, "unknown");
    assert_eq!(listed.connections_before_ours(), 0);

    let report = check_with(host.path(), &layer, &["--probe"]);
    assert_eq!(outcome(&report, "mcr").0, "pass");
    // Our first check connection, then the probe's.
    assert_eq!(listed.connections_before_ours(), 2);
}

#[test]
fn a_node_without_a_ca_bundle_cannot_call_a_tls_endpoint_reachable() {
    let pki = Pki::new("egress-nobundle");
    let host = util::prepared_host("aks-ubuntu-clean");
    let _ = std::fs::remove_file(host.path().join("etc/ssl/certs/ca-certificates.crt"));
    let dir = tempfile::tempdir().unwrap();
    let patched = Server::plain();
    let trusted = Server::tls(&pki);
    let extra = format!(
        "  - {{ id: trusted, host: localhost, port: {} }}\n",
        trusted.port
    );
    let layer = egress_layer(dir.path(), patched.port, &extra);
    let report = check_with(host.path(), &layer, &["--egress"]);
    assert_eq!(outcome(&report, "trusted").0, "unknown");
    assert_eq!(outcome(&report, "mcr").0, "pass");
}
