//! The upstream the benchmarks forward to: answers every request with `200 ok`.
//!
//! Deliberately trivial so that what the benchmark measures is the proxy, not the app.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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

/// Serves HTTP/1.1 keep-alive on `listener` until `shutdown` completes, counting every
/// request answered in `served` (the tests compare it with what the load side saw).
pub async fn serve<F>(listener: TcpListener, served: Arc<AtomicU64>, shutdown: F) -> std::io::Result<()>
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
        let served = served.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, served.clone()));
            // A client hanging up mid-request is normal during a load run; nothing to report.
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn answer(_request: Request<Incoming>, served: Arc<AtomicU64>) -> Result<Response<Full<Bytes>>, Infallible> {
    served.fetch_add(1, Ordering::Relaxed);
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    Ok(response)
}
