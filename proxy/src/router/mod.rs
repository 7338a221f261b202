//! A router: one named routing domain (`ingress`, `egress`) — its identifiers, dtab, balancers and policies — and
//! the request path through it.
//!
//! [`Router::serve`] reads top to bottom; each stage is a module that calls forward, never back here:
//!
//! ```text
//! trace (correlation ids) → identify (logical name) → context (l5d-* overrides, deadline)
//!   → table + bind (dtab snapshot → Binding: balancers, policy, budget)
//!   → body (keep the request for replay) → attempt loop (balance → endpoint → judge → retry)
//!   → respond, or error::into_response (the one rescue point) → access log
//! ```
//!
//! [`health`] keeps each endpoint's failure accrual and latency estimate; [`headers`] names every header the proxy
//! reads or writes. See `docs/architecture.md` for the map of the whole sidecar.

pub mod access_log;
pub mod attempt;
pub mod balance;
pub mod bind;
pub mod body;
pub mod context;
pub mod endpoint;
pub mod error;
pub mod families;
pub mod headers;
pub mod health;
pub mod hedge;
pub mod identify;
pub mod pool;
pub mod table;
pub mod trace;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use prometheus::IntCounterVec;
use switchyard_dtab::{Dtab, Path};
use tokio::time::Instant;

use self::access_log::AccessLog;
use self::attempt::Attempts;
use self::balance::Balancer;
use self::bind::{Binder, BinderSettings, Binding};
use self::body::{KeptRequest, ProxyBody};
use self::context::{Deadline, RequestContext};
use self::endpoint::{EndpointPool, EndpointSettings};
use self::error::{Failure, ProxyError, TimeoutKind};
use self::identify::Identifier;
use self::table::{DtabTable, DtabWriteError, RoutingTable};
use crate::config::{ErrorDetail, Protocol, RouterConfig};
use crate::dtab_store::DtabStore;
use crate::namer::NamerSet;

pub use self::body::full_body;
pub use self::families::Families;

/// A router and its live routing state.
pub struct Router {
    label: Arc<str>,
    protocol: Protocol,
    /// The upstream protocol is HTTP/2 (h2c).
    h2: bool,
    dst_prefix: Path,
    identifiers: Vec<Identifier>,
    table: Arc<DtabTable>,
    /// Where the dtab lives when it is mesh-wide (a Consul key or a file); `None` for a local dtab.
    store: Option<Arc<DtabStore>>,
    binder: Binder,
    max_request_bytes: Option<u64>,
    max_hops: usize,
    access_log: Option<AccessLog>,
    proxy_errors: IntCounterVec,
    denied: IntCounterVec,
    context_dropped: prometheus::IntCounter,
}

/// The connection a request came on, as its server saw it: who sent it, what the server decided about its
/// requests, and the server's settings that shape how a request is read and answered.
#[derive(Clone, Debug)]
pub struct Downstream {
    pub peer: SocketAddr,
    /// `peer`'s address as an `X-Forwarded-For` value, made once per connection.
    pub forwarded_for: Option<http::HeaderValue>,
    pub admission: Admission,
    /// How long the request body may go silent (`bodyIdleTimeoutMs`).
    pub body_idle: Duration,
    /// What error answers say (`errorDetail`).
    pub error_detail: ErrorDetail,
}

/// What the server decided about a request before routing it.
#[derive(Clone, Debug)]
pub enum Admission {
    /// Route it; `trusted`: honour its `l5d-dtab` / `l5d-ctx-*` headers.
    Route { trusted: bool },
    /// Refused: the server is at its `maxConcurrentRequests` limit.
    Busy { limit: usize },
    /// Refused: the caller's verified identity is not allowed to call this server.
    Denied { caller: Arc<str> },
}

/// What the rescue point and the access log learn about a request as it goes.
#[derive(Default)]
struct Trail {
    /// The logical name (kept only when there is an access log).
    service: Option<Path>,
    /// The route's binding, once bound (its metrics count the answer).
    binding: Option<Arc<Binding>>,
    /// The balancer of the last attempt.
    sent_to: Option<Arc<Balancer>>,
}

