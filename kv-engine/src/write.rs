//! The write path: group commit through the WAL, memtable insert, in-order publication,
//! back-pressure.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kv_iter::{SeqNo, ValueKind};
use kv_wal::{AppendOptions, Op, SeqRange, SyncPolicy};

use crate::counters::Counters;
use crate::db::Inner;
use crate::mutex::lock;
use crate::pacer::paced_rate;
use crate::{Db, Error, Result, WriteBatch, WriteOptions};

impl Inner {
    /// Commits `batch`: WAL (grouped with concurrent writers: one write and at most one
    /// fsync per group), memtable, then publication in sequence order. Returns the last
    /// sequence number of the batch.
    pub(crate) fn write(&self, batch: &WriteBatch, opts: WriteOptions) -> Result<SeqNo> {
        // Plain writes are recorded for transactions to be checked against.
        self.write_with(batch, opts, |seqs| {
            let keys = batch.inner.iter().map(|op| op.key());
            self.conflicts.record(seqs, keys, self.visible_seq());
            Ok(())
        })
    }

    /// [`Inner::write`] with `admit` run while the batch is being numbered (under the
    /// WAL's numbering lock, in sequence order): an error from it fails the write with
    /// nothing written. Transactions validate there.
    ///
    /// Fails with [`Error::ReadOnly`] on a read-only database (a replica).
    pub(crate) fn write_with(
        &self,
        batch: &WriteBatch,
        opts: WriteOptions,
        admit: impl FnOnce(SeqRange) -> Result<()>,
    ) -> Result<SeqNo> {
        if self.read_only.load(Ordering::Acquire) {
            return Err(Error::ReadOnly);
        }
        self.commit_batch(batch, opts, admit)
    }

    /// The write path itself, for user writes and replicated batches alike.
    pub(crate) fn commit_batch(
        &self,
        batch: &WriteBatch,
        opts: WriteOptions,
        admit: impl FnOnce(SeqRange) -> Result<()>,
    ) -> Result<SeqNo> {
        let start = Instant::now();
        self.check_bg_error()?;
        if batch.is_empty() {
            return SeqNo::new(self.visible_seq())
                .map_err(|e| Error::InvalidArgument(e.to_string()));
        }
        let want_sync = opts
            .sync_override()
            .unwrap_or(self.opts.sync_policy == SyncPolicy::Always);
        let (first, last) = self.apply_batch(batch, want_sync, admit)?;
        if want_sync {
            if let Err(e) = self.wal.sync_up_to(last) {
                self.publisher.fail(first);
                return Err(e.into());
            }
            self.publisher.durable(self.wal.durable_seq());
        }
        if self.publisher.wait_visible(last).is_err() {
            // A synced batch numbered before this one failed its fsync: this one can
            // never be visible. The log is poisoned; report its error.
            self.wal.health()?;
            return Err(Error::Wal(kv_wal::Error::Poisoned {
                path: self.wal.dir().to_path_buf(),
                cause: "an earlier synced write failed its fsync".into(),
            }));
        }

        self.count_batch(batch);
        self.counters
            .write_latency
            .record(start.elapsed().as_nanos() as u64);
        SeqNo::new(last).map_err(|e| Error::InvalidArgument(e.to_string()))
    }

    /// The part of the write path under the commit lock: waits for room, numbers the
    /// batch, appends it to the WAL (no fsync) and inserts it into the memtable, and
    /// records it with the publisher (`want_sync`: published only once durable).
    /// Returns its first and last sequence numbers.
    #[inline]
    fn apply_batch(
        &self,
        batch: &WriteBatch,
        want_sync: bool,
        admit: impl FnOnce(SeqRange) -> Result<()>,
    ) -> Result<(u64, u64)> {
        self.make_room(batch.user_bytes)?;

        // One writer at a time appends to the WAL (handing the batch to the OS, no
        // fsync) and inserts into the memtable, in sequence order. The active memtable
        // cannot be frozen meanwhile: freezing takes this lock too, so every batch lands
        // in the memtable of its WAL segment. Durability waits come after, outside the
        // lock, where kv-wal makes one fsync serve everyone waiting (group commit).
        // Publication (see `publish.rs`) is in order: an unsynced batch is visible at
        // once unless a synced one numbered before it still waits for its fsync; a
        // synced batch only once durable, never if its fsync fails.
        let commit = crate::mutex::lock_commit(&self.commit);
        let seqs = self
            .wal
            .append_if(&batch.inner, AppendOptions { sync: Some(false) }, admit)?;
        let mem = self.mems.active();
        for (i, op) in batch.inner.iter().enumerate() {
            let seq = SeqNo::new(seqs.first + i as u64)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
            match op {
                Op::Put { key, value } => mem.insert(key, seq, ValueKind::Put, value),
                Op::Delete { key } => mem.insert(key, seq, ValueKind::Delete, &[]),
            };
        }
        let last = seqs.first + seqs.count - 1;
        self.publisher.inserted(seqs.first, last, want_sync);
        drop(commit);
        Ok((seqs.first, last))
    }

