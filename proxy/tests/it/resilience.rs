//! Fault tests, in-process: instances killed, erroring, slow, restarted one by one under load; retry budgets;
//! non-idempotent requests; limits; deadlines. Each is bounded in requests and time and stops by itself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use http::{Request, StatusCode};

fn yaml(client_extra: &str, service_extra: &str) -> String {
    format!(
        "admin: {{ip: 127.0.0.1, port: 0}}
namers:
- kind: io.l5d.fs
  rootDir: {{registry}}
routers:
- protocol: http
  label: egress
  dtab: /svc => /#/io.l5d.fs;
  servers: [{{ip: 127.0.0.1, port: 0}}]
  client:
    connectTimeoutMs: 200
{client_extra}
  service:
    responseClassifier: {{kind: io.l5d.http.retryableRead5XX}}
    retries: {{backoff: {{kind: jittered, minMs: 1, maxMs: 20}}}}
{service_extra}
"
    )
}

/// Starts `n` upstreams registered as `forex-rate` and waits until the sidecar routes to each of them.
async fn mesh(n: usize, client_extra: &str, service_extra: &str) -> (Sidecar, Vec<Upstream>) {
    const NAMES: [&str; 4] = ["r1", "r2", "r3", "r4"];
    let mut ups = Vec::new();
    for name in NAMES.iter().take(n) {
        ups.push(Upstream::start(name).await);
    }
    let sc = Sidecar::start(&yaml(client_extra, service_extra)).await;
    sc.register("forex-rate", &ups.iter().map(|u| u.addr).collect::<Vec<_>>());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !ups.iter().all(|u| u.hits() > 0) && tokio::time::Instant::now() < deadline {
        let _ = text(get(sc.addr("egress"), "forex-rate", "/", &[]).await).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(ups.iter().all(|u| u.hits() > 0), "every instance takes traffic before the fault");
    (sc, ups)
}

/// Outcome of a load run: answers by status, and by upstream name for 200s.
#[derive(Default, Debug)]
struct Tally {
    by_status: HashMap<u16, usize>,
    by_upstream: HashMap<String, usize>,
}

impl Tally {
    fn ok(&self) -> usize {
        self.by_status.get(&200).copied().unwrap_or(0)
    }
    fn total(&self) -> usize {
        self.by_status.values().sum()
    }
}

/// `workers` concurrent clients send GETs until `total` requests were sent; `during` runs alongside (the fault).
async fn load<F: std::future::Future<Output = ()>>(addr: SocketAddr, workers: usize, total: usize, during: F) -> Tally {
    load_inner(addr, workers, total, false, during).await
}

/// Like [`load`], but the load also stops as soon as `during` has finished.
async fn load_while<F: std::future::Future<Output = ()>>(
    addr: SocketAddr,
    workers: usize,
    max: usize,
    during: F,
) -> Tally {
    load_inner(addr, workers, max, true, during).await
}

async fn load_inner<F: std::future::Future<Output = ()>>(
    addr: SocketAddr,
    workers: usize,
    total: usize,
    stop_after: bool,
    during: F,
) -> Tally {
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (sent, tally, stop) = (sent.clone(), tally.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) && sent.fetch_add(1, Ordering::SeqCst) < total {
                let resp = get(addr, "forex-rate", "/", &[]).await;
                let status = resp.status().as_u16();
                let body = text(resp).await;
                let mut t = tally.lock().unwrap();
                *t.by_status.entry(status).or_default() += 1;
                if status == 200 {
                    *t.by_upstream.entry(body).or_default() += 1;
                } else {
                    *t.by_upstream.entry(format!("error: {}", body.trim())).or_default() += 1;
                }
            }
        }));
    }
    during.await;
    if stop_after {
        stop.store(true, Ordering::SeqCst);
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(tally).map(|m| m.into_inner().unwrap()).unwrap_or_default()
}

