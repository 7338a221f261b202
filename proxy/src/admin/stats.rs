//! `GET /admin/stats.json`: the live dashboard's data — per router, per logical service and per bound client, the
//! cumulative request and response counters and latency histogram buckets, plus each client's endpoints.
//!
//! Everything is read from the Prometheus registry at request time (`Registry::gather`), so the request path is
//! untouched and the dashboard shows exactly what Prometheus scrapes. Counters are cumulative: the page computes
//! rates, success rates and percentiles from the difference between two polls, the way `rate()` and
//! `histogram_quantile()` would.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::Json;
use prometheus::proto::{Metric, MetricFamily};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::AdminState;
use crate::metrics::{names, LATENCY_BUCKETS};
use crate::router::Router;

/// Cumulative traffic of one logical service or bound client.
#[derive(Default)]
pub struct Series {
    /// Requests counted when they were routed.
    pub requests: u64,
    /// Responses classified as success (anything but 5xx).
    pub success: u64,
    /// Responses classified as failure (5xx, including the proxy's own errors).
    pub failure: u64,
    /// Responses by status code.
    pub status: BTreeMap<String, u64>,
    /// Cumulative bucket counts, one per bound in `latencyBounds` (the `+Inf` bucket is `latencyCount`).
    pub latency_buckets: Vec<u64>,
    /// Observations in all (the `+Inf` bucket).
    pub latency_count: u64,
    /// Sum of the observed latencies, in seconds.
    pub latency_sum: f64,
}

/// What one router's section of the JSON holds.
#[derive(Default)]
struct RouterStats {
    requests: u64,
    connections_open: i64,
    proxy_errors: BTreeMap<String, u64>,
    services: BTreeMap<String, Series>,
    clients: BTreeMap<String, Series>,
}

fn label<'a>(m: &'a Metric, name: &str) -> &'a str {
    m.get_label().iter().find(|l| l.name() == name).map_or("", |l| l.value())
}

/// Which series a family feeds: `service` for route families, `client` for client families.
enum Part {
    Service,
    Client,
}

/// What a traffic family counts.
enum Kind {
    Requests,
    Responses,
    Latency,
}

/// Folds one family into the per-router stats; families the dashboard does not show are ignored.
fn fold(family: &MetricFamily, routers: &mut BTreeMap<String, RouterStats>) {
    let (part, kind) = match family.name() {
        names::ROUTE_REQUESTS => (Part::Service, Kind::Requests),
        names::ROUTE_RESPONSES => (Part::Service, Kind::Responses),
        names::ROUTE_LATENCY => (Part::Service, Kind::Latency),
        names::CLIENT_REQUESTS => (Part::Client, Kind::Requests),
        names::CLIENT_RESPONSES => (Part::Client, Kind::Responses),
        names::CLIENT_LATENCY => (Part::Client, Kind::Latency),
        _ => return fold_router(family, routers),
    };
    let key = match part {
        Part::Service => "service",
        Part::Client => "client",
    };
    for m in family.get_metric() {
        let Some(r) = routers.get_mut(label(m, "router")) else {
            continue;
        };
        let map = match part {
            Part::Service => &mut r.services,
            Part::Client => &mut r.clients,
        };
        let series = map.entry(label(m, key).to_string()).or_default();
        match kind {
            Kind::Requests => series.requests = m.get_counter().get_value() as u64,
            Kind::Responses => {
                let n = m.get_counter().get_value() as u64;
                *series.status.entry(label(m, "status_code").to_string()).or_default() += n;
                if label(m, "classification") == "failure" {
                    series.failure += n;
                } else {
                    series.success += n;
                }
            }
            Kind::Latency => {
                let h = m.get_histogram();
                series.latency_buckets = h.get_bucket().iter().map(|b| b.cumulative_count()).collect();
                series.latency_count = h.get_sample_count();
                series.latency_sum = h.get_sample_sum();
            }
        }
    }
}

/// Router-level families: requests received, open connections, the proxy's own errors.
fn fold_router(family: &MetricFamily, routers: &mut BTreeMap<String, RouterStats>) {
    for m in family.get_metric() {
        let Some(r) = routers.get_mut(label(m, "router")) else {
            continue;
        };
        match family.name() {
            names::SERVER_REQUESTS => r.requests = m.get_counter().get_value() as u64,
            names::SERVER_CONNECTIONS_OPEN => r.connections_open = m.get_gauge().get_value() as i64,
            names::PROXY_ERRORS => {
                r.proxy_errors.insert(label(m, "reason").to_string(), m.get_counter().get_value() as u64);
            }
            _ => {}
        }
    }
}

