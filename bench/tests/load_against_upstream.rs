//! Black-box test: the load generator against the real upstream server on 127.0.0.1:0.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use switchyard_bench::args::{LoadArgs, Mode, Target};
use switchyard_bench::{load, upstream};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

fn load_args(url: &str, connections: usize, mode: Mode) -> LoadArgs {
    let target = Target::parse(url).expect("test URL parses");
    LoadArgs { host: target.authority.clone(), target, connections, duration: Duration::from_millis(300), mode }
}

async fn start_upstream() -> (String, Arc<upstream::Counts>, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let address = listener.local_addr().expect("local address");
    let counts = Arc::new(upstream::Counts::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let counter = counts.clone();
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        upstream::serve(listener, counter, Duration::ZERO, shutdown).await
    });
    (format!("http://{address}/"), counts, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_reaches_the_upstream_and_is_counted() {
    let (url, served, stop) = start_upstream().await;
    for mode in [Mode::FlatOut, Mode::FixedRate(200)] {
        let before = served.served.load(Ordering::Relaxed);
        let report = load::run(&load_args(&url, 3, mode)).await;
        let after = served.served.load(Ordering::Relaxed);
        assert_eq!(report.errors, 0, "{mode:?}: no request may fail against a healthy upstream");
        assert!(report.ok > 0, "{mode:?}: some requests must complete");
        assert_eq!(after - before, report.ok, "{mode:?}: upstream count must equal successes");
        assert_eq!(report.latency.len(), report.ok, "{mode:?}: one latency per success");
        assert!(report.latency.value_at_quantile(0.5) > 0, "{mode:?}: latency is measured");
        let line = report.summary_line();
        for key in ["rps=", "p50_us=", "p99_us=", "p999_us=", "errors=0"] {
            assert!(line.contains(key), "summary {line:?} lacks {key}");
        }
    }
    let _ = stop.send(());
}

#[tokio::test]
async fn paced_mode_never_sends_more_than_scheduled() {
    let (url, served, stop) = start_upstream().await;
    // 300 ms at 50 rps schedules requests 0..15 (due times 0, 20 ms, … 280 ms).
    let report = load::run(&load_args(&url, 2, Mode::FixedRate(50))).await;
    assert_eq!(report.errors, 0);
    assert_eq!(report.ok, 15, "open-loop schedule sends exactly rate × duration requests");
    assert_eq!(served.served.load(Ordering::Relaxed), 15);
    let _ = stop.send(());
}

#[tokio::test]
async fn an_unreachable_target_counts_errors_not_latency() {
    // Bind then drop, so the port is (almost certainly) closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let report = load::run(&load_args(&format!("http://{address}/"), 2, Mode::FixedRate(50))).await;
    assert_eq!(report.ok, 0);
    assert!(report.errors > 0, "refused connections must count as errors");
    assert!(report.latency.is_empty());
    assert!(report.summary_line().contains("rps=0 "));
}
