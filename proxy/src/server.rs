//! Downstream servers: accept connections for a router and serve HTTP/1.1 and h2c (detected per connection).
//!
//! Connections are tracked by hyper-util's graceful-shutdown watcher: on shutdown the accept loop stops, every
//! connection is told to finish its in-flight requests (HTTP/1 stops keep-alive, HTTP/2 sends GOAWAY), and the
//! caller waits for them up to a deadline.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::{names, Registry};
use crate::router::Router;

/// The servers' families: requests received and connections, per router.
#[derive(Clone)]
pub struct ServerMetrics {
    requests: IntCounterVec,
    connections_open: IntGaugeVec,
    connections: IntCounterVec,
}

impl ServerMetrics {
    /// Registers the families.
    pub fn register(r: &Registry) -> Self {
        let router = &["router"];
        Self {
            requests: r.int_counter_vec(names::SERVER_REQUESTS, "Requests received per router.", router),
            connections_open: r.int_gauge_vec(names::SERVER_CONNECTIONS_OPEN, "Open downstream connections.", router),
            connections: r.int_counter_vec(names::SERVER_CONNECTIONS, "Downstream connections accepted.", router),
        }
    }
}

/// Counts an open connection for as long as it lives.
struct OpenConnection(IntGauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Per-server limits (`maxConcurrentRequests`, and the router's `maxHeadersKB`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Requests served at once; more are answered 503 with `l5d-err`.
    pub max_concurrent: Option<usize>,
    /// Largest request head; larger ones are answered 431 by hyper.
    pub max_header_bytes: usize,
    /// Whether `l5d-dtab` / `l5d-ctx-*` from clients are honoured (`clearContext: false`).
    pub trusted: bool,
}

/// Releases a concurrency slot however the request ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves once shutdown is signalled (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await.is_ok();
}

/// Serves `router` on `listener` until `shutdown` turns true, then drains for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Arc<Router>,
    limits: Limits,
    metrics: &ServerMetrics,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let trusted = limits.trusted;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let label = router.label().to_owned();
    let open: IntGauge = metrics.connections_open.with_label_values(&[&label]);
    let accepted: IntCounter = metrics.connections.with_label_values(&[&label]);
    let requests: IntCounter = metrics.requests.with_label_values(&[&label]);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper answers 431 itself when a request head outgrows this buffer (it needs at least 8 KiB).
    let head = limits.max_header_bytes.max(8192);
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(30)).max_buf_size(head);
    builder.http2().timer(TokioTimer::new()).max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX));
    let graceful = GracefulShutdown::new();
    let local = listener.local_addr().ok();
    loop {
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            res = listener.accept() => match res {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(router = %label, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        accepted.inc();
        open.inc();
        let guard = OpenConnection(open.clone());
        let router = router.clone();
        let in_flight = in_flight.clone();
        let requests = requests.clone();
        let svc = service_fn(move |req| {
            let router = router.clone();
            let in_flight = in_flight.clone();
            requests.inc();
            async move {
                if let Some(max) = limits.max_concurrent {
                    if in_flight.fetch_add(1, Ordering::AcqRel) >= max {
                        in_flight.fetch_sub(1, Ordering::AcqRel);
                        return Ok::<_, Infallible>(router.refuse_busy(req, peer, max).await);
                    }
                    let _slot = Slot(in_flight);
                    return Ok(router.serve(req, peer, trusted).await);
                }
                Ok(router.serve(req, peer, trusted).await)
            }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "downstream connection ended with error");
            }
        });
    }
    drop(listener);
    tracing::info!(router = %label, addr = ?local, "draining connections");
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(router = %label, "drain deadline reached; closing remaining connections");
    }
}
