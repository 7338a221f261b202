//! Body types of the request path, and the request kept so that it can be sent more than once.
//!
//! Responses to the client are the upstream's stream or a small body the proxy wrote ([`ProxyBody`]); requests
//! sent upstream are a kept copy or the client's stream ([`ReqBody`]). A request body is kept for replay only when
//! it is small: empty, or at most [`MAX_REPLAY_BYTES`] by its `Content-Length`. Larger or chunked bodies stream
//! straight through; such a request is resent only if it never left the proxy (hyper hands an unsent request
//! back). With `maxRequestKB` set, a chunked body is read up to that limit first (so it can be refused with 413)
//! and is then replayable too.
//!
//! The client's body is read through [`ClientBody`]: a body that goes silent for the server's
//! `bodyIdleTimeoutMs` is cut off, and how the client's body failed is remembered, so that an attempt that broke
//! because of it is answered 400/408 and never blamed on the upstream (no failure accrual, no retry).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri, Version};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use super::error::ProxyError;

/// Response bodies: the upstream's stream, or a small body the proxy wrote.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Request bodies sent upstream: a kept (replayable) copy, or the client's stream.
pub type ReqBody = Either<Full<Bytes>, ClientBody>;

/// How a client's request body failed: the client's doing, never the upstream's.
#[derive(Clone, Debug, PartialEq)]
pub enum BodyFault {
    /// Nothing arrived for the body-idle timeout.
    Stalled(Duration),
    /// The stream broke: the client went away mid-body, or sent malformed chunks.
    Broken(String),
}

/// Where a [`ClientBody`] records its fault, shared with whoever sent it upstream.
pub type FaultCell = Arc<OnceLock<BodyFault>>;

/// The client's request body under the body-idle deadline, recording how it failed.
pub struct ClientBody {
    inner: Incoming,
    idle: Duration,
    /// Armed while waiting for the next frame; reset (not reallocated) for each wait.
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    fault: FaultCell,
}

impl ClientBody {
    /// Wraps the client's `inner` body; a wait longer than `idle` for its next frame fails it.
    pub fn new(inner: Incoming, idle: Duration) -> Self {
        Self { inner, idle, timer: None, waiting: false, fault: FaultCell::default() }
    }

    /// The cell its fault (if any) is recorded in.
    pub fn fault(&self) -> FaultCell {
        self.fault.clone()
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                let _ = this.fault.set(BodyFault::Broken(e.to_string()));
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = Instant::now() + this.idle;
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !this.waiting {
                    timer.as_mut().reset(deadline);
                    this.waiting = true;
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        let _ = this.fault.set(BodyFault::Stalled(this.idle));
                        let why = format!("request body sent nothing for {} ms", this.idle.as_millis());
                        Poll::Ready(Some(Err(why.into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

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
    /// The client's body stream failed or stalled.
    Client(BodyFault),
}

impl From<BodyError> for ProxyError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge { limit } => ProxyError::BodyTooLarge { limit_kb: limit / 1024 },
            BodyError::Client(fault) => ProxyError::ClientBody(fault),
        }
    }
}

/// The fault a failed read of `body` recorded (a stall or a broken stream; `what` if it recorded none).
fn fault_of(cell: &FaultCell, what: impl std::fmt::Display) -> BodyError {
    BodyError::Client(cell.get().cloned().unwrap_or_else(|| BodyFault::Broken(what.to_string())))
}

/// A request kept so that it can be sent again.
pub struct KeptRequest {
    pub method: Method,
    uri: Uri,
    version: Version,
    /// `None` while lent to an attempt that took them instead of a copy (see [`KeptRequest::attempt`]).
    headers: Option<HeaderMap>,
    body: Kept,
    /// How the client's body failed, if it did (also after it was handed to an attempt).
    fault: FaultCell,
}

enum Kept {
    /// Small enough to keep: every attempt gets a copy.
    Replayable(Bytes),
    /// Streams through; `None` once handed to an attempt (and not given back).
    Stream(Option<ClientBody>),
}

impl KeptRequest {
    /// Takes a request in, reading its body when it is small enough to keep (or when a size limit applies);
    /// `body_idle` bounds every wait for the client's next bytes.
    pub async fn take(
        req: Request<Incoming>,
        limit_bytes: Option<u64>,
        body_idle: Duration,
    ) -> Result<Self, BodyError> {
        let (parts, body) = req.into_parts();
        let body = ClientBody::new(body, body_idle);
        let fault = body.fault();
        let declared = body.size_hint().exact();
        if let (Some(limit), Some(len)) = (limit_bytes, declared) {
            if len > limit {
                return Err(BodyError::TooLarge { limit });
            }
        }
        let body = if body.is_end_stream() {
            Kept::Replayable(Bytes::new())
        } else if declared.is_some_and(|n| n <= MAX_REPLAY_BYTES) {
            let bytes = body.collect().await.map_err(|e| fault_of(&fault, e))?.to_bytes();
            Kept::Replayable(bytes)
        } else if let (Some(limit), None) = (limit_bytes, declared) {
            let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
            match limited.collect().await {
                Ok(b) => Kept::Replayable(b.to_bytes()),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(BodyError::TooLarge { limit }),
                Err(e) => return Err(fault_of(&fault, e)),
            }
        } else {
            Kept::Stream(Some(body))
        };
        let headers = Some(parts.headers);
        Ok(Self { method: parts.method, uri: parts.uri, version: parts.version, headers, body, fault })
    }

    /// How the client's body failed, if it has: an attempt that broke meanwhile broke because of the client.
    pub fn client_fault(&self) -> Option<&BodyFault> {
        self.fault.get()
    }

    /// Whether the body is kept in memory, so that attempts can run side by side (hedging).
    pub fn replayable(&self) -> bool {
        self.headers.is_some() && matches!(self.body, Kept::Replayable(_))
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
