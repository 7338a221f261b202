//! The endpoint stage: one [`Endpoint`] per upstream address, owning its connections, interned per router in an
//! [`EndpointPool`].
//!
//! HTTP/1.1 upstreams get a bounded pool with a queue ([`super::pool`]): a connection goes back to it once hyper
//! says it can take another request (after the response body is done). HTTP/2 upstreams — h2c by prior knowledge
//! on an `h2` router, or any TLS peer that accepts `h2` by ALPN (another switchyard: the sidecar-to-sidecar
//! upgrade) — share one multiplexed connection; an HTTP/1.1 request carried that way says so in
//! `l5d-orig-proto`, and the peer's own upstream gets HTTP/1.1 again. When a pooled HTTP/1 connection turns out
//! to be dead before the request was written, the next idle one (or a fresh connection) is tried — hyper hands
//! the unsent request back, so this is safe for every method. A failed send says whether the request reached the
//! upstream and, if not, hands the request back, so the retry stage can resend even a streaming body.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2, TrySendError};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use std::collections::HashMap;
use tokio::net::TcpStream;

use super::body::ReqBody;
use super::error::ProxyError;
use super::headers;
use super::health::{Health, HealthFamilies};
use super::pool::{Checkout, ConnectPermit, ConnectionSlot, H1Pool, PoolFamilies, Waited};
use crate::config::PoolLimits;
use crate::metrics::{names, Registry};
use crate::tls::TlsTarget;

/// How long a TLS handshake with an upstream may take (on top of the TCP connect).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An endpoint is one address reached one way: in plaintext, or over TLS with one client config and server name,
/// with one set of pool limits.
type PoolKey = (SocketAddr, Option<(usize, String)>, PoolLimits);

fn pool_key(addr: SocketAddr, tls: Option<&Arc<TlsTarget>>, limits: PoolLimits) -> PoolKey {
    (addr, tls.map(|t| (t.tls.as_ref().map_or(0, |c| Arc::as_ptr(c) as usize), t.name.clone())), limits)
}

/// A connection to an upstream, plaintext or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Settings shared by all endpoints of one router.
#[derive(Clone, Debug)]
pub struct EndpointSettings {
    /// HTTP/2 by prior knowledge (an `h2` router).
    pub h2: bool,
    /// TLS connections offer h2 by ALPN (`client.h2Upgrade` on an HTTP/1.1 router).
    pub h2_upgrade: bool,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
}

/// The endpoint families: connections opened per router, requests in flight per endpoint, its connection pool
/// and its health.
#[derive(Clone)]
pub struct EndpointFamilies {
    connects: IntCounterVec,
    in_flight: IntGaugeVec,
    pool: PoolFamilies,
    health: HealthFamilies,
}

impl EndpointFamilies {
    /// Registers the families (health's included).
    pub fn register(r: &Registry) -> Self {
        Self {
            connects: r.int_counter_vec(
                names::UPSTREAM_CONNECTS,
                "Upstream connections opened, by result.",
                &["router", "result"],
            ),
            in_flight: r.int_gauge_vec(
                names::ENDPOINT_IN_FLIGHT,
                "Requests sent to an endpoint and not yet answered.",
                &["router", "endpoint"],
            ),
            pool: PoolFamilies::register(r),
            health: HealthFamilies::register(r),
        }
    }
}

/// One router's connection counters, resolved once.
#[derive(Clone)]
struct ConnectCounters {
    ok: IntCounter,
    failed: IntCounter,
}

/// A send that did not produce a response.
pub struct SendError {
    pub error: ProxyError,
    /// The request, when it never left the proxy (connect failed, or a pooled connection died first); boxed so
    /// the error path does not make every `Result` large.
    pub unsent: Option<Box<Request<ReqBody>>>,
    /// Whether any of the request may have reached the upstream; if not, resending is safe for every method.
    pub sent: bool,
}

