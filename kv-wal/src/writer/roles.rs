//! Taking turns at the two roles (see the writer's module documentation): a thread
//! waits for the holder of a role to let go of it, and the holder wakes the waiters.

use std::sync::MutexGuard;

use crate::writer::shared::{Shared, State};

/// The two roles (see the module documentation), and what their waiters sleep on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Write,
    Sync,
}

impl Shared {
    /// Sleeps until the holder of `role` lets go of it (or moves its position).
    pub(super) fn wait_role<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        role: Role,
    ) -> MutexGuard<'a, State> {
        let cv = match role {
            Role::Write => {
                st.write_waiters += 1;
                &self.write_cv
            }
            Role::Sync => {
                st.sync_waiters += 1;
                &self.sync_cv
            }
        };
        let mut st = cv.wait(st).unwrap_or_else(|p| p.into_inner());
        match role {
            Role::Write => st.write_waiters -= 1,
            Role::Sync => st.sync_waiters -= 1,
        }
        st
    }

    pub(super) fn release(&self, st: &mut State, role: Role) {
        match role {
            Role::Write => {
                st.writing = false;
                if st.write_waiters > 0 {
                    self.write_cv.notify_all();
                }
            }
            Role::Sync => {
                st.syncing = false;
                if st.sync_waiters > 0 {
                    self.sync_cv.notify_all();
                }
            }
        }
    }
}
