//! The CRC-32 [`verify`](fn@super::verify) checks each table's whole file against.

/// CRC-32 (IEEE, reflected, polynomial 0xEDB88320: the same function as `crc32fast`,
/// which kv-engine does not depend on), one table lookup per byte.
pub(super) fn crc32(bytes: &[u8]) -> u32 {
    #[expect(
        clippy::indexing_slicing,
        reason = "evaluated at compile time with i < 256: a bad index fails the build"
    )]
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in bytes {
        let slot = TABLE
            .get(usize::from((crc as u8) ^ b))
            .copied()
            .unwrap_or(0);
        crc = slot ^ (crc >> 8);
    }
    !crc
}
