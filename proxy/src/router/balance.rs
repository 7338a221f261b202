//! The balance stage: a [`Balancer`] is one bound name (a "client" in linkerd's words and in the metrics) (e.g. `/#/io.l5d.fs/forex-rate`) and picks an endpoint
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

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::{IntGauge, IntGaugeVec};
use switchyard_dtab::Path;
use tokio::time::Instant;

use super::endpoint::{Endpoint, EndpointPool};
use crate::config::{ClientPolicy, LoadBalancer};
use crate::metrics::{names, Registry, RequestFamilies, RequestStats};
use crate::namer::EndpointWatch;
use crate::tls::TlsTarget;

/// While every endpoint is dead, at most one probe request per interval.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The per-client families: traffic, and the number of endpoints known.
#[derive(Clone)]
pub struct BalancerFamilies {
    traffic: RequestFamilies,
    endpoints: IntGaugeVec,
}

impl BalancerFamilies {
    /// Registers the families.
    pub fn register(r: &Registry) -> Self {
        Self {
            traffic: RequestFamilies::clients(r),
            endpoints: r.int_gauge_vec(
                names::CLIENT_ENDPOINTS,
                "Endpoints known for a bound client.",
                &["router", "client"],
            ),
        }
    }
}

struct Snapshot {
    version: u64,
    endpoints: Vec<(Arc<Endpoint>, f64)>,
}

/// Why no endpoint could be picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The bound name has no endpoints at all.
    Empty,
    /// Every endpoint is marked dead by failure accrual.
    AllDead,
}

/// A bound name with its balancer.
pub struct Balancer {
    /// The bound name's id, e.g. `/#/io.l5d.fs/forex-rate` or `/$/inet/127.1/8080`.
    pub id: Path,
    /// `id` as text, for headers.
    pub id_text: Box<str>,
    /// `id` as an `l5d-dst-client` value, made once rather than per request.
    pub id_header: Option<http::HeaderValue>,
    /// Request/response metrics for this client.
    pub metrics: RequestStats,
    /// The effective client policy (global `client:` plus matching `configs:` entries).
    pub policy: ClientPolicy,
    watch: Arc<EndpointWatch>,
    pool: Arc<EndpointPool>,
    /// TLS to the endpoints, when the client policy asks for it.
    tls: Option<Arc<TlsTarget>>,
    snapshot: ArcSwap<Snapshot>,
    endpoints_gauge: IntGauge,
    next: AtomicUsize,
    /// While every endpoint is dead: when the next probe may go out (`None` while some endpoint is live).
    next_probe: Mutex<Option<Instant>>,
}

impl fmt::Debug for Balancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Balancer({})", self.id)
    }
}

