//! The read path: point reads, range and prefix scans, snapshots.

use std::ops::RangeBounds;
use std::sync::Arc;
use std::time::Instant;

use kv_iter::{
    BoundedCursor, Bounds, Cursor, CursorIter, MergingCursor, SeqNo, Visibility, VisibleCursor,
};
use kv_memtable::Lookup as MemLookup;
use kv_sstable::Lookup as TableLookup;

use crate::counters::Counters;
use crate::db::{Inner, SuperVersion};
use crate::mutex::lock;
use crate::version::Source;
use crate::{Db, Result, Value};

impl Inner {
    /// Reads `key` as of `seq` (`None`: the latest visible state): memtables newest
    /// first, then level 0 newest first, then one table per deeper level.
    ///
    /// The view (memtables and tables) is loaded *before* the latest sequence number is
    /// read, as RocksDB does: everything published up to that number was then already
    /// in the view, or in a memtable or table the view holds. The other order could
    /// read at a number whose versions a flush and compaction had meanwhile folded
    /// into a newer one the reader may not see. (A snapshot's number is registered, so
    /// compaction keeps what it sees whatever view a read loads.)
    pub(crate) fn get_at(&self, key: &[u8], seq: Option<u64>) -> Result<Option<Value>> {
        let c = &self.counters;
        // Latency is sampled (one get in 8) to keep two clock reads off most gets.
        let n = c.gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let start = n.is_multiple_of(GET_LATENCY_SAMPLE).then(Instant::now);
        let sv = self.sv.load();
        let seq = seq.unwrap_or_else(|| self.visible_seq());
        let snapshot = SeqNo::new(seq).unwrap_or(SeqNo::MAX);
        let found = match sv.mems.get(key, snapshot) {
            Some(MemLookup::Value { value, .. }) => {
                Counters::add(&c.get_hits_memtable, 1);
                Some(Value::shared(value))
            }
            Some(_) => {
                Counters::add(&c.get_hits_memtable, 1);
                None
            }
            None => match sv.version.get(key, snapshot, &c.table_probes)? {
                Some((found, Source::Level(level))) => {
                    if let Some(h) = c.get_hits_level.get(level) {
                        Counters::add(h, 1);
                    }
                    match found {
                        TableLookup::Value { value, .. } => Some(Value::owned(value)),
                        _ => None,
                    }
                }
                None => None,
            },
        };
        match &found {
            Some(v) => Counters::add(&c.user_bytes_read, v.len() as u64),
            None => Counters::add(&c.get_misses, 1),
        }
        if let Some(start) = start {
            c.get_latency.record(start.elapsed().as_nanos() as u64);
        }
        Ok(found)
    }

    /// A scan of `bounds` as of `seq` (`None`: the latest visible state, read after the
    /// view is loaded: see [`Inner::get_at`]), over the current memtables and tables.
    pub(crate) fn iter_at(&self, bounds: Bounds, seq: Option<u64>) -> Iter {
        let sv = self.sv.load_full();
        let seq = seq.unwrap_or_else(|| self.visible_seq());
        let snapshot = SeqNo::new(seq).unwrap_or(SeqNo::MAX);
        let mut children: Vec<Box<dyn Cursor + Send>> = Vec::new();
        for c in sv.mems.cursors() {
            children.push(Box::new(c));
        }
        children.extend(sv.version.cursors());
        // Each table cursor holds at most one block that the block cache may have let
        // go (a decompressed or read block); mapped blocks are borrowed.
        let tables = children.len().saturating_sub(sv.mems.memtables().count());
        let charge = self
            .iter_gauge
            .charge((tables * self.opts.block_size) as u64);
        let merged = MergingCursor::new(children);
        let visible = VisibleCursor::new(merged, snapshot, Visibility::Latest);
        Iter {
            inner: CursorIter::new(BoundedCursor::new(visible, bounds)),
            _sv: sv,
            _charge: charge,
        }
    }
}

/// Point-read latency is recorded for one get in this many.
const GET_LATENCY_SAMPLE: u64 = 8;

type Stack = BoundedCursor<VisibleCursor<MergingCursor<Box<dyn Cursor + Send>>>>;

/// A double-ended iterator over `(key, value)` pairs in key order, as of the moment it
/// was created; from [`Db::range`], [`Db::prefix`] or a [`Snapshot`].
///
/// It holds the memtables and tables it reads, so it sees a consistent state however
/// long it lives, and it never blocks writers, flushes or compactions. A read error
/// (damaged table block, I/O error) is yielded as an `Err` item, after which the
/// iterator ends.
pub struct Iter {
    inner: CursorIter<Stack>,
    _sv: Arc<SuperVersion>,
    _charge: crate::memory::Charge,
}

impl std::fmt::Debug for Iter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}

