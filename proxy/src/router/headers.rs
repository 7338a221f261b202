//! Every header name the proxy reads or writes, and the hygiene of forwarded messages: hop-by-hop removal, `Via`,
//! `X-Forwarded-For`, and the request-target form each upstream protocol needs.
//!
//! What the `l5d-*` headers *mean* for one request (whose overrides are honoured, the deadline) is decided in
//! [`super::context`]; this module only names them and keeps messages well-formed.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Uri, Version};

/// `l5d-dtab`: a per-request dtab override from the client (only honoured on trusted servers).
pub const L5D_DTAB: HeaderName = HeaderName::from_static("l5d-dtab");
/// `l5d-ctx-dtab`: the override dtab carried along the mesh, hop to hop.
pub const L5D_CTX_DTAB: HeaderName = HeaderName::from_static("l5d-ctx-dtab");
/// `l5d-ctx-deadline`: when the caller stops waiting, as `<sent-at> <deadline>` in nanoseconds since the epoch.
pub const L5D_CTX_DEADLINE: HeaderName = HeaderName::from_static("l5d-ctx-deadline");
/// `l5d-retryable: true`: this failure may safely be retried by the caller.
pub const L5D_RETRYABLE: HeaderName = HeaderName::from_static("l5d-retryable");
/// `l5d-err`: on a response the proxy wrote itself, why it failed.
pub const L5D_ERR: HeaderName = HeaderName::from_static("l5d-err");
/// `l5d-reqid`: the request id, kept across hops and echoed on the response.
pub const L5D_REQID: HeaderName = HeaderName::from_static("l5d-reqid");
/// `l5d-dst-service`: the logical name this hop routed the request by.
pub const L5D_DST_SERVICE: HeaderName = HeaderName::from_static("l5d-dst-service");
/// `l5d-dst-client`: the bound client (concrete name) this hop sent the request to.
pub const L5D_DST_CLIENT: HeaderName = HeaderName::from_static("l5d-dst-client");
/// `l5d-dst-residual`: the part of the name the namer did not consume.
pub const L5D_DST_RESIDUAL: HeaderName = HeaderName::from_static("l5d-dst-residual");
/// `l5d-dtab-store-error`: on admin dtab reads, why the shared store's content was refused or unreadable.
pub const L5D_DTAB_STORE_ERROR: HeaderName = HeaderName::from_static("l5d-dtab-store-error");
/// W3C trace context.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// Zipkin B3, single-header form.
pub const B3: HeaderName = HeaderName::from_static("b3");
/// Zipkin B3, multi-header form.
pub const X_B3_TRACEID: HeaderName = HeaderName::from_static("x-b3-traceid");
pub const X_B3_SPANID: HeaderName = HeaderName::from_static("x-b3-spanid");
pub const X_B3_PARENTSPANID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
/// The downstream addresses a request passed through.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// On an HTTP/1.x request a sidecar carried to its peer as an HTTP/2 stream: the original version. Meaningful for
/// one hop only, so it is removed on arrival with the hop-by-hop headers.
pub const L5D_ORIG_PROTO: HeaderName = HeaderName::from_static("l5d-orig-proto");
/// Legacy hop-by-hop headers not in `http::header`.
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1), plus legacy `Proxy-Connection`.
/// Not `Trailer`: it announces the message's trailer fields end to end (RFC 9110 §6.6.2), and hyper writes an
/// HTTP/1.1 trailer only when it was announced.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including every header named in `Connection` — but never `Host`, which names the
/// message's target, not the connection. With `keep_te_trailers` (requests), `TE: trailers` survives: the proxy
/// forwards trailers, so a caller that takes them says so to the upstream (gRPC needs it over HTTP/2).
/// Runs before the proxy adds headers of its own, so `Connection` cannot remove those either.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_te_trailers: bool) {
    // Most messages carry none: one pass over the names instead of a removal (a hash lookup) per name.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|name| name != header::HOST)
        .collect();
    let te_trailers = keep_te_trailers
        && headers
            .get_all(header::TE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("trailers"))));
    for name in named.iter().chain(HOP_BY_HOP) {
        headers.remove(name);
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(PROXY_CONNECTION);
    headers.remove(L5D_ORIG_PROTO);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// A header [`strip_hop_by_hop`] removes whatever `Connection` says.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == KEEP_ALIVE || name == PROXY_CONNECTION || name == L5D_ORIG_PROTO
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

/// How many switchyard proxies a request has passed through already: its `Via` entries that this proxy wrote.
pub fn own_hops(headers: &HeaderMap) -> usize {
    headers
        .get_all(header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|entry| entry.split_whitespace().nth(1).is_some_and(|by| by.eq_ignore_ascii_case("switchyard")))
        .count()
}

/// Refuses a request whose target is ambiguous: two `Host` headers (RFC 9112 §3.2 asks for a 400: proxies that
/// pick different ones can be made to route and check different hosts).
pub fn check_host<B>(req: &Request<B>) -> Result<(), &'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err("more than one Host header"),
        _ => Ok(()),
    }
}

