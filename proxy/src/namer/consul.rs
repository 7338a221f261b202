//! `io.l5d.consul`: services from a Consul agent, each watched with its own blocking query.
//!
//! `/#/io.l5d.consul/<dc>/<service>[/<residual>…]`, or with `includeTag: true` `/<dc>/<tag>/<service>[/…]`.
//! `<dc>` `.local` means the agent's own datacenter (no `dc=` is sent). A service with no (healthy) instances is
//! Neg, so `|` falls through; the generation is bumped whenever a name flips between bound and Neg.
//!
//! One watch task per (dc, tag, service), shared by every router that names it. When Consul is unreachable or
//! answers errors, the watch keeps the last known endpoints and retries with backoff; the age of its last good
//! answer (staleness) is in `/namers.json` and in `switchyard_namer_staleness_seconds`. A watch nobody has looked
//! up for [`IDLE_AFTER`], and whose endpoints no binding holds any more, stops (bumping the generation, so a
//! router that still needs it binds again and restarts it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Deserialize;
use switchyard_dtab::{Label, NameTree, Path};

use super::{inet::parse_host, BoundName, Endpoint, EndpointSet, EndpointWatch, Namer, NamerAnswer};
use crate::config::{ConsulNamerConfig, TagWeight};
use crate::consul::{encode_component, ConsulClient, ConsulError, IndexStep, Watcher};

/// Names watched at once per namer at most (each is one blocking query against Consul).
pub const MAX_WATCHES: usize = 1000;

/// A watch that has not been used for this long stops.
pub const IDLE_AFTER: Duration = Duration::from_secs(600);

/// What one watch is about.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct WatchKey {
    dc: Label,
    tag: Option<Label>,
    service: Label,
}

impl WatchKey {
    /// The name under the namer's prefix, e.g. `/dc1/forex-rate`.
    fn path(&self) -> Path {
        let labels =
            std::iter::once(self.dc.clone()).chain(self.tag.clone()).chain(std::iter::once(self.service.clone()));
        Path::from_labels(labels)
    }
}

/// What a watch knows about its service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    /// No answer from Consul yet.
    Unknown,
    /// Instances exist (possibly none healthy right now is `Missing`).
    Exists,
    /// No (healthy) instances.
    Missing,
}

struct WatchState {
    known: Known,
    /// A first query failed and `failFast` is on: answer Neg rather than keep routers waiting.
    gave_up: bool,
    last_good: Option<Instant>,
    last_error: Option<String>,
    consul_index: u64,
}

/// One (dc, tag, service) watch.
struct Watch {
    key: WatchKey,
    endpoints: Arc<EndpointWatch>,
    state: Mutex<WatchState>,
    /// Becomes true with the first answer (or the first failure under `failFast`); pending lookups wait on it.
    answered: tokio::sync::watch::Sender<bool>,
    last_lookup: Mutex<Instant>,
    /// Set when the watch is evicted to make room: its task stops, even mid-query.
    evicted: tokio::sync::watch::Sender<bool>,
}

impl Watch {
    /// Whether the watch may be evicted to make room for another name: Consul says the name does not exist (or
    /// gave up under `failFast`), and no binding holds its endpoints.
    fn evictable(&self) -> bool {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let unbound = st.known == Known::Missing || (st.known == Known::Unknown && st.gave_up);
        unbound && Arc::strong_count(&self.endpoints) == 1
    }

