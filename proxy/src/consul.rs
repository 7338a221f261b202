//! A small Consul HTTP API client: GETs with blocking queries, PUTs, and the watch-loop arithmetic Consul's
//! documentation prescribes for blocking queries (index handling, rate limiting, backoff with jitter).
//!
//! Shared by the `io.l5d.consul` namer (catalog / health watches) and the Consul KV dtab store. Built on
//! hyper-util's pooled client rather than a Consul crate: see `docs/decisions/0009-consul-client-and-dtab-stores.md`.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

/// Consul's read consistency mode (`consistencyMode`), sent as the `stale` / `consistent` query flag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsistencyMode {
    /// Leader reads, Consul's default.
    #[default]
    Default,
    /// Any server may answer: faster, keeps answering without a leader, may lag.
    Stale,
    /// The leader confirms leadership first: slowest, never stale.
    Consistent,
}

impl ConsistencyMode {
    /// Reads the config spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "default" => Some(Self::Default),
            "stale" => Some(Self::Stale),
            "consistent" => Some(Self::Consistent),
            _ => None,
        }
    }

    fn query_flag(self) -> Option<&'static str> {
        match self {
            Self::Default => None,
            Self::Stale => Some("stale"),
            Self::Consistent => Some("consistent"),
        }
    }
}

/// Why a Consul request failed.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsulError(pub String);

impl fmt::Display for ConsulError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConsulError {}

/// One answer: status, `X-Consul-Index` (when sent) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub index: Option<u64>,
    pub body: Bytes,
}

/// How long a blocking query may hang (`wait`); watches use it, tests shorten it.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// A client for one Consul agent.
#[derive(Clone)]
pub struct ConsulClient {
    base: String,
    token: Option<String>,
    consistency: ConsistencyMode,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Why TLS to the agent could not be set up (its files went bad since the config was checked): every request
    /// fails with this, and the namer keeps its last known endpoints.
    broken: Option<String>,
}

impl fmt::Debug for ConsulClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConsulClient({})", self.base)
    }
}

impl ConsulClient {
    /// A client for the agent at `host:port`; `token` is sent as `X-Consul-Token`; with `tls`, over HTTPS
    /// (checking `commonName`, else `host`, against the agent's certificate).
    pub fn new(
        host: &str,
        port: u16,
        token: Option<String>,
        consistency: ConsistencyMode,
        tls: Option<&crate::config::ClientTlsConfig>,
    ) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(Duration::from_secs(2)));
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        let mut broken = None;
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match tls.map(|t| (t, crate::tls::client_config(t, crate::tls::Alpn::Http1))) {
            Some((t, Ok(mut config))) => {
                // hyper-rustls sets ALPN itself (and refuses a config that already has it).
                config.alpn_protocols.clear();
                let name = t.common_name.clone().unwrap_or_else(|| host.to_string());
                let with = builder.with_tls_config(config).https_only();
                match rustls::pki_types::ServerName::try_from(name.clone()) {
                    Ok(name) => with.with_server_name_resolver(FixedServerNameResolver::new(name)).enable_http1(),
                    Err(e) => {
                        broken = Some(format!("TLS to Consul: {name:?} is not a server name: {e}"));
                        with.enable_http1()
                    }
                }
            }
            Some((_, Err(e))) => {
                broken = Some(format!("TLS to Consul: {e}"));
                plain(builder)
            }
            None => plain(builder),
        };
        let connector = builder.wrap_connector(tcp);
        let http = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
        let scheme = if tls.is_some() { "https" } else { "http" };
        Self { base: format!("{scheme}://{host}:{port}"), token, consistency, http, broken }
    }

    /// `http://host:port`, for logs and the admin API.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GETs `path` (with its own query string, if any). With `blocking = Some((index, wait))` it is a blocking
    /// query: Consul holds the answer until the resource's index passes `index` or `wait` runs out.
    pub async fn get(&self, path: &str, blocking: Option<(u64, Duration)>) -> Result<Answer, ConsulError> {
        let mut params: Vec<String> = Vec::new();
        if let Some(flag) = self.consistency.query_flag() {
            params.push(flag.to_string());
        }
        let mut timeout = Duration::from_secs(10);
        if let Some((index, wait)) = blocking {
            if index > 0 {
                params.push(format!("index={index}"));
            }
            params.push(format!("wait={}ms", wait.as_millis()));
            // Consul adds up to wait/16 of jitter to the wait; allow that plus a margin for the network.
            timeout = wait + wait / 16 + Duration::from_secs(5);
        }
        let uri = with_params(&format!("{}{path}", self.base), &params);
        self.send(Method::GET, &uri, Bytes::new(), timeout).await
    }

    /// PUTs `body` to `path` (query string included).
    pub async fn put(&self, path: &str, body: Bytes) -> Result<Answer, ConsulError> {
        let uri = format!("{}{path}", self.base);
        self.send(Method::PUT, &uri, body, Duration::from_secs(10)).await
    }

    async fn send(&self, method: Method, uri: &str, body: Bytes, timeout: Duration) -> Result<Answer, ConsulError> {
        if let Some(why) = &self.broken {
            return Err(ConsulError(format!("{}: {why}", self.base)));
        }
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(token) = &self.token {
            builder = builder.header("x-consul-token", token);
        }
        let req = builder.body(Full::new(body)).map_err(|e| ConsulError(format!("bad request {uri}: {e}")))?;
        let exchange = async {
            let resp =
                self.http.request(req).await.map_err(|e| ConsulError(format!("{}: {}", self.base, chain(&e))))?;
            let status = resp.status();
            let index = resp.headers().get("x-consul-index").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
            let limited = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER_BYTES);
            let body = limited.collect().await.map_err(|e| match e.is::<http_body_util::LengthLimitError>() {
                true => {
                    ConsulError(format!("{}: answer larger than {} MiB refused", self.base, MAX_ANSWER_BYTES >> 20))
                }
                false => ConsulError(format!("{}: {e}", self.base)),
            })?;
            Ok(Answer { status, index, body: body.to_bytes() })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(ConsulError(format!("{}: no answer within {timeout:?}", self.base))))
    }
}