impl SendError {
    fn unsent(error: ProxyError, req: Request<ReqBody>) -> Self {
        Self { error, unsent: Some(Box::new(req)), sent: false }
    }

    fn sent(error: ProxyError) -> Self {
        Self { error, unsent: None, sent: true }
    }
}

/// Interns one [`Endpoint`] per address for a router, so pools survive endpoint-set updates. When the last
/// user of an endpoint lets go (it left the registry and no request holds it), its metric series are removed, so
/// instance churn does not grow the exposition forever.
pub struct EndpointPool {
    router: Arc<str>,
    settings: EndpointSettings,
    families: EndpointFamilies,
    connects: ConnectCounters,
    endpoints: Mutex<HashMap<PoolKey, Weak<Endpoint>>>,
}

impl EndpointPool {
    /// An empty pool for `router`.
    pub fn new(router: Arc<str>, settings: EndpointSettings, families: EndpointFamilies) -> Arc<Self> {
        let connects = ConnectCounters {
            ok: families.connects.with_label_values(&[&router, "ok"]),
            failed: families.connects.with_label_values(&[&router, "failed"]),
        };
        Arc::new(Self { router, settings, families, connects, endpoints: Mutex::new(HashMap::new()) })
    }

    /// The endpoint for `addr` (over `tls` when given, its HTTP/1.1 connections within `limits`), shared with
    /// anyone else who asked while it was alive.
    pub fn get(self: &Arc<Self>, addr: SocketAddr, tls: Option<&Arc<TlsTarget>>, limits: PoolLimits) -> Arc<Endpoint> {
        let key = pool_key(addr, tls, limits);
        let mut map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ep) = map.get(&key).and_then(Weak::upgrade) {
            return ep;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let endpoint = addr.to_string();
        let ep = Arc::new(Endpoint {
            addr,
            tls: tls.cloned(),
            settings: self.settings.clone(),
            connects: self.connects.clone(),
            h1: H1Pool::new(
                limits,
                self.settings.idle_timeout,
                self.families.pool.endpoint(&self.router, endpoint.as_str()),
            ),
            limits,
            speaks_h2: AtomicBool::new(self.settings.h2),
            learned: AtomicBool::new(self.settings.h2 || !self.settings.h2_upgrade || tls.is_none()),
            h2: Mutex::new(None),
            h2_connecting: tokio::sync::Mutex::new(()),
            in_flight: AtomicUsize::new(0),
            in_flight_gauge: self.families.in_flight.with_label_values(&[&*self.router, endpoint.as_str()]),
            health: Health::new(self.families.health.endpoint(&self.router, &endpoint)),
            pool: Arc::downgrade(self),
        });
        map.insert(key, Arc::downgrade(&ep));
        ep
    }
}

/// One upstream address and its connections.
pub struct Endpoint {
    pub addr: SocketAddr,
    /// How connections are secured (`None`: plaintext).
    tls: Option<Arc<TlsTarget>>,
    settings: EndpointSettings,
    connects: ConnectCounters,
    /// HTTP/1.1 connections.
    h1: Arc<H1Pool>,
    limits: PoolLimits,
    /// Whether requests go as HTTP/2 streams: an `h2` router, or a TLS peer that accepted `h2` by ALPN.
    speaks_h2: AtomicBool,
    /// Whether a connection has told which protocol the peer speaks. Until then (a TLS peer offered h2 by ALPN)
    /// requests wait for the first connection instead of each opening one.
    learned: AtomicBool,
    /// The shared HTTP/2 connection (holding its room in the pool while it lasts).
    h2: Mutex<Option<http2::SendRequest<ReqBody>>>,
    /// Held while an HTTP/2 connection is being made, so concurrent first requests share one connection.
    h2_connecting: tokio::sync::Mutex<()>,
    in_flight: AtomicUsize,
    in_flight_gauge: IntGauge,
    /// Failure accrual and latency estimate.
    pub health: Health,
    /// The pool that interned it, told when it goes.
    pool: Weak<EndpointPool>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint({})", self.addr)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // Its idle connections (which keep their pool alive through their I/O tasks) close now.
        self.h1.shut();
        let Some(pool) = self.pool.upgrade() else { return };
        // Under the pool's lock: if a new endpoint for this address was interned meanwhile, the series are its own.
        let mut map = pool.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let key = pool_key(self.addr, self.tls.as_ref(), self.limits);
        if map.get(&key).and_then(Weak::upgrade).is_some() {
            return;
        }
        map.remove(&key);
        // Another way to the same address still uses the series.
        if map.keys().any(|(addr, ..)| *addr == self.addr) {
            return;
        }
        let endpoint = self.addr.to_string();
        pool.families.health.remove(&pool.router, &endpoint);
        pool.families.pool.remove(&pool.router, &endpoint);
        let _ = pool.families.in_flight.remove_label_values(&[&*pool.router, endpoint.as_str()]);
    }
}

