//! The central-endpoint sink of `nodedrift run`: delivers CloudEvents from the durable outbox
//! to one HTTP(S) endpoint, at least once, as JSON batches.
//!
//! # Wire format
//! `POST <url>` with `Content-Type: application/cloudevents-batch+json` and a JSON array of
//! structured-mode events as the body (the CloudEvents JSON batch format), optionally
//! `Authorization: Bearer <token>`. Redirects are not followed (a redirect would carry the
//! token to another place); a 3xx counts as a refusal. `HTTPS_PROXY`/`NO_PROXY` from the
//! environment are honoured.
//!
//! # Delivery
//! Events stay in the [`Outbox`] until the endpoint answers 2xx for the batch holding them;
//! only then are they acknowledged. A crash between the 2xx and the acknowledgement sends them
//! again, with the same ids (`CloudEvent` ids are stable), so the receiver de-duplicates by
//! `source` + `id`. One batch is in flight at a time, oldest first.
//! - **2xx**: acknowledged; the response body is ignored (status decides, garbage is fine).
//! - **408, 429, 5xx, connection errors, TLS errors, timeouts**: retried after a full-jitter
//!   exponential backoff ([`Backoff`]: base [`BACKOFF_BASE`], cap [`BACKOFF_CAP`]). When
//!   the server sent `Retry-After` (seconds or HTTP-date, at most [`RETRY_AFTER_MAX`]) the
//!   wait is the larger of it and the backoff: never sooner than asked, and no hot loop on a
//!   server that keeps answering `Retry-After: 0`. The batch is peeked again from the outbox,
//!   so a retry carries the same events (plus newer ones if the batch was not full).
//! - **413**: the batch is split in halves, each sent on its own; a single event still
//!   answered 413 is dead-lettered.
//! - **401**: the token was stale or refused; the token file is re-read and the batch retried
//!   with the same backoff (projected tokens rotate: dead-lettering on a rotation race would
//!   lose findings). A token that stays refused keeps events in the outbox, whose bound and
//!   overflow policy then apply, and the failures are counted as `token_unavailable`.
//! - **any other status** (other 4xx including 403, 3xx): the batch is dead-lettered
//!   at once, with one ERROR line giving the status and at most [`BODY_EXCERPT_CHARS`]
//!   characters of the body, and the sink moves on: a refused batch never loops.
//!
//! A response body is read up to [`MAX_RESPONSE_BODY`] bytes and the rest dropped.
//!
//! # Never blocking the daemon
//! [`HttpSink::run`] is meant to be spawned as its own task; the daemon only pushes events to
//! the outbox and pokes the `wake` [`Notify`]. Each attempt is bounded by the configured
//! timeout (connect, TLS, request and response together), with a hang guard of
//! [`HANG_GUARD`] on top. Cancellation ends waits (idle, backoff) at once; an attempt already
//! in flight is let finish (at most the timeout) so its outcome is recorded rather than sent
//! again on the next start.
//!
//! # Latency
//! The path from `wake.notify_one()` to the request has no fixed sleep: the idle wait ends on
//! the notification, the outbox is peeked, the batch is sent. Use `notify_one` (it stores a
//! permit when the sink is busy; `notify_waiters` would be lost). After a delivery the outbox
//! is peeked again immediately, so a burst drains batch after batch; the sink sleeps only when
//! the outbox is empty (woken by `wake`, or every `poll_interval` as a safety net) or while
//! backing off.
//!
//! # Bearer token
//! Read from `token_file` before each send; read again only when the file changed (device,
//! inode, size or mtime: the kubelet rotates a projected token by swapping a symlink to a new
//! file) or the copy is older than [`TOKEN_REREAD_INTERVAL`]. A missing, empty or unreadable
//! file means no request is sent: the batch waits, logged once per change of the problem,
//! re-checked at least every [`TOKEN_RECHECK_INTERVAL`]. A 401 makes the next send re-read the
//! file. The token is never logged.
//!
//! # TLS
//! rustls with the ring provider (installed as the process default if none is). Without
//! `ca_file` the server is verified against the system's trust store (rustls-platform-verifier:
//! on Linux the PEM bundle found via `SSL_CERT_FILE`/`SSL_CERT_DIR` or the usual
//! `/etc/ssl/certs` paths, read from disk once at construction, no network); a system with no
//! CA certificates at all is a construction error. With `ca_file`, **only** the certificates
//! in that PEM bundle are trusted (a private CA must not widen into "any public CA too", and
//! the system store must not be required). `client_cert` + `client_key` (PEM; a PKCS#8,
//! PKCS#1 or SEC1 key) enable mTLS; they are read once, at construction.
//!
//! # Plain HTTP
//! `http://` is accepted (a collector on the node, such as Vector or an OpenTelemetry
//! collector), with a WARN at startup saying the events travel unencrypted. A bearer token over
//! plain HTTP is refused unless the host is loopback (`localhost`, 127.0.0.0/8, `::1`), and TLS
//! options with an `http://` URL are refused as a configuration mistake.

