//! Background errors: which ones a retry can cure, and the retry itself.
//!
//! A flush or compaction that fails stops writes: every write, `flush` and
//! `wait_idle` fails with [`Error::Background`] naming the cause (writes fail at once
//! rather than stall, so a caller sees the disk is full instead of hanging). Reads go
//! on. What happens next depends on the cause, much as RocksDB's error handler
//! decides between a soft and a hard error:
//!
//! - **Out of space** (`ENOSPC`, `EDQUOT`: [`std::io::ErrorKind::StorageFull`],
//!   [`std::io::ErrorKind::QuotaExceeded`]) while writing a table or the manifest is
//!   *recoverable*: nothing acknowledged was lost (the memtables and the WAL still hold
//!   every write, the failed job installed nothing) and the files it wrote are
//!   abandoned whole. A flush thread retries the failed work with exponential
//!   back-off ([`Options::resume_backoff`](crate::Options::resume_backoff)), and
//!   [`Db::resume`] retries at once. A retry first makes the manifest trustworthy
//!   again (after a failed append it writes a fresh manifest holding the whole state
//!   and points `CURRENT` at it: the old one may end in a torn or unsynced edit), then
//!   removes what the failed jobs left (their table files: only now, since a failed
//!   manifest append may have made one of them referenced by the old manifest), then
//!   flushes every frozen memtable, oldest first, and re-runs a due compaction if a
//!   compaction had failed. When all of it succeeds, the error is cleared and writes
//!   are accepted again.
//! - **Anything else is fatal** until the database is reopened: damaged data, an I/O
//!   error other than out of space, and every failure of the WAL. A failed WAL write
//!   or fsync poisons the log (see `kv_wal`): after a failed fsync the kernel may have
//!   dropped the pages it covered, so no later sync can prove them durable; after a
//!   failed write the group's sequence numbers were handed out without reaching the
//!   file. Resuming would need a new WAL whose first sequence number continues the
//!   old one, installed behind the replication observers and pins registered on the
//!   current one, with the publisher told to skip the numbers of the failed group;
//!   that is not done: reopen (which replays what the WAL made durable). A retry
//!   checks the WAL's health before and after its work, so a poisoned log turns the
//!   error fatal rather than being cleared. The WAL writes into space its segment
//!   reserved when it started (preallocation), while flushes and compactions need new
//!   space: a filling disk usually fails one of them first, and stopping writes right
//!   then keeps the WAL from appending or starting a segment on the full disk. Only
//!   when the disk is already full as a segment starts does the WAL fail first (the
//!   reopen case).
//!
//! A fatal error replaces a recoverable one (never the other way round), and a retry
//! that fails with a fatal error makes the error fatal.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::db::{Inner, State};
use crate::filename::{table_path, table_tmp_path};
use crate::mutex::lock;
use crate::version_edit::VersionEdit;
use crate::{Db, Error, Result};

/// Whether the database accepts writes, as far as failures go
/// ([`Stats::background_state`](crate::Stats::background_state)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackgroundState {
    /// No failure: writes are accepted.
    #[default]
    Running,
    /// A flush or compaction ran out of disk space: writes fail with
    /// [`Error::Background`], reads go on, and the failed work is retried with back-off
    /// ([`Options::resume_backoff`](crate::Options::resume_backoff)) and by
    /// [`Db::resume`]; writes are accepted again once a retry succeeds.
    NoSpace,
    /// A failure no retry can cure (damaged data, an I/O error other than out of space,
    /// any failure of the WAL): writes fail until the database is reopened.
    Failed,
}

/// The background work that failed with a recoverable error (what a retry re-runs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum FailedWork {
    /// A flush (or a manifest write): the retry flushes every frozen memtable.
    #[default]
    Flush,
    /// A compaction: the retry also runs a due compaction.
    Compaction,
}

/// The error handler's part of [`State`].
#[derive(Debug, Default)]
pub(crate) struct ResumeState {
    /// The background error is out of space: a retry may clear it.
    pub recoverable: bool,
    /// What failed (for the retry).
    pub failed: FailedWork,
    /// A manifest append failed: the manifest may end in a torn or unsynced edit, so
    /// the next edit goes into a fresh manifest instead.
    pub manifest_broken: bool,
    /// Table numbers failed jobs allocated and did not install: their files (final or
    /// temporary) are removed before a retry.
    pub orphans: Vec<u64>,
    /// A retry is running.
    pub running: bool,
    /// When the next automatic retry is due.
    pub next_attempt: Option<Instant>,
    /// The wait before the retry after the next failed one.
    pub backoff: Duration,
    /// Retries started.
    pub attempts: u64,
    /// Retries that cleared the error.
    pub recoveries: u64,
    /// The error the last successful retry cleared.
    pub last_cleared: Option<Arc<Error>>,
}

/// True if `e` (or the error it wraps) reports a full device or an exhausted quota.
pub(crate) fn io_no_space(e: &io::Error) -> bool {
    if matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) {
        return true;
    }
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<io::Error>())
        .is_some_and(io_no_space)
}

