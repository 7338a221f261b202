//! A router: one named routing domain (`ingress`, `egress`) with its servers, identifiers, dtab and clients.
//!
//! A request goes through named stages, one module each, readable top to bottom in [`Router::route`]:
//! [`identify`] → [`bind`] (dtab + namers) → [`retry`] (deadline, budget, replayable body) → [`balance`] (pick an
//! endpoint, skipping dead ones) → [`endpoint`] (pooled connection) → [`health`] (failure accrual, latency),
//! with [`headers`] applying hop-by-hop hygiene and the `l5d-*` context, and [`error`] as the one rescue point
//! that turns any failure into a status, an `l5d-err` header and a one-line body.
//!
//! Retries: a failed attempt is retried when it is safe (it never reached the upstream — connect failures and
//! unsent requests, for every method) or when the service's response classifier allows it for this method (or the
//! upstream proxy said `l5d-retryable: true`), the body could be kept, the deadline allows, and the retry budget
//! has room. A retryable failure that is not retried is returned with `l5d-retryable: true`, so a proxy further
//! out can retry it. Each retry may pick another endpoint (and another union branch).

pub mod access_log;
pub mod balance;
pub mod bind;
pub mod endpoint;
pub mod error;
pub mod headers;
pub mod health;
pub mod identify;
pub mod retry;
pub mod trace;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use switchyard_dtab::{Dtab, Path};

use self::balance::Unavailable;
use self::bind::{Binder, Binding, Choice, RoutingTable};
use self::endpoint::SendError;
use self::error::ProxyError;
use self::headers::{L5D_CTX_DTAB, L5D_DTAB};
use self::identify::Identifier;
use self::retry::{BodyError, Prepared};
use crate::config::{Protocol, RouterConfig};
use crate::metrics::{Metrics, RouteMetrics};
use crate::namer::NamerSet;
use arc_swap::ArcSwap;
use prometheus::{IntCounter, IntGauge};

/// Response bodies: the upstream's stream, or a small body the proxy wrote.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Request bodies sent upstream: a kept (replayable) copy, or the client's stream.
pub type ReqBody = Either<Full<Bytes>, Incoming>;

/// Attempts per request at most, whatever the budget says (a guard against pathological configs).
const MAX_ATTEMPTS: u32 = 25;

/// `l5d-ctx-deadline`: when the caller stops waiting, as `<sent-at> <deadline>` in nanoseconds since the epoch.
const L5D_CTX_DEADLINE: &str = "l5d-ctx-deadline";
/// `l5d-retryable: true`: this failure may safely be retried by the caller.
const L5D_RETRYABLE: &str = "l5d-retryable";

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
    max_request_bytes: Option<u64>,
    access_log: Option<access_log::AccessLog>,
    server_requests: IntCounter,
    dtab_generation: IntGauge,
}

