//! All three services in-process on real sockets: web → converter → rate,
//! with the real ECB data and no sidecars in between.

use super::support::{get_json, get_raw, peer, rate_app, s, spawn};
use axum::http::StatusCode;

#[tokio::test]
async fn a_conversion_through_all_three_services() {
    let rate = spawn(rate_app()).await;
    let converter = forex::converter::app(forex::converter::ConverterState { rates: peer(rate, "forex-rate", 3000) });
    let converter = spawn(converter).await;
    let web = forex::web::app(forex::web::WebState { converter: peer(converter, "forex-converter", 3000) });

    // 100 × 115.24 / 1.1156 = 10329.867… JPY → 10,330.
    let (status, _, html) = get_raw(web.clone(), "/?date=2016-09-05&amount=100&from=USD&to=JPY").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("100.00 USD = 10,330 JPY</div><div class=\"meta\">on 2016-09-05 (rate 103.2986733596, ECB reference of 2016-09-05)"),
        "{html}"
    );
    // The currency list for the form came from forex-rate: CYP was still there in 2005.
    // 5 / 0.5751 = 8.694… EUR.
    let (_, _, html) = get_raw(web.clone(), "/?date=2005-06-01&amount=5&from=CYP&to=EUR").await;
    assert!(html.contains("<option value=\"CYP\" selected>CYP</option>"), "{html}");
    assert!(html.contains("5.00 CYP = 8.69 EUR"), "{html}");

    let (status, v) = get_json(web.clone(), "/api/convert?date=2015-12-25&amount=1000&from=EUR&to=GBP").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!((s(&v, "converted"), s(&v, "effective_date")), ("734.20", "2015-12-24"));

    let (status, v) = get_json(web, "/api/convert?date=2016-09-05&amount=1&from=CYP&to=EUR").await;
    assert_eq!((status, s(&v, "field")), (StatusCode::BAD_REQUEST, "from"));
    assert!(s(&v, "error").contains("last published 2007-12-31"), "{v}");
}
