//! Downstream servers: accept connections for a router, terminate TLS when configured, decide who the caller is
//! and what it may do, and serve HTTP/1.1 and HTTP/2 (h2c, or h2 by ALPN) on each connection.
//!
//! With mutual TLS the caller's identity comes from its verified certificate; the server's `authorization`
//! decides per connection whether it may call at all (else every request gets 403 through the router's rescue
//! point) and whether its `l5d-dtab` / `l5d-ctx-*` headers are honoured. Accepting, the connection cap, the
//! per-connection deadlines and the drain on shutdown are the shared [`crate::listener`]'s.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prometheus::{IntCounter, IntCounterVec};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::config::{AuthorizationConfig, ErrorDetail};
use crate::listener::{self, Listener};
use crate::metrics::{names, Registry};
use crate::router::{Admission, Downstream, Router};
use crate::tls::identity::CertInfo;
use crate::tls::{ServerTls, TlsMetrics};

/// The servers' own family: requests received, per router (connections are the listener's).
#[derive(Clone)]
pub struct ServerMetrics {
    requests: IntCounterVec,
}

impl ServerMetrics {
    /// Registers the family.
    pub fn register(r: &Registry) -> Self {
        Self { requests: r.int_counter_vec(names::SERVER_REQUESTS, "Requests received per router.", &["router"]) }
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
    /// What error answers say.
    pub error_detail: ErrorDetail,
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

/// One listening server of a router, shared by its connections.
struct Server {
    router: Arc<Router>,
    limits: Limits,
    label: String,
    in_flight: Arc<AtomicUsize>,
    requests: IntCounter,
    builder: auto::Builder<TokioExecutor>,
    rules: listener::ConnectionRules,
    tls_metrics: TlsMetrics,
}

/// Serves `router` on `listener` until `shutdown` turns true, then drains for at most `grace`.
pub async fn serve(
    listener: Listener,
    router: Arc<Router>,
    limits: Limits,
    (metrics, tls_metrics): (&ServerMetrics, TlsMetrics),
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let label = router.label().to_owned();
    let rules = *listener.rules();
    let server = Arc::new(Server {
        requests: metrics.requests.with_label_values(&[&label]),
        builder: rules.builder(limits.max_header_bytes, limits.tls.as_ref().is_some_and(|t| t.requires_client_cert)),
        rules,
        router,
        limits,
        label,
        in_flight: Arc::new(AtomicUsize::new(0)),
        tls_metrics,
    });
    while let Some(conn) = listener.next(&mut shutdown).await {
        let (server, activity, stop) = (server.clone(), listener.activity(), shutdown.clone());
        tokio::spawn(async move {
            let _slot = conn.slot;
            server.connection(conn.stream, conn.peer, activity, stop).await;
        });
    }
    listener.drain(grace).await;
}

impl Server {
    /// One accepted connection: the TLS handshake when configured, then HTTP until it closes.
    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        activity: Arc<listener::Activity>,
        stop: watch::Receiver<bool>,
    ) {
        let conn = (activity, stop);
        let Some(tls) = &self.limits.tls else {
            let admission = self.limits.admission(None);
            // Boxed (here and below): a connection's task then holds only the path it took.
            return Box::pin(self.http(stream, peer, admission, conn)).await;
        };
        // The handshake is part of the first request head's deadline.
        let handshake_timeout = self.rules.header;
        // A TLS connection opens with a handshake record (0x16); anything else is a plaintext client, which gets
        // a plain 400 saying why instead of a bare reset.
        let mut first = [0u8; 1];
        match tokio::time::timeout(handshake_timeout, stream.peek(&mut first)).await {
            Ok(Ok(1)) if first[0] != 0x16 => return Box::pin(self.refuse_plaintext(stream, peer)).await,
            Ok(Ok(1)) => {}
            Ok(_) => return,
            Err(_) => {
                self.tls_metrics.handshake_error(&self.label, "timeout");
                return;
            }
        }
        match tokio::time::timeout(handshake_timeout, tls.acceptor().accept(stream)).await {
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
                Box::pin(self.http(stream, peer, admission, conn)).await;
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
        let _ = tokio::time::timeout(self.rules.header, stream.write_all(answer.as_bytes())).await;
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

    /// Serves HTTP/1.1 or HTTP/2 on a (plaintext or TLS) connection whose requests are admitted as `admission`,
    /// under the listener's deadlines.
    async fn http<I>(
        self: Arc<Self>,
        io: I,
        peer: SocketAddr,
        admission: Admission,
        (activity, mut stop): (Arc<listener::Activity>, watch::Receiver<bool>),
    ) where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let downstream = Arc::new(Downstream {
            peer,
            forwarded_for: http::HeaderValue::from_str(&peer.ip().to_string()).ok(),
            admission,
            body_idle: self.rules.body_idle,
            error_detail: self.limits.error_detail,
        });
        let (this, tracker) = (self.clone(), activity.clone());
        let svc = service_fn(move |req| {
            let (this, downstream, in_flight) = (this.clone(), downstream.clone(), tracker.begin());
            this.requests.inc();
            async move {
                let (slot, busy) = match this.limits.max_concurrent {
                    Some(max) if this.in_flight.fetch_add(1, Ordering::AcqRel) >= max => {
                        this.in_flight.fetch_sub(1, Ordering::AcqRel);
                        let busy = Downstream { admission: Admission::Busy { limit: max }, ..(*downstream).clone() };
                        (None, Some(busy))
                    }
                    Some(_) => (Some(Slot(this.in_flight.clone())), None),
                    None => (None, None),
                };
                // Boxed: the request's state lives on the heap only while it is in flight, instead of in every
                // connection (hyper keeps room for the service's future per connection).
                let resp = Box::pin(this.router.serve(req, busy.as_ref().unwrap_or(&downstream))).await;
                drop(slot);
                Ok::<_, Infallible>(in_flight.until_sent(resp))
            }
        });
        let conn = self.builder.serve_connection(TokioIo::new(io), svc);
        if let Err(e) = listener::drive(conn, |c| c.graceful_shutdown(), &activity, &self.rules, &mut stop).await {
            tracing::debug!(%peer, error = %e, "downstream connection ended with error");
        }
    }
}
