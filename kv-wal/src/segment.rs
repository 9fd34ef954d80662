//! Reading one segment: the header, then fragments assembled into logical records.
//! Every length is checked against the block, the readable limit and the record limit
//! before anything is allocated or sliced.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::{
    BLOCK_SIZE, FRAGMENT_HEADER_LEN, FragmentHeader, FragmentType, HeaderError, SEGMENT_HEADER_LEN,
    SYNC_MARKER_LEN, SYNC_MARKER_TYPE, SegmentHeader, fragment_crc,
};
use crate::fs::{Fs, ReadableFile};

const BS: u64 = BLOCK_SIZE as u64;
const HDR: u64 = FRAGMENT_HEADER_LEN as u64;

/// The state of a segment's header.
#[derive(Debug)]
pub(crate) enum HeaderState {
    Ok(SegmentHeader),
    /// The file is shorter than a header, or its header is all zeros: a segment whose
    /// creation was cut short.
    Torn {
        len: u64,
    },
    Corrupt(String),
    Unsupported(String),
}

/// Damage met while reading a segment.
#[derive(Debug, Clone)]
pub(crate) struct SegDamage {
    /// First byte of the damaged record or fragment.
    pub(crate) offset: u64,
    /// Where reading continues if the caller skips the damage.
    pub(crate) resume_at: u64,
    pub(crate) reason: String,
    /// Where the failing fragment (or the cut) is: the search for valid data after the
    /// damage starts here.
    pub(crate) at: u64,
    /// A fragment with a valid checksum but a type this version does not know.
    pub(crate) unsupported: bool,
}

/// One step of reading.
#[derive(Debug)]
pub(crate) enum Step {
    Record {
        offset: u64,
        end: u64,
        payload: Vec<u8>,
    },
    /// No more records below the readable limit (or a zero-filled remainder starts here).
    End,
    Damage(SegDamage),
}

#[derive(Debug)]
pub(crate) struct SegmentReader {
    file: Box<dyn ReadableFile>,
    path: PathBuf,
    number: u64,
    limit: u64,
    pos: u64,
    block: Vec<u8>,
    block_start: u64,
    max_record: usize,
    /// The header's format version (sync markers exist from version 2 on).
    version: u32,
}

/// A sync marker found in a segment: the one at `at` says the segment was durable below
/// `synced_to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SyncMarker {
    pub(crate) at: u64,
    pub(crate) synced_to: u64,
}

/// The offset a sync marker's payload claims, if it is a well-formed claim for a
/// marker at `at` (at least the header's end, at most the marker's own offset).
fn marker_claim(payload: &[u8], at: u64) -> Option<u64> {
    let b: [u8; SYNC_MARKER_LEN] = payload.try_into().ok()?;
    let to = u64::from_le_bytes(b);
    (SEGMENT_HEADER_LEN as u64..=at).contains(&to).then_some(to)
}

