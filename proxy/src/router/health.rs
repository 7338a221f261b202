//! Endpoint health: failure accrual (is this endpoint in rotation?) and the peak-EWMA latency estimate the
//! balancer uses as its cost.
//!
//! Failure accrual follows linkerd 1: after N consecutive failures (or a success rate below a threshold) the
//! endpoint is marked dead for a jittered, growing backoff; when the backoff ends it is in rotation again on
//! probation — its next failure ejects it again at once, its next success restores it fully. Like Envoy's
//! ejection cap, a client's last live endpoint is never ejected: when every instance fails, the fault is the
//! service's (or something behind it), and callers are better served by the real error than by "marked dead" —
//! and a sidecar in front of a healthy intermediary does not eject it while it relays a downstream's failures.
//! Peak EWMA follows Finagle/linkerd2: a latency above the average replaces it immediately (so a slowing endpoint
//! is noticed on its first slow response), lower latencies decay it towards themselves over `decay`. Three
//! additions keep it honest when endpoints fail rather than slow down:
//! - a failed request counts as [`FAILURE_PENALTY`] of latency, so a fast-failing endpoint is not "cheap";
//! - an estimate decays towards zero while no answers arrive, so a penalised endpoint is probed again later
//!   instead of being shunned forever;
//! - an endpoint that never answered costs nothing while it has no request in flight (one exploratory request
//!   at a time), so new instances get traffic at once without being stampeded.

use std::sync::Mutex;
use std::time::Duration;

use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use tokio::time::Instant;

use crate::config::FailureAccrual;
use crate::metrics::{names, Registry};

/// Cost of one in-flight request to an endpoint that has not answered yet.
const INITIAL_EWMA: Duration = Duration::from_millis(5);

/// Latency a failed request counts as.
pub const FAILURE_PENALTY: Duration = Duration::from_secs(1);

/// The health families, one series per (router, endpoint).
#[derive(Clone)]
pub struct HealthFamilies {
    available: IntGaugeVec,
    ejections: IntCounterVec,
    latency_ewma: GaugeVec,
}

impl HealthFamilies {
    /// Registers the families.
    pub fn register(r: &Registry) -> Self {
        let re = &["router", "endpoint"];
        Self {
            available: r.int_gauge_vec(
                names::ENDPOINT_AVAILABLE,
                "1 while the endpoint is in rotation, 0 while failure accrual has marked it dead.",
                re,
            ),
            ejections: r.int_counter_vec(
                names::ENDPOINT_EJECTIONS,
                "Times failure accrual took an endpoint out of rotation.",
                re,
            ),
            latency_ewma: r.gauge_vec(
                names::ENDPOINT_LATENCY_EWMA,
                "Peak-EWMA latency estimate per endpoint (the load balancer's cost).",
                re,
            ),
        }
    }

    /// The handles of one endpoint of `router`.
    pub fn endpoint(&self, router: &str, endpoint: &str) -> HealthMetrics {
        let labels = [router, endpoint];
        HealthMetrics {
            available: self.available.with_label_values(&labels),
            ejections: self.ejections.with_label_values(&labels),
            latency_ewma: self.latency_ewma.with_label_values(&labels),
        }
    }

    /// Drops one endpoint's series (it left the registry).
    pub fn remove(&self, router: &str, endpoint: &str) {
        let labels = [router, endpoint];
        let _ = self.available.remove_label_values(&labels);
        let _ = self.ejections.remove_label_values(&labels);
        let _ = self.latency_ewma.remove_label_values(&labels);
    }
}

/// Metric handles for one endpoint.
pub struct HealthMetrics {
    pub available: IntGauge,
    pub ejections: IntCounter,
    pub latency_ewma: Gauge,
}

#[derive(Debug)]
struct Accrual {
    consecutive_failures: u32,
    /// EWMA of success (1.0) / failure (0.0), for the success-rate policy.
    success_rate: f64,
    observed: u32,
    dead_until: Option<Instant>,
    /// When the current ejection began: a success from a request sent before it does not end it.
    ejected_at: Option<Instant>,
    /// Ejections since the last success: the backoff grows with it.
    ejections: u32,
}

#[derive(Debug)]
struct Ewma {
    nanos: f64,
    stamp: Instant,
    observed: bool,
    decay: Duration,
}

/// Health of one endpoint.
pub struct Health {
    accrual: Mutex<Accrual>,
    ewma: Mutex<Ewma>,
    metrics: HealthMetrics,
}

