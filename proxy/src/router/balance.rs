//! The balance stage: a [`Client`] is one bound name (e.g. `/#/io.l5d.fs/forex-rate`) and picks an endpoint
//! for each request from its live endpoint set.
//!
//! The endpoint list is rebuilt only when the namer's [`EndpointWatch`] version changes; endpoints are interned in
//! the router's [`EndpointPool`], so an instance that stays in the set keeps its connections and load count.
//! Picking is power-of-two-choices over in-flight requests divided by weight ("least loaded"): cheap, lock-free,
//! and it steers away from slow endpoints without global coordination.

use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus::IntGauge;
use switchyard_dtab::Path;

use super::endpoint::{EndpointClient, EndpointPool};
use crate::metrics::RouteMetrics;
use crate::namer::EndpointWatch;

struct Snapshot {
    version: u64,
    endpoints: Vec<(Arc<EndpointClient>, f64)>,
}

/// A bound name with its balancer.
pub struct Client {
    /// The bound name's id, e.g. `/#/io.l5d.fs/forex-rate` or `/$/inet/127.1/8080`.
    pub id: Path,
    /// `id` as text, for headers.
    pub id_text: Box<str>,
    /// Request/response metrics for this client.
    pub metrics: RouteMetrics,
    watch: Arc<EndpointWatch>,
    pool: Arc<EndpointPool>,
    snapshot: ArcSwap<Snapshot>,
    endpoints_gauge: IntGauge,
}

impl Client {
    /// A client for `id` over `watch`.
    pub fn new(id: Path, watch: Arc<EndpointWatch>, pool: Arc<EndpointPool>, metrics: RouteMetrics, endpoints_gauge: IntGauge) -> Self {
        let client = Self {
            id_text: id.to_string().into(),
            id,
            metrics,
            watch,
            pool,
            snapshot: ArcSwap::from_pointee(Snapshot { version: 0, endpoints: Vec::new() }),
            endpoints_gauge,
        };
        client.refresh();
        client
    }

    fn refresh(&self) -> Arc<Snapshot> {
        let version = self.watch.version();
        let set = self.watch.load();
        // Weight 0 means "registered but take no traffic" (draining); such endpoints are not candidates.
        let endpoints: Vec<_> =
            set.endpoints.iter().filter(|e| e.weight > 0.0).map(|e| (self.pool.get(e.addr), e.weight)).collect();
        self.endpoints_gauge.set(endpoints.len() as i64);
        let snap = Arc::new(Snapshot { version, endpoints });
        self.snapshot.store(snap.clone());
        snap
    }

    /// Number of endpoints currently known.
    pub fn endpoint_count(&self) -> usize {
        self.current().endpoints.len()
    }

    fn current(&self) -> Arc<Snapshot> {
        let snap = self.snapshot.load_full();
        if snap.version == self.watch.version() {
            snap
        } else {
            self.refresh()
        }
    }

    /// Picks an endpoint for one request; `None` when the set is empty (or every weight is zero).
    pub fn pick(&self) -> Option<Arc<EndpointClient>> {
        let snap = self.current();
        let eps = &snap.endpoints;
        match eps.len() {
            0 => None,
            1 => Some(eps[0].0.clone()),
            n => {
                let a = fastrand::usize(..n);
                let mut b = fastrand::usize(..n - 1);
                if b >= a {
                    b += 1;
                }
                let cost = |i: usize| (eps[i].0.load() as f64 + 1.0) / eps[i].1;
                let pick = if cost(a) <= cost(b) { a } else { b };
                Some(eps[pick].0.clone())
            }
        }
    }
}
