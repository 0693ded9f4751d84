//! An API-server double: a real HTTP/1.1 server on 127.0.0.1 that serves one Node, checks the
//! method, path, content type, query and body of every request against what nodedrift may do,
//! applies the writes the way the API server would (JSON merge patch of annotations, strategic
//! merge of conditions by `type`, Events stored by name), records everything, and answers
//! injected faults. Any other request is a violation, answered with 400.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

pub const NODE: &str = "aks-nodepool1-12345678-vmss000000";
pub const NODE_UID: &str = "6f1b3c2e-9d4a-4e7b-8f0a-2c5d7e9b1a34";
const NODE_PATH: &str = "/api/v1/nodes/aks-nodepool1-12345678-vmss000000";
const STATUS_PATH: &str = "/api/v1/nodes/aks-nodepool1-12345678-vmss000000/status";
const EVENTS_PATH: &str = "/api/v1/namespaces/default/events";
const NODES_PATH: &str = "/api/v1/nodes";
/// How often an open watch looks for a new resourceVersion of the Node.
const WATCH_POLL: std::time::Duration = std::time::Duration::from_millis(5);
const OWNED: [&str; 2] = ["NodeDrift", "RebootRequired"];

/// The requests nodedrift may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    GetNode,
    /// `GET /api/v1/nodes?watch=true&fieldSelector=metadata.name=<this node>` only.
    WatchNode,
    PatchNode,
    PatchStatus,
    CreateEvent,
    PatchEvent,
    /// `GET /version`.
    Version,
}

/// One request as received, with the status it got.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub route: Option<Route>,
    pub body: Value,
    pub status: u16,
}

/// Everything the double knows; tests read and change it between requests.
#[derive(Debug, Default)]
pub struct World {
    /// The served Node; `None` answers 404 (not registered yet).
    pub node: Option<Value>,
    pub events: BTreeMap<String, Value>,
    pub requests: Vec<Recorded>,
    /// Anything nodedrift must never do, described.
    pub violations: Vec<String>,
    /// Answers to give instead of serving: the first fault whose route matches is used once.
    pub faults: VecDeque<(Route, u16)>,
    /// The `gitVersion` served on `/version`; `None` serves v1.32.4.
    pub server_version: Option<String>,
}

impl World {
    pub fn routes(&self) -> Vec<(Route, u16)> {
        self.requests
            .iter()
            .filter_map(|r| r.route.map(|route| (route, r.status)))
            .collect()
    }

    pub fn count(&self, route: Route) -> usize {
        self.requests
            .iter()
            .filter(|r| r.route == Some(route))
            .count()
    }

    pub fn last_body(&self, route: Route) -> Option<&Value> {
        self.requests
            .iter()
            .rev()
            .find(|r| r.route == Some(route) && r.status < 300)
            .map(|r| &r.body)
    }

    pub fn annotation(&self, key: &str) -> Option<String> {
        self.node.as_ref()?["metadata"]["annotations"][key]
            .as_str()
            .map(str::to_owned)
    }

    pub fn condition(&self, kind: &str) -> Option<Value> {
        self.node.as_ref()?["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == kind)
            .cloned()
    }
}

/// The running double (or one waiting to be started on a reserved address).
#[derive(Debug)]
pub struct ApiServer {
    pub addr: SocketAddr,
    world: Arc<Mutex<World>>,
    task: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// Serving `node` now.
    pub async fn start(node: Option<Value>) -> Self {
        let mut s = Self::reserve(node).await;
        s.up().await;
        s
    }

    /// An address where nothing listens yet (connections are refused until [`Self::up`]).
    pub async fn reserve(node: Option<Value>) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        drop(l);
        Self {
            addr,
            world: Arc::new(Mutex::new(World {
                node,
                ..World::default()
            })),
            task: None,
        }
    }

    /// Starts serving on the address (again).
    pub async fn up(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind");
        let world = Arc::clone(&self.world);
        self.task = Some(tokio::spawn(serve(listener, world)));
    }

