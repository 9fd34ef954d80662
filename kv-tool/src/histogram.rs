//! A latency histogram with log-linear buckets, one per benchmark thread, merged at
//! the end of a phase.
//!
//! Values (nanoseconds) fall into 8 sub-buckets per power of two, so a percentile is
//! reported within 12.5% of the true value (the bucket's upper edge, capped at the
//! largest value seen). Recording is an index computation and an add: no allocation,
//! no atomics.

const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = (SUB as usize) * (64 - SUB_BITS as usize + 1);

/// A histogram of `u64` samples.
#[derive(Clone, Debug)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    max: u64,
}

fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let sub = (v >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as usize) * SUB as usize + sub as usize
}

fn bucket_upper(b: usize) -> u64 {
    let b = b as u64;
    if b < SUB {
        return b;
    }
    let exp = b / SUB - 1 + u64::from(SUB_BITS);
    let low = (SUB | (b % SUB)) << (exp - u64::from(SUB_BITS));
    low.saturating_add((1u64 << (exp - u64::from(SUB_BITS))) - 1)
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            max: 0,
        }
    }

    pub(crate) fn record(&mut self, v: u64) {
        if let Some(c) = self.counts.get_mut(bucket_of(v)) {
            *c += 1;
        }
        self.count += 1;
        self.sum += u128::from(v);
        self.max = self.max.max(v);
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// The `p`-quantile (`0.0..=1.0`); 0 when empty.
    pub(crate) fn quantile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((self.count as f64) * p).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_upper(b).min(self.max);
            }
        }
        self.max
    }

    /// The largest sample; 0 when empty.
    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    pub(crate) fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_tight() {
        for v in (0..5000u64).chain([u64::MAX / 7, u64::MAX]) {
            let up = bucket_upper(bucket_of(v));
            assert!(
                up >= v && (up - v) as f64 <= v as f64 * 0.125 + 1.0,
                "{v} -> {up}"
            );
        }
    }

    #[test]
    fn quantiles_of_merged_histograms() {
        let (mut a, mut b) = (Histogram::new(), Histogram::new());
        for v in 1..=500u64 {
            a.record(v * 1000);
            b.record((v + 500) * 1000);
        }
        a.merge(&b);
        assert_eq!(a.count(), 1000);
        let p50 = a.quantile(0.5);
        assert!((500_000..=562_500).contains(&p50), "{p50}");
        let p99 = a.quantile(0.99);
        assert!((990_000..=1_000_000).contains(&p99), "{p99}");
        assert!((a.mean() - 500_500.0).abs() < 1.0);
        assert_eq!(Histogram::new().quantile(0.5), 0);
    }
}