/// Decrements the in-flight count however the request ends (including the caller being dropped).
struct InFlight<'a>(&'a Endpoint);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.in_flight_gauge.dec();
    }
}

impl Endpoint {
    /// Requests sent and not yet answered: the balancer's load signal.
    pub fn load(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Counts a request in flight until the guard drops.
    fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.in_flight_gauge.inc();
        InFlight(self)
    }

    /// Sends `req` and waits for the response headers; the body streams afterwards.
    pub async fn send(self: &Arc<Self>, req: Request<ReqBody>) -> Result<Response<Incoming>, SendError> {
        let _guard = self.begin();
        if self.speaks_h2.load(Ordering::Acquire) || !self.learned.load(Ordering::Acquire) {
            self.send_h2(req).await
        } else {
            self.send_h1(req, None).await
        }
    }

    /// Sends on a pooled HTTP/1.1 connection (`first`, when the caller just opened one), queueing for one when
    /// all are busy.
    async fn send_h1(
        self: &Arc<Self>,
        mut req: Request<ReqBody>,
        mut first: Option<http1::SendRequest<ReqBody>>,
    ) -> Result<Response<Incoming>, SendError> {
        loop {
            let (mut sender, reused) = match first.take() {
                Some(sender) => (sender, false),
                // Connection setup (`open`) is boxed here and below: it is rare, and its state would otherwise
                // make every request's future larger.
                None => match self.checkout().await {
                    Ok(Pooled::Conn(sender)) => (sender, true),
                    Ok(Pooled::Permit(permit)) => match Box::pin(self.open(Some(permit))).await {
                        Ok(Conn::H1(sender)) => (sender, false),
                        // The peer just turned out to speak h2 (rare: boxed like `open`).
                        Ok(Conn::H2(sender)) => return Box::pin(self.send_on_h2(sender, req)).await,
                        Err(e) => return Err(SendError::unsent(e, req)),
                    },
                    Ok(Pooled::Upgraded) => match self.shared_h2() {
                        Some(sender) => return Box::pin(self.send_on_h2(sender, req)).await,
                        // It closed already: check out again (a new connection learns the protocol anew).
                        None => continue,
                    },
                    Err(e) => return Err(SendError::unsent(e, req)),
                },
            };
            // The lease gives the connection back however this ends — answered, failed, or cancelled with the
            // request in flight (its answer is then read and dropped, and the connection serves the next one).
            let pending: Pending = Box::pin(sender.try_send_request(req));
            let mut lease = Lease { sender: Some(sender), pending: Some(pending), endpoint: self };
            match std::future::poll_fn(|cx| lease.poll_answer(cx)).await {
                Ok(resp) => return Ok(resp),
                Err(mut err) => match err.take_message() {
                    // A pooled connection closed under us before anything was written: try a fresh one.
                    Some(unsent) if reused => req = unsent,
                    Some(unsent) => return Err(SendError::unsent(self.upstream_error(err.into_error()), unsent)),
                    None => return Err(SendError::sent(self.upstream_error(err.into_error()))),
                },
            }
        }
    }

