//! Transactions: optimistic, serializable read-write transactions with
//! read-your-writes, and read-only snapshot transactions.
//!
//! A read-write [`Transaction`] reads at the snapshot taken when it begins, buffers
//! its puts and deletes, and remembers what it read: each key it looked up and each
//! range it scanned. Nothing is locked. At commit, inside the WAL's numbering lock (so
//! no other commit can slip in between), it is checked against the keys written by
//! every commit numbered after its snapshot (see the `conflict` module); if one of them is a
//! key it read or writes, or lies in a range it scanned, the commit fails with
//! [`Error::Conflict`](crate::Error::Conflict) and writes nothing. Otherwise its writes
//! become one batch: one WAL record, group-committed with concurrent writers, numbered
//! right after the validation. Every committed transaction therefore read exactly what
//! a serial execution in commit order would have shown it.

pub(crate) mod conflict;
mod iter;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};

use kv_iter::Bounds;

use conflict::ReadSet;
pub use iter::TxnIter;

use crate::counters::Counters;
use crate::{Db, Iter, Result, SeqNo, Snapshot, Value, WriteBatch, WriteOptions};

/// An optimistic, serializable read-write transaction, from [`Db::transaction`].
///
/// Reads see the database as of the moment the transaction began, plus the
/// transaction's own writes (point reads and scans, both directions). Writes are
/// buffered until [`commit`](Transaction::commit), which either applies all of them
/// atomically or fails with [`Error::Conflict`](crate::Error::Conflict) if another
/// commit made since the snapshot changed a key this transaction read or writes, or a
/// key inside a range it scanned. Dropping it without committing (or calling
/// [`rollback`](Transaction::rollback)) discards the writes.
///
/// The usual shape is a retry loop:
///
/// ```
/// use kv_engine::{Db, Options};
/// let dir = tempfile::tempdir()?;
/// let db = Db::open(dir.path(), Options::default())?;
/// db.put("alice", "100")?;
/// db.put("bob", "0")?;
///
/// let parse = |v: Option<kv_engine::Value>| -> u64 {
///     v.and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok()).unwrap_or(0)
/// };
/// loop {
///     let mut txn = db.transaction();
///     let alice = parse(txn.get("alice")?);
///     let bob = parse(txn.get("bob")?);
///     txn.put("alice", (alice - 30).to_string());
///     txn.put("bob", (bob + 30).to_string());
///     match txn.commit() {
///         Ok(_) => break,
///         Err(e) if e.is_conflict() => continue, // someone else got there first
///         Err(e) => return Err(e.into()),
///     }
/// }
/// assert_eq!(db.get("bob")?.as_deref(), Some(&b"30"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A transaction holds its snapshot (compaction keeps what it can see) and a place in
/// the conflict window ([`Options::transaction_conflict_window`](crate::Options::transaction_conflict_window)):
/// keep transactions short. One that outlives what the window still covers fails to
/// commit, safely, with a conflict.
pub struct Transaction<'db> {
    db: &'db Db,
    snapshot: Snapshot<'db>,
    seq: u64,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    reads: RefCell<ReadSet>,
    finished: bool,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("seq", &self.seq)
            .field("writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Begins a read-write transaction at the current state of the database.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// let mut txn = db.transaction();
    /// txn.put("k", "v");
    /// assert_eq!(txn.get("k")?.as_deref(), Some(&b"v"[..])); // its own write
    /// assert_eq!(db.get("k")?, None); // not visible outside before commit
    /// txn.commit()?;
    /// assert_eq!(db.get("k")?.as_deref(), Some(&b"v"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn transaction(&self) -> Transaction<'_> {
        let (snapshot, seq) = self.inner.conflicts.begin(
            || self.inner.visible_seq(),
            || self.inner.publisher.has_failed() || self.inner.wal.health().is_err(),
            || {
                let s = self.snapshot();
                let seq = s.seq().get();
                (s, seq)
            },
        );
        Transaction {
            db: self,
            snapshot,
            seq,
            writes: BTreeMap::new(),
            reads: RefCell::new(ReadSet::default()),
            finished: false,
        }
    }

    /// Begins a read-only transaction: a consistent snapshot of the database. It
    /// needs no validation and never conflicts.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.put("a", "1")?;
    /// let view = db.read_transaction();
    /// db.put("a", "2")?;
    /// db.put("b", "3")?;
    /// assert_eq!(view.get("a")?.as_deref(), Some(&b"1"[..]));
    /// assert_eq!(view.iter().count(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_transaction(&self) -> ReadTransaction<'_> {
        ReadTransaction {
            snapshot: self.snapshot(),
        }
    }
}

