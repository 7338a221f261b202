//! Downstream servers: accept connections for a router, terminate TLS when configured, decide who the caller is
//! and what it may do, and serve HTTP/1.1 and HTTP/2 (h2c, or h2 by ALPN) on each connection.
//!
//! With mutual TLS the caller's identity comes from its verified certificate; the server's `authorization`
//! decides per connection whether it may call at all (else every request gets 403 through the router's rescue
//! point) and whether its `l5d-dtab` / `l5d-ctx-*` headers are honoured. Connections are tracked by hyper-util's
//! graceful-shutdown watcher: on shutdown the accept loop stops, every connection is told to finish its
//! in-flight requests (HTTP/1 stops keep-alive, HTTP/2 sends GOAWAY), and the caller waits up to a deadline.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::AuthorizationConfig;
use crate::metrics::{names, Registry};
use crate::router::{Admission, Router};
use crate::tls::identity::CertInfo;
use crate::tls::{ServerTls, TlsMetrics};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Per-server settings: limits, TLS, and who may do what.
#[derive(Clone)]
pub struct Limits {
    /// Requests served at once; more are answered 503 with `l5d-err`.
    pub max_concurrent: Option<usize>,
    /// Largest request head; larger ones are answered 431 by hyper.
    pub max_header_bytes: usize,
    /// Whether `l5d-dtab` / `l5d-ctx-*` from clients may be honoured (`clearContext: false`); with
    /// `authorization`, only from the identities it trusts with context.
    pub trusted: bool,
    /// TLS termination, when configured.
    pub tls: Option<Arc<ServerTls>>,
    /// Which verified identities may call (needs mutual TLS).
    pub authorization: Option<AuthorizationConfig>,
}

impl Limits {
    /// What requests on a connection from a caller with `identity` (verified, if any) are allowed to do.
    fn admission(&self, identity: Option<&CertInfo>) -> Admission {
        let Some(authz) = &self.authorization else {
            return Admission::Route { trusted: self.trusted };
        };
        let Some(id) = identity else {
            // Unreachable with requireClientAuth (the handshake fails first), but never route unauthenticated.
            return Admission::Denied { caller: "an unauthenticated client".into() };
        };
        if !authz.allow.iter().any(|entry| id.is(entry)) {
            return Admission::Denied { caller: id.identity().into() };
        }
        let context = authz.allow_context.as_ref().unwrap_or(&authz.allow);
        Admission::Route { trusted: self.trusted && context.iter().any(|entry| id.is(entry)) }
    }
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

/// The next connection on `listener`, or `None` once `shutdown` turns true. A failed accept (out of file
/// descriptors and the like) is logged as `what`'s and backed off instead of spun on. The routers' servers and
/// the admin server share it.
pub(crate) async fn accept(
    listener: &TcpListener,
    shutdown: &mut watch::Receiver<bool>,
    what: &str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            res = listener.accept() => match res {
                Ok(conn) => return Some(conn),
                Err(e) => {
                    tracing::warn!(server = what, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stopped(shutdown) => return None,
        }
    }
}

/// One listening server of a router, shared by its connections.
struct Server {
    router: Arc<Router>,
    limits: Limits,
    label: String,
    in_flight: Arc<AtomicUsize>,
    requests: IntCounter,
    builder: auto::Builder<TokioExecutor>,
    tls_metrics: TlsMetrics,
}

/// Serves `router` on `listener` until `shutdown` turns true, then drains for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Arc<Router>,
    limits: Limits,
    (metrics, tls_metrics): (&ServerMetrics, TlsMetrics),
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let label = router.label().to_owned();
    let open: IntGauge = metrics.connections_open.with_label_values(&[&label]);
    let accepted: IntCounter = metrics.connections.with_label_values(&[&label]);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper answers 431 itself when a request head outgrows this buffer (it needs at least 8 KiB).
    let head = limits.max_header_bytes.max(8192);
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(30)).max_buf_size(head);
    builder.http2().timer(TokioTimer::new()).max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX));
    let server = Arc::new(Server {
        requests: metrics.requests.with_label_values(&[&label]),
        router,
        limits,
        label,
        in_flight: Arc::new(AtomicUsize::new(0)),
        builder,
        tls_metrics,
    });
    let graceful = GracefulShutdown::new();
    let local = listener.local_addr().ok();
    let what = format!("router {}", server.label);
    while let Some((stream, peer)) = accept(&listener, &mut shutdown, &what).await {
        let _ = stream.set_nodelay(true);
        accepted.inc();
        open.inc();
        let guard = OpenConnection(open.clone());
        let (server, watcher) = (server.clone(), graceful.watcher());
        tokio::spawn(async move {
            let _guard = guard;
            server.connection(stream, peer, watcher).await;
        });
    }
    drop(listener);
    tracing::info!(router = %server.label, addr = ?local, "draining connections");
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(router = %server.label, "drain deadline reached; closing remaining connections");
    }
}

