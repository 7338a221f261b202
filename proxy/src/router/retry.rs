//! The retry stage's parts: the retry budget, and a request kept in a form that can be sent more than once.
//!
//! A request body is kept for replay only when it is small: empty, or at most [`MAX_REPLAY_BYTES`] by its
//! `Content-Length`. Larger or chunked bodies stream straight through; such a request is resent only if it never
//! left the proxy (hyper hands an unsent request back). With `maxRequestKB` set, a chunked body is read up to that
//! limit first (so it can be refused with 413) and is then replayable too.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri, Version};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Body, Incoming};

use super::ReqBody;
use crate::config::RetryBudget;

/// Largest request body kept in memory so that it can be retried (64 KiB).
pub const MAX_REPLAY_BYTES: u64 = 64 * 1024;

/// Finagle's retry budget over a sliding window of one-second slots.
pub struct Budget {
    config: RetryBudget,
    window: Mutex<Window>,
}

struct Window {
    start: Instant,
    /// (second, requests, retries) per slot; slot = second % len.
    slots: Vec<(u64, u64, u64)>,
}

impl Budget {
    /// A budget with `config`'s window, reserve and ratio.
    pub fn new(config: RetryBudget) -> Self {
        let len = config.ttl_secs.clamp(1, 3600) as usize;
        Self { config, window: Mutex::new(Window { start: Instant::now(), slots: vec![(u64::MAX, 0, 0); len] }) }
    }

    fn with_slot<R>(&self, f: impl FnOnce(&mut Window, usize) -> R) -> R {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let sec = w.start.elapsed().as_secs();
        let i = (sec % w.slots.len() as u64) as usize;
        if w.slots[i].0 != sec {
            w.slots[i] = (sec, 0, 0);
        }
        f(&mut w, i)
    }

    /// Counts a request (each request deposits `percentCanRetry` of a retry).
    pub fn deposit(&self) {
        self.with_slot(|w, i| w.slots[i].1 += 1);
    }

    /// Takes one retry from the budget if there is one.
    pub fn try_withdraw(&self) -> bool {
        let c = self.config;
        self.with_slot(|w, i| {
            let now = w.slots[i].0;
            let live = w.slots.iter().filter(|s| s.0 != u64::MAX && now.saturating_sub(s.0) < w.slots.len() as u64);
            let (requests, retries) = live.fold((0u64, 0u64), |(r, t), s| (r + s.1, t + s.2));
            let window = w.slots.len() as f64;
            let allowance = f64::from(c.min_retries_per_sec) * window + c.percent_can_retry * requests as f64;
            if (retries as f64) + 1.0 <= allowance {
                w.slots[i].2 += 1;
                true
            } else {
                false
            }
        })
    }
}

/// Why a request body could not be taken in.
pub enum BodyError {
    /// Larger than `maxRequestKB`.
    TooLarge { limit: u64 },
    /// The client's body stream failed (it went away, or sent malformed chunks).
    Read(String),
    /// The deadline passed while the body was being read.
    TimedOut,
}

/// A request kept so that it can be sent again.
pub struct Prepared {
    pub method: Method,
    uri: Uri,
    version: Version,
    /// `None` while lent to an attempt that took them instead of a copy (see [`Prepared::attempt`]).
    headers: Option<HeaderMap>,
    body: Kept,
}

enum Kept {
    /// Small enough to keep: every attempt gets a copy.
    Replayable(Bytes),
    /// Streams through; `None` once handed to an attempt (and not given back).
    Stream(Option<Incoming>),
}

impl Prepared {
    /// Takes a request in, reading its body when it is small enough to keep (or when a size limit applies).
    pub async fn new(req: Request<Incoming>, limit_bytes: Option<u64>) -> Result<Self, BodyError> {
        let (parts, body) = req.into_parts();
        let declared = body.size_hint().exact();
        if let (Some(limit), Some(len)) = (limit_bytes, declared) {
            if len > limit {
                return Err(BodyError::TooLarge { limit });
            }
        }
        let body = if body.is_end_stream() {
            Kept::Replayable(Bytes::new())
        } else if declared.is_some_and(|n| n <= MAX_REPLAY_BYTES) {
            let bytes = body.collect().await.map_err(|e| BodyError::Read(e.to_string()))?.to_bytes();
            Kept::Replayable(bytes)
        } else if let (Some(limit), None) = (limit_bytes, declared) {
            let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
            match limited.collect().await {
                Ok(b) => Kept::Replayable(b.to_bytes()),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(BodyError::TooLarge { limit }),
                Err(e) => return Err(BodyError::Read(e.to_string())),
            }
        } else {
            Kept::Stream(Some(body))
        };
        Ok(Self { method: parts.method, uri: parts.uri, version: parts.version, headers: Some(parts.headers), body })
    }

    /// Whether another attempt can be built now (headers and a kept body, or a stream given back unsent).
    pub fn can_attempt(&self) -> bool {
        self.headers.is_some() && matches!(self.body, Kept::Replayable(_) | Kept::Stream(Some(_)))
    }

    /// A request for the next attempt; `None` when the streaming body (or the headers) were already used.
    /// With `keep`, the attempt gets a copy of the headers so that a retry is possible even after the request
    /// reached the upstream; without it the headers move into the attempt (the common, non-retryable case costs
    /// no copy) and come back only with an unsent request ([`Prepared::restore`]).
    pub fn attempt(&mut self, keep: bool) -> Option<Request<ReqBody>> {
        let headers = if keep { self.headers.clone()? } else { self.headers.take()? };
        let body: ReqBody = match &mut self.body {
            Kept::Replayable(b) => Either::Left(Full::new(b.clone())),
            Kept::Stream(s) => Either::Right(s.take()?),
        };
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = headers;
        Some(req)
    }

    /// Takes back a request that never left the proxy, so it can be sent again (streaming body included).
    pub fn restore(&mut self, req: Request<ReqBody>) {
        let (parts, body) = req.into_parts();
        if self.headers.is_none() {
            self.headers = Some(parts.headers);
        }
        if let (Kept::Stream(slot @ None), Either::Right(body)) = (&mut self.body, body) {
            *slot = Some(body);
        }
    }
}

/// Time left until `deadline`, if there is one (zero once passed).
pub fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_reserve_plus_ratio_and_no_more() {
        let b = Budget::new(RetryBudget { ttl_secs: 10, min_retries_per_sec: 1, percent_can_retry: 0.2 });
        // Reserve: 1/s × 10 s = 10 retries with no traffic at all.
        let reserve = (0..100).filter(|_| b.try_withdraw()).count();
        assert_eq!(reserve, 10);
        for _ in 0..100 {
            b.deposit();
        }
        // 100 requests × 0.2 = 20 more.
        let more = (0..100).filter(|_| b.try_withdraw()).count();
        assert_eq!(more, 20);
    }

    #[test]
    fn zero_budget_never_retries() {
        let b = Budget::new(RetryBudget { ttl_secs: 10, min_retries_per_sec: 0, percent_can_retry: 0.0 });
        for _ in 0..50 {
            b.deposit();
        }
        assert!(!b.try_withdraw());
    }
}
