//! The one rescue point: every way the proxy can fail a request, and how each becomes a response.
//!
//! Each failure is a variant of [`ProxyError`]; stages return it (or a [`Failure`], which adds whether a caller
//! further out may retry and which client counts it) with `?`, and [`ProxyError::into_response`] is the only
//! place that turns a failure into an HTTP status, `l5d-err`, `l5d-retryable` and a one-line body saying why.
//! Client mistakes (no name, or a name nothing binds) are logged at debug, mesh trouble at warn (by the router's
//! `rescue`); internals never reach the client.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use switchyard_dtab::{BindError, Path};

use super::balance::Balancer;
use super::body::{full_body, BodyFault, ProxyBody};
use super::headers::{L5D_ERR, L5D_RETRYABLE};
use crate::config::ErrorDetail;

/// Which clock ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutKind {
    /// The caller's `l5d-ctx-deadline` had already passed when the request arrived.
    CallerDeadline,
    /// The deadline passed while the client's request body was being read.
    RequestBody,
    /// One attempt's `requestAttemptTimeoutMs` (the endpoint was too slow: counts against its health).
    Attempt,
    /// The request's total deadline (`totalTimeoutMs`, or the caller's): not the endpoint's fault.
    Request,
}

impl TimeoutKind {
    /// What timed out, as the error message says it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::CallerDeadline => "caller's deadline",
            Self::RequestBody => "reading the request body",
            Self::Attempt => "request attempt",
            Self::Request => "request",
        }
    }
}

/// Why the proxy answered a request itself.
#[derive(Debug)]
pub enum ProxyError {
    /// No identifier could name the request.
    Unidentified(String),
    /// An `l5d-dtab` / `l5d-ctx-dtab` header did not parse.
    BadDtabHeader { header: String, error: String },
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
    /// Every connection to the endpoint is busy (`hostConnectionPool.maxSize`) and `maxWaiters` requests
    /// already wait for one.
    PoolFull { addr: SocketAddr, max_size: usize, max_waiters: usize },
    /// The server is at its `maxConcurrentRequests` limit.
    ServerBusy { limit: usize },
    /// The caller's verified identity is not in the server's `authorization.allow`.
    Forbidden { caller: Arc<str> },
    /// The request body is larger than `maxRequestKB`.
    BodyTooLarge { limit_kb: u64 },
    /// The client's request body broke (malformed, or the client went away) or stalled.
    ClientBody(BodyFault),
    /// The request itself is malformed in a way the proxy must not guess about (two `Host` headers).
    BadRequest(&'static str),
    /// The request already passed through `maxHops` switchyard proxies: a routing loop.
    LoopDetected { hops: usize },
    /// Connecting to the chosen endpoint failed.
    Connect { addr: SocketAddr, error: String },
    /// The request waited for a connection to the endpoint, and setting one up failed for another request. Not
    /// counted against the endpoint again (the failed setup was), so one refused connect does not count once
    /// per queued request.
    QueuedConnectFailed { addr: SocketAddr, error: String },
    /// The upstream reset or closed the connection, or spoke invalid HTTP.
    Upstream { addr: SocketAddr, error: String },
    /// A timeout elapsed before the response headers arrived.
    Timeout { kind: TimeoutKind, after: Duration },
}

impl ProxyError {
    /// The status this failure maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unidentified(_) | Self::BadDtabHeader { .. } | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::ClientBody(BodyFault::Broken(_)) => StatusCode::BAD_REQUEST,
            Self::ClientBody(BodyFault::Stalled(_)) => StatusCode::REQUEST_TIMEOUT,
            Self::LoopDetected { .. } => StatusCode::LOOP_DETECTED,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::AllEndpointsDead { .. } | Self::PoolFull { .. } | Self::ServerBusy { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Unbound { .. } | Self::BindFailed { .. } | Self::Delegation { .. } => StatusCode::BAD_GATEWAY,
            Self::Connect { .. } | Self::QueuedConnectFailed { .. } | Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
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
            Self::PoolFull { .. } => "pool_full",
            Self::ServerBusy { .. } => "server_busy",
            Self::Forbidden { .. } => "forbidden",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::ClientBody(BodyFault::Broken(_)) => "bad_body",
            Self::ClientBody(BodyFault::Stalled(_)) => "body_timeout",
            Self::BadRequest(_) => "bad_request",
            Self::LoopDetected { .. } => "loop_detected",
            Self::Connect { .. } | Self::QueuedConnectFailed { .. } => "connect_failed",
            Self::Upstream { .. } => "upstream_failed",
            Self::Timeout { .. } => "timeout",
        }
    }

