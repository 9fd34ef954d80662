//! Replay: a streaming cursor over every batch of a log directory, applying a
//! [`RecoveryMode`] to damage.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{Batch, Limits};
use crate::error::{Error, Result};
use crate::format::{SEGMENT_HEADER_LEN, parse_segment_file_name, segment_path};
use crate::fs::Fs;
use crate::options::{RecoveryMode, WalOptions};
use crate::segment::{HeaderState, SegDamage, SegmentReader, Step};

/// A contiguous range of sequence numbers: `first ..= first + count - 1` (empty when
/// `count` is 0; an empty batch takes no sequence number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeqRange {
    /// The first sequence number (for an empty range: the next one to be assigned).
    pub first: u64,
    /// How many sequence numbers.
    pub count: u64,
}

impl SeqRange {
    /// The last sequence number, `None` if empty.
    pub fn last(&self) -> Option<u64> {
        (self.count > 0).then(|| self.first + self.count - 1)
    }
    /// One past the last sequence number.
    pub fn end(&self) -> u64 {
        self.first + self.count
    }
    /// True if the range holds no sequence number.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// True if `seq` is in the range.
    pub fn contains(&self, seq: u64) -> bool {
        seq >= self.first && seq < self.end()
    }
}

/// A batch read back from the log, with where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogBatch {
    /// Sequence numbers of the batch's operations, in order.
    pub seqs: SeqRange,
    /// The operations.
    pub batch: Batch,
    /// The segment number.
    pub segment: u64,
    /// Offset of the record's first fragment in the segment file.
    pub offset: u64,
    /// Offset just past the record's last fragment.
    pub end: u64,
}

/// What recovery did about a piece of damage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DamageOutcome {
    /// A torn or damaged tail of the last segment, taken as the end of the log
    /// ([`RecoveryMode::TolerateTornTail`]).
    TornTail,
    /// Replay stopped here ([`RecoveryMode::PointInTime`]).
    Stopped,
    /// The damaged bytes were skipped and replay went on ([`RecoveryMode::SkipDamaged`]).
    Skipped,
}

/// A damaged region met during replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The segment number.
    pub segment: u64,
    /// The segment's path.
    pub path: PathBuf,
    /// Offset of the first damaged byte or of the damaged record's first fragment.
    pub offset: u64,
    /// Bytes dropped because of it (for [`DamageOutcome::Stopped`]: everything after
    /// `offset` in this segment and all later segments).
    pub bytes: u64,
    /// What check failed.
    pub reason: String,
    /// What recovery did.
    pub outcome: DamageOutcome,
}

/// What a replay found: counts, the last sequence number, and all damage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Batches read (including those below the requested start sequence number).
    pub batches: u64,
    /// The last sequence number read, if any operation was read.
    pub last_seq: Option<u64>,
    /// Every damaged region, in log order.
    pub damage: Vec<Damage>,
    /// Segments read.
    pub segments: Vec<u64>,
    /// Files truncated on reopen: (path, old length, new length).
    pub truncated: Vec<(PathBuf, u64, u64)>,
    /// Segment files moved aside on reopen (renamed to `NNNNNN.wal.dropped`).
    pub set_aside: Vec<PathBuf>,
}

/// Per-segment facts gathered while reading, used by recovery to cut the log.
#[derive(Clone, Debug)]
pub(crate) struct SegInfo {
    pub(crate) number: u64,
    pub(crate) path: PathBuf,
    pub(crate) base_seq: Option<u64>,
    /// End of the last good record (or of the header).
    pub(crate) good_end: u64,
    pub(crate) len: u64,
}

/// A streaming replay of a log directory: yields whole batches in sequence order,
/// applying the [`RecoveryMode`] to damage. It reads one block at a time and never
/// holds more than one record in memory.
///
/// ```
/// use std::sync::Arc;
/// use kv_wal::{Batch, FaultFs, LogReader, Wal, WalOptions};
/// let fs = Arc::new(FaultFs::new(1));
/// let opts = WalOptions::default().fs(fs);
/// let wal = Wal::open("/log", opts.clone())?;
/// let mut b = Batch::new();
/// b.put("k", "v");
/// wal.append(&b)?;
/// wal.close()?;
/// let mut reader = LogReader::open("/log", &opts)?;
/// let first = reader.next().unwrap()?;
/// assert_eq!(first.seqs.first, 1);
/// assert!(reader.next().is_none());
/// assert!(reader.report().damage.is_empty());
/// # Ok::<(), kv_wal::Error>(())
/// ```
#[derive(Debug)]
pub struct LogReader {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    mode: RecoveryMode,
    limits: Limits,
    segments: Vec<u64>,
    idx: usize,
    cur: Option<SegmentReader>,
    expected: Option<u64>,
    max_base: Option<u64>,
    from_seq: u64,
    done: bool,
    failed: bool,
    report: RecoveryReport,
    pub(crate) infos: Vec<SegInfo>,
    /// Index into `segments` where replay stopped because of damage.
    pub(crate) stopped_in: Option<usize>,
}

