//! Shared test helpers: the rate table, request helpers and servers on port 0.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use forex::common::settings::{PeerName, PeerUrl};
use forex::common::{Date, PeerClient, PeerSettings};
use forex::rate::{Clock, RateState, RateTable};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tower::ServiceExt;

/// "Today" for tests of the real data, fixed so results never change.
pub const TODAY: &str = "2026-11-22";

/// The embedded ECB history, loaded once per test binary.
pub fn table() -> Arc<RateTable> {
    static TABLE: OnceLock<Arc<RateTable>> = OnceLock::new();
    TABLE.get_or_init(|| Arc::new(RateTable::load_embedded().expect("embedded data loads"))).clone()
}

pub fn date(s: &str) -> Date {
    s.parse().expect("valid date")
}

/// forex-rate over the real data, with today fixed at [`TODAY`].
pub fn rate_app() -> Router {
    forex::rate::app(RateState { table: table(), clock: Clock::Fixed(date(TODAY)) })
}

/// forex-rate over a small hand-written CSV.
pub fn rate_app_from_csv(csv: &str) -> Router {
    let table = RateTable::from_csv(csv).expect("test CSV parses");
    forex::rate::app(RateState { table: Arc::new(table), clock: Clock::Fixed(date(TODAY)) })
}

/// Sends a GET through `oneshot`; returns status, content type and body text.
pub async fn get_raw(app: Router, uri: &str) -> (StatusCode, String, String) {
    send(app, Request::get(uri).body(Body::empty()).expect("request")).await
}

pub async fn send(app: Router, request: Request<Body>) -> (StatusCode, String, String) {
    let response = app.oneshot(request).await.expect("infallible");
    let status = response.status();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = axum::body::to_bytes(response.into_body(), 1 << 22).await.expect("body");
    (status, content_type, String::from_utf8(body.to_vec()).expect("utf-8 body"))
}

/// A GET whose answer must be JSON; returns status and the parsed body.
pub async fn get_json(app: Router, uri: &str) -> (StatusCode, Value) {
    let (status, content_type, body) = get_raw(app, uri).await;
    assert_eq!(content_type, "application/json", "{uri}: {body}");
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {body}"));
    (status, value)
}

/// Serves `app` on 127.0.0.1:0 in the background; returns its address.
pub async fn spawn(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// An address nothing listens on (bound, then released).
pub async fn dead_address() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

/// A peer client for `addr`, naming the peer `name`.
pub fn peer(addr: SocketAddr, name: &str, timeout_ms: u64) -> PeerClient {
    PeerClient::new(PeerSettings {
        url: PeerUrl::new(&format!("http://{addr}")).expect("url"),
        name: PeerName::new(name).expect("name"),
        timeout: Duration::from_millis(timeout_ms),
    })
}

/// `value[key]` as a string.
pub fn s<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_else(|| panic!("no string '{key}' in {value}"))
}