impl Router {
    /// Builds a router from its validated config; fails only if its access log cannot be opened.
    pub fn new(config: &RouterConfig, namers: Arc<NamerSet>, metrics: Arc<Metrics>) -> Result<Self, String> {
        let access_log =
            match &config.http_access_log {
                Some(path) => Some(access_log::AccessLog::open(path).map_err(|e| {
                    format!("router {}: cannot open httpAccessLog {}: {e}", config.label, path.display())
                })?),
                None => None,
            };
        let label: Arc<str> = config.label.as_str().into();
        let settings = endpoint::EndpointSettings {
            h2: config.protocol == Protocol::H2,
            connect_timeout: Duration::from_millis(config.client.connect_timeout_ms),
            idle_timeout: Duration::from_millis(config.client.idle_timeout_ms),
        };
        let connects = endpoint::ConnectMetrics {
            ok: metrics.upstream_connects.with_label_values(&[&label, "ok"]),
            failed: metrics.upstream_connects.with_label_values(&[&label, "failed"]),
            router: label.clone(),
            families: metrics.clone(),
        };
        let pool = endpoint::EndpointPool::new(settings, connects);
        let binding_timeout = Duration::from_millis(config.binding_timeout_ms);
        let policies = (config.client.clone(), config.service.clone());
        let dtab_generation = metrics.dtab_generation.with_label_values(&[&label]);
        dtab_generation.set(1);
        Ok(Self {
            protocol: config.protocol,
            dst_prefix: config.dst_prefix.clone(),
            identifiers: config.identifiers.iter().map(Identifier::from).collect(),
            table: ArcSwap::from_pointee(RoutingTable::new(config.dtab.clone(), 1)),
            write_lock: Mutex::new(()),
            server_requests: metrics.server_requests.with_label_values(&[&label]),
            binder: Binder::new(label.clone(), namers, pool, metrics, binding_timeout, policies),
            label,
            max_request_bytes: config.max_request_kb.map(|kb| kb.saturating_mul(1024)),
            access_log,
            dtab_generation,
        })
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
    pub async fn route(&self, req: Request<Incoming>, peer: SocketAddr, trusted: bool) -> Response<ProxyBody> {
        self.answer(req, peer, trusted, None).await
    }

    /// Answers a request the server refused because it is at `maxConcurrentRequests` (503), with the same
    /// request id and access-log line as any other answer.
    pub async fn refuse_busy(&self, req: Request<Incoming>, peer: SocketAddr, limit: usize) -> Response<ProxyBody> {
        self.answer(req, peer, false, Some(limit)).await
    }

    /// Correlation ids and the access log around either routing the request or refusing it.
    async fn answer(
        &self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        trusted: bool,
        refused: Option<usize>,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        let corr = trace::correlate(req.headers_mut());
        let logged = self.access_log.as_ref().map(|_| (req.method().clone(), req.uri().clone(), req.version()));
        let mut resp = match refused {
            Some(limit) => {
                self.server_requests.inc();
                self.fail(None, None, ProxyError::ServerBusy { limit }, start, true)
            }
            None => self.route_request(req, peer, trusted, start).await,
        };
        resp.headers_mut().insert(trace::L5D_REQID, corr.reqid.clone());
        if let (Some(log), Some((method, uri, version))) = (&self.access_log, logged) {
            let routed = resp.extensions_mut().remove::<Routed>();
            let (service, client) = routed.map(|r| (r.service, r.client)).unwrap_or_default();
            log.write(format!(
                "{} {} {} \"{method} {uri} {version:?}\" {} {:.3} service={} client={} reqid={} trace={}",
                access_log::now_rfc3339(),
                self.label,
                peer.ip(),
                resp.status().as_u16(),
                start.elapsed().as_secs_f64() * 1000.0,
                if service.is_empty() { "-" } else { &service },
                if client.is_empty() { "-" } else { &client },
                corr.reqid.to_str().unwrap_or("-"),
                corr.trace_id,
            ));
        }
        resp
    }

    /// The request path proper (see the module docs); [`Router::answer`] wraps it with correlation and logging.
    async fn route_request(
        &self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        trusted: bool,
        start: Instant,
    ) -> Response<ProxyBody> {
        self.server_requests.inc();

        // identify
        let ident = match identify::identify(&self.identifiers, &self.dst_prefix, &req) {
            Ok(i) => i,
            Err(why) => return self.fail(None, None, ProxyError::Unidentified(why), start, false),
        };
        if let Some(uri) = ident.rewrite {
            *req.uri_mut() = uri;
        }
        let local = match self.local_dtab(&mut req, trusted) {
            Ok(d) => d,
            Err(e) => return self.fail(None, None, e, start, false),
        };

        let inbound_deadline = if trusted { parse_deadline(req.headers()) } else { None };

        // bind: the table is loaded once; this request finishes on it even if the dtab changes meanwhile.
        let table = self.table.load_full();
        let binding = match &local {
            None => table.binding(&ident.path, &self.binder, inbound_deadline).await,
            Some(local) => {
                let dtab = table.dtab.concat(local);
                Arc::new(self.binder.bind(&dtab, &ident.path, "overridden", inbound_deadline).await)
            }
        };
        let route = &binding.route;
        route.request();
        let tree = match &binding.tree {
            Ok(tree) => tree,
            Err(e) => {
                let err = ProxyError::Delegation { path: ident.path.clone(), error: e.clone() };
                return self.fail(Some(route), None, err, start, false);
            }
        };

        // retry: one deadline for all attempts — the service's total timeout or the caller's, whichever is first.
        let total = binding.policy.total_timeout;
        let deadline = [total.map(|t| start + t), inbound_deadline].into_iter().flatten().min();
        if deadline.is_some_and(|d| d <= Instant::now()) {
            let err = ProxyError::Timeout { what: "caller's deadline", after: Duration::ZERO };
            return self.fail(Some(route), None, err, start, false);
        }
        self.prepare_request(&mut req, peer, &ident.path, local.as_ref());
        let taken = Prepared::new(req, self.max_request_bytes);
        let taken = match retry::remaining(deadline) {
            Some(left) => tokio::time::timeout(left, taken).await.unwrap_or(Err(BodyError::TimedOut)),
            None => taken.await,
        };
        let mut prepared = match taken {
            Ok(p) => p,
            Err(BodyError::TooLarge { limit }) => {
                let err = ProxyError::BodyTooLarge { limit_kb: limit / 1024 };
                return self.fail(Some(route), None, err, start, false);
            }
            Err(BodyError::Read(why)) => return self.fail(Some(route), None, ProxyError::BadBody(why), start, false),
            Err(BodyError::TimedOut) => {
                let after = total.unwrap_or_else(|| start.elapsed());
                let err = ProxyError::Timeout { what: "reading the request body", after };
                return self.fail(Some(route), None, err, start, false);
            }
        };
        binding.budget.deposit();
        self.attempts(&binding, tree, &mut prepared, deadline, start, &ident.path).await
    }

    /// Sends attempts until one answers acceptably, retrying what is safe and allowed.
    async fn attempts(
        &self,
        binding: &Binding,
        tree: &switchyard_dtab::NameTree<Arc<bind::Target>>,
        prepared: &mut Prepared,
        deadline: Option<Instant>,
        start: Instant,
        path: &Path,
    ) -> Response<ProxyBody> {
        let route = &binding.route;
        let classifier = binding.policy.classifier;
        let mut attempt = 0u32;
        // The failure that prompted the current retry: reported instead of "no endpoint left" when a retry finds
        // every endpoint ejected, because it says what actually went wrong.
        let mut last_error: Option<ProxyError> = None;
        let mut last_endpoint: Option<Arc<endpoint::EndpointClient>> = None;
        loop {
            let (target, endpoint) = match self.pick(tree, path, last_endpoint.as_ref(), &mut last_error) {
                Ok(picked) => picked,
                Err((err, client, retryable)) => {
                    return self.fail(Some(route), client.as_ref().map(|c| &c.metrics), err, start, retryable)
                }
            };
            let client = &target.client;
            // A copy of the headers is kept only when the classifier could retry after the upstream saw the request.
            let keep = classifier.retryable_method(&prepared.method);
            let Some(mut req) = prepared.attempt(keep) else {
                let err = ProxyError::Upstream { addr: endpoint.addr, error: "request body already consumed".into() };
                return self.fail(Some(route), Some(&client.metrics), err, start, false);
            };
            self.prepare_attempt(&mut req, &target, deadline);
            let sent_at = Instant::now();
            match self.send(&endpoint, req, binding, client, deadline, start).await {
                Ok(resp) => {
                    let (failure, retryable) = judge_response(&resp, &endpoint, client, classifier, prepared, sent_at);
                    if retryable && self.may_retry(binding, prepared, attempt, deadline).await {
                        attempt += 1;
                        last_endpoint = Some(endpoint);
                        continue;
                    }
                    return self.finish(resp, route, failure, retryable, start, path, &client.id_text);
                }
                Err(e) => {
                    let retryable = judge_error(&e, &endpoint, client, classifier, &prepared.method, sent_at);
                    let never_sent = !e.sent;
                    if let Some(unsent) = e.unsent {
                        prepared.restore(*unsent);
                    }
                    // A refused connection with no other live endpoint to try: retrying the same one at once is
                    // pointless, so fail fast with the real cause (marked retryable for a proxy further out).
                    let pointless = matches!(e.error, ProxyError::Connect { .. }) && !client.others_live(&endpoint);
                    if retryable && !pointless && self.may_retry(binding, prepared, attempt, deadline).await {
                        attempt += 1;
                        last_error = Some(e.error);
                        last_endpoint = Some(endpoint);
                        continue;
                    }
                    let mut resp = self.fail(Some(route), None, e.error, start, retryable || never_sent);
                    self.tag(&mut resp, path, &client.id_text);
                    return resp;
                }
            }
        }
    }

    /// The balance step of one attempt: a branch of the bound tree, then an endpoint of its client. On failure,
    /// the error, the client whose metrics count it (if one was chosen), and whether it is retryable elsewhere.
    #[allow(clippy::type_complexity)]
    fn pick(
        &self,
        tree: &switchyard_dtab::NameTree<Arc<bind::Target>>,
        path: &Path,
        avoid: Option<&Arc<endpoint::EndpointClient>>,
        last_error: &mut Option<ProxyError>,
    ) -> Result<(Arc<bind::Target>, Arc<endpoint::EndpointClient>), (ProxyError, Option<Arc<balance::Client>>, bool)>
    {
        let target = match bind::choose(tree) {
            Choice::Target(t) => t.clone(),
            Choice::Neg => return Err((ProxyError::Unbound { path: path.clone() }, None, false)),
            Choice::Fail => return Err((ProxyError::BindFailed { path: path.clone() }, None, false)),
            Choice::Empty => return Err((ProxyError::NoEndpoints { client: path.clone() }, None, true)),
        };
        let client = target.client.clone();
        client.metrics.request();
        match client.pick(avoid) {
            Ok(endpoint) => Ok((target, endpoint)),
            Err(Unavailable::AllDead) if last_error.is_some() => {
                let err = last_error.take().unwrap_or(ProxyError::AllEndpointsDead { client: client.id.clone() });
                Err((err, Some(client), true))
            }
            Err(why) => {
                let id = client.id.clone();
                let err = match why {
                    Unavailable::Empty => ProxyError::NoEndpoints { client: id },
                    Unavailable::AllDead => ProxyError::AllEndpointsDead { client: id },
                    Unavailable::AllBusy => ProxyError::EndpointsBusy {
                        client: id,
                        limit: client.policy.max_concurrent_per_endpoint.unwrap_or(0),
                    },
                };
                Err((err, Some(client), true))
            }
        }
    }

    /// The endpoint step of one attempt, bounded by the attempt timeout and what is left of the deadline.
    async fn send(
        &self,
        endpoint: &Arc<endpoint::EndpointClient>,
        req: Request<ReqBody>,
        binding: &Binding,
        client: &balance::Client,
        deadline: Option<Instant>,
        start: Instant,
    ) -> Result<Response<Incoming>, SendError> {
        let limit = [client.policy.request_attempt_timeout, retry::remaining(deadline)].into_iter().flatten().min();
        let Some(t) = limit else { return endpoint.send(req).await };
        tokio::time::timeout(t, endpoint.send(req)).await.unwrap_or_else(|_| {
            // Report the configured timeout that ran out, not the remainder this attempt happened to get.
            let (what, after) = if Some(t) == client.policy.request_attempt_timeout {
                ("request attempt", t)
            } else {
                ("request", binding.policy.total_timeout.unwrap_or_else(|| start.elapsed()))
            };
            Err(SendError { error: ProxyError::Timeout { what, after }, unsent: None, sent: true })
        })
    }

    /// Hands an upstream response to the client: hop-by-hop hygiene, `Via`, `l5d-retryable` for a retryable
    /// failure that was not retried, and the route's metrics.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        mut resp: Response<Incoming>,
        route: &RouteMetrics,
        failure: bool,
        retryable: bool,
        start: Instant,
        path: &Path,
        client: &str,
    ) -> Response<ProxyBody> {
        let version = resp.version();
        headers::strip_hop_by_hop(resp.headers_mut(), false);
        headers::append_via(resp.headers_mut(), version);
        if retryable {
            resp.headers_mut().insert(L5D_RETRYABLE, http::HeaderValue::from_static("true"));
        }
        route.response_classified(resp.status(), failure, start.elapsed());
        let mut resp = resp.map(Either::Left);
        self.tag(&mut resp, path, client);
        resp
    }

