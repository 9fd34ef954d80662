//! Blocks: the unit of reading, checksumming, compression and caching.
//!
//! # Contents of a block (after decompression)
//!
//! ```text
//! +---------+---------+-----+-----------+-----------+-----+--------------+
//! | entry 0 | entry 1 | ... | restart 0 | restart 1 | ... | num_restarts |
//! +---------+---------+-----+-----------+-----------+-----+--------------+
//!                             u32 LE each                    u32 LE
//!
//! entry = shared: varint32 | unshared: varint32 | value_len: varint32
//!         | key[shared..] (unshared bytes) | value (value_len bytes)
//! ```
//!
//! `shared` is the length of the prefix the key has in common with the previous key of
//! the block. Every `restart_interval`-th entry is a *restart point*: it stores its key
//! whole (`shared = 0`) and its offset is listed in the restart array, so a seek can
//! binary-search the restarts and then scan at most one interval.
//!
//! # Stored form (in the file)
//!
//! ```text
//! +----------------------+-------------+------------------+
//! | payload (n bytes)    | codec: u8   | crc32: u32 LE    |
//! +----------------------+-------------+------------------+
//! ```
//!
//! The payload is the contents themselves (codec 0) or `varint32 uncompressed_len |
//! compressed bytes` (codec 1 snappy, 2 zstd). The CRC-32 (IEEE) covers the payload and
//! the codec byte. [`seal`] and [`unseal`] convert between the two forms.
//!
//! ```
//! use std::sync::Arc;
//! use kv_sstable::block::{Block, BlockBuilder, BlockIter};
//! let mut b = BlockBuilder::new(2);
//! for k in [&b"apple"[..], b"apricot", b"banana"] {
//!     b.add(k, b"v");
//! }
//! let block = Arc::new(Block::decode(b.finish())?);
//! let mut it = BlockIter::new(block, <[u8]>::cmp);
//! it.seek(b"apq")?;
//! assert_eq!(it.key(), b"apricot");
//! it.prev()?;
//! assert_eq!(it.key(), b"apple");
//! # Ok::<(), kv_sstable::block::BlockError>(())
//! ```

mod builder;

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

pub use builder::BlockBuilder;

use crate::compression::{self, CODEC_NONE, DecompressError};
use crate::source::ByteSource;
use crate::varint;

/// Length of the stored-block trailer: codec byte and CRC-32.
pub const TRAILER_LEN: usize = 5;

/// A key order: bytewise for meta blocks, [`kv_iter::compare_internal_keys`] for data
/// and index blocks.
pub type Comparator = fn(&[u8], &[u8]) -> Ordering;

/// A block that failed to decode: where (offset inside the stored or decoded block) and
/// why. The table reader turns it into an [`Error`](crate::Error) naming the file and the
/// absolute offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockError {
    offset: usize,
    detail: String,
    unsupported: bool,
}

impl BlockError {
    pub(crate) fn new(offset: usize, detail: impl Into<String>) -> Self {
        BlockError {
            offset,
            detail: detail.into(),
            unsupported: false,
        }
    }

    pub(crate) fn unsupported(offset: usize, detail: impl Into<String>) -> Self {
        BlockError {
            offset,
            detail: detail.into(),
            unsupported: true,
        }
    }

    /// Offset of the problem, relative to the start of the block.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// What was wrong.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Whether the block is well formed but uses a codec this version does not know.
    pub fn is_unsupported(&self) -> bool {
        self.unsupported
    }
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at block offset {})", self.detail, self.offset)
    }
}

impl std::error::Error for BlockError {}

/// Appends the stored form of `payload` (already compressed with `codec`) to `out`:
/// the payload, the codec byte and the CRC-32 of both.
///
/// ```
/// use kv_sstable::block::{seal, unseal};
/// let mut stored = Vec::new();
/// seal(b"contents", 0, &mut stored);
/// assert_eq!(&*unseal(&stored)?, b"contents");
/// stored[0] ^= 1;
/// assert!(unseal(&stored).is_err());
/// # Ok::<(), kv_sstable::block::BlockError>(())
/// ```
pub fn seal(payload: &[u8], codec: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(payload);
    out.extend_from_slice(&trailer(payload, codec));
}

