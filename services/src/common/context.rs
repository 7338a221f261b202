//! Request context the apps pass on to their peer, as linkerd expects of the services it fronts: the request
//! id (`l5d-reqid`), trace context (`traceparent`, `tracestate`, B3) and linkerd's `l5d-ctx-*` headers (a
//! per-request dtab override, the caller's deadline). With these forwarded, one conversion carries the same
//! request id and trace id through every hop's access log.
//!
//! [`capture`] is a middleware that keeps the incoming request's headers in a task-local for the duration of
//! the request; [`PeerClient`](super::peer::PeerClient) adds them to every call it makes on that request's
//! behalf, so handlers need not thread them through.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName};
use axum::middleware::Next;
use axum::response::Response;

tokio::task_local! {
    static FORWARD: HeaderMap;
}

const FORWARDED: &[&str] = &[
    "l5d-reqid",
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
];

/// Whether an incoming header is passed on to the peer.
fn forwarded(name: &HeaderName) -> bool {
    FORWARDED.contains(&name.as_str()) || name.as_str().starts_with("l5d-ctx-")
}

/// Middleware: remembers the request's context headers while the request is handled.
pub async fn capture(request: Request, next: Next) -> Response {
    let mut keep = HeaderMap::new();
    for (name, value) in request.headers() {
        if forwarded(name) {
            keep.append(name.clone(), value.clone());
        }
    }
    FORWARD.scope(keep, next.run(request)).await
}

/// The context headers of the request being handled (empty outside one).
pub fn current() -> HeaderMap {
    FORWARD.try_with(HeaderMap::clone).unwrap_or_default()
}

/// The request id and trace id of the request being handled, for log lines.
pub fn ids() -> (String, String) {
    let h = current();
    let text = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
    let trace =
        h.get("traceparent").and_then(|v| v.to_str().ok()).and_then(|v| v.split('-').nth(1)).unwrap_or("-").to_string();
    (text("l5d-reqid"), trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_only_context_headers() {
        for yes in ["l5d-reqid", "traceparent", "x-b3-traceid", "l5d-ctx-dtab", "l5d-ctx-deadline"] {
            assert!(forwarded(&HeaderName::from_static(yes)), "{yes}");
        }
        for no in ["host", "cookie", "authorization", "l5d-dtab", "l5d-dst-service", "content-length"] {
            assert!(!forwarded(&HeaderName::from_static(no)), "{no}");
        }
    }

    #[tokio::test]
    async fn current_is_scoped_to_the_request() {
        assert!(current().is_empty());
        let mut h = HeaderMap::new();
        h.insert("l5d-reqid", "abc".parse().unwrap());
        h.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
        let (reqid, trace) = FORWARD.scope(h, async { ids() }).await;
        assert_eq!((reqid.as_str(), trace.as_str()), ("abc", "4bf92f3577b34da6a3ce929d0e0e4736"));
    }
}
