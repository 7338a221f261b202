//! The listening side every server of the sidecar shares — the routers' servers and the admin server: an accept
//! loop with a cap on open connections, and the deadlines each connection lives by, so that a client that connects
//! and says nothing, dribbles a request head, stalls after the HTTP/2 preface or just stays idle holds nothing for
//! long (`headerTimeoutMs`, `idleTimeoutMs`, `h2KeepAliveMs`, `maxConnections`).
//!
//! Past `maxConnections` the loop stops accepting: further clients wait in the kernel's accept backlog (or are
//! refused by the kernel when that is full) and are served as connections close — never accepted and then
//! dropped half-served. On shutdown every connection is asked to finish (HTTP/1 stops keep-alive, HTTP/2 sends
//! GOAWAY) and [`Listener::drain`] waits for them, up to a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::ConnectionLimits;
use crate::metrics::{names, Registry};

/// After a connection was asked to close (idle, or a silent new connection), how long it may take to go.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The deadlines and cap of one listener.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionRules {
    /// First request head (TLS handshake included) of a new connection.
    pub header: Duration,
    /// No request in flight for this long: the connection is closed.
    pub idle: Duration,
    /// A request body silent for this long is cut off (408).
    pub body_idle: Duration,
    /// HTTP/2 keep-alive PING interval (and the time its ACK may take).
    pub h2_keep_alive: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

impl From<&ConnectionLimits> for ConnectionRules {
    fn from(c: &ConnectionLimits) -> Self {
        Self {
            header: Duration::from_millis(c.header_timeout_ms),
            idle: Duration::from_millis(c.idle_timeout_ms),
            body_idle: Duration::from_millis(c.body_idle_timeout_ms),
            h2_keep_alive: Duration::from_millis(c.h2_keep_alive_ms),
            max_connections: c.max_connections.max(1),
        }
    }
}

/// Streams an authenticated mesh peer may cancel before they are served (see [`ConnectionRules::builder`]).
pub const MESH_RESET_STREAMS: usize = 2048;

impl ConnectionRules {
    /// An HTTP/1.1 + HTTP/2 connection builder with these deadlines; `max_header_bytes` bounds request heads
    /// (hyper answers 431 past it, and needs at least 8 KiB). With `mesh_peers` (every caller proves a mesh
    /// identity), HTTP/2 tolerates [`MESH_RESET_STREAMS`] streams cancelled before they were served instead of
    /// h2's rapid-reset guard of 20: a sidecar multiplexes many callers on one connection, and when a burst of
    /// them hangs up at once, its cancellations must not cost every other caller on the connection its request.
    pub fn builder(&self, max_header_bytes: usize, mesh_peers: bool) -> auto::Builder<TokioExecutor> {
        let head = max_header_bytes.max(8192);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // No per-request head timer from hyper: `drive` bounds the first head (`header`) and the wait for every
        // later one (`idle`, counted from when the last request ended) — hyper's would re-arm a timer on every
        // request for a deadline `drive` already enforces.
        builder.http1().timer(TokioTimer::new()).header_read_timeout(None).max_buf_size(head);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX))
            .keep_alive_interval(self.h2_keep_alive)
            .keep_alive_timeout(self.h2_keep_alive);
        if mesh_peers {
            builder.http2().max_pending_accept_reset_streams(MESH_RESET_STREAMS);
        }
        builder
    }
}

/// A listener's connection families, labelled by `router` (`admin` for the admin server).
#[derive(Clone)]
pub struct ListenerFamilies {
    open: IntGaugeVec,
    accepted: IntCounterVec,
    at_limit: IntCounterVec,
    closed: IntCounterVec,
}

impl ListenerFamilies {
    /// Registers the families.
    pub fn register(r: &Registry) -> Self {
        let router = &["router"];
        Self {
            open: r.int_gauge_vec(names::SERVER_CONNECTIONS_OPEN, "Open downstream connections.", router),
            accepted: r.int_counter_vec(names::SERVER_CONNECTIONS, "Downstream connections accepted.", router),
            at_limit: r.int_counter_vec(
                names::SERVER_CONNECTION_LIMIT,
                "Times the listener reached maxConnections and stopped accepting until a connection closed.",
                router,
            ),
            closed: r.int_counter_vec(
                names::SERVER_CONNECTIONS_CLOSED,
                "Connections the proxy closed on a deadline (header_timeout, idle_timeout).",
                &["router", "reason"],
            ),
        }
    }
}

/// A bound listener with its cap.
pub struct Listener {
    inner: TcpListener,
    what: String,
    rules: ConnectionRules,
    permits: Arc<Semaphore>,
    open: IntGauge,
    accepted: IntCounter,
    at_limit: IntCounter,
    closed: IntCounterVec,
    label: String,
    warned: Warned,
}

/// When the cap was last warned about (seconds after `start`, plus one): at most one warning per 10 s.
struct Warned {
    start: Instant,
    last: AtomicU64,
}

/// One accepted connection, with its slot under the cap.
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// Hold it for as long as the connection lives.
    pub slot: ConnectionSlot,
}