/// True if `e` is an out-of-space failure of a table or manifest write: recoverable
/// by a retry once space returns. WAL failures never are (the log is poisoned).
pub(crate) fn is_no_space(e: &Error) -> bool {
    match e {
        Error::Io { source, .. } => io_no_space(source),
        Error::Table(t) => {
            let mut cause: Option<&(dyn std::error::Error + 'static)> =
                std::error::Error::source(t);
            while let Some(c) = cause {
                if let Some(io) = c.downcast_ref::<io::Error>() {
                    return io_no_space(io);
                }
                cause = c.source();
            }
            false
        }
        Error::Background(inner) => is_no_space(inner),
        _ => false,
    }
}

impl Inner {
    /// Records background failure `e` (state lock held) from `work`; see the module
    /// documentation for which errors are recoverable. Wakes writers and background
    /// threads.
    pub(crate) fn record_bg_error(&self, st: &mut State, e: Error, work: FailedWork) {
        // The echo of an error already recorded (a job that stopped because of it), or
        // of a shutdown: not a cause.
        if matches!(e, Error::Background(_) | Error::Closed) {
            return;
        }
        let no_space = is_no_space(&e);
        let replace = match &st.bg_error {
            None => true,
            // A fatal error outranks a recoverable one.
            Some(_) => st.resume.recoverable && !no_space,
        };
        if replace {
            if no_space {
                tracing::warn!(error = %e, "background work ran out of space; writes are stopped until a retry succeeds");
                st.resume.failed = work;
                if st.resume.next_attempt.is_none() {
                    st.resume.backoff = self.opts.resume_backoff_initial;
                    st.resume.next_attempt = Some(Instant::now() + st.resume.backoff);
                }
            } else {
                tracing::error!(error = %e, "background work failed; writes are stopped until reopen");
                st.resume.next_attempt = None;
            }
            st.resume.recoverable = no_space;
            st.bg_error = Some(Arc::new(e));
        } else if no_space && st.resume.recoverable && work == FailedWork::Compaction {
            st.resume.failed = FailedWork::Compaction;
        }
        self.bg_failed.store(true, Ordering::Release);
        self.room_cv.notify_all();
        self.bg_cv.notify_all();
    }

    /// When the flush thread should next try to resume (automatic retries on and a
    /// recoverable error waiting), for its wait.
    pub(crate) fn resume_due(&self, st: &State) -> Option<Instant> {
        if !self.opts.auto_resume || !st.resume.recoverable || st.resume.running {
            return None;
        }
        st.resume.next_attempt
    }

    /// Called by a flush thread whose retry is due: retries unless a job is still
    /// running (then it tries again shortly).
    pub(crate) fn auto_resume(&self) {
        let mut st = lock(&self.state);
        if self.resume_due(&st).is_none_or(|t| t > Instant::now()) {
            return;
        }
        if !Self::quiet(&st) {
            st.resume.next_attempt = Some(Instant::now() + Duration::from_millis(10));
            return;
        }
        drop(self.resume_claimed(st));
    }

    /// No flush or compaction is running (a retry runs alone).
    fn quiet(st: &State) -> bool {
        st.flushing.is_empty() && st.running_compactions == 0 && st.manual_compactions == 0
    }

    /// Runs one retry; `st` shows a recoverable error, no retry running and no job
    /// running. Returns the outcome (the error left, if any).
    fn resume_claimed(&self, mut st: std::sync::MutexGuard<'_, State>) -> Result<()> {
        st.resume.running = true;
        st.resume.attempts += 1;
        let work = st.resume.failed;
        drop(st);
        tracing::info!(?work, "retrying background work after running out of space");
        // A panic inside the retry (a bug) must not leave it marked as running, which
        // would stop every later retry and spin `Db::resume`: it becomes a fatal error.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.resume_work(work)))
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".to_string());
                    Err(Error::io(
                        &self.path,
                        std::io::Error::other(format!(
                            "the retry after running out of space panicked: {what}"
                        )),
                    ))
                });
        let mut st = lock(&self.state);
        st.resume.running = false;
        let outcome = match result {
            Ok(()) if st.resume.recoverable => {
                let cleared = st.bg_error.take();
                st.resume = ResumeState {
                    last_cleared: cleared,
                    attempts: st.resume.attempts,
                    recoveries: st.resume.recoveries + 1,
                    orphans: std::mem::take(&mut st.resume.orphans),
                    manifest_broken: st.resume.manifest_broken,
                    ..ResumeState::default()
                };
                self.bg_failed.store(false, Ordering::Release);
                tracing::info!("background work succeeded again; writes resume");
                Ok(())
            }
            // Made fatal meanwhile (cannot happen with no job running, but never clear
            // a fatal error).
            Ok(()) => self.bg_result(&st),
            Err(e) => {
                if is_no_space(&e) && st.resume.recoverable {
                    // Still full: the latest cause is the one to report.
                    st.resume.failed = work;
                    st.bg_error = Some(Arc::new(e));
                } else {
                    // Fatal (or an echo of the error already recorded, which changes
                    // nothing).
                    self.record_bg_error(&mut st, e, work);
                }
                if st.resume.recoverable {
                    // The next retry waits twice as long (up to the cap), whatever
                    // this one failed on: never a busy loop.
                    st.resume.backoff = st.resume.backoff.saturating_mul(2).clamp(
                        self.opts.resume_backoff_initial,
                        self.opts.resume_backoff_max,
                    );
                    st.resume.next_attempt = Some(Instant::now() + st.resume.backoff);
                }
                self.bg_result(&st)
            }
        };
        drop(st);
        self.room_cv.notify_all();
        self.bg_cv.notify_all();
        outcome
    }

    fn bg_result(&self, st: &State) -> Result<()> {
        match &st.bg_error {
            Some(e) => Err(Error::Background(e.clone())),
            None => Ok(()),
        }
    }

    /// The retry: a trustworthy manifest, the failed jobs' files removed, every frozen
    /// memtable flushed, and a due compaction run if one had failed.
    fn resume_work(&self, work: FailedWork) -> Result<()> {
        // A failed WAL write or fsync is never retried (see the module documentation):
        // the error becomes fatal.
        self.wal.health()?;
        {
            let mut st = lock(&self.state);
            if st.resume.manifest_broken {
                let edit = VersionEdit {
                    next_file_number: Some(st.next_file_number),
                    last_seq: Some(st.flushed_seq),
                    flushed_seq: Some(st.flushed_seq),
                    ..VersionEdit::default()
                };
                // Rolls to a fresh manifest (and clears the flag) when it succeeds.
                self.log_edit(&mut st, &edit)?;
            }
        }
        self.remove_orphans()?;
        loop {
            let next = self.mems.view().oldest_immutable().cloned();
            let Some(mem) = next else { break };
            let id = mem.id();
            lock(&self.state).flushing.insert(id);
            let r = self.flush_memtable(mem);
            lock(&self.state).flushing.remove(&id);
            r?;
        }
        if work == FailedWork::Compaction && self.compaction_threads > 0 {
            let task = {
                let mut st = lock(&self.state);
                let task = self.strategy.pick(&st.version, &self.pick_context());
                if let Some(task) = &task {
                    for t in task.input_tables() {
                        t.set_busy(true);
                    }
                    st.running_compactions += 1;
                }
                task
            };
            if let Some(task) = task {
                let r = self.run_compaction(&task);
                for t in task.input_tables() {
                    t.set_busy(false);
                }
                drop(task);
                lock(&self.state).running_compactions -= 1;
                self.empty_graveyard();
                r?;
            }
        }
        // Writes fail meanwhile, but one admitted before the stop may have failed its
        // fsync during the retry.
        self.wal.health()?;
        Ok(())
    }

    /// Removes the files of tables that failed jobs allocated but never installed.
    fn remove_orphans(&self) -> Result<()> {
        let orphans = lock(&self.state).resume.orphans.clone();
        if orphans.is_empty() {
            return Ok(());
        }
        for &n in &orphans {
            for path in [table_tmp_path(&self.path, n), table_path(&self.path, n)] {
                match self.fs.remove_file(&path) {
                    Ok(()) => {
                        tracing::debug!(file = %path.display(), "removed the output of a failed job")
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(path, e)),
                }
            }
        }
        self.fs
            .sync_dir(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        lock(&self.state)
            .resume
            .orphans
            .retain(|n| !orphans.contains(n));
        Ok(())
    }
}

