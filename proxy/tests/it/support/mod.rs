//! Test harness: starts the whole sidecar in-process on port 0, with fake upstreams on real sockets.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// What a fake upstream saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body_len: usize,
}

/// A fake upstream: answers `200 <name>` with `x-upstream: <name>`, and a few special paths:
/// `/status/N` → that status; `/slow/MS` → waits MS ms first; `/drip` → streams a first chunk, then waits until
/// `release()` before the rest; `/big/N` → N bytes streamed in 64 KiB chunks; `/trailers` → `body` and the trailer
/// `x-checksum: c0ffee`. Request bodies are read fully and
/// their length reported in `x-body-len`.
pub struct Upstream {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub release: Arc<tokio::sync::Notify>,
    /// Faults to inject into every request (changeable while running).
    pub faults: Arc<Mutex<Faults>>,
    /// Connections accepted, open now, and open at most at once.
    pub conns: Arc<ConnCount>,
    kill: tokio::sync::watch::Sender<bool>,
    h2_only: bool,
}

/// An upstream's connections: accepted in all, open now, and the most open at once.
#[derive(Debug, Default)]
pub struct ConnCount {
    pub accepted: AtomicUsize,
    pub open: AtomicUsize,
    pub peak: AtomicUsize,
}

impl ConnCount {
    fn opened(&self) {
        self.accepted.fetch_add(1, Ordering::SeqCst);
        let now = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }
}

/// Injected faults: a share of requests answered 503, and a delay before every answer.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    pub fail_ratio: f64,
    pub delay: Duration,
}

impl Upstream {
    pub async fn start(name: &'static str) -> Self {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap(), false).await
    }

    pub async fn start_h2(name: &'static str) -> Self {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap(), true).await
    }

    pub async fn start_on(name: &'static str, addr: SocketAddr, h2_only: bool) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (kill, _) = tokio::sync::watch::channel(false);
        let up = Self {
            name,
            addr,
            hits: Arc::new(AtomicUsize::new(0)),
            seen: Arc::new(Mutex::new(Vec::new())),
            release: Arc::new(tokio::sync::Notify::new()),
            faults: Arc::new(Mutex::new(Faults::default())),
            conns: Arc::new(ConnCount::default()),
            kill,
            h2_only,
        };
        up.serve(listener);
        up
    }

    fn serve(&self, listener: TcpListener) {
        let (name, h2_only) = (self.name, self.h2_only);
        let (h, s, r, f) = (self.hits.clone(), self.seen.clone(), self.release.clone(), self.faults.clone());
        let conns = self.conns.clone();
        let mut killed = self.kill.subscribe();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    conn = listener.accept() => match conn { Ok(c) => c, Err(_) => return },
                    _ = killed.wait_for(|k| *k) => return,
                };
                let (h, s, r, f) = (h.clone(), s.clone(), r.clone(), f.clone());
                let mut killed = killed.clone();
                conns.opened();
                let conns = conns.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(name, req, h.clone(), s.clone(), r.clone(), f.clone()));
                    let io = TokioIo::new(stream);
                    // A kill drops the connection mid-request, as a crashed process would.
                    if h2_only {
                        let conn =
                            hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(io, svc);
                        tokio::select! { _ = conn => {}, _ = killed.wait_for(|k| *k) => {} }
                    } else {
                        let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, svc);
                        tokio::select! { _ = conn => {}, _ = killed.wait_for(|k| *k) => {} }
                    }
                    conns.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
    }

    /// Crashes the upstream: stops listening and drops every open connection, in-flight requests included.
    pub fn kill(&self) {
        // send_replace: the value must change even when no task is listening any more.
        self.kill.send_replace(true);
    }

    /// Starts listening again on the same address after a kill.
    pub async fn restart(&self) {
        self.kill.send_replace(false);
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap() = faults;
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn last_seen(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("upstream saw a request")
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

async fn handle(
    name: &'static str,
    req: Request<Incoming>,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    release: Arc<tokio::sync::Notify>,
    faults: Arc<Mutex<Faults>>,
) -> Result<Response<Body>, Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    let f = *faults.lock().unwrap();
    if !f.delay.is_zero() {
        tokio::time::sleep(f.delay).await;
    }
    if f.fail_ratio > 0.0 && rand_f64() < f.fail_ratio {
        let resp = Response::builder().status(503).header("x-upstream", name).body(full("injected failure")).unwrap();
        return Ok(resp);
    }
    let (parts, body) = req.into_parts();
    let body_len = body.collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        version: parts.version,
        headers: parts.headers.clone(),
        body_len,
    });
    let path = parts.uri.path().to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut status = StatusCode::OK;
    let body = match segs.as_slice() {
        ["status", code] => {
            status = StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            full(name)
        }
        ["slow", ms] => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(100))).await;
            full(name)
        }
        ["drip"] => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"first-chunk;")).await;
                release.notified().await;
                let _ = tx.send(Bytes::from_static(b"rest")).await;
            });
            ChannelBody(rx).boxed()
        }
        ["trailers"] => TrailerBody(0).boxed(),
        ["big", n] => {
            let total: usize = n.parse().unwrap_or(0);
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
            tokio::spawn(async move {
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let mut left = total;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if tx.send(chunk.slice(..n)).await.is_err() {
                        return;
                    }
                    left -= n;
                }
            });
            ChannelBody(rx).boxed()
        }
        _ => full(name),
    };
    let mut resp = Response::builder();
    if path == "/trailers" {
        resp = resp.header("trailer", "x-checksum");
    }
    let resp = resp
        .status(status)
        .header("x-upstream", name)
        .header("x-body-len", body_len.to_string())
        .header("connection", "x-upstream-private")
        .header("x-upstream-private", "secret")
        .body(body)
        .unwrap();
    Ok(resp)
}

