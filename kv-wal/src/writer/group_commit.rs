//! Group commit: a caller waits for its position to be written (or durable), taking
//! the write or the sync role whenever that is what stands in the way and nobody
//! holds it; the thread about to start an fsync first gathers the group the last one
//! released (see the writer's module documentation).

use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::writer::position::{Need, Upto};
use crate::writer::roles::Role;
use crate::writer::shared::{Shared, State};

impl State {
    /// Threads waiting for durability that the durable position does not cover yet.
    fn unmet_durable_waiters(&self) -> usize {
        let durable = self.durable;
        self.durable_waiters
            .iter()
            .filter(|u| !durable.covers(**u))
            .count()
    }

    /// Whether `need` is met.
    fn met(&self, need: Need) -> bool {
        match need {
            Need::Written(u) => self.written.covers(u),
            Need::Durable(u) => self.durable.covers(u),
        }
    }
}

impl Shared {
    /// Returns once `need` is met, taking the write or the sync role whenever that is
    /// what stands in the way and nobody holds it.
    pub(super) fn wait_for<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        mut need: Need,
    ) -> Result<()> {
        // What this thread registered in `durable_waiters`, and whether it gathered.
        let (mut counted, mut gathered) = (None, false);
        let result = loop {
            if st.met(need) {
                break Ok(());
            }
            if let Err(e) = st.check_poisoned() {
                break Err(e);
            }
            let (upto, durable) = match need {
                Need::Written(u) => (u, false),
                Need::Durable(u) => (u, true),
            };
            if durable && counted.is_none() {
                counted = Some(upto);
                st.durable_waiters.push(upto);
                if st.gathering && st.unmet_durable_waiters() >= st.regroup {
                    self.gather_cv.notify_one();
                }
            }
            // An fsync is running or about to: whatever this thread needs synced, the
            // next news is that fsync's end.
            let sync_coming = st.syncing || st.gathering || (st.writing && st.write_then_sync);
            if !st.written.covers(upto) {
                if durable && sync_coming {
                    // This batch cannot be synced before the coming fsync ends: leave it
                    // queued so that one write takes everything queued meanwhile.
                    st = self.wait_role(st, Role::Sync);
                } else if st.writing {
                    st = self.wait_role(st, Role::Write);
                } else if durable && !gathered && self.should_gather(&st) {
                    gathered = true;
                    st = self.gather(st);
                } else {
                    let (next, threshold) = self.write(st, false, durable);
                    st = next;
                    if let Some(last) = threshold
                        && !durable
                    {
                        // This group crossed `SyncPolicy::EveryBytes`: its writer syncs.
                        need = Need::Durable(Upto::Ticket(last));
                    }
                }
            } else if sync_coming {
                st = self.wait_role(st, Role::Sync);
            } else if !gathered && self.should_gather(&st) {
                gathered = true;
                st = self.gather(st);
            } else {
                st = self.sync_written(st);
            }
        };
        if let Some(upto) = counted
            && let Some(i) = st.durable_waiters.iter().position(|u| *u == upto)
        {
            st.durable_waiters.swap_remove(i);
        }
        result
    }

    /// Whether the thread about to start an fsync should first gather a group: when the
    /// last fsync ended, more threads were waiting for durability than are now. Those
    /// it released are likely to append again at once; without waiting for them, every
    /// fsync covers only the half that queued during the previous one.
    fn should_gather(&self, st: &State) -> bool {
        st.regroup >= 2
            && st.unmet_durable_waiters() < st.regroup
            && !self.gather_wait(st).is_zero()
    }

    /// At most [`WalOptions::group_commit_wait`](crate::WalOptions::group_commit_wait), and
    /// at most the last fsync's duration (so that gathering never costs more than the
    /// fsync it saves).
    fn gather_wait(&self, st: &State) -> Duration {
        self.opts.group_commit_wait.min(st.last_sync)
    }

    /// Waits (bounded by `gather_wait`) until as many threads wait for durability not
    /// yet reached as waited when the last fsync ended.
    fn gather<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let deadline = Instant::now() + self.gather_wait(&st);
        st.gathering = true;
        while st.unmet_durable_waiters() < st.regroup && st.poisoned.is_none() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .gather_cv
                .wait_timeout(st, deadline - now)
                .map(|r| r.0)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        st.gathering = false;
        st
    }
}
