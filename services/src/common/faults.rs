//! Fault injection for demos and the mesh's fault tests: make an instance slow or make it fail a share of its
//! requests, as a real instance does when its disk fills or a dependency degrades.
//!
//! Off unless set from the environment: `FOREX_FAULT_DELAY_MS` (added before every answer) and
//! `FOREX_FAULT_ERROR_RATE` (0.0–1.0: that share of requests answered `503 {"error": "injected fault"}`).
//! `/health` and `/metrics` are never faulted, so the instance stays registered and observable.

use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// The faults one instance injects.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    pub delay: Duration,
    pub error_rate: f64,
}

impl Faults {
    /// Reads `FOREX_FAULT_DELAY_MS` and `FOREX_FAULT_ERROR_RATE` through `env`; bad values are errors.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let delay = match env("FOREX_FAULT_DELAY_MS") {
            Some(v) => Duration::from_millis(
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("FOREX_FAULT_DELAY_MS: not a number of milliseconds: {v:?}"))?,
            ),
            None => Duration::ZERO,
        };
        let error_rate = match env("FOREX_FAULT_ERROR_RATE") {
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| format!("FOREX_FAULT_ERROR_RATE: not a number from 0 to 1: {v:?}"))?,
            None => 0.0,
        };
        Ok(Self { delay, error_rate })
    }

    /// Whether any fault is configured.
    pub fn active(&self) -> bool {
        !self.delay.is_zero() || self.error_rate > 0.0
    }

    /// Wraps `app` so every request but `/health` and `/metrics` suffers these faults.
    pub fn apply(self, app: axum::Router) -> axum::Router {
        if !self.active() {
            return app;
        }
        tracing::warn!(delay_ms = self.delay.as_millis() as u64, error_rate = self.error_rate, "fault injection is ON");
        app.layer(axum::middleware::from_fn(move |req: Request, next: Next| inject(self, req, next)))
    }
}

async fn inject(faults: Faults, req: Request, next: Next) -> Response {
    if matches!(req.uri().path(), "/health" | "/metrics") {
        return next.run(req).await;
    }
    if !faults.delay.is_zero() {
        tokio::time::sleep(faults.delay).await;
    }
    if faults.error_rate > 0.0 && random_unit() < faults.error_rate {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "error": "injected fault" })))
            .into_response();
    }
    next.run(req).await
}

/// A uniform number in [0, 1) from the std hasher's random keys (good enough to pick which requests fail).
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_env_and_rejects_bad_values() {
        let env = |d: &'static str, r: &'static str| {
            move |k: &str| match k {
                "FOREX_FAULT_DELAY_MS" if !d.is_empty() => Some(d.to_string()),
                "FOREX_FAULT_ERROR_RATE" if !r.is_empty() => Some(r.to_string()),
                _ => None,
            }
        };
        assert_eq!(Faults::from_env(env("", "")).unwrap(), Faults::default());
        assert!(!Faults::default().active());
        let f = Faults::from_env(env("200", "0.5")).unwrap();
        assert_eq!(f, Faults { delay: Duration::from_millis(200), error_rate: 0.5 });
        assert!(Faults::from_env(env("soon", "")).is_err());
        assert!(Faults::from_env(env("", "1.5")).is_err());
    }

    #[test]
    fn random_unit_is_in_range_and_varies() {
        let xs: Vec<f64> = (0..200).map(|_| random_unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let below = xs.iter().filter(|x| **x < 0.5).count();
        assert!((40..=160).contains(&below), "{below} of 200 below 0.5");
    }
}
