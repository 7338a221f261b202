//! The endpoint stage: one [`EndpointClient`] per upstream address, owning its pooled connections.
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
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus::{IntCounter, IntGauge};
use std::collections::HashMap;
use tokio::net::TcpStream;

use super::error::ProxyError;
use super::health::{Health, HealthMetrics};
use super::ReqBody;
use crate::metrics::Metrics;

/// Most idle HTTP/1 connections kept per endpoint; more are closed when returned.
const MAX_IDLE_PER_ENDPOINT: usize = 64;

/// Settings shared by all endpoints of one router.
#[derive(Clone, Debug)]
pub struct EndpointSettings {
    pub h2: bool,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Connection-level counters for one router, and the families per-endpoint gauges come from.
#[derive(Clone)]
pub struct ConnectMetrics {
    pub ok: IntCounter,
    pub failed: IntCounter,
    pub router: std::sync::Arc<str>,
    pub families: std::sync::Arc<Metrics>,
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

/// Interns one [`EndpointClient`] per address for a router, so pools survive endpoint-set updates. When the last
/// user of an endpoint lets go (it left the registry and no request holds it), its metric series are removed, so
/// instance churn does not grow the exposition forever.
pub struct EndpointPool {
    settings: EndpointSettings,
    metrics: ConnectMetrics,
    endpoints: Mutex<HashMap<SocketAddr, Weak<EndpointClient>>>,
}

impl EndpointPool {
    /// An empty pool.
    pub fn new(settings: EndpointSettings, metrics: ConnectMetrics) -> Arc<Self> {
        Arc::new(Self { settings, metrics, endpoints: Mutex::new(HashMap::new()) })
    }

    /// The client for `addr`, shared with anyone else who asked while it was alive.
    pub fn get(self: &Arc<Self>, addr: SocketAddr) -> Arc<EndpointClient> {
        let mut map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ep) = map.get(&addr).and_then(Weak::upgrade) {
            return ep;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let (router, families) = (&*self.metrics.router, &self.metrics.families);
        let endpoint = addr.to_string();
        let labels = [router, endpoint.as_str()];
        let health = Health::new(HealthMetrics {
            available: families.endpoint_available.with_label_values(&labels),
            ejections: families.endpoint_ejections.with_label_values(&labels),
            latency_ewma: families.endpoint_latency_ewma.with_label_values(&labels),
        });
        let ep = Arc::new(EndpointClient {
            addr,
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(None),
            h2_connecting: tokio::sync::Mutex::new(()),
            in_flight: AtomicUsize::new(0),
            in_flight_gauge: families.endpoint_in_flight.with_label_values(&labels),
            health,
            pool: Arc::downgrade(self),
        });
        map.insert(addr, Arc::downgrade(&ep));
        ep
    }
}

struct Idle {
    sender: http1::SendRequest<ReqBody>,
    since: Instant,
}

/// One upstream address and its connections.
pub struct EndpointClient {
    pub addr: SocketAddr,
    settings: EndpointSettings,
    metrics: ConnectMetrics,
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

impl Drop for EndpointClient {
    fn drop(&mut self) {
        let Some(pool) = self.pool.upgrade() else { return };
        // Under the pool's lock: if a new client for this address was interned meanwhile, the series are its own.
        let mut map = pool.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&self.addr).and_then(Weak::upgrade).is_some() {
            return;
        }
        map.remove(&self.addr);
        let endpoint = self.addr.to_string();
        let labels = [&*pool.metrics.router, endpoint.as_str()];
        let f = &pool.metrics.families;
        let _ = f.endpoint_available.remove_label_values(&labels);
        let _ = f.endpoint_ejections.remove_label_values(&labels);
        let _ = f.endpoint_latency_ewma.remove_label_values(&labels);
        let _ = f.endpoint_in_flight.remove_label_values(&labels);
    }
}

/// Decrements the in-flight count however the request ends (including the caller being dropped).
struct InFlight<'a>(&'a EndpointClient);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.in_flight_gauge.dec();
    }
}

impl EndpointClient {
    /// Requests sent and not yet answered: the balancer's load signal.
    pub fn load(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Sends `req` and waits for the response headers; the body streams afterwards.
    pub async fn send(self: &Arc<Self>, req: Request<ReqBody>) -> Result<Response<Incoming>, SendError> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.in_flight_gauge.inc();
        let _guard = InFlight(self);
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

    async fn connect(&self) -> Result<TokioIo<TcpStream>, ProxyError> {
        let timeout = self.settings.connect_timeout;
        let res = match tokio::time::timeout(timeout, TcpStream::connect(self.addr)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("connect timed out after {} ms", timeout.as_millis())),
        };
        match res {
            Ok(stream) => {
                self.metrics.ok.inc();
                // Small request/response messages: never wait for Nagle.
                let _ = stream.set_nodelay(true);
                Ok(TokioIo::new(stream))
            }
            Err(error) => {
                self.metrics.failed.inc();
                Err(ProxyError::Connect { addr: self.addr, error })
            }
        }
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
