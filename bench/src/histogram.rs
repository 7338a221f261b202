//! A log-bucketed latency histogram in the style of HdrHistogram.
//!
//! Values below `2^SUB_BITS` are counted exactly; above that, every power-of-two range
//! is split into `2^(SUB_BITS-1)` equal buckets, so the relative error of any reported
//! value is below `2^-(SUB_BITS-1)` (under 0.8 %) whatever its magnitude. Recording is
//! an index computation and an increment: cheap enough for the hot path of a load run.

/// Bits of precision kept below the most significant bit (8 → under 0.8 % error).
const SUB_BITS: u32 = 8;
/// Values below this are their own bucket.
const EXACT_LIMIT: u64 = 1 << SUB_BITS;
/// Buckets per power of two above the exact range.
const HALF: u64 = EXACT_LIMIT / 2;
/// Enough buckets for every `u64`: the largest shift is `63 - (SUB_BITS - 1)`.
const BUCKETS: usize = ((64 - SUB_BITS + 1) as usize) * (HALF as usize) + HALF as usize;

/// Counts of recorded values (any unit; the load harness records nanoseconds).
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram covering the whole `u64` range.
    pub fn new() -> Self {
        Self { counts: vec![0; BUCKETS], total: 0, max: 0 }
    }

    /// Records one value.
    pub fn record(&mut self, value: u64) {
        self.counts[bucket_index(value)] += 1;
        self.total += 1;
        self.max = self.max.max(value);
    }

    /// Adds every count of `other` into `self` (per-connection histograms are merged
    /// at the end so the hot path never shares memory between tasks).
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Number of recorded values.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The largest recorded value, exactly.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0.0..=1.0): the highest value equivalent to the
    /// bucket holding the `ceil(q * len)`-th smallest record, capped at the true max.
    /// Reporting the bucket's top (as HdrHistogram does) never flatters the latency.
    /// Returns 0 for an empty histogram.
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        // The rank of the wanted record, 1-based; at least the first record.
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_high(index).min(self.max);
            }
        }
        self.max
    }
}

/// The bucket a value falls in.
fn bucket_index(value: u64) -> usize {
    if value < EXACT_LIMIT {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - (SUB_BITS - 1);
    let mantissa = value >> shift; // in [HALF, EXACT_LIMIT)
    (u64::from(shift) * HALF + mantissa) as usize
}

/// The highest value that lands in bucket `index`.
fn bucket_high(index: usize) -> u64 {
    let index = index as u64;
    if index < EXACT_LIMIT {
        return index;
    }
    let shift = index / HALF - 1;
    let mantissa = index % HALF + HALF;
    // `mantissa + 1 << shift` overflows only for the very last bucket.
    ((mantissa + 1) << shift).wrapping_sub(1).max(mantissa << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        for v in 0..EXACT_LIMIT {
            assert_eq!(bucket_index(v), v as usize);
            assert_eq!(bucket_high(bucket_index(v)), v);
        }
    }

    #[test]
    fn buckets_are_contiguous_and_monotonic() {
        let mut last = 0;
        for v in 0..2_000_000u64 {
            let index = bucket_index(v);
            assert!(index >= last, "bucket index went backwards at {v}");
            assert!(index - last <= 1, "bucket skipped at {v}");
            last = index;
        }
    }

    #[test]
    fn every_value_is_within_its_bucket_and_error_is_bounded() {
        for v in [256u64, 257, 1_000, 65_535, 1_234_567, 987_654_321_000, u64::MAX / 3, u64::MAX] {
            let high = bucket_high(bucket_index(v));
            assert!(high >= v, "bucket top {high} below value {v}");
            let error = (high - v) as f64 / v as f64;
            assert!(error < 1.0 / HALF as f64, "relative error {error} too large for {v}");
        }
        assert!(bucket_index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles_of_a_uniform_range() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        assert_eq!(h.len(), 100_000);
        for (q, exact) in [(0.5, 50_000u64), (0.99, 99_000), (0.999, 99_900)] {
            let got = h.value_at_quantile(q);
            let error = got.abs_diff(exact) as f64 / exact as f64;
            assert!(got >= exact, "q{q}: {got} below {exact}");
            assert!(error < 0.008, "q{q}: {got} too far from {exact}");
        }
        assert_eq!(h.value_at_quantile(1.0), 100_000);
        assert_eq!(h.value_at_quantile(0.0), 1);
    }

    #[test]
    fn a_single_outlier_shows_in_the_tail_only() {
        let mut h = Histogram::new();
        for _ in 0..999 {
            h.record(100);
        }
        h.record(1_000_000);
        assert_eq!(h.value_at_quantile(0.5), 100);
        assert_eq!(h.value_at_quantile(0.999), 100);
        assert_eq!(h.value_at_quantile(0.9999), 1_000_000);
        assert_eq!(h.max(), 1_000_000);
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record(10);
        b.record(20);
        b.record(30);
        a.merge(&b);
        assert_eq!(a.len(), 3);
        assert_eq!(a.max(), 30);
        assert_eq!(a.value_at_quantile(0.34), 20);
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let h = Histogram::new();
        assert!(h.is_empty());
        assert_eq!(h.value_at_quantile(0.99), 0);
        assert_eq!(h.value_at_quantile(f64::NAN), 0);
    }
}
