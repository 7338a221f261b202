//! Request correlation: `l5d-reqid`, W3C `traceparent` and Zipkin B3, so one conversion can be followed across
//! every hop in the access logs.
//!
//! Each hop keeps the trace id it was given (from `traceparent`, else from B3, else a new one), sends the
//! upstream a new span id with the incoming span as its parent, and keeps B3 headers in step when the caller
//! used them. `l5d-reqid` is kept when present (apps forward it) and created otherwise; it is echoed on the
//! response so a client can quote it.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::headers::{
    B3, L5D_REQID, TRACEPARENT, X_B3_PARENTSPANID as B3_PARENT, X_B3_SPANID as B3_SPAN, X_B3_TRACEID as B3_TRACE,
};

/// The ids of one request at this hop.
#[derive(Clone, Debug)]
pub struct Correlation {
    pub reqid: HeaderValue,
    /// 32 lowercase hex digits.
    pub trace_id: HexId<32>,
    /// The span this hop sends upstream (16 hex digits).
    pub span_id: HexId<16>,
}

/// `N` lowercase hex digits, never all zero (W3C forbids all-zero ids): built and formatted without allocating,
/// as every request makes up to three (a span id, and a trace id and request id when it came without).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HexId<const N: usize>([u8; N]);

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

impl<const N: usize> HexId<N> {
    /// A random id.
    fn random() -> Self {
        let mut id = [b'0'; N];
        let mut bits = fastrand::u128(1..);
        for (i, digit) in id.iter_mut().enumerate() {
            if i % 32 == 0 && i > 0 {
                bits = fastrand::u128(1..);
            }
            *digit = HEX_DIGITS[(bits & 0xf) as usize];
            bits >>= 4;
        }
        if id.iter().all(|&d| d == b'0') {
            id[N - 1] = b'1';
        }
        Self(id)
    }

    /// `text` if it is exactly `N` hex digits, not all zero; lowercased.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes: [u8; N] = text.as_bytes().try_into().ok()?;
        (is_hex(text, N)).then(|| Self(bytes.map(|b| b.to_ascii_lowercase())))
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("0")
    }
}

impl<const N: usize> std::fmt::Display for HexId<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> std::fmt::Debug for HexId<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> PartialEq<&str> for HexId<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0')
}

