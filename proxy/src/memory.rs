//! Gives the memory a burst of connections used back to the system once the burst is over.
//!
//! glibc's allocator keeps what the program frees in its arenas for reuse, and hands back to the kernel only
//! free space at the very top of a heap — after thousands of connections opened and closed, a sidecar would
//! stay at its high-water mark for good (measured: 8 MiB idle, ~65 MiB after 2,000 connections came and went,
//! and growing with each burst). `malloc_trim(0)` releases every free page of every arena. It is called, off
//! the async workers, when the number of open connections (downstream and upstream) has fallen well below its
//! high-water mark since the last look — i.e. after a burst — never on a steady load. See
//! docs/decisions/0013-connection-pools-and-memory.md for the allocators measured instead.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{IntCounter, Opts};

use crate::metrics::{names, Registry};

/// How often the connection count is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Connections that must have closed since the high-water mark for a trim to be worth it.
const BURST: usize = 64;

static OPEN: AtomicUsize = AtomicUsize::new(0);
static HIGH: AtomicUsize = AtomicUsize::new(0);
static RUNNING: AtomicBool = AtomicBool::new(false);

/// A connection (downstream or upstream) opened.
pub fn connection_opened() {
    let now = OPEN.fetch_add(1, Ordering::Relaxed) + 1;
    HIGH.fetch_max(now, Ordering::Relaxed);
}

/// A connection closed.
pub fn connection_closed() {
    OPEN.fetch_sub(1, Ordering::Relaxed);
}

/// The process-wide counters (one allocator per process, however many sidecars a test starts in it).
struct Counters {
    trims: IntCounter,
    released: IntCounter,
}

fn counters() -> &'static Counters {
    static COUNTERS: OnceLock<Counters> = OnceLock::new();
    COUNTERS.get_or_init(|| {
        let counter = |name: &str, help: &str| IntCounter::with_opts(Opts::new(name, help)).expect("valid metric");
        Counters {
            trims: counter(names::MEMORY_TRIMS, "Times freed heap memory was returned to the system after a burst."),
            released: counter(
                names::MEMORY_RELEASED,
                "Resident memory returned to the system by those trims, in bytes (RSS before minus after).",
            ),
        }
    })
}

/// Adds the trim counters to `registry` and starts the task that trims after bursts (once per process).
pub fn start(registry: &Registry) {
    let c = counters();
    registry.register(Box::new(c.trims.clone()));
    registry.register(Box::new(c.released.clone()));
    if RUNNING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async {
        // Whichever way the task ends (its runtime shutting down), the next sidecar started may run one again.
        let _running = Running;
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = OPEN.load(Ordering::Relaxed);
            // The mark is kept until a trim, so a burst that ends slowly is noticed too.
            if HIGH.load(Ordering::Relaxed) >= now + BURST {
                HIGH.store(now, Ordering::Relaxed);
                let _ = tokio::task::spawn_blocking(trim_now).await;
            }
        }
    });
}

/// Marks the trim task as running while it lives.
struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::Release);
    }
}

/// Trims now, counting what it gave back.
fn trim_now() {
    let before = resident_bytes();
    if !malloc_trim() {
        return;
    }
    let after = resident_bytes();
    let c = counters();
    c.trims.inc();
    c.released.inc_by(before.saturating_sub(after));
    tracing::debug!(before, after, "returned freed memory to the system after a burst of connections");
}

/// The process's resident set (`VmRSS` in /proc/self/status; 0 where there is none).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    kib * 1024
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // The crate's one unsafe call; see the module docs and decision 0013.
fn malloc_trim() -> bool {
    // SAFETY: malloc_trim takes no pointers and touches no Rust-owned memory: glibc locks each arena in turn and
    // returns its wholly free pages to the kernel. It is safe to call from any thread at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn malloc_trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn a_trim_gives_back_freed_heap_and_says_how_much() {
        // Many small blocks, freed all but every 64th — the fragmentation a burst of connections leaves behind.
        let blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 4096]).collect();
        let keep: Vec<Vec<u8>> = blocks.into_iter().step_by(64).collect();
        let before = resident_bytes();
        trim_now();
        let after = resident_bytes();
        assert!(!keep.is_empty());
        assert!(before > 0, "/proc/self/status is readable");
        assert!(after < before, "the trim returned freed pages: {before} -> {after}");
        assert!(counters().released.get() > 0);
    }
}
