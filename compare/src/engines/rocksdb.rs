//! RocksDB (through the `rocksdb` crate) behind [`Store`]. Built with the `rocksdb`
//! feature only.

use std::path::Path;

use ::rocksdb::{
    BlockBasedOptions, Cache, DB, DBCompressionType, Options, ReadOptions, WriteBatch, WriteOptions,
};

use crate::{Result, Settings, Store};

/// A RocksDB database with its default column family.
///
/// Settings: an LRU block cache of the given size; `write_buffer_size` = the memtable
/// size; block-based tables with the given data block size and a full (not block-based)
/// bloom filter of the given bits per key; compression off at every level (bottommost
/// too). Everything else is RocksDB's default: the WAL on and written to the OS on every
/// write group, fdatasync for synced writes (`use_fsync` false), two background jobs,
/// index and filter blocks held by the table reader outside the block cache (as in kv),
/// reads through `pread` (no mmap). Plain puts use `WriteOptions::set_sync(false)`,
/// durable puts `set_sync(true)`; concurrent synced writers are grouped by RocksDB's
/// write leader, as in kv. The write and read options are made once and reused (the
/// crate's `get_pinned` would create and free a `ReadOptions` through the C API on
/// every call, a cost of the wrapper rather than of RocksDB).
pub struct RocksDbStore {
    db: DB,
    nosync: WriteOptions,
    sync: WriteOptions,
    read: ReadOptions,
}

impl std::fmt::Debug for RocksDbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbStore")
            .field("path", &self.db.path())
            .finish_non_exhaustive()
    }
}

impl Store for RocksDbStore {
    const NAME: &'static str = "rocksdb";

    fn open(dir: &Path, s: &Settings) -> Result<Self> {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(usize::try_from(s.cache_bytes)?));
        table.set_block_size(usize::try_from(s.block_size)?);
        table.set_bloom_filter(f64::from(s.bloom_bits_per_key), false);

        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_write_buffer_size(usize::try_from(s.memtable_bytes)?);
        opts.set_compression_type(DBCompressionType::None);
        opts.set_bottommost_compression_type(DBCompressionType::None);
        opts.set_block_based_table_factory(&table);

        let mut nosync = WriteOptions::default();
        nosync.set_sync(false);
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        Ok(RocksDbStore {
            db: DB::open(&opts, dir)?,
            nosync,
            sync,
            read: ReadOptions::default(),
        })
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.db.put_opt(key, value, &self.nosync)?)
    }

    fn put_sync(&self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.db.put_opt(key, value, &self.sync)?)
    }

    fn put_many(&self, entries: &[(&[u8], &[u8])]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (k, v) in entries {
            batch.put(k, v);
        }
        Ok(self.db.write_opt(batch, &self.nosync)?)
    }

    fn get(&self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.db.get_pinned_opt(key, &self.read)?.map(|v| v.len()))
    }

    fn scan(&self, start: &[u8], limit: usize) -> Result<usize> {
        let mut it = self.db.raw_iterator();
        it.seek(start);
        let mut n = 0;
        while n < limit {
            match it.item() {
                Some(entry) => {
                    std::hint::black_box(entry);
                }
                None => break,
            }
            n += 1;
            it.next();
        }
        it.status()?;
        Ok(n)
    }

    fn flush(&self) -> Result<()> {
        Ok(self.db.flush()?)
    }

    /// `DB::flush` (waits), then polls every 10 ms until the properties
    /// `rocksdb.compaction-pending`, `rocksdb.num-running-compactions` and
    /// `rocksdb.num-running-flushes` are all 0.
    fn settle(&self) -> Result<()> {
        self.db.flush()?;
        loop {
            let mut busy = 0;
            for name in [
                "rocksdb.compaction-pending",
                "rocksdb.num-running-compactions",
                "rocksdb.num-running-flushes",
            ] {
                busy += self
                    .db
                    .property_int_value(name)?
                    .ok_or_else(|| format!("RocksDB has no property {name}"))?;
            }
            if busy == 0 {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn close(self) -> Result<()> {
        self.db.flush_wal(true)?;
        drop(self.db);
        Ok(())
    }
}