mod metrics;
mod retry;
mod token;

pub use metrics::{FailureReason, SinkCounters, SinkMetrics};
pub use retry::{BACKOFF_BASE, BACKOFF_CAP, Backoff, RETRY_AFTER_MAX, parse_retry_after};
pub use token::{REREAD_INTERVAL as TOKEN_REREAD_INTERVAL, TokenProblem};

use std::error::Error as StdError;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::report::cloudevents::{BATCH_CONTENT_TYPE, CloudEvent};
use token::TokenFile;

/// Default bound on one attempt (connect, TLS, request, response). Long enough for a receiver
/// across a region, short enough that a hung endpoint is noticed within a scan interval.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default largest batch. Events are a few hundred bytes to a few KiB, so a full batch stays
/// well under the 1 MiB request limits common in front of receivers (Event Grid, ingress).
pub const DEFAULT_BATCH_MAX_EVENTS: usize = 100;

/// Default interval at which an idle sink looks at the outbox without being woken: a safety
/// net for events pushed without a `wake`; normal delivery is driven by `wake`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Most response body bytes read: enough for any error message, bounded against a receiver
/// that streams without end.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Most characters of a refusal's body quoted in the log line.
pub const BODY_EXCERPT_CHARS: usize = 256;

/// Margin beyond the configured timeout after which an attempt is abandoned whatever the HTTP
/// client is doing: the client's own timeout should always fire first.
pub const HANG_GUARD: Duration = Duration::from_secs(1);

/// Longest wait before looking at the token file again when it was missing or empty: reading a
/// local file costs the endpoint nothing, so this does not follow the backoff up to minutes.
pub const TOKEN_RECHECK_INTERVAL: Duration = Duration::from_secs(10);

/// `User-Agent` of every request.
const USER_AGENT: &str = concat!("nodedrift/", env!("CARGO_PKG_VERSION"));

/// The durable queue the sink delivers from (the ledger's outbox implements it). Calls are made
/// from a blocking thread (`spawn_blocking`), so they may do disk I/O.
pub trait Outbox: Send + Sync + 'static {
    /// Up to `max` undelivered events, oldest first; the same events until acked or
    /// dead-lettered.
    fn peek(&self, max: usize) -> Result<Vec<CloudEvent>, String>;
    /// The endpoint accepted these events: remove them.
    fn ack(&self, ids: &[String]) -> Result<(), String>;
    /// The endpoint refused these events for good: move them aside with the reason.
    fn dead_letter(&self, ids: &[String], reason: &str) -> Result<(), String>;
}

/// Where and how to deliver: the `endpoint` section of the configuration, validated by
/// [`HttpSink::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// `https://…` or `http://…`; no credentials in it (URLs are logged): use `token_file`.
    pub url: String,
    /// File holding a bearer token (e.g. a projected service-account token).
    pub token_file: Option<PathBuf>,
    /// PEM bundle of the CAs trusted for the endpoint, instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mTLS; needs `client_key`.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Bound on one attempt.
    pub timeout: Duration,
    /// Largest number of events per request.
    pub batch_max_events: usize,
    /// Idle re-check of the outbox when not woken.
    pub poll_interval: Duration,
    /// Retry timing: [`Backoff::default`] in production; tests shorten it.
    pub backoff: Backoff,
}

impl EndpointConfig {
    /// A configuration for `url` with the defaults for everything else.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token_file: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            timeout: DEFAULT_TIMEOUT,
            batch_max_events: DEFAULT_BATCH_MAX_EVENTS,
            poll_interval: DEFAULT_POLL_INTERVAL,
            backoff: Backoff::default(),
        }
    }
}

