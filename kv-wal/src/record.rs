//! The log's record framing on its own, for other logs: a manifest, say.
//!
//! [`RecordWriter`] frames arbitrary payloads exactly as the WAL frames batches (32 KiB
//! blocks of CRC'd FULL/FIRST/MIDDLE/LAST fragments; the CRC covers the fragment type and
//! a caller-chosen log number, so a fragment copied from another log does not validate)
//! into any [`WritableFile`], with no segment header. [`RecordReader`] reads such a file
//! back from memory and classifies damage: a record cut off by the end of the file, or
//! followed only by zeros, is a torn tail (a crash during an append); anything else,
//! including a complete fragment that fails its checksum at the very end, is
//! corruption.

use std::io;

use crate::format::{
    BLOCK_SIZE, FRAGMENT_HEADER_LEN, FragmentCrc, FragmentHeader, FragmentType, fragment_crc,
    frame_record,
};
use crate::fs::WritableFile;

/// Appends framed records to a file.
///
/// A failed write or sync poisons the writer: every later call fails, because what
/// reached the disk is unknown.
///
/// ```
/// use kv_wal::{FaultFs, Fs, RecordReader, RecordWriter, read_all};
/// use std::path::Path;
/// let fs = FaultFs::new(1);
/// let path = Path::new("/log");
/// let mut w = RecordWriter::new(fs.create(path)?, 7, 0);
/// w.add_record(b"first")?;
/// w.add_record(&vec![42u8; 100_000])?; // spans blocks
/// w.sync()?;
/// let bytes = read_all(&fs, path)?;
/// let records: Vec<_> = RecordReader::new(&bytes, 7).collect::<Result<_, _>>().unwrap();
/// assert_eq!(records[0].payload, b"first");
/// assert_eq!(records[1].payload.len(), 100_000);
/// // The same bytes read as another log number do not validate.
/// assert!(RecordReader::new(&bytes, 8).next().unwrap().is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct RecordWriter {
    file: Box<dyn WritableFile>,
    crc: FragmentCrc,
    offset: u64,
    buf: Vec<u8>,
    failed: bool,
}

impl RecordWriter {
    /// Writes records to `file` (whose append cursor is at `offset`) for log
    /// `log_number`.
    pub fn new(file: Box<dyn WritableFile>, log_number: u64, offset: u64) -> Self {
        RecordWriter {
            file,
            crc: FragmentCrc::new(log_number),
            offset,
            buf: Vec::new(),
            failed: false,
        }
    }

    fn check(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(
                "an earlier write or sync of this log failed",
            ));
        }
        Ok(())
    }

    /// Appends one record (not yet durable: see [`sync`](Self::sync)).
    pub fn add_record(&mut self, payload: &[u8]) -> io::Result<()> {
        self.check()?;
        self.buf.clear();
        let end = frame_record(&mut self.buf, self.offset, &self.crc, payload, &[]);
        if let Err(e) = self.file.append(&self.buf) {
            self.failed = true;
            return Err(e);
        }
        self.offset = end;
        Ok(())
    }

    /// Makes every appended record durable (data and the file's size).
    pub fn sync(&mut self) -> io::Result<()> {
        self.check()?;
        if let Err(e) = self.file.sync_all() {
            self.failed = true;
            return Err(e);
        }
        Ok(())
    }

    /// The file offset after the last record.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// A record read back by [`RecordReader`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Offset of the record's first fragment.
    pub offset: u64,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Damage met by [`RecordReader`]; reading stops there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordDamage {
    /// Where the damaged record (or fragment) starts.
    pub offset: u64,
    /// What was wrong.
    pub reason: String,
    /// True for a record cut off by the end of the file (or by a zero-filled
    /// remainder): an interrupted append, not corruption.
    pub torn_tail: bool,
}

/// Reads the records of a framed log held in memory. Yields records in order, then at
/// most one [`RecordDamage`] and stops. Never panics, whatever the bytes.
#[derive(Debug)]
pub struct RecordReader<'a> {
    data: &'a [u8],
    log_number: u64,
    pos: usize,
    done: bool,
}

impl<'a> RecordReader<'a> {
    /// Reads `data`, framed for log `log_number`.
    pub fn new(data: &'a [u8], log_number: u64) -> Self {
        RecordReader {
            data,
            log_number,
            pos: 0,
            done: false,
        }
    }

