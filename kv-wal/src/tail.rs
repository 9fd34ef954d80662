//! `read_from`: a cursor over batches from a sequence number on, that keeps up with
//! the writer across appends and rotations.

use std::sync::Arc;
use std::time::Duration;

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::format::segment_path;
use crate::reader::{LogBatch, SeqRange};
use crate::segment::{HeaderState, SegmentReader, Step};
use crate::writer::shared::{Shared, relock};
use crate::writer::wal::Wal;

/// What [`TailCursor::next`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tail {
    /// The next batch.
    Batch(LogBatch),
    /// Everything written so far was read; more may come (see [`TailCursor::wait`]).
    CaughtUp,
    /// The log was closed and everything was read.
    Ended,
}

/// A cursor over the batches with sequence numbers `>= seq`, created by
/// [`Wal::read_from`]. It reads only what the writer has handed to the OS, follows
/// rotations into new segments, and fails with [`Error::NotRetained`] if retention
/// releases a segment it still needs (hold a [`RetentionPin`](crate::RetentionPin) to
/// prevent that). Damage is always an error here: the live log has been recovered.
///
/// ```
/// use std::sync::Arc;
/// use kv_wal::{Batch, FaultFs, Tail, Wal, WalOptions};
/// let wal = Wal::open("/t", WalOptions::default().fs(Arc::new(FaultFs::new(0))))?;
/// let mut cursor = wal.read_from(1)?;
/// assert_eq!(cursor.next()?, Tail::CaughtUp);
/// let mut b = Batch::new();
/// b.put("k", "v");
/// wal.append(&b)?;
/// wal.rotate()?;
/// wal.append(&b)?;
/// let Tail::Batch(first) = cursor.next()? else { panic!() };
/// let Tail::Batch(second) = cursor.next()? else { panic!() };
/// assert_eq!((first.seqs.first, second.seqs.first), (1, 2));
/// assert_eq!(cursor.next()?, Tail::CaughtUp);
/// # Ok::<(), kv_wal::Error>(())
/// ```
#[derive(Debug)]
pub struct TailCursor {
    shared: Arc<Shared>,
    segment: u64,
    reader: Option<SegmentReader>,
    expected: Option<u64>,
    from_seq: u64,
    seen: Option<(u64, u64, bool)>,
}

impl Wal {
    /// A cursor over batches with sequence numbers `>= seq` (a batch straddling `seq` is
    /// yielded whole; 0 means 1). Fails with [`Error::NotRetained`] if `seq` is below
    /// [`oldest_retained_seq`](Wal::oldest_retained_seq).
    pub fn read_from(&self, seq: u64) -> Result<TailCursor> {
        let seq = seq.max(1);
        let segs = relock(&self.shared.segments);
        let oldest = segs.first().map_or(1, |s| s.base_seq);
        if seq < oldest {
            return Err(Error::NotRetained {
                requested: seq,
                oldest,
            });
        }
        let segment = segs
            .iter()
            .rev()
            .find(|s| s.base_seq <= seq)
            .or(segs.first())
            .map_or(0, |s| s.number);
        Ok(TailCursor {
            shared: Arc::clone(&self.shared),
            segment,
            reader: None,
            expected: None,
            from_seq: seq,
            seen: None,
        })
    }
}

impl TailCursor {
    fn not_retained(&self) -> Error {
        let oldest = relock(&self.shared.segments)
            .first()
            .map_or(1, |s| s.base_seq);
        Error::NotRetained {
            requested: self.expected.unwrap_or(self.from_seq),
            oldest,
        }
    }

