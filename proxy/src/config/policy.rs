//! Resilience policy types: load balancing, failure accrual, response classification, retries, and the
//! per-prefix overrides linkerd calls `io.l5d.static` client/service configs.
//!
//! A router has one global client and service policy; `configs:` entries override individual parameters for
//! clients (matched on the bound name, e.g. `/#/io.l5d.fs/forex-rate`, `/$/inet/*/*`) or services (matched on
//! the logical name, e.g. `/svc/forex-rate`). Every matching entry applies in file order, later ones winning.

use std::time::Duration;

use serde::Serialize;
use switchyard_dtab::{Path, Prefix};

/// How a client picks among its endpoints (`loadBalancer.kind`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum LoadBalancer {
    /// Power of two choices over peak-EWMA latency × (in-flight + 1) — the default.
    Ewma {
        /// Time constant of the latency average (`decayTimeMs`, default 10 s).
        #[serde(rename = "decayTimeMs")]
        decay_ms: u64,
    },
    /// Power of two choices over in-flight requests ("least loaded").
    P2c,
    /// Each endpoint in turn.
    RoundRobin,
}

impl Default for LoadBalancer {
    fn default() -> Self {
        LoadBalancer::Ewma { decay_ms: 10_000 }
    }
}

/// A backoff schedule (`backoff: {kind: jittered, minMs, maxMs}` or `{kind: constant, ms}`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Backoff {
    Constant {
        ms: u64,
    },
    /// Exponential from `min_ms`, capped at `max_ms`, each step a random point in [min, current].
    Jittered {
        #[serde(rename = "minMs")]
        min_ms: u64,
        #[serde(rename = "maxMs")]
        max_ms: u64,
    },
}

impl Backoff {
    /// The wait before attempt `n` (0-based) of a series.
    pub fn delay(&self, n: u32) -> Duration {
        match *self {
            Backoff::Constant { ms } => Duration::from_millis(ms),
            Backoff::Jittered { min_ms, max_ms } => {
                let ceiling = min_ms.saturating_mul(1u64 << n.min(20)).min(max_ms).max(min_ms);
                Duration::from_millis(if ceiling > min_ms { fastrand::u64(min_ms..=ceiling) } else { min_ms })
            }
        }
    }
}

/// When an endpoint is taken out of rotation (`failureAccrual`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum FailureAccrual {
    #[serde(rename = "none")]
    None,
    /// `io.l5d.consecutiveFailures`: after `failures` failures in a row (default 5).
    #[serde(rename = "io.l5d.consecutiveFailures")]
    ConsecutiveFailures { failures: u32, backoff: Backoff },
    /// `io.l5d.successRate`: when the success rate over about the last `requests` requests drops below
    /// `success_rate`.
    #[serde(rename = "io.l5d.successRate", rename_all = "camelCase")]
    SuccessRate { success_rate: f64, requests: u32, backoff: Backoff },
}

impl Default for FailureAccrual {
    fn default() -> Self {
        FailureAccrual::ConsecutiveFailures {
            failures: 5,
            backoff: Backoff::Jittered { min_ms: 5_000, max_ms: 300_000 },
        }
    }
}

/// Which responses are failures, and which failures may be retried (`responseClassifier.kind`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Classifier {
    /// 5xx are failures, never retried (linkerd's default).
    #[default]
    #[serde(rename = "io.l5d.http.nonRetryable5XX")]
    NonRetryable5xx,
    /// 5xx are failures, retried for GET, HEAD, OPTIONS and TRACE.
    #[serde(rename = "io.l5d.http.retryableRead5XX")]
    RetryableRead5xx,
    /// 5xx are failures, retried for reads plus PUT and DELETE.
    #[serde(rename = "io.l5d.http.retryableIdempotent5XX")]
    RetryableIdempotent5xx,
    /// Every response is a success.
    #[serde(rename = "io.l5d.http.allSuccessful")]
    AllSuccessful,
}

