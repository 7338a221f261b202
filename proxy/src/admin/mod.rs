//! The admin server (axum, port 9990): health, metrics, effective config, live dtab read/write, the delegator.
//!
//! Reads are open; writes (`PUT /dtab/{label}`) require `Authorization: Bearer <admin.token>` when a token is
//! configured. Every admin failure goes through [`AdminError`], which answers JSON `{"error": …}` (plus the
//! line and column for a malformed dtab).

mod delegator;
pub mod editor;
pub mod listener;
mod page;
mod stats;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router as AxumRouter};
use serde_json::json;
use switchyard_dtab::{Dtab, NameTree, ParseError, Path, Prefix};

use crate::metrics::Registry;
use crate::namer::NamerSet;
use crate::router::headers::L5D_DTAB_STORE_ERROR;
use crate::router::table::DtabWriteError;
use crate::router::Router;

/// What the admin handlers share.
pub struct AdminState {
    pub routers: Vec<Arc<Router>>,
    pub namers: Arc<NamerSet>,
    pub metrics: Arc<Registry>,
    /// The effective config, as served by `/config.json` (secrets redacted).
    pub config_json: serde_json::Value,
    /// Bearer token required for writes, if any.
    pub token: Option<String>,
    /// False once shutdown has begun, so load balancers and health checks take the sidecar out.
    pub ready: Arc<AtomicBool>,
}

impl AdminState {
    fn router(&self, label: &str) -> Result<&Arc<Router>, AdminError> {
        self.routers.iter().find(|r| r.label() == label).ok_or_else(|| AdminError::UnknownRouter(label.to_string()))
    }
}

/// The admin app; `main` serves it, tests call it with `oneshot`.
pub fn app(state: Arc<AdminState>) -> AxumRouter {
    AxumRouter::new()
        .route("/", get(page::index))
        .route("/delegator", get(page::index))
        .route("/admin/assets/dashboard.js", get(page::script))
        .route("/admin/assets/dashboard.css", get(page::style))
        .route("/admin/stats.json", get(stats::stats))
        .route("/admin/ping", get(|| async { "pong" }))
        .route("/admin/ready", get(ready))
        .route("/admin/metrics/prometheus", get(metrics))
        .route("/metrics", get(metrics))
        .route("/config.json", get(config))
        .route("/namers.json", get(namers))
        .route("/routers.json", get(routers))
        .route("/dtab", get(dtabs))
        .route("/dtab/{label}", get(get_dtab).put(put_dtab))
        .route("/dtab/{label}/validate", axum::routing::post(editor::validate))
        .route("/delegator.json", get(delegator::delegate))
        .fallback(|| async { AdminError::NotFound })
        .with_state(state)
}

async fn ready(State(s): State<Arc<AdminState>>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    }
}

async fn metrics(State(s): State<Arc<AdminState>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render()).into_response()
}

async fn config(State(s): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    Json(s.config_json.clone())
}

async fn namers(State(s): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    let namers: serde_json::Map<_, _> = s.namers.namers().map(|(p, n)| (p.to_string(), n.state())).collect();
    Json(json!({ "generation": s.namers.generation(), "namers": namers }))
}

async fn routers(State(s): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    let routers: Vec<_> = s
        .routers
        .iter()
        .map(|r| {
            let table = r.table();
            let clients: Vec<_> = r
                .balancers()
                .iter()
                .map(|c| json!({ "id": c.id.to_string(), "endpoints": c.endpoint_count() }))
                .collect();
            json!({
                "label": r.label(),
                "dstPrefix": r.dst_prefix().to_string(),
                "dtab": table.dtab.to_string(),
                "dtabGeneration": table.generation,
                "etag": table.etag,
                "clients": clients,
                "dtabStore": r.dtab_store().map(|st| st.state_json()),
            })
        })
        .collect();
    Json(json!({ "routers": routers }))
}

async fn dtabs(State(s): State<Arc<AdminState>>) -> Json<HashMap<String, String>> {
    Json(s.routers.iter().map(|r| (r.label().to_string(), r.table().dtab.pretty())).collect())
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/json"))
}

async fn get_dtab(
    State(s): State<Arc<AdminState>>,
    UrlPath(label): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, AdminError> {
    let router = s.router(&label)?;
    let table = router.table();
    let etag = HeaderValue::from_str(&table.etag).map_err(|_| AdminError::Internal("bad etag".into()))?;
    let mut resp = if wants_json(&headers) {
        let dentries: Vec<_> = table
            .dtab
            .dentries()
            .iter()
            .map(|d| json!({ "prefix": d.prefix.to_string(), "dst": d.dst.to_string() }))
            .collect();
        Json(dentries).into_response()
    } else {
        ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], table.dtab.pretty()).into_response()
    };
    resp.headers_mut().insert(header::ETAG, etag);
    // A store-backed router whose store holds something it refused (or cannot reach) says so on every read.
    if let Some(error) = router.dtab_store().and_then(|st| st.last_error()) {
        let flat: String = error.chars().map(|c| if c.is_control() || !c.is_ascii() { '?' } else { c }).collect();
        if let Ok(v) = HeaderValue::from_str(&flat) {
            resp.headers_mut().insert(L5D_DTAB_STORE_ERROR, v);
        }
    }
    Ok(resp)
}

