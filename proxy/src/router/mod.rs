//! A router: one named routing domain (`ingress`, `egress`) with its servers, identifiers, dtab and clients.
//!
//! A request goes through named stages, one module each, readable top to bottom in [`Router::route`]:
//! [`identify`] → [`bind`] (dtab + namers) → [`balance`] (pick an endpoint) → [`endpoint`] (pooled connection),
//! with [`headers`] applying hop-by-hop hygiene and the `l5d-*` context, and [`error`] as the one rescue point
//! that turns any failure into a status, an `l5d-err` header and a one-line body.

pub mod balance;
pub mod bind;
pub mod endpoint;
pub mod error;
pub mod headers;
pub mod identify;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use switchyard_dtab::{Dtab, Path};

use self::bind::{Binder, Choice, RoutingTable};
use self::error::ProxyError;
use self::headers::{L5D_CTX_DTAB, L5D_DTAB};
use self::identify::Identifier;
use crate::config::{Protocol, RouterConfig};
use crate::metrics::{Metrics, RouteMetrics};
use crate::namer::NamerSet;
use arc_swap::ArcSwap;
use prometheus::{IntCounter, IntGauge};

/// How long a request waits for a namer's first answer (linkerd 1's `bindingTimeoutMs` default).
const DEFAULT_BINDING_TIMEOUT: Duration = Duration::from_secs(10);

/// Response bodies: the upstream's stream, or a small body the proxy wrote.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// A proxy-written body.
pub fn full_body(bytes: Bytes) -> ProxyBody {
    Either::Right(Full::new(bytes))
}

/// Why a dtab update was refused.
#[derive(Debug, PartialEq)]
pub enum DtabUpdateError {
    /// `If-Match` named a version that is no longer current.
    Stale { current: String },
}

/// A router and its live routing state.
pub struct Router {
    pub label: Arc<str>,
    pub protocol: Protocol,
    pub dst_prefix: Path,
    identifiers: Vec<Identifier>,
    table: ArcSwap<RoutingTable>,
    /// Serialises dtab writers so If-Match is a true compare-and-swap; readers never take it.
    write_lock: Mutex<()>,
    pub binder: Binder,
    timeout: Option<Duration>,
    server_requests: IntCounter,
    dtab_generation: IntGauge,
}

impl Router {
    /// Builds a router from its validated config.
    pub fn new(config: &RouterConfig, namers: Arc<NamerSet>, metrics: Arc<Metrics>) -> Self {
        let label: Arc<str> = config.label.as_str().into();
        let settings = endpoint::EndpointSettings {
            h2: config.protocol == Protocol::H2,
            connect_timeout: Duration::from_millis(config.client.connect_timeout_ms),
            idle_timeout: Duration::from_millis(config.client.idle_timeout_ms),
        };
        let connects = endpoint::ConnectMetrics {
            ok: metrics.upstream_connects.with_label_values(&[&label, "ok"]),
            failed: metrics.upstream_connects.with_label_values(&[&label, "failed"]),
        };
        let pool = endpoint::EndpointPool::new(settings, connects);
        // No retries yet, so the attempt and total timeouts bound the same thing: take the tighter one.
        let timeout = [config.client.request_attempt_timeout_ms, config.service.total_timeout_ms]
            .into_iter()
            .flatten()
            .min()
            .map(Duration::from_millis);
        let dtab_generation = metrics.dtab_generation.with_label_values(&[&label]);
        dtab_generation.set(1);
        Self {
            protocol: config.protocol,
            dst_prefix: config.dst_prefix.clone(),
            identifiers: config.identifiers.iter().map(Identifier::from).collect(),
            table: ArcSwap::from_pointee(RoutingTable::new(config.dtab.clone(), 1)),
            write_lock: Mutex::new(()),
            server_requests: metrics.server_requests.with_label_values(&[&label]),
            binder: Binder::new(label.clone(), namers, pool, metrics, DEFAULT_BINDING_TIMEOUT),
            label,
            timeout,
            dtab_generation,
        }
    }