    /// [`Db::submit`]'s write: like [`Inner::write`] up to the memtable insert, without
    /// waiting for durability or visibility. Returns the last sequence number and
    /// whether the write waits for an fsync (the caller asks the syncer for it).
    pub(crate) fn submit_batch(
        &self,
        batch: &WriteBatch,
        opts: WriteOptions,
    ) -> Result<(u64, bool)> {
        if self.read_only.load(Ordering::Acquire) {
            return Err(Error::ReadOnly);
        }
        self.check_bg_error()?;
        if batch.is_empty() {
            return Ok((self.visible_seq(), false));
        }
        let want_sync = opts
            .sync_override()
            .unwrap_or(self.opts.sync_policy == SyncPolicy::Always);
        let (_, last) = self.apply_batch(batch, want_sync, |seqs| {
            let keys = batch.inner.iter().map(|op| op.key());
            self.conflicts.record(seqs, keys, self.visible_seq());
            Ok(())
        })?;
        self.count_batch(batch);
        Ok((last, want_sync))
    }

    /// Counts a written batch in the statistics (blocking and submitted writes alike).
    fn count_batch(&self, batch: &WriteBatch) {
        let c = &self.counters;
        Counters::add(&c.batches, 1);
        Counters::add(&c.puts, batch.puts);
        Counters::add(&c.deletes, batch.deletes);
        Counters::add(&c.user_bytes_written, batch.user_bytes);
        Counters::add(&c.wal_bytes, batch.inner.encoded_len() as u64);
    }

    /// Waits until the active memtable has room, freezing it (and rotating the WAL) when
    /// it is full, and stalling while too many frozen memtables await their flush.
    fn make_room(&self, batch_bytes: u64) -> Result<()> {
        let mut stalled: Option<Instant> = None;
        // Level 0 or compaction debt piling up: slow down once, or wait for compaction
        // (only when compaction runs: otherwise nothing would ever make room).
        if self.compaction_threads > 0 {
            let mut slowed = false;
            loop {
                self.check_bg_error()?;
                let l0 = self.sv.load().version.levels.first().map_or(0, Vec::len);
                let pending = self.pending_compaction_bytes.load(Ordering::Relaxed);
                if (l0 >= self.opts.l0_stop_files
                    || pending >= self.opts.pending_compaction_hard_bytes)
                    && self.compaction_can_progress()
                {
                    stalled.get_or_insert_with(Instant::now);
                    let st = lock(&self.state);
                    if st.bg_error.is_none() && !st.shutting_down {
                        self.bg_cv.notify_all();
                        let _ = self.room_cv.wait_timeout(st, Duration::from_millis(50));
                    }
                    continue;
                }
                if !slowed
                    && (l0 >= self.opts.l0_slowdown_files
                        || pending >= self.opts.pending_compaction_soft_bytes)
                {
                    // Paced: the rate for whichever backlog is further along.
                    let o = &self.opts;
                    let rate = paced_rate(
                        o.slowdown_write_rate,
                        l0 as u64,
                        o.l0_slowdown_files as u64,
                        o.l0_stop_files as u64,
                    )
                    .min(paced_rate(
                        o.slowdown_write_rate,
                        pending,
                        o.pending_compaction_soft_bytes,
                        o.pending_compaction_hard_bytes,
                    ));
                    slowed = true;
                    let sleep = self.pacer.reserve(batch_bytes, rate);
                    if !sleep.is_zero() {
                        Counters::add(&self.counters.slowdowns, 1);
                        let slept = self.paced_sleep(sleep);
                        Counters::add(&self.counters.stall_micros, slept.as_micros() as u64);
                        continue;
                    }
                }
                break;
            }
        }
        let result = loop {
            if let Err(e) = self.check_bg_error() {
                break Err(e);
            }
            if self.mems.active().approximate_size() < self.opts.memtable_size {
                break Ok(());
            }
            let guard = lock(&self.commit);
            if self.mems.active().approximate_size() < self.opts.memtable_size {
                break Ok(());
            }
            if self.mems.is_full() {
                drop(guard);
                stalled.get_or_insert_with(Instant::now);
                self.wait_for_room();
                continue;
            }
            let r = self.freeze_active();
            drop(guard);
            break r;
        };
        if let Some(t) = stalled {
            Counters::add(&self.counters.stalls, 1);
            Counters::add(&self.counters.stall_micros, t.elapsed().as_micros() as u64);
        }
        result
    }

