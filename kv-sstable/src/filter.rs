//! The table's bloom filter over user keys.
//!
//! # Layout
//!
//! ```text
//! +-----------------------------+--------------------+
//! | bit array (m / 8 bytes)     | num_probes: u8     |
//! +-----------------------------+--------------------+
//! ```
//!
//! A key is hashed once with XXH3-64 (`h`); probe `i` (for `i` in `0..num_probes`) sets
//! bit `(h + i * delta) mod m`, with `delta = rotate_left(h, 32) | 1` and wrapping
//! 64-bit arithmetic. Bit `j` is bit `j % 8` (least significant first) of byte `j / 8`.
//! With `b` bits per key the builder uses `round(b * ln 2)` probes (1 to 30), giving a
//! false-positive rate of about `(1 - e^(-k/b))^k`: 0.82% at 10 bits per key.

use xxhash_rust::xxh3::xxh3_64;

/// Collects user-key hashes and writes the filter.
#[derive(Debug, Clone)]
pub(crate) struct BloomBuilder {
    bits_per_key: u32,
    hashes: Vec<u64>,
}

impl BloomBuilder {
    pub(crate) fn memory_bytes(&self) -> usize {
        self.hashes.capacity() * 8
    }

    pub(crate) fn new(bits_per_key: u32) -> Self {
        BloomBuilder {
            bits_per_key,
            hashes: Vec::new(),
        }
    }

    /// Adds a user key (the caller skips repeats of the same key).
    pub(crate) fn add(&mut self, user_key: &[u8]) {
        self.hashes.push(xxh3_64(user_key));
    }

    /// The encoded filter.
    pub(crate) fn finish(&self) -> Vec<u8> {
        let k = num_probes(self.bits_per_key);
        let bits = (self.hashes.len() as u64)
            .saturating_mul(u64::from(self.bits_per_key))
            .max(64);
        let bytes = bits.div_ceil(8) as usize;
        let m = bytes as u64 * 8;
        let mut out = vec![0u8; bytes + 1];
        for &h in &self.hashes {
            for pos in probes(h, k, m) {
                if let Some(b) = out.get_mut((pos / 8) as usize) {
                    *b |= 1 << (pos % 8);
                }
            }
        }
        if let Some(last) = out.last_mut() {
            *last = k;
        }
        out
    }
}

fn num_probes(bits_per_key: u32) -> u8 {
    let k = (f64::from(bits_per_key) * std::f64::consts::LN_2).round();
    k.clamp(1.0, 30.0) as u8
}

fn probes(h: u64, k: u8, m: u64) -> impl Iterator<Item = u64> {
    let delta = h.rotate_left(32) | 1;
    (0..u64::from(k)).map(move |i| h.wrapping_add(i.wrapping_mul(delta)) % m)
}

/// A decoded bloom filter.
#[derive(Debug, Clone)]
pub struct BloomFilter {
    bits: Vec<u8>,
    num_probes: u8,
}

impl BloomFilter {
    /// Heap bytes the decoded filter holds.
    pub fn memory_bytes(&self) -> usize {
        self.bits.capacity()
    }

    /// Decodes a filter block's contents; `Err` describes what is malformed.
    pub(crate) fn decode(mut bytes: Vec<u8>) -> Result<BloomFilter, String> {
        let k = bytes.pop().ok_or("empty filter")?;
        if bytes.is_empty() {
            return Err("filter has no bits".into());
        }
        if !(1..=30).contains(&k) {
            return Err(format!("filter probe count {k} outside 1..=30"));
        }
        Ok(BloomFilter {
            bits: bytes,
            num_probes: k,
        })
    }

    /// Whether `user_key` may be in the table (`false` means it certainly is not).
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        let m = self.bits.len() as u64 * 8;
        probes(xxh3_64(user_key), self.num_probes, m).all(|pos| {
            self.bits
                .get((pos / 8) as usize)
                .is_some_and(|b| b & (1 << (pos % 8)) != 0)
        })
    }

    /// The number of probes per key.
    pub fn num_probes(&self) -> u8 {
        self.num_probes
    }

    /// Size of the bit array in bits.
    pub fn num_bits(&self) -> u64 {
        self.bits.len() as u64 * 8
    }

    /// The theoretical false-positive rate for `num_keys` keys: `(1 - e^(-k n / m))^k`.
    pub fn theoretical_fp_rate(&self, num_keys: u64) -> f64 {
        let k = f64::from(self.num_probes);
        let fill = 1.0 - (-k * num_keys as f64 / self.num_bits() as f64).exp();
        fill.powf(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(n: u32, bits_per_key: u32) -> BloomFilter {
        let mut b = BloomBuilder::new(bits_per_key);
        for i in 0..n {
            b.add(format!("user-key-{i}").as_bytes());
        }
        BloomFilter::decode(b.finish()).unwrap()
    }

    #[test]
    fn no_false_negatives() {
        let f = build(5000, 10);
        for i in 0..5000 {
            assert!(f.may_contain(format!("user-key-{i}").as_bytes()));
        }
    }

    #[test]
    fn false_positive_rate_is_close_to_theory() {
        for bits in [6u32, 10, 16] {
            let n = 20_000u32;
            let f = build(n, bits);
            let probes = 200_000;
            let fp = (0..probes)
                .filter(|i| f.may_contain(format!("absent-{i}").as_bytes()))
                .count();
            let measured = fp as f64 / f64::from(probes);
            let theory = f.theoretical_fp_rate(u64::from(n));
            // Standard deviation of the estimate is sqrt(p/probes): at 10 bits that is
            // ~0.02%, so a 30% band is many sigmas wide yet catches a broken hash.
            assert!(
                (measured - theory).abs() <= 0.3 * theory,
                "{bits} bits/key: measured {measured:.5}, theory {theory:.5}"
            );
            if bits == 10 {
                assert!(
                    measured < 0.012,
                    "10 bits/key should be near 1%: {measured}"
                );
            }
        }
    }

    #[test]
    fn malformed_filters_are_rejected() {
        assert!(BloomFilter::decode(vec![]).is_err());
        assert!(BloomFilter::decode(vec![6]).is_err());
        assert!(BloomFilter::decode(vec![0, 0]).is_err());
        assert!(BloomFilter::decode(vec![0, 31]).is_err());
        let f = BloomFilter::decode(vec![0xFF, 0xFF, 30]).unwrap();
        assert!(f.may_contain(b"anything"));
    }
}