impl Health {
    /// A healthy endpoint with no history.
    pub fn new(metrics: HealthMetrics) -> Self {
        metrics.available.set(1);
        metrics.latency_ewma.set(INITIAL_EWMA.as_secs_f64());
        Self {
            accrual: Mutex::new(Accrual {
                consecutive_failures: 0,
                success_rate: 1.0,
                observed: 0,
                dead_until: None,
                ejected_at: None,
                ejections: 0,
            }),
            ewma: Mutex::new(Ewma {
                nanos: INITIAL_EWMA.as_nanos() as f64,
                stamp: Instant::now(),
                observed: false,
                decay: Duration::from_secs(10),
            }),
            metrics,
        }
    }

    /// Whether the endpoint is in rotation at `now`.
    pub fn available(&self, now: Instant) -> bool {
        let a = self.accrual.lock().unwrap_or_else(|e| e.into_inner());
        match a.dead_until {
            Some(until) if until > now => false,
            Some(_) => {
                // Backoff over: back in rotation on probation (the state stays until the next result).
                self.metrics.available.set(1);
                true
            }
            None => true,
        }
    }

    /// When the endpoint's current backoff ends (`None` while it is in rotation).
    pub fn dead_until(&self) -> Option<Instant> {
        self.accrual.lock().unwrap_or_else(|e| e.into_inner()).dead_until
    }

    /// Records the outcome of one request (sent at `sent_at`) under `policy`. `may_eject` is false for a client's
    /// last live endpoint.
    pub fn record(&self, success: bool, policy: &FailureAccrual, may_eject: bool, sent_at: Instant) {
        let mut a = self.accrual.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if success && a.ejected_at.is_some_and(|at| sent_at < at) {
            // An answer to a request sent before the ejection says nothing about the endpoint since.
            return;
        }
        if success {
            a.ejected_at = None;
            a.consecutive_failures = 0;
            a.ejections = 0;
            a.dead_until = None;
            self.metrics.available.set(1);
        } else {
            a.consecutive_failures = a.consecutive_failures.saturating_add(1);
        }
        let (eject, backoff) = match *policy {
            FailureAccrual::None => (false, None),
            FailureAccrual::ConsecutiveFailures { failures, backoff } => {
                (!success && a.consecutive_failures >= failures, Some(backoff))
            }
            FailureAccrual::SuccessRate { success_rate, requests, backoff } => {
                let alpha = 2.0 / (f64::from(requests) + 1.0);
                a.success_rate = a.success_rate * (1.0 - alpha) + if success { alpha } else { 0.0 };
                a.observed = a.observed.saturating_add(1);
                (!success && a.observed >= requests && a.success_rate < success_rate, Some(backoff))
            }
        };
        let already_dead = a.dead_until.is_some_and(|t| t > now);
        if let (true, false, true, Some(backoff)) = (eject, already_dead, may_eject, backoff) {
            let wait = backoff.delay(a.ejections);
            a.dead_until = Some(now + wait);
            a.ejected_at = Some(now);
            a.ejections = a.ejections.saturating_add(1);
            self.metrics.available.set(0);
            self.metrics.ejections.inc();
            tracing::info!(backoff_ms = wait.as_millis() as u64, "failure accrual: endpoint marked dead");
        }
    }

    /// Folds one observed latency into the peak EWMA with time constant `decay`.
    pub fn observe_latency(&self, rtt: Duration, decay: Duration) {
        let mut e = self.ewma.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let rtt = rtt.as_nanos() as f64;
        if !e.observed || rtt > e.nanos {
            e.nanos = rtt;
        } else {
            let elapsed = now.saturating_duration_since(e.stamp).as_nanos() as f64;
            let w = (-elapsed / decay.as_nanos().max(1) as f64).exp();
            e.nanos = e.nanos * w + rtt * (1.0 - w);
        }
        e.observed = true;
        e.stamp = now;
        e.decay = decay;
        self.metrics.latency_ewma.set(e.nanos / 1e9);
    }

    /// Records a failed request as a latency penalty.
    pub fn observe_failure(&self, decay: Duration) {
        self.observe_latency(FAILURE_PENALTY, decay);
    }

    /// The balancer's cost for sending one more request, given `in_flight` requests already outstanding.
    pub fn cost(&self, in_flight: usize) -> f64 {
        let e = self.ewma.lock().unwrap_or_else(|e| e.into_inner());
        if !e.observed {
            return e.nanos * in_flight as f64;
        }
        let idle = e.stamp.elapsed().as_nanos() as f64;
        let estimate = e.nanos * (-idle / e.decay.as_nanos().max(1) as f64).exp();
        estimate * (in_flight as f64 + 1.0)
    }