    /// A pooled connection or a permit to open one — after waiting in the queue when all are busy. Fails when
    /// the queue is full, or when opening a connection failed while this request waited.
    async fn checkout(&self) -> Result<Pooled, ProxyError> {
        match self.h1.checkout() {
            Checkout::Idle(sender) => Ok(Pooled::Conn(sender)),
            Checkout::Connect(permit) => Ok(Pooled::Permit(permit)),
            Checkout::Wait(waiter) => match waiter.wait().await {
                Waited::Conn(sender) => Ok(Pooled::Conn(sender)),
                Waited::Connect(permit) => Ok(Pooled::Permit(permit)),
                Waited::Upgraded => Ok(Pooled::Upgraded),
                Waited::Failed(error) => Err(ProxyError::QueuedConnectFailed { addr: self.addr, error }),
            },
            Checkout::Full => Err(ProxyError::PoolFull {
                addr: self.addr,
                max_size: self.limits.max_size,
                max_waiters: self.limits.max_waiters,
            }),
        }
    }

    fn shared_h2(&self) -> Option<http2::SendRequest<ReqBody>> {
        self.h2.lock().unwrap_or_else(|e| e.into_inner()).clone().filter(|s| !s.is_closed())
    }

    async fn send_h2(self: &Arc<Self>, req: Request<ReqBody>) -> Result<Response<Incoming>, SendError> {
        let sender = match self.shared_h2() {
            Some(s) => s,
            None => {
                // One connection attempt at a time; whoever waited uses the connection the first one made.
                let connecting = self.h2_connecting.lock().await;
                if !self.speaks_h2.load(Ordering::Acquire) && self.learned.load(Ordering::Acquire) {
                    // The connection this request waited for spoke HTTP/1.1: use the pool.
                    drop(connecting);
                    return Box::pin(self.send_h1(req, None)).await;
                }
                match self.shared_h2() {
                    Some(s) => s,
                    None => {
                        let opened = Box::pin(self.open(None)).await;
                        // Others may go on at once: the protocol is known now (or the pool takes over).
                        drop(connecting);
                        match opened {
                            Ok(Conn::H2(s)) => s,
                            // The peer speaks HTTP/1.1 (once per endpoint: boxed, so that every request's
                            // future does not carry an HTTP/1.1 send inside its HTTP/2 one).
                            Ok(Conn::H1(s)) => return Box::pin(self.send_h1(req, Some(s))).await,
                            Err(e) => return Err(SendError::unsent(e, req)),
                        }
                    }
                }
            }
        };
        self.send_on_h2(sender, req).await
    }

    /// Sends on an HTTP/2 connection; a request shaped for HTTP/1.1 (by an HTTP/1.1 router whose peer accepted
    /// h2) is carried as a stream, marked `l5d-orig-proto`.
    async fn send_on_h2(
        &self,
        mut sender: http2::SendRequest<ReqBody>,
        mut req: Request<ReqBody>,
    ) -> Result<Response<Incoming>, SendError> {
        if req.version() != http::Version::HTTP_2 {
            headers::upgrade_to_h2(&mut req);
        }
        match sender.try_send_request(req).await {
            Ok(resp) => Ok(resp),
            Err(mut err) => match err.take_message() {
                Some(unsent) => Err(SendError::unsent(self.upstream_error(err.into_error()), unsent)),
                None => Err(SendError::sent(self.upstream_error(err.into_error()))),
            },
        }
    }