/// The 5-byte trailer of a stored block.
pub(crate) fn trailer(payload: &[u8], codec: u8) -> [u8; TRAILER_LEN] {
    let crc = checksum(payload, codec);
    let c = crc.to_le_bytes();
    [codec, c[0], c[1], c[2], c[3]]
}

fn checksum(payload: &[u8], codec: u8) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(payload);
    h.update(&[codec]);
    h.finalize()
}

/// Verifies a stored block's checksum and decompresses it.
///
/// Uncompressed payloads are returned borrowed, without copying. A decompressed size is
/// checked against [`MAX_BLOCK_LEN`](crate::MAX_BLOCK_LEN) before anything is allocated.
pub fn unseal(stored: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, BlockError> {
    let payload_len = stored.len().checked_sub(TRAILER_LEN).ok_or_else(|| {
        BlockError::new(
            0,
            format!("stored block of {} bytes has no trailer", stored.len()),
        )
    })?;
    let (payload, tail) = stored.split_at(payload_len);
    let (&codec, crc_bytes) = tail
        .split_first()
        .ok_or_else(|| BlockError::new(payload_len, "missing codec byte"))?;
    let mut crc = [0u8; 4];
    crc.copy_from_slice(crc_bytes);
    let stored_crc = u32::from_le_bytes(crc);
    let actual = checksum(payload, codec);
    if stored_crc != actual {
        return Err(BlockError::new(
            payload_len,
            format!(
                "block checksum mismatch (stored {stored_crc:#010x}, computed {actual:#010x}, block of {} bytes)",
                stored.len()
            ),
        ));
    }
    if codec == CODEC_NONE {
        return Ok(std::borrow::Cow::Borrowed(payload));
    }
    match compression::decompress(codec, payload) {
        Ok(v) => Ok(std::borrow::Cow::Owned(v)),
        Err(DecompressError::UnknownCodec(c)) => Err(BlockError::unsupported(
            payload_len,
            format!("unknown compression codec {c}"),
        )),
        Err(DecompressError::Corrupt(d)) => Err(BlockError::new(0, d)),
    }
}

/// Where a block's bytes live.
pub(crate) enum BlockData {
    /// Decompressed or copied bytes, owned by the block.
    Owned(Vec<u8>),
    /// A range of an in-memory source (a memory map), borrowed without copying.
    Mapped {
        source: Arc<dyn ByteSource>,
        start: usize,
        len: usize,
    },
}

impl BlockData {
    fn bytes(&self) -> &[u8] {
        match self {
            BlockData::Owned(v) => v,
            BlockData::Mapped { source, start, len } => source
                .as_slice()
                .and_then(|s| s.get(*start..start.checked_add(*len)?))
                .unwrap_or_default(),
        }
    }
}

impl fmt::Debug for BlockData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockData::Owned(v) => write!(f, "Owned({} bytes)", v.len()),
            BlockData::Mapped { start, len, .. } => write!(f, "Mapped({start}+{len})"),
        }
    }
}

/// A decoded block: its contents and a validated restart array.
#[derive(Debug)]
pub struct Block {
    data: BlockData,
    /// Offset of the restart array: entries live in `..restarts_offset`.
    restarts_offset: usize,
    num_restarts: usize,
}

impl Block {
    /// Decodes block contents (the decompressed form, without trailer).
    ///
    /// Checks that the restart array fits, that there is at least one restart, that the
    /// first is at offset 0 and that they increase strictly inside the entry area.
    /// Entries themselves are checked as an iterator reads them.
    pub fn decode(contents: Vec<u8>) -> Result<Block, BlockError> {
        Block::from_data(BlockData::Owned(contents))
    }

    pub(crate) fn from_data(data: BlockData) -> Result<Block, BlockError> {
        let bytes = data.bytes();
        let len = bytes.len();
        let count_at = len
            .checked_sub(4)
            .ok_or_else(|| BlockError::new(0, format!("block of {len} bytes is too short")))?;
        let num_restarts = read_u32(bytes, count_at)
            .ok_or_else(|| BlockError::new(count_at, "missing restart count"))?
            as usize;
        if num_restarts == 0 {
            return Err(BlockError::new(count_at, "block has no restart points"));
        }
        let restarts_offset = num_restarts
            .checked_mul(4)
            .and_then(|n| count_at.checked_sub(n))
            .ok_or_else(|| {
                BlockError::new(
                    count_at,
                    format!("{num_restarts} restart points do not fit in {len} bytes"),
                )
            })?;
        let mut prev: Option<usize> = None;
        for i in 0..num_restarts {
            let at = restarts_offset + 4 * i;
            let r = read_u32(bytes, at)
                .ok_or_else(|| BlockError::new(at, "restart array out of bounds"))?
                as usize;
            let ok = match prev {
                None => r == 0,
                Some(p) => r > p,
            } && r < restarts_offset;
            if !ok {
                return Err(BlockError::new(
                    at,
                    format!("restart point {i} at {r} is out of order or outside the entries"),
                ));
            }
            prev = Some(r);
        }
        Ok(Block {
            data,
            restarts_offset,
            num_restarts,
        })
    }

