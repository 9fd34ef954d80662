//! The database handle and its shared state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use kv_memtable::{MemtableSet, MemtableSetView};
use kv_sstable::BlockCache;
use kv_wal::{FileLock, Fs, Wal};

use crate::bg_error::ResumeState;
use crate::compaction::Strategy;
use crate::counters::Counters;
use crate::manifest::Manifest;
use crate::mutex::lock;
use crate::options::Options;
use crate::publish::Publisher;
use crate::transaction::conflict::ConflictTracker;
use crate::version::{Graveyard, Version};
use crate::{Error, Result};

/// What readers see: the memtables and the tables, swapped together atomically.
#[derive(Debug)]
pub(crate) struct SuperVersion {
    pub mems: Arc<MemtableSetView>,
    pub version: Arc<Version>,
}

/// State changed by flushes (and compactions), under one mutex.
#[derive(Debug)]
pub(crate) struct State {
    pub version: Arc<Version>,
    pub manifest: Manifest,
    pub next_file_number: u64,
    pub flushed_seq: u64,
    pub bg_error: Option<Arc<Error>>,
    pub shutting_down: bool,
    /// Compactions running in background workers.
    pub running_compactions: usize,
    /// Manual compactions in progress (automatic ones are not started meanwhile).
    pub manual_compactions: usize,
    /// `Db::wait_idle` asks for the idle merge now rather than after a second without
    /// writes (see `Strategy::pick_idle`).
    pub idle_requested: bool,
    /// Frozen memtables a flush thread is writing.
    pub flushing: std::collections::HashSet<kv_memtable::MemtableId>,
    /// Retrying after an out-of-space failure (see `bg_error.rs`).
    pub resume: ResumeState,
}

/// Everything the handle, the background thread, snapshots and iterators share.
pub(crate) struct Inner {
    pub path: PathBuf,
    pub opts: Options,
    pub fs: Arc<dyn Fs>,
    pub cache: Arc<BlockCache>,
    /// The open tables, within `max_open_files`.
    pub tables: Arc<crate::table_cache::TableCache>,
    /// Live iterators and the block buffers they may hold.
    pub iter_gauge: Arc<crate::memory::Gauge>,
    /// Running flushes and compactions and their table builders' buffers.
    pub build_gauge: Arc<crate::memory::Gauge>,
    pub wal: Wal,
    pub mems: MemtableSet,
    pub sv: ArcSwap<SuperVersion>,
    pub state: Mutex<State>,
    /// Wakes the background thread.
    pub bg_cv: Condvar,
    /// Wakes writers waiting for room (and `flush` waiting for completion).
    pub room_cv: Condvar,
    /// Serializes commits (WAL append, memtable insert, publication) and memtable
    /// freezes, so every batch of a WAL segment lands in that segment's memtable and
    /// sequence numbers become visible in order.
    pub commit: Mutex<()>,
    /// The visible sequence number (readers read at it), advanced strictly in order;
    /// synced batches join it only once durable.
    /// Shared with write tickets, which outlive the database if kept.
    pub publisher: Arc<Publisher>,
    /// Live snapshots: sequence number -> count.
    pub snapshots: Mutex<BTreeMap<u64, usize>>,
    pub counters: Counters,
    /// Recent commits' keys, for transaction conflict checks.
    pub conflicts: ConflictTracker,
    pub graveyard: Arc<Graveyard>,
    pub strategy: Box<dyn Strategy>,
    pub compaction_threads: usize,
    /// The strategy's estimate of compaction debt, for back-pressure.
    pub pending_compaction_bytes: AtomicU64,
    /// Paces writes between the slowdown and stop thresholds.
    pub pacer: crate::pacer::Pacer,
    /// Syncs the WAL for writes submitted without a waiting thread (`Db::submit`).
    pub syncer: crate::ticket::Syncer,
    pub closed: AtomicBool,
    /// Fast-path copy of `state.bg_error.is_some()`.
    pub bg_failed: AtomicBool,
    /// User writes refused (a replica).
    pub read_only: AtomicBool,
    /// The lineage as stored in `LINEAGE` (see `lineage.rs`); its lock also orders
    /// switches between read-only and writable.
    pub lineage: Mutex<Vec<crate::lineage::LineageEntry>>,
    pub _lock: Box<dyn FileLock>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Publishes a fresh [`SuperVersion`]; call with the state lock held so installs are
    /// ordered.
    pub(crate) fn install_sv(&self, st: &State) {
        self.sv.store(Arc::new(SuperVersion {
            mems: self.mems.view(),
            version: st.version.clone(),
        }));
    }

    /// The background error, if background work has failed.
    pub(crate) fn check_bg_error(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if !self.bg_failed.load(Ordering::Acquire) {
            return Ok(());
        }
        match &lock(&self.state).bg_error {
            Some(e) => Err(Error::Background(e.clone())),
            None => Ok(()),
        }
    }

