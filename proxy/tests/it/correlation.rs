//! Request correlation across hops: `l5d-reqid`, `traceparent` and the per-router access log.

use std::time::Duration;

use crate::support::*;
use http::StatusCode;

#[tokio::test]
async fn ids_propagate_and_reach_the_access_log() {
    let app = Upstream::start("app").await;
    let log = std::env::temp_dir().join(format!("sy-access-test-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let yaml = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}
routers:
- protocol: http
  label: egress
  httpAccessLog: {}
  dtab: /svc => /$/inet/127.1/{};
  servers: [{{ip: 127.0.0.1, port: 0}}]
",
        log.display(),
        app.port()
    );
    let sc = Sidecar::start(&yaml).await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let resp =
        get(sc.addr("egress"), "forex-rate", "/2016-09-05/USD/JPY", &[("traceparent", tp), ("l5d-reqid", "req-42")])
            .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["l5d-reqid"], "req-42", "the request id is echoed");
    let seen = app.last_seen();
    assert_eq!(seen.headers["l5d-reqid"], "req-42");
    let out = seen.headers["traceparent"].to_str().unwrap().to_string();
    assert!(out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "same trace: {out}");
    assert!(!out.contains("00f067aa0ba902b7"), "new span for this hop: {out}");

    // Without ids, the proxy makes them.
    let resp = get(sc.addr("egress"), "forex-rate", "/", &[]).await;
    let reqid = resp.headers()["l5d-reqid"].to_str().unwrap().to_string();
    assert_eq!(reqid.len(), 16);
    assert_eq!(app.last_seen().headers["l5d-reqid"], reqid.as_str());

    // A failed request is logged too.
    let resp = get(sc.addr("egress"), "", "/", &[]).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].contains(r#" egress 127.0.0.1 "GET /2016-09-05/USD/JPY HTTP/1.1" 200 "#), "{}", lines[0]);
    assert!(lines[0].contains("service=/svc/forex-rate"), "{}", lines[0]);
    assert!(lines[0].contains(&format!("client=/$/inet/127.1/{}", app.port())), "{}", lines[0]);
    assert!(lines[0].contains("reqid=req-42 trace=4bf92f3577b34da6a3ce929d0e0e4736"), "{}", lines[0]);
    assert!(lines[1].contains(&format!("reqid={reqid}")), "{}", lines[1]);
    assert!(lines[2].contains(" 400 ") && lines[2].contains("service=- client=-"), "{}", lines[2]);
    let _ = std::fs::remove_file(log);
}

#[tokio::test]
async fn an_unopenable_access_log_fails_start_up_clearly() {
    let yaml = "admin: {ip: 127.0.0.1, port: 0}
routers:
- protocol: http
  httpAccessLog: /nonexistent-dir/x/access.log
  servers: [{ip: 127.0.0.1, port: 0}]
";
    let cfg = switchyard::config::load(yaml).unwrap().config;
    let err = switchyard::app::start(cfg, Duration::from_secs(1)).await.err().expect("start fails");
    assert!(err.to_string().contains("cannot open httpAccessLog /nonexistent-dir/x/access.log"), "{err}");
}
