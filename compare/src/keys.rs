//! Deterministic keys and values: 16-byte keys, 100-byte values by default, no RNG state.

/// Length of every key.
pub const KEY_LEN: usize = 16;
/// Length of every value unless a workload's scale says otherwise.
pub const VALUE_LEN: usize = 100;

/// splitmix64: a cheap bijective mix, for "random" key orders.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The key of `n`: its last 16 decimal digits, zero-padded, so byte order is numeric order.
///
/// ```
/// assert_eq!(&kv_compare::key(42), b"0000000000000042");
/// ```
pub fn key(n: u64) -> [u8; KEY_LEN] {
    let mut k = [b'0'; KEY_LEN];
    let mut n = n % 10_000_000_000_000_000;
    for b in k.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
    k
}

/// A value derived from `seed` that does not compress (compression is off anyway, so
/// neither engine gains from it).
pub fn value(seed: u64) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    for (b, i) in v.iter_mut().zip(0u64..) {
        *b = mix(seed ^ (i << 56)) as u8;
    }
    v
}

/// Like [`value`], of any length. Byte `i` mixes `i` rotated right by 8 bits, which is
/// `i << 56` below 256 (so the first 100 bytes are [`value`]'s) and keeps longer values
/// from repeating every 256 bytes.
///
/// ```
/// assert_eq!(&kv_compare::value_of_len(7, 100)[..], &kv_compare::value(7)[..]);
/// assert_eq!(kv_compare::value_of_len(7, 4096).len(), 4096);
/// ```
pub fn value_of_len(seed: u64, len: usize) -> Vec<u8> {
    (0u64..)
        .take(len)
        .map(|i| mix(seed ^ i.rotate_right(8)) as u8)
        .collect()
}
