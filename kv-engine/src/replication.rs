//! The engine's side of replication (the protocol lives in `kv-replication`): a
//! read-only mode for replicas, the lineage a primary forks and a replica adopts (its
//! file format is in `lineage.rs`), applying a primary's batches at the primary's
//! sequence numbers, and a view of the write-ahead log for shipping it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use kv_iter::SeqNo;
use kv_wal::{Observer, ObserverId, RetentionPin, TailCursor, Wal};

use crate::lineage::{LineageEntry, check, store};
use crate::mutex::lock;
use crate::{Db, Error, Result, WriteBatch, WriteOptions};

impl Db {
    /// Makes user writes fail with [`Error::ReadOnly`] (`on`) or accepts them again
    /// (`off`, as when a replica is promoted to primary). Writes already past the check
    /// complete. [`Db::apply_replicated`] is not affected.
    ///
    /// Switching a read-only database to writable forks its lineage (see
    /// [`Db::lineage`]) at the next sequence number, durably, before any user write is
    /// accepted; if that fails, the database stays read-only and the error is
    /// returned.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.set_read_only(true)?;
    /// assert!(matches!(db.put("k", "v"), Err(kv_engine::Error::ReadOnly)));
    /// db.set_read_only(false)?;
    /// db.put("k", "v")?;
    /// assert_eq!(db.lineage().last().map(|e| e.start_seq), Some(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_read_only(&self, on: bool) -> Result<()> {
        let inner = &*self.inner;
        let mut lineage = lock(&inner.lineage);
        if on || !inner.read_only.load(Ordering::Acquire) {
            inner.read_only.store(on, Ordering::Release);
            return Ok(());
        }
        // Read-only to writable: no user write can be numbered before the fork is
        // durable (they are refused until the flag changes below), and replicated
        // applies are held off so the fork point is the last sequence number.
        let _commits = lock(&inner.commit);
        let next = inner.wal.last_seq() + 1;
        let forked = crate::lineage::forked(&lineage, crate::lineage::random_id(), next);
        crate::lineage::store(&*inner.fs, &inner.path, &forked)?;
        *lineage = forked;
        inner.read_only.store(false, Ordering::Release);
        Ok(())
    }

    /// Whether user writes are refused (see [`Options::read_only`](crate::Options::read_only)).
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only.load(Ordering::Acquire)
    }

    /// The database's lineage, oldest entry first (see the `LINEAGE` file's
    /// description in the crate's `lineage` module): which writer produced which
    /// sequence numbers. A database opened writable has just forked a new entry at
    /// its next sequence number, so its writes are never attributed to a copy of it
    /// made earlier (a restored backup writes under a new id).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.put("k", "v")?;
    /// let first = db.lineage();
    /// assert_eq!(first.len(), 1);
    /// assert_eq!(first[0].start_seq, 1);
    /// db.close()?;
    /// // Opened writable again: a new writer from seq 2 on.
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// let second = db.lineage();
    /// assert_eq!(second.len(), 2);
    /// assert_eq!(second[0], first[0]);
    /// assert_eq!(second[1].start_seq, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lineage(&self) -> Vec<LineageEntry> {
        lock(&self.inner.lineage).clone()
    }

    /// Replaces the lineage of a read-only database (a replica) with its primary's,
    /// durably, before data of that lineage is applied. Refused on a writable database
    /// (its lineage is its own) and for a malformed lineage (`start_seq`s not strictly
    /// increasing from at least 1, beyond the sequence number space, or more than
    /// [`MAX_LINEAGE_ENTRIES`](crate::MAX_LINEAGE_ENTRIES) entries).
    ///
    /// ```
    /// use kv_engine::{Db, LineageEntry, Options};
    /// let dir = tempfile::tempdir()?;
    /// let replica = Db::open(dir.path(), Options::default().read_only(true))?;
    /// assert!(replica.lineage().is_empty());
    /// let primary = vec![LineageEntry { id: 7, start_seq: 1 }];
    /// replica.adopt_lineage(&primary)?;
    /// assert_eq!(replica.lineage(), primary);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn adopt_lineage(&self, entries: &[LineageEntry]) -> Result<()> {
        let inner = &*self.inner;
        let mut current = lock(&inner.lineage);
        if !inner.read_only.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Error::InvalidArgument(
                "a writable database keeps its own lineage; only a read-only one adopts another's"
                    .into(),
            ));
        }
        check(entries).map_err(Error::InvalidArgument)?;
        if current.as_slice() != entries {
            store(&*inner.fs, &inner.path, entries)?;
            *current = entries.to_vec();
        }
        Ok(())
    }

    /// Applies a batch replicated from a primary, numbered as the primary numbered it:
    /// `first_seq` must be exactly [`Db::last_seq`] + 1, otherwise nothing is written
    /// and the error is [`Error::SequenceGap`]. The batch goes through the normal write
    /// path (WAL, memtable, in-order publication), so the database's own log keeps the
    /// primary's sequence numbers and the applied position survives a crash together
    /// with the data. Works on a read-only database. An empty batch writes nothing.
    ///
    /// ```
    /// use kv_engine::{Db, Options, WriteOptions};
    /// let dir = tempfile::tempdir()?;
    /// let replica = Db::open(dir.path(), Options::default().read_only(true))?;
    /// let mut batch = kv_wal::Batch::new();
    /// batch.put("k", "v");
    /// let last = replica.apply_replicated(1, batch.clone(), WriteOptions::default())?;
    /// assert_eq!(last.get(), 1);
    /// // Applying it again (or skipping ahead) is refused, with nothing written.
    /// assert!(matches!(
    ///     replica.apply_replicated(1, batch, WriteOptions::default()),
    ///     Err(kv_engine::Error::SequenceGap { expected: 2, got: 1 })
    /// ));
    /// assert_eq!(replica.get("k")?.as_deref(), Some(&b"v"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply_replicated(
        &self,
        first_seq: u64,
        batch: kv_wal::Batch,
        opts: WriteOptions,
    ) -> Result<SeqNo> {
        let batch = WriteBatch::from_wal(batch);
        let inner = &self.inner;
        inner.commit_batch(&batch, opts, |seqs| {
            if seqs.first != first_seq {
                return Err(Error::SequenceGap {
                    expected: seqs.first,
                    got: first_seq,
                });
            }
            // Recorded like any commit, for transactions run after a promotion.
            let keys = batch.inner.iter().map(|op| op.key());
            inner.conflicts.record(seqs, keys, inner.visible_seq());
            Ok(())
        })
    }

    /// The file system the database runs on (the one from
    /// [`Options::fs`](crate::Options::fs), or the real one): replication reads
    /// checkpoints and writes its state files through it.
    pub fn fs(&self) -> Arc<dyn kv_wal::Fs> {
        Arc::clone(&self.inner.fs)
    }

    /// A view of the write-ahead log, for shipping it to replicas.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.put("k", "v")?;
    /// let mut cursor = db.wal().read_from(1)?;
    /// let kv_wal::Tail::Batch(b) = cursor.next()? else { panic!("expected a batch") };
    /// assert_eq!(b.seqs.first, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wal(&self) -> WalView<'_> {
        WalView {
            wal: &self.inner.wal,
        }
    }
}

