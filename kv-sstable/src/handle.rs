//! Block handles: where a block lives in the file.

use crate::varint;

/// The position of a stored block: `offset` of its first byte and `size` of its payload
/// (the 5-byte trailer follows the payload and is not counted).
///
/// Encoded in index and meta-index values as `varint64 offset | varint64 size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct BlockHandle {
    /// Offset of the block in the file.
    pub offset: u64,
    /// Size of the payload in bytes, trailer excluded.
    pub size: u64,
}

impl BlockHandle {
    /// Appends the varint encoding.
    pub(crate) fn encode_to(&self, out: &mut Vec<u8>) {
        varint::put_u64(out, self.offset);
        varint::put_u64(out, self.size);
    }

    /// Decodes a value that must be exactly one handle.
    pub(crate) fn decode_exact(bytes: &[u8]) -> Option<BlockHandle> {
        let (offset, a) = varint::get_u64(bytes)?;
        let (size, b) = varint::get_u64(bytes.get(a..)?)?;
        (a + b == bytes.len()).then_some(BlockHandle { offset, size })
    }

    /// Offset just past the block's trailer, if it does not overflow.
    pub(crate) fn end(&self) -> Option<u64> {
        self.offset
            .checked_add(self.size)?
            .checked_add(crate::block::TRAILER_LEN as u64)
    }
}