    /// Whether another attempt may go out — body, attempts, deadline and budget permitting — after the backoff.
    async fn may_retry(&self, binding: &Binding, prepared: &Prepared, attempt: u32, deadline: Option<Instant>) -> bool {
        if attempt + 1 >= MAX_ATTEMPTS || !prepared.can_attempt() {
            return false;
        }
        let backoff = binding.policy.retries.backoff.delay(attempt);
        if retry::remaining(deadline).is_some_and(|left| left <= backoff) {
            return false;
        }
        if !binding.budget.try_withdraw() {
            binding.budget_exhausted.inc();
            return false;
        }
        binding.retries.inc();
        if !backoff.is_zero() {
            tokio::time::sleep(backoff).await;
        }
        true
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
                let text =
                    value.to_str().map_err(|_| ProxyError::BadDtabHeader { header: name, error: "not text".into() })?;
                let d =
                    Dtab::parse(text).map_err(|e| ProxyError::BadDtabHeader { header: name, error: e.to_string() })?;
                local = local.concat(&d);
            }
        }
        h.remove(L5D_DTAB);
        h.remove(L5D_CTX_DTAB);
        Ok(if local.dentries().is_empty() { None } else { Some(local) })
    }

    /// Headers every attempt shares: hygiene, `Via`, `X-Forwarded-For`, the logical name, the dtab context, and the
    /// request target for the upstream protocol.
    fn prepare_request(&self, req: &mut Request<Incoming>, peer: SocketAddr, service: &Path, local: Option<&Dtab>) {
        let version = req.version();
        let h2 = self.protocol == Protocol::H2;
        let h = req.headers_mut();
        headers::strip_hop_by_hop(h, h2);
        headers::append_via(h, version);
        headers::append_forwarded_for(h, peer.ip());
        // The l5d-dst-* headers describe this hop's routing: never pass on a client's own.
        h.remove("l5d-dst-client");
        h.remove("l5d-dst-residual");
        headers::set_text(h, "l5d-dst-service", &service.to_string());
        h.remove(L5D_CTX_DEADLINE);
        if let Some(local) = local {
            // The override travels with the request so the next hop routes the same way.
            headers::set_text(h, L5D_CTX_DTAB, &local.to_string());
        }
        headers::set_target_for(req, h2);
    }

    /// Headers of one attempt: the bound client, the residual, a namer's `Host`, and the remaining deadline.
    fn prepare_attempt(&self, req: &mut Request<ReqBody>, target: &bind::Target, deadline: Option<Instant>) {
        if let Some(host) = &target.host {
            headers::set_authority(req, host, self.protocol == Protocol::H2);
        }
        let h = req.headers_mut();
        headers::set_text(h, "l5d-dst-client", &target.client.id_text);
        if !target.residual.is_empty() {
            headers::set_text(h, "l5d-dst-residual", &target.residual.to_string());
        }
        if let Some(d) = deadline {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            let at = now + d.saturating_duration_since(Instant::now());
            headers::set_text(h, L5D_CTX_DEADLINE, &format!("{} {}", now.as_nanos(), at.as_nanos()));
        }
    }

    /// The rescue point's bookkeeping: count, log, and turn the error into the response.
    /// `retryable` marks failures that never reached an upstream (or that the classifier allows to retry), so a
    /// caller further out may retry them: `l5d-retryable: true`.
    fn fail(
        &self,
        route: Option<&RouteMetrics>,
        client: Option<&RouteMetrics>,
        err: ProxyError,
        start: Instant,
        retryable: bool,
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
        let mut resp = err.into_response();
        if retryable {
            resp.headers_mut().insert(L5D_RETRYABLE, http::HeaderValue::from_static("true"));
        }
        resp
    }

    /// Notes which service and client answered, for the access log (only when there is one).
    fn tag(&self, resp: &mut Response<ProxyBody>, service: &Path, client: &str) {
        if self.access_log.is_some() {
            resp.extensions_mut().insert(Routed { service: service.to_string(), client: client.to_string() });
        }
    }
}

