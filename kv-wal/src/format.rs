//! The on-disk format: constants, checksums, segment headers, fragment headers and
//! segment file names. FORMAT.md describes every byte.

use std::path::{Path, PathBuf};

/// Size of a block: fragments never cross a block boundary.
pub const BLOCK_SIZE: usize = 32 * 1024;
/// Size of a fragment header: masked CRC-32 (4), payload length (2), type (1).
pub const FRAGMENT_HEADER_LEN: usize = 7;
/// Size of the segment header at the start of every segment file.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// The magic bytes that open every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"kvwal\0\r\n";
/// The segment format version this crate writes. Version 2 added sync markers (see
/// FORMAT.md); this crate reads versions [`OLDEST_FORMAT_VERSION`] to this one.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest segment format version this crate reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// The fragment type of a sync marker (format version 2 and later): an 8-byte payload,
/// the offset below which the segment was durable (an fsync covering it had returned)
/// when the marker was queued.
pub(crate) const SYNC_MARKER_TYPE: u8 = 5;
/// The payload length of a sync marker.
pub(crate) const SYNC_MARKER_LEN: usize = 8;
/// The largest sequence number: sequence numbers must fit 56 bits, for compatibility
/// with internal keys that pack `seq << 8 | kind` into 64 bits.
pub const MAX_SEQ: u64 = (1 << 56) - 1;
/// The file-name extension of segments.
pub(crate) const SEGMENT_EXT: &str = "wal";

const MASK_DELTA: u32 = 0xa282_ead8;

/// Masks a CRC so that a CRC stored inside checksummed data does not degenerate.
pub(crate) fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// The fragment types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FragmentType {
    Full = 1,
    First = 2,
    Middle = 3,
    Last = 4,
}

impl FragmentType {
    pub(crate) fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Full),
            2 => Some(Self::First),
            3 => Some(Self::Middle),
            4 => Some(Self::Last),
            _ => None,
        }
    }
}

/// CRC-32 (IEEE) of type byte ++ segment number (u64 LE) ++ payload, masked.
pub(crate) fn fragment_crc(ty: u8, segment: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[ty]);
    h.update(&segment.to_le_bytes());
    h.update(payload);
    mask_crc(h.finalize())
}

/// [`fragment_crc`] for the fragments of one segment (or record log): the CRC of each
/// fragment type's byte followed by the segment number is computed once, and each
/// fragment's checksum continues it over the payload.
#[derive(Clone, Debug)]
pub(crate) struct FragmentCrc {
    segment: u64,
    /// The hasher after `[ty] ++ segment`, for each type byte below 6 (cloned per
    /// fragment: cheaper than building one).
    prefix: [crc32fast::Hasher; 6],
}

impl FragmentCrc {
    pub(crate) fn new(segment: u64) -> Self {
        let prefix = [0u8, 1, 2, 3, 4, 5].map(|ty| {
            let mut h = crc32fast::Hasher::new();
            h.update(&[ty]);
            h.update(&segment.to_le_bytes());
            h
        });
        FragmentCrc { segment, prefix }
    }

    /// The same value as `fragment_crc(ty, segment, payload)`.
    pub(crate) fn of(&self, ty: u8, payload: &[u8]) -> u32 {
        match self.prefix.get(usize::from(ty)) {
            Some(p) => {
                let mut h = p.clone();
                h.update(payload);
                mask_crc(h.finalize())
            }
            None => fragment_crc(ty, self.segment, payload),
        }
    }
}

/// A decoded fragment header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FragmentHeader {
    pub(crate) crc: u32,
    pub(crate) len: u16,
    pub(crate) ty: u8,
}

impl FragmentHeader {
    pub(crate) fn decode(b: [u8; FRAGMENT_HEADER_LEN]) -> Self {
        let [c0, c1, c2, c3, l0, l1, ty] = b;
        FragmentHeader {
            crc: u32::from_le_bytes([c0, c1, c2, c3]),
            len: u16::from_le_bytes([l0, l1]),
            ty,
        }
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.crc == 0 && self.len == 0 && self.ty == 0
    }
}

/// Appends the fragments of one logical record to `out`, starting at file offset
/// `offset` of the segment `crc` checksums for; returns the file offset after the
/// record. The record is `payload` with its first `head.len()` bytes replaced by
/// `head` (the log stamps a batch's sequence number this way, without a copy).
///
/// A block's remainder smaller than a fragment header is filled with zeros.
pub(crate) fn frame_record(
    out: &mut Vec<u8>,
    offset: u64,
    crc: &FragmentCrc,
    payload: &[u8],
    head: &[u8],
) -> u64 {
    let at = out.len();
    let end = layout_record(out, offset, payload, head);
    fill_checksums(out.get_mut(at..).unwrap_or_default(), offset, crc);
    end
}

