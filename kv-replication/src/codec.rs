//! Batch compression: none, snappy or zstd, negotiated per connection.

use serde::{Deserialize, Serialize};

/// A compression codec for replicated batches.
///
/// ```
/// use kv_replication::Codec;
/// let raw = b"hello hello hello hello hello hello".repeat(10);
/// for codec in [Codec::None, Codec::Snappy, Codec::Zstd] {
///     let packed = codec.compress(&raw)?;
///     assert_eq!(codec.decompress(&packed, raw.len(), 1 << 20)?, raw);
/// }
/// # Ok::<(), String>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Codec {
    /// Uncompressed.
    None,
    /// Snappy: fast, modest ratio.
    Snappy,
    /// Zstandard (level 1 on the wire): better ratio, more CPU.
    Zstd,
}

/// zstd level used for batches: replication is latency-sensitive, level 1 keeps most of
/// the ratio at a fraction of the CPU of higher levels.
const ZSTD_LEVEL: i32 = 1;

impl Codec {
    /// Every codec, in the default order of preference.
    pub const ALL: [Codec; 3] = [Codec::Zstd, Codec::Snappy, Codec::None];

    /// Its name: `none`, `snappy` or `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Snappy => "snappy",
            Codec::Zstd => "zstd",
        }
    }

    /// Parses a name as given by [`Codec::name`].
    pub fn from_name(name: &str) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Compresses `raw`.
    pub fn compress(self, raw: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Codec::None => Ok(raw.to_vec()),
            Codec::Snappy => snap::raw::Encoder::new()
                .compress_vec(raw)
                .map_err(|e| format!("snappy: {e}")),
            Codec::Zstd => zstd::bulk::compress(raw, ZSTD_LEVEL).map_err(|e| format!("zstd: {e}")),
        }
    }

    /// Decompresses untrusted `packed`, which must expand to exactly `expected_len`
    /// bytes; `expected_len` is checked against `max_len` before anything is allocated.
    /// Never panics.
    pub fn decompress(
        self,
        packed: &[u8],
        expected_len: usize,
        max_len: usize,
    ) -> Result<Vec<u8>, String> {
        if expected_len > max_len {
            return Err(format!(
                "uncompressed length {expected_len} exceeds the {max_len}-byte limit"
            ));
        }
        let out = match self {
            Codec::None => packed.to_vec(),
            Codec::Snappy => {
                let announced =
                    snap::raw::decompress_len(packed).map_err(|e| format!("snappy: {e}"))?;
                if announced != expected_len {
                    return Err(format!(
                        "snappy announces {announced} bytes, the batch says {expected_len}"
                    ));
                }
                snap::raw::Decoder::new()
                    .decompress_vec(packed)
                    .map_err(|e| format!("snappy: {e}"))?
            }
            Codec::Zstd => {
                // The capacity bounds the output: a frame expanding beyond it fails.
                zstd::bulk::decompress(packed, expected_len).map_err(|e| format!("zstd: {e}"))?
            }
        };
        if out.len() != expected_len {
            return Err(format!(
                "decompressed to {} bytes, the batch says {expected_len}",
                out.len()
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_lies() {
        let raw: Vec<u8> = (0..10_000u32)
            .flat_map(|i| (i % 97).to_le_bytes())
            .collect();
        for codec in Codec::ALL {
            let packed = codec.compress(&raw).unwrap();
            assert_eq!(codec.decompress(&packed, raw.len(), 1 << 20).unwrap(), raw);
            // A wrong expected length is an error, never a short or long result.
            assert!(codec.decompress(&packed, raw.len() - 1, 1 << 20).is_err());
            assert!(codec.decompress(&packed, raw.len() + 1, 1 << 20).is_err());
            // Over the limit: refused before decompressing.
            assert!(codec.decompress(&packed, raw.len(), raw.len() - 1).is_err());
        }
        assert!(Codec::Zstd.compress(&raw).unwrap().len() < raw.len() / 4);
        assert!(
            Codec::Snappy
                .decompress(b"\xff\xff\xff\xff\x0f", 10, 100)
                .is_err()
        );
        assert!(Codec::Zstd.decompress(b"garbage", 10, 100).is_err());
        assert_eq!(Codec::from_name("snappy"), Some(Codec::Snappy));
        assert_eq!(Codec::from_name("lz4"), None);
    }
}
