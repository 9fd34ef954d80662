//! The write role: takes the whole queue, checksums its fragments, hands it to the OS
//! (sealing segments where it crosses into a new one), then publishes the written
//! position in the same step as it queues the observers' `Appended` events.

use std::path::PathBuf;
use std::sync::MutexGuard;

use crate::error::{Error, Result};
use crate::format::{SEGMENT_HEADER_LEN, fill_checksums};
use crate::observer::WalEvent;
use crate::options::SyncPolicy;
use crate::writer::position::Progress;
use crate::writer::queue::{Framing, Group};
use crate::writer::roles::Role;
use crate::writer::shared::{Io, Shared, State, relock};

/// Writeback requests end on a multiple of this (the page size of common systems; a
/// larger real page only means the last requested page is partly rewritten later).
const WRITEBACK_PAGE: u64 = 4096;

impl Shared {
    /// Holds the write role: takes the queue, writes it (and seals the segment if
    /// `rotate`, or if it fills up), publishes the outcome. `then_sync`: the caller goes
    /// on to the sync role (waiters for durability need not wake when this ends).
    /// Also returns the group's last ticket if it took the bytes not yet synced past
    /// the `EveryBytes` threshold.
    pub(super) fn write<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        rotate: bool,
        then_sync: bool,
    ) -> (MutexGuard<'a, State>, Option<u64>) {
        st.writing = true;
        st.write_then_sync = then_sync;
        let spare = std::mem::take(&mut st.spare);
        let mut group = std::mem::replace(&mut st.queue, spare);
        let last = Progress {
            ticket: st.next_ticket - 1,
            seq: st.next_seq - 1,
        };
        // Rotating: what is queued from now on goes to the next segment.
        let rotate = rotate.then(|| {
            st.frame = Framing::new(st.frame.segment + 1, SEGMENT_HEADER_LEN as u64);
            st.next_seq
        });
        drop(st);
        let mut sealed = false;
        let result = self.write_group(&mut group, rotate, &mut sealed);
        let mut events = Vec::new();
        if result.is_ok() && self.observers.active() {
            events = group.events();
            if sealed {
                events.push(WalEvent::Synced {
                    durable_seq: last.seq,
                });
            }
        }
        group.clear();
        let mut threshold = None;
        // The written position moves in the same step as the events are queued: a sync
        // reading it takes its observers' place after them.
        let mut st = self.observers.publish_then(events, || {
            let mut st = relock(&self.state);
            st.spare = group;
            match result {
                // If the log was poisoned meanwhile (a failed fsync), these batches are
                // in the file but their appends fail like every later one.
                Ok(_) if st.poisoned.is_some() => {}
                Ok(bytes) => {
                    st.written = last;
                    if sealed {
                        // Everything up to `last` is in synced segments.
                        st.durable = last;
                        st.unsynced = 0;
                    } else {
                        st.unsynced += bytes;
                        if matches!(self.opts.sync_policy, SyncPolicy::EveryBytes(n) if st.unsynced >= n)
                        {
                            threshold = Some(last.ticket);
                        }
                    }
                }
                Err((path, e)) => self.poison(&mut st, path, &e),
            }
            st
        });
        if sealed {
            self.release(&mut st, Role::Sync);
        }
        self.release(&mut st, Role::Write);
        (st, threshold)
    }

    /// Checksums and writes a laid-out group (under the write role), sealing the
    /// segment where the group starts a new one, and at its end if `rotate` (the base
    /// sequence number of the next segment). Sealing takes the sync role (setting
    /// `sealed`), which the group then keeps: it syncs the new segment too, so that
    /// everything it wrote is durable. Returns the bytes written. Errors carry the
    /// file's path.
    fn write_group(
        &self,
        group: &mut Group,
        rotate: Option<u64>,
        sealed: &mut bool,
    ) -> std::result::Result<u64, (PathBuf, Error)> {
        let mut guard = relock(&self.io);
        let io = &mut *guard;
        let tag = |io: &Io, e: Error| (io.path.clone(), e);
        let mut from = 0;
        for roll in &group.rolls {
            let part = group.bytes.get_mut(from..roll.at).unwrap_or_default();
            fill_checksums(part, io.offset, &io.crc);
            self.write_at_end(io, part).map_err(|e| tag(io, e))?;
            self.seal(io, roll.base_seq, sealed)
                .map_err(|e| tag(io, e))?;
            from = roll.at;
        }
        let part = group.bytes.get_mut(from..).unwrap_or_default();
        fill_checksums(part, io.offset, &io.crc);
        self.write_at_end(io, part).map_err(|e| tag(io, e))?;
        if let Some(base_seq) = rotate {
            self.seal(io, base_seq, sealed).map_err(|e| tag(io, e))?;
        } else if *sealed {
            io.file.sync_data().map_err(|e| {
                let e = Error::io(&io.path, e);
                (io.path.clone(), e)
            })?;
        }
        Ok(group.bytes.len() as u64)
    }

    /// Writes framed bytes where the segment's written part ends.
    fn write_at_end(&self, io: &mut Io, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        // Writeback of what was written so far, then zeros past where these bytes will
        // end: if either fails, the group fails with none of these bytes in the file.
        // The writeback stops at the last whole page: the page the log ends in is
        // written again by the next append, and would otherwise go to the device twice
        // (and, where pages under writeback are stable, hold the next write up).
        let page_end = io.offset & !(WRITEBACK_PAGE - 1);
        let pending = page_end.saturating_sub(io.writeback_from);
        if self.opts.writeback_bytes > 0 && pending >= self.opts.writeback_bytes {
            io.file
                .start_writeback(io.writeback_from, pending)
                .map_err(|e| Error::io(&io.path, e))?;
            io.writeback_from = page_end;
        }
        let end = io.offset + bytes.len() as u64;
        self.zero_ahead(io, end)?;
        self.reserve(io, end);
        io.file
            .write_at(io.offset, bytes)
            .map_err(|e| Error::io(&io.path, e))?;
        io.offset += bytes.len() as u64;
        io.file_len = io.file_len.max(io.offset);
        let mut w = relock(&self.written);
        w.segment = io.segment;
        w.offset = io.offset;
        let notify = w.waiters > 0;
        drop(w);
        if notify {
            self.written_cv.notify_all();
        }
        Ok(())
    }
}
