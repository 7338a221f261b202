//! A Consul HTTP API double, written from Consul's API documentation, for tests and local runs without Consul.
//!
//! Serves the parts switchyard and `mesh.sh` use, with Consul's semantics:
//! - catalog: `GET /v1/catalog/service/<s>[?tag=&dc=]`, `GET /v1/catalog/services`;
//! - health: `GET /v1/health/service/<s>[?passing&tag=&dc=]`;
//! - agent: `PUT /v1/agent/service/register`, `PUT /v1/agent/service/deregister/<id>`, `GET /v1/agent/self`,
//!   `PUT /v1/agent/check/{pass,warn,fail}/<check-id>` (real Consul allows these only for TTL checks; the double
//!   allows them for any check, so tests can fail an instance without stopping it);
//! - KV: `GET /v1/kv/<key>[?raw]` (404 when missing), `PUT /v1/kv/<key>[?cas=N]` (`true`/`false`),
//!   `DELETE /v1/kv/<key>[?cas=N]`, values base64 in JSON, `CreateIndex`/`ModifyIndex`;
//! - blocking queries on every GET: `X-Consul-Index` is the resource's last change; `?index=N&wait=D` holds the
//!   answer until that index passes N or the wait (default 5m, at most 10m) runs out;
//! - HTTP checks: a registered `Check: {HTTP, Interval}` is probed like the agent does (2xx passing, else
//!   critical), starting critical as in Consul;
//! - test controls: [`ConsulDouble::set_mode`] (answer, fail with 500, or refuse connections: the listener is
//!   closed and open connections are dropped) and [`ConsulDouble::reset_index`] (the index goes backwards, as
//!   after a snapshot restore). A process run (`switchyard-bench consul`) offers them as `PUT /_control/mode/
//!   {up,fail}`, `PUT /_control/refuse?ms=N` (refuse for N ms, then answer again) and `PUT /_control/reset-index`.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How the double answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Normally.
    Up,
    /// Every API request gets `500` (a Consul without a leader).
    Failing,
    /// Connections are refused (a stopped Consul).
    Refusing,
}

/// One registered service instance.
#[derive(Clone, Debug)]
struct Service {
    id: String,
    name: String,
    tags: Vec<String>,
    address: String,
    port: u16,
    check: Option<Check>,
    create_index: u64,
    modify_index: u64,
}

#[derive(Clone, Debug)]
struct Check {
    id: String,
    http: Option<String>,
    interval: Duration,
    status: String,
}

#[derive(Clone, Debug)]
struct KvEntry {
    value: Vec<u8>,
    flags: u64,
    create_index: u64,
    modify_index: u64,
}

#[derive(Default)]
struct State {
    /// The raft index: every write takes the next one.
    index: u64,
    services: BTreeMap<String, Service>,
    /// Last change per service name (also kept after the last instance goes, like Consul's tombstones).
    service_index: HashMap<String, u64>,
    catalog_index: u64,
    kv: BTreeMap<String, KvEntry>,
    /// Last change per key, kept after deletes.
    kv_index: HashMap<String, u64>,
    kv_table_index: u64,
}

impl State {
    fn next(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    fn touch_service(&mut self, name: &str) -> u64 {
        let i = self.next();
        self.service_index.insert(name.to_string(), i);
        self.catalog_index = i;
        i
    }

    fn touch_key(&mut self, key: &str) -> u64 {
        let i = self.next();
        self.kv_index.insert(key.to_string(), i);
        self.kv_table_index = i;
        i
    }
}

struct Inner {
    state: Mutex<State>,
    datacenter: String,
    node: String,
    /// Bumped on every write; blocked queries wake and look again.
    changed: watch::Sender<u64>,
    mode: watch::Sender<Mode>,
    checker: Client,
}

type Client = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// A running double. Dropping it does not stop it; it lives as long as the runtime.
#[derive(Clone)]
pub struct ConsulDouble {
    inner: Arc<Inner>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ConsulDouble {
    /// Binds `addr` (port 0 for any) and serves in the background, datacenter `dc1`.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let checker = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
        let inner = Arc::new(Inner {
            // A real Consul has applied raft entries before anyone asks; an empty table then reports an index
            // that every later write passes.
            state: Mutex::new(State { index: 10, catalog_index: 10, kv_table_index: 10, ..State::default() }),
            datacenter: "dc1".into(),
            node: "node1".into(),
            changed: watch::channel(0).0,
            mode: watch::channel(Mode::Up).0,
            checker,
        });
        tokio::spawn(accept_loop(inner.clone(), listener, addr));
        Ok(Self { inner, addr })
    }

