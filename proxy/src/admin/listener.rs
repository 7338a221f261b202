//! The admin server's listener: optional TLS (linkerd's `admin.tls`), the shared listener's connection cap and
//! deadlines (`admin.headerTimeoutMs`, `idleTimeoutMs`, `maxConnections`: slow or idle clients cannot hold
//! connections), and a `Host` check so a web page cannot drive the admin API through DNS
//! rebinding (a name the page controls, resolving to this address).
//!
//! Accepted names — the request's authority (HTTP/2 `:authority`, absolute-form targets), else its `Host` —
//! are IP literals (with any port), `localhost`, this machine's host name, and the names in `admin.hosts`. A
//! request naming no host at all (HTTP/1.0 tools) is accepted: browsers always send one.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::listener::{self, Listener};
use crate::router::body::ClientBody;
use crate::tls::ServerTls;

/// The host names the admin server answers to.
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    names: Vec<String>,
}

impl AllowedHosts {
    /// `localhost`, this machine's name and `extra`.
    pub fn new(extra: &[String]) -> Self {
        let mut names = vec!["localhost".to_string()];
        if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            names.push(host.trim().to_ascii_lowercase());
        }
        names.extend(extra.iter().map(|h| h.to_ascii_lowercase()));
        Self { names }
    }

    /// Whether a `Host` (or `:authority`) value names this server.
    pub fn allows(&self, host: &str) -> bool {
        let port_ok = |rest: &str| rest.is_empty() || rest.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok());
        if let Some(rest) = host.strip_prefix('[') {
            // [v6] or [v6]:port, and nothing else.
            return rest.split_once(']').is_some_and(|(ip, tail)| ip.parse::<IpAddr>().is_ok() && port_ok(tail));
        }
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port_ok(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        };
        // A trailing dot names the same host (`localhost.`).
        let name = name.strip_suffix('.').unwrap_or(name);
        name.parse::<IpAddr>().is_ok() || self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// The name a request addresses: its URI's authority (HTTP/2 `:authority`, absolute-form HTTP/1), else `Host`.
    fn of<B>(req: &Request<B>) -> Option<String> {
        match req.uri().authority() {
            Some(a) => Some(a.as_str().to_string()),
            None => req.headers().get(header::HOST).map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned()),
        }
    }
}

fn misdirected(host: &str) -> Response<Body> {
    let body = serde_json::json!({
        "error": format!("Host {host:?} is not a name of this admin server (add it to admin.hosts to allow it)")
    });
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = StatusCode::MISDIRECTED_REQUEST;
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    resp
}

/// Serves `app` on `listener` until `shutdown` turns true, then drains for at most `grace`.
pub async fn serve(
    listener: Listener,
    app: axum::Router,
    tls: Option<Arc<ServerTls>>,
    hosts: AllowedHosts,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let rules = *listener.rules();
    // Admin requests are small: heads up to 64 KiB.
    let builder = Arc::new(rules.builder(64 * 1024, false));
    let hosts = Arc::new(hosts);
    while let Some(conn) = listener.next(&mut shutdown).await {
        let (app, hosts, builder, tls) = (app.clone(), hosts.clone(), builder.clone(), tls.clone());
        let (activity, mut stop) = (listener.activity(), shutdown.clone());
        tokio::spawn(async move {
            let (_slot, peer) = (conn.slot, conn.peer);
            let tracker = activity.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                let (app, hosts, in_flight) = (app.clone(), hosts.clone(), tracker.begin());
                async move {
                    if let Some(host) = AllowedHosts::of(&req).filter(|h| !hosts.allows(h)) {
                        return Ok::<_, Infallible>(in_flight.until_sent(misdirected(&host)));
                    }
                    let resp = app.oneshot(req.map(|b| Body::new(ClientBody::new(b, rules.body_idle)))).await?;
                    Ok(in_flight.until_sent(resp))
                }
            });
            let result = match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(conn.stream), svc);
                    listener::drive(conn, |c| c.graceful_shutdown(), &activity, &rules, &mut stop).await
                }
                Some(tls) => match tokio::time::timeout(rules.header, tls.acceptor().accept(conn.stream)).await {
                    Ok(Ok(stream)) => {
                        let conn = builder.serve_connection(TokioIo::new(stream), svc);
                        listener::drive(conn, |c| c.graceful_shutdown(), &activity, &rules, &mut stop).await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %crate::tls::describe(&e), "admin TLS handshake refused");
                        return;
                    }
                    Err(_) => return,
                },
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "admin connection ended with error");
            }
        });
    }
    listener.drain(grace).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_check() {
        let hosts = AllowedHosts::new(&["sidecar.internal".to_string()]);
        for ok in ["127.0.0.1:9990", "127.0.2.1", "[::1]:9990", "localhost:9990", "LOCALHOST", "sidecar.internal:1"] {
            assert!(hosts.allows(ok), "{ok}");
        }
        assert!(hosts.allows("localhost.:9990") && hosts.allows("[::1]"));
        for bad in [
            "evil.example",
            "evil.example:9990",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "[::1]evil.example",
            "[::1]:99999",
            "localhost:notaport",
        ] {
            assert!(!hosts.allows(bad), "{bad}");
        }
    }
}