    /// Size of the contents in bytes.
    pub fn len(&self) -> usize {
        self.data.bytes().len()
    }

    /// Whether the contents are empty (never true for a decoded block).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of restart points.
    pub fn num_restarts(&self) -> usize {
        self.num_restarts
    }

    /// Bytes this block holds on the heap, for the cache's weigher: the contents if
    /// owned, a small constant if borrowed from a map.
    pub(crate) fn charge(&self) -> u64 {
        const OVERHEAD: u64 = 96;
        match &self.data {
            BlockData::Owned(v) => v.len() as u64 + OVERHEAD,
            BlockData::Mapped { .. } => OVERHEAD,
        }
    }

    /// Whether the contents are borrowed from a memory map.
    pub fn is_mapped(&self) -> bool {
        matches!(self.data, BlockData::Mapped { .. })
    }

    fn bytes(&self) -> &[u8] {
        self.data.bytes()
    }

    fn restart(&self, i: usize) -> usize {
        if i >= self.num_restarts {
            return self.restarts_offset;
        }
        read_u32(self.bytes(), self.restarts_offset + 4 * i)
            .map_or(self.restarts_offset, |r| r as usize)
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    Some(u32::from_le_bytes(a))
}

/// The decoded header of one entry.
struct EntryHeader {
    shared: usize,
    unshared: usize,
    value_len: usize,
    /// Offset of the key delta.
    body: usize,
}

/// Decodes the header at `at`, checking the entry fits before `limit`.
fn decode_header(bytes: &[u8], at: usize, limit: usize) -> Result<EntryHeader, BlockError> {
    let area = bytes
        .get(at..limit)
        .ok_or_else(|| BlockError::new(at, "entry offset outside the block"))?;
    // The common case: three one-byte varints (each below 128).
    if let Some(&[s, u, v]) = area.get(..3)
        && (s | u | v) < 0x80
    {
        let total = 3 + usize::from(u) + usize::from(v);
        if total <= area.len() {
            return Ok(EntryHeader {
                shared: usize::from(s),
                unshared: usize::from(u),
                value_len: usize::from(v),
                body: at + 3,
            });
        }
    }
    let bad = || BlockError::new(at, "malformed entry header");
    let (shared, a) = varint::get_u32(area).ok_or_else(bad)?;
    let (unshared, b) = varint::get_u32(area.get(a..).unwrap_or_default()).ok_or_else(bad)?;
    let (value_len, c) = varint::get_u32(area.get(a + b..).unwrap_or_default()).ok_or_else(bad)?;
    let header = a + b + c;
    let total = header as u64 + u64::from(unshared) + u64::from(value_len);
    if total > area.len() as u64 {
        return Err(BlockError::new(
            at,
            format!(
                "entry of {total} bytes overruns the entry area ({} bytes left)",
                area.len()
            ),
        ));
    }
    Ok(EntryHeader {
        shared: shared as usize,
        unshared: unshared as usize,
        value_len: value_len as usize,
        body: at + header,
    })
}

/// A bidirectional iterator over one block, owning a reference to it.
///
/// Every movement returns a `Result`: a malformed entry is an error (and leaves the
/// iterator invalid), never a panic or an out-of-bounds read.
#[derive(Debug)]
pub struct BlockIter {
    block: Arc<Block>,
    cmp: Comparator,
    /// Offset of the current entry; `restarts_offset` when invalid.
    current: usize,
    /// Offset just past the current entry.
    next: usize,
    /// Index of the restart interval holding `current`.
    restart_index: usize,
    /// Offsets of restart points `restart_index` and `restart_index + 1` (the entry
    /// area's end past the last), kept so that a step reads no restart entry.
    this_restart: usize,
    next_restart: usize,
    key: Vec<u8>,
    value: (usize, usize),
}

impl BlockIter {
    /// An unpositioned iterator over `block` ordered by `cmp`.
    pub fn new(block: Arc<Block>, cmp: Comparator) -> Self {
        let end = block.restarts_offset;
        BlockIter {
            block,
            cmp,
            current: end,
            next: end,
            restart_index: 0,
            this_restart: end,
            next_restart: end,
            key: Vec::new(),
            value: (0, 0),
        }
    }

