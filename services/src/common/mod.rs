//! Pieces the three services share: settings, logging, shutdown, the JSON error,
//! the peer client, money and dates.

pub mod context;
pub mod date;
pub mod error;
pub mod faults;
pub mod metrics;
pub mod money;
pub mod peer;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use date::Date;
pub use error::{ApiError, Field};
pub use metrics::ServiceMetrics;
pub use money::CurrencyCode;
pub use peer::PeerClient;
pub use settings::{Command, PeerSettings, Service, Settings};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use std::process::ExitCode;

/// Exit status for a usage error (BSD `EX_USAGE`).
const EXIT_USAGE: u8 = 64;

/// The whole life of a service binary: parse settings (exit 64 on bad ones),
/// start logging, build the app, serve, drain on SIGTERM/SIGINT.
///
/// `build` turns the settings into the app, or explains why it cannot (for
/// example forex-rate's data failing to load). It gets the process's
/// [`ServiceMetrics`] to hand to its peer client; `GET /metrics` and the
/// per-route request metrics are added around whatever it returns.
pub fn main_for(
    service: Service,
    build: impl FnOnce(&Settings, &ServiceMetrics) -> Result<axum::Router, String>,
) -> ExitCode {
    let settings = match settings::parse(service, std::env::args().skip(1), |k| std::env::var(k).ok()) {
        Ok(Command::Run(settings)) => settings,
        Ok(Command::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(errors) => {
            eprintln!("{}: invalid settings:\n{errors}", service.name());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    telemetry::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&settings, build)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}: {e}", service.name());
            ExitCode::FAILURE
        }
    }
}

async fn run(
    settings: &Settings,
    build: impl FnOnce(&Settings, &ServiceMetrics) -> Result<axum::Router, String>,
) -> Result<(), String> {
    let metrics = ServiceMetrics::new();
    // Injected faults sit inside the metrics layer, so the service's own metrics show them too.
    let faults = faults::Faults::from_env(|k| std::env::var(k).ok())?;
    let app = metrics::instrument(faults.apply(build(settings, &metrics)?), metrics)
        .layer(axum::middleware::from_fn(access_log))
        .layer(axum::middleware::from_fn(context::capture));
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let peer = settings.peer.as_ref().map(|p| format!("{} as Host: {}", p.url, p.name.as_str()));
    tracing::info!(listen = %settings.listen, peer = peer.as_deref().unwrap_or("-"), "{} started", settings.service.name());
    shutdown::serve(listener, app, shutdown::signal(), shutdown::DRAIN_DEADLINE)
        .await
        .map_err(|e| format!("server failed: {e}"))?;
    tracing::info!("{} stopped", settings.service.name());
    Ok(())
}

/// One log line per request: method, path, status and latency.
pub async fn access_log(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let (reqid, trace) = context::ids();
    tracing::info!(
        %method,
        path,
        reqid,
        trace,
        status = response.status().as_u16(),
        micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    response
}

/// `GET /health` body for a service.
pub fn health_body(service: Service) -> serde_json::Value {
    serde_json::json!({ "status": "ok", "service": service.name() })
}