/// Lists segment numbers of `dir`, ascending.
pub(crate) fn list_segments(fs: &dyn Fs, dir: &Path) -> Result<Vec<u64>> {
    let mut v: Vec<u64> = fs
        .list_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .iter()
        .filter_map(|n| parse_segment_file_name(n))
        .collect();
    v.sort_unstable();
    Ok(v)
}

impl LogReader {
    /// Opens a replay of the log in `dir` with `opts`' file system, recovery mode and
    /// limits, from the first retained batch.
    pub fn open(dir: impl AsRef<Path>, opts: &WalOptions) -> Result<LogReader> {
        let dir = dir.as_ref().to_path_buf();
        let segments = list_segments(opts.fs.as_ref(), &dir)?;
        Ok(LogReader {
            fs: opts.fs.clone(),
            dir,
            mode: opts.recovery_mode,
            limits: opts.limits,
            segments,
            idx: 0,
            cur: None,
            expected: None,
            max_base: None,
            from_seq: 0,
            done: false,
            failed: false,
            report: RecoveryReport::default(),
            infos: Vec::new(),
            stopped_in: None,
        })
    }

    /// Skips batches whose sequence numbers are all below `seq` (they are still read
    /// and checked). A batch that straddles `seq` is yielded whole.
    pub fn from_seq(mut self, seq: u64) -> Self {
        self.from_seq = seq;
        self
    }

    /// What the replay found so far (complete once the iterator returned `None`).
    pub fn report(&self) -> &RecoveryReport {
        &self.report
    }

    pub(crate) fn into_report(self) -> RecoveryReport {
        self.report
    }

    /// The sequence number the next batch appended after this log would get: one past
    /// the last good batch (or the highest segment base if no batch was read).
    pub(crate) fn next_seq(&self) -> Option<u64> {
        match (self.expected, self.max_base) {
            (Some(e), Some(m)) => Some(e.max(m)),
            (e, m) => e.or(m),
        }
    }

    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    pub(crate) fn mode(&self) -> RecoveryMode {
        self.mode
    }

    pub(crate) fn segment_numbers(&self) -> &[u64] {
        &self.segments
    }

    fn later_bytes(&self) -> u64 {
        let mut total = 0;
        for n in self.segments.iter().skip(self.idx + 1) {
            total += self.fs.file_size(&segment_path(&self.dir, *n)).unwrap_or(0);
        }
        total
    }

    /// For [`RecoveryMode::PointInTime`]: evidence that survives a power loss that the
    /// damaged bytes at `offset` of the current segment were durable, so that their
    /// damage is corruption, not a write lost with the power. A later segment is such
    /// evidence (a segment is truncated and synced in full before the next one is
    /// created, by the writer and by recovery alike), and so is a sync marker after the
    /// damage claiming an offset past it. `None` in other modes.
    fn durable_evidence(&mut self, offset: u64, scan: bool) -> Result<Option<String>> {
        if self.mode != RecoveryMode::PointInTime {
            return Ok(None);
        }
        if let Some(later) = self.segments.get(self.idx + 1) {
            return Ok(Some(format!(
                "the data was durable: segment {later} follows, and a segment is synced in \
                 full before the next one is created"
            )));
        }
        if scan
            && let Some(reader) = self.cur.as_mut()
            && let Some(m) = reader.synced_after(offset)?
            && m.synced_to > offset
        {
            return Ok(Some(format!(
                "the data was durable: the sync marker at offset {} says the segment was \
                 synced up to offset {}",
                m.at, m.synced_to
            )));
        }
        Ok(None)
    }

    /// Evidence that a segment whose header is missing or wrong held durable data:
    /// bytes after the header. Its header was written and fsynced when it was created,
    /// before anything was appended, so a zeroed or garbled header with data behind it
    /// is damage to durable bytes, not a creation cut short (asked by the modes that
    /// tolerate a cut-short end of the log; the others refuse or skip any damage).
    fn data_after_header(&self, reader: &mut SegmentReader) -> Result<Option<String>> {
        if !matches!(
            self.mode,
            RecoveryMode::PointInTime | RecoveryMode::TolerateTornTail
        ) {
            return Ok(None);
        }
        Ok(reader.first_data_after_header()?.map(|at| {
            format!(
                "the segment holds data at offset {at}: its header was written and synced \
                 before anything was appended"
            )
        }))
    }