    fn last_lookup(&self) -> Instant {
        *self.last_lookup.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Settings the watch tasks read.
struct Settings {
    include_tag: bool,
    use_health_check: bool,
    health_statuses: Vec<String>,
    prefer_service_address: bool,
    weights: Vec<TagWeight>,
    fail_fast: bool,
    set_host: bool,
    wait: Duration,
    idle_after: Duration,
}

struct Shared {
    prefix: Path,
    client: ConsulClient,
    settings: Settings,
    watches: Mutex<HashMap<WatchKey, Arc<Watch>>>,
    generation: Arc<AtomicU64>,
    errors: AtomicU64,
}

/// The Consul namer.
pub struct ConsulNamer {
    shared: Arc<Shared>,
}

impl ConsulNamer {
    /// A namer for `config`; watches start lazily, on the first lookup of each name.
    pub fn new(config: &ConsulNamerConfig, generation: Arc<AtomicU64>) -> Arc<Self> {
        Self::with_timing(config, generation, crate::consul::DEFAULT_WAIT, IDLE_AFTER)
    }

    /// As [`ConsulNamer::new`] with explicit blocking-query `wait` and idle timeout (tests shorten both).
    pub fn with_timing(
        config: &ConsulNamerConfig,
        generation: Arc<AtomicU64>,
        wait: Duration,
        idle_after: Duration,
    ) -> Arc<Self> {
        let client = ConsulClient::new(
            &config.host,
            config.port,
            config.token.clone(),
            config.consistency_mode,
            config.tls.as_deref(),
        );
        let settings = Settings {
            include_tag: config.include_tag,
            use_health_check: config.use_health_check,
            health_statuses: config.health_statuses.clone(),
            prefer_service_address: config.prefer_service_address,
            weights: config.weights.clone(),
            fail_fast: config.fail_fast,
            set_host: config.set_host,
            wait,
            idle_after,
        };
        let shared = Shared {
            prefix: config.prefix.clone(),
            client,
            settings,
            watches: Mutex::default(),
            generation,
            errors: AtomicU64::new(0),
        };
        Arc::new(Self { shared: Arc::new(shared) })
    }

    /// Prometheus families for this namer (staleness per watched name, watch count, errors), computed at scrape.
    pub fn collector(&self) -> Box<dyn prometheus::core::Collector> {
        Box::new(NamerCollector::new(Arc::downgrade(&self.shared)))
    }

    /// `(dc, tag, service)` and how many labels of `rest` they used.
    fn parse(&self, rest: &Path) -> Option<(WatchKey, usize)> {
        let l = rest.labels();
        if self.shared.settings.include_tag {
            let (dc, tag, service) = (l.first()?, l.get(1)?, l.get(2)?);
            Some((WatchKey { dc: dc.clone(), tag: Some(tag.clone()), service: service.clone() }, 3))
        } else {
            let (dc, service) = (l.first()?, l.get(1)?);
            Some((WatchKey { dc: dc.clone(), tag: None, service: service.clone() }, 2))
        }
    }

    /// The shared watch for `key`, started on first use. At most [`MAX_WATCHES`] names are watched, so names made
    /// up by callers (Host headers) cannot start unbounded blocking queries; at the cap, the least recently used
    /// watch of a name Consul says does not exist makes room — so a flood of names that never resolve cannot
    /// crowd out one that does. `None` only when every watched name exists or is still in use.
    fn watch_for(&self, key: &WatchKey) -> Option<Arc<Watch>> {
        let mut watches = self.shared.watches.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = watches.get(key) {
            return Some(w.clone());
        }
        if watches.len() >= MAX_WATCHES {
            let victim = watches.values().filter(|w| w.evictable()).min_by_key(|w| w.last_lookup()).cloned();
            let Some(victim) = victim else {
                tracing::debug!(name = %key.path(), "consul namer: watch limit reached; answering neg");
                return None;
            };
            watches.remove(&victim.key);
            let _ = victim.evicted.send(true);
            // As when an idle watch stops: a router may have cached the evicted name's Neg; make it bind again
            // (restarting the watch) so that the name is seen if it appears later.
            self.shared.generation.fetch_add(1, Ordering::AcqRel);
            tracing::debug!(evicted = %victim.key.path(), name = %key.path(), "consul namer: watch limit reached");
        }
        let watch = Arc::new(Watch {
            key: key.clone(),
            endpoints: EndpointWatch::new(EndpointSet::default()),
            state: Mutex::new(WatchState {
                known: Known::Unknown,
                gave_up: false,
                last_good: None,
                last_error: None,
                consul_index: 0,
            }),
            answered: tokio::sync::watch::channel(false).0,
            last_lookup: Mutex::new(Instant::now()),
            evicted: tokio::sync::watch::channel(false).0,
        });
        watches.insert(key.clone(), watch.clone());
        tracing::debug!(namer = %self.shared.prefix, name = %key.path(), "consul namer: watch started");
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn(run_watch(Arc::downgrade(&self.shared), watch.clone()))),
            // Only reachable from a test calling lookup off the runtime: the name stays pending.
            Err(_) => tracing::warn!(name = %key.path(), "consul namer: no runtime to watch on"),
        }
        Some(watch)
    }
}

