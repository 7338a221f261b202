//! Prometheus metrics: the metric families every component records into, and the text exposition.
//!
//! One [`Metrics`] per process owns the registry. Components hold pre-resolved handles (a route's counters and
//! histogram, a client's) so the request path does not hash label sets for the common series; only the
//! per-status-code response counters are looked up per response. Names follow Prometheus conventions
//! (`_total`, `_seconds`, base units); labels are bounded: `service` and `client` values come from the binding
//! cache, which is capped (see `router::bind::MAX_CACHED_NAMES`), and overflow is folded into one series.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Latency buckets in seconds, from 100µs: a sidecar hop costs well under a millisecond and must be visible.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// All metric families of one sidecar.
pub struct Metrics {
    registry: Registry,
    route_requests: IntCounterVec,
    route_responses: IntCounterVec,
    route_latency: HistogramVec,
    client_requests: IntCounterVec,
    client_responses: IntCounterVec,
    client_latency: HistogramVec,
    /// Endpoints currently known for each bound client.
    pub client_endpoints: IntGaugeVec,
    /// Requests received by a router's servers, before routing.
    pub server_requests: IntCounterVec,
    /// Open downstream connections per router.
    pub server_connections_open: IntGaugeVec,
    /// Downstream connections accepted per router.
    pub server_connections: IntCounterVec,
    /// Requests the proxy answered itself, by reason (`no_endpoints`, `connect_failed`, …).
    pub proxy_errors: IntCounterVec,
    /// Generation of each router's dtab: bumps on every accepted change.
    pub dtab_generation: IntGaugeVec,
    /// Dtab update attempts per router by result (`ok`, `invalid`, `conflict`).
    pub dtab_updates: IntCounterVec,
    /// Upstream connections opened per router.
    pub upstream_connects: IntCounterVec,
    /// Retries sent per logical service.
    pub retries: IntCounterVec,
    /// Retries not sent because the service's retry budget was spent.
    pub retry_budget_exhausted: IntCounterVec,
    /// 1 while an endpoint is in rotation, 0 while failure accrual has marked it dead.
    pub endpoint_available: IntGaugeVec,
    /// Times failure accrual took an endpoint out of rotation.
    pub endpoint_ejections: IntCounterVec,
    /// The endpoint's peak-EWMA latency estimate, in seconds (the load balancer's view).
    pub endpoint_latency_ewma: prometheus::GaugeVec,
    /// Requests in flight per endpoint.
    pub endpoint_in_flight: IntGaugeVec,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry.register(Box::new(g.clone())).expect("metric registered once");
    g
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let h = HistogramVec::new(opts, labels).expect("valid metric definition");
    registry.register(Box::new(h.clone())).expect("metric registered once");
    h
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Self {
        let r = Registry::new();
        let rs = &["router", "service"];
        let rc = &["router", "client"];
        let status = &["router", "service", "status_code", "classification"];
        let cstatus = &["router", "client", "status_code", "classification"];
        let m = Self {
            route_requests: counter_vec(&r, "switchyard_route_requests_total", "Requests per logical service.", rs),
            route_responses: counter_vec(
                &r,
                "switchyard_route_responses_total",
                "Responses per logical service.",
                status,
            ),
            route_latency: histogram_vec(
                &r,
                "switchyard_route_response_latency_seconds",
                "Time from request to response headers, per logical service.",
                rs,
            ),
            client_requests: counter_vec(&r, "switchyard_client_requests_total", "Requests sent per bound client.", rc),
            client_responses: counter_vec(
                &r,
                "switchyard_client_responses_total",
                "Responses per bound client.",
                cstatus,
            ),
            client_latency: histogram_vec(
                &r,
                "switchyard_client_response_latency_seconds",
                "Time from request to response headers, per bound client.",
                rc,
            ),
            client_endpoints: gauge_vec(&r, "switchyard_client_endpoints", "Endpoints known for a bound client.", rc),
            server_requests: counter_vec(
                &r,
                "switchyard_server_requests_total",
                "Requests received per router.",
                &["router"],
            ),
            server_connections_open: gauge_vec(
                &r,
                "switchyard_server_connections_open",
                "Open downstream connections.",
                &["router"],
            ),
            server_connections: counter_vec(
                &r,
                "switchyard_server_connections_total",
                "Downstream connections accepted.",
                &["router"],
            ),
            proxy_errors: counter_vec(
                &r,
                "switchyard_proxy_errors_total",
                "Requests answered by the proxy itself, by reason.",
                &["router", "reason"],
            ),
            dtab_generation: gauge_vec(
                &r,
                "switchyard_dtab_generation",
                "Generation of the router's dtab; bumps on every accepted change.",
                &["router"],
            ),
            dtab_updates: counter_vec(
                &r,
                "switchyard_dtab_updates_total",
                "Dtab update attempts by result.",
                &["router", "result"],
            ),
            upstream_connects: counter_vec(
                &r,
                "switchyard_upstream_connects_total",
                "Upstream connections opened, by result.",
                &["router", "result"],
            ),
            retries: counter_vec(&r, "switchyard_retries_total", "Retries sent per logical service.", rs),
            retry_budget_exhausted: counter_vec(
                &r,
                "switchyard_retry_budget_exhausted_total",
                "Retryable failures not retried because the retry budget was spent.",
                rs,
            ),
            endpoint_available: gauge_vec(
                &r,
                "switchyard_endpoint_available",
                "1 while the endpoint is in rotation, 0 while failure accrual has marked it dead.",
                &["router", "endpoint"],
            ),
            endpoint_ejections: counter_vec(
                &r,
                "switchyard_failure_accrual_ejections_total",
                "Times failure accrual took an endpoint out of rotation.",
                &["router", "endpoint"],
            ),
            endpoint_latency_ewma: {
                let g = prometheus::GaugeVec::new(
                    Opts::new(
                        "switchyard_endpoint_latency_ewma_seconds",
                        "Peak-EWMA latency estimate per endpoint (the load balancer's cost).",
                    ),
                    &["router", "endpoint"],
                )
                .expect("valid metric definition");
                r.register(Box::new(g.clone())).expect("metric registered once");
                g
            },
            endpoint_in_flight: gauge_vec(
                &r,
                "switchyard_endpoint_requests_in_flight",
                "Requests sent to an endpoint and not yet answered.",
                &["router", "endpoint"],
            ),
            registry: r,
        };
        let info = IntGaugeVec::new(Opts::new("switchyard_build_info", "Build information."), &["version"])
            .expect("valid metric definition");
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        m.registry.register(Box::new(info)).expect("metric registered once");
        m.registry.register(Box::new(ProcessCollector::new())).expect("metric registered once");
        m
    }

