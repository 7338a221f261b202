//! The bind stage: a logical name, under a dtab, becomes a [`Binding`] — the delegation tree of concrete names the
//! namers know, each leaf resolved to its [`Balancer`], plus the service's policy, metrics and retry budget.
//!
//! The [`Binder`] outlives dtabs: it holds the router's balancers (one per concrete name, kept across dtab and
//! registry changes so their endpoints keep their connections and health) and the retry budgets. Bindings are
//! cached per routing table (see [`super::table`]). When a namer has no answer yet, [`Binder::resolve`] waits for
//! it, bounded by `bindingTimeoutMs` and the caller's deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderValue;
use prometheus::{IntCounter, IntCounterVec};
use switchyard_dtab::{BindError, Dtab, NameTree, Path};

use super::balance::{Balancer, BalancerFamilies};
use super::endpoint::EndpointPool;
use super::hedge::LatencyWindow;
use crate::config::{
    ClientConfig, ClientPolicy, ClientTlsConfig, Protocol, RetryBudget, RouterConfig, ServiceConfig, ServicePolicy,
};
use crate::metrics::{names, Registry, RequestFamilies, RequestStats};
use crate::namer::{BoundName, NamerSet};
use crate::tls::{Alpn, ClientTls, TlsMetrics, TlsTarget};

/// Names cached per table (and so distinct `service` label values per router). Past this, names are bound per
/// request and their metrics share the `service="overflow"` series, so hostile Host headers cannot grow memory.
/// Names that bind to nothing never take a label (they share `service="unbound"`) and fill at most half the
/// cache, so made-up names cannot crowd out real ones.
pub const MAX_CACHED_NAMES: usize = 1000;

/// A logical name's label and retry budget unused for this long may be dropped to make room for another name.
pub const LABEL_IDLE: Duration = Duration::from_secs(600);

/// The `service` label of every name that binds to nothing.
pub const UNBOUND_LABEL: &str = "unbound";

/// The bind stage's families: per logical service, its traffic, retries and spent budget.
#[derive(Clone)]
pub struct BindFamilies {
    routes: RequestFamilies,
    retries: IntCounterVec,
    budget_exhausted: IntCounterVec,
    hedges: IntCounterVec,
    hedge_wins: IntCounterVec,
    balancers: BalancerFamilies,
}

impl BindFamilies {
    /// Registers the families (the balancers' included).
    pub fn register(r: &Registry) -> Self {
        let rs = &["router", "service"];
        Self {
            routes: RequestFamilies::routes(r),
            retries: r.int_counter_vec(names::RETRIES, "Retries sent per logical service.", rs),
            budget_exhausted: r.int_counter_vec(
                names::RETRY_BUDGET_EXHAUSTED,
                "Retryable failures not retried because the retry budget was spent.",
                rs,
            ),
            hedges: r.int_counter_vec(names::HEDGES, "Hedged requests sent per logical service.", rs),
            hedge_wins: r.int_counter_vec(
                names::HEDGE_WINS,
                "Hedged requests whose hedge answered first, per logical service.",
                rs,
            ),
            balancers: BalancerFamilies::register(r),
        }
    }
}

/// Finagle's retry budget over a sliding window of one-second slots: over the last `ttlSecs`, retries may add
/// `percentCanRetry` of the requests, plus `minRetriesPerSec` so that low traffic can still retry. (Decision 0010
/// says why this is ours and not tower's `TpsBudget`.)
pub struct RetryBudgetState {
    config: RetryBudget,
    window: Mutex<Window>,
}

struct Window {
    start: tokio::time::Instant,
    /// (second, requests, retries) per slot; slot = second % len.
    slots: Vec<(u64, u64, u64)>,
}

impl RetryBudgetState {
    /// A budget with `config`'s window, reserve and ratio.
    pub fn new(config: RetryBudget) -> Self {
        let len = config.ttl_secs.clamp(1, 3600) as usize;
        let start = tokio::time::Instant::now();
        Self { config, window: Mutex::new(Window { start, slots: vec![(u64::MAX, 0, 0); len] }) }
    }

    fn with_slot<R>(&self, f: impl FnOnce(&mut Window, usize) -> R) -> R {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let sec = w.start.elapsed().as_secs();
        let i = (sec % w.slots.len() as u64) as usize;
        if w.slots[i].0 != sec {
            w.slots[i] = (sec, 0, 0);
        }
        f(&mut w, i)
    }