    /// Stops listening and drops every open connection.
    pub async fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().expect("world lock")
    }

    /// Changes the Node as another client would (a new resourceVersion: open watches see it).
    pub fn edit_node(&self, f: impl FnOnce(&mut Value)) {
        let mut w = self.world();
        let n = w.node.as_mut().expect("a node to edit");
        f(n);
        bump(n);
    }

    pub fn fail_next(&self, route: Route, code: u16) {
        self.world().faults.push_back((route, code));
    }

    /// A kube client talking plain HTTP to the double, without kube's own retries.
    pub fn client(&self) -> kube::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = kube::Config::new(format!("http://{}", self.addr).parse().expect("uri"));
        config.default_retry = false;
        kube::Client::try_from(config).expect("client")
    }

    /// No request strayed outside what nodedrift may do.
    pub fn assert_clean(&self) {
        let w = self.world();
        assert!(w.violations.is_empty(), "violations: {:#?}", w.violations);
        assert!(w.requests.iter().all(|r| r.route.is_some()));
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn serve(listener: TcpListener, world: Arc<Mutex<World>>) {
    // Dropped (with every connection task) when the server task is aborted.
    let mut conns = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        while conns.try_join_next().is_some() {}
        let world = Arc::clone(&world);
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let world = Arc::clone(&world);
                async move { Ok::<_, Infallible>(handle(req, &world).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// A response body: whole, or the lines of a watch as they happen.
#[derive(Debug)]
pub enum Reply {
    Whole(Option<Bytes>),
    Lines(tokio::sync::mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Reply {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Reply::Whole(b) => {
                std::task::Poll::Ready(b.take().map(|b| Ok(hyper::body::Frame::data(b))))
            }
            Reply::Lines(rx) => rx
                .poll_recv(cx)
                .map(|l| l.map(|b| Ok(hyper::body::Frame::data(b)))),
        }
    }
}

/// Streams the Node's changes after resourceVersion `from` as watch events, one JSON line each,
/// until the client goes away or the Node is deleted.
fn watch_lines(world: Arc<Mutex<World>>, from: u64) -> Reply {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let mut last = from;
        loop {
            let node = world.lock().expect("world lock").node.clone();
            let line = match node {
                Some(n) => {
                    let rv: u64 = n["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    (rv > last).then(|| {
                        last = rv;
                        json!({"type": "MODIFIED", "object": n})
                    })
                }
                None => Some(
                    json!({"type": "DELETED", "object": {"apiVersion": "v1", "kind": "Node",
                                    "metadata": {"name": NODE, "resourceVersion": last.to_string()}}}),
                ),
            };
            if let Some(l) = &line {
                if tx.send(Bytes::from(format!("{l}\n"))).await.is_err() {
                    return;
                }
                if l["type"] == "DELETED" {
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(WATCH_POLL).await;
        }
    });
    Reply::Lines(rx)
}

async fn handle(req: Request<Incoming>, world: &Arc<Mutex<World>>) -> Response<Reply> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| json!({"unparsable": e.to_string()}))
    };

    let mut w = world.lock().expect("world lock");
    let route = route_of(&method, &path, &query);
    let (status, answer) = match route {
        None => {
            w.violations
                .push(format!("{method} {path}: not a request nodedrift may make"));
            (400, status_body(400, "BadRequest", "unexpected request"))
        }
        Some(route) => {
            let problems = check(route, &query, &content_type, &body);
            if !problems.is_empty() {
                w.violations.extend(
                    problems
                        .into_iter()
                        .map(|p| format!("{method} {path}: {p}")),
                );
                (400, status_body(400, "BadRequest", "invalid request"))
            } else if let Some(i) = w.faults.iter().position(|(r, _)| *r == route) {
                let (_, code) = w.faults.remove(i).expect("fault");
                (code, fault_body(code))
            } else if route == Route::WatchNode {
                let from = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("resourceVersion="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                w.requests.push(Recorded {
                    route: Some(route),
                    body,
                    status: 200,
                });
                drop(w);
                return Response::builder()
                    .status(StatusCode::OK)
                    .header(hyper::header::CONTENT_TYPE, "application/json")
                    .body(watch_lines(Arc::clone(world), from))
                    .expect("response");
            } else {
                apply(&mut w, route, &path, &body)
            }
        }
    };
    w.requests.push(Recorded {
        route,
        body,
        status,
    });
    drop(w);
    Response::builder()
        .status(StatusCode::from_u16(status).expect("status"))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Reply::Whole(Some(Bytes::from(answer.to_string()))))
        .expect("response")
}

