//! The balance stage: a [`Client`] is one bound name (e.g. `/#/io.l5d.fs/forex-rate`) and picks an endpoint
//! for each request from its live endpoint set.
//!
//! The endpoint list is rebuilt only when the namer's [`EndpointWatch`] version changes; endpoints are interned in
//! the router's [`EndpointPool`], so an instance that stays in the set keeps its connections, load count, latency
//! estimate and failure-accrual state. Endpoints that failure accrual marked dead, or that are at their
//! concurrency limit, are skipped. Kinds (`loadBalancer.kind`):
//! - `ewma` (default): power of two choices, cost = peak-EWMA latency × (in-flight + 1) ÷ weight;
//! - `p2c`: power of two choices, cost = (in-flight + 1) ÷ weight ("least loaded");
//! - `roundRobin`: each available endpoint in turn.
//!
//! When failure accrual has marked every endpoint dead, requests fail fast (503) rather than hammer instances
//! that are down — but one request per [`PROBE_INTERVAL`] is let through to the endpoint whose backoff ends
//! first, so that recovery is noticed within a second instead of after the longest backoff.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use prometheus::IntGauge;
use switchyard_dtab::Path;

use super::endpoint::{EndpointClient, EndpointPool};
use crate::config::{ClientPolicy, LoadBalancer};
use crate::metrics::RouteMetrics;
use crate::namer::EndpointWatch;

/// While every endpoint is dead, at most one probe request per interval.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

struct Snapshot {
    version: u64,
    endpoints: Vec<(Arc<EndpointClient>, f64)>,
}

/// Why no endpoint could be picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The bound name has no endpoints at all.
    Empty,
    /// Every endpoint is marked dead by failure accrual.
    AllDead,
    /// Every live endpoint is at its concurrency limit.
    AllBusy,
}

/// A bound name with its balancer.
pub struct Client {
    /// The bound name's id, e.g. `/#/io.l5d.fs/forex-rate` or `/$/inet/127.1/8080`.
    pub id: Path,
    /// `id` as text, for headers.
    pub id_text: Box<str>,
    /// Request/response metrics for this client.
    pub metrics: RouteMetrics,
    /// The effective client policy (global `client:` plus matching `configs:` entries).
    pub policy: ClientPolicy,
    watch: Arc<EndpointWatch>,
    pool: Arc<EndpointPool>,
    snapshot: ArcSwap<Snapshot>,
    endpoints_gauge: IntGauge,
    next: AtomicUsize,
    /// While every endpoint is dead: when the next probe may go out (`None` while some endpoint is live).
    next_probe: Mutex<Option<Instant>>,
}

