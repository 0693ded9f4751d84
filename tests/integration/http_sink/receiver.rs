//! A CloudEvents receiver in the test process: hyper 1 over tokio-rustls (or plain TCP), with a
//! test PKI made by rcgen. It records every request (method, path, headers, body, arrival
//! time, the answer given) and answers from a queue of faults, one per request, then 200.
//!
//! Self-contained (no helpers from the rest of the suite) so a benchmark can include it with
//! `#[path = "../tests/integration/http_sink/receiver.rs"] mod receiver;`.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use nodedrift::report::cloudevents::CloudEvent;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// How long any wait of the tests may take before it is declared a hang.
pub const HANG_GUARD: Duration = Duration::from_secs(30);

/// A CA and what it signed, as PEM.
pub struct Pki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl Pki {
    /// A fresh CA, a server certificate for `127.0.0.1` and `localhost`, a client certificate.
    pub fn new(name: &str) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

        let server_key = KeyPair::generate().unwrap();
        let mut server =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server
            .distinguished_name
            .push(DnType::CommonName, "receiver");
        let server_cert = server.signed_by(&server_key, &ca).unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        client.distinguished_name.push(DnType::CommonName, "node-a");
        let client_cert = client.signed_by(&client_key, &ca).unwrap();

        Pki {
            ca_pem: ca.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }
}

/// What the receiver does with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer this status with this body.
    Status(u16, &'static str),
    /// Answer this status with a `Retry-After` header.
    RetryAfter(u16, &'static str),
    /// Drop the connection without answering.
    Reset,
    /// Answer 200, but only after this long (beyond the client's timeout).
    Slow(Duration),
    /// Answer 200 with a body that is not JSON.
    Garbage200,
}

/// What the receiver answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Status(u16),
    Reset,
    Slow,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
    pub answer: Answer,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as a CloudEvents JSON batch.
    pub fn events(&self) -> Vec<CloudEvent> {
        serde_json::from_slice(&self.body).expect("the body is a JSON array of CloudEvents")
    }

    pub fn ids(&self) -> Vec<String> {
        self.events().into_iter().map(|e| e.id).collect()
    }

    /// Whether the receiver accepted this request with a 2xx the client could see.
    pub fn accepted(&self) -> bool {
        matches!(self.answer, Answer::Status(s) if (200..300).contains(&s))
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    faults: VecDeque<Fault>,
    handshake_failures: usize,
    /// Answer 413 to batches with more events than this.
    max_events: Option<usize>,
}

/// The receiver's records, shareable across threads.
#[derive(Clone)]
pub struct Records(Arc<Mutex<State>>);

impl Records {
    pub fn requests(&self) -> Vec<Recorded> {
        self.0.lock().unwrap().requests.clone()
    }
}

/// How the receiver speaks.
pub enum Mode<'a> {
    Plain,
    Tls(&'a Pki),
    /// TLS that requires a client certificate signed by the PKI's CA.
    MutualTls(&'a Pki),
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    https: bool,
    state: Arc<Mutex<State>>,
    changes: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start(mode: Mode<'_>) -> Receiver {
        let acceptor = match mode {
            Mode::Plain => None,
            Mode::Tls(pki) => Some(acceptor(pki, false)),
            Mode::MutualTls(pki) => Some(acceptor(pki, true)),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let (changes, _) = watch::channel(0u64);
        let https = acceptor.is_some();
        let task = tokio::spawn({
            let state = state.clone();
            let changes = changes.clone();
            async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let state = state.clone();
                    let changes = changes.clone();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        match acceptor {
                            Some(a) => match a.accept(tcp).await {
                                Ok(tls) => serve(TokioIo::new(tls), state, changes).await,
                                Err(_) => {
                                    state.lock().unwrap().handshake_failures += 1;
                                    changes.send_modify(|v| *v += 1);
                                }
                            },
                            None => serve(TokioIo::new(tcp), state, changes).await,
                        }
                    });
                }
            }
        });
        Receiver {
            addr,
            https,
            state,
            changes,
            task,
        }
    }

    /// `https://127.0.0.1:<port>/events` (or `http://`).
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}/events", self.addr)
    }

    /// Queues answers for the next requests, in order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().faults.extend(faults);
    }

    /// Drops the faults not answered yet: from now on every request gets 200.
    pub fn clear_faults(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    /// From now on, answer 413 to batches of more than `max` events.
    pub fn limit_events(&self, max: usize) {
        self.state.lock().unwrap().max_events = Some(max);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// A handle on the records that outlives borrows of the receiver (for other threads).
    pub fn records(&self) -> Records {
        Records(self.state.clone())
    }

    pub fn handshake_failures(&self) -> usize {
        self.state.lock().unwrap().handshake_failures
    }

    /// Waits (at most [`HANG_GUARD`]) until `n` requests have been received.
    pub async fn wait_requests(&self, n: usize) -> Vec<Recorded> {
        self.wait_for(|s| s.requests.len() >= n).await;
        self.requests()
    }

    /// Waits (at most [`HANG_GUARD`]) until `n` TLS handshakes have failed.
    pub async fn wait_handshake_failures(&self, n: usize) {
        self.wait_for(|s| s.handshake_failures >= n).await;
    }

    async fn wait_for(&self, cond: impl Fn(&State) -> bool) {
        let mut rx = self.changes.subscribe();
        tokio::time::timeout(HANG_GUARD, async {
            loop {
                if cond(&self.state.lock().unwrap()) {
                    return;
                }
                rx.changed().await.unwrap();
            }
        })
        .await
        .expect("receiver condition within the hang guard");
    }
}

fn acceptor(pki: &Pki, require_client_cert: bool) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_slice_iter(pki.server_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let config = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
            roots.add(ca.unwrap()).unwrap();
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .unwrap()
    } else {
        builder
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap()
    };
    TlsAcceptor::from(Arc::new(config))
}

