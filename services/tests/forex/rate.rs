//! forex-rate against the real ECB data.

use super::support::{get_json, get_raw, rate_app, s};
use axum::body::Body;
use axum::http::{Request, StatusCode};

#[tokio::test]
async fn known_rate_straight_from_the_csv() {
    let (status, v) = get_json(rate_app(), "/2016-09-05/USD/JPY").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        serde_json::json!({
            "date": "2016-09-05", "effective_date": "2016-09-05", "from": "USD", "to": "JPY",
            "rate": "103.2986733596", "from_per_eur": "1.1156", "to_per_eur": "115.24",
        })
    );
}

#[tokio::test]
async fn first_day_and_euro_base() {
    let (status, v) = get_json(rate_app(), "/1999-01-04/EUR/USD").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((s(&v, "rate"), s(&v, "from_per_eur"), s(&v, "to_per_eur")), ("1.1789", "1", "1.1789"));
    let (_, v) = get_json(rate_app(), "/2016-09-05/USD/EUR").await;
    assert_eq!(s(&v, "rate"), "0.8963786303");
    let (_, v) = get_json(rate_app(), "/2016-09-05/EUR/EUR").await;
    assert_eq!(s(&v, "rate"), "1");
}

#[tokio::test]
async fn weekends_holidays_and_recent_days_use_the_previous_business_day() {
    for (asked, effective) in [
        ("2016-09-03", "2016-09-02"), // Saturday
        ("2016-09-04", "2016-09-02"), // Sunday
        ("2015-12-25", "2015-12-24"), // Christmas
        ("2015-12-27", "2015-12-24"),
        ("2026-11-22", "2026-10-30"), // after the last row, up to today
    ] {
        let (status, v) = get_json(rate_app(), &format!("/{asked}/usd/jpy")).await;
        assert_eq!(status, StatusCode::OK, "{asked}: {v}");
        assert_eq!((s(&v, "date"), s(&v, "effective_date")), (asked, effective));
        assert_eq!((s(&v, "from"), s(&v, "to")), ("USD", "JPY"));
    }
    let (_, v) = get_json(rate_app(), "/2015-12-25/EUR/GBP").await;
    assert_eq!(s(&v, "rate"), "0.7342");
}

#[tokio::test]
async fn every_error_says_what_is_wrong() {
    let cases = [
        ("/2016-9-05/USD/JPY", 400, "malformed date '2016-9-05'", Some("date")),
        ("/2016-02-30/USD/JPY", 400, "no such calendar day", Some("date")),
        ("/2016-09-05/US/JPY", 400, "malformed currency code 'US'", Some("from")),
        ("/2016-09-05/USD/J1Y", 400, "malformed currency code 'J1Y'", Some("to")),
        ("/1998-12-31/USD/JPY", 404, "before 1999-01-04", Some("date")),
        ("/2026-11-23/USD/JPY", 404, "in the future (today is 2026-11-22)", Some("date")),
        ("/2016-09-05/XYZ/JPY", 404, "unknown currency 'XYZ'", Some("from")),
        ("/2016-09-05/USD/abc", 404, "unknown currency 'ABC'", Some("to")),
        ("/2016-09-05/CYP/USD", 404, "no ECB rate for CYP on 2016-09-05 (last published 2007-12-31)", Some("from")),
        ("/1999-01-04/USD/RON", 404, "no ECB rate for RON on 1999-01-04 (first published 2005-07-01)", Some("to")),
        ("/nothing/here", 404, "no route for GET /nothing/here", None),
        ("/a/b/c/d", 404, "no route", None),
    ];
    for (uri, status, needle, field) in cases {
        let (got, v) = get_json(rate_app(), uri).await;
        assert_eq!(got.as_u16(), status, "{uri}: {v}");
        assert!(s(&v, "error").contains(needle), "{uri}: {v}");
        assert_eq!(v["field"].as_str(), field, "{uri}: {v}");
    }
}

#[tokio::test]
async fn wrong_method_is_json_405() {
    let request = Request::post("/2016-09-05/USD/JPY").body(Body::empty()).expect("request");
    let (status, content_type, body) = super::support::send(rate_app(), request).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(content_type, "application/json");
    assert!(body.contains("not allowed"), "{body}");
}

#[tokio::test]
async fn currencies_on_a_date() {
    let (status, v) = get_json(rate_app(), "/currencies/2016-09-04").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((s(&v, "date"), s(&v, "effective_date")), ("2016-09-04", "2016-09-02"));
    let list: Vec<&str> = v["currencies"].as_array().expect("array").iter().filter_map(|c| c.as_str()).collect();
    assert_eq!(list.len(), 32);
    assert!(list.windows(2).all(|w| w[0] < w[1]), "sorted: {list:?}");
    assert!(list.contains(&"EUR") && list.contains(&"USD") && !list.contains(&"CYP"));
    let (status, _) = get_json(rate_app(), "/currencies/1990-01-01").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn history_of_a_pair() {
    let (status, v) = get_json(rate_app(), "/history/USD/JPY?start=2016-09-01&end=2016-09-07").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let points = v["points"].as_array().expect("points");
    let dates: Vec<&str> = points.iter().map(|p| s(p, "date")).collect();
    assert_eq!(dates, ["2016-09-01", "2016-09-02", "2016-09-05", "2016-09-06", "2016-09-07"]);
    assert_eq!(s(&points[2], "rate"), "103.2986733596");
    // Days where one side has no rate are left out.
    let (_, v) = get_json(rate_app(), "/history/CYP/EUR?start=2007-12-28&end=2008-01-03").await;
    let dates: Vec<&str> = v["points"].as_array().expect("points").iter().map(|p| s(p, "date")).collect();
    assert_eq!(dates, ["2007-12-28", "2007-12-31"]);
}

#[tokio::test]
async fn history_errors() {
    for (uri, field, needle) in [
        ("/history/USD/JPY?end=2016-09-07", "start", "missing query parameter 'start'"),
        ("/history/USD/JPY?start=2016-09-07&end=2016-09-01", "end", "before start"),
        ("/history/USD/JPY?start=2000-01-01&end=2010-01-02", "end", "longer than 10 years"),
        ("/history/USD/JPY?start=2000-01-01&end=2010-1-1", "end", "malformed date"),
    ] {
        let (status, v) = get_json(rate_app(), uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert_eq!(s(&v, "field"), field, "{uri}");
        assert!(s(&v, "error").contains(needle), "{uri}: {v}");
    }
    let (status, _) = get_json(rate_app(), "/history/USD/JPY?start=2000-01-01&end=2010-01-01").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn health() {
    let (status, body) = get_json(rate_app(), "/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({"status": "ok", "service": "forex-rate"}));
    let (status, _, _) = get_raw(rate_app(), "/health").await;
    assert_eq!(status, StatusCode::OK);
}