impl Transaction<'_> {
    /// The sequence number of the snapshot the transaction reads at.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.put("k", "v")?;
    /// assert_eq!(db.transaction().seq(), db.last_seq());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seq(&self) -> SeqNo {
        self.snapshot.seq()
    }

    /// The value of `key`: the transaction's own write if it made one, otherwise the
    /// value as of its snapshot. The key joins the transaction's read set.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.put("k", "old")?;
    /// let mut txn = db.transaction();
    /// db.put("k", "new")?; // after the snapshot: not seen
    /// assert_eq!(txn.get("k")?.as_deref(), Some(&b"old"[..]));
    /// txn.delete("k");
    /// assert_eq!(txn.get("k")?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>> {
        let key = key.as_ref();
        if let Some(w) = self.writes.get(key) {
            return Ok(w.clone().map(Value::owned));
        }
        self.reads.borrow_mut().keys.insert(key.to_vec());
        self.db.inner.get_at(key, Some(self.seq))
    }

    /// Buffers a put of `value` under `key`; it is written at commit.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// let mut txn = db.transaction();
    /// txn.put("a", "1").put("b", "2");
    /// txn.commit()?;
    /// assert_eq!(db.get("b")?.as_deref(), Some(&b"2"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> &mut Self {
        self.writes
            .insert(key.as_ref().to_vec(), Some(value.as_ref().to_vec()));
        self
    }

    /// Buffers a delete of `key`; it is applied at commit.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.put("k", "v")?;
    /// let mut txn = db.transaction();
    /// txn.delete("k");
    /// assert_eq!(db.get("k")?.as_deref(), Some(&b"v"[..])); // not yet
    /// txn.commit()?;
    /// assert_eq!(db.get("k")?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        self.writes.insert(key.as_ref().to_vec(), None);
        self
    }

    /// The number of distinct keys the transaction has written (put or deleted).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// let mut txn = db.transaction();
    /// txn.put("a", "1").put("a", "2").delete("b");
    /// assert_eq!(txn.write_count(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_count(&self) -> usize {
        self.writes.len()
    }

    /// The entries whose keys fall in `range`, as of the snapshot with the
    /// transaction's own writes merged in, in key order (`.rev()` for descending). The
    /// whole range joins the read set: a key another commit writes into it makes this
    /// transaction's commit fail (no phantoms).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.put("a", "1")?;
    /// db.put("c", "3")?;
    /// let mut txn = db.transaction();
    /// txn.put("b", "2");
    /// let rev: Vec<_> = txn.range("a"..="c").rev().map(|r| r.map(|(k, _)| k)).collect::<Result<_, _>>()?;
    /// assert_eq!(rev, [b"c".to_vec(), b"b".to_vec(), b"a".to_vec()]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> TxnIter {
        self.scan(Bounds::from_range(range))
    }

    /// The entries whose keys start with `prefix`, with the transaction's own writes
    /// merged in; the prefix joins the read set.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.put("user:1", "ada")?;
    /// let mut txn = db.transaction();
    /// txn.put("user:2", "bob").put("order:1", "tea");
    /// assert_eq!(txn.prefix("user:").count(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> TxnIter {
        self.scan(Bounds::prefix(prefix.as_ref()))
    }

    /// Every entry, with the transaction's own writes merged in; the whole key space
    /// joins the read set.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// let mut txn = db.transaction();
    /// txn.put("x", "1");
    /// assert_eq!(txn.iter().count(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&self) -> TxnIter {
        self.scan(Bounds::all())
    }

    fn scan(&self, bounds: Bounds) -> TxnIter {
        let buffered = if is_inverted(&bounds) {
            Vec::new()
        } else {
            self.writes
                .range::<[u8], _>((bounds.lower(), bounds.upper()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let db = self.db.inner.iter_at(bounds.clone(), Some(self.seq));
        self.reads.borrow_mut().ranges.push(bounds);
        TxnIter::new(db, buffered)
    }

    /// Commits with default [`WriteOptions`]; see [`Transaction::commit_with`].
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// let mut txn = db.transaction();
    /// txn.put("k", "v");
    /// let seq = txn.commit()?;
    /// assert_eq!(seq, db.last_seq());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit(self) -> Result<SeqNo> {
        self.commit_with(WriteOptions::default())
    }

    /// Validates the transaction and applies its writes atomically, as one batch
    /// through the normal write path (one WAL record, group-committed; durable on
    /// return with [`WriteOptions::sync`]). Returns the sequence number of its last
    /// write, or the snapshot's if it wrote nothing (a transaction that only read
    /// commits without validation: it is serialized at its snapshot).
    ///
    /// Fails with [`Error::Conflict`](crate::Error::Conflict), writing nothing, if a
    /// commit numbered after the snapshot wrote a key this transaction read or writes,
    /// or a key inside a range it scanned; run the transaction again. Before returning
    /// a conflict it waits (100 ms at most) until the commit it lost to is visible, so
    /// that the retry reads it instead of failing again at once.
    ///
    /// ```
    /// use kv_engine::{Db, Options, WriteOptions};
    /// let dir = tempfile::tempdir()?;
    /// let db = Db::open(dir.path(), Options::default())?;
    /// let mut t1 = db.transaction();
    /// let mut t2 = db.transaction();
    /// t1.put("k", "one");
    /// t2.put("k", "two");
    /// t1.commit_with(WriteOptions::default().sync(true))?;
    /// let e = t2.commit().unwrap_err(); // write-write conflict: t2 missed t1's write
    /// assert!(e.is_conflict());
    /// assert_eq!(db.get("k")?.as_deref(), Some(&b"one"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit_with(mut self, opts: WriteOptions) -> Result<SeqNo> {
        self.finished = true;
        let inner = &self.db.inner;
        let counters = &inner.counters;
        if self.writes.is_empty() {
            Counters::add(&counters.txn_commits, 1);
            return Ok(self.snapshot.seq());
        }
        let mut batch = WriteBatch::new();
        for (k, v) in &self.writes {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            };
        }
        let reads = self.reads.borrow();
        let writes = &self.writes;
        let snapshot = self.seq;
        let result = inner.write_with(&batch, opts, |seqs| {
            let keys = writes.keys().map(Vec::as_slice);
            inner
                .conflicts
                .admit(snapshot, &reads, keys, seqs, inner.visible_seq())
        });
        match &result {
            Ok(_) => Counters::add(&counters.txn_commits, 1),
            Err(crate::Error::Conflict { by, .. }) => {
                Counters::add(&counters.txn_conflicts, 1);
                self.db.wait_visible(*by);
            }
            Err(_) => Counters::add(&counters.txn_aborts, 1),
        }
        result
    }

    /// Discards the transaction's writes (dropping it does the same).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// let mut txn = db.transaction();
    /// txn.put("k", "v");
    /// txn.rollback();
    /// assert_eq!(db.get("k")?, None);
    /// assert_eq!(db.stats().transaction_aborts, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rollback(self) {}
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        let inner = &self.db.inner;
        if !self.finished {
            Counters::add(&inner.counters.txn_aborts, 1);
        }
        inner.conflicts.end(self.seq, inner.visible_seq());
    }
}

