//! Atomic batches of writes.

/// A group of puts and deletes applied atomically: after a crash either all of them are
/// there or none, and no reader ever sees some without the others.
///
/// ```
/// use kv_engine::{Db, Options, WriteBatch, WriteOptions};
/// let dir = tempfile::tempdir()?;
/// let db = Db::open(dir.path(), Options::default())?;
/// let mut batch = WriteBatch::new();
/// batch.put("alice", "10").put("bob", "20").delete("carol");
/// let last = db.write(&batch, WriteOptions::default())?;
/// assert_eq!(last.get(), 3); // one sequence number per operation
/// assert_eq!(db.get("bob")?.as_deref(), Some(&b"20"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub(crate) inner: kv_wal::Batch,
    pub(crate) user_bytes: u64,
    pub(crate) puts: u64,
    pub(crate) deletes: u64,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        WriteBatch::default()
    }

    /// Adds a put of `value` under `key`.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> &mut Self {
        let (k, v) = (key.as_ref(), value.as_ref());
        self.user_bytes += (k.len() + v.len()) as u64;
        self.puts += 1;
        self.inner.put(k, v);
        self
    }

    /// Adds a delete of `key`.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        let k = key.as_ref();
        self.user_bytes += k.len() as u64;
        self.deletes += 1;
        self.inner.delete(k);
        self
    }

    /// Wraps a log batch (a replicated one), counting what it holds.
    pub(crate) fn from_wal(inner: kv_wal::Batch) -> Self {
        let mut b = WriteBatch {
            inner,
            ..WriteBatch::default()
        };
        for op in b.inner.iter() {
            match op {
                kv_wal::Op::Put { key, value } => {
                    b.puts += 1;
                    b.user_bytes += (key.len() + value.len()) as u64;
                }
                kv_wal::Op::Delete { key } => {
                    b.deletes += 1;
                    b.user_bytes += key.len() as u64;
                }
            }
        }
        b
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the batch has no operations.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Removes every operation, keeping the allocation.
    pub fn clear(&mut self) {
        self.inner.clear();
        self.user_bytes = 0;
        self.puts = 0;
        self.deletes = 0;
    }
}
