//! Body types of the request path, and the request kept so that it can be sent more than once.
//!
//! Responses to the client are the upstream's stream or a small body the proxy wrote ([`ProxyBody`]); requests
//! sent upstream are a kept copy or the client's stream ([`ReqBody`]). A request body is kept for replay only when
//! it is small: empty, or at most [`MAX_REPLAY_BYTES`] by its `Content-Length`. Larger or chunked bodies stream
//! straight through; such a request is resent only if it never left the proxy (hyper hands an unsent request
//! back). With `maxRequestKB` set, a chunked body is read up to that limit first (so it can be refused with 413)
//! and is then replayable too.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri, Version};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Body, Incoming};

use super::error::ProxyError;

/// Response bodies: the upstream's stream, or a small body the proxy wrote.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Request bodies sent upstream: a kept (replayable) copy, or the client's stream.
pub type ReqBody = Either<Full<Bytes>, Incoming>;

/// Largest request body kept in memory so that it can be retried (64 KiB).
pub const MAX_REPLAY_BYTES: u64 = 64 * 1024;

/// A proxy-written body.
pub fn full_body(bytes: Bytes) -> ProxyBody {
    Either::Right(Full::new(bytes))
}

/// Why a request body could not be taken in.
pub enum BodyError {
    /// Larger than `maxRequestKB`.
    TooLarge { limit: u64 },
    /// The client's body stream failed (it went away, or sent malformed chunks).
    Read(String),
}

impl From<BodyError> for ProxyError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge { limit } => ProxyError::BodyTooLarge { limit_kb: limit / 1024 },
            BodyError::Read(why) => ProxyError::BadBody(why),
        }
    }
}

/// A request kept so that it can be sent again.
pub struct KeptRequest {
    pub method: Method,
    uri: Uri,
    version: Version,
    /// `None` while lent to an attempt that took them instead of a copy (see [`KeptRequest::attempt`]).
    headers: Option<HeaderMap>,
    body: Kept,
}

enum Kept {
    /// Small enough to keep: every attempt gets a copy.
    Replayable(Bytes),
    /// Streams through; `None` once handed to an attempt (and not given back).
    Stream(Option<Incoming>),
}

impl KeptRequest {
    /// Takes a request in, reading its body when it is small enough to keep (or when a size limit applies).
    pub async fn take(req: Request<Incoming>, limit_bytes: Option<u64>) -> Result<Self, BodyError> {
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
    /// no copy) and come back only with an unsent request ([`KeptRequest::restore`]).
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
