//! The sync role: fsyncs everything written so far through the second handle on the
//! segment, and publishes it as durable; the observers' `Synced` event takes its place
//! in the same step as the position it covers is read.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use crate::error::Error;
use crate::writer::roles::Role;
use crate::writer::shared::{Shared, State, relock};

impl Shared {
    /// Holds the sync role: fsyncs everything written so far, publishes it as durable.
    pub(super) fn sync_written<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
    ) -> MutexGuard<'a, State> {
        st.syncing = true;
        drop(st);
        // Read the target in the same step as the sync's place among observer events.
        let ((target, covering, syncer, path), reserved) = self.observers.begin_sync(|| {
            let mut st = relock(&self.state);
            let covering = std::mem::take(&mut st.unsynced);
            let syncer = Arc::clone(&st.syncer);
            (st.written, covering, syncer, Arc::clone(&st.syncer_path))
        });
        // Every byte below the written end was handed to the OS before this fsync
        // begins (the sync role is held: no seal moves the log to another segment).
        let reached = {
            let w = relock(&self.written);
            (w.segment, w.offset)
        };
        let started = Instant::now();
        let result = syncer.sync_data();
        let took = started.elapsed();
        self.observers
            .end_sync(reserved, result.is_ok().then_some(target.seq));
        let mut st = relock(&self.state);
        st.last_sync = took;
        st.regroup = st.durable_waiters.len();
        match result {
            Ok(()) => {
                if target.ticket >= st.durable.ticket {
                    st.durable = target;
                }
                st.synced = st.synced.max(reached);
                self.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                st.unsynced += covering;
                let path = path.to_path_buf();
                let e = Error::io(&path, e);
                self.poison(&mut st, path, &e);
            }
        }
        self.release(&mut st, Role::Sync);
        st
    }
}
