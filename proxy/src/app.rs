//! Builds a running sidecar from a validated config: namers, routers, servers, admin — and drains it on shutdown.
//!
//! Every listener is bound before anything is served, so a port conflict fails start-up cleanly instead of
//! leaving half a sidecar running.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::admin::{self, AdminState};
use crate::config::{Config, NamerConfig};
use crate::listener::{ConnectionRules, Listener, ListenerFamilies};
use crate::metrics::Registry;
use crate::namer::{consul::ConsulNamer, fs::FsNamer, Namer, NamerSet};
use crate::router::{Families, Router};
use crate::server::{self, Limits, ServerMetrics};
use crate::tls::ServerTls;

/// A start-up failure (the config itself was already validated).
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// A running sidecar.
pub struct Running {
    /// Where the admin server listens.
    pub admin_addr: SocketAddr,
    /// Each router's label and the addresses its servers listen on (useful with port 0 in tests).
    pub servers: Vec<(String, SocketAddr)>,
    /// The routers, for in-process inspection.
    pub routers: Vec<Arc<Router>>,
    ready: Arc<AtomicBool>,
    stop_servers: watch::Sender<bool>,
    stop_admin: watch::Sender<bool>,
    servers_done: JoinSet<()>,
    admin_done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The first listening address of router `label`.
    pub fn server_addr(&self, label: &str) -> Option<SocketAddr> {
        self.servers.iter().find(|(l, _)| l == label).map(|(_, a)| *a)
    }

    /// Graceful shutdown: report not-ready, stop accepting, let in-flight requests finish (up to the `grace`
    /// given to [`start`]), then stop the admin server.
    pub async fn shutdown(mut self) {
        self.ready.store(false, Ordering::Release);
        let _ = self.stop_servers.send(true);
        while self.servers_done.join_next().await.is_some() {}
        let _ = self.stop_admin.send(true);
        let _ = self.admin_done.await;
    }
}

async fn listen(addr: SocketAddr, what: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|e| StartError(format!("cannot listen on {addr} for {what}: {e}")))
}

/// Starts the configured namers; each registers its own metrics (if any) in `registry`.
fn start_namers(config: &Config, registry: &Registry) -> Arc<NamerSet> {
    let generation = Arc::new(AtomicU64::new(0));
    let mut namers: Vec<Arc<dyn Namer>> = Vec::new();
    for n in &config.namers {
        match n {
            NamerConfig::Fs(fs) => {
                let namer = FsNamer::new(fs.prefix.clone(), fs.root_dir.clone(), generation.clone());
                namer.spawn_watch();
                namers.push(namer);
            }
            NamerConfig::Consul(c) => {
                let namer = ConsulNamer::new(c, generation.clone());
                registry.register(namer.collector());
                namers.push(namer);
            }
        }
    }
    Arc::new(NamerSet::new(namers, generation))
}

/// Starts everything `config` describes. `grace` bounds how long shutdown waits for in-flight requests.
pub async fn start(config: Config, grace: Duration) -> Result<Running, StartError> {
    let registry = Arc::new(Registry::new());
    let namers = start_namers(&config, &registry);
    let families = Families::register(&registry);
    let server_metrics = ServerMetrics::register(&registry);
    let listener_families = ListenerFamilies::register(&registry);
    crate::memory::start(&registry);

    // Listen on every port first: all or nothing.
    let mut listeners = Vec::new();
    let mut routers = Vec::new();
    for rc in &config.routers {
        let router = Arc::new(Router::new(rc, namers.clone(), &families).map_err(StartError)?);
        for s in &rc.servers {
            let what = format!("router {}", rc.label);
            let tcp = listen(SocketAddr::new(s.ip, s.port), &what).await?;
            let rules = ConnectionRules::from(&s.connections);
            let listener = Listener::new(tcp, &rc.label, what, rules, &listener_families);
            let tls = match &s.tls {
                Some(t) => Some(Arc::new(
                    ServerTls::start(format!("server:{}", rc.label), t, families.tls().clone())
                        .map_err(|e| StartError(format!("router {}: server TLS: {e}", rc.label)))?,
                )),
                None => None,
            };
            let limits = Limits {
                max_concurrent: s.max_concurrent_requests,
                max_header_bytes: usize::try_from(rc.max_headers_kb.saturating_mul(1024)).unwrap_or(usize::MAX),
                trusted: !s.clear_context,
                tls,
                authorization: s.authorization.clone(),
                error_detail: s.error_detail,
            };
            listeners.push((router.clone(), listener, limits));
        }
        routers.push(router);
    }
    // A router whose dtab is mesh-wide serves the store's dtab from the start, when the store answers in time.
    for store in routers.iter().filter_map(|r| r.dtab_store()) {
        store.first_answer(STORE_FIRST_ANSWER).await;
    }
    let admin_listener = listen(SocketAddr::new(config.admin.ip, config.admin.port), "the admin server").await?;
    let admin_tls = match &config.admin.tls {
        Some(t) => Some(Arc::new(
            ServerTls::start("admin".into(), t, families.tls().clone())
                .map_err(|e| StartError(format!("admin TLS: {e}")))?,
        )),
        None => None,
    };
    let admin_addr = admin_listener.local_addr().map_err(|e| StartError(e.to_string()))?;
    let admin_rules = ConnectionRules::from(&config.admin.connections);
    let admin_listener =
        Listener::new(admin_listener, "admin", "the admin server".into(), admin_rules, &listener_families);

    let (stop_servers, stop_rx) = watch::channel(false);
    let mut servers_done = JoinSet::new();
    let mut servers = Vec::new();
    for (router, listener, limits) in listeners {
        let addr = listener.local_addr().ok_or_else(|| StartError("listener has no address".into()))?;
        let (trusted, tls) = (limits.trusted, limits.tls.is_some());
        tracing::info!(router = %router.label(), %addr, trusted, tls, "serving");
        servers.push((router.label().to_string(), addr));
        let (metrics, tls_metrics, stop) = (server_metrics.clone(), families.tls().clone(), stop_rx.clone());
        servers_done
            .spawn(async move { server::serve(listener, router, limits, (&metrics, tls_metrics), stop, grace).await });
    }

    let ready = Arc::new(AtomicBool::new(true));
    let state = Arc::new(AdminState {
        routers: routers.clone(),
        namers,
        metrics: registry,
        config_json: serde_json::to_value(&config).unwrap_or_default(),
        token: config.admin.token.clone(),
        ready: ready.clone(),
    });
    let (stop_admin, admin_rx) = watch::channel(false);
    let app = admin::app(state);
    let hosts = admin::listener::AllowedHosts::new(&config.admin.hosts);
    tracing::info!(addr = %admin_addr, tls = admin_tls.is_some(), "admin serving");
    let admin_done = tokio::spawn(admin::listener::serve(admin_listener, app, admin_tls, hosts, admin_rx, grace));
    Ok(Running { admin_addr, servers, routers, ready, stop_servers, stop_admin, servers_done, admin_done })
}

/// How long start-up waits for a dtab store's first answer before serving with the configured dtab.
const STORE_FIRST_ANSWER: Duration = Duration::from_secs(2);