/// Why the sink cannot be built: configuration errors, reported at startup.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("endpoint URL {url:?} is not valid: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("endpoint URL {url}: scheme {scheme:?} is not supported (use https or http)")]
    UnsupportedScheme { url: String, scheme: String },
    #[error(
        "endpoint URL {url} holds credentials; put a bearer token in tokenFile instead (URLs are logged)"
    )]
    CredentialsInUrl { url: String },
    #[error(
        "endpoint URL {url}: refusing to send a bearer token over plain http to a host that is not loopback; use https"
    )]
    TokenOverPlainHttp { url: String },
    #[error("endpoint URL {url}: {option} is set but the URL is plain http")]
    TlsOptionOverPlainHttp { url: String, option: &'static str },
    #[error("clientCert and clientKey go together; only {given} is set")]
    IncompleteClientIdentity { given: &'static str },
    #[error("endpoint batchMaxEvents must be at least 1")]
    ZeroBatchSize,
    #[error("endpoint {key} must be longer than zero")]
    ZeroDuration { key: &'static str },
    #[error("reading {what} {path}: {source}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("caFile {path} is not a usable PEM certificate bundle: {reason}")]
    InvalidCa { path: PathBuf, reason: String },
    #[error("clientCert {path} is not a usable PEM certificate: {reason}")]
    InvalidClientCert { path: PathBuf, reason: String },
    #[error("clientKey {path} is not a usable PEM private key: {reason}")]
    InvalidClientKey { path: PathBuf, reason: String },
    #[error("building the HTTP client for {url}: {reason}")]
    Client { url: String, reason: String },
}

/// What became of one attempt to send a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the endpoint has the events.
    Delivered,
    /// Try again later: after `after` if the server said so, else after the backoff.
    Retry {
        after: Option<Duration>,
        reason: FailureReason,
        /// For the log: status and body excerpt, or the error chain.
        detail: String,
    },
    /// Refused for good (other 4xx, 3xx): dead-letter the batch. `status` is `None` when the
    /// batch could not even be encoded.
    Rejected { status: Option<u16>, reason: String },
    /// 413: split the batch.
    TooLarge,
}

/// The endpoint sink: an HTTP client bound to one endpoint.
#[derive(Debug)]
pub struct HttpSink {
    client: reqwest::Client,
    url: Url,
    token: Option<TokenFile>,
    timeout: Duration,
    batch_max_events: usize,
    poll_interval: Duration,
    backoff: Backoff,
}

/// How many times an upload is tried before it is given up.
pub const UPLOAD_ATTEMPTS: u32 = 6;
/// Time allowed for one upload request (a bundle is up to hundreds of MiB).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// An upload that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("upload to {url}: {message}")]
    Rejected { url: String, message: String },
    #[error("upload to {url}: gave up after {attempts} attempts: {last}")]
    GaveUp {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error("upload to {url}: cancelled")]
    Cancelled { url: String },
}

