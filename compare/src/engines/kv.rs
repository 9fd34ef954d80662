//! kv-engine behind [`Store`].

use std::path::Path;

use kv_engine::{Compression, Db, Options, SyncPolicy, WriteBatch, WriteOptions};

use crate::{Result, Settings, Store};

/// A kv-engine database. Durable puts are `WriteOptions::sync(true)` writes (group
/// commit: concurrent writers share an fdatasync); other writes use
/// `SyncPolicy::Never` (written to the OS, never fsynced).
#[derive(Debug)]
pub struct KvStore {
    db: Db,
}

impl Store for KvStore {
    const NAME: &'static str = "kv";

    fn open(dir: &Path, s: &Settings) -> Result<Self> {
        let opts = Options::default()
            .memtable_size(usize::try_from(s.memtable_bytes)?)
            .block_size(usize::try_from(s.block_size)?)
            .block_cache_bytes(s.cache_bytes)
            .bloom_bits_per_key(s.bloom_bits_per_key)
            .compression_all(Compression::None)
            .sync_policy(SyncPolicy::Never);
        Ok(KvStore {
            db: Db::open(dir, opts)?,
        })
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.db.put(key, value)?)
    }

    fn put_sync(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(key, value);
        self.db.write(&batch, WriteOptions::default().sync(true))?;
        Ok(())
    }

    fn put_many(&self, entries: &[(&[u8], &[u8])]) -> Result<()> {
        let mut batch = WriteBatch::new();
        for (k, v) in entries {
            batch.put(k, v);
        }
        self.db.write(&batch, WriteOptions::default())?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.db.get(key)?.map(|v| v.len()))
    }

    fn scan(&self, start: &[u8], limit: usize) -> Result<usize> {
        // The lending call (borrowed key and value), as RocksDB's raw iterator is used.
        let mut it = self.db.range(start..);
        let mut n = 0;
        while n < limit {
            match it.next_ref() {
                Some(entry) => std::hint::black_box(entry?),
                None => break,
            };
            n += 1;
        }
        Ok(n)
    }

    fn flush(&self) -> Result<()> {
        Ok(self.db.flush()?)
    }

    /// `Db::flush`, then `Db::wait_idle` (no memtable waiting for a flush, no compaction
    /// running, and the compaction picker has nothing to do).
    fn settle(&self) -> Result<()> {
        self.db.flush()?;
        Ok(self.db.wait_idle()?)
    }

    fn close(self) -> Result<()> {
        Ok(self.db.close()?)
    }
}