    /// Returns the connection to the pool once it can take another request (after the response body ends); a
    /// connection that cannot (it failed, or the exchange could not finish cleanly) is closed.
    /// An answer still `unanswered` (its request was cancelled in flight) is read and dropped first.
    fn recycle(&self, mut sender: http1::SendRequest<ReqBody>, unanswered: Option<Pending>) {
        if unanswered.is_none() {
            // Usually the connection is ready again at once (a small answer was read whole with its headers):
            // back to the pool now, without a task. A waker that does nothing is enough for one look.
            match sender.poll_ready(&mut Context::from_waker(std::task::Waker::noop())) {
                Poll::Ready(Ok(())) => return self.h1.put_back(sender),
                Poll::Ready(Err(_)) => return,
                Poll::Pending => {}
            }
        }
        let pool = Arc::downgrade(&self.h1);
        tokio::spawn(async move {
            if let Some(pending) = unanswered {
                if !drain(pending).await {
                    return;
                }
            }
            if sender.ready().await.is_err() {
                return;
            }
            if let Some(pool) = pool.upgrade() {
                pool.put_back(sender);
            }
        });
    }

    /// Connects (TCP, then TLS when configured), counting the result; `true` with it when the peer accepted
    /// `h2` by ALPN.
    async fn connect(&self) -> Result<(TokioIo<Box<dyn Io>>, bool), ProxyError> {
        let result = match self.connect_tcp().await {
            Ok(tcp) => match &self.tls {
                None => Ok((Box::new(tcp) as Box<dyn Io>, false)),
                Some(tls) => self.handshake(tls, tcp).await,
            },
            Err(e) => Err(e),
        };
        match result {
            Ok((io, h2)) => {
                self.connects.ok.inc();
                Ok((TokioIo::new(io), h2))
            }
            Err(error) => {
                self.connects.failed.inc();
                Err(ProxyError::Connect { addr: self.addr, error })
            }
        }
    }

    async fn handshake(&self, tls: &TlsTarget, tcp: TcpStream) -> Result<(Box<dyn Io>, bool), String> {
        let name = tls.name.as_str();
        let Some(client) = &tls.tls else {
            return Err("TLS is configured for this client but its certificates could not be loaded".into());
        };
        let Some(server_name) = tls.server_name.clone() else {
            return Err(format!("TLS: commonName {name:?} is not a valid DNS name or IP address"));
        };
        let handshake = client.connector().connect(server_name, tcp);
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(stream)) => {
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                Ok((Box::new(stream), h2))
            }
            Ok(Err(e)) => Err(format!("TLS handshake with {name} failed: {}", crate::tls::describe(&e))),
            Err(_) => Err(format!("TLS handshake with {name} timed out after {} s", TLS_HANDSHAKE_TIMEOUT.as_secs())),
        }
    }

    async fn connect_tcp(&self) -> Result<TcpStream, String> {
        let timeout = self.settings.connect_timeout;
        let res = match tokio::time::timeout(timeout, TcpStream::connect(self.addr)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("connect timed out after {} ms", timeout.as_millis())),
        };
        let stream = res?;
        // Small request/response messages: never wait for Nagle.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Opens a connection under `permit` (or, for an HTTP/2 endpoint, with a room of its own): HTTP/2 on an `h2`
    /// router or when the TLS peer accepted it — then it becomes the endpoint's shared connection, and the
    /// endpoint sends every request as a stream from now on — else HTTP/1.1.
    async fn open(&self, permit: Option<ConnectPermit>) -> Result<Conn, ProxyError> {
        let permit = permit.unwrap_or_else(|| self.h1.extra_permit());
        let (io, alpn_h2) = match self.connect().await {
            Ok(ok) => ok,
            Err(e) => {
                permit.failed(&e.to_string());
                // Requests stop waiting for one first connection: the pool (and its failure handling) takes over,
                // and whichever connection succeeds next learns the protocol.
                self.learned.store(true, Ordering::Release);
                return Err(e);
            }
        };
        let handshake_failed = |e: hyper::Error| ProxyError::Connect { addr: self.addr, error: e.to_string() };
        if self.settings.h2 || alpn_h2 {
            let handshake = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(20))
                .handshake(io)
                .await;
            let (sender, conn) = match handshake {
                Ok(ok) => ok,
                Err(e) => {
                    permit.failed(&e.to_string());
                    return Err(handshake_failed(e));
                }
            };
            drive(self.addr, conn, permit.established());
            *self.h2.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender.clone());
            self.learned.store(true, Ordering::Release);
            if !self.speaks_h2.swap(true, Ordering::AcqRel) {
                tracing::debug!(addr = %self.addr, "upstream accepted h2: requests go as streams on one connection");
                self.h1.upgraded();
            }
            return Ok(Conn::H2(sender));
        }
        // A peer that stopped accepting h2 (replaced by something else) gets HTTP/1.1 again.
        self.speaks_h2.store(false, Ordering::Release);
        match http1::Builder::new().handshake(io).await {
            Ok((sender, conn)) => {
                drive(self.addr, conn, permit.established());
                self.learned.store(true, Ordering::Release);
                Ok(Conn::H1(sender))
            }
            Err(e) => {
                permit.failed(&e.to_string());
                Err(handshake_failed(e))
            }
        }
    }

    fn upstream_error(&self, e: hyper::Error) -> ProxyError {
        let mut msg = e.to_string();
        if let Some(src) = std::error::Error::source(&e) {
            msg = format!("{msg}: {src}");
        }
        ProxyError::Upstream { addr: self.addr, error: msg }
    }
}