/// Read access to a database's write-ahead log, from [`Db::wal`]: tail it, pin it
/// against release, observe appends and syncs. Appending is not offered: every write
/// goes through the database.
#[derive(Debug, Clone, Copy)]
pub struct WalView<'a> {
    wal: &'a Wal,
}

impl WalView<'_> {
    /// A cursor over batches from `seq` on (see [`Wal::read_from`]).
    pub fn read_from(&self, seq: u64) -> Result<TailCursor> {
        Ok(self.wal.read_from(seq)?)
    }

    /// Holds back the release of log segments with sequence numbers `>= seq` while the
    /// pin lives (see [`Wal::pin`]). Flushes release segments only below every pin.
    pub fn pin(&self, seq: u64) -> RetentionPin {
        self.wal.pin(seq)
    }

    /// Sets (or moves) `owner`'s durable retention floor: log segments holding sequence
    /// numbers `>= seq` are kept until `expires`, across restarts of the database (see
    /// [`Wal::set_floor`]). Replication keeps one per replica, so a restarted primary
    /// still holds what its replicas need.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.put("k", "v")?;
    /// db.wal().set_floor(7, 1, SystemTime::now() + Duration::from_secs(60))?;
    /// db.flush()?;
    /// db.close()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// assert_eq!(db.wal().oldest_retained_seq(), 1, "kept across the restart");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_floor(&self, owner: u64, seq: u64, expires: std::time::SystemTime) -> Result<()> {
        Ok(self.wal.set_floor(owner, seq, expires)?)
    }

    /// Removes `owner`'s durable floor (see [`Wal::remove_floor`]).
    pub fn remove_floor(&self, owner: u64) -> Result<()> {
        Ok(self.wal.remove_floor(owner)?)
    }

    /// The durable floors still holding the log (see [`Wal::floors`]).
    pub fn floors(&self) -> Vec<kv_wal::RetentionFloor> {
        self.wal.floors()
    }

    /// Registers an observer of appends and syncs (see [`Wal::register_observer`]).
    pub fn register_observer(&self, observer: Arc<dyn Observer>) -> Result<ObserverId> {
        Ok(self.wal.register_observer(observer)?)
    }

    /// Unregisters an observer; false if it was not registered.
    pub fn unregister_observer(&self, id: ObserverId) -> bool {
        self.wal.unregister_observer(id)
    }

    /// Every batch up to this sequence number is durable.
    pub fn durable_seq(&self) -> u64 {
        self.wal.durable_seq()
    }

    /// The last sequence number appended to the log.
    pub fn last_seq(&self) -> u64 {
        self.wal.last_seq()
    }

    /// The oldest sequence number [`read_from`](Self::read_from) can still start at.
    pub fn oldest_retained_seq(&self) -> u64 {
        self.wal.oldest_retained_seq()
    }

    /// Makes everything appended so far durable (one fsync, shared with concurrent
    /// syncs).
    pub fn sync(&self) -> Result<()> {
        Ok(self.wal.sync()?)
    }

    /// Makes everything up to `seq` durable.
    pub fn sync_up_to(&self, seq: u64) -> Result<()> {
        Ok(self.wal.sync_up_to(seq)?)
    }
}
