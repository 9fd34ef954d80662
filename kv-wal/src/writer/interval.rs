//! The interval thread of [`SyncPolicy::Interval`]: syncs whatever is not yet durable
//! on every tick, until the log is closed.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::options::SyncPolicy;
use crate::writer::position::{Need, Upto};
use crate::writer::shared::{Shared, relock};

/// Starts the interval thread if the policy is [`SyncPolicy::Interval`].
pub(super) fn start(shared: &Arc<Shared>) -> Result<Option<JoinHandle<()>>> {
    let bg = match shared.opts.sync_policy {
        SyncPolicy::Interval(every) => {
            let sh = Arc::clone(shared);
            let t = std::thread::Builder::new()
                .name("kv-wal-sync".into())
                .spawn(move || interval_loop(&sh, every))
                .map_err(|e| Error::io(&shared.dir, e))?;
            Some(t)
        }
        _ => None,
    };
    Ok(bg)
}

fn interval_loop(sh: &Arc<Shared>, every: Duration) {
    loop {
        {
            let stop = relock(&sh.bg_stop);
            let (stop, _) = sh
                .bg_cv
                .wait_timeout(stop, every)
                .unwrap_or_else(|p| p.into_inner());
            if *stop {
                return;
            }
        }
        // A failure poisons the log; the next append reports it.
        let _ = sh.sync_if_dirty();
    }
}

impl Shared {
    /// Syncs (and writes out queued data) if anything is not yet durable.
    fn sync_if_dirty(&self) -> Result<()> {
        let st = relock(&self.state);
        st.usable()?;
        let last = st.next_ticket - 1;
        if st.durable.ticket >= last {
            return Ok(());
        }
        self.wait_for(st, Need::Durable(Upto::Ticket(last)))
    }
}