    /// Whether any non-zero byte follows `from`: a zero-filled remainder is what an
    /// interrupted append or preallocation leaves, anything else is not.
    fn anything_after(&self, from: usize) -> bool {
        self.data
            .get(from..)
            .is_some_and(|rest| rest.iter().any(|&b| b != 0))
    }

    /// Whether a valid fragment (plausible header and matching checksum) starts at any
    /// offset from `from` on. Only run on damage, so its cost (a scan of the rest of
    /// the file) is paid once, on the error path.
    fn valid_fragment_after(&self, from: usize) -> bool {
        (from..self.data.len()).any(|p| matches!(self.fragment_at(p), Ok(Some(_))))
    }

    /// The fragment at `p`: `Ok(None)` for a zero header, `Err` for damage.
    #[allow(clippy::type_complexity)]
    fn fragment_at(&self, p: usize) -> Result<Option<(FragmentHeader, &'a [u8])>, (String, bool)> {
        let hdr = self.data.get(p..p + FRAGMENT_HEADER_LEN).ok_or_else(|| {
            (
                "fragment header cut off by the end of the file".to_string(),
                true,
            )
        })?;
        let mut h = [0u8; FRAGMENT_HEADER_LEN];
        h.copy_from_slice(hdr);
        let header = FragmentHeader::decode(h);
        if header.is_zero() {
            return Ok(None);
        }
        if FragmentType::from_u8(header.ty).is_none() {
            return Err((format!("unknown fragment type {}", header.ty), false));
        }
        let room = (BLOCK_SIZE - p % BLOCK_SIZE).saturating_sub(FRAGMENT_HEADER_LEN);
        if usize::from(header.len) > room {
            return Err((
                format!("fragment length {} overruns its block", header.len),
                false,
            ));
        }
        let start = p + FRAGMENT_HEADER_LEN;
        let payload = self
            .data
            .get(start..start + usize::from(header.len))
            .ok_or_else(|| {
                (
                    "fragment payload cut off by the end of the file".to_string(),
                    true,
                )
            })?;
        if fragment_crc(header.ty, self.log_number, payload) != header.crc {
            return Err(("fragment checksum mismatch".to_string(), false));
        }
        Ok(Some((header, payload)))
    }

    fn damage(
        &mut self,
        offset: usize,
        torn_tail: bool,
        reason: String,
    ) -> Option<Result<Record, RecordDamage>> {
        self.done = true;
        Some(Err(RecordDamage {
            offset: offset as u64,
            torn_tail,
            reason,
        }))
    }
}

