//! Writes submitted without a thread waiting for them: [`Db::submit`] numbers a batch,
//! appends it to the WAL and inserts it into the memtable (as [`Db::write`] does under
//! the commit lock), and returns a [`WriteTicket`] that completes once the write is
//! visible: at once for an unsynced write (unless a synced one before it still waits
//! for its fsync), after its fsync for a synced one.
//!
//! The fsync of submitted synced writes is run by the database's syncer thread, which
//! joins the WAL's group commit like any blocking writer: one fsync covers every write
//! submitted before it, whether its submitter waits on a thread, polls a future or
//! went away. So a thousand writes in flight cost a thousand tickets, not a thousand
//! parked threads.
//!
//! A ticket is a [`Future`] (runtime-agnostic: it keeps the waker of the task polling
//! it and wakes it when the write is published or fails) and can also be waited for
//! on a thread ([`WriteTicket::wait`]).
//!
//! Dropping a ticket does not cancel its write: the batch is already in the WAL and the
//! memtable when `submit` returns, and it becomes visible whole once durable (or never,
//! if its fsync fails: the log is then poisoned). Never part of it.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};

use kv_iter::SeqNo;

use crate::db::Inner;
use crate::mutex::lock;
use crate::publish::Publisher;
use crate::{Db, Error, Result, WriteBatch, WriteOptions};

/// The syncer's state: the highest submitted synced sequence number not yet asked of
/// the WAL, and whether the database is closing.
#[derive(Debug, Default)]
pub(crate) struct Syncer {
    state: Mutex<SyncerState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct SyncerState {
    wanted: u64,
    stop: bool,
}

impl Syncer {
    /// Asks for everything up to `seq` to be made durable.
    pub(crate) fn want(&self, seq: u64) {
        let mut st = lock(&self.state);
        if seq > st.wanted {
            st.wanted = seq;
            self.cv.notify_one();
        }
    }

    /// Stops the syncer thread (after the sync it may be running).
    pub(crate) fn stop(&self) {
        lock(&self.state).stop = true;
        self.cv.notify_all();
    }
}

impl Inner {
    /// The syncer thread: syncs the WAL up to what submitted synced writes need and
    /// publishes them, until the database closes.
    pub(crate) fn syncer_loop(self: Arc<Self>) {
        let mut done = 0u64;
        loop {
            let wanted = {
                let mut st = lock(&self.syncer.state);
                while !st.stop && st.wanted <= done {
                    st = self
                        .syncer
                        .cv
                        .wait(st)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                if st.stop {
                    return;
                }
                st.wanted
            };
            match self.wal.sync_up_to(wanted) {
                Ok(()) => self.publisher.durable(self.wal.durable_seq()),
                Err(e) => {
                    // Every synced batch still waiting fails with the log: none of
                    // them (nor anything after them) is ever published.
                    tracing::error!(error = %e, "syncing submitted writes failed");
                    if let Some(first) = self.publisher.oldest_waiting_synced() {
                        self.publisher.fail(first);
                    }
                }
            }
            done = wanted;
        }
    }

    /// Publishes what the WAL made durable at close, and fails what it could not, so
    /// that no ticket waits forever on a closed database.
    pub(crate) fn settle_tickets(&self, closed_durably: bool) {
        if closed_durably {
            self.publisher.durable(self.wal.durable_seq());
        }
        if let Some(first) = self.publisher.oldest_waiting_synced() {
            self.publisher.fail(first);
        }
    }
}

/// A submitted write: completes with the write's last sequence number once it is
/// visible, or with the error that made that impossible. See [`Db::submit`].
#[derive(Debug)]
#[must_use = "a ticket does nothing unless waited for or polled (dropping it does not cancel the write)"]
pub struct WriteTicket {
    // The publisher and the WAL directory only, not the database: a ticket kept after
    // `close` must not keep the database (and its directory lock) alive.
    publisher: Arc<Publisher>,
    wal_dir: Arc<Path>,
    last: u64,
}

impl WriteTicket {
    /// The last sequence number of the write.
    pub fn seq(&self) -> u64 {
        self.last
    }

    /// Waits on this thread until the write is visible (durable first if synced).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// let mut batch = kv_engine::WriteBatch::new();
    /// batch.put("k", "v");
    /// let ticket = db.submit(&batch, kv_engine::WriteOptions::default().sync(true))?;
    /// ticket.wait()?;
    /// assert_eq!(db.get("k")?.as_deref(), Some(&b"v"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(self) -> Result<SeqNo> {
        match self.publisher.wait_visible(self.last) {
            Ok(()) => seq_no(self.last),
            Err(_) => Err(self.failure()),
        }
    }

    fn failure(&self) -> Error {
        Error::Wal(kv_wal::Error::Poisoned {
            path: self.wal_dir.to_path_buf(),
            cause: format!(
                "the write ending at sequence {} or an earlier synced one failed its fsync, \
                 or the database closed before it was durable",
                self.last
            ),
        })
    }
}

fn seq_no(seq: u64) -> Result<SeqNo> {
    SeqNo::new(seq).map_err(|e| Error::InvalidArgument(e.to_string()))
}

impl Future for WriteTicket {
    type Output = Result<SeqNo>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.publisher.poll_visible(self.last, cx) {
            Poll::Ready(Ok(())) => Poll::Ready(seq_no(self.last)),
            Poll::Ready(Err(_)) => Poll::Ready(Err(self.failure())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Db {
    /// Submits a write without waiting for it: the batch is numbered, appended to the
    /// WAL and inserted into the memtable before this returns (so it is applied whole
    /// or, if its fsync fails, not at all), and the returned [`WriteTicket`] completes
    /// once it is visible. A synced write (`opts.sync(true)`, or the database's
    /// `SyncPolicy::Always`) is made durable by the database's syncer thread, in the
    /// same group commit as blocking writers. This call itself can still block for
    /// back-pressure (a full memtable set, level 0 at its stop count) like
    /// [`Db::write`].
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// let tickets: Vec<_> = (0..100)
    ///     .map(|i| {
    ///         let mut b = kv_engine::WriteBatch::new();
    ///         b.put(format!("k{i}"), "v");
    ///         db.submit(&b, kv_engine::WriteOptions::default().sync(true))
    ///     })
    ///     .collect::<Result<_, _>>()?;
    /// for t in tickets {
    ///     t.wait()?;
    /// }
    /// assert_eq!(db.get("k99")?.as_deref(), Some(&b"v"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit(&self, batch: &WriteBatch, opts: WriteOptions) -> Result<WriteTicket> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let (last, want_sync) = self.inner.submit_batch(batch, opts)?;
        if want_sync {
            self.inner.syncer.want(last);
        }
        Ok(WriteTicket {
            publisher: self.inner.publisher.clone(),
            wal_dir: Arc::from(self.inner.wal.dir()),
            last,
        })
    }
}
