//! The egress inspector: can the node reach the endpoints its platform requires?
//!
//! It probes the baseline's `egress` list and nothing else (the list is in
//! [`Options::egress`](super::Options)); an empty list or probing turned off contacts no one.
//! Each endpoint is probed in three stages, each bounded by [`Options::egress_timeout`]:
//!
//! 1. **dns**: the name resolved by the system resolver (on a thread of its own, because
//!    `getaddrinfo` has no timeout; a resolver that hangs leaves that thread behind, not us);
//! 2. **connect**: a TCP connection to each resolved address in turn, until one accepts;
//! 3. **tls** (`tls: true`): a TLS handshake whose certificate is verified against the node's
//!    own CA bundle, read through [`HostRoot`] (the Debian/Ubuntu and the Azure Linux/RHEL
//!    paths). A node with no readable bundle cannot verify: its TLS endpoints are unknown,
//!    never "reachable" on an unverified handshake.
//!
//! A probe that runs out of time in any stage fails at stage `timeout`. Probes run on at most
//! [`CONCURRENCY`] threads. The daemon probes on its full re-check only (every `fullRescan`),
//! never on the partial re-checks file events and process changes trigger.
//!
//! Facts: `egress.probing` (bool), and per endpoint id `egress.endpoints.<id>` with `host`,
//! `port`, `tls`, `probed`, `reachable` (unknown, [`NOT_PROBED`], when probing is off), `stage` (`dns`, `connect`, `timeout`, `tls`; null
//! when reachable), `error`, `address` (the one connected to) and `latencyMs` (the whole probe).
//! A finding's evidence `source` says `probe failed at <stage>: <error>`.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::baseline::EgressEndpoint;
use crate::facts::ComponentFacts;
use crate::host::HostRoot;

use super::Context;

pub const NAME: &str = "egress";

/// The reachability of every endpoint when probing is off.
pub const NOT_PROBED: &str = "not probed: probes run on the live host (run, or check on /; \
     --probe or --egress forces them; the daemon's egress.enabled: false turns them off)";

/// Probes running at once: enough that a list of a dozen endpoints that all time out costs a
/// few timeouts, not a dozen.
pub const CONCURRENCY: usize = 4;

/// Where distributions keep the CA bundle, first readable one wins.
pub const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
];

/// Upper bound on a CA bundle's size.
const CA_BUNDLE_LIMIT: u64 = 4 << 20;

/// The stage a probe failed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Dns,
    Connect,
    Timeout,
    Tls,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Tls => "tls",
        }
    }
}

/// The result of one probe.
#[derive(Debug, Clone)]
pub struct Probe {
    /// `None`: reachable.
    pub failure: Option<(Stage, String)>,
    pub address: Option<SocketAddr>,
    pub latency: Duration,
}

pub fn inspect(ctx: &Context<'_>) -> ComponentFacts {
    let mut cf = ComponentFacts::new(NAME);
    let opts = ctx.options;
    cf.set(&["probing"], opts.egress_probe);
    let mut endpoints = serde_json::Map::new();
    for e in &opts.egress {
        endpoints.insert(
            e.id.clone(),
            json!({"host": e.host, "port": e.port, "tls": e.tls, "probed": false}),
        );
    }
    cf.set(&["endpoints"], Value::Object(endpoints));
    if !opts.egress_probe {
        for e in &opts.egress {
            cf.unknown(&["endpoints", &e.id, "reachable"], NOT_PROBED);
        }
        return cf;
    }
    if opts.egress.is_empty() {
        return cf;
    }
    let trust = if opts.egress.iter().any(|e| e.tls) {
        Some(load_roots(ctx.host))
    } else {
        None
    };
    let results = probe_all(&opts.egress, trust.as_ref(), opts.egress_timeout);
    for (e, r) in opts.egress.iter().zip(results) {
        let Some(r) = r else {
            cf.unknown(&["endpoints", &e.id], "the probe failed internally (panic)");
            continue;
        };
        if let (Some(Err(reason)), true) = (&trust, e.tls)
            && r.failure.as_ref().is_some_and(|f| f.0 == Stage::Tls)
        {
            cf.set(&["endpoints", &e.id, "probed"], true);
            cf.unknown(&["endpoints", &e.id, "reachable"], reason);
            continue;
        }
        let base = ["endpoints", e.id.as_str()];
        let at = |k: &'static str| [base[0], base[1], k];
        cf.set(&at("probed"), true);
        cf.set(&at("reachable"), r.failure.is_none());
        cf.set(&at("stage"), r.failure.as_ref().map(|f| f.0.as_str()));
        cf.set(&at("error"), r.failure.as_ref().map(|f| f.1.clone()));
        cf.set(&at("address"), r.address.map(|a| a.to_string()));
        cf.set(
            &at("latencyMs"),
            u64::try_from(r.latency.as_millis()).unwrap_or(u64::MAX),
        );
        // Findings show the evidence, not the facts: the stage and error travel in it.
        let how = match &r.failure {
            None => format!("probe of {}:{}", e.host, e.port),
            Some((stage, error)) => format!("probe failed at {}: {error}", stage.as_str()),
        };
        cf.evidence(&base, crate::facts::Evidence::default().with_source(how));
    }
    cf
}