    /// The block being iterated.
    pub fn block(&self) -> &Arc<Block> {
        &self.block
    }

    /// Whether the iterator is at an entry.
    pub fn valid(&self) -> bool {
        self.current < self.block.restarts_offset
    }

    /// The current key (empty when invalid).
    pub fn key(&self) -> &[u8] {
        if self.valid() { &self.key } else { &[] }
    }

    /// The current value (empty when invalid).
    pub fn value(&self) -> &[u8] {
        if !self.valid() {
            return &[];
        }
        self.block
            .bytes()
            .get(self.value.0..self.value.1)
            .unwrap_or_default()
    }

    /// Offset of the current entry inside the block.
    pub fn offset(&self) -> usize {
        self.current
    }

    fn invalidate(&mut self) {
        self.current = self.block.restarts_offset;
        self.next = self.block.restarts_offset;
        self.restart_index = self.block.num_restarts;
        self.this_restart = self.block.restarts_offset;
        self.next_restart = self.block.restarts_offset;
        self.key.clear();
        self.value = (0, 0);
    }

    fn seek_to_restart(&mut self, index: usize) {
        self.key.clear();
        self.restart_index = index;
        self.this_restart = self.block.restart(index);
        self.next_restart = self.block.restart(index + 1);
        self.next = self.this_restart;
    }

    /// Decodes the entry at `self.next`.
    fn parse_next(&mut self) -> Result<(), BlockError> {
        self.current = self.next;
        let end = self.block.restarts_offset;
        if self.current >= end {
            self.invalidate();
            return Ok(());
        }
        match self.decode_current() {
            Ok(()) => Ok(()),
            Err(e) => {
                self.invalidate();
                Err(e)
            }
        }
    }

    fn decode_current(&mut self) -> Result<(), BlockError> {
        // A plain borrow of the field (not an `Arc` clone: this runs once per entry),
        // disjoint from the fields updated below.
        let block: &Block = &self.block;
        let bytes = block.bytes();
        let at = self.current;
        let h = decode_header(bytes, at, block.restarts_offset)?;
        // `restart(num_restarts)` is the entry area's end, past every entry: the loop
        // ends even over a malformed restart array.
        while self.next_restart <= at && self.restart_index + 1 < block.num_restarts {
            self.restart_index += 1;
            self.this_restart = self.next_restart;
            self.next_restart = block.restart(self.restart_index + 1);
        }
        if self.this_restart == at && h.shared != 0 {
            return Err(BlockError::new(at, "restart entry shares a prefix"));
        }
        if h.shared > self.key.len() {
            return Err(BlockError::new(
                at,
                format!(
                    "entry shares {} bytes with a {}-byte key",
                    h.shared,
                    self.key.len()
                ),
            ));
        }
        let delta = bytes
            .get(h.body..h.body + h.unshared)
            .ok_or_else(|| BlockError::new(at, "key outside the block"))?;
        self.key.truncate(h.shared);
        self.key.extend_from_slice(delta);
        let v = h.body + h.unshared;
        self.value = (v, v + h.value_len);
        self.next = v + h.value_len;
        Ok(())
    }

    /// Positions at the first entry.
    pub fn seek_to_first(&mut self) -> Result<(), BlockError> {
        self.seek_to_restart(0);
        self.parse_next()
    }

    /// Positions at the last entry.
    pub fn seek_to_last(&mut self) -> Result<(), BlockError> {
        self.seek_to_restart(self.block.num_restarts - 1);
        loop {
            self.parse_next()?;
            if !self.valid() || self.next >= self.block.restarts_offset {
                return Ok(());
            }
        }
    }

