//! The per-request context: what a request carries from hop to hop besides its payload — the local dtab
//! override, the caller's deadline, the logical name and bound client — and which of it this hop honours.
//!
//! `l5d-dtab` / `l5d-ctx-dtab` and `l5d-ctx-deadline` are read only on trusted servers (`clearContext: false`);
//! elsewhere they are stripped before anything looks at them. The `l5d-dst-*` headers always describe this hop's
//! own routing: a client's are never passed on.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Request};
use switchyard_dtab::Dtab;
use tokio::time::Instant;

use super::bind::Target;
use super::body::ReqBody;
use super::error::{ProxyError, TimeoutKind};
use super::headers::{
    self, L5D_CTX_DEADLINE, L5D_CTX_DTAB, L5D_DST_CLIENT, L5D_DST_RESIDUAL, L5D_DST_SERVICE, L5D_DTAB,
};
use super::Downstream;

/// What a request's headers say about how to route it, as far as this hop trusts them.
#[derive(Debug, Default)]
pub struct RequestContext {
    /// The per-request dtab override (`l5d-ctx-dtab` then `l5d-dtab`), appended to the router's dtab.
    pub local_dtab: Option<Dtab>,
    /// When the caller stops waiting (`l5d-ctx-deadline`).
    pub caller_deadline: Option<Instant>,
    /// The request carried overrides this hop does not trust, and they were dropped.
    pub dropped: bool,
}

impl RequestContext {
    /// Reads the context headers when `trusted`, and strips the dtab overrides either way (they are re-sent, in
    /// `l5d-ctx-dtab`, only when honoured).
    pub fn read(h: &mut HeaderMap, trusted: bool) -> Result<Self, ProxyError> {
        // Most requests carry no context: one look at the names instead of a lookup per header read or removed.
        if !h.keys().any(|k| k.as_str().starts_with("l5d-ctx-") || k == L5D_DTAB) {
            return Ok(Self::default());
        }
        if !trusted {
            // Every `l5d-ctx-*` header is context from a caller this hop does not trust: none is passed on.
            let before = h.len();
            let ctx: Vec<http::HeaderName> = h.keys().filter(|k| k.as_str().starts_with("l5d-ctx-")).cloned().collect();
            for name in ctx {
                h.remove(name);
            }
            h.remove(L5D_DTAB);
            return Ok(Self { dropped: h.len() != before, ..Self::default() });
        }
        let mut local = Dtab::empty();
        for name in [L5D_CTX_DTAB, L5D_DTAB] {
            for value in h.get_all(&name) {
                let bad = |error: String| ProxyError::BadDtabHeader { header: name.as_str().to_owned(), error };
                let text = value.to_str().map_err(|_| bad("not text".into()))?;
                local = local.concat(&Dtab::parse(text).map_err(|e| bad(e.to_string()))?);
            }
        }
        h.remove(L5D_DTAB);
        h.remove(L5D_CTX_DTAB);
        let local_dtab = if local.dentries().is_empty() { None } else { Some(local) };
        Ok(Self { local_dtab, caller_deadline: parse_deadline(h), dropped: false })
    }
}

/// The one deadline a request's attempts share: the service's total timeout or the caller's, whichever is first.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    at: Option<Instant>,
    /// The service's `totalTimeoutMs`, reported as how long the request took when the deadline runs out.
    total: Option<Duration>,
    start: Instant,
}

impl Deadline {
    /// The deadline of a request that arrived at `start`.
    pub fn new(start: Instant, total: Option<Duration>, caller: Option<Instant>) -> Self {
        // A timeout too large to add to the clock is no deadline at all (never a panic).
        let at = [total.and_then(|t| start.checked_add(t)), caller].into_iter().flatten().min();
        Self { at, total, start }
    }

    /// Time left, if there is a deadline (zero once passed).
    pub fn remaining(&self) -> Option<Duration> {
        self.at.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether it has passed.
    pub fn expired(&self) -> bool {
        self.at.is_some_and(|d| d <= Instant::now())
    }

    /// The error for this deadline running out while doing `kind`: "after" the configured total timeout, or the
    /// time the request took when the caller's deadline was the one that ran out.
    pub fn timed_out(&self, kind: TimeoutKind) -> ProxyError {
        let after = match kind {
            TimeoutKind::CallerDeadline => Duration::ZERO,
            _ => self.total.unwrap_or_else(|| self.start.elapsed()),
        };
        ProxyError::Timeout { kind, after }
    }

    /// Runs `fut` until the deadline, if there is one; `Err(())` when it ran out first.
    pub async fn run<F: std::future::Future>(&self, fut: F) -> Result<F::Output, ()> {
        match self.at {
            Some(at) => tokio::time::timeout_at(at, fut).await.map_err(|_| ()),
            None => Ok(fut.await),
        }
    }

    /// Writes the deadline for the next hop (`<now> <deadline>`, nanoseconds since the epoch).
    fn write(&self, h: &mut HeaderMap) {
        if let Some(left) = self.remaining() {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            let at = now + left;
            // Two integers, written without the formatting machinery: this runs on every request with a timeout.
            let (mut a, mut b) = (itoa::Buffer::new(), itoa::Buffer::new());
            let (now, at) = (a.format(now.as_nanos()), b.format(at.as_nanos()));
            let mut value = Vec::with_capacity(now.len() + 1 + at.len());
            value.extend_from_slice(now.as_bytes());
            value.push(b' ');
            value.extend_from_slice(at.as_bytes());
            if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
                h.insert(L5D_CTX_DEADLINE, v);
            }
        }
    }
}

