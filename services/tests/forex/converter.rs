//! forex-converter against a real forex-rate (small CSV) and against fake,
//! failing peers, all on 127.0.0.1:0.

use super::support::{dead_address, get_json, peer, rate_app_from_csv, s, spawn};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use forex::converter::{app, ConverterState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Rates chosen so results are easy to check by hand and land exactly on .5.
const CSV: &str = "Date,USD,JPY,GBP,CYP,\n2016-09-05,2,10,1.005,N/A,\n2016-09-02,2,10,1.005,0.5,\n";

async fn converter_over_small_csv() -> Router {
    let rate = spawn(rate_app_from_csv(CSV)).await;
    app(ConverterState { rates: peer(rate, "forex-rate", 3000) })
}

async fn converter_over(fake: Router, timeout_ms: u64) -> Router {
    let addr = spawn(fake).await;
    app(ConverterState { rates: peer(addr, "forex-rate", timeout_ms) })
}

#[tokio::test]
async fn converts_with_half_up_rounding_and_display() {
    let app = converter_over_small_csv().await;
    // 1234.5 × 10 / 2 = 6172.5 JPY → 6173 (JPY has no minor unit).
    let (status, v) = get_json(app.clone(), "/convert?date=2016-09-04&from=usd&to=JPY&amount=1234.5").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        serde_json::json!({
            "date": "2016-09-04", "effective_date": "2016-09-02", "from": "USD", "to": "JPY",
            "amount": "1234.5", "converted": "6173", "rate": "5",
            "display": {"amount": "1,234.50 USD", "converted": "6,173 JPY"},
        })
    );
    // 1 EUR × 1.005 = 1.005 GBP → 1.01 (banker's rounding would give 1.00).
    let (_, v) = get_json(app.clone(), "/convert?date=2016-09-05&from=EUR&to=GBP&amount=1").await;
    assert_eq!((s(&v, "converted"), s(&v["display"], "converted")), ("1.01", "1.01 GBP"));
    // Two decimals kept for a two-decimal currency.
    let (_, v) = get_json(app, "/convert?date=2016-09-05&from=JPY&to=USD&amount=1000").await;
    assert_eq!((s(&v, "converted"), s(&v, "rate")), ("200.00", "0.2"));
}

#[tokio::test]
async fn every_validation_error_names_its_field() {
    // Validation happens before any peer call, so the peer can be absent.
    let app = app(ConverterState { rates: peer(dead_address().await, "forex-rate", 500) });
    let ok = "date=2016-09-05&from=USD&to=JPY&amount=100";
    let cases = [
        ("from=USD&to=JPY&amount=100", "date", "missing field 'date'"),
        ("date=2016-09-05&to=JPY&amount=100", "from", "missing field 'from'"),
        ("date=2016-09-05&from=USD&amount=100", "to", "missing field 'to'"),
        ("date=2016-09-05&from=USD&to=JPY", "amount", "missing field 'amount'"),
        ("date=2016-09-05&from=USD&to=JPY&amount=", "amount", "missing field 'amount'"),
        ("date=05.09.2016&from=USD&to=JPY&amount=1", "date", "malformed date"),
        ("date=2016-02-30&from=USD&to=JPY&amount=1", "date", "no such calendar day"),
        ("date=2016-09-05&from=US&to=JPY&amount=1", "from", "malformed currency code 'US'"),
        ("date=2016-09-05&from=USD&to=%24%24%24&amount=1", "to", "malformed currency code '$$$'"),
        ("date=2016-09-05&from=USD&to=JPY&amount=ten", "amount", "not a number"),
        ("date=2016-09-05&from=USD&to=JPY&amount=1e3", "amount", "not a number"),
        ("date=2016-09-05&from=USD&to=JPY&amount=-5", "amount", "must not be negative"),
        ("date=2016-09-05&from=USD&to=JPY&amount=1000000000000001", "amount", "too large"),
        ("date=2016-09-05&from=USD&to=JPY&amount=1.123456789", "amount", "more than 8 decimal places"),
    ];
    for (query, field, needle) in cases {
        let (status, v) = get_json(app.clone(), &format!("/convert?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {v}");
        assert_eq!(s(&v, "field"), field, "{query}: {v}");
        assert!(s(&v, "error").contains(needle), "{query}: {v}");
    }
    // The same request, valid, gets past validation and fails on the absent peer.
    let (status, _) = get_json(app, &format!("/convert?{ok}")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn rate_service_input_errors_come_back_with_their_field() {
    let app = converter_over_small_csv().await;
    for (query, field, needle) in [
        ("date=2016-09-05&from=XYZ&to=JPY&amount=1", "from", "unknown currency 'XYZ'"),
        (
            "date=2016-09-05&from=USD&to=CYP&amount=1",
            "to",
            "no ECB rate for CYP on 2016-09-05 (last published 2016-09-02)",
        ),
        ("date=2016-09-01&from=USD&to=JPY&amount=1", "date", "first available date"),
        ("date=2999-01-01&from=USD&to=JPY&amount=1", "date", "in the future"),
    ] {
        let (status, v) = get_json(app.clone(), &format!("/convert?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {v}");
        assert_eq!(s(&v, "field"), field, "{query}: {v}");
        assert!(s(&v, "error").contains(needle), "{query}: {v}");
    }
}

const VALID: &str = "/convert?date=2016-09-05&from=USD&to=JPY&amount=100";

#[tokio::test]
async fn peer_down_is_a_json_502() {
    let app = app(ConverterState { rates: peer(dead_address().await, "forex-rate", 1000) });
    let (status, v) = get_json(app, VALID).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(s(&v, "error").starts_with("rate service unavailable: forex-rate: cannot reach it"), "{v}");
}

#[tokio::test]
async fn slow_peer_times_out_with_a_json_502() {
    let slow = Router::new().route(
        "/{date}/{from}/{to}",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "too late"
        }),
    );
    let (status, v) = get_json(converter_over(slow, 200).await, VALID).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(s(&v, "error").contains("no answer within 200 ms"), "{v}");
}

#[tokio::test]
async fn sidecar_failures_pass_on_status_class_and_l5d_err() {
    let sidecar_503 = Router::new().fallback(|| async {
        (StatusCode::SERVICE_UNAVAILABLE, [("l5d-err", "no endpoints for /svc/forex-rate")], "no endpoints")
    });
    let (status, v) = get_json(converter_over(sidecar_503, 1000).await, VALID).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(s(&v, "error").contains("l5d-err: no endpoints for /svc/forex-rate"), "{v}");
    assert!(v.get("field").is_none());

    // A 4xx that is not forex-rate's own input error (no field) is a mesh problem.
    let sidecar_400 = Router::new().fallback(|| async { (StatusCode::BAD_REQUEST, [("l5d-err", "bad name")], "x") });
    let (status, v) = get_json(converter_over(sidecar_400, 1000).await, VALID).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{v}");

    let crash = Router::new().fallback(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "panic at the disco") });
    let (status, v) = get_json(converter_over(crash, 1000).await, VALID).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(s(&v, "error"), "rate service unavailable: forex-rate answered 500 Internal Server Error");
}

