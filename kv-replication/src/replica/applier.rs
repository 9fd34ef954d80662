//! The applier: batches applied in order through the engine (duplicates skipped, a
//! gap answered with a resend request), made durable, then acknowledged.

use std::sync::atomic::Ordering;

use kv_engine::WriteOptions;

use super::options::ReplicaOptions;
use super::shared::relock;
use super::worker::Worker;
use crate::error::{Error, Result};
use crate::protocol::Message;
use crate::state::Event;

impl Worker {
    /// Applies a received batch in order: skips what is already applied, asks for a
    /// resend on a gap or a damaged batch.
    pub(super) fn applying(&mut self) -> Result<Event> {
        let batch = self
            .batch
            .take()
            .ok_or_else(|| Error::InvalidArgument("no batch to apply".into()))?;
        let db = self.db();
        let mut applied = db.last_seq().get();
        let entries = match batch.decode(self.sh.opts.max_batch_bytes, &db_limits(&self.sh.opts)) {
            Ok(e) => e,
            Err(e) => {
                // Damaged in a way the frame checksum did not catch: ask again, a few
                // times; a batch that keeps failing (limits smaller than the
                // primary's?) is an error, reported and backed off from.
                self.bad_batches += 1;
                if self.bad_batches >= 3 {
                    self.bad_batches = 0;
                    return Err(e);
                }
                tracing::warn!(error = %e, "damaged batch; requesting a resend");
                self.nacked = None;
                self.nack(applied + 1)?;
                return Ok(Event::NothingApplied);
            }
        };
        self.bad_batches = 0;
        let mut ops = 0u64;
        let mut skipped = 0u64;
        for (first, wal_batch) in entries {
            let n = wal_batch.len() as u64;
            let last = first + n - 1;
            if last <= applied {
                skipped += n;
                continue;
            }
            if first != applied + 1 {
                // A gap (or a batch straddling our position, which cannot be split).
                tracing::info!(
                    expected = applied + 1,
                    got = first,
                    "gap in the stream; requesting a resend"
                );
                self.nack(applied + 1)?;
                break;
            }
            db.apply_replicated(first, wal_batch, WriteOptions::default())?;
            applied = last;
            ops += n;
        }
        {
            let mut st = relock(&self.sh.stats);
            st.ops_applied += ops;
            st.duplicates_skipped += skipped;
        }
        if ops > 0 {
            // Progress: the next failure backs off from the start again.
            self.backoff = self.sh.opts.backoff_min;
        }
        Ok(if ops > 0 {
            Event::Applied
        } else {
            Event::NothingApplied
        })
    }

    /// Asks the primary to resend from `from` (once per position).
    fn nack(&mut self, from: u64) -> Result<()> {
        if self.nacked == Some(from) {
            return Ok(());
        }
        self.nacked = Some(from);
        relock(&self.sh.stats).nacks += 1;
        self.conn()?.send(&Message::Nack { resend_from: from })
    }

    /// Makes what was applied durable.
    pub(super) fn fsync(&mut self) -> Result<Event> {
        let db = self.db();
        db.wal().sync_up_to(db.last_seq().get())?;
        Ok(Event::Synced)
    }

    /// Tells the primary the durable position.
    pub(super) fn acknowledge(&mut self) -> Result<Event> {
        let durable = self.db().wal().durable_seq();
        let c = self.conn()?;
        c.sender.durable.store(durable, Ordering::Release);
        c.send(&Message::Ack {
            durable_seq: durable,
        })?;
        self.update_lag();
        self.sh.progress.notify_all();
        Ok(Event::AckSent)
    }
}

/// The limits replicated batches are decoded with: the replica's own.
fn db_limits(opts: &ReplicaOptions) -> kv_wal::Limits {
    opts.db.wal_limits()
}
