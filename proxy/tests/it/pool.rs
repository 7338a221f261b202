//! The upstream connection pool under bursts: `hostConnectionPool` caps connections per endpoint and queues the
//! excess (maxSize, maxWaiters), a queued request keeps its deadline, idle connections close after idleTimeMs.

use std::sync::atomic::Ordering;
use std::time::Duration;

use http::StatusCode;

use crate::support::*;

/// A sidecar whose `egress` router sends every name to `up`, with `pool` as its `hostConnectionPool` and
/// `service` as extra service keys.
async fn sidecar(up: &Upstream, pool: &str, service: &str) -> Sidecar {
    sidecar_to(up.port(), pool, service).await
}

/// [`sidecar`] sending every name to 127.0.0.1:`port`.
async fn sidecar_to(port: u16, pool: &str, service: &str) -> Sidecar {
    let yaml = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}
routers:
- protocol: http
  label: egress
  dtab: /svc/* => /$/inet/127.0.0.1/{port};
  servers: [{{ip: 127.0.0.1, port: 0}}]
  client:
    failureAccrual: {{kind: none}}
    hostConnectionPool: {pool}
  service: {{{service}}}
"
    );
    Sidecar::start(&yaml).await
}

/// Sends `n` GETs of `path` at once; their statuses and `l5d-err`s, in the order they were answered.
async fn burst(sc: &Sidecar, n: usize, path: &'static str) -> Vec<(StatusCode, String)> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = sc.addr("egress");
    for _ in 0..n {
        let tx = tx.clone();
        tokio::spawn(async move {
            let resp = get(addr, "rate", path, &[]).await;
            let err = resp.headers().get("l5d-err").map(|v| v.to_str().unwrap_or("?").to_string()).unwrap_or_default();
            let status = resp.status();
            let _ = text(resp).await;
            let _ = tx.send((status, err));
        });
    }
    drop(tx);
    let mut answers = Vec::new();
    while let Some(a) = rx.recv().await {
        answers.push(a);
    }
    answers
}

async fn metric(sc: &Sidecar, family: &str) -> f64 {
    let (_, _, m) = admin(sc.admin(), "GET", "/metrics", &[], "").await;
    m.lines()
        .filter(|l| l.starts_with(family) && l.contains(r#"router="egress""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_queued_onto_max_size_connections_and_every_request_answered() {
    let up = Upstream::start("rate").await;
    let sc = sidecar(&up, "{maxSize: 4}", "").await;
    let answers = burst(&sc, 200, "/slow/20").await;
    let ok = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(ok, 200, "every request of the burst is answered: {answers:?}");
    assert!(up.conns.peak.load(Ordering::SeqCst) <= 4, "at most maxSize connections: {:?}", up.conns);
    assert!(up.conns.accepted.load(Ordering::SeqCst) <= 4, "and no connection churn: {:?}", up.conns);
    assert!(metric(&sc, "switchyard_endpoint_pool_wait_seconds_count").await > 0.0, "the queue was used");
    assert_eq!(metric(&sc, "switchyard_endpoint_connections{").await, up.conns.open.load(Ordering::SeqCst) as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_waiters_requests_are_refused_at_once_with_503() {
    let up = Upstream::start("rate").await;
    let sc = sidecar(&up, "{maxSize: 1, maxWaiters: 2}", "").await;
    let answers = burst(&sc, 10, "/slow/300").await;
    let ok: Vec<_> = answers.iter().filter(|(s, _)| *s == StatusCode::OK).collect();
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE).collect();
    assert_eq!((ok.len(), refused.len()), (3, 7), "one on the connection, two queued, the rest refused: {answers:?}");
    assert!(refused[0].1.contains("maxWaiters"), "l5d-err says why: {}", refused[0].1);
    // Refused at once: every refusal was answered before the first request that got the connection.
    let first_ok = answers.iter().position(|(s, _)| *s == StatusCode::OK).unwrap();
    assert_eq!(first_ok, 7, "the refusals came first, not after waiting: {answers:?}");
    assert_eq!(metric(&sc, "switchyard_endpoint_pool_rejected_total").await, 7.0);
    assert_eq!(up.conns.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_request_keeps_its_deadline() {
    let up = Upstream::start("rate").await;
    let sc = sidecar(&up, "{maxSize: 1}", "totalTimeoutMs: 300").await;
    let addr = sc.addr("egress");
    // The only connection is busy for a second; the next request waits for it, and its deadline runs out first.
    let busy = tokio::spawn(async move { get(addr, "rate", "/slow/1000", &[]).await.status() });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let queued = get(addr, "rate", "/", &[]).await;
    assert_eq!(queued.status(), StatusCode::GATEWAY_TIMEOUT, "{:?}", queued.headers());
    let err = queued.headers().get("l5d-err").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    assert!(err.contains("timed out"), "l5d-err says why: {err}");
    assert_eq!(busy.await.unwrap(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(up.hits(), 1, "the queued request never reached the upstream");
    assert!(metric(&sc, "switchyard_endpoint_pool_wait_seconds_count").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_leaves_the_queue() {
    let up = Upstream::start("rate").await;
    let sc = sidecar(&up, "{maxSize: 1, maxWaiters: 1}", "").await;
    let addr = sc.addr("egress");
    let busy = tokio::spawn(async move { get(addr, "rate", "/slow/300", &[]).await.status() });
    tokio::time::sleep(Duration::from_millis(30)).await;
    // The one place in the queue is taken, then its caller hangs up.
    let gave_up = tokio::time::timeout(Duration::from_millis(50), get(addr, "rate", "/", &[])).await;
    assert!(gave_up.is_err(), "the caller hung up while queued");
    // The place went with it: the next request queues rather than being refused, and is served.
    let next = get(addr, "rate", "/", &[]).await;
    assert_eq!(next.status(), StatusCode::OK, "{:?}", next.headers());
    assert_eq!(busy.await.unwrap(), StatusCode::OK);
    assert_eq!(metric(&sc, "switchyard_endpoint_pool_rejected_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_idle_time_down_to_min_size() {
    let up = Upstream::start("rate").await;
    let sc = sidecar(&up, "{maxSize: 8, minSize: 2, idleTimeMs: 200}", "").await;
    let answers = burst(&sc, 40, "/slow/20").await;
    assert!(answers.iter().all(|(s, _)| *s == StatusCode::OK), "{answers:?}");
    let opened = up.conns.peak.load(Ordering::SeqCst);
    assert!(opened > 2, "the burst needed more than minSize connections: {opened}");
    let open = || up.conns.open.load(Ordering::SeqCst);
    eventually("idle connections above minSize close", Duration::from_secs(10), || open() == 2).await;
    // minSize stays open, well past the idle time.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(open(), 2);
    assert_eq!(metric(&sc, "switchyard_endpoint_connections{").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_fail_fast_when_the_endpoint_cannot_be_reached() {
    // Nothing listens there: the first connect is refused, and every queued request is told at once.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let sc = sidecar_to(port, "{maxSize: 1}", "").await;
    let answers = burst(&sc, 20, "/").await;
    assert!(answers.iter().all(|(s, e)| *s == StatusCode::BAD_GATEWAY && e.contains("connect")), "{answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_hanging_up_mid_request_does_not_cost_the_upstream_connection() {
    let up = Upstream::start("rate").await;
    let sc = sidecar(&up, "{maxSize: 1}", "").await;
    let addr = sc.addr("egress");
    assert_eq!(get(addr, "rate", "/", &[]).await.status(), StatusCode::OK);
    // Callers that give up while the upstream is still working on their requests.
    for _ in 0..3 {
        let gave_up = tokio::time::timeout(Duration::from_millis(50), get(addr, "rate", "/slow/150", &[])).await;
        assert!(gave_up.is_err(), "the caller hung up before the answer");
    }
    let answers = burst(&sc, 5, "/").await;
    assert!(answers.iter().all(|(s, _)| *s == StatusCode::OK), "{answers:?}");
    // Each abandoned answer was read and dropped, and the one connection served everything.
    assert_eq!(up.conns.accepted.load(Ordering::SeqCst), 1, "{:?}", up.conns);
}
