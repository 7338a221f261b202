//! A service's own Prometheus metrics: the requests it serves and the calls it makes to its peer.
//!
//! The sidecars already measure every hop from the outside; these families measure it from the inside, so the
//! difference between the two is the mesh's cost, and a handler's own latency shows even when no sidecar is in
//! the way. Exposed at `GET /metrics` by [`instrument`]. Labels are bounded: `route` is axum's matched route
//! template (`/{date}/{from}/{to}`, never the raw path), `method` is one of the standard methods or `OTHER`, and
//! the Prometheus target adds `service` and `instance`, so no family carries them itself.
//!
//! | family | labels | what |
//! |---|---|---|
//! | `forex_http_requests_total` | `method`, `route`, `status_code` | requests served, by status |
//! | `forex_http_request_duration_seconds` | `method`, `route` | time to the response headers |
//! | `forex_peer_requests_total` | `peer`, `status_code` or `error_type` | calls to the peer (through the sidecar) |
//! | `forex_peer_request_duration_seconds` | `peer` | time to the peer's whole answer |

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Latency buckets in seconds, from 50 µs: forex-rate answers from memory in tens of microseconds, and a
/// histogram whose first bucket is a millisecond would hide it. Same upper range as the sidecars' buckets.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The `route` label of a request no route matched (404s, probes for random paths): one series for all of
/// them, so a scanner cannot create a series per path it tries.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The Prometheus text exposition's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric family of one service process. Cheap to clone (the families are shared).
#[derive(Clone)]
pub struct ServiceMetrics {
    inner: Arc<Families>,
}

struct Families {
    registry: Registry,
    http_requests: IntCounterVec,
    http_latency: HistogramVec,
    peer_requests: IntCounterVec,
    peer_latency: HistogramVec,
}

impl std::fmt::Debug for ServiceMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceMetrics").finish_non_exhaustive()
    }
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ServiceMetrics {
    /// Creates and registers every family in a registry of its own (not the global default one, so tests can
    /// build as many apps as they like in one process).
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new("forex_http_requests_total", "HTTP requests served, by matched route and status."),
            &["method", "route", "status_code"],
        )
        .expect("valid metric definition");
        let http_latency = HistogramVec::new(
            HistogramOpts::new(
                "forex_http_request_duration_seconds",
                "Time from receiving a request to sending its response headers, by matched route.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route"],
        )
        .expect("valid metric definition");
        let peer_requests = IntCounterVec::new(
            Opts::new(
                "forex_peer_requests_total",
                "Calls to the peer service through the egress sidecar: status_code when it answered, \
                 error_type (timeout, transport, body_too_large) when it did not.",
            ),
            &["peer", "status_code", "error_type"],
        )
        .expect("valid metric definition");
        let peer_latency = HistogramVec::new(
            HistogramOpts::new(
                "forex_peer_request_duration_seconds",
                "Time from sending a call to the peer to having its whole answer (or giving up).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["peer"],
        )
        .expect("valid metric definition");
        for family in [&http_requests, &peer_requests] {
            registry.register(Box::new(family.clone())).expect("metric registered once");
        }
        for family in [&http_latency, &peer_latency] {
            registry.register(Box::new(family.clone())).expect("metric registered once");
        }
        let inner = Families { registry, http_requests, http_latency, peer_requests, peer_latency };
        Self { inner: Arc::new(inner) }
    }

    /// Records one served request.
    pub fn record_request(&self, method: &Method, route: &str, status: StatusCode, elapsed: Duration) {
        let method = method_label(method);
        let families = &self.inner;
        families.http_latency.with_label_values(&[method, route]).observe(elapsed.as_secs_f64());
        families.http_requests.with_label_values(&[method, route, status.as_str()]).inc();
    }

    /// Records one call to `peer`: the status it answered with, or why it did not answer.
    pub fn record_peer_call(&self, peer: &str, outcome: PeerOutcome, elapsed: Duration) {
        let families = &self.inner;
        families.peer_latency.with_label_values(&[peer]).observe(elapsed.as_secs_f64());
        let (status, error) = match outcome {
            PeerOutcome::Answered(status) => (status.as_str().to_owned(), ""),
            PeerOutcome::Failed(error_type) => (String::new(), error_type),
        };
        families.peer_requests.with_label_values(&[peer, &status, error]).inc();
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut buf = Vec::with_capacity(8 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.inner.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// How a peer call ended, for [`ServiceMetrics::record_peer_call`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerOutcome {
    /// The peer (or its sidecar) answered with this status.
    Answered(StatusCode),
    /// No answer; the `error_type` label value (`timeout`, `transport`, `body_too_large`).
    Failed(&'static str),
}

/// Adds `GET /metrics` to `app` and measures every request it serves, the `/metrics` scrapes included.
///
/// Applied with `Router::layer`, so the middleware runs after routing and sees the [`MatchedPath`]; requests
/// that reach the fallback have none and count as [`UNMATCHED_ROUTE`].
pub fn instrument(app: Router, metrics: ServiceMetrics) -> Router {
    let exposition = metrics.clone();
    app.route("/metrics", get(move || scrape(exposition.clone())))
        .layer(axum::middleware::from_fn_with_state(metrics, track))
}

async fn scrape(metrics: ServiceMetrics) -> Response {
    ([(header::CONTENT_TYPE, TEXT_FORMAT)], metrics.render()).into_response()
}

async fn track(State(metrics): State<ServiceMetrics>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_owned(), |matched| matched.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.record_request(&method, &route, response.status(), started.elapsed());
    response
}

/// The `method` label: a standard method's name, anything else `OTHER` (extension methods are unbounded).
fn method_label(method: &Method) -> &'static str {
    const STANDARD: &[Method] = &[
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD.iter().find(|standard| *standard == method).map_or("OTHER", Method::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        let odd = Method::from_bytes(b"PROPFIND").expect("valid method token");
        assert_eq!(method_label(&odd), "OTHER");
    }

    #[test]
    fn peer_calls_carry_status_or_error_type() {
        let metrics = ServiceMetrics::new();
        metrics.record_peer_call("forex-rate", PeerOutcome::Answered(StatusCode::OK), Duration::from_micros(300));
        metrics.record_peer_call("forex-rate", PeerOutcome::Failed("timeout"), Duration::from_secs(1));
        let text = metrics.render();
        assert!(
            text.contains(r#"forex_peer_requests_total{error_type="",peer="forex-rate",status_code="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"forex_peer_requests_total{error_type="timeout",peer="forex-rate",status_code=""} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"forex_peer_request_duration_seconds_bucket{peer="forex-rate",le="0.0005"} 1"#),
            "{text}"
        );
    }
}