    /// The sequence number readers see.
    pub(crate) fn visible_seq(&self) -> u64 {
        self.publisher.visible()
    }

    /// Deletes files whose last reference is gone.
    pub(crate) fn empty_graveyard(&self) {
        let files = std::mem::take(&mut *lock(&self.graveyard.files));
        if files.is_empty() {
            return;
        }
        for f in &files {
            if let Err(e) = self.fs.remove_file(f) {
                tracing::warn!(file = %f.display(), error = %e, "could not delete obsolete file");
            }
        }
        if let Err(e) = self.fs.sync_dir(&self.path) {
            tracing::warn!(error = %e, "could not sync the directory after deletions");
        }
    }
}

/// An open database. `Send + Sync`: share it between threads by reference or `Arc`.
///
/// Dropping it closes it (best effort: errors are logged); call [`Db::close`] to see
/// them.
///
/// # When writing fails: a full disk and other failures
///
/// A failure that leaves the database unable to make writes durable stops all writes:
/// [`put`](Db::put), [`write`](Db::write), [`flush`](Db::flush) and friends fail at
/// once with an error naming the cause, while reads and scans go on, and nothing
/// acknowledged is lost. [`Stats::background_state`](crate::Stats::background_state)
/// tells which of two cases holds:
///
/// - **Out of disk space in a flush or compaction**
///   ([`BackgroundState::NoSpace`](crate::BackgroundState::NoSpace)): a table or the
///   manifest could not be written (`ENOSPC` or `EDQUOT`). Writes fail with
///   [`Error::Background`] (for which [`Error::is_no_space`] holds) while the engine
///   retries the failed work with back-off ([`Options::resume_backoff`], default
///   100 ms doubling up to 5 s; [`Options::auto_resume`] turns it off). Once space is
///   freed, the next retry succeeds and writes are accepted again, without a reopen;
///   [`Db::resume`] retries at once. [`Stats`](crate::Stats) counts the retries and the
///   resumes and keeps the last error a resume cleared.
/// - **Anything else** ([`BackgroundState::Failed`](crate::BackgroundState::Failed)):
///   damaged data, an I/O error other than out of space, and **every failure of the
///   write-ahead log, out of space included**. A failed WAL fsync means the kernel may
///   have dropped the pages it covered, so no later fsync of that log can prove them
///   durable; a failed WAL write leaves a partial record and sequence numbers handed
///   out to writes that never reached the file. Continuing would need a new log that
///   takes over from the last durable record, which the engine does not do: writes
///   stay stopped until the database is reopened (the reopen replays what the WAL made
///   durable). The WAL writes into space reserved when its segment was started
///   (preallocation, on by default), while flushes and compactions need new space, so
///   a filling disk usually fails one of those first, and that stops writes before
///   the WAL needs more room. When the disk is already full as a new WAL segment
///   starts (at a memtable switch), the segment cannot be created or preallocated
///   and the WAL fails first: that case needs the reopen.
///
/// ```
/// use kv_engine::{Db, Options};
/// let dir = tempfile::tempdir()?;
/// let db = Db::open(dir.path(), Options::default())?;
/// db.put("apple", "red")?;
/// db.put("banana", "yellow")?;
/// db.delete("apple")?;
/// assert_eq!(db.get("apple")?, None);
/// let keys: Vec<_> = db.range::<&str, _>(..).map(|r| r.map(|(k, _)| k)).collect::<Result<_, _>>()?;
/// assert_eq!(keys, vec![b"banana".to_vec()]);
/// db.close()?;
///
/// let db = Db::open(dir.path(), Options::default())?; // everything is still there
/// assert_eq!(db.get("banana")?.as_deref(), Some(&b"yellow"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Db {
    pub(crate) inner: Arc<Inner>,
    pub(crate) bg: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl Db {
    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Closes the database: stops background work, makes the WAL durable and gives back
    /// the space its current segment reserved ahead of its data, releases the lock.
    /// Frozen memtables not yet flushed stay in the WAL and are recovered at the next
    /// open. Dropping the database does the same (reporting a failure in the log).
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        {
            let mut st = lock(&self.inner.state);
            st.shutting_down = true;
        }
        self.inner.bg_cv.notify_all();
        self.inner.room_cv.notify_all();
        self.inner.syncer.stop();
        for handle in std::mem::take(&mut *lock(&self.bg)) {
            if handle.join().is_err() {
                tracing::error!("a background thread panicked");
            }
        }
        self.inner.empty_graveyard();
        // Syncs the WAL and gives back the space its current segment reserved ahead
        // of its data (a small database stays small on disk once closed).
        let closed = self.inner.wal.close_shared();
        // Submitted writes nobody synced yet: published if the close made them
        // durable, failed otherwise, so that no ticket waits forever.
        self.inner.settle_tickets(closed.is_ok());
        closed?;
        Ok(())
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "closing the database failed");
        }
    }
}