    /// Applies the mode to a damaged region. `Ok(())` means "go on" (skip) or "stopped"
    /// (`self.done` set). `durable`: evidence that the damaged bytes were durable (see
    /// [`LogReader::durable_evidence`]), which makes point-in-time recovery fail.
    fn handle_damage(
        &mut self,
        number: u64,
        path: &Path,
        d: SegDamage,
        seg_len: u64,
        tail: bool,
        durable: Option<String>,
    ) -> Result<()> {
        let damage = |outcome, bytes| Damage {
            segment: number,
            path: path.to_path_buf(),
            offset: d.offset,
            bytes,
            reason: d.reason.clone(),
            outcome,
        };
        if d.unsupported && self.mode != RecoveryMode::SkipDamaged {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                reason: format!("{} at offset {}", d.reason, d.offset),
            });
        }
        match self.mode {
            RecoveryMode::AbsoluteConsistency => Err(Error::corruption(path, d.offset, d.reason)),
            RecoveryMode::TolerateTornTail if !tail => {
                Err(Error::corruption(path, d.offset, d.reason))
            }
            RecoveryMode::TolerateTornTail => {
                tracing::warn!(path = %path.display(), offset = d.offset, reason = %d.reason, "torn tail: end of the log");
                self.report.damage.push(damage(
                    DamageOutcome::TornTail,
                    seg_len.saturating_sub(d.offset),
                ));
                self.stop();
                Ok(())
            }
            RecoveryMode::PointInTime if durable.is_some() => {
                let why = durable.unwrap_or_default();
                Err(Error::corruption(
                    path,
                    d.offset,
                    format!("{} ({why})", d.reason),
                ))
            }
            RecoveryMode::PointInTime => {
                let bytes = seg_len.saturating_sub(d.offset) + self.later_bytes();
                tracing::warn!(path = %path.display(), offset = d.offset, bytes, reason = %d.reason, "point-in-time recovery stops at damage");
                self.report
                    .damage
                    .push(damage(DamageOutcome::Stopped, bytes));
                self.stop();
                Ok(())
            }
            RecoveryMode::SkipDamaged => {
                let bytes = d.resume_at.saturating_sub(d.offset);
                tracing::warn!(path = %path.display(), offset = d.offset, bytes, reason = %d.reason, "skipping damaged bytes");
                self.report
                    .damage
                    .push(damage(DamageOutcome::Skipped, bytes));
                Ok(())
            }
        }
    }

    fn stop(&mut self) {
        self.stopped_in = Some(self.idx);
        self.done = true;
        self.cur = None;
    }

    fn open_segment(&mut self, number: u64) -> Result<()> {
        let path = segment_path(&self.dir, number);
        let is_last = self.idx + 1 == self.segments.len();
        let (mut reader, state) = SegmentReader::open(
            self.fs.as_ref(),
            &path,
            number,
            self.limits.max_batch_len,
            None,
        )?;
        let len = reader.limit();
        self.report.segments.push(number);
        let mut info = SegInfo {
            number,
            path: path.clone(),
            base_seq: None,
            good_end: SEGMENT_HEADER_LEN as u64,
            len,
        };
        let skip_segment = |reason: String| SegDamage {
            offset: 0,
            resume_at: len,
            reason,
            at: 0,
            unsupported: false,
        };
        match state {
            HeaderState::Ok(h) => {
                info.base_seq = Some(h.base_seq);
                self.max_base = Some(self.max_base.map_or(h.base_seq, |m| m.max(h.base_seq)));
                self.infos.push(info);
                match self.expected {
                    Some(e) if h.base_seq != e => {
                        let reason = format!(
                            "segment starts at sequence number {} but the log continues at {e}",
                            h.base_seq
                        );
                        if self.mode == RecoveryMode::SkipDamaged && h.base_seq > e {
                            self.handle_damage(
                                number,
                                &path,
                                skip_segment_gap(reason),
                                len,
                                false,
                                None,
                            )?;
                            self.expected = Some(h.base_seq);
                        } else if self.mode != RecoveryMode::SkipDamaged {
                            // A valid header: the segment before was sealed (truncated
                            // and synced in full) before this one was created, so the
                            // batches missing between them were durable.
                            let durable = (self.mode == RecoveryMode::PointInTime).then(|| {
                                "the data was durable: this segment was created only after \
                                 the one before it was synced in full"
                                    .to_string()
                            });
                            self.handle_damage(
                                number,
                                &path,
                                SegDamage {
                                    offset: 0,
                                    resume_at: 0,
                                    reason,
                                    at: 0,
                                    unsupported: false,
                                },
                                len,
                                false,
                                durable,
                            )?;
                            if self.done {
                                return Ok(());
                            }
                        } else {
                            // Skip mode, overlap: records going backwards are skipped one by one.
                            self.handle_damage(
                                number,
                                &path,
                                skip_segment_gap(reason),
                                len,
                                false,
                                None,
                            )?;
                        }
                    }
                    None => self.expected = Some(h.base_seq),
                    _ => {}
                }
                self.cur = Some(reader);
            }
            HeaderState::Torn { len } => {
                self.infos.push(info);
                let d = SegDamage {
                    offset: 0,
                    resume_at: len,
                    reason: format!("segment header cut off or never written ({len} bytes)"),
                    at: 0,
                    unsupported: false,
                };
                let written = self.data_after_header(&mut reader)?;
                // Bytes behind it: the header was written, then damaged; not a torn tail.
                let tail = is_last && written.is_none();
                let durable = match self.durable_evidence(0, false)? {
                    Some(e) => Some(e),
                    None => written,
                };
                self.handle_damage(number, &path, d, len, tail, durable)?;
                self.idx += 1;
            }
            HeaderState::Corrupt(reason) => {
                self.infos.push(info);
                let durable = match self.durable_evidence(0, false)? {
                    Some(e) => Some(e),
                    None => self.data_after_header(&mut reader)?,
                };
                self.handle_damage(number, &path, skip_segment(reason), len, false, durable)?;
                self.idx += 1;
            }
            HeaderState::Unsupported(reason) => {
                return Err(Error::Unsupported { path, reason });
            }
        }
        Ok(())
    }

    fn advance(&mut self) -> Result<Option<LogBatch>> {
        loop {
            if self.done {
                return Ok(None);
            }
            let Some(reader) = self.cur.as_mut() else {
                let Some(&number) = self.segments.get(self.idx) else {
                    self.done = true;
                    return Ok(None);
                };
                self.open_segment(number)?;
                continue;
            };
            let step = reader.next()?;
            let number = self.segments.get(self.idx).copied().unwrap_or_default();
            let is_last = self.idx + 1 == self.segments.len();
            match step {
                Step::End => {
                    self.cur = None;
                    self.idx += 1;
                }
                Step::Damage(d) => {
                    let tail = self.mode == RecoveryMode::TolerateTornTail
                        && is_last
                        && !reader.valid_data_after(d.at)?;
                    let (path, len) = (reader.path().to_path_buf(), reader.limit());
                    let durable = self.durable_evidence(d.offset, true)?;
                    self.handle_damage(number, &path, d, len, tail, durable)?;
                }
                Step::Record {
                    offset,
                    end,
                    payload,
                } => {
                    let path = reader.path().to_path_buf();
                    let len = reader.limit();
                    let (first, batch) = match Batch::decode(payload, &self.limits) {
                        Ok(x) => x,
                        Err(reason) => {
                            let d = SegDamage {
                                offset,
                                resume_at: end,
                                reason: format!("bad batch encoding: {reason}"),
                                at: offset,
                                unsupported: false,
                            };
                            let durable = self.durable_evidence(offset, true)?;
                            self.handle_damage(number, &path, d, len, false, durable)?;
                            continue;
                        }
                    };
                    let count = batch.len() as u64;
                    if let Some(e) = self.expected
                        && first != e
                    {
                        let reason =
                            format!("batch at sequence number {first} where {e} was expected");
                        let d = SegDamage {
                            offset,
                            resume_at: end,
                            reason,
                            at: offset,
                            unsupported: false,
                        };
                        if self.mode == RecoveryMode::SkipDamaged && first > e {
                            // A gap left by skipped records: report it and go on.
                            self.report.damage.push(Damage {
                                segment: number,
                                path: path.clone(),
                                offset,
                                bytes: 0,
                                reason: format!("sequence numbers {e}..{first} missing"),
                                outcome: DamageOutcome::Skipped,
                            });
                        } else {
                            let durable = self.durable_evidence(offset, true)?;
                            self.handle_damage(number, &path, d, len, false, durable)?;
                            continue;
                        }
                    }
                    self.expected = Some(first + count);
                    if let Some(info) = self.infos.last_mut() {
                        info.good_end = end;
                    }
                    self.report.batches += 1;
                    if count > 0 {
                        self.report.last_seq = Some(first + count - 1);
                    }
                    let seqs = SeqRange { first, count };
                    if seqs.end() <= self.from_seq && !(count == 0 && first >= self.from_seq) {
                        continue;
                    }
                    return Ok(Some(LogBatch {
                        seqs,
                        batch,
                        segment: number,
                        offset,
                        end,
                    }));
                }
            }
        }
    }
}

fn skip_segment_gap(reason: String) -> SegDamage {
    SegDamage {
        offset: 0,
        resume_at: 0,
        reason,
        at: 0,
        unsupported: false,
    }
}

impl Iterator for LogReader {
    type Item = Result<LogBatch>;
    fn next(&mut self) -> Option<Result<LogBatch>> {
        if self.failed {
            return None;
        }
        match self.advance() {
            Ok(b) => b.map(Ok),
            Err(e) => {
                self.failed = true;
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
