//! A minimal client for containerd's gRPC API over its Unix socket.
//!
//! Four calls, none of which needs a namespace: `Version.Version` (the daemon's own version,
//! which is what runs, whatever the package database says), `Introspection.Plugins` (every
//! plugin and its init error: "is the CRI plugin loaded and healthy?") and
//! `Introspection.Server` (uuid, and from 1.7 on the daemon's pid), and the CRI's
//! `runtime.v1.RuntimeService/Status` (the `RuntimeReady` and `NetworkReady` conditions the
//! kubelet reads). The messages are declared by
//! hand from containerd's `.proto` files (fields this agent does not read are simply skipped
//! by the decoder), so there is no code generation step.
//!
//! The socket is reached through [`HostRoot::open_path`]: an `O_PATH` descriptor of the socket
//! inode, connected to as `/proc/self/fd/<n>`. The path is thereby resolved inside the host
//! root (a symlinked socket path cannot lead the agent to a socket outside it) and only
//! sockets are connected to. Everything — connect, HTTP/2 handshake, each call — runs under
//! one deadline on a current-thread runtime owned by the call, so a daemon that accepts and
//! never answers costs the timeout and no more.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::time::Instant;
use tonic::codegen::http::Uri;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic_prost::ProstCodec;

/// `containerd.services.version.v1.VersionResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionResponse {
    #[prost(string, tag = "1")]
    pub version: String,
    #[prost(string, tag = "2")]
    pub revision: String,
}

/// `containerd.services.introspection.v1.PluginsRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginsRequest {
    #[prost(string, repeated, tag = "1")]
    pub filters: Vec<String>,
}

/// `containerd.services.introspection.v1.PluginsResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginsResponse {
    #[prost(message, repeated, tag = "1")]
    pub plugins: Vec<Plugin>,
}

/// `containerd.services.introspection.v1.Plugin` (platforms, field 4, not decoded).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Plugin {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(string, tag = "2")]
    pub id: String,
    #[prost(string, repeated, tag = "3")]
    pub requires: Vec<String>,
    #[prost(map = "string, string", tag = "5")]
    pub exports: HashMap<String, String>,
    #[prost(string, repeated, tag = "6")]
    pub capabilities: Vec<String>,
    #[prost(message, optional, tag = "7")]
    pub init_err: Option<RpcStatus>,
}

/// `google.rpc.Status` (details, field 3, not decoded).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `containerd.services.introspection.v1.ServerResponse` (deprecations not decoded).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerResponse {
    #[prost(string, tag = "1")]
    pub uuid: String,
    /// 0 before containerd 1.7.
    #[prost(uint64, tag = "2")]
    pub pid: u64,
    #[prost(uint64, tag = "3")]
    pub pidns: u64,
}

/// `runtime.v1.StatusRequest` (CRI).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriStatusRequest {
    #[prost(bool, tag = "1")]
    pub verbose: bool,
}

/// `runtime.v1.StatusResponse` (the `info` map, field 2, not decoded: asked without verbose).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriStatusResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<CriRuntimeStatus>,
}

/// `runtime.v1.RuntimeStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriRuntimeStatus {
    #[prost(message, repeated, tag = "1")]
    pub conditions: Vec<CriRuntimeCondition>,
}

/// `runtime.v1.RuntimeCondition`: `RuntimeReady`, `NetworkReady`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriRuntimeCondition {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(bool, tag = "2")]
    pub status: bool,
    #[prost(string, tag = "3")]
    pub reason: String,
    #[prost(string, tag = "4")]
    pub message: String,
}

const VERSION: &str = "/containerd.services.version.v1.Version/Version";
const CRI_STATUS: &str = "/runtime.v1.RuntimeService/Status";
const PLUGINS: &str = "/containerd.services.introspection.v1.Introspection/Plugins";
const SERVER: &str = "/containerd.services.introspection.v1.Introspection/Server";

/// Why the daemon could not be asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The agent may not connect (socket permissions): says nothing about the daemon.
    #[error("permission denied connecting to {path}")]
    PermissionDenied { path: String },
    /// Nothing listens on the socket (a stale socket file: the daemon is gone).
    #[error("connection to {path} refused: no daemon is listening")]
    Refused { path: String },
    #[error("{path}: no answer within {timeout:?}")]
    Timeout { path: String, timeout: Duration },
    #[error("{path}: {message}")]
    Transport { path: String, message: String },
    #[error("{path}: {method} failed: {status}")]
    Rpc {
        path: String,
        method: &'static str,
        status: String,
    },
    #[error("could not start the client runtime: {0}")]
    Runtime(String),
}

impl ApiError {
    /// True when the failure is the daemon's (it is not answering), as opposed to the agent's
    /// own inability to connect.
    pub fn daemon_unresponsive(&self) -> bool {
        matches!(
            self,
            Self::Refused { .. } | Self::Timeout { .. } | Self::Transport { .. }
        )
    }
}

