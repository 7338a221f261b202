//! The admin dashboard's endpoints over real sockets: the page and its assets, `/admin/stats.json` (counters,
//! histogram buckets and endpoints per router, service and client) and `POST /dtab/{label}/validate` (errors with
//! line and column, a diff against the current dtab, nothing changed).

use crate::support::*;
use http::StatusCode;
use serde_json::Value;

fn yaml() -> String {
    "admin: {ip: 127.0.0.1, port: 0}
namers:
- kind: io.l5d.fs
  rootDir: {registry}
routers:
- protocol: http
  label: egress
  dtab: |
    /svc => /#/io.l5d.fs;
  servers:
  - {ip: 127.0.0.1, port: 0}
"
    .to_string()
}

async fn stats(sc: &Sidecar) -> Value {
    let (s, h, body) = admin(sc.admin(), "GET", "/admin/stats.json", &[], "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(h["content-type"].to_str().unwrap().starts_with("application/json"));
    serde_json::from_str(&body).unwrap()
}

fn find<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array().unwrap().iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no {name} in {list}"))
}

#[tokio::test]
async fn page_and_assets_are_served_from_the_binary() {
    let sc = Sidecar::start(&yaml()).await;
    for path in ["/", "/delegator"] {
        let (s, h, body) = admin(sc.admin(), "GET", path, &[], "").await;
        assert_eq!(s, StatusCode::OK);
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
        assert!(body.contains(r#"<script src="/admin/assets/dashboard.js">"#), "{body}");
        // The no-script snapshot carries the current dtab.
        assert!(body.contains("/svc =&gt; /#/io.l5d.fs;"), "{body}");
        assert!(!body.contains("{{"), "unfilled placeholder in {body}");
        // Nothing from the internet.
        assert!(!body.contains("http://") && !body.contains("https://"), "{body}");
    }
    let (s, h, js) = admin(sc.admin(), "GET", "/admin/assets/dashboard.js", &[], "").await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(js.contains("/admin/stats.json") && js.contains("/validate"));
    let (s, h, css) = admin(sc.admin(), "GET", "/admin/assets/dashboard.css", &[], "").await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/css"));
    assert!(css.contains(".tree"));
}

#[tokio::test]
async fn stats_count_traffic_per_service_and_client_with_buckets_and_endpoints() {
    let app = Upstream::start("rate").await;
    let sc = Sidecar::start(&yaml()).await;
    let idle = stats(&sc).await;
    let egress = &idle["routers"][0];
    assert_eq!(egress["label"], "egress");
    assert_eq!(egress["services"].as_array().unwrap().len(), 0, "no traffic, no services: {egress}");
    assert!(egress["etag"].as_str().unwrap().len() > 2, "{egress}");
    assert!(egress["dtab"].as_str().unwrap().contains("/svc => /#/io.l5d.fs;"), "{egress}");

    // Wait until the fs namer has seen the registration; these warm-up requests count too.
    sc.register("forex-rate", &[app.addr]);
    let mut warmup = 0;
    loop {
        warmup += 1;
        let resp = get(sc.addr("egress"), "forex-rate", "/", &[]).await;
        let ok = resp.status() == StatusCode::OK;
        let _ = text(resp).await;
        if ok || warmup == 50 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let before = stats(&sc).await;
    let b = find(&before["routers"][0]["services"], "/svc/forex-rate");
    let (req0, ok0, bad0) =
        (b["requests"].as_u64().unwrap(), b["success"].as_u64().unwrap(), b["failure"].as_u64().unwrap());
    // Warm-ups answered before the name first bound count under `unbound` (a name that never bound gets no series
    // of its own); from the first success on, under the name.
    let unbound = before["routers"][0]["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "unbound")
        .map_or(0, |s| s["requests"].as_u64().unwrap());
    assert_eq!((req0 + unbound, ok0 + bad0), (warmup, req0), "{b}");
    assert!(ok0 >= 1, "{b}");

    for _ in 0..3 {
        let resp = get(sc.addr("egress"), "forex-rate", "/", &[]).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let _ = text(resp).await;
    }
    let resp = get(sc.addr("egress"), "forex-rate", "/status/503", &[]).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let _ = text(resp).await;

    let after = stats(&sc).await;
    let bounds = after["latencyBounds"].as_array().unwrap().len();
    assert!(after["timeMs"].as_u64().unwrap() >= before["timeMs"].as_u64().unwrap());
    let egress = &after["routers"][0];
    assert_eq!(egress["requests"].as_u64(), Some(warmup + 4));
    let svc = find(&egress["services"], "/svc/forex-rate");
    let counts = (svc["requests"].as_u64(), svc["success"].as_u64(), svc["failure"].as_u64());
    assert_eq!(counts, (Some(req0 + 4), Some(ok0 + 3), Some(bad0 + 1)), "{svc}");
    assert_eq!(svc["status"]["200"].as_u64(), Some(ok0 + 3));
    assert_eq!(svc["status"]["503"], 1);
    assert_eq!(svc["latencyCount"].as_u64(), Some(req0 + 4));
    let buckets: Vec<u64> = svc["latencyBuckets"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap()).collect();
    assert_eq!(buckets.len(), bounds, "one cumulative count per bound");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "cumulative: {buckets:?}");
    assert!(*buckets.last().unwrap() <= req0 + 4);

    // Failed warm-up requests never reached a client; the four measured ones all did.
    let client = find(&egress["clients"], "/#/io.l5d.fs/forex-rate");
    let sent = client["requests"].as_u64().unwrap();
    assert!((4..=warmup + 4).contains(&sent), "{client}");
    assert_eq!(client["latencyCount"].as_u64(), Some(sent));
    let eps = client["endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 1, "{client}");
    assert_eq!(eps[0]["addr"], app.addr.to_string());
    assert_eq!(eps[0]["state"], "active");
    assert_eq!(eps[0]["inFlight"], 0);

    // A second instance joins with half the weight: the page lists it, with its weight, as the registry changes.
    let second = Upstream::start("rate2").await;
    std::fs::write(sc.registry.join("forex-rate"), format!("{}\n{} 0.5\n", app.addr, second.addr)).unwrap();
    let mut listed = Value::Null;
    for _ in 0..50 {
        let s = stats(&sc).await;
        let eps = find(&s["routers"][0]["clients"], "/#/io.l5d.fs/forex-rate")["endpoints"].clone();
        if eps.as_array().unwrap().len() == 2 {
            listed = eps;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let second_ep = listed.as_array().and_then(|a| a.iter().find(|e| e["addr"] == second.addr.to_string()));
    assert_eq!(
        second_ep.map(|e| (e["weight"].as_f64(), e["state"].as_str())),
        Some((Some(0.5), Some("active"))),
        "{listed}"
    );
}

#[tokio::test]
async fn validate_reports_position_and_diff_without_changing_anything() {
    let sc = Sidecar::start(&yaml()).await;
    let a = sc.admin();
    let (_, h, _) = admin(a, "GET", "/dtab/egress", &[], "").await;
    let etag = h["etag"].to_str().unwrap().to_string();

    let (s, _, body) = admin(a, "POST", "/dtab/egress/validate", &[], "/svc => /#/io.l5d.fs;\n/svc/x =>> /y;").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["line"].as_u64(), v["column"].as_u64()), (Some(2), Some(10)), "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("malformed dtab: line 2, column 10"), "{v}");

    let draft = "/svc => /#/io.l5d.fs;\n/svc/forex-rate => /$/inet/127.0.0.1/9;";
    let (s, _, body) = admin(a, "POST", "/dtab/egress/validate", &[], draft).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["changed"], true);
    assert_eq!(v["dentries"], 2);
    assert_eq!(v["current"]["etag"], etag.as_str());
    let diff: Vec<(String, String)> = v["diff"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["op"].as_str().unwrap().to_string(), l["text"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        diff,
        vec![
            ("same".to_string(), "/svc => /#/io.l5d.fs;".to_string()),
            ("add".to_string(), "/svc/forex-rate => /$/inet/127.0.0.1/9;".to_string()),
        ]
    );

    // The same dtab spelled differently is no change.
    let (_, _, body) = admin(a, "POST", "/dtab/egress/validate", &[], "  /svc=>/#/io.l5d.fs  ").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["changed"], false, "{v}");

    // Validation never changes the dtab.
    let (_, h, body) = admin(a, "GET", "/dtab/egress", &[], "").await;
    assert_eq!(h["etag"].to_str().unwrap(), etag);
    assert_eq!(body, "/svc => /#/io.l5d.fs;\n");

    let (s, _, _) = admin(a, "POST", "/dtab/nope/validate", &[], "/a=>/b").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = admin(a, "POST", "/dtab/egress/validate", &[], "\u{fffd}/a=>/b").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}