impl SegmentReader {
    /// Opens a segment and reads its header. `limit`: readable end (None: file length).
    pub(crate) fn open(
        fs: &dyn Fs,
        path: &Path,
        number: u64,
        max_record: usize,
        limit: Option<u64>,
    ) -> Result<(SegmentReader, HeaderState)> {
        let file = fs.open_read(path).map_err(|e| Error::io(path, e))?;
        let len = file.len().map_err(|e| Error::io(path, e))?;
        let limit = limit.map_or(len, |l| l.min(len));
        let mut r = SegmentReader {
            file,
            path: path.to_path_buf(),
            number,
            limit,
            pos: SEGMENT_HEADER_LEN as u64,
            block: Vec::new(),
            block_start: u64::MAX,
            max_record,
            version: 0,
        };
        if limit < SEGMENT_HEADER_LEN as u64 {
            return Ok((r, HeaderState::Torn { len: limit }));
        }
        let mut h = [0u8; SEGMENT_HEADER_LEN];
        r.file
            .read_exact_at(0, &mut h)
            .map_err(|e| Error::io(path, e))?;
        if h.iter().all(|&b| b == 0) {
            // A segment whose creation never completed (preallocated, header not yet
            // written or not yet synced): like a cut-off header, it can hold nothing
            // that was acknowledged, since appends start only after creation syncs.
            return Ok((r, HeaderState::Torn { len: limit }));
        }
        let state = match SegmentHeader::decode(&h) {
            Ok(hdr) if hdr.segment != number => HeaderState::Corrupt(format!(
                "header names segment {} but the file is segment {number}",
                hdr.segment
            )),
            Ok(hdr) => {
                r.version = hdr.version;
                HeaderState::Ok(hdr)
            }
            Err(HeaderError::Corrupt(r)) => HeaderState::Corrupt(r),
            Err(HeaderError::Unsupported(r)) => HeaderState::Unsupported(r),
        };
        r.pos = SEGMENT_HEADER_LEN as u64;
        Ok((r, state))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The offset of the first non-zero byte after the header, if any: a segment whose
    /// header is missing or wrong but which holds bytes after it had its header written
    /// and synced (appends start only after the creation's fsync), so the damage is
    /// not an interrupted creation. Reads the whole segment (a rare, damaged path).
    pub(crate) fn first_data_after_header(&mut self) -> Result<Option<u64>> {
        let mut chunk = vec![0u8; 1 << 20];
        let mut at = SEGMENT_HEADER_LEN as u64;
        while at < self.limit {
            let n = usize::try_from(self.limit - at)
                .unwrap_or(usize::MAX)
                .min(chunk.len());
            let buf = chunk.get_mut(..n).unwrap_or_default();
            self.file
                .read_exact_at(at, buf)
                .map_err(|e| Error::io(&self.path, e))?;
            if let Some(i) = buf.iter().position(|&b| b != 0) {
                return Ok(Some(at + i as u64));
            }
            at += n as u64;
        }
        Ok(None)
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// The current length of the open file (valid even after the file was removed).
    pub(crate) fn file_len(&self) -> Result<u64> {
        self.file.len().map_err(|e| Error::io(&self.path, e))
    }

    /// Raises the readable limit (tailing a segment being written).
    pub(crate) fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Bytes `[off, off + n)`, which must lie in one block and below the limit.
    fn bytes(&mut self, off: u64, n: u64) -> Result<Option<&[u8]>> {
        let end = off.saturating_add(n);
        if end > self.limit {
            return Ok(None);
        }
        let start = off - off % BS;
        let have = self.block_start.saturating_add(self.block.len() as u64);
        if self.block_start != start || have < end {
            let want = (self.limit - start).min(BS) as usize;
            if self.block.len() != want {
                // A fresh zeroed buffer (calloc) is cheaper than resizing byte by byte.
                self.block = vec![0u8; want];
            }
            self.file
                .read_exact_at(start, &mut self.block)
                .map_err(|e| Error::io(&self.path, e))?;
            self.block_start = start;
        }
        let lo = (off - start) as usize;
        Ok(self.block.get(lo..lo + n as usize))
    }

    fn damage(&mut self, offset: u64, resume_at: u64, reason: impl Into<String>) -> Step {
        let at = self.pos;
        self.pos = resume_at.max(self.pos);
        Step::Damage(SegDamage {
            offset,
            resume_at: self.pos,
            reason: reason.into(),
            at,
            unsupported: false,
        })
    }

    fn next_block(off: u64) -> u64 {
        (off / BS + 1) * BS
    }

    /// Reads the next logical record.
    pub(crate) fn next(&mut self) -> Result<Step> {
        // (record start, payload so far)
        let mut rec: Option<(u64, Vec<u8>)> = None;
        let number = self.number;
        let max_record = self.max_record;
        let markers = self.version >= 2;
        loop {
            let off = self.pos;
            let left = BS - off % BS;
            if left < HDR {
                // Block trailer: zero padding the writer put before the next record.
                if off + left > self.limit && rec.is_none() {
                    return Ok(Step::End);
                }
                self.pos = off + left;
                continue;
            }
            let rec_start = rec.as_ref().map_or(off, |r| r.0);
            if off >= self.limit {
                if rec.is_some() {
                    let lim = self.limit;
                    return Ok(self.damage(
                        rec_start,
                        lim,
                        "record cut off at the end of the segment",
                    ));
                }
                return Ok(Step::End);
            }
            let Some(h) = self.bytes(off, HDR)? else {
                let lim = self.limit;
                // Fewer bytes than a header left before the end of the file, all zero:
                // zero-fill, as a zero header with zeros to its block's end is (a
                // preallocated or zeroed-ahead file need not end on a block boundary).
                if rec.is_none()
                    && self
                        .bytes(off, lim - off)?
                        .is_some_and(|b| b.iter().all(|x| *x == 0))
                {
                    return Ok(Step::End);
                }
                return Ok(self.damage(
                    rec_start,
                    lim,
                    "fragment header cut off at the end of the segment",
                ));
            };
            let h: [u8; FRAGMENT_HEADER_LEN] = h
                .try_into()
                .map_err(|_| Error::corruption(&self.path, off, "short header"))?;
            let h = FragmentHeader::decode(h);
            if h.is_zero() {
                let block_end = (off - off % BS + BS).min(self.limit);
                let rest_zero = self
                    .bytes(off, block_end - off)?
                    .is_some_and(|b| b.iter().all(|x| *x == 0));
                if !rest_zero {
                    return Ok(self.damage(
                        rec_start,
                        Self::next_block(off),
                        "zero fragment header followed by data",
                    ));
                }
                if rec.is_some() {
                    return Ok(self.damage(
                        rec_start,
                        Self::next_block(off),
                        "zero-filled region inside a record",
                    ));
                }
                return Ok(Step::End);
            }
            let len = u64::from(h.len);
            if HDR + len > left {
                return Ok(self.damage(
                    rec_start,
                    Self::next_block(off),
                    format!("fragment length {len} overruns its block"),
                ));
            }
            let Some(payload) = self.bytes(off + HDR, len)? else {
                let lim = self.limit;
                return Ok(self.damage(
                    rec_start,
                    lim,
                    "fragment cut off at the end of the segment",
                ));
            };
            if fragment_crc(h.ty, number, payload) != h.crc {
                let reason = format!("checksum mismatch in a fragment of {len} bytes");
                return Ok(self.damage(rec_start, Self::next_block(off), reason));
            }
            if h.ty == SYNC_MARKER_TYPE && markers {
                if rec.is_some() {
                    self.pos = off;
                    return Ok(Step::Damage(SegDamage {
                        offset: rec_start,
                        resume_at: off,
                        at: off,
                        reason: "record interrupted by a sync marker".into(),
                        unsupported: false,
                    }));
                }
                if marker_claim(payload, off).is_none() {
                    let next = off + HDR + len;
                    return Ok(self.damage(off, next, "malformed sync marker"));
                }
                // Evidence for recovery (see `synced_after`), not a record.
                self.pos = off + HDR + len;
                continue;
            }
            let Some(ty) = FragmentType::from_u8(h.ty) else {
                self.pos = off + HDR + len;
                return Ok(Step::Damage(SegDamage {
                    offset: off,
                    resume_at: self.pos,
                    reason: format!("unknown fragment type {}", h.ty),
                    at: off,
                    unsupported: true,
                }));
            };
            let next = off + HDR + len;
            match (ty, rec.as_mut()) {
                (FragmentType::Full, None) => {
                    let payload = payload.to_vec();
                    self.pos = next;
                    return Ok(Step::Record {
                        offset: off,
                        end: next,
                        payload,
                    });
                }
                (FragmentType::First, None) => {
                    if len as usize > max_record {
                        return Ok(self.damage(
                            off,
                            Self::next_block(off),
                            "record exceeds the batch size limit",
                        ));
                    }
                    rec = Some((off, payload.to_vec()));
                }
                (FragmentType::Full | FragmentType::First, Some(_)) => {
                    // The partial record before this fragment is damaged; resume here.
                    self.pos = off;
                    return Ok(Step::Damage(SegDamage {
                        offset: rec_start,
                        resume_at: off,
                        at: off,
                        reason: "record interrupted by a new record".into(),
                        unsupported: false,
                    }));
                }
                (FragmentType::Middle | FragmentType::Last, None) => {
                    return Ok(self.damage(
                        off,
                        next,
                        "continuation fragment without a first fragment",
                    ));
                }
                (FragmentType::Middle | FragmentType::Last, Some((_, buf))) => {
                    if buf.len() + len as usize > max_record {
                        return Ok(self.damage(
                            rec_start,
                            Self::next_block(off),
                            "record exceeds the batch size limit",
                        ));
                    }
                    buf.extend_from_slice(payload);
                    if ty == FragmentType::Last {
                        self.pos = next;
                        let payload = rec.map(|r| r.1).unwrap_or_default();
                        return Ok(Step::Record {
                            offset: rec_start,
                            end: next,
                            payload,
                        });
                    }
                }
            }
            self.pos = next;
        }
    }

    /// True if any valid fragment (checksum and type good, fully below the limit)
    /// starts after the damaged fragment at `at`: used to tell a torn tail (nothing
    /// after) from damage in the middle. Checks where the next fragment would be if the
    /// damaged header's length is right, then every byte position of `at`'s block, then
    /// the first fragment of each later block (fragments never cross blocks, so every
    /// block starts with one).
    pub(crate) fn valid_data_after(&mut self, at: u64) -> Result<bool> {
        if at >= self.limit {
            return Ok(false);
        }
        if let Some(h) = self.bytes(at, HDR.min(self.limit - at))?
            && let Ok(h) = <[u8; FRAGMENT_HEADER_LEN]>::try_from(h)
        {
            let next = at + HDR + u64::from(FragmentHeader::decode(h).len);
            let next = if BS - next % BS < HDR {
                next + (BS - next % BS)
            } else {
                next
            };
            if next < self.limit && self.valid_fragment_at(next)? {
                return Ok(true);
            }
        }
        let block_start = at - at % BS;
        let block_end = (block_start + BS).min(self.limit);
        let mut block = vec![0u8; (block_end - block_start) as usize];
        self.file
            .read_exact_at(block_start, &mut block)
            .map_err(|e| Error::io(&self.path, e))?;
        let first = (at - block_start + 1) as usize;
        let type_at = FRAGMENT_HEADER_LEN - 1;
        let mut p = first;
        while let Some(rest) = block.get(p + type_at..) {
            // Cheap filter first: the next position whose type byte is a known type.
            let Some(skip) = rest.iter().position(|t| (1..=SYNC_MARKER_TYPE).contains(t)) else {
                break;
            };
            p += skip;
            let Some(hdr) = block.get(p..p + FRAGMENT_HEADER_LEN) else {
                break;
            };
            let Ok(hdr) = <[u8; FRAGMENT_HEADER_LEN]>::try_from(hdr) else {
                break;
            };
            let h = FragmentHeader::decode(hdr);
            let end = p + FRAGMENT_HEADER_LEN + usize::from(h.len);
            if (block_start as usize % BLOCK_SIZE) + end <= BLOCK_SIZE
                && let Some(payload) = block.get(p + FRAGMENT_HEADER_LEN..end)
                && fragment_crc(h.ty, self.number, payload) == h.crc
            {
                return Ok(true);
            }
            p += 1;
        }
        let mut b = block_start + BS;
        while b < self.limit {
            if self.valid_fragment_at(b)? {
                return Ok(true);
            }
            b += BS;
        }
        Ok(false)
    }

    /// The sync marker after the damage at `from` that claims the most (a valid
    /// checksum and a well-formed claim), or `None` (always in a version 1 segment).
    /// Recovery asks this at damage: a marker after it saying the damaged bytes were
    /// synced proves the damage is not a lost unsynced write.
    ///
    /// Only real fragments count: the chain of fragments is walked from the start of
    /// every block after the damaged one (a block always begins with a fragment
    /// header), and in the damaged block past the damaged fragment when its header
    /// still reads as one (a known type, a length that fits). Bytes inside a payload
    /// are never read as a marker, so a stored value that looks like one (a user's
    /// bytes, an archived WAL segment) proves nothing.
    pub(crate) fn synced_after(&mut self, from: u64) -> Result<Option<SyncMarker>> {
        if self.version < 2 {
            return Ok(None);
        }
        let mut best: Option<SyncMarker> = None;
        let damaged_block = from - from % BS;
        if let Some(next) = self.past_damaged_fragment(from)? {
            self.walk_block(next, &mut best)?;
        }
        let mut block = damaged_block + BS;
        while block < self.limit {
            self.walk_block(block, &mut best)?;
            block += BS;
        }
        Ok(best)
    }

    /// Where the fragment after the damaged one at `at` starts, if its header still
    /// reads as a fragment header (a known, non-zero type and a length that fits the
    /// block).
    fn past_damaged_fragment(&mut self, at: u64) -> Result<Option<u64>> {
        let block_end = (at - at % BS + BS).min(self.limit);
        if at + HDR > block_end {
            return Ok(None);
        }
        let Some(h) = self.bytes(at, HDR)? else {
            return Ok(None);
        };
        let Ok(h) = <[u8; FRAGMENT_HEADER_LEN]>::try_from(h) else {
            return Ok(None);
        };
        let h = FragmentHeader::decode(h);
        let known = FragmentType::from_u8(h.ty).is_some() || h.ty == SYNC_MARKER_TYPE;
        let next = at + HDR + u64::from(h.len);
        Ok((known && next <= block_end).then_some(next))
    }

    /// Walks the fragments of one block from `p` (a fragment boundary) while they are
    /// valid, keeping the sync marker that claims the most.
    fn walk_block(&mut self, mut p: u64, best: &mut Option<SyncMarker>) -> Result<()> {
        let block_end = (p - p % BS + BS).min(self.limit);
        while p + HDR <= block_end {
            if !self.valid_fragment_at(p)? {
                return Ok(());
            }
            let Some(h) = self.bytes(p, HDR)? else {
                return Ok(());
            };
            let Ok(h) = <[u8; FRAGMENT_HEADER_LEN]>::try_from(h) else {
                return Ok(());
            };
            let h = FragmentHeader::decode(h);
            if h.ty == SYNC_MARKER_TYPE
                && let Some(payload) = self.bytes(p + HDR, u64::from(h.len))?
                && let Some(synced_to) = marker_claim(payload, p)
                && best.is_none_or(|b| synced_to > b.synced_to)
            {
                *best = Some(SyncMarker { at: p, synced_to });
            }
            p += HDR + u64::from(h.len);
        }
        Ok(())
    }

    fn valid_fragment_at(&mut self, p: u64) -> Result<bool> {
        let left = BS - p % BS;
        if left < HDR {
            return Ok(false);
        }
        let Some(h) = self.bytes(p, HDR)? else {
            return Ok(false);
        };
        let Ok(h) = <[u8; FRAGMENT_HEADER_LEN]>::try_from(h) else {
            return Ok(false);
        };
        let h = FragmentHeader::decode(h);
        let known = FragmentType::from_u8(h.ty).is_some() || h.ty == SYNC_MARKER_TYPE;
        if !known || HDR + u64::from(h.len) > left {
            return Ok(false);
        }
        let number = self.number;
        match self.bytes(p + HDR, u64::from(h.len))? {
            Some(payload) => Ok(fragment_crc(h.ty, number, payload) == h.crc),
            None => Ok(false),
        }
    }
}
