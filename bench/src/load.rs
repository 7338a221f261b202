//! The load generator: keep-alive HTTP/1.1 connections driven flat-out or at a fixed rate.
//!
//! At a fixed rate the schedule is open-loop: request `i` is *due* at `start + i/rate`
//! whatever happened to earlier requests, and its latency is measured from that due
//! time. A stalled proxy therefore shows up as latency for every request that should
//! have been sent meanwhile, instead of silently lowering the send rate (the
//! "coordinated omission" mistake of closed-loop load tools).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex};
use tokio::time::{sleep, timeout, Instant};

use crate::args::{LoadArgs, Mode};
use crate::histogram::Histogram;

/// How long one request may take before it counts as an error (keeps runs bounded).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed connect so a dead target does not turn into a busy loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

/// What a load run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// Requests answered with a 2xx status and a complete body.
    pub ok: u64,
    /// Requests that failed: connect or I/O errors, timeouts, non-2xx statuses.
    pub errors: u64,
    /// Wall time from the first scheduled request until the last answer.
    pub elapsed: Duration,
    /// Latencies of successful requests in nanoseconds (from the due time when paced).
    pub latency: Histogram,
}

impl Report {
    /// Successful requests per second.
    pub fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// The one machine-readable line `make bench` parses.
    pub fn summary_line(&self) -> String {
        let us = |q: f64| self.latency.value_at_quantile(q) / 1_000;
        format!(
            "rps={:.0} p50_us={} p90_us={} p99_us={} p999_us={} max_us={} requests={} errors={}",
            self.rps(),
            us(0.50),
            us(0.90),
            us(0.99),
            us(0.999),
            self.latency.max() / 1_000,
            self.ok + self.errors,
            self.errors,
        )
    }
}

/// When each request is due.
enum Schedule {
    /// As fast as each connection allows, until the end.
    FlatOut { end: Instant },
    /// Due times released by the pacer thread; any idle connection takes the next one.
    Paced(Mutex<mpsc::UnboundedReceiver<Instant>>),
}

impl Schedule {
    /// Claims the next request and returns its due time, or `None` when the run is over.
    async fn next_due(&self) -> Option<Instant> {
        match self {
            Schedule::FlatOut { end } => Some(Instant::now()).filter(|now| now < end),
            Schedule::Paced(due_times) => due_times.lock().await.recv().await,
        }
    }
}

/// Releases request `n` at `start + n * interval` for every due time before `end`.
///
/// A plain thread with `std::thread::sleep` rather than a tokio timer: tokio's timer
/// has millisecond granularity, which would add up to a millisecond of the harness's
/// own lateness to every latency measured from the due time. When every connection is
/// busy, due times queue up here and their wait counts as latency, as it should.
fn spawn_pacer(start: Instant, interval: Duration, end: Instant) -> mpsc::UnboundedReceiver<Instant> {
    let (sender, receiver) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let (start, end) = (start.into_std(), end.into_std());
        let mut n: u32 = 0;
        while let Some(due) = interval.checked_mul(n).map(|offset| start + offset).filter(|due| *due < end) {
            std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
            if sender.send(Instant::from_std(due)).is_err() {
                return;
            }
            n = n.saturating_add(1);
        }
    });
    receiver
}

/// Counts kept by one connection, merged at the end.
#[derive(Default)]
struct WorkerStats {
    ok: u64,
    errors: u64,
    latency: Histogram,
}

/// Runs the load described by `args` and returns what it measured.
pub async fn run(args: &LoadArgs) -> Report {
    let start = Instant::now();
    let end = start + args.duration;
    let schedule = Arc::new(match args.mode {
        Mode::FlatOut => Schedule::FlatOut { end },
        Mode::FixedRate(rate) => {
            let interval = Duration::from_secs(1) / rate.max(1);
            Schedule::Paced(Mutex::new(spawn_pacer(start, interval, end)))
        }
    });
    let request = Arc::new(RequestTemplate::new(args));
    let workers: Vec<_> =
        (0..args.connections).map(|_| tokio::spawn(worker(request.clone(), schedule.clone()))).collect();
    let mut report = Report { ok: 0, errors: 0, elapsed: Duration::ZERO, latency: Histogram::new() };
    for worker in workers {
        // A worker cannot panic on input; if it ever did, its requests are simply missing.
        if let Ok(stats) = worker.await {
            report.ok += stats.ok;
            report.errors += stats.errors;
            report.latency.merge(&stats.latency);
        }
    }
    report.elapsed = start.elapsed();
    report
}

/// What every request looks like.
struct RequestTemplate {
    connect_to: String,
    host: String,
    path_and_query: String,
}

impl RequestTemplate {
    fn new(args: &LoadArgs) -> Self {
        Self {
            connect_to: args.target.connect_to.clone(),
            host: args.host.clone(),
            path_and_query: args.target.path_and_query.clone(),
        }
    }

    fn build(&self) -> Result<Request<Empty<Bytes>>, http::Error> {
        Request::get(self.path_and_query.as_str()).header(header::HOST, self.host.as_str()).body(Empty::new())
    }
}

/// One keep-alive connection: takes due times from the schedule until it runs dry,
/// reconnecting after any failure.
async fn worker(request: Arc<RequestTemplate>, schedule: Arc<Schedule>) -> WorkerStats {
    let mut stats = WorkerStats::default();
    let mut sender: Option<SendRequest<Empty<Bytes>>> = None;
    while let Some(due) = schedule.next_due().await {
        if sender.is_none() {
            sender = connect(&request.connect_to).await;
        }
        let Some(live) = sender.as_mut() else {
            stats.errors += 1;
            sleep(RECONNECT_PAUSE).await;
            continue;
        };
        match timeout(REQUEST_TIMEOUT, send_one(live, &request)).await {
            Ok(Ok(())) => {
                stats.ok += 1;
                stats.latency.record(nanos(due.elapsed()));
            }
            Ok(Err(Failure::Status)) => stats.errors += 1,
            // The connection is unusable after an I/O error or a timeout: start afresh.
            Ok(Err(Failure::Connection)) | Err(_) => {
                stats.errors += 1;
                sender = None;
            }
        }
    }
    stats
}

/// Why one request failed.
enum Failure {
    /// A complete answer with a non-2xx status: the connection is still good.
    Status,
    /// The connection broke (or the request could not be built).
    Connection,
}

async fn send_one(sender: &mut SendRequest<Empty<Bytes>>, request: &RequestTemplate) -> Result<(), Failure> {
    let built = request.build().map_err(|_| Failure::Connection)?;
    sender.ready().await.map_err(|_| Failure::Connection)?;
    let response = sender.send_request(built).await.map_err(|_| Failure::Connection)?;
    let success = response.status().is_success();
    // Read the whole body: latency counts until the last byte, and keep-alive needs it drained.
    response.into_body().collect().await.map_err(|_| Failure::Connection)?;
    if success {
        Ok(())
    } else {
        Err(Failure::Status)
    }
}

/// Opens a connection and spawns its driver task; `None` when the target is unreachable.
async fn connect(address: &str) -> Option<SendRequest<Empty<Bytes>>> {
    let stream = timeout(REQUEST_TIMEOUT, TcpStream::connect(address)).await.ok()?.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the peer closes; either is routine here.
        let _ = connection.await;
    });
    Some(sender)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