    /// Counts a request (each request deposits `percentCanRetry` of a retry).
    pub fn deposit(&self) {
        self.with_slot(|w, i| w.slots[i].1 += 1);
    }

    /// How long since the last request was counted (or since the budget was made).
    pub fn idle(&self) -> Duration {
        let w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let now = w.start.elapsed().as_secs();
        let last = w.slots.iter().filter(|s| s.0 != u64::MAX).map(|s| s.0).max().unwrap_or(0);
        Duration::from_secs(now.saturating_sub(last))
    }

    /// Takes one retry from the budget if there is one.
    pub fn try_withdraw(&self) -> bool {
        let c = self.config;
        self.with_slot(|w, i| {
            let now = w.slots[i].0;
            let live = w.slots.iter().filter(|s| s.0 != u64::MAX && now.saturating_sub(s.0) < w.slots.len() as u64);
            let (requests, retries) = live.fold((0u64, 0u64), |(r, t), s| (r + s.1, t + s.2));
            let window = w.slots.len() as f64;
            let allowance = f64::from(c.min_retries_per_sec) * window + c.percent_can_retry * requests as f64;
            if (retries as f64) + 1.0 <= allowance {
                w.slots[i].2 += 1;
                true
            } else {
                false
            }
        })
    }
}

/// One leaf of a bound tree: the balancer to send to and the bound name's residual.
pub struct Target {
    pub balancer: Arc<Balancer>,
    pub residual: Path,
    /// `Host` to send instead of the caller's (a namer's `setHost`).
    pub host: Option<Arc<str>>,
}

/// A logical name bound under one dtab.
pub struct Binding {
    pub tree: Result<NameTree<Arc<Target>>, BindError>,
    /// Metrics for the logical name (the `service` label).
    pub route: RequestStats,
    pub(super) namer_generation: u64,
    /// Some namer still had no answer when the binding timeout ran out: never cache this binding.
    pub(super) incomplete: bool,
    /// The effective service policy for this logical name (timeouts, classifier, retries).
    pub policy: ServicePolicy,
    /// The logical name's retry budget (shared by every binding of the name in this router).
    pub budget: Arc<RetryBudgetState>,
    /// The logical name's recent answer latencies (hedging's clock), shared like the budget.
    pub latency: Arc<LatencyWindow>,
    pub retries: IntCounter,
    pub budget_exhausted: IntCounter,
    pub hedges: IntCounter,
    pub hedge_wins: IntCounter,
    /// The logical name as an `l5d-dst-service` value, made once per binding rather than per request.
    pub dst_service: Option<HeaderValue>,
}

/// What a router keeps per logical name beyond one dtab: its retry budget and recent latencies.
#[derive(Clone)]
struct NameState {
    budget: Arc<RetryBudgetState>,
    latency: Arc<LatencyWindow>,
}

/// What a router's [`Binder`] is built from.
pub struct BinderSettings {
    /// How long a request waits for namers that have no answer yet (linkerd's `bindingTimeoutMs`).
    pub binding_timeout: Duration,
    pub client_config: ClientConfig,
    pub service_config: ServiceConfig,
    /// The client TLS configs the client policy can name, loaded once, keyed by their config without
    /// `commonName` (which varies per client).
    pub tls: HashMap<ClientTlsConfig, Arc<ClientTls>>,
}

impl BinderSettings {
    /// The settings of `config`'s router, loading every client TLS config its client policy can name (the
    /// global one and each `configs` entry's), keyed without `commonName`, which each client fills in.
    pub fn from_config(config: &RouterConfig, metrics: &TlsMetrics) -> Result<Self, String> {
        let alpn = match config.protocol {
            Protocol::H2 => Alpn::H2,
            _ if config.client.h2_upgrade => Alpn::Http1OrH2,
            _ => Alpn::Http1,
        };
        let all = config.client.tls.iter().chain(config.client.configs.iter().filter_map(|o| o.params.tls.as_ref()));
        let mut tls = HashMap::new();
        for t in all {
            let key = ClientTlsConfig { common_name: None, ..t.clone() };
            if let std::collections::hash_map::Entry::Vacant(slot) = tls.entry(key) {
                let usage = format!("client:{}", config.label);
                let loaded = ClientTls::start(usage, slot.key(), alpn, metrics.clone())
                    .map_err(|e| format!("router {}: client TLS: {e}", config.label))?;
                slot.insert(Arc::new(loaded));
            }
        }
        Ok(Self {
            binding_timeout: Duration::from_millis(config.binding_timeout_ms),
            client_config: config.client.clone(),
            service_config: config.service.clone(),
            tls,
        })
    }

