//! LEB128 variable-length integers (7 bits per byte, low group first, high bit set on
//! every byte but the last), as used inside blocks.

/// Appends `v` as a varint.
pub(crate) fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` as a varint.
pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    put_u64(out, u64::from(v));
}

/// Decodes a varint of at most 10 bytes from the start of `buf`.
///
/// Returns the value and the number of bytes read, or `None` if `buf` ends first or the
/// encoding overflows 64 bits.
#[inline]
pub(crate) fn get_u64(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(10) {
        let group = u64::from(b & 0x7F);
        if i == 9 && b > 1 {
            return None;
        }
        v |= group << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Decodes a varint that must fit in 32 bits.
#[inline]
pub(crate) fn get_u32(buf: &[u8]) -> Option<(u32, usize)> {
    let (v, n) = get_u64(buf)?;
    Some((u32::try_from(v).ok()?, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_u64(&mut b, v);
            assert_eq!(get_u64(&b), Some((v, b.len())));
            assert_eq!(get_u64(&b[..b.len() - 1]), None, "truncated {v}");
        }
        assert_eq!(get_u64(&[0xFF; 10]), None);
        assert_eq!(
            get_u64(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02]),
            None
        );
        assert_eq!(get_u32(&[0x80, 0x80, 0x80, 0x80, 0x10]), None);
        assert_eq!(
            get_u32(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
            Some((u32::MAX, 5))
        );
        assert_eq!(get_u64(&[]), None);
    }
}
