//! Holding the log for replicas: each connected replica's in-memory WAL pin follows
//! its acknowledgements, and a durable retention floor (renewed as it moves, expiring
//! `pin_linger` after the replica was last served) holds the log across a restart of
//! the primary.

use std::time::{Duration, Instant, SystemTime};

use super::shared::{Shared, relock};

impl Shared {
    /// How often a connected replica's durable floor is moved along with its
    /// acknowledgements (and its expiry renewed).
    pub(super) fn floor_renewal(&self) -> Duration {
        (self.opts.pin_linger / 2).min(Duration::from_secs(1))
    }

    /// Writes the durable floor of replica `id`'s current session at its pin, expiring
    /// `pin_linger` from now; true if the floor now holds what the pin held. A failure
    /// is logged, not fatal: the in-memory pin stays.
    pub(super) fn store_floor(&self, id: u64, generation: u64) -> bool {
        let seq = {
            let sessions = relock(&self.sessions);
            let Some(s) = sessions.get(&id).filter(|s| s.generation == generation) else {
                return false;
            };
            match &s.pin {
                Some(p) => p.seq(),
                None => return true,
            }
        };
        let wal = self.db.wal();
        let result = if self.opts.pin_linger.is_zero() {
            wal.remove_floor(id)
        } else {
            wal.set_floor(id, seq, SystemTime::now() + self.opts.pin_linger)
        };
        match result {
            Ok(()) => {
                if let Some(s) = relock(&self.sessions)
                    .get_mut(&id)
                    .filter(|s| s.generation == generation)
                {
                    s.floor = Some((seq, Instant::now()));
                }
                true
            }
            Err(e) => {
                tracing::warn!(replica = id, error = %e, "could not store the replica's retention floor");
                false
            }
        }
    }

    /// Forgets replicas that left more than the pin linger ago.
    pub(super) fn expire_pins(&self) {
        let linger = self.opts.pin_linger;
        relock(&self.sessions)
            .retain(|_, s| s.connected || s.disconnected_at.is_none_or(|t| t.elapsed() < linger));
    }
}