fn route_of(method: &Method, path: &str, query: &str) -> Option<Route> {
    match (method.as_str(), path) {
        ("GET", NODE_PATH) => Some(Route::GetNode),
        ("GET", "/version") if query.is_empty() => Some(Route::Version),
        ("GET", NODES_PATH) if query.split('&').any(|kv| kv == "watch=true") => {
            Some(Route::WatchNode)
        }
        ("PATCH", NODE_PATH) => Some(Route::PatchNode),
        ("PATCH", STATUS_PATH) => Some(Route::PatchStatus),
        ("POST", EVENTS_PATH) => Some(Route::CreateEvent),
        ("PATCH", p) => {
            let name = p.strip_prefix(EVENTS_PATH)?.strip_prefix('/')?;
            (!name.is_empty() && !name.contains('/')).then_some(Route::PatchEvent)
        }
        _ => None,
    }
}

/// What is wrong with a request on `route`, per what nodedrift may send.
fn check(route: Route, query: &str, content_type: &str, body: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let mut want = |ok: bool, what: &str| {
        if !ok {
            p.push(what.to_owned());
        }
    };
    let content = |t: &str| content_type == t;
    let field_manager = query.split('&').any(|kv| kv == "fieldManager=nodedrift");
    match route {
        Route::GetNode | Route::Version => want(body.is_null(), "GET with a body"),
        Route::WatchNode => {
            want(body.is_null(), "GET with a body");
            let own = format!("fieldSelector=metadata.name%3D{NODE}");
            want(
                query.split('&').any(|kv| kv == own),
                "a watch of nodes other than this one (no fieldSelector on its name)",
            );
        }
        Route::PatchNode => {
            want(
                content("application/merge-patch+json"),
                "node patch is not a merge patch",
            );
            want(field_manager, "no fieldManager=nodedrift");
            want(
                only_keys(body, &["metadata"]),
                "node patch touches more than metadata",
            );
            want(
                only_keys(&body["metadata"], &["annotations"]),
                "node patch touches metadata other than annotations",
            );
            let ok = body["metadata"]["annotations"]
                .as_object()
                .is_some_and(|a| {
                    !a.is_empty()
                        && a.iter().all(|(k, v)| {
                            k.starts_with("nodedrift.dev/") && (v.is_string() || v.is_null())
                        })
                });
            want(ok, "annotations outside nodedrift.dev/ or not strings");
        }
        Route::PatchStatus => {
            want(
                content("application/strategic-merge-patch+json"),
                "status patch is not a strategic merge patch",
            );
            want(field_manager, "no fieldManager=nodedrift");
            want(
                only_keys(body, &["status"]),
                "status patch touches more than status",
            );
            want(
                only_keys(&body["status"], &["conditions"]),
                "status patch touches status other than conditions",
            );
            let fields = [
                "type",
                "status",
                "reason",
                "message",
                "lastHeartbeatTime",
                "lastTransitionTime",
            ];
            let ok = body["status"]["conditions"].as_array().is_some_and(|cs| {
                !cs.is_empty()
                    && cs.iter().all(|c| {
                        only_keys(c, &fields)
                            && fields.iter().all(|f| c[f].is_string())
                            && OWNED.contains(&c["type"].as_str().unwrap_or(""))
                            && ["True", "False", "Unknown"]
                                .contains(&c["status"].as_str().unwrap_or(""))
                            && is_rfc3339(&c["lastHeartbeatTime"])
                            && is_rfc3339(&c["lastTransitionTime"])
                    })
            });
            want(
                ok,
                "conditions other than NodeDrift/RebootRequired, or malformed",
            );
        }
        Route::CreateEvent => {
            want(content("application/json"), "event is not JSON");
            want(field_manager, "no fieldManager=nodedrift");
            want(
                body["apiVersion"] == "v1" && body["kind"] == "Event",
                "not a core/v1 Event",
            );
            want(
                body["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(NODE)),
                "event name",
            );
            want(
                body["metadata"]["namespace"] == "default",
                "event not in default",
            );
            want(
                body["involvedObject"]
                    == json!({"apiVersion": "v1", "kind": "Node", "name": NODE, "uid": NODE_UID}),
                "involvedObject is not this Node with its uid",
            );
            want(
                body["type"] == "Normal" || body["type"] == "Warning",
                "type is not Normal/Warning",
            );
            want(
                body["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "no reason",
            );
            want(
                body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "no message",
            );
            want(
                body["source"] == json!({"component": "nodedrift", "host": NODE}),
                "source is not nodedrift on this node",
            );
            want(body["count"] == 1, "count of a new event is not 1");
            want(
                is_rfc3339(&body["firstTimestamp"])
                    && body["firstTimestamp"] == body["lastTimestamp"],
                "timestamps",
            );
            want(
                body["reportingComponent"] == "nodedrift",
                "reportingComponent",
            );
        }
        Route::PatchEvent => {
            want(
                content("application/merge-patch+json"),
                "event patch is not a merge patch",
            );
            want(field_manager, "no fieldManager=nodedrift");
            want(
                only_keys(body, &["count", "lastTimestamp"])
                    && body["count"].is_i64()
                    && is_rfc3339(&body["lastTimestamp"]),
                "event patch other than count and lastTimestamp",
            );
        }
    }
    p
}

fn only_keys(v: &Value, allowed: &[&str]) -> bool {
    v.as_object()
        .is_some_and(|o| o.keys().all(|k| allowed.contains(&k.as_str())))
}

/// `2026-03-01T10:00:00Z`, as Kubernetes writes `Time`.
fn is_rfc3339(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        let b = s.as_bytes();
        b.len() == 20
            && b[4] == b'-'
            && b[10] == b'T'
            && b[19] == b'Z'
            && s.chars().filter(char::is_ascii_digit).count() == 14
    })
}

