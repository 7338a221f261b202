//! The one rescue point: every way the proxy can fail a request, and how each becomes a response.
//!
//! Each failure is a variant of [`ProxyError`]; [`ProxyError::into_response`] is the only place that picks an HTTP
//! status for a proxy failure, and it always sets `l5d-err` and a one-line body saying why. Client mistakes
//! (no name, or a name nothing binds) are logged at debug, mesh trouble at warn; internals never reach the client.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use switchyard_dtab::{BindError, Path};

use super::ProxyBody;

/// Why the proxy answered a request itself.
#[derive(Debug)]
pub enum ProxyError {
    /// No identifier could name the request.
    Unidentified(String),
    /// An `l5d-dtab` / `l5d-ctx-dtab` header did not parse.
    BadDtabHeader { header: &'static str, error: String },
    /// The name bound to Neg: no dentry or namer knows it.
    Unbound { path: Path },
    /// The name bound to Fail (`!` or `/$/fail`).
    BindFailed { path: Path },
    /// Delegation itself failed (a loop, or a dtab too large to evaluate).
    Delegation { path: Path, error: BindError },
    /// The name is bound but has no endpoints (`$`, an empty registry entry).
    NoEndpoints { client: Path },
    /// Every endpoint of the client is marked dead by failure accrual: fail fast rather than hammer them.
    AllEndpointsDead { client: Path },
    /// Every live endpoint is at its `hostConnectionPool.maxSize` limit.
    EndpointsBusy { client: Path, limit: usize },
    /// The server is at its `maxConcurrentRequests` limit.
    ServerBusy { limit: usize },
    /// The request body is larger than `maxRequestKB`.
    BodyTooLarge { limit_kb: u64 },
    /// The client's request body could not be read.
    BadBody(String),
    /// Connecting to the chosen endpoint failed.
    Connect { addr: SocketAddr, error: String },
    /// The upstream reset or closed the connection, or spoke invalid HTTP.
    Upstream { addr: SocketAddr, error: String },
    /// A timeout elapsed before the response headers arrived.
    Timeout { what: &'static str, after: Duration },
}

impl ProxyError {
    /// The status this failure maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unidentified(_) | Self::BadDtabHeader { .. } | Self::BadBody(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::AllEndpointsDead { .. } | Self::EndpointsBusy { .. } | Self::ServerBusy { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Unbound { .. } | Self::BindFailed { .. } | Self::Delegation { .. } => StatusCode::BAD_GATEWAY,
            Self::Connect { .. } | Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::NoEndpoints { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unidentified(_) => "unidentified",
            Self::BadDtabHeader { .. } => "bad_dtab_header",
            Self::Unbound { .. } => "unbound",
            Self::BindFailed { .. } => "bind_failed",
            Self::Delegation { .. } => "delegation",
            Self::NoEndpoints { .. } => "no_endpoints",
            Self::AllEndpointsDead { .. } => "all_endpoints_dead",
            Self::EndpointsBusy { .. } => "endpoints_busy",
            Self::ServerBusy { .. } => "server_busy",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BadBody(_) => "bad_body",
            Self::Connect { .. } => "connect_failed",
            Self::Upstream { .. } => "upstream_failed",
            Self::Timeout { .. } => "timeout",
        }
    }

    /// Whether this is the client's doing (logged quietly) rather than the mesh's. A name nothing binds is
    /// usually a caller's Host header, so it is not logged loudly either (it is counted in metrics).
    pub fn is_client_error(&self) -> bool {
        self.status().is_client_error() || matches!(self, Self::Unbound { .. })
    }

    /// The response the client gets: status, `l5d-err`, and a one-line plain-text body.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let msg = self.to_string();
        let header_value = HeaderValue::from_str(&sanitize(&msg)).unwrap_or(HeaderValue::from_static("proxy error"));
        let mut resp = Response::new(super::full_body(Bytes::from(format!("{msg}\n"))));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert("l5d-err", header_value);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        resp
    }
}

/// Header values must be visible ASCII: anything else becomes `?`, and the value is capped in length.
fn sanitize(msg: &str) -> String {
    msg.chars().take(512).map(|c| if (' '..='~').contains(&c) { c } else { '?' }).collect()
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unidentified(why) => write!(f, "cannot route request: {why}"),
            Self::BadDtabHeader { header, error } => write!(f, "malformed {header} header: {error}"),
            Self::Unbound { path } => write!(f, "no route to {path}: neither the dtab nor any namer binds it"),
            Self::BindFailed { path } => write!(f, "routing to {path} failed: the dtab binds it to fail (!)"),
            Self::Delegation { path, error } => write!(f, "cannot bind {path}: {error}"),
            Self::NoEndpoints { client } => write!(f, "{client} has no endpoints"),
            Self::AllEndpointsDead { client } => {
                write!(f, "every endpoint of {client} is marked dead by failure accrual; failing fast")
            }
            Self::EndpointsBusy { client, limit } => {
                write!(f, "every endpoint of {client} is at its limit of {limit} concurrent requests")
            }
            Self::ServerBusy { limit } => write!(f, "server is at its limit of {limit} concurrent requests"),
            Self::BodyTooLarge { limit_kb } => write!(f, "request body is larger than {limit_kb} KiB"),
            Self::BadBody(why) => write!(f, "cannot read the request body: {why}"),
            Self::Connect { addr, error } => write!(f, "connection to {addr} failed: {error}"),
            Self::Upstream { addr, error } => write!(f, "upstream {addr} failed: {error}"),
            Self::Timeout { what, after } => write!(f, "{what} timed out after {} ms", after.as_millis()),
        }
    }
}

impl std::error::Error for ProxyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_status_header_and_body() {
        let path = Path::read("/svc/forex-rate").unwrap();
        let cases = vec![
            (ProxyError::Unidentified("no Host header".into()), 400),
            (ProxyError::Unbound { path: path.clone() }, 502),
            (ProxyError::BindFailed { path: path.clone() }, 502),
            (ProxyError::NoEndpoints { client: path.clone() }, 503),
            (ProxyError::Connect { addr: "127.0.0.1:1".parse().unwrap(), error: "refused".into() }, 502),
            (ProxyError::Timeout { what: "request", after: Duration::from_millis(250) }, 504),
        ];
        for (err, code) in cases {
            let text = err.to_string();
            let resp = err.into_response();
            assert_eq!(resp.status().as_u16(), code, "{text}");
            assert_eq!(resp.headers()["l5d-err"].to_str().unwrap(), text);
        }
    }

    #[test]
    fn header_value_is_sanitized() {
        assert_eq!(sanitize("bad\nthing\u{e9}"), "bad?thing?");
    }
}