    /// Switches how it answers; `Refusing` closes the listener and drops every open connection.
    pub fn set_mode(&self, mode: Mode) {
        self.inner.mode.send_replace(mode);
    }

    /// Makes every index go backwards to 1, as a restored snapshot would; blocked queries wake.
    pub fn reset_index(&self) {
        let mut st = lock(&self.inner.state);
        st.index = 1;
        st.catalog_index = 1;
        st.kv_table_index = 1;
        st.service_index.values_mut().for_each(|i| *i = 1);
        st.kv_index.values_mut().for_each(|i| *i = 1);
        for s in st.services.values_mut() {
            s.modify_index = 1;
        }
        for e in st.kv.values_mut() {
            e.modify_index = 1;
        }
        drop(st);
        self.inner.changed.send_modify(|n| *n += 1);
    }

    /// Registers an instance without an HTTP check (passing), as `PUT /v1/agent/service/register` would.
    pub fn register(&self, id: &str, name: &str, address: &str, port: u16, tags: &[&str]) {
        let body = json!({ "ID": id, "Name": name, "Address": address, "Port": port, "Tags": tags });
        register(&self.inner, &body);
    }

    /// Removes an instance.
    pub fn deregister(&self, id: &str) {
        deregister(&self.inner, id);
    }

    /// Sets an instance's check status (`passing`, `warning`, `critical`); adds a check if it had none.
    pub fn set_health(&self, service_id: &str, status: &str) {
        set_check(&self.inner, &format!("service:{service_id}"), status);
    }

    /// Writes a KV value directly (no CAS), e.g. a garbage dtab "written by someone else".
    pub fn kv_put(&self, key: &str, value: &str) {
        kv_write(&self.inner, key, value.as_bytes().to_vec(), None);
    }