/// Serves a valid request the way the API server would.
fn apply(w: &mut World, route: Route, path: &str, body: &Value) -> (u16, Value) {
    match route {
        // Served as a stream by `handle`.
        Route::WatchNode => (
            500,
            status_body(500, "InternalError", "watch served elsewhere"),
        ),
        Route::Version => {
            let git = w.server_version.as_deref().unwrap_or("v1.32.4");
            let minor = git.split('.').nth(1).unwrap_or("");
            (
                200,
                json!({
                    "major": "1", "minor": minor, "gitVersion": git,
                    "gitCommit": "0000000000000000000000000000000000000000",
                    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                    "goVersion": "go1.24.0", "compiler": "gc", "platform": "linux/amd64",
                }),
            )
        }
        Route::GetNode => match &w.node {
            Some(n) => (200, n.clone()),
            None => (404, not_found()),
        },
        Route::PatchNode => match &mut w.node {
            Some(n) => {
                merge_patch(n, body);
                bump(n);
                (200, n.clone())
            }
            None => (404, not_found()),
        },
        Route::PatchStatus => match &mut w.node {
            Some(n) => {
                let conds = n["status"]["conditions"]
                    .as_array_mut()
                    .expect("node has conditions");
                for c in body["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    // patchMergeKey "type": fields of an existing entry are replaced, others kept.
                    match conds.iter_mut().find(|e| e["type"] == c["type"]) {
                        Some(e) => merge_patch(e, c),
                        None => conds.push(c.clone()),
                    }
                }
                bump(n);
                (200, n.clone())
            }
            None => (404, not_found()),
        },
        Route::CreateEvent => {
            let name = body["metadata"]["name"].as_str().unwrap_or("").to_owned();
            if w.events.contains_key(&name) {
                return (409, status_body(409, "AlreadyExists", "event exists"));
            }
            let mut ev = body.clone();
            ev["metadata"]["uid"] = json!(format!("event-uid-{}", w.events.len()));
            w.events.insert(name, ev.clone());
            (201, ev)
        }
        Route::PatchEvent => {
            let name = path.rsplit('/').next().unwrap_or("");
            match w.events.get_mut(name) {
                Some(ev) => {
                    merge_patch(ev, body);
                    (200, ev.clone())
                }
                None => (404, status_body(404, "NotFound", "event not found")),
            }
        }
    }
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn bump(node: &mut Value) {
    let rv: u64 = node["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    node["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
}

fn not_found() -> Value {
    status_body(404, "NotFound", &format!("nodes \"{NODE}\" not found"))
}

fn fault_body(code: u16) -> Value {
    let reason = match code {
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        _ => "Unknown",
    };
    let mut b = status_body(code, reason, &format!("injected {code}"));
    if code == 403 {
        b["message"] = json!(format!(
            "nodes \"{NODE}\" is forbidden: User \"system:serviceaccount:nodedrift:nodedrift\" cannot patch resource"
        ));
    }
    b
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {"name": NODE, "kind": "nodes"},
        "code": code,
    })
}

