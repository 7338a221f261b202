//! The sidecar's metric registry, the name of every family, and what components register theirs with.
//!
//! Components own their metrics: each defines its families in a small struct registered against the [`Registry`]
//! it is given (the router's stages in `router::Families`, servers in `server::ServerMetrics`, the Consul namer
//! and the dtab stores as collectors), and resolves the label values it needs once, so the request path never
//! looks a series up by name. Names follow Prometheus conventions (`_total`, `_seconds`, base units) and live in
//! [`names`], which the admin dashboard reads too; labels are bounded: `service` and `client` values come from
//! the binding cache, which is capped (see `router::bind::MAX_CACHED_NAMES`), and overflow is folded into one
//! series.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    TextEncoder,
};

/// Latency buckets in seconds, from 100µs: a sidecar hop costs well under a millisecond and must be visible.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Every family name the sidecar exports (the dashboard and the tests match on these, never on prefixes).
pub mod names {
    pub const ROUTE_REQUESTS: &str = "switchyard_route_requests_total";
    pub const ROUTE_RESPONSES: &str = "switchyard_route_responses_total";
    pub const ROUTE_LATENCY: &str = "switchyard_route_response_latency_seconds";
    pub const CLIENT_REQUESTS: &str = "switchyard_client_requests_total";
    pub const CLIENT_RESPONSES: &str = "switchyard_client_responses_total";
    pub const CLIENT_LATENCY: &str = "switchyard_client_response_latency_seconds";
    pub const CLIENT_ENDPOINTS: &str = "switchyard_client_endpoints";
    pub const SERVER_REQUESTS: &str = "switchyard_server_requests_total";
    pub const SERVER_CONNECTIONS_OPEN: &str = "switchyard_server_connections_open";
    pub const SERVER_CONNECTIONS: &str = "switchyard_server_connections_total";
    pub const SERVER_CONNECTION_LIMIT: &str = "switchyard_server_connection_limit_reached_total";
    pub const SERVER_CONNECTIONS_CLOSED: &str = "switchyard_server_connections_closed_total";
    pub const PROXY_ERRORS: &str = "switchyard_proxy_errors_total";
    pub const DTAB_GENERATION: &str = "switchyard_dtab_generation";
    pub const DTAB_UPDATES: &str = "switchyard_dtab_updates_total";
    pub const DTAB_STORE_ERRORS: &str = "switchyard_dtab_store_errors_total";
    pub const UPSTREAM_CONNECTS: &str = "switchyard_upstream_connects_total";
    pub const RETRIES: &str = "switchyard_retries_total";
    pub const RETRY_BUDGET_EXHAUSTED: &str = "switchyard_retry_budget_exhausted_total";
    pub const HEDGES: &str = "switchyard_hedges_total";
    pub const HEDGE_WINS: &str = "switchyard_hedge_wins_total";
    pub const ENDPOINT_AVAILABLE: &str = "switchyard_endpoint_available";
    pub const ENDPOINT_EJECTIONS: &str = "switchyard_failure_accrual_ejections_total";
    pub const ENDPOINT_LATENCY_EWMA: &str = "switchyard_endpoint_latency_ewma_seconds";
    pub const ENDPOINT_IN_FLIGHT: &str = "switchyard_endpoint_requests_in_flight";
    pub const ENDPOINT_CONNECTIONS: &str = "switchyard_endpoint_connections";
    pub const ENDPOINT_POOL_WAITERS: &str = "switchyard_endpoint_pool_waiters";
    pub const ENDPOINT_POOL_WAIT: &str = "switchyard_endpoint_pool_wait_seconds";
    pub const ENDPOINT_POOL_REJECTED: &str = "switchyard_endpoint_pool_rejected_total";
    pub const BUILD_INFO: &str = "switchyard_build_info";
    pub const TLS_CERT_EXPIRY: &str = "switchyard_tls_certificate_expiry_timestamp_seconds";
    pub const TLS_RELOADS: &str = "switchyard_tls_reloads_total";
    pub const TLS_HANDSHAKE_ERRORS: &str = "switchyard_tls_handshake_errors_total";
    pub const AUTHZ_DENIED: &str = "switchyard_authorization_denied_total";
    pub const CONTEXT_DROPPED: &str = "switchyard_context_dropped_total";
    pub const MEMORY_TRIMS: &str = "switchyard_memory_trims_total";
    pub const MEMORY_RELEASED: &str = "switchyard_memory_released_bytes_total";
}

/// One sidecar's metrics: components register their families here; the admin server renders them.
pub struct Registry {
    inner: prometheus::Registry,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A registry with the build and process families already in it.
    pub fn new() -> Self {
        let r = Self::empty();
        r.int_gauge_vec(names::BUILD_INFO, "Build information.", &["version"])
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        r.register(Box::new(ProcessCollector::new()));
        r
    }

    /// A registry with nothing in it (component unit tests).
    pub fn empty() -> Self {
        Self { inner: prometheus::Registry::new() }
    }