    /// The current latency estimate in nanoseconds.
    pub fn ewma_nanos(&self) -> f64 {
        self.ewma.lock().unwrap_or_else(|e| e.into_inner()).nanos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Backoff;

    fn health() -> Health {
        Health::new(HealthFamilies::register(&Registry::empty()).endpoint("egress", "127.0.0.1:1"))
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_eject_then_probation() {
        let h = health();
        let policy = FailureAccrual::ConsecutiveFailures { failures: 3, backoff: Backoff::Constant { ms: 50 } };
        let now = Instant::now();
        h.record(false, &policy, true, Instant::now());
        h.record(false, &policy, true, Instant::now());
        assert!(h.available(now));
        h.record(true, &policy, true, Instant::now());
        h.record(false, &policy, true, Instant::now());
        h.record(false, &policy, true, Instant::now());
        assert!(h.available(Instant::now()), "a success in between resets the count");
        h.record(false, &policy, true, Instant::now());
        assert!(!h.available(Instant::now()), "3 in a row eject");
        assert_eq!(h.metrics.ejections.get(), 1);
        tokio::time::advance(Duration::from_millis(49)).await;
        assert!(!h.available(Instant::now()), "still dead just before the backoff ends");
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(h.available(Instant::now()), "back on probation after the backoff");
        assert_eq!(h.metrics.available.get(), 1);
        h.record(false, &policy, true, Instant::now());
        assert!(!h.available(Instant::now()), "a failure on probation ejects again at once");
        h.record(true, &policy, true, Instant::now());
        assert!(h.available(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_live_endpoint_is_never_ejected() {
        let h = health();
        let policy = FailureAccrual::ConsecutiveFailures { failures: 1, backoff: Backoff::Constant { ms: 60_000 } };
        for _ in 0..10 {
            h.record(false, &policy, false, Instant::now());
        }
        assert!(h.available(Instant::now()));
        h.record(false, &policy, true, Instant::now());
        assert!(!h.available(Instant::now()), "ejected once another endpoint can take the traffic");
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_success_does_not_end_a_newer_ejection() {
        let h = health();
        let policy = FailureAccrual::ConsecutiveFailures { failures: 1, backoff: Backoff::Constant { ms: 60_000 } };
        let sent_before = Instant::now();
        tokio::time::advance(Duration::from_millis(2)).await;
        h.record(false, &policy, true, Instant::now());
        assert!(!h.available(Instant::now()));
        h.record(true, &policy, true, sent_before);
        assert!(!h.available(Instant::now()), "a slow success sent before the ejection is ignored");
        h.record(true, &policy, true, Instant::now());
        assert!(h.available(Instant::now()), "a success sent since ends it");
    }

    #[tokio::test(start_paused = true)]
    async fn success_rate_policy() {
        let h = health();
        let policy =
            FailureAccrual::SuccessRate { success_rate: 0.8, requests: 10, backoff: Backoff::Constant { ms: 1000 } };
        for i in 0..40 {
            h.record(i % 2 == 0, &policy, true, Instant::now());
        }
        assert!(!h.available(Instant::now()), "50% success under an 80% threshold ejects");
        let h = health();
        for i in 0..40 {
            h.record(i % 10 != 0, &policy, true, Instant::now());
        }
        assert!(h.available(Instant::now()), "90% success stays");
    }

    #[tokio::test(start_paused = true)]
    async fn none_never_ejects() {
        let h = health();
        for _ in 0..100 {
            h.record(false, &FailureAccrual::None, true, Instant::now());
        }
        assert!(h.available(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn unobserved_endpoints_explore_one_request_at_a_time() {
        let h = health();
        assert_eq!(h.cost(0), 0.0, "never answered, nothing in flight: free");
        assert!(h.cost(1) > 0.0, "one exploratory request in flight: no longer free");
        h.observe_latency(Duration::from_millis(2), Duration::from_secs(10));
        assert!(h.cost(0) > 1e6);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_expensive_and_the_penalty_fades_while_idle() {
        let h = health();
        h.observe_failure(Duration::from_millis(50));
        let right_after = h.cost(0);
        assert!(right_after > 0.5e9, "{right_after}");
        tokio::time::advance(Duration::from_millis(150)).await;
        assert!(h.cost(0) < right_after / 10.0, "decays while idle so the endpoint gets probed again");
    }

    #[tokio::test(start_paused = true)]
    async fn peak_ewma_jumps_up_and_decays_down() {
        let h = health();
        let decay = Duration::from_millis(100);
        h.observe_latency(Duration::from_millis(1), decay);
        h.observe_latency(Duration::from_millis(200), decay);
        assert!((h.ewma_nanos() - 200e6).abs() < 1.0, "a peak replaces the average");
        tokio::time::advance(Duration::from_millis(50)).await;
        h.observe_latency(Duration::from_millis(1), decay);
        let after = h.ewma_nanos();
        // e^(-50/100) of the peak is kept: exactly, on a paused clock.
        let expected = 200e6 * (-0.5f64).exp() + 1e6 * (1.0 - (-0.5f64).exp());
        assert!((after - expected).abs() < 1.0, "decays towards lower latencies: {after} vs {expected}");
    }
}