impl ConsulNamer {
    /// What a watched name binds to, from its state.
    fn answer(
        &self,
        watch: &Watch,
        state: &WatchState,
        id_prefix: &Path,
        rest: &Path,
        used: usize,
    ) -> NameTree<BoundName> {
        match state.known {
            Known::Exists => NameTree::Leaf(BoundName {
                id: id_prefix.concat(&rest.take(used)),
                residual: rest.drop(used),
                endpoints: watch.endpoints.clone(),
                host: self.shared.settings.set_host.then(|| consul_host(&watch.key)),
            }),
            Known::Missing | Known::Unknown => NameTree::Neg,
        }
    }
}

impl Namer for ConsulNamer {
    fn prefix(&self) -> &Path {
        &self.shared.prefix
    }

    fn kind(&self) -> &'static str {
        "io.l5d.consul"
    }

    fn lookup(&self, id_prefix: &Path, rest: &Path) -> NamerAnswer {
        let Some((key, used)) = self.parse(rest) else {
            return NamerAnswer::Ready(NameTree::Neg);
        };
        let Some(watch) = self.watch_for(&key) else {
            return NamerAnswer::Ready(NameTree::Neg);
        };
        *watch.last_lookup.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        let state = watch.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.known {
            Known::Unknown if !state.gave_up => {
                let mut rx = watch.answered.subscribe();
                NamerAnswer::Pending(Box::pin(async move {
                    let _ = rx.wait_for(|answered| *answered).await;
                }))
            }
            _ => NamerAnswer::Ready(self.answer(&watch, &state, id_prefix, rest, used)),
        }
    }

    fn peek(&self, id_prefix: &Path, rest: &Path) -> NameTree<BoundName> {
        let Some((key, used)) = self.parse(rest) else { return NameTree::Neg };
        let watch = self.shared.watches.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
        let Some(watch) = watch else { return NameTree::Neg };
        let state = watch.state.lock().unwrap_or_else(|e| e.into_inner());
        self.answer(&watch, &state, id_prefix, rest, used)
    }

    fn state(&self) -> serde_json::Value {
        let s = &self.shared.settings;
        let mut watches: Vec<Arc<Watch>> =
            self.shared.watches.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        watches.sort_by_key(|w| w.key.path().to_string());
        let names: serde_json::Map<String, serde_json::Value> =
            watches.iter().map(|w| (w.key.path().to_string(), watch_json(w))).collect();
        serde_json::json!({
            "kind": "io.l5d.consul",
            "consul": self.shared.client.base(),
            "includeTag": s.include_tag,
            "useHealthCheck": s.use_health_check,
            "healthStatuses": s.health_statuses,
            "failFast": s.fail_fast,
            "setHost": s.set_host,
            "errors": self.shared.errors.load(Ordering::Relaxed),
            "names": names,
        })
    }
}

fn watch_json(w: &Watch) -> serde_json::Value {
    let st = w.state.lock().unwrap_or_else(|e| e.into_inner());
    let addrs: Vec<String> = w.endpoints.load().endpoints.iter().map(|e| e.addr.to_string()).collect();
    let known = match st.known {
        Known::Unknown => "pending",
        Known::Exists => "bound",
        Known::Missing => "neg",
    };
    serde_json::json!({
        "state": known,
        "endpoints": addrs,
        "consulIndex": st.consul_index,
        // 0 while the backend answers; during an outage, the age of the last good answer.
            "stalenessSeconds": match (&st.last_error, st.last_good) {
                (None, Some(_)) => Some(0.0),
                (_, t) => t.map(|t| t.elapsed().as_secs_f64()),
            },
        "lastError": st.last_error,
    })
}

