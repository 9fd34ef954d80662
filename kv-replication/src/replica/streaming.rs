//! Streaming: reading batches and heartbeats from the primary, and the lag they
//! tell (in sequence numbers, and in seconds on the replica's own clock).

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::shared::relock;
use super::worker::Worker;
use crate::error::{Error, Result, protocol};
use crate::protocol::Message;
use crate::state::{Event, State};

impl Worker {
    /// Notes the primary's durable position, for the lag.
    pub(super) fn note_primary(&mut self, durable: u64) {
        if durable > self.primary_durable {
            self.primary_durable = durable;
            if self.heard.back().is_none_or(|&(s, _)| s < durable) {
                self.heard.push_back((durable, Instant::now()));
                if self.heard.len() > 4096 {
                    self.heard.pop_front();
                }
            }
        }
        self.update_lag();
    }

    /// Publishes the lag (sequence numbers, and since when the replica is behind).
    pub(super) fn update_lag(&mut self) {
        let applied = self.db().last_seq().get();
        while self.heard.front().is_some_and(|&(s, _)| s <= applied) {
            self.heard.pop_front();
        }
        let mut st = relock(&self.sh.stats);
        st.primary_durable_seq = self.primary_durable;
        st.lag_seqs = self.primary_durable.saturating_sub(applied);
        drop(st);
        *relock(&self.sh.behind_since) = self.heard.front().map(|&(_, t)| t);
    }

    /// Reads until a batch arrives (or the replica catches up, or falls behind again).
    pub(super) fn streaming(&mut self) -> Result<Event> {
        let limit = self.sh.opts.session_timeout;
        loop {
            if self.sh.stop.load(Ordering::Acquire) {
                return Err(Error::Stopped);
            }
            match self.read(limit)? {
                Message::Batch { durable_seq, batch } => {
                    self.note_primary(durable_seq);
                    {
                        let mut st = relock(&self.sh.stats);
                        st.batches += 1;
                        st.wire_bytes += batch.payload.len() as u64;
                    }
                    if let Some(from) = self.nacked {
                        if batch.first_seq > from {
                            continue; // sent before our resend request arrived
                        }
                        self.nacked = None;
                    }
                    self.batch = Some(batch);
                    return Ok(Event::BatchReceived);
                }
                Message::Heartbeat { durable_seq } => {
                    self.note_primary(durable_seq);
                    let applied = self.db().last_seq().get();
                    match self.m.state() {
                        State::Streaming if applied >= self.primary_durable => {
                            return Ok(Event::CaughtUp);
                        }
                        State::WaitingForData if applied < self.primary_durable => {
                            return Ok(Event::DataAvailable);
                        }
                        _ => {}
                    }
                }
                Message::Error { code, message } => {
                    return Err(Error::Remote {
                        peer: self.conn()?.peer.clone(),
                        message: format!("{code:?}: {message}"),
                    });
                }
                other => {
                    let c = self.conn()?;
                    return Err(protocol(
                        &c.peer,
                        c.reader.offset(),
                        format!("unexpected {} while streaming", other.name()),
                    ));
                }
            }
        }
    }
}