    /// TLS for a client whose policy asks for it.
    fn tls_target(&self, policy: &ClientPolicy) -> Option<Arc<TlsTarget>> {
        let config = policy.tls.as_ref()?;
        let key = ClientTlsConfig { common_name: None, ..config.clone() };
        let Some(tls) = self.tls.get(&key) else {
            // Every config the policy can produce was loaded by the router; not finding one is a bug, and sending
            // in plaintext what was meant to be encrypted is never the answer.
            tracing::error!(?config, "client TLS config not loaded; this client's connections will fail");
            return Some(Arc::new(TlsTarget::unavailable()));
        };
        // Without validation the name is only sent as SNI.
        let name = config.common_name.as_deref().unwrap_or("localhost");
        Some(Arc::new(TlsTarget::new(tls.clone(), name)))
    }
}

/// Everything binding needs that outlives a dtab: namers, the router's balancers and endpoint pool, metrics.
pub struct Binder {
    router: Arc<str>,
    namers: Arc<NamerSet>,
    pool: Arc<EndpointPool>,
    families: BindFamilies,
    settings: BinderSettings,
    balancers: Mutex<HashMap<Path, Arc<Balancer>>>,
    budgets: Mutex<HashMap<String, NameState>>,
}

impl Binder {
    /// A binder for router `router`.
    pub fn new(
        router: Arc<str>,
        namers: Arc<NamerSet>,
        pool: Arc<EndpointPool>,
        families: BindFamilies,
        settings: BinderSettings,
    ) -> Self {
        Self {
            router,
            namers,
            pool,
            families,
            settings,
            balancers: Mutex::new(HashMap::new()),
            budgets: Mutex::new(HashMap::new()),
        }
    }

    /// The namers' generation: moves when a name appears or vanishes, invalidating cached bindings.
    pub fn namer_generation(&self) -> u64 {
        self.namers.generation()
    }

    /// The service label to use and its retry budget. Distinct labels are capped at [`MAX_CACHED_NAMES`] per
    /// router whether or not bindings are cached (a namer that never answers would otherwise let every new Host
    /// header mint a series); at the cap, names unused for [`LABEL_IDLE`] make room, and only past that do
    /// names share `overflow`.
    ///
    /// A name that binds to nothing (`bound` false) and never did shares [`UNBOUND_LABEL`]; one that did keeps its
    /// own label while it fails, so a service that vanished from the registry shows as failing, not as gone.
    fn label_and_budget(&self, proposed: &str, bound: bool, policy: &ServicePolicy) -> (String, NameState) {
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let proposed = if bound || budgets.contains_key(proposed) { proposed } else { UNBOUND_LABEL };
        if !budgets.contains_key(proposed) && budgets.len() >= MAX_CACHED_NAMES {
            budgets.retain(|label, n| label == UNBOUND_LABEL || n.budget.idle() < LABEL_IDLE);
        }
        let label =
            if budgets.contains_key(proposed) || budgets.len() < MAX_CACHED_NAMES { proposed } else { "overflow" };
        let state = budgets
            .entry(label.to_string())
            .or_insert_with(|| NameState {
                budget: Arc::new(RetryBudgetState::new(policy.retries.budget)),
                latency: Arc::default(),
            })
            .clone();
        (label.to_string(), state)
    }

    /// Binds `path` under `dtab` through the namers, resolving every bound leaf to its (interned) balancer. Waits
    /// for namers that are still fetching their first answer, up to the binding timeout, then binds with what is
    /// known. `caller_deadline` (the caller's `l5d-ctx-deadline`) shortens the wait when it comes first.
    pub async fn resolve(
        &self,
        dtab: &Dtab,
        path: &Path,
        service_label: &str,
        caller_deadline: Option<tokio::time::Instant>,
    ) -> Binding {
        let now = tokio::time::Instant::now();
        let mut deadline = now.checked_add(self.settings.binding_timeout).unwrap_or(now + Duration::from_secs(86_400));
        if let Some(caller) = caller_deadline {
            deadline = deadline.min(caller);
        }
        loop {
            let namer_generation = self.namers.generation();
            let (tree, pending) = self.namers.bind(dtab, path);
            let incomplete = !pending.is_empty();
            if !incomplete || tokio::time::Instant::now() >= deadline {
                let tree = tree.map(|t| t.map(&mut |b: &BoundName| self.target(b)));
                let policy = self.settings.service_config.resolve(path);
                let (label, name) = self.label_and_budget(service_label, binds_something(&tree), &policy);
                let labels = [&*self.router, label.as_str()];
                return Binding {
                    tree,
                    route: self.families.routes.stats(&self.router, &label),
                    namer_generation,
                    incomplete,
                    budget: name.budget,
                    latency: name.latency,
                    policy,
                    retries: self.families.retries.with_label_values(&labels),
                    budget_exhausted: self.families.budget_exhausted.with_label_values(&labels),
                    hedges: self.families.hedges.with_label_values(&labels),
                    hedge_wins: self.families.hedge_wins.with_label_values(&labels),
                    dst_service: HeaderValue::from_str(&path.to_string()).ok(),
                };
            }
            for ready in pending {
                if tokio::time::timeout_at(deadline, ready).await.is_err() {
                    break;
                }
            }
        }
    }