/// `body` followed by the trailer `x-checksum: c0ffee` (the state counts the frames sent).
pub struct TrailerBody(u8);

impl http_body::Body for TrailerBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0 += 1;
        std::task::Poll::Ready(match self.0 {
            1 => Some(Ok(Frame::data(Bytes::from_static(b"body")))),
            2 => {
                let mut trailers = http::HeaderMap::new();
                trailers.insert("x-checksum", http::HeaderValue::from_static("c0ffee"));
                Some(Ok(Frame::trailers(trailers)))
            }
            _ => None,
        })
    }
}

/// A body fed chunk by chunk from a channel, so tests control exactly when bytes become available.
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// A sidecar started from YAML (use `PORT0` placeholders freely: everything binds 127.0.0.1:0 by default).
pub struct Sidecar {
    pub running: switchyard::app::Running,
    pub registry: PathBuf,
}

impl Sidecar {
    /// Starts a sidecar from `yaml`, in which `{registry}` is replaced by a fresh registry directory.
    pub async fn start(yaml: &str) -> Self {
        let registry = std::env::temp_dir().join(format!("sy-test-{}-{}", std::process::id(), fastrand_u64()));
        std::fs::create_dir_all(&registry).unwrap();
        let yaml = yaml.replace("{registry}", registry.to_str().unwrap());
        let loaded = match switchyard::config::load(&yaml) {
            Ok(l) => l,
            Err(errs) => panic!("test config invalid: {errs:?}\n{yaml}"),
        };
        let running = switchyard::app::start(loaded.config, Duration::from_secs(5)).await.expect("sidecar starts");
        Self { running, registry }
    }

    pub fn addr(&self, router: &str) -> SocketAddr {
        self.running.server_addr(router).expect("router exists")
    }

    pub fn admin(&self) -> SocketAddr {
        self.running.admin_addr
    }

    /// Writes a registry file for the fs namer atomically.
    pub fn register(&self, name: &str, addrs: &[SocketAddr]) {
        let text: String = addrs.iter().map(|a| format!("{a}\n")).collect();
        let tmp = self.registry.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.registry.join(name)).unwrap();
    }

    /// Writes a registry file and waits until the sidecar's fs namer has read it: no fixed sleep for its poll.
    pub async fn register_seen(&self, name: &str, addrs: &[SocketAddr]) {
        self.register(name, addrs);
        let want: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        let (admin_addr, want_ref) = (self.admin(), &want);
        let what = format!("the fs namer reads {name} = {want:?}");
        switchyard_test_support::eventually(&what, Duration::from_secs(10), move || async move {
            let (_, _, body) = admin(admin_addr, "GET", "/namers.json", &[], "").await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let namers = v["namers"].as_object().cloned().unwrap_or_default();
            namers.values().any(|n| n["names"][name] == serde_json::json!(want_ref))
        })
        .await;
    }

    pub fn deregister(&self, name: &str) {
        let _ = std::fs::remove_file(self.registry.join(name));
    }
}

/// A uniform random number in [0, 1) (xorshift over a time-seeded state; no extra test dependency).
pub fn rand_f64() -> f64 {
    use std::cell::Cell;
    thread_local!(static STATE: Cell<u64> = Cell::new(fastrand_u64() | 1));
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

fn fastrand_u64() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    static N: AtomicUsize = AtomicUsize::new(0);
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
        ^ (N.fetch_add(1, Ordering::SeqCst) as u64) << 48
}

/// How long a test waits for any one answer: a hang becomes a failure that says where, never a stuck CI run.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// A minimal HTTP/1.1 client over a fresh connection per call (no pooling: tests want each request independent).
pub async fn send(addr: SocketAddr, req: Request<Body>) -> Response<Incoming> {
    let what = format!("{} {} {:?} to {addr}", req.method(), req.uri(), req.headers().get("host"));
    let exchange = async move {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        sender.send_request(req).await.expect("response")
    };
    match tokio::time::timeout(ANSWER_WITHIN, exchange).await {
        Ok(resp) => resp,
        Err(_) => panic!("no response within {ANSWER_WITHIN:?}: {what}"),
    }
}

/// GET `path` with `Host: host` (and extra headers).
pub async fn get(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Response<Incoming> {
    let mut b = Request::builder().uri(path).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(addr, b.body(full("")).unwrap()).await
}

pub async fn text(resp: Response<Incoming>) -> String {
    let body = tokio::time::timeout(ANSWER_WITHIN, resp.into_body().collect()).await;
    let bytes =
        body.unwrap_or_else(|_| panic!("the body did not end within {ANSWER_WITHIN:?}")).expect("body").to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A plain admin request: (status, headers, body).
pub async fn admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, http::HeaderMap, String) {
    let mut b = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        b = b.header("host", addr.to_string());
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = send(addr, b.body(full(body.to_string())).unwrap()).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, text(resp).await)
}

/// Polls `f` every 20 ms until it returns true or `deadline` passes; the deadline only bounds how long a broken
/// build hangs, it is not a performance assertion.
pub async fn eventually(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