impl Iterator for RecordReader<'_> {
    type Item = Result<Record, RecordDamage>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut record: Option<(usize, Vec<u8>)> = None;
        loop {
            if BLOCK_SIZE - self.pos % BLOCK_SIZE < FRAGMENT_HEADER_LEN {
                self.pos = self.pos.next_multiple_of(BLOCK_SIZE);
            }
            if self.pos >= self.data.len() {
                self.done = true;
                return match record {
                    None => None,
                    Some((start, _)) => self.damage(
                        start,
                        true,
                        "record cut off by the end of the file".to_string(),
                    ),
                };
            }
            let at = self.pos;
            let (header, payload) = match self.fragment_at(at) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    // Zeros: the end of the log if nothing but zeros follows (a record
                    // interrupted by them is a torn tail).
                    let start = record.as_ref().map_or(at, |r| r.0);
                    let zero_tail = !self.anything_after(at);
                    if record.is_none() && zero_tail {
                        self.done = true;
                        return None;
                    }
                    return self.damage(
                        start,
                        zero_tail,
                        "zero-filled fragment header".to_string(),
                    );
                }
                Err((reason, truncated)) => {
                    // Only a record cut off by the end of the file is a torn tail: every
                    // record in this framing was synced before anything relied on it, so
                    // a complete fragment that fails its checksum is damage, wherever it
                    // is.
                    // (A length corrupted to point past the end looks the same as a cut
                    // off record, so a "cut off" verdict also needs nothing valid after.)
                    let start = record.as_ref().map_or(at, |r| r.0);
                    let torn = truncated && !self.valid_fragment_after(at + 1);
                    return self.damage(start, torn, format!("{reason} at offset {at}"));
                }
            };
            self.pos = at + FRAGMENT_HEADER_LEN + payload.len();
            let ty = FragmentType::from_u8(header.ty);
            match (ty, record.as_mut()) {
                (Some(FragmentType::Full), None) => {
                    return Some(Ok(Record {
                        offset: at as u64,
                        payload: payload.to_vec(),
                    }));
                }
                (Some(FragmentType::First), None) => record = Some((at, payload.to_vec())),
                (Some(FragmentType::Middle), Some((_, buf))) => buf.extend_from_slice(payload),
                (Some(FragmentType::Last), Some((start, buf))) => {
                    buf.extend_from_slice(payload);
                    let start = *start;
                    let payload = std::mem::take(buf);
                    return Some(Ok(Record {
                        offset: start as u64,
                        payload,
                    }));
                }
                (other, open) => {
                    let start = open.map_or(at, |r| r.0);
                    return self.damage(
                        start,
                        false,
                        format!("fragment type {other:?} out of sequence at offset {at}"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(records: &[Vec<u8>], log: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut off = 0;
        for r in records {
            off = frame_record(&mut out, off, &FragmentCrc::new(log), r, &[]);
        }
        out
    }

    fn sample() -> Vec<Vec<u8>> {
        vec![
            b"a".to_vec(),
            vec![7u8; 40_000],
            vec![],
            vec![9u8; BLOCK_SIZE - 2 * FRAGMENT_HEADER_LEN - 1],
            b"z".to_vec(),
        ]
    }

    #[test]
    fn round_trip_across_blocks() {
        let recs = sample();
        let bytes = framed(&recs, 3);
        let got: Vec<Vec<u8>> = RecordReader::new(&bytes, 3)
            .map(|r| r.unwrap().payload)
            .collect();
        assert_eq!(got, recs);
    }

    #[test]
    fn truncations_are_torn_tails_or_clean_prefixes() {
        let recs = sample();
        let bytes = framed(&recs, 3);
        // Every 31st length, plus every length within 8 bytes of a record boundary
        // (where the interesting cases are); each cut checks the rest of the file.
        let mut boundaries = vec![0];
        let mut off = 0;
        for r in &recs {
            let mut scratch = Vec::new();
            off = frame_record(&mut scratch, off, &FragmentCrc::new(3), r, &[]);
            boundaries.push(off as usize);
        }
        let cuts = (0..bytes.len())
            .filter(|c| c.is_multiple_of(31) || boundaries.iter().any(|&b| c.abs_diff(b) <= 8));
        for cut in cuts {
            let mut got = Vec::new();
            for item in RecordReader::new(&bytes[..cut], 3) {
                match item {
                    Ok(r) => got.push(r.payload),
                    Err(d) => assert!(d.torn_tail, "cut {cut}: {d:?}"),
                }
            }
            assert_eq!(got[..], recs[..got.len()], "cut {cut}");
        }
    }

    #[test]
    fn a_flip_is_detected_and_never_yields_a_wrong_record() {
        let recs = sample();
        let bytes = framed(&recs, 3);
        for i in (0..bytes.len()).step_by(97) {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            for item in RecordReader::new(&b, 3) {
                match item {
                    Ok(r) => assert!(
                        recs.contains(&r.payload),
                        "flip at {i} produced a record never written"
                    ),
                    Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn damage_before_valid_data_is_corruption() {
        let recs = sample();
        let mut bytes = framed(&recs, 3);
        bytes[2] ^= 1; // first record's CRC; valid records follow in later blocks
        let items: Vec<_> = RecordReader::new(&bytes, 3).collect();
        assert_eq!(items.len(), 1);
        let d = items[0].clone().unwrap_err();
        assert!(!d.torn_tail && d.offset == 0, "{d:?}");
    }

    #[test]
    fn damage_in_a_single_block_log_is_corruption_not_a_torn_tail() {
        let recs: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 30]).collect();
        let bytes = framed(&recs, 5);
        assert!(bytes.len() < BLOCK_SIZE);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let mut got = 0;
            for item in RecordReader::new(&b, 5) {
                match item {
                    Ok(r) => {
                        assert_eq!(r.payload, recs[got], "flip at {i}");
                        got += 1;
                    }
                    Err(d) => {
                        // A flipped length in the last record can make it look cut off
                        // by the end of the file, exactly as an interrupted append does;
                        // anywhere else damage is corruption.
                        assert!(
                            !d.torn_tail || got == recs.len() - 1,
                            "flip at {i} taken for a torn tail: {d:?}"
                        );
                        break;
                    }
                }
            }
            assert!(got < recs.len(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn zero_tail_is_the_end() {
        let mut bytes = framed(&[b"x".to_vec()], 1);
        bytes.resize(bytes.len() + 5000, 0);
        let items: Vec<_> = RecordReader::new(&bytes, 1).collect();
        assert_eq!(items.len(), 1);
        assert!(items[0].is_ok());
    }
}