impl HttpSink {
    /// Uploads `file` to `<url>/<name>` with `PUT`, streamed from the file (never read whole),
    /// with the sink's TLS settings and token, `Content-Type: application/gzip` and
    /// `X-Checksum-Sha256`. Connection errors, timeouts, 408, 429 and 5xx are retried with the
    /// sink's backoff (at most [`UPLOAD_ATTEMPTS`] tries); another status is final. Returns
    /// where it went.
    pub async fn upload(
        &self,
        file: &std::path::Path,
        name: &str,
        sha256: &str,
        cancel: &CancellationToken,
    ) -> Result<String, UploadError> {
        let url = format!("{}/{name}", self.url.as_str().trim_end_matches('/'));
        let file_err = |source| UploadError::File {
            path: file.display().to_string(),
            source,
        };
        let mut last = String::new();
        for attempt in 0..UPLOAD_ATTEMPTS {
            if attempt > 0 {
                tokio::select! {
                    () = cancel.cancelled() => return Err(UploadError::Cancelled { url }),
                    () = tokio::time::sleep(self.backoff.delay(attempt - 1)) => {}
                }
            }
            let f = tokio::fs::File::open(file).await.map_err(file_err)?;
            let len = f.metadata().await.map_err(file_err)?.len();
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(f));
            let mut req = self
                .client
                .put(&url)
                .timeout(UPLOAD_TIMEOUT)
                .header(reqwest::header::CONTENT_TYPE, "application/gzip")
                .header(reqwest::header::CONTENT_LENGTH, len)
                .header("X-Checksum-Sha256", sha256)
                .body(body);
            if let Some(t) = &self.token {
                match t.header().await {
                    Ok(h) => req = req.header(reqwest::header::AUTHORIZATION, h),
                    Err(e) => {
                        last = e.to_string();
                        continue;
                    }
                }
            }
            let sent = tokio::select! {
                () = cancel.cancelled() => return Err(UploadError::Cancelled { url }),
                r = req.send() => r,
            };
            match sent {
                Ok(r) if r.status().is_success() => return Ok(url),
                Ok(r) => {
                    let code = r.status().as_u16();
                    last = format!("status {code}");
                    if !(code == 408 || code == 429 || r.status().is_server_error()) {
                        return Err(UploadError::Rejected { url, message: last });
                    }
                }
                Err(e) => last = e.to_string(),
            }
            tracing::debug!(%url, attempt, error = %last, "Upload failed; retrying.");
        }
        Err(UploadError::GaveUp {
            url,
            attempts: UPLOAD_ATTEMPTS,
            last,
        })
    }

    /// Validates `cfg` and builds the client; reads the CA and client identity files now
    /// (the token file is read at each send). Never contacts the endpoint.
    pub fn new(cfg: EndpointConfig) -> Result<Self, SinkError> {
        let url = Url::parse(&cfg.url).map_err(|e| SinkError::InvalidUrl {
            url: cfg.url.clone(),
            reason: e.to_string(),
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            let mut shown = url.clone();
            // Setting these cannot fail on a URL that already has them.
            let _ = shown.set_username("");
            let _ = shown.set_password(None);
            return Err(SinkError::CredentialsInUrl {
                url: shown.to_string(),
            });
        }
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => {
                return Err(SinkError::UnsupportedScheme {
                    url: url.to_string(),
                    scheme: other.to_owned(),
                });
            }
        };
        if url.host_str().is_none_or(str::is_empty) {
            return Err(SinkError::InvalidUrl {
                url: url.to_string(),
                reason: "no host".into(),
            });
        }
        if cfg.batch_max_events == 0 {
            return Err(SinkError::ZeroBatchSize);
        }
        for (key, d) in [
            ("timeout", cfg.timeout),
            ("pollInterval", cfg.poll_interval),
        ] {
            if d.is_zero() {
                return Err(SinkError::ZeroDuration { key });
            }
        }
        if !https {
            if cfg.token_file.is_some() && !is_loopback(&url) {
                return Err(SinkError::TokenOverPlainHttp {
                    url: url.to_string(),
                });
            }
            for (option, set) in [
                ("caFile", cfg.ca_file.is_some()),
                ("clientCert", cfg.client_cert.is_some()),
                ("clientKey", cfg.client_key.is_some()),
            ] {
                if set {
                    return Err(SinkError::TlsOptionOverPlainHttp {
                        url: url.to_string(),
                        option,
                    });
                }
            }
        }

        // reqwest is built without a crypto provider of its own; ring is the one this binary
        // links. An error only means some provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &cfg.ca_file {
            builder = builder.tls_certs_only(load_ca(ca)?);
        }
        match (&cfg.client_cert, &cfg.client_key) {
            (Some(cert), Some(key)) => builder = builder.identity(load_identity(cert, key)?),
            (Some(_), None) => {
                return Err(SinkError::IncompleteClientIdentity {
                    given: "clientCert",
                });
            }
            (None, Some(_)) => {
                return Err(SinkError::IncompleteClientIdentity { given: "clientKey" });
            }
            (None, None) => {}
        }
        let client = builder.build().map_err(|e| SinkError::Client {
            url: url.to_string(),
            reason: error_chain(&e),
        })?;

        if https {
            let trust = cfg.ca_file.as_deref().map_or_else(
                || "system trust store".to_owned(),
                |p| p.display().to_string(),
            );
            tracing::info!(
                url = %url,
                ca = %trust,
                mtls = cfg.client_cert.is_some(),
                bearer = cfg.token_file.is_some(),
                "Endpoint sink configured."
            );
        } else {
            tracing::warn!(
                url = %url,
                bearer = cfg.token_file.is_some(),
                "Endpoint sink uses plain http: events travel unencrypted."
            );
        }
        Ok(Self {
            client,
            url,
            token: cfg.token_file.map(TokenFile::new),
            timeout: cfg.timeout,
            batch_max_events: cfg.batch_max_events,
            poll_interval: cfg.poll_interval,
            backoff: cfg.backoff,
        })
    }

    /// The endpoint URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Sends one batch and classifies the outcome. Never panics; returns within the timeout
    /// (plus [`HANG_GUARD`] at worst).
    pub async fn send(&self, batch: &[CloudEvent]) -> Outcome {
        let guard = self.timeout.saturating_add(HANG_GUARD);
        match tokio::time::timeout(guard, self.attempt(batch)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Retry {
                after: None,
                reason: FailureReason::Timeout,
                detail: format!("no complete answer within {guard:?}"),
            },
        }
    }

    async fn attempt(&self, batch: &[CloudEvent]) -> Outcome {
        let mut request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, BATCH_CONTENT_TYPE);
        if let Some(token) = &self.token {
            match token.header().await {
                Ok(value) => request = request.header(AUTHORIZATION, value),
                Err(problem) => {
                    return Outcome::Retry {
                        after: None,
                        reason: FailureReason::TokenUnavailable,
                        detail: problem.to_string(),
                    };
                }
            }
        }
        let body = match serde_json::to_vec(batch) {
            Ok(b) => b,
            Err(e) => {
                return Outcome::Rejected {
                    status: None,
                    reason: format!("encoding the batch as JSON: {e}"),
                };
            }
        };
        let response = match request.body(body).send().await {
            Ok(r) => r,
            Err(e) => return transport_failure(&e),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        // Read (bounded) even on success, so the connection can be reused.
        let body = read_bounded(response, MAX_RESPONSE_BODY).await;
        if status == StatusCode::UNAUTHORIZED {
            if let Some(token) = &self.token {
                token.invalidate();
            }
        }
        classify(status, retry_after, &body)
    }

    /// Delivers from `outbox` until `cancel` fires; spawn it as its own task. See the module
    /// documentation for the behaviour; `metrics` is updated as it goes.
    pub async fn run(
        self,
        outbox: Arc<dyn Outbox>,
        wake: Arc<Notify>,
        cancel: CancellationToken,
        metrics: Arc<SinkMetrics>,
    ) {
        tracing::debug!(url = %self.url, "Endpoint sink started.");
        // Consecutive failed rounds: the exponent of the backoff.
        let mut failures: u32 = 0;
        // The reason of the current failure streak, to log a streak once, not every retry.
        let mut streak: Option<FailureReason> = None;
        while !cancel.is_cancelled() {
            let max = self.batch_max_events;
            let mut batch = match outbox_call(&outbox, move |o| o.peek(max)).await {
                Ok(b) => b,
                Err(e) => {
                    metrics.outbox_error();
                    tracing::warn!(
                        error = %e,
                        "Reading the outbox failed; trying again after a backoff."
                    );
                    let delay = self.backoff.delay(failures);
                    failures = failures.saturating_add(1);
                    if !pause(delay, &cancel).await {
                        break;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = wake.notified() => {}
                    () = tokio::time::sleep(self.poll_interval) => {}
                }
                continue;
            }
            batch.truncate(max);
            match self.deliver(batch, &outbox, &metrics, &cancel).await {
                Round::Done => {
                    let previous = streak.take();
                    if previous.is_some_and(|r| r != FailureReason::TokenUnavailable) {
                        tracing::info!(
                            url = %self.url,
                            failed_attempts = failures,
                            "Endpoint accepts events again."
                        );
                    }
                    failures = 0;
                }
                Round::Retry {
                    after,
                    reason,
                    detail,
                } => {
                    metrics.failed(reason);
                    metrics.retried();
                    // Never sooner than the server asked, never a hot loop when it asks for 0.
                    let backoff = self.backoff.delay(failures);
                    let delay = match (after, reason) {
                        (Some(after), _) => after.max(backoff),
                        (None, FailureReason::TokenUnavailable) => {
                            backoff.min(TOKEN_RECHECK_INTERVAL)
                        }
                        (None, _) => backoff,
                    };
                    failures = failures.saturating_add(1);
                    if streak != Some(reason) {
                        // The token problem has its own once-per-change log line.
                        if reason != FailureReason::TokenUnavailable {
                            tracing::warn!(
                                url = %self.url,
                                reason = %reason,
                                detail = %detail,
                                retry_in = ?delay,
                                "Endpoint did not take the batch; retrying with backoff."
                            );
                        }
                        streak = Some(reason);
                    } else {
                        tracing::debug!(
                            url = %self.url,
                            reason = %reason,
                            detail = %detail,
                            attempt = failures,
                            retry_in = ?delay,
                            "Endpoint still not taking the batch."
                        );
                    }
                    if !pause(delay, &cancel).await {
                        break;
                    }
                }
                Round::OutboxFailed => {
                    metrics.outbox_error();
                    let delay = self.backoff.delay(failures);
                    failures = failures.saturating_add(1);
                    if !pause(delay, &cancel).await {
                        break;
                    }
                }
            }
        }
        tracing::debug!(url = %self.url, "Endpoint sink stopped.");
    }

    /// One round: sends `batch` (split on 413), acks what was accepted, dead-letters what was
    /// refused; stops at the first retryable failure.
    async fn deliver(
        &self,
        batch: Vec<CloudEvent>,
        outbox: &Arc<dyn Outbox>,
        metrics: &SinkMetrics,
        cancel: &CancellationToken,
    ) -> Round {
        // A stack of parts still to send; the older half is on top.
        let mut parts = vec![batch];
        while let Some(mut part) = parts.pop() {
            let ids: Vec<String> = part.iter().map(|e| e.id.clone()).collect();
            match self.send(&part).await {
                Outcome::Delivered => {
                    let n = ids.len();
                    if let Err(e) = outbox_call(outbox, move |o| o.ack(&ids)).await {
                        tracing::warn!(
                            events = n,
                            error = %e,
                            "Acknowledging delivered events in the outbox failed; they will be sent again."
                        );
                        return Round::OutboxFailed;
                    }
                    metrics.delivered(n);
                    tracing::debug!(
                        url = %self.url,
                        events = n,
                        "Delivered events to the endpoint."
                    );
                }
                Outcome::Rejected { status, reason } => {
                    metrics.failed(FailureReason::Rejected);
                    let why = if status.is_some() {
                        format!("endpoint refused the batch: {reason}")
                    } else {
                        reason
                    };
                    if !self.dead_letter(outbox, ids, &why, metrics).await {
                        return Round::OutboxFailed;
                    }
                }
                Outcome::TooLarge => {
                    metrics.failed(FailureReason::TooLarge);
                    if part.len() > 1 {
                        let newer = part.split_off(part.len() / 2);
                        tracing::info!(
                            url = %self.url,
                            events = part.len() + newer.len(),
                            "Endpoint answered 413 Payload Too Large; splitting the batch in halves."
                        );
                        metrics.split();
                        parts.push(newer);
                        parts.push(part);
                    } else if !self
                        .dead_letter(
                            outbox,
                            ids,
                            "endpoint refused the event as too large (HTTP 413) even on its own",
                            metrics,
                        )
                        .await
                    {
                        return Round::OutboxFailed;
                    }
                }
                Outcome::Retry {
                    after,
                    reason,
                    detail,
                } => {
                    return Round::Retry {
                        after,
                        reason,
                        detail,
                    };
                }
            }
            if cancel.is_cancelled() {
                break;
            }
        }
        Round::Done
    }

    /// Dead-letters `ids` with one ERROR line; false if the outbox failed.
    async fn dead_letter(
        &self,
        outbox: &Arc<dyn Outbox>,
        ids: Vec<String>,
        reason: &str,
        metrics: &SinkMetrics,
    ) -> bool {
        let n = ids.len();
        tracing::error!(
            url = %self.url,
            events = n,
            reason,
            "Dead-lettering events the endpoint refused for good."
        );
        let owned = reason.to_owned();
        match outbox_call(outbox, move |o| o.dead_letter(&ids, &owned)).await {
            Ok(()) => {
                metrics.dead_lettered(n);
                true
            }
            Err(e) => {
                tracing::warn!(
                    events = n,
                    error = %e,
                    "Dead-lettering events in the outbox failed; they will be sent again."
                );
                false
            }
        }
    }
}