impl Iter {
    /// Like [`Iterator::next`], but lends the key and value (until the next call)
    /// instead of copying each into a new vector: the fastest way to scan (a scan of
    /// 100-byte values spends about a fifth of its time allocating otherwise). Mixes
    /// freely with the iterator's own calls.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// for k in ["a", "b", "c"] {
    ///     db.put(k, "value")?;
    /// }
    /// let mut it = db.range("b"..);
    /// let mut keys = Vec::new();
    /// while let Some(entry) = it.next_ref() {
    ///     let (key, value) = entry?;
    ///     assert_eq!(value, b"value");
    ///     keys.push(key.to_vec());
    /// }
    /// assert_eq!(keys, [b"b".to_vec(), b"c".to_vec()]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn next_ref(&mut self) -> Option<Result<(&[u8], &[u8])>> {
        self.inner.next_ref().map(|r| r.map_err(Into::into))
    }

    /// The lending counterpart of [`DoubleEndedIterator::next_back`]; see
    /// [`next_ref`](Self::next_ref).
    pub fn next_back_ref(&mut self) -> Option<Result<(&[u8], &[u8])>> {
        self.inner.next_back_ref().map(|r| r.map_err(Into::into))
    }
}

impl Iterator for Iter {
    type Item = Result<(Vec<u8>, Vec<u8>)>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(|r| r.map_err(Into::into))
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.inner.next_back().map(|r| r.map_err(Into::into))
    }
}

impl std::iter::FusedIterator for Iter {}

impl Db {
    /// The value of `key`, or `None`.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// assert!(db.get("missing")?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>> {
        self.inner.get_at(key.as_ref(), None)
    }

    /// The entries whose keys fall in `range`, in key order (`.rev()` for descending).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// for k in ["a", "b", "c", "d"] {
    ///     db.put(k, k.to_uppercase())?;
    /// }
    /// let keys: Vec<_> = db.range("b"..="c").map(|r| r.map(|(k, _)| k)).collect::<Result<_, _>>()?;
    /// assert_eq!(keys, [b"b".to_vec(), b"c".to_vec()]);
    /// let last = db.range::<&str, _>(..).next_back().transpose()?;
    /// assert_eq!(last, Some((b"d".to_vec(), b"D".to_vec())));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        self.inner.iter_at(Bounds::from_range(range), None)
    }

    /// The entries whose keys start with `prefix`, in key order.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.put("user:1", "ada")?;
    /// db.put("user:2", "bob")?;
    /// db.put("order:1", "tea")?;
    /// assert_eq!(db.prefix("user:").count(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        self.inner.iter_at(Bounds::prefix(prefix.as_ref()), None)
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> Iter {
        self.inner.iter_at(Bounds::all(), None)
    }

    /// A consistent point-in-time view: reads through it ignore later writes, and
    /// compaction keeps what it can see until it is dropped.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.put("k", "old")?;
    /// let snap = db.snapshot();
    /// db.put("k", "new")?;
    /// assert_eq!(snap.get("k")?.as_deref(), Some(&b"old"[..]));
    /// assert_eq!(db.get("k")?.as_deref(), Some(&b"new"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self) -> Snapshot<'_> {
        let mut snaps = lock(&self.inner.snapshots);
        // Read the sequence number under the lock so compaction, which reads the
        // snapshot list under it, never misses a snapshot being taken.
        let seq = self.inner.visible_seq();
        *snaps.entry(seq).or_insert(0) += 1;
        Snapshot { db: self, seq }
    }

    /// The last sequence number visible to readers.
    pub fn last_seq(&self) -> SeqNo {
        SeqNo::new(self.inner.visible_seq()).unwrap_or(SeqNo::MAX)
    }
}

/// A point-in-time view of the database, from [`Db::snapshot`].
#[derive(Debug)]
pub struct Snapshot<'db> {
    db: &'db Db,
    seq: u64,
}

impl Snapshot<'_> {
    /// The sequence number this snapshot reads at.
    pub fn seq(&self) -> SeqNo {
        SeqNo::new(self.seq).unwrap_or(SeqNo::MAX)
    }

    /// The value of `key` as of the snapshot.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>> {
        self.db.inner.get_at(key.as_ref(), Some(self.seq))
    }

    /// The entries in `range` as of the snapshot.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        self.db
            .inner
            .iter_at(Bounds::from_range(range), Some(self.seq))
    }

    /// The entries starting with `prefix` as of the snapshot.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        self.db
            .inner
            .iter_at(Bounds::prefix(prefix.as_ref()), Some(self.seq))
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        let mut snaps = lock(&self.db.inner.snapshots);
        if let Some(n) = snaps.get_mut(&self.seq) {
            *n -= 1;
            if *n == 0 {
                snaps.remove(&self.seq);
            }
        }
    }
}