    /// A KV value and its ModifyIndex.
    pub fn kv_get(&self, key: &str) -> Option<(String, u64)> {
        let st = lock(&self.inner.state);
        st.kv.get(key).map(|e| (String::from_utf8_lossy(&e.value).into_owned(), e.modify_index))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Accepts while not refusing; on `Refusing` drops the listener (connections are refused) and rebinds after.
async fn accept_loop(inner: Arc<Inner>, listener: TcpListener, addr: SocketAddr) {
    let mut mode = inner.mode.subscribe();
    let mut listener = Some(listener);
    loop {
        match listener.as_ref() {
            Some(l) => tokio::select! {
                accepted = l.accept() => {
                    if let Ok((stream, _)) = accepted {
                        tokio::spawn(serve_connection(inner.clone(), stream));
                    }
                }
                _ = mode.changed() => {
                    if *mode.borrow_and_update() == Mode::Refusing {
                        listener = None;
                    }
                }
            },
            None => {
                if mode.changed().await.is_err() {
                    return;
                }
                if *mode.borrow_and_update() != Mode::Refusing {
                    listener = rebind(addr).await;
                }
            }
        }
    }
}

async fn rebind(addr: SocketAddr) -> Option<TcpListener> {
    for _ in 0..50 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return Some(l);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("consul double: cannot listen on {addr} again");
    None
}

async fn serve_connection(inner: Arc<Inner>, stream: tokio::net::TcpStream) {
    let mut mode = inner.mode.subscribe();
    let svc = service_fn(move |req| handle(inner.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
    // A stopped Consul resets its connections, blocked queries included.
    tokio::select! {
        _ = conn => {}
        _ = mode.wait_for(|m| *m == Mode::Refusing) => {}
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, index: Option<u64>, body: impl Into<Bytes>) -> Reply {
    let mut b = Response::builder().status(status).header("content-type", "application/json");
    if let Some(i) = index {
        b = b.header("x-consul-index", i.to_string());
    }
    b.body(Full::new(body.into())).unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn json_reply(index: Option<u64>, value: &Value) -> Reply {
    reply(StatusCode::OK, index, value.to_string())
}

async fn handle(inner: Arc<Inner>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path().to_string();
    let query = parse_query(parts.uri.query().unwrap_or(""));
    if let Some(control) = path.strip_prefix("/_control/") {
        return Ok(control_request(&inner, control, &query));
    }
    if *inner.mode.borrow() == Mode::Failing {
        return Ok(reply(StatusCode::INTERNAL_SERVER_ERROR, None, "rpc error: No cluster leader"));
    }
    if let Some(dc) = query.get("dc") {
        if *dc != inner.datacenter {
            return Ok(reply(StatusCode::INTERNAL_SERVER_ERROR, None, "No path to datacenter"));
        }
    }
    Ok(match parts.method {
        Method::GET => blocking_get(&inner, &path, &query).await,
        Method::PUT | Method::POST => write(&inner, &path, &query, &body),
        Method::DELETE => delete(&inner, &path, &query),
        _ => reply(StatusCode::METHOD_NOT_ALLOWED, None, "method not allowed"),
    })
}

fn control_request(inner: &Arc<Inner>, control: &str, query: &HashMap<String, String>) -> Reply {
    match control {
        "mode/up" => inner.mode.send_replace(Mode::Up),
        "mode/fail" => inner.mode.send_replace(Mode::Failing),
        "refuse" => {
            let ms = query.get("ms").and_then(|m| m.parse().ok()).unwrap_or(1000);
            let inner = inner.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                inner.mode.send_replace(Mode::Refusing);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                inner.mode.send_replace(Mode::Up);
            });
            Mode::Up
        }
        "reset-index" => {
            ConsulDouble { inner: inner.clone(), addr: SocketAddr::from(([127, 0, 0, 1], 0)) }.reset_index();
            Mode::Up
        }
        _ => return reply(StatusCode::NOT_FOUND, None, "unknown control"),
    };
    reply(StatusCode::OK, None, "ok")
}

/// Consul's `wait`: `10s`, `100ms`, `5m`; default 5 minutes, at most 10.
fn parse_wait(text: Option<&String>) -> Duration {
    let max = Duration::from_secs(600);
    let Some(t) = text else {
        return Duration::from_secs(300);
    };
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num.parse().unwrap_or(300);
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => Duration::from_secs(n),
    };
    d.min(max)
}

/// Answers a GET; with `index`, holds it until the resource's index passes it or the wait runs out.
async fn blocking_get(inner: &Arc<Inner>, path: &str, query: &HashMap<String, String>) -> Reply {
    let mut changed = inner.changed.subscribe();
    let wanted: u64 = query.get("index").and_then(|i| i.parse().ok()).unwrap_or(0);
    let deadline = tokio::time::Instant::now() + parse_wait(query.get("wait"));
    loop {
        changed.borrow_and_update();
        let (index, reply) = read(inner, path, query);
        if wanted == 0 || index > wanted || tokio::time::Instant::now() >= deadline {
            return reply;
        }
        if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
            return read(inner, path, query).1;
        }
    }
}

fn read(inner: &Inner, path: &str, query: &HashMap<String, String>) -> (u64, Reply) {
    let st = lock(&inner.state);
    if let Some(name) = path.strip_prefix("/v1/catalog/service/") {
        let name = percent_decode(name);
        let index = st.service_index.get(&name).copied().unwrap_or(st.catalog_index).max(1);
        let entries: Vec<Value> = instances(&st, &name, query).map(|s| catalog_json(inner, s)).collect();
        return (index, json_reply(Some(index), &Value::Array(entries)));
    }
    if let Some(name) = path.strip_prefix("/v1/health/service/") {
        let name = percent_decode(name);
        let index = st.service_index.get(&name).copied().unwrap_or(st.catalog_index).max(1);
        let passing = query.contains_key("passing");
        let entries: Vec<Value> = instances(&st, &name, query)
            .filter(|s| !passing || s.check.as_ref().is_none_or(|c| c.status == "passing"))
            .map(|s| health_json(inner, s))
            .collect();
        return (index, json_reply(Some(index), &Value::Array(entries)));
    }
    if path == "/v1/catalog/services" {
        let mut names: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for s in st.services.values() {
            names.entry(&s.name).or_default().extend(s.tags.iter().map(String::as_str));
        }
        let index = st.catalog_index.max(1);
        return (index, json_reply(Some(index), &json!(names)));
    }
    if path == "/v1/agent/self" {
        let body = json!({ "Config": { "Datacenter": inner.datacenter, "NodeName": inner.node } });
        return (0, json_reply(None, &body));
    }
    if let Some(key) = path.strip_prefix("/v1/kv/") {
        return kv_read(&st, &percent_decode(key), query);
    }
    (0, reply(StatusCode::NOT_FOUND, None, "unknown endpoint"))
}

fn instances<'a>(
    st: &'a State,
    name: &'a str,
    query: &'a HashMap<String, String>,
) -> impl Iterator<Item = &'a Service> {
    let tag = query.get("tag");
    st.services.values().filter(move |s| s.name == name && tag.is_none_or(|t| s.tags.contains(t)))
}

fn catalog_json(inner: &Inner, s: &Service) -> Value {
    json!({
        "ID": "00000000-0000-0000-0000-000000000001", "Node": inner.node, "Address": "127.0.0.1",
        "Datacenter": inner.datacenter, "ServiceID": s.id, "ServiceName": s.name, "ServiceTags": s.tags,
        "ServiceAddress": s.address, "ServicePort": s.port, "ServiceWeights": { "Passing": 1, "Warning": 1 },
        "CreateIndex": s.create_index, "ModifyIndex": s.modify_index,
    })
}

fn health_json(inner: &Inner, s: &Service) -> Value {
    let mut checks =
        vec![json!({ "Node": inner.node, "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing" })];
    if let Some(c) = &s.check {
        checks.push(json!({ "Node": inner.node, "CheckID": c.id, "Name": format!("Service '{}' check", s.name),
            "Status": c.status, "ServiceID": s.id, "ServiceName": s.name }));
    }
    json!({
        "Node": { "Node": inner.node, "Address": "127.0.0.1", "Datacenter": inner.datacenter },
        "Service": { "ID": s.id, "Service": s.name, "Tags": s.tags, "Address": s.address, "Port": s.port },
        "Checks": checks,
    })
}

fn kv_read(st: &State, key: &str, query: &HashMap<String, String>) -> (u64, Reply) {
    let index = st.kv_index.get(key).copied().unwrap_or(st.kv_table_index).max(1);
    let Some(e) = st.kv.get(key) else {
        return (index, reply(StatusCode::NOT_FOUND, Some(index), ""));
    };
    if query.contains_key("raw") {
        return (index, reply(StatusCode::OK, Some(index), e.value.clone()));
    }
    let body = json!([{ "Key": key, "Value": base64_encode(&e.value), "Flags": e.flags, "LockIndex": 0,
        "CreateIndex": e.create_index, "ModifyIndex": e.modify_index }]);
    (index, json_reply(Some(index), &body))
}

fn write(inner: &Arc<Inner>, path: &str, query: &HashMap<String, String>, body: &[u8]) -> Reply {
    if path == "/v1/agent/service/register" {
        return match serde_json::from_slice::<Value>(body) {
            Ok(v) if v.get("Name").and_then(Value::as_str).is_some() => {
                register(inner, &v);
                reply(StatusCode::OK, None, "")
            }
            _ => reply(StatusCode::BAD_REQUEST, None, "Request decode failed: missing Name"),
        };
    }
    if let Some(id) = path.strip_prefix("/v1/agent/service/deregister/") {
        return if deregister(inner, &percent_decode(id)) {
            reply(StatusCode::OK, None, "")
        } else {
            reply(StatusCode::NOT_FOUND, None, "Unknown service ID")
        };
    }
    for (verb, status) in [("pass", "passing"), ("warn", "warning"), ("fail", "critical")] {
        if let Some(id) = path.strip_prefix(&format!("/v1/agent/check/{verb}/")) {
            return if set_check(inner, &percent_decode(id), status) {
                reply(StatusCode::OK, None, "")
            } else {
                reply(StatusCode::NOT_FOUND, None, "Unknown check ID")
            };
        }
    }
    if let Some(key) = path.strip_prefix("/v1/kv/") {
        let cas = query.get("cas").and_then(|c| c.parse().ok());
        let ok = kv_write(inner, &percent_decode(key), body.to_vec(), cas);
        return reply(StatusCode::OK, None, if ok { "true" } else { "false" });
    }
    reply(StatusCode::NOT_FOUND, None, "unknown endpoint")
}

fn delete(inner: &Arc<Inner>, path: &str, query: &HashMap<String, String>) -> Reply {
    let Some(key) = path.strip_prefix("/v1/kv/") else {
        return reply(StatusCode::NOT_FOUND, None, "unknown endpoint");
    };
    let key = percent_decode(key);
    let cas: Option<u64> = query.get("cas").and_then(|c| c.parse().ok());
    let mut st = lock(&inner.state);
    let ok = match (st.kv.get(&key), cas) {
        (Some(e), Some(c)) if e.modify_index != c => false,
        (None, _) => true,
        _ => {
            st.kv.remove(&key);
            st.touch_key(&key);
            true
        }
    };
    drop(st);
    inner.changed.send_modify(|n| *n += 1);
    reply(StatusCode::OK, None, if ok { "true" } else { "false" })
}

/// `cas`: `Some(0)` writes only a new key; `Some(n)` only if the key's ModifyIndex is `n`.
fn kv_write(inner: &Inner, key: &str, value: Vec<u8>, cas: Option<u64>) -> bool {
    let mut st = lock(&inner.state);
    let current = st.kv.get(key).map(|e| (e.modify_index, e.create_index, e.flags));
    match (cas, current) {
        (Some(0), Some(_)) => return false,
        (Some(c), Some((m, _, _))) if c != 0 && c != m => return false,
        (Some(c), None) if c != 0 => return false,
        _ => {}
    }
    let index = st.touch_key(key);
    let (create_index, flags) = current.map_or((index, 0), |(_, c, f)| (c, f));
    st.kv.insert(key.to_string(), KvEntry { value, flags, create_index, modify_index: index });
    drop(st);
    inner.changed.send_modify(|n| *n += 1);
    true
}

fn register(inner: &Arc<Inner>, v: &Value) {
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let name = text("Name");
    let id = Some(text("ID")).filter(|i| !i.is_empty()).unwrap_or_else(|| name.clone());
    let tags =
        v.get("Tags").and_then(Value::as_array).map(|t| t.iter().filter_map(Value::as_str).map(String::from).collect());
    let port = v.get("Port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).unwrap_or(0);
    let check = v.get("Check").filter(|c| c.is_object()).map(|c| Check {
        id: format!("service:{id}"),
        http: c.get("HTTP").and_then(Value::as_str).map(String::from),
        interval: parse_wait(c.get("Interval").and_then(Value::as_str).map(String::from).as_ref())
            .max(Duration::from_millis(100)),
        status: c.get("Status").and_then(Value::as_str).unwrap_or("critical").to_string(),
    });
    let mut st = lock(&inner.state);
    let index = st.touch_service(&name);
    let create_index = st.services.get(&id).map_or(index, |s| s.create_index);
    let service = Service {
        id: id.clone(),
        name,
        tags: tags.unwrap_or_default(),
        address: text("Address"),
        port,
        check,
        create_index,
        modify_index: index,
    };
    let http_check = service.check.as_ref().and_then(|c| c.http.clone().map(|u| (u, c.interval)));
    st.services.insert(id.clone(), service);
    drop(st);
    inner.changed.send_modify(|n| *n += 1);
    if let Some((url, interval)) = http_check {
        tokio::spawn(run_http_check(Arc::downgrade(inner), id, create_index, url, interval));
    }
}

fn deregister(inner: &Inner, id: &str) -> bool {
    let mut st = lock(&inner.state);
    let Some(s) = st.services.remove(id) else {
        return false;
    };
    st.touch_service(&s.name);
    drop(st);
    inner.changed.send_modify(|n| *n += 1);
    true
}

fn set_check(inner: &Inner, check_id: &str, status: &str) -> bool {
    let mut st = lock(&inner.state);
    let Some(service_id) = check_id.strip_prefix("service:").map(String::from) else {
        return false;
    };
    let Some(s) = st.services.get_mut(&service_id) else {
        return false;
    };
    let check = s.check.get_or_insert_with(|| Check {
        id: check_id.to_string(),
        http: None,
        interval: Duration::from_secs(10),
        status: String::new(),
    });
    if check.status == status {
        return true;
    }
    check.status = status.to_string();
    let name = s.name.clone();
    let index = st.touch_service(&name);
    if let Some(s) = st.services.get_mut(&service_id) {
        s.modify_index = index;
    }
    drop(st);
    inner.changed.send_modify(|n| *n += 1);
    true
}

/// Probes `url` every `interval` like the agent's HTTP check, until the registration it belongs to is gone.
async fn run_http_check(inner: std::sync::Weak<Inner>, id: String, created: u64, url: String, interval: Duration) {
    loop {
        let Some(inner) = inner.upgrade() else { return };
        let current = lock(&inner.state).services.get(&id).map(|s| s.create_index);
        if current != Some(created) {
            return;
        }
        let status = probe(&inner.checker, &url).await;
        set_check(&inner, &format!("service:{id}"), status);
        drop(inner);
        tokio::time::sleep(interval).await;
    }
}

async fn probe(client: &Client, url: &str) -> &'static str {
    let Ok(req) = Request::get(url).body(Full::new(Bytes::new())) else {
        return "critical";
    };
    match tokio::time::timeout(Duration::from_secs(2), client.request(req)).await {
        Ok(Ok(resp)) if resp.status().is_success() => "passing",
        _ => "critical",
    }
}

fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard base64 with padding, as Consul encodes KV values.
pub fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_wait_parsing() {
        assert_eq!(base64_encode(b"a"), "YQ==");
        assert_eq!(base64_encode(b"/svc => /#/io.l5d.fs;"), "L3N2YyA9PiAvIy9pby5sNWQuZnM7");
        assert_eq!(parse_wait(Some(&"100ms".to_string())), Duration::from_millis(100));
        assert_eq!(parse_wait(Some(&"20m".to_string())), Duration::from_secs(600));
        assert_eq!(parse_wait(None), Duration::from_secs(300));
        assert_eq!(percent_decode("a%2Fb"), "a/b");
    }
}