/// What the daemon said. Each call can fail on its own once connected.
#[derive(Debug, Clone)]
pub struct Answers {
    pub version: Result<VersionResponse, ApiError>,
    pub plugins: Result<Vec<Plugin>, ApiError>,
    pub server: Result<ServerResponse, ApiError>,
    /// The CRI runtime's conditions (the CRI plugin serves on the same socket).
    pub cri_status: Result<Vec<CriRuntimeCondition>, ApiError>,
}

/// Connects to the socket `fd` (an `O_PATH` descriptor from [`HostRoot::open_path`]) and asks
/// the three questions, all within `timeout`. `path` is the host path, for messages.
///
/// [`HostRoot::open_path`]: crate::host::HostRoot::open_path
pub fn query(fd: &OwnedFd, path: &str, timeout: Duration) -> Result<Answers, ApiError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| ApiError::Runtime(e.to_string()))?;
    let proc_path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let result = runtime.block_on(async {
        let deadline = Instant::now() + timeout;
        let channel = connect(proc_path, path, deadline, timeout).await?;
        let mut grpc = tonic::client::Grpc::new(channel);
        let version =
            call::<(), VersionResponse>(&mut grpc, VERSION, (), path, deadline, timeout).await;
        // A transport failure on the first call means the others would fail the same way.
        if let Err(e) = &version
            && e.daemon_unresponsive()
        {
            return Err(e.clone());
        }
        let plugins = call::<_, PluginsResponse>(
            &mut grpc,
            PLUGINS,
            PluginsRequest {
                filters: Vec::new(),
            },
            path,
            deadline,
            timeout,
        )
        .await
        .map(|r| r.plugins);
        let server =
            call::<(), ServerResponse>(&mut grpc, SERVER, (), path, deadline, timeout).await;
        let cri_status = call::<_, CriStatusResponse>(
            &mut grpc,
            CRI_STATUS,
            CriStatusRequest { verbose: false },
            path,
            deadline,
            timeout,
        )
        .await
        .map(|r| r.status.map(|s| s.conditions).unwrap_or_default());
        Ok(Answers {
            version,
            plugins,
            server,
            cri_status,
        })
    });
    // Dropping the runtime cancels whatever is still pending (a half-open connection).
    drop(runtime);
    result
}

async fn connect(
    proc_path: PathBuf,
    path: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<Channel, ApiError> {
    let timed_out = || ApiError::Timeout {
        path: path.to_owned(),
        timeout,
    };
    // Connect first, by hand, so that the error kinds (permission, refused) stay visible; the
    // channel then uses this one stream and never dials again.
    let stream = tokio::time::timeout_at(deadline, UnixStream::connect(&proc_path))
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => ApiError::PermissionDenied {
                path: path.to_owned(),
            },
            std::io::ErrorKind::ConnectionRefused => ApiError::Refused {
                path: path.to_owned(),
            },
            _ => ApiError::Transport {
                path: path.to_owned(),
                message: format!("connect: {e}"),
            },
        })?;
    let slot = Arc::new(Mutex::new(Some(stream)));
    let connector = tower::service_fn(move |_: Uri| {
        let slot = Arc::clone(&slot);
        async move {
            let stream =
                slot.lock().ok().and_then(|mut s| s.take()).ok_or_else(|| {
                    std::io::Error::other("the connection to containerd was closed")
                })?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    // The URI is a placeholder: the connector ignores it.
    let endpoint = Endpoint::from_static("http://[::]:50051");
    tokio::time::timeout_at(deadline, endpoint.connect_with_connector(connector))
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| ApiError::Transport {
            path: path.to_owned(),
            message: error_chain(&e),
        })
}

async fn call<Req, Resp>(
    grpc: &mut tonic::client::Grpc<Channel>,
    method: &'static str,
    request: Req,
    path: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<Resp, ApiError>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let timed_out = || ApiError::Timeout {
        path: path.to_owned(),
        timeout,
    };
    let exchange = async {
        grpc.ready().await.map_err(|e| ApiError::Transport {
            path: path.to_owned(),
            message: error_chain(&e),
        })?;
        grpc.unary(
            tonic::Request::new(request),
            PathAndQuery::from_static(method),
            ProstCodec::<Req, Resp>::default(),
        )
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| match status.code() {
            // The connection broke (or never spoke HTTP/2): the daemon is not answering.
            tonic::Code::Unavailable | tonic::Code::Unknown
                if status.message().contains("transport") =>
            {
                ApiError::Transport {
                    path: path.to_owned(),
                    message: format!("{method}: {}", status.message()),
                }
            }
            _ => ApiError::Rpc {
                path: path.to_owned(),
                method,
                status: format!("{:?}: {}", status.code(), status.message()),
            },
        })
    };
    tokio::time::timeout_at(deadline, exchange)
        .await
        .map_err(|_| timed_out())?
}

/// An error and its sources, joined: transport errors hide the useful part in the chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}