/// The watch loop of one name: blocking queries until the namer is dropped or the watch goes idle.
async fn run_watch(shared: Weak<Shared>, watch: Arc<Watch>) {
    let mut watcher = Watcher::default();
    let mut evicted = watch.evicted.subscribe();
    loop {
        let Some(sh) = shared.upgrade() else { return };
        if *evicted.borrow() {
            return;
        }
        if is_idle(&sh, &watch) {
            stop_watch(&sh, &watch);
            return;
        }
        let path = query_path(&sh.settings, &watch.key);
        let result = tokio::select! {
            r = sh.client.get(&path, Some((watcher.index(), sh.settings.wait))) => r,
            _ = evicted.wait_for(|e| *e) => return,
        };
        let delay = match result.and_then(|a| parse_answer(&sh.settings, a)) {
            Ok((consul_index, set)) => {
                let (step, pause) = watcher.answered(consul_index);
                if step == IndexStep::Reset {
                    tracing::info!(name = %watch.key.path(), "consul namer: index went backwards; starting over");
                }
                apply(&sh, &watch, set, watcher.index());
                pause
            }
            Err(e) => {
                sh.errors.fetch_add(1, Ordering::Relaxed);
                record_error(&sh, &watch, &e);
                Some(watcher.failed())
            }
        };
        drop(sh);
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
    }
}

/// Unused: not looked up for the idle time, and no binding holds the endpoints (only this watch does).
fn is_idle(sh: &Shared, watch: &Arc<Watch>) -> bool {
    let last = *watch.last_lookup.lock().unwrap_or_else(|e| e.into_inner());
    last.elapsed() >= sh.settings.idle_after && Arc::strong_count(&watch.endpoints) == 1
}

fn stop_watch(sh: &Shared, watch: &Arc<Watch>) {
    sh.watches.lock().unwrap_or_else(|e| e.into_inner()).remove(&watch.key);
    // A router may have cached a Neg for this name; make it bind again, which restarts the watch if needed.
    sh.generation.fetch_add(1, Ordering::AcqRel);
    tracing::debug!(name = %watch.key.path(), "consul namer: idle watch stopped");
}

fn query_path(s: &Settings, key: &WatchKey) -> String {
    let service = encode_component(key.service.as_bytes());
    let mut params = Vec::new();
    let path = if s.use_health_check {
        if s.health_statuses.iter().all(|h| h == "passing") {
            params.push("passing".to_string());
        }
        format!("/v1/health/service/{service}")
    } else {
        format!("/v1/catalog/service/{service}")
    };
    if key.dc.as_bytes() != b".local" {
        params.push(format!("dc={}", encode_component(key.dc.as_bytes())));
    }
    if let Some(tag) = &key.tag {
        params.push(format!("tag={}", encode_component(tag.as_bytes())));
    }
    if params.is_empty() {
        path
    } else {
        format!("{path}?{}", params.join("&"))
    }
}