impl Classifier {
    /// Every classifier kind, as written in configs.
    pub const KINDS: &'static [&'static str] = &[
        "io.l5d.http.nonRetryable5XX",
        "io.l5d.http.retryableRead5XX",
        "io.l5d.http.retryableIdempotent5XX",
        "io.l5d.http.allSuccessful",
    ];

    /// Reads a kind, with or without the `io.l5d.http.` prefix.
    pub fn from_kind(kind: &str) -> Option<Self> {
        match kind.strip_prefix("io.l5d.http.").unwrap_or(kind) {
            "nonRetryable5XX" => Some(Self::NonRetryable5xx),
            "retryableRead5XX" => Some(Self::RetryableRead5xx),
            "retryableIdempotent5XX" => Some(Self::RetryableIdempotent5xx),
            "allSuccessful" => Some(Self::AllSuccessful),
            _ => None,
        }
    }

    /// Whether `status` counts as a failure (for metrics and failure accrual).
    pub fn is_failure(&self, status: http::StatusCode) -> bool {
        *self != Self::AllSuccessful && status.is_server_error()
    }

    /// Whether a failure of a request with `method` may be retried after the upstream saw it.
    pub fn retryable_method(&self, method: &http::Method) -> bool {
        use http::Method;
        let read = [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE].contains(method);
        match self {
            Self::RetryableRead5xx => read,
            Self::RetryableIdempotent5xx => read || *method == Method::PUT || *method == Method::DELETE,
            Self::NonRetryable5xx | Self::AllSuccessful => false,
        }
    }
}

/// Retry budget and backoff (`retries: {budget: {…}, backoff: {…}}`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Retries {
    pub budget: RetryBudget,
    pub backoff: Backoff,
}

impl Default for Retries {
    fn default() -> Self {
        Retries { budget: RetryBudget::default(), backoff: Backoff::Jittered { min_ms: 10, max_ms: 10_000 } }
    }
}

/// Finagle's retry budget: over the last `ttl_secs`, retries may add `percent_can_retry` of the requests, plus
/// `min_retries_per_sec` so that low traffic can still retry.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    pub ttl_secs: u64,
    pub min_retries_per_sec: u32,
    pub percent_can_retry: f64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget { ttl_secs: 10, min_retries_per_sec: 10, percent_can_retry: 0.2 }
    }
}

/// Client parameters a `configs:` entry may override.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_attempt_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_accrual: Option<FailureAccrual>,
    /// `hostConnectionPool` limits this entry overrides.
    #[serde(rename = "hostConnectionPool", skip_serializing_if = "PoolParams::is_empty")]
    pub pool: PoolParams,
    /// TLS to this client's endpoints (`commonName` may use the prefix's variables).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<super::ClientTlsConfig>,
}

/// `hostConnectionPool` keys a `configs:` entry sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_waiters: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_size: Option<usize>,
}

impl PoolParams {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Service parameters a `configs:` entry may override.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", rename = "responseClassifier")]
    pub classifier: Option<Classifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hedging: Option<Hedging>,
}

/// Hedged requests (`hedging`, a switchyard key): when an idempotent request has had no answer for as long as
/// `percentile` of this service's recent answers took (but at least `minMs`), a second attempt goes to another
/// endpoint and the first answer wins — paid from the retry budget, so hedging can never double the load.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hedging {
    /// Which recent latency to wait for before hedging (e.g. 90 for p90).
    pub percentile: f64,
    /// Never hedge sooner than this.
    pub min_ms: u64,
}

/// One `configs:` entry: a prefix and the parameters it overrides.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Override<P> {
    #[serde(serialize_with = "super::as_display")]
    pub prefix: Prefix,
    /// Variables the prefix captures (`/#/io.l5d.fs/{service}`): (segment index, name); the segment matches like
    /// `*`, and its value can be used in the entry's `tls.commonName`.
    #[serde(skip)]
    pub captures: Vec<(usize, String)>,
    #[serde(flatten)]
    pub params: P,
}

impl<P> Override<P> {
    /// The captured variables' values for a name the prefix matched.
    pub fn variables<'a>(&'a self, id: &'a Path) -> impl Iterator<Item = (&'a str, String)> + 'a {
        self.captures.iter().filter_map(move |(i, name)| {
            let label = id.labels().get(*i)?;
            Some((name.as_str(), String::from_utf8_lossy(label.as_bytes()).into_owned()))
        })
    }
}

/// Fills `{name}` variables in `template`.
pub fn substitute<'a>(template: &str, vars: impl Iterator<Item = (&'a str, String)>) -> String {
    vars.fold(template.to_string(), |text, (name, value)| text.replace(&format!("{{{name}}}"), &value))
}

