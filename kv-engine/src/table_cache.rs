//! The table cache: which live tables are open, within [`Options::max_open_files`].
//!
//! An open [`Table`] holds a descriptor (reads through the [`Fs`]) or a memory map (the
//! operating system's file system; its descriptor is closed once mapped), and its
//! index and bloom filter in memory. A database of many tables keeps only the most
//! recently used ones open, as RocksDB's and Pebble's table caches do: every live table
//! has a [`TableSlot`], the slot opens its table on first use, and when more than the
//! limit are open the least recently used is closed by a CLOCK sweep (a "referenced"
//! bit per slot, set on use and cleared by the sweep, so a read pays one atomic load and
//! no lock). A cursor that holds a table keeps it open until the cursor is dropped,
//! whatever the sweep does: eviction only drops the cache's reference.
//!
//! [`Options::max_open_files`]: crate::Options::max_open_files
//! [`Fs`]: kv_wal::Fs

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwapOption;
use kv_sstable::Table;
use kv_wal::Fs;

use crate::Result;
use crate::mutex::lock;
use crate::table_file::{OpenOptions, open_table};
use crate::version_edit::TableFile;

/// The open tables of one database, bounded by a limit.
pub(crate) struct TableCache {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    opts: OpenOptions,
    limit: usize,
    open: AtomicUsize,
    opens: AtomicU64,
    evictions: AtomicU64,
    /// Bytes of index and filter blocks of open tables.
    meta_bytes: AtomicU64,
    /// Filter negatives counted by tables since closed (so the statistic survives
    /// evictions and table deletions).
    retired_filter_negatives: AtomicU64,
    /// Open slots in CLOCK order (front: next to examine). Dead entries (slots whose
    /// table was dropped from every version) are removed as the sweep meets them.
    ring: Mutex<VecDeque<Weak<TableSlot>>>,
}