/// Reads `l5d-ctx-deadline` (`<sent-at> <deadline>` or just `<deadline>`, nanoseconds since the epoch) as an
/// instant on this machine's clock.
fn parse_deadline(h: &HeaderMap) -> Option<Instant> {
    let text = h.get(L5D_CTX_DEADLINE)?.to_str().ok()?;
    let deadline_ns: u128 = text.split_whitespace().last()?.parse().ok()?;
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_nanos();
    let left = u64::try_from(deadline_ns.saturating_sub(now_ns)).unwrap_or(u64::MAX);
    Instant::now().checked_add(Duration::from_nanos(left))
}

/// Headers every attempt shares: hygiene, `Via`, `X-Forwarded-For`, the logical name, the dtab override, and the
/// request target for the upstream protocol.
/// (Hop-by-hop headers were removed when the request arrived, before the proxy added any of its own.)
pub fn prepare_request<B>(
    req: &mut Request<B>,
    conn: &Downstream,
    service: Option<&HeaderValue>,
    local: Option<&Dtab>,
    h2: bool,
) {
    let version = req.version();
    let h = req.headers_mut();
    headers::append_via(h, version);
    headers::append_forwarded_for(h, conn.peer.ip(), conn.forwarded_for.as_ref());
    // What a caller sent in the proxy's own `l5d-dst-*` (and a deadline this hop did not read) never goes on. One
    // look at the names, then removals only when there is something to remove.
    if h.keys().any(|k| k.as_str().starts_with("l5d-dst-") || k == L5D_CTX_DEADLINE) {
        h.remove(L5D_DST_CLIENT);
        h.remove(L5D_DST_RESIDUAL);
        h.remove(L5D_CTX_DEADLINE);
    }
    match service {
        Some(service) => h.insert(L5D_DST_SERVICE, service.clone()),
        None => h.remove(L5D_DST_SERVICE),
    };
    if let Some(local) = local {
        // The override travels with the request so the next hop routes the same way.
        headers::set_text(h, L5D_CTX_DTAB, &local.to_string());
    }
    headers::set_target_for(req, h2);
}

/// Headers of one attempt: the bound client, the residual, a namer's `Host`, and the remaining deadline.
pub fn prepare_attempt(req: &mut Request<ReqBody>, target: &Target, deadline: &Deadline, h2: bool) {
    if let Some(host) = &target.host {
        headers::set_authority(req, host, h2);
    }
    let h = req.headers_mut();
    match &target.balancer.id_header {
        Some(client) => h.insert(L5D_DST_CLIENT, client.clone()),
        None => h.remove(L5D_DST_CLIENT),
    };
    if !target.residual.is_empty() {
        headers::set_text(h, L5D_DST_RESIDUAL, &target.residual.to_string());
    }
    deadline.write(h);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(name: http::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn overrides_are_read_only_when_trusted_and_stripped_always() {
        let mut h = with(L5D_DTAB, "/svc=>/$/inet/127.0.0.1/1");
        h.insert("l5d-ctx-trace", HeaderValue::from_static("x"));
        h.insert("l5d-ctx-anything", HeaderValue::from_static("y"));
        h.insert("l5d-reqid", HeaderValue::from_static("kept"));
        let ctx = RequestContext::read(&mut h, false).unwrap();
        assert!(ctx.local_dtab.is_none() && !h.contains_key(L5D_DTAB));
        assert!(h.keys().all(|k| !k.as_str().starts_with("l5d-ctx-")), "{h:?}");
        assert_eq!(h.len(), 1, "only the request id stays: {h:?}");
        assert!(ctx.dropped, "counted as dropped");
        assert!(!RequestContext::read(&mut HeaderMap::new(), false).unwrap().dropped);

        let mut h = with(L5D_DTAB, "/svc=>/$/inet/127.0.0.1/1");
        h.insert(L5D_CTX_DTAB, HeaderValue::from_static("/a=>/b"));
        let ctx = RequestContext::read(&mut h, true).unwrap();
        assert_eq!(ctx.local_dtab.unwrap().to_string(), "/a=>/b;/svc=>/$/inet/127.0.0.1/1");
        assert!(!h.contains_key(L5D_DTAB) && !h.contains_key(L5D_CTX_DTAB));
    }

    #[test]
    fn a_malformed_override_names_its_header() {
        let mut h = with(L5D_DTAB, "/svc=>");
        let err = RequestContext::read(&mut h, true).unwrap_err();
        assert!(err.to_string().starts_with("malformed l5d-dtab header"), "{err}");
        assert_eq!(err.status(), 400);
    }

    #[tokio::test(start_paused = true)]
    async fn the_earlier_deadline_wins_and_travels_on() {
        let start = Instant::now();
        let caller = start + Duration::from_millis(300);
        let d = Deadline::new(start, Some(Duration::from_secs(1)), Some(caller));
        assert_eq!(d.remaining(), Some(Duration::from_millis(300)));
        tokio::time::advance(Duration::from_millis(301)).await;
        assert!(d.expired());
        let err = d.timed_out(TimeoutKind::Request);
        assert_eq!(err.to_string(), "request timed out after 1000 ms");

        let d = Deadline::new(Instant::now(), Some(Duration::from_millis(250)), None);
        let mut h = HeaderMap::new();
        d.write(&mut h);
        let sent = parse_deadline(&h).unwrap();
        let left = sent.saturating_duration_since(Instant::now());
        assert!(left <= Duration::from_millis(250) && left > Duration::from_millis(240), "{left:?}");
        assert!(Deadline::new(Instant::now(), None, None).remaining().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn run_stops_at_the_deadline() {
        let d = Deadline::new(Instant::now(), Some(Duration::from_millis(50)), None);
        let slow = tokio::time::sleep(Duration::from_secs(5));
        assert!(d.run(slow).await.is_err());
        assert_eq!(d.run(async { 7 }).await, Ok(7));
    }
}
