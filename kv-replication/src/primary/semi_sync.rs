//! Semi-synchronous writes: waiting until `k` replicas acknowledged a write, and
//! degrading to asynchronous replication on a timeout when so configured (the
//! receiver of acknowledgements, in `acks`, restores it once the replicas caught up).

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::options::OnTimeout;
use super::shared::{Shared, relock};
use super::stats::add;
use crate::error::{Error, Result};

/// Waits until the semi-sync number of replicas acknowledged everything up to
/// `seq` (returns at once without semi-sync, or while degraded).
pub(super) fn wait_for_replicas(sh: &Shared, seq: u64) -> Result<()> {
    let Some(semi) = sh.opts.semi_sync else {
        return Ok(());
    };
    if sh.degraded.load(Ordering::Acquire) {
        add(&sh.counters.degraded_writes, 1);
        return Ok(());
    }
    let deadline = Instant::now() + semi.timeout;
    let mut sessions = relock(&sh.sessions);
    loop {
        let acked = sessions.values().filter(|s| s.acked >= seq).count();
        if acked >= semi.replicas {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline || sh.stop.load(Ordering::Acquire) {
            add(&sh.counters.semi_sync_timeouts, 1);
            return match semi.on_timeout {
                OnTimeout::Fail => Err(Error::SemiSyncTimeout {
                    seq,
                    acked,
                    required: semi.replicas,
                }),
                OnTimeout::Degrade => {
                    tracing::warn!(
                        seq,
                        acked,
                        required = semi.replicas,
                        "semi-sync timed out: degrading to asynchronous replication"
                    );
                    sh.degraded.store(true, Ordering::Release);
                    Ok(())
                }
            };
        }
        sessions = sh
            .ack_cv
            .wait_timeout(sessions, deadline - now)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
}
