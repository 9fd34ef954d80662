//! Appending: a batch takes the next sequence numbers and a ticket, and is laid out
//! into the queue under the state lock (copied once), with a sync marker ahead of it
//! when an fsync moved the synced end of its segment.

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::format::{SEGMENT_HEADER_LEN, layout_record, layout_sync_marker};
use crate::options::{AppendOptions, SyncPolicy};
use crate::reader::SeqRange;
use crate::writer::position::{Need, Upto};
use crate::writer::queue::{Framing, Observed, Roll};
use crate::writer::shared::relock;
use crate::writer::wal::Wal;

impl Wal {
    /// Appends a batch under the log's sync policy; see [`Wal::append_with`].
    pub fn append(&self, batch: &Batch) -> Result<SeqRange> {
        self.append_with(batch, AppendOptions::default())
    }

    /// Appends a batch atomically and returns its sequence numbers (contiguous, one per
    /// operation; an empty batch takes none).
    ///
    /// Returns once the batch is handed to the OS (or buffered, with
    /// [`WalOptions::buffer_size`](crate::WalOptions::buffer_size)), and also durable if
    /// `opts.sync` (or the policy [`SyncPolicy::Always`]) asks for it. Limits are checked first: a batch over a
    /// limit fails with [`Error::LimitExceeded`] and nothing is written.
    pub fn append_with(&self, batch: &Batch, opts: AppendOptions) -> Result<SeqRange> {
        self.append_if(batch, opts, |_| Ok::<(), Error>(()))
    }

    /// Like [`Wal::append_with`], but first asks `admit` whether the batch may take the
    /// sequence numbers it would get; an `Err` from `admit` is returned with nothing
    /// written and no sequence number used.
    ///
    /// `admit` runs under the lock that hands out sequence numbers, after the limits
    /// are checked: calls to `admit` happen in sequence-number order, and no other
    /// batch is numbered between an `admit` and its batch. That is what an optimistic
    /// transaction needs to validate and take its place atomically. Keep it short, and
    /// do not call into this log from it (that would deadlock).
    ///
    /// ```
    /// use kv_wal::{AppendOptions, Batch, Wal, WalOptions};
    /// let dir = tempfile::tempdir()?;
    /// let wal = Wal::open(dir.path(), WalOptions::default())?;
    /// let mut b = Batch::new();
    /// b.put("k", "v");
    /// let seqs = wal.append_if(&b, AppendOptions::default(), |seqs| {
    ///     assert_eq!(seqs.first, 1); // the numbers the batch is about to take
    ///     Ok::<(), kv_wal::Error>(())
    /// })?;
    /// assert_eq!(seqs.first, 1);
    /// let refused = wal.append_if(&b, AppendOptions::default(), |_| {
    ///     Err::<(), Box<dyn std::error::Error>>("not now".into())
    /// });
    /// assert_eq!(refused.unwrap_err().to_string(), "not now");
    /// assert_eq!(wal.append(&b)?.first, 2); // the refused batch used no number
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append_if<E: From<Error>>(
        &self,
        batch: &Batch,
        opts: AppendOptions,
        admit: impl FnOnce(SeqRange) -> std::result::Result<(), E>,
    ) -> std::result::Result<SeqRange, E> {
        let sh = &*self.shared;
        let want_sync = opts
            .sync
            .unwrap_or(sh.opts.sync_policy == SyncPolicy::Always);
        let mut st = relock(&sh.state);
        st.usable()?;
        let first = st.next_seq;
        batch.check(&sh.opts.limits, first)?;
        let seqs = SeqRange {
            first,
            count: batch.len() as u64,
        };
        admit(seqs)?;
        st.next_seq = seqs.end();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        let st_ = &mut *st;
        let (q, frame) = (&mut st_.queue, &mut st_.frame);
        if frame.offset >= sh.opts.segment_size && frame.offset > SEGMENT_HEADER_LEN as u64 {
            // The segment is full: this batch starts the next one.
            q.rolls.push(Roll {
                at: q.bytes.len(),
                base_seq: first,
            });
            *frame = Framing::new(frame.segment + 1, SEGMENT_HEADER_LEN as u64);
        }
        // Evidence for recovery that survives a power loss: a sync marker saying up to
        // where this segment is durable, queued ahead of the first batch after an
        // fsync (see FORMAT.md, "Sync markers").
        if st_.synced.0 == frame.segment
            && st_.synced > st_.marked
            && let Some(end) = layout_sync_marker(&mut q.bytes, frame.offset, st_.synced.1)
        {
            frame.offset = end;
            st_.marked = st_.synced;
        }
        let mut head = [0u8; crate::batch::BATCH_HEADER_LEN];
        crate::batch::stamp(&mut head, first, seqs.count as u32);
        frame.offset = layout_record(&mut q.bytes, frame.offset, batch.as_bytes(), &head);
        if sh.observers.active() {
            q.observed.push(Observed {
                seqs,
                batch: batch.stamped(first),
            });
        }
        let need = if want_sync {
            Need::Durable(Upto::Ticket(ticket))
        } else if sh.opts.buffer_size > 0 && st.queue.bytes.len() < sh.opts.buffer_size {
            return Ok(seqs);
        } else {
            Need::Written(Upto::Ticket(ticket))
        };
        sh.wait_for(st, need)?;
        Ok(seqs)
    }
}