impl Router {
    /// Builds a router from its validated config and starts its dtab store, if it has one; fails only if its
    /// access log cannot be opened.
    pub fn new(config: &RouterConfig, namers: Arc<NamerSet>, families: &Families) -> Result<Self, String> {
        let access_log =
            match &config.http_access_log {
                Some(path) => Some(AccessLog::open(path).map_err(|e| {
                    format!("router {}: cannot open httpAccessLog {}: {e}", config.label, path.display())
                })?),
                None => None,
            };
        let label: Arc<str> = config.label.as_str().into();
        let settings = EndpointSettings {
            h2: config.protocol == Protocol::H2,
            h2_upgrade: config.client.h2_upgrade,
            connect_timeout: Duration::from_millis(config.client.connect_timeout_ms),
            idle_timeout: Duration::from_millis(config.client.pool.idle_time_ms),
        };
        let pool = EndpointPool::new(label.clone(), settings, families.endpoint.clone());
        let binder_settings = BinderSettings::from_config(config, &families.tls)?;
        let table = Arc::new(DtabTable::new(label.clone(), config.dtab.clone(), &families.table));
        let store = config
            .dtab_store
            .as_ref()
            .map(|sc| DtabStore::start(label.clone(), table.clone(), sc, families.store_errors.clone()));
        Ok(Self {
            protocol: config.protocol,
            h2: config.protocol == Protocol::H2,
            dst_prefix: config.dst_prefix.clone(),
            identifiers: config.identifiers.iter().map(Identifier::from).collect(),
            table,
            store,
            binder: Binder::new(label.clone(), namers, pool, families.bind.clone(), binder_settings),
            max_request_bytes: config.max_request_kb.map(|kb| kb.saturating_mul(1024)),
            max_hops: config.max_hops,
            access_log,
            proxy_errors: families.proxy_errors.clone(),
            denied: families.denied.clone(),
            context_dropped: families.context_dropped.with_label_values(&[&label]),
            label,
        })
    }

    /// The router's label (`ingress`, `egress`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The protocol it speaks upstream.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The prefix logical names are built under.
    pub fn dst_prefix(&self) -> &Path {
        &self.dst_prefix
    }

    /// The routing table in force.
    pub fn table(&self) -> Arc<RoutingTable> {
        self.table.current()
    }

    /// The balancers bound so far (one per concrete name), sorted by name.
    pub fn balancers(&self) -> Vec<Arc<Balancer>> {
        self.binder.balancers()
    }

    /// The shared store the dtab lives in, when it is mesh-wide.
    pub fn dtab_store(&self) -> Option<&Arc<DtabStore>> {
        self.store.as_ref()
    }

    /// The one dtab write path: through the shared store when the dtab is mesh-wide, else into the local table.
    /// `if_match` makes it a compare-and-swap; a refused write changes nothing.
    pub async fn write_dtab(&self, dtab: Dtab, if_match: Option<&str>) -> Result<Arc<RoutingTable>, DtabWriteError> {
        match &self.store {
            Some(store) => store.write(dtab, if_match).await,
            None => self.table.write(dtab, if_match),
        }
    }

    /// Counts a rejected (malformed) dtab update.
    pub fn record_invalid_dtab(&self) {
        self.table.record_invalid();
    }

    /// Serves one request that came on `conn`: routed, or refused as the server decided, with the same request
    /// id and access-log line as any other answer.
    pub async fn serve(&self, mut req: Request<Incoming>, conn: &Downstream) -> Response<ProxyBody> {
        let start = Instant::now();
        // Hop-by-hop headers go first, before anything reads a header or the proxy adds its own: `Connection`
        // can name any header, but never `Host` or one the proxy writes. `TE: trailers` from the caller is kept
        // (for any upstream): the proxy forwards trailers, so the caller's willingness to take them carries on.
        headers::strip_hop_by_hop(req.headers_mut(), true);
        let corr = trace::correlate(req.headers_mut());
        let logged = self.access_log.as_ref().map(|_| (req.method().clone(), req.uri().clone(), req.version()));
        let mut trail = Trail::default();
        let result = match &conn.admission {
            Admission::Route { trusted } => self.forward(req, conn, *trusted, &mut trail, start).await,
            // Never reached an upstream: a proxy further out may retry it elsewhere.
            Admission::Busy { limit } => Err(Failure::retryable(ProxyError::ServerBusy { limit: *limit })),
            Admission::Denied { caller } => Err(ProxyError::Forbidden { caller: caller.clone() }.into()),
        };
        let reqid = corr.reqid.to_str().unwrap_or("-");
        let mut resp = match result {
            Ok(resp) => resp,
            Err(failure) => self.rescue(failure, &trail, start, conn.error_detail, reqid),
        };
        if let (Some(log), Some((method, uri, version))) = (&self.access_log, logged) {
            // Texts made once (per binding, per connection) where they exist, else now.
            let bound = trail.binding.as_ref().and_then(|b| b.dst_service.as_ref()).and_then(|v| v.to_str().ok());
            let service = match bound {
                Some(text) => std::borrow::Cow::Borrowed(text),
                None => trail.service.as_ref().map_or("-".into(), |p| p.to_string().into()),
            };
            let peer = match conn.forwarded_for.as_ref().and_then(|v| v.to_str().ok()) {
                Some(text) => std::borrow::Cow::Borrowed(text),
                None => conn.peer.ip().to_string().into(),
            };
            log.record(&access_log::Entry {
                router: &self.label,
                peer: &peer,
                method: &method,
                uri: &uri,
                version,
                status: resp.status().as_u16(),
                elapsed: start.elapsed(),
                service: &service,
                client: trail.sent_to.as_ref().map_or("-", |b| &b.id_text),
                reqid,
                trace: &corr.trace_id,
            });
        }
        resp.headers_mut().insert(headers::L5D_REQID, corr.reqid);
        resp
    }