/// The answer to a request sent on an HTTP/1.1 connection.
type Pending = Pin<Box<dyn Future<Output = Result<Response<Incoming>, TrySendError<Request<ReqBody>>>> + Send>>;

/// How much of an answer nobody waits for any more is read to keep its connection (and for how long); a longer
/// one closes the connection instead.
const DRAIN_BYTES: usize = 64 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// An HTTP/1.1 connection lent to one request, and its pending answer; back to the pool (once it can take
/// another) when dropped.
struct Lease<'a> {
    sender: Option<http1::SendRequest<ReqBody>>,
    pending: Option<Pending>,
    endpoint: &'a Endpoint,
}

impl Lease<'_> {
    /// Polls for the answer (only ever polled while it is pending).
    fn poll_answer(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Response<Incoming>, TrySendError<Request<ReqBody>>>> {
        let Some(pending) = self.pending.as_mut() else { return Poll::Pending };
        let answer = std::task::ready!(pending.as_mut().poll(cx));
        self.pending = None;
        Poll::Ready(answer)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            self.endpoint.recycle(sender, self.pending.take());
        }
    }
}

/// Reads and drops an answer nobody waits for, so that its connection can be reused: `false` when it was too
/// long, too slow or broken (the connection is closed then).
async fn drain(pending: Pending) -> bool {
    use http_body_util::BodyExt;
    let read = async {
        let Ok(resp) = pending.await else { return false };
        let mut body = resp.into_body();
        let mut left = DRAIN_BYTES;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                let Some(rest) = left.checked_sub(data.len()) else { return false };
                left = rest;
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIME, read).await.unwrap_or(false)
}

/// What a request got from the HTTP/1.1 pool.
enum Pooled {
    Conn(http1::SendRequest<ReqBody>),
    Permit(ConnectPermit),
    /// The endpoint speaks HTTP/2 now.
    Upgraded,
}

/// A new connection, of the protocol the endpoint turned out to speak.
enum Conn {
    H1(http1::SendRequest<ReqBody>),
    H2(http2::SendRequest<ReqBody>),
}

/// Runs a connection's I/O in its own task until it closes; its room in the pool is given back then.
fn drive<F>(addr: SocketAddr, conn: F, slot: ConnectionSlot)
where
    F: std::future::Future<Output = Result<(), hyper::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        let _slot = slot;
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "upstream connection ended");
        }
    });
}

#[cfg(test)]
impl Endpoint {
    /// Holds one request in flight (the balancer's load signal) until the guard drops.
    pub(super) fn hold(&self) -> impl Drop + '_ {
        self.begin()
    }
}