    /// Moves to the next entry (invalid past the last; nothing if already invalid).
    #[expect(
        clippy::should_implement_trait,
        reason = "a fallible positioning call like kv_iter::Cursor::next, not an Iterator"
    )]
    pub fn next(&mut self) -> Result<(), BlockError> {
        if !self.valid() {
            return Ok(());
        }
        self.parse_next()
    }

    /// Moves to the previous entry (invalid before the first; nothing if invalid).
    pub fn prev(&mut self) -> Result<(), BlockError> {
        if !self.valid() {
            return Ok(());
        }
        let original = self.current;
        let mut index = self.restart_index.min(self.block.num_restarts - 1);
        while self.block.restart(index) >= original {
            if index == 0 {
                self.invalidate();
                return Ok(());
            }
            index -= 1;
        }
        self.seek_to_restart(index);
        loop {
            self.parse_next()?;
            if !self.valid() {
                return Err(BlockError::new(
                    original,
                    "entries do not chain to the current one",
                ));
            }
            if self.next >= original {
                if self.next != original {
                    let at = self.current;
                    self.invalidate();
                    return Err(BlockError::new(at, "entry overlaps the next one"));
                }
                return Ok(());
            }
        }
    }

    /// The key stored whole at restart point `index`.
    fn restart_key(&self, index: usize) -> Result<&[u8], BlockError> {
        let bytes = self.block.bytes();
        let at = self.block.restart(index);
        let h = decode_header(bytes, at, self.block.restarts_offset)?;
        if h.shared != 0 {
            return Err(BlockError::new(at, "restart entry shares a prefix"));
        }
        bytes
            .get(h.body..h.body + h.unshared)
            .ok_or_else(|| BlockError::new(at, "key outside the block"))
    }

    /// Positions at the first entry whose key is `>= target`, or invalid if none is.
    pub fn seek(&mut self, target: &[u8]) -> Result<(), BlockError> {
        // Binary search for the last restart whose key is < target (or restart 0). The
        // first key >= target lies in that restart's interval or is the next restart's
        // key, so a forward scan from there finds it. (Starting from the first restart
        // whose key is >= target, as the Go design did, skips the keys before it.)
        let mut lo = 0usize;
        let mut hi = self.block.num_restarts - 1;
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let ord = match self.restart_key(mid) {
                Ok(k) => (self.cmp)(k, target),
                Err(e) => {
                    self.invalidate();
                    return Err(e);
                }
            };
            if ord == Ordering::Less {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        self.seek_to_restart(lo);
        loop {
            self.parse_next()?;
            if !self.valid() || (self.cmp)(&self.key, target) != Ordering::Less {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(keys: &[Vec<u8>], interval: usize) -> Arc<Block> {
        let mut b = BlockBuilder::new(interval);
        for (i, k) in keys.iter().enumerate() {
            b.add(k, format!("v{i}").as_bytes());
        }
        Arc::new(Block::decode(b.finish()).unwrap())
    }

    fn keys(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("key{:05}", i * 2).into_bytes())
            .collect()
    }

    #[test]
    fn every_seek_lands_on_the_first_key_not_less() {
        // The Go design's block seek picked the first restart >= target and skipped the
        // run before it; check every key and every gap under several intervals.
        for interval in [1, 2, 3, 16] {
            for n in [1, 2, 15, 16, 17, 40] {
                let ks = keys(n);
                let block = build(&ks, interval);
                let mut it = BlockIter::new(Arc::clone(&block), <[u8]>::cmp);
                for i in 0..n * 2 + 1 {
                    let target = format!("key{:05}", i).into_bytes();
                    it.seek(&target).unwrap();
                    let want = ks.iter().find(|k| k.as_slice() >= target.as_slice());
                    match want {
                        Some(k) => {
                            assert_eq!(it.key(), k.as_slice(), "interval {interval} n {n} i {i}")
                        }
                        None => assert!(!it.valid()),
                    }
                }
                it.seek(b"").unwrap();
                assert_eq!(it.key(), ks[0].as_slice());
            }
        }
    }

    #[test]
    fn forward_and_backward_visit_every_entry_once() {
        for interval in [1, 4, 16] {
            let ks = keys(37);
            let block = build(&ks, interval);
            let mut it = BlockIter::new(block, <[u8]>::cmp);
            let mut seen = Vec::new();
            it.seek_to_first().unwrap();
            while it.valid() {
                seen.push(it.key().to_vec());
                it.next().unwrap();
            }
            assert_eq!(seen, ks);
            let mut back = Vec::new();
            it.seek_to_last().unwrap();
            while it.valid() {
                back.push(it.key().to_vec());
                it.prev().unwrap();
            }
            back.reverse();
            assert_eq!(back, ks);
            // Values follow their keys.
            it.seek(b"key00010").unwrap();
            assert_eq!(it.value(), b"v5");
            it.prev().unwrap();
            assert_eq!(it.value(), b"v4");
            it.next().unwrap();
            it.next().unwrap();
            assert_eq!(it.value(), b"v6");
        }
    }

    #[test]
    fn malformed_restart_arrays_are_rejected() {
        assert!(Block::decode(vec![]).is_err());
        assert!(Block::decode(vec![0, 0, 0, 0]).is_err());
        assert!(Block::decode(vec![0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        // One restart that is not at 0.
        assert!(Block::decode(vec![0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]).is_err());
        // Restart pointing into the restart array.
        let mut b = BlockBuilder::new(16);
        b.add(b"a", b"1");
        let mut raw = b.finish();
        let n = raw.len();
        raw[n - 8] = 200;
        assert!(Block::decode(raw).is_err());
    }

    /// A restart entry must store its key whole: one that claims a shared prefix would
    /// decode to one key when reached by a scan and fail when reached by a seek.
    #[test]
    fn a_restart_entry_that_shares_a_prefix_is_an_error_on_every_path() {
        // Restart interval 1: both entries are restart points, stored with shared = 0.
        let mut b = BlockBuilder::new(1);
        b.add(b"ab", b"1");
        b.add(b"ac", b"2");
        let mut raw = b.finish();
        // Entry 0 is [0, 2, 1, 'a', 'b', '1']; entry 1 starts at 6: make it claim one
        // shared byte and one unshared one ('a' then 'c', the same key by a scan).
        assert_eq!(&raw[6..12], &[0, 2, 1, b'a', b'c', b'2']);
        raw.splice(6..12, [1, 1, 1, b'c', b'2']);
        // The restart array's second offset is unchanged (6), the block shorter by one.
        let block = Arc::new(Block::decode(raw).unwrap());
        let mut it = BlockIter::new(Arc::clone(&block), <[u8]>::cmp);
        it.seek_to_first().unwrap();
        assert_eq!(it.key(), b"ab");
        assert!(it.next().is_err(), "a scan accepted the restart entry");
        assert!(!it.valid());
        let mut it = BlockIter::new(block, <[u8]>::cmp);
        assert!(it.seek(b"ac").is_err(), "a seek accepted the restart entry");
    }

    #[test]
    fn every_truncated_or_flipped_block_is_safe() {
        let ks = keys(20);
        let mut b = BlockBuilder::new(4);
        for k in &ks {
            b.add(k, b"value");
        }
        let raw = b.finish();
        for i in 0..raw.len() {
            for variant in 0..2 {
                let mut bad = raw.clone();
                if variant == 0 {
                    bad.truncate(i);
                } else {
                    bad[i] ^= 0x5A;
                }
                let Ok(block) = Block::decode(bad) else {
                    continue;
                };
                let mut it = BlockIter::new(Arc::new(block), <[u8]>::cmp);
                let mut steps = 0;
                if it.seek_to_first().is_ok() {
                    while it.valid() && steps < 100 {
                        if it.next().is_err() {
                            break;
                        }
                        steps += 1;
                    }
                }
                if it.seek_to_last().is_ok() {
                    while it.valid() && steps < 200 {
                        if it.prev().is_err() {
                            break;
                        }
                        steps += 1;
                    }
                }
                let _ = it.seek(b"key00011");
            }
        }
    }

    #[test]
    fn seal_and_unseal() {
        let mut stored = Vec::new();
        seal(b"abc", 0, &mut stored);
        assert_eq!(stored.len(), 3 + TRAILER_LEN);
        assert_eq!(&*unseal(&stored).unwrap(), b"abc");
        for i in 0..stored.len() {
            let mut bad = stored.clone();
            bad[i] ^= 0x01;
            assert!(unseal(&bad).is_err());
        }
        // Unknown codec with a valid checksum is "unsupported".
        let mut future = Vec::new();
        seal(b"abc", 7, &mut future);
        assert!(unseal(&future).unwrap_err().is_unsupported());
        assert!(unseal(&[1, 2, 3]).is_err());
    }
}
