//! Keys, values and the random numbers behind them.
//!
//! Key `i` is `i` in zero-padded decimal, exactly `key_size` bytes (db_bench's
//! `%016d`): numeric and byte order agree, so key ranges are contiguous. Keys
//! `count..2*count` are never written: `readmissing` reads them. Values are slices of a
//! pool in which every 100-byte stretch is 50 random bytes written twice, so they
//! compress to about half, like db_bench's default `compression_ratio` of 0.5.

use std::io::Write;

/// SplitMix64: small, fast, and good enough to pick keys.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the bias of a 64-bit multiply-shift is negligible).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// `0..n` in a random order (Fisher-Yates).
    pub(crate) fn permutation(&mut self, n: u64) -> Vec<u64> {
        let mut v: Vec<u64> = (0..n).collect();
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
        v
    }
}

/// Digits needed to write `n` in decimal.
pub(crate) fn digits(n: u64) -> u32 {
    n.checked_ilog10().map_or(1, |d| d + 1)
}

/// Writes key `i` into `buf` (cleared first): `key_size` bytes of zero-padded decimal.
pub(crate) fn make_key(buf: &mut Vec<u8>, i: u64, key_size: usize) {
    buf.clear();
    // Writing to a Vec cannot fail.
    let _ = write!(buf, "{i:0key_size$}");
}

/// The pool values are cut from.
#[derive(Debug)]
pub(crate) struct ValuePool {
    data: Vec<u8>,
    value_size: usize,
}

impl ValuePool {
    pub(crate) fn new(value_size: usize, rng: &mut Rng) -> Self {
        let len = (1 << 20) + value_size;
        let mut data = Vec::with_capacity(len + 100);
        while data.len() < len {
            let piece: Vec<u8> = (0..50).map(|_| b' ' + (rng.below(95) as u8)).collect();
            data.extend_from_slice(&piece);
            data.extend_from_slice(&piece);
        }
        ValuePool { data, value_size }
    }

    pub(crate) fn value_size(&self) -> usize {
        self.value_size
    }

    /// A value of `value_size` bytes at a random place in the pool.
    pub(crate) fn pick(&self, rng: &mut Rng) -> &[u8] {
        let room = (self.data.len() - self.value_size) as u64;
        let at = rng.below(room.max(1)) as usize;
        self.data.get(at..at + self.value_size).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_like_their_numbers() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        make_key(&mut a, 99, 16);
        make_key(&mut b, 100, 16);
        assert_eq!(a, b"0000000000000099");
        assert!(a < b);
        assert_eq!(digits(0), 1);
        assert_eq!(digits(9), 1);
        assert_eq!(digits(10), 2);
        assert_eq!(digits(1_999_999), 7);
    }

    #[test]
    fn random_numbers_and_values() {
        let mut rng = Rng::new(1);
        let p = rng.permutation(1000);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_ne!(p, sorted);
        assert!((0..1000).all(|_| rng.below(7) < 7));
        let pool = ValuePool::new(100, &mut rng);
        assert_eq!(pool.pick(&mut rng).len(), 100);
        assert_eq!(ValuePool::new(0, &mut rng).pick(&mut rng).len(), 0);
    }
}
