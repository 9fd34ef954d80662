//! Poisoning: a failed write or fsync stops the log until it is reopened; every
//! waiter and every later call reports the first failure.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::writer::shared::{Shared, State};

impl State {
    pub(super) fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some((path, cause)) => Err(Error::Poisoned {
                path: path.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    pub(super) fn usable(&self) -> Result<()> {
        self.check_poisoned()?;
        if self.closed {
            return Err(Error::Closed);
        }
        Ok(())
    }
}

impl Shared {
    /// Records the first failure and wakes every waiter, so that each reports it.
    pub(super) fn poison(&self, st: &mut State, path: PathBuf, e: &Error) {
        tracing::error!(path = %path.display(), error = %e, "WAL write or sync failed; the log is poisoned");
        if st.poisoned.is_none() {
            st.poisoned = Some((path, e.to_string()));
        }
        self.write_cv.notify_all();
        self.sync_cv.notify_all();
        self.gather_cv.notify_all();
    }
}