/// Judges an upstream answer: records it in the endpoint's health and the client's metrics, and returns
/// (whether it is a failure, whether it may be retried).
fn judge_response(
    resp: &Response<Incoming>,
    endpoint: &Arc<endpoint::EndpointClient>,
    client: &balance::Client,
    classifier: crate::config::Classifier,
    prepared: &Prepared,
    sent_at: Instant,
) -> (bool, bool) {
    let status = resp.status();
    let elapsed = sent_at.elapsed();
    let failure = classifier.is_failure(status);
    let accrual = &client.policy.failure_accrual;
    endpoint.health.record(!failure, accrual, failure && client.others_live(endpoint), sent_at);
    if failure {
        endpoint.health.observe_failure(client.ewma_decay());
    } else {
        endpoint.health.observe_latency(elapsed, client.ewma_decay());
    }
    client.metrics.response_classified(status, failure, elapsed);
    // Honoured only from a proxy's own error (it carries l5d-err): an app's header must never make a request it
    // already handled look safe to replay.
    let upstream_says =
        resp.headers().contains_key("l5d-err") && resp.headers().get(L5D_RETRYABLE).is_some_and(|v| v == "true");
    (failure, failure && (classifier.retryable_method(&prepared.method) || upstream_says))
}

/// Judges a failed send: records it against the endpoint (unless the caller's deadline, not the endpoint, ran out)
/// and in the client's metrics, and returns whether it may be retried — always when the request never left, after
/// sending only as the classifier allows for the method.
fn judge_error(
    e: &SendError,
    endpoint: &Arc<endpoint::EndpointClient>,
    client: &balance::Client,
    classifier: crate::config::Classifier,
    method: &http::Method,
    sent_at: Instant,
) -> bool {
    let endpoint_fault = !matches!(e.error, ProxyError::Timeout { what, .. } if what != "request attempt");
    if endpoint_fault {
        endpoint.health.record(false, &client.policy.failure_accrual, client.others_live(endpoint), sent_at);
        endpoint.health.observe_failure(client.ewma_decay());
    }
    client.metrics.response(e.error.status(), sent_at.elapsed());
    let after_send = matches!(e.error, ProxyError::Upstream { .. } | ProxyError::Timeout { .. })
        && classifier.retryable_method(method);
    !e.sent || after_send
}

/// What the access log says about where a request went.
#[derive(Clone, Default)]
struct Routed {
    service: String,
    client: String,
}

/// Reads `l5d-ctx-deadline` (`<sent-at> <deadline>` or just `<deadline>`, nanoseconds since the epoch) as an
/// instant on this machine's clock.
fn parse_deadline(h: &http::HeaderMap) -> Option<Instant> {
    let text = h.get(L5D_CTX_DEADLINE)?.to_str().ok()?;
    let deadline_ns: u128 = text.split_whitespace().last()?.parse().ok()?;
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_nanos();
    let left = u64::try_from(deadline_ns.saturating_sub(now_ns)).unwrap_or(u64::MAX);
    Some(Instant::now() + Duration::from_nanos(left))
}