/// The effective policy of one client (bound name).
#[derive(Clone, Debug, PartialEq)]
pub struct ClientPolicy {
    pub request_attempt_timeout: Option<Duration>,
    pub load_balancer: LoadBalancer,
    pub failure_accrual: FailureAccrual,
    /// The connection pool of each endpoint.
    pub pool: super::PoolLimits,
    /// TLS to the client's endpoints, its `commonName` filled in for this client.
    pub tls: Option<super::ClientTlsConfig>,
}

/// The effective policy of one logical service.
#[derive(Clone, Debug, PartialEq)]
pub struct ServicePolicy {
    pub total_timeout: Option<Duration>,
    pub classifier: Classifier,
    pub retries: Retries,
    pub hedging: Option<Hedging>,
}

impl super::ClientConfig {
    /// The policy for the client `id`: the global values, then every matching `configs:` entry in order.
    pub fn resolve(&self, id: &Path) -> ClientPolicy {
        let mut p = ClientPolicy {
            request_attempt_timeout: self.request_attempt_timeout_ms.map(Duration::from_millis),
            load_balancer: self.load_balancer,
            failure_accrual: self.failure_accrual,
            pool: self.pool.limits,
            tls: self.tls.clone(),
        };
        for o in self.configs.iter().filter(|o| o.prefix.matches(id)) {
            let q = &o.params;
            if let Some(ms) = q.request_attempt_timeout_ms {
                p.request_attempt_timeout = Some(Duration::from_millis(ms));
            }
            p.load_balancer = q.load_balancer.unwrap_or(p.load_balancer);
            p.failure_accrual = q.failure_accrual.unwrap_or(p.failure_accrual);
            p.pool.max_size = q.pool.max_size.unwrap_or(p.pool.max_size);
            p.pool.max_waiters = q.pool.max_waiters.unwrap_or(p.pool.max_waiters);
            p.pool.min_size = q.pool.min_size.unwrap_or(p.pool.min_size);
            // An entry that lowers only maxSize keeps at most that many idle connections too.
            p.pool.min_size = p.pool.min_size.min(p.pool.max_size);
            if let Some(tls) = &q.tls {
                let mut tls = tls.clone();
                tls.common_name = tls.common_name.map(|cn| substitute(&cn, o.variables(id)));
                p.tls = Some(tls);
            }
        }
        p
    }
}

impl super::ServiceConfig {
    /// The policy for the logical name `path`: the global values, then every matching `configs:` entry in order.
    pub fn resolve(&self, path: &Path) -> ServicePolicy {
        let mut p = ServicePolicy {
            total_timeout: self.total_timeout_ms.map(Duration::from_millis),
            classifier: self.classifier,
            retries: self.retries,
            hedging: self.hedging,
        };
        for o in self.configs.iter().filter(|o| o.prefix.matches(path)) {
            let q = &o.params;
            if let Some(ms) = q.total_timeout_ms {
                p.total_timeout = Some(Duration::from_millis(ms));
            }
            p.classifier = q.classifier.unwrap_or(p.classifier);
            p.retries = q.retries.unwrap_or(p.retries);
            p.hedging = q.hedging.or(p.hedging);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_backoff_grows_within_bounds() {
        let b = Backoff::Jittered { min_ms: 10, max_ms: 100 };
        for n in 0..30 {
            let d = b.delay(n).as_millis() as u64;
            assert!((10..=100).contains(&d), "attempt {n}: {d} ms");
        }
        assert_eq!(Backoff::Constant { ms: 7 }.delay(9), Duration::from_millis(7));
    }

    #[test]
    fn classifiers() {
        use http::{Method, StatusCode};
        let c = Classifier::RetryableRead5xx;
        assert!(c.is_failure(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!c.is_failure(StatusCode::NOT_FOUND));
        assert!(c.retryable_method(&Method::GET));
        assert!(!c.retryable_method(&Method::POST));
        assert!(!c.retryable_method(&Method::PUT));
        assert!(Classifier::RetryableIdempotent5xx.retryable_method(&Method::PUT));
        assert!(!Classifier::NonRetryable5xx.retryable_method(&Method::GET));
        assert!(!Classifier::AllSuccessful.is_failure(StatusCode::INTERNAL_SERVER_ERROR));
        assert_eq!(Classifier::from_kind("retryableRead5XX"), Some(Classifier::RetryableRead5xx));
        assert_eq!(Classifier::from_kind("io.l5d.http.allSuccessful"), Some(Classifier::AllSuccessful));
    }
}