/// One instance as either endpoint reports it.
struct Instance {
    node_address: String,
    service_address: String,
    port: u16,
    tags: Vec<String>,
    /// Aggregated check status (health endpoint only).
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CatalogEntry {
    #[serde(default)]
    address: String,
    #[serde(default)]
    service_address: String,
    service_port: u16,
    #[serde(default)]
    service_tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthEntry {
    node: HealthNode,
    service: HealthService,
    #[serde(default)]
    checks: Vec<HealthCheck>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthNode {
    #[serde(default)]
    address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthService {
    #[serde(default)]
    address: String,
    port: u16,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthCheck {
    #[serde(default, rename = "CheckID")]
    check_id: String,
    #[serde(default)]
    status: String,
}

/// The worst state among an instance's checks; maintenance checks win, as in Consul's own aggregation.
fn aggregate(checks: &[HealthCheck]) -> String {
    if checks
        .iter()
        .any(|c| c.check_id.starts_with("_node_maintenance") || c.check_id.starts_with("_service_maintenance"))
    {
        return "maintenance".into();
    }
    for worst in ["critical", "warning"] {
        if checks.iter().any(|c| c.status == worst) {
            return worst.into();
        }
    }
    "passing".into()
}

/// Consul DNS's name for a service: `<service>.service.<dc>.consul` (`<service>.service.consul` for `.local`),
/// which `setHost: true` sends as the `Host` header.
fn consul_host(key: &WatchKey) -> Arc<str> {
    let service = key.service.to_string();
    match key.dc.as_bytes() {
        b".local" => format!("{service}.service.consul").into(),
        _ => format!("{service}.service.{}.consul", key.dc).into(),
    }
}

/// Parses an answer into its index and endpoint set (`None` = no usable instances: Neg).
fn parse_answer(
    s: &Settings,
    answer: crate::consul::Answer,
) -> Result<(Option<u64>, Option<EndpointSet>), ConsulError> {
    if !answer.status.is_success() {
        let text = String::from_utf8_lossy(&answer.body);
        return Err(ConsulError(format!("consul answered {}: {}", answer.status, text.trim())));
    }
    let bad = |e: serde_json::Error| ConsulError(format!("unreadable consul answer: {e}"));
    let instances: Vec<Instance> = if s.use_health_check {
        let entries: Vec<HealthEntry> = serde_json::from_slice(&answer.body).map_err(bad)?;
        entries
            .into_iter()
            .map(|e| Instance {
                node_address: e.node.address,
                service_address: e.service.address,
                port: e.service.port,
                tags: e.service.tags.unwrap_or_default(),
                status: Some(aggregate(&e.checks)),
            })
            .collect()
    } else {
        let entries: Vec<CatalogEntry> = serde_json::from_slice(&answer.body).map_err(bad)?;
        entries
            .into_iter()
            .map(|e| Instance {
                node_address: e.address,
                service_address: e.service_address,
                port: e.service_port,
                tags: e.service_tags.unwrap_or_default(),
                status: None,
            })
            .collect()
    };
    let endpoints: Vec<Endpoint> = instances.iter().filter_map(|i| endpoint_of(s, i)).collect();
    Ok((answer.index, (!endpoints.is_empty()).then_some(EndpointSet { endpoints })))
}

/// Settings with every parsing feature on (health checks or the catalog, a tag weight): the fuzzers' and the
/// unit tests'.
fn example_settings(health: bool) -> Settings {
    Settings {
        include_tag: false,
        use_health_check: health,
        health_statuses: vec!["passing".into()],
        prefer_service_address: true,
        weights: vec![TagWeight { tag: "canary".into(), weight: 0.25 }],
        fail_fast: false,
        set_host: false,
        wait: Duration::from_secs(1),
        idle_after: IDLE_AFTER,
    }
}

/// Parses a Consul answer body as the namer would (catalog or health shape), for the fuzzers.
pub(crate) fn parse_body_for_fuzzing(body: &[u8], health: bool) -> Option<usize> {
    let answer = crate::consul::Answer { status: http::StatusCode::OK, index: Some(1), body: body.to_vec().into() };
    parse_answer(&example_settings(health), answer).ok().map(|(_, set)| set.map_or(0, |s| s.endpoints.len()))
}

fn endpoint_of(s: &Settings, i: &Instance) -> Option<Endpoint> {
    if let Some(status) = &i.status {
        if !s.health_statuses.iter().any(|h| h == status) {
            return None;
        }
    }
    let host = if s.prefer_service_address && !i.service_address.is_empty() || i.node_address.is_empty() {
        &i.service_address
    } else {
        &i.node_address
    };
    let Some(ip) = parse_host(host) else {
        tracing::debug!(address = %host, "consul namer: not an IP address; instance skipped");
        return None;
    };
    if i.port == 0 {
        return None;
    }
    let weight = s
        .weights
        .iter()
        .filter(|w| i.tags.contains(&w.tag))
        .map(|w| w.weight)
        .fold(None, |m: Option<f64>, w| Some(m.map_or(w, |m| m.max(w))));
    Some(Endpoint { addr: std::net::SocketAddr::new(ip, i.port), weight: weight.unwrap_or(1.0) })
}

/// Folds a good answer into the watch; bumps the generation when the name flips between bound and Neg.
fn apply(sh: &Shared, watch: &Watch, set: Option<EndpointSet>, consul_index: u64) {
    let mut st = watch.state.lock().unwrap_or_else(|e| e.into_inner());
    let was_bound = st.known == Known::Exists;
    let now_bound = set.is_some();
    if let Some(set) = set {
        if watch.endpoints.store(set) {
            tracing::info!(name = %watch.key.path(), "consul namer: endpoints changed");
        }
    }
    st.known = if now_bound { Known::Exists } else { Known::Missing };
    st.last_good = Some(Instant::now());
    st.last_error = None;
    st.consul_index = consul_index;
    drop(st);
    if was_bound != now_bound {
        tracing::info!(name = %watch.key.path(), bound = now_bound, "consul namer: name {}", if now_bound { "appeared" } else { "vanished" });
        sh.generation.fetch_add(1, Ordering::AcqRel);
    }
    watch.answered.send_replace(true);
}

fn record_error(sh: &Shared, watch: &Watch, e: &ConsulError) {
    let mut st = watch.state.lock().unwrap_or_else(|e| e.into_inner());
    if st.last_error.is_none() {
        // Once per outage, not once per retry.
        tracing::warn!(name = %watch.key.path(), error = %e, "consul namer: query failed; keeping the last known endpoints");
    }
    st.last_error = Some(e.to_string());
    if st.known == Known::Unknown && sh.settings.fail_fast && !st.gave_up {
        st.gave_up = true;
        drop(st);
        watch.answered.send_replace(true);
    }
}

/// Scrape-time metrics: staleness is an age, so it is computed when Prometheus asks, not when a watch wakes.
struct NamerCollector {
    shared: Weak<Shared>,
    descs: Vec<prometheus::core::Desc>,
}

impl NamerCollector {
    fn new(shared: Weak<Shared>) -> Self {
        let d = |name: &str, help: &str, labels: &[&str]| {
            prometheus::core::Desc::new(
                name.into(),
                help.into(),
                labels.iter().map(|l| l.to_string()).collect(),
                HashMap::new(),
            )
            .expect("valid desc")
        };
        let descs = vec![
            d(
                "switchyard_namer_staleness_seconds",
                "Age of the last good answer for a watched name (0 while connected).",
                &["namer", "name"],
            ),
            d("switchyard_namer_watches", "Names the namer is watching.", &["namer"]),
            d("switchyard_namer_errors_total", "Failed queries to the namer's backend.", &["namer"]),
        ];
        Self { shared, descs }
    }
}

impl prometheus::core::Collector for NamerCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let Some(sh) = self.shared.upgrade() else {
            return Vec::new();
        };
        let namer = format!("/#{}", sh.prefix);
        let stale = prometheus::GaugeVec::new(
            prometheus::Opts::new(
                "switchyard_namer_staleness_seconds",
                "Age of the last good answer for a watched name (0 while connected).",
            ),
            &["namer", "name"],
        )
        .expect("valid gauge");
        let watches: Vec<Arc<Watch>> = sh.watches.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for w in &watches {
            let st = w.state.lock().unwrap_or_else(|e| e.into_inner());
            // Connected and answering: fresh. Failing: the age of the last good answer (or since start).
            let age = match (&st.last_error, st.last_good) {
                (None, _) => 0.0,
                (Some(_), Some(t)) => t.elapsed().as_secs_f64(),
                (Some(_), None) => w.last_lookup.lock().map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0),
            };
            stale.with_label_values(&[namer.as_str(), &w.key.path().to_string()]).set(age);
        }
        let count = prometheus::IntGaugeVec::new(
            prometheus::Opts::new("switchyard_namer_watches", "Names the namer is watching."),
            &["namer"],
        )
        .expect("valid gauge");
        count.with_label_values(&[namer.as_str()]).set(watches.len() as i64);
        let errors = prometheus::IntCounterVec::new(
            prometheus::Opts::new("switchyard_namer_errors_total", "Failed queries to the namer's backend."),
            &["namer"],
        )
        .expect("valid counter");
        errors.with_label_values(&[namer.as_str()]).inc_by(sh.errors.load(Ordering::Relaxed));
        let mut out = prometheus::core::Collector::collect(&stale);
        out.extend(prometheus::core::Collector::collect(&count));
        out.extend(prometheus::core::Collector::collect(&errors));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(health: bool) -> Settings {
        example_settings(health)
    }

    fn answer(body: &str) -> crate::consul::Answer {
        crate::consul::Answer {
            status: http::StatusCode::OK,
            index: Some(7),
            body: bytes::Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn catalog_answers_prefer_the_service_address_and_weigh_tags() {
        let body = r#"[{"Address":"10.0.0.1","ServiceAddress":"127.0.3.1","ServicePort":4140,"ServiceTags":["canary"]},
                       {"Address":"127.0.3.2","ServiceAddress":"","ServicePort":4140,"ServiceTags":null},
                       {"Address":"not-an-ip","ServiceAddress":"","ServicePort":4140}]"#;
        let (index, set) = parse_answer(&settings(false), answer(body)).unwrap();
        assert_eq!(index, Some(7));
        let eps: Vec<(String, f64)> = set.unwrap().endpoints.iter().map(|e| (e.addr.to_string(), e.weight)).collect();
        assert_eq!(eps, vec![("127.0.3.1:4140".into(), 0.25), ("127.0.3.2:4140".into(), 1.0)]);
        let mut node_first = settings(false);
        node_first.prefer_service_address = false;
        let (_, set) = parse_answer(&node_first, answer(body)).unwrap();
        assert_eq!(set.unwrap().endpoints[0].addr.to_string(), "10.0.0.1:4140");
    }

    #[test]
    fn health_answers_keep_only_allowed_states_and_empty_is_neg() {
        let body = r#"[{"Node":{"Address":"127.0.3.1"},"Service":{"Address":"","Port":4140},"Checks":[{"CheckID":"serfHealth","Status":"passing"},{"CheckID":"service:a","Status":"passing"}]},
                       {"Node":{"Address":"127.0.3.2"},"Service":{"Address":"","Port":4140},"Checks":[{"CheckID":"service:b","Status":"critical"}]}]"#;
        let (_, set) = parse_answer(&settings(true), answer(body)).unwrap();
        assert_eq!(set.unwrap().endpoints.len(), 1);
        let (_, set) = parse_answer(&settings(true), answer("[]")).unwrap();
        assert!(set.is_none(), "no instances is Neg");
        let mut err = answer("No path to datacenter");
        err.status = http::StatusCode::INTERNAL_SERVER_ERROR;
        assert!(parse_answer(&settings(true), err).is_err());
    }

    #[test]
    fn query_paths_follow_the_options() {
        let key = WatchKey { dc: Label::new(".local").unwrap(), tag: None, service: Label::new("forex-rate").unwrap() };
        assert_eq!(query_path(&settings(false), &key), "/v1/catalog/service/forex-rate");
        assert_eq!(query_path(&settings(true), &key), "/v1/health/service/forex-rate?passing");
        let key = WatchKey {
            dc: Label::new("dc1").unwrap(),
            tag: Label::new("v2"),
            service: Label::new("forex-rate").unwrap(),
        };
        let mut s = settings(true);
        s.health_statuses = vec!["passing".into(), "warning".into()];
        assert_eq!(query_path(&s, &key), "/v1/health/service/forex-rate?dc=dc1&tag=v2");
    }
}