    /// Whether this is the client's doing (logged quietly) rather than the mesh's. A name nothing binds is
    /// usually a caller's Host header, so it is not logged loudly either (it is counted in metrics).
    pub fn is_client_error(&self) -> bool {
        self.status().is_client_error() || matches!(self, Self::Unbound { .. })
    }

    /// Whether the endpoint the request was sent to is to blame (so failure accrual counts it): everything but
    /// a deadline that was the caller's or the whole request's rather than the attempt's, and a full queue (a
    /// busy endpoint is not a broken one).
    pub fn blames_endpoint(&self) -> bool {
        !matches!(self, Self::Timeout { kind, .. } if *kind != TimeoutKind::Attempt)
            && !matches!(self, Self::ClientBody(_) | Self::PoolFull { .. } | Self::QueuedConnectFailed { .. })
    }

    /// What a caller outside the mesh is told (`errorDetail: generic`): `None` when the full message only
    /// describes the caller's own request and may be shown as it is; else a reason naming no internal address,
    /// name or dtab.
    pub fn generic_reason(&self) -> Option<&'static str> {
        Some(match self {
            Self::Unidentified(_)
            | Self::BadDtabHeader { .. }
            | Self::ClientBody(_)
            | Self::BadRequest(_)
            | Self::BodyTooLarge { .. }
            | Self::LoopDetected { .. }
            | Self::ServerBusy { .. }
            | Self::Timeout { kind: TimeoutKind::CallerDeadline | TimeoutKind::RequestBody, .. } => return None,
            Self::Unbound { .. } | Self::BindFailed { .. } | Self::Delegation { .. } => "no route for this request",
            Self::NoEndpoints { .. } | Self::AllEndpointsDead { .. } | Self::PoolFull { .. } => "service unavailable",
            Self::Forbidden { .. } => "caller not allowed",
            Self::Connect { .. } | Self::QueuedConnectFailed { .. } | Self::Upstream { .. } => "upstream unavailable",
            Self::Timeout { .. } => "upstream timed out",
        })
    }

    /// The response the client gets: status, `l5d-err`, a one-line plain-text body, and `l5d-retryable: true`
    /// when `retryable` (the failure never reached an upstream, or the classifier allows a retry). With
    /// [`ErrorDetail::Generic`], failures inside the mesh are described without internals, and with the request
    /// id (`reqid`) an operator can find the whole reason by in the logs.
    pub fn into_response(self, retryable: bool, detail: ErrorDetail, reqid: &str) -> Response<ProxyBody> {
        let status = self.status();
        let msg = match (detail, self.generic_reason()) {
            (ErrorDetail::Generic, Some(reason)) => format!("{reason} (request id {reqid})"),
            _ => self.to_string(),
        };
        let header_value = HeaderValue::from_str(&sanitize(&msg)).unwrap_or(HeaderValue::from_static("proxy error"));
        let mut resp = Response::new(full_body(Bytes::from(format!("{msg}\n"))));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(L5D_ERR, header_value);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        if retryable {
            h.insert(L5D_RETRYABLE, HeaderValue::from_static("true"));
        }
        resp
    }
}

/// A failed request on its way to the rescue point.
#[derive(Debug)]
pub struct Failure {
    pub error: ProxyError,
    /// A caller further out may retry it (`l5d-retryable: true`).
    pub retryable: bool,
    /// The client chosen for the request, when its metrics have not counted the failure yet.
    pub client: Option<Arc<Balancer>>,
}

impl Failure {
    /// A failure a caller may retry elsewhere.
    pub fn retryable(error: ProxyError) -> Self {
        Self { error, retryable: true, client: None }
    }
}