/// A connection's place under `maxConnections` (and in the open-connections gauge) until dropped.
pub struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.open.dec();
        crate::memory::connection_closed();
    }
}

impl Listener {
    /// Wraps `inner`, labelled `label` in metrics and `what` in logs.
    pub fn new(inner: TcpListener, label: &str, what: String, rules: ConnectionRules, f: &ListenerFamilies) -> Self {
        Self {
            inner,
            what,
            rules,
            permits: Arc::new(Semaphore::new(rules.max_connections)),
            open: f.open.with_label_values(&[label]),
            accepted: f.accepted.with_label_values(&[label]),
            at_limit: f.at_limit.with_label_values(&[label]),
            closed: f.closed.clone(),
            label: label.to_owned(),
            warned: Warned { start: Instant::now(), last: AtomicU64::new(0) },
        }
    }

    /// The rules connections of this listener live by.
    pub fn rules(&self) -> &ConnectionRules {
        &self.rules
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr().ok()
    }

    /// The next connection, once there is room for it under the cap; `None` once `shutdown` turns true. A failed
    /// accept (out of file descriptors and the like) is logged and backed off instead of spun on.
    pub async fn next(&self, shutdown: &mut watch::Receiver<bool>) -> Option<Accepted> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                self.at_limit.inc();
                let now = self.warned.start.elapsed().as_secs() + 1;
                let last = self.warned.last.load(Ordering::Relaxed);
                if (last == 0 || now >= last + 10)
                    && self.warned.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
                {
                    tracing::warn!(server = %self.what, limit = self.rules.max_connections,
                        "maxConnections reached: new connections wait in the accept backlog");
                }
                tokio::select! {
                    p = self.permits.clone().acquire_owned() => p.ok()?,
                    _ = stopped(shutdown) => return None,
                }
            }
        };
        loop {
            tokio::select! {
                res = self.inner.accept() => match res {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        self.accepted.inc();
                        self.open.inc();
                        crate::memory::connection_opened();
                        return Some(Accepted { stream, peer, slot: ConnectionSlot { _permit: permit, open: self.open.clone() } });
                    }
                    Err(e) => {
                        tracing::warn!(server = %self.what, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = stopped(shutdown) => return None,
            }
        }
    }

    /// A tracker for one connection's requests.
    pub fn activity(&self) -> Arc<Activity> {
        Arc::new(Activity::new(self.closed.clone(), &self.label))
    }

    /// Stops listening and waits until every connection has closed, or `grace` has passed.
    pub async fn drain(self, grace: Duration) {
        let Self { inner, what, permits, rules, .. } = self;
        drop(inner);
        tracing::info!(server = %what, "draining connections");
        let all = u32::try_from(rules.max_connections).unwrap_or(u32::MAX);
        if tokio::time::timeout(grace, permits.acquire_many(all)).await.is_err() {
            tracing::warn!(server = %what, "drain deadline reached; closing remaining connections");
        }
    }
}

/// Resolves once shutdown is signalled (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await.is_ok();
}

/// What one connection is doing: requests in flight, requests begun, and when the last one ended.
pub struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    begun: AtomicU64,
    /// Milliseconds after `start` when the last request ended.
    last_end_ms: AtomicU64,
    closed: IntCounterVec,
    label: String,
}

/// Marks a request in flight until dropped: hand it to [`InFlight::until_sent`] so that it lasts until the
/// response body has been sent, or the connection would look idle during a long download.
pub struct InFlight(Arc<Activity>);

impl InFlight {
    /// `resp`, with this request counted in flight until its body has been sent (or dropped).
    pub fn until_sent<B>(self, resp: http::Response<B>) -> http::Response<TrackedBody<B>> {
        resp.map(|inner| TrackedBody { inner, _in_flight: self })
    }
}

/// A response body that keeps its request counted in flight.
pub struct TrackedBody<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_end_ms.store(a.start.elapsed().as_millis() as u64, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    fn new(closed: IntCounterVec, label: &str) -> Self {
        Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            begun: AtomicU64::new(0),
            last_end_ms: AtomicU64::new(0),
            closed,
            label: label.to_owned(),
        }
    }

    /// A request begins on the connection.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.begun.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// When the connection's current deadline falls, and what runs out then: a new connection must send its
    /// first request head within `header`; an established one may sit without a request for `idle`.
    fn deadline(&self, rules: &ConnectionRules) -> (Instant, &'static str) {
        if self.begun.load(Ordering::Acquire) == 0 {
            return (self.start + rules.header, "header_timeout");
        }
        let last = self.start + Duration::from_millis(self.last_end_ms.load(Ordering::Acquire));
        (last + rules.idle, "idle_timeout")
    }
}

