//! Shipping the log: the sender reads WAL batches from the in-memory tail or the log
//! files ([`Source`]), groups them into compressed, checksummed wire batches and sends
//! only what is durable.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kv_wal::{Batch, Tail, TailCursor};

use super::shared::{Shared, relock};
use super::stats::add;
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::protocol::{ErrorCode, FrameWriter, Message};
use crate::transport::Stream;
use crate::wire_batch::WireBatchBuilder;

/// Where the sender gets WAL batches: the in-memory tail, else the log files.
struct Source {
    cursor: Option<TailCursor>,
    /// A batch read from the log but not sent yet (not durable yet, or over the limit).
    pending: Option<(u64, Arc<Batch>)>,
}

impl Source {
    /// The WAL batch starting at `seq`, if it has been written.
    fn get(&mut self, sh: &Shared, seq: u64) -> Result<Option<(u64, Arc<Batch>)>> {
        if let Some((f, b)) = &self.pending {
            if *f == seq {
                return Ok(Some((*f, Arc::clone(b))));
            }
            self.pending = None;
        }
        if let Some(b) = relock(&sh.tail).get(seq) {
            add(&sh.counters.tail_hits, 1);
            self.cursor = None;
            return Ok(Some((seq, b)));
        }
        if self.cursor.is_none() {
            self.cursor = Some(sh.db.wal().read_from(seq)?);
        }
        let Some(cursor) = self.cursor.as_mut() else {
            return Ok(None);
        };
        loop {
            match cursor.next()? {
                Tail::Batch(lb) => {
                    if lb.seqs.end() <= seq {
                        continue;
                    }
                    if lb.seqs.first != seq {
                        return Err(Error::InvalidArgument(format!(
                            "the log has no batch starting at seq {seq} (found {})",
                            lb.seqs.first
                        )));
                    }
                    add(&sh.counters.log_reads, 1);
                    let entry = (seq, Arc::new(lb.batch));
                    self.pending = Some(entry.clone());
                    return Ok(Some(entry));
                }
                Tail::CaughtUp | Tail::Ended => {
                    // Not written yet: start from the tail again next time.
                    self.cursor = None;
                    return Ok(None);
                }
            }
        }
    }
}

/// The sender of a session: ships durable WAL batches from `next` on, grouped up to
/// the byte/count limits and the linger, with heartbeats when idle.
pub(super) fn send_loop(
    sh: &Shared,
    id: u64,
    generation: u64,
    codec: Codec,
    mut next: u64,
    writer: &mut FrameWriter<Box<dyn Stream>>,
) -> Result<()> {
    let opts = &sh.opts;
    let wal = sh.db.wal();
    let mut source = Source {
        cursor: None,
        pending: None,
    };
    let mut builder = WireBatchBuilder::new(codec);
    let mut last_send = Instant::now();
    let mut linger_until: Option<Instant> = None;
    loop {
        if sh.stopping(id, generation) {
            return Err(Error::Stopped);
        }
        if let Some(from) = relock(&sh.sessions)
            .get_mut(&id)
            .and_then(|s| s.resend_from.take())
        {
            tracing::debug!(replica = id, from, "resending");
            next = from;
            source.cursor = None;
            source.pending = None;
            builder.finish()?;
            linger_until = None;
        }
        let durable = wal.durable_seq();
        let mut full = false;
        while next <= durable {
            if builder.raw_len() >= opts.max_batch_bytes
                || builder.entries() >= opts.max_batch_entries
            {
                full = true;
                break;
            }
            let Some((first, batch)) = source.get(sh, next)? else {
                break;
            };
            let end = first + batch.len() as u64;
            if end - 1 > durable {
                break;
            }
            // A batch that would take the group over the limit goes in the next one
            // (alone if it is that large by itself), so a frame only ever exceeds the
            // limit by one WAL batch's worth when that batch is alone.
            if builder.entries() > 0
                && builder.raw_len() + batch.encoded_len() + 4 > opts.max_batch_bytes
            {
                full = true;
                break;
            }
            builder.push(&batch, first)?;
            source.pending = None;
            next = end;
        }
        let now = Instant::now();
        if builder.entries() > 0 {
            let deadline = *linger_until.get_or_insert(now + opts.linger);
            if full || now >= deadline || opts.linger.is_zero() {
                let entries = builder.entries() as u64;
                if let Some(wire) = builder.finish()? {
                    // Payload plus the other fields' few dozen bytes.
                    if wire.payload.len() + 64 > opts.max_frame {
                        let message = format!(
                            "the WAL batch(es) at seqs {}..={} take {} bytes, over the {}-byte frame limit",
                            wire.first_seq,
                            wire.last_seq,
                            wire.payload.len(),
                            opts.max_frame
                        );
                        let _ = writer.send(&Message::Error {
                            code: ErrorCode::Unavailable,
                            message: message.clone(),
                        });
                        return Err(Error::InvalidArgument(message));
                    }
                    let (ops, raw, packed) = (
                        wire.last_seq - wire.first_seq + 1,
                        u64::from(wire.uncompressed_len),
                        wire.payload.len() as u64,
                    );
                    // Recorded before sending: the acknowledgement may come back at once.
                    if let Some(s) = relock(&sh.sessions)
                        .get_mut(&id)
                        .filter(|s| s.generation == generation)
                    {
                        s.sent = s.sent.max(wire.last_seq);
                    }
                    writer.send(&Message::Batch {
                        durable_seq: durable,
                        batch: wire,
                    })?;
                    let c = &sh.counters;
                    add(&c.batches_sent, 1);
                    add(&c.entries_sent, entries);
                    add(&c.ops_sent, ops);
                    add(&c.raw_bytes_sent, raw);
                    add(&c.wire_bytes_sent, packed);
                    last_send = Instant::now();
                }
                linger_until = None;
                continue;
            }
        }
        // Only durable data is shipped: if something is written but not durable, make
        // it so (one fsync shared with everyone syncing now).
        if wal.last_seq() > durable {
            std::thread::sleep(opts.linger.min(Duration::from_millis(5)));
            if wal.last_seq() > wal.durable_seq() {
                wal.sync()?;
            }
            continue;
        }
        if last_send.elapsed() >= opts.heartbeat {
            writer.send(&Message::Heartbeat {
                durable_seq: durable,
            })?;
            last_send = Instant::now();
        }
        let wait = match linger_until {
            Some(t) => t.saturating_duration_since(Instant::now()),
            None => opts.heartbeat,
        };
        let tail = relock(&sh.tail);
        if wal.durable_seq() < next && !sh.stop.load(Ordering::Acquire) {
            let _ = sh
                .data_cv
                .wait_timeout(tail, wait.max(Duration::from_micros(100)))
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}
