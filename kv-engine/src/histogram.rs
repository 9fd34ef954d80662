//! A lock-free latency histogram with log-linear buckets.
//!
//! Values (nanoseconds) fall into buckets of 8 sub-buckets per power of two, so every
//! recorded value is reported within 12.5% of itself; recording is three relaxed atomic
//! adds and a max update, safe from any number of threads.

use std::sync::atomic::{AtomicU64, Ordering};

const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Values below 8 get a bucket each; above, 8 per power of two up to 2^64.
const BUCKETS: usize = (SUB as usize) * (64 - SUB_BITS as usize + 1);

/// A concurrent histogram of `u64` values (latencies in nanoseconds).
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.summary(), f)
    }
}

/// Percentiles of a latency histogram at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Mean, in nanoseconds.
    pub mean_ns: f64,
    /// Median, in nanoseconds (upper edge of its bucket, within 12.5%).
    pub p50_ns: u64,
    /// 99th percentile, in nanoseconds (within 12.5%).
    pub p99_ns: u64,
    /// 99.9th percentile, in nanoseconds (within 12.5%).
    pub p999_ns: u64,
    /// Largest sample, in nanoseconds (exact).
    pub max_ns: u64,
}

fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let sub = (v >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as usize) * SUB as usize + sub as usize
}

/// The largest value that falls in bucket `b`.
fn bucket_upper(b: usize) -> u64 {
    let b = b as u64;
    if b < SUB {
        return b;
    }
    let exp = b / SUB - 1 + u64::from(SUB_BITS);
    let sub = b % SUB;
    let low = (SUB | sub) << (exp - u64::from(SUB_BITS));
    let width = 1u64 << (exp - u64::from(SUB_BITS));
    low.saturating_add(width - 1)
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, v: u64) {
        if let Some(b) = self.buckets.get(bucket_of(v)) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
        self.max.fetch_max(v, Ordering::Relaxed);
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let count: u64 = counts.iter().sum();
        if count == 0 {
            return LatencySummary::default();
        }
        let max = self.max.load(Ordering::Relaxed);
        let pct = |p: f64| -> u64 {
            let rank = ((count as f64) * p).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (b, &c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return bucket_upper(b).min(max);
                }
            }
            max
        };
        LatencySummary {
            count,
            mean_ns: self.sum.load(Ordering::Relaxed) as f64 / count as f64,
            p50_ns: pct(0.50),
            p99_ns: pct(0.99),
            p999_ns: pct(0.999),
            max_ns: max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut last = 0;
        for v in (0..10_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b < BUCKETS, "{v} -> {b}");
            assert!(b >= last || v > 10_000, "bucket order broken at {v}");
            last = b;
            let up = bucket_upper(b);
            assert!(up >= v, "{v} above its bucket's upper edge {up}");
            assert!((up - v) as f64 <= v as f64 * 0.125 + 1.0, "{v} vs {up}");
        }
        assert_eq!(bucket_upper(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn percentiles() {
        let h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.max_ns, 1_000_000);
        assert!((s.mean_ns - 500_500.0).abs() < 1.0);
        assert!(s.p50_ns >= 500_000 && s.p50_ns <= 562_500, "{s:?}");
        assert!(s.p99_ns >= 990_000 && s.p99_ns <= 1_000_000, "{s:?}");
        assert_eq!(Histogram::new().summary(), LatencySummary::default());
    }
}