/// [`frame_record`] without the checksums: every fragment's checksum field is left
/// zero, for [`fill_checksums`] to complete. The log lays records out when they are
/// queued and checksums a whole group at once when it writes it (off the lock that
/// orders appends, and many checksums in a row run faster than one at a time).
pub(crate) fn layout_record(
    out: &mut Vec<u8>,
    mut offset: u64,
    payload: &[u8],
    head: &[u8],
) -> u64 {
    let mut pos = 0;
    let mut first = true;
    loop {
        let block_off = (offset % BLOCK_SIZE as u64) as usize;
        let leftover = BLOCK_SIZE - block_off;
        if leftover < FRAGMENT_HEADER_LEN {
            out.resize(out.len() + leftover, 0);
            offset += leftover as u64;
            continue;
        }
        let avail = leftover - FRAGMENT_HEADER_LEN;
        let chunk = payload.get(pos..).unwrap_or_default();
        let n = avail.min(chunk.len());
        let chunk = chunk.get(..n).unwrap_or_default();
        let last = n == payload.len() - pos;
        let ty = match (first, last) {
            (true, true) => FragmentType::Full,
            (true, false) => FragmentType::First,
            (false, true) => FragmentType::Last,
            (false, false) => FragmentType::Middle,
        } as u8;
        // `n` is at most BLOCK_SIZE - 7, which fits u16.
        let [l0, l1] = (n as u16).to_le_bytes();
        out.reserve(FRAGMENT_HEADER_LEN + n);
        out.extend_from_slice(&[0, 0, 0, 0, l0, l1, ty]);
        let at = out.len();
        out.extend_from_slice(chunk);
        if let Some(h) = head.get(pos..) {
            let k = h.len().min(n);
            if let (Some(dst), Some(src)) = (out.get_mut(at..at + k), h.get(..k)) {
                dst.copy_from_slice(src);
            }
        }
        offset += (FRAGMENT_HEADER_LEN + n) as u64;
        pos += n;
        first = false;
        if last {
            return offset;
        }
    }
}

/// Appends a sync marker (format version 2) claiming that the segment was durable below
/// `synced_to`, if it fits in the block at file offset `offset` (a marker is never
/// split); its checksum is left zero for [`fill_checksums`]. Returns the offset after
/// it, or `None` (nothing appended) if it does not fit.
pub(crate) fn layout_sync_marker(out: &mut Vec<u8>, offset: u64, synced_to: u64) -> Option<u64> {
    let left = BLOCK_SIZE - (offset % BLOCK_SIZE as u64) as usize;
    let len = FRAGMENT_HEADER_LEN + SYNC_MARKER_LEN;
    if left < len {
        return None;
    }
    let [l0, l1] = (SYNC_MARKER_LEN as u16).to_le_bytes();
    out.extend_from_slice(&[0, 0, 0, 0, l0, l1, SYNC_MARKER_TYPE]);
    out.extend_from_slice(&synced_to.to_le_bytes());
    Some(offset + len as u64)
}

/// Fills in the checksum of every fragment in `bytes`: records laid out by
/// [`layout_record`] back to back, the first starting at file offset `offset` of the
/// segment `crc` checksums for. Walks the bytes the way a reader does (block tails
/// too short for a header are padding).
pub(crate) fn fill_checksums(bytes: &mut [u8], offset: u64, crc: &FragmentCrc) {
    let mut pos = 0usize;
    while pos < bytes.len() {
        let leftover = BLOCK_SIZE - ((offset + pos as u64) % BLOCK_SIZE as u64) as usize;
        if leftover < FRAGMENT_HEADER_LEN {
            pos += leftover;
            continue;
        }
        let Some(&[_, _, _, _, l0, l1, ty]) = bytes.get(pos..pos + FRAGMENT_HEADER_LEN) else {
            debug_assert!(false, "a fragment header cut off at {pos}");
            return;
        };
        let body = pos + FRAGMENT_HEADER_LEN;
        let end = body + usize::from(u16::from_le_bytes([l0, l1]));
        let Some(payload) = bytes.get(body..end) else {
            debug_assert!(false, "a fragment cut off at {pos}");
            return;
        };
        let sum = crc.of(ty, payload).to_le_bytes();
        if let Some(field) = bytes.get_mut(pos..pos + 4) {
            field.copy_from_slice(&sum);
        }
        pos = end;
    }
}

/// The header at the start of every segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// The format version ([`FORMAT_VERSION`] for every segment this crate creates).
    pub(crate) version: u32,
    pub(crate) segment: u64,
    /// The sequence number the first batch of this segment has (or would have).
    pub(crate) base_seq: u64,
}