impl From<ProxyError> for Failure {
    fn from(error: ProxyError) -> Self {
        Self { error, retryable: false, client: None }
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
            Self::PoolFull { addr, max_size, max_waiters } => write!(
                f,
                "all {max_size} connections to {addr} are busy and {max_waiters} requests already wait for one \
                 (hostConnectionPool maxSize, maxWaiters)"
            ),
            Self::ServerBusy { limit } => write!(f, "server is at its limit of {limit} concurrent requests"),
            Self::Forbidden { caller } => {
                write!(f, "caller {caller} is not allowed to call this service (the server's authorization.allow)")
            }
            Self::BodyTooLarge { limit_kb } => write!(f, "request body is larger than {limit_kb} KiB"),
            Self::ClientBody(BodyFault::Broken(why)) => write!(f, "cannot read the request body: {why}"),
            Self::ClientBody(BodyFault::Stalled(idle)) => {
                write!(f, "the request body sent nothing for {} ms (bodyIdleTimeoutMs)", idle.as_millis())
            }
            Self::BadRequest(why) => write!(f, "bad request: {why}"),
            Self::LoopDetected { hops } => {
                write!(f, "routing loop: the request already passed through {hops} switchyard proxies (maxHops)")
            }
            Self::Connect { addr, error } => write!(f, "connection to {addr} failed: {error}"),
            Self::QueuedConnectFailed { addr, error } => {
                write!(f, "connection to {addr} failed while this request waited for one: {error}")
            }
            Self::Upstream { addr, error } => write!(f, "upstream {addr} failed: {error}"),
            Self::Timeout { kind, after } => write!(f, "{} timed out after {} ms", kind.describe(), after.as_millis()),
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
            (ProxyError::Timeout { kind: TimeoutKind::Request, after: Duration::from_millis(250) }, 504),
        ];
        for (err, code) in cases {
            let text = err.to_string();
            let resp = err.into_response(false, ErrorDetail::Full, "r1");
            assert_eq!(resp.status().as_u16(), code, "{text}");
            assert_eq!(resp.headers()["l5d-err"].to_str().unwrap(), text);
            assert!(resp.headers().get("l5d-retryable").is_none());
        }
        let resp = ProxyError::NoEndpoints { client: path }.into_response(true, ErrorDetail::Full, "r1");
        assert_eq!(resp.headers()["l5d-retryable"], "true");
    }

    #[test]
    fn generic_detail_names_no_address_but_the_request_id() {
        let addr: SocketAddr = "10.1.2.3:8080".parse().unwrap();
        let err = ProxyError::Connect { addr, error: "Connection refused (os error 111)".into() };
        let resp = err.into_response(false, ErrorDetail::Generic, "abc123");
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.headers()["l5d-err"], "upstream unavailable (request id abc123)");
        let dtab = ProxyError::Unbound { path: Path::read("/svc/internal-thing").unwrap() };
        let resp = dtab.into_response(false, ErrorDetail::Generic, "r");
        assert!(!resp.headers()["l5d-err"].to_str().unwrap().contains("internal-thing"));
        // The caller's own mistakes are explained in full either way.
        let own = ProxyError::BadRequest("two Host headers").into_response(false, ErrorDetail::Generic, "r");
        assert_eq!(own.headers()["l5d-err"], "bad request: two Host headers");
        let stalled = ProxyError::ClientBody(BodyFault::Stalled(Duration::from_secs(1)));
        assert_eq!(stalled.status(), 408);
        assert!(!stalled.blames_endpoint(), "a client's stalled upload is never the endpoint's fault");
        assert_eq!(ProxyError::LoopDetected { hops: 16 }.status(), 508);
    }

    #[test]
    fn only_attempt_timeouts_blame_the_endpoint() {
        let timeout = |kind| ProxyError::Timeout { kind, after: Duration::from_millis(1) };
        assert!(timeout(TimeoutKind::Attempt).blames_endpoint());
        assert!(!timeout(TimeoutKind::Request).blames_endpoint());
        assert!(!timeout(TimeoutKind::CallerDeadline).blames_endpoint());
        let addr = "127.0.0.1:1".parse().unwrap();
        assert!(ProxyError::Upstream { addr, error: "reset".into() }.blames_endpoint());
        assert_eq!(timeout(TimeoutKind::RequestBody).to_string(), "reading the request body timed out after 1 ms");
    }

    #[test]
    fn header_value_is_sanitized() {
        assert_eq!(sanitize("bad\nthing\u{e9}"), "bad?thing?");
    }
}