    fn add<C: Collector + Clone + 'static>(&self, c: C) -> C {
        self.inner.register(Box::new(c.clone())).expect("each metric family is registered once");
        c
    }

    /// Registers a counter family.
    pub fn int_counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition"))
    }

    /// Registers an integer gauge family.
    pub fn int_gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition"))
    }

    /// Registers a float gauge family.
    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        self.add(GaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition"))
    }

    /// Registers a latency histogram family with [`LATENCY_BUCKETS`].
    pub fn latency_vec(&self, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
        self.add(HistogramVec::new(opts, labels).expect("valid metric definition"))
    }

    /// Registers a component's own collector (computed at scrape time, e.g. the Consul namer's staleness).
    pub fn register(&self, collector: Box<dyn Collector>) {
        if let Err(e) = self.inner.register(collector) {
            tracing::warn!(error = %e, "metrics collector not registered");
        }
    }

    /// A snapshot of every family, for readers other than the text exposition (the admin dashboard's JSON).
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.inner.gather()
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut buf = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.inner.gather(), &mut buf) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Request, response and latency families for one kind of traffic: per logical service (`service` label) or per
/// bound client (`client` label), under a router.
#[derive(Clone)]
pub struct RequestFamilies {
    requests: IntCounterVec,
    responses: IntCounterVec,
    latency: HistogramVec,
}

impl RequestFamilies {
    /// The per-service families (`switchyard_route_*`).
    pub fn routes(r: &Registry) -> Self {
        let (rs, status) = (&["router", "service"], &["router", "service", "status_code", "classification"]);
        Self {
            requests: r.int_counter_vec(names::ROUTE_REQUESTS, "Requests per logical service.", rs),
            responses: r.int_counter_vec(names::ROUTE_RESPONSES, "Responses per logical service.", status),
            latency: r.latency_vec(
                names::ROUTE_LATENCY,
                "Time from request to response headers, per logical service.",
                rs,
            ),
        }
    }

    /// The per-client families (`switchyard_client_*`).
    pub fn clients(r: &Registry) -> Self {
        let (rc, status) = (&["router", "client"], &["router", "client", "status_code", "classification"]);
        Self {
            requests: r.int_counter_vec(names::CLIENT_REQUESTS, "Requests sent per bound client.", rc),
            responses: r.int_counter_vec(names::CLIENT_RESPONSES, "Responses per bound client.", status),
            latency: r.latency_vec(
                names::CLIENT_LATENCY,
                "Time from request to response headers, per bound client.",
                rc,
            ),
        }
    }

    /// Handles for one (router, service or client).
    pub fn stats(&self, router: &str, name: &str) -> RequestStats {
        RequestStats {
            requests: self.requests.with_label_values(&[router, name]),
            latency: self.latency.with_label_values(&[router, name]),
            ok: self.responses.with_label_values(&[router, name, "200", "success"]),
            responses: self.responses.clone(),
            router: router.into(),
            name: name.into(),
        }
    }
}

/// Pre-resolved handles for a route (logical service) or a client (bound name).
#[derive(Clone)]
pub struct RequestStats {
    requests: IntCounter,
    latency: Histogram,
    /// `200`/`success`, resolved once: the common case costs no label lookup.
    ok: IntCounter,
    responses: IntCounterVec,
    router: Box<str>,
    name: Box<str>,
}

impl RequestStats {
    /// Counts a request.
    pub fn request(&self) {
        self.requests.inc();
    }

    /// Records a response's status and the time to its headers (5xx counted as failures).
    pub fn response(&self, status: http::StatusCode, elapsed: Duration) {
        self.response_classified(status, status.is_server_error(), elapsed);
    }

    /// Records a response as the service's response classifier judged it.
    pub fn response_classified(&self, status: http::StatusCode, failure: bool, elapsed: Duration) {
        self.latency.observe(elapsed.as_secs_f64());
        if status == http::StatusCode::OK && !failure {
            self.ok.inc();
            return;
        }
        let class = if failure { "failure" } else { "success" };
        self.responses.with_label_values(&[&self.router, &self.name, status.as_str(), class]).inc();
    }
}

/// `process_*` metrics read from /proc at scrape time (resident memory is how we hold ourselves to a budget).
struct ProcessCollector {
    descs: Vec<prometheus::core::Desc>,
    start_time: f64,
}

impl ProcessCollector {
    fn new() -> Self {
        let d = |name: &str, help: &str| {
            prometheus::core::Desc::new(name.into(), help.into(), vec![], Default::default()).expect("valid desc")
        };
        let start_time =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        Self {
            descs: vec![
                d("process_resident_memory_bytes", "Resident memory size in bytes."),
                d("process_open_fds", "Number of open file descriptors."),
                d("process_start_time_seconds", "Start time of the process since the Unix epoch in seconds."),
            ],
            start_time,
        }
    }
}

impl prometheus::core::Collector for ProcessCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let gauge = |name: &str, help: &str, v: f64| {
            let g = prometheus::Gauge::new(name, help).expect("valid gauge");
            g.set(v);
            prometheus::core::Collector::collect(&g)
        };
        let rss = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<f64>().ok()))
            .map(|pages| pages * 4096.0)
            .unwrap_or(0.0);
        let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as f64).unwrap_or(0.0);
        let mut out = gauge("process_resident_memory_bytes", "Resident memory size in bytes.", rss);
        out.extend(gauge("process_open_fds", "Number of open file descriptors.", fds));
        out.extend(gauge(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds.",
            self.start_time,
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_families_and_labels() {
        let m = Registry::new();
        let route = RequestFamilies::routes(&m).stats("egress", "/svc/forex-rate");
        route.request();
        route.response(http::StatusCode::BAD_GATEWAY, Duration::from_micros(300));
        let text = m.render();
        assert!(
            text.contains(r#"switchyard_route_requests_total{router="egress",service="/svc/forex-rate"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"classification="failure",router="egress",service="/svc/forex-rate",status_code="502"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"switchyard_route_response_latency_seconds_bucket{router="egress",service="/svc/forex-rate",le="0.0005"} 1"#), "{text}");
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }
}