    fn target(&self, bound: &BoundName) -> Arc<Target> {
        let mut balancers = self.balancers.lock().unwrap_or_else(|e| e.into_inner());
        if !balancers.contains_key(&bound.id) && balancers.len() >= 64 && balancers.len().is_power_of_two() {
            // Forget the clients no binding holds any more (names bound per request, through a per-request dtab
            // or past the cache): their endpoints, connections and namer watches can then go too.
            balancers.retain(|_, b| Arc::strong_count(b) > 1);
        }
        let balancer = balancers
            .entry(bound.id.clone())
            .or_insert_with(|| {
                let policy = self.settings.client_config.resolve(&bound.id);
                let tls = self.settings.tls_target(&policy);
                Arc::new(Balancer::new(
                    &self.router,
                    bound.id.clone(),
                    bound.endpoints.clone(),
                    self.pool.clone(),
                    (policy, tls),
                    &self.families.balancers,
                ))
            })
            .clone();
        Arc::new(Target { balancer, residual: bound.residual.clone(), host: bound.host.clone() })
    }

    /// The balancers bound so far (one per concrete name), for the admin API.
    pub fn balancers(&self) -> Vec<Arc<Balancer>> {
        let mut v: Vec<_> = self.balancers.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

/// Whether a bound tree leads anywhere (has a leaf), rather than only to Neg, Fail, an empty set or an error.
pub fn binds_something<T, E>(tree: &Result<NameTree<T>, E>) -> bool {
    fn walk<T>(t: &NameTree<T>) -> bool {
        match t {
            NameTree::Leaf(_) => true,
            NameTree::Alt(alts) => alts.iter().any(walk),
            NameTree::Union(branches) => branches.iter().any(|w| walk(&w.tree)),
            NameTree::Neg | NameTree::Fail | NameTree::Empty => false,
        }
    }
    tree.as_ref().is_ok_and(walk)
}

/// What a request's bound tree yields: a target, or why there is none.
pub enum Choice<'a> {
    Target(&'a Arc<Target>),
    Neg,
    Fail,
    Empty,
}

/// Walks a (simplified) bound tree for one request: unions are split by weight per request, alternations take
/// their first usable branch.
pub fn choose(tree: &NameTree<Arc<Target>>) -> Choice<'_> {
    match tree {
        NameTree::Leaf(t) => Choice::Target(t),
        NameTree::Neg => Choice::Neg,
        NameTree::Fail => Choice::Fail,
        NameTree::Empty => Choice::Empty,
        NameTree::Alt(alts) => {
            for alt in alts {
                match choose(alt) {
                    Choice::Neg => continue,
                    other => return other,
                }
            }
            Choice::Neg
        }
        NameTree::Union(branches) => {
            let total: f64 = branches.iter().map(|w| w.weight.max(0.0)).sum();
            if branches.is_empty() {
                return Choice::Neg;
            }
            if total <= 0.0 {
                return choose(&branches[fastrand::usize(..branches.len())].tree);
            }
            let mut x = fastrand::f64() * total;
            for w in branches {
                x -= w.weight.max(0.0);
                if x < 0.0 {
                    return choose(&w.tree);
                }
            }
            choose(&branches[branches.len() - 1].tree)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namer::{Namer, NamerAnswer};
    use crate::router::endpoint::{EndpointFamilies, EndpointSettings};
    use crate::router::table::RoutingTable;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::time::Instant;

    /// A namer that never answers (a Consul that is not there yet).
    struct Silent(Path);

    impl Namer for Silent {
        fn prefix(&self) -> &Path {
            &self.0
        }
        fn kind(&self) -> &'static str {
            "test.silent"
        }
        fn lookup(&self, _: &Path, _: &Path) -> NamerAnswer {
            NamerAnswer::Pending(Box::pin(std::future::pending()))
        }
        fn peek(&self, _: &Path, _: &Path) -> NameTree<BoundName> {
            NameTree::Neg
        }
        fn state(&self) -> serde_json::Value {
            serde_json::Value::Null
        }
    }

    fn binder(timeout: Duration) -> (Binder, Arc<AtomicU64>) {
        let registry = Registry::empty();
        let generation = Arc::new(AtomicU64::new(0));
        let silent: Arc<dyn Namer> = Arc::new(Silent(Path::read("/io.l5d.silent").unwrap()));
        let namers = Arc::new(NamerSet::new(vec![silent], generation.clone()));
        let settings = EndpointSettings {
            h2: false,
            h2_upgrade: true,
            connect_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_secs(10),
        };
        let pool = EndpointPool::new("egress".into(), settings, EndpointFamilies::register(&registry));
        let settings = BinderSettings {
            binding_timeout: timeout,
            client_config: ClientConfig::default(),
            service_config: ServiceConfig::default(),
            tls: HashMap::new(),
        };
        let b = Binder::new("egress".into(), namers, pool, BindFamilies::register(&registry), settings);
        (b, generation)
    }

    fn leaf(b: &Binding) -> &Arc<Target> {
        match b.tree.as_ref().unwrap() {
            NameTree::Leaf(t) => t,
            _ => panic!("expected one leaf"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bound_leaves_share_interned_balancers_and_budgets() {
        let (b, _) = binder(Duration::from_secs(1));
        let dtab = Dtab::parse("/svc=>/$/inet/127.0.0.1/4140").unwrap();
        let path = Path::read("/svc/forex-rate").unwrap();
        let one = b.resolve(&dtab, &path, "/svc/forex-rate", None).await;
        let two = b.resolve(&dtab, &path, "/svc/forex-rate", None).await;
        let target = leaf(&one);
        assert_eq!(&*target.balancer.id_text, "/$/inet/127.0.0.1/4140");
        assert_eq!(target.residual.to_string(), "/forex-rate");
        assert!(Arc::ptr_eq(&target.balancer, &leaf(&two).balancer), "one balancer per concrete name");
        assert!(Arc::ptr_eq(&one.budget, &two.budget), "one retry budget per logical name");
        assert!(!one.incomplete);
        assert_eq!(b.balancers().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_namer_is_waited_for_up_to_the_binding_timeout_or_the_callers_deadline() {
        let (b, _) = binder(Duration::from_millis(300));
        let dtab = Dtab::parse("/svc=>/#/io.l5d.silent").unwrap();
        let path = Path::read("/svc/forex-rate").unwrap();
        let start = Instant::now();
        let binding = b.resolve(&dtab, &path, "/svc/forex-rate", None).await;
        assert_eq!(start.elapsed(), Duration::from_millis(300));
        assert!(binding.incomplete, "never cached");
        assert!(matches!(binding.tree, Ok(NameTree::Neg)));

        let start = Instant::now();
        let caller = start + Duration::from_millis(40);
        b.resolve(&dtab, &path, "/svc/forex-rate", Some(caller)).await;
        assert_eq!(start.elapsed(), Duration::from_millis(40), "the caller's earlier deadline wins");
    }

    #[tokio::test(start_paused = true)]
    async fn service_labels_are_capped_and_idle_ones_make_room() {
        let (b, _) = binder(Duration::from_secs(1));
        let policy = ServiceConfig::default().resolve(&Path::read("/svc/x").unwrap());
        for i in 0..MAX_CACHED_NAMES {
            assert_eq!(b.label_and_budget(&format!("/svc/{i}"), true, &policy).0, format!("/svc/{i}"));
        }
        assert_eq!(b.label_and_budget("/svc/one-too-many", true, &policy).0, "overflow");
        assert_eq!(b.label_and_budget("/svc/7", true, &policy).0, "/svc/7", "names already seen keep their label");
        // Ten minutes later, with only /svc/7 still in use, a new name gets its own label again.
        tokio::time::advance(LABEL_IDLE - Duration::from_secs(5)).await;
        b.label_and_budget("/svc/7", true, &policy).1.budget.deposit();
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.label_and_budget("/svc/new", true, &policy).0, "/svc/new");
        assert_eq!(b.label_and_budget("/svc/7", true, &policy).0, "/svc/7", "a name in use is never dropped");
        assert_eq!(b.budgets.lock().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn clients_no_binding_holds_are_forgotten() {
        let (b, _) = binder(Duration::from_millis(10));
        let path = Path::read("/svc/x").unwrap();
        let kept = b.resolve(&Dtab::parse("/svc=>/$/inet/10.0.0.1/1").unwrap(), &path, "/svc/x", None).await;
        for port in 2..=1000 {
            let dtab = Dtab::parse(&format!("/svc=>/$/inet/10.0.0.1/{port}")).unwrap();
            drop(b.resolve(&dtab, &path, "/svc/x", None).await);
        }
        let n = b.balancers().len();
        assert!(n <= 512, "{n} clients kept for 999 one-off bindings");
        assert!(b.balancers().iter().any(|c| &*c.id_text == "/$/inet/10.0.0.1/1"), "a held one stays");
        drop(kept);
    }

    #[tokio::test(start_paused = true)]
    async fn names_that_bind_to_nothing_share_one_label() {
        let (b, _) = binder(Duration::from_millis(10));
        let dtab = Dtab::parse("/svc/real=>/$/inet/127.0.0.1/4140").unwrap();
        for i in 0..(2 * MAX_CACHED_NAMES) {
            let made_up = Path::read(&format!("/svc/made-up-{i}")).unwrap();
            b.resolve(&dtab, &made_up, &made_up.to_string(), None).await;
        }
        let real = Path::read("/svc/real").unwrap();
        let binding = b.resolve(&dtab, &real, "/svc/real", None).await;
        assert!(binds_something(&binding.tree));
        let labels: Vec<String> = b.budgets.lock().unwrap().keys().cloned().collect();
        assert_eq!(labels.len(), 2, "{labels:?}");
        assert!(labels.contains(&"/svc/real".to_string()) && labels.contains(&UNBOUND_LABEL.to_string()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_caches_bindings_until_the_namers_generation_moves() {
        let (b, generation) = binder(Duration::from_millis(10));
        let table = RoutingTable::new(Dtab::parse("/svc=>/$/inet/127.0.0.1/4140").unwrap(), 1);
        let path = Path::read("/svc/forex-rate").unwrap();
        let first = table.binding(&path, &b, None).await;
        assert!(Arc::ptr_eq(&first, &table.binding(&path, &b, None).await), "cached");
        generation.fetch_add(1, Ordering::AcqRel);
        let rebound = table.binding(&path, &b, None).await;
        assert!(!Arc::ptr_eq(&first, &rebound), "re-bound after a registry change");
        assert!(Arc::ptr_eq(&leaf(&first).balancer, &leaf(&rebound).balancer), "with the same balancer");

        let silent = RoutingTable::new(Dtab::parse("/svc=>/#/io.l5d.silent").unwrap(), 1);
        let a = silent.binding(&path, &b, None).await;
        let again = silent.binding(&path, &b, None).await;
        assert!(!Arc::ptr_eq(&a, &again), "an incomplete binding is never cached");
    }

    #[test]
    fn budget_allows_reserve_plus_ratio_and_no_more() {
        let b = RetryBudgetState::new(RetryBudget { ttl_secs: 10, min_retries_per_sec: 1, percent_can_retry: 0.2 });
        // Reserve: 1/s × 10 s = 10 retries with no traffic at all.
        let reserve = (0..100).filter(|_| b.try_withdraw()).count();
        assert_eq!(reserve, 10);
        for _ in 0..100 {
            b.deposit();
        }
        // 100 requests × 0.2 = 20 more.
        let more = (0..100).filter(|_| b.try_withdraw()).count();
        assert_eq!(more, 20);
    }

    #[test]
    fn concurrent_callers_never_overspend() {
        let b = Arc::new(RetryBudgetState::new(RetryBudget {
            ttl_secs: 10,
            min_retries_per_sec: 10,
            percent_can_retry: 0.2,
        }));
        let granted = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..500 {
                        b.deposit();
                        while b.try_withdraw() {
                            granted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        // 8 × 500 requests × 0.2 + a reserve of 10/s × 10 s, and not one more.
        assert_eq!(granted.into_inner(), 900);
    }

    #[test]
    fn zero_budget_never_retries() {
        let b = RetryBudgetState::new(RetryBudget { ttl_secs: 10, min_retries_per_sec: 0, percent_can_retry: 0.0 });
        for _ in 0..50 {
            b.deposit();
        }
        assert!(!b.try_withdraw());
    }
}
