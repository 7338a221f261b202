//! Mutual TLS between sidecars: a client sidecar's egress → a server sidecar's mTLS ingress → an upstream, with
//! identities issued by `switchyard identity`'s CA code. Every refusal is distinct and forwards nothing; rotation
//! under load loses nothing; authorization and context trust follow identity.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use switchyard::identityctl::{create_ca, issue};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const DOMAIN: &str = "mesh.test";
const DAY: Duration = Duration::from_secs(86_400);

/// A CA (and a second, unrelated one) with identities in a fresh directory.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("sy-tls-{}-{}", std::process::id(), rand_f64().to_bits()));
        create_ca(DOMAIN, &dir.join("ca"), DAY, OffsetDateTime::now_utc()).unwrap();
        create_ca("other.test", &dir.join("other-ca"), DAY, OffsetDateTime::now_utc()).unwrap();
        let pki = Self { dir };
        for svc in ["forex-web", "forex-converter", "forex-rate"] {
            pki.issue(svc, "ca", svc, 0, DAY);
        }
        pki
    }

    /// Issues `service`'s identity into `<dir>/<name>/` with CA `ca`, starting `offset_secs` from now.
    fn issue(&self, service: &str, ca: &str, name: &str, offset_secs: i64, valid: Duration) {
        let start = OffsetDateTime::now_utc() + time::Duration::seconds(offset_secs);
        let out = self.dir.join(name);
        issue(&self.dir.join(ca), service, &out, valid, start).unwrap();
        if service != name {
            std::fs::rename(out.join(format!("{service}.pem")), out.join(format!("{name}.pem"))).unwrap();
            std::fs::rename(out.join(format!("{service}.key")), out.join(format!("{name}.key"))).unwrap();
        }
    }

    fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(name).join(format!("{name}.pem"))
    }

    fn key(&self, name: &str) -> PathBuf {
        self.dir.join(name).join(format!("{name}.key"))
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca").join("ca.pem")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// A sidecar with an mTLS ingress presenting `cert` (a name under the Pki) and forwarding to `upstream` (through
/// `/rate`, a name only this sidecar's dtab uses, so a forwarded `l5d-ctx-dtab` can be seen to act here).
async fn server_sidecar(pki: &Pki, cert: &str, upstream: SocketAddr, extra_server: &str) -> Sidecar {
    let yaml = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}
routers:
- protocol: http
  label: ingress
  dtab: /svc/* => /rate; /rate => /$/inet/127.0.0.1/{port};
  servers:
  - ip: 127.0.0.1
    port: 0
    tls:
      certPath: {cert}
      keyPath: {key}
      caCertPath: {ca}
      requireClientAuth: true
{extra_server}",
        port = upstream.port(),
        cert = p(&pki.cert(cert)),
        key = p(&pki.key(cert)),
        ca = p(&pki.ca()),
    );
    Sidecar::start(&yaml).await
}

/// A sidecar whose egress reaches `forex-rate` (registered in its fs registry at `target`) over TLS, checking
/// `{service}.mesh.test` and presenting `identity` (none: no client certificate).
async fn client_sidecar(pki: &Pki, identity: Option<&str>, target: SocketAddr) -> Sidecar {
    client_sidecar_speaking(pki, identity, target, "http").await
}

/// [`client_sidecar`] whose egress speaks `protocol` (`http` or `h2`) upstream.
async fn client_sidecar_speaking(pki: &Pki, identity: Option<&str>, target: SocketAddr, protocol: &str) -> Sidecar {
    let auth = identity.map_or(String::new(), |id| {
        format!("        clientAuth: {{certPath: {}, keyPath: {}}}\n", p(&pki.cert(id)), p(&pki.key(id)))
    });
    let yaml = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}
namers:
- kind: io.l5d.fs
  rootDir: {{registry}}
routers:
- protocol: {protocol}
  label: egress
  dtab: /svc => /#/io.l5d.fs;
  servers:
  - {{ip: 127.0.0.1, port: 0, clearContext: false}}
  client:
    failureAccrual: {{kind: none}}
    kind: io.l5d.static
    configs:
    - prefix: \"/#/io.l5d.fs/{{service}}\"
      tls:
        commonName: \"{{service}}.{DOMAIN}\"
        trustCerts: [{ca}]
{auth}",
        ca = p(&pki.ca()),
    );
    let sc = Sidecar::start(&yaml).await;
    sc.register("forex-rate", &[target]);
    sc
}

/// GETs forex-rate through `client`'s egress once the registry is read: (status, l5d-err).
async fn call(client: &Sidecar, headers: &[(&str, &str)]) -> (StatusCode, String, String) {
    let mut last = (StatusCode::OK, String::new(), String::new());
    for _ in 0..200 {
        let resp = get(client.addr("egress"), "forex-rate", "/", headers).await;
        let err = resp.headers().get("l5d-err").map(|v| v.to_str().unwrap_or("?").to_string()).unwrap_or_default();
        let status = resp.status();
        last = (status, err, text(resp).await);
        // Until the fs namer has read the registry the name does not bind; every other answer is final.
        if !last.1.contains("no route") && !last.1.contains("neither the dtab") {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    last
}

async fn metric(sc: &Sidecar, needle: &str) -> String {
    let (_, _, m) = admin(sc.admin(), "GET", "/metrics", &[], "").await;
    m.lines().filter(|l| l.contains(needle)).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn a_mutual_tls_hop_with_service_identities() {
    let pki = Pki::new();
    let up = Upstream::start("rate").await;
    let allow = "    authorization: {allow: [spiffe://mesh.test/svc/forex-converter]}";
    let server = server_sidecar(&pki, "forex-rate", up.addr, allow).await;
    let client = client_sidecar(&pki, Some("forex-converter"), server.addr("ingress")).await;
    for _ in 0..20 {
        let (status, err, body) = call(&client, &[]).await;
        assert_eq!((status, err.as_str(), body.as_str()), (StatusCode::OK, "", "rate"));
    }
    assert_eq!(up.hits(), 20);
    // Pooled and resumed: one TLS connection carried the requests.
    let connects = metric(&client, "switchyard_upstream_connects_total").await;
    assert!(connects.contains(r#"result="ok",router="egress"} 1"#), "{connects}");
    let expiry = metric(&server, "switchyard_tls_certificate_expiry_timestamp_seconds").await;
    assert!(expiry.contains(r#"identity="spiffe://mesh.test/svc/forex-rate",use="server:ingress""#), "{expiry}");
    // The dashboard's data: this sidecar's identity, whom it admits, and the identity each client requires.
    let (_, _, stats) = admin(server.admin(), "GET", "/admin/stats.json", &[], "").await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["identities"][0]["identity"], "spiffe://mesh.test/svc/forex-rate", "{stats}");
    assert_eq!(stats["authorization"][0]["allow"][0], "spiffe://mesh.test/svc/forex-converter", "{stats}");
    let (_, _, stats) = admin(client.admin(), "GET", "/admin/stats.json", &[], "").await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["routers"][0]["clients"][0]["peerIdentity"], "forex-rate.mesh.test", "{stats}");
    assert_eq!(stats["identities"][0]["identity"], "spiffe://mesh.test/svc/forex-converter", "{stats}");
}

#[tokio::test]
async fn http2_between_sidecars_is_negotiated_over_tls() {
    let pki = Pki::new();
    let up = Upstream::start("rate").await;
    let server = server_sidecar(&pki, "forex-rate", up.addr, "").await;
    let client = client_sidecar_speaking(&pki, Some("forex-converter"), server.addr("ingress"), "h2").await;
    for _ in 0..5 {
        assert_eq!(call(&client, &[]).await.0, StatusCode::OK);
    }
    // The upstream saw each request come through the server sidecar, which says on `Via` how it got it.
    let via = up.last_seen().headers.get_all("via").iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>();
    assert!(
        via.iter().any(|v| v.contains("2.0 switchyard")),
        "the sidecar-to-sidecar hop was HTTP/2 (ALPN h2): {via:?}"
    );
    let connects = metric(&client, "switchyard_upstream_connects_total").await;
    assert!(connects.contains(r#"result="ok",router="egress"} 1"#), "one multiplexed TLS connection: {connects}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_egress_carries_requests_as_h2_streams_to_a_switchyard_peer() {
    let pki = Pki::new();
    let up = Upstream::start("rate").await;
    let server = server_sidecar(&pki, "forex-rate", up.addr, "").await;
    let client = client_sidecar(&pki, Some("forex-converter"), server.addr("ingress")).await;
    assert_eq!(call(&client, &[]).await.0, StatusCode::OK);
    // 100 concurrent HTTP/1.1 callers, each on its own connection to the egress.
    let addr = client.addr("egress");
    let calls: Vec<_> = (0..100)
        .map(|i| tokio::spawn(async move { get(addr, "forex-rate", &format!("/n/{i}"), &[]).await.status() }))
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap(), StatusCode::OK);
    }
    let connects = metric(&client, "switchyard_upstream_connects_total").await;
    assert!(connects.contains(r#"result="ok",router="egress"} 1"#), "one multiplexed connection: {connects}");
    // The peer got HTTP/2 (its Via says so) and gave its app HTTP/1.1 again, with Host and nothing of the hop.
    let seen = up.last_seen();
    let via: Vec<_> = seen.headers.get_all("via").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert!(via.iter().any(|v| v.contains("2.0 switchyard")), "the sidecar hop was HTTP/2: {via:?}");
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.headers.get("host").map(|h| h.to_str().unwrap()), Some("forex-rate"));
    assert!(!seen.headers.contains_key("l5d-orig-proto"), "the hop's marker stays on the hop: {:?}", seen.headers);
    assert!(seen.uri.starts_with("/n/"), "origin-form target: {}", seen.uri);
}

#[tokio::test]
async fn trailers_cross_the_upgraded_sidecar_hop() {
    use http_body_util::BodyExt;
    let pki = Pki::new();
    let up = Upstream::start("rate").await;
    let server = server_sidecar(&pki, "forex-rate", up.addr, "").await;
    let client = client_sidecar(&pki, Some("forex-converter"), server.addr("ingress")).await;
    assert_eq!(call(&client, &[]).await.0, StatusCode::OK);
    // app (HTTP/1.1, chunked + trailer) → ingress → HTTP/2 → egress → HTTP/1.1 caller that accepts trailers.
    let resp = get(client.addr("egress"), "forex-rate", "/trailers", &[("te", "trailers")]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let collected = resp.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    assert_eq!(trailers.get("x-checksum").map(|v| v.to_str().unwrap()), Some("c0ffee"), "{trailers:?}");
    assert_eq!(collected.to_bytes(), "body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_peer_that_is_not_a_switchyard_gets_http1_from_the_upgrading_egress() {
    let pki = Pki::new();
    let up = Upstream::start("rate").await;
    // A TLS server that speaks only HTTP/1.1 (ALPN http/1.1), as most TLS servers that are not sidecars.
    let front = TlsFront::start(&pki, "forex-rate", up.addr).await;
    let client = client_sidecar(&pki, Some("forex-converter"), front.addr).await;
    assert_eq!(call(&client, &[]).await.0, StatusCode::OK);
    let addr = client.addr("egress");
    let calls: Vec<_> = (0..50)
        .map(|i| tokio::spawn(async move { get(addr, "forex-rate", &format!("/n/{i}"), &[]).await.status() }))
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap(), StatusCode::OK, "the upgrade degrades to HTTP/1.1, with its pool");
    }
    let seen = up.last_seen();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert!(!seen.headers.contains_key("l5d-orig-proto"), "{:?}", seen.headers);
    assert_eq!(seen.headers.get("host").map(|h| h.to_str().unwrap()), Some("forex-rate"));
    assert!(up.conns.accepted.load(Ordering::SeqCst) > 1, "HTTP/1.1: concurrent requests used several connections");
}

#[tokio::test]
async fn h2_upgrade_off_keeps_the_sidecar_hop_on_http1() {
    let pki = Pki::new();
    let up = Upstream::start("rate").await;
    let server = server_sidecar(&pki, "forex-rate", up.addr, "").await;
    let yaml = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}
routers:
- protocol: http
  label: egress
  dtab: /svc/* => /$/inet/127.0.0.1/{port};
  servers: [{{ip: 127.0.0.1, port: 0}}]
  client:
    h2Upgrade: false
    tls:
      commonName: forex-rate.{DOMAIN}
      trustCerts: [{ca}]
      clientAuth: {{certPath: {cert}, keyPath: {key}}}
",
        port = server.addr("ingress").port(),
        ca = p(&pki.ca()),
        cert = p(&pki.cert("forex-converter")),
        key = p(&pki.key("forex-converter")),
    );
    let client = Sidecar::start(&yaml).await;
    assert_eq!(call(&client, &[]).await.0, StatusCode::OK);
    let via: Vec<_> = up.last_seen().headers.get_all("via").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert!(via.iter().all(|v| !v.contains("2.0")), "HTTP/1.1 all the way: {via:?}");
}

#[tokio::test]
async fn every_handshake_failure_is_refused_with_its_own_error_and_nothing_is_forwarded() {
    let pki = Pki::new();
    pki.issue("forex-rate", "ca", "expired", -2 * 86_400, DAY);
    pki.issue("forex-rate", "ca", "not-yet", 86_400, DAY);
    pki.issue("forex-rate", "other-ca", "stranger", 0, DAY);
    let up = Upstream::start("rate").await;
    // (what the server presents, what the client's l5d-err must say)
    let cases = [
        ("expired", "certificate expired"),
        ("not-yet", "certificate not valid yet"),
        ("stranger", "UnknownIssuer"),
        ("forex-web", "certificate not valid for name \"forex-rate.mesh.test\""),
    ];
    for (presented, expected) in cases {
        let server = server_sidecar(&pki, presented, up.addr, "").await;
        let client = client_sidecar(&pki, Some("forex-converter"), server.addr("ingress")).await;
        let (status, err, _) = call(&client, &[]).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{presented}: {err}");
        assert!(
            err.contains("TLS handshake with forex-rate.mesh.test failed") && err.contains(expected),
            "{presented}: {err}"
        );
    }

    // No client certificate: the server refuses it (and counts why); the client gets a 502.
    let server = server_sidecar(&pki, "forex-rate", up.addr, "").await;
    let anonymous = client_sidecar(&pki, None, server.addr("ingress")).await;
    let (status, err, _) = call(&anonymous, &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{err}");
    let refused = metric(&server, "switchyard_tls_handshake_errors_total").await;
    assert!(refused.contains(r#"reason="no_client_certificate",router="ingress""#), "{refused}");

    // Plaintext HTTP to the TLS port: a 400 that says why (never the upstream's answer), counted as not TLS.
    let mut conn = tokio::net::TcpStream::connect(server.addr("ingress")).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: forex-rate\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
    let answer = String::from_utf8_lossy(&buf);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("l5d-err: this port requires mutual TLS with a certificate from the mesh CA"), "{answer}");
    let refused = metric(&server, "switchyard_tls_handshake_errors_total").await;
    assert!(refused.contains(r#"reason="not_tls",router="ingress""#), "{refused}");

    // TLS to a plaintext port: the client reports it.
    let plain = client_sidecar(&pki, Some("forex-converter"), up.addr).await;
    let (status, err, _) = call(&plain, &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{err}");
    assert!(err.contains("TLS handshake with forex-rate.mesh.test failed"), "{err}");

    assert_eq!(up.hits(), 0, "nothing was forwarded by any refused connection");
}

#[tokio::test]
async fn authorization_admits_only_the_listed_identities() {
    let pki = Pki::new();
    let up = Upstream::start("rate").await;
    let allow = "    authorization: {allow: [spiffe://mesh.test/svc/forex-converter]}";
    let server = server_sidecar(&pki, "forex-rate", up.addr, allow).await;
    let web = client_sidecar(&pki, Some("forex-web"), server.addr("ingress")).await;
    let (status, err, _) = call(&web, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert!(err.contains("caller spiffe://mesh.test/svc/forex-web is not allowed"), "{err}");
    let denied = metric(&server, "switchyard_authorization_denied_total").await;
    assert!(denied.contains(r#"caller="spiffe://mesh.test/svc/forex-web",router="ingress"} 1"#), "{denied}");
    assert_eq!(up.hits(), 0);
    let converter = client_sidecar(&pki, Some("forex-converter"), server.addr("ingress")).await;
    assert_eq!(call(&converter, &[]).await.0, StatusCode::OK);
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn per_request_dtabs_are_honoured_only_from_identities_trusted_with_context() {
    let pki = Pki::new();
    let (normal, canary) = (Upstream::start("normal").await, Upstream::start("canary").await);
    let extra = "    clearContext: false
    authorization:
      allow: [spiffe://mesh.test/svc/forex-web, spiffe://mesh.test/svc/forex-converter]
      allowContext: [spiffe://mesh.test/svc/forex-converter]";
    let server = server_sidecar(&pki, "forex-rate", normal.addr, extra).await;
    let reroute = format!("/rate => /$/inet/127.0.0.1/{}", canary.port());
    let headers = [("l5d-dtab", reroute.as_str())];

    let trusted = client_sidecar(&pki, Some("forex-converter"), server.addr("ingress")).await;
    assert_eq!(call(&trusted, &headers).await.2, "canary", "an identity trusted with context may reroute");

    let untrusted = client_sidecar(&pki, Some("forex-web"), server.addr("ingress")).await;
    assert_eq!(call(&untrusted, &headers).await.2, "normal", "another identity's override is dropped");
    let dropped = metric(&server, "switchyard_context_dropped_total").await;
    assert!(dropped.contains(r#"router="ingress"} 1"#), "{dropped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_load_without_a_failed_request() {
    let pki = Pki::new();
    let up = Upstream::start("rate").await;
    let server = server_sidecar(&pki, "forex-rate", up.addr, "").await;
    let client = Arc::new(client_sidecar(&pki, Some("forex-converter"), server.addr("ingress")).await);
    assert_eq!(call(&client, &[]).await.0, StatusCode::OK);
    let before = metric(&server, "switchyard_tls_certificate_expiry_timestamp_seconds").await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, stop, ok, failed) = (client.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // A fresh downstream connection each time, so new upstream handshakes happen during rotation too.
                let counter = if call(&client, &[]).await.0 == StatusCode::OK { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Re-issue both sides' identities in place (a new key, a longer validity), as a renewal job would.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for svc in ["forex-rate", "forex-converter"] {
        pki.issue(svc, "ca", svc, 0, 2 * DAY);
    }
    let after = |m: &str| m != before && !m.is_empty();
    let server_ref = &server;
    switchyard_test_support::eventually(
        "the server presents its renewed certificate",
        Duration::from_secs(10),
        || async move { after(&metric(server_ref, "switchyard_tls_certificate_expiry_timestamp_seconds").await) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 20, "load ran throughout: {ok} ok");
    assert_eq!(failed, 0, "no failed request across the rotation ({ok} ok)");
    let reloads = metric(&server, "switchyard_tls_reloads_total").await;
    assert!(reloads.contains(r#"result="ok",use="server:ingress""#), "{reloads}");
}

#[tokio::test]
async fn a_broken_certificate_on_disk_keeps_the_previous_one_in_force() {
    let pki = Pki::new();
    let up = Upstream::start("rate").await;
    let server = server_sidecar(&pki, "forex-rate", up.addr, "").await;
    let client = client_sidecar(&pki, Some("forex-converter"), server.addr("ingress")).await;
    assert_eq!(call(&client, &[]).await.0, StatusCode::OK);
    std::fs::write(pki.cert("forex-rate"), "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    let server_ref = &server;
    switchyard_test_support::eventually("the failed reload is counted", Duration::from_secs(10), || async move {
        metric(server_ref, "switchyard_tls_reloads_total").await.contains("result=\"failed\"")
    })
    .await;
    let fresh = client_sidecar(&pki, Some("forex-converter"), server.addr("ingress")).await;
    assert_eq!(call(&fresh, &[]).await.0, StatusCode::OK, "new handshakes still use the last good certificate");
}

#[tokio::test]
async fn the_admin_answers_only_to_its_own_names() {
    let sc =
        Sidecar::start("admin: {ip: 127.0.0.1, port: 0}\nrouters: [{protocol: http, servers: [{port: 0}]}]\n").await;
    let a = sc.admin();
    let (status, _, body) = admin(a, "GET", "/admin/ping", &[("host", "evil.example:9990")], "").await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{body}");
    assert!(body.contains("evil.example"), "{body}");
    let (status, _, _) = admin(a, "PUT", "/dtab/http", &[("host", "rebound.evil.example")], "/svc=>/$/nil;").await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "a rebinding page cannot write either");
    let absolute = format!("http://evil.example:{}/admin/ping", a.port());
    let (status, _, _) = admin(a, "GET", &absolute, &[("host", "localhost")], "").await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "the absolute-form target names the host, not Host");
    for host in ["localhost:9990".to_string(), a.to_string(), format!("[::1]:{}", a.port())] {
        let (status, _, body) = admin(a, "GET", "/admin/ping", &[("host", host.as_str())], "").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "pong"), "{host}");
    }
}

#[tokio::test]
async fn the_admin_serves_tls_and_the_cli_speaks_it_with_the_token() {
    let pki = Pki::new();
    let yaml = format!(
        "admin:
  ip: 127.0.0.1
  port: 0
  token: s3cret
  tls: {{certPath: {cert}, keyPath: {key}}}
  hosts: [forex-rate.mesh.test]
routers: [{{protocol: http, label: egress, dtab: /svc=>/$/nil;, servers: [{{port: 0}}]}}]
",
        cert = p(&pki.cert("forex-rate")),
        key = p(&pki.key("forex-rate")),
    );
    let sc = Sidecar::start(&yaml).await;
    // Plaintext to the TLS admin port gets no HTTP answer.
    let mut conn = tokio::net::TcpStream::connect(sc.admin()).await.unwrap();
    conn.write_all(b"GET /admin/ping HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
    assert!(!buf.starts_with(b"HTTP/"), "{:?}", String::from_utf8_lossy(&buf));

    // The CLI over https, trusting the mesh CA and checking the certificate's name, with and without the token.
    let bin = env!("CARGO_BIN_EXE_switchyard");
    let url = format!("https://127.0.0.1:{}", sc.admin().port());
    let dtab = pki.dir.join("new.dtab");
    std::fs::write(&dtab, "/svc => /$/inet/127.0.0.1/1;\n").unwrap();
    let (ca, file) = (pki.ca(), dtab.clone());
    let cli = move |args: &[&str], token: Option<&str>, name: &str| {
        let mut cmd = std::process::Command::new(bin);
        cmd.arg("dtab").arg("--admin").arg(&url).args(args);
        cmd.env("SWITCHYARD_ADMIN_CA", &ca).env("SWITCHYARD_ADMIN_TLS_NAME", name).env_remove("SWITCHYARD_ADMIN_TOKEN");
        if let Some(t) = token {
            cmd.env("SWITCHYARD_ADMIN_TOKEN", t);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let out = tokio::task::spawn_blocking(move || {
        let set = ["set", file.to_str().unwrap()];
        let wrong_name = cli(&["get"], None, "forex-web.mesh.test");
        let no_token = cli(&set, None, "forex-rate.mesh.test");
        let token = cli(&set, Some("s3cret"), "forex-rate.mesh.test");
        let now = cli(&["get"], None, "forex-rate.mesh.test");
        [wrong_name, no_token, token, now]
    })
    .await
    .unwrap();
    let [wrong_name, no_token, token, now] = out;
    assert!(!wrong_name.0 && wrong_name.1.contains("not valid for name \"forex-web.mesh.test\""), "{wrong_name:?}");
    assert!(!no_token.0 && no_token.1.contains("401"), "{no_token:?}");
    assert!(token.0 && token.1.contains("dtab replaced"), "{token:?}");
    assert!(now.0 && now.1.contains("/$/inet/127.0.0.1/1"), "{now:?}");
}

/// A TLS front for a plain TCP service (a Consul agent behind HTTPS): its certificate can be swapped, which
/// also cuts every open connection so clients must handshake again.
struct TlsFront {
    addr: SocketAddr,
    config: Arc<arc_swap::ArcSwap<rustls::ServerConfig>>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl TlsFront {
    async fn start(pki: &Pki, cert: &str, backend: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Arc::new(arc_swap::ArcSwap::from_pointee(Self::config(pki, cert)));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (cfg, cut_tx) = (config.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = tokio_rustls::TlsAcceptor::from(cfg.load_full());
                let mut cut_rx = cut_tx.subscribe();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else { return };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut tls, &mut plain) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Self { addr, config, cut }
    }

    fn config(pki: &Pki, cert: &str) -> rustls::ServerConfig {
        let c = switchyard::config::ServerTlsConfig {
            cert_path: pki.cert(cert),
            key_path: pki.key(cert),
            intermediate_certs_path: None,
            ca_cert_path: None,
            require_client_auth: false,
            protocols: Vec::new(),
        };
        let mut config = switchyard::tls::server_config(&c).unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }

    fn present(&self, pki: &Pki, cert: &str) {
        self.config.store(Arc::new(Self::config(pki, cert)));
        self.cut.send_modify(|n| *n += 1);
    }
}

#[tokio::test]
async fn consul_over_tls_keeps_the_last_endpoints_while_its_certificate_is_bad() {
    let pki = Pki::new();
    pki.issue("consul", "ca", "consul", 0, DAY);
    pki.issue("consul", "ca", "consul-expired", -2 * 86_400, DAY);
    let up = Upstream::start("rate").await;
    let consul = switchyard_test_support::consul::ConsulDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    consul.register("rate-1", "forex-rate", "127.0.0.1", up.port(), &[]);
    let front = TlsFront::start(&pki, "consul", consul.addr).await;
    let yaml = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}
namers:
- kind: io.l5d.consul
  host: 127.0.0.1
  port: {port}
  token: acl-s3cret
  tls: {{commonName: consul.{DOMAIN}, trustCerts: [{ca}]}}
routers:
- protocol: http
  label: egress
  dtab: /svc => /#/io.l5d.consul/dc1;
  servers: [{{ip: 127.0.0.1, port: 0}}]
",
        port = front.addr.port(),
        ca = p(&pki.ca()),
    );
    let sc = Sidecar::start(&yaml).await;
    let egress = sc.addr("egress");
    switchyard_test_support::eventually("routed through Consul over TLS", Duration::from_secs(10), || async move {
        let resp = get(egress, "forex-rate", "/", &[]).await;
        resp.status() == StatusCode::OK
    })
    .await;

    // Consul now presents an expired certificate (and every connection must handshake again).
    front.present(&pki, "consul-expired");
    let admin_addr = sc.admin();
    switchyard_test_support::eventually(
        "the namer reports why Consul is unusable",
        Duration::from_secs(15),
        || async move {
            let (_, _, namers) = admin(admin_addr, "GET", "/namers.json", &[], "").await;
            namers.contains("certificate expired")
        },
    )
    .await;
    for _ in 0..5 {
        let resp = get(egress, "forex-rate", "/", &[]).await;
        assert_eq!(resp.status(), StatusCode::OK, "the last known endpoints keep serving");
    }
    let errors = metric(&sc, "switchyard_namer_errors_total").await;
    assert!(!errors.is_empty() && !errors.ends_with(" 0"), "{errors}");
}
