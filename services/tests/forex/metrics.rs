//! The services' own metrics at `GET /metrics`: labelled by matched route, peer calls counted by outcome.

use super::support::{dead_address, get_raw, peer, rate_app, rate_app_from_csv, spawn};
use axum::http::StatusCode;
use forex::common::metrics::instrument;
use forex::common::ServiceMetrics;
use forex::converter::{app as converter_app, ConverterState};

const CSV: &str = "Date,USD,JPY,\n2016-09-05,2,10,\n";

/// The value of the sample written exactly as `series` (name and labels), if the exposition has it.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(app: axum::Router) -> String {
    let (status, content_type, text) = get_raw(app, "/metrics").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    text
}

#[tokio::test]
async fn requests_are_counted_by_matched_route_not_raw_path() {
    let app = instrument(rate_app(), ServiceMetrics::new());
    for uri in ["/2016-09-05/USD/JPY", "/2016-09-02/USD/GBP", "/2016-09-05/USD/XXX"] {
        get_raw(app.clone(), uri).await;
    }
    get_raw(app.clone(), "/no/such/path/at/all").await;
    get_raw(app.clone(), "/another-random-probe").await;
    let text = scrape(app).await;

    let route = r#"method="GET",route="/{date}/{from}/{to}""#;
    assert_eq!(
        sample(&text, &format!(r#"forex_http_requests_total{{{route},status_code="200"}}"#)),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!(r#"forex_http_requests_total{{{route},status_code="404"}}"#)),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"forex_http_requests_total{method="GET",route="unmatched",status_code="404"}"#),
        Some(2.0),
        "unmatched paths share one series: {text}"
    );
    assert!(!text.contains("2016-09-05"), "no raw path leaks into a label: {text}");
    // Every request lands in the histogram; forex-rate answers from memory, so most fall below a millisecond
    // only on a fast machine — assert the count, not the time.
    assert_eq!(sample(&text, &format!(r#"forex_http_request_duration_seconds_count{{{route}}}"#)), Some(3.0), "{text}");
    assert!(text.contains(&format!(r#"forex_http_request_duration_seconds_bucket{{{route},le="0.00005"}}"#)), "{text}");
}

#[tokio::test]
async fn peer_calls_are_counted_by_status_or_failure() {
    let metrics = ServiceMetrics::new();
    let rate = spawn(rate_app_from_csv(CSV)).await;
    let healthy = converter_app(ConverterState { rates: peer(rate, "forex-rate", 3000).with_metrics(&metrics) });
    let healthy = instrument(healthy, metrics.clone());
    let (status, _, body) = get_raw(healthy.clone(), "/convert?date=2016-09-05&from=USD&to=JPY&amount=1").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let dead = dead_address().await;
    let broken = converter_app(ConverterState { rates: peer(dead, "forex-rate", 3000).with_metrics(&metrics) });
    let broken = instrument(broken, metrics.clone());
    let (status, _, body) = get_raw(broken, "/convert?date=2016-09-05&from=USD&to=JPY&amount=1").await;
    assert!(status.is_server_error(), "{status} {body}");
    let text = scrape(healthy).await;

    let answered = sample(&text, r#"forex_peer_requests_total{error_type="",peer="forex-rate",status_code="200"}"#);
    assert!(answered.is_some_and(|n| n >= 1.0), "answered calls counted: {text}");
    assert_eq!(
        sample(&text, r#"forex_peer_requests_total{error_type="transport",peer="forex-rate",status_code=""}"#),
        Some(1.0),
        "the refused call counted as a transport error: {text}"
    );
    let failed =
        format!(r#"forex_http_requests_total{{method="GET",route="/convert",status_code="{}"}}"#, status.as_str());
    assert_eq!(sample(&text, &failed), Some(1.0), "{text}");
}