/// How a round of [`HttpSink::deliver`] ended.
enum Round {
    /// Everything peeked was acked or dead-lettered (or cancellation stopped it in between).
    Done,
    /// A retryable failure; the rest waits in the outbox.
    Retry {
        after: Option<Duration>,
        reason: FailureReason,
        detail: String,
    },
    /// The outbox could not record an outcome.
    OutboxFailed,
}

/// Runs an outbox call on the blocking pool (the ledger does disk I/O and fsyncs).
async fn outbox_call<T: Send + 'static>(
    outbox: &Arc<dyn Outbox>,
    f: impl FnOnce(&dyn Outbox) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let outbox = Arc::clone(outbox);
    tokio::task::spawn_blocking(move || f(outbox.as_ref()))
        .await
        .unwrap_or_else(|e| Err(format!("outbox call did not complete: {e}")))
}

/// Sleeps `d` unless cancelled first; false when cancelled.
async fn pause(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

/// The outcome of a status code.
fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> Outcome {
    let retry = |reason| Outcome::Retry {
        after: retry_after,
        reason,
        detail: describe(status, body),
    };
    match status.as_u16() {
        200..=299 => Outcome::Delivered,
        401 => retry(FailureReason::TokenUnavailable),
        408 => retry(FailureReason::RequestTimeout),
        429 => retry(FailureReason::RateLimited),
        413 => Outcome::TooLarge,
        500..=599 => retry(FailureReason::ServerError),
        code => Outcome::Rejected {
            status: Some(code),
            reason: describe(status, body),
        },
    }
}

/// `HTTP 400 Bad Request: <excerpt>`.
fn describe(status: StatusCode, body: &[u8]) -> String {
    let excerpt = excerpt(body, BODY_EXCERPT_CHARS);
    if excerpt.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {excerpt}")
    }
}