/// The largest answer read from Consul (16 MiB: thousands of instances of one service fit many times over); a
/// larger one is an error, and the last good answer stays in force.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

/// A plaintext connector: the same client type, with a TLS config that is never used (`http://` URIs).
fn plain(
    builder: hyper_rustls::HttpsConnectorBuilder<hyper_rustls::builderstates::WantsTlsConfig>,
) -> hyper_rustls::HttpsConnectorBuilder<hyper_rustls::builderstates::WantsProtocols2> {
    let unused = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    builder.with_tls_config(unused).https_or_http().enable_http1()
}

/// An error and its causes, so a TLS failure says why (`… certificate expired`), not just "client error".
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn with_params(uri: &str, params: &[String]) -> String {
    if params.is_empty() {
        return uri.to_string();
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{}", params.join("&"))
}

/// Percent-encodes one path segment or query value (everything but RFC 3986 unreserved characters).
pub fn encode_component(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The index to send with the next blocking query, per Consul's "implementation details" for blocking queries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlockingIndex(u64);

/// What a new `X-Consul-Index` meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexStep {
    /// The index moved forward: a (possible) change; query again at once.
    Advanced,
    /// Same index (a `wait` timeout or an idempotent write): query again, but not faster than the minimum delay.
    Unchanged,
    /// The index went backwards (a Consul restart or snapshot restore): start over from 0.
    Reset,
}

impl BlockingIndex {
    /// The index to send (`0` = a plain, non-blocking read).
    pub fn get(self) -> u64 {
        self.0
    }

    /// Forgets the index after a failure: the next query is a plain read that answers at once, so recovery (and
    /// the end of the reported outage) is seen immediately rather than when the next blocking `wait` runs out.
    pub fn reset(&mut self) {
        self.0 = 0;
    }

    /// Folds in the index of an answer.
    pub fn observe(&mut self, received: Option<u64>) -> IndexStep {
        let Some(received) = received else {
            // No index header: not a blocking endpoint (or a broken proxy). Never spin on it.
            self.0 = 0;
            return IndexStep::Unchanged;
        };
        if received < self.0 {
            self.0 = 0;
            return IndexStep::Reset;
        }
        // An index of 0 would make the next query return at once, forever: Consul's docs say to use 1 instead.
        let received = received.max(1);
        let step = if received > self.0 { IndexStep::Advanced } else { IndexStep::Unchanged };
        self.0 = received;
        step
    }
}

/// The pause after an answer whose index did not advance, so a misbehaving server cannot make us spin.
pub const MIN_DELAY: Duration = Duration::from_millis(100);

/// One blocking-query watch's bookkeeping — the index to send and the backoff after errors — so every watch
/// (the Consul namer's, the KV dtab store's) follows Consul's rules the same way.
#[derive(Debug, Default)]
pub struct Watcher {
    index: BlockingIndex,
    backoff: ErrorBackoff,
}

impl Watcher {
    /// The index to send with the next query.
    pub fn index(&self) -> u64 {
        self.index.get()
    }

    /// After a good answer carrying `received` as `X-Consul-Index`: how the index moved, and the pause before the
    /// next query (none when it advanced; [`MIN_DELAY`] otherwise, so a server that does not block cannot make
    /// us spin).
    pub fn answered(&mut self, received: Option<u64>) -> (IndexStep, Option<Duration>) {
        self.backoff.reset();
        let step = self.index.observe(received);
        (step, (step != IndexStep::Advanced).then_some(MIN_DELAY))
    }

    /// After a failure: the next query is a plain read, after a jittered, growing pause.
    pub fn failed(&mut self) -> Duration {
        self.index.reset();
        self.backoff.next_delay()
    }
}

/// Exponential backoff with jitter for failed requests: 100 ms doubling to 5 s, each delay drawn from [d/2, d].
#[derive(Debug, Default)]
pub struct ErrorBackoff {
    failures: u32,
}

impl ErrorBackoff {
    const BASE: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    /// The delay before the next attempt after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let exp = Self::BASE.saturating_mul(1u32 << self.failures.min(10));
        self.failures = self.failures.saturating_add(1);
        let ceiling = exp.min(Self::MAX);
        let half = ceiling / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// A success: the next failure starts from the base delay again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Decodes standard base64 (Consul KV values); `None` on any invalid input.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_advances_holds_and_resets_when_it_goes_backwards() {
        let mut i = BlockingIndex::default();
        assert_eq!(i.observe(Some(10)), IndexStep::Advanced);
        assert_eq!(i.get(), 10);
        assert_eq!(i.observe(Some(10)), IndexStep::Unchanged);
        assert_eq!(i.observe(Some(3)), IndexStep::Reset);
        assert_eq!(i.get(), 0, "a reset starts over with a non-blocking read");
        assert_eq!(i.observe(Some(0)), IndexStep::Advanced);
        assert_eq!(i.get(), 1, "an index of 0 is never sent back");
        assert_eq!(i.observe(None), IndexStep::Unchanged);
        assert_eq!(i.get(), 0);
    }

    #[test]
    fn watcher_pauses_unless_the_index_advances_and_reads_plainly_after_errors() {
        let mut w = Watcher::default();
        assert_eq!(w.answered(Some(7)), (IndexStep::Advanced, None));
        assert_eq!(w.index(), 7);
        assert_eq!(w.answered(Some(7)), (IndexStep::Unchanged, Some(MIN_DELAY)), "never spin on an unchanged index");
        assert_eq!(w.answered(Some(2)), (IndexStep::Reset, Some(MIN_DELAY)));
        let pause = w.failed();
        assert_eq!(w.index(), 0, "after an error the next query is a plain read");
        assert!(pause > Duration::ZERO && pause <= ErrorBackoff::MAX);
    }

    #[test]
    fn backoff_grows_is_capped_and_resets() {
        let mut b = ErrorBackoff::default();
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
        for _ in 0..20 {
            assert!(b.next_delay() <= ErrorBackoff::MAX);
        }
        assert!(b.next_delay() >= ErrorBackoff::MAX / 2);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn base64_and_encoding() {
        assert_eq!(base64_decode("L3N2YyA9PiAvIy9pby5sNWQuZnM7").as_deref(), Some(&b"/svc => /#/io.l5d.fs;"[..]));
        assert_eq!(base64_decode("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64_decode("not base64!"), None);
        assert_eq!(encode_component(b"forex-rate"), "forex-rate");
        assert_eq!(encode_component(b"a/b c"), "a%2Fb%20c");
    }
}
