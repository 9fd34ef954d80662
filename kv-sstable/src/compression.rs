//! Per-block compression codecs.

use std::cell::RefCell;

use crate::varint;

/// Largest decompressed block accepted by the reader (and produced by the builder):
/// 64 MiB. A stored block announcing more is rejected before anything is allocated.
pub const MAX_BLOCK_LEN: usize = 64 << 20;

/// The codec used for data blocks.
///
/// Each block is compressed on its own and the result is kept only when it saves at
/// least 12.5% of the block; otherwise the block is stored uncompressed (codec byte 0),
/// so a table built with a codec may hold blocks of both kinds.
///
/// ```
/// use kv_sstable::Compression;
/// assert_eq!(Compression::default(), Compression::None);
/// assert_eq!(Compression::Zstd(3).name(), "zstd");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// Snappy (raw format, no framing).
    Snappy,
    /// Zstandard at the given level (`-7..=22`; 1 to 3 is the usual trade-off).
    Zstd(i32),
}

/// Codec byte of an uncompressed block.
pub(crate) const CODEC_NONE: u8 = 0;
/// Codec byte of a snappy block.
pub(crate) const CODEC_SNAPPY: u8 = 1;
/// Codec byte of a zstd block.
pub(crate) const CODEC_ZSTD: u8 = 2;

impl Compression {
    /// The codec byte written in block trailers.
    pub fn codec_byte(self) -> u8 {
        match self {
            Compression::None => CODEC_NONE,
            Compression::Snappy => CODEC_SNAPPY,
            Compression::Zstd(_) => CODEC_ZSTD,
        }
    }

    /// A short name: `none`, `snappy` or `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Snappy => "snappy",
            Compression::Zstd(_) => "zstd",
        }
    }

    /// The zstd level, or 0 for the other codecs.
    pub fn level(self) -> i32 {
        match self {
            Compression::Zstd(level) => level,
            _ => 0,
        }
    }

    /// Rebuilds a codec from its byte and level (as stored in the properties).
    pub fn from_parts(byte: u8, level: i32) -> Option<Compression> {
        match byte {
            CODEC_NONE => Some(Compression::None),
            CODEC_SNAPPY => Some(Compression::Snappy),
            CODEC_ZSTD => Some(Compression::Zstd(level)),
            _ => None,
        }
    }

    pub(crate) fn validate(self) -> Result<(), String> {
        match self {
            Compression::Zstd(level) if !(-7..=22).contains(&level) => {
                Err(format!("zstd level {level} is outside -7..=22"))
            }
            _ => Ok(()),
        }
    }
}

/// Compresses block contents for storage; the compressed payload is
/// `varint32 raw_len | codec output`.
///
/// Returns `None` when the codec is `None`, fails, or saves less than 12.5%.
pub(crate) fn compress(codec: Compression, raw: &[u8]) -> Option<Vec<u8>> {
    let raw_len = u32::try_from(raw.len()).ok()?;
    let mut out = Vec::with_capacity(raw.len() / 2 + 8);
    varint::put_u32(&mut out, raw_len);
    match codec {
        Compression::None => return None,
        Compression::Snappy => {
            let start = out.len();
            out.resize(start + snap::raw::max_compress_len(raw.len()), 0);
            let n = snap::raw::Encoder::new()
                .compress(raw, out.get_mut(start..)?)
                .ok()?;
            out.truncate(start + n);
        }
        Compression::Zstd(level) => {
            let body = zstd::bulk::compress(raw, level).ok()?;
            out.extend_from_slice(&body);
        }
    }
    // Kept only if it saves at least 1/8 of the block.
    (out.len() <= raw.len() - raw.len() / 8).then_some(out)
}

