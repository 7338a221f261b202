//! Header hygiene for forwarded messages: hop-by-hop removal, `Via`, `X-Forwarded-For`, the `l5d-*` context
//! headers, and the request-target form each upstream protocol needs.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Uri, Version};

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1), plus legacy `Proxy-Connection`.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// `l5d-dtab`: a per-request dtab override from the client (only honoured on trusted servers).
pub const L5D_DTAB: &str = "l5d-dtab";
/// `l5d-ctx-dtab`: the override dtab carried along the mesh, hop to hop.
pub const L5D_CTX_DTAB: &str = "l5d-ctx-dtab";

/// Removes hop-by-hop headers, including every header named in `Connection`.
/// `TE: trailers` survives towards HTTP/2 upstreams, where gRPC needs it.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_te_trailers: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let te_trailers = keep_te_trailers
        && headers
            .get_all(header::TE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("trailers"))));
    for name in named.iter().chain(HOP_BY_HOP) {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Appends this proxy to `Via` (`1.1 switchyard`, `2.0 switchyard`).
pub fn append_via(headers: &mut HeaderMap, version: Version) {
    let v = match version {
        Version::HTTP_10 => "1.0 switchyard",
        Version::HTTP_2 => "2.0 switchyard",
        _ => "1.1 switchyard",
    };
    headers.append(header::VIA, HeaderValue::from_static(v));
}

/// Appends the downstream peer to `X-Forwarded-For`.
pub fn append_forwarded_for(headers: &mut HeaderMap, peer: IpAddr) {
    let name = HeaderName::from_static("x-forwarded-for");
    let value = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => format!("{prev}, {peer}"),
        _ => peer.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(name, v);
    }
}

/// Sets a header from text the proxy made (a path, a dtab); values that cannot be header values are skipped.
pub fn set_text(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// The logical authority of a request: the `Host` header, else the URI's authority (HTTP/2 `:authority`).
pub fn authority<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .filter(|s| !s.is_empty())
}

/// Replaces the logical authority (`Host` for HTTP/1, the URI's authority for HTTP/2).
pub fn set_authority<B>(req: &mut Request<B>, host: &str, h2_upstream: bool) {
    if h2_upstream {
        let pq = req.uri().path_and_query().map(|pq| pq.as_str().to_owned()).unwrap_or_else(|| "/".into());
        if let Ok(uri) = Uri::builder().scheme("http").authority(host).path_and_query(pq.as_str()).build() {
            *req.uri_mut() = uri;
        }
    } else if let Ok(v) = HeaderValue::from_str(host) {
        req.headers_mut().insert(header::HOST, v);
    }
}

/// Rewrites the request target for the upstream protocol, keeping the logical authority:
/// HTTP/1 gets origin-form plus a `Host` header; HTTP/2 gets an absolute URI whose authority becomes `:authority`.
pub fn set_target_for<B>(req: &mut Request<B>, h2_upstream: bool) {
    let host = authority(req).map(str::to_owned);
    let pq = req.uri().path_and_query().map(|pq| pq.as_str().to_owned()).unwrap_or_else(|| "/".into());
    if h2_upstream {
        let host = host.unwrap_or_else(|| "localhost".into());
        if let Ok(uri) = Uri::builder().scheme("http").authority(host.as_str()).path_and_query(pq.as_str()).build() {
            *req.uri_mut() = uri;
        }
        // :authority carries it; a duplicate Host would be redundant at best.
        req.headers_mut().remove(header::HOST);
        *req.version_mut() = Version::HTTP_2;
    } else {
        if let Ok(uri) = pq.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
        if let Some(host) = host.and_then(|h| HeaderValue::from_str(&h).ok()) {
            req.headers_mut().insert(header::HOST, host);
        }
        *req.version_mut() = Version::HTTP_11;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, X-Secret"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers, deflate"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn keeps_te_trailers_for_h2() {
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[header::TE], "trailers");
    }

    #[test]
    fn via_and_xff_append() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        append_forwarded_for(&mut h, "127.0.0.1".parse().unwrap());
        append_via(&mut h, Version::HTTP_11);
        append_via(&mut h, Version::HTTP_2);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        let via: Vec<_> = h.get_all(header::VIA).iter().collect();
        assert_eq!(via, vec!["1.1 switchyard", "2.0 switchyard"]);
    }

    #[test]
    fn target_forms() {
        let mut req = Request::builder().uri("http://forex-rate:4141/a?b=1").body(()).unwrap();
        set_target_for(&mut req, false);
        assert_eq!(req.uri().to_string(), "/a?b=1");
        assert_eq!(req.headers()[header::HOST], "forex-rate:4141");

        let mut req = Request::builder().uri("/x").header(header::HOST, "forex-rate").body(()).unwrap();
        set_target_for(&mut req, true);
        assert_eq!(req.uri().to_string(), "http://forex-rate/x");
        assert!(req.headers().get(header::HOST).is_none());
    }
}
