//! forex-web against fake converters on 127.0.0.1:0.

use super::support::{dead_address, get_json, get_raw, peer, spawn};
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use forex::web::{app, WebState};
use serde_json::json;
use std::collections::HashMap;

/// A converter that converts anything to 11,432 JPY, and rejects amounts
/// that are not digits the way the real one does, echoing the input.
fn fake_converter() -> Router {
    Router::new()
        .route(
            "/convert",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                let amount = q.get("amount").cloned().unwrap_or_default();
                if !amount.bytes().all(|b| b.is_ascii_digit()) {
                    let body = json!({"error": format!("amount '{amount}' is not a number"), "field": "amount"});
                    return (StatusCode::BAD_REQUEST, Json(body)).into_response();
                }
                Json(json!({
                    "date": q.get("date"), "effective_date": "2016-09-02", "from": "USD", "to": "JPY",
                    "amount": amount, "converted": "11432", "rate": "102.5",
                    "display": {"amount": "100.00 USD", "converted": "11,432 JPY"},
                }))
                .into_response()
            }),
        )
        .route(
            "/currencies",
            get(|| async { Json(json!({"date": "2016-09-04", "effective_date": "2016-09-02", "currencies": ["CYP", "EUR", "JPY", "USD"]})) }),
        )
}

async fn web_over(converter: Router) -> Router {
    let addr = spawn(converter).await;
    app(WebState { converter: peer(addr, "forex-converter", 2000) })
}

async fn web_without_converter() -> Router {
    app(WebState { converter: peer(dead_address().await, "forex-converter", 500) })
}

#[tokio::test]
async fn the_form_renders_with_defaults_and_fallback_currencies() {
    let (status, content_type, html) = get_raw(web_without_converter().await, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(html.contains("<form method=\"get\" action=\"/\">"));
    assert!(html.contains("name=\"amount\" inputmode=\"decimal\" value=\"100\""));
    assert!(html.contains("<option value=\"USD\" selected>USD</option>"));
    assert!(html.contains("<option value=\"JPY\" selected>JPY</option>"));
    assert!(html.contains("<option value=\"EUR\">EUR</option>"));
    let today = forex::common::Date::today().to_string();
    assert!(html.contains(&format!("name=\"date\" value=\"{today}\"")));
    assert!(!html.contains("class=\"error\""), "no error before a submission");
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
}

#[tokio::test]
async fn a_conversion_shows_its_result() {
    let web = web_over(fake_converter()).await;
    let (status, _, html) = get_raw(web, "/?date=2016-09-04&amount=100&from=USD&to=JPY").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("100.00 USD = 11,432 JPY"), "{html}");
    assert!(html.contains("on 2016-09-04 (rate 102.5, ECB reference of 2016-09-02)"), "{html}");
    // The currency list came from the converter.
    assert!(html.contains("<option value=\"CYP\">CYP</option>"));
}

#[tokio::test]
async fn input_errors_show_on_the_page_with_status_200() {
    let web = web_over(fake_converter()).await;
    let (status, _, html) = get_raw(web, "/?date=2016-09-04&amount=lots&from=USD&to=JPY").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<div class=\"error\" role=\"alert\">amount &#39;lots&#39; is not a number</div>"), "{html}");
    assert!(html.contains("<label class=\"bad\">Amount"));
    assert!(html.contains("value=\"lots\""), "the typed value stays in the form");
}

#[tokio::test]
async fn hostile_input_is_escaped_everywhere() {
    let web = web_over(fake_converter()).await;
    let uri = "/?date=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E&amount=%3Cimg%20src%3Dx%20onerror%3Dalert(2)%3E&from=%3Cb%3E&to=JPY";
    let (status, _, html) = get_raw(web, uri).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(!html.contains("<b>"), "{html}");
    assert!(html.contains("value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\""), "{html}");
    assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;"), "{html}");
}

#[tokio::test]
async fn converter_down_gives_a_friendly_page_without_internals() {
    let (status, _, html) =
        get_raw(web_without_converter().await, "/?date=2016-09-05&amount=100&from=USD&to=JPY").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("exchange rates are not available right now"), "{html}");
    assert!(!html.contains("127.0.0.1") && !html.contains("refused") && !html.contains("forex-converter"), "{html}");
}

#[tokio::test]
async fn api_passes_the_converter_json_and_status_through() {
    let web = web_over(fake_converter()).await;
    let (status, v) = get_json(web.clone(), "/api/convert?date=2016-09-04&amount=100&from=USD&to=JPY").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["converted"], "11432");
    assert_eq!(v["date"], "2016-09-04");
    let (status, v) = get_json(web, "/api/convert?date=2016-09-04&amount=x&from=USD&to=JPY").await;
    assert_eq!((status, v["field"].as_str()), (StatusCode::BAD_REQUEST, Some("amount")));

    let (status, v) = get_json(web_without_converter().await, "/api/convert?amount=1").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(v["error"], "conversion is not available right now", "no peer name, address or cause: {v}");

    let sidecar =
        Router::new().fallback(|| async { (StatusCode::SERVICE_UNAVAILABLE, [("l5d-err", "no endpoints")], "down") });
    let (status, v) = get_json(web_over(sidecar).await, "/api/convert?amount=1").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["error"], "conversion is not available right now", "{v}");

    // A converter's own 5xx JSON (naming its peer and an address) is not passed on either.
    let leaky = Router::new().fallback(|| async {
        let body = json!({"error": "rates unavailable: forex-rate: cannot reach it: 10.0.0.7:8080 refused"});
        (StatusCode::BAD_GATEWAY, Json(body))
    });
    let (status, v) = get_json(web_over(leaky).await, "/api/convert?amount=1").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(!v.to_string().contains("10.0.0.7") && !v.to_string().contains("forex-rate"), "{v}");
}

#[tokio::test]
async fn health_and_unknown_routes() {
    let web = web_without_converter().await;
    let (status, v) = get_json(web.clone(), "/health").await;
    assert_eq!((status, v["service"].as_str()), (StatusCode::OK, Some("forex-web")));
    let (status, v) = get_json(web, "/favicon.ico").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(v["error"].as_str().unwrap_or("").contains("no route"));
}