thread_local! {
    static ZSTD_DECODER: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Decompresses a stored payload written by [`compress`] with `codec_byte`.
///
/// The announced size is checked against [`MAX_BLOCK_LEN`] before allocating and the
/// output must have exactly that size. Errors are descriptions; the caller adds the
/// table and offset. An unknown codec byte is `Err(Unsupported)`.
pub(crate) fn decompress(codec_byte: u8, stored: &[u8]) -> Result<Vec<u8>, DecompressError> {
    if codec_byte != CODEC_SNAPPY && codec_byte != CODEC_ZSTD {
        return Err(DecompressError::UnknownCodec(codec_byte));
    }
    let (raw_len, n) = varint::get_u32(stored)
        .ok_or_else(|| DecompressError::Corrupt("bad uncompressed-length varint".into()))?;
    let raw_len = raw_len as usize;
    if raw_len > MAX_BLOCK_LEN {
        return Err(DecompressError::Corrupt(format!(
            "uncompressed length {raw_len} exceeds the {MAX_BLOCK_LEN}-byte limit"
        )));
    }
    let body = stored.get(n..).unwrap_or_default();
    let mut out = vec![0u8; raw_len];
    let produced = match codec_byte {
        CODEC_SNAPPY => {
            let announced = snap::raw::decompress_len(body)
                .map_err(|e| DecompressError::Corrupt(format!("snappy: {e}")))?;
            if announced != raw_len {
                return Err(DecompressError::Corrupt(format!(
                    "snappy length {announced} differs from the recorded {raw_len}"
                )));
            }
            snap::raw::Decoder::new()
                .decompress(body, &mut out)
                .map_err(|e| DecompressError::Corrupt(format!("snappy: {e}")))?
        }
        CODEC_ZSTD => ZSTD_DECODER.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(
                    zstd::bulk::Decompressor::new()
                        .map_err(|e| DecompressError::Corrupt(format!("zstd: {e}")))?,
                );
            }
            match slot.as_mut() {
                Some(d) => d
                    .decompress_to_buffer(body, out.as_mut_slice())
                    .map_err(|e| DecompressError::Corrupt(format!("zstd: {e}"))),
                None => Err(DecompressError::Corrupt("zstd: no decoder".into())),
            }
        })?,
        other => return Err(DecompressError::UnknownCodec(other)),
    };
    if produced != raw_len {
        return Err(DecompressError::Corrupt(format!(
            "decompressed {produced} bytes, expected {raw_len}"
        )));
    }
    Ok(out)
}

/// Why a payload did not decompress.
#[derive(Debug)]
pub(crate) enum DecompressError {
    /// A codec byte this version does not know.
    UnknownCodec(u8),
    /// The payload is damaged.
    Corrupt(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_each_codec() {
        let raw: Vec<u8> = (0..10_000u32)
            .flat_map(|i| (i % 100).to_le_bytes())
            .collect();
        for codec in [
            Compression::Snappy,
            Compression::Zstd(1),
            Compression::Zstd(19),
        ] {
            let stored = compress(codec, &raw).expect("compressible");
            assert!(stored.len() < raw.len() / 2);
            assert_eq!(decompress(codec.codec_byte(), &stored).unwrap(), raw);
        }
        assert!(compress(Compression::None, &raw).is_none());
    }

    #[test]
    fn incompressible_is_not_kept() {
        // xorshift noise does not compress by 12.5%.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let raw: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(compress(Compression::Snappy, &raw).is_none());
        assert!(compress(Compression::Zstd(3), &raw).is_none());
    }

    #[test]
    fn damaged_payloads_are_errors() {
        let raw = vec![7u8; 5000];
        for codec in [Compression::Snappy, Compression::Zstd(3)] {
            let stored = compress(codec, &raw).unwrap();
            for cut in 0..stored.len() {
                let r = decompress(codec.codec_byte(), &stored[..cut]);
                assert!(r.is_err(), "{codec:?} truncated at {cut}");
            }
            // An absurd announced length is refused before allocation.
            let mut huge = Vec::new();
            varint::put_u32(&mut huge, u32::MAX);
            huge.extend_from_slice(&stored[2..]);
            assert!(matches!(
                decompress(codec.codec_byte(), &huge),
                Err(DecompressError::Corrupt(_))
            ));
        }
        assert!(matches!(
            decompress(9, &[0]),
            Err(DecompressError::UnknownCodec(9))
        ));
        assert!(Compression::Zstd(23).validate().is_err());
        assert!(Compression::Zstd(3).validate().is_ok());
    }
}