/// Why a segment header did not decode.
#[derive(Debug)]
pub(crate) enum HeaderError {
    Corrupt(String),
    Unsupported(String),
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        let mut body = Vec::with_capacity(SEGMENT_HEADER_LEN);
        body.extend_from_slice(&SEGMENT_MAGIC);
        body.extend_from_slice(&self.version.to_le_bytes());
        body.extend_from_slice(&self.segment.to_le_bytes());
        body.extend_from_slice(&self.base_seq.to_le_bytes());
        let crc = mask_crc(crc32fast::hash(&body));
        body.extend_from_slice(&crc.to_le_bytes());
        b.copy_from_slice(&body);
        b
    }

    pub(crate) fn decode(b: &[u8; SEGMENT_HEADER_LEN]) -> Result<Self, HeaderError> {
        let (body, crc) = b.split_at(SEGMENT_HEADER_LEN - 4);
        let stored = u32::from_le_bytes(
            crc.try_into()
                .map_err(|_| HeaderError::Corrupt("header length".into()))?,
        );
        let (magic, rest) = body.split_at(8);
        if magic != SEGMENT_MAGIC {
            return Err(HeaderError::Corrupt("bad segment magic".into()));
        }
        if mask_crc(crc32fast::hash(body)) != stored {
            return Err(HeaderError::Corrupt(
                "segment header checksum mismatch".into(),
            ));
        }
        let le32 = |s: &[u8]| s.try_into().map(u32::from_le_bytes).ok();
        let le64 = |s: &[u8]| s.try_into().map(u64::from_le_bytes).ok();
        let version = rest.get(0..4).and_then(le32);
        let segment = rest.get(4..12).and_then(le64);
        let base_seq = rest.get(12..20).and_then(le64);
        match (version, segment, base_seq) {
            (Some(version), Some(segment), Some(base_seq))
                if (OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) =>
            {
                if base_seq > MAX_SEQ + 1 {
                    return Err(HeaderError::Corrupt(format!(
                        "base sequence number {base_seq} out of range"
                    )));
                }
                Ok(SegmentHeader {
                    version,
                    segment,
                    base_seq,
                })
            }
            (Some(v), Some(_), Some(_)) => Err(HeaderError::Unsupported(format!(
                "segment format version {v} (this build reads versions \
                 {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})"
            ))),
            _ => Err(HeaderError::Corrupt("short segment header".into())),
        }
    }
}

/// `000042.wal`: zero-padded to six digits, longer numbers simply grow.
pub fn segment_file_name(number: u64) -> String {
    format!("{number:06}.{SEGMENT_EXT}")
}

/// The path of segment `number` in `dir`.
pub(crate) fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(segment_file_name(number))
}