impl Client {
    /// A client for `id` over `watch`.
    pub fn new(
        id: Path,
        watch: Arc<EndpointWatch>,
        pool: Arc<EndpointPool>,
        policy: ClientPolicy,
        metrics: RouteMetrics,
        endpoints_gauge: IntGauge,
    ) -> Self {
        let client = Self {
            id_text: id.to_string().into(),
            id,
            metrics,
            policy,
            watch,
            pool,
            snapshot: ArcSwap::from_pointee(Snapshot { version: 0, endpoints: Vec::new() }),
            endpoints_gauge,
            next: AtomicUsize::new(0),
            next_probe: Mutex::new(None),
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

    fn current(&self) -> Arc<Snapshot> {
        let snap = self.snapshot.load_full();
        if snap.version == self.watch.version() {
            snap
        } else {
            self.refresh()
        }
    }

    /// The endpoints currently known, with their weights.
    pub fn endpoints(&self) -> Vec<(Arc<EndpointClient>, f64)> {
        self.current().endpoints.clone()
    }

    /// Whether some endpoint other than `ep` is in rotation (failure accrual never ejects the last live one).
    pub fn others_live(&self, ep: &Arc<EndpointClient>) -> bool {
        let now = Instant::now();
        self.current().endpoints.iter().any(|(e, _)| !Arc::ptr_eq(e, ep) && e.health.available(now))
    }

    /// Number of endpoints currently known.
    pub fn endpoint_count(&self) -> usize {
        self.current().endpoints.len()
    }

    /// The latency time constant of the EWMA balancer (used when recording latencies).
    pub fn ewma_decay(&self) -> Duration {
        match self.policy.load_balancer {
            LoadBalancer::Ewma { decay_ms } => Duration::from_millis(decay_ms),
            _ => Duration::from_secs(10),
        }
    }

    /// Picks an endpoint for one request; `avoid` (the endpoint a retry's previous attempt failed on) is only
    /// chosen when nothing else is usable.
    pub fn pick(&self, avoid: Option<&Arc<EndpointClient>>) -> Result<Arc<EndpointClient>, Unavailable> {
        let snap = self.current();
        let eps = &snap.endpoints;
        if eps.is_empty() {
            return Err(Unavailable::Empty);
        }
        let now = Instant::now();
        let max = self.policy.max_concurrent_per_endpoint;
        let live = |i: usize| eps[i].0.health.available(now);
        let open = |i: usize| live(i) && max.is_none_or(|m| eps[i].0.load() < m);
        let n = eps.len();
        let avoided = |i: usize| avoid.is_some_and(|a| Arc::ptr_eq(a, &eps[i].0));
        let others = (0..n).any(|i| open(i) && !avoided(i));
        let usable = |i: usize| open(i) && !(others && avoided(i));
        let chosen = match self.policy.load_balancer {
            LoadBalancer::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|k| (start + k) % n).find(|&i| usable(i))
            }
            LoadBalancer::P2c => self.p2c(n, &usable, |i| (eps[i].0.load() as f64 + 1.0) / eps[i].1),
            LoadBalancer::Ewma { .. } => self.p2c(n, &usable, |i| eps[i].0.health.cost(eps[i].0.load()) / eps[i].1),
        };
        let any_live = chosen.is_some() || (0..n).any(live);
        match chosen {
            Some(i) => {
                self.clear_probe();
                Ok(eps[i].0.clone())
            }
            None if any_live => Err(Unavailable::AllBusy),
            None => match self.probe(now) {
                true => {
                    let soonest = (0..n).min_by_key(|&i| eps[i].0.health.dead_until()).unwrap_or(0);
                    Ok(eps[soonest].0.clone())
                }
                false => Err(Unavailable::AllDead),
            },
        }
    }

    fn clear_probe(&self) {
        let mut next = self.next_probe.lock().unwrap_or_else(|e| e.into_inner());
        if next.is_some() {
            *next = None;
        }
    }

    /// Whether a probe may go out now; the first time everything is found dead only starts the clock.
    fn probe(&self, now: Instant) -> bool {
        let mut next = self.next_probe.lock().unwrap_or_else(|e| e.into_inner());
        match *next {
            Some(at) if now >= at => {
                *next = Some(now + PROBE_INTERVAL);
                true
            }
            Some(_) => false,
            None => {
                *next = Some(now + PROBE_INTERVAL);
                false
            }
        }
    }

    /// Power of two choices: the cheaper of two random usable endpoints; a scan when the random pair is not usable.
    fn p2c(&self, n: usize, usable: &impl Fn(usize) -> bool, cost: impl Fn(usize) -> f64) -> Option<usize> {
        if n == 1 {
            return usable(0).then_some(0);
        }
        let a = fastrand::usize(..n);
        let mut b = fastrand::usize(..n - 1);
        if b >= a {
            b += 1;
        }
        match (usable(a), usable(b)) {
            (true, true) => Some(if cost(a) <= cost(b) { a } else { b }),
            (true, false) => Some(a),
            (false, true) => Some(b),
            (false, false) => {
                let start = fastrand::usize(..n);
                (0..n).map(|k| (start + k) % n).filter(|&i| usable(i)).min_by(|&x, &y| cost(x).total_cmp(&cost(y)))
            }
        }
    }
}
