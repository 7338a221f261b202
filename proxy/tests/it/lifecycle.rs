//! Lifecycle and robustness: graceful drain, garbage on the wire, and the `switchyard check` command.

use std::time::Duration;

use crate::support::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn yaml(port: u16) -> String {
    format!(
        "admin: {{ip: 127.0.0.1, port: 0}}
routers:
- protocol: http
  label: egress
  dtab: /svc => /$/inet/127.1/{port};
  servers: [{{ip: 127.0.0.1, port: 0}}]
"
    )
}

#[tokio::test]
async fn drain_finishes_in_flight_requests_and_refuses_new_ones() {
    let app = Upstream::start("app").await;
    let sc = Sidecar::start(&yaml(app.port())).await;
    let addr = sc.addr("egress");
    let in_flight = tokio::spawn(async move {
        let resp = get(addr, "forex-rate", "/slow/500", &[]).await;
        (resp.status(), text(resp).await)
    });
    eventually("request reached the upstream", Duration::from_secs(5), || app.hits() == 1).await;
    let shutdown = tokio::spawn(sc.running.shutdown());
    let (status, body) = in_flight.await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "app"), "the in-flight request completes during drain");
    tokio::time::timeout(Duration::from_secs(10), shutdown).await.expect("drain ends").unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no new connections after drain");
}

#[tokio::test]
async fn garbage_on_the_wire_does_not_hurt_the_proxy() {
    let app = Upstream::start("app").await;
    let sc = Sidecar::start(&yaml(app.port())).await;
    let addr = sc.addr("egress");
    let junk: &[&[u8]] = &[
        b"\x00\x01\x02\xff\xfe garbage\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\nHost: \x7f\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00garbage-frames",
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ];
    for bytes in junk {
        if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
            let _ = s.write_all(bytes).await;
            let mut buf = vec![0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
        }
    }
    // Hosts that are legal HTTP but odd as names still get an answer, never a crash.
    for host in ["a b", "%41", "x/y", "..", "\\x41", "forex-rate:4141"] {
        let resp = get(addr, host, "/", &[]).await;
        assert!(resp.status().is_success() || resp.status().is_client_error(), "{host}: {}", resp.status());
    }
    let resp = get(addr, "forex-rate", "/", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK, "still serving after the junk");
}

#[test]
fn check_command_reports_every_problem_with_position() {
    let dir = std::env::temp_dir().join(format!("sy-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "routers:\n- protocol: http\n  dtab: /svc => ;\n  servers:\n  - port: 99999\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard")).arg("check").arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("bad.yaml:3:"), "dtab error at line 3: {stderr}");
    assert!(stderr.contains("bad.yaml:5:"), "port error at line 5, reported together: {stderr}");

    let good = dir.join("good.yaml");
    std::fs::write(
        &good,
        "routers:\n- protocol: http\n  dtab: /svc => /$/inet/127.1/8080;\n  servers: [{port: 4140}]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard")).arg("check").arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let example = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard")).arg("example").output().unwrap();
    let ex = dir.join("example.yaml");
    std::fs::write(&ex, &example.stdout).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard")).arg("check").arg(&ex).output().unwrap();
    assert!(out.status.success(), "the printed example is valid: {}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn server_and_size_limits() {
    let app = Upstream::start("app").await;
    let yaml = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}
routers:
- protocol: http
  label: egress
  maxHeadersKB: 8
  maxRequestKB: 1
  dtab: /svc => /$/inet/127.1/{};
  servers: [{{ip: 127.0.0.1, port: 0, maxConcurrentRequests: 1}}]
",
        app.port()
    );
    let sc = Sidecar::start(&yaml).await;
    let addr = sc.addr("egress");

    // One request in flight fills the server; the next is refused at once, with an id like any answer.
    let slow = tokio::spawn(async move { get(addr, "forex-rate", "/slow/400", &[]).await.status() });
    eventually("the slow request is in flight", Duration::from_secs(5), || app.hits() == 1).await;
    let busy = get(addr, "forex-rate", "/", &[]).await;
    assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(busy.headers()["l5d-err"].to_str().unwrap().contains("limit of 1 concurrent requests"));
    assert!(busy.headers().contains_key("l5d-reqid"));
    assert_eq!(busy.headers()["l5d-retryable"], "true", "it never reached an upstream: safe to retry elsewhere");
    assert_eq!(slow.await.unwrap(), StatusCode::OK);
    assert_eq!(get(addr, "forex-rate", "/", &[]).await.status(), StatusCode::OK, "the slot is free again");

    // Bodies over maxRequestKB: 413, by Content-Length or while reading a chunked body.
    let big = http::Request::builder()
        .method("POST")
        .uri("/")
        .header("host", "forex-rate")
        .body(full(vec![b'x'; 2048]))
        .unwrap();
    assert_eq!(send(addr, big).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for _ in 0..4 {
            let _ = tx.send(bytes::Bytes::from(vec![b'y'; 512])).await;
        }
    });
    let chunked = http::Request::builder()
        .method("POST")
        .uri("/")
        .header("host", "forex-rate")
        .body(http_body_util::BodyExt::boxed(ChannelBody(rx)))
        .unwrap();
    assert_eq!(send(addr, chunked).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let small = http::Request::builder()
        .method("POST")
        .uri("/")
        .header("host", "forex-rate")
        .body(full(vec![b'z'; 512]))
        .unwrap();
    let resp = send(addr, small).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-body-len"], "512");

    // A request head over maxHeadersKB: 431 from the server itself.
    let huge = "h".repeat(16 * 1024);
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: forex-rate\r\nX-Big: {huge}\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
}