impl Db {
    /// Waits (briefly, bounded) until commit `seq` is visible, so that a transaction
    /// retried after a conflict with a commit still being published does not read
    /// without it and fail again at once.
    fn wait_visible(&self, seq: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(100);
        let mut tries = 0u32;
        while self.inner.visible_seq() < seq && std::time::Instant::now() < deadline {
            tries += 1;
            if tries < 32 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// Whether `bounds` is inverted or empty-exclusive (`BTreeMap::range` would panic).
fn is_inverted(bounds: &Bounds) -> bool {
    match (bounds.lower(), bounds.upper()) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
        (Bound::Included(l), Bound::Included(u)) => l > u,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u))
        | (Bound::Excluded(l), Bound::Included(u)) => l >= u,
    }
}

/// A read-only transaction, from [`Db::read_transaction`]: every read sees the
/// database as of the moment it began, and compaction keeps what it can see until it
/// is dropped. It never conflicts.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
/// db.put("a", "1")?;
/// db.put("b", "2")?;
/// let view = db.read_transaction();
/// db.delete("a")?;
/// let all: Vec<_> = view.iter().rev().collect::<Result<_, _>>()?;
/// assert_eq!(all, [(b"b".to_vec(), b"2".to_vec()), (b"a".to_vec(), b"1".to_vec())]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ReadTransaction<'db> {
    snapshot: Snapshot<'db>,
}

impl ReadTransaction<'_> {
    /// The sequence number the transaction reads at.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// let view = db.read_transaction();
    /// db.put("k", "v")?;
    /// assert!(view.seq() < db.last_seq());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seq(&self) -> SeqNo {
        self.snapshot.seq()
    }

    /// The value of `key` as of the transaction's snapshot.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// let view = db.read_transaction();
    /// db.put("k", "v")?;
    /// assert_eq!(view.get("k")?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>> {
        self.snapshot.get(key)
    }

    /// The entries in `range` as of the snapshot, in key order (`.rev()` for
    /// descending).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.put("a", "1")?;
    /// db.put("b", "2")?;
    /// let view = db.read_transaction();
    /// assert_eq!(view.range("b"..).count(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        self.snapshot.range(range)
    }

    /// The entries starting with `prefix` as of the snapshot.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.put("user:1", "ada")?;
    /// db.put("order:1", "tea")?;
    /// assert_eq!(db.read_transaction().prefix("user:").count(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        self.snapshot.prefix(prefix)
    }

    /// Every entry as of the snapshot, in key order.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.put("a", "1")?;
    /// assert_eq!(db.read_transaction().iter().count(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&self) -> Iter {
        self.snapshot.range::<&[u8], _>(..)
    }
}