/// The first `max` characters of a body as one printable line (control characters and runs of
/// whitespace become one space), with `…` when cut.
fn excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    let mut chars = 0;
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        if chars + usize::from(pending_space) >= max {
            out.push('…');
            return out;
        }
        if pending_space {
            out.push(' ');
            chars += 1;
            pending_space = false;
        }
        out.push(c);
        chars += 1;
    }
    out
}

/// Reads at most `limit` bytes of the body; errors end the read (the status already decided).
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    while buf.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(limit - buf.len());
                buf.extend_from_slice(&chunk[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    buf
}

/// The outcome of a request that got no response.
fn transport_failure(e: &reqwest::Error) -> Outcome {
    let reason = if e.is_timeout() {
        FailureReason::Timeout
    } else if is_tls_error(e) {
        FailureReason::Tls
    } else {
        FailureReason::Connection
    };
    Outcome::Retry {
        after: None,
        reason,
        detail: error_chain(e),
    }
}

/// Whether a rustls error is somewhere in the chain (looking inside `io::Error`s, whose
/// `source()` skips the error they wrap).
fn is_tls_error(e: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            if is_tls_error(inner) {
                return true;
            }
        }
        current = err.source();
    }
    false
}

/// `outer: inner: innermost`, skipping messages already contained in the previous one.
fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut current = e.source();
    while let Some(err) = current {
        let msg = err.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        current = err.source();
    }
    out
}