/// Parses `NNNNNN.wal` into its number; anything else is not a segment.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".wal")?;
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Parses the number out of any file this crate names after a segment, including
/// set-aside files (`NNNNNN.wal.dropped`), so numbers are never reused.
pub(crate) fn parse_any_segment_number(name: &str) -> Option<u64> {
    let end = name.find(".wal")?;
    let stem = name.get(..end)?;
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_damage() {
        let h = SegmentHeader {
            version: FORMAT_VERSION,
            segment: 7,
            base_seq: 1234,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b).unwrap(), h);
        let old = SegmentHeader { version: 1, ..h };
        assert_eq!(SegmentHeader::decode(&old.encode()).unwrap(), old);
        let future = SegmentHeader { version: 3, ..h };
        assert!(matches!(
            SegmentHeader::decode(&future.encode()),
            Err(HeaderError::Unsupported(_))
        ));
        for i in 0..SEGMENT_HEADER_LEN {
            let mut d = b;
            d[i] ^= 0x10;
            assert!(SegmentHeader::decode(&d).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn names() {
        assert_eq!(segment_file_name(42), "000042.wal");
        assert_eq!(segment_file_name(12_345_678), "12345678.wal");
        assert_eq!(parse_segment_file_name("000042.wal"), Some(42));
        assert_eq!(parse_segment_file_name("x00042.wal"), None);
        assert_eq!(parse_segment_file_name("000042.wal.dropped"), None);
        assert_eq!(parse_any_segment_number("000042.wal.dropped"), Some(42));
        assert_eq!(parse_segment_file_name(".wal"), None);
    }

    #[test]
    fn framing_fills_block_tails() {
        // Start 10 bytes before a block end: fewer than a header's worth after a 3-byte payload.
        let mut out = Vec::new();
        let start = (BLOCK_SIZE - 10) as u64;
        let crc = FragmentCrc::new(1);
        let end = frame_record(&mut out, start, &crc, b"abc", &[]);
        assert_eq!(end, BLOCK_SIZE as u64);
        let mut out = Vec::new();
        let end = frame_record(&mut out, (BLOCK_SIZE - 8) as u64, &crc, b"abcdef", &[]);
        // 1 byte of payload fits in the first block, 5 in the next.
        assert_eq!(end, (BLOCK_SIZE + FRAGMENT_HEADER_LEN + 5) as u64);
        assert_eq!(out[6], FragmentType::First as u8);
    }

    #[test]
    fn precomputed_crc_matches_the_plain_one() {
        for segment in [0u64, 1, 42, u64::MAX] {
            let crc = FragmentCrc::new(segment);
            for ty in 0u8..=6 {
                for payload in [&b""[..], b"x", &[7u8; 1000][..]] {
                    assert_eq!(
                        crc.of(ty, payload),
                        fragment_crc(ty, segment, payload),
                        "segment {segment} type {ty} len {}",
                        payload.len()
                    );
                }
            }
        }
    }

    /// Frames one record the plain way, independently of `layout_record` and
    /// `fill_checksums`: each fragment built whole, its checksum by `fragment_crc`.
    fn reference_frame(out: &mut Vec<u8>, mut offset: u64, segment: u64, record: &[u8]) -> u64 {
        let mut rest = record;
        let mut first = true;
        loop {
            let left = BLOCK_SIZE - (offset % BLOCK_SIZE as u64) as usize;
            if left < FRAGMENT_HEADER_LEN {
                out.extend(std::iter::repeat_n(0u8, left));
                offset += left as u64;
                continue;
            }
            let n = (left - FRAGMENT_HEADER_LEN).min(rest.len());
            let (chunk, after) = rest.split_at(n);
            let ty = match (first, after.is_empty()) {
                (true, true) => FragmentType::Full,
                (true, false) => FragmentType::First,
                (false, true) => FragmentType::Last,
                (false, false) => FragmentType::Middle,
            } as u8;
            out.extend_from_slice(&fragment_crc(ty, segment, chunk).to_le_bytes());
            out.extend_from_slice(&(n as u16).to_le_bytes());
            out.push(ty);
            out.extend_from_slice(chunk);
            offset += (FRAGMENT_HEADER_LEN + n) as u64;
            rest = after;
            first = false;
            if rest.is_empty() {
                return offset;
            }
        }
    }

    /// Records laid out back to back and checksummed in one pass read exactly like
    /// records framed one at a time, by `frame_record` and by an independent reference:
    /// any difference would be a corrupt log.
    #[test]
    fn checksums_filled_per_group_match_per_record_framing() {
        let crc = FragmentCrc::new(5);
        // Sizes around every way a record can meet a block edge, and multi-block ones.
        let mut sizes = vec![0usize, 1, 12, 13, 100, 130, BLOCK_SIZE - 7, BLOCK_SIZE - 8];
        sizes.extend([BLOCK_SIZE - 6, BLOCK_SIZE, 3 * BLOCK_SIZE + 5, 70_000]);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..300 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            sizes.push((x % 600) as usize);
        }
        for start in [
            32u64,
            (BLOCK_SIZE - 7) as u64,
            (BLOCK_SIZE - 3) as u64,
            100_000,
        ] {
            let (mut one, mut laid, mut reference) = (Vec::new(), Vec::new(), Vec::new());
            let (mut off_one, mut off_laid, mut off_ref) = (start, start, start);
            for (i, &n) in sizes.iter().enumerate() {
                let payload: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
                let head = (i as u64).to_le_bytes();
                off_one = frame_record(&mut one, off_one, &crc, &payload, &head);
                off_laid = layout_record(&mut laid, off_laid, &payload, &head);
                let mut stamped = payload.clone();
                let k = head.len().min(n);
                stamped[..k].copy_from_slice(&head[..k]);
                off_ref = reference_frame(&mut reference, off_ref, 5, &stamped);
            }
            assert_eq!(off_one, off_laid);
            assert_eq!(off_one, off_ref);
            assert!(
                one == reference,
                "start {start}: frame_record differs from the reference"
            );
            assert_ne!(one, laid, "the layout alone has no checksums");
            fill_checksums(&mut laid, start, &crc);
            assert!(one == laid, "start {start}: group checksums differ");
        }
    }

    #[test]
    fn a_replaced_head_frames_like_the_replaced_payload() {
        let payload: Vec<u8> = (0..100u8).collect();
        let head = [0xAAu8; 12];
        let mut whole = payload.clone();
        whole[..12].copy_from_slice(&head);
        let crc = FragmentCrc::new(9);
        // Starting offsets that split the head across fragments and blocks, too.
        for start in [
            0u64,
            5,
            (BLOCK_SIZE - 7 - 3) as u64,
            (BLOCK_SIZE - 8) as u64,
        ] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let end_a = frame_record(&mut a, start, &crc, &payload, &head);
            let end_b = frame_record(&mut b, start, &crc, &whole, &[]);
            assert_eq!((a, end_a), (b, end_b), "start {start}");
        }
    }
}