impl std::fmt::Debug for TableCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableCache")
            .field("limit", &self.limit)
            .field("open", &self.open.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl TableCache {
    /// A cache opening tables of `dir` with `opts`, keeping at most `limit` open.
    pub(crate) fn new(fs: Arc<dyn Fs>, dir: PathBuf, opts: OpenOptions, limit: usize) -> Self {
        TableCache {
            fs,
            dir,
            opts,
            limit: limit.max(1),
            open: AtomicUsize::new(0),
            opens: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            meta_bytes: AtomicU64::new(0),
            retired_filter_negatives: AtomicU64::new(0),
            ring: Mutex::new(VecDeque::new()),
        }
    }

    /// Whether another table can be opened without closing one.
    pub(crate) fn has_room(&self) -> bool {
        self.open.load(Ordering::Relaxed) < self.limit
    }

    /// The options tables are opened with.
    pub(crate) fn open_options(&self) -> &OpenOptions {
        &self.opts
    }

    /// A slot for `file`, holding `table` if it is already open (a table just written
    /// and opened by a flush or compaction, or opened by recovery).
    pub(crate) fn slot(self: &Arc<Self>, file: &TableFile, table: Option<Table>) -> Arc<TableSlot> {
        let slot = Arc::new(TableSlot {
            file: file.clone(),
            table: ArcSwapOption::empty(),
            referenced: AtomicBool::new(true),
            opening: Mutex::new(()),
            cache: self.clone(),
        });
        if let Some(table) = table {
            let _g = lock(&slot.opening);
            self.install(&slot, table);
        }
        slot
    }

    /// Makes `table` the open table of `slot` (its `opening` lock held, its table
    /// absent), then closes others if the limit is passed.
    fn install(&self, slot: &Arc<TableSlot>, table: Table) -> Arc<Table> {
        let table = Arc::new(table);
        self.meta_bytes
            .fetch_add(table.memory_bytes() as u64, Ordering::Relaxed);
        slot.table.store(Some(table.clone()));
        slot.referenced.store(true, Ordering::Relaxed);
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        {
            let mut ring = lock(&self.ring);
            ring.push_back(Arc::downgrade(slot));
            // Below the limit nothing sweeps: drop the entries of slots that are gone
            // (tables deleted or evicted-and-dropped) once they outnumber the open ones,
            // so the ring stays proportional to the open tables (amortized O(1)).
            if ring.len() > 2 * open + 16 {
                ring.retain(|w| w.strong_count() > 0);
            }
        }
        if self.open.load(Ordering::Acquire) > self.limit {
            self.sweep(slot);
        }
        table
    }

    /// Accounts for `slot`'s table leaving the cache (evicted or dropped).
    fn retire(&self, table: &Table) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.meta_bytes
            .fetch_sub(table.memory_bytes() as u64, Ordering::Relaxed);
        self.retired_filter_negatives
            .fetch_add(table.filter_negatives(), Ordering::Relaxed);
    }

    /// Closes least recently used tables until at most `limit` are open, sparing
    /// `keep` (the table being opened for use right now).
    fn sweep(&self, keep: &Arc<TableSlot>) {
        let mut ring = lock(&self.ring);
        // Two passes over the ring at most: the first may only clear referenced bits.
        let mut budget = ring.len().saturating_mul(2);
        while self.open.load(Ordering::Acquire) > self.limit && budget > 0 {
            budget -= 1;
            let Some(weak) = ring.pop_front() else {
                break;
            };
            let Some(slot) = weak.upgrade() else {
                continue; // dropped: its table was retired by the drop
            };
            if Arc::ptr_eq(&slot, keep) || slot.referenced.swap(false, Ordering::Relaxed) {
                ring.push_back(weak);
                continue;
            }
            if let Some(table) = slot.table.swap(None) {
                self.evictions.fetch_add(1, Ordering::Relaxed);
                self.retire(&table);
            }
        }
    }

    /// Filter negatives of tables no longer open.
    pub(crate) fn retired_filter_negatives(&self) -> u64 {
        self.retired_filter_negatives.load(Ordering::Relaxed)
    }

    /// Tables open now, the limit, tables opened and tables evicted so far, and the
    /// bytes of index and filter blocks the open ones hold.
    pub(crate) fn counts(&self) -> (usize, usize, u64, u64, u64) {
        (
            self.open.load(Ordering::Relaxed),
            self.limit,
            self.opens.load(Ordering::Relaxed),
            self.evictions.load(Ordering::Relaxed),
            self.meta_bytes.load(Ordering::Relaxed),
        )
    }
}

/// One live table file's place in the cache: open or not, opened on demand.
pub(crate) struct TableSlot {
    file: TableFile,
    table: ArcSwapOption<Table>,
    /// Used since the sweep last passed (CLOCK's reference bit).
    referenced: AtomicBool,
    /// Serializes opening, so two readers do not open the same table twice.
    opening: Mutex<()>,
    /// Held strongly: an iterator may outlive its database handle and still open the
    /// tables of the version it holds (the cache holds only weak references back).
    cache: Arc<TableCache>,
}

impl TableSlot {
    /// Runs `f` on the open table, opening it if needed. The table is borrowed (no
    /// reference count taken): `f` should be one short operation (a cursor takes
    /// [`table`](Self::table) instead).
    pub(crate) fn with<R>(self: &Arc<Self>, f: impl FnOnce(&Table) -> R) -> Result<R> {
        let g = self.table.load();
        if let Some(t) = g.as_ref() {
            self.touch();
            return Ok(f(t));
        }
        drop(g);
        let t = self.open()?;
        Ok(f(&t))
    }

    /// The open table as an owned reference (for cursors), opening it if needed.
    pub(crate) fn table(self: &Arc<Self>) -> Result<Arc<Table>> {
        if let Some(t) = self.table.load_full() {
            self.touch();
            return Ok(t);
        }
        self.open()
    }

    /// The table if it is open now (no opening, no use recorded).
    pub(crate) fn if_open(&self) -> Option<Arc<Table>> {
        self.table.load_full()
    }

    fn touch(&self) {
        if !self.referenced.load(Ordering::Relaxed) {
            self.referenced.store(true, Ordering::Relaxed);
        }
    }