async fn wait_sent(count: &AtomicUsize, n: usize) {
    eventually("load progressed", Duration::from_secs(30), || count.load(Ordering::SeqCst) >= n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_instance_mid_load_loses_nothing() {
    let (sc, ups) = mesh(3, "", "").await;
    let victim_hits = ups[1].hits.clone();
    let t = load(sc.addr("egress"), 6, 900, async {
        wait_sent(&victim_hits, 40).await;
        ups[1].kill();
    })
    .await;
    assert_eq!(t.ok(), t.total(), "no failed requests when an instance dies: {t:?}");
    assert_eq!(t.total(), 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_failing_instance_is_ejected_and_clients_see_success() {
    // Least-loaded balancing, so that failure accrual (not the EWMA's failure penalty) is what takes it out.
    let accrual = "    loadBalancer: {kind: p2c}\n    failureAccrual: {kind: io.l5d.successRate, successRate: 0.9, requests: 10, backoff: {kind: constant, ms: 60000}}";
    let (sc, ups) = mesh(3, accrual, "").await;
    ups[0].set_faults(Faults { fail_ratio: 0.5, delay: Duration::ZERO });
    let t = load(sc.addr("egress"), 4, 1000, async {}).await;
    let success = t.ok() as f64 / t.total() as f64;
    assert!(success >= 0.999, "success rate {success} (≥ 99.9% expected): {t:?}");
    let (_, _, metrics) = admin(sc.admin(), "GET", "/metrics", &[], "").await;
    let value = |family: &str| -> Option<f64> {
        let prefix = format!(r#"{family}{{endpoint="{}",router="egress"}} "#, ups[0].addr);
        metrics.lines().find_map(|l| l.strip_prefix(prefix.as_str())).and_then(|v| v.parse().ok())
    };
    let relevant: Vec<&str> = metrics.lines().filter(|l| l.contains("ejections") || l.contains("available")).collect();
    let ejections = value("switchyard_failure_accrual_ejections_total").unwrap_or(0.0);
    assert!(ejections >= 1.0, "the flaky instance was ejected: {relevant:#?} ({t:?})");
    assert_eq!(value("switchyard_endpoint_available"), Some(0.0), "and is out of rotation: {relevant:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_instance_gets_little_traffic_with_peak_ewma() {
    let (sc, ups) = mesh(3, "", "").await;
    ups[2].set_faults(Faults { fail_ratio: 0.0, delay: Duration::from_millis(200) });
    let t = load(sc.addr("egress"), 4, 400, async {}).await;
    assert_eq!(t.ok(), 400, "{t:?}");
    let slow = t.by_upstream.get("r3").copied().unwrap_or(0);
    // Round robin would send it a third (≈133); peak EWMA notices the first slow answer and routes around it.
    assert!(slow < 40, "the slow instance got {slow} of 400 requests: {t:?}");
}

/// The sidecar's metric family `name` for the egress router, summed.
async fn egress_metric(sc: &Sidecar, name: &str) -> f64 {
    let (_, _, body) = admin(sc.admin(), "GET", "/metrics", &[], "").await;
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains("router=\"egress\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedging_answers_from_another_instance_instead_of_waiting_for_a_slow_one() {
    // Round robin sends the slow instance every third request, so the test does not depend on when peak EWMA
    // would probe it.
    let hedging = "    hedging: {percentile: 90, minMs: 2}";
    let (sc, ups) = mesh(3, "    loadBalancer: {kind: roundRobin}", hedging).await;
    // Enough fast answers for the service's p90 to be known (hedging waits for 50).
    for _ in 0..100 {
        assert_eq!(get(sc.addr("egress"), "forex-rate", "/", &[]).await.status(), StatusCode::OK);
    }
    ups[2].set_faults(Faults { fail_ratio: 0.0, delay: Duration::from_millis(500) });
    let mut slowest = Duration::ZERO;
    for _ in 0..300 {
        let start = tokio::time::Instant::now();
        let resp = get(sc.addr("egress"), "forex-rate", "/", &[]).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let _ = text(resp).await;
        slowest = slowest.max(start.elapsed());
    }
    let (hedges, wins) =
        (egress_metric(&sc, "switchyard_hedges_total").await, egress_metric(&sc, "switchyard_hedge_wins_total").await);
    // Every third request went to the slow instance first: about 100 hedges, nearly all won by the hedge.
    assert!(hedges >= 50.0 && wins >= 50.0, "the slow instance's requests were hedged: {hedges} hedges, {wins} won");
    // Without hedging, every request the slow instance got would take its 500 ms (the control below).
    assert!(slowest < Duration::from_millis(400), "a request still waited for the slow instance: {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_hedging_a_slow_instance_is_waited_for() {
    let (sc, ups) = mesh(3, "    loadBalancer: {kind: roundRobin}", "").await;
    ups[2].set_faults(Faults { fail_ratio: 0.0, delay: Duration::from_millis(500) });
    let mut slowest = Duration::ZERO;
    for _ in 0..30 {
        let start = tokio::time::Instant::now();
        let _ = text(get(sc.addr("egress"), "forex-rate", "/", &[]).await).await;
        slowest = slowest.max(start.elapsed());
    }
    assert!(slowest >= Duration::from_millis(500), "the control: some request waited for the slow instance");
    assert_eq!(egress_metric(&sc, "switchyard_hedges_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_ignores_latency() {
    // The control for the test above: without EWMA the slow instance gets its full share.
    let (sc, ups) = mesh(3, "    loadBalancer: {kind: roundRobin}", "").await;
    ups[2].set_faults(Faults { fail_ratio: 0.0, delay: Duration::from_millis(50) });
    let t = load(sc.addr("egress"), 4, 300, async {}).await;
    let slow = t.by_upstream.get("r3").copied().unwrap_or(0);
    assert!(slow >= 80, "round robin sends ~1/3 to every instance: {t:?}");
}

#[tokio::test]
async fn retry_storm_is_capped_by_the_budget() {
    let budget = "    retries:\n      budget: {ttlSecs: 10, minRetriesPerSec: 1, percentCanRetry: 0.1}\n      backoff: {kind: constant, ms: 0}";
    let (sc, ups) = mesh(1, "    failureAccrual: {kind: none}", "").await;
    let sc2 = Sidecar::start(
        &yaml("    failureAccrual: {kind: none}", budget)
            .replace("    retries: {backoff: {kind: jittered, minMs: 1, maxMs: 20}}\n", ""),
    )
    .await;
    drop(sc);
    sc2.register_seen("forex-rate", &[ups[0].addr]).await;
    ups[0].set_faults(Faults { fail_ratio: 1.0, delay: Duration::ZERO });
    let before = ups[0].hits();
    let mut retryable_marked = 0;
    for _ in 0..200 {
        let resp = get(sc2.addr("egress"), "forex-rate", "/", &[]).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        if resp.headers().get("l5d-retryable").is_some_and(|v| v == "true") {
            retryable_marked += 1;
        }
    }
    let hits = ups[0].hits() - before;
    // Reserve 1/s × 10 s = 10, plus 10% of 200 requests = 20: at most 30 retries on top of 200 requests.
    assert!((201..=230).contains(&hits), "{hits} upstream hits for 200 requests");
    assert_eq!(retryable_marked, 200, "failures not retried are marked l5d-retryable for an outer proxy");
    let (_, _, m) = admin(sc2.admin(), "GET", "/metrics", &[], "").await;
    assert!(m.contains(r#"switchyard_retry_budget_exhausted_total{router="egress",service="/svc/forex-rate"}"#), "{m}");
}

#[tokio::test]
async fn posts_are_not_replayed_after_reaching_the_upstream() {
    let (sc, ups) = mesh(1, "    failureAccrual: {kind: none}", "").await;
    ups[0].set_faults(Faults { fail_ratio: 1.0, delay: Duration::ZERO });
    let before = ups[0].hits();
    let req =
        Request::builder().method("POST").uri("/convert").header("host", "forex-rate").body(full("amount=1")).unwrap();
    let resp = send(sc.addr("egress"), req).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().get("l5d-retryable").is_none(), "a POST that reached the upstream is not retryable");
    assert_eq!(ups[0].hits() - before, 1, "the POST was sent exactly once");
    let resp = get(sc.addr("egress"), "forex-rate", "/", &[]).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(ups[0].hits() - before > 2, "a GET is retried under retryableRead5XX");
}

#[tokio::test]
async fn unsent_requests_are_retried_for_any_method() {
    let up = Upstream::start("live").await;
    // Nothing listens on 127.0.0.2 (tests bind 127.0.0.1), and port 1 is privileged: connects are refused.
    let dead: SocketAddr = "127.0.0.2:1".parse().unwrap();
    let sc = Sidecar::start(&yaml("    failureAccrual: {kind: none}", "")).await;
    sc.register_seen("forex-rate", &[dead, up.addr]).await;
    for i in 0..40 {
        let body = format!("payload-{i}");
        let req =
            Request::builder().method("POST").uri("/x").header("host", "forex-rate").body(full(body.clone())).unwrap();
        let resp = send(sc.addr("egress"), req).await;
        let err = resp.headers().get("l5d-err").map(|v| v.to_str().unwrap_or("").to_string());
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "POST {i} reaches the live instance after a refused connect: {err:?}"
        );
        assert_eq!(resp.headers()["x-body-len"], body.len().to_string(), "with its body intact");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_load_loses_nothing() {
    let (sc, ups) = mesh(
        3,
        "    failureAccrual: {kind: io.l5d.consecutiveFailures, failures: 1, backoff: {kind: constant, ms: 100}}",
        "",
    )
    .await;
    let t = load_while(sc.addr("egress"), 6, 20_000, async {
        for up in &ups {
            up.kill();
            tokio::time::sleep(Duration::from_millis(250)).await;
            up.restart().await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    assert!(t.total() > 100, "load ran throughout: {t:?}");
    assert_eq!(t.ok(), t.total(), "no failed requests across a rolling restart: {t:?}");
    for up in &ups {
        let direct = get(up.addr, "x", "/", &[]).await;
        assert_eq!(direct.status(), StatusCode::OK, "{} is back after its restart", up.name);
    }
}

#[tokio::test]
async fn the_last_live_endpoint_is_never_ejected() {
    let accrual =
        "    failureAccrual: {kind: io.l5d.consecutiveFailures, failures: 2, backoff: {kind: constant, ms: 60000}}";
    let (sc, ups) = mesh(1, accrual, "").await;
    ups[0].set_faults(Faults { fail_ratio: 1.0, delay: Duration::ZERO });
    for _ in 0..10 {
        let resp = get(sc.addr("egress"), "forex-rate", "/", &[]).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers().get("l5d-err").is_none(), "callers get the instance's own error, not 'marked dead'");
    }
    ups[0].set_faults(Faults::default());
    let resp = get(sc.addr("egress"), "forex-rate", "/", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK, "and it serves again the moment it recovers");
}

#[tokio::test]
async fn all_dead_fails_fast_and_probes_for_recovery() {
    // A 60 s backoff: without probes the instance would stay out for a minute after it recovers.
    let accrual =
        "    failureAccrual: {kind: io.l5d.consecutiveFailures, failures: 2, backoff: {kind: constant, ms: 60000}}";
    let (sc, ups) = mesh(2, &format!("{accrual}\n    loadBalancer: {{kind: roundRobin}}"), "").await;
    ups[0].set_faults(Faults { fail_ratio: 1.0, delay: Duration::ZERO });
    for _ in 0..10 {
        let resp = get(sc.addr("egress"), "forex-rate", "/", &[]).await;
        assert_eq!(resp.status(), StatusCode::OK, "r1 is routed around, r2 answers");
    }
    // r2 leaves the registry: only the ejected r1 is left.
    sc.register("forex-rate", &[ups[0].addr]);
    let mut err = String::new();
    for _ in 0..100 {
        let resp = get(sc.addr("egress"), "forex-rate", "/", &[]).await;
        err = resp.headers().get("l5d-err").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        if err.contains("marked dead") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(err.contains("marked dead"), "fails fast once every endpoint is dead: {err}");
    let before = ups[0].hits();
    let resp = get(sc.addr("egress"), "forex-rate", "/", &[]).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ups[0].hits(), before, "without touching the dead instance");

    ups[0].set_faults(Faults::default());
    let mut recovered = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if get(sc.addr("egress"), "forex-rate", "/", &[]).await.status() == StatusCode::OK {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "a probe (one per second) noticed the recovery long before the 60 s backoff ended");
    for _ in 0..20 {
        assert_eq!(get(sc.addr("egress"), "forex-rate", "/", &[]).await.status(), StatusCode::OK, "back in rotation");
    }
}

#[tokio::test]
async fn a_refused_single_endpoint_fails_fast_instead_of_retrying_until_the_deadline() {
    // Nothing listens on 127.0.0.2 (tests bind 127.0.0.1), and port 1 is privileged: connects are refused.
    let sc = Sidecar::start(&yaml("", "").replace("dtab: /svc => /#/io.l5d.fs;", "dtab: /svc => /$/inet/127.0.0.2/1;"))
        .await;
    let resp = get(sc.addr("egress"), "forex-rate", "/", &[]).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert!(resp.headers()["l5d-err"].to_str().unwrap().contains("connection to 127.0.0.2:1 failed"));
    assert_eq!(resp.headers()["l5d-retryable"], "true", "an outer proxy may retry it elsewhere");
    let (_, _, m) = admin(sc.admin(), "GET", "/metrics", &[], "").await;
    assert!(
        m.contains(r#"switchyard_client_requests_total{client="/$/inet/127.0.0.2/1",router="egress"} 1"#),
        "one attempt, not a retry loop until the 5 s deadline:\n{m}"
    );
    assert!(
        m.contains(r#"switchyard_retries_total{router="egress",service="/svc/forex-rate"} 0"#),
        "no retry was spent on it:\n{m}"
    );
}

#[tokio::test]
async fn a_departed_endpoint_takes_its_metric_series_with_it() {
    let (sc, ups) = mesh(2, "", "").await;
    let series = |m: &str, up: &Upstream| {
        m.contains(&format!(r#"switchyard_endpoint_available{{endpoint="{}",router="egress"}}"#, up.addr))
    };
    let (_, _, m) = admin(sc.admin(), "GET", "/metrics", &[], "").await;
    assert!(series(&m, &ups[0]) && series(&m, &ups[1]), "both endpoints have series while registered");

    sc.register("forex-rate", &[ups[1].addr]);
    let mut gone = false;
    for _ in 0..100 {
        // Requests let the client notice the new endpoint set and drop the departed endpoint.
        let _ = text(get(sc.addr("egress"), "forex-rate", "/", &[]).await).await;
        let (_, _, m) = admin(sc.admin(), "GET", "/metrics", &[], "").await;
        if !series(&m, &ups[0]) {
            assert!(series(&m, &ups[1]), "the remaining endpoint keeps its series");
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "the deregistered endpoint's series were removed");
}