    /// Sleeps up to `total` for the write pacer, in short steps, and stops early once
    /// the backlog that slowed the write is gone, the database is closing or
    /// background work failed (the caller's loop then reports it). Returns the time
    /// slept.
    fn paced_sleep(&self, total: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let left = total.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(crate::pacer::SLEEP_STEP));
            let l0 = self.sv.load().version.levels.first().map_or(0, Vec::len);
            let pending = self.pending_compaction_bytes.load(Ordering::Relaxed);
            let backlog = l0 >= self.opts.l0_slowdown_files
                || pending >= self.opts.pending_compaction_soft_bytes;
            if !backlog
                || self.bg_failed.load(Ordering::Acquire)
                || self.closed.load(Ordering::Acquire)
            {
                break;
            }
        }
        start.elapsed()
    }

    /// Whether a stall on compaction can end: a compaction is running (its end wakes
    /// the stalled writers) or one is due (a worker will pick it). When neither holds,
    /// waiting would never end: the writer goes on (options validation rules out the
    /// known cases, and this keeps any other from deadlocking writers).
    fn compaction_can_progress(&self) -> bool {
        let st = lock(&self.state);
        if st.running_compactions > 0 || st.manual_compactions > 0 {
            return true;
        }
        let due = self
            .strategy
            .pick(&st.version, &self.pick_context())
            .is_some();
        if !due {
            tracing::warn!(
                "writes would stall on compaction, but no compaction is running or due; not stalling"
            );
        }
        due
    }

    /// Waits (bounded) for a flush to free a slot or for background work to fail.
    pub(crate) fn wait_for_room(&self) {
        let st = lock(&self.state);
        if self.mems.is_full() && st.bg_error.is_none() && !st.shutting_down {
            let _ = self.room_cv.wait_timeout(st, Duration::from_millis(50));
        }
    }

    /// Freezes the active memtable and starts a new WAL segment for the next one. The
    /// caller holds `commit` and has checked there is room.
    pub(crate) fn freeze_active(&self) -> Result<()> {
        self.wal.rotate()?;
        // Rotation fsynced the sealed segment: synced batches in it are durable.
        self.publisher.durable(self.wal.durable_seq());
        let st = lock(&self.state);
        self.mems.freeze()?;
        self.install_sv(&st);
        drop(st);
        self.bg_cv.notify_all();
        Ok(())
    }
}

impl Db {
    /// Writes `value` under `key`.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.put(b"key", b"value")?;
    /// assert_eq!(db.get(b"key")?.as_deref(), Some(&b"value"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let mut b = WriteBatch::new();
        b.put(key, value);
        self.inner.write(&b, WriteOptions::default()).map(|_| ())
    }

    /// Deletes `key` (a no-op if it is absent).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.put("k", "v")?;
    /// db.delete("k")?;
    /// assert!(db.get("k")?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete(key);
        self.inner.write(&b, WriteOptions::default()).map(|_| ())
    }

    /// Applies `batch` atomically and returns the sequence number of its last
    /// operation (operations are numbered consecutively). With
    /// [`WriteOptions::sync`], the batch is durable on disk when this returns.
    ///
    /// Keys, values and the batch are checked against the size limits before anything
    /// is written: an oversized batch fails with nothing applied.
    ///
    /// ```
    /// use kv_engine::{Db, Options, WriteBatch, WriteOptions};
    /// let dir = tempfile::tempdir()?;
    /// let db = Db::open(dir.path(), Options::default())?;
    /// let mut b = WriteBatch::new();
    /// b.put("a", "1").put("b", "2");
    /// db.write(&b, WriteOptions::default().sync(true))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write(&self, batch: &WriteBatch, opts: WriteOptions) -> Result<SeqNo> {
        self.inner.write(batch, opts)
    }
}
