//! What switchyard's test suites share with each other and with the local tools, and nothing else links.
//!
//! # Layout
//! - [`consul`]: a Consul HTTP API double (catalog, health, agent, KV, blocking queries, outages), used by the
//!   proxy's Consul tests and, as `switchyard-bench consul`, by `make up CONSUL=…` and the mesh tests.
//! - [`eventually`]: wait for a condition instead of sleeping a fixed time.

pub mod consul;

use std::future::Future;
use std::time::Duration;

/// Polls `check` every 10 ms until it holds, for at most `within`; panics naming `what` if it never does.
///
/// On a paused tokio clock the polls cost no real time; on a real clock the test waits only as long as the
/// condition takes, so a slow machine slows the test down instead of failing it (up to `within`).
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "not true within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn waits_until_true() {
        let n = AtomicU32::new(0);
        eventually("three polls", Duration::from_secs(1), || async { n.fetch_add(1, Ordering::Relaxed) >= 2 }).await;
        assert_eq!(n.load(Ordering::Relaxed), 3);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "not true within 100ms: never")]
    async fn panics_naming_what_never_happened() {
        eventually("never", Duration::from_millis(100), || async { false }).await;
    }
}