type Roots = Result<Arc<rustls::ClientConfig>, String>;

/// The TLS client configuration trusting the node's CA bundle.
fn load_roots(host: &HostRoot) -> Roots {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut last = String::from("no CA bundle found");
    for path in CA_BUNDLES {
        let pem = match host.read(Path::new(path), CA_BUNDLE_LIMIT) {
            Ok(p) => p,
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let mut roots = rustls::RootCertStore::empty();
        for der in CertificateDer::pem_slice_iter(&pem).flatten() {
            // A certificate the verifier cannot use is skipped, as TLS libraries do.
            let _ = roots.add(der);
        }
        if roots.is_empty() {
            last = format!("{path}: no usable CA certificate in it");
            continue;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        return rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
            .map_err(|e| e.to_string());
    }
    Err(format!(
        "cannot verify TLS endpoints without the node's CA bundle ({})",
        last
    ))
}

/// Probes every endpoint on at most [`CONCURRENCY`] threads; results in the list's order
/// (`None` for a probe that panicked).
fn probe_all(
    list: &[EgressEndpoint],
    trust: Option<&Roots>,
    timeout: Duration,
) -> Vec<Option<Probe>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Probe>>> = Mutex::new(vec![None; list.len()]);
    let config = trust.and_then(|t| t.as_ref().ok());
    std::thread::scope(|s| {
        for _ in 0..CONCURRENCY.min(list.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(e) = list.get(i) else { break };
                    let r = probe(e, config, timeout);
                    if let Ok(mut v) = results.lock() {
                        v[i] = Some(r);
                    }
                }
            });
        }
    });
    results.into_inner().unwrap_or_default()
}

/// Probes one endpoint. `config` is `None` when the node has no usable CA bundle: a TLS
/// endpoint is then probed up to its TCP connection and fails at `tls`.
pub fn probe(
    e: &EgressEndpoint,
    config: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Probe {
    let started = Instant::now();
    let mut address = None;
    let failure = stages(e, config, timeout, &mut address).err();
    Probe {
        failure,
        address,
        latency: started.elapsed(),
    }
}

fn stages(
    e: &EgressEndpoint,
    config: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
    address: &mut Option<SocketAddr>,
) -> Result<(), (Stage, String)> {
    let addrs = resolve(&e.host, e.port, timeout)?;
    let mut stream = connect(&addrs, timeout, address)?;
    if !e.tls {
        return Ok(());
    }
    let Some(config) = config else {
        return Err((Stage::Tls, "no CA bundle to verify the server with".into()));
    };
    handshake(
        &mut stream,
        config,
        e.sni.as_deref().unwrap_or(&e.host),
        timeout,
    )
}

fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, (Stage, String)> {
    let (tx, rx) = mpsc::channel();
    let target = (host.to_owned(), port);
    std::thread::Builder::new()
        .name("egress-dns".into())
        .spawn(move || {
            let _ = tx.send(target.to_socket_addrs().map(Iterator::collect::<Vec<_>>));
        })
        .map_err(|e| (Stage::Dns, format!("cannot start the resolver thread: {e}")))?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err((Stage::Dns, format!("{host} has no address"))),
        Ok(Err(e)) => Err((Stage::Dns, format!("{host}: {e}"))),
        Err(mpsc::RecvTimeoutError::Timeout) => Err((
            Stage::Timeout,
            format!("resolving {host} took longer than {timeout:?}"),
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err((Stage::Dns, format!("the resolver of {host} failed")))
        }
    }
}

fn connect(
    addrs: &[SocketAddr],
    timeout: Duration,
    address: &mut Option<SocketAddr>,
) -> Result<TcpStream, (Stage, String)> {
    let mut last = (Stage::Connect, "no address".to_owned());
    for a in addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                *address = Some(*a);
                return Ok(s);
            }
            Err(e) if is_timeout(&e) => {
                last = (Stage::Timeout, format!("connecting to {a}: {e}"));
            }
            Err(e) => last = (Stage::Connect, format!("connecting to {a}: {e}")),
        }
    }
    Err(last)
}

fn handshake(
    stream: &mut TcpStream,
    config: &Arc<rustls::ClientConfig>,
    name: &str,
    timeout: Duration,
) -> Result<(), (Stage, String)> {
    let tls = |m: String| (Stage::Tls, m);
    let server = rustls::pki_types::ServerName::try_from(name.to_owned())
        .map_err(|e| tls(format!("{name:?} is not a valid TLS server name: {e}")))?;
    let mut conn =
        rustls::ClientConnection::new(config.clone(), server).map_err(|e| tls(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err((
                Stage::Timeout,
                format!("TLS handshake took longer than {timeout:?}"),
            ));
        }
        let io_err = |e: io::Error| {
            if is_timeout(&e) {
                (
                    Stage::Timeout,
                    format!("TLS handshake took longer than {timeout:?}"),
                )
            } else {
                tls(e.to_string())
            }
        };
        stream.set_read_timeout(Some(left)).map_err(io_err)?;
        stream.set_write_timeout(Some(left)).map_err(io_err)?;
        match conn.complete_io(stream) {
            Ok((0, 0)) if conn.is_handshaking() => {
                return Err(tls(
                    "the server closed the connection during the handshake".into()
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}
