//! The HTTP client a service uses to call its peer through its egress sidecar.
//!
//! Built once per process: a pooled hyper-util client with a 1 s connect timeout,
//! and a whole-request deadline around send + body. Every request carries
//! `Host: <peer name>`, which is what the sidecar routes on.

use super::metrics::{PeerOutcome, ServiceMetrics};
use super::settings::PeerSettings;
use axum::http::{header, Method, Request, StatusCode, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::fmt;
use std::time::Duration;

/// The most a peer answer may be; our peers send a few kilobytes at most.
const MAX_BODY_BYTES: usize = 4 << 20;
/// Fail fast when the sidecar is not even listening.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// linkerd's header carrying the reason a sidecar failed a request.
pub const L5D_ERR: &str = "l5d-err";

/// A peer's answer, fully read.
#[derive(Clone, Debug)]
pub struct PeerResponse {
    /// The status the peer (or its sidecar) answered with.
    pub status: StatusCode,
    /// The `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The sidecar's `l5d-err` explanation, if it failed the request.
    pub l5d_err: Option<String>,
    /// The body.
    pub body: Bytes,
}

/// Why a peer call produced no answer at all.
#[derive(Debug)]
pub enum PeerError {
    /// No complete answer within the deadline.
    Timeout(Duration),
    /// Connecting or exchanging the request failed.
    Transport(String),
    /// The body was larger than we accept.
    BodyTooLarge,
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(d) => write!(f, "no answer within {} ms", d.as_millis()),
            Self::Transport(e) => write!(f, "cannot reach it: {e}"),
            Self::BodyTooLarge => write!(f, "its answer was larger than {MAX_BODY_BYTES} bytes"),
        }
    }
}

impl std::error::Error for PeerError {}

impl PeerError {
    /// A short, fixed name for the kind of failure (a metric label value).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Transport(_) => "transport",
            Self::BodyTooLarge => "body_too_large",
        }
    }
}

/// A cheap-to-clone client for one peer service.
#[derive(Clone)]
pub struct PeerClient {
    client: Client<HttpConnector, Empty<Bytes>>,
    settings: PeerSettings,
    /// Where each call is counted and timed; none in tests that do not care.
    metrics: Option<ServiceMetrics>,
}

impl fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerClient").field("settings", &self.settings).finish()
    }
}

impl PeerClient {
    /// Builds the pooled client. Needs no runtime until the first request.
    pub fn new(settings: PeerSettings) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT.min(settings.timeout)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        Self { client, settings, metrics: None }
    }

    /// The same client, counting and timing every call in `metrics`
    /// (`forex_peer_requests_total`, `forex_peer_request_duration_seconds`).
    pub fn with_metrics(mut self, metrics: &ServiceMetrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    /// The settings this client was built from.
    pub fn settings(&self) -> &PeerSettings {
        &self.settings
    }

    /// `GET path_and_query` on the peer, e.g. `/2016-09-05/USD/JPY`.
    pub async fn get(&self, path_and_query: &str) -> Result<PeerResponse, PeerError> {
        let deadline = self.settings.timeout;
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(deadline, self.exchange(path_and_query)).await {
            Ok(result) => result,
            Err(_) => Err(PeerError::Timeout(deadline)),
        };
        if let Some(metrics) = &self.metrics {
            let outcome = match &result {
                Ok(response) => PeerOutcome::Answered(response.status),
                Err(error) => PeerOutcome::Failed(error.kind()),
            };
            metrics.record_peer_call(self.settings.name.as_str(), outcome, started.elapsed());
        }
        result
    }

    async fn exchange(&self, path_and_query: &str) -> Result<PeerResponse, PeerError> {
        let uri: Uri = format!("http://{}{}", self.settings.url.authority(), path_and_query)
            .parse()
            .map_err(|e| PeerError::Transport(format!("bad request path: {e}")))?;
        let request = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(header::HOST, self.settings.name.header_value().clone())
            .header(header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| PeerError::Transport(e.to_string()))?;
        // Pass the request id, trace context and l5d-ctx-* of the request being served on to the peer.
        let mut request = request;
        request.headers_mut().extend(super::context::current());
        let response = self.client.request(request).await.map_err(describe_client_error)?;
        let (parts, body) = response.into_parts();
        let text_header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = Limited::new(body, MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    PeerError::BodyTooLarge
                } else {
                    PeerError::Transport(format!("reading the answer failed: {e}"))
                }
            })?
            .to_bytes();
        Ok(PeerResponse {
            status: parts.status,
            content_type: text_header(header::CONTENT_TYPE.as_str()),
            l5d_err: text_header(L5D_ERR),
            body,
        })
    }
}

/// The client error with its cause chain ("connection refused"), which is what
/// an operator needs; the top-level message alone is just "client error".
fn describe_client_error(error: hyper_util::client::legacy::Error) -> PeerError {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    PeerError::Transport(text)
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters kept).
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode_query_value("2016-09-05"), "2016-09-05");
        assert_eq!(encode_query_value("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