async fn put_dtab(
    State(s): State<Arc<AdminState>>,
    UrlPath(label): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AdminError> {
    authorize(&s, &headers)?;
    let router = s.router(&label)?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let parsed = if is_json { parse_json_dtab(&body) } else { parse_text_dtab(&body) };
    let dtab = match parsed {
        Ok(d) => d,
        Err(e) => {
            router.record_invalid_dtab();
            tracing::info!(router = %label, error = %e, "rejected malformed dtab; the current one stays in force");
            return Err(e);
        }
    };
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());
    let table = router.write_dtab(dtab, if_match).await?;
    let etag = HeaderValue::from_str(&table.etag).map_err(|_| AdminError::Internal("bad etag".into()))?;
    Ok((StatusCode::NO_CONTENT, [(header::ETAG, etag)]).into_response())
}

impl From<DtabWriteError> for AdminError {
    fn from(e: DtabWriteError) -> Self {
        match e {
            DtabWriteError::Stale { current } => AdminError::Stale { current },
            DtabWriteError::Unavailable(m) => AdminError::StoreUnavailable(m),
        }
    }
}

fn parse_text_dtab(body: &[u8]) -> Result<Dtab, AdminError> {
    let text = std::str::from_utf8(body).map_err(|e| AdminError::BadRequest(format!("dtab is not UTF-8: {e}")))?;
    Dtab::parse(text).map_err(AdminError::BadDtab)
}

/// namerd's JSON shape: `[{"prefix": "/svc", "dst": "/#/io.l5d.fs"}, …]`.
fn parse_json_dtab(body: &[u8]) -> Result<Dtab, AdminError> {
    #[derive(serde::Deserialize)]
    struct Dentry {
        prefix: String,
        dst: String,
    }
    let dentries: Vec<Dentry> =
        serde_json::from_slice(body).map_err(|e| AdminError::BadRequest(format!("invalid JSON dtab: {e}")))?;
    let mut text = String::new();
    for (i, d) in dentries.iter().enumerate() {
        Prefix::read(&d.prefix).map_err(|e| AdminError::BadRequest(format!("dentry {i}: prefix: {e}")))?;
        NameTree::<Path>::read(&d.dst).map_err(|e| AdminError::BadRequest(format!("dentry {i}: dst: {e}")))?;
        text.push_str(&format!("{}=>{};", d.prefix, d.dst));
    }
    Dtab::parse(&text).map_err(AdminError::BadDtab)
}

fn authorize(s: &AdminState, headers: &HeaderMap) -> Result<(), AdminError> {
    let Some(token) = &s.token else { return Ok(()) };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
        _ => Err(AdminError::Unauthorized),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Every way an admin request can fail, and its response.
#[derive(Debug)]
pub enum AdminError {
    NotFound,
    UnknownRouter(String),
    BadDtab(ParseError),
    BadRequest(String),
    Stale {
        current: String,
    },
    /// The router's shared dtab store could not be written.
    StoreUnavailable(String),
    Unauthorized,
    Internal(String),
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound => write!(f, "not found"),
            Self::UnknownRouter(l) => write!(f, "no router labelled {l:?}"),
            Self::BadDtab(e) => write!(f, "malformed dtab: {e}"),
            Self::BadRequest(m) => write!(f, "{m}"),
            Self::Stale { current } => write!(f, "If-Match does not match the current dtab version {current}"),
            Self::Unauthorized => write!(f, "admin writes require a valid 'Authorization: Bearer <token>'"),
            Self::Internal(m) => write!(f, "internal error: {m}"),
            Self::StoreUnavailable(m) => write!(f, "the dtab store is unavailable; nothing changed: {m}"),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::NotFound | Self::UnknownRouter(_) => StatusCode::NOT_FOUND,
            Self::BadDtab(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Stale { .. } => StatusCode::PRECONDITION_FAILED,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut body = json!({ "error": self.to_string() });
        if let Self::BadDtab(e) = &self {
            body["line"] = json!(e.line);
            body["column"] = json!(e.column);
        }
        if let Self::Stale { current } = &self {
            body["current"] = json!(current);
        }
        (status, Json(body)).into_response()
    }
}
