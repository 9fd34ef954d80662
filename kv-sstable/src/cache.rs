//! The shared block cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::Weighter;

use crate::block::Block;

#[derive(Clone, Copy, Debug, Default)]
struct BlockWeighter;

impl Weighter<(u64, u64), Arc<Block>> for BlockWeighter {
    fn weight(&self, _key: &(u64, u64), block: &Arc<Block>) -> u64 {
        block.charge()
    }
}

/// A byte-bounded cache of decoded data blocks shared by any number of tables, keyed by
/// (table id, block offset).
///
/// It holds owned bytes only: decompressed blocks, and blocks read from a file into
/// memory, each charged its size. Uncompressed blocks of a memory-mapped table are read
/// from the map and never cached, so the cache cannot keep a map (or a deleted file's
/// disk space) alive. A cached block has had its checksum verified once. Hits and
/// misses are counted.
///
/// ```
/// use std::sync::Arc;
/// use kv_sstable::BlockCache;
/// let cache = Arc::new(BlockCache::new(64 << 20));
/// assert_eq!(cache.capacity(), 64 << 20);
/// assert_eq!((cache.hits(), cache.misses()), (0, 0));
/// ```
pub struct BlockCache {
    inner: quick_cache::sync::Cache<(u64, u64), Arc<Block>, BlockWeighter>,
    capacity: u64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("capacity", &self.capacity)
            .field("weight", &self.weight())
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

impl BlockCache {
    /// A cache holding up to `capacity_bytes` of blocks.
    pub fn new(capacity_bytes: u64) -> Self {
        let items = usize::try_from(capacity_bytes / 4096)
            .unwrap_or(usize::MAX)
            .clamp(16, 1 << 20);
        BlockCache {
            inner: quick_cache::sync::Cache::with_weighter(items, capacity_bytes, BlockWeighter),
            capacity: capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub(crate) fn get(&self, table_id: u64, offset: u64) -> Option<Arc<Block>> {
        let r = self.inner.get(&(table_id, offset));
        let counter = if r.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        r
    }

    pub(crate) fn insert(&self, table_id: u64, offset: u64, block: Arc<Block>) {
        self.inner.insert((table_id, offset), block);
    }

    /// Lookups that found their block.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that had to read their block.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// The byte bound.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes currently charged.
    pub fn weight(&self) -> u64 {
        self.inner.weight()
    }

    /// Number of cached blocks.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Drops every cached block of `table_id` (for a table that was deleted).
    pub fn evict_table(&self, table_id: u64) {
        self.inner.retain(|&(t, _), _| t != table_id);
    }
}