impl Balancer {
    /// A balancer for bound name `id` of `router` over `watch`, its endpoints interned in `pool`.
    pub fn new(
        router: &str,
        id: Path,
        watch: Arc<EndpointWatch>,
        pool: Arc<EndpointPool>,
        (policy, tls): (ClientPolicy, Option<Arc<TlsTarget>>),
        families: &BalancerFamilies,
    ) -> Self {
        let id_text: Box<str> = id.to_string().into();
        let client = Self {
            metrics: families.traffic.stats(router, &id_text),
            endpoints_gauge: families.endpoints.with_label_values(&[router, &id_text]),
            id_header: http::HeaderValue::from_str(&id_text).ok(),
            id_text,
            id,
            policy,
            watch,
            pool,
            tls,
            snapshot: ArcSwap::from_pointee(Snapshot { version: 0, endpoints: Vec::new() }),
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
        let endpoints: Vec<_> = set
            .endpoints
            .iter()
            .filter(|e| e.weight > 0.0)
            .map(|e| (self.pool.get(e.addr, self.tls.as_ref(), self.policy.pool), e.weight))
            .collect();
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

    /// The name this client's endpoints must prove over TLS (`None` in plaintext).
    pub fn tls_name(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.name.as_str())
    }

    /// The endpoints currently known, with their weights.
    pub fn endpoints(&self) -> Vec<(Arc<Endpoint>, f64)> {
        self.current().endpoints.clone()
    }

    /// Whether some endpoint other than `ep` is in rotation (failure accrual never ejects the last live one).
    pub fn others_live(&self, ep: &Arc<Endpoint>) -> bool {
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
    pub fn pick(&self, avoid: Option<&Arc<Endpoint>>) -> Result<Arc<Endpoint>, Unavailable> {
        let snap = self.current();
        let eps = &snap.endpoints;
        if eps.is_empty() {
            return Err(Unavailable::Empty);
        }
        let now = Instant::now();
        let live = |i: usize| eps[i].0.health.available(now);
        let n = eps.len();
        let avoided = |i: usize| avoid.is_some_and(|a| Arc::ptr_eq(a, &eps[i].0));
        let others = (0..n).any(|i| live(i) && !avoided(i));
        let usable = |i: usize| live(i) && !(others && avoided(i));
        let chosen = match self.policy.load_balancer {
            LoadBalancer::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|k| (start + k) % n).find(|&i| usable(i))
            }
            LoadBalancer::P2c => self.p2c(n, &usable, |i| (eps[i].0.load() as f64 + 1.0) / eps[i].1),
            LoadBalancer::Ewma { .. } => self.p2c(n, &usable, |i| eps[i].0.health.cost(eps[i].0.load()) / eps[i].1),
        };
        match chosen {
            Some(i) => {
                self.clear_probe();
                Ok(eps[i].0.clone())
            }
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
        let cheaper = |x: usize, y: usize| if cost(x) <= cost(y) { x } else { y };
        match (usable(a), usable(b)) {
            (true, true) => Some(cheaper(a, b)),
            (true, false) | (false, true) => {
                // The pair held an endpoint that cannot take this request (the one a retry or hedge avoids, a dead
                // or busy one): still compare the other with a second usable endpoint, if there is one — else a
                // retry or hedge would go to a slow endpoint as often as to a fast one.
                let keep = if usable(a) { a } else { b };
                let start = fastrand::usize(..n);
                let other = (0..n).map(|k| (start + k) % n).find(|&i| i != keep && usable(i));
                Some(other.map_or(keep, |o| cheaper(keep, o)))
            }
            (false, false) => {
                let start = fastrand::usize(..n);
                (0..n).map(|k| (start + k) % n).filter(|&i| usable(i)).min_by(|&x, &y| cost(x).total_cmp(&cost(y)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Backoff, FailureAccrual};
    use crate::namer::{Endpoint as Address, EndpointSet};
    use crate::router::endpoint::{EndpointFamilies, EndpointSettings};
    use std::collections::HashMap;

    /// A balancer over endpoints 127.0.0.1:<port> with `weights`, and the watch that feeds it.
    fn balancer(lb: LoadBalancer, accrual: FailureAccrual, weights: &[(u16, f64)]) -> (Balancer, Arc<EndpointWatch>) {
        let registry = Registry::empty();
        let settings = EndpointSettings {
            h2: false,
            h2_upgrade: true,
            connect_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_secs(10),
        };
        let pool = EndpointPool::new("egress".into(), settings, EndpointFamilies::register(&registry));
        let watch = EndpointWatch::new(set(weights));
        let policy = ClientPolicy {
            request_attempt_timeout: None,
            load_balancer: lb,
            failure_accrual: accrual,
            pool: crate::config::PoolLimits::default(),
            tls: None,
        };
        let id = Path::read("/#/io.l5d.fs/forex-rate").unwrap();
        let families = BalancerFamilies::register(&registry);
        (Balancer::new("egress", id, watch.clone(), pool, (policy, None), &families), watch)
    }

    fn set(weights: &[(u16, f64)]) -> EndpointSet {
        let endpoints =
            weights.iter().map(|&(port, weight)| Address { addr: ([127, 0, 0, 1], port).into(), weight }).collect();
        EndpointSet { endpoints }
    }

    fn port(e: &Endpoint) -> u16 {
        e.addr.port()
    }

    /// How often each port is picked in `n` picks.
    fn spread(b: &Balancer, n: usize) -> HashMap<u16, usize> {
        let mut seen = HashMap::new();
        for _ in 0..n {
            *seen.entry(port(&b.pick(None).unwrap())).or_default() += 1;
        }
        seen
    }

    const EJECT_AFTER_ONE: FailureAccrual =
        FailureAccrual::ConsecutiveFailures { failures: 1, backoff: Backoff::Constant { ms: 5_000 } };

    #[tokio::test(start_paused = true)]
    async fn round_robin_takes_each_endpoint_in_turn_and_skips_weight_zero() {
        let (b, _) = balancer(LoadBalancer::RoundRobin, FailureAccrual::None, &[(1, 1.0), (2, 1.0), (3, 0.0)]);
        let picks: Vec<u16> = (0..6).map(|_| port(&b.pick(None).unwrap())).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 1).count(), 3, "{picks:?}");
        assert_eq!(picks.iter().filter(|&&p| p == 2).count(), 3, "{picks:?}");
        assert!(picks.windows(2).all(|w| w[0] != w[1]), "alternates: {picks:?}");
        assert_eq!(b.endpoint_count(), 2, "a draining (weight 0) endpoint is not a candidate");
    }

    #[tokio::test(start_paused = true)]
    async fn p2c_sends_to_the_least_loaded() {
        let (b, _) = balancer(LoadBalancer::P2c, FailureAccrual::None, &[(1, 1.0), (2, 1.0)]);
        let busy = b.endpoints().into_iter().find(|(e, _)| port(e) == 1).unwrap().0;
        let _held = [busy.hold(), busy.hold()];
        assert_eq!(spread(&b, 50).get(&2), Some(&50), "with two endpoints p2c always compares both");
    }

    #[tokio::test(start_paused = true)]
    async fn ewma_prefers_the_faster_endpoint_and_weights_divide_cost() {
        let (b, _) = balancer(LoadBalancer::Ewma { decay_ms: 10_000 }, FailureAccrual::None, &[(1, 1.0), (2, 1.0)]);
        for (e, _) in b.endpoints() {
            let rtt = if port(&e) == 1 { 50 } else { 2 };
            e.health.observe_latency(Duration::from_millis(rtt), b.ewma_decay());
        }
        assert_eq!(spread(&b, 50).get(&2), Some(&50));

        // Weight 100 makes the slow endpoint the cheaper one (50 ms / 100 < 2 ms / 1).
        let (b, _) = balancer(LoadBalancer::Ewma { decay_ms: 10_000 }, FailureAccrual::None, &[(1, 100.0), (2, 1.0)]);
        for (e, _) in b.endpoints() {
            let rtt = if port(&e) == 1 { 50 } else { 2 };
            e.health.observe_latency(Duration::from_millis(rtt), b.ewma_decay());
        }
        assert_eq!(spread(&b, 50).get(&1), Some(&50));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_avoids_the_endpoint_that_failed_unless_it_is_the_only_one() {
        let (b, _) = balancer(LoadBalancer::P2c, FailureAccrual::None, &[(1, 1.0), (2, 1.0)]);
        let first = b.pick(None).unwrap();
        for _ in 0..20 {
            assert_ne!(port(&b.pick(Some(&first)).unwrap()), port(&first));
        }
        let (b, _) = balancer(LoadBalancer::P2c, FailureAccrual::None, &[(1, 1.0)]);
        let only = b.pick(None).unwrap();
        assert_eq!(port(&b.pick(Some(&only)).unwrap()), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_avoided_endpoint_never_makes_the_pick_fall_to_a_slow_one() {
        let ewma = LoadBalancer::Ewma { decay_ms: 10_000 };
        let (b, _) = balancer(ewma, FailureAccrual::None, &[(1, 1.0), (2, 1.0), (3, 1.0)]);
        for (e, _) in b.endpoints() {
            let rtt = if port(&e) == 2 { 200 } else { 2 };
            e.health.observe_latency(Duration::from_millis(rtt), b.ewma_decay());
        }
        let avoided = b.endpoints().into_iter().find(|(e, _)| port(e) == 1).unwrap().0;
        for _ in 0..100 {
            assert_eq!(port(&b.pick(Some(&avoided)).unwrap()), 3, "a retry or hedge goes to the fast endpoint");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn dead_endpoints_are_skipped_and_come_back_on_probation() {
        let (b, _) = balancer(LoadBalancer::RoundRobin, EJECT_AFTER_ONE, &[(1, 1.0), (2, 1.0)]);
        let bad = b.endpoints().into_iter().find(|(e, _)| port(e) == 1).unwrap().0;
        bad.health.record(false, &EJECT_AFTER_ONE, b.others_live(&bad), Instant::now());
        assert_eq!(spread(&b, 10).get(&2), Some(&10), "the ejected endpoint takes no traffic");
        tokio::time::advance(Duration::from_millis(5_001)).await;
        assert_eq!(spread(&b, 10).get(&1), Some(&5), "back in rotation once its backoff ends");
    }

    #[tokio::test(start_paused = true)]
    async fn all_dead_fails_fast_then_lets_one_probe_through_per_interval() {
        let (b, _) = balancer(LoadBalancer::P2c, EJECT_AFTER_ONE, &[(1, 1.0), (2, 1.0)]);
        let eps = b.endpoints();
        // The last live endpoint is never ejected, so eject the first while the other is live, then the second
        // by hand as a second client would see it (both marked dead).
        eps[0].0.health.record(false, &EJECT_AFTER_ONE, true, Instant::now());
        tokio::time::advance(Duration::from_millis(10)).await;
        eps[1].0.health.record(false, &EJECT_AFTER_ONE, true, Instant::now());
        assert_eq!(b.pick(None).unwrap_err(), Unavailable::AllDead, "the first look only starts the probe clock");
        assert_eq!(b.pick(None).unwrap_err(), Unavailable::AllDead);
        tokio::time::advance(PROBE_INTERVAL).await;
        let probe = b.pick(None).expect("one probe per interval");
        assert_eq!(port(&probe), port(&eps[0].0), "the probe goes to the endpoint whose backoff ends first");
        assert_eq!(b.pick(None).unwrap_err(), Unavailable::AllDead, "and only one");
    }

    #[tokio::test(start_paused = true)]
    async fn busy_empty_and_changing_endpoint_sets() {
        let (b, watch) = balancer(LoadBalancer::P2c, FailureAccrual::None, &[(1, 1.0)]);
        let ep = b.pick(None).unwrap();
        let held = ep.hold();
        let again = b.pick(None).expect("a busy endpoint is still picked: its pool queues the request");
        assert!(Arc::ptr_eq(&again, &ep));
        drop(held);

        watch.store(set(&[(1, 1.0), (4, 1.0)]));
        assert_eq!(b.endpoint_count(), 2, "a new endpoint set is picked up on the next request");
        let kept = b.endpoints().into_iter().find(|(e, _)| port(e) == 1).unwrap().0;
        assert!(Arc::ptr_eq(&kept, &ep), "an endpoint that stays keeps its state (interned in the pool)");
        watch.store(EndpointSet::default());
        assert_eq!(b.pick(None).unwrap_err(), Unavailable::Empty);
    }
}