    /// The request path proper: identify → context → bind → keep the body → attempts.
    async fn forward(
        &self,
        mut req: Request<Incoming>,
        conn: &Downstream,
        trusted: bool,
        trail: &mut Trail,
        start: Instant,
    ) -> Result<Response<ProxyBody>, Failure> {
        headers::check_host(&req).map_err(ProxyError::BadRequest)?;
        let hops = headers::own_hops(req.headers());
        if hops >= self.max_hops {
            return Err(ProxyError::LoopDetected { hops }.into());
        }
        let ident = identify::identify(&self.identifiers, &self.dst_prefix, &req).map_err(ProxyError::Unidentified)?;
        if let Some(uri) = ident.rewrite {
            *req.uri_mut() = uri;
        }
        if self.access_log.is_some() {
            trail.service = Some(ident.path.clone());
        }
        let ctx = RequestContext::read(req.headers_mut(), trusted)?;
        if ctx.dropped {
            self.context_dropped.inc();
        }

        // The table is loaded once: this request finishes on it even if the dtab changes meanwhile.
        let binding = match &ctx.local_dtab {
            None => self.table().binding(&ident.path, &self.binder, ctx.caller_deadline).await,
            Some(local) => {
                let dtab = self.table().dtab.concat(local);
                Arc::new(self.binder.resolve(&dtab, &ident.path, "overridden", ctx.caller_deadline).await)
            }
        };
        let binding = &**trail.binding.insert(binding);
        binding.route.request();
        let tree =
            binding.tree.as_ref().map_err(|e| ProxyError::Delegation { path: ident.path.clone(), error: e.clone() })?;

        let deadline = Deadline::new(start, binding.policy.total_timeout, ctx.caller_deadline);
        if deadline.expired() {
            return Err(deadline.timed_out(TimeoutKind::CallerDeadline).into());
        }
        context::prepare_request(&mut req, conn, binding.dst_service.as_ref(), ctx.local_dtab.as_ref(), self.h2);
        let kept = match deadline.run(KeptRequest::take(req, self.max_request_bytes, conn.body_idle)).await {
            Ok(kept) => kept.map_err(ProxyError::from)?,
            Err(()) => return Err(deadline.timed_out(TimeoutKind::RequestBody).into()),
        };
        binding.budget.deposit();
        let attempts = Attempts::new(binding, tree, &ident.path, kept, deadline, start, self.h2);
        attempts.run(&mut trail.sent_to).await
    }

    /// The rescue point's bookkeeping: count and log the failure, then turn it into the response.
    fn rescue(
        &self,
        failure: Failure,
        trail: &Trail,
        start: Instant,
        detail: ErrorDetail,
        reqid: &str,
    ) -> Response<ProxyBody> {
        let Failure { error, retryable, client } = failure;
        let status = error.status();
        let elapsed = start.elapsed();
        if let Some(binding) = &trail.binding {
            binding.route.response(status, elapsed);
        }
        if let Some(balancer) = client {
            balancer.metrics.response(status, elapsed);
        }
        self.proxy_errors.with_label_values(&[&self.label, error.reason()]).inc();
        if let ProxyError::Forbidden { caller } = &error {
            self.denied.with_label_values(&[&self.label, caller]).inc();
        }
        if error.is_client_error() {
            tracing::debug!(router = %self.label, status = status.as_u16(), reqid, "{error}");
        } else {
            tracing::warn!(router = %self.label, status = status.as_u16(), reqid, "{error}");
        }
        error.into_response(retryable, detail, reqid)
    }
}