    /// Handles for one (router, logical service).
    pub fn route(&self, router: &str, service: &str) -> RouteMetrics {
        RouteMetrics {
            requests: self.route_requests.with_label_values(&[router, service]),
            latency: self.route_latency.with_label_values(&[router, service]),
            ok: self.route_responses.with_label_values(&[router, service, "200", "success"]),
            responses: self.route_responses.clone(),
            router: router.into(),
            name: service.into(),
        }
    }

    /// Handles for one (router, bound client).
    pub fn client(&self, router: &str, client: &str) -> RouteMetrics {
        RouteMetrics {
            requests: self.client_requests.with_label_values(&[router, client]),
            latency: self.client_latency.with_label_values(&[router, client]),
            ok: self.client_responses.with_label_values(&[router, client, "200", "success"]),
            responses: self.client_responses.clone(),
            router: router.into(),
            name: client.into(),
        }
    }

    /// A snapshot of every family, for readers other than the text exposition (the admin dashboard's JSON).
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }

    /// Registers a component's own collector (computed at scrape time, e.g. the Consul namer's staleness).
    pub fn register_collector(&self, collector: Box<dyn prometheus::core::Collector>) {
        if let Err(e) = self.registry.register(collector) {
            tracing::warn!(error = %e, "metrics collector not registered");
        }
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut buf = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Pre-resolved handles for a route (logical service) or a client (bound name).
#[derive(Clone)]
pub struct RouteMetrics {
    requests: IntCounter,
    latency: Histogram,
    /// `200`/`success`, resolved once: the common case costs no label lookup.
    ok: IntCounter,
    responses: IntCounterVec,
    router: Box<str>,
    name: Box<str>,
}

impl RouteMetrics {
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
        let m = Metrics::new();
        let route = m.route("egress", "/svc/forex-rate");
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
