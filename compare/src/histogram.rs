//! A latency histogram: log-linear buckets of nanoseconds, one per thread, merged after.
//!
//! A value below 16 has a bucket of its own; above, each power of two is split into 16
//! equal sub-buckets, so a percentile (reported as its bucket's upper edge, capped at the
//! largest value seen) is within 1/16 (6.25%) above the true value. The maximum is kept
//! exactly. Recording is a leading-zero count, a shift and an add.

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 4;
/// Sub-buckets per power of two.
const SUB: u64 = 1 << SUB_BITS;
/// Buckets for every `u64`: 16 exact ones below 16, then 16 per power of two from 2^4.
const BUCKETS: usize = (SUB as usize) * (64 - SUB_BITS as usize + 1);

/// Counts of `u64` samples (nanoseconds) in log-linear buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            max: 0,
        }
    }
}

/// The bucket of `v`.
fn bucket(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let sub = (v >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as usize) * (SUB as usize) + sub as usize
}

/// The largest value that falls into bucket `b`.
fn upper_edge(b: usize) -> u64 {
    let (group, sub) = ((b / SUB as usize) as u32, (b % SUB as usize) as u64);
    if group == 0 {
        return sub;
    }
    let exp = group + SUB_BITS - 1;
    let width = 1u64 << (exp - SUB_BITS);
    // (SUB + sub + 1) * width - 1, saturating for the top bucket.
    (SUB + sub + 1)
        .checked_mul(width)
        .map_or(u64::MAX, |end| end - 1)
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one sample.
    pub fn record(&mut self, v: u64) {
        if let Some(c) = self.counts.get_mut(bucket(v)) {
            *c += 1;
        }
        self.count += 1;
        self.max = self.max.max(v);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    /// Samples counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest sample (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at or below which a fraction `q` (0 to 1) of the samples fall: the upper
    /// edge of the bucket holding that sample, capped at the maximum. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        // The rank of the sample wanted, 1-based: at least the first, at most the last.
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper_edge(b).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_edges_bound_them() {
        let mut last = 0;
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let b = bucket(v);
            assert!(b >= last, "{v}");
            assert!(b < BUCKETS, "{v}");
            assert!(v <= upper_edge(b), "{v} above its bucket's edge");
            if b > 0 {
                assert!(v > upper_edge(b - 1), "{v} fits the bucket below");
            }
            last = b;
        }
        assert_eq!(upper_edge(bucket(u64::MAX)), u64::MAX);
    }

    #[test]
    fn small_values_are_exact_and_large_ones_within_a_sixteenth() {
        for v in 0..16 {
            assert_eq!(upper_edge(bucket(v)), v);
        }
        for v in [17u64, 100, 1_000, 12_345, 999_999, 123_456_789_012] {
            let edge = upper_edge(bucket(v));
            assert!(
                edge >= v && (edge - v) as f64 <= v as f64 / 16.0,
                "{v}: {edge}"
            );
        }
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.99), 0);
        // 1..=1000 ns once each: p50 is 500, p99 990, within a sixteenth above.
        for v in 1..=1000 {
            h.record(v);
        }
        let p50 = h.quantile(0.5);
        let p99 = h.quantile(0.99);
        assert!((500..=531).contains(&p50), "{p50}");
        assert!((990..=1000).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), 1000);
        assert_eq!(h.max(), 1000);
        assert_eq!(h.count(), 1000);
        assert_eq!(h.quantile(0.0), 1);
    }

    #[test]
    fn one_outlier_is_the_max_not_the_p99() {
        let mut h = Histogram::new();
        for _ in 0..999 {
            h.record(200);
        }
        h.record(5_000_000);
        assert_eq!(h.quantile(0.99), 207, "the upper edge of 200's bucket");
        assert_eq!(h.max(), 5_000_000);
    }

    #[test]
    fn merging_adds_counts_and_keeps_the_larger_max() {
        let (mut a, mut b) = (Histogram::new(), Histogram::new());
        for v in 0..100 {
            a.record(v);
            b.record(v + 1000);
        }
        b.record(70_000);
        a.merge(&b);
        assert_eq!(a.count(), 201);
        assert_eq!(a.max(), 70_000);
        assert!(a.quantile(0.4) < 100);
        assert!(a.quantile(0.6) >= 1000);
    }
}