/// Whether the URL's host is the loopback interface.
fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The certificates of a CA bundle, each checked to be a usable trust anchor.
fn load_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, SinkError> {
    let invalid = |reason: String| SinkError::InvalidCa {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|source| SinkError::ReadFile {
        what: "caFile",
        path: path.to_owned(),
        source,
    })?;
    let mut anchors = rustls::RootCertStore::empty();
    let mut certs = Vec::new();
    for der in CertificateDer::pem_slice_iter(&pem) {
        let der = der.map_err(|e| invalid(e.to_string()))?;
        anchors
            .add(der.clone())
            .map_err(|e| invalid(e.to_string()))?;
        certs.push(reqwest::Certificate::from_der(&der).map_err(|e| invalid(error_chain(&e)))?);
    }
    if certs.is_empty() {
        return Err(invalid("no PEM CERTIFICATE block in it".into()));
    }
    Ok(certs)
}

/// The client identity of a certificate file and a key file.
fn load_identity(cert: &Path, key: &Path) -> Result<reqwest::Identity, SinkError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| SinkError::ReadFile {
            what,
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read("clientCert", cert)?;
    let key_pem = read("clientKey", key)?;
    let bad_cert = |reason: String| SinkError::InvalidClientCert {
        path: cert.to_owned(),
        reason,
    };
    let mut certs = 0;
    for der in CertificateDer::pem_slice_iter(&cert_pem) {
        der.map_err(|e| bad_cert(e.to_string()))?;
        certs += 1;
    }
    if certs == 0 {
        return Err(bad_cert("no PEM CERTIFICATE block in it".into()));
    }
    let bad_key = |reason: String| SinkError::InvalidClientKey {
        path: key.to_owned(),
        reason,
    };
    let parsed = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad_key(e.to_string()))?;
    rustls::crypto::ring::sign::any_supported_type(&parsed).map_err(|e| bad_key(e.to_string()))?;
    // reqwest takes one PEM holding the chain and the key.
    let mut both = cert_pem;
    both.push(b'\n');
    both.extend_from_slice(&key_pem);
    reqwest::Identity::from_pem(&both).map_err(|e| bad_key(error_chain(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        let s = |c| StatusCode::from_u16(c).unwrap();
        assert_eq!(classify(s(200), None, b"garbage"), Outcome::Delivered);
        assert_eq!(classify(s(204), None, b""), Outcome::Delivered);
        assert_eq!(classify(s(413), None, b""), Outcome::TooLarge);
        let after = Some(Duration::from_secs(1));
        for (code, reason) in [
            (401, FailureReason::TokenUnavailable),
            (408, FailureReason::RequestTimeout),
            (429, FailureReason::RateLimited),
            (500, FailureReason::ServerError),
            (503, FailureReason::ServerError),
        ] {
            match classify(s(code), after, b"") {
                Outcome::Retry {
                    after: a,
                    reason: r,
                    ..
                } => {
                    assert_eq!((a, r), (after, reason), "{code}");
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        for code in [301, 400, 403, 404, 422] {
            let outcome = classify(s(code), None, b"x");
            assert!(
                matches!(outcome, Outcome::Rejected { status: Some(c), .. } if c == code),
                "{code}: {outcome:?}"
            );
        }
    }

    #[test]
    fn excerpts_are_one_bounded_line() {
        assert_eq!(excerpt(b"", 10), "");
        assert_eq!(excerpt(b"  bad\r\n\tinput \x1b[31m ", 50), "bad input [31m");
        assert_eq!(excerpt(b"abcdefghij", 4), "abcd…");
        assert_eq!(excerpt(b"abcd", 4), "abcd");
        assert_eq!(excerpt(&[0xff, b'a'], 10), "\u{fffd}a");
        assert_eq!(
            describe(StatusCode::BAD_REQUEST, b"no"),
            "HTTP 400 Bad Request: no"
        );
        assert_eq!(
            describe(StatusCode::BAD_REQUEST, b""),
            "HTTP 400 Bad Request"
        );
    }

    #[test]
    fn loopback_hosts() {
        for (u, want) in [
            ("http://localhost:8080/x", true),
            ("http://LOCALHOST/", true),
            ("http://127.0.0.1/", true),
            ("http://127.1.2.3/", true),
            ("http://[::1]:9000/", true),
            ("http://10.0.0.1/", false),
            ("http://collector.example/", false),
            ("http://localhost.example/", false),
        ] {
            assert_eq!(is_loopback(&Url::parse(u).unwrap()), want, "{u}");
        }
    }

    #[test]
    fn configuration_mistakes_are_refused() {
        let err = |cfg: EndpointConfig| HttpSink::new(cfg).unwrap_err().to_string();
        let mut c = EndpointConfig::new("http://collector.example:8080/events");
        c.token_file = Some("/var/run/secrets/token".into());
        assert!(err(c.clone()).contains("plain http"), "{}", err(c));

        let mut c = EndpointConfig::new("http://127.0.0.1:8080/events");
        c.token_file = Some("/var/run/secrets/token".into());
        assert!(
            HttpSink::new(c).is_ok(),
            "a token to loopback over http is fine"
        );

        let mut c = EndpointConfig::new("http://127.0.0.1:8080/");
        c.ca_file = Some("/ca.pem".into());
        assert!(err(c).contains("caFile is set but the URL is plain http"));

        let e = err(EndpointConfig::new("ftp://x/"));
        assert!(e.contains("\"ftp\""), "{e}");
        let e = err(EndpointConfig::new("not a url"));
        assert!(e.contains("not a url"), "{e}");
        let e = err(EndpointConfig::new("https://user:s3cret@example.com/"));
        assert!(
            e.contains("holds credentials") && !e.contains("s3cret"),
            "{e}"
        );

        let mut c = EndpointConfig::new("https://example.com/");
        c.batch_max_events = 0;
        assert!(matches!(HttpSink::new(c), Err(SinkError::ZeroBatchSize)));

        let mut c = EndpointConfig::new("https://example.com/");
        c.poll_interval = Duration::ZERO;
        assert!(err(c).contains("pollInterval must be longer than zero"));

        let mut c = EndpointConfig::new("https://example.com/");
        c.client_cert = Some("/c.pem".into());
        assert!(err(c).contains("only clientCert is set"));
    }

    #[test]
    fn bad_ca_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let mut c = EndpointConfig::new("https://example.com/");
        c.ca_file = Some(missing.clone());
        let e = HttpSink::new(c.clone()).unwrap_err().to_string();
        assert!(e.contains("caFile") && e.contains("missing.pem"), "{e}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "this is not PEM\n").unwrap();
        c.ca_file = Some(garbage);
        let e = HttpSink::new(c.clone()).unwrap_err().to_string();
        assert!(
            e.contains("garbage.pem") && e.contains("no PEM CERTIFICATE"),
            "{e}"
        );

        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        c.ca_file = Some(broken);
        let e = HttpSink::new(c).unwrap_err().to_string();
        assert!(e.contains("broken.pem"), "{e}");
    }
}