    fn open(&mut self) -> Result<()> {
        let sh = &*self.shared;
        let (known, base) = {
            let segs = relock(&sh.segments);
            let m = segs.iter().find(|s| s.number == self.segment);
            (m.is_some(), m.map(|s| s.base_seq))
        };
        if !known {
            return Err(self.not_retained());
        }
        if let (Some(e), Some(b)) = (self.expected, base)
            && b > e
        {
            // The segments holding e.. were released while this cursor lagged.
            return Err(self.not_retained());
        }
        let path = segment_path(&sh.dir, self.segment);
        let (reader, state) = match SegmentReader::open(
            sh.fs.as_ref(),
            &path,
            self.segment,
            sh.opts.limits.max_batch_len,
            None,
        ) {
            Ok(x) => x,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.not_retained());
            }
            Err(e) => return Err(e),
        };
        let h = match state {
            HeaderState::Ok(h) => h,
            HeaderState::Torn { .. } => {
                return Err(Error::corruption(&path, 0, "segment header missing"));
            }
            HeaderState::Corrupt(r) => return Err(Error::corruption(&path, 0, r)),
            HeaderState::Unsupported(reason) => return Err(Error::Unsupported { path, reason }),
        };
        if Some(h.base_seq) != base {
            return Err(Error::corruption(
                &path,
                0,
                "segment header disagrees with the log's segment list",
            ));
        }
        match self.expected {
            Some(e) if e != h.base_seq => {
                return Err(Error::corruption(
                    &path,
                    0,
                    format!(
                        "segment starts at sequence number {} but the log continues at {e}",
                        h.base_seq
                    ),
                ));
            }
            _ => self.expected = Some(h.base_seq),
        }
        self.reader = Some(reader);
        Ok(())
    }

    /// The next batch, or [`Tail::CaughtUp`] / [`Tail::Ended`]. Never blocks.
    #[expect(
        clippy::should_implement_trait,
        reason = "three-way result, not an Option"
    )]
    pub fn next(&mut self) -> Result<Tail> {
        loop {
            if self.reader.is_none() {
                self.open()?;
            }
            let w = *relock(&self.shared.written);
            self.seen = Some(w.position());
            let Some(reader) = self.reader.as_mut() else {
                return Err(Error::Closed);
            };
            if w.segment == self.segment {
                reader.set_limit(w.offset);
            } else {
                // Sealed: read to its (final) length.
                let len = reader.file_len()?;
                reader.set_limit(len);
            }
            match reader.next()? {
                Step::Record {
                    offset,
                    end,
                    payload,
                } => {
                    let path = reader.path().to_path_buf();
                    let (first, batch) =
                        Batch::decode(payload, &self.shared.opts.limits).map_err(|r| {
                            Error::corruption(&path, offset, format!("bad batch encoding: {r}"))
                        })?;
                    if let Some(e) = self.expected
                        && e != first
                    {
                        return Err(Error::corruption(
                            &path,
                            offset,
                            format!("batch at sequence number {first} where {e} was expected"),
                        ));
                    }
                    let seqs = SeqRange {
                        first,
                        count: batch.len() as u64,
                    };
                    self.expected = Some(seqs.end());
                    if seqs.end() <= self.from_seq && !(seqs.is_empty() && first >= self.from_seq) {
                        continue;
                    }
                    return Ok(Tail::Batch(LogBatch {
                        seqs,
                        batch,
                        segment: self.segment,
                        offset,
                        end,
                    }));
                }
                Step::Damage(d) => {
                    return Err(Error::corruption(reader.path(), d.offset, d.reason));
                }
                Step::End => {
                    if self.segment < w.segment {
                        let next = relock(&self.shared.segments)
                            .iter()
                            .map(|s| s.number)
                            .find(|n| *n > self.segment);
                        match next {
                            Some(n) => {
                                self.segment = n;
                                self.reader = None;
                            }
                            None => return Err(self.not_retained()),
                        }
                        continue;
                    }
                    return Ok(if w.closed {
                        Tail::Ended
                    } else {
                        Tail::CaughtUp
                    });
                }
            }
        }
    }

    /// Blocks until the writer hands more data to the OS (or rotates, or closes) after
    /// what this cursor last saw, or until `timeout`; returns true if something changed.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut w = relock(&self.shared.written);
        let seen = self.seen;
        w.waiters += 1;
        let (mut w, _) = self
            .shared
            .written_cv
            .wait_timeout_while(w, timeout, |w| Some(w.position()) == seen && !w.closed)
            .unwrap_or_else(|p| p.into_inner());
        w.waiters -= 1;
        Some(w.position()) != seen || w.closed
    }
}
