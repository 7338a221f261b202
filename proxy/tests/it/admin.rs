//! Admin API tests over real sockets: ping/ready, dtab read/write with versions, bad dtabs, delegator, metrics.

use crate::support::*;
use http::StatusCode;

fn dtab(text: &str) -> switchyard_dtab::Dtab {
    switchyard_dtab::Dtab::parse(text).expect("valid dtab")
}

fn yaml(app_port: u16, token: &str) -> String {
    format!(
        "admin: {{ip: 127.0.0.1, port: 0{token}}}
namers:
- kind: io.l5d.fs
  rootDir: {{registry}}
routers:
- protocol: http
  label: egress
  dtab: |
    /svc => /#/io.l5d.fs;
    /svc/direct => /$/inet/127.1/{app_port};
  servers:
  - {{ip: 127.0.0.1, port: 0}}
- protocol: http
  label: ingress
  dtab: /svc/* => /$/inet/127.1/{app_port};
  servers:
  - {{ip: 127.0.0.1, port: 0}}
"
    )
}

#[tokio::test]
async fn ping_ready_config() {
    let sc = Sidecar::start(&yaml(1, "")).await;
    let (s, _, body) = admin(sc.admin(), "GET", "/admin/ping", &[], "").await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "pong"));
    let (s, _, _) = admin(sc.admin(), "GET", "/admin/ready", &[], "").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, body) = admin(sc.admin(), "GET", "/config.json", &[], "").await;
    assert_eq!(s, StatusCode::OK);
    let cfg: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cfg["routers"][0]["label"], "egress");
    let (s, _, body) = admin(sc.admin(), "GET", "/nope", &[], "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body.contains("error"));
}

#[tokio::test]
async fn dtab_versions_and_if_match() {
    let sc = Sidecar::start(&yaml(1, "")).await;
    let a = sc.admin();
    let (s, h, body) = admin(a, "GET", "/dtab/egress", &[], "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(dtab(&body), dtab("/svc=>/#/io.l5d.fs;/svc/direct=>/$/inet/127.1/1;"), "{body}");
    let etag = h["etag"].to_str().unwrap().to_string();

    let (s, h, _) = admin(a, "PUT", "/dtab/egress", &[("if-match", &etag)], "/svc => /$/inet/127.1/1;").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let new_etag = h["etag"].to_str().unwrap().to_string();
    assert_ne!(new_etag, etag);

    // The old version is now stale: refused, nothing changes.
    let (s, _, body) = admin(a, "PUT", "/dtab/egress", &[("if-match", &etag)], "/svc => /$/inet/127.1/2;").await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{body}");
    let (_, h, body) = admin(a, "GET", "/dtab/egress", &[], "").await;
    assert_eq!(dtab(&body), dtab("/svc=>/$/inet/127.1/1;"));
    assert_eq!(h["etag"].to_str().unwrap(), new_etag);

    let (s, _, _) = admin(a, "GET", "/dtab/nonexistent", &[], "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // JSON in and out.
    let (s, _, body) = admin(
        a,
        "PUT",
        "/dtab/egress",
        &[("content-type", "application/json")],
        r#"[{"prefix":"/svc","dst":"/$/inet/127.1/3"}]"#,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let (_, _, body) = admin(a, "GET", "/dtab/egress", &[("accept", "application/json")], "").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["dst"], "/$/inet/127.1/3");
}

#[tokio::test]
async fn malformed_dtab_is_rejected_with_position_and_old_one_kept() {
    let sc = Sidecar::start(&yaml(1, "")).await;
    let a = sc.admin();
    let (_, h0, before) = admin(a, "GET", "/dtab/egress", &[], "").await;
    let (s, _, body) = admin(a, "PUT", "/dtab/egress", &[], "/svc => /#/io.l5d.fs;\n/svc/x => /a & ;").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["line"], 2, "{body}");
    assert!(v["column"].as_u64().unwrap() > 1, "{body}");
    assert!(v["error"].as_str().unwrap().contains("line 2"), "{body}");
    let (_, h1, after) = admin(a, "GET", "/dtab/egress", &[], "").await;
    assert_eq!(before, after);
    assert_eq!(h0["etag"], h1["etag"]);
    let (_, _, metrics) = admin(a, "GET", "/admin/metrics/prometheus", &[], "").await;
    assert!(metrics.contains(r#"switchyard_dtab_updates_total{result="invalid",router="egress"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"switchyard_dtab_generation{router="egress"} 1"#));
}

#[tokio::test]
async fn writes_need_the_token_when_configured() {
    let sc = Sidecar::start(&yaml(1, ", token: s3cret")).await;
    let a = sc.admin();
    let (s, _, _) = admin(a, "PUT", "/dtab/egress", &[], "/svc=>/$/nil;").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = admin(a, "PUT", "/dtab/egress", &[("authorization", "Bearer wrong")], "/svc=>/$/nil;").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = admin(a, "PUT", "/dtab/egress", &[("authorization", "Bearer s3cret")], "/svc=>/$/nil;").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, _, cfg) = admin(a, "GET", "/config.json", &[], "").await;
    assert!(!cfg.contains("s3cret"), "the token is never shown: {cfg}");
}

#[tokio::test]
async fn delegator_explains_step_by_step() {
    let app = Upstream::start("app").await;
    let sc = Sidecar::start(&yaml(app.port(), "")).await;
    sc.register("forex-rate", &[app.addr]);
    let mut v = serde_json::Value::Null;
    for _ in 0..100 {
        let (s, _, body) =
            admin(sc.admin(), "GET", "/delegator.json?router=egress&path=/svc/forex-rate", &[], "").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        v = serde_json::from_str(&body).unwrap();
        if v["tree"]["delegate"]["type"] == "leaf" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(v["tree"]["type"], "delegate", "{v}");
    let leaf = &v["tree"]["delegate"];
    assert_eq!(leaf["dentry"]["prefix"], "/svc", "the step names the dentry that rewrote it: {v}");
    assert_eq!(leaf["type"], "leaf", "{v}");
    assert_eq!(leaf["path"], "/#/io.l5d.fs/forex-rate");
    assert_eq!(leaf["bound"]["endpoints"][0], app.addr.to_string());

    // A proposed dtab can be tried without applying it.
    let q = "/delegator.json?router=egress&path=/svc/forex-rate&dtab=%2Fsvc%3D%3E%21%3B";
    let (_, _, body) = admin(sc.admin(), "GET", q, &[], "").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["tree"]["delegate"]["type"], "fail", "{v}");
    let (s, _, body) = admin(sc.admin(), "GET", "/delegator.json?path=not-a-path", &[], "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn metrics_count_every_hop() {
    let app = Upstream::start("app").await;
    let sc = Sidecar::start(&yaml(app.port(), "")).await;
    for _ in 0..3 {
        let resp = get(sc.addr("ingress"), "forex-rate", "/", &[]).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let _ = text(resp).await;
    }
    let resp = get(sc.addr("egress"), "nobody", "/", &[]).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let (_, h, m) = admin(sc.admin(), "GET", "/metrics", &[], "").await;
    assert!(h["content-type"].to_str().unwrap().starts_with("text/plain"));
    let want = [
        r#"switchyard_route_requests_total{router="ingress",service="/svc/forex-rate"} 3"#.to_string(),
        format!(r#"switchyard_client_requests_total{{client="/$/inet/127.1/{}",router="ingress"}} 3"#, app.port()),
        r#"switchyard_route_responses_total{classification="success",router="ingress",service="/svc/forex-rate",status_code="200"} 3"#.to_string(),
        r#"switchyard_proxy_errors_total{reason="unbound",router="egress"} 1"#.to_string(),
        r#"switchyard_server_requests_total{router="egress"} 1"#.to_string(),
        r#"switchyard_route_response_latency_seconds_count{router="ingress",service="/svc/forex-rate"} 3"#.to_string(),
    ];
    for w in want {
        assert!(m.contains(&w), "missing {w}\n{m}");
    }
}