    /// The current routing table.
    pub fn table(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// Replaces the dtab atomically. With `if_match`, only if it names the current version (else nothing changes).
    /// Returns the new table.
    pub fn set_dtab(&self, dtab: Dtab, if_match: Option<&str>) -> Result<Arc<RoutingTable>, DtabUpdateError> {
        let _writer = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.table.load_full();
        if let Some(tag) = if_match {
            if tag.trim() != "*" && tag.trim() != current.etag {
                self.binder.metrics.dtab_updates.with_label_values(&[&self.label, "conflict"]).inc();
                return Err(DtabUpdateError::Stale { current: current.etag.clone() });
            }
        }
        let next = Arc::new(RoutingTable::new(dtab, current.generation + 1));
        self.table.store(next.clone());
        self.dtab_generation.set(next.generation as i64);
        self.binder.metrics.dtab_updates.with_label_values(&[&self.label, "ok"]).inc();
        tracing::info!(router = %self.label, generation = next.generation, dtab = %next.dtab, "dtab replaced");
        Ok(next)
    }

    /// Counts a rejected (malformed) dtab update.
    pub fn record_invalid_dtab(&self) {
        self.binder.metrics.dtab_updates.with_label_values(&[&self.label, "invalid"]).inc();
    }

    /// Serves one request from a downstream `peer`. `trusted` says whether `l5d-dtab`/`l5d-ctx-*` headers from
    /// this server's clients are honoured (`clearContext: false`).
    pub async fn route(&self, mut req: Request<Incoming>, peer: SocketAddr, trusted: bool) -> Response<ProxyBody> {
        let start = Instant::now();
        self.server_requests.inc();

        // identify
        let ident = match identify::identify(&self.identifiers, &self.dst_prefix, &req) {
            Ok(i) => i,
            Err(why) => return self.fail(None, None, ProxyError::Unidentified(why), start),
        };
        if let Some(uri) = ident.rewrite {
            *req.uri_mut() = uri;
        }
        let local = match self.local_dtab(&mut req, trusted) {
            Ok(d) => d,
            Err(e) => return self.fail(None, None, e, start),
        };

        // bind: the table is loaded once; this request finishes on it even if the dtab changes meanwhile.
        let table = self.table.load_full();
        let binding = match &local {
            None => table.binding(&ident.path, &self.binder).await,
            Some(local) => Arc::new(self.binder.bind(&table.dtab.concat(local), &ident.path, "overridden").await),
        };
        let route = &binding.route;
        route.request();
        let tree = match &binding.tree {
            Ok(tree) => tree,
            Err(e) => {
                let err = ProxyError::Delegation { path: ident.path.clone(), error: e.clone() };
                return self.fail(Some(route), None, err, start);
            }
        };
        let target = match bind::choose(tree) {
            Choice::Target(t) => t.clone(),
            Choice::Neg => return self.fail(Some(route), None, ProxyError::Unbound { path: ident.path }, start),
            Choice::Fail => return self.fail(Some(route), None, ProxyError::BindFailed { path: ident.path }, start),
            Choice::Empty => return self.fail(Some(route), None, ProxyError::NoEndpoints { client: ident.path }, start),
        };
        let client = &target.client;
        client.metrics.request();

        // balance
        let Some(endpoint) = client.pick() else {
            let err = ProxyError::NoEndpoints { client: client.id.clone() };
            return self.fail(Some(route), Some(&client.metrics), err, start);
        };

        // endpoint
        self.prepare_request(&mut req, peer, &ident.path, client, &target.residual, local.as_ref());
        let sent = endpoint.send(req);
        let result = match self.timeout {
            Some(t) => tokio::time::timeout(t, sent)
                .await
                .unwrap_or(Err(ProxyError::Timeout { what: "request", after: t })),
            None => sent.await,
        };
        match result {
            Ok(mut resp) => {
                let version = resp.version();
                headers::strip_hop_by_hop(resp.headers_mut(), false);
                headers::append_via(resp.headers_mut(), version);
                let elapsed = start.elapsed();
                route.response(resp.status(), elapsed);
                client.metrics.response(resp.status(), elapsed);
                resp.map(Either::Left)
            }
            Err(e) => self.fail(Some(route), Some(&client.metrics), e, start),
        }
    }

    /// Reads (when trusted) or strips (when not) the per-request dtab headers; the result is appended to the
    /// router's dtab for this request only.
    fn local_dtab(&self, req: &mut Request<Incoming>, trusted: bool) -> Result<Option<Dtab>, ProxyError> {
        let h = req.headers_mut();
        if !trusted {
            h.remove(L5D_DTAB);
            h.remove(L5D_CTX_DTAB);
            return Ok(None);
        }
        let mut local = Dtab::empty();
        for name in [L5D_CTX_DTAB, L5D_DTAB] {
            for value in h.get_all(name) {
                let text = value.to_str().map_err(|_| ProxyError::BadDtabHeader { header: name, error: "not text".into() })?;
                let d = Dtab::parse(text).map_err(|e| ProxyError::BadDtabHeader { header: name, error: e.to_string() })?;
                local = local.concat(&d);
            }
        }
        h.remove(L5D_DTAB);
        h.remove(L5D_CTX_DTAB);
        Ok(if local.dentries().is_empty() { None } else { Some(local) })
    }

    fn prepare_request(
        &self,
        req: &mut Request<Incoming>,
        peer: SocketAddr,
        service: &Path,
        client: &balance::Client,
        residual: &Path,
        local: Option<&Dtab>,
    ) {
        let version = req.version();
        let h2 = self.protocol == Protocol::H2;
        let h = req.headers_mut();
        headers::strip_hop_by_hop(h, h2);
        headers::append_via(h, version);
        headers::append_forwarded_for(h, peer.ip());
        headers::set_text(h, "l5d-dst-service", &service.to_string());
        headers::set_text(h, "l5d-dst-client", &client.id_text);
        if residual.is_empty() {
            h.remove("l5d-dst-residual");
        } else {
            headers::set_text(h, "l5d-dst-residual", &residual.to_string());
        }
        if let Some(local) = local {
            // The override travels with the request so the next hop routes the same way.
            headers::set_text(h, L5D_CTX_DTAB, &local.to_string());
        }
        headers::set_target_for(req, h2);
    }

    /// The rescue point's bookkeeping: count, log, and turn the error into the response.
    fn fail(
        &self,
        route: Option<&RouteMetrics>,
        client: Option<&RouteMetrics>,
        err: ProxyError,
        start: Instant,
    ) -> Response<ProxyBody> {
        let status: StatusCode = err.status();
        let elapsed = start.elapsed();
        for m in [route, client].into_iter().flatten() {
            m.response(status, elapsed);
        }
        self.binder.metrics.proxy_errors.with_label_values(&[&self.label, err.reason()]).inc();
        if err.is_client_error() {
            tracing::debug!(router = %self.label, status = status.as_u16(), "{err}");
        } else {
            tracing::warn!(router = %self.label, status = status.as_u16(), "{err}");
        }
        err.into_response()
    }
}
