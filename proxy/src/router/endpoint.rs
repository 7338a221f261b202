//! The endpoint stage: one [`Endpoint`] per upstream address, owning its pooled connections, interned per router
//! in an [`EndpointPool`].
//!
//! HTTP/1.1 upstreams get a LIFO pool of idle keep-alive connections (a connection goes back to the pool once
//! hyper says it can take another request, i.e. after the response body is done). HTTP/2 (h2c, prior knowledge)
//! upstreams share one multiplexed connection. When a pooled HTTP/1 connection turns out to be dead before the
//! request was written, the next idle one (or a fresh connection) is tried — hyper hands the unsent request back,
//! so this is safe for every method. A failed send says whether the request reached the upstream and, if not, hands the
//! request back, so the retry stage can resend even a streaming body.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use std::collections::HashMap;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::body::ReqBody;
use super::error::ProxyError;
use super::health::{Health, HealthFamilies};
use crate::metrics::{names, Registry};
use crate::tls::TlsTarget;

/// How long a TLS handshake with an upstream may take (on top of the TCP connect).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An endpoint is one address reached one way: in plaintext, or over TLS with one client config and server name.
type PoolKey = (SocketAddr, Option<(usize, String)>);

fn pool_key(addr: SocketAddr, tls: Option<&Arc<TlsTarget>>) -> PoolKey {
    (addr, tls.map(|t| (t.tls.as_ref().map_or(0, |c| Arc::as_ptr(c) as usize), t.name.clone())))
}

/// A connection to an upstream, plaintext or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Most idle HTTP/1 connections kept per endpoint; more are closed when returned.
const MAX_IDLE_PER_ENDPOINT: usize = 64;

/// Settings shared by all endpoints of one router.
#[derive(Clone, Debug)]
pub struct EndpointSettings {
    pub h2: bool,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
}

/// The endpoint families: connections opened per router, requests in flight per endpoint, and its health.
#[derive(Clone)]
pub struct EndpointFamilies {
    connects: IntCounterVec,
    in_flight: IntGaugeVec,
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

    /// The endpoint for `addr` (over `tls` when given), shared with anyone else who asked while it was alive.
    pub fn get(self: &Arc<Self>, addr: SocketAddr, tls: Option<&Arc<TlsTarget>>) -> Arc<Endpoint> {
        let key = pool_key(addr, tls);
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
            idle: Mutex::new(Vec::new()),
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

struct Idle {
    sender: http1::SendRequest<ReqBody>,
    since: Instant,
}

/// One upstream address and its connections.
pub struct Endpoint {
    pub addr: SocketAddr,
    /// How connections are secured (`None`: plaintext).
    tls: Option<Arc<TlsTarget>>,
    settings: EndpointSettings,
    connects: ConnectCounters,
    idle: Mutex<Vec<Idle>>,
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
        let Some(pool) = self.pool.upgrade() else { return };
        // Under the pool's lock: if a new endpoint for this address was interned meanwhile, the series are its own.
        let mut map = pool.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let key = pool_key(self.addr, self.tls.as_ref());
        if map.get(&key).and_then(Weak::upgrade).is_some() {
            return;
        }
        map.remove(&key);
        // Another way to the same address still uses the series.
        if map.keys().any(|(addr, _)| *addr == self.addr) {
            return;
        }
        let endpoint = self.addr.to_string();
        pool.families.health.remove(&pool.router, &endpoint);
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
        if self.settings.h2 {
            self.send_h2(req).await
        } else {
            self.send_h1(req).await
        }
    }

    async fn send_h1(self: &Arc<Self>, mut req: Request<ReqBody>) -> Result<Response<Incoming>, SendError> {
        loop {
            let (mut sender, reused) = match self.take_idle() {
                Some(s) => (s, true),
                None => match self.connect_h1().await {
                    Ok(s) => (s, false),
                    Err(e) => return Err(SendError::unsent(e, req)),
                },
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.recycle(sender);
                    return Ok(resp);
                }
                Err(mut err) => match err.take_message() {
                    // A pooled connection closed under us before anything was written: try a fresh one.
                    Some(unsent) if reused => req = unsent,
                    Some(unsent) => return Err(SendError::unsent(self.upstream_error(err.into_error()), unsent)),
                    None => return Err(SendError::sent(self.upstream_error(err.into_error()))),
                },
            }
        }
    }

