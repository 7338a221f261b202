//! The upstream the benchmarks forward to: answers every request with `200 ok` (after an optional delay, to
//! stand in for an app's own work), and `GET /__connections` with the connections it accepted and the most it
//! had open at once since the last such request (`accepted peak`).
//!
//! Deliberately trivial so that what the benchmark measures is the proxy, not the app.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The body of every answer.
pub const BODY: &[u8] = b"ok\n";

/// What the upstream counted: requests answered (the tests compare it with what the load side saw) and
/// connections accepted (how many a proxy in front opened).
#[derive(Debug, Default)]
pub struct Counts {
    pub served: AtomicU64,
    pub accepted: AtomicU64,
    pub open: AtomicU64,
    pub peak: AtomicU64,
}

/// Serves HTTP/1.1 keep-alive on `listener` until `shutdown` completes, answering after `delay`, counting in
/// `counts`.
pub async fn serve<F>(listener: TcpListener, counts: Arc<Counts>, delay: Duration, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()>,
{
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Running out of file descriptors must not end the server: skip this one.
                Err(_) => continue,
            },
        };
        // Latency benchmark: never let Nagle hold back a small response.
        let _ = stream.set_nodelay(true);
        counts.accepted.fetch_add(1, Ordering::Relaxed);
        let open = counts.open.fetch_add(1, Ordering::Relaxed) + 1;
        counts.peak.fetch_max(open, Ordering::Relaxed);
        let counts = counts.clone();
        tokio::spawn(async move {
            let answering = counts.clone();
            let service = service_fn(move |request| answer(request, answering.clone(), delay));
            // A client hanging up mid-request is normal during a load run; nothing to report.
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            counts.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    counts: Arc<Counts>,
    delay: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == "/__connections" {
        let accepted = counts.accepted.load(Ordering::Relaxed);
        // The peak since the last look: each look starts a new measurement.
        let peak = counts.peak.swap(counts.open.load(Ordering::Relaxed), Ordering::Relaxed);
        return Ok(Response::new(Full::new(Bytes::from(format!("{accepted} {peak}\n")))));
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    counts.served.fetch_add(1, Ordering::Relaxed);
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    Ok(response)
}
