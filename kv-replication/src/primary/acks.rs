//! What a replica sends back: acknowledgements of durable positions, resend requests
//! and heartbeats, read by one receiver thread per session.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::shared::{Shared, relock};
use super::stats::add;
use crate::error::{Error, Result, protocol};
use crate::protocol::{FrameReader, Message};
use crate::transport::Stream;

/// The receiver of a session: acknowledgements (moving the replica's pin, renewing
/// its floor, restoring degraded semi-sync), resend requests and heartbeats.
pub(super) fn receive(
    sh: &Shared,
    id: u64,
    generation: u64,
    reader: &mut FrameReader<Box<dyn Stream>>,
) -> Result<()> {
    loop {
        let msg = reader.read()?;
        let mut sessions = relock(&sh.sessions);
        let Some(s) = sessions.get_mut(&id).filter(|s| s.generation == generation) else {
            return Ok(());
        };
        s.last_heard = Instant::now();
        match msg {
            Message::Ack { durable_seq } => {
                if durable_seq > s.sent {
                    return Err(protocol(
                        &s.peer,
                        reader.offset(),
                        format!("ack of seq {durable_seq}, only {} was sent", s.sent),
                    ));
                }
                let mut renew = false;
                if durable_seq > s.acked {
                    s.acked = durable_seq;
                    if let Some(p) = &s.pin {
                        p.set(durable_seq + 1);
                    }
                    renew = s
                        .floor
                        .is_none_or(|(_, at)| at.elapsed() >= sh.floor_renewal());
                }
                let last = sh.db.last_seq().get();
                if sh.degraded.load(Ordering::Acquire)
                    && let Some(semi) = sh.opts.semi_sync
                    && sessions.values().filter(|s| s.acked >= last).count() >= semi.replicas
                {
                    tracing::info!("semi-sync restored: replicas caught up");
                    sh.degraded.store(false, Ordering::Release);
                }
                drop(sessions);
                sh.ack_cv.notify_all();
                if renew {
                    sh.store_floor(id, generation);
                }
            }
            Message::Nack { resend_from } => {
                add(&sh.counters.nacks, 1);
                if resend_from <= s.acked {
                    return Err(protocol(
                        &s.peer,
                        reader.offset(),
                        format!("resend from {resend_from} below its own ack {}", s.acked),
                    ));
                }
                s.resend_from = Some(resend_from);
                drop(sessions);
                sh.data_cv.notify_all();
            }
            Message::Heartbeat { .. } => {}
            Message::Error { message, .. } => {
                return Err(Error::Remote {
                    peer: s.peer.clone(),
                    message,
                });
            }
            other => {
                return Err(protocol(
                    &s.peer,
                    reader.offset(),
                    format!("unexpected {} from a replica", other.name()),
                ));
            }
        }
    }
}