async fn serve<I>(io: TokioIo<I>, state: Arc<Mutex<State>>, changes: watch::Sender<u64>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        let changes = changes.clone();
        async move { handle(req, state, changes).await }
    });
    // A dropped connection (the Reset fault) ends here with an error: that is the point.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

/// The service's error: returning it makes hyper drop the connection without an answer.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    changes: watch::Sender<u64>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let (fault, max_events) = {
        let mut s = state.lock().unwrap();
        (s.faults.pop_front(), s.max_events)
    };
    let too_many = max_events.is_some_and(|max| {
        serde_json::from_slice::<Vec<serde_json::Value>>(&body).is_ok_and(|v| v.len() > max)
    });
    let fault = match fault {
        Some(f) => Some(f),
        None if too_many => Some(Fault::Status(413, "batch too large")),
        None => None,
    };
    let answer = match &fault {
        None | Some(Fault::Garbage200) => Answer::Status(200),
        Some(Fault::Status(code, _)) | Some(Fault::RetryAfter(code, _)) => Answer::Status(*code),
        Some(Fault::Reset) => Answer::Reset,
        Some(Fault::Slow(_)) => Answer::Slow,
    };
    state.lock().unwrap().requests.push(Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        at: Instant::now(),
        answer,
    });
    changes.send_modify(|v| *v += 1);
    let response = |code: u16, body: &'static str| {
        Response::builder()
            .status(code)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    match fault {
        None => Ok(response(200, "")),
        Some(Fault::Garbage200) => Ok(response(200, "\u{0}\u{7f}<html>not json at all")),
        Some(Fault::Status(code, body)) => Ok(response(code, body)),
        Some(Fault::RetryAfter(code, after)) => {
            let mut r = response(code, "slow down");
            r.headers_mut().insert(
                "retry-after",
                hyper::header::HeaderValue::from_static(after),
            );
            Ok(r)
        }
        Some(Fault::Reset) => Err(Dropped),
        Some(Fault::Slow(d)) => {
            tokio::time::sleep(d).await;
            Ok(response(200, ""))
        }
    }
}
