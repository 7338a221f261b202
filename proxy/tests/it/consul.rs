//! Consul integration: the `io.l5d.consul` namer and mesh-wide dtab stores (Consul KV and a shared file), each
//! against real sidecars in-process and the Consul HTTP API double from `switchyard-bench` (bench/src/consul.rs).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use http::StatusCode;
use switchyard::config::{ConsulNamerConfig, NamerConfig};
use switchyard::namer::consul::ConsulNamer;
use switchyard::namer::{Namer, NamerAnswer};
use switchyard_dtab::{NameTree, Path};
use switchyard_test_support::consul::{ConsulDouble, Mode};

/// Hang guard only: every wait below ends as soon as its condition holds.
const SETTLE: Duration = Duration::from_secs(20);

async fn double() -> ConsulDouble {
    ConsulDouble::start("127.0.0.1:0".parse().unwrap()).await.expect("double listens")
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// A sidecar with a Consul namer (`namer_opts` appended to it) and one `egress` router.
fn yaml(consul: SocketAddr, namer_opts: &str, dtab: &str, router_opts: &str) -> String {
    format!(
        "admin: {{ip: 127.0.0.1, port: 0}}
namers:
- kind: io.l5d.consul
  host: 127.0.0.1
  port: {port}
{namer_opts}
routers:
- protocol: http
  label: egress
  bindingTimeoutMs: 30000
  dtab: |
{dtab}
  servers:
  - {{ip: 127.0.0.1, port: 0}}
{router_opts}",
        port = consul.port(),
        dtab = indent(dtab),
    )
}

async fn status_and_body(addr: SocketAddr, host: &str) -> (StatusCode, String) {
    let resp = get(addr, host, "/", &[]).await;
    let status = resp.status();
    (status, text(resp).await)
}

/// Waits until `host` is answered by upstream `name` (hang guard: [`SETTLE`]).
async fn until_routed_to(addr: SocketAddr, host: &str, name: &str) {
    let start = tokio::time::Instant::now();
    loop {
        let (status, body) = status_and_body(addr, host).await;
        if status == StatusCode::OK && body == name {
            return;
        }
        assert!(start.elapsed() < SETTLE, "{host} never routed to {name} (last: {status} {body})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the Consul namer's `/namers.json` lists `n` endpoints for `name`.
async fn until_endpoints(admin: SocketAddr, name: &str, n: usize) {
    let start = tokio::time::Instant::now();
    loop {
        let (_, _, body) = crate::support::admin(admin, "GET", "/namers.json", &[], "").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["namers"]["/#/io.l5d.consul"]["names"][name]["endpoints"].as_array().map(Vec::len) == Some(n) {
            return;
        }
        assert!(start.elapsed() < SETTLE, "{name} never had {n} endpoints: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn until_status(addr: SocketAddr, host: &str, want: StatusCode) {
    let start = tokio::time::Instant::now();
    loop {
        let (status, _) = status_and_body(addr, host).await;
        if status == want {
            return;
        }
        assert!(start.elapsed() < SETTLE, "{host} never answered {want} (last: {status})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn endpoints_follow_registrations_and_health_checks() {
    let consul = double().await;
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    consul.register("rate-1", "forex-rate", "127.0.0.1", a.port(), &[]);
    let sc = Sidecar::start(&yaml(consul.addr, "  useHealthCheck: true", "/svc => /#/io.l5d.consul/.local;", "")).await;
    let egress = sc.addr("egress");
    until_routed_to(egress, "forex-rate", "a").await;
    assert_eq!(a.last_seen().headers["l5d-dst-client"], "/#/io.l5d.consul/.local/forex-rate");

    // A second instance joins: both get traffic.
    consul.register("rate-2", "forex-rate", "127.0.0.1", b.port(), &[]);
    until_routed_to(egress, "forex-rate", "b").await;
    until_routed_to(egress, "forex-rate", "a").await;

    // The first is deregistered: only the second is left.
    consul.deregister("rate-1");
    until_endpoints(sc.admin(), "/.local/forex-rate", 1).await;
    let before = a.hits();
    for _ in 0..20 {
        assert_eq!(status_and_body(egress, "forex-rate").await, (StatusCode::OK, "b".to_string()));
    }
    assert_eq!(a.hits(), before, "a deregistered instance gets no traffic once the change is seen");

    // Its check fails: no passing instance is left, so the name is neg (502 with l5d-err), then it recovers.
    consul.set_health("rate-2", "critical");
    until_status(egress, "forex-rate", StatusCode::BAD_GATEWAY).await;
    consul.set_health("rate-2", "passing");
    until_routed_to(egress, "forex-rate", "b").await;
}

#[tokio::test]
async fn alternation_follows_a_service_appearing_and_disappearing() {
    let consul = double().await;
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    consul.register("rate-1", "forex-rate", "127.0.0.1", v1.port(), &[]);
    let dtab = "/svc/forex-rate => /#/io.l5d.consul/dc1/forex-rate-v2 | /#/io.l5d.consul/dc1/forex-rate;";
    let sc = Sidecar::start(&yaml(consul.addr, "", dtab, "")).await;
    let egress = sc.addr("egress");
    until_routed_to(egress, "forex-rate", "v1").await;
    consul.register("rate-v2-1", "forex-rate-v2", "127.0.0.1", v2.port(), &[]);
    until_routed_to(egress, "forex-rate", "v2").await;
    consul.deregister("rate-v2-1");
    until_routed_to(egress, "forex-rate", "v1").await;
}

#[tokio::test]
async fn consul_outage_keeps_last_endpoints_and_catches_up() {
    let consul = double().await;
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    consul.register("rate-1", "forex-rate", "127.0.0.1", a.port(), &[]);
    let sc = Sidecar::start(&yaml(consul.addr, "", "/svc => /#/io.l5d.consul/dc1;", "")).await;
    let egress = sc.addr("egress");
    until_routed_to(egress, "forex-rate", "a").await;

    for mode in [Mode::Refusing, Mode::Failing] {
        consul.set_mode(mode);
        // The namer notices (its blocking query is cut or answered 500) and reports it, but keeps routing.
        let admin = sc.admin();
        let start = tokio::time::Instant::now();
        loop {
            let (_, _, namers) = crate::support::admin(admin, "GET", "/namers.json", &[], "").await;
            let v: serde_json::Value = serde_json::from_str(&namers).unwrap();
            let name = &v["namers"]["/#/io.l5d.consul"]["names"]["/dc1/forex-rate"];
            if name["lastError"].is_string() {
                assert_eq!(name["state"], "bound", "{name}");
                assert!(name["stalenessSeconds"].is_number(), "{name}");
                break;
            }
            assert!(start.elapsed() < SETTLE, "the outage was never reported: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for _ in 0..20 {
            assert_eq!(status_and_body(egress, "forex-rate").await, (StatusCode::OK, "a".to_string()), "{mode:?}");
        }
        let (_, _, metrics) = crate::support::admin(admin, "GET", "/metrics", &[], "").await;
        assert!(
            metrics.contains("switchyard_namer_staleness_seconds{name=\"/dc1/forex-rate\",namer=\"/#/io.l5d.consul\"}"),
            "{metrics}"
        );
        assert!(!metrics.contains("switchyard_namer_errors_total{namer=\"/#/io.l5d.consul\"} 0"), "{metrics}");
    }

    // While Consul is unreachable the registry changes; when it is back, routing catches up on its own.
    consul.deregister("rate-1");
    consul.register("rate-2", "forex-rate", "127.0.0.1", b.port(), &[]);
    consul.set_mode(Mode::Up);
    until_routed_to(egress, "forex-rate", "b").await;
    // The outage is over as far as the admin API is concerned, too.
    let start = tokio::time::Instant::now();
    loop {
        let (_, _, namers) = crate::support::admin(sc.admin(), "GET", "/namers.json", &[], "").await;
        let v: serde_json::Value = serde_json::from_str(&namers).unwrap();
        let name = &v["namers"]["/#/io.l5d.consul"]["names"]["/dc1/forex-rate"];
        if name["lastError"].is_null() {
            assert_eq!(name["stalenessSeconds"], 0.0, "{name}");
            break;
        }
        assert!(start.elapsed() < SETTLE, "the outage never ended: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_sidecar_started_before_consul_waits_then_routes() {
    let consul = double().await;
    let a = Upstream::start("a").await;
    consul.register("rate-1", "forex-rate", "127.0.0.1", a.port(), &[]);
    consul.set_mode(Mode::Refusing);
    let sc = Sidecar::start(&yaml(consul.addr, "", "/svc => /#/io.l5d.consul/dc1;", "")).await;
    let egress = sc.addr("egress");
    // The first request waits for the namer's first answer (up to bindingTimeoutMs) instead of failing.
    let request = tokio::spawn(async move { status_and_body(egress, "forex-rate").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!request.is_finished(), "no answer from Consul yet: the request is still waiting");
    consul.set_mode(Mode::Up);
    assert_eq!(request.await.unwrap(), (StatusCode::OK, "a".to_string()));
}

#[tokio::test]
async fn fail_fast_answers_neg_while_consul_has_never_answered() {
    let consul = double().await;
    consul.set_mode(Mode::Refusing);
    let a = Upstream::start("a").await;
    consul.register("rate-1", "forex-rate", "127.0.0.1", a.port(), &[]);
    let dtab = format!("/svc => /#/io.l5d.consul/dc1 | /$/inet/127.0.0.1/{};", a.port());
    let sc = Sidecar::start(&yaml(consul.addr, "  failFast: true", &dtab, "")).await;
    // Consul is down from the start: with failFast the consul branch is neg at once and `|` falls through.
    until_routed_to(sc.addr("egress"), "forex-rate", "a").await;
    let seen = a.last_seen();
    assert_eq!(seen.headers["l5d-dst-client"], format!("/$/inet/127.0.0.1/{}", a.port()));
    consul.set_mode(Mode::Up);
    let start = tokio::time::Instant::now();
    loop {
        let _ = status_and_body(sc.addr("egress"), "forex-rate").await;
        if a.last_seen().headers["l5d-dst-client"] == "/#/io.l5d.consul/dc1/forex-rate" {
            break;
        }
        assert!(start.elapsed() < SETTLE, "never moved to the consul branch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn namer_config(consul: SocketAddr) -> ConsulNamerConfig {
    let yaml = format!("namers: [{{kind: io.l5d.consul, host: 127.0.0.1, port: {}}}]\nrouters: [{{protocol: http, servers: [{{port: 0}}]}}]\nadmin: {{port: 0}}", consul.port());
    let loaded = switchyard::config::load(&yaml).expect("valid");
    match loaded.config.namers.into_iter().next() {
        Some(NamerConfig::Consul(c)) => c,
        other => panic!("expected a consul namer: {other:?}"),
    }
}

fn addrs(namer: &ConsulNamer, rest: &str) -> Option<Vec<String>> {
    let prefix = Path::read("/#/io.l5d.consul").unwrap();
    match namer.lookup(&prefix, &Path::read(rest).unwrap()) {
        NamerAnswer::Ready(NameTree::Leaf(b)) => {
            Some(b.endpoints.load().endpoints.iter().map(|e| e.addr.to_string()).collect())
        }
        _ => None,
    }
}

async fn eventually_addrs(namer: &ConsulNamer, rest: &str, want: &[String]) {
    let start = tokio::time::Instant::now();
    while addrs(namer, rest).as_deref() != Some(want) {
        assert!(start.elapsed() < SETTLE, "{rest} never became {want:?} (is {:?})", addrs(namer, rest));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn index_going_backwards_is_reset_and_followed() {
    let consul = double().await;
    consul.register("rate-1", "forex-rate", "127.0.0.1", 4001, &[]);
    for i in 0..5 {
        consul.kv_put("unrelated", &i.to_string()); // push the raft index well past what a reset goes back to
    }
    consul.register("rate-1", "forex-rate", "127.0.0.1", 4001, &[]);
    let generation = Arc::new(AtomicU64::new(0));
    let namer = ConsulNamer::with_timing(
        &namer_config(consul.addr),
        generation,
        Duration::from_millis(200),
        Duration::from_secs(600),
    );
    eventually_addrs(&namer, "/dc1/forex-rate", &["127.0.0.1:4001".to_string()]).await;
    // A snapshot restore: every index goes back to 1; then a change lands at index 2, below what the namer holds.
    consul.reset_index();
    consul.register("rate-2", "forex-rate", "127.0.0.1", 4002, &[]);
    eventually_addrs(&namer, "/dc1/forex-rate", &["127.0.0.1:4001".to_string(), "127.0.0.1:4002".to_string()]).await;
    let state = namer.state();
    let index = state["names"]["/dc1/forex-rate"]["consulIndex"].as_u64().unwrap();
    assert!(index < 5, "the namer follows the new, lower index: {state}");
}

#[tokio::test]
async fn one_watch_per_name_and_idle_watches_stop() {
    let consul = double().await;
    consul.register("rate-1", "forex-rate", "127.0.0.1", 4001, &[]);
    let generation = Arc::new(AtomicU64::new(0));
    let namer = ConsulNamer::with_timing(
        &namer_config(consul.addr),
        generation.clone(),
        Duration::from_millis(100),
        Duration::from_millis(300),
    );
    eventually_addrs(&namer, "/dc1/forex-rate", &["127.0.0.1:4001".to_string()]).await;
    // Residuals and repeated lookups share the watch.
    assert!(addrs(&namer, "/dc1/forex-rate/extra/path").is_some());
    assert_eq!(namer.state()["names"].as_object().unwrap().len(), 1);
    let bumped = generation.load(Ordering::Acquire);
    // Nobody holds the bound name or looks it up any more: the watch stops and asks routers to re-bind.
    let start = tokio::time::Instant::now();
    while !namer.state()["names"].as_object().unwrap().is_empty() {
        assert!(start.elapsed() < SETTLE, "the idle watch never stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(generation.load(Ordering::Acquire) > bumped, "stopping a watch bumps the generation");
}

#[tokio::test]
async fn original_linkerd_outgoing_config_runs_as_written() {
    let consul = double().await;
    let app = Upstream::start("rate").await;
    // registrator's name for the ingress port of an image `forex-exchange-rate` publishing 4140.
    consul.register("host:forex-exchange-rate:4140", "forex-exchange-rate-4140", "127.0.0.1", app.port(), &[]);
    let config = format!(
        "admin:
  ip: 127.0.0.1
  port: 0
namers:
- kind: io.l5d.consul
  host: 127.0.0.1
  port: {}
  includeTag: false
  setHost: false
routers:
- protocol: http
  label: outgoing
  baseDtab: |
    /http/1.1/* => /#/io.l5d.consul/dc1;
  servers:
  - port: 0
    ip: 127.0.0.1
",
        consul.addr.port()
    );
    let sc = Sidecar::start(&config).await;
    let resp = get(sc.addr("outgoing"), "forex-exchange-rate-4140", "/2016-09-05/USD/JPY", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(text(resp).await, "rate");
    let seen = app.last_seen();
    assert_eq!(seen.uri, "/2016-09-05/USD/JPY");
    assert_eq!(seen.headers["l5d-dst-service"], "/http/1.1/GET/forex-exchange-rate-4140");
    assert_eq!(seen.headers["l5d-dst-client"], "/#/io.l5d.consul/dc1/forex-exchange-rate-4140");
}

// ---------------------------------------------------------------------------------------------------------------
// Mesh-wide dtabs

/// A sidecar whose egress router takes its dtab from `store` (a `dtabStore:` map), with `fallback` as config dtab.
fn store_yaml(fallback: &str, store: &str) -> String {
    format!(
        "admin: {{ip: 127.0.0.1, port: 0}}
routers:
- protocol: http
  label: egress
  dtab: |
{}
  servers:
  - {{ip: 127.0.0.1, port: 0}}
  dtabStore: {store}
",
        indent(fallback)
    )
}

fn inet(u: &Upstream) -> String {
    format!("/svc => /$/inet/127.0.0.1/{};", u.port())
}

async fn etag(admin: SocketAddr) -> String {
    let (status, headers, _) = crate::support::admin(admin, "GET", "/dtab/egress", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    headers["etag"].to_str().unwrap().to_string()
}

async fn put_dtab(admin: SocketAddr, dtab: &str, if_match: Option<&str>) -> (StatusCode, String) {
    let headers: Vec<(&str, &str)> = if_match.map(|e| vec![("if-match", e)]).unwrap_or_default();
    let (status, _, body) = crate::support::admin(admin, "PUT", "/dtab/egress", &headers, dtab).await;
    (status, body)
}

/// Both sidecars follow the store: a PUT on either reroutes both; a stale If-Match is refused; a garbage dtab
/// written into the store by someone else changes nothing and is reported.
async fn mesh_wide_dtab_behaviour(store: &str, write_garbage: impl Fn(&str)) {
    let (a, b, c) = (Upstream::start("a").await, Upstream::start("b").await, Upstream::start("c").await);
    let one = Sidecar::start(&store_yaml(&inet(&a), store)).await;
    let two = Sidecar::start(&store_yaml(&inet(&a), store)).await;
    until_routed_to(one.addr("egress"), "forex-rate", "a").await;

    let first = etag(one.admin()).await;
    assert_eq!(put_dtab(one.admin(), &inet(&b), Some(&first)).await.0, StatusCode::NO_CONTENT);
    until_routed_to(one.addr("egress"), "forex-rate", "b").await;
    until_routed_to(two.addr("egress"), "forex-rate", "b").await;

    // The old ETag no longer matches, on either sidecar: 412, nothing changes.
    let (status, body) = put_dtab(two.admin(), &inet(&c), Some(&first)).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    let (status, _) = put_dtab(one.admin(), &inet(&c), Some(&first)).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    until_routed_to(two.addr("egress"), "forex-rate", "b").await;

    // Someone writes garbage straight into the store: both keep the last good dtab and say why.
    write_garbage("/svc => => nonsense;;");
    for sc in [&one, &two] {
        let start = tokio::time::Instant::now();
        loop {
            let (_, headers, body) = crate::support::admin(sc.admin(), "GET", "/dtab/egress", &[], "").await;
            if let Some(err) = headers.get("l5d-dtab-store-error") {
                assert!(err.to_str().unwrap().contains("malformed dtab"), "{err:?}");
                assert!(body.contains(&b.port().to_string()), "the last good dtab stays: {body}");
                break;
            }
            assert!(start.elapsed() < SETTLE, "the bad dtab was never reported");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (_, _, metrics) = crate::support::admin(sc.admin(), "GET", "/metrics", &[], "").await;
        assert!(
            metrics.contains("switchyard_dtab_store_errors_total{reason=\"invalid\",router=\"egress\"} 1"),
            "{metrics}"
        );
        let (_, _, routers) = crate::support::admin(sc.admin(), "GET", "/routers.json", &[], "").await;
        assert!(routers.contains("\"dtabStore\""), "{routers}");
        assert_eq!(status_and_body(sc.addr("egress"), "forex-rate").await, (StatusCode::OK, "b".to_string()));
    }

    // Writing a good dtab over the garbage (If-Match = the dtab in force) repairs the store for everyone.
    let current = etag(two.admin()).await;
    assert_eq!(put_dtab(two.admin(), &inet(&c), Some(&current)).await.0, StatusCode::NO_CONTENT);
    until_routed_to(one.addr("egress"), "forex-rate", "c").await;
    until_routed_to(two.addr("egress"), "forex-rate", "c").await;
    let (_, headers, _) = crate::support::admin(one.admin(), "GET", "/dtab/egress", &[], "").await;
    assert!(headers.get("l5d-dtab-store-error").is_none());
}

#[tokio::test]
async fn consul_kv_dtab_is_mesh_wide_with_check_and_set() {
    let consul = double().await;
    let store = format!("{{kind: io.l5d.consul, host: 127.0.0.1, port: {}}}", consul.addr.port());
    let kv = consul.clone();
    mesh_wide_dtab_behaviour(&store, move |garbage| kv.kv_put("switchyard/dtabs/egress", garbage)).await;
    let (value, _) = consul.kv_get("switchyard/dtabs/egress").expect("written through to the default key");
    assert!(value.contains("/$/inet/127.0.0.1/"), "{value}");
}

#[tokio::test]
async fn consul_kv_conflicting_writer_gets_412() {
    let consul = double().await;
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let store = format!("{{kind: io.l5d.consul, host: 127.0.0.1, port: {}, key: team/egress}}", consul.addr.port());
    consul.kv_put("team/egress", &inet(&a));
    let sc = Sidecar::start(&store_yaml("/svc => /$/fail;", &store)).await;
    until_routed_to(sc.addr("egress"), "forex-rate", "a").await;
    let seen = etag(sc.admin()).await;
    // Consul refuses the CAS while the sidecar cannot reach it: the write fails with 503 and nothing changes.
    consul.set_mode(Mode::Failing);
    let (status, body) = put_dtab(sc.admin(), &inet(&b), Some(&seen)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    consul.set_mode(Mode::Up);
    // Another writer changes the key between our read and our write: the CAS (or the local check) says 412.
    consul.kv_put("team/egress", &format!("{}\n/svc/x => /$/fail;", inet(&a)));
    let (status, body) = put_dtab(sc.admin(), &inet(&b), Some(&seen)).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert!(consul.kv_get("team/egress").unwrap().0.contains("/svc/x"), "the other writer's dtab stands");
}

#[tokio::test]
async fn file_store_dtab_is_shared_by_two_sidecars() {
    let dir = std::env::temp_dir().join(format!("sy-dtabs-{}-{}", std::process::id(), fastrand_like()));
    let file = dir.join("egress");
    let store = format!("{{kind: io.l5d.fs, path: '{}'}}", file.display());
    let target = file.clone();
    mesh_wide_dtab_behaviour(&store, move |garbage| std::fs::write(&target, garbage).unwrap()).await;
    assert!(std::fs::read_to_string(&file).unwrap().contains("/$/inet/127.0.0.1/"));
    let _ = std::fs::remove_dir_all(dir);
}

fn fastrand_like() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

// ---------------------------------------------------------------------------------------------------------------
// The `switchyard dtab` CLI against a real sidecar

/// Runs the built `switchyard dtab …` off the runtime's thread (the sidecar under test runs on it).
async fn cli(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("dtab")
            .args(&args)
            .output()
            .expect("runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn dtab_cli_gets_diffs_sets_and_explains() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let dir = std::env::temp_dir().join(format!("sy-cli-{}-{}", std::process::id(), fastrand_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let sc = Sidecar::start(&store_yaml(
        &inet(&a),
        &format!("{{kind: io.l5d.fs, path: '{}'}}", dir.join("egress").display()),
    ))
    .await;
    let admin = format!("http://{}", sc.admin());
    let base = |cmd: &[&str]| -> Vec<String> {
        ["--admin", admin.as_str(), "--router", "egress"].iter().chain(cmd).map(|s| s.to_string()).collect()
    };

    let (code, out, _) = cli(base(&["get"])).await;
    assert_eq!(code, 0);
    assert!(out.contains(&format!("/$/inet/127.0.0.1/{}", a.port())), "{out}");

    let file = dir.join("new.dtab");
    std::fs::write(&file, format!("# move everything to b\n{}\n", inet(&b))).unwrap();
    let file = file.display().to_string();
    let (code, out, _) = cli(base(&["diff", &file])).await;
    assert_eq!(code, 1, "differences exit 1 like diff(1): {out}");
    assert!(out.contains(&format!("- /svc => /$/inet/127.0.0.1/{}", a.port())), "{out}");
    assert!(out.contains(&format!("+ /svc => /$/inet/127.0.0.1/{}", b.port())), "{out}");

    let (code, out, err) = cli(base(&["set", &file])).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("dtab replaced"), "{out}");
    until_routed_to(sc.addr("egress"), "forex-rate", "b").await;
    let (code, out, _) = cli(base(&["diff", &file])).await;
    assert_eq!(code, 0, "{out}");

    let (code, out, _) = cli(base(&["explain", "/svc/forex-rate"])).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("/svc/forex-rate\n"), "{out}");
    assert!(out.contains(&format!("=> bound /$/inet/127.0.0.1/{}", b.port())), "{out}");

    std::fs::write(dir.join("bad.dtab"), "/svc => => ;").unwrap();
    let (code, _, err) = cli(base(&["set", &dir.join("bad.dtab").display().to_string()])).await;
    assert_eq!(code, 1);
    assert!(err.contains("malformed"), "{err}");
    let (code, _, err) = cli(vec!["--router".into(), "egress".into(), "frobnicate".into()]).await;
    assert_eq!(code, 64, "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn set_host_sends_the_consul_dns_name() {
    let consul = double().await;
    let a = Upstream::start("a").await;
    consul.register("rate-1", "forex-rate", "127.0.0.1", a.port(), &[]);
    let sc = Sidecar::start(&yaml(consul.addr, "  setHost: true", "/svc => /#/io.l5d.consul/.local;", "")).await;
    until_routed_to(sc.addr("egress"), "forex-rate", "a").await;
    assert_eq!(a.last_seen().headers["host"], "forex-rate.service.consul", "setHost rewrites Host for .local");

    let dc = Sidecar::start(&yaml(consul.addr, "  setHost: true", "/svc => /#/io.l5d.consul/dc1;", "")).await;
    until_routed_to(dc.addr("egress"), "forex-rate", "a").await;
    assert_eq!(a.last_seen().headers["host"], "forex-rate.service.dc1.consul");

    let plain = Sidecar::start(&yaml(consul.addr, "", "/svc => /#/io.l5d.consul/.local;", "")).await;
    until_routed_to(plain.addr("egress"), "forex-rate", "a").await;
    assert_eq!(a.last_seen().headers["host"], "forex-rate", "without setHost the caller's Host is kept");
}

#[tokio::test]
async fn explaining_names_starts_no_watches_and_made_up_names_cannot_crowd_out_real_ones() {
    let consul = double().await;
    let real = Upstream::start("real").await;
    let sc = Sidecar::start(&yaml(consul.addr, "", "/svc => /#/io.l5d.consul/.local;", "")).await;
    // A GET explains a name and must leave nothing behind: no watch, no Consul query.
    for i in 0..50 {
        let path = format!("/delegator.json?path=/svc/made-up-{i}");
        let (status, _, body) = crate::support::admin(sc.admin(), "GET", &path, &[], "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("\"neg\""), "{body}");
    }
    let (_, _, body) = crate::support::admin(sc.admin(), "GET", "/namers.json", &[], "").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["namers"]["/#/io.l5d.consul"]["names"].as_object().map(|m| m.len()), Some(0), "{v}");

    // Requests for more made-up names than the namer may watch: each gets its 502, and then a real service that
    // appears still routes (a watch of a name Consul says does not exist makes room).
    let egress = sc.addr("egress");
    for i in 0..(switchyard::namer::consul::MAX_WATCHES + 20) {
        let (status, _) = status_and_body(egress, &format!("made-up-{i}")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
    }
    consul.register("real-1", "real-service", "127.0.0.1", real.port(), &[]);
    until_routed_to(egress, "real-service", "real").await;
}