/// A Node as an AKS kubelet registers it, with a NodeDrift condition left by a previous run.
pub fn aks_node() -> Value {
    let kubelet_condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": "2026-03-01T09:59:30Z",
            "lastTransitionTime": "2026-01-10T08:02:11Z",
        })
    };
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE,
            "uid": NODE_UID,
            "resourceVersion": "4711",
            "creationTimestamp": "2026-01-10T08:00:00Z",
            "labels": {
                "agentpool": "nodepool1",
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "kubernetes.azure.com/agentpool": "nodepool1",
                "kubernetes.azure.com/cluster": "MC_rg_aks_westeurope",
                "kubernetes.azure.com/mode": "system",
                "kubernetes.azure.com/node-image-version": "AKSUbuntu-2204gen2containerd-202602.10.0",
                "kubernetes.azure.com/os-sku": "Ubuntu",
                "kubernetes.azure.com/role": "agent",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": NODE,
                "kubernetes.io/os": "linux",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
                "node.kubernetes.io/instance-type": "Standard_D4s_v5",
                "topology.kubernetes.io/region": "westeurope",
                "topology.kubernetes.io/zone": "0",
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "csi.volume.kubernetes.io/nodeid": "{\"disk.csi.azure.com\":\"aks-nodepool1-12345678-vmss000000\"}",
                "nodedrift.dev/snapshot-request": "keep-me",
            },
        },
        "spec": {
            "podCIDR": "10.244.0.0/24",
            "podCIDRs": ["10.244.0.0/24"],
            "providerID": "azure:///subscriptions/0000/resourceGroups/mc_rg_aks_westeurope/providers/Microsoft.Compute/virtualMachineScaleSets/aks-nodepool1-12345678-vmss/virtualMachines/0",
        },
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": "10.224.0.4"},
                {"type": "Hostname", "address": NODE},
            ],
            "allocatable": {"cpu": "3860m", "memory": "12880184Ki", "pods": "110"},
            "capacity": {"cpu": "4", "memory": "16375096Ki", "pods": "110"},
            "conditions": [
                kubelet_condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                kubelet_condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                kubelet_condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                kubelet_condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                {
                    "type": "NodeDrift", "status": "False", "reason": "NoDrift",
                    "message": "all 40 checks of profile aks-ubuntu pass",
                    "lastHeartbeatTime": "2026-03-01T09:55:00Z",
                    "lastTransitionTime": "2026-01-10T08:05:00Z",
                },
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": "0b2f6a4e-6c1d-4e2b-9a55-3d1f0c9e8b71",
                "containerRuntimeVersion": "containerd://1.7.27-1",
                "kernelVersion": "5.15.0-1079-azure",
                "kubeProxyVersion": "",
                "kubeletVersion": "v1.32.4",
                "machineID": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
                "operatingSystem": "linux",
                "osImage": "Ubuntu 22.04.5 LTS",
                "systemUUID": "5e7a9c1b-2d3f-4a5b-8c6d-7e8f9a0b1c2d",
            },
        },
    })
}
