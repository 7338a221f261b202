//! The bind stage: a router's routing table — an immutable dtab snapshot plus a cache of bound names.
//!
//! [`RoutingTable`] is swapped whole (arc-swap) when the dtab changes; a request holds the `Arc` it loaded, so it
//! finishes on the table it started with. Each table caches, per logical name, the bound tree with its clients
//! resolved; a cached binding is re-made when the namers' generation moves (a name appeared or vanished), which is
//! how `|` fallback follows the registry live. Readers never lock: the cache is a copy-on-write map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use switchyard_dtab::{BindError, Dtab, NameTree, Path};

use prometheus::IntCounter;

use super::balance::Client;
use super::endpoint::EndpointPool;
use super::retry::Budget;
use crate::config::{ClientConfig, ServiceConfig, ServicePolicy};
use crate::metrics::{Metrics, RouteMetrics};
use crate::namer::{BoundName, NamerSet};

/// Names cached per table (and so distinct `service` label values per router). Past this, names are bound per
/// request and their metrics share the `service="overflow"` series, so hostile Host headers cannot grow memory.
pub const MAX_CACHED_NAMES: usize = 1000;

/// One leaf of a bound tree: the client to send to and the bound name's residual.
pub struct Target {
    pub client: Arc<Client>,
    pub residual: Path,
    /// `Host` to send instead of the caller's (a namer's `setHost`).
    pub host: Option<Arc<str>>,
}

/// A logical name bound under one dtab.
pub struct Binding {
    pub tree: Result<NameTree<Arc<Target>>, BindError>,
    /// Metrics for the logical name (the `service` label).
    pub route: RouteMetrics,
    namer_generation: u64,
    /// Some namer still had no answer when the binding timeout ran out: never cache this binding.
    incomplete: bool,
    /// The effective service policy for this logical name (timeouts, classifier, retries).
    pub policy: ServicePolicy,
    /// The logical name's retry budget (shared by every binding of the name in this router).
    pub budget: Arc<Budget>,
    pub retries: IntCounter,
    pub budget_exhausted: IntCounter,
}

/// Everything binding needs that outlives a dtab: namers, the router's clients and endpoint pool, metrics.
pub struct Binder {
    pub router: Arc<str>,
    pub namers: Arc<NamerSet>,
    pub pool: Arc<EndpointPool>,
    pub metrics: Arc<Metrics>,
    /// How long a request waits for namers that have no answer yet (linkerd's `bindingTimeoutMs`).
    pub binding_timeout: Duration,
    client_config: ClientConfig,
    service_config: ServiceConfig,
    clients: Mutex<HashMap<Path, Arc<Client>>>,
    budgets: Mutex<HashMap<String, Arc<Budget>>>,
}

impl Binder {
    /// A binder for router `router`.
    pub fn new(
        router: Arc<str>,
        namers: Arc<NamerSet>,
        pool: Arc<EndpointPool>,
        metrics: Arc<Metrics>,
        binding_timeout: Duration,
        policies: (ClientConfig, ServiceConfig),
    ) -> Self {
        let (client_config, service_config) = policies;
        Self {
            router,
            namers,
            pool,
            metrics,
            binding_timeout,
            client_config,
            service_config,
            clients: Mutex::new(HashMap::new()),
            budgets: Mutex::new(HashMap::new()),
        }
    }

    /// The service label to use and its retry budget. Distinct labels are capped at [`MAX_CACHED_NAMES`] per
    /// router whether or not bindings are cached (a namer that never answers would otherwise let every new Host
    /// header mint a series); past the cap, names share `overflow`.
    fn label_and_budget(&self, proposed: &str, policy: &ServicePolicy) -> (String, Arc<Budget>) {
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let label =
            if budgets.contains_key(proposed) || budgets.len() < MAX_CACHED_NAMES { proposed } else { "overflow" };
        let budget =
            budgets.entry(label.to_string()).or_insert_with(|| Arc::new(Budget::new(policy.retries.budget))).clone();
        (label.to_string(), budget)
    }