fn text<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// `version-traceid-parentid-flags` → (trace id, flags), for version 00 and valid ids.
fn parse_traceparent(v: &str) -> Option<(HexId<32>, [u8; 2])> {
    let mut it = v.split('-');
    let (ver, trace, parent, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let flags: [u8; 2] = flags.as_bytes().try_into().ok()?;
    let valid = ver == "00" && is_hex(parent, 16) && it.next().is_none() && flags.iter().all(u8::is_ascii_hexdigit);
    valid.then(|| HexId::parse(trace)).flatten().map(|t| (t, flags.map(|b| b.to_ascii_lowercase())))
}

/// A B3 trace id (16 or 32 hex digits), widened to 32.
fn b3_trace(v: &str) -> Option<HexId<32>> {
    if let Some(short) = HexId::<16>::parse(v) {
        let mut wide = [b'0'; 32];
        wide[16..].copy_from_slice(&short.0);
        return Some(HexId(wide));
    }
    HexId::parse(v)
}

/// A request id kept from the caller: 1 to 64 characters of `A-Z a-z 0-9 . _ : -` (anything else — spaces,
/// quotes, separators that could forge a log field — is replaced by a new id).
fn is_safe_reqid(v: &[u8]) -> bool {
    (1..=64).contains(&v.len()) && v.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// `00-<trace>-<span>-<flags>`, the `traceparent` this hop sends.
fn traceparent(trace_id: &HexId<32>, span_id: &HexId<16>, flags: [u8; 2]) -> HeaderValue {
    let mut v = [b'-'; 55];
    v[..2].copy_from_slice(b"00");
    v[3..35].copy_from_slice(&trace_id.0);
    v[36..52].copy_from_slice(&span_id.0);
    v[53..].copy_from_slice(&flags);
    HeaderValue::from_bytes(&v)
        .unwrap_or(HeaderValue::from_static("00-00000000000000000000000000000001-0000000000000001-00"))
}

/// Reads the incoming ids and rewrites the headers for the upstream request.
pub fn correlate(h: &mut HeaderMap) -> Correlation {
    let reqid = match h.get(&L5D_REQID).filter(|v| is_safe_reqid(v.as_bytes())) {
        Some(given) => given.clone(),
        None => HeaderValue::from_bytes(&HexId::<16>::random().0).unwrap_or(HeaderValue::from_static("0")),
    };
    // Exactly one goes upstream, even if the caller sent several.
    h.insert(L5D_REQID, reqid.clone());

    let single_b3 = text(h, &B3).map(str::to_owned);
    let from_b3 =
        text(h, &B3_TRACE).and_then(b3_trace).map(|t| (t, text(h, &B3_SPAN).map(str::to_owned))).or_else(|| {
            let v = single_b3.as_deref()?;
            let mut parts = v.split('-');
            Some((b3_trace(parts.next()?)?, parts.next().map(str::to_owned)))
        });
    let (trace_id, flags) = match text(h, &TRACEPARENT).and_then(parse_traceparent) {
        Some(found) => found,
        None => match &from_b3 {
            Some((t, _)) => (*t, *b"01"),
            None => (HexId::random(), *b"00"),
        },
    };
    let span_id = HexId::<16>::random();
    h.insert(TRACEPARENT, traceparent(&trace_id, &span_id, flags));
    if let Some((_, parent)) = from_b3 {
        // Keep B3 callers' view consistent: this hop's span, with the caller's as parent.
        if h.contains_key(&B3_TRACE) {
            if let Ok(v) = HeaderValue::from_bytes(&span_id.0) {
                h.insert(B3_SPAN, v);
            }
            if let Some(p) = parent.as_deref().and_then(|p| HeaderValue::from_str(p).ok()) {
                h.insert(B3_PARENT, p);
            }
        }
        if let Some(single) = single_b3 {
            let rest: Vec<&str> = single.split('-').skip(2).take(1).collect();
            let sampled = rest.first().copied().unwrap_or("1");
            let parent = parent.unwrap_or_default();
            let b3 = format!("{}-{span_id}-{sampled}-{parent}", single.split('-').next().unwrap_or(trace_id.as_str()));
            if let Ok(v) = HeaderValue::from_str(&b3) {
                h.insert(B3, v);
            }
        }
    }
    Correlation { reqid, trace_id, span_id }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(HeaderName::from_static(k), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn new_ids_when_none_are_given() {
        let mut h = HeaderMap::new();
        let c = correlate(&mut h);
        assert_eq!(c.reqid.len(), 16);
        assert!(is_hex(c.trace_id.as_str(), 32) && is_hex(c.span_id.as_str(), 16));
        assert_eq!(h["traceparent"], format!("00-{}-{}-00", c.trace_id, c.span_id));
        assert_eq!(h["l5d-reqid"], c.reqid);
    }

    #[test]
    fn traceparent_keeps_the_trace_and_starts_a_child_span() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut h = headers(&[("traceparent", tp), ("l5d-reqid", "abc123")]);
        let c = correlate(&mut h);
        assert_eq!(c.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.reqid, "abc123", "a given request id is kept");
        for forged in ["evil id\" injected=1", "a b", "", &"x".repeat(65), "id;x"] {
            let mut h = headers(&[("l5d-reqid", forged)]);
            let c = correlate(&mut h);
            assert_ne!(c.reqid, forged, "{forged:?} is replaced");
            assert!(is_safe_reqid(c.reqid.as_bytes()));
        }
        let out = h["traceparent"].to_str().unwrap();
        assert!(out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && out.ends_with("-01"), "{out}");
        assert_ne!(&out[36..52], "00f067aa0ba902b7", "a new span id for this hop");
    }

    #[test]
    fn invalid_traceparent_is_replaced() {
        let mut h = headers(&[("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")]);
        let c = correlate(&mut h);
        assert_ne!(c.trace_id, "00000000000000000000000000000000");
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let mut h = headers(&[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz")]);
        assert_ne!(correlate(&mut h).trace_id, trace, "flags that are not hex: a new trace");

        let mut h = headers(&[("traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-0A")]);
        assert_eq!(correlate(&mut h).trace_id, trace, "kept, in lowercase");
        let sent = h["traceparent"].to_str().unwrap();
        assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && sent.ends_with("-0a"), "{sent}");
    }

    #[test]
    fn b3_multi_and_single_header() {
        let mut h = headers(&[
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-sampled", "1"),
        ]);
        let c = correlate(&mut h);
        assert_eq!(c.trace_id, "0000000000000000463ac35c9f6413ad");
        assert_eq!(h["x-b3-parentspanid"], "a2fb4a1d1a96d312");
        assert_eq!(h["x-b3-spanid"], c.span_id.as_str());
        assert_eq!(h["x-b3-traceid"], "463ac35c9f6413ad", "the caller's trace id is kept as it was");

        let mut h = headers(&[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90")]);
        let c = correlate(&mut h);
        assert_eq!(c.trace_id, "80f198ee56343ba864fe8b2a57d3eff7");
        assert_eq!(h["b3"], format!("80f198ee56343ba864fe8b2a57d3eff7-{}-1-e457b5a2e4d86bd1", c.span_id));
    }
}
