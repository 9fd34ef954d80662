//! fjall behind [`Store`].

use std::path::Path;

use ::fjall::config::{
    BlockSizePolicy, BloomConstructionPolicy, CompressionPolicy, FilterPolicy, FilterPolicyEntry,
};
use ::fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use std::time::{Duration, Instant};

use crate::{Result, Settings, Store};

/// How long fjall must stay without flushes or compactions to count as settled.
const FJALL_QUIET: Duration = Duration::from_secs(1);

/// A fjall database with one keyspace.
///
/// Settings: cache, memtable size, data block size as given; data and index block
/// compression off; `BitsPerKey` bloom filters at every level (fjall's default uses a
/// 0.01% false-positive rate at level 0). Plain puts are `Keyspace::insert` (fjall
/// writes the journal to the OS on every insert, no fsync); durable puts are a
/// one-entry batch committed with `PersistMode::SyncData` (fdatasync, like kv).
pub struct FjallStore {
    db: Database,
    ks: Keyspace,
}

impl std::fmt::Debug for FjallStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallStore").finish_non_exhaustive()
    }
}

impl Store for FjallStore {
    const NAME: &'static str = "fjall";

    fn open(dir: &Path, s: &Settings) -> Result<Self> {
        let db = Database::builder(dir).cache_size(s.cache_bytes).open()?;
        let (memtable, block, bits) = (s.memtable_bytes, s.block_size, s.bloom_bits_per_key);
        let ks = db.keyspace("bench", || {
            KeyspaceCreateOptions::default()
                .max_memtable_size(memtable)
                .data_block_size_policy(BlockSizePolicy::all(block))
                .data_block_compression_policy(CompressionPolicy::disabled())
                .index_block_compression_policy(CompressionPolicy::disabled())
                .filter_policy(FilterPolicy::all(FilterPolicyEntry::Bloom(
                    BloomConstructionPolicy::BitsPerKey(bits as f32),
                )))
        })?;
        Ok(FjallStore { db, ks })
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.ks.insert(key, value)?)
    }

    fn put_sync(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        batch.insert(&self.ks, key, value);
        Ok(batch.commit()?)
    }

    fn put_many(&self, entries: &[(&[u8], &[u8])]) -> Result<()> {
        let mut batch = self.db.batch();
        for (k, v) in entries {
            batch.insert(&self.ks, *k, *v);
        }
        Ok(batch.commit()?)
    }

    fn get(&self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.ks.get(key)?.map(|v| v.len()))
    }

    fn scan(&self, start: &[u8], limit: usize) -> Result<usize> {
        let mut n = 0;
        for guard in self.ks.range(start..).take(limit) {
            std::hint::black_box(guard.into_inner()?);
            n += 1;
        }
        Ok(n)
    }

    fn flush(&self) -> Result<()> {
        Ok(self.ks.rotate_memtable_and_wait()?)
    }

    /// fjall 3.1 has no signal that compaction is idle: a flush queues one compaction
    /// request per worker thread, each request runs at most one compaction, and nothing
    /// says whether the strategy would pick another. So this rotates the memtable and
    /// waits for its flush, then polls every 10 ms until no flush is queued, no sealed
    /// memtable is left, no compaction is running (`Database::active_compactions`) and the
    /// count of finished compactions has not moved for [`FJALL_QUIET`]. That is "fjall has
    /// stopped on its own", not "nothing is left to compact".
    fn settle(&self) -> Result<()> {
        self.ks.rotate_memtable_and_wait()?;
        let mut last = (self.db.compactions_completed(), Instant::now());
        loop {
            let completed = self.db.compactions_completed();
            let busy = self.db.outstanding_flushes() > 0
                || self.ks.sealed_memtable_count() > 0
                || self.db.active_compactions() > 0;
            if busy || completed != last.0 {
                last = (completed, Instant::now());
            } else if last.1.elapsed() >= FJALL_QUIET {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn close(self) -> Result<()> {
        let FjallStore { db, ks } = self;
        drop(ks);
        db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}