/// Serves one connection (`conn`, a hyper connection future) until it ends, closing it when it breaks the
/// listener's deadlines or shutdown is signalled. `graceful` asks the connection to finish (hyper's
/// `graceful_shutdown`); a connection that does not go within [`CLOSE_GRACE`] of a deadline is dropped.
pub async fn drive<C, E>(
    conn: C,
    mut graceful: impl FnMut(Pin<&mut C>),
    activity: &Activity,
    rules: &ConnectionRules,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut conn = std::pin::pin!(conn);
    let mut forced_at: Option<Instant> = None;
    let mut stopping = false;
    loop {
        let (at, reason) = match forced_at {
            Some(at) => (at, "forced"),
            // Busy: look again a little later (the idle deadline moves when the request ends).
            None if activity.busy() => (Instant::now() + rules.idle.min(rules.header), "busy"),
            None => activity.deadline(rules),
        };
        tokio::select! {
            // In this order (no random start): the connection is what is polled on nearly every wake-up.
            biased;
            res = conn.as_mut() => return res,
            _ = tokio::time::sleep_until(at) => {
                if forced_at.is_some() {
                    return Ok(());
                }
                if reason != "busy" && !activity.busy() && activity.deadline(rules).0 <= Instant::now() {
                    activity.closed.with_label_values(&[&activity.label, reason]).inc();
                    graceful(conn.as_mut());
                    forced_at = Some(Instant::now() + CLOSE_GRACE);
                }
            }
            _ = stopped(shutdown), if !stopping => {
                stopping = true;
                graceful(conn.as_mut());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ConnectionRules {
        ConnectionRules {
            header: Duration::from_secs(1),
            idle: Duration::from_secs(5),
            body_idle: Duration::from_secs(1),
            h2_keep_alive: Duration::from_secs(20),
            max_connections: 2,
        }
    }

    fn activity() -> Arc<Activity> {
        let registry = Registry::empty();
        Arc::new(Activity::new(ListenerFamilies::register(&registry).closed, "test"))
    }

    /// A connection that never ends by itself, and records being asked to finish.
    struct Forever {
        asked: Arc<AtomicUsize>,
        goes_when_asked: bool,
    }

    impl Future for Forever {
        type Output = Result<(), ()>;
        fn poll(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
            if self.goes_when_asked && self.asked.load(Ordering::Acquire) > 0 {
                return std::task::Poll::Ready(Ok(()));
            }
            std::task::Poll::Pending
        }
    }

    fn ask(c: Pin<&mut Forever>) {
        c.asked.fetch_add(1, Ordering::AcqRel);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_new_connection_is_closed_at_the_header_deadline_even_if_it_ignores_the_request() {
        let asked = Arc::new(AtomicUsize::new(0));
        let (_tx, mut rx) = watch::channel(false);
        let a = activity();
        let start = Instant::now();
        let conn = Forever { asked: asked.clone(), goes_when_asked: false };
        let _ = drive(conn, ask, &a, &rules(), &mut rx).await;
        assert_eq!(asked.load(Ordering::Acquire), 1, "asked to finish once");
        assert_eq!(start.elapsed(), Duration::from_secs(1) + CLOSE_GRACE, "then dropped after the close grace");
        assert_eq!(a.closed.with_label_values(&["test", "header_timeout"]).get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_closes_an_idle_period_after_its_last_request_and_never_while_one_is_in_flight() {
        let asked = Arc::new(AtomicUsize::new(0));
        let (_tx, mut rx) = watch::channel(false);
        let a = activity();
        let start = Instant::now();
        let busy = a.begin();
        let a2 = a.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(busy);
            let _ = a2;
        });
        let conn = Forever { asked: asked.clone(), goes_when_asked: true };
        drive(conn, ask, &a, &rules(), &mut rx).await.unwrap();
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(35) && took <= Duration::from_secs(37), "{took:?}");
        assert_eq!(a.closed.with_label_values(&["test", "idle_timeout"]).get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_keeps_its_request_in_flight_until_its_body_is_gone() {
        let a = activity();
        let resp = a.begin().until_sent(http::Response::new("a long download"));
        assert!(a.busy(), "the response head was handed over, the body not yet sent");
        drop(resp);
        assert!(!a.busy());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_asks_the_connection_to_finish() {
        let asked = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = watch::channel(false);
        let a = activity();
        let _busy = a.begin();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = tx.send(true);
        });
        let conn = Forever { asked: asked.clone(), goes_when_asked: true };
        drive(conn, ask, &a, &rules(), &mut rx).await.unwrap();
        assert_eq!(asked.load(Ordering::Acquire), 1);
    }

    #[tokio::test]
    async fn past_the_cap_connections_wait_until_one_closes() {
        let registry = Registry::empty();
        let families = ListenerFamilies::register(&registry);
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = Listener::new(tcp, "test", "test".into(), rules(), &families);
        let (_tx, mut rx) = watch::channel(false);
        let clients: Vec<_> = futures_connect(addr, 3).await;
        let one = listener.next(&mut rx).await.unwrap();
        let _two = listener.next(&mut rx).await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(200), listener.next(&mut rx)).await;
        assert!(third.is_err(), "the third waits while two are open");
        assert_eq!(families.at_limit.with_label_values(&["test"]).get(), 1);
        drop(one);
        let third = tokio::time::timeout(Duration::from_secs(5), listener.next(&mut rx)).await;
        assert!(third.is_ok_and(|c| c.is_some()), "accepted once one closed");
        drop(clients);
    }

    async fn futures_connect(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(TcpStream::connect(addr).await.unwrap());
        }
        v
    }
}