#[tokio::test]
async fn garbage_from_the_peer_is_a_502() {
    for garbage in [
        "not json",
        r#"{"rate":"abc"}"#,
        r#"{"effective_date":"2016-09-05","rate":"1","from_per_eur":"0","to_per_eur":"1"}"#,
    ] {
        let fake = Router::new().fallback(move || async move { garbage });
        let (status, v) = get_json(converter_over(fake, 1000).await, VALID).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{garbage}");
        assert!(s(&v, "error").contains("cannot read"), "{v}");
    }
}

#[tokio::test]
async fn calls_carry_the_logical_peer_name_as_host() {
    let hosts = Arc::new(Mutex::new(Vec::new()));
    let seen = hosts.clone();
    let fake = Router::new().fallback(move |headers: HeaderMap| {
        let seen = seen.clone();
        async move {
            let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("").to_owned();
            seen.lock().expect("lock").push(host);
            axum::Json(serde_json::json!({
                "effective_date": "2016-09-05", "rate": "4", "from_per_eur": "1", "to_per_eur": "4"
            }))
            .into_response()
        }
    });
    let (status, v) = get_json(converter_over(fake, 1000).await, VALID).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(s(&v, "converted"), "400");
    assert_eq!(*hosts.lock().expect("lock"), vec!["forex-rate".to_owned()]);
}

#[tokio::test]
async fn currencies_for_the_form() {
    let app = converter_over_small_csv().await;
    let (status, v) = get_json(app.clone(), "/currencies?date=2016-09-05").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["currencies"], serde_json::json!(["EUR", "GBP", "JPY", "USD"]));
    let (status, v) = get_json(app.clone(), "/currencies?date=someday").await;
    assert_eq!((status, s(&v, "field")), (StatusCode::BAD_REQUEST, "date"));
    let (status, v) = get_json(app, "/health").await;
    assert_eq!((status, s(&v, "service")), (StatusCode::OK, "forex-converter"));
}

#[tokio::test]
async fn calls_forward_the_request_id_trace_and_linkerd_context() {
    let seen = Arc::new(Mutex::new(HeaderMap::new()));
    let store = seen.clone();
    let fake = Router::new().fallback(move |headers: HeaderMap| {
        let store = store.clone();
        async move {
            *store.lock().expect("lock") = headers;
            axum::Json(serde_json::json!({
                "effective_date": "2016-09-05", "rate": "4", "from_per_eur": "1", "to_per_eur": "4"
            }))
            .into_response()
        }
    });
    let app = converter_over(fake, 1000).await.layer(axum::middleware::from_fn(forex::common::context::capture));
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let request = axum::http::Request::builder()
        .uri(VALID)
        .header("l5d-reqid", "req-7")
        .header("traceparent", tp)
        .header("l5d-ctx-deadline", "1 2")
        .header("cookie", "secret=1")
        .body(axum::body::Body::empty())
        .expect("request");
    let (status, _, body) = super::support::send(app, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let h = seen.lock().expect("lock").clone();
    assert_eq!(h["l5d-reqid"], "req-7");
    assert_eq!(h["traceparent"], tp);
    assert_eq!(h["l5d-ctx-deadline"], "1 2");
    assert!(h.get("cookie").is_none(), "only context headers travel to the peer");
}