impl Server {
    /// One accepted connection: the TLS handshake when configured, then HTTP until it closes.
    async fn connection(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, watcher: Watcher) {
        let Some(tls) = &self.limits.tls else {
            let admission = self.limits.admission(None);
            return self.http(stream, peer, admission, watcher).await;
        };
        // A TLS connection opens with a handshake record (0x16); anything else is a plaintext client, which gets
        // a plain 400 saying why instead of a bare reset.
        let mut first = [0u8; 1];
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
            Ok(Ok(1)) if first[0] != 0x16 => return self.refuse_plaintext(stream, peer).await,
            Ok(Ok(1)) => {}
            Ok(_) => return,
            Err(_) => {
                self.tls_metrics.handshake_error(&self.label, "timeout");
                return;
            }
        }
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await {
            Ok(Ok(stream)) => {
                let identity = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|cert| {
                    CertInfo::parse(cert)
                        .map_err(|e| tracing::warn!(%peer, error = %e, "unreadable peer certificate"))
                        .ok()
                });
                let admission = self.limits.admission(identity.as_ref());
                if let Admission::Denied { caller } = &admission {
                    tracing::info!(router = %self.label, %peer, %caller, "caller not allowed by authorization");
                }
                self.http(stream, peer, admission, watcher).await;
            }
            Ok(Err(e)) => {
                let reason = crate::tls::error_reason(&e);
                self.tls_metrics.handshake_error(&self.label, reason);
                tracing::info!(router = %self.label, %peer, reason, error = %crate::tls::describe(&e), "TLS handshake refused");
            }
            Err(_) => {
                self.tls_metrics.handshake_error(&self.label, "timeout");
                tracing::info!(router = %self.label, %peer, "TLS handshake timed out");
            }
        }
    }

    /// Answers a plaintext client on a TLS port: 400 with `l5d-err`, then close. Nothing is read or forwarded.
    async fn refuse_plaintext(&self, mut stream: TcpStream, peer: SocketAddr) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.tls_metrics.handshake_error(&self.label, "not_tls");
        tracing::info!(router = %self.label, %peer, "plaintext request on a TLS port refused");
        let why = if self.limits.tls.as_ref().is_some_and(|t| t.requires_client_cert) {
            "this port requires mutual TLS with a certificate from the mesh CA"
        } else {
            "this port requires TLS"
        };
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\nl5d-err: {why}\r\ncontent-type: text/plain; charset=utf-8\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{why}\n",
            why.len() + 1
        );
        let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.write_all(answer.as_bytes())).await;
        let _ = stream.shutdown().await;
        // Lingering close: read (and drop) what the client already sent, briefly, so closing with unread bytes
        // does not reset the connection before the client has read the answer.
        let mut sink = [0u8; 4096];
        let linger = async {
            let mut left: usize = 64 * 1024;
            while left > 0 {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), linger).await;
    }

    /// Serves HTTP/1.1 or HTTP/2 on a (plaintext or TLS) connection whose requests are admitted as `admission`.
    async fn http<I>(self: Arc<Self>, io: I, peer: SocketAddr, admission: Admission, watcher: Watcher)
    where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let this = self.clone();
        let svc = service_fn(move |req| {
            let (this, admission) = (this.clone(), admission.clone());
            this.requests.inc();
            async move {
                let Some(max) = this.limits.max_concurrent else {
                    return Ok::<_, Infallible>(this.router.serve(req, peer, admission).await);
                };
                if this.in_flight.fetch_add(1, Ordering::AcqRel) >= max {
                    this.in_flight.fetch_sub(1, Ordering::AcqRel);
                    return Ok(this.router.serve(req, peer, Admission::Busy { limit: max }).await);
                }
                let _slot = Slot(this.in_flight.clone());
                Ok(this.router.serve(req, peer, admission).await)
            }
        });
        let conn = watcher.watch(self.builder.serve_connection(TokioIo::new(io), svc).into_owned());
        if let Err(e) = conn.await {
            tracing::debug!(%peer, error = %e, "downstream connection ended with error");
        }
    }
}
