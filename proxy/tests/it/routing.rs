//! In-process integration tests: the whole sidecar on port 0 with fake upstreams — routing per docs/dtab.md's
//! examples, live registry changes, hot dtab swaps under load, header hygiene, streaming, and error statuses.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use http::{Request, StatusCode};
use http_body_util::BodyExt;

fn egress_yaml(dtab: &str, extra_router: &str) -> String {
    format!(
        "admin: {{ip: 127.0.0.1, port: 0}}
namers:
- kind: io.l5d.fs
  rootDir: {{registry}}
routers:
- protocol: http
  label: egress
  dtab: |
{dtab}
  servers:
  - {{ip: 127.0.0.1, port: 0, clearContext: false}}
{extra_router}",
        dtab = dtab.lines().map(|l| format!("    {l}\n")).collect::<String>()
    )
}

const SETTLE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn fs_namer_routes_by_host() {
    let rate = Upstream::start("rate").await;
    let sc = Sidecar::start(&egress_yaml("/svc => /#/io.l5d.fs;", "")).await;
    sc.register("forex-rate", &[rate.addr]);
    eventually("registry picked up", SETTLE, || true).await;
    let mut body = String::new();
    for _ in 0..50 {
        let resp = get(sc.addr("egress"), "forex-rate", "/2016-09-05/USD/JPY", &[]).await;
        if resp.status() == StatusCode::OK {
            body = text(resp).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(body, "rate");
    let seen = rate.last_seen();
    assert_eq!(seen.uri, "/2016-09-05/USD/JPY", "a dtab never rewrites the request URI");
    assert_eq!(seen.headers["host"], "forex-rate", "Host is preserved");
    assert_eq!(seen.headers["l5d-dst-service"], "/svc/forex-rate");
    assert_eq!(seen.headers["l5d-dst-client"], "/#/io.l5d.fs/forex-rate");
    assert!(seen.headers.get("l5d-dst-residual").is_none());
}

/// Sends `n` requests for `host` and counts answers per upstream name (and failures under "error:<status>").
async fn tally(addr: std::net::SocketAddr, host: &str, n: usize) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for _ in 0..n {
        let resp = get(addr, host, "/", &[]).await;
        let key = if resp.status() == StatusCode::OK {
            text(resp).await
        } else {
            format!("error:{}", resp.status().as_u16())
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

async fn wait_for_upstream(addr: std::net::SocketAddr, host: &str, name: &str) {
    for _ in 0..250 {
        let resp = get(addr, host, "/", &[]).await;
        if resp.status() == StatusCode::OK && text(resp).await == name {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{host} never routed to {name}");
}

#[tokio::test]
async fn alternation_falls_through_and_follows_registration_live() {
    let v1 = Upstream::start("v1").await;
    let v2 = Upstream::start("v2").await;
    let dtab = "/svc => /#/io.l5d.fs;\n/svc/forex-rate => /#/io.l5d.fs/forex-rate-v2 | /#/io.l5d.fs/forex-rate;";
    let sc = Sidecar::start(&egress_yaml(dtab, "")).await;
    sc.register("forex-rate", &[v1.addr]);
    wait_for_upstream(sc.addr("egress"), "forex-rate", "v1").await;
    // v2 registers: traffic moves without a restart.
    sc.register("forex-rate-v2", &[v2.addr]);
    wait_for_upstream(sc.addr("egress"), "forex-rate", "v2").await;
    // v2 vanishes: back to v1.
    sc.deregister("forex-rate-v2");
    wait_for_upstream(sc.addr("egress"), "forex-rate", "v1").await;
}

#[tokio::test]
async fn weighted_union_splits_only_over_bound_branches() {
    let v1 = Upstream::start("v1").await;
    let v2 = Upstream::start("v2").await;
    let dtab = "/svc/forex-rate => 9 * /#/io.l5d.fs/forex-rate & 1 * /#/io.l5d.fs/forex-rate-v2;";
    let sc = Sidecar::start(&egress_yaml(dtab, "")).await;
    sc.register("forex-rate", &[v1.addr]);
    wait_for_upstream(sc.addr("egress"), "forex-rate", "v1").await;
    let counts = tally(sc.addr("egress"), "forex-rate", 100).await;
    assert_eq!(counts.get("v1"), Some(&100), "100% v1 while v2 is absent: {counts:?}");

    sc.register("forex-rate-v2", &[v2.addr]);
    wait_for_upstream(sc.addr("egress"), "forex-rate", "v2").await;
    let counts = tally(sc.addr("egress"), "forex-rate", 400).await;
    let (a, b) = (counts.get("v1").copied().unwrap_or(0), counts.get("v2").copied().unwrap_or(0));
    assert_eq!(a + b, 400, "no failures: {counts:?}");
    // 9:1 over 400 requests: v2 expects 40; these bounds are > 5 standard deviations wide.
    assert!((10..=80).contains(&b), "v2 got {b} of 400 under a 9:1 split: {counts:?}");
}

#[tokio::test]
async fn later_dentry_wins_and_neg_falls_back_to_earlier() {
    let dc1 = Upstream::start("dc1").await;
    let dc2 = Upstream::start("dc2").await;
    let dir2 = std::env::temp_dir().join(format!("sy-dc2-{}-{}", std::process::id(), dc2.port()));
    std::fs::create_dir_all(&dir2).unwrap();
    let yaml = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}
namers:
- {{kind: io.l5d.fs, prefix: /dc1, rootDir: '{{registry}}'}}
- {{kind: io.l5d.fs, prefix: /dc2, rootDir: '{}'}}
routers:
- protocol: http
  label: egress
  dtab: /svc=>/#/dc1; /svc=>/#/dc2;
  servers: [{{ip: 127.0.0.1, port: 0}}]
",
        dir2.display()
    );
    let sc = Sidecar::start(&yaml).await;
    sc.register("forex-rate", &[dc1.addr]);
    wait_for_upstream(sc.addr("egress"), "forex-rate", "dc1").await;
    std::fs::write(dir2.join("forex-rate"), format!("{}\n", dc2.addr)).unwrap();
    wait_for_upstream(sc.addr("egress"), "forex-rate", "dc2").await;
    let _ = std::fs::remove_dir_all(dir2);
}

#[tokio::test]
async fn original_linkerd_ingress_config_runs_as_written() {
    let app = Upstream::start("app").await;
    let yaml = format!(
        "admin:
  ip: 127.0.0.1
  port: 0
routers:
- protocol: http
  label: incoming-forex-exchange-rate
  baseDtab: |
    /local => /$/inet/127.1/{};
    /http/1.1/*/* => /local;
  servers:
  - port: 0
    ip: 127.0.0.1
",
        app.port()
    );
    let sc = Sidecar::start(&yaml).await;
    let resp = get(sc.addr("incoming-forex-exchange-rate"), "forex-exchange-rate-4140", "/x", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(text(resp).await, "app");
    assert_eq!(app.last_seen().headers["l5d-dst-service"], "/http/1.1/GET/forex-exchange-rate-4140");
    assert_eq!(app.last_seen().headers["l5d-dst-client"], format!("/$/inet/127.1/{}", app.port()));
}

#[tokio::test]
async fn residual_is_forwarded() {
    let app = Upstream::start("app").await;
    let dtab = format!("/svc => /$/inet/127.0.0.1/{}/extra;", app.port());
    let sc = Sidecar::start(&egress_yaml(&dtab, "")).await;
    let resp = get(sc.addr("egress"), "forex-rate", "/", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = app.last_seen();
    assert_eq!(seen.headers["l5d-dst-residual"], "/extra/forex-rate");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_and_via_xff_added() {
    let app = Upstream::start("app").await;
    let sc = Sidecar::start(&egress_yaml(&format!("/svc => /$/inet/127.1/{};", app.port()), "")).await;
    let resp = get(
        sc.addr("egress"),
        "forex-rate",
        "/",
        &[
            ("connection", "keep-alive, x-private"),
            ("x-private", "do-not-forward"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("te", "gzip"),
            ("x-forwarded-for", "10.9.8.7"),
            ("x-kept", "yes"),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("x-upstream-private").is_none(), "response: header named in Connection removed");
    assert_eq!(resp.headers()["via"], "1.1 switchyard");
    let seen = app.last_seen();
    for h in ["x-private", "keep-alive", "proxy-connection", "proxy-authorization", "te"] {
        assert!(seen.headers.get(h).is_none(), "{h} must not be forwarded: {:?}", seen.headers);
    }
    assert_eq!(seen.headers["x-kept"], "yes");
    assert_eq!(seen.headers["via"], "1.1 switchyard");
    assert_eq!(seen.headers["x-forwarded-for"], "10.9.8.7, 127.0.0.1");
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let app = Upstream::start("app").await;
    let sc = Sidecar::start(&egress_yaml(&format!("/svc => /$/inet/127.1/{};", app.port()), "")).await;

    // Response: the first chunk must reach the client while the upstream still holds the rest back.
    let resp = get(sc.addr("egress"), "forex-rate", "/drip", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("first chunk arrives before the upstream finishes: the proxy must not buffer")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(&first[..], b"first-chunk;");
    app.release.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"rest");

    // A large response body arrives complete.
    let resp = get(sc.addr("egress"), "forex-rate", "/big/20000000", &[]).await;
    let n = resp.into_body().collect().await.unwrap().to_bytes().len();
    assert_eq!(n, 20_000_000);

    // A request body streamed in chunks arrives complete.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for _ in 0..160 {
            tx.send(bytes::Bytes::from(vec![b'y'; 64 * 1024])).await.unwrap();
        }
    });
    let req = Request::builder()
        .method("POST")
        .uri("/upload")
        .header("host", "forex-rate")
        .body(http_body_util::BodyExt::boxed(ChannelBody(rx)))
        .unwrap();
    let resp = send(sc.addr("egress"), req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-body-len"], (160 * 64 * 1024).to_string());
}

async fn expect_error(addr: std::net::SocketAddr, host: &str, path: &str, status: u16, err_contains: &str) {
    let mut b = Request::builder().uri(path);
    if !host.is_empty() {
        b = b.header("host", host);
    }
    let resp = send(addr, b.body(full("")).unwrap()).await;
    assert_eq!(resp.status().as_u16(), status, "{host}{path}");
    let l5d_err = resp.headers().get("l5d-err").expect("l5d-err header").to_str().unwrap().to_string();
    assert!(l5d_err.contains(err_contains), "l5d-err {l5d_err:?} should mention {err_contains:?}");
    let body = text(resp).await;
    assert_eq!(body.trim_end(), l5d_err, "the body says the same in one line");
    assert_eq!(body.lines().count(), 1);
}

#[tokio::test]
async fn error_statuses_and_l5d_err() {
    let app = Upstream::start("app").await;
    // Nothing listens on 127.0.0.2 (tests bind 127.0.0.1), and port 1 is privileged: connects are refused.
    let dead = 1;
    let dtab = format!(
        "/svc => /#/io.l5d.fs;
/svc/failing => !;
/svc/empty => $;
/svc/dead => /$/inet/127.0.0.2/{dead};
/svc/slow => /$/inet/127.0.0.1/{app};
/svc/loop => /svc/loop2; /svc/loop2 => /svc/loop;",
        app = app.port()
    );
    let yaml = egress_yaml(&dtab, "").replace("  servers:", "  service: {totalTimeoutMs: 300}\n  servers:");
    let sc = Sidecar::start(&yaml).await;
    let addr = sc.addr("egress");
    expect_error(addr, "", "/", 400, "no host header").await;
    expect_error(addr, "nobody", "/", 502, "/svc/nobody").await;
    expect_error(addr, "failing", "/", 502, "/svc/failing").await;
    expect_error(addr, "empty", "/", 503, "no endpoints").await;
    expect_error(addr, "dead", "/", 502, "connection to 127.0.0.2:1 failed").await;
    expect_error(addr, "slow", "/slow/3000", 504, "timed out after 300 ms").await;
    expect_error(addr, "loop", "/", 502, "/svc/loop").await;
    sc.register("registered-empty", &[]);
    let mut status = 0;
    for _ in 0..100 {
        status = get(addr, "registered-empty", "/", &[]).await.status().as_u16();
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 503, "a registered service with no instances → 503");
    // Upstream statuses pass through untouched.
    let resp = get(addr, "slow", "/status/503", &[]).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().get("l5d-err").is_none(), "an upstream's own 503 is not a proxy error");
}

#[tokio::test]
async fn dtab_override_headers_only_where_trusted() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let dtab = format!("/svc => /$/inet/127.1/{};", a.port());
    let untrusted = format!(
        "- protocol: http
  label: public
  dtab: /svc => /$/inet/127.1/{};
  servers: [{{ip: 127.0.0.1, port: 0, clearContext: true}}]
",
        a.port()
    );
    let sc = Sidecar::start(&egress_yaml(&dtab, &untrusted)).await;
    let over = format!("/svc/forex-rate => /$/inet/127.1/{}", b.port());
    let resp = get(sc.addr("egress"), "forex-rate", "/", &[("l5d-dtab", &over)]).await;
    assert_eq!(text(resp).await, "b", "trusted server honours l5d-dtab");
    let seen = b.last_seen();
    assert!(seen.headers.get("l5d-dtab").is_none(), "l5d-dtab is consumed");
    assert_eq!(seen.headers["l5d-ctx-dtab"], over.replace(' ', ""), "the override travels on as l5d-ctx-dtab");

    let resp = get(sc.addr("public"), "forex-rate", "/", &[("l5d-dtab", &over)]).await;
    assert_eq!(text(resp).await, "a", "untrusted server ignores l5d-dtab");
    assert!(a.last_seen().headers.get("l5d-ctx-dtab").is_none(), "and does not forward it");

    let resp = get(sc.addr("egress"), "forex-rate", "/", &[("l5d-dtab", "/svc => ")]).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers()["l5d-err"].to_str().unwrap().contains("l5d-dtab"));
}

#[tokio::test]
async fn h2c_on_both_sides() {
    let app = Upstream::start_h2("h2app").await;
    let yaml = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}
routers:
- protocol: h2
  label: h2
  dtab: /svc => /$/inet/127.1/{};
  servers: [{{ip: 127.0.0.1, port: 0}}]
",
        app.port()
    );
    let sc = Sidecar::start(&yaml).await;
    let stream = tokio::net::TcpStream::connect(sc.addr("h2")).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = Request::builder().uri("http://forex-rate/h2path").body(full("")).unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(text(resp).await, "h2app");
    }
    let seen = app.last_seen();
    assert_eq!(seen.version, http::Version::HTTP_2);
    assert_eq!(seen.uri, "http://forex-rate/h2path", ":authority keeps the logical host");
    assert_eq!(app.hits(), 3);
}

#[tokio::test]
async fn hot_swap_under_concurrent_load_drops_nothing() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let sc = Sidecar::start(&egress_yaml(&format!("/svc => /$/inet/127.1/{};", a.port()), "")).await;
    let addr = sc.addr("egress");
    let admin = sc.admin();
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (failures, done) = (failures.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !done.load(Ordering::SeqCst) {
                let resp = get(addr, "forex-rate", "/", &[]).await;
                if resp.status() != StatusCode::OK {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                let _ = text(resp).await;
                n += 1;
            }
            n
        }));
    }
    for i in 0..40 {
        let port = if i % 2 == 0 { b.port() } else { a.port() };
        let (status, _, body) =
            admin_req(admin, "PUT", "/dtab/egress", &[], &format!("/svc => /$/inet/127.1/{port};")).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done.store(true, Ordering::SeqCst);
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    assert!(total > 40, "load actually ran ({total} requests)");
    assert_eq!(failures.load(Ordering::SeqCst), 0, "zero failed requests across 40 dtab swaps");
    assert!(a.hits() > 0 && b.hits() > 0, "both targets served: a={} b={}", a.hits(), b.hits());
}

async fn admin_req(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, http::HeaderMap, String) {
    crate::support::admin(addr, method, path, headers, body).await
}

#[tokio::test]
async fn in_flight_requests_finish_on_the_dtab_they_started_with() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let sc = Sidecar::start(&egress_yaml(&format!("/svc => /$/inet/127.1/{};", a.port()), "")).await;
    let addr = sc.addr("egress");
    let slow = tokio::spawn(async move { text(get(addr, "forex-rate", "/slow/400", &[]).await).await });
    eventually("slow request reached a", SETTLE, || a.hits() == 1).await;
    let (status, _, _) =
        admin_req(sc.admin(), "PUT", "/dtab/egress", &[], &format!("/svc => /$/inet/127.1/{};", b.port())).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(text(get(addr, "forex-rate", "/", &[]).await).await, "b", "new requests see the new dtab at once");
    assert_eq!(slow.await.unwrap(), "a", "the in-flight request completes on its original route");
}