    #[cold]
    fn open(self: &Arc<Self>) -> Result<Arc<Table>> {
        let _g = lock(&self.opening);
        if let Some(t) = self.table.load_full() {
            return Ok(t);
        }
        let cache = &self.cache;
        // Paranoid checks verified every table when the database was opened (and every
        // new one as it was written): a reopen after an eviction does not read it all
        // again.
        let opts = OpenOptions {
            verify: false,
            ..cache.opts.clone()
        };
        let table = open_table(&*cache.fs, &cache.dir, &self.file, &opts)?;
        cache.opens.fetch_add(1, Ordering::Relaxed);
        Ok(cache.install(self, table))
    }
}

impl Drop for TableSlot {
    fn drop(&mut self) {
        if let Some(table) = self.table.swap(None) {
            self.cache.retire(&table);
        }
    }
}

impl std::fmt::Debug for TableSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableSlot")
            .field("file", &self.file.number)
            .field("open", &self.table.load().is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn options(limit: usize) -> crate::Options {
        crate::Options::default()
            .memtable_size(16 << 10)
            .target_table_size(16 << 10)
            .block_size(512)
            .max_open_files(limit)
    }

    /// Below the limit nothing sweeps: the ring must still forget the slots of tables
    /// that are gone (an audit found every table ever written kept there).
    #[test]
    fn the_ring_stays_proportional_to_the_open_tables() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::Db::open(dir.path(), options(1000)).unwrap();
        for round in 0..30u32 {
            for i in 0..500u32 {
                db.put(format!("key{i:06}"), format!("v{round}")).unwrap();
            }
            db.flush().unwrap();
            db.compact_range::<&[u8], _>(..).unwrap();
        }
        db.wait_idle().unwrap();
        let (open, ..) = db.inner.tables.counts();
        let ring = crate::mutex::lock(&db.inner.tables.ring).len();
        let written = db.stats().flushes + db.stats().compactions;
        assert!(written >= 60, "{written} tables written");
        assert!(
            ring <= 2 * open + 17,
            "ring of {ring} for {open} open tables"
        );
    }

    /// Gets, scans, flushes and compactions at once under tiny limits: afterwards the
    /// counters equal what is really open.
    #[test]
    fn counters_match_what_is_open_after_concurrent_use() {
        for limit in [1usize, 2, 3] {
            let dir = tempfile::tempdir().unwrap();
            let db = Arc::new(crate::Db::open(dir.path(), options(limit)).unwrap());
            for i in 0..2000u32 {
                db.put(format!("key{i:06}"), format!("v{i}")).unwrap();
            }
            db.flush().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let mut readers = Vec::new();
            for t in 0..3u32 {
                let db = db.clone();
                let stop = stop.clone();
                readers.push(std::thread::spawn(move || {
                    let mut n = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        let i = (n.wrapping_mul(2654435761) ^ t) % 2000;
                        assert!(db.get(format!("key{i:06}")).unwrap().is_some(), "key {i}");
                        if n.is_multiple_of(200) {
                            assert_eq!(db.range::<&[u8], _>(..).take(300).count(), 300);
                        }
                        n += 1;
                    }
                }));
            }
            for round in 0..10u32 {
                for i in (round..2000).step_by(3) {
                    db.put(format!("key{i:06}"), format!("v{i}r{round}"))
                        .unwrap();
                }
                db.flush().unwrap();
                if round % 4 == 3 {
                    db.compact_range::<&[u8], _>(..).unwrap();
                }
            }
            db.wait_idle().unwrap();
            stop.store(true, Ordering::Relaxed);
            for r in readers {
                r.join().unwrap();
            }
            let c = &db.inner.tables;
            let (open, _, _, evictions, meta) = c.counts();
            let ring = crate::mutex::lock(&c.ring);
            let really_open: Vec<_> = ring
                .iter()
                .filter_map(|w| w.upgrade())
                .filter_map(|s| s.if_open())
                .collect();
            let real_meta: u64 = really_open.iter().map(|t| t.memory_bytes() as u64).sum();
            assert!(evictions > 0, "limit {limit}");
            assert_eq!(open, really_open.len(), "limit {limit}");
            assert_eq!(meta, real_meta, "limit {limit}");
        }
    }
}