impl Db {
    /// Retries failed background work now, without waiting for the back-off: after an
    /// out-of-space failure of a flush or compaction, once space was freed, this makes
    /// writes work again at once. Returns `Ok(())` when writes are accepted (also when
    /// nothing had failed), and [`Error::Background`] with the cause when the retry
    /// failed (still no space: the automatic retries go on) or the error is one only a
    /// reopen clears (see [`Error::is_no_space`]); a failed write or fsync of the WAL
    /// is reported as that WAL error, and never retried (see
    /// [`Db`](crate::Db#when-writing-fails-a-full-disk-and-other-failures)).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.resume()?; // nothing to resume: a no-op
    /// assert!(db.stats().background_error.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resume(&self) -> Result<()> {
        let inner = &self.inner;
        // The attempt count when another retry was seen running: its outcome is ours.
        let mut waited_for: Option<u64> = None;
        loop {
            if inner.closed.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            let st = lock(&inner.state);
            if st.bg_error.is_none() {
                // A poisoned WAL stops writes without a background error: not cured by
                // a retry either.
                return inner.wal.health().map_err(Error::from);
            }
            if !st.resume.recoverable
                || (!st.resume.running && waited_for.is_some_and(|a| a < st.resume.attempts))
            {
                return inner.bg_result(&st);
            }
            if st.resume.running {
                waited_for.get_or_insert(st.resume.attempts - 1);
            }
            if st.resume.running || !Inner::quiet(&st) {
                // Another retry or a job still finishing: wait for it, then look again.
                drop(
                    inner
                        .room_cv
                        .wait_timeout(st, Duration::from_millis(10))
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                );
                continue;
            }
            return inner.resume_claimed(st);
        }
    }
}