    /// Binds `path` under `dtab`, resolving every bound leaf to its (interned) client. Waits for namers that are
    /// still fetching their first answer, up to the binding timeout, then binds with what is known.
    /// `caller_deadline` (the caller's `l5d-ctx-deadline`) shortens the wait when it comes first.
    pub async fn bind(
        &self,
        dtab: &Dtab,
        path: &Path,
        service_label: &str,
        caller_deadline: Option<std::time::Instant>,
    ) -> Binding {
        let mut deadline = tokio::time::Instant::now() + self.binding_timeout;
        if let Some(caller) = caller_deadline {
            deadline = deadline.min(tokio::time::Instant::from_std(caller));
        }
        loop {
            let namer_generation = self.namers.generation();
            let (tree, pending) = self.namers.bind(dtab, path);
            let incomplete = !pending.is_empty();
            if !incomplete || tokio::time::Instant::now() >= deadline {
                let tree = tree.map(|t| t.map(&mut |b: &BoundName| self.target(b)));
                let policy = self.service_config.resolve(path);
                let (label, budget) = self.label_and_budget(service_label, &policy);
                let route = self.metrics.route(&self.router, &label);
                let labels = [&*self.router, label.as_str()];
                return Binding {
                    tree,
                    route,
                    namer_generation,
                    incomplete,
                    budget,
                    policy,
                    retries: self.metrics.retries.with_label_values(&labels),
                    budget_exhausted: self.metrics.retry_budget_exhausted.with_label_values(&labels),
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
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let client = clients
            .entry(bound.id.clone())
            .or_insert_with(|| {
                let id = bound.id.to_string();
                Arc::new(Client::new(
                    bound.id.clone(),
                    bound.endpoints.clone(),
                    self.pool.clone(),
                    self.client_config.resolve(&bound.id),
                    self.metrics.client(&self.router, &id),
                    self.metrics.client_endpoints.with_label_values(&[&*self.router, id.as_str()]),
                ))
            })
            .clone();
        Arc::new(Target { client, residual: bound.residual.clone(), host: bound.host.clone() })
    }

    /// The clients bound so far, for the admin API.
    pub fn clients(&self) -> Vec<Arc<Client>> {
        let mut v: Vec<_> = self.clients.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

/// An immutable routing snapshot: the dtab, its generation and version tag, and its binding cache.
pub struct RoutingTable {
    pub dtab: Dtab,
    pub generation: u64,
    pub etag: String,
    cache: ArcSwap<HashMap<Path, Arc<Binding>>>,
}

impl RoutingTable {
    /// A table for `dtab` at `generation`.
    pub fn new(dtab: Dtab, generation: u64) -> Self {
        let etag = etag_of(&dtab);
        Self { dtab, generation, etag, cache: ArcSwap::default() }
    }

    /// The binding for `path`, from the cache when it is still current.
    pub async fn binding(
        &self,
        path: &Path,
        binder: &Binder,
        caller_deadline: Option<std::time::Instant>,
    ) -> Arc<Binding> {
        let generation = binder.namers.generation();
        let cache = self.cache.load();
        if let Some(b) = cache.get(path).filter(|b| b.namer_generation == generation) {
            return b.clone();
        }
        let cacheable = cache.contains_key(path) || cache.len() < MAX_CACHED_NAMES;
        drop(cache);
        let label = if cacheable { path.to_string() } else { "overflow".to_string() };
        let binding = Arc::new(binder.bind(&self.dtab, path, &label, caller_deadline).await);
        if cacheable && !binding.incomplete {
            // Copy-on-write: rare (first request for a name, or after a registry change), and readers never lock.
            self.cache.rcu(|old| {
                let mut next = HashMap::clone(old);
                next.insert(path.clone(), binding.clone());
                next
            });
        }
        binding
    }
}

/// A strong ETag for a dtab: a hash of its canonical text, so equal dtabs have equal tags across restarts.
pub fn etag_of(dtab: &Dtab) -> String {
    // FNV-1a, 64-bit: stable across Rust versions, unlike `DefaultHasher`.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dtab.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}\"")
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
