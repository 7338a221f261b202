//! Hedged requests' clock: every logical name keeps a window of its recent answer latencies, so that a request
//! (of a service with `hedging` on) that has waited longer than, say, 90% of recent answers took can be sent a
//! second time to another endpoint (see [`super::attempt`]) — a single slow instance then costs its callers a
//! little more than the usual p90, not its whole delay.
//!
//! The window is two generations of [`GENERATION`] each, of log-spaced buckets counted with atomics: recording
//! costs one atomic add, and reading a percentile walks 2 × [`BUCKETS`] counters — at most once per 1/64th of
//! the window's answers that arrived since (every hedged request asks; the answer hardly moves between two).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Buckets per generation.
const BUCKETS: usize = 64;
/// Bucket `i` counts latencies up to `FLOOR_NANOS × RATIO^i`: 50 µs, 62.5 µs, … about 62 s.
const FLOOR_NANOS: f64 = 50_000.0;
const RATIO: f64 = 1.25;
/// How long one generation counts; a percentile is read over the current and the previous one.
pub const GENERATION: Duration = Duration::from_secs(5);
/// Fewer answers than this in the window is too little to know what is slow: no hedging.
pub const MIN_SAMPLES: u64 = 50;

/// Recent answer latencies of one logical name.
pub struct LatencyWindow {
    start: Instant,
    /// The generation `slots[generation % 2]` counts.
    generation: AtomicU64,
    slots: [[AtomicU32; BUCKETS]; 2],
    /// Answers recorded since the window was made.
    recorded: AtomicU64,
    /// The last percentile read, kept until the window has changed enough to move it.
    last: Mutex<Option<LastRead>>,
}

/// A percentile as it was read, and the window it was read from.
#[derive(Clone, Copy)]
struct LastRead {
    generation: u64,
    percentile: f64,
    /// `recorded` then, and how many answers the window held.
    recorded: u64,
    total: u64,
    answer: Option<Duration>,
}

impl Default for LatencyWindow {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            generation: AtomicU64::new(0),
            slots: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU32::new(0))),
            recorded: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }
}

fn bucket(d: Duration) -> usize {
    let nanos = d.as_nanos() as f64;
    if nanos <= FLOOR_NANOS {
        return 0;
    }
    ((nanos / FLOOR_NANOS).ln() / RATIO.ln()).ceil().min((BUCKETS - 1) as f64) as usize
}

fn upper_bound(i: usize) -> Duration {
    Duration::from_nanos((FLOOR_NANOS * RATIO.powi(i as i32)) as u64)
}

impl LatencyWindow {
    /// The current generation, starting it (and clearing what it reuses) when the clock has moved on.
    fn current(&self) -> u64 {
        let now = self.start.elapsed().as_nanos() / GENERATION.as_nanos();
        let now = u64::try_from(now).unwrap_or(u64::MAX);
        let seen = self.generation.load(Ordering::Acquire);
        if now != seen && self.generation.compare_exchange(seen, now, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            // Whoever moves the generation clears the slot it reuses, and the other one too after a long quiet.
            let stale: &[u64] = if now.saturating_sub(seen) >= 2 { &[0, 1] } else { &[now % 2] };
            for &s in stale {
                for c in &self.slots[s as usize] {
                    c.store(0, Ordering::Relaxed);
                }
            }
        }
        now
    }

    /// Counts one answer that took `d`.
    pub fn record(&self, d: Duration) {
        let g = self.current();
        self.slots[(g % 2) as usize][bucket(d)].fetch_add(1, Ordering::Relaxed);
        self.recorded.fetch_add(1, Ordering::Relaxed);
    }

    /// The latency `percentile` (0–100) of recent answers were within, if there were at least [`MIN_SAMPLES`]. It
    /// may not yet count the latest answers: up to 1/64th of the window's since it was last read.
    pub fn percentile(&self, percentile: f64) -> Option<Duration> {
        let generation = self.current();
        let recorded = self.recorded.load(Ordering::Relaxed);
        // Another request reading it right now: read it again rather than wait.
        let Ok(mut last) = self.last.try_lock() else { return self.read(percentile).1 };
        if let Some(l) = *last {
            let fresh = recorded.saturating_sub(l.recorded) <= l.total / 64;
            if l.generation == generation && l.percentile == percentile && fresh {
                return l.answer;
            }
        }
        let (total, answer) = self.read(percentile);
        *last = Some(LastRead { generation, percentile, recorded, total, answer });
        answer
    }

    /// Walks the counters: how many answers the window holds, and the percentile if they are enough.
    fn read(&self, percentile: f64) -> (u64, Option<Duration>) {
        let counts: [u64; BUCKETS] =
            std::array::from_fn(|i| self.slots.iter().map(|g| u64::from(g[i].load(Ordering::Relaxed))).sum());
        let total: u64 = counts.iter().sum();
        if total < MIN_SAMPLES {
            return (total, None);
        }
        let wanted = ((percentile / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= wanted {
                return (total, Some(upper_bound(i)));
            }
        }
        (total, Some(upper_bound(BUCKETS - 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn percentiles_follow_recent_answers_only() {
        let w = LatencyWindow::default();
        for _ in 0..10 {
            w.record(Duration::from_millis(2));
        }
        assert_eq!(w.percentile(90.0), None, "too few answers to judge");
        for i in 0..100u64 {
            w.record(Duration::from_millis(if i < 90 { 2 } else { 40 }));
        }
        let p50 = w.percentile(50.0).unwrap();
        assert!(p50 >= Duration::from_millis(2) && p50 < Duration::from_micros(2600), "{p50:?}");
        let p99 = w.percentile(99.0).unwrap();
        assert!(p99 >= Duration::from_millis(40) && p99 < Duration::from_millis(51), "{p99:?}");

        // Two generations later the old answers are forgotten.
        tokio::time::advance(GENERATION * 2 + Duration::from_millis(1)).await;
        assert_eq!(w.percentile(50.0), None);
        for _ in 0..60 {
            w.record(Duration::from_millis(9));
        }
        let p90 = w.percentile(90.0).unwrap();
        assert!(p90 >= Duration::from_millis(9) && p90 < Duration::from_millis(12), "{p90:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_percentile_follows_new_answers_within_a_generation() {
        let w = LatencyWindow::default();
        for _ in 0..128 {
            w.record(Duration::from_millis(2));
        }
        assert!(w.percentile(50.0).unwrap() < Duration::from_millis(3));
        for _ in 0..200 {
            w.record(Duration::from_millis(40));
        }
        assert!(w.percentile(50.0).unwrap() >= Duration::from_millis(40), "the read is not kept past new answers");
    }

    #[test]
    fn buckets_cover_the_range() {
        assert_eq!(bucket(Duration::from_micros(10)), 0);
        assert_eq!(bucket(Duration::from_secs(3600)), BUCKETS - 1);
        for ms in [1u64, 7, 100, 2000] {
            let d = Duration::from_millis(ms);
            let b = bucket(d);
            assert!(upper_bound(b) >= d && (b == 0 || upper_bound(b - 1) < d), "{ms} ms in bucket {b}");
        }
    }
}