fn series_json(name: &str, s: &Series) -> Value {
    json!({
        "name": name,
        "requests": s.requests,
        "success": s.success,
        "failure": s.failure,
        "status": s.status,
        "latencyBuckets": s.latency_buckets,
        "latencyCount": s.latency_count,
        "latencySum": s.latency_sum,
    })
}

/// A client's series plus its endpoints; clients bound but not yet used still appear, with zero counts.
fn clients_json(router: &Router, stats: &mut RouterStats) -> Vec<Value> {
    let mut out = Vec::new();
    for client in router.balancers() {
        let series = stats.clients.remove(&*client.id_text).unwrap_or_default();
        let mut v = series_json(&client.id_text, &series);
        // The identity this client requires of its endpoints (mTLS), if any.
        v["peerIdentity"] = json!(client.tls_name());
        let now = Instant::now();
        v["endpoints"] = client
            .endpoints()
            .iter()
            .map(|(ep, weight)| {
                // "dead": failure accrual took it out of rotation until its backoff ends.
                let state = if ep.health.available(now) { "active" } else { "dead" };
                json!({
                    "addr": ep.addr.to_string(),
                    "weight": weight,
                    "inFlight": ep.load(),
                    "state": state,
                    "latencyEwmaMs": ep.health.ewma_nanos() / 1e6,
                })
            })
            .collect();
        out.push(v);
    }
    // Series whose client is no longer bound (or folded into overflow) still carry history worth showing.
    out.extend(stats.clients.iter().map(|(name, s)| {
        let mut v = series_json(name, s);
        v["endpoints"] = json!([]);
        v
    }));
    out
}

fn router_json(router: &Router, mut stats: RouterStats) -> Value {
    let table = router.table();
    let services: Vec<_> = stats.services.iter().map(|(n, s)| series_json(n, s)).collect();
    let clients = clients_json(router, &mut stats);
    json!({
        "label": router.label(),
        "protocol": format!("{:?}", router.protocol()).to_lowercase(),
        "requests": stats.requests,
        "connectionsOpen": stats.connections_open,
        "proxyErrors": stats.proxy_errors,
        "dtab": table.dtab.pretty(),
        "dtabGeneration": table.generation,
        "etag": table.etag,
        "services": services,
        "clients": clients,
    })
}

/// The dashboard's snapshot of everything, as JSON.
pub fn snapshot(s: &AdminState) -> Value {
    let mut routers: BTreeMap<String, RouterStats> =
        s.routers.iter().map(|r| (r.label().to_string(), RouterStats::default())).collect();
    let families = s.metrics.gather();
    for family in &families {
        fold(family, &mut routers);
    }
    let routers: Vec<_> =
        s.routers.iter().map(|r| router_json(r, routers.remove(r.label()).unwrap_or_default())).collect();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    json!({
        "timeMs": now_ms,
        "identities": identities(&families),
        "authorization": authorization(s),
        "version": env!("CARGO_PKG_VERSION"),
        "namerGeneration": s.namers.generation(),
        "latencyBounds": LATENCY_BUCKETS,
        "routers": routers,
    })
}

/// The certificates this sidecar presents: where, which identity, when each expires (from the TLS families).
fn identities(families: &[MetricFamily]) -> Vec<Value> {
    let Some(expiry) = families.iter().find(|f| f.name() == names::TLS_CERT_EXPIRY) else { return Vec::new() };
    expiry
        .get_metric()
        .iter()
        .map(|m| {
            json!({
                "use": label(m, "use"),
                "identity": label(m, "identity"),
                "expiresAt": m.get_gauge().get_value() as i64,
            })
        })
        .collect()
}

/// Per router server: which caller identities it admits (from the effective config).
fn authorization(s: &AdminState) -> Vec<Value> {
    let mut out = Vec::new();
    for router in s.config_json["routers"].as_array().into_iter().flatten() {
        for server in router["servers"].as_array().into_iter().flatten() {
            out.push(json!({
                "router": router["label"],
                "port": server["port"],
                "tls": !server["tls"].is_null(),
                "mutual": server["tls"]["requireClientAuth"].as_bool().unwrap_or(false),
                "allow": server["authorization"]["allow"],
            }));
        }
    }
    out
}

/// `GET /admin/stats.json`.
pub async fn stats(State(s): State<Arc<AdminState>>) -> Json<Value> {
    Json(snapshot(&s))
}