    fn shared_h2(&self) -> Option<http2::SendRequest<ReqBody>> {
        self.h2.lock().unwrap_or_else(|e| e.into_inner()).clone().filter(|s| !s.is_closed())
    }

    async fn send_h2(self: &Arc<Self>, req: Request<ReqBody>) -> Result<Response<Incoming>, SendError> {
        let mut sender = match self.shared_h2() {
            Some(s) => s,
            None => {
                // One connection attempt at a time; whoever waited uses the connection the first one made.
                let _connecting = self.h2_connecting.lock().await;
                match self.shared_h2() {
                    Some(s) => s,
                    None => match self.connect_h2().await {
                        Ok(s) => {
                            *self.h2.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
                            s
                        }
                        Err(e) => return Err(SendError::unsent(e, req)),
                    },
                }
            }
        };
        match sender.try_send_request(req).await {
            Ok(resp) => Ok(resp),
            Err(mut err) => match err.take_message() {
                Some(unsent) => Err(SendError::unsent(self.upstream_error(err.into_error()), unsent)),
                None => Err(SendError::sent(self.upstream_error(err.into_error()))),
            },
        }
    }

    fn take_idle(&self) -> Option<http1::SendRequest<ReqBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() < self.settings.idle_timeout && entry.sender.is_ready() {
                return Some(entry.sender);
            }
        }
        None
    }

    /// Returns the connection to the pool once it can take another request (after the response body ends).
    fn recycle(self: &Arc<Self>, mut sender: http1::SendRequest<ReqBody>) {
        let this: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            if sender.ready().await.is_err() {
                return;
            }
            if let Some(this) = this.upgrade() {
                let mut idle = this.idle.lock().unwrap_or_else(|e| e.into_inner());
                if idle.len() < MAX_IDLE_PER_ENDPOINT {
                    idle.push(Idle { sender, since: Instant::now() });
                }
            }
        });
    }

    /// Connects (TCP, then TLS when configured), counting the result.
    async fn connect(&self) -> Result<TokioIo<Box<dyn Io>>, ProxyError> {
        let result = match self.connect_tcp().await {
            Ok(tcp) => match &self.tls {
                None => Ok(Box::new(tcp) as Box<dyn Io>),
                Some(tls) => self.handshake(tls, tcp).await,
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(io) => {
                self.connects.ok.inc();
                Ok(TokioIo::new(io))
            }
            Err(error) => {
                self.connects.failed.inc();
                Err(ProxyError::Connect { addr: self.addr, error })
            }
        }
    }

    async fn handshake(&self, tls: &TlsTarget, tcp: TcpStream) -> Result<Box<dyn Io>, String> {
        let name = tls.name.as_str();
        let Some(client) = &tls.tls else {
            return Err("TLS is configured for this client but its certificates could not be loaded".into());
        };
        let Some(server_name) = tls.server_name.clone() else {
            return Err(format!("TLS: commonName {name:?} is not a valid DNS name or IP address"));
        };
        let handshake = client.connector().connect(server_name, tcp);
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(stream)) => Ok(Box::new(stream)),
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

    async fn connect_h1(&self) -> Result<http1::SendRequest<ReqBody>, ProxyError> {
        let io = self.connect().await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| ProxyError::Connect { addr: self.addr, error: e.to_string() })?;
        drive(self.addr, conn);
        Ok(sender)
    }

    async fn connect_h2(&self) -> Result<http2::SendRequest<ReqBody>, ProxyError> {
        let io = self.connect().await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(20))
            .handshake(io)
            .await
            .map_err(|e| ProxyError::Connect { addr: self.addr, error: e.to_string() })?;
        drive(self.addr, conn);
        Ok(sender)
    }

    fn upstream_error(&self, e: hyper::Error) -> ProxyError {
        let mut msg = e.to_string();
        if let Some(src) = std::error::Error::source(&e) {
            msg = format!("{msg}: {src}");
        }
        ProxyError::Upstream { addr: self.addr, error: msg }
    }
}

/// Runs a connection's I/O in its own task until it closes.
fn drive<F>(addr: SocketAddr, conn: F)
where
    F: std::future::Future<Output = Result<(), hyper::Error>> + Send + 'static,
{
    tokio::spawn(async move {
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