/// Appends the downstream peer to `X-Forwarded-For`.
pub fn append_forwarded_for(headers: &mut HeaderMap, peer: IpAddr, peer_value: Option<&HeaderValue>) {
    let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => HeaderValue::from_str(&format!("{prev}, {peer}")).ok(),
        // The common case, a caller that is the first hop: the value made once for its connection.
        _ => peer_value.cloned().or_else(|| HeaderValue::from_str(&peer.to_string()).ok()),
    };
    if let Some(v) = value {
        headers.insert(X_FORWARDED_FOR, v);
    }
}

/// Sets a header from text the proxy made (a path, a dtab); values that cannot be header values are skipped.
pub fn set_text(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// The logical authority of a request: the URI's authority (an HTTP/1 absolute-form target, or HTTP/2's
/// `:authority`), which wins over `Host` as RFC 9112 §3.2.2 and RFC 9113 §8.3.1 say; else the `Host` header.
pub fn authority<B>(req: &Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(header::HOST).and_then(|h| h.to_str().ok()))
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

/// Turns a request prepared for an HTTP/1.1 upstream into one for the HTTP/2 connection its TLS peer accepted:
/// the target as `:scheme https` and `:authority` (from `Host`), and `l5d-orig-proto` saying what it was.
pub fn upgrade_to_h2<B>(req: &mut Request<B>) {
    let orig = match req.version() {
        Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    set_target_for(req, true);
    let mut parts = req.uri().clone().into_parts();
    parts.scheme = Some(http::uri::Scheme::HTTPS);
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    req.headers_mut().insert(L5D_ORIG_PROTO, HeaderValue::from_static(orig));
}

/// Rewrites the request target for the upstream protocol, keeping the logical authority:
/// HTTP/1 gets origin-form plus a `Host` header; HTTP/2 gets an absolute URI whose authority becomes `:authority`.
pub fn set_target_for<B>(req: &mut Request<B>, h2_upstream: bool) {
    let origin_form = req.uri().scheme().is_none() && req.uri().authority().is_none();
    if !h2_upstream && origin_form && req.headers().get_all(header::HOST).iter().nth(1).is_none() {
        // Already HTTP/1 shaped (the common case): nothing to rebuild.
        *req.version_mut() = Version::HTTP_11;
        return;
    }
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
    fn connection_can_never_strip_host() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("host, l5d-reqid, via"));
        h.insert(header::HOST, HeaderValue::from_static("forex-rate"));
        h.insert("l5d-reqid", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h[header::HOST], "forex-rate");
        assert!(!h.contains_key("l5d-reqid"), "the client's named header is hop-by-hop; the proxy sets its own later");
    }

    #[test]
    fn two_hosts_are_refused_and_the_absolute_form_authority_wins() {
        let req = Request::builder().uri("/").header("host", "a").header("host", "b").body(()).unwrap();
        assert!(check_host(&req).is_err());
        let req = Request::builder().uri("http://alpha/x").header("host", "beta").body(()).unwrap();
        assert!(check_host(&req).is_ok());
        assert_eq!(authority(&req), Some("alpha"));
        let mut req = req;
        set_target_for(&mut req, false);
        assert_eq!(req.headers()[header::HOST], "alpha");
    }

    #[test]
    fn hops_count_only_switchyard_via_entries() {
        let mut h = HeaderMap::new();
        h.append(header::VIA, HeaderValue::from_static("1.1 switchyard, 1.1 haproxy"));
        h.append(header::VIA, HeaderValue::from_static("2.0 switchyard"));
        h.append(header::VIA, HeaderValue::from_static("1.1 proxy-switchyard"));
        assert_eq!(own_hops(&h), 2);
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
        append_forwarded_for(&mut h, "127.0.0.1".parse().unwrap(), None);
        append_via(&mut h, Version::HTTP_11);
        append_via(&mut h, Version::HTTP_2);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        let mut first = HeaderMap::new();
        append_forwarded_for(&mut first, "10.1.2.3".parse().unwrap(), Some(&HeaderValue::from_static("10.1.2.3")));
        assert_eq!(first["x-forwarded-for"], "10.1.2.3", "a first hop gets its connection's value");
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
