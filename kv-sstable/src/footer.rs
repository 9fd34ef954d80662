//! The fixed-size footer at the end of every table.
//!
//! ```text
//! offset  width  field
//!      0      8  meta-index block offset   (u64 LE)
//!      8      8  meta-index payload size   (u64 LE)
//!     16      8  index block offset        (u64 LE)
//!     24      8  index payload size        (u64 LE)
//!     32      4  format version            (u32 LE, currently 1)
//!     36      4  CRC-32 of bytes 0..36     (u32 LE)
//!     40      8  magic                     (u64 LE, 0x4B56_5353_5441_424C)
//! ```

use std::sync::Arc;

use crate::handle::BlockHandle;
use crate::{Error, Result};

/// Length of the footer in bytes.
pub const FOOTER_LEN: usize = 48;
/// The magic number closing every table file.
pub const MAGIC: u64 = 0x4B56_5353_5441_424C;
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The decoded footer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Footer {
    pub(crate) metaindex: BlockHandle,
    pub(crate) index: BlockHandle,
}

impl Footer {
    pub(crate) fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut out = [0u8; FOOTER_LEN];
        let fields = [
            self.metaindex.offset,
            self.metaindex.size,
            self.index.offset,
            self.index.size,
        ];
        for (chunk, v) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        put(&mut out, 32, &FORMAT_VERSION.to_le_bytes());
        let crc = crc32fast::hash(out.get(..36).unwrap_or_default());
        put(&mut out, 36, &crc.to_le_bytes());
        put(&mut out, 40, &MAGIC.to_le_bytes());
        out
    }

    /// Decodes the footer found at `at` (the file length minus [`FOOTER_LEN`]).
    ///
    /// Checks, in order: the magic (a file that is not a table), the version (a table
    /// from a future format is "unsupported", not corrupt), the checksum.
    pub(crate) fn decode(bytes: &[u8; FOOTER_LEN], table: &Arc<str>, at: u64) -> Result<Footer> {
        let magic = u64_at(bytes, 40);
        if magic != MAGIC {
            return Err(Error::corruption(
                table,
                at + 40,
                format!("bad magic {magic:#018x} (not a kv table, or truncated)"),
            ));
        }
        let version = u32_at(bytes, 32);
        if version != FORMAT_VERSION {
            return Err(Error::unsupported(
                table,
                at + 32,
                format!("table format version {version} (this build reads {FORMAT_VERSION})"),
            ));
        }
        let stored = u32_at(bytes, 36);
        let actual = crc32fast::hash(bytes.get(..36).unwrap_or_default());
        if stored != actual {
            return Err(Error::corruption(
                table,
                at + 36,
                format!(
                    "footer checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"
                ),
            ));
        }
        Ok(Footer {
            metaindex: BlockHandle {
                offset: u64_at(bytes, 0),
                size: u64_at(bytes, 8),
            },
            index: BlockHandle {
                offset: u64_at(bytes, 16),
                size: u64_at(bytes, 24),
            },
        })
    }
}

fn put(out: &mut [u8; FOOTER_LEN], at: usize, v: &[u8]) {
    if let Some(dst) = out.get_mut(at..at + v.len()) {
        dst.copy_from_slice(v);
    }
}

fn u64_at(bytes: &[u8; FOOTER_LEN], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        a.copy_from_slice(src);
    }
    u64::from_le_bytes(a)
}

fn u32_at(bytes: &[u8; FOOTER_LEN], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        a.copy_from_slice(src);
    }
    u32::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checks() {
        let t: Arc<str> = Arc::from("t.sst");
        let f = Footer {
            metaindex: BlockHandle { offset: 1, size: 2 },
            index: BlockHandle { offset: 3, size: 4 },
        };
        let bytes = f.encode();
        assert_eq!(Footer::decode(&bytes, &t, 100).unwrap(), f);
        for i in 0..FOOTER_LEN {
            let mut bad = bytes;
            bad[i] ^= 0x10;
            let e = Footer::decode(&bad, &t, 100).unwrap_err();
            match i {
                32..36 => assert!(matches!(e, Error::Unsupported { offset: 132, .. }), "{e}"),
                40.. => assert!(matches!(e, Error::Corruption { offset: 140, .. })),
                _ => assert!(matches!(e, Error::Corruption { offset: 136, .. })),
            }
        }
    }
}
